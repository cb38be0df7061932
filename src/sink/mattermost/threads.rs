//! Mattermost's REST API through a bot account: one thread per alert.
//!
//! A problem opens a thread (a root post, `POST /api/v4/posts`); the
//! object's further changes, acknowledgements and downtimes are replies
//! (`root_id`); its recovery is a reply too, and the root is edited
//! (`PUT /api/v4/posts/{id}/patch`) to read "Resolved", in the recovery's
//! colour, so the channel shows at a glance what is still open. What has
//! no open thread (a recovery or an acknowledgement of an object whose
//! problem was never posted here, a summary, a BA) is a top-level post.
//!
//! The messages are the incoming-webhook messages of [`super`] turned into
//! the API's post: `text` becomes `message`, `attachments` go under
//! `props`, and `channel_id` is the bot's channel.
//!
//! Which root each object's thread has is [`Threads`], kept by the one
//! sender thread that posts (it learns a root's id from Mattermost's answer)
//! in `<logfile stem>.threads` beside the log, so a restart answers in the
//! same thread.

use super::super::Verdict;
use crate::replace::{self, Durability};
use crate::transport::Response;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The route posts are created at, under the server's URL.
pub const POSTS: &str = "/api/v4/posts";

/// Where the thread memory of the output logging to `logfile` is kept.
pub fn path_for(logfile: &Path) -> PathBuf {
    crate::logger::beside(logfile, ".threads")
}

/// What an event does to its object's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Turn {
    /// A non-OK state: opens a thread when none is open, else a reply.
    Problem,
    /// Back to OK or UP: a reply, and the root is edited to show it resolved.
    Recovery,
    /// An acknowledgement or a downtime: a reply when a thread is open.
    Note,
}

/// The thread an event belongs to, as its envelope carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Place {
    /// The object: `host_id` or `host_id:service_id`.
    pub object: String,
    /// What the event does to the thread.
    pub turn: Turn,
}

/// The root post of each object's open thread, by object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Threads {
    roots: BTreeMap<String, String>,
}

impl Threads {
    /// The threads kept in `path`; none when it does not exist.
    pub fn load(path: &Path) -> io::Result<Threads> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Threads::default()),
            Err(e) => return Err(e),
        };
        let roots = serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Threads { roots })
    }

    /// Rewrites `path` whole with the threads open now.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(&self.roots).map_err(io::Error::other)?;
        replace::file(path, &bytes, 0o640, Durability::Synced)
    }

    /// The root post of `object`'s open thread.
    pub fn root(&self, object: &str) -> Option<&str> {
        self.roots.get(object).map(String::as_str)
    }

    /// `root` starts `object`'s thread.
    pub fn open(&mut self, object: &str, root: &str) {
        self.roots.insert(object.to_string(), root.to_string());
    }

    /// `object`'s thread is over (resolved, or its root deleted).
    pub fn close(&mut self, object: &str) {
        self.roots.remove(object);
    }

    /// How many threads are open.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

/// The API's post for a webhook message `post`, in `channel_id`, a reply
/// to `root` when given. A message that is not an object is sent as its
/// text, for Mattermost to say what is wrong with it.
pub fn post_body(post: &[u8], channel_id: &str, root: Option<&str>) -> Vec<u8> {
    let mut out = Map::new();
    out.insert("channel_id".into(), channel_id.into());
    match serde_json::from_slice::<Map<String, Value>>(post) {
        Ok(mut message) => {
            let text = message.remove("text").unwrap_or_else(|| "".into());
            out.insert("message".into(), text);
            let mut props = match message.remove("props") {
                Some(Value::Object(p)) => p,
                _ => Map::new(),
            };
            if let Some(a) = message.remove("attachments") {
                props.insert("attachments".into(), a);
            }
            if !props.is_empty() {
                out.insert("props".into(), Value::Object(props));
            }
        }
        Err(_) => {
            out.insert(
                "message".into(),
                String::from_utf8_lossy(post).into_owned().into(),
            );
        }
    }
    if let Some(root) = root {
        out.insert("root_id".into(), root.into());
    }
    serde_json::to_vec(&out).unwrap_or_default()
}

/// The patch that marks a thread's root resolved: the recovery's
/// attachments (its colour, output and time; no buttons), titled
/// "Resolved: ...".
pub fn resolved_patch(recovery: &[u8]) -> Vec<u8> {
    let message: Value = serde_json::from_slice(recovery).unwrap_or(Value::Null);
    let mut attachments = message["attachments"].clone();
    if let Some(list) = attachments.as_array_mut() {
        for a in list.iter_mut().filter(|a| a.is_object()) {
            let title = a["title"].as_str().unwrap_or("").to_string();
            a["title"] = format!("Resolved: {title}").into();
            if let Some(f) = a["fallback"].as_str().map(|f| format!("Resolved: {f}")) {
                a["fallback"] = f.into();
            }
        }
    } else {
        let text = message["text"].as_str().unwrap_or("").to_string();
        attachments = json!([{"color": "#88b917", "title": "Resolved", "text": text}]);
    }
    serde_json::to_vec(&json!({"props": {"attachments": attachments}})).unwrap_or_default()
}

/// The route that edits post `id`. Post ids are 26 letters and digits;
/// anything else is refused by [`post_id`], so never reaches a path.
pub fn patch_route(base: &str, id: &str) -> String {
    format!("{}/{id}/patch", base.trim_end_matches('/'))
}

/// The new post's id in the answer to `POST /api/v4/posts`.
pub fn post_id(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let id = v["id"].as_str()?;
    valid_id(id).then(|| id.to_string())
}

/// Mattermost's ids: 26 lowercase letters and digits.
pub fn valid_id(id: &str) -> bool {
    id.len() == 26
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Error ids of `CreatePost` (`server/channels/app/post.go`) that say the
/// root post named by `root_id` is no longer there (deleted, or never in
/// this channel): the thread is started again.
const ROOT_GONE: &[&str] = &[
    "api.post.create_post.root_id.app_error",
    "api.post.create_post.parent_id.app_error",
    "api.post.create_post.channel_root_id.app_error",
];

/// Whether the answer to a reply says its thread's root is gone (400, or
/// 404 on some versions, with one of `ROOT_GONE`'s ids).
pub fn root_gone(resp: &Response) -> bool {
    matches!(resp.status, 400 | 404)
        && super::error_id(&resp.body).is_some_and(|id| ROOT_GONE.contains(&id.as_str()))
}

/// Whether the answer to a root's edit says the root is gone (404
/// `app.post.get.app_error`): nothing is left to edit.
pub fn edited_post_gone(resp: &Response) -> bool {
    matches!(resp.status, 400 | 404)
        && super::error_id(&resp.body).is_some_and(|id| id == "app.post.get.app_error")
}

/// Whether an error id is about the post itself, so proof that this post
/// will never be taken: the post's own validation (`model.post.is_valid.*`
/// but its channel or user), a body that is not a post.
fn about_the_post(id: &str) -> bool {
    (id.starts_with("model.post.is_valid.")
        && !id.contains("channel_id")
        && !id.contains("user_id"))
        || id == "api.context.invalid_body_param.app_error"
}

/// What Mattermost's API answer to a post or a patch means.
pub fn judge(resp: &Response) -> Verdict {
    let retry =
        |reason: String, config_fault: bool| super::super::retry(resp, reason, config_fault);
    let said = || format!("HTTP {} {}", resp.status, resp.snippet());
    match resp.status {
        200..=299 => Verdict::Delivered,
        429 => retry(
            format!(
                "{}: Mattermost limits requests per second (lower max_messages_per_second)",
                said()
            ),
            false,
        ),
        300..=399 => super::super::redirect(resp),
        401 => retry(
            format!("{}: Mattermost refuses the bot's token (check mattermost_bot_token: revoked, or the bot disabled)", said()),
            true,
        ),
        403 => retry(
            format!("{}: the bot may not post in mattermost_channel_id (add the bot to the channel's team and channel)", said()),
            true,
        ),
        404 => retry(
            format!("{}: no such channel or post, or not Mattermost's API (check mattermost_url and mattermost_channel_id)", said()),
            true,
        ),
        400 | 413 => match super::error_id(&resp.body) {
            Some(id) if about_the_post(&id) || resp.status == 413 => Verdict::Proven(format!(
                "Mattermost refused the post for its content ({})",
                said()
            )),
            Some(id) => retry(
                format!("{}: Mattermost refuses the request, not the post ({id}: check mattermost_channel_id and the bot)", said()),
                true,
            ),
            None => retry(
                format!("{}: refused by something that is not Mattermost (a proxy?); nothing is dead-lettered", said()),
                true,
            ),
        },
        _ => retry(said(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tests::resp;

    const ROOT: &str = "abcdefghijklmnopqrstuvwxyz";

    #[test]
    fn a_webhook_message_becomes_a_post_in_the_channel_and_a_reply_names_its_root() {
        let msg = br##"{"attachments":[{"color":"#e00b3d","title":"h / s is CRITICAL"}]}"##;
        let v: Value = serde_json::from_slice(&post_body(msg, "chan", None)).unwrap();
        assert_eq!(v["channel_id"], "chan");
        assert_eq!(v["message"], "");
        assert_eq!(v["props"]["attachments"][0]["color"], "#e00b3d");
        assert!(v.get("root_id").is_none());
        let v: Value =
            serde_json::from_slice(&post_body(br#"{"text":"hi"}"#, "chan", Some(ROOT))).unwrap();
        assert_eq!((&v["message"], &v["root_id"]), (&json!("hi"), &json!(ROOT)));
        assert!(v.get("props").is_none());
    }

    #[test]
    fn the_resolved_patch_takes_the_recoverys_colour_and_says_resolved() {
        let msg = br##"{"attachments":[{"color":"#88b917","title":"h / s is OK","fallback":"h / s is OK: fine"}]}"##;
        let v: Value = serde_json::from_slice(&resolved_patch(msg)).unwrap();
        let a = &v["props"]["attachments"][0];
        assert_eq!(a["title"], "Resolved: h / s is OK");
        assert_eq!(a["color"], "#88b917");
        assert_eq!(
            patch_route("/api/v4/posts", ROOT),
            format!("/api/v4/posts/{ROOT}/patch")
        );
    }

    #[test]
    fn the_answer_gives_the_root_id_and_says_when_a_root_is_gone() {
        assert_eq!(
            post_id(&format!(r#"{{"id":"{ROOT}","channel_id":"x"}}"#)),
            Some(ROOT.into())
        );
        assert_eq!(post_id(r#"{"id":"../../users"}"#), None);
        let gone = resp(
            400,
            r#"{"id":"api.post.create_post.root_id.app_error","message":"Invalid RootId parameter.","status_code":400}"#,
        );
        assert!(root_gone(&gone));
        assert!(!root_gone(&resp(
            400,
            r#"{"id":"model.post.is_valid.msg.app_error"}"#
        )));
    }

    #[test]
    fn a_bad_token_or_channel_is_the_configurations_and_a_bad_post_is_proven() {
        for status in [401, 403, 404] {
            assert!(matches!(
                judge(&resp(
                    status,
                    r#"{"id":"api.context.session_expired.app_error"}"#
                )),
                Verdict::Retry {
                    config_fault: true,
                    ..
                }
            ));
        }
        assert!(matches!(
            judge(&resp(
                400,
                r#"{"id":"model.post.is_valid.msg.app_error","status_code":400}"#
            )),
            Verdict::Proven(_)
        ));
        assert!(matches!(
            judge(&resp(
                400,
                r#"{"id":"model.post.is_valid.channel_id.app_error"}"#
            )),
            Verdict::Retry {
                config_fault: true,
                ..
            }
        ));
        assert!(matches!(
            judge(&resp(429, "")),
            Verdict::Retry {
                config_fault: false,
                ..
            }
        ));
        assert_eq!(judge(&resp(201, "{}")), Verdict::Delivered);
    }

    #[test]
    fn threads_survive_a_save_and_a_load() {
        let dir = crate::scratch::dir("threads");
        let path = path_for(&dir.join("webhook.log"));
        assert!(Threads::load(&path).unwrap().is_empty());
        let mut t = Threads::default();
        t.open("12:34", ROOT);
        t.open("12", "zyxwvutsrqponmlkjihgfedcba");
        t.close("12");
        t.save(&path).unwrap();
        let back = Threads::load(&path).unwrap();
        assert_eq!(back.root("12:34"), Some(ROOT));
        assert_eq!(back.len(), 1);
    }
}
