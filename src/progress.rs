//! Progress on standard error while calls are in flight: one line per participant.
//! Disabled (every method a no-op) when stderr is not a terminal or the output is
//! --quiet or --json.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bars: Option<(MultiProgress, Vec<ProgressBar>)>,
}

impl Progress {
    pub fn new(names: &[String], enabled: bool) -> Progress {
        if !enabled {
            return Progress { bars: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let style =
            ProgressStyle::with_template(&format!("{{spinner}} {{prefix:<{width}}}  {{msg}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = names
            .iter()
            .map(|name| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(name.clone());
                bar.set_message("waiting");
                bar
            })
            .collect();
        Progress {
            bars: Some((multi, bars)),
        }
    }

    pub fn disabled() -> Progress {
        Progress { bars: None }
    }

    pub fn started(&self, seat: usize, round: usize) {
        if let Some((_, bars)) = &self.bars {
            bars[seat].set_message(format!("round {round}: asking…"));
            bars[seat].enable_steady_tick(Duration::from_millis(120));
        }
    }

    pub fn finished(&self, seat: usize, round: usize, latency_ms: f64, error: Option<&str>) {
        if let Some((_, bars)) = &self.bars {
            let msg = match error {
                None => format!("round {round}: answered in {:.1} s", latency_ms / 1000.0),
                Some(e) => format!(
                    "round {round}: failed: {}",
                    e.chars().take(80).collect::<String>()
                ),
            };
            bars[seat].disable_steady_tick();
            bars[seat].set_message(msg);
            bars[seat].tick();
        }
    }

    /// Prints a log line on stderr, above the progress lines when they are shown so that
    /// neither garbles the other.
    pub fn log(&self, line: &str) {
        match &self.bars {
            Some((multi, _)) if multi.println(line).is_ok() => {}
            _ => eprintln!("{line}"),
        }
    }

    /// Removes the progress lines before the result is printed.
    pub fn clear(&self) {
        if let Some((multi, bars)) = &self.bars {
            for bar in bars {
                bar.finish_and_clear();
            }
            let _ = multi.clear();
        }
    }
}
