//! The files of a batch: the items file (or standard input), and the result files
//! `--out` writes and `--resume` and `eval-summary` read back.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

use serde_json::Value;

use super::items::{self, Shard};
use super::summary::Summary;
use crate::error::ConfigError;
use crate::expect;
use crate::stderr_line;

/// Reads result lines, calling `each` with the id and the line; a line that is not a
/// result (a line cut by a kill) is skipped with a warning. Returns the byte length of
/// the complete lines.
pub(super) fn read_results(
    mut reader: impl BufRead,
    path: &Path,
    mut each: impl FnMut(&str, &Value),
) -> anyhow::Result<u64> {
    let mut buf = Vec::new();
    let mut complete = 0u64;
    let mut number = 0usize;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| {
            ConfigError::new(format!(
                "cannot read the result file {}: {e}",
                path.display()
            ))
        })?;
        if n == 0 {
            break;
        }
        number += 1;
        if buf.last() != Some(&b'\n') {
            // The last line was cut (the writer was killed): not a result.
            break;
        }
        complete += n as u64;
        let parsed: Option<Value> = serde_json::from_slice(&buf).ok();
        match parsed.as_ref().and_then(|v| Some((v["id"].as_str()?, v))) {
            Some((id, v)) if v["report"].is_object() => each(id, v),
            _ if buf.iter().all(u8::is_ascii_whitespace) => {}
            _ => stderr_line!(
                "warning: {} line {number}: not a result line; skipped",
                path.display()
            ),
        }
    }
    Ok(complete)
}

/// Opens `--out`: with --resume, reads the ids done there (their results count in the
/// summary), drops a last line cut by a kill, and appends; else creates it anew.
pub(super) fn open_out(
    path: &Path,
    resume: bool,
    done: &mut HashSet<String>,
    summary: &mut Summary,
) -> anyhow::Result<File> {
    let cannot = |e: std::io::Error| {
        ConfigError::new(format!(
            "cannot write the results to {}: {e}",
            path.display()
        ))
    };
    if !resume {
        return Ok(File::create(path).map_err(cannot)?);
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(cannot)?;
    let complete = read_results(BufReader::new(&mut file), path, |id, line| {
        if done.insert(id.to_string()) {
            summary.add(line);
            summary.resumed += 1;
        }
    })?;
    // A cut last line would merge with the next result: it goes.
    if file.metadata().map_err(cannot)?.len() > complete {
        file.set_len(complete).map_err(cannot)?;
    }
    file.seek(std::io::SeekFrom::End(0)).map_err(cannot)?;
    Ok(file)
}

pub(super) fn open_input(path: &Path) -> Result<Box<dyn Read + Send>, ConfigError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    match File::open(path) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => Err(ConfigError::new(format!(
            "the eval file {} is a directory",
            path.display()
        ))),
        Ok(f) => Ok(Box::new(f)),
        Err(e) => Err(ConfigError::new(format!(
            "cannot read the eval file {}: {e}",
            path.display()
        ))),
    }
}

/// The items the eval will run (for the progress bar's ETA): one pass over the file.
pub(super) fn count_items(
    path: &Path,
    shard: Option<Shard>,
    done: &HashSet<String>,
    require: expect::Require,
) -> Option<u64> {
    let reader = BufReader::new(File::open(path).ok()?);
    let mut n = 0;
    for line in reader.split(b'\n') {
        let line = line.ok()?;
        let Ok(text) = std::str::from_utf8(&line) else {
            continue;
        };
        if let Ok(item) = items::parse(text, require)
            && shard.is_none_or(|s| s.holds(&item.id))
            && !done.contains(&item.id)
        {
            n += 1;
        }
    }
    Some(n)
}
