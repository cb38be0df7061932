//! The outlet: the running sender, or, until it could be started, what it
//! needs and the work waiting for it.

use super::{REMINDER, START_RETRY};
use crate::logger::Logger;
use crate::progress::Progress;
use crate::sender::{Routes, Sender};
use crate::transport::Transport;
use crate::work::Work;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// The sender, or, until it could be started, what it needs and the work
/// waiting for it.
pub(super) struct Outlet {
    pub(super) sender: Option<Sender>,
    pub(super) starting: Option<Starting>,
    /// Work handed over before the sender ran (without the spool).
    pub(super) backlog: VecDeque<Work>,
    /// What is observed while no sender runs: nothing delivered.
    pub(super) idle: Arc<Progress>,
}

/// What a sender not started yet needs, and why it is not running.
pub(super) struct Starting {
    pub(super) transport: Box<dyn Transport>,
    pub(super) routes: Routes,
    pub(super) why: String,
    pub(super) since: Instant,
    pub(super) next_try: Instant,
    pub(super) next_log: Instant,
}

impl Starting {
    /// Notes a failed start; says so at once, then once per [`REMINDER`].
    pub(super) fn failed(&mut self, why: String, now: Instant, log: &Logger) {
        if now >= self.next_log || why != self.why {
            self.next_log = now + REMINDER;
            log.error(format_args!(
                "cannot start yet ({why}): events wait unacknowledged in broker; retrying every {}s",
                START_RETRY.as_secs()
            ));
        }
        self.why = why;
    }
}

impl Outlet {
    /// Hands work to the sender, or keeps it until one runs; `false` if
    /// the sender is gone.
    pub(super) fn send(&mut self, work: Work) -> bool {
        match &self.sender {
            Some(s) => s.send(work),
            None => {
                self.backlog.push_back(work);
                true
            }
        }
    }

    pub(super) fn progress(&self) -> &Arc<Progress> {
        self.sender.as_ref().map_or(&self.idle, |s| s.progress())
    }
}

pub(super) fn sender_gone(log: &Logger) {
    log.error(format_args!(
        "sender thread is gone; events stay unacknowledged"
    ));
}
