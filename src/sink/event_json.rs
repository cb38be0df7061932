//! Canopsis events as JSON, as the Lua connector writes them: the Canopsis
//! output's events, and the fields the webhook output's documents start
//! from. Below both sinks, so neither knows the other.
//!
//! Field names, types and the state mapping follow
//! `canopsis2x-events-apiv2.lua`; ids are strings, groups are arrays,
//! `timestamp` is the check time. Where the Lua code emits the text `"nil"`
//! for a missing URL, this connector sends `""`.

use crate::config::{ConnectorNameType, FormatConfig};
use crate::event::{AckEvent, NebEvent, StatusEvent};
use crate::subject::Subject;
use crate::text::short_output;
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
    long_output: std::borrow::Cow<'a, str>,
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

/// The whole text of a plugin output (BBDO 2 keeps it all in `output`;
/// BBDO 3 splits it into `output` and `long_output`).
fn long_output(s: &StatusEvent) -> std::borrow::Cow<'_, str> {
    match &s.long_output {
        Some(l) if !l.is_empty() => format!("{}\n{}", s.output, l).into(),
        _ => s.output.as_str().into(),
    }
}

fn connector_name<'a>(cfg: &'a FormatConfig, subj: &'a Subject) -> &'a str {
    match (cfg.connector_name_type, &subj.poller) {
        (ConnectorNameType::Poller, Some(p)) if !p.is_empty() => p,
        _ => &cfg.connector_name,
    }
}

fn status<'a>(
    cfg: &'a FormatConfig,
    s: &'a StatusEvent,
    subj: &'a Subject,
    service: bool,
) -> CanopsisEvent<'a> {
    let long = long_output(s);
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
    let (notes, action) = subj.urls(service);
    CanopsisEvent {
        event_type: "check",
        source_type: if service { "resource" } else { "component" },
        connector: &cfg.connector,
        connector_name: connector_name(cfg, subj),
        component: &subj.host_name,
        resource: subj.service.as_ref().map(|(_, d)| d.as_str()),
        author: None,
        output: short_output(cfg, s),
        long_output: long,
        state,
        timestamp: s.last_check,
        hostgroups: Some(&subj.hostgroups),
        servicegroups: service.then_some(subj.servicegroups.as_slice()),
        notes_url: Some(notes.as_deref().unwrap_or("")),
        action_url: Some(action.as_deref().unwrap_or("")),
        host_id: Some(IdText(subj.host_id)),
        service_id: subj.service.as_ref().map(|(id, _)| IdText(*id)),
    }
}

fn ack<'a>(cfg: &'a FormatConfig, a: &'a AckEvent, subj: &'a Subject) -> CanopsisEvent<'a> {
    let service = subj.service.is_some();
    CanopsisEvent {
        event_type: if a.is_removal() { "ackremove" } else { "ack" },
        source_type: if service { "resource" } else { "component" },
        connector: &cfg.connector,
        connector_name: connector_name(cfg, subj),
        component: &subj.host_name,
        resource: Some(subj.service.as_ref().map(|(_, d)| d.as_str()).unwrap_or("")),
        author: Some(&a.author),
        output: &a.comment,
        long_output: a.comment.as_str().into(),
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
    }
}

/// The Canopsis event for an accepted event, if it goes to the event route.
fn canopsis_event<'a>(
    cfg: &'a FormatConfig,
    ev: &'a NebEvent,
    subj: &'a Subject,
) -> Option<CanopsisEvent<'a>> {
    match ev {
        NebEvent::Host(s) => Some(status(cfg, s, subj, false)),
        NebEvent::Service(s) => Some(status(cfg, s, subj, true)),
        NebEvent::Ack(a) => Some(ack(cfg, a, subj)),
        NebEvent::Downtime(_) | NebEvent::Ba(_) => None,
    }
}

/// A JSON key as written after the separator: `"name":`.
macro_rules! k {
    ($name:literal) => {
        concat!("\"", $name, "\":").as_bytes()
    };
}

impl CanopsisEvent<'_> {
    /// Writes the object exactly as serde_json would (a test holds it to
    /// that), without serde's per-field machinery: this runs for every
    /// event on broker's thread, and the keys need no escaping.
    fn write_json(&self, out: &mut Vec<u8>) {
        self.write_head(out);
        self.write_middle(out);
        self.write_tail(out);
    }

    /// `{` and the fields before `output`: for a status, the same for every
    /// status of one object.
    fn write_head(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut w = JsonFields { out, first: true };
        w.str(k!("event_type"), self.event_type);
        w.str(k!("source_type"), self.source_type);
        w.str(k!("connector"), self.connector);
        w.str(k!("connector_name"), self.connector_name);
        w.str(k!("component"), self.component);
        if let Some(v) = self.resource {
            w.str(k!("resource"), v);
        }
        if let Some(v) = self.author {
            w.str(k!("author"), v);
        }
    }

    /// `output` to `timestamp`, after the head's fields.
    fn write_middle(&self, out: &mut Vec<u8>) {
        let mut w = JsonFields { out, first: false };
        w.str(k!("output"), self.output);
        w.str(k!("long_output"), &self.long_output);
        if let Some(v) = self.state {
            w.key(k!("state"));
            json_int(w.out, v);
        }
        if let Some(v) = self.timestamp {
            w.key(k!("timestamp"));
            json_int(w.out, v);
        }
    }

    /// The fields after `timestamp`, and `}`: for a status, the same for
    /// every status of one object.
    fn write_tail(&self, out: &mut Vec<u8>) {
        let mut w = JsonFields { out, first: false };
        if let Some(v) = self.hostgroups {
            w.strs(k!("hostgroups"), v);
        }
        if let Some(v) = self.servicegroups {
            w.strs(k!("servicegroups"), v);
        }
        if let Some(v) = self.notes_url {
            w.str(k!("notes_url"), v);
        }
        if let Some(v) = self.action_url {
            w.str(k!("action_url"), v);
        }
        if let Some(IdText(v)) = self.host_id {
            w.id(k!("host_id"), v);
        }
        if let Some(IdText(v)) = self.service_id {
            w.id(k!("service_id"), v);
        }
        out.push(b'}');
    }
}

struct JsonFields<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl JsonFields<'_> {
    /// `key` is quoted and followed by its colon ([`k!`]).
    fn key(&mut self, key: &[u8]) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.extend_from_slice(key);
    }

    fn str(&mut self, key: &[u8], value: &str) {
        self.key(key);
        json_str(self.out, value);
    }

    fn strs(&mut self, key: &[u8], values: &[String]) {
        self.key(key);
        self.out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            json_str(self.out, v);
        }
        self.out.push(b']');
    }

    fn id(&mut self, key: &[u8], value: u64) {
        self.key(key);
        self.out.push(b'"');
        json_uint(self.out, value);
        self.out.push(b'"');
    }
}

/// A JSON string with serde_json's escapes: `\"`, `\\`, the short forms
/// of `\b \f \n \r \t`, `\u00xx` for other control characters.
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(short);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any byte is a control character, `"` or `\\`. Eight bytes at a
/// time: almost no monitoring output needs escaping, and a byte-by-byte
/// scan was the largest part of writing an event.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Exact "some byte of x is below n" for n <= 128 (no false positives).
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH != 0;
    let zero_byte = |x: u64| below(x, 1);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        if below(x, 0x20) || zero_byte(x ^ (ONES * 0x22)) || zero_byte(x ^ (ONES * 0x5c)) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

fn json_int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    json_uint(out, v.unsigned_abs());
}

fn json_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
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
    let (s, service) = match ev {
        NebEvent::Host(s) => (s, false),
        NebEvent::Service(s) => (s, true),
        _ => {
            return match canopsis_event(cfg, ev, subj) {
                Some(e) => {
                    e.write_json(out);
                    true
                }
                None => false,
            }
        }
    };
    // A remembered subject serves every status of its object: its head and
    // tail are written once, then copied.
    let e = status(cfg, s, subj, service);
    let (head, tail) = subj.rendered.get_or_init(|| {
        let (mut head, mut tail) = (Vec::new(), Vec::new());
        e.write_head(&mut head);
        e.write_tail(&mut tail);
        (head.into(), tail.into())
    });
    out.extend_from_slice(head);
    e.write_middle(out);
    out.extend_from_slice(tail);
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

    #[test]
    fn the_word_scan_finds_every_byte_that_needs_escaping_wherever_it_is() {
        let naive = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        for len in 0..20 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut buf = vec![b'a'; len];
                    buf[at] = byte;
                    assert_eq!(needs_escape(&buf), naive(&buf), "{buf:?}");
                    // Neighbours that sit just above the thresholds.
                    buf.iter_mut().for_each(|c| *c = 0x20);
                    buf[at] = byte;
                    assert_eq!(needs_escape(&buf), naive(&buf), "{buf:?}");
                    buf.iter_mut().for_each(|c| *c = 0xff);
                    buf[at] = byte;
                    assert_eq!(needs_escape(&buf), naive(&buf), "{buf:?}");
                }
            }
        }
    }

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
                'a', 'é', '"', '\\', '\n', '\t', '\u{0}', '\u{1b}', '/', '€', '𝄞', ' ', '\r',
                '\u{8}', '\u{c}', '\u{7f}', '\u{1f}',
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
            let reference = serde_json::to_vec(&canopsis_event(&cfg, &ev, &subject).unwrap());
            assert_eq!(
                String::from_utf8(bytes.clone()).unwrap(),
                String::from_utf8(reference.unwrap()).unwrap(),
                "the hand-written JSON is serde_json's, byte for byte"
            );
            // The next status of the same object reuses the subject's
            // rendering: still serde_json's bytes.
            if let NebEvent::Host(s) | NebEvent::Service(s) = &ev {
                let mut next = s.clone();
                next.output = rng.text();
                next.state = Some((rng.next() % 4) as i64);
                next.last_check = Some(rng.next() as i64 >> 1);
                let next = match &ev {
                    NebEvent::Host(_) => NebEvent::Host(next),
                    _ => NebEvent::Service(next),
                };
                assert_eq!(
                    String::from_utf8(event_json(&cfg, &next, &subject).unwrap()).unwrap(),
                    serde_json::to_string(&canopsis_event(&cfg, &next, &subject).unwrap()).unwrap(),
                );
            }
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
                NebEvent::Downtime(_) | NebEvent::Ba(_) => unreachable!(),
            }
        }
    }
}
