//! `--transcript`: the JSON report, written so that the file at the path is always
//! either the old one or the whole new one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `text` to `path` atomically: into a new file beside it, flushed to disk, then
/// renamed over `path`. A kill mid-write leaves no half transcript (at worst a hidden
/// `.NAME.*.tmp` file), and a symlink at `path` is replaced, never written through.
pub fn write_transcript(path: &Path, text: &str) -> io::Result<()> {
    let (mut file, temporary) = create_beside(path)?;
    // A transcript the user made private stays private (a symlink's target is not ours).
    let kept = match fs::symlink_metadata(path) {
        Ok(old) if old.file_type().is_file() => file.set_permissions(old.permissions()),
        _ => Ok(()),
    };
    let written = kept
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// A new file in `path`'s directory. `create_new` never opens an existing file or
/// follows a symlink, so a name someone planted is skipped, not used.
fn create_beside(path: &Path) -> io::Result<(fs::File, PathBuf)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut last = None;
    for attempt in 0..16 {
        let temporary = dir.join(format!(
            ".{}.{}-{attempt}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
        {
            Ok(file) => return Ok((file, temporary)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_transcript_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        fs::write(&path, "a much longer old transcript").unwrap();
        write_transcript(&path, "new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_private_transcript_stays_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_transcript(&path, "new").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_directory_at_the_path_is_an_error_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        fs::create_dir(&path).unwrap();
        assert!(write_transcript(&path, "new").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
