//! Events Canopsis will never take, kept for an admin instead of dropped.
//!
//! One JSON line per event: `{"time":<unix s>,"reason":"...","event":{...}}`.
//! The file is capped; past the cap each event goes to the log at error
//! level instead, so nothing disappears without a trace.

use crate::logger::Logger;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Size cap of the dead-letter file.
pub const MAX_BYTES: u64 = 100 * 1024 * 1024;

/// Appends refused events to the dead-letter file.
pub struct DeadLetter {
    path: PathBuf,
    log: Logger,
    /// The peer, as log lines name it.
    peer: &'static str,
}

impl DeadLetter {
    /// A dead-letter file at `path`.
    pub fn new(path: PathBuf, log: Logger) -> DeadLetter {
        DeadLetter {
            path,
            log,
            peer: "Canopsis",
        }
    }

    /// The same file, its log lines naming `peer` (Mattermost, a receiver).
    pub fn naming(self, peer: &'static str) -> DeadLetter {
        DeadLetter { peer, ..self }
    }

    /// Keeps `event` (one JSON value) with the reason it was refused. `Ok`
    /// once the line is on disk (`fdatasync`), or, past the size cap, in the
    /// log; only then may the event be acknowledged. `Err` when it could not
    /// be kept: the caller keeps the event and tries again later.
    pub fn keep(&self, reason: &str, event: &[u8]) -> std::io::Result<()> {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let reason_json = serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into());
        let mut line =
            format!("{{\"time\":{time},\"reason\":{reason_json},\"event\":").into_bytes();
        line.extend_from_slice(event);
        line.extend_from_slice(b"}\n");
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if size + line.len() as u64 > MAX_BYTES {
            self.log.error(format_args!(
                "{} will never take an event ({reason}); dead-letter file {} is full, the event: {}",
                self.peer,
                self.path.display(),
                String::from_utf8_lossy(event)
            ));
            return Ok(());
        }
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(&line)?;
                f.sync_data()
            });
        match &written {
            Ok(()) => self.log.error(format_args!(
                "{} will never take an event ({reason}); kept in {}",
                self.peer,
                self.path.display()
            )),
            Err(e) => self.log.error(format_args!(
                "{} will never take an event ({reason}) and it cannot be written to {} ({e}): it is kept unacknowledged and tried again",
                self.peer,
                self.path.display()
            )),
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_line_per_event_next_to_the_log() {
        let dir = std::env::temp_dir().join(format!("cn-dl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = crate::config::deadletter_path_for(&dir.join("canopsis-events-apiv2.log"));
        assert_eq!(path, dir.join("canopsis-events-apiv2.deadletter.jsonl"));
        let _ = std::fs::remove_file(&path);
        let log = Logger::memory(log::LevelFilter::Error);
        let dl = DeadLetter::new(path.clone(), log.clone());
        dl.keep("HTTP 400 \"bad\"", br#"{"a":1}"#).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "not readable by others: {mode:o}");
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["reason"], "HTTP 400 \"bad\"");
        assert_eq!(v["event"]["a"], 1);
        assert!(log.lines()[0].contains("kept in"));
        let nowhere = DeadLetter::new(dir.join("no-such-dir/x.jsonl"), log.clone());
        assert!(nowhere.keep("r", b"{}").is_err());
    }
}
