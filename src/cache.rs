//! What the connector asks of `broker_cache`.
//!
//! Names, groups, pollers and severities are not in status events; broker
//! keeps them in a per-output cache. The trait keeps the filter and the
//! formatter free of Lua: the module implements it over `broker_cache`,
//! tests over [`MemoryCache`].

use crate::event::Field;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A cached host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostInfo {
    /// `name`.
    pub name: Option<String>,
    /// `instance_id`: the poller that monitors it.
    pub instance_id: Option<u64>,
    /// `notes_url`.
    pub notes_url: Option<String>,
    /// `action_url`.
    pub action_url: Option<String>,
    /// Current `state`.
    pub state: Option<i64>,
}

/// A cached service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceInfo {
    /// `description`.
    pub description: Option<String>,
    /// `notes_url`.
    pub notes_url: Option<String>,
    /// `action_url`.
    pub action_url: Option<String>,
    /// Current `state`.
    pub state: Option<i64>,
}

/// A cached business activity (`get_ba`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BaInfo {
    /// `ba_name`.
    pub name: Option<String>,
    /// `ba_description`.
    pub description: Option<String>,
}

/// Lookups in broker's cache. A miss is `None` or an empty list.
pub trait Cache {
    /// `names` fields of `get_host`'s object (for templates), `None` when
    /// broker does not know the host.
    fn host_fields(&mut self, host_id: u64, names: &[String]) -> Option<Vec<Option<Field>>>;
    /// The same for `get_service`.
    fn service_fields(
        &mut self,
        host_id: u64,
        service_id: u64,
        names: &[String],
    ) -> Option<Vec<Option<Field>>>;
    /// `get_ba`.
    fn ba(&mut self, ba_id: u64) -> Option<BaInfo>;
    /// Names of the business views holding a BA (`get_bvs`, then `get_bv`).
    fn bvs(&mut self, ba_id: u64) -> Vec<String>;
    /// `get_host`.
    fn host(&mut self, host_id: u64) -> Option<HostInfo>;
    /// `get_service`.
    fn service(&mut self, host_id: u64, service_id: u64) -> Option<ServiceInfo>;
    /// Names from `get_hostgroups`.
    fn hostgroups(&mut self, host_id: u64) -> Vec<String>;
    /// Names from `get_servicegroups`.
    fn servicegroups(&mut self, host_id: u64, service_id: u64) -> Vec<String>;
    /// `get_instance_name`.
    fn poller_name(&mut self, instance_id: u64) -> Option<String>;
    /// `get_severity`.
    fn severity(&mut self, host_id: u64, service_id: Option<u64>) -> Option<i64>;
    /// The aliases of the host's groups, in `get_hostgroups` order
    /// (`get_hostgroup_alias` of each; a group without one is left out).
    /// `None` when broker has no `get_hostgroup_alias` (before 25.10): a
    /// cache that cannot say, rather than a host without groups.
    fn hostgroup_aliases(&mut self, _host_id: u64) -> Option<Vec<String>> {
        None
    }
}

/// An in-memory cache, for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct MemoryCache {
    /// Hosts by id.
    pub hosts: HashMap<u64, HostInfo>,
    /// Services by (host id, service id).
    pub services: HashMap<(u64, u64), ServiceInfo>,
    /// Host group names by host id.
    pub hostgroups: HashMap<u64, Vec<String>>,
    /// Service group names by (host id, service id).
    pub servicegroups: HashMap<(u64, u64), Vec<String>>,
    /// Poller names by instance id.
    pub pollers: HashMap<u64, String>,
    /// Severities by (host id, service id or 0).
    pub severities: HashMap<(u64, u64), i64>,
    /// Every field of `get_host`'s objects, for templates.
    pub host_objects: HashMap<u64, HashMap<String, Field>>,
    /// Every field of `get_service`'s objects, for templates.
    pub service_objects: HashMap<(u64, u64), HashMap<String, Field>>,
    /// BAs by id.
    pub bas: HashMap<u64, BaInfo>,
    /// Business view names by BA id.
    pub bvs: HashMap<u64, Vec<String>>,
    /// Host group aliases by host id; `None`: a broker before 25.10,
    /// without `get_hostgroup_alias`.
    pub hostgroup_aliases: Option<HashMap<u64, Vec<String>>>,
}

fn pick(object: Option<&HashMap<String, Field>>, names: &[String]) -> Option<Vec<Option<Field>>> {
    let o = object?;
    Some(names.iter().map(|n| o.get(n).cloned()).collect())
}

impl Cache for MemoryCache {
    fn host_fields(&mut self, host_id: u64, names: &[String]) -> Option<Vec<Option<Field>>> {
        pick(self.host_objects.get(&host_id), names)
    }
    fn service_fields(
        &mut self,
        host_id: u64,
        service_id: u64,
        names: &[String],
    ) -> Option<Vec<Option<Field>>> {
        pick(self.service_objects.get(&(host_id, service_id)), names)
    }
    fn ba(&mut self, ba_id: u64) -> Option<BaInfo> {
        self.bas.get(&ba_id).cloned()
    }
    fn bvs(&mut self, ba_id: u64) -> Vec<String> {
        self.bvs.get(&ba_id).cloned().unwrap_or_default()
    }
    fn host(&mut self, host_id: u64) -> Option<HostInfo> {
        self.hosts.get(&host_id).cloned()
    }
    fn service(&mut self, host_id: u64, service_id: u64) -> Option<ServiceInfo> {
        self.services.get(&(host_id, service_id)).cloned()
    }
    fn hostgroups(&mut self, host_id: u64) -> Vec<String> {
        self.hostgroups.get(&host_id).cloned().unwrap_or_default()
    }
    fn servicegroups(&mut self, host_id: u64, service_id: u64) -> Vec<String> {
        self.servicegroups
            .get(&(host_id, service_id))
            .cloned()
            .unwrap_or_default()
    }
    fn poller_name(&mut self, instance_id: u64) -> Option<String> {
        self.pollers.get(&instance_id).cloned()
    }
    fn severity(&mut self, host_id: u64, service_id: Option<u64>) -> Option<i64> {
        self.severities
            .get(&(host_id, service_id.unwrap_or(0)))
            .copied()
    }
    fn hostgroup_aliases(&mut self, host_id: u64) -> Option<Vec<String>> {
        let known = self.hostgroup_aliases.as_ref()?;
        Some(known.get(&host_id).cloned().unwrap_or_default())
    }
}

/// How long remembered answers are trusted without any change event.
pub const MEMO_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Neb elements that change what `broker_cache` answers (BBDO 2 and 3):
/// custom variables (severity), host/service groups and members, hosts,
/// services, adaptive host/service, instances (poller names), severities,
/// tags.
pub fn changes_cache(category: u32, element: u32) -> bool {
    category == crate::event::NEB
        && matches!(
            element,
            3 | 4
                | 10
                | 11
                | 12
                | 15
                | 21
                | 22
                | 23
                | 27
                | 28
                | 30
                | 31
                | 33
                | 34
                | 37
                | 44
                | 49
                | 50
                | 51
                | 52
        )
}

/// Answers from `broker_cache`, remembered until broker reports a
/// configuration change ([`changes_cache`]) or [`MEMO_TTL`] passes. Each
/// lookup is a call into Lua; a status event needs five or six. Misses are
/// not remembered, so an object appears as soon as broker knows it.
#[derive(Debug, Default)]
pub struct Memo {
    hosts: Ids<u64, HostInfo>,
    services: Ids<(u64, u64), ServiceInfo>,
    hostgroups: Ids<u64, Vec<String>>,
    servicegroups: Ids<(u64, u64), Vec<String>>,
    pollers: Ids<u64, String>,
    severities: Ids<(u64, u64), i64>,
    bas: Ids<u64, BaInfo>,
    bvs: Ids<u64, Vec<String>>,
    hostgroup_aliases: Ids<u64, Vec<String>>,
    /// Set once broker showed it has no `get_hostgroup_alias`: it will not
    /// grow one while it runs, so it is not asked again (kept when the
    /// rest is forgotten).
    no_hostgroup_alias: bool,
    since: Option<std::time::Instant>,
    /// Changes each time everything is forgotten, so what was derived from
    /// remembered answers can be forgotten with them.
    generation: u64,
}

/// Maps keyed by broker ids, hashed by one multiplication per word:
/// SipHash's flooding resistance buys nothing for ids broker hands us and
/// costs on every event.
pub(crate) type Ids<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Memo {
    /// Forgets everything.
    pub fn clear(&mut self) {
        let generation = self.generation + 1;
        *self = Memo {
            generation,
            no_hostgroup_alias: self.no_hostgroup_alias,
            ..Memo::default()
        };
    }

    fn age(&mut self, now: std::time::Instant) {
        if self.since.is_none_or(|t| now.duration_since(t) >= MEMO_TTL) {
            self.clear();
            self.since = Some(now);
        }
    }

    /// Which set of remembered answers is current at `now`: it changes
    /// whenever they are all forgotten.
    pub fn generation(&mut self, now: std::time::Instant) -> u64 {
        self.age(now);
        self.generation
    }

    /// A cache that answers from memory first, then from `inner`; `now`
    /// ages the remembered answers.
    pub fn over<'a>(
        &'a mut self,
        inner: &'a mut dyn Cache,
        now: std::time::Instant,
    ) -> Memoized<'a> {
        self.age(now);
        Memoized {
            memo: self,
            inner,
            missed: false,
        }
    }
}

/// See [`Memo::over`].
pub struct Memoized<'a> {
    memo: &'a mut Memo,
    inner: &'a mut dyn Cache,
    missed: bool,
}

impl Memoized<'_> {
    /// Whether a lookup found nothing: misses are not remembered, so what
    /// was concluded from them must not be either.
    pub fn missed(&self) -> bool {
        self.missed
    }

    fn note<T>(&mut self, answer: Option<T>) -> Option<T> {
        self.missed |= answer.is_none();
        answer
    }
}

fn remember<K: std::hash::Hash + Eq, V: Clone>(
    map: &mut Ids<K, V>,
    key: K,
    fetch: impl FnOnce() -> Option<V>,
) -> Option<V> {
    if let Some(v) = map.get(&key) {
        return Some(v.clone());
    }
    let v = fetch()?;
    map.insert(key, v.clone());
    Some(v)
}

impl Cache for Memoized<'_> {
    // Objects' fields for templates are remembered with the subject they
    // describe (see `crate::subject::Subject`), not here.
    fn host_fields(&mut self, host_id: u64, names: &[String]) -> Option<Vec<Option<Field>>> {
        let found = self.inner.host_fields(host_id, names);
        self.note(found)
    }
    fn service_fields(
        &mut self,
        host_id: u64,
        service_id: u64,
        names: &[String],
    ) -> Option<Vec<Option<Field>>> {
        let found = self.inner.service_fields(host_id, service_id, names);
        self.note(found)
    }
    fn ba(&mut self, ba_id: u64) -> Option<BaInfo> {
        let inner = &mut *self.inner;
        let found = remember(&mut self.memo.bas, ba_id, || inner.ba(ba_id));
        self.note(found)
    }
    fn bvs(&mut self, ba_id: u64) -> Vec<String> {
        let inner = &mut *self.inner;
        remember(&mut self.memo.bvs, ba_id, || Some(inner.bvs(ba_id))).unwrap_or_default()
    }
    fn host(&mut self, host_id: u64) -> Option<HostInfo> {
        let inner = &mut *self.inner;
        let found = remember(&mut self.memo.hosts, host_id, || inner.host(host_id));
        self.note(found)
    }
    fn service(&mut self, host_id: u64, service_id: u64) -> Option<ServiceInfo> {
        let inner = &mut *self.inner;
        let found = remember(&mut self.memo.services, (host_id, service_id), || {
            inner.service(host_id, service_id)
        });
        self.note(found)
    }
    fn hostgroups(&mut self, host_id: u64) -> Vec<String> {
        let inner = &mut *self.inner;
        remember(&mut self.memo.hostgroups, host_id, || {
            Some(inner.hostgroups(host_id))
        })
        .unwrap_or_default()
    }
    fn servicegroups(&mut self, host_id: u64, service_id: u64) -> Vec<String> {
        let inner = &mut *self.inner;
        remember(&mut self.memo.servicegroups, (host_id, service_id), || {
            Some(inner.servicegroups(host_id, service_id))
        })
        .unwrap_or_default()
    }
    fn poller_name(&mut self, instance_id: u64) -> Option<String> {
        let inner = &mut *self.inner;
        let found = remember(&mut self.memo.pollers, instance_id, || {
            inner.poller_name(instance_id)
        });
        self.note(found)
    }
    fn severity(&mut self, host_id: u64, service_id: Option<u64>) -> Option<i64> {
        let inner = &mut *self.inner;
        let found = remember(
            &mut self.memo.severities,
            (host_id, service_id.unwrap_or(0)),
            || inner.severity(host_id, service_id),
        );
        self.note(found)
    }
    fn hostgroup_aliases(&mut self, host_id: u64) -> Option<Vec<String>> {
        if self.memo.no_hostgroup_alias {
            return None;
        }
        let inner = &mut *self.inner;
        let mut unsupported = false;
        let found = remember(&mut self.memo.hostgroup_aliases, host_id, || {
            let aliases = inner.hostgroup_aliases(host_id);
            unsupported = aliases.is_none();
            aliases
        });
        self.memo.no_hostgroup_alias |= unsupported;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts lookups reaching the real cache.
    struct Counting(MemoryCache, usize);

    impl Cache for Counting {
        fn host_fields(&mut self, h: u64, names: &[String]) -> Option<Vec<Option<Field>>> {
            self.1 += 1;
            self.0.host_fields(h, names)
        }
        fn service_fields(&mut self, h: u64, s: u64, n: &[String]) -> Option<Vec<Option<Field>>> {
            self.1 += 1;
            self.0.service_fields(h, s, n)
        }
        fn ba(&mut self, id: u64) -> Option<BaInfo> {
            self.1 += 1;
            self.0.ba(id)
        }
        fn bvs(&mut self, id: u64) -> Vec<String> {
            self.1 += 1;
            self.0.bvs(id)
        }
        fn host(&mut self, id: u64) -> Option<HostInfo> {
            self.1 += 1;
            self.0.host(id)
        }
        fn service(&mut self, h: u64, s: u64) -> Option<ServiceInfo> {
            self.1 += 1;
            self.0.service(h, s)
        }
        fn hostgroups(&mut self, h: u64) -> Vec<String> {
            self.1 += 1;
            self.0.hostgroups(h)
        }
        fn servicegroups(&mut self, h: u64, s: u64) -> Vec<String> {
            self.1 += 1;
            self.0.servicegroups(h, s)
        }
        fn poller_name(&mut self, i: u64) -> Option<String> {
            self.1 += 1;
            self.0.poller_name(i)
        }
        fn severity(&mut self, h: u64, s: Option<u64>) -> Option<i64> {
            self.1 += 1;
            self.0.severity(h, s)
        }
        fn hostgroup_aliases(&mut self, h: u64) -> Option<Vec<String>> {
            self.1 += 1;
            self.0.hostgroup_aliases(h)
        }
    }

    #[test]
    fn a_broker_without_hostgroup_aliases_is_asked_once_per_run() {
        let mut real = Counting(MemoryCache::default(), 0);
        let mut memo = Memo::default();
        let t = std::time::Instant::now();
        for host in [1, 2, 1, 3] {
            assert_eq!(memo.over(&mut real, t).hostgroup_aliases(host), None);
        }
        memo.clear();
        assert_eq!(memo.over(&mut real, t).hostgroup_aliases(4), None);
        assert_eq!(real.1, 1, "asked again");
    }

    #[test]
    fn hostgroup_aliases_are_remembered_per_host() {
        let mut real = Counting(MemoryCache::default(), 0);
        real.0.hostgroup_aliases = Some(HashMap::from([(1, vec!["Linux servers".into()])]));
        let mut memo = Memo::default();
        let t = std::time::Instant::now();
        for _ in 0..3 {
            assert_eq!(
                memo.over(&mut real, t).hostgroup_aliases(1),
                Some(vec!["Linux servers".to_string()])
            );
            assert_eq!(memo.over(&mut real, t).hostgroup_aliases(2), Some(vec![]));
        }
        assert_eq!(real.1, 2);
    }

    #[test]
    fn remembers_hits_until_cleared_but_not_misses() {
        let mut real = Counting(MemoryCache::default(), 0);
        real.0.hosts.insert(
            1,
            HostInfo {
                name: Some("a".into()),
                ..HostInfo::default()
            },
        );
        let mut memo = Memo::default();
        for _ in 0..3 {
            assert_eq!(
                memo.over(&mut real, std::time::Instant::now())
                    .host(1)
                    .unwrap()
                    .name
                    .as_deref(),
                Some("a")
            );
            assert_eq!(
                memo.over(&mut real, std::time::Instant::now()).host(2),
                None
            );
        }
        assert_eq!(real.1, 1 + 3, "one lookup for the hit, one per miss");
        real.0.hosts.get_mut(&1).unwrap().name = Some("renamed".into());
        memo.clear();
        assert_eq!(
            memo.over(&mut real, std::time::Instant::now())
                .host(1)
                .unwrap()
                .name
                .as_deref(),
            Some("renamed")
        );
    }

    #[test]
    fn configuration_events_are_recognised() {
        for el in [12, 23, 30, 27, 11, 50, 44, 37] {
            assert!(changes_cache(1, el));
        }
        for el in [14, 24, 29, 32, 1, 45, 5, 36] {
            assert!(!changes_cache(1, el));
        }
        assert!(!changes_cache(3, 12));
    }
}
