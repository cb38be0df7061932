//! What an HTTP answer says about who answered.
//!
//! Only Canopsis's own answers may condemn an event's content: a reverse
//! proxy, a WAF or a captive portal in front of it answers 400 or 413 with
//! an HTML page (or nothing) for reasons that have nothing to do with the
//! event, and a redirect the transport did not follow (one that would take
//! the auth key to another host, or turn a POST into a GET) says nothing
//! either. Those are configuration faults: retried with backoff, never
//! dead-lettered.

use crate::transport::Response;

/// An answer that says nothing about the content sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Foreign {
    /// For the log: status, what answered, and what to check.
    pub reason: String,
}

/// Whether the body is Canopsis's error shape: a JSON object with an
/// `error` string or an `errors` object (`canopsis-api.md` §1.3).
pub fn is_canopsis_error(body: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Shape {
        error: Option<String>,
        errors: Option<serde_json::Map<String, serde_json::Value>>,
    }
    serde_json::from_str::<Shape>(body.trim())
        .is_ok_and(|s| s.error.is_some() || s.errors.is_some())
}

/// A redirect the transport did not follow, or a refusal (400, 413, 422)
/// that did not come from Canopsis: `None` when the answer is Canopsis's to
/// judge.
pub fn foreign(resp: &Response) -> Option<Foreign> {
    let status = resp.status;
    let reason = match status {
        300..=399 => {
            let (why, check) = match &resp.redirect {
                Some(why) if why.about_address() => (
                    why.to_string(),
                    "check sending_protocol, canopsis_host and canopsis_port",
                ),
                Some(why) => (why.to_string(), "check the canopsis_*_route parameters"),
                None => (
                    "redirect (not followed)".to_string(),
                    "check sending_protocol, canopsis_host, canopsis_port and the routes",
                ),
            };
            format!("HTTP {status} {why}; {check}")
        }
        400 | 413 | 422 if !is_canopsis_error(&resp.body) => {
            let hint = if resp
                .body
                .contains("plain HTTP request was sent to HTTPS port")
            {
                "an HTTPS port answered a plain HTTP request: set sending_protocol=https or the HTTP port in canopsis_port"
            } else if status == 413 {
                "a proxy in front of Canopsis limits the request body size: raise its limit (nginx client_max_body_size) or lower max_buffer_size"
            } else {
                "this is not Canopsis's answer: a proxy, WAF or another server answers on canopsis_host:canopsis_port (check sending_protocol and canopsis_port)"
            };
            let body = resp.snippet();
            let body = if body.is_empty() {
                "(empty body)".to_string()
            } else {
                body
            };
            format!("HTTP {status} {body}: {hint}")
        }
        _ => return None,
    };
    Some(Foreign { reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tests::resp;
    use crate::transport::Unfollowed;

    #[test]
    fn only_canopsis_json_errors_are_canopsis_refusals() {
        assert!(is_canopsis_error(
            r#"{"error":"request has invalid structure"}"#
        ));
        assert!(is_canopsis_error(
            r#"{"errors":{"name":"Name is missing."}}"#
        ));
        for body in [
            "",
            "<html>400 Bad Request</html>",
            "[]",
            r#"{"msg":"x"}"#,
            "null",
        ] {
            assert!(!is_canopsis_error(body), "{body}");
        }
        assert_eq!(
            foreign(&resp(400, r#"{"error":"cannot parse JSON"}"#)),
            None
        );
        assert_eq!(foreign(&resp(500, "<html>")), None);
    }

    #[test]
    fn foreign_answers_say_what_to_check() {
        let nginx = resp(
            400,
            "<html>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n</html>",
        );
        let f = foreign(&nginx).unwrap();
        assert!(f.reason.contains("sending_protocol=https"), "{}", f.reason);
        assert!(!f.reason.contains('\n'));
        let f = foreign(&resp(413, "")).unwrap();
        assert!(f.reason.contains("(empty body)") && f.reason.contains("client_max_body_size"));
        let mut moved = resp(301, "");
        moved.redirect = Some(Unfollowed::LeavesOrigin {
            to: "https://sso.example".into(),
        });
        let f = foreign(&moved).unwrap();
        assert!(
            f.reason
                .starts_with("HTTP 301 redirect to https://sso.example (not followed")
                && f.reason
                    .ends_with("check sending_protocol, canopsis_host and canopsis_port"),
            "{}",
            f.reason
        );
        moved.redirect = Some(Unfollowed::WouldBecomeGet {
            method: crate::transport::Method::Post,
            to: "/api/v4/event".into(),
        });
        let f = foreign(&moved).unwrap();
        assert!(
            f.reason.contains("as a GET") && f.reason.ends_with("canopsis_*_route parameters"),
            "{}",
            f.reason
        );
    }
}
