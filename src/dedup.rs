//! When a status is a state change worth sending (`enable_*_status_dedup`).
//!
//! Two tests, both needed on a real engine:
//!
//! - [`reports_change`], the Lua library's rule on the engine's stamps: a
//!   status reports its hard state change when `last_hard_state_change`
//!   matches `last_check` (or BBDO 2's `last_update`). A service is stamped
//!   with its check time exactly; a host with the time the engine processed
//!   the result, a second or more after the check, so hosts are allowed
//!   `delta_host_status_change_allow` seconds (20 by default).
//! - [`Sent`]: the stamp rule also holds for every status that follows a
//!   change within that window (a host checked every 15 s repeats its
//!   change at least once; acknowledging or removing an acknowledgement
//!   re-sends the status without a new check). So the connector remembers,
//!   per object, which state it last sent, identified by the engine's own
//!   `last_hard_state_change`, and does not send that state again.
//!
//! The memory outlives a broker restart (cbd replays what the engine
//! produced meanwhile, repeats of changes already sent included): it is
//! saved next to the log when the Lua state closes with everything
//! acknowledged, and read back at start. It is not saved otherwise, since
//! broker replays unacknowledged events and those must not be taken for
//! repeats.

use crate::cache::Ids;
use crate::event::StatusEvent;
use crate::rejection::{Rejection, Stamps};
use crate::replace::{self, Durability};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The Lua library's test: whether `s` carries its hard state change, as
/// the engine stamped it. `host_delta` is `Some` for a host status.
///
/// Unset stamps (BBDO 2 leaves them out, BBDO 3 sends 0 or -1) mean "never
/// changed" for hosts; for services an unset pair compares equal, as in Lua.
pub fn reports_change(s: &StatusEvent, host_delta: Option<i64>) -> Result<(), Rejection> {
    let change = s.last_hard_state_change;
    let near = |t: Option<i64>| match (host_delta, change, t) {
        (Some(delta), Some(c), Some(t)) => (c - t).abs() <= delta,
        (Some(_), _, _) => false,
        (None, c, t) => c == t,
    };
    // BBDO 2 may leave out either stamp: each stands for the other, as the
    // Lua library fills them from each other.
    let last_check = s.last_check.or(s.last_update);
    if near(last_check) || (s.last_update.is_some() && near(s.last_update)) {
        Ok(())
    } else {
        Err(Rejection::Duplicate(Stamps::of(s, host_delta)))
    }
}

/// Where the memory is kept between runs: next to the log,
/// `<logfile stem>.sent-states`.
pub fn path_for(logfile: &Path) -> PathBuf {
    crate::logger::beside(logfile, ".sent-states")
}

/// What identifies a reported state: the engine's stamp of the change, the
/// state, and whether it is HARD.
type Reported = (i64, i64, i64);

/// Whether `now` reports what `before` did: the same change, or the same
/// state the engine only stamped after it was sent (an object's first
/// state is sent unstamped, `crate::seen::news`; the engine stamps it a
/// few seconds later).
fn same_report(before: Reported, now: Reported) -> bool {
    before == now || (before.0 == 0 && (before.1, before.2) == (now.1, now.2))
}

/// The state last sent for each object.
///
/// One entry per host and service, so it is bounded by the configuration.
/// Only states whose event was queued for sending are remembered: a change
/// the filters held back (in downtime, acknowledged), that custom code
/// dropped or failed on, or that could not be formatted, is sent when a
/// later status of it gets through, as the Lua connector does.
///
/// Asking and remembering are two steps ([`Sent::check`], then
/// [`Sent::record`] with what the check answered): the check comes first, so
/// repeats are filtered before any costly work, and the memory changes only
/// once nothing can drop the event any more.
#[derive(Debug, Default)]
pub struct Sent {
    map: Ids<(u64, u64), Reported>,
}

/// A state its object has not sent yet, as [`Sent::check`] found it: what
/// [`Sent::record`] remembers once the event is queued. Plain data on the
/// stack, so carrying it costs an accepted event nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsent {
    key: (u64, u64),
    reported: Reported,
}

impl Sent {
    /// `Err` when `s` reports the state last sent for its object;
    /// otherwise what to [`record`](Sent::record) once its event is queued
    /// (`None` for a status without a host, which is never remembered).
    /// Changes nothing.
    pub fn check(&self, s: &StatusEvent, service: bool) -> Result<Option<Unsent>, Rejection> {
        let Some(host) = s.host_id else {
            return Ok(None);
        };
        let key = (
            host,
            if service {
                s.service_id.unwrap_or(0)
            } else {
                0
            },
        );
        let reported = (
            s.last_hard_state_change.unwrap_or(0),
            s.state.unwrap_or(-1),
            s.state_type.unwrap_or(-1),
        );
        match self.map.get(&key) {
            Some(before) if same_report(*before, reported) => Err(Rejection::AlreadySent {
                state: s.state,
                last_hard_state_change: s.last_hard_state_change,
            }),
            _ => Ok(Some(Unsent { key, reported })),
        }
    }

    /// Remembers a state as sent: called once its event is queued (handed
    /// to the batcher or the spool), never before.
    pub fn record(&mut self, state: Unsent) {
        self.map.insert(state.key, state.reported);
    }

    /// The state last sent for an object (host id, service id or 0):
    /// the engine's stamp of its change, the state, the state type.
    pub fn last(&self, object: (u64, u64)) -> Option<(i64, i64, i64)> {
        self.map.get(&object).copied()
    }

    /// Reads what a previous run saved at `path`; nothing if there is no
    /// such file. Unreadable lines are skipped: forgetting costs at most a
    /// state sent twice.
    pub fn load(path: &Path) -> io::Result<Sent> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Sent::default()),
            Err(e) => return Err(e),
        };
        let mut sent = Sent::default();
        for line in text.lines() {
            let n: Vec<i64> = line.split(' ').map_while(|w| w.parse().ok()).collect();
            if let [host, service, stamp, state, state_type] = n[..] {
                if host > 0 && service >= 0 {
                    sent.map
                        .insert((host as u64, service as u64), (stamp, state, state_type));
                }
            }
        }
        Ok(sent)
    }

    /// Writes the memory to `path` (through a temporary file, so a crash
    /// leaves the previous one whole), readable by owner and group only.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut out = Vec::with_capacity(self.map.len() * 40);
        for ((host, service), (stamp, state, state_type)) in &self.map {
            writeln!(out, "{host} {service} {stamp} {state} {state_type}")?;
        }
        replace::file(path, &out, 0o640, Durability::Synced)
    }

    /// How many objects are remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
impl Sent {
    /// What the connector does with a status whose event it queues:
    /// [`check`](Sent::check), then [`record`](Sent::record). For tests
    /// that need a state already sent.
    pub(crate) fn queued(&mut self, s: &StatusEvent, service: bool) -> Result<(), Rejection> {
        if let Some(unsent) = self.check(s, service)? {
            self.record(unsent);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(lhsc: i64, last_check: i64, last_update: Option<i64>) -> StatusEvent {
        StatusEvent {
            host_id: Some(3),
            state: Some(1),
            state_type: Some(1),
            last_hard_state_change: Some(lhsc).filter(|t| *t > 0),
            last_check: Some(last_check).filter(|t| *t > 0),
            last_update,
            ..StatusEvent::default()
        }
    }

    /// Stamps as 23.10 writes them (shared/traces README, facts 1 and 2).
    #[test]
    fn hosts_are_allowed_the_engine_s_processing_delay_services_are_not() {
        // A host's change, stamped a second after its check.
        assert_eq!(reports_change(&status(101, 100, None), Some(20)), Ok(()));
        assert_eq!(reports_change(&status(120, 100, None), Some(20)), Ok(()));
        let late = reports_change(&status(121, 100, None), Some(20)).unwrap_err();
        assert_eq!(
            late.to_string(),
            "state did not change (dedup enabled): last_hard_state_change=121 last_check=100 last_update=unset (more than 20 s apart; delta_host_status_change_allow)"
        );
        // BBDO 2: last_update may be the one that matches.
        assert_eq!(
            reports_change(&status(130, 100, Some(131)), Some(20)),
            Ok(())
        );
        // A service is stamped with its check time exactly.
        assert_eq!(reports_change(&status(100, 100, None), None), Ok(()));
        assert!(reports_change(&status(101, 100, None), None).is_err());
        assert_eq!(reports_change(&status(101, 100, Some(101)), None), Ok(()));
        // A host that never changed (stamp 0) reports nothing.
        assert!(reports_change(&status(0, 100, None), Some(20)).is_err());
        // Without last_check, last_update stands in.
        let mut s = status(100, 0, Some(101));
        assert_eq!(reports_change(&s, Some(20)), Ok(()));
        s.last_update = None;
        assert!(reports_change(&s, Some(20)).is_err());
    }

    #[test]
    fn a_state_is_sent_once_per_change() {
        let mut sent = Sent::default();
        let change = status(101, 100, None);
        assert_eq!(sent.queued(&change, false), Ok(()));
        // The next check, 15 s later, repeats the same change.
        assert!(matches!(
            sent.queued(&status(101, 115, None), false),
            Err(Rejection::AlreadySent { .. })
        ));
        // Another object, or the same object as a service key, is apart.
        let mut other = change.clone();
        other.host_id = Some(4);
        assert_eq!(sent.queued(&other, false), Ok(()));
        // A new change of the same host: new stamp.
        assert_eq!(sent.queued(&status(141, 140, None), false), Ok(()));
        // Back in the same second with another state (UNKNOWN then OK).
        let mut back = status(141, 140, None);
        back.state = Some(0);
        assert_eq!(sent.queued(&back, false), Ok(()));
        assert_eq!(sent.len(), 2);
    }

    #[test]
    fn a_state_checked_but_never_queued_is_not_remembered() {
        let mut sent = Sent::default();
        let change = status(101, 100, None);
        // Checked, then dropped (custom code failed, unformattable).
        assert!(matches!(sent.check(&change, false), Ok(Some(_))));
        assert!(sent.is_empty());
        // The engine repeats it: still unsent, so it goes this time.
        let repeat = status(101, 115, None);
        let unsent = sent.check(&repeat, false).unwrap().unwrap();
        sent.record(unsent);
        assert!(sent.check(&status(101, 130, None), false).is_err());
        // A status without a host is never remembered.
        let mut nobody = change.clone();
        nobody.host_id = None;
        assert_eq!(sent.check(&nobody, false), Ok(None));
    }

    #[test]
    fn the_memory_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("cn-dedup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_for(&dir.join("canopsis.log"));
        assert_eq!(path, dir.join("canopsis.sent-states"));
        assert!(Sent::load(&path).unwrap().is_empty(), "no file: nothing");
        let mut sent = Sent::default();
        sent.queued(&status(101, 100, None), false).unwrap();
        let mut svc = status(200, 200, None);
        svc.service_id = Some(34);
        sent.queued(&svc, true).unwrap();
        sent.save(&path).unwrap();
        std::fs::write(
            &path,
            std::fs::read_to_string(&path).unwrap() + "garbage line\n",
        )
        .unwrap();
        let again = Sent::load(&path).unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.check(&status(101, 115, None), false).is_err());
        assert!(again.check(&svc, true).is_err());
        assert!(matches!(
            again.check(&status(141, 140, None), false),
            Ok(Some(_))
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
