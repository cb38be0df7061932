//! Whole rewrites of the small files kept beside the log (the states sent,
//! the journal of downtime starts not sent, the status file): the new
//! content goes to a temporary file next to it, renamed over it, so a
//! reader, or the next run after a crash, finds the old file or the new
//! one, never a part of either.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Whether the new content must be on disk before it replaces the old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced before the rename: a crash right after leaves the new file
    /// whole (the states sent, written once at close).
    Synced,
    /// Left to the system: after a crash the old file, or an empty one,
    /// may show; for files rewritten often whose loss costs little.
    Unsynced,
}

/// Replaces `path` with `bytes`, created with permissions `mode`. The
/// temporary file is `<name>.tmp` beside `path`: its own for each file, so
/// two files of one log never share one. It is removed when the rewrite
/// fails.
pub fn file(path: &Path, bytes: &[u8], mode: u32, durability: Durability) -> io::Result<()> {
    let tmp = temporary(path);
    let result = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            match durability {
                Durability::Synced => f.sync_data(),
                Durability::Unsynced => Ok(()),
            }
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_whole_file_with_its_mode_and_leaves_no_temporary() {
        let dir = crate::scratch::dir("replace-whole");
        let path = dir.join("c.sent-states");
        std::fs::write(&path, "a much longer old content\n").unwrap();
        for durability in [Durability::Synced, Durability::Unsynced] {
            file(&path, b"new\n", 0o640, durability).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["c.sent-states"]);
    }

    #[test]
    fn two_files_of_one_log_have_their_own_temporary() {
        let a = temporary(Path::new("/var/log/c.sent-states"));
        let b = temporary(Path::new("/var/log/c.unsent-downtimes"));
        assert_ne!(a, b);
        assert_eq!(a, Path::new("/var/log/c.sent-states.tmp"));
    }

    #[test]
    fn a_failed_rewrite_says_so_and_removes_its_temporary() {
        let dir = crate::scratch::dir("replace-failed");
        // The rename fails: the path is a directory's, which is not empty.
        let blocked = dir.join("c.status.json");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(file(&blocked, b"new", 0o644, Durability::Unsynced).is_err());
        assert!(!temporary(&blocked).exists(), "the temporary is removed");
        assert!(blocked.join("inside").exists());
    }
}
