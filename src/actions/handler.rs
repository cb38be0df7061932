//! One request to the service, judged and answered.
//!
//! Only `POST` of Mattermost's action body on the configured route, with a
//! context this service's secret signed and that has not expired, and whose
//! signature was never used, acknowledges anything. The answer to
//! Mattermost replaces the post's button with "Acknowledged by @user"; an
//! acknowledgement Centreon did not take is told to the person who clicked
//! (an ephemeral message) and the button stays, to click again.

use super::acknowledge::{Ack, Acknowledger};
use super::replay::{Replay, Use};
use super::signature::{self, Context, Refusal, Target};
use crate::secret::Secret;
use log::Level;
use serde::Deserialize;
use serde_json::{json, Value};

/// A request as the server read it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// `POST`, `GET`, ...
    pub method: &'a str,
    /// The request target (path and query).
    pub url: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// What to answer, and the line the log gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// How serious the log line is.
    pub level: Level,
    /// The log line (never a secret, nor the signature).
    pub log: String,
}

fn answer(status: u16, level: Level, log: String, body: Value) -> Answer {
    Answer {
        status,
        body,
        level,
        log,
    }
}

/// Mattermost's action request (`PostActionIntegrationRequest`): the
/// fields used here.
#[derive(Debug, Deserialize)]
struct ActionRequest {
    user_id: String,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    post_id: Option<String>,
    context: Option<Value>,
}

/// What the service needs to judge and make acknowledgements.
pub struct Handler {
    route: String,
    secret: Secret,
    replay: Replay,
    acknowledger: Box<dyn Acknowledger>,
    notify: bool,
    persistent: bool,
}

/// A text shortened for a log line, control characters out.
fn shown(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(120)
        .collect();
    clean
}

/// The post as it reads once acknowledged: the button gone.
fn acknowledged_post(t: &Target, user: &str) -> Value {
    let title = format!("{} is {}", t.object(), t.state);
    let how = if t.sticky { " (sticky)" } else { "" };
    json!({"update": {"message": "", "props": {"attachments": [{
        "fallback": format!("{title}: acknowledged by @{user}"),
        "color": "#e5a800",
        "title": title,
        "text": format!("Acknowledged by @{user}{how}"),
    }]}}})
}

impl Handler {
    /// A handler for `route`, checking with `secret`, remembering used
    /// buttons in `replay`, acknowledging with `acknowledger`.
    pub fn new(
        route: &str,
        secret: Secret,
        replay: Replay,
        acknowledger: Box<dyn Acknowledger>,
        notify: bool,
        persistent: bool,
    ) -> Self {
        Handler {
            route: route.to_string(),
            secret,
            replay,
            acknowledger,
            notify,
            persistent,
        }
    }

    /// Judges `req` at `now` (seconds since the epoch) and acknowledges
    /// what it may.
    pub fn handle(&mut self, req: Incoming, now: u64) -> Answer {
        let path = req.url.split('?').next().unwrap_or("");
        if path != self.route {
            return answer(
                404,
                Level::Warn,
                format!(
                    "refused {} {}: not the action route",
                    shown(req.method),
                    shown(path)
                ),
                json!({"error": "not found"}),
            );
        }
        if req.method != "POST" {
            return answer(
                405,
                Level::Warn,
                format!("refused {} {path}: only POST is served", shown(req.method)),
                json!({"error": "method not allowed"}),
            );
        }
        let action: ActionRequest = match serde_json::from_slice(req.body) {
            Ok(a) => a,
            Err(e) => {
                return answer(
                    400,
                    Level::Warn,
                    format!("refused a request that is not Mattermost's action body: {e}"),
                    json!({"error": "not a Mattermost action request"}),
                )
            }
        };
        let ctx: Context = match action.context.map(serde_json::from_value) {
            Some(Ok(c)) => c,
            _ => {
                return answer(
                    400,
                    Level::Warn,
                    format!(
                        "refused a click by user id {}: its context is not an acknowledge button's",
                        shown(&action.user_id)
                    ),
                    json!({"error": "not an acknowledge button"}),
                )
            }
        };
        let user = action
            .user_name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| action.user_id.clone());
        let who = format!("@{} (user id {})", shown(&user), shown(&action.user_id));
        let object = shown(&ctx.target.object());
        let target = match signature::verify(self.secret.expose().as_bytes(), &ctx, now) {
            Ok(t) => t.clone(),
            Err(Refusal::Forged) => {
                return answer(
                    401,
                    Level::Warn,
                    format!(
                        "refused a click by {who} on {object}: the signature does not match (forged, altered, or the output's mattermost_actions_secret differs from this service's secret)"
                    ),
                    json!({"error": "bad signature"}),
                )
            }
            Err(Refusal::Expired) => {
                return answer(
                    401,
                    Level::Warn,
                    format!(
                        "refused a click by {who} on {object}: the button expired {} s ago",
                        now - ctx.expires
                    ),
                    json!({"error": "expired", "ephemeral_text": "This button has expired: acknowledge in Centreon."}),
                )
            }
        };
        match self.replay.reserve(&ctx.sig, ctx.expires, now) {
            Use::First => {}
            Use::Replayed => {
                return answer(
                    409,
                    Level::Warn,
                    format!(
                        "refused a click by {who} on {object}: this button was already used (a replay, or a second click)"
                    ),
                    json!({"error": "already used"}),
                )
            }
            Use::Full => {
                return answer(
                    503,
                    Level::Error,
                    format!(
                        "refused a click by {who} on {object}: too many buttons used and not yet expired"
                    ),
                    json!({"error": "busy"}),
                )
            }
            Use::Unrecorded(why) => {
                return answer(
                    503,
                    Level::Error,
                    format!(
                        "refused a click by {who} on {object}: its use could not be recorded in the state file ({why})"
                    ),
                    json!({"error": "cannot record"}),
                )
            }
        }
        let ack = Ack {
            comment: format!("Acknowledged by @{user} from Mattermost"),
            author: user.clone(),
            target,
            notify: self.notify,
            persistent: self.persistent,
        };
        let post = action.post_id.as_deref().map(shown).unwrap_or_default();
        match self.acknowledger.acknowledge(&ack) {
            Ok(()) => answer(
                200,
                Level::Info,
                format!(
                    "{object} ({}) acknowledged by {who}{}, post {post}",
                    shown(&ack.target.state),
                    if ack.target.sticky { ", sticky" } else { "" }
                ),
                acknowledged_post(&ack.target, &user),
            ),
            Err(e) => {
                let kept = match self.replay.release(&ctx.sig) {
                    Ok(()) => String::new(),
                    Err(io) => format!(
                        " (and the state file could not record that the button is free again: {io})"
                    ),
                };
                answer(
                    200,
                    Level::Error,
                    format!("the acknowledgement of {object} by {who} failed: {e}{kept}"),
                    json!({"ephemeral_text": format!(
                        "Centreon did not take the acknowledgement of {object}: {e}. Try again, or acknowledge in Centreon."
                    )}),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::acknowledge::AckError;
    use crate::actions::signature::{sign, tests::target};
    use std::sync::{Arc, Mutex};

    const SECRET: &str = "0123456789abcdef-s3cret";

    #[derive(Clone, Default)]
    struct Recorder {
        acks: Arc<Mutex<Vec<Ack>>>,
        fail: Arc<Mutex<bool>>,
    }

    impl Acknowledger for Recorder {
        fn acknowledge(&self, ack: &Ack) -> Result<(), AckError> {
            if *self.fail.lock().unwrap() {
                return Err(AckError("Centreon's API answered HTTP 500".into()));
            }
            self.acks.lock().unwrap().push(ack.clone());
            Ok(())
        }
    }

    fn handler() -> (Handler, Recorder) {
        let r = Recorder::default();
        let h = Handler::new(
            "/mattermost/acknowledge",
            Secret::new(SECRET),
            Replay::new(100),
            Box::new(r.clone()),
            true,
            true,
        );
        (h, r)
    }

    fn click(ctx: &Context) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "user_id": "u1x9", "user_name": "alice", "post_id": "p1",
            "channel_id": "c1", "team_id": "t1", "type": "", "context": ctx,
        }))
        .unwrap()
    }

    fn post(url: &str, body: &[u8]) -> Incoming<'static> {
        Incoming {
            method: "POST",
            url: Box::leak(url.to_string().into_boxed_str()),
            body: Box::leak(body.to_vec().into_boxed_slice()),
        }
    }

    #[test]
    fn a_click_acknowledges_once_and_updates_the_post() {
        let (mut h, r) = handler();
        let body = click(&sign(SECRET.as_bytes(), target(), 1000));
        let a = h.handle(post("/mattermost/acknowledge", &body), 10);
        assert_eq!(a.status, 200, "{a:?}");
        let text = &a.body["update"]["props"]["attachments"][0]["text"];
        assert_eq!(text, "Acknowledged by @alice");
        assert!(!a.log.contains(SECRET));
        let again = h.handle(post("/mattermost/acknowledge", &body), 11);
        assert_eq!(again.status, 409);
        let acks = r.acks.lock().unwrap();
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0].author, "alice");
        assert_eq!(acks[0].comment, "Acknowledged by @alice from Mattermost");
    }

    #[test]
    fn anything_else_acknowledges_nothing() {
        let (mut h, r) = handler();
        let good = sign(SECRET.as_bytes(), target(), 1000);
        let mut forged = good.clone();
        forged.target.host = "other".into();
        let cases: Vec<(Incoming, u16)> = vec![
            (post("/other", &click(&good)), 404),
            (
                Incoming {
                    method: "GET",
                    url: "/mattermost/acknowledge",
                    body: b"",
                },
                405,
            ),
            (post("/mattermost/acknowledge", b"not json"), 400),
            (post("/mattermost/acknowledge", br#"{"user_id":"u"}"#), 400),
            (post("/mattermost/acknowledge", &click(&forged)), 401),
            (
                post(
                    "/mattermost/acknowledge",
                    &click(&sign(SECRET.as_bytes(), target(), 5)),
                ),
                401,
            ),
        ];
        for (req, status) in cases {
            let a = h.handle(req, 10);
            assert_eq!(a.status, status, "{a:?}");
            assert!(!a.log.is_empty());
        }
        assert!(r.acks.lock().unwrap().is_empty());
    }

    #[test]
    fn a_failed_acknowledgement_is_told_and_may_be_retried() {
        let (mut h, r) = handler();
        *r.fail.lock().unwrap() = true;
        let body = click(&sign(SECRET.as_bytes(), target(), 1000));
        let a = h.handle(post("/mattermost/acknowledge", &body), 10);
        assert_eq!(a.status, 200);
        assert!(a.body["ephemeral_text"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"));
        assert_eq!(a.level, Level::Error);
        *r.fail.lock().unwrap() = false;
        let a = h.handle(post("/mattermost/acknowledge", &body), 11);
        assert!(a.body.get("update").is_some(), "{a:?}");
        assert_eq!(r.acks.lock().unwrap().len(), 1);
    }
}
