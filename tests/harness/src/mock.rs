//! A mock Canopsis API v4 on 127.0.0.1 that accepts and rejects requests the
//! way the real server does (`shared/docs/canopsis-api.md` §11), records
//! what it received, and can be taken down or told to misbehave. The same
//! server plays a Mattermost incoming webhook and a Logstash `http` input
//! ([`crate::receivers`]), so they misbehave the same ways.
//!
//! Hand-written over `std::net` so "down" really means dropped connections
//! (also the keep-alive ones a client holds), not a polite error answer.

use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// An API user.
#[derive(Debug, Clone)]
pub struct User {
    /// Its `authkey`.
    pub authkey: String,
    /// Its name (default `author`).
    pub name: String,
    /// Its id.
    pub id: String,
    /// Whether its role grants the routes (false: 403 everywhere).
    pub allowed: bool,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Body.
    pub body: String,
    /// Status answered.
    pub status: u16,
    /// Body answered (empty for answers that are not Canopsis's).
    pub answer: String,
    /// Value of `x-canopsis-authkey`, if any.
    pub authkey: Option<String>,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// An answer that does not come from Canopsis.
#[derive(Debug, Clone)]
pub struct Foreign {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Content-Type` included if wanted).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

/// Everything the mock knows; tests read and change it through
/// [`MockCanopsis::state`].
#[derive(Debug)]
pub struct State {
    /// `version` of `/api/v4/app-info` (decides whether pbehaviors need `color`).
    pub version: String,
    /// API users.
    pub users: Vec<User>,
    /// When true, connections are cut without an answer.
    pub down: bool,
    /// Answers forced on the next requests, before any check.
    pub forced: VecDeque<(u16, String)>,
    /// Answers forced on the next requests as something other than
    /// Canopsis would send them: any status, headers and body (a proxy's
    /// HTML page, a redirect).
    pub foreign: VecDeque<Foreign>,
    /// Paths answered with a redirect before anything else, as a moved
    /// server or a front proxy does: `(path, status, Location)`. Besides
    /// these, every `/api/v4/...` path ending in `/` is redirected to the
    /// path without it, as gin's `RedirectTrailingSlash` does
    /// (`canopsis-api.md` §1.1: 307, or 301 for a GET).
    pub redirects: Vec<(String, u16, String)>,
    /// When true, requests are read and never answered (a backend that
    /// hangs behind a proxy that keeps the connection open).
    pub hang: bool,
    /// How long each request waits before it is handled (a Canopsis
    /// behind a network).
    pub latency: Duration,
    /// Up to this much more, drawn for each request.
    pub jitter: Duration,
    /// The share of requests (0 to 1) answered 500 before anything is
    /// done with them (a backend blip).
    pub fail_rate: f64,
    seed: u64,
    /// `Retry-After` seconds sent with 429 and 503 answers.
    pub retry_after: Option<u64>,
    /// Events to put in `failed_events` (simulated AMQP/Mongo failures).
    pub fail_next_events: usize,
    /// Until then, the first event of every request carrying several is
    /// put in `failed_events` (a Mongo or AMQP error on it) while the
    /// others are taken, as Canopsis judges each event alone.
    pub fail_first_of_many_until: Option<std::time::Instant>,
    /// Events taken, per event request (`record` only), as the API mutated
    /// them: what each request did to Canopsis's state.
    pub taken_per_request: Vec<Vec<Value>>,
    /// Event POSTs whose body contains this text get a 400, as a body
    /// Canopsis cannot decode does.
    pub refuse_containing: Option<String>,
    /// Requests whose body contains this text are answered 500 (a backend
    /// failing for some events only).
    pub fail_containing: Option<String>,
    /// When false, only counts are kept (benchmarks with millions of events).
    pub record: bool,
    /// Events published so far, recorded or not.
    pub published: u64,
    /// TCP connections accepted so far.
    pub connections: u64,
    /// Requests being handled now, and the most there ever were at once.
    pub in_flight: usize,
    pub most_in_flight: usize,
    /// Benchmarks only: answer event POSTs by echoing the array as
    /// `sent_events` without validating it, so the figures measure the
    /// connector rather than this mock's JSON handling.
    pub echo_only: bool,
    /// Every request, in order.
    pub requests: Vec<Recorded>,
    /// Events published (as mutated by the API), in order.
    pub events: Vec<Value>,
    /// Pbehavior reasons.
    pub reasons: Vec<Value>,
    /// Pbehavior types.
    pub types: Vec<Value>,
    /// Pbehaviors by `_id`.
    pub pbehaviors: Vec<Value>,
    /// Pbehavior comments.
    pub comments: Vec<Value>,
    /// Routes this Canopsis does not have (answered 404, as unknown
    /// routes are): an older Canopsis.
    pub missing_routes: Vec<String>,
    /// Webhook receivers served beside Canopsis (see [`crate::receivers`]).
    pub receivers: crate::receivers::Receivers,
    /// Each pbehavior's `_id` and name, in the list's order (see
    /// `pbh::position`).
    pub(crate) pbh_keys: Vec<(String, String)>,
    next_id: u64,
}

impl State {
    pub(crate) fn new() -> State {
        let types = [
            ("Default inactive", "inactive", "#979797"),
            ("Default active", "active", "#2FAB63"),
            ("Default maintenance", "maintenance", "#BF360C"),
            ("Default pause", "pause", "#5A6D80"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (name, kind, color))| {
            json!({"_id": format!("a1b2c3d4-0000-4000-8000-00000000000{i}"), "name": name,
                   "description": name, "type": kind, "priority": i + 1, "icon_name": "", "color": color})
        })
        .collect();
        State {
            version: "24.04.2".into(),
            users: vec![User {
                authkey: "4dmin-k3y-5ecret".into(),
                name: "centreon".into(),
                id: "u-0001".into(),
                allowed: true,
            }],
            down: false,
            forced: VecDeque::new(),
            foreign: VecDeque::new(),
            redirects: Vec::new(),
            hang: false,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            fail_rate: 0.0,
            seed: 0x2545_f491_4f6c_dd1d,
            retry_after: None,
            fail_next_events: 0,
            fail_first_of_many_until: None,
            taken_per_request: Vec::new(),
            refuse_containing: None,
            fail_containing: None,
            record: true,
            published: 0,
            connections: 0,
            in_flight: 0,
            most_in_flight: 0,
            echo_only: false,
            requests: Vec::new(),
            events: Vec::new(),
            reasons: vec![json!({"_id": "r-default", "name": "Default", "description": "Default"})],
            types,
            pbehaviors: Vec::new(),
            comments: Vec::new(),
            missing_routes: Vec::new(),
            receivers: crate::receivers::Receivers::default(),
            pbh_keys: Vec::new(),
            next_id: 1,
        }
    }

    /// A number in `[0, 1)`, from the mock's own generator (repeatable).
    pub(crate) fn random(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:04}", self.next_id)
    }

    /// Bodies of the POSTs to the event route, as the connector sent them.
    pub fn event_posts(&self) -> Vec<Value> {
        self.requests
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/api/v4/event" && r.status == 200)
            .filter_map(|r| serde_json::from_str(&r.body).ok())
            .collect()
    }
}

/// A running mock.
pub struct MockCanopsis {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MockCanopsis {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub fn start() -> MockCanopsis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("mock-accept".into())
            .spawn(move || accept_loop(listener, s2, st2))
            .expect("mock thread");
        MockCanopsis {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The first user's key.
    pub fn authkey(&self) -> String {
        self.state().users[0].authkey.clone()
    }

    /// Locks the state.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts every connection (current and new) until [`MockCanopsis::up`].
    pub fn down(&self) {
        self.state().down = true;
    }

    /// Answers again.
    pub fn up(&self) {
        self.state().down = false;
    }
}

impl Drop for MockCanopsis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Ok(mut st) = state.lock() {
                    st.connections += 1;
                }
                let (s, st) = (state.clone(), stop.clone());
                let _ = std::thread::Builder::new()
                    .name("mock-canopsis".into())
                    .spawn(move || serve(stream, s, st));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

pub(crate) struct Req {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    /// The first value of each header, as Go's `Header.Get` and Netty's
    /// `headers().get()` read them.
    pub(crate) headers: HashMap<String, String>,
    /// Every `Content-Type` value, in order (one is expected).
    pub(crate) content_types: Vec<String>,
    pub(crate) body: Vec<u8>,
}

fn is_down(state: &Arc<Mutex<State>>) -> bool {
    state.lock().map(|s| s.down).unwrap_or(true)
}

fn read_request(
    r: &mut BufReader<TcpStream>,
    state: &Arc<Mutex<State>>,
    stop: &AtomicBool,
) -> Option<Req> {
    let mut line = String::new();
    loop {
        match r.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) || is_down(state) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    let mut content_types = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let name = k.trim().to_ascii_lowercase();
        if name == "content-type" {
            content_types.push(v.trim().to_string());
        }
        headers.entry(name).or_insert_with(|| v.trim().to_string());
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body = vec![0; n];
        r.read_exact(&mut body).ok()?;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(Req {
        method,
        path,
        query,
        headers,
        content_types,
        body,
    })
}

fn serve(stream: TcpStream, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        if is_down(&state) {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        let Some(req) = read_request(&mut reader, &state, &stop) else {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        };
        if is_down(&state) {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        let (hang, foreign) = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            let foreign = if st.hang {
                None
            } else {
                st.foreign.pop_front().or_else(|| redirect(&st, &req))
            };
            if st.hang || foreign.is_some() {
                st.requests.push(Recorded {
                    method: req.method.clone(),
                    path: req.path.clone(),
                    query: req.query.clone(),
                    body: String::from_utf8_lossy(&req.body).into_owned(),
                    status: foreign.as_ref().map_or(0, |f| f.status),
                    answer: String::new(),
                    authkey: req.headers.get("x-canopsis-authkey").cloned(),
                    at: std::time::Instant::now(),
                });
            }
            (st.hang, foreign)
        };
        if hang {
            // Hold the connection open, answer nothing.
            while state.lock().map(|s| s.hang).unwrap_or(false) && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        let latency = state
            .lock()
            .map(|mut s| {
                s.in_flight += 1;
                s.most_in_flight = s.most_in_flight.max(s.in_flight);
                let extra = s.jitter.mul_f64(s.random());
                s.latency + extra
            })
            .unwrap_or_default();
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        if let Some(f) = foreign {
            if let Ok(mut st) = state.lock() {
                st.in_flight = st.in_flight.saturating_sub(1);
            }
            let mut head = format!("HTTP/1.1 {} Status\r\n", f.status);
            for (k, v) in &f.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str(&format!("Content-Length: {}\r\n\r\n", f.body.len()));
            let mut answer = head.into_bytes();
            answer.extend_from_slice(f.body.as_bytes());
            if writer.write_all(&answer).is_err() {
                return;
            }
            continue;
        }
        let (status, body, retry_after) = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.in_flight = st.in_flight.saturating_sub(1);
            let (status, body) = route(&mut st, &req);
            let keep = st.record;
            if keep {
                st.requests.push(Recorded {
                    method: req.method.clone(),
                    path: req.path.clone(),
                    query: req.query.clone(),
                    body: String::from_utf8_lossy(&req.body).into_owned(),
                    status,
                    answer: body.clone(),
                    authkey: req.headers.get("x-canopsis-authkey").cloned(),
                    at: std::time::Instant::now(),
                });
            }
            let retry_after = match status {
                429 if req.path.starts_with(crate::receivers::HOOKS) => Some(1),
                429 if req.path.starts_with(crate::mattermost_api::POSTS) => Some(1),
                429 | 503 => st.retry_after,
                _ => None,
            };
            (status, body, retry_after)
        };
        let reason = match status {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let body = if status == 204 { String::new() } else { body };
        let retry_after = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{retry_after}Content-Length: {}\r\n\r\n",
            body.len()
        );
        // One write: a head and a body in two segments would meet the
        // client's delayed ACK (Nagle), 40 ms per exchange.
        let mut answer = head.into_bytes();
        answer.extend_from_slice(body.as_bytes());
        if writer.write_all(&answer).is_err() {
            return;
        }
        if req
            .headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// The redirect `req` gets, if any (see [`State::redirects`]).
fn redirect(st: &State, req: &Req) -> Option<Foreign> {
    let query = if req.query.is_empty() {
        String::new()
    } else {
        format!("?{}", req.query)
    };
    let (status, location) = match st.redirects.iter().find(|(p, _, _)| *p == req.path) {
        Some((_, status, location)) => (*status, location.clone()),
        None if req.path.starts_with("/api/v4/") && req.path.ends_with('/') => {
            let status = if req.method == "GET" { 301 } else { 307 };
            (status, format!("{}{query}", req.path.trim_end_matches('/')))
        }
        None => return None,
    };
    Some(Foreign {
        status,
        headers: vec![("Location".into(), location)],
        body: String::new(),
    })
}

/// An error answer `{"error": msg}`.
pub(crate) fn error(status: u16, msg: &str) -> (u16, String) {
    (status, json!({ "error": msg }).to_string())
}

/// A decoded query parameter.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| crate::pbh::decode(v))
    })
}

/// Authentication: `?authkey=` first, then the header (§1.2).
fn authenticate(st: &State, req: &Req) -> Result<Option<User>, (u16, String)> {
    let key = query_param(&req.query, "authkey")
        .or_else(|| req.headers.get("x-canopsis-authkey").cloned());
    match key {
        None => Ok(None),
        Some(k) => match st.users.iter().find(|u| u.authkey == k) {
            Some(u) => Ok(Some(u.clone())),
            None => Err(error(401, "Unauthorized")),
        },
    }
}

fn route(st: &mut State, req: &Req) -> (u16, String) {
    if let Some(forced) = st.forced.pop_front() {
        return forced;
    }
    if st.fail_rate > 0.0 && st.random() < st.fail_rate {
        return error(500, "Internal server error");
    }
    if let Some(marker) = &st.fail_containing {
        if String::from_utf8_lossy(&req.body).contains(marker.as_str()) {
            return error(500, "Internal server error");
        }
    }
    if let Some(answer) = crate::receivers::route(st, req) {
        return answer;
    }
    let user = match authenticate(st, req) {
        Ok(u) => u,
        Err(e) => return e,
    };
    let m = req.method.as_str();
    let path = req.path.as_str();
    if path == "/api/v4/app-info" {
        return match m {
            "GET" => (
                200,
                json!({"version": st.version, "edition": "community", "stack": "go"}).to_string(),
            ),
            _ => error(405, "Method Not Allowed"),
        };
    }
    let known = matches!(
        path,
        "/api/v4/event"
            | "/api/v4/pbehaviors"
            | "/api/v4/pbehavior-reasons"
            | "/api/v4/pbehavior-types"
            | "/api/v4/pbehavior-comments"
            | "/api/v4/bulk/pbehaviors"
            | crate::pbh::CONNECTOR_ROUTE
    ) || path.starts_with("/api/v4/pbehaviors/");
    if !known || !crate::pbh::serves(st, path) {
        return error(404, "Not found");
    }
    let Some(user) = user else {
        return error(401, "Unauthorized");
    };
    if !user.allowed {
        return error(403, "Forbidden");
    }
    match (m, path) {
        ("POST", "/api/v4/event") => post_events(st, &user, &req.body),
        (_, "/api/v4/event") => error(405, "Method Not Allowed"),
        _ => crate::pbh::route(st, req.method.as_str(), path, &req.query, &req.body),
    }
}

/// Elements of a JSON array of objects, counted with a scan: the echo mode
/// must cost less than the connector it measures (a full parse took a
/// fifth of the machine's CPU).
fn array_len(json: &[u8]) -> u64 {
    let (mut depth, mut in_str, mut escaped, mut n) = (0u32, false, false, 0);
    for &b in json {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth == 2 {
                    n += 1;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    n
}

/// `POST /api/v4/event`, §2.
fn post_events(st: &mut State, user: &User, body: &[u8]) -> (u16, String) {
    if let Some(marker) = &st.refuse_containing {
        if String::from_utf8_lossy(body).contains(marker.as_str()) {
            return error(400, "request has invalid structure");
        }
    }
    if st.echo_only {
        let Ok(text) = std::str::from_utf8(body) else {
            return error(400, "cannot parse JSON: invalid UTF-8");
        };
        st.published += array_len(text.as_bytes());
        return (
            200,
            format!("{{\"sent_events\":{text},\"failed_events\":[],\"retry_events\":[]}}"),
        );
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        return error(400, "cannot parse JSON: cannot parse empty string");
    }
    let parsed: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("cannot parse JSON: {e}")),
    };
    let items = match parsed {
        Value::Array(a) => a,
        Value::Object(o) => vec![Value::Object(o)],
        _ => return error(400, "the body should be an object or an array"),
    };
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    let fail_first = items.len() > 1
        && st
            .fail_first_of_many_until
            .is_some_and(|t| std::time::Instant::now() < t);
    for (i, item) in items.into_iter().enumerate() {
        match process_event(st, user, item) {
            Ok(ev) | Err(ev) if fail_first && i == 0 => failed.push(ev),
            Ok(ev) => {
                st.published += 1;
                if st.record {
                    st.events.push(ev.clone());
                }
                sent.push(ev);
            }
            Err(ev) => failed.push(ev),
        }
    }
    if st.record {
        st.taken_per_request.push(sent.clone());
    }
    (
        200,
        json!({"sent_events": sent, "failed_events": failed, "retry_events": []}).to_string(),
    )
}

/// The per-event pipeline of §2.2; `Err` carries the event as mutated so far.
fn process_event(st: &mut State, user: &User, item: Value) -> Result<Value, Value> {
    let Value::Object(mut ev) = item else {
        return Err(item);
    };
    let fail = |ev: Map<String, Value>| Err(Value::Object(ev));
    let Some(Value::String(event_type)) = ev.get("event_type").cloned() else {
        return fail(ev);
    };
    if ["check", "changestate", "metaalarm", "junittestsuiteupdated"].contains(&event_type.as_str())
    {
        let state = match ev.get("state") {
            Some(Value::Number(n)) => Some(Value::Number(n.clone())),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok().map(Value::from),
            _ => None,
        };
        match state {
            Some(s) => {
                ev.insert("state".into(), s);
            }
            None => return fail(ev),
        }
    }
    if [
        "ack",
        "ackremove",
        "cancel",
        "comment",
        "uncancel",
        "assocticket",
        "changestate",
        "snooze",
    ]
    .contains(&event_type.as_str())
    {
        ev.insert("role".into(), json!("admin"));
    }
    if ev.get("long_output").is_some_and(|v| !v.is_string()) {
        ev.insert("long_output".into(), json!(""));
    }
    for (field, default) in [("author", user.name.clone()), ("user_id", user.id.clone())] {
        match ev.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            None | Some(Value::String(_)) => {
                ev.insert(field.into(), json!(default));
            }
            Some(_) => return fail(ev),
        }
    }
    if !matches!(ev.get("ref_rk"), Some(Value::String(_))) {
        for field in ["connector", "connector_name"] {
            if !matches!(ev.get(field), Some(Value::String(s)) if !s.is_empty()) {
                return fail(ev);
            }
        }
        let text = |ev: &Map<String, Value>, f: &str| -> Result<String, ()> {
            match ev.get(f) {
                None => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(()),
            }
        };
        let (Ok(component), Ok(resource)) = (text(&ev, "component"), text(&ev, "resource")) else {
            return fail(ev);
        };
        if ev.get("source_type").is_some_and(|v| !v.is_string()) {
            return fail(ev);
        }
        let source_type = match (component.is_empty(), resource.is_empty()) {
            (false, true) => "component",
            (false, false) => "resource",
            (true, _) => "connector",
        };
        if source_type == "connector" && event_type == "check" {
            return fail(ev);
        }
        ev.insert("source_type".into(), json!(source_type));
    }
    if st.fail_next_events > 0 {
        st.fail_next_events -= 1;
        return fail(ev);
    }
    Ok(Value::Object(ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        State::new().users[0].clone()
    }

    #[test]
    fn echo_counts_what_a_parser_counts() {
        for body in [
            r#"[]"#,
            r#"[{"a":1}]"#,
            r#"[{"a":"}{][\"x"},{"b":[{"c":{}}]},{"d":"\\"}]"#,
        ] {
            let parsed: Vec<Value> = serde_json::from_str(body).unwrap();
            assert_eq!(array_len(body.as_bytes()), parsed.len() as u64, "{body}");
        }
    }

    #[test]
    fn event_pipeline_matches_the_api() {
        let mut st = State::new();
        let ok = process_event(&mut st, &user(), json!({"event_type":"check","connector":"c","connector_name":"n","component":"h","resource":"r","source_type":"connector","state":"2"})).unwrap();
        assert_eq!(ok["source_type"], "resource");
        assert_eq!(ok["state"], 2);
        assert_eq!(ok["author"], "centreon");
        assert!(process_event(
            &mut st,
            &user(),
            json!({"event_type":"check","connector":"c","connector_name":"n","component":"h"})
        )
        .is_err());
        assert!(process_event(&mut st, &user(), json!({"event_type":"check","connector":"","connector_name":"n","component":"h","state":0})).is_err());
        assert!(process_event(
            &mut st,
            &user(),
            json!({"event_type":"check","connector":"c","connector_name":"n","state":0})
        )
        .is_err());
        let ack = process_event(&mut st, &user(), json!({"event_type":"ack","connector":"c","connector_name":"n","component":"h","resource":"","author":"bob"})).unwrap();
        assert_eq!(
            (
                ack["role"].as_str(),
                ack["author"].as_str(),
                ack["source_type"].as_str()
            ),
            (Some("admin"), Some("bob"), Some("component"))
        );
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(crate::pbh::decode("a%2Fb+c"), "a/b c");
        assert_eq!(
            query_param("x=1&name=centreon%20dt", "name").as_deref(),
            Some("centreon dt")
        );
    }
}
