//! Where accepted events go, and what an answer from there means.
//!
//! Everything before the request — filters, templates, batching, the
//! spool, lanes and acknowledgements — is shared by every output. A sink
//! says what an event becomes without a template, how documents share a
//! request body ([`Framing`]), what the peer's answer means ([`Verdict`])
//! and what the peer is called in log lines; and whether downtimes become
//! pbehaviors (Canopsis) or events like the others.
//! Canopsis's answers are read in [`canopsis`], a JSON receiver's
//! (Logstash's `http` input and the like) in [`webhook`], Mattermost's in
//! [`mattermost`], which also builds its messages and summaries.

pub mod canopsis;
pub mod event_json;
pub mod mattermost;
pub mod webhook;

pub use crate::config::Sink;

use crate::config::{FormatConfig, Framing};
use crate::event::NebEvent;
use crate::subject::Subject;
use crate::transport::Response;
use std::time::Duration;

/// How the peer answered a request carrying events.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Every event was taken.
    Delivered,
    /// Some or all events are in `failed_events`; they are to be sent again
    /// (Canopsis only).
    Partial {
        /// Events taken.
        sent: usize,
        /// The events that failed, as Canopsis echoed them.
        failed: Vec<serde_json::Value>,
    },
    /// The peer refuses the request's content without saying which event is
    /// at fault: a request of several events is split to find it; a lone
    /// event is proven bad only by what else the peer takes (see
    /// [`crate::sender`]'s delivery model).
    Refused(String),
    /// The peer refuses the request for its content in words that prove it
    /// (Mattermost's own `app_error` about the message): the request's
    /// events are dead-lettered at once, with this reason.
    Proven(String),
    /// Nothing was taken; try again later.
    Retry {
        /// For the log.
        reason: String,
        /// Credentials, permissions or addresses are wrong: an admin must act.
        config_fault: bool,
        /// Server-requested delay.
        retry_after: Option<Duration>,
    },
}

impl Sink {
    /// Writes an event's built-in document (for Mattermost, its message) to
    /// `out`; `false`, and nothing written, when there is none.
    pub fn write_builtin(
        &self,
        cfg: &FormatConfig,
        ev: &NebEvent,
        subj: &Subject,
        out: &mut Vec<u8>,
    ) -> bool {
        match self {
            Sink::Canopsis => event_json::write_event_json(cfg, ev, subj, out),
            Sink::Documents(_) => webhook::write_document(cfg, ev, subj, out),
            Sink::Mattermost(m) => mattermost::write_message(cfg, m, ev, subj, out),
        }
    }

    /// Writes an event as the sender gets it: what `document` writes (the
    /// built-in document or the template's), in Mattermost's envelope for
    /// Mattermost.
    pub fn write_item(
        &self,
        ev: &NebEvent,
        out: &mut Vec<u8>,
        document: impl FnOnce(&mut Vec<u8>) -> bool,
    ) {
        match self {
            Sink::Mattermost(_) => {
                let place = mattermost::place(ev);
                mattermost::write_envelope(out, mattermost::label(ev), place.as_ref(), document);
            }
            _ => {
                document(out);
            }
        }
    }

    /// Whether downtimes become pbehaviors (Canopsis), rather than events
    /// of their own when they start and end.
    pub fn pbehaviors(&self) -> bool {
        matches!(self, Sink::Canopsis)
    }

    /// How events share a body (for Mattermost, internally: one message
    /// goes per request).
    pub fn framing(&self) -> Framing {
        match self {
            Sink::Documents(f) => *f,
            Sink::Canopsis | Sink::Mattermost(_) => Framing::Array,
        }
    }

    /// What an answer to a request carrying events means.
    pub fn judge(&self, resp: &Response) -> Verdict {
        match self {
            Sink::Canopsis => canopsis::judge_events(resp),
            Sink::Documents(_) => webhook::judge(resp),
            Sink::Mattermost(m) if m.bot.is_some() => mattermost::threads::judge(resp),
            Sink::Mattermost(_) => mattermost::judge(resp),
        }
    }

    /// The peer, as log lines name it.
    pub fn peer(&self) -> &'static str {
        match self {
            Sink::Canopsis => "Canopsis",
            Sink::Documents(_) => "the receiver",
            Sink::Mattermost(_) => "Mattermost",
        }
    }

    /// What the configuration parameters to check are called, for log
    /// lines about a peer that refuses everything.
    pub fn where_to_look(&self) -> &'static str {
        match self {
            Sink::Canopsis => "Canopsis version, canopsis_event_route",
            Sink::Documents(_) => "http_server_url, webhook_format, the receiver's codec",
            Sink::Mattermost(m) if m.bot.is_some() => {
                "mattermost_url, mattermost_bot_token, mattermost_channel_id, format_file"
            }
            Sink::Mattermost(_) => "http_server_url, format_file",
        }
    }
}

/// Nothing taken: try again, when the answer's `Retry-After` says if it
/// says.
fn retry(resp: &Response, reason: String, config_fault: bool) -> Verdict {
    Verdict::Retry {
        reason,
        config_fault,
        retry_after: resp.retry_after,
    }
}

/// A redirect from a webhook endpoint that the transport did not follow:
/// it left `http_server_url`'s scheme, host and port (where `http_headers`,
/// or a hook's key in the path, would go where the admin did not send
/// them), or would have turned the POST into a GET.
fn redirect(resp: &Response) -> Verdict {
    let why = resp
        .redirect
        .as_ref()
        .map_or_else(|| "redirect (not followed)".to_string(), |w| w.to_string());
    retry(
        resp,
        format!("HTTP {} {why}; check http_server_url", resp.status),
        true,
    )
}
