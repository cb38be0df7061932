//! The status file: the stats line's figures as a small JSON document
//! beside the log, replaced at every stats period, for a monitoring plugin
//! ([`check`], shipped as `centreon_canopsis_native_status`) to read.
//!
//! It holds counts and one error line, never a secret: the error is the
//! same one-line text the stats line shows (no auth key or proxy password
//! ever reaches those).

pub mod check;

use crate::logger::Logger;
use crate::replace::{self, Durability};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The status file of the connector logging to `logfile`:
/// `<logfile stem>.status.json` beside it.
pub fn path_for(logfile: &Path) -> PathBuf {
    crate::logger::beside(logfile, ".status.json")
}

/// What the connector is doing, as the stats line's `state=` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Delivering, or nothing to deliver.
    Ok,
    /// A lane holding work failed its last attempt.
    Failing,
    /// The spool or the sender could not be started yet.
    Starting,
    /// An event could not be read: nothing is acknowledged any more.
    Holding,
}

impl State {
    /// Its name in the stats line and the file.
    pub fn name(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Failing => "failing",
            State::Starting => "starting",
            State::Holding => "holding",
        }
    }
}

/// Counters since the connector started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Events broker handed over.
    pub received: u64,
    /// Events that passed the filters.
    pub accepted: u64,
    /// Events the peer confirmed.
    pub sent: u64,
    /// Requests made.
    pub requests: u64,
    /// Requests that failed.
    pub failed_requests: u64,
}

/// One status: the figures of one stats line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The connector's version.
    pub version: &'static str,
    /// When it was written, in seconds since the Unix epoch.
    pub written: u64,
    /// How often it is rewritten, in seconds (`stats_interval`): a file
    /// older than a few periods comes from a connector that stopped.
    pub period_s: u64,
    /// What the connector is doing.
    pub state: State,
    /// Events broker handed over and has not been told are safe.
    pub unacked: u64,
    /// Age of the oldest of them, in seconds (0 when there are none).
    pub oldest_unacked_s: u64,
    /// Events taken and not yet confirmed by the peer.
    pub waiting: u64,
    /// Events kept in the dead-letter file since the connector started.
    pub dead_lettered: u64,
    /// Bytes in the spool not yet confirmed; `None` without the spool.
    pub spool_bytes: Option<u64>,
    /// The spool's size limit; `None` without the spool.
    pub spool_max_bytes: Option<u64>,
    /// Lanes holding work whose last attempt failed.
    pub failing_lanes: u64,
    /// Lanes (`max_requests_in_flight`).
    pub lanes: u64,
    /// The error that makes the state what it is, on one line.
    pub last_error: Option<String>,
    /// Counters since the connector started.
    pub counters: Counters,
}

impl Status {
    /// The document as written: one JSON object and a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes a connector's status file; a failure is logged once per
/// `remind` and never stops anything.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    remind: Duration,
    /// When a failure may be logged again.
    quiet_until: Option<Instant>,
}

impl StatusFile {
    /// The status file at `path`.
    pub fn new(path: PathBuf, remind: Duration) -> StatusFile {
        StatusFile {
            path,
            remind,
            quiet_until: None,
        }
    }

    /// Where it is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `status`: a reader sees the old document or
    /// the new one, never part of one. Readable by the monitoring user
    /// (centreon-engine): figures only. Not synced to disk: the file is
    /// rewritten every period, and after a crash a stale or empty file is
    /// what a monitor should see anyway.
    pub fn write(&mut self, status: &Status, log: &Logger) {
        let written = replace::file(&self.path, &status.to_json(), 0o644, Durability::Unsynced);
        match written {
            Ok(()) => {
                if self.quiet_until.take().is_some() {
                    log.info(format_args!("{} is written again", self.path.display()));
                }
            }
            Err(e) => {
                let now = Instant::now();
                if self.quiet_until.is_none_or(|t| now >= t) {
                    self.quiet_until = Some(now + self.remind);
                    log.warn(format_args!(
                        "cannot write the status file {} ({e}); monitoring will see it stale, delivery goes on",
                        self.path.display()
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            version: env!("CARGO_PKG_VERSION"),
            written: 1_765_000_000,
            period_s: 60,
            state: State::Failing,
            unacked: 120,
            oldest_unacked_s: 75,
            waiting: 30,
            dead_lettered: 2,
            spool_bytes: None,
            spool_max_bytes: None,
            failing_lanes: 1,
            lanes: 16,
            last_error: Some("HTTP 500: mongo".into()),
            counters: Counters {
                received: 1000,
                accepted: 900,
                sent: 870,
                requests: 40,
                failed_requests: 7,
            },
        }
    }

    #[test]
    fn the_path_is_beside_the_log() {
        assert_eq!(
            path_for(Path::new(
                "/var/log/centreon-broker/canopsis-events-apiv2.log"
            )),
            Path::new("/var/log/centreon-broker/canopsis-events-apiv2.status.json")
        );
    }

    #[test]
    fn the_document_has_every_figure_and_nulls_without_a_spool() {
        let v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        for key in [
            "version",
            "written",
            "period_s",
            "state",
            "unacked",
            "oldest_unacked_s",
            "waiting",
            "dead_lettered",
            "spool_bytes",
            "spool_max_bytes",
            "failing_lanes",
            "lanes",
            "last_error",
        ] {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
        assert_eq!(v["state"], "failing");
        assert!(v["spool_bytes"].is_null() && v["spool_max_bytes"].is_null());
        assert_eq!(v["counters"]["failed_requests"], 7);
        assert_eq!(v["counters"]["received"], 1000);
    }

    #[test]
    fn it_is_replaced_whole_and_a_failure_is_logged_once() {
        let dir = crate::scratch::dir("status");
        let log = Logger::memory(log::LevelFilter::Info);
        let mut f = StatusFile::new(path_for(&dir.join("c.log")), Duration::from_secs(60));
        let mut st = sample();
        f.write(&st, &log);
        st.state = State::Ok;
        st.last_error = None;
        f.write(&st, &log);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
        assert_eq!(v["state"], "ok");
        assert!(v["last_error"].is_null());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["c.status.json"], "no temporary file left");
        // An unwritable place: logged once, not again within the period.
        let mut bad = StatusFile::new(
            dir.join("no-such-dir").join("c.status.json"),
            Duration::from_secs(60),
        );
        bad.write(&st, &log);
        bad.write(&st, &log);
        let complaints = log
            .lines()
            .iter()
            .filter(|l| l.contains("cannot write the status file"))
            .count();
        assert_eq!(complaints, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_connectors_own_document_is_understood() {
        let mut st = sample();
        st.written = 1_765_000_100;
        let d: serde_json::Value = serde_json::from_slice(&st.to_json()).unwrap();
        let a = check::evaluate(&d, 1_765_000_100, &check::Options::default());
        assert_eq!(a.code, check::Code::Warning);
        assert!(a.text.starts_with("WARNING: failing (1/16 lanes): HTTP 500: mongo - 120 unacknowledged, oldest 75s, 2 dead-lettered"), "{}", a.text);
    }
}
