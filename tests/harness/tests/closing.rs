//! Broker's stop with five outputs of every kind (two Canopsis, a JSON and
//! an NDJSON webhook, Mattermost), each closed with events it has not sent:
//! broker closes its outputs one after another, and cbwd kills cbd 15 s
//! after SIGTERM, so the whole close must stay well within that (under
//! 5 s here: a deadline with margin, not a speed figure), whether the peers
//! answer, refuse connections or take requests and never answer. Nothing
//! unsent is acknowledged (broker keeps it), and each output says in one
//! line what it handed back.

use canopsis_harness::broker::{Output, Param};
use canopsis_harness::events::{Bbdo, Status};
use canopsis_harness::{text, Lab};
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const T: i64 = 1_763_000_000;

/// Broker's watchdog allows 15 s for the whole stop; this much is asked of
/// the outputs, with room for broker's own work.
const WHOLE_CLOSE: Duration = Duration::from_secs(5);

/// Status changes written to each output before it closes.
const EVENTS: i64 = 30;

/// The scenarios run one at a time: each times its own close.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Copy, PartialEq)]
enum Peer {
    /// Answers at once (Mattermost at its pace: the queue is not through).
    Up,
    /// Nothing listens: connections are refused.
    Down,
    /// Takes every request and never answers.
    Hanging,
}

/// What kind of output, for what it counts as delivered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Canopsis,
    Json,
    Ndjson,
    Mattermost,
}

struct Station {
    kind: Kind,
    lab: Lab,
    /// Until it is closed.
    out: Option<Output>,
    acked: u64,
}

impl Station {
    /// Events the peer took.
    fn delivered(&self) -> usize {
        let st = self.lab.mock.state();
        match self.kind {
            Kind::Canopsis => st.events.len(),
            Kind::Json | Kind::Ndjson => st.receivers.documents.len(),
            Kind::Mattermost => st.receivers.events_posted(),
        }
    }
}

/// A port on 127.0.0.1 where nothing listens.
fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn open(kind: Kind, name: &str, peer: Peer, dead_port: u16) -> Station {
    let lab = match kind {
        Kind::Canopsis => Lab::new(name),
        _ => Lab::webhook(name),
    };
    if peer == Peer::Hanging {
        lab.mock.state().hang = true;
    }
    let port = match peer {
        Peer::Down => dead_port,
        _ => lab.mock.port(),
    };
    let params = match kind {
        Kind::Canopsis => lab.params(&[
            ("canopsis_port", Param::Num(port as i32)),
            ("max_buffer_size", Param::Num(10)),
        ]),
        Kind::Json | Kind::Ndjson => {
            let format = if kind == Kind::Json { "json" } else { "ndjson" };
            let url = format!(
                "http://127.0.0.1:{port}{}",
                canopsis_harness::receivers::LOGSTASH
            );
            lab.webhook_params(
                format,
                &[
                    ("http_server_url", text(&url)),
                    ("max_buffer_size", Param::Num(10)),
                ],
            )
        }
        Kind::Mattermost => {
            let url = format!(
                "http://127.0.0.1:{port}{}{}",
                canopsis_harness::receivers::HOOKS,
                canopsis_harness::receivers::HOOK_ID
            );
            lab.webhook_params(
                "mattermost",
                &[
                    ("http_server_url", text(&url)),
                    // One message per event at 5 a second: the queue of 30
                    // takes 6 s, far more than a close may.
                    ("max_messages_per_second", Param::Num(5)),
                    ("max_waiting_messages", Param::Num(10_000)),
                ],
            )
        }
    };
    let out = lab.open(params, Bbdo::V3);
    Station {
        kind,
        lab,
        out: Some(out),
        acked: 0,
    }
}

/// Opens the five outputs with `peer`, writes to each, closes them one
/// after another as broker does, and checks the close.
fn stop_broker(peer: Peer) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dead_port = refused_port();
    let tag = format!("{peer:?}").to_lowercase();
    let kinds = [
        Kind::Canopsis,
        Kind::Canopsis,
        Kind::Json,
        Kind::Mattermost,
        Kind::Ndjson,
    ];
    let mut stations: Vec<Station> = kinds
        .iter()
        .enumerate()
        .map(|(i, &kind)| open(kind, &format!("close-{tag}-{i}"), peer, dead_port))
        .collect();
    for s in &mut stations {
        for i in 0..EVENTS {
            let ev = Status::service(12, 34, i % 3, T + i).event(Bbdo::V3);
            s.acked += s.out.as_mut().expect("open").write(&ev);
        }
    }
    // Broker idles a moment: the outputs send what they can.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    for s in &mut stations {
        s.acked += s.out.take().expect("open").close();
    }
    let took = started.elapsed();
    eprintln!("{peer:?}: five outputs closed in {took:?}");
    assert!(
        took < WHOLE_CLOSE,
        "{peer:?}: five outputs took {took:?} to close"
    );
    for (i, s) in stations.iter().enumerate() {
        let log = s.lab.log();
        let what = format!("{peer:?} output {i} ({:?})", s.kind);
        let delivered = s.delivered() as u64;
        assert!(
            s.acked <= delivered,
            "{what}: {} acknowledged, {delivered} delivered",
            s.acked
        );
        let closes: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("connector stopped"))
            .collect();
        assert_eq!(closes.len(), 1, "{what}: one close line: {closes:?}");
        assert!(
            !log.contains("shutdown budget spent"),
            "{what}: a line per lane"
        );
        if delivered < EVENTS as u64 {
            // The first event not delivered: broker replays everything
            // from its first unacknowledged one, which may come earlier
            // (a Mattermost message posted after the last `true`).
            let from: u64 = closes[0]
                .split("events from #")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(
                (s.acked + 1..=delivered + 1).contains(&from)
                    && closes[0].contains("broker keeps them"),
                "{what}: the close line says what is handed back: {}",
                closes[0]
            );
        }
        match peer {
            Peer::Up if s.kind == Kind::Mattermost => {
                assert!(delivered < EVENTS as u64, "{what}: queue not through");
            }
            Peer::Up => assert_eq!(delivered, EVENTS as u64, "{what}"),
            Peer::Down | Peer::Hanging => {
                assert_eq!(s.acked, 0, "{what}");
            }
        }
        if peer == Peer::Hanging {
            let named = format!(
                "no answer from http://127.0.0.1:{} within",
                s.lab.mock.port()
            );
            assert!(
                log.contains(&named),
                "{what}: hanging peer not named: {log}"
            );
            assert!(!log.contains("Peer disconnected"), "{what}: {log}");
        }
    }
}

#[test]
fn five_outputs_close_within_the_watchdog_with_their_peers_up() {
    stop_broker(Peer::Up);
}

#[test]
fn five_outputs_close_within_the_watchdog_with_their_peers_refusing_connections() {
    stop_broker(Peer::Down);
}

#[test]
fn five_outputs_close_within_the_watchdog_with_their_peers_hanging() {
    stop_broker(Peer::Hanging);
}

/// With the spool, what the close hands back stays in the spool: the one
/// close line says so, and a hanging Canopsis does not hold the close.
#[test]
fn with_the_spool_what_a_hanging_peer_did_not_take_stays_in_the_spool() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new("close-spool");
    lab.mock.state().hang = true;
    let spool = lab.dir.join("spool").display().to_string();
    let params = lab.params(&[
        ("use_spool", Param::Num(1)),
        ("spool_directory", text(&spool)),
        ("max_buffer_size", Param::Num(10)),
    ]);
    let mut out = lab.open(params, Bbdo::V3);
    for i in 0..EVENTS {
        out.write(&Status::service(12, 34, i % 3, T + i).event(Bbdo::V3));
    }
    // Committed, so acknowledged: the spool keeps them.
    assert!(out.flush() > 0);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    out.close();
    let took = started.elapsed();
    assert!(took < WHOLE_CLOSE / 5, "one output took {took:?} to close");
    let log = lab.log();
    let closes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connector stopped"))
        .collect();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert!(
        closes[0].contains("events from #1 on (30)") && closes[0].contains("stay in the spool"),
        "{}",
        closes[0]
    );
    assert!(log.contains(&format!(
        "no answer from http://127.0.0.1:{} within",
        lab.mock.port()
    )));
    assert!(lab.mock.state().events.is_empty());
}
