//! The Canopsis sink: what its answers mean (the event route's here, who
//! answered in [`answer`]) and downtimes as pbehaviors ([`pbehavior`]). Its
//! event JSON is [`super::event_json`], which the webhook output's documents
//! extend.

pub mod answer;
pub mod pbehavior;
pub mod rules;

use super::Verdict;
use crate::transport::Response;

/// Reads an answer of `POST /api/v4/event`.
pub fn judge_events(resp: &Response) -> Verdict {
    if let Some(f) = answer::foreign(resp) {
        return Verdict::Retry {
            reason: f.reason,
            config_fault: true,
            retry_after: None,
        };
    }
    match resp.status {
        200..=299 if nothing_failed(&resp.body) => Verdict::Delivered,
        200..=299 => {
            // Canopsis echoes every event; only the failed ones are kept,
            // the sent ones are skipped without being built.
            #[derive(serde::Deserialize)]
            struct Answer {
                sent_events: Vec<serde::de::IgnoredAny>,
                failed_events: Vec<serde_json::Value>,
            }
            match serde_json::from_str::<Answer>(&resp.body) {
                Ok(a) if a.failed_events.is_empty() => Verdict::Delivered,
                Ok(a) => Verdict::Partial {
                    sent: a.sent_events.len(),
                    failed: a.failed_events,
                },
                Err(_) => Verdict::Retry {
                    reason: format!(
                        "HTTP {} with an answer that is not a Canopsis API v4 event response (check canopsis_host, canopsis_port and canopsis_event_route): {}",
                        resp.status,
                        resp.snippet()
                    ),
                    config_fault: true,
                    retry_after: None,
                },
            }
        }
        // Canopsis judges each event alone (failed_events); a 400 refuses
        // the request as a whole, and its events passed the rules that
        // condemn an event ([`rules`]): nothing in it is proven bad.
        400 => Verdict::Retry {
            reason: format!(
                "HTTP 400 {} for events that pass Canopsis's per-event rules: not their content (check the Canopsis version and canopsis_event_route)",
                resp.snippet()
            ),
            config_fault: true,
            retry_after: None,
        },
        // Too large: a request of several events is split.
        413 | 422 => Verdict::Refused(format!("HTTP {} {}", resp.status, resp.snippet())),
        401 => Verdict::Retry {
            reason: format!(
                "HTTP 401 {}: Canopsis refused canopsis_authkey (unknown key or disabled user)",
                resp.snippet()
            ),
            config_fault: true,
            retry_after: None,
        },
        403 => Verdict::Retry {
            reason: format!(
                "HTTP 403 {}: the user of canopsis_authkey lacks the api_event permission",
                resp.snippet()
            ),
            config_fault: true,
            retry_after: None,
        },
        407 => Verdict::Retry {
            reason: "HTTP 407: the proxy refused proxy_username/proxy_password".to_string(),
            config_fault: true,
            retry_after: None,
        },
        status => Verdict::Retry {
            reason: format!("HTTP {status}: {}", resp.snippet()),
            config_fault: matches!(status, 404 | 405),
            retry_after: resp.retry_after,
        },
    }
}

/// Whether an answer is Canopsis's `{"sent_events":[...],"failed_events":[],...}`
/// with nothing failed, found without parsing the echo of every event (the
/// sender would spend more time on that than on the request). The last
/// `"failed_events":` is the top-level one: inside the echoed events' text
/// every quote is escaped, and the keys come in this order. Anything else
/// goes through the full parse.
fn nothing_failed(body: &str) -> bool {
    const KEY: &str = "\"failed_events\":";
    let b = body.trim();
    b.strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with("\"sent_events\":"))
        && b.ends_with('}')
        && b.rfind(KEY)
            .is_some_and(|i| b[i + KEY.len()..].trim_start().starts_with("[]"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tests::resp;

    #[test]
    fn the_quick_check_agrees_with_the_full_parse() {
        for (body, delivered) in [
            (
                r#"{"sent_events":[{"a":1}],"failed_events":[],"retry_events":[]}"#,
                true,
            ),
            (r#"{ "sent_events": [], "failed_events": [ ] }"#, true),
            (
                r#"{"sent_events":[{"output":"\"failed_events\":[]"}],"failed_events":[{"b":2}],"retry_events":[]}"#,
                false,
            ),
            (r#"{"failed_events":[],"sent_events":[{"a":1}]}"#, true),
            (
                r#"{"sent_events":[{"a":1}],"failed_events":[{"a":1}]}"#,
                false,
            ),
            (r#"{"sent_events":[{"a":1}],"failed_events":[]"#, false),
        ] {
            assert_eq!(
                judge_events(&resp(200, body)) == Verdict::Delivered,
                delivered,
                "{body}"
            );
        }
        assert!(!nothing_failed(r#"{"failed_events":[],"sent_events":[]}"#));
        assert!(!nothing_failed(
            r#"{"sent_events":[{"output":"x"}],"failed_events":[{"o":"\"failed_events\":[]"}]}"#
        ));
    }

    #[test]
    fn judges_canopsis_answers() {
        assert_eq!(
            judge_events(&resp(
                200,
                r#"{"sent_events":[{}],"failed_events":[],"retry_events":[]}"#
            )),
            Verdict::Delivered
        );
        assert_eq!(
            judge_events(&resp(
                200,
                r#"{"sent_events":[{}],"failed_events":[{"a":1}],"retry_events":[]}"#
            )),
            Verdict::Partial {
                sent: 1,
                failed: vec![serde_json::json!({"a":1})]
            }
        );
        let Verdict::Retry {
            config_fault,
            reason,
            ..
        } = judge_events(&resp(401, r#"{"error":"Unauthorized"}"#))
        else {
            panic!()
        };
        assert!(config_fault && reason.contains("canopsis_authkey"));
        let Verdict::Retry { config_fault, .. } = judge_events(&resp(200, "<html>portal</html>"))
        else {
            panic!()
        };
        assert!(config_fault);
        let Verdict::Retry { config_fault, .. } = judge_events(&resp(503, "")) else {
            panic!()
        };
        assert!(!config_fault);
        // A proxy's 413, a WAF's 400, a redirect: never the content's fault.
        for (status, body) in [(413, ""), (400, "<html>Bad Request</html>"), (302, "")] {
            let Verdict::Retry { config_fault, .. } = judge_events(&resp(status, body)) else {
                panic!("{status} {body}")
            };
            assert!(config_fault, "{status}");
        }
        assert!(matches!(
            judge_events(&resp(413, r#"{"error":"too large"}"#)),
            Verdict::Refused(_)
        ));
        // Canopsis's own 400 on events that pass its per-event rules proves
        // nothing about them.
        let Verdict::Retry { config_fault, .. } =
            judge_events(&resp(400, r#"{"error":"request has invalid structure"}"#))
        else {
            panic!()
        };
        assert!(config_fault);
    }
}
