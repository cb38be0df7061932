//! The stats line, the status file and the reminders of a hold: what the
//! connector tells about itself.

use super::queue::Queue;
use super::{Connector, Hold};
use crate::status;
use crate::status::Status;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) received: u64,
    pub(super) accepted: u64,
    pub(super) filtered: u64,
    pub(super) malformed: u64,
    /// Events that could not be read (Lua memory error, stack overflow...).
    pub(super) read_errors: u64,
    /// Time broker's thread spent in `write` waiting so it could
    /// acknowledge: for Canopsis at the ack window, or for the spool's
    /// disk syncs.
    pub(super) waited: Duration,
}

impl Connector {
    pub(super) fn maybe_stats(&mut self, now: Instant) {
        if now >= self.next_stats {
            self.next_stats = now + self.cfg.stats_interval;
            self.log_stats();
            self.remind_hold();
        }
    }

    /// Says again why nothing is acknowledged, if it is not.
    pub(super) fn remind_hold(&self) {
        let unread = self.counters.read_errors;
        match &self.hold {
            None => {}
            Some(Hold::Unreadable) => self.log.error(format_args!(
                "not acknowledging: {unread} event(s) could not be read; broker keeps them until the output (or cbd) restarts"
            )),
            Some(Hold::InternalError { call, message }) => self.log.error(format_args!(
                "not acknowledging: internal error in {call} ({message}){}; broker keeps the events since until the output (or cbd) restarts",
                if unread > 0 {
                    format!(", and {unread} event(s) could not be read")
                } else {
                    String::new()
                }
            )),
        }
    }

    /// The figures of the stats line and the status file, now.
    pub(super) fn status(&self) -> Status {
        let p = self.outlet.progress();
        let s = &p.stats;
        let health = p.health();
        let state = if self.outlet.starting.is_some() {
            status::State::Starting
        } else if self.holding() {
            status::State::Holding
        } else if p.failing() {
            status::State::Failing
        } else {
            status::State::Ok
        };
        let last_error = match (&self.outlet.starting, health.error) {
            (Some(st), _) => Some(st.why.clone()),
            (None, Some(e)) => Some(e),
            (None, None) if self.holding() => Some(format!(
                "{} event(s) could not be read",
                self.counters.read_errors
            )),
            (None, None) => None,
        };
        let (waiting, spool_bytes) = match &self.queue {
            Queue::Handover(h) => (h.last_seq - p.delivered().min(h.last_seq), None),
            Queue::Spool(q) => {
                // Counted from the spool's checkpoint: it includes what an
                // earlier run left.
                let st = q.writer.as_ref().map(|w| w.stats()).unwrap_or_default();
                (st.pending + q.waiting.len() as u64, Some(st.bytes))
            }
        };
        let oldest_unacked_s = if self.unacked > 0 {
            self.unacked_since.elapsed().as_secs()
        } else {
            0
        };
        Status {
            version: env!("CARGO_PKG_VERSION"),
            written: status::unix_now(),
            period_s: self.cfg.stats_interval.as_secs(),
            state,
            unacked: self.unacked,
            oldest_unacked_s,
            waiting,
            dead_lettered: s.dead_lettered.load(Ordering::Relaxed),
            spool_bytes,
            spool_max_bytes: self.cfg.spool.as_ref().map(|sc| sc.max_bytes),
            failing_lanes: health.failing_lanes as u64,
            lanes: self.cfg.max_in_flight as u64,
            last_error,
            counters: status::Counters {
                received: self.counters.received,
                accepted: self.counters.accepted,
                sent: s.sent_events.load(Ordering::Relaxed),
                requests: s.requests.load(Ordering::Relaxed),
                failed_requests: s.failed_requests.load(Ordering::Relaxed),
            },
        }
    }

    /// Writes the health line, and the same figures to the status file.
    /// `last_error` stays last: it is free text.
    pub fn log_stats(&mut self) {
        let st = self.status();
        let s = &self.outlet.progress().stats;
        let spool = match &self.queue {
            Queue::Handover(_) => "spool=off".to_string(),
            Queue::Spool(q) => format!(
                "spool_bytes={} spool_full_waits={}{}",
                st.spool_bytes.unwrap_or_default(),
                q.full_waits,
                if q.broken { " spool=broken" } else { "" }
            ),
        };
        self.log.info(format_args!(
            "stats: received={} accepted={} filtered={} malformed={} read_errors={} waited_ms={} waiting={} sent={} requests={} failed_requests={} dead_lettered={} restarts={} unacked={} oldest_unacked_s={} failing_lanes={} lanes={} {spool} state={} last_error={}",
            st.counters.received,
            st.counters.accepted,
            self.counters.filtered,
            self.counters.malformed,
            self.counters.read_errors,
            self.counters.waited.as_millis(),
            st.waiting,
            st.counters.sent,
            st.counters.requests,
            st.counters.failed_requests,
            st.dead_lettered,
            s.restarts.load(Ordering::Relaxed),
            st.unacked,
            st.oldest_unacked_s,
            st.failing_lanes,
            st.lanes,
            st.state.name(),
            st.last_error.as_deref().unwrap_or("none"),
        ));
        self.status_file.write(&st, &self.log);
    }

    /// Writes the status file alone.
    pub(super) fn write_status(&mut self) {
        let st = self.status();
        self.status_file.write(&st, &self.log);
    }
}
