//! Closing a connector: what is handed over last, the time the sender
//! gets, the memories saved, and the one line that says what was left.

use super::queue::{hand_over, Queue};
use super::Connector;
use crate::sender::{Closed, Ending, CLOSE_BUDGET};
use crate::{dedup, spool};
use std::time::Duration;

impl Drop for Connector {
    fn drop(&mut self) {
        match &mut self.queue {
            Queue::Handover(h) => hand_over(h, &mut self.outlet, &self.log),
            Queue::Spool(q) => {
                if let (false, Some(writer)) = (q.broken, &mut q.writer) {
                    if let Err(e) = writer.commit() {
                        q.fail(&e, &self.log);
                    }
                }
            }
        }
        // While the peer is unreachable, waiting buys nothing: broker (or
        // the spool) keeps what is undelivered.
        let failing = self.outlet.progress().failing();
        let budget = if failing {
            Duration::ZERO
        } else {
            CLOSE_BUDGET
        };
        let closed = self.outlet.sender.as_mut().map(|s| s.close(budget));
        // Broker replays what it was not told is safe; a memory that
        // counted those as sent would drop them.
        if self.unacked == 0 && !self.holding() && !self.sent.is_empty() {
            let path = dedup::path_for(&self.cfg.logfile);
            if let Err(e) = self.sent.save(&path) {
                self.log.warn(format_args!(
                    "cannot write {} ({e}): after the restart a state change sent before it may be sent again",
                    path.display()
                ));
            }
        }
        self.log_stats();
        self.log_close(closed, failing);
    }
}

/// What a close hands back: events from `first` on, `count` of them.
pub(super) struct HandedBack {
    pub(super) first: u64,
    pub(super) count: u64,
    /// Where they stay.
    pub(super) kept: &'static str,
}

impl Connector {
    /// What was not delivered once the sender stopped.
    pub(super) fn handed_back(&self) -> Option<HandedBack> {
        let delivered = self.outlet.progress().delivered();
        match &self.queue {
            Queue::Handover(h) => (delivered < h.last_seq).then(|| HandedBack {
                first: delivered + 1,
                count: h.last_seq - delivered,
                kept: "were never acknowledged: broker keeps them in its retention and sends them again at the next start",
            }),
            Queue::Spool(q) => {
                let pending = q.writer.as_ref().map_or(0, |w| w.stats().pending);
                let last = q.writer.as_ref().map_or(0, spool::Writer::last_seq);
                if pending > 0 {
                    Some(HandedBack {
                        first: last - pending + 1,
                        count: pending,
                        kept: "stay in the spool and are sent at the next start",
                    })
                } else if !q.waiting.is_empty() {
                    Some(HandedBack {
                        first: last + 1,
                        count: q.waiting.len() as u64,
                        kept: "were never acknowledged (not yet in the spool): broker keeps them in its retention",
                    })
                } else {
                    None
                }
            }
        }
    }

    /// The close's one line: what was handed back, from which event on,
    /// why, and where it stays.
    pub(super) fn log_close(&self, closed: Option<Closed>, failing: bool) {
        let left = match closed {
            Some(c) if !c.joined => {
                "; a sender thread busy in a connect or name resolution was left to finish"
            }
            _ => "",
        };
        let Some(back) = self.handed_back() else {
            self.log.info(format_args!(
                "connector stopped: everything handed over was delivered{left}"
            ));
            return;
        };
        let why = match closed.map(|c| c.ending) {
            None => "the sender never started".to_string(),
            Some(_) if failing => "the peer was failing: not waited for".to_string(),
            Some(Ending::Stalled(still)) => format!(
                "no answer for {:.1}s: requests stopped",
                still.as_secs_f32()
            ),
            Some(Ending::BudgetSpent(budget)) => {
                format!("close budget of {:.1}s spent", budget.as_secs_f32())
            }
            Some(Ending::Returned) => "the sender stopped".to_string(),
        };
        self.log.warn(format_args!(
            "connector stopped: events from #{} on ({}) were not sent ({why}); they {}{left}",
            back.first, back.count, back.kept
        ));
    }
}
