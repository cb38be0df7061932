//! One HTTP exchange with Canopsis, and its replayable log line.
//!
//! The sender only sees [`Transport`]: the real one speaks HTTP through a
//! keep-alive ureq agent; `send_data_test=1` swaps in [`DryRun`], which
//! writes the payload to the log and answers like Canopsis would.

mod redirect;

pub use redirect::{Unfollowed, MAX_HOPS};

use crate::config::HttpConfig;
use crate::logger::Logger;
use redirect::Origin;
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest answer read. Canopsis echoes every event it took, so an answer
/// to a full batch ([`crate::batch::MAX_BODY_BYTES`]) is about that size;
/// anything much bigger is not Canopsis, and is not kept in memory.
pub const MAX_ANSWER_BYTES: u64 = 8 * 1024 * 1024;

/// Longest TCP connect or name resolution. Neither can be interrupted when
/// the connector closes, so they get less than `connection_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST (JSON body)
    Post,
    /// DELETE
    Delete,
    /// PUT (JSON body): Mattermost's post patch.
    Put,
}

impl Method {
    /// As HTTP writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Put => "PUT",
        }
    }
}

/// A request to a Canopsis route.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// Route and query, e.g. `/api/v4/event`.
    pub path: &'a str,
    /// JSON body, for POST.
    pub body: &'a [u8],
}

/// What Canopsis answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body as text (lossy UTF-8).
    pub body: String,
    /// `Retry-After` in seconds, when present.
    pub retry_after: Option<Duration>,
    /// For a 3xx: why the transport did not follow it (it follows those
    /// that stay on the configured origin: see the `redirect` module).
    pub redirect: Option<Unfollowed>,
}

impl Response {
    /// An answer without headers of note.
    pub fn new(status: u16, body: String) -> Response {
        Response {
            status,
            body,
            retry_after: None,
            redirect: None,
        }
    }

    /// The start of the body, on one line, for log lines.
    pub fn snippet(&self) -> String {
        one_line(&self.body, 300)
    }
}

/// `text` cut to `max` characters (an ellipsis marks the cut), on one line:
/// line breaks and other control characters are escaped, so a server's
/// HTML page or stack trace stays one log line.
pub fn one_line(text: &str, max: usize) -> String {
    use std::fmt::Write;
    let text = text.trim();
    let mut out = String::with_capacity(text.len().min(max + 8));
    let mut count = 0;
    let mut buf = String::new();
    for c in text.chars() {
        buf.clear();
        match c {
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push(' '),
            c if c.is_control() => {
                let _ = write!(buf, "\\u{{{:x}}}", c as u32);
            }
            c => buf.push(c),
        }
        let n = buf.chars().count();
        if count + n > max {
            out.push('…');
            break;
        }
        count += n;
        out.push_str(&buf);
    }
    out
}

/// Why no answer came back.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportError {
    /// The request took longer than `connection_timeout`.
    Timeout,
    /// The host name did not resolve or the connection was refused or reset.
    Connect(String),
    /// TLS handshake or certificate verification failed.
    Tls(String),
    /// The proxy refused `proxy_username`/`proxy_password`.
    ProxyAuth,
    /// The request would have left in clear with `sending_protocol=https`.
    Cleartext(String),
    /// The peer took the request and gave no answer before the exchange
    /// was cut: by `connection_timeout`, or by the connector closing. Not
    /// a connect failure: the peer is there, and hangs.
    NoAnswer {
        /// `scheme://host:port`, never the path (a hook's key).
        peer: String,
        /// How long it was waited for.
        within: Duration,
    },
    /// Anything else (proxy, protocol, I/O).
    Other(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Timeout => write!(f, "timed out"),
            TransportError::Connect(e) => write!(f, "cannot connect: {e}"),
            TransportError::Tls(e) => write!(f, "TLS failure: {e}"),
            TransportError::ProxyAuth => write!(
                f,
                "the proxy refused proxy_username/proxy_password (HTTP 407 to CONNECT)"
            ),
            TransportError::Cleartext(e) => write!(
                f,
                "refused to send in clear with sending_protocol=https ({e})"
            ),
            TransportError::NoAnswer { peer, within } => {
                write!(
                    f,
                    "no answer from {peer} within {:.1}s",
                    within.as_secs_f32()
                )
            }
            TransportError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl TransportError {
    /// Whether an admin must act (retrying soon will not help).
    pub fn is_config_fault(&self) -> bool {
        matches!(
            self,
            TransportError::Tls(_) | TransportError::ProxyAuth | TransportError::Cleartext(_)
        )
    }
}

/// Stops the requests of a transport in flight, from another thread.
pub type Interrupt = Box<dyn FnOnce() + Send>;

/// Sends requests to Canopsis.
pub trait Transport: Send {
    /// Performs one request.
    fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError>;

    /// No exchange may last past `deadline` (the connector is closing).
    fn set_deadline(&mut self, _deadline: Option<Instant>) {}

    /// Another transport to the same place, for another request in flight
    /// (sharing connections where it can); `None` when there is no such
    /// thing, and requests go one at a time.
    fn fork(&self) -> Option<Box<dyn Transport>> {
        None
    }

    /// A way to stop requests in flight (when the connector closes), if
    /// this transport has one.
    fn interrupter(&self) -> Option<Interrupt> {
        None
    }
}

/// Quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn userinfo_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A curl command that replays `req`, with the auth key and proxy password
/// replaced by `***`: an admin pastes it after putting the key back.
pub fn curl_command(cfg: &HttpConfig, req: Request<'_>) -> String {
    curl_line(cfg, req, false)
}

/// [`curl_command`], for a request a redirect sent to `req.path`
/// (`hop`), whose path is shown as [`shown_target`] says.
fn curl_line(cfg: &HttpConfig, req: Request<'_>, hop: bool) -> String {
    let mut cmd = format!(
        "curl -sS -X {} --max-time {}",
        req.method.as_str(),
        cfg.timeout.as_secs()
    );
    if !cfg.verify_certificate {
        cmd.push_str(" -k");
    }
    if let Some(p) = &cfg.proxy {
        cmd.push_str(&format!(" -x {}://{}:{}", p.protocol, p.address, p.port));
        if !p.username.is_empty() {
            cmd.push_str(&format!(
                " -U {}",
                shell_quote(&format!("{}:***", p.username))
            ));
        }
    }
    for (name, _) in &cfg.headers {
        cmd.push_str(&format!(" -H {}", shell_quote(&format!("{name}: ***"))));
    }
    if !req.body.is_empty() {
        if let Some(own) = own_content_type(cfg) {
            cmd.push_str(&format!(" -H 'content-type: {own}'"));
        }
        cmd.push_str(" --data-binary ");
        cmd.push_str(&shell_quote(&String::from_utf8_lossy(req.body)));
    }
    cmd.push(' ');
    cmd.push_str(&shell_quote(&format!(
        "{}{}",
        cfg.base_url(),
        if hop {
            Cow::Owned(shown_target(cfg, req.path))
        } else {
            Cow::Borrowed(cfg.shown_path(req.path))
        }
    )));
    cmd
}

/// A path a redirect named, as log lines may show it: the event route as
/// [`HttpConfig::shown_path`] says; any other path the same way when the
/// event route hides its tail (a hook's key), and else without its query
/// (which the connector did not write, and may hold anything).
fn shown_target(cfg: &HttpConfig, path: &str) -> String {
    if path == cfg.event_route {
        return cfg.shown_route.clone();
    }
    let (bare, query) = match path.split_once('?') {
        Some((p, _)) => (p, true),
        None => (path, false),
    };
    if cfg.shown_route != cfg.event_route {
        let first = bare.trim_start_matches('/').split('/').next().unwrap_or("");
        format!("/{first}/***")
    } else if query {
        format!("{bare}?***")
    } else {
        bare.to_string()
    }
}

/// The `Content-Type` the connector sets on a body: its format's, unless
/// `http_headers` names one (in any case), which is then the only one sent.
fn own_content_type(cfg: &HttpConfig) -> Option<&'static str> {
    let named = cfg
        .headers
        .iter()
        .any(|(name, _)| name.trim().eq_ignore_ascii_case("content-type"));
    (!named).then_some(cfg.content_type)
}

/// The real transport: a ureq agent with keep-alive.
pub struct Http {
    agent: ureq::Agent,
    cfg: HttpConfig,
    log: Logger,
    deadline: Option<Instant>,
    /// Set (for every fork: they share the agent) once the connector cut
    /// the requests in flight: what they then fail with says the peer did
    /// not answer, not that it disconnected.
    cut: Arc<AtomicBool>,
    /// Where redirects may lead: the configured scheme, host and port.
    origin: Origin,
    /// Set (for every fork) once a followed redirect was logged at warning
    /// level; the next ones go to the debug level.
    told: Arc<AtomicBool>,
}

impl Http {
    /// Builds the agent: `connection_timeout` for the whole exchange, TLS
    /// verification against the system trust store unless
    /// `verify_certificate=0` (which disables chain and host name checks
    /// together), proxy from the `proxy_*` parameters only. Its pool keeps
    /// `connections` idle connections, one per request in flight: fewer,
    /// and every request beyond them would open (and, over TLS, negotiate)
    /// a connection of its own.
    pub fn new(cfg: &HttpConfig, connections: usize, log: Logger) -> Result<Http, String> {
        use ureq::tls::{RootCerts, TlsConfig};
        let proxy = match &cfg.proxy {
            None => None,
            Some(p) => {
                let auth = if p.username.is_empty() {
                    String::new()
                } else {
                    format!(
                        "{}:{}@",
                        userinfo_encode(&p.username),
                        userinfo_encode(p.password.expose())
                    )
                };
                let url = format!("{}://{}{}:{}", p.protocol, auth, p.address, p.port);
                Some(ureq::Proxy::new(&url).map_err(|_| {
                    format!(
                        "invalid proxy settings (proxy_protocol={}, proxy_address={}, proxy_port={})",
                        p.protocol, p.address, p.port
                    )
                })?)
            }
        };
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::PlatformVerifier)
            .disable_verification(!cfg.verify_certificate)
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The key goes to canopsis_host only: `send` follows the
            // redirects that stay there, ureq none.
            .max_redirects(0)
            .https_only(cfg.protocol == "https")
            .timeout_global(Some(cfg.timeout))
            .timeout_connect(Some(cfg.timeout.min(CONNECT_TIMEOUT)))
            .timeout_resolve(Some(cfg.timeout.min(CONNECT_TIMEOUT)))
            .proxy(proxy)
            .tls_config(tls)
            .user_agent(concat!(
                "centreon-canopsis-native/",
                env!("CARGO_PKG_VERSION")
            ))
            .max_idle_connections_per_host(connections.max(1))
            .max_idle_connections(connections.max(1))
            .build();
        Ok(Http {
            agent: config.into(),
            cfg: cfg.clone(),
            log,
            deadline: None,
            cut: Arc::new(AtomicBool::new(false)),
            origin: Origin::new(&cfg.protocol, &cfg.host, cfg.port),
            told: Arc::new(AtomicBool::new(false)),
        })
    }

    /// What `e` means for this exchange, begun at `started`: a request the
    /// peer held without answering until a timeout or the connector's cut
    /// is named so (the cut shows as "Peer disconnected" otherwise).
    fn judge(&self, e: ureq::Error, started: Instant) -> TransportError {
        let no_answer = || TransportError::NoAnswer {
            peer: self.cfg.base_url(),
            within: started.elapsed(),
        };
        match &e {
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => classify(e),
            ureq::Error::Timeout(_) => no_answer(),
            ureq::Error::Io(io)
                if self.cut.load(Ordering::Acquire)
                    && io.kind() != std::io::ErrorKind::ConnectionRefused =>
            {
                no_answer()
            }
            _ => classify(e),
        }
    }

    /// The request's replayable curl line: at info level with
    /// `log_curl_commands=1` (the Lua library's notice), else at debug;
    /// the key is written `***` either way.
    fn log_request(&self, req: Request<'_>, hop: bool) {
        if self.cfg.log_curl && self.log.enabled(log::Level::Info) {
            self.log
                .info(format_args!("sending: {}", curl_line(&self.cfg, req, hop)));
        } else if self.log.enabled(log::Level::Debug) {
            self.log
                .debug(format_args!("sending: {}", curl_line(&self.cfg, req, hop)));
        }
    }

    /// A redirect followed: worth one warning (the route could name where
    /// it leads and save a round trip), then debug lines.
    fn log_followed(&self, from: Request<'_>, status: u16, hop: &redirect::Hop) {
        let first = !self.told.swap(true, Ordering::AcqRel);
        let level = if first {
            log::Level::Warn
        } else {
            log::Level::Debug
        };
        if self.log.enabled(level) {
            self.log.log(
                level,
                format_args!(
                    "HTTP {status} redirect of {} {} to {} {} on the same host and port: followed{}",
                    from.method.as_str(),
                    shown_target(&self.cfg, from.path),
                    hop.method.as_str(),
                    shown_target(&self.cfg, &hop.target),
                    if first {
                        " (configure the route it leads to and save a round trip; further ones are logged at debug level)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }

    /// How long the next exchange may last, when the agent's own
    /// `connection_timeout` is not the bound: closing (what is left of the
    /// budget), or after a redirect (what is left of `connection_timeout`
    /// since the first request: the chain is one exchange to the sender).
    fn bound(&self, started: Instant, hop: bool) -> Result<Option<Duration>, TransportError> {
        let mut bound = None;
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout);
            }
            bound = Some(left.min(self.cfg.timeout));
        }
        if hop {
            let left = self.cfg.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(TransportError::Timeout);
            }
            bound = Some(bound.map_or(left, |b: Duration| b.min(left)));
        }
        Ok(bound)
    }

    /// One request and its answer, read whole (up to [`MAX_ANSWER_BYTES`]).
    fn exchange(
        &self,
        req: Request<'_>,
        bound: Option<Duration>,
        started: Instant,
    ) -> Result<Exchanged, TransportError> {
        let url = format!("{}{}", self.cfg.base_url(), req.path);
        let headers = &self.cfg.headers;
        let content_type = own_content_type(&self.cfg);
        let result = match req.method {
            Method::Post => typed(
                prepared(self.agent.post(&url), headers, bound),
                content_type,
            )
            .send(req.body),
            Method::Get => prepared(self.agent.get(&url), headers, bound).call(),
            Method::Put => {
                typed(prepared(self.agent.put(&url), headers, bound), content_type).send(req.body)
            }
            Method::Delete if req.body.is_empty() => {
                prepared(self.agent.delete(&url), headers, bound).call()
            }
            // The bulk route deletes the pbehaviors its body lists.
            Method::Delete => typed(
                prepared(self.agent.delete(&url), headers, bound),
                content_type,
            )
            .force_send_body()
            .send(req.body),
        };
        let resp = result.map_err(|e| self.judge(e, started))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .into_body()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| self.judge(e, started))?;
        Ok(Exchanged {
            response: Response {
                status,
                // Canopsis echoes every event: no second copy of a valid body.
                body: String::from_utf8(body)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                retry_after,
                redirect: None,
            },
            location,
        })
    }
}

/// An answer, with its `Location` (kept apart: only the redirect decision
/// reads it, and it may hold anything).
struct Exchanged {
    response: Response,
    location: Option<String>,
}

fn classify(e: ureq::Error) -> TransportError {
    match e {
        ureq::Error::Timeout(_) => TransportError::Timeout,
        ureq::Error::HostNotFound => TransportError::Connect("host not found".into()),
        ureq::Error::ConnectionFailed => TransportError::Connect("connection failed".into()),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                TransportError::Timeout
            }
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof => TransportError::Connect(io.to_string()),
            _ => TransportError::Other(io.to_string()),
        },
        ureq::Error::Tls(m) => TransportError::Tls(m.to_string()),
        ureq::Error::ConnectProxyFailed(m) if m.contains(" 407") => TransportError::ProxyAuth,
        ureq::Error::RequireHttpsOnly(m) => TransportError::Cleartext(m),
        ureq::Error::BodyExceedsLimit(_) => TransportError::Other(format!(
            "answer larger than {} MiB: not Canopsis (check canopsis_host and canopsis_port)",
            MAX_ANSWER_BYTES >> 20
        )),
        ureq::Error::Rustls(e) => TransportError::Tls(e.to_string()),
        other => TransportError::Other(other.to_string()),
    }
}

impl Transport for Http {
    fn fork(&self) -> Option<Box<dyn Transport>> {
        // ureq's agents share their connection pool when cloned.
        Some(Box::new(Http {
            agent: self.agent.clone(),
            cfg: self.cfg.clone(),
            log: self.log.clone(),
            deadline: None,
            cut: self.cut.clone(),
            origin: self.origin.clone(),
            told: self.told.clone(),
        }))
    }

    fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
        let started = Instant::now();
        let (mut method, mut path) = (req.method, Cow::Borrowed(req.path));
        let mut hops = 0;
        loop {
            let this = Request {
                method,
                path: &path,
                body: req.body,
            };
            self.log_request(this, hops > 0);
            let bound = self.bound(started, hops > 0)?;
            let answer = self.exchange(this, bound, started)?;
            if !(300..400).contains(&answer.response.status) {
                return Ok(answer.response);
            }
            hops += 1;
            let decided = redirect::decide(
                &self.origin,
                &path,
                method,
                answer.response.status,
                answer.location.as_deref(),
                hops,
                |p| shown_target(&self.cfg, p),
            );
            match decided {
                Ok(hop) => {
                    self.log_followed(this, answer.response.status, &hop);
                    method = hop.method;
                    path = Cow::Owned(hop.target);
                }
                Err(why) => {
                    let mut response = answer.response;
                    response.redirect = Some(why);
                    return Ok(response);
                }
            }
        }
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    fn interrupter(&self) -> Option<Interrupt> {
        let (agent, cut) = (self.agent.clone(), self.cut.clone());
        Some(Box::new(move || {
            cut.store(true, Ordering::Release);
            agent.shutdown();
        }))
    }
}

/// `rb` with the configured headers, bounded as [`bounded`] says.
fn prepared<B>(
    mut rb: ureq::RequestBuilder<B>,
    headers: &[(String, crate::secret::Secret)],
    closing: Option<Duration>,
) -> ureq::RequestBuilder<B> {
    for (name, value) in headers {
        rb = rb.header(name.as_str(), value.expose());
    }
    bounded(rb, closing)
}

/// `rb` with the body's `Content-Type`, unless `http_headers` gave it.
fn typed<B>(rb: ureq::RequestBuilder<B>, content_type: Option<&str>) -> ureq::RequestBuilder<B> {
    match content_type {
        Some(t) => rb.header("content-type", t),
        None => rb,
    }
}

/// `rb` with its whole exchange bounded by `timeout`, when closing (the
/// agent's own configuration serves otherwise, at no cost per request).
fn bounded<B>(rb: ureq::RequestBuilder<B>, timeout: Option<Duration>) -> ureq::RequestBuilder<B> {
    match timeout {
        None => rb,
        Some(t) => rb.config().timeout_global(Some(t)).build(),
    }
}

/// `send_data_test=1`: logs what would be sent and reports success, as the
/// Lua connector does, so an admin can check payloads without Canopsis.
pub struct DryRun {
    log: Logger,
    /// Where it pretends to send, for how logs show routes.
    http: HttpConfig,
}

impl DryRun {
    /// A dry-run transport logging to `log` (showing routes as `cfg` says).
    pub fn new(log: Logger, cfg: &HttpConfig) -> DryRun {
        DryRun {
            log,
            http: cfg.clone(),
        }
    }
}

impl Transport for DryRun {
    fn fork(&self) -> Option<Box<dyn Transport>> {
        Some(Box::new(DryRun::new(self.log.clone(), &self.http)))
    }

    fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
        self.log.info(format_args!(
            "[send_data_test] {} {}: {}",
            req.method.as_str(),
            self.http.shown_path(req.path),
            String::from_utf8_lossy(req.body)
        ));
        let body = if req.method == Method::Post && req.body.first() == Some(&b'[') {
            format!(
                "{{\"sent_events\":{},\"failed_events\":[],\"retry_events\":[]}}",
                String::from_utf8_lossy(req.body)
            )
        } else {
            "{}".to_string()
        };
        Ok(Response::new(200, body))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Canopsis answer, for tests.
    pub(crate) fn resp(status: u16, body: &str) -> Response {
        Response::new(status, body.into())
    }

    #[test]
    fn snippets_are_cut_on_characters_and_stay_on_one_line() {
        let r = resp(400, &format!("  {}  ", "é".repeat(400)));
        assert_eq!(r.snippet().chars().count(), 301);
        let r = resp(502, "<html>\r\n<h1>Bad\tGateway</h1>\n\u{1b}[0m</html>\n");
        assert_eq!(
            r.snippet(),
            "<html>\\r\\n<h1>Bad Gateway</h1>\\n\\u{1b}[0m</html>"
        );
    }

    use crate::config::{self, tests::minimal, ParamValue};

    #[test]
    fn curl_line_hides_secrets_and_quotes_the_body() {
        let mut p = minimal();
        p.insert("proxy_address".into(), ParamValue::Str("proxy.lan".into()));
        p.insert("proxy_port".into(), ParamValue::Int(3128));
        p.insert("proxy_username".into(), ParamValue::Str("bob".into()));
        p.insert("proxy_password".into(), ParamValue::Str("s3cr3t".into()));
        p.insert("verify_certificate".into(), ParamValue::Int(0));
        let cfg = config::parse(&p).unwrap().config.http;
        let line = curl_command(
            &cfg,
            Request {
                method: Method::Post,
                path: "/api/v4/event",
                body: br#"[{"output":"it's"}]"#,
            },
        );
        assert!(!line.contains("k3y") && !line.contains("s3cr3t"), "{line}");
        assert_eq!(
            line,
            r#"curl -sS -X POST --max-time 60 -k -x http://proxy.lan:3128 -U 'bob:***' -H 'x-canopsis-authkey: ***' -H 'content-type: application/json' --data-binary '[{"output":"it'\''s"}]' 'https://canopsis.example:443/api/v4/event'"#
        );
    }

    #[test]
    fn userinfo_is_percent_encoded() {
        assert_eq!(userinfo_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }

    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A peer on 127.0.0.1 that reads one request head and hands it over
    /// (lines, as sent), answering `answer` if any, else holding the
    /// connection open without a word until the client goes.
    fn peer(answer: Option<&'static str>) -> (u16, crossbeam_channel::Receiver<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let _ = tx.send(head);
            match answer {
                Some(a) => {
                    let _ = (&stream).write_all(a.as_bytes());
                }
                None => {
                    let _ = std::io::copy(&mut r, &mut std::io::sink());
                }
            }
        });
        (port, rx)
    }

    pub(super) fn http_to(port: u16, headers: &[(&str, &str)]) -> Http {
        let mut p = minimal();
        p.insert("canopsis_host".into(), ParamValue::Str("127.0.0.1".into()));
        p.insert("canopsis_port".into(), ParamValue::Int(port.into()));
        p.insert("sending_protocol".into(), ParamValue::Str("http".into()));
        let mut cfg = config::parse(&p).unwrap().config.http;
        for (name, value) in headers {
            cfg.headers
                .push((name.to_string(), crate::secret::Secret::new(*value)));
        }
        Http::new(&cfg, 1, Logger::memory(log::LevelFilter::Error)).unwrap()
    }

    fn content_types(head: &[String]) -> Vec<String> {
        head.iter()
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, _)| name.trim().eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.trim().to_string())
            .collect()
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

    fn post(t: &mut Http) -> Result<Response, TransportError> {
        t.send(Request {
            method: Method::Post,
            path: "/api/v4/event",
            body: b"[]",
        })
    }

    #[test]
    fn a_content_type_from_http_headers_is_the_only_one_sent() {
        for (given, sent) in [
            ("Content-Type", "application/x-custom; charset=utf-8"),
            ("content-TYPE", "text/plain"),
        ] {
            let (port, heads) = peer(Some(OK));
            let mut t = http_to(port, &[(given, sent)]);
            assert_eq!(post(&mut t).unwrap().status, 200);
            let head = heads.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(content_types(&head), vec![sent.to_string()], "{head:?}");
            let line = curl_command(
                &t.cfg,
                Request {
                    method: Method::Post,
                    path: "/",
                    body: b"[]",
                },
            );
            assert_eq!(line.to_ascii_lowercase().matches("content-type").count(), 1);
        }
        let (port, heads) = peer(Some(OK));
        post(&mut http_to(port, &[])).unwrap();
        let head = heads.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(content_types(&head), vec!["application/json".to_string()]);
    }

    #[test]
    fn a_peer_that_takes_the_request_and_never_answers_is_named_so_when_cut() {
        let (port, heads) = peer(None);
        let mut t = http_to(port, &[]);
        let cut = t.interrupter().unwrap();
        let sending = std::thread::spawn(move || post(&mut t));
        heads.recv_timeout(Duration::from_secs(10)).unwrap();
        cut();
        let err = sending.join().unwrap().unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, TransportError::NoAnswer { .. })
                && text.starts_with(&format!("no answer from http://127.0.0.1:{port} within ")),
            "{text}"
        );
    }
}

#[cfg(test)]
mod redirect_tests {
    use super::tests::*;
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// A peer on 127.0.0.1 answering one request per connection with the
    /// next of `answers` (each with `Connection: close`), handing over each
    /// request line and body.
    fn peer(answers: Vec<String>) -> (u16, crossbeam_channel::Receiver<(String, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                r.read_line(&mut first).unwrap();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0; length];
                r.read_exact(&mut body).unwrap();
                let _ = tx.send((
                    first.trim_end().to_string(),
                    String::from_utf8(body).unwrap(),
                ));
                let _ = (&stream).write_all(answer.as_bytes());
            }
        });
        (port, rx)
    }

    fn moved(status: u16, location: &str) -> String {
        format!("HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    }

    fn ok() -> String {
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_string()
    }

    fn post(t: &mut Http, path: &str) -> Result<Response, TransportError> {
        t.send(Request {
            method: Method::Post,
            path,
            body: b"[1]",
        })
    }

    #[test]
    fn a_same_origin_307_is_followed_with_method_and_body() {
        let (port, seen) = peer(vec![moved(307, "/api/v4/event"), ok()]);
        let mut t = http_to(port, &[]);
        let r = post(&mut t, "/api/v4/event/").unwrap();
        assert_eq!((r.status, r.redirect), (200, None));
        let got: Vec<_> = seen.try_iter().collect();
        assert_eq!(
            got,
            vec![
                ("POST /api/v4/event/ HTTP/1.1".into(), "[1]".into()),
                ("POST /api/v4/event HTTP/1.1".into(), "[1]".into()),
            ]
        );
    }

    #[test]
    fn a_redirect_to_another_port_is_answered_unfollowed_and_nothing_goes_there() {
        let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
        elsewhere.set_nonblocking(true).unwrap();
        let other = elsewhere.local_addr().unwrap().port();
        let (port, _seen) = peer(vec![moved(
            307,
            &format!("http://127.0.0.1:{other}/api/v4/event?key=1"),
        )]);
        let r = post(&mut http_to(port, &[]), "/api/v4/event").unwrap();
        assert_eq!(r.status, 307);
        assert_eq!(
            r.redirect,
            Some(Unfollowed::LeavesOrigin {
                to: format!("http://127.0.0.1:{other}")
            })
        );
        assert!(
            elsewhere.accept().is_err(),
            "a connection reached the other port"
        );
    }

    #[test]
    fn a_post_moved_by_301_is_not_turned_into_a_get() {
        let (port, seen) = peer(vec![moved(301, "/api/v4/event")]);
        let r = post(&mut http_to(port, &[]), "/api/v4/event/").unwrap();
        assert!(matches!(
            r.redirect,
            Some(Unfollowed::WouldBecomeGet { .. })
        ));
        assert_eq!(seen.try_iter().count(), 1);
    }

    #[test]
    fn a_redirect_loop_stops_after_the_last_hop() {
        let answers = (0..=MAX_HOPS).map(|_| moved(308, "/a/")).collect();
        let (port, seen) = peer(answers);
        let r = post(&mut http_to(port, &[]), "/a/").unwrap();
        assert_eq!(r.status, 308);
        assert!(matches!(r.redirect, Some(Unfollowed::TooMany { .. })));
        assert_eq!(seen.try_iter().count(), MAX_HOPS + 1);
    }

    #[test]
    fn a_hop_shows_no_query_and_no_hidden_tail() {
        let mut p = crate::config::tests::minimal();
        p.insert(
            "canopsis_host".into(),
            crate::config::ParamValue::Str("h".into()),
        );
        let cfg = crate::config::parse(&p).unwrap().config.http;
        assert_eq!(shown_target(&cfg, "/api/v4/x?token=1"), "/api/v4/x?***");
        assert_eq!(shown_target(&cfg, "/api/v4/x"), "/api/v4/x");
        let mut hook = cfg.clone();
        hook.event_route = "/hooks/k3y".into();
        hook.shown_route = "/hooks/***".into();
        assert_eq!(shown_target(&hook, "/hooks/k3y/"), "/hooks/***");
        assert_eq!(shown_target(&hook, "/hooks/k3y"), "/hooks/***");
        let line = curl_line(
            &hook,
            Request {
                method: Method::Post,
                path: "/hooks/k3y/",
                body: b"{}",
            },
            true,
        );
        assert!(!line.contains("k3y"), "{line}");
    }
}
