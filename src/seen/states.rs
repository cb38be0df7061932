//! Each object's last HARD state, as the connector saw it in statuses.

use crate::cache::{BaInfo, Cache, HostInfo, Ids, ServiceInfo};
use crate::event::{Field, StatusEvent};

/// The last HARD state of each host and service, from the statuses the
/// connector read (every HARD change reaches it whole, whatever the
/// filters decide: [`crate::filter::Screen`]). One entry per object, so
/// bounded by the configuration, as [`crate::dedup::Sent`] is. Not kept
/// across restarts: until an object changes again, broker's cache answers
/// for it where it can (see [`HardStates::state`]).
#[derive(Debug, Default)]
pub struct HardStates {
    /// By (host id, service id or 0 for a host).
    map: Ids<(u64, u64), i64>,
    /// The statuses come from BBDO 2: they carry `last_update`, which BBDO
    /// 3 statuses never do (`shared/traces` README, fact 3).
    bbdo2: bool,
}

/// A state a host (0-2) or a service (0-3) can be in: pending (4) and
/// anything else is no state.
fn real(service: bool, state: i64) -> bool {
    (0..=if service { 3 } else { 2 }).contains(&state)
}

impl HardStates {
    /// Takes the state of a HARD status.
    pub fn observe(&mut self, s: &StatusEvent, service: bool) {
        self.bbdo2 = s.last_update.is_some();
        let (Some(host), Some(state), Some(1)) = (s.host_id, s.state, s.state_type) else {
            return;
        };
        let key = match (service, s.service_id) {
            (false, _) => (host, 0),
            (true, Some(id)) if id != 0 => (host, id),
            _ => return,
        };
        if real(service, state) {
            self.map.insert(key, state);
        } else {
            self.map.remove(&key);
        }
    }

    /// The object's state: the last HARD state seen; else what broker's
    /// cache says when that is a real, checked state and the cache follows
    /// statuses (BBDO 3); else unknown, which blocks no downtime.
    pub fn state(
        &self,
        key: (u64, u64),
        cached: Option<i64>,
        checked: impl FnOnce() -> Option<bool>,
    ) -> Option<i64> {
        let service = key.1 != 0;
        if let Some(s) = self.map.get(&key) {
            return Some(*s);
        }
        if self.bbdo2 {
            return None;
        }
        cached.filter(|s| real(service, *s) && checked() != Some(false))
    }

    /// `inner` with host and service states taken from [`state`](Self::state).
    pub fn over<'a>(&'a self, inner: &'a mut dyn Cache) -> Overlay<'a> {
        Overlay {
            states: self,
            inner,
        }
    }
}

/// See [`HardStates::over`].
pub struct Overlay<'a> {
    states: &'a HardStates,
    inner: &'a mut dyn Cache,
}

/// `checked` of a cached object, when broker has it.
fn checked_of(fields: Option<Vec<Option<Field>>>) -> Option<bool> {
    match fields?.into_iter().next()?? {
        Field::Bool(b) => Some(b),
        _ => None,
    }
}

impl Cache for Overlay<'_> {
    fn host_fields(&mut self, host_id: u64, names: &[String]) -> Option<Vec<Option<Field>>> {
        self.inner.host_fields(host_id, names)
    }
    fn service_fields(
        &mut self,
        host_id: u64,
        service_id: u64,
        names: &[String],
    ) -> Option<Vec<Option<Field>>> {
        self.inner.service_fields(host_id, service_id, names)
    }
    fn ba(&mut self, ba_id: u64) -> Option<BaInfo> {
        self.inner.ba(ba_id)
    }
    fn bvs(&mut self, ba_id: u64) -> Vec<String> {
        self.inner.bvs(ba_id)
    }
    fn host(&mut self, host_id: u64) -> Option<HostInfo> {
        let mut h = self.inner.host(host_id)?;
        let inner = &mut *self.inner;
        h.state = self.states.state((host_id, 0), h.state, || {
            checked_of(inner.host_fields(host_id, &["checked".into()]))
        });
        Some(h)
    }
    fn service(&mut self, host_id: u64, service_id: u64) -> Option<ServiceInfo> {
        let mut s = self.inner.service(host_id, service_id)?;
        let inner = &mut *self.inner;
        s.state = self.states.state((host_id, service_id), s.state, || {
            checked_of(inner.service_fields(host_id, service_id, &["checked".into()]))
        });
        Some(s)
    }
    fn hostgroups(&mut self, host_id: u64) -> Vec<String> {
        self.inner.hostgroups(host_id)
    }
    fn servicegroups(&mut self, host_id: u64, service_id: u64) -> Vec<String> {
        self.inner.servicegroups(host_id, service_id)
    }
    fn poller_name(&mut self, instance_id: u64) -> Option<String> {
        self.inner.poller_name(instance_id)
    }
    fn severity(&mut self, host_id: u64, service_id: Option<u64>) -> Option<i64> {
        self.inner.severity(host_id, service_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: i64, state_type: i64) -> StatusEvent {
        StatusEvent {
            host_id: Some(3),
            service_id: Some(9),
            state: Some(state),
            state_type: Some(state_type),
            ..StatusEvent::default()
        }
    }

    #[test]
    fn hard_states_only_and_pending_is_no_state() {
        let mut h = HardStates::default();
        h.observe(&status(2, 1), true);
        h.observe(&status(0, 0), true);
        assert_eq!(h.state((3, 9), None, || None), Some(2), "SOFT ignored");
        h.observe(&status(4, 1), true);
        assert_eq!(h.state((3, 9), None, || None), None);
        // A host status's service id is not read.
        h.observe(&status(1, 1), false);
        assert_eq!(h.state((3, 0), Some(0), || Some(true)), Some(1));
        assert_eq!(h.state((3, 9), Some(3), || None), Some(3));
        assert_eq!(h.state((3, 9), Some(3), || Some(false)), None);
        assert_eq!(h.state((3, 0), None, || None), Some(1));
        assert_eq!(
            h.state((4, 0), Some(3), || Some(true)),
            None,
            "no host state 3"
        );
        assert_eq!(h.state((4, 0), Some(4), || Some(false)), None, "pending");
    }
}
