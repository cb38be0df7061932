//! Events Canopsis will never take, kept for an admin instead of dropped.
//!
//! One JSON line per event: `{"time":<unix s>,"reason":"...","event":{...}}`.
//! The file is capped; past the cap each event goes to the log at error
//! level instead, so nothing disappears without a trace.

use crate::logger::Logger;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Size cap of the dead-letter file.
pub const MAX_BYTES: u64 = 100 * 1024 * 1024;

/// The dead-letter file: next to the log, `<logfile stem>.deadletter.jsonl`.
pub fn path_for(logfile: &Path) -> PathBuf {
    crate::logger::beside(logfile, ".deadletter.jsonl")
}

/// Appends refused events to the dead-letter file.
pub struct DeadLetter {
    path: PathBuf,
    log: Logger,
}

impl DeadLetter {
    /// A dead-letter file at `path`.
    pub fn new(path: PathBuf, log: Logger) -> DeadLetter {
        DeadLetter { path, log }
    }

    /// Keeps `event` (one JSON value) with the reason it was refused.
    pub fn keep(&self, reason: &str, event: &[u8]) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let reason_json = serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into());
        let mut line =
            format!("{{\"time\":{time},\"reason\":{reason_json},\"event\":").into_bytes();
        line.extend_from_slice(event);
        line.extend_from_slice(b"}\n");
        let written = (|| -> std::io::Result<bool> {
            let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
            if size + line.len() as u64 > MAX_BYTES {
                return Ok(false);
            }
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            f.write_all(&line)?;
            Ok(true)
        })();
        match written {
            Ok(true) => self.log.error(format_args!(
                "Canopsis refused an event ({reason}); kept in {}",
                self.path.display()
            )),
            Ok(false) => self.log.error(format_args!(
                "Canopsis refused an event ({reason}); dead-letter file {} is full, the event: {}",
                self.path.display(),
                String::from_utf8_lossy(event)
            )),
            Err(e) => self.log.error(format_args!(
                "Canopsis refused an event ({reason}); cannot write {} ({e}), the event: {}",
                self.path.display(),
                String::from_utf8_lossy(event)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_line_per_event_next_to_the_log() {
        let dir = std::env::temp_dir().join(format!("cn-dl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_for(&dir.join("canopsis-events-apiv2.log"));
        assert_eq!(path, dir.join("canopsis-events-apiv2.deadletter.jsonl"));
        let _ = std::fs::remove_file(&path);
        let log = Logger::memory(log::LevelFilter::Error);
        let dl = DeadLetter::new(path.clone(), log.clone());
        dl.keep("HTTP 400 \"bad\"", br#"{"a":1}"#);
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["reason"], "HTTP 400 \"bad\"");
        assert_eq!(v["event"]["a"], 1);
        assert!(log.lines()[0].contains("kept in"));
    }
}
