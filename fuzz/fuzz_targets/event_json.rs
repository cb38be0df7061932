//! Arbitrary bytes → an event of any kind, with fields of any type → the
//! filters with a cache → the Canopsis JSON (or pbehavior change). Nothing
//! may panic, and every JSON produced must parse.
#![no_main]

use canopsis_native::cache::{HostInfo, MemoryCache, ServiceInfo};
use canopsis_native::config::{self, ParamValue, Params};
use canopsis_native::event::{ElementKind, Field, MapSource, NebEvent};
use canopsis_native::filter;
use canopsis_native::render::Prepared;
use canopsis_native::sink::canopsis::pbehavior;
use canopsis_native::sink::event_json;
use canopsis_native::template::Templates;
use libfuzzer_sys::fuzz_target;

fn field(kind: u8, bytes: &[u8]) -> Field {
    let int = || {
        let mut b = [0u8; 8];
        b[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
        i64::from_le_bytes(b)
    };
    match kind % 5 {
        0 => Field::Int(int() % 5),
        1 => Field::Int(int()),
        2 => Field::Float(f64::from_bits(int() as u64)),
        3 => Field::Bool(bytes.first().is_some_and(|b| b % 2 == 1)),
        _ => Field::Str(bytes.to_vec()),
    }
}

/// Every macro kind and flag, for every kind.
const TEMPLATES: &str = r#"{
  "neb_host_status": {"a": "{state}", "b": "x {output_scshort} {last_check_scdate} {state_type_sctype}",
    "c": "{groups(hg,table,.*)}", "d": ["{cache.host.name}", {"{host_id}": "{acknowledged_scstring}"}],
    "e": "{long_output}", "f": "{cache.severity.host_scnumber}", "g": "{state_scstate}", "h": "{cache.instance.name}"},
  "neb_service_status": {"a": "{state}", "b": "{short_output}", "c": "{groups(sg,inline,%d)}",
    "d": "{cache.service.description}", "e": "{scheduled_downtime_depth}", "f": "{last_update_scdate}"},
  "neb_acknowledgement": {"a": "{author}", "b": "{comment_data}", "c": "{state_scstate}", "d": "{entry_time_scdate}"},
  "neb_downtime": {"a": "{internal_id}", "b": "{state}", "c": "{start_time_scdate}", "comment": "{comment_data}"}
}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut rest)) = data.split_first() else {
        return;
    };
    let kind = [
        ElementKind::HostStatus,
        ElementKind::ServiceStatus,
        ElementKind::Acknowledgement,
        ElementKind::Downtime,
    ][(head % 4) as usize];
    // Every field the core may read, for any kind.
    let names: Vec<&'static str> = [
        ElementKind::HostStatus,
        ElementKind::Acknowledgement,
        ElementKind::Downtime,
    ]
    .iter()
    .flat_map(|k| k.fields().iter().copied())
    .collect();
    let mut fields = Vec::new();
    while rest.len() >= 3 {
        let (name, ty, len) = (rest[0], rest[1], rest[2] as usize % 32);
        let end = (3 + len).min(rest.len());
        fields.push((names[name as usize % names.len()], field(ty, &rest[3..end])));
        rest = &rest[end..];
    }
    let raw = fields.clone();
    let Ok(ev) = NebEvent::read(kind, &mut MapSource(fields)) else {
        return;
    };

    let mut params = Params::new();
    params.insert("canopsis_authkey".into(), ParamValue::Str("k".into()));
    params.insert("canopsis_host".into(), ParamValue::Str("h".into()));
    params.insert(
        "skip_anon_events".into(),
        ParamValue::Int((head >> 2) as i64 % 2),
    );
    params.insert(
        "use_severity_as_state".into(),
        ParamValue::Int((head >> 3) as i64 % 2),
    );
    let cfg = config::parse(&params).expect("valid parameters").config;
    let mut cache = MemoryCache::default();
    cache.hosts.insert(
        1,
        HostInfo {
            name: Some("h\"ost\n".into()),
            instance_id: Some(1),
            ..HostInfo::default()
        },
    );
    cache.services.insert(
        (1, 2),
        ServiceInfo {
            description: Some("s\\vc".into()),
            ..ServiceInfo::default()
        },
    );
    cache.severities.insert((1, 0), 3);

    let Ok(subject) = filter::check(&cfg.filter, &cfg.format, &ev, &mut cache) else {
        return;
    };
    // The same event through a template using every macro kind and flag.
    let (templates, _) = Templates::from_text(TEMPLATES, "fuzz").expect("templates load");
    if let Some((_, Some(t))) = templates.into_slots().into_iter().find(|(k, _)| *k == kind) {
        let mut out = Vec::new();
        Prepared::new(kind, t).render(
            &ev,
            &mut MapSource(raw),
            &subject,
            &mut cache,
            &cfg.format,
            None,
            &mut out,
        );
        serde_json::from_slice::<serde_json::Value>(&out).expect("templates write valid JSON");
    }
    match &ev {
        NebEvent::Downtime(d) => {
            if let Ok(action) = pbehavior::action(d, &subject) {
                serde_json::from_slice::<serde_json::Value>(&pbehavior::action_json(&action))
                    .expect("valid JSON");
            }
        }
        _ => {
            let json = event_json::event_json(&cfg.format, &ev, &subject).expect("events format");
            serde_json::from_slice::<serde_json::Value>(&json).expect("valid JSON");
        }
    }
});
