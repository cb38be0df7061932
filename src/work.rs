//! What goes down a lane: a unit of [`Work`] for a lane's thread (a batch
//! of events, pbehavior changes, an unreadable spool record), its
//! sequence numbers, what it holds in memory, and `hand`, which queues it
//! on its lane and notes it in [`Progress`].
//!
//! Shared by the connector's hand-over, the spool's read-back and the
//! sender's threads, none of which owns it.

use crate::batch::Batch;
use crate::progress::Progress;
use crate::sink::canopsis::pbehavior::Action;
use crossbeam_channel::Sender as ChannelSender;

/// What a pbehavior change counts for in `Work::held_bytes` (its fields
/// are a few names, dates and a comment).
pub const DOWNTIME_BYTES: usize = 1024;

/// Work for the sender thread.
#[derive(Debug)]
pub enum Work {
    /// A JSON array for the event route.
    Events(Batch),
    /// A pbehavior change for one downtime event.
    Downtime {
        /// The event's sequence number.
        seq: u64,
        /// What to do.
        action: Action,
        /// Its lane (see [`crate::lanes`]).
        lane: usize,
    },
    /// Consecutive pbehavior changes sent through the bulk route.
    Pbehaviors {
        /// The last one's sequence number.
        seq: u64,
        /// In broker's order.
        actions: Vec<Action>,
    },
    /// A spool record that cannot be read back (kept aside, then skipped).
    Unreadable {
        /// Its sequence number.
        seq: u64,
        /// Why.
        reason: String,
    },
}

impl Work {
    pub(crate) fn first_seq(&self) -> u64 {
        match self {
            Work::Events(b) => b.first_seq,
            other => other.last_seq(),
        }
    }

    pub(crate) fn lane(&self) -> usize {
        match self {
            Work::Events(b) => b.lane,
            Work::Downtime { lane, .. } => *lane,
            Work::Pbehaviors { .. } | Work::Unreadable { .. } => 0,
        }
    }

    /// About what it holds in memory, for the read-back's bound: a body's
    /// bytes; a pbehavior change, small, counts [`DOWNTIME_BYTES`].
    pub(crate) fn held_bytes(&self) -> usize {
        match self {
            Work::Events(b) => b.body.len(),
            Work::Downtime { .. } => DOWNTIME_BYTES,
            Work::Pbehaviors { actions, .. } => actions.len() * DOWNTIME_BYTES,
            Work::Unreadable { reason, .. } => reason.len(),
        }
    }

    pub(crate) fn last_seq(&self) -> u64 {
        match self {
            Work::Events(b) => b.last_seq,
            Work::Downtime { seq, .. }
            | Work::Pbehaviors { seq, .. }
            | Work::Unreadable { seq, .. } => *seq,
        }
    }
}

/// Downtimes sent in one bulk request at most.
pub const MAX_BULK: usize = 100;

/// Queues `work` on its lane and notes it in `progress`; `false` if the
/// lane's thread is gone.
pub(crate) fn hand(lanes: &[ChannelSender<Work>], progress: &Progress, work: Work) -> bool {
    if lanes.is_empty() {
        return false;
    }
    let lane = work.lane() % lanes.len();
    progress.handed(lane, work.first_seq(), work.last_seq());
    lanes[lane].send(work).is_ok()
}
