//! Why an event is not sent ([`Rejection`]), as the filters and dedup
//! decide it and the debug log says it; with the engine's stamps a dedup
//! decision looked at ([`Stamps`]).
//!
//! Below both deciders, so the filters can ask dedup and dedup can answer
//! in the filters' terms without either knowing the other's reasons.

use crate::event::StatusEvent;
use std::fmt;

/// Why an event is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No host (or service) id and `skip_nil_id=1`, or no id at all.
    NilId(&'static str),
    /// The cache does not know the object and `skip_anon_events=1`.
    Anonymous(&'static str, u64),
    /// A BAM pseudo host (`_Module_BAM_*`).
    BamHost,
    /// The state is not in the accepted list.
    State(Option<i64>),
    /// The status does not carry a state change, by the engine's stamps
    /// (`enable_*_status_dedup=1`).
    Duplicate(Stamps),
    /// The state change it reports was sent already
    /// (`enable_*_status_dedup=1`).
    AlreadySent {
        /// The state.
        state: Option<i64>,
        /// The engine's stamp of the change.
        last_hard_state_change: Option<i64>,
    },
    /// A SOFT state with `hard_only=1`.
    Soft,
    /// Acknowledged with `acknowledged=0`.
    Acknowledged,
    /// In downtime with `in_downtime=0`.
    InDowntime,
    /// Flapping with `flapping=0`.
    Flapping,
    /// The end of a downtime whose start was not sent: there is no
    /// pbehavior to delete.
    StartNotSent,
    /// Not from an accepted poller.
    Poller(Option<String>),
    /// Severity outside the threshold.
    Severity(&'static str, Option<i64>),
    /// Not in an accepted (or in a rejected) group.
    Group(&'static str),
    /// Author not accepted.
    Author(String),
    /// Host name matching none of `accepted_hosts`.
    HostName(String),
    /// Service description matching none of `accepted_services`.
    ServiceName(String),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NilId(what) => write!(f, "no {what} id"),
            Rejection::Anonymous(what, id) => {
                write!(
                    f,
                    "{what} {id} is not in broker's cache and skip_anon_events=1"
                )
            }
            Rejection::BamHost => write!(f, "BAM pseudo host"),
            Rejection::State(s) => write!(f, "state {s:?} is not accepted"),
            Rejection::Duplicate(stamps) => {
                write!(f, "state did not change (dedup enabled): {stamps}")
            }
            Rejection::AlreadySent {
                state,
                last_hard_state_change,
            } => write!(
                f,
                "state {} of the change at last_hard_state_change={} was sent already (dedup enabled)",
                state.map_or("unset".into(), |s| s.to_string()),
                last_hard_state_change.map_or("unset".into(), |t| t.to_string()),
            ),
            Rejection::Soft => write!(f, "SOFT state and hard_only=1"),
            Rejection::Acknowledged => write!(f, "acknowledged and acknowledged=0"),
            Rejection::InDowntime => write!(f, "in downtime and in_downtime=0"),
            Rejection::Flapping => write!(f, "flapping and flapping=0"),
            Rejection::StartNotSent => write!(
                f,
                "its start was not sent, so there is no pbehavior to delete"
            ),
            Rejection::Poller(p) => write!(f, "poller {p:?} is not accepted"),
            Rejection::Severity(what, s) => write!(f, "{what} severity {s:?} is not accepted"),
            Rejection::Group(what) => write!(f, "{what} groups are not accepted"),
            Rejection::Author(a) => write!(f, "author '{a}' is not accepted"),
            Rejection::HostName(n) => write!(f, "host '{n}' matches no accepted_hosts pattern"),
            Rejection::ServiceName(n) => {
                write!(f, "service '{n}' matches no accepted_services pattern")
            }
        }
    }
}

/// The stamps a dedup decision looked at, for the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamps {
    /// `last_hard_state_change`.
    pub last_hard_state_change: Option<i64>,
    /// `last_check`.
    pub last_check: Option<i64>,
    /// `last_update` (BBDO 2).
    pub last_update: Option<i64>,
    /// The allowed gap: `Some` for hosts, `None` (exact match) for services.
    pub delta: Option<i64>,
}

impl Stamps {
    pub(crate) fn of(s: &StatusEvent, delta: Option<i64>) -> Stamps {
        Stamps {
            last_hard_state_change: s.last_hard_state_change,
            last_check: s.last_check,
            last_update: s.last_update,
            delta,
        }
    }
}

impl fmt::Display for Stamps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |v: Option<i64>| v.map_or("unset".to_string(), |v| v.to_string());
        write!(
            f,
            "last_hard_state_change={} last_check={} last_update={}",
            t(self.last_hard_state_change),
            t(self.last_check),
            t(self.last_update)
        )?;
        match self.delta {
            Some(d) => write!(
                f,
                " (more than {d} s apart; delta_host_status_change_allow)"
            ),
            None => write!(f, " (not equal)"),
        }
    }
}
