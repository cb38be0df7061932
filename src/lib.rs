//! Native replacement for Centreon's `canopsis2x-events-apiv2.lua` stream
//! connector, and a webhook output (Mattermost, Logstash) made of the same
//! parts.
//!
//! Centreon Broker loads `lua/canopsis-native-events-apiv2.lua` or
//! `lua/webhook-native-events.lua`, which `require` this library (built
//! once per Lua ABI) and bind broker's global `init`/`filter`/`write`/
//! `flush` to one [`connector::Connector`]. Everything below the thin
//! [`lua`] edge is plain Rust that unit tests drive without Lua:
//! parameters ([`config`]), event model ([`event`]), filters ([`filter`]),
//! templates ([`template`], [`render`]), bulking ([`batch`]), HTTP
//! ([`transport`]), the background [`sender`] and the durable [`spool`].
//! What differs between outputs is a [`sink`]: what an event becomes
//! without a template (Canopsis JSON, a document, a Mattermost message),
//! how a body holds several, what the peer's answers mean, and whether
//! downtimes become pbehaviors (Canopsis only: its event JSON, its
//! answers and its pbehaviors are [`sink::canopsis`]).
#![deny(missing_docs)]

pub mod backoff;
pub mod batch;
pub mod cache;
pub mod config;
pub mod connector;
pub mod custom;
pub mod dates;
pub mod deadletter;
pub mod dedup;
pub mod downtime;
pub mod event;
pub mod filter;
pub mod lanes;
pub mod logger;
pub mod luapattern;
pub mod progress;
pub mod readback;
pub mod refusal;
pub mod rejection;
pub mod render;
pub mod replace;
#[cfg(test)]
mod scratch;
pub mod secret;
pub mod seen;
pub mod sender;
pub mod sink;
pub mod spool;
pub mod status;
pub mod subject;
pub mod template;
pub mod text;
pub mod transport;
pub mod work;

#[cfg(all(feature = "lua53", feature = "lua54"))]
compile_error!("build with exactly one of the features lua53 and lua54");

#[cfg(any(feature = "lua53", feature = "lua54"))]
pub mod lua;
