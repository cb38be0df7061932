//! Where the output sends, as plain parameters: which peer ([`Sink`]), how
//! a body holds several documents ([`Framing`]) and the Mattermost output's
//! own settings ([`MattermostSettings`]).
//!
//! Data only: the sinks, the batcher and the sender give them meaning, and
//! none of that is known here.

/// How a request body holds several documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// A JSON array, `[a,b]`: Canopsis's event route, Logstash's `json`
    /// codec (which splits an array into events).
    #[default]
    Array,
    /// One document per line, each ended by a line feed: NDJSON, Logstash's
    /// `json_lines` codec.
    Lines,
}

/// Which peer the sender talks to, with its own parameters. What each
/// does with events (its documents, framing, answers) is
/// [`crate::sink`]'s `impl Sink`.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// Canopsis's event route (downtimes go to its pbehavior routes).
    Canopsis,
    /// Any HTTP endpoint taking JSON documents, framed as said.
    Documents(Framing),
    /// A Mattermost incoming webhook: one message per request.
    Mattermost(MattermostSettings),
}

/// The Mattermost output's own parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct MattermostSettings {
    /// `username`: overrides the webhook's display name.
    pub username: Option<String>,
    /// `icon_url`: overrides the webhook's picture.
    pub icon_url: Option<String>,
    /// `channel`: overrides the webhook's channel.
    pub channel: Option<String>,
    /// `max_messages_per_second`.
    pub per_second: u32,
    /// `max_waiting_messages`: more waiting than this, and the rest go in
    /// one summary.
    pub summary_after: usize,
    /// Acknowledge buttons on problem messages, when configured.
    pub buttons: Option<Buttons>,
    /// Posting through the REST API as a bot, one thread per alert, rather
    /// than to an incoming webhook (`mattermost_url` set).
    pub bot: Option<Bot>,
}

/// Threads through a bot account: where the bot posts. Its token
/// (`mattermost_bot_token`) is the destination's `Authorization` header,
/// a secret like the other headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Bot {
    /// `mattermost_channel_id`.
    pub channel_id: String,
}

/// Where problem messages' "Acknowledge" buttons lead, and the secret
/// that signs them (shared with the action service, `crate::actions`).
#[derive(Debug, Clone, PartialEq)]
pub struct Buttons {
    /// `mattermost_actions_url`: the action service's route, as Mattermost
    /// reaches it.
    pub url: String,
    /// `mattermost_actions_secret`.
    pub secret: crate::secret::Secret,
}
