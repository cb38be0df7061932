//! Native replacement for Centreon's `canopsis2x-events-apiv2.lua` stream
//! connector, and a webhook output (Mattermost, Logstash) made of the same
//! parts.
//!
//! Centreon Broker loads `lua/canopsis-native-events-apiv2.lua` or
//! `lua/webhook-native-events.lua`, which `require` this library (built
//! once per Lua ABI) and bind broker's global `init`/`filter`/`write`/
//! `flush` to one [`connector::Connector`]. Everything below the thin `lua`
//! edge is plain Rust that unit tests drive without Lua.
//!
//! # Layout
//!
//! Six layers; a module imports only from its own layer or the ones below
//! (the test command fails on any import circle):
//!
//! 1. **Plain data**: broker events ([`event`]), the parameters as typed
//!    values ([`config`], which knows nothing of the code they configure;
//!    [`dates`] for the date format), a Centreon downtime's lifecycle
//!    ([`downtime`]), the object an event is about ([`subject`], from
//!    broker's [`cache`]), why an event is not sent ([`rejection`]), plugin
//!    output as the outputs show it ([`text`]), [`secret`], [`logger`],
//!    files rewritten whole ([`replace`]) and Lua patterns ([`luapattern`]).
//! 2. **Decisions**: which events go out ([`filter`], [`dedup`], [`seen`]),
//!    templates ([`template`], [`render`]) and what custom code answered
//!    ([`custom`]).
//! 3. **Peers**: HTTP ([`transport`]), whose answers the sinks read, and
//!    each [`sink`], a leaf that knows no other: what an event becomes
//!    without a template, how a body holds several, what the peer's answers
//!    mean, and whether downtimes become pbehaviors (Canopsis only: its
//!    answers and pbehaviors are [`sink::canopsis`]; the Canopsis event JSON
//!    the webhook documents extend is [`sink::event_json`]).
//! 4. **Delivery**: bulking ([`batch`]), what goes down a lane ([`work`]),
//!    which lane an object takes ([`lanes`]), what is delivered and may be
//!    acknowledged ([`progress`]), [`backoff`], [`deadletter`], the durable
//!    [`spool`] and its [`readback`], and the background [`sender`].
//! 5. **The [`connector`]**, which wires them for broker's calls, and the
//!    [`status`] file it writes for monitoring.
//! 6. **The Lua edge**: `lua` (built with a Lua feature), the only code that
//!    touches Lua, and [`refusal`], the output that refuses every event
//!    when `init` could not start one.
//!
//! Beside the layers, [`actions`] is the action service's own program (the
//! Mattermost "Acknowledge" buttons' receiver): it uses only [`secret`],
//! and the Mattermost sink signs its buttons with its `signature` module.
#![deny(missing_docs)]

pub mod actions;
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
