//! Native replacement for Centreon's `canopsis2x-events-apiv2.lua` stream
//! connector.
//!
//! Centreon Broker loads `lua/canopsis-native-events-apiv2.lua`, which
//! `require`s this library (built once per Lua ABI) and binds broker's
//! global `init`/`filter`/`write`/`flush` to one [`connector::Connector`].
//! Everything below the thin [`lua`] edge is plain Rust that unit tests drive
//! without Lua: parameters ([`config`]), event model ([`event`]), filters
//! ([`filter`]), Canopsis JSON ([`format`]), bulking ([`batch`]), HTTP
//! ([`transport`]), downtimes as pbehaviors ([`pbehavior`]) the
//! background [`sender`] and the durable [`spool`].
#![deny(missing_docs)]

pub mod answer;
pub mod backoff;
pub mod batch;
pub mod cache;
pub mod config;
pub mod connector;
pub mod custom;
pub mod deadletter;
pub mod dedup;
pub mod event;
pub mod filter;
pub mod format;
pub mod lanes;
pub mod logger;
pub mod luapattern;
pub mod pbehavior;
pub mod progress;
pub mod readback;
pub mod render;
pub mod secret;
pub mod sender;
pub mod sink;
pub mod spool;
pub mod template;
pub mod transport;

#[cfg(all(feature = "lua53", feature = "lua54"))]
compile_error!("build with exactly one of the features lua53 and lua54");

#[cfg(any(feature = "lua53", feature = "lua54"))]
pub mod lua;
