//! What the connector itself has seen, where broker cannot tell it:
//!
//! - [`HardStates`]: each object's last HARD state, for the state filters
//!   of downtime starts (`dt_host_status`, `dt_service_status`) and a
//!   downtime template's `{state}`. On BBDO 2 broker's cache keeps a host's
//!   or service's `state` at what its configuration event said (4,
//!   pending, `checked` false) and never takes it from statuses
//!   (`shared/traces` README, fact 15), so no downtime start passed a state
//!   filter there.
//! - [`UnsentStarts`]: the downtimes whose start was not sent, so their end
//!   does not delete a pbehavior that was never created. Kept on disk: a
//!   downtime often outlives a broker restart.
//! - [`news`]: when a HARD status is news for Canopsis although the
//!   engine's stamps say it repeats a change (an object's first state, a
//!   change a downtime or an acknowledgement hid), judged on what the
//!   connector sent.

pub mod news;
mod states;
mod unsent;

pub use states::{HardStates, Overlay};
pub use unsent::{UnsentStarts, MAX_REMEMBERED};

use crate::cache::Cache;
use crate::config::{FilterConfig, FormatConfig};
use crate::downtime::{self, Phase};
use crate::event::NebEvent;
use crate::filter;
use crate::logger::Logger;
use crate::rejection::Rejection;
use crate::subject::Subject;
use std::path::{Path, PathBuf};

/// Where the downtime starts not sent are kept between runs: next to the
/// log, `<logfile stem>.unsent-downtimes`.
pub fn path_for(logfile: &Path) -> PathBuf {
    crate::logger::beside(logfile, ".unsent-downtimes")
}

/// Both memories, as the connector holds them.
#[derive(Debug, Default)]
pub struct Seen {
    states: HardStates,
    unsent: UnsentStarts,
}

impl Seen {
    /// Object states start empty; the downtime starts not sent are read
    /// back from what a previous run left next to `logfile`.
    pub fn load(logfile: &Path, log: &Logger) -> Seen {
        Seen {
            states: HardStates::default(),
            unsent: UnsentStarts::open(&path_for(logfile), log),
        }
    }

    /// Notes what a status tells of its object; called for every status
    /// the connector reads, before the filters (they may drop it).
    pub fn status(&mut self, ev: &NebEvent) {
        if let NebEvent::Host(s) | NebEvent::Service(s) = ev {
            self.states.observe(s, matches!(ev, NebEvent::Service(_)));
        }
    }

    /// [`filter::check`] for a downtime event, the object's state taken
    /// from what the connector saw ([`Overlay`]); the end of a downtime
    /// whose start was not sent is refused ([`Rejection::StartNotSent`]).
    pub fn check_downtime(
        &mut self,
        cfg: &FilterConfig,
        fmt: &FormatConfig,
        ev: &NebEvent,
        cache: &mut dyn Cache,
    ) -> Result<Subject, Rejection> {
        let NebEvent::Downtime(d) = ev else {
            return filter::check(cfg, fmt, ev, cache);
        };
        let phase = downtime::phase(d).ok();
        if phase == Some(Phase::End) && self.unsent.forget(d) {
            return Err(Rejection::StartNotSent);
        }
        let verdict = filter::check(cfg, fmt, ev, &mut self.states.over(cache));
        if phase == Some(Phase::Start) {
            self.unsent.note(d, verdict.is_ok());
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, tests::minimal, ParamValue};
    use crate::event::{DowntimeEvent, StatusEvent};
    use crate::filter::tests::cache;

    fn downtime(host: u64, service: u64, started: bool, deleted: bool) -> NebEvent {
        NebEvent::Downtime(DowntimeEvent {
            host_id: Some(host),
            service_id: Some(service),
            id: Some(7),
            entry_time: Some(100),
            start_time: Some(100),
            end_time: Some(200),
            actual_start_time: started.then_some(100),
            deletion_time: deleted.then_some(200),
            started,
            ..DowntimeEvent::default()
        })
    }

    fn hard(state: i64, bbdo2: bool) -> NebEvent {
        NebEvent::Service(StatusEvent {
            host_id: Some(12),
            service_id: Some(34),
            state: Some(state),
            state_type: Some(1),
            last_check: Some(1_000),
            last_update: bbdo2.then_some(1_001),
            last_hard_state_change: Some(1_000),
            ..StatusEvent::default()
        })
    }

    fn quiet() -> Logger {
        Logger::memory(log::LevelFilter::Debug)
    }

    fn cfg(extra: &[(&str, &str)]) -> config::Config {
        let mut p = minimal();
        for (k, v) in extra {
            p.insert(k.to_string(), ParamValue::Str(v.to_string()));
        }
        config::parse(&p).unwrap().config
    }

    #[test]
    fn a_downtime_start_takes_the_state_the_connector_saw() {
        let dir = crate::scratch::dir("seen-saw");
        let mut seen = Seen::load(&dir.join("c.log"), &quiet());
        let c = cfg(&[("dt_service_status", "0")]);
        // broker's cache says pending (BBDO 2, the configuration's value).
        let mut pending = cache();
        pending.services.get_mut(&(12, 34)).unwrap().state = Some(4);
        let start = downtime(12, 34, true, false);
        // Pending is no state: it does not block the start.
        let subj = seen.check_downtime(&c.filter, &c.format, &start, &mut pending);
        assert_eq!(subj.unwrap().service_info.state, None);
        seen.status(&hard(2, true));
        assert_eq!(
            seen.check_downtime(&c.filter, &c.format, &start, &mut pending),
            Err(Rejection::State(Some(2)))
        );
        seen.status(&hard(0, true));
        let subj = seen.check_downtime(&c.filter, &c.format, &start, &mut pending);
        assert_eq!(subj.unwrap().service_info.state, Some(0));
    }

    #[test]
    fn the_cache_s_state_serves_when_real_and_not_on_bbdo2() {
        let dir = crate::scratch::dir("seen-cache");
        let mut seen = Seen::load(&dir.join("c.log"), &quiet());
        let c = cfg(&[("dt_service_status", "0")]);
        let start = downtime(12, 34, true, false);
        // The test cache says CRITICAL (2): a real state, BBDO 3 keeps it
        // current.
        assert_eq!(
            seen.check_downtime(&c.filter, &c.format, &start, &mut cache()),
            Err(Rejection::State(Some(2)))
        );
        // Statuses with `last_update` are BBDO 2: its cache is not current.
        let mut other = hard(0, true);
        if let NebEvent::Service(s) = &mut other {
            s.service_id = Some(99);
        }
        seen.status(&other);
        assert!(seen
            .check_downtime(&c.filter, &c.format, &start, &mut cache())
            .is_ok());
    }

    #[test]
    fn the_end_of_a_downtime_whose_start_was_refused_deletes_nothing_even_after_a_restart() {
        let logfile = crate::scratch::dir("seen-restart").join("c.log");
        let c = cfg(&[("dt_service_status", "0")]);
        let mut seen = Seen::load(&logfile, &quiet());
        seen.status(&hard(2, false));
        let start = downtime(12, 34, true, false);
        let end = downtime(12, 34, true, true);
        assert!(seen
            .check_downtime(&c.filter, &c.format, &start, &mut cache())
            .is_err());
        drop(seen);
        let mut seen = Seen::load(&logfile, &quiet());
        assert_eq!(
            seen.check_downtime(&c.filter, &c.format, &end, &mut cache()),
            Err(Rejection::StartNotSent)
        );
        // Forgotten once its end came: a replayed end deletes (harmless).
        assert!(seen
            .check_downtime(&c.filter, &c.format, &end, &mut cache())
            .is_ok());
        // A start sent after all (replayed after a restart) is deleted.
        let mut seen = Seen::load(&logfile, &quiet());
        seen.status(&hard(2, false));
        assert!(seen
            .check_downtime(&c.filter, &c.format, &start, &mut cache())
            .is_err());
        seen.status(&hard(0, false));
        assert!(seen
            .check_downtime(&c.filter, &c.format, &start, &mut cache())
            .is_ok());
        assert!(seen
            .check_downtime(&c.filter, &c.format, &end, &mut cache())
            .is_ok());
    }
}
