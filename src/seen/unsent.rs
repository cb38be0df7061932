//! The downtimes whose start the connector did not send.
//!
//! A downtime's end deletes its pbehavior; when the start was refused (a
//! state filter, an author...) there is none, and the DELETE only earns a
//! 404 (two, with the Lua connector's name tried after). The memory is a
//! journal next to the log, one line per change, compacted when read back
//! at start and when it grows, so a downtime that outlives a broker restart
//! is still known. Forgetting is harmless (a DELETE answered 404, which
//! counts as done); remembering a start that was sent would leave its
//! pbehavior behind, so a start sent after all (replayed after a restart)
//! is forgotten at once.

use crate::cache::Ids;
use crate::event::DowntimeEvent;
use crate::logger::Logger;
use crate::replace::{self, Durability};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Downtimes remembered at most; beyond, the oldest are forgotten.
pub const MAX_REMEMBERED: usize = 10_000;

/// A downtime: host id, service id (0 for a host), downtime id, entry
/// time, as in its pbehavior's name.
type Key = (u64, u64, u64, i64);

fn key(d: &DowntimeEvent) -> Key {
    (
        d.host_id.unwrap_or(0),
        d.service_id.unwrap_or(0),
        d.id.unwrap_or(0),
        d.entry_time.unwrap_or(0),
    )
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct UnsentStarts {
    set: Ids<Key, ()>,
    /// Insertion order, for forgetting the oldest; may hold keys already
    /// forgotten (skipped, and dropped when it doubles the set).
    order: VecDeque<Key>,
    journal: Option<Journal>,
}

struct Journal {
    path: PathBuf,
    /// Opened when there is something to write (no file for a connector
    /// that never refused a downtime start).
    file: Option<File>,
    /// Lines appended since the file was last compacted.
    lines: usize,
    log: Logger,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Journal({}, {} lines)", self.path.display(), self.lines)
    }
}

impl UnsentStarts {
    /// Reads back what a previous run left at `path` and keeps appending
    /// there; in memory only (with one warning) when the file cannot be
    /// used.
    pub fn open(path: &Path, log: &Logger) -> UnsentStarts {
        let mut u = UnsentStarts::default();
        let found = match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    u.apply(line);
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                log.warn(format_args!(
                    "cannot read {} ({e}): the end of a downtime whose start was not sent may send a DELETE Canopsis answers 404",
                    path.display()
                ));
                false
            }
        };
        if !u.set.is_empty() {
            log.info(format_args!(
                "{}: {} downtime(s) whose start was not sent: their end deletes nothing",
                path.display(),
                u.set.len()
            ));
        }
        let mut journal = Journal {
            path: path.to_path_buf(),
            file: None,
            lines: 0,
            log: log.clone(),
        };
        if found {
            match compact(path, &u) {
                Ok(file) => journal.file = Some(file),
                Err(e) => {
                    journal.failed(&e);
                    return u;
                }
            }
        }
        u.journal = Some(journal);
        u
    }

    /// One journal line: `+ <key>` remembers, `- <key>` forgets.
    fn apply(&mut self, line: &str) {
        let mut words = line.split(' ');
        let sign = words.next();
        let n: Vec<i64> = words.map_while(|w| w.parse().ok()).collect();
        let [h, s, id, entry] = n[..] else {
            return;
        };
        let k = (h.max(0) as u64, s.max(0) as u64, id.max(0) as u64, entry);
        match sign {
            Some("+") => self.insert(k),
            Some("-") => {
                self.set.remove(&k);
            }
            _ => {}
        }
    }

    fn insert(&mut self, k: Key) {
        if self.set.insert(k, ()).is_some() {
            return;
        }
        self.order.push_back(k);
        while self.set.len() > MAX_REMEMBERED {
            match self.order.pop_front() {
                Some(old) => {
                    self.set.remove(&old);
                }
                None => break,
            }
        }
        if self.order.len() > 2 * self.set.len() + 64 {
            let set = &self.set;
            self.order.retain(|k| set.contains_key(k));
        }
    }

    /// Notes a downtime start: `sent` or not.
    pub fn note(&mut self, d: &DowntimeEvent, sent: bool) {
        let k = key(d);
        if sent {
            if self.set.remove(&k).is_some() {
                self.record('-', k);
            }
        } else if !self.set.contains_key(&k) {
            self.insert(k);
            self.record('+', k);
        }
    }

    /// Whether the downtime's start was not sent; forgets it (its end came).
    pub fn forget(&mut self, d: &DowntimeEvent) -> bool {
        let k = key(d);
        let known = self.set.remove(&k).is_some();
        if known {
            self.record('-', k);
        }
        known
    }

    /// How many downtimes are remembered.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn record(&mut self, sign: char, (h, s, id, entry): Key) {
        let Some(mut j) = self.journal.take() else {
            return;
        };
        j.lines += 1;
        let written = match &mut j.file {
            Some(file) if j.lines <= 2 * self.set.len() + 1024 => {
                writeln!(file, "{sign} {h} {s} {id} {entry}")
            }
            _ => compact(&j.path, self).map(|file| {
                j.file = Some(file);
                j.lines = 0;
            }),
        };
        match written {
            Ok(()) => self.journal = Some(j),
            Err(e) => j.failed(&e),
        }
    }
}

impl Journal {
    fn failed(&self, e: &io::Error) {
        self.log.warn(format_args!(
            "cannot write {} ({e}): downtime starts not sent are remembered until the next restart only",
            self.path.display()
        ));
    }
}

/// Rewrites the journal with what is remembered (through a temporary file,
/// so a crash leaves the previous one whole) and opens it for appending.
fn compact(path: &Path, u: &UnsentStarts) -> io::Result<File> {
    let mut out = Vec::with_capacity(u.set.len() * 32);
    for k in u.order.iter().filter(|k| u.set.contains_key(*k)) {
        writeln!(out, "+ {} {} {} {}", k.0, k.1, k.2, k.3)?;
    }
    replace::file(path, &out, 0o640, Durability::Unsynced)?;
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(id: u64) -> DowntimeEvent {
        DowntimeEvent {
            host_id: Some(1),
            service_id: Some(2),
            id: Some(id),
            entry_time: Some(50),
            ..DowntimeEvent::default()
        }
    }

    fn journal(name: &str) -> PathBuf {
        crate::scratch::dir(&format!("unsent-{name}")).join("c.unsent-downtimes")
    }

    #[test]
    fn survives_a_restart_and_forgets_what_ended_or_was_sent() {
        let path = journal("restart");
        let log = Logger::memory(log::LevelFilter::Debug);
        let mut u = UnsentStarts::open(&path, &log);
        u.note(&dt(1), false);
        u.note(&dt(2), false);
        u.note(&dt(3), false);
        u.note(&dt(3), true);
        drop(u);
        let mut u = UnsentStarts::open(&path, &log);
        assert_eq!(u.len(), 2);
        assert!(!u.forget(&dt(3)), "sent after all");
        assert!(u.forget(&dt(1)));
        assert!(!u.forget(&dt(1)), "once");
        drop(u);
        let u = UnsentStarts::open(&path, &log);
        assert_eq!(u.len(), 1);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "+ 1 2 2 50\n",
            "compacted at start"
        );
    }

    #[test]
    fn bounded_and_compacted_as_it_runs() {
        let path = journal("bounded");
        let log = Logger::memory(log::LevelFilter::Debug);
        let mut u = UnsentStarts::open(&path, &log);
        for id in 0..(MAX_REMEMBERED as u64 + 10) {
            u.note(&dt(id), false);
        }
        assert_eq!(u.len(), MAX_REMEMBERED);
        assert!(!u.forget(&dt(0)), "the oldest went first");
        assert!(u.forget(&dt(MAX_REMEMBERED as u64 + 9)));
        for id in 0..(MAX_REMEMBERED as u64 + 10) {
            u.forget(&dt(id));
        }
        assert!(u.is_empty());
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 2 * MAX_REMEMBERED, "{lines}");
        assert!(UnsentStarts::open(&path, &log).is_empty());
    }

    #[test]
    fn no_file_until_a_start_is_not_sent() {
        let path = journal("lazy");
        let log = Logger::memory(log::LevelFilter::Debug);
        let mut u = UnsentStarts::open(&path, &log);
        u.note(&dt(1), true);
        assert!(!path.exists());
        u.note(&dt(2), false);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "+ 1 2 2 50\n");
    }

    #[test]
    fn works_in_memory_when_the_file_cannot_be_written() {
        let log = Logger::memory(log::LevelFilter::Debug);
        let mut u = UnsentStarts::open(Path::new("/nonexistent-dir/x.unsent-downtimes"), &log);
        u.note(&dt(1), false);
        assert!(u.forget(&dt(1)));
        assert!(log.lines().iter().any(|l| l.contains("cannot write")));
    }
}
