//! The action service behind Mattermost's "Acknowledge" buttons.
//!
//! The webhook output (Mattermost format, `mattermost_actions_url` set)
//! puts a button on problem messages; its context says what to acknowledge
//! and carries an expiry and an HMAC-SHA-256 signature keyed with a secret
//! the output and this service share ([`signature`]). When a person clicks,
//! Mattermost POSTs that context with the person's name to the service
//! (`centreon-canopsis-native-actions`, [`server`]), which checks it
//! ([`handler`], [`replay`]) and acknowledges the host or service in
//! Centreon, through its REST API ([`centreon_api`]) or the engine's
//! command file ([`command_file`]).
//!
//! This tree depends on neither the connector nor Lua: the service is a
//! program of its own, and the output uses only [`signature`].

pub mod acknowledge;
pub mod centreon_api;
pub mod command_file;
pub mod config;
pub mod handler;
pub mod replay;
pub mod server;
pub mod signature;
