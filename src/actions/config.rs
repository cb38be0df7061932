//! The action service's configuration file.
//!
//! `key = value` lines; `#` starts a comment line. Secrets (`secret`,
//! `centreon_token`) are read into [`Secret`]s and no error shows their
//! value. The file is installed 0640, readable by the service's group only.

use crate::secret::Secret;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the packages install the file.
pub const DEFAULT_PATH: &str = "/etc/centreon-canopsis-native/actions.conf";

/// The engine's command file on a Centreon server.
pub const DEFAULT_COMMAND_FILE: &str = "/var/lib/centreon-engine/rw/centengine.cmd";

/// The shortest shared secret taken: a short one could be guessed offline
/// from one signed button.
pub const MIN_SECRET_LEN: usize = 16;

/// How acknowledgements reach Centreon.
#[derive(Debug, Clone, PartialEq)]
pub enum Via {
    /// Centreon's REST API v2 on the central server.
    CentreonApi {
        /// Up to `/centreon`: `https://central.example.com/centreon`.
        url: String,
        /// An API token (Administration > API tokens).
        token: Secret,
        /// Whether the central's certificate is checked.
        verify_certificate: bool,
    },
    /// The engine's command file, on a single-server install.
    CommandFile(PathBuf),
}

/// The service's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The one route it serves (the path of `mattermost_actions_url`).
    pub route: String,
    /// The secret shared with the output (`mattermost_actions_secret`).
    pub secret: Secret,
    /// How it acknowledges.
    pub via: Via,
    /// Whether contacts are notified of the acknowledgement.
    pub notify: bool,
    /// Whether its comment survives an engine restart.
    pub persistent: bool,
    /// The largest request body read.
    pub max_body_bytes: usize,
    /// How long a request (reading it, acknowledging, answering) may take.
    pub request_timeout: Duration,
    /// Where used buttons are remembered across restarts; `None`: in
    /// memory only.
    pub state_file: Option<PathBuf>,
}

/// A line of the file that cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The line (1-based), 0 for the file as a whole.
    pub line: usize,
    /// What is wrong, without any secret's value.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn error(line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError {
        line,
        message: message.into(),
    }
}

fn boolean(line: usize, key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(error(
            line,
            format!("{key} must be true or false, got '{value}'"),
        )),
    }
}

fn number(line: usize, key: &str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            error(
                line,
                format!("{key} must be between {min} and {max}, got '{value}'"),
            )
        })
}

/// Reads the file's text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut listen: SocketAddr = "127.0.0.1:8089".parse().expect("a literal address");
    let mut route = "/mattermost/acknowledge".to_string();
    let mut secret = Secret::default();
    let mut method = "centreon_api".to_string();
    let mut url = String::new();
    let mut token = Secret::default();
    let mut verify_certificate = true;
    let mut command_file = PathBuf::from(DEFAULT_COMMAND_FILE);
    let mut notify = true;
    let mut persistent = true;
    let mut max_body_bytes = 16 * 1024;
    let mut timeout = 10;
    let mut state_file = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(error(n, "expected key = value"));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "listen" => {
                listen = value
                    .parse()
                    .map_err(|_| error(n, format!("listen must be address:port, got '{value}'")))?
            }
            "route" if value.starts_with('/') && !value.contains(['?', '#', ' ']) => {
                route = value.to_string()
            }
            "route" => return Err(error(n, format!("route must be a path, got '{value}'"))),
            "secret" => secret = Secret::new(value),
            "acknowledge_with" => method = value.to_string(),
            "centreon_url" => url = value.trim_end_matches('/').to_string(),
            "centreon_token" => token = Secret::new(value),
            "verify_certificate" => verify_certificate = boolean(n, key, value)?,
            "command_file" => command_file = PathBuf::from(value),
            "notify" => notify = boolean(n, key, value)?,
            "persistent" => persistent = boolean(n, key, value)?,
            "max_body_bytes" => max_body_bytes = number(n, key, value, 1024, 1 << 20)? as usize,
            "request_timeout" => timeout = number(n, key, value, 1, 300)?,
            "state_file" if value.is_empty() => state_file = None,
            "state_file" if value.starts_with('/') => state_file = Some(PathBuf::from(value)),
            "state_file" => {
                return Err(error(
                    n,
                    format!("state_file must be an absolute path, got '{value}'"),
                ))
            }
            _ => return Err(error(n, format!("unknown key '{key}'"))),
        }
    }
    if secret.expose().chars().count() < MIN_SECRET_LEN {
        return Err(error(
            0,
            format!(
                "secret must be set, {MIN_SECRET_LEN} characters at least (the same as the output's mattermost_actions_secret)"
            ),
        ));
    }
    let via = match method.as_str() {
        "centreon_api" => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(error(
                    0,
                    "centreon_url must be the central's URL up to /centreon (https://central/centreon)",
                ));
            }
            if token.is_empty() {
                return Err(error(
                    0,
                    "centreon_token must be set (a Centreon API token)",
                ));
            }
            Via::CentreonApi {
                url,
                token,
                verify_certificate,
            }
        }
        "command_file" => Via::CommandFile(command_file),
        other => {
            return Err(error(
                0,
                format!("acknowledge_with must be centreon_api or command_file, got '{other}'"),
            ))
        }
    };
    Ok(Config {
        listen,
        route,
        secret,
        via,
        notify,
        persistent,
        max_body_bytes,
        request_timeout: Duration::from_secs(timeout),
        state_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_the_api_and_hides_secrets() {
        let c = parse(
            "# comment\nlisten = 127.0.0.1:9000\nsecret = 0123456789abcdef-s3cret\n\
             centreon_url = https://central/centreon/\ncentreon_token = t0ken-s3cret\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.route, "/mattermost/acknowledge");
        let Via::CentreonApi { url, .. } = &c.via else {
            panic!("{:?}", c.via)
        };
        assert_eq!(url, "https://central/centreon");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn mistakes_are_named_without_secrets() {
        let short = parse("secret = s3cret\nacknowledge_with = command_file").unwrap_err();
        assert!(short.message.contains("16 characters"), "{short}");
        assert!(!short.to_string().contains("s3cret"));
        let e = parse("secret = 0123456789abcdef0\nnotify = maybe").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("secret = 0123456789abcdef0\ncentreon_url = https://c/centreon").unwrap_err();
        assert!(e.message.contains("centreon_token"), "{e}");
        let c = parse("secret = 0123456789abcdef0\nacknowledge_with = command_file").unwrap();
        assert_eq!(c.via, Via::CommandFile(DEFAULT_COMMAND_FILE.into()));
        assert_eq!(c.state_file, None);
        let e = parse("secret = 0123456789abcdef0\nstate_file = used").unwrap_err();
        assert!(e.message.contains("absolute"), "{e}");
        assert!(parse("bogus = 1")
            .unwrap_err()
            .message
            .contains("unknown key"));
    }
}
