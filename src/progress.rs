//! What the broker thread can observe of the sender threads: how far
//! Canopsis confirmed, whether requests fail, counters for the stats line.

use crate::transport::one_line;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// The last error, for the stats line.
    pub last_error: Mutex<Option<String>>,
}

/// Longest `last_error` kept for the stats line, in characters.
pub const LAST_ERROR_CHARS: usize = 200;

/// Work handed to each lane and not confirmed yet: `(first, last)` event
/// sequence numbers, oldest first.
#[derive(Debug, Default)]
struct Lanes {
    queues: Vec<VecDeque<(u64, u64)>>,
    handed: u64,
}

impl Lanes {
    /// Every event before the oldest unconfirmed one of any lane.
    fn watermark(&self) -> u64 {
        self.queues
            .iter()
            .filter_map(|q| q.front())
            .map(|(first, _)| first.saturating_sub(1))
            .min()
            .unwrap_or(self.handed)
    }
}

/// What the broker thread can observe of the sender.
#[derive(Debug)]
pub struct Progress {
    failing: AtomicBool,
    /// When a request last began or ended, or events were confirmed, in
    /// milliseconds since `born`.
    activity: AtomicU64,
    /// Requests waiting for their answer.
    pub(crate) in_flight: AtomicUsize,
    /// What each lane was handed and has not confirmed.
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
            failing: AtomicBool::new(false),
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
    /// Sequence number up to which Canopsis confirmed every event handed
    /// over. It is worked out from what the lanes hold each time, never
    /// remembered: a lane may confirm its batch while an earlier event
    /// still waits in another lane's batch, not handed over yet, and a
    /// remembered figure would then count that event as delivered once it
    /// is handed over. So it means "everything up to here" only once every
    /// event up to there was handed over, as the connector makes sure
    /// before it acknowledges.
    pub fn delivered(&self) -> u64 {
        self.lanes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .watermark()
    }

    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
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

    /// Waits until `seq` is confirmed, at most `timeout`.
    pub fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.delivered() < seq {
            let now = Instant::now();
            if now >= deadline || self.failing() {
                return false;
            }
            guard = self
                .cv
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Notes that `lane` was handed the events `first..=last`. Each lane
    /// confirms its work in order; lanes overtake each other.
    pub(crate) fn handed(&self, lane: usize, first: u64, last: u64) {
        let mut l = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if l.queues.len() <= lane {
            l.queues.resize_with(lane + 1, VecDeque::new);
        }
        l.queues[lane].push_back((first, last));
        l.handed = l.handed.max(last);
    }

    /// `lane` confirmed its work up to `last`: every event before the
    /// oldest still unconfirmed in any lane is delivered.
    pub(crate) fn confirm(&self, lane: usize, last: u64) {
        {
            let mut l = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(q) = l.queues.get_mut(lane) {
                while q.front().is_some_and(|(_, l)| *l <= last) {
                    q.pop_front();
                }
            }
        }
        self.stir();
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.failing.swap(false, Ordering::AcqRel) {
            // The stats line shows what is wrong now, not what was.
            *self
                .stats
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
        }
        self.cv.notify_all();
    }

    pub(crate) fn set_failing(&self, error: &str) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.failing.store(true, Ordering::Release);
        *self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(one_line(error, LAST_ERROR_CHARS));
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_is_one_short_line() {
        let p = Progress::default();
        p.set_failing(&format!("HTTP 502: <html>\n{}", "x".repeat(1000)));
        let e = p.stats.last_error.lock().unwrap().clone().unwrap();
        assert!(e.chars().count() <= LAST_ERROR_CHARS + 1, "{}", e.len());
        assert!(!e.contains('\n') && e.contains("<html>\\n"), "{e}");
        p.handed(0, 1, 1);
        p.confirm(0, 1);
        assert!(p.stats.last_error.lock().unwrap().is_none());
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
