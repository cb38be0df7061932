//! What Canopsis's answers to pbehavior requests mean: one [`Outcome`] per
//! request, or per item of a bulk request ([`ItemAnswer`]).

use crate::sink::canopsis::answer;
use crate::transport::Response;
use serde_json::Value;

/// How a step of pbehavior traffic ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The pbehavior was just created: its comment is still to post.
    Created,
    /// Done (already there, deleted, already gone, comment posted).
    Done(&'static str),
    /// Canopsis no longer knows the cached reason or type id.
    StaleIds(String),
    /// Try again later.
    Retry {
        /// For the log.
        reason: String,
        /// An admin must act (rights, missing type...).
        config_fault: bool,
    },
    /// Canopsis refuses this request's content; retrying will not help.
    Refused(String),
    /// Canopsis has no such route (404 from Canopsis itself on a bulk
    /// route): an older route must be used.
    RouteMissing(String),
}

/// A redirect or a refusal that did not come from Canopsis: a
/// configuration fault, whatever the request.
pub(super) fn foreign(resp: &Response) -> Option<Outcome> {
    answer::foreign(resp).map(|f| Outcome::Retry {
        reason: f.reason,
        config_fault: true,
    })
}

pub(super) fn rights(resp: &Response, right: &str) -> Outcome {
    if let Some(o) = foreign(resp) {
        return o;
    }
    match resp.status {
        401 => Outcome::Retry {
            reason: format!(
                "HTTP 401 {}: Canopsis refused canopsis_authkey",
                resp.snippet()
            ),
            config_fault: true,
        },
        403 => Outcome::Retry {
            reason: format!(
                "HTTP 403 {}: the user of canopsis_authkey lacks the right {right}",
                resp.snippet()
            ),
            config_fault: true,
        },
        s => Outcome::Retry {
            reason: format!("HTTP {s}: {}", resp.snippet()),
            config_fault: false,
        },
    }
}

/// Reads the answer to a pbehavior creation.
pub fn judge_create(resp: &Response) -> Outcome {
    if let Some(o) = foreign(resp) {
        return o;
    }
    match resp.status {
        200..=299 => Outcome::Created,
        400 if resp.body.contains("ID already exists")
            || resp
                .body
                .contains("Trying to insert PBehavior with already existing _id") =>
        {
            Outcome::Done("already exists")
        }
        400 if resp.body.contains("Reason doesn't exist")
            || resp.body.contains("Type doesn't exist") =>
        {
            Outcome::StaleIds(format!("HTTP 400 {}", resp.snippet()))
        }
        400 => Outcome::Refused(format!("HTTP 400 {}", resp.snippet())),
        _ => rights(resp, "create on pbehaviors (api_pbehavior)"),
    }
}

/// Reads the answer to a pbehavior deletion.
pub fn judge_delete(resp: &Response) -> Outcome {
    if let Some(o) = foreign(resp) {
        return o;
    }
    match resp.status {
        200..=299 => Outcome::Done("deleted"),
        404 if answer::is_canopsis_error(&resp.body) && resp.body.contains("Not found") => {
            Outcome::Done("already deleted")
        }
        400 => Outcome::Refused(format!("HTTP 400 {}", resp.snippet())),
        _ => rights(resp, "delete on pbehaviors (api_pbehavior)"),
    }
}

/// Reads the answer to a comment.
pub fn judge_comment(resp: &Response) -> Outcome {
    if let Some(o) = foreign(resp) {
        return o;
    }
    match resp.status {
        200..=299 => Outcome::Done("comment posted"),
        404 if answer::is_canopsis_error(&resp.body) => {
            Outcome::Done("pbehavior gone before its comment")
        }
        400 => Outcome::Refused(format!("HTTP 400 {}", resp.snippet())),
        _ => rights(
            resp,
            "update on pbehaviors (api_pbehavior), needed for comments",
        ),
    }
}

/// Canopsis's answer for one item of a bulk request.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemAnswer {
    /// The item's own status: 200, 400, 404, 500.
    pub status: u16,
    /// Its `error` text or `errors` object, as text.
    pub error: String,
    /// The pbehavior's `_id` on success.
    pub id: String,
}

impl ItemAnswer {
    /// What `send_data_test=1` makes of every item: taken.
    pub fn taken() -> ItemAnswer {
        ItemAnswer {
            status: 200,
            error: String::new(),
            id: String::new(),
        }
    }
}

/// Reads a bulk answer: one [`ItemAnswer`] per item sent, in order, or
/// what the whole request's failure means.
pub fn judge_bulk(resp: &Response, sent: usize, right: &str) -> Result<Vec<ItemAnswer>, Outcome> {
    if let Some(o) = foreign(resp) {
        return Err(o);
    }
    match resp.status {
        207 | 200 => {}
        404 if answer::is_canopsis_error(&resp.body) => {
            return Err(Outcome::RouteMissing(format!(
                "HTTP 404 {}",
                resp.snippet()
            )))
        }
        400 => return Err(Outcome::Refused(format!("HTTP 400 {}", resp.snippet()))),
        _ => return Err(rights(resp, right)),
    }
    let items = match serde_json::from_str::<Value>(&resp.body) {
        Ok(Value::Array(items)) if items.len() == sent => items,
        _ => {
            return Err(Outcome::Retry {
                reason: format!(
                    "HTTP {} {}: not one answer per pbehavior sent ({sent})",
                    resp.status,
                    resp.snippet()
                ),
                config_fault: false,
            })
        }
    };
    Ok(items
        .iter()
        .map(|item| ItemAnswer {
            status: item
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(500),
            error: match item.get("errors").or_else(|| item.get("error")) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            },
            id: item
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
        .collect())
}

/// What one item's 401 or 403 means, as for a single request.
pub(super) fn item_rights(a: &ItemAnswer, right: &str) -> Outcome {
    Outcome::Retry {
        reason: format!(
            "{} {}: the user of canopsis_authkey lacks the right {right}",
            a.status, a.error
        ),
        config_fault: true,
    }
}

/// What one created item's answer means (the single route's rules).
pub fn judge_create_item(a: &ItemAnswer) -> Outcome {
    match a.status {
        401 | 403 => item_rights(a, "create on pbehaviors (api_pbehavior)"),
        200..=299 => Outcome::Created,
        400 if a.error.contains("ID already exists")
            || a.error.contains("already existing _id") =>
        {
            Outcome::Done("already exists")
        }
        400 if a.error.contains("Reason doesn't exist")
            || a.error.contains("Type doesn't exist") =>
        {
            Outcome::StaleIds(format!("400 {}", a.error))
        }
        400 => Outcome::Refused(format!("400 {}", a.error)),
        s => Outcome::Retry {
            reason: format!("{s} {}", a.error),
            config_fault: false,
        },
    }
}

/// What one deleted item's answer means.
pub fn judge_delete_item(a: &ItemAnswer) -> Outcome {
    match a.status {
        401 | 403 => item_rights(a, "delete on pbehaviors (api_pbehavior)"),
        200..=299 => Outcome::Done("deleted"),
        404 => Outcome::Done("already deleted"),
        400 => Outcome::Refused(format!("400 {}", a.error)),
        s => Outcome::Retry {
            reason: format!("{s} {}", a.error),
            config_fault: false,
        },
    }
}
