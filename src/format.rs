//! Canopsis events, as the Lua connector writes them.
//!
//! Field names, types and the state mapping follow
//! `canopsis2x-events-apiv2.lua`; ids are strings, groups are arrays,
//! `timestamp` is the check time. Where the Lua code emits the text `"nil"`
//! for a missing URL, this connector sends `""`.

use crate::config::{ConnectorNameType, FormatConfig};
use crate::event::{AckEvent, NebEvent, StatusEvent};
use crate::filter::Subject;
use serde::Serialize;

/// One event for `POST /api/v4/event`.
#[derive(Debug, Serialize)]
struct CanopsisEvent<'a> {
    event_type: &'static str,
    source_type: &'static str,
    connector: &'a str,
    connector_name: &'a str,
    component: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    output: &'a str,
    long_output: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostgroups: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    servicegroups: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_id: Option<IdText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_id: Option<IdText>,
}

/// An id sent as a JSON string (as the Lua connector does), written
/// without building a `String` first.
#[derive(Debug)]
struct IdText(u64);

impl Serialize for IdText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Centreon host state (UP, DOWN, UNREACHABLE) to Canopsis severity.
pub fn host_state(state: i64) -> i64 {
    match state {
        0 => 0,
        1 => 3,
        2 => 2,
        other => other,
    }
}

/// Centreon service state (OK, WARNING, CRITICAL, UNKNOWN) to Canopsis severity.
pub fn service_state(state: i64) -> i64 {
    match state {
        0 => 0,
        1 => 1,
        2 => 3,
        3 => 2,
        other => other,
    }
}

/// The first line of a plugin output, and the whole text (BBDO 2 keeps both
/// in `output`; BBDO 3 splits them into `output` and `long_output`).
fn outputs(s: &StatusEvent) -> (&str, std::borrow::Cow<'_, str>) {
    let short = s.output.split('\n').next().unwrap_or("");
    let long = match &s.long_output {
        Some(l) if !l.is_empty() => format!("{}\n{}", s.output, l).into(),
        _ => s.output.as_str().into(),
    };
    (short, long)
}

fn truncate(text: &str, limit: Option<usize>) -> &str {
    match limit {
        Some(n) if text.len() > n => {
            let mut end = n;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            &text[..end]
        }
        _ => text,
    }
}

fn connector_name<'a>(cfg: &'a FormatConfig, subj: &'a Subject) -> &'a str {
    match (cfg.connector_name_type, &subj.poller) {
        (ConnectorNameType::Poller, Some(p)) if !p.is_empty() => p,
        _ => &cfg.connector_name,
    }
}

fn status(cfg: &FormatConfig, s: &StatusEvent, subj: &Subject, service: bool, out: &mut Vec<u8>) {
    let (short, long) = outputs(s);
    let mapped = s.state.map(|st| {
        if service {
            service_state(st)
        } else {
            host_state(st)
        }
    });
    let state = match (cfg.use_severity_as_state, subj.severity) {
        (true, Some(sev)) => Some(sev),
        _ => mapped,
    };
    let (notes, action) = if service {
        (&subj.service_info.notes_url, &subj.service_info.action_url)
    } else {
        (&subj.host.notes_url, &subj.host.action_url)
    };
    let ev = CanopsisEvent {
        event_type: "check",
        source_type: if service { "resource" } else { "component" },
        connector: &cfg.connector,
        connector_name: connector_name(cfg, subj),
        component: &subj.host_name,
        resource: subj.service.as_ref().map(|(_, d)| d.as_str()),
        author: None,
        output: truncate(short, cfg.output_size_limit),
        long_output: &long,
        state,
        timestamp: s.last_check,
        hostgroups: Some(&subj.hostgroups),
        servicegroups: service.then_some(subj.servicegroups.as_slice()),
        notes_url: Some(notes.as_deref().unwrap_or("")),
        action_url: Some(action.as_deref().unwrap_or("")),
        host_id: Some(IdText(subj.host_id)),
        service_id: subj.service.as_ref().map(|(id, _)| IdText(*id)),
    };
    serde_json::to_writer(out, &ev).expect("serializing plain data cannot fail")
}

fn ack(cfg: &FormatConfig, a: &AckEvent, subj: &Subject, out: &mut Vec<u8>) {
    let service = subj.service.is_some();
    let ev = CanopsisEvent {
        event_type: if a.is_removal() { "ackremove" } else { "ack" },
        source_type: if service { "resource" } else { "component" },
        connector: &cfg.connector,
        connector_name: connector_name(cfg, subj),
        component: &subj.host_name,
        resource: Some(subj.service.as_ref().map(|(_, d)| d.as_str()).unwrap_or("")),
        author: Some(&a.author),
        output: &a.comment,
        long_output: &a.comment,
        state: a.state.map(|st| {
            if service {
                service_state(st)
            } else {
                host_state(st)
            }
        }),
        timestamp: a.entry_time,
        hostgroups: None,
        servicegroups: None,
        notes_url: None,
        action_url: None,
        host_id: None,
        service_id: None,
    };
    serde_json::to_writer(out, &ev).expect("serializing plain data cannot fail")
}

/// The JSON object for an accepted event; `None` for kinds that are not
/// sent to the event route (downtimes become pbehaviors).
pub fn event_json(cfg: &FormatConfig, ev: &NebEvent, subj: &Subject) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    write_event_json(cfg, ev, subj, &mut out).then_some(out)
}

/// Appends the JSON object for an accepted event to `out` (a batch being
/// built, so no buffer per event); `false`, and nothing written, for kinds
/// that are not sent to the event route.
pub fn write_event_json(
    cfg: &FormatConfig,
    ev: &NebEvent,
    subj: &Subject,
    out: &mut Vec<u8>,
) -> bool {
    match ev {
        NebEvent::Host(s) => status(cfg, s, subj, false, out),
        NebEvent::Service(s) => status(cfg, s, subj, true, out),
        NebEvent::Ack(a) => ack(cfg, a, subj, out),
        NebEvent::Downtime(_) => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, tests::minimal, ParamValue};
    use crate::filter::{
        self,
        tests::{cache, service},
    };
    use serde_json::{json, Value};

    fn render(extra: &[(&str, ParamValue)], ev: NebEvent) -> Value {
        let mut p = minimal();
        for (k, v) in extra {
            p.insert(k.to_string(), v.clone());
        }
        let c = config::parse(&p).unwrap().config;
        let subj = filter::check(&c.filter, &c.format, &ev, &mut cache()).unwrap();
        serde_json::from_slice(&event_json(&c.format, &ev, &subj).unwrap()).unwrap()
    }

    #[test]
    fn service_check_event() {
        let mut e = service(2);
        e.output = "CRITICAL - down".into();
        e.long_output = Some("detail 1\ndetail 2".into());
        assert_eq!(
            render(&[], NebEvent::Service(e)),
            json!({
                "event_type": "check", "source_type": "resource",
                "connector": "centreon-stream", "connector_name": "poller-1",
                "component": "host-a", "resource": "Ping",
                "output": "CRITICAL - down", "long_output": "CRITICAL - down\ndetail 1\ndetail 2",
                "state": 3, "timestamp": 1_700_000_000,
                "hostgroups": ["linux", "dc1"], "servicegroups": ["net"],
                "notes_url": "", "action_url": "http://act/ping",
                "host_id": "12", "service_id": "34"
            })
        );
    }

    #[test]
    fn host_check_event_from_bbdo2_output() {
        let mut e = service(1);
        e.service_id = None;
        e.output = "DOWN - no answer\nlong part".into();
        let v = render(
            &[
                ("connector_name_type", ParamValue::Str("custom".into())),
                ("canopsis_sort_list_hostgroups", ParamValue::Int(1)),
            ],
            NebEvent::Host(e),
        );
        assert_eq!(
            v,
            json!({
                "event_type": "check", "source_type": "component",
                "connector": "centreon-stream", "connector_name": "centreon-stream-central",
                "component": "host-a",
                "output": "DOWN - no answer", "long_output": "DOWN - no answer\nlong part",
                "state": 3, "timestamp": 1_700_000_000,
                "hostgroups": ["dc1", "linux"],
                "notes_url": "http://notes/a", "action_url": "",
                "host_id": "12"
            })
        );
    }

    #[test]
    fn state_mapping() {
        assert_eq!(
            (0..4).map(service_state).collect::<Vec<_>>(),
            vec![0, 1, 3, 2]
        );
        assert_eq!((0..3).map(host_state).collect::<Vec<_>>(), vec![0, 3, 2]);
        let v = render(
            &[("use_severity_as_state", ParamValue::Int(1))],
            NebEvent::Service(service(2)),
        );
        assert_eq!(v["state"], 5);
    }

    #[test]
    fn ack_events() {
        let ack = |service_id, deletion_time| {
            NebEvent::Ack(AckEvent {
                host_id: Some(12),
                service_id,
                author: "admin".into(),
                comment: "on it".into(),
                entry_time: Some(1_700_000_100),
                deletion_time,
                state: Some(2),
                ..AckEvent::default()
            })
        };
        assert_eq!(
            render(&[], ack(Some(34), None)),
            json!({
                "event_type": "ack", "source_type": "resource",
                "connector": "centreon-stream", "connector_name": "poller-1",
                "component": "host-a", "resource": "Ping", "author": "admin",
                "output": "on it", "long_output": "on it", "state": 3, "timestamp": 1_700_000_100
            })
        );
        let v = render(&[], ack(Some(0), Some(1_700_000_200)));
        assert_eq!(v["event_type"], "ackremove");
        assert_eq!(v["source_type"], "component");
        assert_eq!(v["resource"], "");
        assert_eq!(v["state"], 2);
    }

    /// xorshift, so the property test needs no dependency and replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn text(&mut self) -> String {
            let alphabet = [
                'a', 'é', '"', '\\', '\n', '\t', '\u{0}', '\u{1b}', '/', '€', '𝄞', ' ',
            ];
            (0..self.next() % 64)
                .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn any_event_becomes_valid_json_carrying_its_values() {
        let mut rng = Rng(0x0dd_c0ffee);
        let cfg = config::parse(&minimal()).unwrap().config.format;
        for i in 0..5000 {
            let subject = Subject {
                host_id: rng.next() >> 1,
                host_name: rng.text(),
                service: (i % 2 == 0).then(|| (rng.next() >> 1, rng.text())),
                hostgroups: (0..rng.next() % 4).map(|_| rng.text()).collect(),
                servicegroups: (0..rng.next() % 4).map(|_| rng.text()).collect(),
                poller: (i % 3 == 0).then(|| rng.text()),
                ..Subject::default()
            };
            let ev = if i % 5 == 4 {
                NebEvent::Ack(AckEvent {
                    author: rng.text(),
                    comment: rng.text(),
                    state: Some((rng.next() % 4) as i64),
                    deletion_time: (i % 2 == 0).then_some(1),
                    ..AckEvent::default()
                })
            } else {
                let mut s = service((rng.next() % 4) as i64);
                s.output = rng.text();
                s.long_output = (i % 3 == 0).then(|| rng.text());
                s.last_check = Some(rng.next() as i64);
                if i % 2 == 0 {
                    NebEvent::Service(s)
                } else {
                    NebEvent::Host(s)
                }
            };
            let bytes = event_json(&cfg, &ev, &subject).unwrap();
            let v: Value = serde_json::from_slice(&bytes).expect("valid JSON");
            assert_eq!(v["component"], subject.host_name.as_str());
            assert_eq!(v["connector"], "centreon-stream");
            match &ev {
                NebEvent::Ack(a) => assert_eq!(v["output"], a.comment.as_str()),
                NebEvent::Host(s) | NebEvent::Service(s) => {
                    assert_eq!(v["output"], s.output.split('\n').next().unwrap());
                    assert_eq!(v["timestamp"], s.last_check.unwrap());
                    assert_eq!(
                        v["hostgroups"].as_array().unwrap().len(),
                        subject.hostgroups.len()
                    );
                }
                NebEvent::Downtime(_) => unreachable!(),
            }
        }
    }

    #[test]
    fn output_limit_cuts_on_a_character_boundary() {
        assert_eq!(truncate("héllo", Some(2)), "h");
        assert_eq!(truncate("hello", None), "hello");
    }
}
