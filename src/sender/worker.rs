//! A lane's thread: takes its work in order, delivers it, and decides how
//! long to wait after a failure.

use super::{Feed, Routes, Shared, Watched, Work};
use crate::backoff::Backoff;
use crate::deadletter::DeadLetter;
use crate::logger::{panic_message, Logger};
use crate::sink::canopsis::pbehavior::Resolver;
use crate::sink::mattermost::threads::Threads;
use crossbeam_channel::Receiver;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(super) struct Worker {
    pub(super) transport: Watched,
    pub(super) dead: DeadLetter,
    pub(super) routes: Routes,
    /// Shared by the lanes, so reason and type are looked up (and the
    /// reason created) once.
    pub(super) resolver: Arc<Mutex<Resolver>>,
    pub(super) log: Logger,
    pub(super) shared: Arc<Shared>,
    pub(super) wake: Receiver<()>,
    pub(super) backoff: Backoff,
    /// Pbehavior changes dead-lettered in a row, none taken in between.
    pub(super) pbh_refused_in_a_row: u32,
    /// Its lane.
    pub(super) lane: usize,
    /// Whether its work comes from the spool.
    pub(super) spooled: bool,
    /// When its last request began (Mattermost's pace).
    pub(super) last_request: Option<Instant>,
    /// The roots of Mattermost's open threads (threads through a bot
    /// account: the one lane's, loaded when it starts).
    pub(super) threads: Threads,
}

pub(super) enum Attempt {
    Done,
    Again(Option<Duration>),
}

/// Shortest pause after a configuration fault: an admin has to act.
pub(super) const CONFIG_FAULT_PAUSE: Duration = if cfg!(test) {
    Duration::from_millis(300)
} else {
    Duration::from_secs(30)
};

/// What the sender loop does after one step.
enum Flow {
    Next,
    Stop,
}

impl Worker {
    pub(super) fn run(&mut self, mut feed: Feed) {
        // The work being delivered: kept across an internal error so the
        // loop, started over, sends it again.
        let mut current: Option<Work> = None;
        if self.lane == 0 {
            self.check_downtime_route();
            self.load_threads();
        }
        loop {
            let step = catch_unwind(AssertUnwindSafe(|| {
                if current.is_none() {
                    current = feed.next().map(|w| feed.gather(w, &self.routes));
                }
                let Some(work) = &current else {
                    return Flow::Stop;
                };
                if !self.budget_spent() && self.deliver(work) {
                    let last = work.last_seq();
                    current = None;
                    self.shared.progress.confirm(self.lane, last);
                    return Flow::Next;
                }
                // The connector says once, for every lane, what is handed
                // back and where it stays.
                self.log.debug(format_args!(
                    "lane {} stops: the connector is closing and its budget is spent; what it holds stays {}",
                    self.lane,
                    if self.spooled { "in the spool" } else { "in broker's retention" }
                ));
                Flow::Stop
            }));
            match step {
                Ok(Flow::Next) => {}
                Ok(Flow::Stop) => return,
                Err(payload) => {
                    let msg = panic_message(&*payload);
                    let progress = &self.shared.progress;
                    progress.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    progress.set_failing(self.lane, &format!("internal error in sender: {msg}"));
                    self.log.error(format_args!(
                        "sender caught an internal error ({msg}); starting over: events from #{} are sent again",
                        progress.delivered() + 1
                    ));
                    // `current` still holds the work.
                    self.forget_pbehavior_ids();
                    let delay = self.backoff.next(None);
                    if !self.pause(delay) {
                        return;
                    }
                }
            }
        }
    }

    /// Sends until confirmed (`true`) or the shutdown budget is spent.
    pub(super) fn deliver(&mut self, work: &Work) -> bool {
        match work {
            Work::Events(batch) => self.deliver_events(batch),
            Work::Downtime { action, .. } if self.routes.bulk => {
                self.deliver_bulk(std::slice::from_ref(action))
            }
            Work::Downtime { action, .. } => self.deliver_pbehavior(action),
            Work::Pbehaviors { actions, .. } => self.deliver_bulk(actions),
            Work::Unreadable { seq, reason } => self.keep_dead(
                &format!("spool record #{seq} cannot be read back: {reason}"),
                b"null",
            ),
        }
    }

    /// Keeps what Canopsis will never take in the dead-letter file, and
    /// counts it for the stats line. `false` when it could not be written:
    /// the caller keeps the event.
    pub(super) fn dead_letter(&self, reason: &str, event: &[u8]) -> bool {
        if self.dead.keep(reason, event).is_err() {
            return false;
        }
        self.shared
            .progress
            .stats
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// [`dead_letter`](Self::dead_letter), retrying with backoff until the
    /// file takes it; `false` when the close budget ran out first.
    pub(super) fn keep_dead(&mut self, reason: &str, event: &[u8]) -> bool {
        loop {
            if self.dead_letter(reason, event) {
                return true;
            }
            let step = self.failed("cannot write the dead-letter file", true, None);
            if !self.wait(step) {
                return false;
            }
        }
    }

    /// Waits as `step` says; `false` when no try is left.
    pub(super) fn wait(&self, step: Attempt) -> bool {
        match step {
            Attempt::Done => true,
            Attempt::Again(None) => false,
            Attempt::Again(Some(delay)) => self.pause(delay),
        }
    }

    /// Whether the connector is closing and its budget is spent.
    pub(super) fn budget_spent(&self) -> bool {
        self.shared.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Waits `delay` before the next try, or less when woken by the
    /// connector closing, never past its close budget; `false` if no try
    /// is left in that budget.
    pub(super) fn pause(&self, delay: Duration) -> bool {
        let delay = match self.shared.deadline() {
            Some(d) => delay.min(d.saturating_duration_since(Instant::now())),
            None => delay,
        };
        if !delay.is_zero() {
            let _ = self.wake.recv_timeout(delay);
        }
        !self.budget_spent()
    }

    /// Logs a failed attempt and picks the pause before the next one;
    /// `Again(None)` when the shutdown budget leaves no room for it.
    pub(super) fn failed(
        &mut self,
        reason: &str,
        config_fault: bool,
        hint: Option<Duration>,
    ) -> Attempt {
        let progress = &self.shared.progress;
        progress
            .stats
            .failed_requests
            .fetch_add(1, Ordering::Relaxed);
        let mut delay = self.backoff.next(hint);
        if config_fault {
            // An admin has to act; retrying fast would only fill the log.
            delay = delay.max(CONFIG_FAULT_PAUSE);
        }
        let what = if config_fault {
            "configuration problem"
        } else {
            "send failed"
        };
        progress.set_failing(self.lane, reason);
        // Closing: what is left of the budget bounds the pause, and the
        // log says the pause actually taken.
        let step = match self.shared.deadline() {
            None => Attempt::Again(Some(delay)),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left < Duration::from_millis(100) {
                    Attempt::Again(None)
                } else {
                    Attempt::Again(Some(delay.min(left / 2)))
                }
            }
        };
        match step {
            Attempt::Again(Some(pause)) => self.log.error(format_args!(
                "{what}: {reason}; events are kept and retried in {:.1}s",
                pause.as_secs_f32()
            )),
            _ => self.log.error(format_args!(
                "{what}: {reason}; the connector is closing: events are kept, not retried"
            )),
        }
        step
    }
}
