//! Which events go to Canopsis: the Lua stream-connector library's checks,
//! with its defaults, applied in its order.
//!
//! Where the Lua library misbehaves the intent wins, and the difference is
//! documented in README ("Differences from the Lua connector"): nested
//! downtimes with `in_downtime=1`, BBDO 3 acknowledgement state, host
//! acknowledgements on BBDO 3. `flapping` is applied as the library does:
//! 0, the default, drops the statuses of flapping objects (acknowledgements
//! and downtimes are not concerned).

use crate::cache::{BaInfo, Cache, HostInfo, Ids, Memo, ServiceInfo};
use crate::config::{ConnectorNameType, FilterConfig, FormatConfig, NameList};
use crate::dedup;
use crate::downtime::{self, Phase};
use crate::event::{
    AckEvent, BaEvent, DowntimeEvent, ElementKind, NebEvent, StatusBuilder, StatusEvent,
};
use crate::luapattern::Pattern;
use crate::rejection::Rejection;
use crate::subject::Subject;
use std::rc::Rc;
use std::time::Instant;

/// Whether `name` matches one of `patterns` (`accepted_hosts`,
/// `accepted_services`), unanchored as `string.match` is; no pattern
/// accepts every name.
fn accepted_name(patterns: &[Pattern], name: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.is_match(name.as_bytes()))
}

/// Checks `ev` against the filters, gathering from `cache` what the
/// formatter will need.
pub fn check(
    cfg: &FilterConfig,
    fmt: &FormatConfig,
    ev: &NebEvent,
    cache: &mut dyn Cache,
) -> Result<Subject, Rejection> {
    let mut l = Lookup { cfg, fmt, cache };
    match ev {
        NebEvent::Host(s) => l.host_status(s),
        NebEvent::Service(s) => l.service_status(s),
        NebEvent::Ack(a) => l.ack(a),
        NebEvent::Downtime(d) => l.downtime(d),
        NebEvent::Ba(b) => l.ba(b),
    }
}

/// The event-only checks of a status, applied as a [`StatusBuilder`] takes
/// each field, so a reader can stop at the first field that rejects the
/// event: most statuses broker sends are SOFT or repeat a state, and
/// reading fields from broker is what a filtered event costs.
///
/// Each check is one of [`check`]'s, on values that no longer change: an
/// event it rejects, `check` rejects too (maybe for another reason).
///
/// A HARD status that reports a change (by the engine's stamps, dedup
/// enabled or not) is never stopped here, whatever else the filters say:
/// it goes whole to the connector, which learns the object's state from it
/// ([`crate::seen`]; broker's cache does not follow statuses on BBDO 2).
/// Changes are few; SOFT statuses and repeats still stop early.
///
/// Knowing what the connector sent ([`knowing`](Self::knowing)), a HARD
/// status that repeats a change by its stamps is judged once its object is
/// read: it is news when its state is not the one last sent
/// ([`crate::seen::news`]).
#[derive(Debug)]
pub struct Screen<'a> {
    cfg: &'a FilterConfig,
    rules: StatusRules<'a>,
    sent: Option<&'a dedup::Sent>,
}

impl<'a> Screen<'a> {
    /// A screen for statuses of `kind`.
    pub fn new(cfg: &'a FilterConfig, kind: ElementKind) -> Screen<'a> {
        let rules = status_rules(cfg, kind != ElementKind::HostStatus);
        Screen {
            cfg,
            rules,
            sent: None,
        }
    }

    /// The same screen, letting through the HARD statuses that are news
    /// for Canopsis by what the connector `sent`.
    pub fn knowing(self, sent: &'a dedup::Sent) -> Screen<'a> {
        Screen {
            sent: Some(sent),
            ..self
        }
    }

    /// Looks at the status once `b` took the field at position `i`.
    pub fn after(&self, i: usize, b: &StatusBuilder) -> Option<Rejection> {
        use crate::event::status_field::*;
        let (cfg, s) = (self.cfg, b.status());
        match i {
            STATE_TYPE if cfg.hard_only => {
                (s.state_type.unwrap_or(0) < 1).then_some(Rejection::Soft)
            }
            // A HARD status's state is judged with its stamps, below.
            STATE if !is_hard(s) => accept_state(self.rules.states, s.state).err(),
            LAST_HARD_STATE_CHANGE => {
                let change = dedup::reports_change(s, self.rules.host_delta);
                if is_hard(s) && change.is_ok() {
                    return None;
                }
                // The library's order: the state, then dedup (for a HARD
                // status, once its object is known, when the connector's
                // memory can tell).
                let later = is_hard(s) && self.sent.is_some();
                accept_state(self.rules.states, s.state)
                    .err()
                    .or(change.err().filter(|_| self.rules.dedup && !later))
            }
            HOST_ID if self.rules.host_delta.is_some() => self.repeats(s),
            SERVICE_ID if self.rules.host_delta.is_none() => self.repeats(s),
            ACKNOWLEDGED | ACKNOWLEDGEMENT_TYPE if !cfg.acknowledged => {
                (s.acknowledged && !self.learns_from(s)).then_some(Rejection::Acknowledged)
            }
            SCHEDULED_DOWNTIME_DEPTH if !cfg.in_downtime => {
                (s.downtime_depth > 0 && !self.learns_from(s)).then_some(Rejection::InDowntime)
            }
            FLAPPING if !cfg.flapping => {
                (s.flapping && !self.learns_from(s)).then_some(Rejection::Flapping)
            }
            _ => None,
        }
    }

    /// Dedup's verdict on a HARD status whose object was just read: a
    /// repeat of a change by the stamps that is no news either.
    fn repeats(&self, s: &StatusEvent) -> Option<Rejection> {
        let sent = self.sent?;
        if !self.rules.dedup || !is_hard(s) {
            return None;
        }
        let change = dedup::reports_change(s, self.rules.host_delta).err()?;
        let service = self.rules.host_delta.is_none();
        (!crate::seen::news::is_news(sent, s, service)).then_some(change)
    }

    /// Whether the connector learns an object's state from `s`: a HARD
    /// status reporting a change.
    fn learns_from(&self, s: &StatusEvent) -> bool {
        is_hard(s) && dedup::reports_change(s, self.rules.host_delta).is_ok()
    }
}

/// A HARD status (`state_type` 1).
fn is_hard(s: &StatusEvent) -> bool {
    s.state_type == Some(1)
}

/// What differs between host and service statuses.
#[derive(Debug, Clone, Copy)]
struct StatusRules<'a> {
    /// Accepted states.
    states: &'a [i64],
    /// Whether dedup applies.
    dedup: bool,
    /// For hosts, the gap allowed between the change's stamp and the check.
    host_delta: Option<i64>,
}

/// The rules for service or host statuses.
fn status_rules(cfg: &FilterConfig, service: bool) -> StatusRules<'_> {
    if service {
        StatusRules {
            states: &cfg.service_status,
            dedup: cfg.service_dedup,
            host_delta: None,
        }
    } else {
        StatusRules {
            states: &cfg.host_status,
            dedup: cfg.host_dedup,
            host_delta: Some(cfg.host_change_delta),
        }
    }
}

/// Whether dedup applies to statuses of this kind of object.
pub fn dedup_enabled(cfg: &FilterConfig, service: bool) -> bool {
    status_rules(cfg, service).dedup
}

/// The checks of a status that need only the event, in the Lua library's
/// order. With what the connector `sent`, a status that is news for
/// Canopsis passes dedup's stamp rule ([`crate::seen::news`]).
fn status_event(
    cfg: &FilterConfig,
    service: bool,
    s: &StatusEvent,
    sent: Option<&dedup::Sent>,
) -> Result<(), Rejection> {
    let rules = status_rules(cfg, service);
    accept_state(rules.states, s.state)?;
    if rules.dedup {
        let news = sent.is_some_and(|sent| crate::seen::news::is_news(sent, s, service));
        if !news {
            dedup::reports_change(s, rules.host_delta)?;
        }
    }
    if cfg.hard_only && s.state_type.unwrap_or(0) < 1 {
        return Err(Rejection::Soft);
    }
    if !cfg.acknowledged && s.acknowledged {
        return Err(Rejection::Acknowledged);
    }
    if !cfg.in_downtime && s.downtime_depth > 0 {
        return Err(Rejection::InDowntime);
    }
    if !cfg.flapping && s.flapping {
        return Err(Rejection::Flapping);
    }
    Ok(())
}

/// What the checks of statuses that need the cache concluded, per object:
/// they depend only on the object and on the cache's answers, and a status
/// arrives for each object every few minutes. Forgotten with the answers
/// they came from ([`Memo::generation`]); never kept when a lookup missed.
#[derive(Debug, Default)]
pub struct Verdicts {
    generation: u64,
    /// By (host id, service id or 0 for a host).
    map: Ids<(u64, u64), Result<Rc<Subject>, Rejection>>,
}

impl Verdicts {
    /// [`check`] for a host or service status, through `memo`; a status
    /// that is news by what the connector `sent` passes dedup's stamp rule.
    #[allow(clippy::too_many_arguments)]
    pub fn check_status(
        &mut self,
        cfg: &FilterConfig,
        fmt: &FormatConfig,
        ev: &NebEvent,
        memo: &mut Memo,
        cache: &mut dyn Cache,
        now: Instant,
        sent: &dedup::Sent,
    ) -> Result<Rc<Subject>, Rejection> {
        let (s, service) = match ev {
            NebEvent::Host(s) => (s, false),
            NebEvent::Service(s) => (s, true),
            _ => return check(cfg, fmt, ev, &mut memo.over(cache, now)).map(Rc::new),
        };
        status_event(cfg, service, s, Some(sent))?;
        let generation = memo.generation(now);
        if generation != self.generation {
            self.map.clear();
            self.generation = generation;
        }
        let key = match (s.host_id, service) {
            (Some(h), false) => Some((h, 0)),
            (Some(h), true) => s.service_id.filter(|id| *id != 0).map(|id| (h, id)),
            (None, _) => None,
        };
        if let Some(known) = key.and_then(|k| self.map.get(&k)) {
            return known.clone();
        }
        let mut cache = memo.over(cache, now);
        let mut l = Lookup {
            cfg,
            fmt,
            cache: &mut cache,
        };
        let verdict = if service {
            l.service_objects(s)
        } else {
            l.host_objects(s)
        }
        .map(Rc::new);
        if let (Some(key), false) = (key, cache.missed()) {
            self.map.insert(key, verdict.clone());
        }
        verdict
    }
}

struct Lookup<'a> {
    cfg: &'a FilterConfig,
    fmt: &'a FormatConfig,
    cache: &'a mut dyn Cache,
}

impl Lookup<'_> {
    // Checks that need only the event come before those that need the
    // cache: same outcome as the Lua library's order, far cheaper for the
    // many events they drop.
    fn host_status(&mut self, s: &StatusEvent) -> Result<Subject, Rejection> {
        status_event(self.cfg, false, s, None)?;
        self.host_objects(s)
    }

    fn host_objects(&mut self, s: &StatusEvent) -> Result<Subject, Rejection> {
        let mut subj = self.host(s.host_id)?;
        self.poller(&mut subj, None)?;
        self.severity(&mut subj, None)?;
        self.hostgroups(&mut subj)?;
        Ok(subj)
    }

    fn service_status(&mut self, s: &StatusEvent) -> Result<Subject, Rejection> {
        status_event(self.cfg, true, s, None)?;
        self.service_objects(s)
    }

    fn service_objects(&mut self, s: &StatusEvent) -> Result<Subject, Rejection> {
        let mut subj = self.host(s.host_id)?;
        self.service(&mut subj, s.service_id)?;
        self.poller(&mut subj, None)?;
        self.severity(&mut subj, None)?;
        let sid = subj.service.as_ref().map(|(id, _)| *id);
        self.severity(&mut subj, sid)?;
        self.hostgroups(&mut subj)?;
        self.servicegroups(&mut subj)?;
        Ok(subj)
    }

    fn ack(&mut self, a: &AckEvent) -> Result<Subject, Rejection> {
        let mut subj = self.host(a.host_id)?;
        self.author(&a.author)?;
        self.poller(&mut subj, a.instance_id)?;
        self.severity(&mut subj, None)?;
        if a.is_service() {
            self.service(&mut subj, a.service_id)?;
            accept_state(&self.cfg.ack_service_status, a.state)?;
            let sid = subj.service.as_ref().map(|(id, _)| *id);
            self.severity(&mut subj, sid)?;
            self.servicegroups(&mut subj)?;
        } else {
            accept_state(&self.cfg.ack_host_status, a.state)?;
        }
        self.hostgroups(&mut subj)?;
        Ok(subj)
    }

    /// The library's order (id, cache, state, downtime, business views),
    /// except that business views are those of the BA (`get_bvs(ba_id)`;
    /// the library asks with the event's missing `host_id`, so its
    /// `accepted_bvs` drops every BA and `rejected_bvs` none), and a BA
    /// broker does not know is a cache miss, not a Lua error.
    fn ba(&mut self, b: &BaEvent) -> Result<Subject, Rejection> {
        let ba_id = b.ba_id.ok_or(Rejection::NilId("ba"))?;
        let info = match self.cache.ba(ba_id) {
            Some(info) => info,
            None if self.cfg.skip_anon_events => return Err(Rejection::Anonymous("BA", ba_id)),
            None => BaInfo::default(),
        };
        accept_state(&self.cfg.ba_status, b.state)?;
        if b.in_downtime && !self.cfg.in_downtime {
            return Err(Rejection::InDowntime);
        }
        let mut bvs = Vec::new();
        if !self.cfg.accepted_bvs.is_empty() || !self.cfg.rejected_bvs.is_empty() {
            bvs = self.cache.bvs(ba_id);
            if !matches_lists(&self.cfg.accepted_bvs, &self.cfg.rejected_bvs, bvs.iter()) {
                return Err(Rejection::Group("business view"));
            }
        }
        Ok(Subject {
            ba: Some((ba_id, info)),
            bvs,
            ..Subject::default()
        })
    }

    /// State lists apply to downtime starts only: the end of a downtime
    /// whose start was sent must always remove its pbehavior.
    fn downtime(&mut self, d: &DowntimeEvent) -> Result<Subject, Rejection> {
        let starting = downtime::phase(d) == Ok(Phase::Start);
        let mut subj = match self.host(d.host_id) {
            // Deleting needs only the ids: an end must remove the
            // pbehavior even when the host has left broker's cache.
            Err(Rejection::Anonymous(..)) if !starting => {
                return Ok(Subject {
                    host_id: d.host_id.unwrap_or(0),
                    ..Subject::default()
                })
            }
            other => other?,
        };
        self.author(&d.author)?;
        self.poller(&mut subj, d.instance_id)?;
        if d.is_service() {
            self.service(&mut subj, d.service_id)?;
            if starting {
                accept_known_state(&self.cfg.dt_service_status, subj.service_info.state)?;
            }
            let sid = subj.service.as_ref().map(|(id, _)| *id);
            self.severity(&mut subj, sid)?;
            self.servicegroups(&mut subj)?;
        } else if starting {
            accept_known_state(&self.cfg.dt_host_status, subj.host.state)?;
        }
        self.hostgroups(&mut subj)?;
        Ok(subj)
    }

    fn host(&mut self, host_id: Option<u64>) -> Result<Subject, Rejection> {
        let host_id = host_id.ok_or(Rejection::NilId("host"))?;
        let host = match self.cache.host(host_id) {
            Some(h) => h,
            None if self.cfg.skip_anon_events => return Err(Rejection::Anonymous("host", host_id)),
            None => HostInfo::default(),
        };
        let host_name = match &host.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => host_id.to_string(),
        };
        // The library's `^_Module_BAM_*`: BAM's fake hosts.
        if host_name.starts_with("_Module_BAM") && !self.cfg.enable_bam_host {
            return Err(Rejection::BamHost);
        }
        if !accepted_name(&self.cfg.accepted_hosts, &host_name) {
            return Err(Rejection::HostName(host_name));
        }
        Ok(Subject {
            host_id,
            host_name,
            host,
            ..Subject::default()
        })
    }

    fn service(&mut self, subj: &mut Subject, service_id: Option<u64>) -> Result<(), Rejection> {
        let service_id = service_id
            .filter(|id| *id != 0)
            .ok_or(Rejection::NilId("service"))?;
        let info = match self.cache.service(subj.host_id, service_id) {
            Some(s) => s,
            None if self.cfg.skip_anon_events => {
                return Err(Rejection::Anonymous("service", service_id))
            }
            None => ServiceInfo::default(),
        };
        let description = match &info.description {
            Some(d) if !d.is_empty() => d.clone(),
            _ => service_id.to_string(),
        };
        if !accepted_name(&self.cfg.accepted_services, &description) {
            return Err(Rejection::ServiceName(description));
        }
        subj.service = Some((service_id, description));
        subj.service_info = info;
        if self.cfg.enable_bam_host && subj.host_name.starts_with("_Module_BAM") {
            self.bam_service(subj);
        }
        Ok(())
    }

    /// `enable_bam_host=1`: a service of BAM's fake host (`ba_<id>`) stands
    /// for that BA, which names the host, as in the Lua library.
    fn bam_service(&mut self, subj: &mut Subject) {
        let Some((_, description)) = &subj.service else {
            return;
        };
        let Ok(ba_id) = description.replace("ba_", "").trim().parse::<u64>() else {
            return;
        };
        let info = self.cache.ba(ba_id).unwrap_or_default();
        if let Some(name) = info.name.as_ref().filter(|n| !n.is_empty()) {
            subj.host_name = name.clone();
        }
        subj.ba = Some((ba_id, info));
    }

    /// Resolves the poller name when a poller filter or `poller`-type
    /// connector names need it, and applies the poller filter. The poller
    /// is the host's, as the Lua library reads it (`cache.host.instance_id`),
    /// for acknowledgements and downtimes too; the event's own `instance_id`
    /// serves only when the cache does not know the host's.
    fn poller(&mut self, subj: &mut Subject, instance_id: Option<u64>) -> Result<(), Rejection> {
        let filtering =
            !self.cfg.accepted_pollers.is_empty() || !self.cfg.rejected_pollers.is_empty();
        if !filtering && self.fmt.connector_name_type != ConnectorNameType::Poller {
            return Ok(());
        }
        subj.poller = subj
            .host
            .instance_id
            .or(instance_id)
            .and_then(|id| self.cache.poller_name(id));
        if filtering
            && !matches_lists(
                &self.cfg.accepted_pollers,
                &self.cfg.rejected_pollers,
                subj.poller.iter(),
            )
        {
            return Err(Rejection::Poller(subj.poller.clone()));
        }
        Ok(())
    }

    /// Host severity when `service_id` is `None`, else service severity.
    fn severity(&mut self, subj: &mut Subject, service_id: Option<u64>) -> Result<(), Rejection> {
        let (threshold, what) = match service_id {
            None => (self.cfg.host_severity, "host"),
            Some(_) => (self.cfg.service_severity, "service"),
        };
        let needed_for_state = self.fmt.use_severity_as_state
            && service_id == subj.service.as_ref().map(|(id, _)| *id);
        if threshold.is_none() && !needed_for_state {
            return Ok(());
        }
        let sev = self.cache.severity(subj.host_id, service_id);
        if needed_for_state {
            subj.severity = sev;
        }
        if let Some((th, op)) = threshold {
            if !sev.is_some_and(|v| op.holds(th, v)) {
                return Err(Rejection::Severity(what, sev));
            }
        }
        Ok(())
    }

    fn hostgroups(&mut self, subj: &mut Subject) -> Result<(), Rejection> {
        subj.hostgroups = self.cache.hostgroups(subj.host_id);
        if self.fmt.sort_hostgroups {
            subj.hostgroups.sort();
        }
        if !matches_lists(
            &self.cfg.accepted_hostgroups,
            &self.cfg.rejected_hostgroups,
            subj.hostgroups.iter(),
        ) {
            return Err(Rejection::Group("host"));
        }
        Ok(())
    }

    fn servicegroups(&mut self, subj: &mut Subject) -> Result<(), Rejection> {
        let Some((sid, _)) = subj.service else {
            return Ok(());
        };
        subj.servicegroups = self.cache.servicegroups(subj.host_id, sid);
        if self.fmt.sort_servicegroups {
            subj.servicegroups.sort();
        }
        if !matches_lists(
            &self.cfg.accepted_servicegroups,
            &self.cfg.rejected_servicegroups,
            subj.servicegroups.iter(),
        ) {
            return Err(Rejection::Group("service"));
        }
        Ok(())
    }

    fn author(&self, author: &str) -> Result<(), Rejection> {
        let a = [author.to_string()];
        if matches_lists(
            &self.cfg.accepted_authors,
            &self.cfg.rejected_authors,
            a.iter(),
        ) {
            Ok(())
        } else {
            Err(Rejection::Author(author.to_string()))
        }
    }
}

fn accept_state(accepted: &[i64], state: Option<i64>) -> Result<(), Rejection> {
    match state {
        Some(s) if accepted.contains(&s) => Ok(()),
        other => Err(Rejection::State(other)),
    }
}

/// A state the cache does not know does not block a downtime.
fn accept_known_state(accepted: &[i64], state: Option<i64>) -> Result<(), Rejection> {
    match state {
        None => Ok(()),
        s => accept_state(accepted, s),
    }
}

/// An empty accepted list accepts everything; otherwise one name must be in
/// it. No name may be in the rejected list.
fn matches_lists<'a>(
    accepted: &NameList,
    rejected: &NameList,
    names: impl Iterator<Item = &'a String> + Clone,
) -> bool {
    let accepted_ok = accepted.is_empty() || names.clone().any(|n| accepted.contains(n));
    let rejected_ok = rejected.is_empty() || !names.clone().any(|n| rejected.contains(n));
    accepted_ok && rejected_ok
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cache::MemoryCache;
    use crate::config::{self, tests::minimal, ParamValue};
    use crate::event::Field;

    pub(crate) fn cache() -> MemoryCache {
        let mut c = MemoryCache::default();
        c.hosts.insert(
            12,
            HostInfo {
                name: Some("host-a".into()),
                instance_id: Some(1),
                notes_url: Some("http://notes/a".into()),
                action_url: None,
                state: Some(0),
            },
        );
        c.services.insert(
            (12, 34),
            ServiceInfo {
                description: Some("Ping".into()),
                notes_url: None,
                action_url: Some("http://act/ping".into()),
                state: Some(2),
            },
        );
        c.hostgroups.insert(12, vec!["linux".into(), "dc1".into()]);
        c.servicegroups.insert((12, 34), vec!["net".into()]);
        c.pollers.insert(1, "poller-1".into());
        c.severities.insert((12, 0), 2);
        c.severities.insert((12, 34), 5);
        c
    }

    pub(crate) fn service(state: i64) -> StatusEvent {
        StatusEvent {
            host_id: Some(12),
            service_id: Some(34),
            state: Some(state),
            state_type: Some(1),
            last_check: Some(1_700_000_000),
            last_hard_state_change: Some(1_700_000_000),
            output: "OK - rta 0.3ms".into(),
            ..StatusEvent::default()
        }
    }

    fn run(extra: &[(&str, ParamValue)], ev: NebEvent) -> Result<Subject, Rejection> {
        let mut p = minimal();
        for (k, v) in extra {
            p.insert(k.to_string(), v.clone());
        }
        let c = config::parse(&p).unwrap().config;
        check(&c.filter, &c.format, &ev, &mut cache())
    }

    fn s(v: &str) -> ParamValue {
        ParamValue::Str(v.into())
    }

    /// Every combination of the screened fields' values (nil, odd types
    /// included), under strict and lax filters, with and without the
    /// connector's memory of what it sent: what the screen rejects, the
    /// full check rejects.
    #[test]
    fn the_screen_never_rejects_what_the_full_check_accepts() {
        use crate::event::MapSource;
        let ints = || {
            vec![
                None,
                Some(Field::Int(0)),
                Some(Field::Int(1)),
                Some(Field::Int(2)),
                Some(Field::Str(b"x".to_vec())),
            ]
        };
        let times = || vec![None, Some(Field::Int(5)), Some(Field::Int(6))];
        let bools = || vec![None, Some(Field::Bool(true)), Some(Field::Bool(false))];
        let lax = [
            ("flapping", s("1")),
            ("hard_only", s("0")),
            ("acknowledged", s("1")),
            ("in_downtime", s("1")),
            ("enable_service_status_dedup", s("0")),
        ];
        let strict = [("flapping", s("0"))];
        let mut screened = 0;
        // Service 12/34 last sent WARNING (HARD).
        let mut sent = dedup::Sent::default();
        let mut warning = service(1);
        warning.last_hard_state_change = Some(5);
        sent.queued(&warning, true).unwrap();
        let none: &[(&str, ParamValue)] = &[];
        for (extra, knowing) in [
            (&lax[..], false),
            (&strict[..], false),
            (none, false),
            (&lax[..], true),
            (&strict[..], true),
            (none, true),
        ] {
            let mut p = minimal();
            for (k, v) in extra {
                p.insert(k.to_string(), v.clone());
            }
            let c = config::parse(&p).unwrap().config;
            for st in ints() {
                for state in ints() {
                    for lc in times() {
                        for lh in times() {
                            for ack in bools() {
                                for ack_type in [None, Some(Field::Int(1))] {
                                    for depth in [None, Some(Field::Int(1))] {
                                        for flap in bools() {
                                            let fields = [
                                                ("state_type", st.clone()),
                                                ("state", state.clone()),
                                                ("last_check", lc.clone()),
                                                ("last_hard_state_change", lh.clone()),
                                                ("acknowledged", ack.clone()),
                                                ("acknowledgement_type", ack_type.clone()),
                                                ("scheduled_downtime_depth", depth.clone()),
                                                ("flapping", flap.clone()),
                                                ("host_id", Some(Field::Int(12))),
                                                ("service_id", Some(Field::Int(34))),
                                            ];
                                            let kind = ElementKind::ServiceStatus;
                                            let mut screen = Screen::new(&c.filter, kind);
                                            if knowing {
                                                screen = screen.knowing(&sent);
                                            }
                                            let mut b = StatusBuilder::new(kind, None);
                                            let mut rejected = None;
                                            while let Some((i, n)) = b.next_field() {
                                                let v = fields
                                                    .iter()
                                                    .find(|(k, _)| *k == n)
                                                    .and_then(|(_, v)| v.clone());
                                                if b.set(i, v).is_err() {
                                                    break;
                                                }
                                                rejected = screen.after(i, &b);
                                                if rejected.is_some() {
                                                    break;
                                                }
                                            }
                                            let Some(why) = rejected else { continue };
                                            screened += 1;
                                            let mut src = MapSource(
                                                fields
                                                    .iter()
                                                    .filter_map(|(k, v)| Some((*k, v.clone()?)))
                                                    .collect(),
                                            );
                                            if let Ok(ev) = NebEvent::read(kind, &mut src) {
                                                let full = if knowing {
                                                    Verdicts::default()
                                                        .check_status(
                                                            &c.filter,
                                                            &c.format,
                                                            &ev,
                                                            &mut Memo::default(),
                                                            &mut cache(),
                                                            Instant::now(),
                                                            &sent,
                                                        )
                                                        .map(|_| ())
                                                } else {
                                                    check(&c.filter, &c.format, &ev, &mut cache())
                                                        .map(|_| ())
                                                };
                                                assert!(
                                                    full.is_err(),
                                                    "screen said {why}, check accepts {fields:?}"
                                                );
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(screened > 1000, "{screened}");
    }

    #[test]
    fn verdicts_agree_with_check_and_last_as_long_as_the_memo() {
        let mut p = minimal();
        p.insert("skip_anon_events".into(), ParamValue::Int(0));
        p.insert("accepted_servicegroups".into(), s("net"));
        let c = config::parse(&p).unwrap().config;
        let (mut memo, mut verdicts, mut real) = (Memo::default(), Verdicts::default(), cache());
        let now = Instant::now();
        let nothing = dedup::Sent::default();
        let mut check_status = |ev: NebEvent, real: &mut MemoryCache, memo: &mut Memo| {
            verdicts.check_status(&c.filter, &c.format, &ev, memo, real, now, &nothing)
        };
        let ev = || NebEvent::Service(service(2));
        let first = check_status(ev(), &mut real, &mut memo).unwrap();
        assert_eq!(
            *first,
            check(&c.filter, &c.format, &ev(), &mut cache()).unwrap()
        );
        // Remembered: broker's answers changing without a configuration
        // event do not show until the memo forgets.
        real.hosts.get_mut(&12).unwrap().name = Some("renamed".into());
        real.servicegroups.insert((12, 34), vec!["other".into()]);
        let again = check_status(ev(), &mut real, &mut memo).unwrap();
        assert!(Rc::ptr_eq(&first, &again));
        // Event-only checks still apply to each event.
        let mut soft = service(2);
        soft.state_type = Some(0);
        assert_eq!(
            check_status(NebEvent::Service(soft), &mut real, &mut memo),
            Err(Rejection::Soft)
        );
        memo.clear();
        assert_eq!(
            check_status(ev(), &mut real, &mut memo),
            Err(Rejection::Group("service"))
        );
        // A rejection is remembered too.
        real.servicegroups.insert((12, 34), vec!["net".into()]);
        assert_eq!(
            check_status(ev(), &mut real, &mut memo),
            Err(Rejection::Group("service"))
        );
    }

    #[test]
    fn verdicts_drawn_from_a_miss_are_not_remembered() {
        let mut p = minimal();
        p.insert("skip_anon_events".into(), ParamValue::Int(0));
        let c = config::parse(&p).unwrap().config;
        let (mut memo, mut verdicts, mut real) = (Memo::default(), Verdicts::default(), cache());
        let now = Instant::now();
        let nothing = dedup::Sent::default();
        let mut unknown = service(2);
        unknown.host_id = Some(99);
        let ev = NebEvent::Service(unknown);
        let mut check_status = |real: &mut MemoryCache| {
            verdicts.check_status(&c.filter, &c.format, &ev, &mut memo, real, now, &nothing)
        };
        let anonymous = check_status(&mut real);
        assert_eq!(anonymous.unwrap().host_name, "99");
        real.hosts.insert(
            99,
            HostInfo {
                name: Some("new-host".into()),
                ..HostInfo::default()
            },
        );
        let known = check_status(&mut real);
        assert_eq!(known.unwrap().host_name, "new-host");
    }

    #[test]
    fn accepts_a_hard_state_change_and_gathers_names() {
        let subj = run(&[], NebEvent::Service(service(2))).unwrap();
        assert_eq!(subj.host_name, "host-a");
        assert_eq!(subj.service, Some((34, "Ping".into())));
        assert_eq!(subj.hostgroups, vec!["linux", "dc1"]);
        assert_eq!(subj.servicegroups, vec!["net"]);
        assert_eq!(subj.poller.as_deref(), Some("poller-1"));
    }

    #[test]
    fn default_filters_reject_like_the_lua_library() {
        let mut e = service(2);
        e.state_type = Some(0);
        assert_eq!(run(&[], NebEvent::Service(e)), Err(Rejection::Soft));
        let mut e = service(2);
        e.last_check = Some(1_700_000_060);
        assert!(matches!(
            run(&[], NebEvent::Service(e.clone())),
            Err(Rejection::Duplicate(_))
        ));
        // A host is allowed the engine's processing delay (20 s).
        let mut h = service(1);
        h.service_id = None;
        h.last_hard_state_change = Some(1_700_000_001);
        assert!(run(&[], NebEvent::Host(h.clone())).is_ok());
        h.last_check = Some(1_700_000_030);
        assert!(matches!(
            run(&[], NebEvent::Host(h.clone())),
            Err(Rejection::Duplicate(_))
        ));
        assert!(run(
            &[("delta_host_status_change_allow", ParamValue::Int(40))],
            NebEvent::Host(h)
        )
        .is_ok());
        assert!(run(
            &[("enable_service_status_dedup", ParamValue::Int(0))],
            NebEvent::Service(e)
        )
        .is_ok());
        let mut e = service(2);
        e.acknowledged = true;
        assert_eq!(
            run(&[], NebEvent::Service(e.clone())),
            Err(Rejection::Acknowledged)
        );
        assert!(run(
            &[("acknowledged", ParamValue::Int(1))],
            NebEvent::Service(e)
        )
        .is_ok());
        let mut e = service(2);
        e.downtime_depth = 2;
        assert_eq!(
            run(&[], NebEvent::Service(e.clone())),
            Err(Rejection::InDowntime)
        );
        assert!(run(&[("in_downtime", ParamValue::Int(1))], NebEvent::Service(e)).is_ok());
        assert_eq!(
            run(&[], NebEvent::Service(service(4))),
            Err(Rejection::State(Some(4)))
        );
        assert_eq!(
            run(
                &[("service_status", s("1,2"))],
                NebEvent::Service(service(0))
            ),
            Err(Rejection::State(Some(0)))
        );
    }

    #[test]
    fn flapping_statuses_are_dropped_by_default_as_the_lua_library_does() {
        let mut e = service(2);
        e.flapping = true;
        for ev in [NebEvent::Service(e.clone()), NebEvent::Host(e.clone())] {
            assert_eq!(run(&[], ev.clone()), Err(Rejection::Flapping));
            assert_eq!(
                run(&[("flapping", ParamValue::Int(0))], ev.clone()),
                Err(Rejection::Flapping)
            );
            assert!(run(&[("flapping", ParamValue::Int(1))], ev).is_ok());
        }
        // The screen agrees: a flapping status stops at its `flapping` field.
        let c = config::parse(&minimal()).unwrap().config;
        let screen = Screen::new(&c.filter, ElementKind::ServiceStatus);
        let mut b = StatusBuilder::new(ElementKind::ServiceStatus, Some(29));
        b.set(
            crate::event::status_field::FLAPPING,
            Some(Field::Bool(true)),
        )
        .unwrap();
        assert_eq!(
            screen.after(crate::event::status_field::FLAPPING, &b),
            Some(Rejection::Flapping)
        );
    }

    /// Runs the screen over `s`'s fields as a reader does: the first
    /// rejection, if any.
    fn screened(cfg: &FilterConfig, s: &StatusEvent) -> Option<Rejection> {
        let kind = ElementKind::ServiceStatus;
        let screen = Screen::new(cfg, kind);
        let mut b = StatusBuilder::new(kind, Some(24));
        let fields = [
            Some(Field::Int(s.state_type.unwrap_or(0))),
            s.state.map(Field::Int),
            s.last_check.map(Field::Int),
            s.last_update.map(Field::Int),
            s.last_hard_state_change.map(Field::Int),
            Some(Field::Bool(s.acknowledged)),
            None,
            Some(Field::Int(s.downtime_depth)),
            Some(Field::Bool(s.flapping)),
        ];
        while let Some((i, _)) = b.next_field() {
            b.set(i, fields.get(i).cloned().flatten()).unwrap();
            if let Some(why) = screen.after(i, &b) {
                return Some(why);
            }
        }
        None
    }

    #[test]
    fn a_hard_change_goes_whole_to_the_connector_whatever_the_filters_say() {
        let c = config::parse(&minimal()).unwrap().config;
        let mut change = service(2);
        change.acknowledged = true;
        change.flapping = true;
        change.downtime_depth = 1;
        assert_eq!(screened(&c.filter, &change), None);
        assert_eq!(
            run(&[], NebEvent::Service(change.clone())),
            Err(Rejection::Acknowledged),
            "then refused by the full check"
        );
        change.state = Some(4);
        assert_eq!(screened(&c.filter, &change), None);
        // A repeat of the state, or a SOFT status, stops early.
        let mut repeat = change.clone();
        repeat.last_check = Some(1_700_000_060);
        assert_eq!(
            screened(&c.filter, &repeat),
            Some(Rejection::State(Some(4)))
        );
        repeat.state = Some(2);
        assert!(matches!(
            screened(&c.filter, &repeat),
            Some(Rejection::Duplicate(_))
        ));
        let mut soft = change;
        soft.state_type = Some(0);
        assert_eq!(screened(&c.filter, &soft), Some(Rejection::Soft));
    }

    #[test]
    fn unknown_objects_and_missing_ids() {
        let mut e = service(2);
        e.host_id = Some(99);
        assert_eq!(
            run(&[], NebEvent::Service(e.clone())),
            Err(Rejection::Anonymous("host", 99))
        );
        let subj = run(
            &[("skip_anon_events", ParamValue::Int(0))],
            NebEvent::Service(e),
        )
        .unwrap();
        assert_eq!(subj.host_name, "99");
        assert_eq!(subj.service, Some((34, "34".into())));
        let mut e = service(2);
        e.service_id = None;
        assert_eq!(
            run(&[], NebEvent::Service(e)),
            Err(Rejection::NilId("service"))
        );
    }

    #[test]
    fn group_poller_and_severity_filters() {
        let ev = || NebEvent::Service(service(2));
        assert!(run(&[("accepted_hostgroups", s("dc2,linux"))], ev()).is_ok());
        assert_eq!(
            run(&[("accepted_hostgroups", s("dc2"))], ev()),
            Err(Rejection::Group("host"))
        );
        assert_eq!(
            run(&[("rejected_hostgroups", s("dc1"))], ev()),
            Err(Rejection::Group("host"))
        );
        assert_eq!(
            run(&[("accepted_servicegroups", s("web"))], ev()),
            Err(Rejection::Group("service"))
        );
        assert!(run(&[("accepted_pollers", s("poller-1"))], ev()).is_ok());
        assert_eq!(
            run(&[("accepted_pollers", s("central"))], ev()),
            Err(Rejection::Poller(Some("poller-1".into())))
        );
        // threshold OP value, as the Lua library compares: 3 >= 2 (host) holds, 3 >= 5 (service) does not.
        assert_eq!(
            run(&[("service_severity_threshold", ParamValue::Int(3))], ev()),
            Err(Rejection::Severity("service", Some(5)))
        );
        assert!(run(&[("host_severity_threshold", ParamValue::Int(3))], ev()).is_ok());
    }

    #[test]
    fn accepted_hosts_and_services_are_lua_patterns() {
        let svc = || NebEvent::Service(service(2));
        assert!(run(&[("accepted_hosts", s("^host%-%a$"))], svc()).is_ok());
        assert_eq!(
            run(&[("accepted_hosts", s("^web"))], svc()),
            Err(Rejection::HostName("host-a".into()))
        );
        // Unanchored, as string.match.
        assert!(run(&[("accepted_services", s("in"))], svc()).is_ok());
        assert_eq!(
            run(&[("accepted_services", s("^Disk"))], svc()),
            Err(Rejection::ServiceName("Ping".into()))
        );
        let split = [
            ("accepted_hosts", s("^web;^host")),
            ("accepted_hosts_enable_split_pattern", ParamValue::Int(1)),
            ("accepted_hosts_split_character", s(";")),
        ];
        assert!(run(&split, svc()).is_ok());
    }

    #[test]
    fn acks_use_ack_state_lists_and_authors() {
        let ack = |service_id, state| {
            NebEvent::Ack(AckEvent {
                host_id: Some(12),
                service_id,
                author: "admin".into(),
                state: Some(state),
                ..AckEvent::default()
            })
        };
        let subj = run(&[], ack(Some(0), 1)).unwrap();
        assert_eq!(subj.service, None);
        assert_eq!(
            run(&[("ack_host_status", s("2"))], ack(Some(0), 1)),
            Err(Rejection::State(Some(1)))
        );
        assert!(run(&[], ack(Some(34), 3)).unwrap().service.is_some());
        assert_eq!(
            run(&[("accepted_authors", s("bob"))], ack(None, 1)),
            Err(Rejection::Author("admin".into()))
        );
        // The connector name is the host's poller, whoever sent the ack.
        let NebEvent::Ack(mut from_central) = ack(Some(34), 3) else {
            unreachable!()
        };
        from_central.instance_id = Some(2);
        let subj = run(&[], NebEvent::Ack(from_central)).unwrap();
        assert_eq!(subj.poller.as_deref(), Some("poller-1"));
    }

    #[test]
    fn downtime_state_lists_apply_to_starts_only() {
        let dt = |deletion_time| {
            NebEvent::Downtime(DowntimeEvent {
                host_id: Some(12),
                service_id: Some(34),
                actual_start_time: Some(10),
                deletion_time,
                ..DowntimeEvent::default()
            })
        };
        assert!(run(&[], dt(None)).is_ok());
        let only_ok = [("dt_service_status", s("0"))];
        assert_eq!(run(&only_ok, dt(None)), Err(Rejection::State(Some(2))));
        assert!(
            run(&only_ok, dt(Some(20))).is_ok(),
            "an end must always go through"
        );
        let gone = |deletion_time| {
            NebEvent::Downtime(DowntimeEvent {
                host_id: Some(77),
                actual_start_time: Some(10),
                deletion_time,
                ..DowntimeEvent::default()
            })
        };
        assert_eq!(run(&[], gone(None)), Err(Rejection::Anonymous("host", 77)));
        assert_eq!(
            run(&[], gone(Some(20))).map(|s| s.host_id),
            Ok(77),
            "end of an unknown host's downtime"
        );
    }

    #[test]
    fn bam_hosts_are_skipped() {
        let mut c = cache();
        c.hosts.get_mut(&12).unwrap().name = Some("_Module_BAM_1".into());
        let cfg = config::parse(&minimal()).unwrap().config;
        assert_eq!(
            check(
                &cfg.filter,
                &cfg.format,
                &NebEvent::Host(service(0)),
                &mut c
            ),
            Err(Rejection::BamHost)
        );
    }

    #[test]
    fn with_enable_bam_host_a_ba_service_is_named_after_its_ba() {
        let mut c = cache();
        c.hosts.get_mut(&12).unwrap().name = Some("_Module_BAM_1".into());
        c.services.get_mut(&(12, 34)).unwrap().description = Some("ba_7".into());
        c.bas.insert(
            7,
            BaInfo {
                name: Some("Web shop".into()),
                description: None,
            },
        );
        let mut p = minimal();
        p.insert("enable_bam_host".into(), ParamValue::Int(1));
        let cfg = config::parse(&p).unwrap().config;
        let subj = check(
            &cfg.filter,
            &cfg.format,
            &NebEvent::Service(service(2)),
            &mut c,
        )
        .unwrap();
        assert_eq!(subj.host_name, "Web shop");
        assert_eq!(subj.ba.as_ref().map(|(id, _)| *id), Some(7));
    }
}
