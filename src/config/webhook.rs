//! The webhook output's destination: `http_server_url`, `http_headers`,
//! `webhook_format` and Mattermost's own settings.

use super::{Bot, Buttons, Destination, Framing, MattermostSettings, ParamValue, Reader, Sink};
use crate::secret::Secret;

/// Mattermost's own default is 10 requests per second per client; half
/// of it leaves room for other integrations posting from the same host.
pub const DEFAULT_MESSAGES_PER_SECOND: i64 = 5;

/// More messages waiting than this, and the rest go in one summary.
pub const DEFAULT_WAITING_MESSAGES: i64 = 20;

impl Reader<'_> {
    /// The webhook output's parameters.
    pub(super) fn webhook(&mut self) -> (Destination, Sink) {
        let api = self.string("mattermost_url", "").trim().to_string();
        if !api.is_empty() {
            return self.mattermost_api(&api);
        }
        let url = self.mandatory(
            "http_server_url",
            "the full URL events are posted to (https://host[:port]/path)",
        );
        let (protocol, host, port, route) = match parse_url(&url) {
            Ok(parts) => parts,
            Err(expected) => {
                if !url.is_empty() {
                    let got = ParamValue::Str(masked_url(&url));
                    self.fail("http_server_url", expected, Some(&got));
                }
                ("https".into(), String::new(), 443, "/".into())
            }
        };
        let headers = match parse_headers(&self.string("http_headers", "")) {
            Ok(h) => h,
            Err(expected) => {
                let got = ParamValue::Str(String::new());
                self.fail("http_headers", expected, Some(&got));
                Vec::new()
            }
        };
        let format_name = self
            .string("webhook_format", "json")
            .trim()
            .to_ascii_lowercase();
        let (sink, content_type) = match format_name.as_str() {
            "json" => (Sink::Documents(Framing::Array), "application/json"),
            "ndjson" => (Sink::Documents(Framing::Lines), "application/x-ndjson"),
            "mattermost" => (Sink::Mattermost(self.mattermost()), "application/json"),
            _ => {
                let got = ParamValue::Str(format_name.clone());
                self.fail("webhook_format", "mattermost, json or ndjson", Some(&got));
                (Sink::Documents(Framing::Array), "application/json")
            }
        };
        let destination = Destination {
            protocol,
            host,
            port,
            headers,
            shown_route: shown_route(&route),
            route,
            content_type,
        };
        (destination, sink)
    }

    /// Threads through a bot account: `mattermost_url` (the server, as
    /// people open it), `mattermost_bot_token`, `mattermost_channel_id`,
    /// with `webhook_format=mattermost`. Half of it, or an incoming
    /// webhook's `http_server_url` beside it, is refused by name: which of
    /// the two modes is meant must not be guessed.
    fn mattermost_api(&mut self, url: &str) -> (Destination, Sink) {
        let format_name = self
            .string("webhook_format", "")
            .trim()
            .to_ascii_lowercase();
        if format_name != "mattermost" {
            let got = (!format_name.is_empty()).then(|| ParamValue::Str(format_name.clone()));
            self.fail(
                "webhook_format",
                "mattermost (mattermost_url is set: threads through a bot account)",
                got.as_ref(),
            );
        }
        let hook = self.string("http_server_url", "").trim().to_string();
        if !hook.is_empty() {
            let got = ParamValue::Str(masked_url(&hook));
            self.fail(
                "http_server_url",
                "nothing when mattermost_url is set (one Mattermost mode: an incoming webhook's http_server_url, or a bot's mattermost_url, token and channel)",
                Some(&got),
            );
        }
        let (protocol, host, port, base) = match parse_url(url) {
            Ok((_, _, _, route)) if route.contains('?') => {
                let got = ParamValue::Str(masked_url(url));
                self.fail(
                    "mattermost_url",
                    "the Mattermost server's URL without a query (https://chat.example.com)",
                    Some(&got),
                );
                ("https".into(), String::new(), 443, "/".into())
            }
            Ok(parts) => parts,
            Err(expected) => {
                let got = ParamValue::Str(masked_url(url));
                self.fail("mattermost_url", expected, Some(&got));
                ("https".into(), String::new(), 443, "/".into())
            }
        };
        let token = Secret::new(self.mandatory(
            "mattermost_bot_token",
            "the bot account's access token (mattermost_url is set)",
        ));
        let channel_id = self.mandatory(
            "mattermost_channel_id",
            "the channel's id, 26 letters and digits (mattermost_url is set)",
        );
        let is_id = channel_id.len() == 26
            && channel_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !channel_id.is_empty() && !is_id {
            let got = ParamValue::Str(channel_id.clone());
            self.fail(
                "mattermost_channel_id",
                "the channel's id, 26 lowercase letters and digits (the channel's View Info; not its name)",
                Some(&got),
            );
        }
        let mut headers = match parse_headers(&self.string("http_headers", "")) {
            Ok(h) => h,
            Err(expected) => {
                let got = ParamValue::Str(String::new());
                self.fail("http_headers", expected, Some(&got));
                Vec::new()
            }
        };
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
        headers.push((
            "Authorization".into(),
            Secret::new(format!("Bearer {}", token.expose())),
        ));
        let route = format!("{}/api/v4/posts", base.trim_end_matches('/'));
        let mut settings = self.mattermost();
        settings.bot = Some(Bot { channel_id });
        let destination = Destination {
            protocol,
            host,
            port,
            headers,
            shown_route: route.clone(),
            route,
            content_type: "application/json",
        };
        (destination, Sink::Mattermost(settings))
    }

    fn mattermost(&mut self) -> MattermostSettings {
        let text = |r: &mut Self, name: &str| {
            Some(r.string(name, "").trim().to_string()).filter(|s| !s.is_empty())
        };
        MattermostSettings {
            username: text(self, "username"),
            icon_url: text(self, "icon_url"),
            channel: text(self, "channel"),
            per_second: self.int(
                "max_messages_per_second",
                DEFAULT_MESSAGES_PER_SECOND,
                1,
                100,
                "a number of messages between 1 and 100",
            ) as u32,
            summary_after: self.int(
                "max_waiting_messages",
                DEFAULT_WAITING_MESSAGES,
                1,
                10_000,
                "a number of messages between 1 and 10000",
            ) as usize,
            buttons: self.buttons(),
            bot: None,
        }
    }

    /// `mattermost_actions_url` and `mattermost_actions_secret`: both, or
    /// neither (no buttons).
    fn buttons(&mut self) -> Option<Buttons> {
        let url = self.string("mattermost_actions_url", "").trim().to_string();
        let secret = Secret::new(self.string("mattermost_actions_secret", "").trim());
        if url.is_empty() && secret.is_empty() {
            return None;
        }
        if parse_url(&url).is_err() {
            let got = (!url.is_empty()).then(|| ParamValue::Str(masked_url(&url)));
            self.fail(
                "mattermost_actions_url",
                "the action service's http:// or https:// URL (mattermost_actions_secret is set)",
                got.as_ref(),
            );
            return None;
        }
        if secret.expose().chars().count() < crate::actions::config::MIN_SECRET_LEN {
            let got = (!secret.is_empty()).then(|| ParamValue::Str(String::new()));
            self.fail(
                "mattermost_actions_secret",
                "the secret shared with the action service, 16 characters at least",
                got.as_ref(),
            );
            return None;
        }
        Some(Buttons { url, secret })
    }
}

/// `http://host[:port][/path][?query]` in its parts: protocol, host
/// (an IPv6 address without brackets), port, and path with query (`/` at
/// least). User info and fragments are refused: credentials go in
/// `http_headers`, where they are never logged.
fn parse_url(url: &str) -> Result<(String, String, u16, String), &'static str> {
    const EXPECTED: &str =
        "an http:// or https:// URL with a host, an optional port and path, and no user@ or #fragment";
    let (scheme, rest) = url.split_once("://").ok_or(EXPECTED)?;
    let protocol = scheme.to_ascii_lowercase();
    let default_port = match protocol.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(EXPECTED),
    };
    if url.contains(|c: char| c.is_whitespace() || c.is_control()) || rest.contains('#') {
        return Err(EXPECTED);
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, route) = rest.split_at(split);
    if authority.is_empty() || authority.contains('@') {
        return Err(EXPECTED);
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or(EXPECTED)?;
        addr.parse::<std::net::Ipv6Addr>().map_err(|_| EXPECTED)?;
        (addr.to_string(), after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or(EXPECTED)?,
    };
    if host.is_empty() {
        return Err(EXPECTED);
    }
    let route = match route {
        "" => "/".to_string(),
        r if r.starts_with('?') => format!("/{r}"),
        r => r.to_string(),
    };
    Ok((protocol, host, port, route))
}

/// A URL as an error may show it: scheme and host, without user info, and
/// `/***` for whatever follows (a hook's key, a token in the query).
fn masked_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..end].rsplit('@').next().unwrap_or("");
    let tail = if end < rest.len() { "/***" } else { "" };
    format!("{scheme}{host}{tail}")
}

/// The route as log lines show it: a Mattermost hook's path holds its key
/// (`/hooks/<key>`), so only the first segment is shown, and no query.
fn shown_route(route: &str) -> String {
    let path = route.split('?').next().unwrap_or("/");
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or("");
    let hidden = segments.next().is_some_and(|s| !s.is_empty()) || route.contains('?');
    if hidden {
        format!("/{first}/***")
    } else {
        path.to_string()
    }
}

/// `Name: value` pairs, separated by `;` or line breaks. A piece without
/// a colon continues the previous value (a cookie's `a=1; b=2`).
fn parse_headers(text: &str) -> Result<Vec<(String, Secret)>, &'static str> {
    const EXPECTED: &str =
        "Name: value pairs separated by ; (e.g. Authorization: Bearer xyz; X-Team: noc)";
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in text.split(['\n', ';']) {
        let piece = piece.trim_end_matches('\r');
        if piece.trim().is_empty() {
            continue;
        }
        let token = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        match piece.split_once(':') {
            Some((name, value)) if token(name.trim()) => {
                out.push((name.trim().to_string(), value.trim().to_string()))
            }
            _ => match out.last_mut() {
                Some((_, value)) => {
                    value.push(';');
                    value.push_str(piece);
                }
                None => return Err(EXPECTED),
            },
        }
    }
    if out.iter().any(|(_, v)| v.chars().any(char::is_control)) {
        return Err(EXPECTED);
    }
    Ok(out.into_iter().map(|(n, v)| (n, Secret::new(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{minimal_webhook, params};
    use crate::config::{parse_for, OutputKind};

    #[test]
    fn a_mattermost_output_runs_one_lane_without_batching_delay() {
        let mut p = minimal_webhook("mattermost");
        p.insert("max_requests_in_flight".into(), ParamValue::Int(8));
        p.insert("username".into(), ParamValue::Str("Centreon".into()));
        p.insert("canopsis_authkey".into(), ParamValue::Str("k".into()));
        p.insert(
            "http_headers".into(),
            ParamValue::Str("X-Token: abc".into()),
        );
        let parsed = parse_for(OutputKind::Webhook, &p).unwrap();
        let c = parsed.config;
        let Sink::Mattermost(m) = &c.sink else {
            panic!("{:?}", c.sink)
        };
        assert_eq!(m.username.as_deref(), Some("Centreon"));
        assert_eq!((m.per_second, m.summary_after), (5, 20));
        assert_eq!((c.max_in_flight, c.max_buffer_age.as_secs()), (1, 0));
        assert_eq!(c.http.shown_url(), "http://127.0.0.1:9/hooks/***");
        assert_eq!(c.http.headers[0].0, "X-Token");
        assert_eq!(
            c.logfile.to_str(),
            Some("/var/log/centreon-broker/webhook-events.log")
        );
        for notice in [
            "max_requests_in_flight",
            "'canopsis_authkey' is not handled",
        ] {
            assert!(
                parsed.notices.iter().any(|n| n.contains(notice)),
                "{notice}: {:?}",
                parsed.notices
            );
        }
    }

    #[test]
    fn a_webhook_output_needs_its_url_and_a_known_format_and_hides_secrets() {
        let errors = parse_for(OutputKind::Webhook, &params(&[])).unwrap_err();
        assert_eq!(errors[0].param, "http_server_url");
        let p = params(&[
            (
                "http_server_url",
                ParamValue::Str("https://u:s3cret@x/".into()),
            ),
            ("webhook_format", ParamValue::Str("slack".into())),
        ]);
        let errors = parse_for(OutputKind::Webhook, &p).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{text:?}");
        assert!(!text.join(" ").contains("s3cret"), "{text:?}");
        assert!(text[0].contains("got 'https://x/***'"), "{text:?}");
        assert!(text[1].contains("mattermost, json or ndjson"), "{text:?}");
    }

    #[test]
    fn a_bot_posts_to_the_api_with_its_token_as_a_secret_header_and_half_a_setup_fails() {
        let bot = |pairs: &[(&str, &str)]| {
            let mut p = params(&[("webhook_format", ParamValue::Str("mattermost".into()))]);
            for (k, v) in pairs {
                p.insert(k.to_string(), ParamValue::Str(v.to_string()));
            }
            parse_for(OutputKind::Webhook, &p)
        };
        let full = [
            ("mattermost_url", "https://chat.example.com/mm/"),
            ("mattermost_bot_token", "tok-s3cret"),
            ("mattermost_channel_id", "abcdefghijklmnopqrstuvwxyz"),
        ];
        let c = bot(&full).unwrap().config;
        let Sink::Mattermost(m) = &c.sink else {
            panic!("{:?}", c.sink)
        };
        assert_eq!(
            m.bot.as_ref().map(|b| b.channel_id.as_str()),
            Some("abcdefghijklmnopqrstuvwxyz")
        );
        assert_eq!(c.http.event_route, "/mm/api/v4/posts");
        let auth = &c.http.headers.last().unwrap();
        assert_eq!(
            (auth.0.as_str(), auth.1.expose()),
            ("Authorization", "Bearer tok-s3cret")
        );
        assert!(!c.http.shown_url().contains("s3cret"));
        // Half a bot, or both modes at once: refused by name, token hidden.
        let errors = bot(&full[..2]).unwrap_err();
        assert_eq!(errors[0].param, "mattermost_channel_id");
        let errors = bot(&[full[0], ("mattermost_channel_id", "town-square")]).unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.param.as_str()).collect();
        assert_eq!(names, ["mattermost_bot_token", "mattermost_channel_id"]);
        let mut both = full.to_vec();
        both.push(("http_server_url", "https://chat.example.com/hooks/k"));
        let errors = bot(&both).unwrap_err();
        assert_eq!(errors[0].param, "http_server_url");
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(!text.join(" ").contains("s3cret"), "{text:?}");
    }

    #[test]
    fn buttons_need_a_url_and_a_long_secret_which_no_error_shows() {
        let mut p = minimal_webhook("mattermost");
        p.insert(
            "mattermost_actions_url".into(),
            ParamValue::Str("http://10.0.0.5:8089/mattermost/acknowledge".into()),
        );
        p.insert(
            "mattermost_actions_secret".into(),
            ParamValue::Str("short-s3cret".into()),
        );
        let errors = parse_for(OutputKind::Webhook, &p).unwrap_err();
        let text = errors[0].to_string();
        assert_eq!(errors[0].param, "mattermost_actions_secret");
        assert!(!text.contains("s3cret"), "{text}");
        p.insert(
            "mattermost_actions_secret".into(),
            ParamValue::Str("a-long-enough-s3cret".into()),
        );
        let c = parse_for(OutputKind::Webhook, &p).unwrap().config;
        let Sink::Mattermost(m) = &c.sink else {
            panic!("{:?}", c.sink)
        };
        let b = m.buttons.as_ref().unwrap();
        assert_eq!(b.url, "http://10.0.0.5:8089/mattermost/acknowledge");
        assert!(!format!("{c:?}").contains("s3cret"));
        p.remove("mattermost_actions_url");
        let errors = parse_for(OutputKind::Webhook, &p).unwrap_err();
        assert_eq!(errors[0].param, "mattermost_actions_url");
    }

    #[test]
    fn urls_split_into_what_the_transport_needs() {
        assert_eq!(
            parse_url("https://mm.example.com/hooks/abc123").unwrap(),
            (
                "https".into(),
                "mm.example.com".into(),
                443,
                "/hooks/abc123".into()
            )
        );
        assert_eq!(
            parse_url("http://[::1]:8080?x=1").unwrap(),
            ("http".into(), "::1".into(), 8080, "/?x=1".into())
        );
        assert_eq!(
            parse_url("HTTP://logstash:8080").unwrap(),
            ("http".into(), "logstash".into(), 8080, "/".into())
        );
        for bad in [
            "logstash:8080",
            "ftp://x/",
            "http://user:pw@x/",
            "http://x/#f",
            "http://x:0/",
            "http://x:99999/",
            "http:///p",
            "http://x /",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logs_never_show_a_hooks_key() {
        assert_eq!(shown_route("/hooks/abc123"), "/hooks/***");
        assert_eq!(shown_route("/"), "/");
        assert_eq!(shown_route("/ingest"), "/ingest");
        assert_eq!(shown_route("/ingest?token=s3cret"), "/ingest/***");
    }

    #[test]
    fn headers_are_pairs_and_a_value_may_hold_a_semicolon() {
        let h = parse_headers("Authorization: Bearer x:y; Cookie: a=1; b=2\nX-Team: noc").unwrap();
        let shown: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.expose())).collect();
        assert_eq!(
            shown,
            [
                ("Authorization", "Bearer x:y"),
                ("Cookie", "a=1; b=2"),
                ("X-Team", "noc")
            ]
        );
        assert!(parse_headers("").unwrap().is_empty());
        assert!(parse_headers("no colon here").is_err());
        assert!(parse_headers("Bad Name: x").is_err());
    }
}
