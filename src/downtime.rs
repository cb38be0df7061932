//! A Centreon downtime's lifecycle, as broker's events tell it: when it
//! counts as started or ended ([`phase`]), why one of its events means
//! nothing to send ([`Skip`]), and the stable name every output gives it
//! ([`name`]).
//!
//! Plain data about Centreon's downtimes, below the filters (a start not
//! sent means no end to send) and every output: Canopsis turns the phases
//! into pbehaviors, the webhook and Mattermost outputs into documents and
//! messages.

use crate::event::DowntimeEvent;

/// What a downtime event means for the outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The downtime has started (for Canopsis: create its pbehavior).
    Start,
    /// It ended or was cancelled/deleted (for Canopsis: delete its
    /// pbehavior).
    End,
}

/// A real engine sends up to four events per downtime, all with the same
/// id (shared/traces README, fact 4): scheduled, started, ended (or
/// cancelled), deleted; a downtime deleted before it started sends only
/// the first and the last. The start creates the pbehavior and the deletion,
/// the one event every downtime ends with, removes it: one DELETE per
/// downtime, and none for a downtime that never started (nothing was
/// created).
pub fn phase(d: &DowntimeEvent) -> Result<Phase, Skip> {
    let started = d.started || d.actual_start_time.is_some();
    if d.deletion_time.is_some() {
        if started {
            Ok(Phase::End)
        } else {
            Err(Skip::NeverStarted)
        }
    } else if d.actual_end_time.is_some() || d.cancelled {
        Err(Skip::Ending)
    } else if d.actual_start_time.is_some() {
        Ok(Phase::Start)
    } else {
        Err(Skip::NotStarted)
    }
}

/// The downtime's name (a pbehavior's name and `_id`): stable for a given
/// downtime, free of the characters Canopsis refuses in ids (`/ ? . $`).
pub fn name(d: &DowntimeEvent) -> String {
    format!(
        "centreon-downtime-{}-{}-{}-{}",
        d.host_id.unwrap_or(0),
        d.service_id.unwrap_or(0),
        d.id.unwrap_or(0),
        d.entry_time.unwrap_or(0)
    )
}

/// Why a downtime event does not become a change to send (a pbehavior
/// change for Canopsis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Scheduled (or updated) but not started yet.
    NotStarted,
    /// Ended or cancelled: the deletion that follows removes the pbehavior.
    Ending,
    /// Deleted before it started: no pbehavior was created.
    NeverStarted,
    /// No planned start or end time, or the end is before the start.
    BadWindow(Option<i64>, Option<i64>),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotStarted => write!(f, "downtime scheduled, not started yet"),
            Skip::Ending => write!(
                f,
                "downtime ended; its pbehavior is deleted with the downtime's deletion event"
            ),
            Skip::NeverStarted => write!(
                f,
                "downtime deleted before it started: no pbehavior was created"
            ),
            Skip::BadWindow(s, e) => write!(f, "unusable downtime window start={s:?} end={e:?}"),
        }
    }
}
