//! Acknowledging through Centreon's REST API v2 on the central server.
//!
//! `POST {base}/api/latest/monitoring/resources/acknowledge` with an API
//! token in `X-AUTH-TOKEN` and
//! `{"acknowledgement":{...},"resources":[{"type","id","parent"}]}`; a
//! service is named by its id and its host's (`parent`). Centreon answers
//! 204 when it took it. The API records the token's user as the author, so
//! the comment names the Mattermost user who clicked.

use super::acknowledge::{Ack, AckError, Acknowledger};
use crate::secret::Secret;
use serde_json::{json, Value};
use std::time::Duration;

/// The route below the Centreon base URL (`https://central/centreon`).
pub const ROUTE: &str = "/api/latest/monitoring/resources/acknowledge";

/// Centreon's acknowledge endpoint and the token to call it with.
pub struct CentreonApi {
    url: String,
    token: Secret,
    agent: ureq::Agent,
}

impl CentreonApi {
    /// Calls `base` (up to `/centreon`) with `token`, each call bounded by
    /// `timeout`.
    pub fn new(base: &str, token: Secret, timeout: Duration, verify_certificate: bool) -> Self {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .disable_verification(!verify_certificate)
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The token goes to the configured host only.
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .user_agent(concat!(
                "centreon-canopsis-native-actions/",
                env!("CARGO_PKG_VERSION")
            ))
            .build();
        CentreonApi {
            url: format!("{}{ROUTE}", base.trim_end_matches('/')),
            token,
            agent: config.into(),
        }
    }
}

/// The request body for `ack`.
pub fn body(ack: &Ack) -> Value {
    let t = &ack.target;
    let resource = match t.service_id {
        Some(id) => json!({"type": "service", "id": id, "parent": {"id": t.host_id}}),
        None => json!({"type": "host", "id": t.host_id, "parent": null}),
    };
    json!({
        "acknowledgement": {
            "comment": ack.comment,
            "with_services": false,
            "is_notify_contacts": ack.notify,
            "is_persistent_comment": ack.persistent,
            "is_sticky": ack.target.sticky,
        },
        "resources": [resource],
    })
}

impl Acknowledger for CentreonApi {
    fn acknowledge(&self, ack: &Ack) -> Result<(), AckError> {
        let body = serde_json::to_vec(&body(ack)).unwrap_or_default();
        let resp = self
            .agent
            .post(&self.url)
            .header("X-AUTH-TOKEN", self.token.expose())
            .header("Content-Type", "application/json")
            .send(&body[..])
            .map_err(|e| AckError(format!("Centreon's API could not be reached: {e}")))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = resp
            .into_body()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        let snippet: String = text.chars().take(200).collect();
        let hint = match status {
            401 => " (the API token is wrong or expired: centreon_token)",
            403 => " (the token's user may not acknowledge this resource)",
            404 => " (no such resource, or a wrong centreon_url)",
            _ => "",
        };
        Err(AckError(format!(
            "Centreon's API answered HTTP {status}{hint}: {}",
            snippet.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::signature::tests::target;

    #[test]
    fn a_service_is_named_with_its_host_and_a_host_without_parent() {
        let mut ack = Ack {
            target: target(),
            author: "alice".into(),
            comment: "Acknowledged by @alice from Mattermost".into(),
            notify: true,
            persistent: true,
        };
        let b = body(&ack);
        assert_eq!(
            b["resources"],
            json!([{"type": "service", "id": 34, "parent": {"id": 12}}])
        );
        assert_eq!(b["acknowledgement"]["is_sticky"], false);
        assert_eq!(b["acknowledgement"]["with_services"], false);
        ack.target.service = None;
        ack.target.service_id = None;
        assert_eq!(
            body(&ack)["resources"],
            json!([{"type": "host", "id": 12, "parent": null}])
        );
    }
}
