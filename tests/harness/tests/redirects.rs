//! Redirects, end to end: one that stays on the configured scheme, host and
//! port (gin's trailing-slash redirect, `canopsis-api.md` §1.1) is
//! followed and the events delivered; one that leaves it is refused, and
//! nothing — no connection, so no key — reaches where it points.

use canopsis_harness::broker::{Muxer, Param};
use canopsis_harness::events::{Bbdo, Downtime, Status};
use canopsis_harness::receivers::HOOK_ID;
use canopsis_harness::{deliver, run_for, text, Lab};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T: i64 = 1_763_000_000;

/// A listener on another loopback port that counts the connections it
/// gets (and reads nothing from them).
struct Elsewhere {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Elsewhere {
    fn start() -> Elsewhere {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                seen.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Elsewhere { port, connections }
    }

    fn reached(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn statuses(n: i64) -> Vec<canopsis_harness::events::Event> {
    (0..n)
        .map(|i| Status::service(12, 34, i % 3, T + i).event(Bbdo::V3))
        .collect()
}

#[test]
fn canopsis_routes_redirected_by_a_trailing_slash_are_followed_and_delivered() {
    let lab = Lab::new("redirect-slash");
    let params = lab.params(&[
        ("canopsis_event_route", text("/api/v4/event/")),
        (
            "canopsis_downtime_reason_route",
            text("/api/v4/pbehavior-reasons/"),
        ),
    ]);
    let mut out = lab.open(params, Bbdo::V3);
    let mut events = statuses(6);
    events.push(Downtime::started(7, 12, 34, T, T + 3600).event(Bbdo::V3));
    let mux = deliver(&mut out, events);
    assert_eq!(mux.acked, 7);
    drop(out);
    let key = lab.mock.authkey();
    let st = lab.mock.state();
    assert_eq!(st.events.len(), 6, "events not delivered");
    assert_eq!(st.pbehaviors.len(), 1, "downtime not delivered");
    let redirected: Vec<_> = st
        .requests
        .iter()
        .filter(|r| r.path.ends_with('/'))
        .map(|r| (r.method.as_str(), r.path.as_str(), r.status))
        .collect();
    assert!(redirected.contains(&("POST", "/api/v4/event/", 307)));
    assert!(redirected.contains(&("GET", "/api/v4/pbehavior-reasons/", 301)));
    assert!(redirected.contains(&("POST", "/api/v4/pbehavior-reasons/", 307)));
    assert!(st
        .requests
        .iter()
        .any(|r| r.method == "POST" && r.path == "/api/v4/pbehavior-reasons" && r.status < 300));
    drop(st);
    let log = lab.log();
    assert!(
        log.contains("HTTP 307 redirect of POST /api/v4/event/ to POST /api/v4/event on the same host and port: followed"),
        "{log}"
    );
    assert_eq!(
        log.matches("followed (configure").count(),
        1,
        "one warning: {log}"
    );
    assert!(!log.contains(&key), "key in the log");
}

#[test]
fn a_redirect_to_another_port_is_refused_and_the_key_never_reaches_it() {
    let lab = Lab::new("redirect-away");
    let elsewhere = Elsewhere::start();
    lab.mock.state().redirects.push((
        "/api/v4/event".into(),
        307,
        format!("http://127.0.0.1:{}/api/v4/event?token=abc", elsewhere.port),
    ));
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    let mut mux = Muxer::new();
    for e in statuses(5) {
        mux.push(e);
    }
    run_for(&mut out, &mut mux, Duration::from_millis(1500));
    assert_eq!(mux.acked, 0, "acknowledged what Canopsis never took");
    out.close();
    assert_eq!(elsewhere.reached(), 0, "the redirect was followed");
    assert!(lab.mock.state().events.is_empty());
    let log = lab.log();
    assert!(
        log.contains(&format!(
            "HTTP 307 redirect to http://127.0.0.1:{} (not followed",
            elsewhere.port
        )),
        "{log}"
    );
    assert!(!log.contains("token=abc"), "only the origin is logged");
    assert!(!log.contains(&lab.mock.authkey()), "key in the log");
}

#[test]
fn a_json_receiver_behind_a_same_origin_redirect_gets_its_documents() {
    let lab = Lab::webhook("redirect-json");
    lab.mock
        .state()
        .redirects
        .push(("/logstash/".into(), 308, "/logstash".into()));
    let url = format!("http://127.0.0.1:{}/logstash/", lab.mock.port());
    let params = lab.webhook_params("json", &[("http_server_url", Param::Str(url))]);
    let mut out = lab.open(params, Bbdo::V3);
    let mux = deliver(&mut out, statuses(4));
    assert_eq!(mux.acked, 4);
    drop(out);
    assert_eq!(lab.mock.state().receivers.documents.len(), 4);
}

#[test]
fn mattermost_follows_a_redirect_home_and_refuses_one_away_without_showing_its_key() {
    // Home: the hook's path with a trailing slash.
    let lab = Lab::webhook("redirect-mattermost");
    let hook = format!("/hooks/{HOOK_ID}");
    lab.mock
        .state()
        .redirects
        .push((format!("{hook}/"), 307, hook.clone()));
    let url = format!("http://127.0.0.1:{}{hook}/", lab.mock.port());
    let params = lab.webhook_params("mattermost", &[("http_server_url", Param::Str(url))]);
    let mut out = lab.open(params, Bbdo::V3);
    let mux = deliver(&mut out, statuses(2));
    assert_eq!(mux.acked, 2);
    drop(out);
    assert_eq!(lab.mock.state().receivers.posts.len(), 2);
    let log = lab.log();
    assert!(log.contains("followed"), "{log}");
    assert!(!log.contains(HOOK_ID), "hook key in the log: {log}");

    // Away: another port.
    let lab = Lab::webhook("redirect-mattermost-away");
    let elsewhere = Elsewhere::start();
    lab.mock.state().redirects.push((
        hook.clone(),
        307,
        format!("http://127.0.0.1:{}{hook}", elsewhere.port),
    ));
    let mut out = lab.open(lab.webhook_params("mattermost", &[]), Bbdo::V3);
    let mut mux = Muxer::new();
    for e in statuses(2) {
        mux.push(e);
    }
    run_for(&mut out, &mut mux, Duration::from_millis(1500));
    assert_eq!(mux.acked, 0);
    out.close();
    assert_eq!(elsewhere.reached(), 0, "the redirect was followed");
    let log = lab.log();
    assert!(
        log.contains(&format!(
            "HTTP 307 redirect to http://127.0.0.1:{} (not followed",
            elsewhere.port
        )),
        "{log}"
    );
    assert!(!log.contains(HOOK_ID), "hook key in the log: {log}");
}
