//! Mattermost's REST API v4 as a bot sees it, served by the mock beside
//! the incoming webhooks: `POST /api/v4/posts` (a root post, or a reply
//! with `root_id`), `PUT /api/v4/posts/{id}/patch` and
//! `GET /api/v4/posts/{id}/thread`. It checks what the real server checks
//! on these routes and answers its errors (`{"id","message",
//! "status_code"}`): a wrong token 401, a channel the bot is not in 403, a
//! reply whose root is gone 400 `api.post.create_post.root_id.app_error`,
//! an edit of a post that is gone 404; 429 with `Retry-After` when a test
//! asks for it.

use crate::mock::{Req, State};
use serde_json::{json, Value};

/// Where the API's posts live.
pub const POSTS: &str = "/api/v4/posts";

/// The bot's access token the mock knows.
pub const BOT_TOKEN: &str = "bot-t0ken-s3cret-7fk2";

/// The channel the bot is a member of.
pub const CHANNEL_ID: &str = "4xp1u9nqkbgjdcm8r7ew3tyhza";

/// What the API knows and took.
#[derive(Debug)]
pub struct Api {
    /// The valid bot token.
    pub token: String,
    /// Channels the bot may post in.
    pub channels: Vec<String>,
    /// Every post, in creation order, as the server keeps it (`id`,
    /// `channel_id`, `message`, `root_id`, `props`, `edit_at`,
    /// `delete_at`).
    pub posts: Vec<Value>,
    /// Requests to answer 429 before taking any (the next ones).
    pub throttle_next: u32,
    /// Requests answered 429.
    pub throttled: u64,
    /// Requests refused for their token.
    pub unauthorized: u64,
    next_id: u64,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            token: BOT_TOKEN.into(),
            channels: vec![CHANNEL_ID.into()],
            posts: Vec::new(),
            throttle_next: 0,
            throttled: 0,
            unauthorized: 0,
            next_id: 1,
        }
    }
}

impl Api {
    /// The posts not deleted that start a thread.
    pub fn roots(&self) -> Vec<&Value> {
        self.posts
            .iter()
            .filter(|p| p["root_id"] == "" && p["delete_at"] == 0)
            .collect()
    }

    /// The replies to `root`, in order.
    pub fn replies(&self, root: &str) -> Vec<&Value> {
        self.posts.iter().filter(|p| p["root_id"] == root).collect()
    }

    /// Deletes post `id`, as a person in the channel would.
    pub fn delete(&mut self, id: &str) {
        for p in self.posts.iter_mut().filter(|p| p["id"] == id) {
            p["delete_at"] = json!(1);
        }
    }

    fn find(&mut self, id: &str) -> Option<&mut Value> {
        self.posts
            .iter_mut()
            .find(|p| p["id"] == id && p["delete_at"] == 0)
    }
}

fn mm_error(status: u16, id: &str, message: &str) -> (u16, String) {
    (
        status,
        json!({"id": id, "message": message, "detailed_error": "", "request_id": "mockreq", "status_code": status})
            .to_string(),
    )
}

/// Answers a request under [`POSTS`]; `None` for any other path.
pub(crate) fn route(st: &mut State, req: &Req) -> Option<(u16, String)> {
    let rest = req.path.strip_prefix(POSTS)?;
    let api = &mut st.receivers.api;
    let bearer = format!("Bearer {}", api.token);
    if req.headers.get("authorization") != Some(&bearer) {
        api.unauthorized += 1;
        return Some(mm_error(
            401,
            "api.context.session_expired.app_error",
            "Invalid or expired session, please login again.",
        ));
    }
    if api.throttle_next > 0 {
        api.throttle_next -= 1;
        api.throttled += 1;
        return Some(mm_error(
            429,
            "api.context.rate_limit.app_error",
            "Too many requests",
        ));
    }
    let body: Option<Value> = serde_json::from_slice(&req.body).ok();
    let answer = match (req.method.as_str(), rest) {
        ("POST", "") => create(api, body),
        ("PUT", patch) if patch.ends_with("/patch") => {
            let id = patch.trim_start_matches('/').trim_end_matches("/patch");
            edit(api, id, body)
        }
        ("GET", thread) if thread.ends_with("/thread") => {
            let id = thread.trim_start_matches('/').trim_end_matches("/thread");
            match api.find(id) {
                None => mm_error(404, "app.post.get.app_error", "Unable to get the post."),
                Some(root) => {
                    let root = root.clone();
                    let mut order = vec![root["id"].clone()];
                    order.extend(api.replies(id).iter().map(|p| p["id"].clone()));
                    (200, json!({"order": order, "root": root}).to_string())
                }
            }
        }
        _ => mm_error(405, "api.context.405.app_error", "Method not allowed"),
    };
    Some(answer)
}

fn create(api: &mut Api, body: Option<Value>) -> (u16, String) {
    let Some(Value::Object(post)) = body else {
        return mm_error(
            400,
            "api.context.invalid_body_param.app_error",
            "Invalid or missing post in request body.",
        );
    };
    let channel = post.get("channel_id").and_then(Value::as_str).unwrap_or("");
    if !api.channels.iter().any(|c| c == channel) {
        return mm_error(
            403,
            "api.context.permissions.app_error",
            "You do not have the appropriate permissions.",
        );
    }
    let message = match post.get("message") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return mm_error(
                400,
                "api.context.invalid_body_param.app_error",
                "Invalid or missing post in request body.",
            )
        }
    };
    let props = post.get("props").cloned().unwrap_or_else(|| json!({}));
    let attachments = props["attachments"].as_array().map_or(0, Vec::len);
    if message.trim().is_empty() && attachments == 0 {
        return mm_error(
            400,
            "model.post.is_valid.msg.app_error",
            "Invalid message: empty.",
        );
    }
    let root = post.get("root_id").and_then(Value::as_str).unwrap_or("");
    if !root.is_empty() {
        let ok = api
            .find(root)
            .is_some_and(|r| r["channel_id"] == channel && r["root_id"] == "");
        if !ok {
            return mm_error(
                400,
                "api.post.create_post.root_id.app_error",
                "Invalid RootId parameter.",
            );
        }
    }
    let id = format!("{:0>26}", format!("p{}", api.next_id));
    api.next_id += 1;
    let created = json!({"id": id, "channel_id": channel, "message": message,
        "root_id": root, "props": props, "edit_at": 0, "delete_at": 0});
    api.posts.push(created.clone());
    (201, created.to_string())
}

fn edit(api: &mut Api, id: &str, body: Option<Value>) -> (u16, String) {
    let Some(Value::Object(patch)) = body else {
        return mm_error(
            400,
            "api.context.invalid_body_param.app_error",
            "Invalid or missing post in request body.",
        );
    };
    let Some(post) = api.find(id) else {
        return mm_error(404, "app.post.get.app_error", "Unable to get the post.");
    };
    for key in ["message", "props"] {
        if let Some(v) = patch.get(key) {
            post[key] = v.clone();
        }
    }
    post["edit_at"] = json!(1);
    (200, post.to_string())
}
