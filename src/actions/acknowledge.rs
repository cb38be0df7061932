//! What an acknowledgement is, whichever way it reaches Centreon.

use super::signature::Target;
use std::fmt;

/// One acknowledgement to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// What to acknowledge.
    pub target: Target,
    /// The Mattermost user's name: the author.
    pub author: String,
    /// The comment Centreon shows.
    pub comment: String,
    /// Whether contacts are notified of it.
    pub notify: bool,
    /// Whether the comment survives an engine restart.
    pub persistent: bool,
}

/// Why an acknowledgement did not reach Centreon: said to the person who
/// clicked (ephemerally) and to the log, so it holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError(pub String);

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AckError {}

/// A way to acknowledge in Centreon.
pub trait Acknowledger: Send {
    /// Makes `ack`; `Ok` once Centreon took it.
    fn acknowledge(&self, ack: &Ack) -> Result<(), AckError>;
}
