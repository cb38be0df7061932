//! What the broker thread can observe of the sender threads: how far
//! Canopsis confirmed, whether requests fail, counters for the stats line.

use crate::transport::one_line;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Counters for the periodic stats line.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events Canopsis confirmed.
    pub sent_events: AtomicU64,
    /// Requests made.
    pub requests: AtomicU64,
    /// Requests that failed (no answer, or an error answer).
    pub failed_requests: AtomicU64,
    /// Events Canopsis refused, kept in the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Times the sender loop caught an internal error and started over.
    pub restarts: AtomicU64,
}

/// Longest `last_error` kept for the stats line, in characters.
pub const LAST_ERROR_CHARS: usize = 200;

/// How a lane's last attempt went. Each lane has its own: a lane that
/// delivers says nothing about another stuck on retries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum LastAttempt {
    /// Nothing failed since the lane last confirmed its work.
    #[default]
    Fine,
    /// The last attempt failed, with this error (one short line).
    Failed(String),
}

/// One lane as the broker thread sees it.
#[derive(Debug, Default)]
struct Lane {
    /// Work handed to it and not confirmed yet: `(first, last)` event
    /// sequence numbers, oldest first.
    queue: VecDeque<(u64, u64)>,
    last_attempt: LastAttempt,
}

impl Lane {
    /// The error of its last attempt, if that failed while it holds work
    /// (a lane with nothing to do holds nothing back).
    fn failing(&self) -> Option<&str> {
        match (&self.last_attempt, self.queue.front()) {
            (LastAttempt::Failed(e), Some(_)) => Some(e),
            _ => None,
        }
    }

    /// The oldest event it holds, if any.
    fn oldest(&self) -> Option<u64> {
        self.queue.front().map(|(first, _)| *first)
    }
}

#[derive(Debug, Default)]
struct Lanes {
    lanes: Vec<Lane>,
    handed: u64,
}

impl Lanes {
    /// Every event before the oldest unconfirmed one of any lane.
    fn watermark(&self) -> u64 {
        self.lanes
            .iter()
            .filter_map(Lane::oldest)
            .map(|first| first.saturating_sub(1))
            .min()
            .unwrap_or(self.handed)
    }

    fn lane(&mut self, lane: usize) -> &mut Lane {
        if self.lanes.len() <= lane {
            self.lanes.resize_with(lane + 1, Lane::default);
        }
        &mut self.lanes[lane]
    }

    /// Whether a lane holding an event up to `seq` failed its last attempt:
    /// waiting for `seq` is waiting for that lane.
    fn blocked(&self, seq: u64) -> bool {
        self.lanes
            .iter()
            .any(|l| l.failing().is_some() && l.oldest().is_some_and(|first| first <= seq))
    }

    fn health(&self) -> Health {
        let failing = self.lanes.iter().filter(|l| l.failing().is_some());
        // The failing lane with the oldest work: the one holding
        // acknowledgements (its oldest work is the oldest of all) when it
        // fails, else the failing lane next in line to hold them.
        let error = failing
            .clone()
            .min_by_key(|l| l.oldest())
            .and_then(Lane::failing)
            .map(str::to_string);
        Health {
            failing_lanes: failing.count(),
            error,
        }
    }
}

/// The lanes' health at one moment, for the stats line and status file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Lanes holding work whose last attempt failed.
    pub failing_lanes: usize,
    /// The error of the lane holding acknowledgements if it fails, else of
    /// the failing lane with the oldest work; `None` when no lane fails.
    pub error: Option<String>,
}

/// What the broker thread can observe of the sender.
#[derive(Debug)]
pub struct Progress {
    /// Lanes holding work whose last attempt failed (kept beside `lanes`
    /// so [`failing`](Self::failing), asked on broker's thread, takes no
    /// lock).
    failing_lanes: AtomicUsize,
    /// When a request last began or ended, or events were confirmed, in
    /// milliseconds since `born`.
    activity: AtomicU64,
    /// Requests waiting for their answer.
    pub(crate) in_flight: AtomicUsize,
    /// What each lane was handed and has not confirmed, and how its last
    /// attempt went.
    lanes: Mutex<Lanes>,
    born: Instant,
    lock: Mutex<()>,
    cv: Condvar,
    /// Counters.
    pub stats: Stats,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            failing_lanes: AtomicUsize::new(0),
            activity: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            lanes: Mutex::new(Lanes::default()),
            born: Instant::now(),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            stats: Stats::default(),
        }
    }
}

impl Progress {
    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sequence number up to which Canopsis confirmed every event handed
    /// over. It is worked out from what the lanes hold each time, never
    /// remembered: a lane may confirm its batch while an earlier event
    /// still waits in another lane's batch, not handed over yet, and a
    /// remembered figure would then count that event as delivered once it
    /// is handed over. So it means "everything up to here" only once every
    /// event up to there was handed over, as the connector makes sure
    /// before it acknowledges.
    pub fn delivered(&self) -> u64 {
        self.lanes().watermark()
    }

    /// Whether a lane holding work failed its last attempt. Lanes that
    /// deliver do not hide it: each lane's success clears only its own
    /// failure.
    pub fn failing(&self) -> bool {
        self.failing_lanes.load(Ordering::Acquire) > 0
    }

    /// Each lane's health, summed up.
    pub fn health(&self) -> Health {
        self.lanes().health()
    }

    /// Notes that something moved (a request began or ended).
    pub(crate) fn stir(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.activity.store(ms, Ordering::Release);
    }

    /// Time since a request last began or ended or events were confirmed.
    pub fn still_for(&self) -> Duration {
        let ms = self.born.elapsed().as_millis() as u64;
        Duration::from_millis(ms.saturating_sub(self.activity.load(Ordering::Acquire)))
    }

    /// Waits until `seq` is confirmed, at most `timeout`; gives up at once
    /// while a lane holding an event up to `seq` is failing (it holds the
    /// wait, and retries on its own schedule).
    pub fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            {
                let lanes = self.lanes();
                if lanes.watermark() >= seq {
                    return true;
                }
                if lanes.blocked(seq) {
                    return false;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .cv
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Notes that `lane` was handed the events `first..=last`. Each lane
    /// confirms its work in order; lanes overtake each other.
    pub(crate) fn handed(&self, lane: usize, first: u64, last: u64) {
        let mut l = self.lanes();
        l.lane(lane).queue.push_back((first, last));
        l.handed = l.handed.max(last);
        // A lane that failed and ran dry holds work again: count it.
        self.recount(&l);
    }

    /// `lane` confirmed its work up to `last`: every event before the
    /// oldest still unconfirmed in any lane is delivered, and its own
    /// failure, if any, is over (another lane's is not).
    pub(crate) fn confirm(&self, lane: usize, last: u64) {
        {
            let mut l = self.lanes();
            let own = l.lane(lane);
            while own.queue.front().is_some_and(|(_, l)| *l <= last) {
                own.queue.pop_front();
            }
            own.last_attempt = LastAttempt::Fine;
            self.recount(&l);
        }
        self.stir();
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }

    /// `lane`'s last attempt failed with `error`.
    pub(crate) fn set_failing(&self, lane: usize, error: &str) {
        {
            let mut l = self.lanes();
            l.lane(lane).last_attempt = LastAttempt::Failed(one_line(error, LAST_ERROR_CHARS));
            self.recount(&l);
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }

    fn recount(&self, lanes: &Lanes) {
        let n = lanes.lanes.iter().filter(|l| l.failing().is_some()).count();
        self.failing_lanes.store(n, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_is_one_short_line() {
        let p = Progress::default();
        p.handed(0, 1, 1);
        p.set_failing(0, &format!("HTTP 502: <html>\n{}", "x".repeat(1000)));
        let e = p.health().error.unwrap();
        assert!(e.chars().count() <= LAST_ERROR_CHARS + 1, "{}", e.len());
        assert!(!e.contains('\n') && e.contains("<html>\\n"), "{e}");
        p.confirm(0, 1);
        assert_eq!(p.health(), Health::default());
    }

    #[test]
    fn a_healthy_lane_does_not_clear_a_stuck_lanes_failure() {
        let p = Progress::default();
        p.handed(0, 1, 2);
        p.handed(1, 3, 4);
        p.set_failing(0, "HTTP 500: stuck");
        assert!(p.failing());
        // Lane 1 goes on delivering, lane 0 keeps failing.
        p.confirm(1, 4);
        p.handed(1, 5, 6);
        p.confirm(1, 6);
        assert!(p.failing(), "lane 1's success cleared lane 0's failure");
        let h = p.health();
        assert_eq!(h.failing_lanes, 1);
        assert_eq!(h.error.as_deref(), Some("HTTP 500: stuck"));
        assert!(
            !p.wait_for(6, Duration::from_secs(5)),
            "waited on a stuck lane"
        );
        // Lane 0 delivers: nothing fails any more.
        p.confirm(0, 2);
        assert!(!p.failing());
        assert_eq!(p.health().error, None);
        assert!(p.wait_for(6, Duration::ZERO));
    }

    #[test]
    fn the_error_shown_is_the_one_of_the_lane_holding_acknowledgements() {
        let p = Progress::default();
        p.handed(0, 5, 6);
        p.handed(1, 1, 2);
        p.handed(2, 3, 4);
        p.set_failing(0, "lane 0 error");
        p.set_failing(2, "lane 2 error");
        // Lane 1 holds the oldest work and is fine: the oldest failing
        // lane's error is shown.
        let h = p.health();
        assert_eq!(h.failing_lanes, 2);
        assert_eq!(h.error.as_deref(), Some("lane 2 error"));
        // Waiting for lane 1's work alone is not blocked by the others.
        assert!(!p.lanes().blocked(2));
        assert!(p.lanes().blocked(4));
        // Lane 2 now holds acknowledgements: its error, though lane 0
        // failed after it.
        p.confirm(1, 2);
        p.set_failing(0, "lane 0 error, later");
        assert_eq!(p.health().error.as_deref(), Some("lane 2 error"));
        p.confirm(2, 4);
        assert_eq!(p.health().error.as_deref(), Some("lane 0 error, later"));
    }

    #[test]
    fn a_lane_without_work_is_not_failing_until_handed_work_again() {
        let p = Progress::default();
        p.handed(0, 1, 1);
        p.set_failing(0, "boom");
        // Its work was confirmed by an earlier pass (the lane stopped):
        // a failure with nothing held holds nothing back.
        p.lanes().lanes[0].queue.clear();
        p.recount(&p.lanes());
        assert!(!p.failing());
        p.handed(0, 2, 2);
        assert!(p.failing(), "the failed lane holds work again");
    }

    #[test]
    fn lanes_confirm_out_of_order_and_the_watermark_waits_for_the_oldest() {
        let p = Progress::default();
        p.handed(0, 1, 3);
        p.handed(1, 4, 4);
        p.handed(0, 5, 6);
        p.handed(1, 7, 9);
        p.confirm(1, 4);
        assert_eq!(p.delivered(), 0, "lane 0 still holds 1..=3");
        p.confirm(0, 3);
        assert_eq!(p.delivered(), 4, "5..=6 is lane 0's next");
        p.confirm(1, 9);
        assert_eq!(p.delivered(), 4);
        p.confirm(0, 6);
        assert_eq!(p.delivered(), 9);
        p.handed(2, 10, 10);
        assert_eq!(p.delivered(), 9);
        p.confirm(2, 10);
        assert_eq!(p.delivered(), 10);
    }

    #[test]
    fn an_event_still_in_a_lanes_batch_is_not_counted_delivered_once_handed() {
        let p = Progress::default();
        // Lane 0's batch holds 11 and 13 and is confirmed while 12 waits
        // in lane 1's batch, not handed over yet.
        p.handed(0, 11, 13);
        p.confirm(0, 13);
        p.handed(1, 12, 12);
        assert_eq!(p.delivered(), 11, "12 is in flight");
        p.confirm(1, 12);
        assert_eq!(p.delivered(), 13);
    }
}
