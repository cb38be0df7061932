//! The Canopsis output's destination: host, key, event route, and how
//! downtimes become pbehaviors.

use super::{Destination, DowntimeConfig, ParamValue, Reader};
use crate::secret::Secret;

impl Reader<'_> {
    /// `canopsis_*`, `sending_protocol` and the downtime settings.
    pub(super) fn canopsis(&mut self) -> (Destination, DowntimeConfig) {
        let authkey = Secret::new(self.mandatory(
            "canopsis_authkey",
            "the Canopsis API key of the connector's user",
        ));
        let host = self.mandatory(
            "canopsis_host",
            "the Canopsis host name or address (without http://)",
        );
        if authkey.expose().chars().any(char::is_control) {
            // A header value with CR or LF would end the header early.
            self.fail(
                "canopsis_authkey",
                "a key without control characters (check for a pasted line break)",
                Some(&ParamValue::Str(String::new())),
            );
        }
        if !host.is_empty() && !bare_host(&host) {
            let raw = self.params.get("canopsis_host").cloned();
            self.fail(
                "canopsis_host",
                "a bare host name or address, without scheme, user, port, path, query or fragment (set them with sending_protocol and canopsis_port)",
                raw.as_ref(),
            );
        }
        let port = self.int(
            "canopsis_port",
            443,
            1,
            65535,
            "a TCP port between 1 and 65535",
        ) as u16;
        let protocol = self
            .string("sending_protocol", "https")
            .trim()
            .to_ascii_lowercase();
        if protocol != "http" && protocol != "https" {
            let raw = self.params.get("sending_protocol").cloned();
            self.fail("sending_protocol", "http or https", raw.as_ref());
        }
        let event_route = self.route("canopsis_event_route", "/api/v4/event");
        let d = DowntimeConfig::default();
        let downtime = DowntimeConfig {
            send_pbh: self.flag("canopsis_downtime_send_pbh", d.send_pbh),
            reason_name: self.nonempty(
                "canopsis_downtime_reason_name",
                &d.reason_name,
                "a non-empty pbehavior reason name",
            ),
            type_name: self.nonempty(
                "canopsis_downtime_type_name",
                &d.type_name,
                "a non-empty pbehavior type name",
            ),
            route: self.route("canopsis_downtime_route", &d.route),
            reason_route: self.route("canopsis_downtime_reason_route", &d.reason_route),
            type_route: self.route("canopsis_downtime_type_route", &d.type_route),
            comment_route: self.route("canopsis_downtime_comment_route", &d.comment_route),
            // Set from `connector` once the format is read.
            origin: d.origin.clone(),
        };

        let destination = Destination {
            protocol,
            host,
            port,
            headers: vec![("x-canopsis-authkey".to_string(), authkey)],
            shown_route: event_route.clone(),
            route: event_route,
            content_type: "application/json",
        };
        (destination, downtime)
    }
}

/// Whether `host` names a host and nothing else. Anything URL syntax would
/// read as more than a host (`user@`, `:port`, `/path`, `?query`, `#frag`)
/// could send the auth key somewhere else than the admin thinks; a bracketed
/// IPv6 address and a bare one (several colons) are hosts.
fn bare_host(host: &str) -> bool {
    let bad = |c: char| c.is_whitespace() || c.is_control() || "@/?#\\%".contains(c);
    if host.contains(bad) {
        return false;
    }
    if let Some(inner) = host.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    }
    // A colon is a port, unless the whole is an IPv6 address.
    !host.contains(':') || host.parse::<std::net::Ipv6Addr>().is_ok()
}
