//! `--learn-weights FILE`: each finished item's category and per-seat keys, kept as the
//! results stream by (names and keys only, never the reports), then the weights learned
//! from them without expected answers and written atomically.
//!
//! `eval --resume` reads the items already in `--out` back; `eval-summary OUT...
//! --learn-weights FILE` learns from result files, so shards (or any earlier runs of the
//! same panel) are learned from together without a new call.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::summary::Summary;
use crate::config::Settings;
use crate::error::ConfigError;
use crate::stderr_line;
use crate::weights::InUse;
use crate::weights::WeightsFile;
use crate::weights::learn::{LearnItem, Source, learn};

/// `eval --learn-weights`: a collector for the panel of `settings`, None without the
/// flag; with `--resume`, holding the items already in `resumed` (the `--out` file).
pub fn start(
    out: Option<&Path>,
    settings: &Settings,
    resumed: Option<&Path>,
) -> anyhow::Result<Option<Collector>> {
    let seats = settings.seats.iter().map(|s| s.name.clone()).collect();
    let mut collector = out.map(|out| Collector::new(out, seats)).transpose()?;
    if let Some(path) = resumed {
        read_back(&mut collector, path)?;
    }
    Ok(collector)
}

/// The items of the result file `path`, when learning.
pub fn read_back(collector: &mut Option<Collector>, path: &Path) -> anyhow::Result<()> {
    match collector {
        Some(c) => c.read_back(path),
        None => Ok(()),
    }
}

/// A result line of this run, when learning.
pub fn add(collector: &mut Option<Collector>, line: &Value) -> Result<(), ConfigError> {
    match collector {
        Some(c) => c.add(line, &|| "this run".to_string()),
        None => Ok(()),
    }
}

/// `eval-summary --learn-weights`: the panel is the first result's.
pub fn for_files(out: Option<&Path>) -> Result<Option<Collector>, ConfigError> {
    out.map(|out| Collector::new(out, Vec::new())).transpose()
}

/// The keys of the items seen so far.
pub struct Collector {
    out: PathBuf,
    /// The panel's seat names, in seat order (empty until the first result names them).
    seats: Vec<String>,
    items: Vec<LearnItem>,
    /// Ids counted once.
    seen: HashSet<String>,
    /// The seats are those of the first result read (`eval-summary`), not a panel's.
    from_results: bool,
}

impl Collector {
    /// A collector writing to `out` (checked now: before any call); `seats` as the panel
    /// resolved them, or empty to take them from the first result.
    pub fn new(out: &Path, seats: Vec<String>) -> Result<Collector, ConfigError> {
        let shown = out.display();
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if out.is_dir() {
            return Err(ConfigError::new(format!(
                "--learn-weights {shown} is a directory: name a file, e.g. {}",
                out.join("weights.json").display()
            )));
        }
        if !dir.is_dir() {
            return Err(ConfigError::new(format!(
                "--learn-weights {shown}: the directory {} does not exist",
                dir.display()
            )));
        }
        Ok(Collector {
            out: out.to_path_buf(),
            from_results: seats.is_empty(),
            seats,
            items: Vec::new(),
            seen: HashSet::new(),
        })
    }

    /// Takes in one result line (`{"id", "category"?, "report": {"participants"}}`); a
    /// line of another panel is an error naming `from`.
    pub fn add(&mut self, line: &Value, from: &dyn Fn() -> String) -> Result<(), ConfigError> {
        let Some(id) = line["id"].as_str() else {
            return Ok(());
        };
        let participants = line["report"]["participants"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let names: Vec<&str> = participants
            .iter()
            .map(|p| p["name"].as_str().unwrap_or_default())
            .collect();
        if self.seats.is_empty() {
            self.seats = names.iter().map(|n| n.to_string()).collect();
        } else if names != self.seats {
            return Err(ConfigError::new(format!(
                "{}: item {id} was run by another panel ({}) than {} ({}): learn weights from one panel's results",
                from(),
                names.join(", "),
                if self.from_results {
                    "the first result's"
                } else {
                    "this run's"
                },
                self.seats.join(", ")
            )));
        }
        if !self.seen.insert(id.to_string()) {
            return Ok(());
        }
        // Whether each seat matched the item's expected answer, read only by `--learn-from
        // labels`.
        let matched = line["check"]["seats"].as_array().map(|seats| {
            seats
                .iter()
                .map(|s| s["matched"].as_bool().unwrap_or(false))
                .collect()
        });
        self.items.push(LearnItem {
            category: line["category"].as_str().map(str::to_string),
            keys: participants
                .iter()
                .map(|p| p["key"].as_str().map(str::to_string))
                .collect(),
            matched,
        });
        Ok(())
    }

    /// The items already in the result file `path` (none when there is no such file yet:
    /// `--resume` creates it).
    pub fn read_back(&mut self, path: &Path) -> anyhow::Result<()> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                let shown = path.display();
                let why = format!("cannot read the result file {shown}: {e}");
                return Err(ConfigError::new(why).into());
            }
        };
        let mut failed = None;
        super::files::read_results(BufReader::new(file), path, |_, line| {
            if failed.is_none()
                && let Err(e) = self.add(line, &|| path.display().to_string())
            {
                failed = Some(e);
            }
        })?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Learns the weights from `source` and writes them; one line on stderr says where.
    pub fn write(self, source: Source) -> anyhow::Result<WeightsFile> {
        if self.items.is_empty() {
            return Err(ConfigError::new(format!(
                "--learn-weights {}: no finished item to learn from; nothing written",
                self.out.display()
            ))
            .into());
        }
        if source == Source::Labels && self.items.iter().all(|i| i.matched.is_none()) {
            return Err(ConfigError::new(format!(
                "--learn-weights {} --learn-from labels: no item has an expected answer; \
                 give items an expect field, or learn from answers",
                self.out.display()
            ))
            .into());
        }
        let weights = learn(&self.seats, &self.items, source);
        let mut text = serde_json::to_string_pretty(&weights)?;
        text.push('\n');
        crate::run::write_transcript(&self.out, &text).map_err(|e| {
            anyhow::anyhow!("cannot write the weights to {}: {e}", self.out.display())
        })?;
        stderr_line!(
            "weights of {} seat(s) learned from {} item(s) ({}) written to {}",
            self.seats.len(),
            self.items.len(),
            weights.method,
            self.out.display()
        );
        Ok(weights)
    }
}

/// After the batch: the weights learned (`--learn-weights`) and written, the summary
/// concluded with each seat's estimate (from the learned file, else the file in use),
/// and with `--calibrate` a calibration found written into the weights file in use, so
/// that `ask --weights` uses it as `beta_2`.
pub fn conclude(
    summary: &mut Summary,
    learning: Option<Collector>,
    source: Source,
    in_use: Option<&InUse>,
    calibrate: Option<f64>,
) -> anyhow::Result<()> {
    let learned = learning.map(|c| c.write(source)).transpose()?;
    let estimate = learned.as_ref().or(in_use.map(|w| &*w.file));
    summary.conclude(estimate, calibrate);
    if let (Some(w), Some(found)) = (in_use, summary.calibration_for_weights()) {
        let mut file = (*w.file).clone();
        let beta2 = found.beta2;
        file.calibration = Some(found);
        let mut text = serde_json::to_string_pretty(&file)?;
        text.push('\n');
        crate::run::write_transcript(&w.path, &text).map_err(|e| {
            anyhow::anyhow!("cannot write the calibration to {}: {e}", w.path.display())
        })?;
        stderr_line!(
            "beta_2 {beta2} written to {}: runs with --weights {} use it",
            w.path.display(),
            w.path.display()
        );
    }
    Ok(())
}
