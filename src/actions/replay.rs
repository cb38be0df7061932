//! Signatures already used, so a replayed click acknowledges nothing.
//!
//! A signature is remembered until its context expires: after that the
//! expiry refuses it anyway. Only verified signatures get here, so the
//! memory grows only with real clicks; it is bounded all the same, and
//! when full the service refuses new clicks rather than forget old ones.
//!
//! With a state file (`state_file`), the memory survives restarts: each
//! use is appended (`+<sig> <expires>`) and synced before the
//! acknowledgement is made, each release (`-<sig>`) after a failed one;
//! the file is compacted (expired and released entries dropped) when the
//! service starts. A use that cannot be recorded is refused: the service
//! never acknowledges what it could not remember.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Remembers used signatures until their expiry.
#[derive(Debug)]
pub struct Replay {
    used: HashMap<String, u64>,
    capacity: usize,
    file: Option<(PathBuf, File)>,
}

/// What a signature is to the memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Use {
    /// Never used: now reserved.
    First,
    /// Used before.
    Replayed,
    /// Not seen, but too many remembered to take it.
    Full,
    /// Not seen, but its use could not be written to the state file.
    Unrecorded(String),
}

impl Replay {
    /// An empty memory, in memory only, holding at most `capacity`
    /// signatures.
    pub fn new(capacity: usize) -> Self {
        Replay {
            used: HashMap::new(),
            capacity,
            file: None,
        }
    }

    /// The memory kept in `path` (created if missing), loaded and
    /// compacted at `now`.
    pub fn open(path: &Path, capacity: usize, now: u64) -> io::Result<Self> {
        let mut used = HashMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Some(sig) = line.strip_prefix('-') {
                        used.remove(sig);
                    } else if let Some((sig, expires)) =
                        line.strip_prefix('+').and_then(|l| l.split_once(' '))
                    {
                        if let Ok(expires) = expires.parse::<u64>() {
                            used.insert(sig.to_string(), expires);
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        used.retain(|_, until| *until > now);
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            for (sig, expires) in &used {
                writeln!(f, "+{sig} {expires}")?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Replay {
            used,
            capacity,
            file: Some((path.to_path_buf(), file)),
        })
    }

    fn record(&mut self, line: &str) -> io::Result<()> {
        match &mut self.file {
            Some((_, f)) => {
                f.write_all(line.as_bytes())?;
                f.sync_data()
            }
            None => Ok(()),
        }
    }

    /// Reserves `sig` (valid until `expires`) if it was never used.
    pub fn reserve(&mut self, sig: &str, expires: u64, now: u64) -> Use {
        self.used.retain(|_, until| *until > now);
        if self.used.contains_key(sig) {
            return Use::Replayed;
        }
        if self.used.len() >= self.capacity {
            return Use::Full;
        }
        if let Err(e) = self.record(&format!("+{sig} {expires}\n")) {
            let path = self.file.as_ref().map(|(p, _)| p.display().to_string());
            return Use::Unrecorded(format!("{}: {e}", path.unwrap_or_default()));
        }
        self.used.insert(sig.to_string(), expires);
        Use::First
    }

    /// Forgets a reservation whose acknowledgement failed, so the person
    /// can click again.
    pub fn release(&mut self, sig: &str) -> io::Result<()> {
        self.used.remove(sig);
        self.record(&format!("-{sig}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_taken_once_until_it_expires() {
        let mut r = Replay::new(2);
        assert_eq!(r.reserve("a", 100, 10), Use::First);
        assert_eq!(r.reserve("a", 100, 11), Use::Replayed);
        assert_eq!(r.reserve("b", 100, 11), Use::First);
        assert_eq!(r.reserve("c", 100, 11), Use::Full);
        r.release("b").unwrap();
        assert_eq!(r.reserve("c", 100, 12), Use::First);
        // Past the expiry it is forgotten (the expiry refuses it first).
        assert_eq!(r.reserve("d", 200, 150), Use::First);
        assert_eq!(r.used.len(), 1);
    }

    #[test]
    fn a_state_file_remembers_uses_across_restarts_and_forgets_releases() {
        let dir = std::env::temp_dir().join(format!("ccn-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("used");
        let _ = std::fs::remove_file(&path);
        let mut r = Replay::open(&path, 10, 0).unwrap();
        assert_eq!(r.reserve("a", 100, 1), Use::First);
        assert_eq!(r.reserve("b", 100, 1), Use::First);
        assert_eq!(r.reserve("old", 5, 1), Use::First);
        r.release("b").unwrap();
        drop(r);
        let mut r = Replay::open(&path, 10, 10).unwrap();
        assert_eq!(r.reserve("a", 100, 11), Use::Replayed);
        assert_eq!(r.reserve("b", 100, 11), Use::First);
        drop(r);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("old"), "compacted: {text}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(Replay::open(&dir.join("x/used"), 10, 0).is_err());
    }
}
