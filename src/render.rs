//! An accepted event through its template: the values its macros read.
//!
//! Event macros read the broker event as the Lua library sees it once it
//! has added its compatibility fields (`state` and `current_state`,
//! `last_update` and `last_check`, `acknowledged`,
//! `scheduled_downtime_depth`, `long_output`, `short_output`, `output`
//! cut at `output_size_limit`, a downtime's `internal_id` and `id`). Cache
//! macros read broker's cache through the subject the filters built;
//! fields only a template needs are fetched once per remembered subject.

use crate::cache::Cache;
use crate::config::FormatConfig;
use crate::custom::{Snapshot, SnapshotValues};
use crate::event::{ElementKind, Field, FieldSource, NebEvent};
use crate::logger::Logger;
use crate::subject::Subject;
use crate::subject::{Fields, ObjectFields};
use crate::template::values::FlagEnv;
use crate::template::{CacheType, Env, GroupOf, Needs, Resolve, Template, Templates};

/// Fields of a status that the connector read already and keeps as they
/// came (when present): a template reading them costs no call into Lua.
const KEPT: [&str; 9] = [
    "state",
    "state_type",
    "host_id",
    "service_id",
    "last_check",
    "last_update",
    "last_hard_state_change",
    "output",
    "long_output",
];

/// The event fields a template reads for each event, in one call into
/// Lua: the macros' own names (a compatibility field, the fields it is
/// made of), less those a status already holds. Fallbacks (`current_state`
/// when there is no `state`...) are read only when needed.
pub fn prefetched_fields(kind: ElementKind, needs: &Needs) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let status = matches!(kind, ElementKind::HostStatus | ElementKind::ServiceStatus);
    for name in &needs.event {
        let one = [name.as_str()];
        let parts: &[&str] = match name.as_str() {
            "long_output" if status => &["output", "long_output"],
            "short_output" if status => &["output"],
            _ => &one,
        };
        for p in parts {
            let kept = status && KEPT.contains(p);
            if !kept && !out.iter().any(|o| o == p) {
                out.push(p.to_string());
            }
        }
    }
    out
}

/// Fields of the cached host and service that change with each check,
/// read for one event.
#[derive(Debug, Default)]
struct Live {
    host: Fields,
    service: Fields,
}

/// The subject's host fields `host` and service fields `service` from
/// broker's cache (nothing asked for none).
fn object_fields(
    subj: &Subject,
    cache: &mut dyn Cache,
    host: &[String],
    service: &[String],
) -> (Fields, Fields) {
    let h = match (host.is_empty(), subj.host_id) {
        (false, id) if id != 0 => cache.host_fields(id, host),
        _ => None,
    };
    let s = match (service.is_empty(), &subj.service) {
        (false, Some((sid, _))) => cache.service_fields(subj.host_id, *sid, service),
        _ => None,
    };
    (h, s)
}

impl Live {
    fn fetch(needs: &Needs, subj: &Subject, cache: &mut dyn Cache) -> Live {
        let (host, service) = object_fields(subj, cache, &needs.host_live, &needs.service_live);
        Live { host, service }
    }
}

impl ObjectFields {
    fn fetch(needs: &Needs, subj: &Subject, cache: &mut dyn Cache) -> ObjectFields {
        let mut o = ObjectFields::default();
        let sid = subj.service.as_ref().map(|(id, _)| *id);
        (o.host, o.service) = object_fields(subj, cache, &needs.host, &needs.service);
        if needs.severity && subj.host_id != 0 {
            o.severity_host = cache.severity(subj.host_id, None);
            o.severity_service = sid.and_then(|s| cache.severity(subj.host_id, Some(s)));
        }
        if needs.instance {
            o.poller = match &subj.poller {
                Some(p) => Some(p.clone()),
                None => subj.host.instance_id.and_then(|i| cache.poller_name(i)),
            };
        }
        if needs.groups[GroupOf::HostAlias as usize] && subj.host_id != 0 {
            o.hostgroup_aliases = cache.hostgroup_aliases(subj.host_id).unwrap_or_default();
        }
        if needs.groups[GroupOf::Bv as usize] {
            o.bvs = match &subj.ba {
                Some((id, _)) if subj.bvs.is_empty() => Some(cache.bvs(*id)),
                _ => None,
            };
        }
        o
    }
}

/// What an event's values are read against.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    kind: ElementKind,
    ev: &'a NebEvent,
    subj: &'a Subject,
    fmt: &'a FormatConfig,
    needs: &'a Needs,
}

/// The values of one event, for [`Template::render`].
struct Values<'a> {
    ctx: Ctx<'a>,
    /// The broker event, for fields read on demand.
    src: &'a mut dyn FieldSource,
    /// Fields read from it so far.
    fetched: Vec<(String, Option<Field>)>,
    objects: &'a ObjectFields,
    live: Live,
}

/// `s` cut at `output_size_limit`, as the built-in format cuts it.
fn cut(s: &mut Vec<u8>, limit: Option<usize>) {
    s.truncate(crate::text::limited_len(s, limit));
}

impl Values<'_> {
    /// A field as broker gave it.
    fn raw(&mut self, name: &str) -> Option<Field> {
        if let Some(f) = self.kept(name) {
            return Some(f);
        }
        if let Some((_, v)) = self.fetched.iter().find(|(n, _)| n == name) {
            return v.clone();
        }
        let v = self.src.field(name);
        self.fetched.push((name.to_string(), v.clone()));
        v
    }

    /// A field the status read already holds, when it held it: the
    /// connector's conversions keep these as broker gave them (an absent,
    /// zero or empty one is read from broker instead).
    fn kept(&self, name: &str) -> Option<Field> {
        let (NebEvent::Host(s) | NebEvent::Service(s)) = self.ctx.ev else {
            return None;
        };
        let int = |v: Option<i64>| v.map(Field::Int);
        let id = |v: Option<u64>| v.and_then(|i| i64::try_from(i).ok()).map(Field::Int);
        match name {
            "state" => int(s.state),
            "state_type" => int(s.state_type),
            "host_id" => id(s.host_id),
            "service_id" => id(s.service_id).filter(|_| s.service_id != Some(0)),
            "last_check" => int(s.last_check),
            "last_update" => int(s.last_update),
            "last_hard_state_change" => int(s.last_hard_state_change),
            "output" if !s.output.is_empty() => Some(Field::Str(s.output.as_bytes().to_vec())),
            "long_output" => s
                .long_output
                .as_ref()
                .map(|l| Field::Str(l.as_bytes().to_vec())),
            _ => None,
        }
    }

    fn status(&self) -> bool {
        matches!(
            self.ctx.kind,
            ElementKind::HostStatus | ElementKind::ServiceStatus
        )
    }

    fn output(&mut self) -> Option<Vec<u8>> {
        match self.raw("output") {
            Some(Field::Str(s)) => Some(s),
            _ => None,
        }
    }
}

impl Resolve for Values<'_> {
    fn event(&mut self, name: &str) -> Option<Field> {
        let status = self.status();
        match name {
            "state" | "current_state" if self.ctx.kind == ElementKind::Downtime => {
                // The library recomputes a downtime's state from the
                // cache (and misses OK/UP, which it never reads): the
                // object's current state.
                let st = match &self.ctx.ev {
                    NebEvent::Downtime(d) if d.is_service() => self.ctx.subj.service_info.state,
                    _ => self.ctx.subj.host.state,
                };
                st.map(Field::Int)
            }
            "state" => self.raw("state").or_else(|| self.raw("current_state")),
            "current_state" => self.raw("current_state").or_else(|| self.raw("state")),
            "last_update" if status => self.raw("last_update").or_else(|| self.raw("last_check")),
            "last_check" if status => self.raw("last_check").or_else(|| self.raw("last_update")),
            "acknowledged" if status => {
                self.raw("acknowledged")
                    .or_else(|| match self.raw("acknowledgement_type") {
                        Some(Field::Int(t)) => Some(Field::Bool(t >= 1)),
                        _ => None,
                    })
            }
            "scheduled_downtime_depth" if status => self
                .raw("scheduled_downtime_depth")
                .or_else(|| self.raw("downtime_depth")),
            "output" if status => {
                let mut out = self.output()?;
                cut(&mut out, self.ctx.fmt.output_size_limit);
                Some(Field::Str(out))
            }
            "short_output" if status => {
                let mut out = self.output()?;
                if let Some(i) = out.iter().rposition(|&b| b == b'\n') {
                    out.truncate(i);
                }
                cut(&mut out, self.ctx.fmt.output_size_limit);
                Some(Field::Str(out))
            }
            "long_output" if status => {
                let out = self.output()?;
                match self.raw("long_output") {
                    Some(Field::Str(long)) if !long.is_empty() => {
                        let mut joined = Vec::with_capacity(out.len() + 1 + long.len());
                        joined.extend_from_slice(&out);
                        joined.push(b'\n');
                        joined.extend_from_slice(&long);
                        Some(Field::Str(joined))
                    }
                    _ => Some(Field::Str(out)),
                }
            }
            "internal_id" if self.ctx.kind == ElementKind::Downtime => {
                self.raw("internal_id").or_else(|| self.raw("id"))
            }
            "id" if self.ctx.kind == ElementKind::Downtime => {
                self.raw("id").or_else(|| self.raw("internal_id"))
            }
            other => self.raw(other),
        }
    }

    fn cache(&mut self, ty: CacheType, field: &str) -> Option<Field> {
        let s = self.ctx.subj;
        let pick = |names: &[String], values: &Option<Vec<Option<Field>>>| {
            let i = names.iter().position(|n| n == field)?;
            values.as_ref()?.get(i)?.clone()
        };
        let name = |n: &str| (!n.is_empty()).then(|| Field::Str(n.as_bytes().to_vec()));
        match ty {
            // A host (or service) broker cannot name is named by its id,
            // as the library does with skip_anon_events=0.
            CacheType::Host if field == "name" => name(&s.host_name),
            CacheType::Host if field == "host_id" && s.host_id != 0 => {
                Some(Field::Int(s.host_id as i64))
            }
            CacheType::Host
                if self.live.host.is_some()
                    && self.ctx.needs.host_live.iter().any(|n| n == field) =>
            {
                pick(&self.ctx.needs.host_live, &self.live.host)
            }
            CacheType::Host => pick(&self.ctx.needs.host, &self.objects.host),
            CacheType::Service if field == "description" => {
                s.service.as_ref().and_then(|(_, d)| name(d))
            }
            CacheType::Service if field == "service_id" => {
                s.service.as_ref().map(|(id, _)| Field::Int(*id as i64))
            }
            CacheType::Service
                if self.live.service.is_some()
                    && self.ctx.needs.service_live.iter().any(|n| n == field) =>
            {
                pick(&self.ctx.needs.service_live, &self.live.service)
            }
            CacheType::Service => pick(&self.ctx.needs.service, &self.objects.service),
            CacheType::Instance => match field {
                "id" => s.host.instance_id.map(|i| Field::Int(i as i64)),
                "name" => self.objects.poller.as_deref().and_then(name),
                _ => None,
            },
            CacheType::Severity => match field {
                "host" => self.objects.severity_host.map(Field::Int),
                "service" => self.objects.severity_service.map(Field::Int),
                _ => None,
            },
            CacheType::Ba => {
                let (id, info) = s.ba.as_ref()?;
                match field {
                    "ba_id" => Some(Field::Int(*id as i64)),
                    "ba_name" => match &info.name {
                        Some(n) if !n.is_empty() => name(n),
                        _ => Some(Field::Str(id.to_string().into_bytes())),
                    },
                    "ba_description" => info.description.as_deref().and_then(name),
                    _ => None,
                }
            }
        }
    }

    fn groups(&mut self, of: GroupOf) -> &[String] {
        match of {
            GroupOf::Host => &self.ctx.subj.hostgroups,
            GroupOf::Service => &self.ctx.subj.servicegroups,
            GroupOf::Bv => self.objects.bvs.as_deref().unwrap_or(&self.ctx.subj.bvs),
            GroupOf::HostAlias => &self.objects.hostgroup_aliases,
        }
    }
}

/// No event: what depends only on the object reads none.
struct NoEvent;

impl FieldSource for NoEvent {
    fn field(&mut self, _: &str) -> Option<Field> {
        None
    }
}

/// A template made ready for one kind: what it reads, computed once.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The template.
    pub template: Template,
    /// Event fields read for each event in one call ([`prefetched_fields`]).
    pub prefetch: Vec<String>,
}

impl Prepared {
    /// Prepares `template` for events of `kind`.
    pub fn new(kind: ElementKind, template: Template) -> Prepared {
        let prefetch = prefetched_fields(kind, &template.needs);
        Prepared { template, prefetch }
    }

    /// Renders an accepted event into `out`. `objects` are the cache
    /// answers remembered with the subject, fetched here the first time.
    /// With custom code, `snapshot` holds what the template reads, taken
    /// from the event table the code may have changed.
    #[allow(clippy::too_many_arguments)]
    pub fn render(
        &self,
        ev: &NebEvent,
        src: &mut dyn FieldSource,
        subj: &Subject,
        cache: &mut dyn Cache,
        fmt: &FormatConfig,
        snapshot: Option<&Snapshot>,
        out: &mut Vec<u8>,
    ) {
        let needs = &self.template.needs;
        let kind = ev.kind();
        let service = match ev {
            NebEvent::Ack(a) => a.is_service(),
            NebEvent::Downtime(d) => d.is_service(),
            _ => kind == ElementKind::ServiceStatus,
        };
        let env = Env {
            flags: FlagEnv {
                kind,
                service,
                dates: &fmt.dates,
            },
            typed: fmt.typed_values,
        };
        if let Some(snapshot) = snapshot {
            let mut values = SnapshotValues { snapshot, needs };
            return self.template.render(&mut values, &env, out);
        }
        let ctx = Ctx {
            kind,
            ev,
            subj,
            fmt,
            needs,
        };
        let objects = subj.objects.get_or_init(|| {
            let mut objects = ObjectFields::fetch(needs, subj, cache);
            // What depends only on the object, written once for it.
            let mut values = Values {
                ctx,
                src: &mut NoEvent,
                fetched: Vec::new(),
                objects: &objects,
                live: Live::default(),
            };
            let written = self.template.render_objects(&mut values, &env);
            objects.written = written;
            objects
        });
        let mut fetched = Vec::new();
        if !self.prefetch.is_empty() {
            let mut values = Vec::with_capacity(self.prefetch.len());
            src.fields(&self.prefetch, &mut values);
            fetched.extend(self.prefetch.iter().cloned().zip(values));
        }
        let live = Live::fetch(needs, subj, cache);
        let mut values = Values {
            ctx,
            src,
            fetched,
            objects,
            live,
        };
        self.template
            .render_with_objects(&mut values, &env, &objects.written, out);
    }
}

/// Keys every event for Canopsis's event route needs (its API refuses an
/// event without them).
const CANOPSIS_REQUIRED: [&str; 3] = ["event_type", "connector", "connector_name"];

/// Keys Canopsis requires of a pbehavior (`color` too before 23.04).
const PBEHAVIOR_REQUIRED: [&str; 6] = [
    "name",
    "enabled",
    "tstart",
    "type",
    "reason",
    "entity_pattern",
];

/// The `format_file` key of a kind's template.
pub fn template_key(kind: ElementKind) -> String {
    match kind {
        ElementKind::BaStatus => "bam_ba_status".into(),
        k => format!("neb_{}", k.name()),
    }
}

/// How each kind of accepted event is written.
#[derive(Debug, Clone, Default)]
pub struct Formats(Vec<(ElementKind, Option<Prepared>)>);

/// What [`Formats`] says about one kind.
#[derive(Debug)]
pub enum Choice<'a> {
    /// The built-in Canopsis format (none for BAs).
    BuiltIn,
    /// An empty template: nothing is sent.
    Mute,
    /// The user's template.
    Render(&'a Prepared),
}

impl Formats {
    /// Loads `format_file`, logging each problem at error level. Without
    /// the file, or when it cannot be read, every kind keeps its built-in
    /// format (as in Lua).
    pub fn load(fmt: &FormatConfig, log: &Logger) -> Formats {
        let Some(path) = &fmt.format_file else {
            return Formats::default();
        };
        let (templates, problems) = match Templates::load(&path.to_string_lossy()) {
            Ok(t) => t,
            Err(e) => {
                log.error(format_args!("{e}"));
                return Formats::default();
            }
        };
        for p in problems {
            log.error(format_args!("{p}"));
        }
        let mut slots = Vec::new();
        for (kind, t) in templates.into_slots() {
            match &t {
                None => log.info(format_args!(
                    "format_file: the {} template is empty: those events are not sent",
                    template_key(kind)
                )),
                Some(t) => {
                    let (required, what): (&[&str], _) = match kind {
                        ElementKind::Downtime => (&PBEHAVIOR_REQUIRED, "pbehaviors"),
                        _ => (&CANOPSIS_REQUIRED, "events"),
                    };
                    let missing: Vec<String> = required
                        .iter()
                        .filter(|k| !t.has_key(k))
                        .map(|k| format!("'{k}'"))
                        .collect();
                    if !missing.is_empty() {
                        log.error(format_args!(
                            "format_file: the {} template has no {}: Canopsis refuses such {what}, so they are retried and never acknowledged until the template is fixed",
                            template_key(kind),
                            missing.join(", ")
                        ));
                    }
                    if !fmt.typed_values && t.whole_macro_at("timestamp") {
                        log.error(format_args!(
                            "format_file: the {} template sends 'timestamp' as a JSON string, which Canopsis accepts and its engine then drops; set format_file_typed_values=1 to send it as a number",
                            template_key(kind)
                        ));
                    }
                    log.info(format_args!(
                        "format_file: {} events use the {} template",
                        kind.name(),
                        template_key(kind)
                    ));
                }
            }
            slots.push((kind, t.map(|t| Prepared::new(kind, t))));
        }
        Formats(slots)
    }

    /// How events of `kind` are written.
    pub fn choice(&self, kind: ElementKind) -> Choice<'_> {
        match self.0.iter().find(|(k, _)| *k == kind) {
            None => Choice::BuiltIn,
            Some((_, None)) => Choice::Mute,
            Some((_, Some(p))) => Choice::Render(p),
        }
    }
}
