//! Webhook receivers the mock serves beside Canopsis: a Mattermost incoming
//! webhook on `/hooks/<id>` and a Logstash-like `http` input on
//! `/logstash`. They check what they get as the real ones do (Mattermost's
//! payload shape and its per-second limit; JSON or NDJSON by content type)
//! and keep what they took.

use crate::mock::{Req, State};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Where Mattermost's incoming webhooks live.
pub const HOOKS: &str = "/hooks/";

/// Where the Logstash-like input listens.
pub const LOGSTASH: &str = "/logstash";

/// What the receivers know and took.
#[derive(Debug)]
pub struct Receivers {
    /// Incoming webhook ids Mattermost knows.
    pub hooks: Vec<String>,
    /// Messages Mattermost took, as received.
    pub posts: Vec<Value>,
    /// Posts Mattermost takes per second (its `RateLimitSettings.PerSec`);
    /// beyond, 429 with `Retry-After`. `None`: no limit.
    pub per_second: Option<usize>,
    /// When the posts of the last second were taken.
    recent: VecDeque<Instant>,
    /// The most posts taken within one second.
    pub busiest_second: usize,
    /// Requests answered 429.
    pub throttled: u64,
    /// Messages Mattermost refused as malformed.
    pub malformed: u64,
    /// Documents the Logstash input took (when the mock records).
    pub documents: Vec<Value>,
    /// Documents taken, recorded or not.
    pub document_count: u64,
    /// The `Authorization` header the Logstash input requires, if any.
    pub logstash_auth: Option<String>,
    /// The `Content-Type` headers of each request the Logstash input got.
    pub content_types: Vec<Vec<String>>,
    /// Mattermost's REST API, as a bot posts to it.
    pub api: crate::mattermost_api::Api,
}

impl Default for Receivers {
    fn default() -> Self {
        Receivers {
            hooks: vec![HOOK_ID.to_string()],
            posts: Vec::new(),
            per_second: None,
            recent: VecDeque::new(),
            busiest_second: 0,
            throttled: 0,
            malformed: 0,
            documents: Vec::new(),
            document_count: 0,
            logstash_auth: None,
            content_types: Vec::new(),
            api: Default::default(),
        }
    }
}

impl Receivers {
    /// How many events the posts stand for: one per message, and a
    /// summary's "N more ...".
    pub fn events_posted(&self) -> usize {
        self.posts
            .iter()
            .map(|p| match p["text"].as_str() {
                Some(t) if t.contains(" more ") => t
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                _ => 1,
            })
            .sum()
    }
}

/// The incoming webhook the mock Mattermost knows from the start.
pub const HOOK_ID: &str = "xq8n3dw5tpgd7c1kzs4s9hwq5e";

/// Mattermost's error answer.
fn mm_error(status: u16, id: &str, message: &str) -> (u16, String) {
    (
        status,
        json!({"id": id, "message": message, "detailed_error": "", "request_id": "mockreq", "status_code": status})
            .to_string(),
    )
}

/// Answers a request for one of the receivers; `None` when it is for
/// Canopsis.
pub(crate) fn route(st: &mut State, req: &Req) -> Option<(u16, String)> {
    if let Some(hook) = req.path.strip_prefix(HOOKS) {
        return Some(mattermost(st, hook, req));
    }
    if req.path == LOGSTASH {
        return Some(logstash(st, req));
    }
    crate::mattermost_api::route(st, req)
}

fn mattermost(st: &mut State, hook: &str, req: &Req) -> (u16, String) {
    if req.method != "POST" {
        return mm_error(405, "api.context.405.app_error", "Method not allowed");
    }
    if !st.receivers.hooks.iter().any(|h| h == hook) {
        return mm_error(
            400,
            "web.incoming_webhook.invalid.app_error",
            "Invalid webhook.",
        );
    }
    let now = Instant::now();
    let r = &mut st.receivers;
    while r
        .recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        r.recent.pop_front();
    }
    if r.per_second.is_some_and(|limit| r.recent.len() >= limit) {
        r.throttled += 1;
        return mm_error(429, "api.context.rate_limit.app_error", "Too many requests");
    }
    let post: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            r.malformed += 1;
            return mm_error(
                400,
                "web.incoming_webhook.parse.app_error",
                "Unable to parse incoming data.",
            );
        }
    };
    if let Err(why) = check_post(&post) {
        r.malformed += 1;
        return mm_error(400, "web.incoming_webhook.text.app_error", &why);
    }
    if let Some(marker) = &st.refuse_containing {
        if post.to_string().contains(marker.as_str()) {
            st.receivers.malformed += 1;
            return mm_error(
                400,
                "web.incoming_webhook.text.app_error",
                "refused by the test",
            );
        }
    }
    let r = &mut st.receivers;
    r.recent.push_back(now);
    r.busiest_second = r.busiest_second.max(r.recent.len());
    r.posts.push(post);
    (200, "ok".into())
}

/// What Mattermost's incoming webhook handler checks: text or attachments,
/// string overrides, attachments as objects with string colours and
/// fields of title/value.
fn check_post(post: &Value) -> Result<(), String> {
    let text = post
        .get("text")
        .map(|t| t.as_str().ok_or("text is not a string"));
    let text = text.transpose()?.unwrap_or("");
    let attachments = match post.get("attachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err("attachments is not an array".into()),
    };
    if text.trim().is_empty() && attachments.is_empty() {
        return Err("No text specified".into());
    }
    if text.chars().count() > 16383 {
        return Err("text longer than 16383 characters".into());
    }
    for key in ["username", "icon_url", "channel", "icon_emoji"] {
        if post.get(key).is_some_and(|v| !v.is_string()) {
            return Err(format!("{key} is not a string"));
        }
    }
    for a in &attachments {
        let Some(a) = a.as_object() else {
            return Err("an attachment is not an object".into());
        };
        for key in [
            "color",
            "title",
            "title_link",
            "text",
            "fallback",
            "pretext",
        ] {
            if a.get(key).is_some_and(|v| !v.is_string()) {
                return Err(format!("attachment {key} is not a string"));
            }
        }
        if let Some(fields) = a.get("fields") {
            let ok = fields.as_array().is_some_and(|f| {
                f.iter().all(|f| {
                    f.get("title").is_some_and(Value::is_string)
                        && f.get("value").is_some()
                        && f.get("short").is_none_or(Value::is_boolean)
                })
            });
            if !ok {
                return Err("attachment fields are not {title, value, short}".into());
            }
        }
    }
    Ok(())
}

fn logstash(st: &mut State, req: &Req) -> (u16, String) {
    if req.method != "POST" && req.method != "PUT" {
        return (405, "method not allowed".into());
    }
    if let Some(auth) = &st.receivers.logstash_auth {
        if req.headers.get("authorization") != Some(auth) {
            return (401, "unauthorized".into());
        }
    }
    st.receivers.content_types.push(req.content_types.clone());
    let ndjson = req
        .headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/x-ndjson"));
    if st.echo_only {
        // Benchmarks: counted, not checked, so the figures are the
        // connector's.
        let n = if ndjson {
            req.body.iter().filter(|&&b| b == b'\n').count()
        } else {
            serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&req.body).map_or(0, |v| v.len())
        };
        st.receivers.document_count += n as u64;
        return (200, "ok".into());
    }
    let docs: Vec<Value> = if ndjson {
        let mut docs = Vec::new();
        for line in req.body.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Value>(line) {
                Ok(v @ Value::Object(_)) => docs.push(v),
                _ => return (400, "line is not a JSON object".into()),
            }
        }
        // An empty body holds no line, and Logstash takes it.
        if !req.body.is_empty() && !req.body.ends_with(b"\n") {
            return (400, "last line has no line feed".into());
        }
        docs
    } else {
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(Value::Array(a)) if a.iter().all(Value::is_object) => a,
            Ok(v @ Value::Object(_)) => vec![v],
            _ => return (400, "body is not a JSON object or array of objects".into()),
        }
    };
    if let Some(marker) = &st.refuse_containing {
        if docs.iter().any(|d| d.to_string().contains(marker.as_str())) {
            return (400, "refused by the test".into());
        }
    }
    st.receivers.document_count += docs.len() as u64;
    if st.record {
        st.receivers.documents.extend(docs);
    }
    (200, "ok".into())
}
