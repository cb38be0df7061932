//! The HTTP side of the service: one route, HTTP/1.1, one request per
//! connection, everything bounded.
//!
//! Requests are parsed with `httparse` (hyper's parser, already linked
//! through ureq) over `std`'s sockets rather than served by a framework,
//! because the limits are the point: each connection gets read and write
//! timeouts on its own socket, the whole request must arrive within
//! `request_timeout` (408), its head within 8 KiB (431) and its body
//! within `max_body_bytes` (413, announced by `Content-Length`, which is
//! required: 411). A few connections are read at a time, each on its own
//! thread, so one slow client cannot hold the others; beyond that, new
//! connections are answered 503 at once. Judging and acknowledging take
//! one request at a time ([`Handler`] behind a mutex): clicks are rare, and
//! the replay memory stays simple.

use super::config::Config;
use super::handler::{Handler, Incoming};
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Connections read at the same time.
const MAX_CONNECTIONS: usize = 16;

/// The service, bound and ready to run.
pub struct Service {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    handler: Mutex<Handler>,
    max_body: usize,
    timeout: Duration,
    open: AtomicUsize,
}

/// A request that could not be read, and its status.
#[derive(Debug, PartialEq)]
struct Unreadable(u16, &'static str);

/// A request as read from the socket.
struct Request {
    method: String,
    url: String,
    body: Vec<u8>,
}

/// What the client sent next, read before `deadline` (408 past it or on a
/// read error: the socket's own timeout); `midway` says what a closed
/// connection cut short (400).
fn read_some<'a>(
    s: &mut TcpStream,
    chunk: &'a mut [u8],
    deadline: Instant,
    midway: &'static str,
) -> Result<&'a [u8], Unreadable> {
    let too_slow = || Unreadable(408, "request not read in time");
    if Instant::now() > deadline {
        return Err(too_slow());
    }
    let n = s.read(chunk).map_err(|_| too_slow())?;
    if n == 0 {
        return Err(Unreadable(400, midway));
    }
    Ok(&chunk[..n])
}

fn read_request(
    s: &mut TcpStream,
    max_body: usize,
    timeout: Duration,
) -> Result<Request, Unreadable> {
    let started = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let (head_len, method, url, length) = loop {
        buf.extend_from_slice(read_some(
            s,
            &mut chunk,
            started + timeout,
            "connection closed mid-request",
        )?);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let mut length = None;
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(Unreadable(411, "chunked bodies are not taken"));
                    }
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok());
                        if length.is_none() {
                            return Err(Unreadable(400, "bad Content-Length"));
                        }
                    }
                }
                break (
                    len,
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                    length,
                );
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(Unreadable(431, "request head too large"))
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(Unreadable(400, "not an HTTP request")),
        }
    };
    let length = match length {
        Some(n) => n,
        None if method == "POST" => return Err(Unreadable(411, "Content-Length required")),
        None => 0,
    };
    if length > max_body {
        return Err(Unreadable(413, "body too large"));
    }
    let mut body = buf.split_off(head_len);
    while body.len() < length {
        body.extend_from_slice(read_some(
            s,
            &mut chunk,
            started + timeout,
            "connection closed mid-body",
        )?);
    }
    body.truncate(length);
    Ok(Request { method, url, body })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(s: &mut TcpStream, status: u16, body: &Value) {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: POST\r\n");
    }
    out.push_str("\r\n");
    let sent = s.write_all(out.as_bytes()).and_then(|_| s.write_all(&body));
    if let Err(e) = sent {
        log::warn!("the answer could not be sent: {e}");
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Shared {
    fn serve(&self, mut s: TcpStream, peer: SocketAddr) {
        let bounded = s
            .set_read_timeout(Some(self.timeout))
            .and_then(|_| s.set_write_timeout(Some(self.timeout)));
        if let Err(e) = bounded {
            log::warn!("connection from {peer} dropped: {e}");
            return;
        }
        let req = match read_request(&mut s, self.max_body, self.timeout) {
            Ok(r) => r,
            Err(Unreadable(status, why)) => {
                log::warn!("refused a request from {peer}: {why} (HTTP {status})");
                return respond(&mut s, status, &json!({ "error": why }));
            }
        };
        let answer = {
            let mut handler = self.handler.lock().unwrap_or_else(|p| p.into_inner());
            handler.handle(
                Incoming {
                    method: &req.method,
                    url: &req.url,
                    body: &req.body,
                },
                now(),
            )
        };
        log::log!(
            answer.level,
            "{} (from {peer}, HTTP {})",
            answer.log,
            answer.status
        );
        respond(&mut s, answer.status, &answer.body);
    }
}

impl Service {
    /// Binds where `cfg` says, to answer with `handler`.
    pub fn bind(cfg: &Config, handler: Handler) -> io::Result<Service> {
        Ok(Service {
            listener: TcpListener::bind(cfg.listen)?,
            shared: Arc::new(Shared {
                handler: Mutex::new(handler),
                max_body: cfg.max_body_bytes,
                timeout: cfg.request_timeout,
                open: AtomicUsize::new(0),
            }),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process ends.
    pub fn run(self) {
        loop {
            let (mut s, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    log::error!("accepting a connection failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if self.shared.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                self.shared.open.fetch_sub(1, Ordering::SeqCst);
                log::warn!("refused a connection from {peer}: {MAX_CONNECTIONS} already open");
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                respond(&mut s, 503, &json!({"error": "busy"}));
                continue;
            }
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("action-request".into())
                .spawn(move || {
                    shared.serve(s, peer);
                    shared.open.fetch_sub(1, Ordering::SeqCst);
                });
            if let Err(e) = spawned {
                self.shared.open.fetch_sub(1, Ordering::SeqCst);
                log::error!("no thread for a connection from {peer}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::acknowledge::{Ack, AckError, Acknowledger};
    use crate::actions::config;

    struct Never;
    impl Acknowledger for Never {
        fn acknowledge(&self, _: &Ack) -> Result<(), AckError> {
            Err(AckError("never".into()))
        }
    }

    fn start() -> SocketAddr {
        let cfg = config::parse(
            "listen = 127.0.0.1:0\nsecret = 0123456789abcdef0\nacknowledge_with = command_file\n\
             request_timeout = 1\nmax_body_bytes = 1024",
        )
        .unwrap();
        let h = Handler::new(
            &cfg.route,
            cfg.secret.clone(),
            crate::actions::replay::Replay::new(10),
            Box::new(Never),
            true,
            true,
        );
        let s = Service::bind(&cfg, h).unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || s.run());
        addr
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = c.write_all(request);
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    }

    #[test]
    fn big_slow_or_odd_requests_are_cut_and_the_service_goes_on() {
        let addr = start();
        let big =
            "POST /mattermost/acknowledge HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n";
        assert!(exchange(addr, big.as_bytes()).starts_with("HTTP/1.1 413"));
        // Announces 100 bytes, sends 2, then nothing: cut after the timeout.
        let slow =
            b"POST /mattermost/acknowledge HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}";
        assert!(exchange(addr, slow).starts_with("HTTP/1.1 408"));
        let chunked = b"POST /mattermost/acknowledge HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(exchange(addr, chunked).starts_with("HTTP/1.1 411"));
        let get = b"GET /mattermost/acknowledge HTTP/1.1\r\nHost: x\r\n\r\n";
        let answer = exchange(addr, get);
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
        assert!(answer.contains("Allow: POST"));
        let post = b"POST /mattermost/acknowledge HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nnot json";
        assert!(exchange(addr, post).starts_with("HTTP/1.1 400"));
    }
}
