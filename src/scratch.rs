//! Directories for the files of unit tests.

use std::path::PathBuf;

/// An empty directory for one test's files, `name` naming it among the
/// crate's tests: under the system's temporary directory, apart for each
/// test process, emptied of what an earlier run of the same test left.
pub fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cn-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
