//! Around the action service (`centreon_canopsis_native_actions`): what
//! Mattermost does when someone clicks a button, a mock of Centreon's
//! acknowledge endpoint, a FIFO standing for the engine's command file,
//! and the service itself run as a process.
//!
//! The signature is recomputed here from the encoding the README
//! documents, with its own HMAC, so the tests check the output's buttons
//! independently of the code that made them.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The service's route in the tests.
pub const ROUTE: &str = "/mattermost/acknowledge";

/// The API token the mock Centreon takes.
pub const CENTREON_TOKEN: &str = "ct0ken-7f3a9c1e5b";

/// Where Centreon's acknowledge endpoint lives under the mock.
pub const ACK_PATH: &str = "/centreon/api/latest/monitoring/resources/acknowledge";

/// The HMAC-SHA-256 the README documents: `<len>:<field>\n` for the
/// domain, host, service, host_id, service_id, state, `sticky`/`normal`
/// and expiry, in that order, as hex.
pub fn sign(secret: &str, ctx: &Value) -> String {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let sticky = if ctx["sticky"] == json!(true) {
        "sticky"
    } else {
        "normal"
    };
    let fields = [
        "centreon-canopsis-native/ack/1".to_string(),
        text(&ctx["host"]),
        text(&ctx["service"]),
        text(&ctx["host_id"]),
        text(&ctx["service_id"]),
        text(&ctx["state"]),
        sticky.to_string(),
        text(&ctx["expires"]),
    ];
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    for f in fields {
        mac.update(format!("{}:{f}\n", f.len()).as_bytes());
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A context for `host` / `service` signed with `secret` until `expires`.
pub fn context(secret: &str, service: bool, sticky: bool, expires: u64) -> Value {
    let mut ctx = json!({"host": "host-a", "host_id": 12, "state": "DOWN", "sticky": sticky, "expires": expires});
    if service {
        ctx["service"] = json!("Ping");
        ctx["service_id"] = json!(34);
        ctx["state"] = json!("CRITICAL");
    }
    ctx["sig"] = json!(sign(secret, &ctx));
    ctx
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HTTP/1.1 exchange on 127.0.0.1: status and body.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// What Mattermost POSTs to a button's integration URL when `user`
/// clicks (its `PostActionIntegrationRequest`).
pub fn action_body(user: &str, context: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "user_id": format!("{user}-id8f2k"),
        "user_name": user,
        "channel_id": "chan4x9",
        "channel_name": "noc",
        "team_id": "team7q2",
        "team_domain": "ops",
        "post_id": "post3k8z",
        "trigger_id": "",
        "type": "",
        "data_source": "",
        "context": context,
    }))
    .unwrap()
}

/// A click as Mattermost sees it: the integration's answer, and the post
/// after Mattermost applied it.
#[derive(Debug)]
pub struct Click {
    /// HTTP status of the integration's answer.
    pub status: u16,
    /// Its body.
    pub answer: Value,
    /// The post once updated (`update` in the answer), else as it was.
    pub post: Value,
    /// The ephemeral message the person sees, if any.
    pub ephemeral: Option<String>,
}

/// The buttons of a post: (name, url, context).
pub fn buttons(post: &Value) -> Vec<(String, String, Value)> {
    post["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["actions"].as_array().cloned().unwrap_or_default())
        .map(|b| {
            (
                b["name"].as_str().unwrap_or("").to_string(),
                b["integration"]["url"].as_str().unwrap_or("").to_string(),
                b["integration"]["context"].clone(),
            )
        })
        .collect()
}

/// `user` clicks the button named `name` of `post`, as Mattermost does:
/// POSTs the action body to the integration URL and applies the answer.
pub fn click(post: &Value, name: &str, user: &str) -> Click {
    let (_, url, context) = buttons(post)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no button {name} in {post}"));
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = authority.parse().expect("an address");
    let (status, body) = request(addr, "POST", path, &action_body(user, &context));
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut updated = post.clone();
    // Mattermost reads the answer of a 200 only.
    if status == 200 {
        if let Some(update) = answer.get("update").filter(|u| u.is_object()) {
            if let Some(m) = update.get("message") {
                updated["text"] = m.clone();
            }
            if let Some(a) = update["props"].get("attachments") {
                updated["attachments"] = a.clone();
            }
        }
    }
    Click {
        status,
        ephemeral: answer["ephemeral_text"]
            .as_str()
            .filter(|_| status == 200)
            .map(str::to_string),
        answer,
        post: updated,
    }
}

/// Centreon's central server, as far as acknowledgements go: its REST
/// API v2 acknowledge endpoint, checking the token (`X-AUTH-TOKEN`) and
/// the body as the API documents them.
pub struct MockCentreon {
    addr: SocketAddr,
    /// Bodies of the acknowledgements taken.
    pub acks: Arc<Mutex<Vec<Value>>>,
    /// Requests refused, with their status.
    pub refused: Arc<Mutex<Vec<u16>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A request the mock Centreon read: method, path, headers (names in
/// lower case), body.
type HttpRequest = (String, String, Vec<(String, String)>, Vec<u8>);

fn read_http(s: &mut TcpStream) -> Option<HttpRequest> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((method, path, headers, body))
}

/// What Centreon's API checks of an acknowledgement body.
fn check_ack(body: &Value) -> Result<(), String> {
    let a = body
        .get("acknowledgement")
        .and_then(Value::as_object)
        .ok_or("acknowledgement is missing")?;
    if !a.get("comment").is_some_and(Value::is_string) {
        return Err("acknowledgement.comment must be a string".into());
    }
    for key in [
        "is_notify_contacts",
        "is_persistent_comment",
        "is_sticky",
        "with_services",
    ] {
        if a.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(format!("acknowledgement.{key} must be a boolean"));
        }
    }
    let resources = body
        .get("resources")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or("resources must be a non-empty array")?;
    for r in resources {
        if !r.get("id").is_some_and(Value::is_u64) {
            return Err("resources[].id must be an integer".into());
        }
        match r["type"].as_str() {
            Some("host") => {}
            Some("service") if r["parent"]["id"].is_u64() => {}
            Some("service") => return Err("a service needs parent.id (its host)".into()),
            _ => return Err("resources[].type must be host or service".into()),
        }
    }
    Ok(())
}

impl MockCentreon {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub fn start() -> MockCentreon {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let acks = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a2, r2, s2) = (acks.clone(), refused.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let Some((method, path, headers, body)) = read_http(&mut s) else {
                    continue;
                };
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.as_str())
                };
                let (status, answer) = if path != ACK_PATH {
                    (404, json!({"code": 404, "message": "Route not found"}))
                } else if method != "POST" {
                    (405, json!({"code": 405, "message": "Method not allowed"}))
                } else if header("x-auth-token") != Some(CENTREON_TOKEN) {
                    (401, json!({"code": 401, "message": "Invalid credentials"}))
                } else {
                    match serde_json::from_slice::<Value>(&body)
                        .map_err(|e| e.to_string())
                        .and_then(|b| check_ack(&b).map(|_| b))
                    {
                        Ok(b) => {
                            a2.lock().unwrap().push(b);
                            (204, Value::Null)
                        }
                        Err(why) => (400, json!({"code": 400, "message": why})),
                    }
                };
                if status != 204 {
                    r2.lock().unwrap().push(status);
                }
                let body = if answer.is_null() {
                    String::new()
                } else {
                    answer.to_string()
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        MockCentreon {
            addr,
            acks,
            refused,
            stop,
            thread: Some(thread),
        }
    }

    /// The base URL the service is configured with (up to `/centreon`).
    pub fn url(&self) -> String {
        format!("http://{}/centreon", self.addr)
    }

    /// Acknowledgements taken so far.
    pub fn taken(&self) -> Vec<Value> {
        self.acks.lock().unwrap().clone()
    }
}

impl Drop for MockCentreon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A FIFO standing for the engine's command file, and a reader keeping
/// the lines written to it.
pub struct CommandFifo {
    /// The FIFO's path.
    pub path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

/// The line that stops the reader.
const STOP: &str = "__harness_stop__";

impl CommandFifo {
    /// Makes the FIFO in `dir`, without reader yet.
    pub fn create(dir: &Path) -> CommandFifo {
        let path = dir.join("centengine.cmd");
        let _ = std::fs::remove_file(&path);
        let ok = Command::new("mkfifo")
            .arg("-m")
            .arg("0660")
            .arg(&path)
            .status()
            .expect("mkfifo");
        assert!(ok.success(), "mkfifo {}", path.display());
        CommandFifo {
            path,
            lines: Arc::default(),
            thread: None,
        }
    }

    /// Starts reading it, as the engine does.
    pub fn read(&mut self) {
        // Read and write: the open does not wait for a writer, and the
        // reader never sees end-of-file between writers.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .expect("open the FIFO");
        let lines = self.lines.clone();
        self.thread = Some(std::thread::spawn(move || {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                if line == STOP {
                    break;
                }
                lines.lock().unwrap().push(line);
            }
        }));
    }

    /// The lines read so far, after waiting up to `wait` for `n` of them.
    pub fn lines(&self, n: usize, wait: Duration) -> Vec<String> {
        let start = Instant::now();
        while self.lines.lock().unwrap().len() < n && start.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for CommandFifo {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
                let _ = writeln!(f, "{STOP}");
            }
            let _ = t.join();
        }
    }
}

/// The service binary `tests/build-modules.sh` builds beside the modules:
/// `$CANOPSIS_NATIVE_ACTIONS`, else from the Lua 5.3 or 5.4 build.
pub fn service_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CANOPSIS_NATIVE_ACTIONS") {
        return PathBuf::from(p);
    }
    let root = crate::repo_root();
    ["target/build-lua53", "target/build-lua54"]
        .iter()
        .map(|d| {
            root.join(d)
                .join("release/centreon_canopsis_native_actions")
        })
        .find(|p| p.exists())
        .expect("centreon_canopsis_native_actions is missing: build it with tests/build-modules.sh")
}

/// The action service running as a process on 127.0.0.1.
pub struct ActionService {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stderr (its log).
    pub log_path: PathBuf,
}

impl ActionService {
    /// Runs `binary` with a config file in `dir` made of `config` lines
    /// (`listen` is added: an ephemeral port of 127.0.0.1).
    pub fn start_with(binary: &Path, dir: &Path, config: &str) -> ActionService {
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("actions.conf");
        std::fs::write(
            &conf,
            format!("listen = 127.0.0.1:0\nroute = {ROUTE}\n{config}"),
        )
        .unwrap();
        // As installed: it holds secrets.
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
        let log_path = dir.join("actions.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the action service");
        let mut service = ActionService {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log_path,
        };
        let start = Instant::now();
        loop {
            let log = service.log();
            if let Some(rest) = log.split("listening on http://").nth(1) {
                let addr = rest.split('/').next().unwrap_or("");
                service.addr = addr.parse().expect("the address it logs");
                return service;
            }
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("the action service stopped ({status}): {log}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the action service did not start: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the service built from this checkout.
    pub fn start(dir: &Path, config: &str) -> ActionService {
        ActionService::start_with(&service_path(), dir, config)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Its action URL.
    pub fn url(&self) -> String {
        format!("http://{}{ROUTE}", self.addr)
    }
}

impl Drop for ActionService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
