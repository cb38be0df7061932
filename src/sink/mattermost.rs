//! Mattermost incoming webhooks: the messages, and what Mattermost's
//! answers mean.
//!
//! Mattermost takes one message per request and limits requests per
//! second per client, answering 429 with `Retry-After` past it. So the
//! Mattermost output runs one lane, paces its requests
//! ([`MattermostSettings::per_second`]) and, when more messages wait than a channel
//! can usefully show ([`MattermostSettings::summary_after`]), posts the first ones
//! and one summary for the rest ("37 more state changes: 12 CRITICAL, ...").
//!
//! Between the connector and the sender (and in the spool) each event is an
//! envelope, `{"summary":"CRITICAL","post":{...}}`: the message as
//! Mattermost gets it, and the word a summary counts it under, which a
//! user's template does not have to provide.

pub mod threads;

use super::Verdict;
use crate::actions::signature::{self, Target};
use crate::config::{Buttons, FormatConfig, MattermostSettings};
use crate::downtime::{self, Phase};
use crate::event::{AckEvent, DowntimeEvent, NebEvent, StatusEvent};
use crate::subject::Subject;
use crate::transport::Response;
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
pub use threads::{Place, Turn};

/// How long a button acknowledges: a day is long enough for the person on
/// call to see it, and short enough that a copied button is soon worthless.
pub const BUTTON_LIFETIME: Duration = Duration::from_secs(24 * 3600);

impl MattermostSettings {
    /// The shortest time between two requests: a hair more than a
    /// second's share, as requests that leave evenly spaced may arrive
    /// closer, and a server counting a strict second must not see one too
    /// many.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(1) * 51 / (50 * self.per_second.max(1))
    }
}

/// Centreon's colours for states.
fn colour(service: bool, state: i64) -> &'static str {
    match (service, state) {
        (_, 0) => "#88b917",
        (true, 1) => "#ff9a13",
        (true, 2) | (false, 1) => "#e00b3d",
        (false, 2) => "#818185",
        _ => "#bcbdc0",
    }
}

/// A state's name.
pub fn state_name(service: bool, state: i64) -> &'static str {
    match (service, state) {
        (true, 0) => "OK",
        (true, 1) => "WARNING",
        (true, 2) => "CRITICAL",
        (true, 3) => "UNKNOWN",
        (false, 0) => "UP",
        (false, 1) => "DOWN",
        (false, 2) => "UNREACHABLE",
        _ => "PENDING",
    }
}

/// What a summary counts an event under.
pub fn label(ev: &NebEvent) -> &'static str {
    match ev {
        NebEvent::Host(s) => state_name(false, s.state.unwrap_or(4)),
        NebEvent::Service(s) => state_name(true, s.state.unwrap_or(4)),
        NebEvent::Ack(a) if a.is_removal() => "acknowledgement removed",
        NebEvent::Ack(_) => "acknowledgement",
        NebEvent::Downtime(_) => "downtime",
        NebEvent::Ba(b) => state_name(true, b.state.unwrap_or(4)),
    }
}

/// The thread an event belongs to (threads through a bot account): its
/// object, and whether it is a problem, a recovery or a note. `None` for
/// what has no object of its own (a BA, an event without ids).
pub fn place(ev: &NebEvent) -> Option<Place> {
    let (host, service, turn) = match ev {
        NebEvent::Host(s) | NebEvent::Service(s) => {
            let ok = s.state == Some(0);
            let turn = if ok { Turn::Recovery } else { Turn::Problem };
            (s.host_id?, s.service_id, turn)
        }
        NebEvent::Ack(a) => (a.host_id?, a.service_id, Turn::Note),
        NebEvent::Downtime(d) => (d.host_id?, d.service_id, Turn::Note),
        NebEvent::Ba(_) => return None,
    };
    let object = match service.filter(|id| *id != 0) {
        Some(svc) => format!("{host}:{svc}"),
        None => host.to_string(),
    };
    Some(Place { object, turn })
}

/// Wraps the message `write` puts in `out` in its envelope, with its
/// thread's `place`; `false`, and nothing written, when `write` wrote
/// nothing.
pub fn write_envelope(
    out: &mut Vec<u8>,
    label: &str,
    place: Option<&Place>,
    write: impl FnOnce(&mut Vec<u8>) -> bool,
) -> bool {
    let start = out.len();
    out.extend_from_slice(b"{\"summary\":");
    out.extend_from_slice(&serde_json::to_vec(label).unwrap_or_default());
    if let Some(place) = place {
        out.extend_from_slice(b",\"thread\":");
        out.extend_from_slice(&serde_json::to_vec(place).unwrap_or_default());
    }
    out.extend_from_slice(b",\"post\":");
    let post = out.len();
    if !write(out) || out.len() == post {
        out.truncate(start);
        return false;
    }
    out.push(b'}');
    true
}

/// Writes the default message for an accepted event to `out`; `false`,
/// and nothing written, when there is none (BA statuses need a template; a
/// downtime neither starting nor ending).
pub fn write_message(
    cfg: &FormatConfig,
    settings: &MattermostSettings,
    ev: &NebEvent,
    subj: &Subject,
    out: &mut Vec<u8>,
) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let post = match ev {
        NebEvent::Host(s) => status(cfg, s, subj, false, settings.buttons.as_ref(), now),
        NebEvent::Service(s) => status(cfg, s, subj, true, settings.buttons.as_ref(), now),
        NebEvent::Ack(a) => ack(a, subj),
        NebEvent::Downtime(d) => match downtime(cfg, d, subj) {
            Some(post) => post,
            None => return false,
        },
        NebEvent::Ba(_) => return false,
    };
    serde_json::to_writer(out, &post).is_ok()
}

/// `host` or `host / service`.
fn object(subj: &Subject) -> String {
    match &subj.service {
        Some((_, desc)) => format!("{} / {desc}", subj.host_name),
        None => subj.host_name.clone(),
    }
}

fn field(title: &str, value: String) -> Value {
    json!({"short": true, "title": title, "value": value})
}

/// A problem: a host DOWN or UNREACHABLE, a service WARNING, CRITICAL or
/// UNKNOWN.
fn problem(service: bool, state: i64) -> bool {
    match service {
        true => (1..=3).contains(&state),
        false => (1..=2).contains(&state),
    }
}

/// The "Acknowledge" and "Acknowledge sticky" buttons for a problem, each
/// with its signed context (Mattermost's interactive message buttons: the
/// action's `integration` is POSTed to with `context` when clicked).
fn ack_buttons(b: &Buttons, subj: &Subject, state: &str, now: u64) -> Value {
    let expires = now + BUTTON_LIFETIME.as_secs();
    let button = |id: &str, name: &str, sticky: bool| {
        let target = Target {
            host: subj.host_name.clone(),
            service: subj.service.as_ref().map(|(_, d)| d.clone()),
            host_id: subj.host_id,
            service_id: subj.service.as_ref().map(|(id, _)| *id),
            state: state.to_string(),
            sticky,
        };
        let context = signature::sign(b.secret.expose().as_bytes(), target, expires);
        // Mattermost action ids: letters and digits only.
        json!({"id": id, "type": "button", "name": name,
               "integration": {"url": b.url, "context": context}})
    };
    json!([
        button("ack", "Acknowledge", false),
        button("acksticky", "Acknowledge sticky", true)
    ])
}

fn status(
    cfg: &FormatConfig,
    s: &StatusEvent,
    subj: &Subject,
    service: bool,
    buttons: Option<&Buttons>,
    now: u64,
) -> Value {
    let state = s.state.unwrap_or(4);
    let name = state_name(service, state);
    let output = crate::text::short_output(cfg, s);
    let (notes, action) = subj.urls(service);
    let mut fields = vec![field("State", name.to_string())];
    if let Some(t) = s
        .last_check
        .or(s.last_update)
        .and_then(|t| cfg.dates.format(t))
    {
        fields.push(field("Time", t));
    }
    let mut links = Vec::new();
    for (what, url) in [("Notes", notes), ("Action", action)] {
        if let Some(url) = url.as_deref().filter(|u| !u.trim().is_empty()) {
            links.push(format!("[{what}]({})", url.trim()));
        }
    }
    if !links.is_empty() {
        fields.push(field("Links", links.join(" · ")));
    }
    let title = format!("{} is {name}", object(subj));
    let mut attachment = json!({
        "fallback": format!("{title}: {output}"),
        "color": colour(service, state),
        "title": title,
        "text": output,
        "fields": fields,
    });
    if let Some(url) = notes.as_deref().filter(|u| !u.trim().is_empty()) {
        attachment["title_link"] = url.trim().into();
    }
    if let Some(b) = buttons.filter(|_| problem(service, state) && !s.acknowledged) {
        attachment["actions"] = ack_buttons(b, subj, name, now);
    }
    json!({ "attachments": [attachment] })
}

fn ack(a: &AckEvent, subj: &Subject) -> Value {
    let (title, colour) = if a.is_removal() {
        (
            format!("Acknowledgement of {} removed", object(subj)),
            "#bcbdc0",
        )
    } else {
        (
            format!("{} acknowledged by {}", object(subj), a.author),
            "#e5a800",
        )
    };
    json!({"attachments": [{
        "fallback": format!("{title}: {}", a.comment),
        "color": colour,
        "title": title,
        "text": a.comment,
    }]})
}

fn downtime(cfg: &FormatConfig, d: &DowntimeEvent, subj: &Subject) -> Option<Value> {
    let title = match downtime::phase(d).ok()? {
        Phase::Start => {
            let until = d
                .end_time
                .and_then(|t| cfg.dates.format(t))
                .map(|t| format!(" until {t}"))
                .unwrap_or_default();
            format!("Downtime on {} by {}{until}", object(subj), d.author)
        }
        Phase::End => format!("Downtime on {} ended", object(subj)),
    };
    Some(json!({"attachments": [{
        "fallback": format!("{title}: {}", d.comment),
        "color": "#cc99ff",
        "title": title,
        "text": d.comment,
    }]}))
}

/// One event of a batch: its summary word and its message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// What a summary counts it under.
    pub summary: String,
    /// The message, as written.
    pub post: Vec<u8>,
    /// Its thread (absent from envelopes written before threads).
    pub place: Option<Place>,
}

/// The envelopes of a batch body; `None` if it is not one.
pub fn messages(body: &[u8]) -> Option<Vec<Message>> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        summary: String,
        #[serde(default)]
        thread: Option<Place>,
        #[serde(borrow)]
        post: &'a serde_json::value::RawValue,
    }
    let list: Vec<Envelope> = serde_json::from_slice(body).ok()?;
    Some(
        list.into_iter()
            .map(|e| Message {
                summary: e.summary,
                post: e.post.get().as_bytes().to_vec(),
                place: e.thread,
            })
            .collect(),
    )
}

/// The request body for `post`: the message with `username`, `icon_url`
/// and `channel` set where the parameters say so and the message does not.
pub fn request_body(post: &[u8], s: &MattermostSettings) -> Vec<u8> {
    let Ok(mut map) = serde_json::from_slice::<Map<String, Value>>(post) else {
        // Not an object: Mattermost will say what is wrong with it.
        return post.to_vec();
    };
    for (key, value) in [
        ("username", &s.username),
        ("icon_url", &s.icon_url),
        ("channel", &s.channel),
    ] {
        if let Some(v) = value {
            map.entry(key).or_insert_with(|| v.as_str().into());
        }
    }
    serde_json::to_vec(&map).unwrap_or_else(|_| post.to_vec())
}

/// One message standing for `rest`: how many, and how many of each kind,
/// in the order they first came.
pub fn summary(rest: &[Message], s: &MattermostSettings) -> Vec<u8> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for m in rest {
        match counts.iter_mut().find(|(l, _)| *l == m.summary) {
            Some((_, n)) => *n += 1,
            None => counts.push((&m.summary, 1)),
        }
    }
    let states = [
        "OK",
        "WARNING",
        "CRITICAL",
        "UNKNOWN",
        "UP",
        "DOWN",
        "UNREACHABLE",
        "PENDING",
    ];
    let what = if counts.iter().all(|(l, _)| states.contains(l)) {
        "state changes"
    } else {
        "events"
    };
    let detail: Vec<String> = counts.iter().map(|(l, n)| format!("{n} {l}")).collect();
    let text = format!("{} more {what}: {}", rest.len(), detail.join(", "));
    request_body(
        &serde_json::to_vec(&json!({ "text": text })).unwrap_or_default(),
        s,
    )
}

/// What an error id of Mattermost's incoming-webhook handler says.
///
/// Read from Mattermost server's `HandleIncomingWebhook` and
/// `CreateWebhookPost` (`server/channels/app/webhook.go`) and the web
/// handler that parses the request (`server/channels/web/webhook.go`):
/// - about the message, so proof that this message will never be taken:
///   `web.incoming_webhook.parse.app_error` (the body is not a message),
///   `web.incoming_webhook.text.app_error` (neither text nor attachments),
///   `web.incoming_webhook.split_props_length.app_error` (attachments or
///   props too long to fit a post), `api.context.invalid_param.app_error`
///   (a `priority` without its value, a system `type`);
/// - about the hook or the server, which an admin fixes and after which the
///   same message is taken: `web.incoming_webhook.invalid.app_error`
///   (unknown or deleted hook), `web.incoming_webhook.disabled.app_error`
///   (incoming webhooks disabled), `web.incoming_webhook.channel.app_error`
///   and `app.channel.get.*` (channel not found), `channel_locked`,
///   `web.incoming_webhook.user.app_error` (the hook's user, or an
///   `@user` channel, unknown), `web.incoming_webhook.permissions.app_error`;
/// - any other id: not known to be about the message, so treated as the
///   hook's (retried, nothing dead-lettered).
fn about_the_message(id: &str) -> bool {
    matches!(
        id,
        "web.incoming_webhook.parse.app_error"
            | "web.incoming_webhook.text.app_error"
            | "web.incoming_webhook.split_props_length.app_error"
            | "api.context.invalid_param.app_error"
    )
}

/// Mattermost's error answer: `{"id":"...app_error","message":...}`.
pub(crate) fn error_id(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct AppError {
        id: String,
    }
    serde_json::from_str::<AppError>(body.trim())
        .ok()
        .map(|e| e.id)
        .filter(|id| id.contains('.'))
}

/// What Mattermost's answer to one message means.
pub fn judge(resp: &Response) -> Verdict {
    let retry = |reason: String, config_fault: bool| super::retry(resp, reason, config_fault);
    match resp.status {
        200..=299 => Verdict::Delivered,
        429 => retry(
            format!(
                "HTTP 429: Mattermost limits messages per second (lower max_messages_per_second); {}",
                resp.snippet()
            ),
            false,
        ),
        400 | 413 => match error_id(&resp.body) {
            Some(id) if about_the_message(&id) => Verdict::Proven(format!(
                "Mattermost refused the message for its content (HTTP {} {})",
                resp.status,
                resp.snippet()
            )),
            Some(id) if id == "web.incoming_webhook.invalid.app_error" => retry(
                format!(
                    "HTTP {} {}: no such incoming webhook (deleted, or a wrong http_server_url)",
                    resp.status,
                    resp.snippet()
                ),
                true,
            ),
            Some(id) => retry(
                format!(
                    "HTTP {} {}: Mattermost refuses the hook, not the message ({id}: check http_server_url, the hook, its channel and its user)",
                    resp.status,
                    resp.snippet()
                ),
                true,
            ),
            // Not Mattermost's words (a proxy): nothing proven.
            None => retry(
                format!(
                    "HTTP {} {}: refused by something that is not Mattermost (a proxy?); nothing is dead-lettered",
                    resp.status,
                    resp.snippet()
                ),
                true,
            ),
        },
        300..=399 => super::redirect(resp),
        401 | 403 => retry(
            format!(
                "HTTP {} {}: Mattermost refuses this webhook (incoming webhooks disabled, or the channel is not allowed)",
                resp.status,
                resp.snippet()
            ),
            true,
        ),
        404 | 501 => retry(
            format!(
                "HTTP {} {}: no such incoming webhook, or incoming webhooks disabled (check http_server_url)",
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
    use crate::config;
    use crate::event::NebEvent;
    use crate::filter::{
        self,
        tests::{cache, service},
    };
    use crate::transport::tests::resp;

    fn settings() -> MattermostSettings {
        MattermostSettings {
            username: Some("centreon".into()),
            icon_url: None,
            channel: Some("noc".into()),
            per_second: 4,
            summary_after: 3,
            buttons: None,
            bot: None,
        }
    }

    #[test]
    fn a_critical_service_gets_its_colour_output_and_links() {
        let cfg = config::parse(&config::tests::minimal()).unwrap().config;
        let ev = NebEvent::Service(service(2));
        let subj = filter::check(&cfg.filter, &cfg.format, &ev, &mut cache()).unwrap();
        let mut out = Vec::new();
        assert!(write_envelope(
            &mut out,
            label(&ev),
            place(&ev).as_ref(),
            |o| { write_message(&cfg.format, &settings(), &ev, &subj, o) }
        ));
        let m = messages(&[b"[", out.as_slice(), b"]"].concat()).unwrap();
        assert_eq!(m[0].summary, "CRITICAL");
        assert_eq!(m[0].place.as_ref().map(|p| p.turn), Some(Turn::Problem));
        let post: Value = serde_json::from_slice(&m[0].post).unwrap();
        let a = &post["attachments"][0];
        assert_eq!(a["color"], "#e00b3d");
        assert_eq!(a["text"], "OK - rta 0.3ms");
        assert!(a["title"].as_str().unwrap().ends_with("is CRITICAL"), "{a}");
        let sent: Value = serde_json::from_slice(&request_body(&m[0].post, &settings())).unwrap();
        assert_eq!(
            (&sent["username"], &sent["channel"]),
            (&json!("centreon"), &json!("noc"))
        );
        assert!(sent.get("icon_url").is_none());
    }

    #[test]
    fn a_problem_carries_signed_acknowledge_buttons_and_a_recovery_none() {
        let cfg = config::parse(&config::tests::minimal()).unwrap().config;
        let mut s = settings();
        s.buttons = Some(Buttons {
            url: "http://10.0.0.5:8089/mattermost/acknowledge".into(),
            secret: crate::secret::Secret::new("0123456789abcdef-s3cret"),
        });
        let message = |state: i64, acknowledged: bool| {
            let ev = NebEvent::Service(service(state));
            let subj = filter::check(&cfg.filter, &cfg.format, &ev, &mut cache()).unwrap();
            let mut st = service(state);
            st.acknowledged = acknowledged;
            let ev = NebEvent::Service(st);
            let mut out = Vec::new();
            assert!(write_message(&cfg.format, &s, &ev, &subj, &mut out));
            let post: Value = serde_json::from_slice(&out).unwrap();
            post["attachments"][0]["actions"].clone()
        };
        let actions = message(2, false);
        assert_eq!(actions[0]["name"], "Acknowledge");
        assert_eq!(actions[1]["id"], "acksticky");
        assert_eq!(
            actions[0]["integration"]["url"],
            "http://10.0.0.5:8089/mattermost/acknowledge"
        );
        let ctx: signature::Context =
            serde_json::from_value(actions[1]["integration"]["context"].clone()).unwrap();
        let now = ctx.expires - BUTTON_LIFETIME.as_secs();
        let t = signature::verify(b"0123456789abcdef-s3cret", &ctx, now).unwrap();
        assert_eq!((t.host_id, t.service_id, t.sticky), (12, Some(34), true));
        assert_eq!(t.state, "CRITICAL");
        assert!(!actions.to_string().contains("s3cret"));
        assert!(message(0, false).is_null());
        assert!(message(2, true).is_null());
    }

    #[test]
    fn a_summary_counts_each_kind_in_order() {
        let m = |s: &str| Message {
            summary: s.into(),
            post: b"{}".to_vec(),
            place: None,
        };
        let rest = [m("CRITICAL"), m("OK"), m("CRITICAL"), m("WARNING")];
        let v: Value = serde_json::from_slice(&summary(&rest, &settings())).unwrap();
        assert_eq!(
            v["text"],
            "4 more state changes: 2 CRITICAL, 1 OK, 1 WARNING"
        );
        let v: Value =
            serde_json::from_slice(&summary(&[m("OK"), m("acknowledgement")], &settings()))
                .unwrap();
        assert_eq!(v["text"], "2 more events: 1 OK, 1 acknowledgement");
    }

    #[test]
    fn a_rate_limit_is_waited_out_and_a_missing_hook_is_a_configuration_fault() {
        let mut limited = resp(429, r#"{"message":"too many requests"}"#);
        limited.retry_after = Some(Duration::from_secs(1));
        assert!(matches!(
            judge(&limited),
            Verdict::Retry { config_fault: false, retry_after: Some(d), .. } if d == Duration::from_secs(1)
        ));
        assert!(matches!(
            judge(&resp(
                400,
                r#"{"id":"web.incoming_webhook.invalid.app_error","message":"Invalid webhook."}"#
            )),
            Verdict::Retry {
                config_fault: true,
                ..
            }
        ));
        assert!(matches!(
            judge(&resp(404, "")),
            Verdict::Retry {
                config_fault: true,
                ..
            }
        ));
        assert!(matches!(
            judge(&resp(
                400,
                r#"{"id":"web.incoming_webhook.text.app_error","message":"No text specified"}"#
            )),
            Verdict::Proven(_)
        ));
        for body in [
            r#"{"id":"web.incoming_webhook.user.app_error","status_code":400}"#,
            r#"{"id":"web.incoming_webhook.channel.app_error"}"#,
            "<html>Bad Request</html>",
            "",
        ] {
            assert!(
                matches!(
                    judge(&resp(400, body)),
                    Verdict::Retry {
                        config_fault: true,
                        ..
                    }
                ),
                "{body}"
            );
        }
        assert_eq!(judge(&resp(200, "ok")), Verdict::Delivered);
    }
}
