//! JSON documents for any HTTP receiver (Logstash's `http` input with the
//! `json` or `json_lines` codec, Fluent Bit, a custom service), and what
//! its answers mean.
//!
//! Such a receiver says nothing about single events: a 2xx takes the whole
//! body, a 400/413/422 refuses its content (the sender splits it to find
//! the documents at fault), and anything else is retried.

use super::Verdict;
use crate::config::FormatConfig;
use crate::downtime::{self, Phase};
use crate::event::{DowntimeEvent, NebEvent};
use crate::sink::event_json;
use crate::subject::Subject;
use crate::transport::Response;

/// Writes the built-in document of an accepted event to `out`: the fields
/// of the Canopsis event the Canopsis output would send, then
/// `event_kind` and, where that event has no ids (acknowledgements),
/// `host_id` and, for a service, `service_id`, as text like a status's; for a
/// downtime, which has no Canopsis event, its own fields. `false`, and
/// nothing written, when there is no built-in document (BA statuses need
/// a template, as for Canopsis; a downtime not started or ended).
pub fn write_document(
    cfg: &FormatConfig,
    ev: &NebEvent,
    subj: &Subject,
    out: &mut Vec<u8>,
) -> bool {
    if let NebEvent::Downtime(d) = ev {
        return match downtime_document(cfg, d, subj) {
            Some(doc) => {
                out.extend_from_slice(&doc);
                true
            }
            None => false,
        };
    }
    let start = out.len();
    if !event_json::write_event_json(cfg, ev, subj, out) || out.last() != Some(&b'}') {
        out.truncate(start);
        return false;
    }
    out.pop();
    out.extend_from_slice(b",\"event_kind\":\"");
    out.extend_from_slice(ev.kind().name().as_bytes());
    out.push(b'"');
    // A status's Canopsis event has its ids already, as text.
    if !matches!(ev, NebEvent::Host(_) | NebEvent::Service(_)) {
        out.extend_from_slice(b",\"host_id\":\"");
        out.extend_from_slice(subj.host_id.to_string().as_bytes());
        out.push(b'"');
        if let Some((id, _)) = &subj.service {
            out.extend_from_slice(b",\"service_id\":\"");
            out.extend_from_slice(id.to_string().as_bytes());
            out.push(b'"');
        }
    }
    out.push(b'}');
    true
}

/// A downtime's start or end as a document; `None` for the other
/// events of its life (scheduled, ended before its deletion), which say
/// nothing a receiver needs.
fn downtime_document(cfg: &FormatConfig, d: &DowntimeEvent, subj: &Subject) -> Option<Vec<u8>> {
    let phase = downtime::phase(d).ok()?;
    let mut doc = serde_json::json!({
        "event_type": "downtime",
        "phase": match phase { Phase::Start => "start", Phase::End => "end" },
        "connector": cfg.connector,
        "component": subj.host_name,
        "author": d.author,
        "output": d.comment,
        "start_time": d.start_time,
        "end_time": d.end_time,
        "timestamp": d.actual_start_time.filter(|_| phase == Phase::Start).or(d.deletion_time),
        "downtime_id": d.id,
        "event_kind": "downtime",
        "host_id": subj.host_id.to_string(),
    });
    if let Some((id, desc)) = &subj.service {
        doc["resource"] = desc.as_str().into();
        doc["service_id"] = id.to_string().into();
    }
    serde_json::to_vec(&doc).ok()
}

/// What a receiver's answer to a body of documents means.
pub fn judge(resp: &Response) -> Verdict {
    let retry = |reason: String, config_fault: bool| super::retry(resp, reason, config_fault);
    match resp.status {
        200..=299 => Verdict::Delivered,
        300..=399 => super::redirect(resp),
        400 | 413 | 422 => Verdict::Refused(format!("HTTP {} {}", resp.status, resp.snippet())),
        401 | 403 | 407 => retry(
            format!(
                "HTTP {} {}: the receiver refused the credentials (check http_headers, proxy_username/proxy_password)",
                resp.status,
                resp.snippet()
            ),
            true,
        ),
        404 | 405 => retry(
            format!(
                "HTTP {} {}: nothing takes events at http_server_url (check its path)",
                resp.status,
                resp.snippet()
            ),
            true,
        ),
        status => retry(format!("HTTP {status}: {}", resp.snippet()), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, tests::minimal_webhook};
    use crate::filter::tests::{cache, service};
    use crate::transport::tests::resp;
    use serde_json::Value;

    #[test]
    fn a_document_is_the_canopsis_event_with_its_kind_and_ids() {
        let cfg = config::parse_for(config::OutputKind::Webhook, &minimal_webhook("json"))
            .unwrap()
            .config;
        let ev = NebEvent::Service(service(2));
        let subject = crate::filter::check(&cfg.filter, &cfg.format, &ev, &mut cache()).unwrap();
        let mut canopsis = Vec::new();
        assert!(event_json::write_event_json(
            &cfg.format,
            &ev,
            &subject,
            &mut canopsis
        ));
        let mut out = b"[".to_vec();
        assert!(write_document(&cfg.format, &ev, &subject, &mut out));
        let doc: Value = serde_json::from_slice(&out[1..]).unwrap();
        let mut expected: Value = serde_json::from_slice(&canopsis).unwrap();
        expected["event_kind"] = "service_status".into();
        assert_eq!(doc, expected);
        assert_eq!(
            (&doc["host_id"], &doc["service_id"]),
            (&"12".into(), &"34".into())
        );
    }

    #[test]
    fn only_a_refusal_of_content_splits_and_429_waits_as_told() {
        assert_eq!(judge(&resp(200, "ok")), Verdict::Delivered);
        assert_eq!(judge(&resp(204, "")), Verdict::Delivered);
        assert!(matches!(judge(&resp(400, "bad json")), Verdict::Refused(_)));
        let mut busy = resp(429, "");
        busy.retry_after = Some(std::time::Duration::from_secs(3));
        let Verdict::Retry {
            config_fault,
            retry_after,
            ..
        } = judge(&busy)
        else {
            panic!()
        };
        assert!(!config_fault);
        assert_eq!(retry_after, Some(std::time::Duration::from_secs(3)));
        for status in [301, 401, 403, 404] {
            let Verdict::Retry { config_fault, .. } = judge(&resp(status, "")) else {
                panic!("{status}")
            };
            assert!(config_fault, "{status}");
        }
    }
}
