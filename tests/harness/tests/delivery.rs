//! Delivery end to end against answers a real Canopsis and a real
//! Mattermost give: each object's last word at Canopsis is its last state
//! through partial answers, and a message refused for its content is
//! dead-lettered at once instead of holding every later alert.

use canopsis_harness::broker::{CacheData, CachedService, Muxer, Output, OutputConfig, Param};
use canopsis_harness::events::{Bbdo, Event, Status};
use canopsis_harness::{drain, run_for, Lab};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const T: i64 = 1_763_000_000;

/// The sample estate with three services on each of its two hosts.
fn two_hosts_three_services() -> (CacheData, Vec<(i64, Option<i64>)>) {
    let mut cache = CacheData::sample();
    for (host, svc, name) in [
        (12, 36, "Load"),
        (13, 40, "Ping"),
        (13, 41, "Disk /var"),
        (13, 42, "Load"),
    ] {
        cache.services.insert(
            (host, svc),
            CachedService {
                description: name.into(),
                ..CachedService::default()
            },
        );
    }
    let mut objects = vec![(12, None), (13, None)];
    for (host, svc) in [(12, 34), (12, 35), (12, 36), (13, 40), (13, 41), (13, 42)] {
        objects.push((host, Some(svc)));
    }
    (cache, objects)
}

/// `n` HARD changes of each object, interleaved as broker sends them; each
/// output says which change it is.
fn changes(objects: &[(i64, Option<i64>)], n: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for i in 0..n {
        let t = T + 60 * i;
        let up = i % 2;
        for (host, svc) in objects {
            let mut s = match svc {
                None => Status::host(*host, up, t),
                Some(svc) => Status::service(*host, *svc, 2 * up, t),
            };
            s.output = format!("change {i}");
            out.push(s.event(Bbdo::V3));
        }
    }
    out
}

fn object(e: &Value) -> String {
    format!("{}/{}", e["component"], e["resource"])
}

fn change(e: &Value) -> i64 {
    e["output"]
        .as_str()
        .and_then(|o| o.strip_prefix("change "))
        .and_then(|n| n.parse().ok())
        .expect("an output of changes()")
}

/// 400 HARD changes of 8 objects, batches of 20, and a Canopsis that fails
/// the first event of every request carrying several (a Mongo or AMQP
/// error on it) while taking the others, for a while. Canopsis judges each
/// event alone, so an object's later change may be taken before its failed
/// one: what is resent must run to the newest, so that no request leaves
/// an object older than Canopsis already had it, and each object ends in
/// its last state. (On 8f960f8 only the failed event was resent, and
/// objects were left in an older state.)
#[test]
fn through_partial_answers_each_object_ends_in_its_last_state() {
    let lab = Lab::new("partial-order");
    let (cache, objects) = two_hosts_three_services();
    lab.mock.state().fail_first_of_many_until = Some(Instant::now() + Duration::from_secs(5));
    let mut out = Output::open(
        &OutputConfig {
            script: lab.script.clone(),
            params: lab.params(&[
                ("max_buffer_size", Param::Num(20)),
                ("max_all_queues_age", Param::Num(1)),
            ]),
            bbdo: Bbdo::V3,
        },
        cache,
    )
    .expect("output opens");
    let n = 50;
    let mut mux = Muxer::new();
    for e in changes(&objects, n) {
        mux.push(e);
    }
    assert!(
        drain(&mut out, &mut mux, Duration::from_secs(60)),
        "{} events never acknowledged",
        mux.unacked()
    );
    assert_eq!(mux.acked, 400);
    out.close();
    let requests = lab.mock.state().taken_per_request.clone();
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut seen: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    let mut regressions = Vec::new();
    let mut taken = 0;
    for (r, events) in requests.iter().enumerate() {
        let mut last_here: BTreeMap<String, i64> = BTreeMap::new();
        for e in events {
            let (o, c) = (object(e), change(e));
            if let Some(prev) = last_here.insert(o.clone(), c) {
                assert!(prev < c, "request {r}: {o} change {c} after {prev}");
            }
            seen.entry(o.clone())
                .or_insert_with(|| vec![false; n as usize])[c as usize] = true;
            last.insert(o, c);
            taken += 1;
        }
        for (o, c) in last_here {
            let top = newest.entry(o.clone()).or_insert(c);
            if c < *top {
                regressions.push(format!(
                    "request {r} left {o} at change {c} after change {top}"
                ));
            }
            *top = (*top).max(c);
        }
    }
    assert!(
        regressions.is_empty(),
        "{} requests left an object older than Canopsis had it: {:?}",
        regressions.len(),
        &regressions[..regressions.len().min(5)]
    );
    assert_eq!(seen.len(), 8, "{seen:?}");
    for (o, changes) in &seen {
        assert!(changes.iter().all(|s| *s), "{o}: a change never arrived");
        assert_eq!(last[o], n - 1, "{o}: Canopsis keeps change {}", last[o]);
    }
    assert!(taken > 400, "the mock failed some events: {taken} taken");
    let log = lab.log();
    assert!(
        log.contains("goes again from the first failed event on"),
        "{log}"
    );
    assert!(!log.contains("will never take"), "{log}");
}

/// Sparse alerts to Mattermost, one at a time, and Mattermost refusing
/// host-b's messages for their content (400 with its
/// `web.incoming_webhook.text.app_error`): each is dead-lettered at once,
/// every later alert still reaches the channel, everything is
/// acknowledged, and the log names Mattermost. (On 8f960f8 a lone refused
/// message was retried for 300 s and every later alert waited behind it.)
#[test]
fn a_mattermost_refusal_in_its_own_words_does_not_hold_later_alerts() {
    let lab = Lab::webhook("mm-refused");
    lab.mock.state().refuse_containing = Some("host-b".into());
    let params = lab.webhook_params(
        "mattermost",
        &[
            ("max_messages_per_second", Param::Num(50)),
            ("max_buffer_size", Param::Num(1)),
        ],
    );
    let mut out = lab.open(params, Bbdo::V3);
    let mut mux = Muxer::new();
    let alerts = 12;
    for i in 0..alerts {
        let host = if i % 2 == 0 { 12 } else { 13 };
        let state = (i / 2) % 2;
        let mut s = Status::host(host, state, T + 60 * i);
        s.output = format!("alert {i}");
        mux.push(s.event(Bbdo::V3));
        run_for(&mut out, &mut mux, Duration::from_millis(300));
    }
    assert!(
        drain(&mut out, &mut mux, Duration::from_secs(30)),
        "{} alerts never acknowledged",
        mux.unacked()
    );
    assert_eq!(mux.acked, alerts as u64);
    drop(out);
    let posts = lab.mock.state().receivers.posts.clone();
    let texts: Vec<String> = posts
        .iter()
        .map(|p| {
            p["attachments"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let expected: Vec<String> = (0..alerts)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("alert {i}"))
        .collect();
    assert_eq!(texts, expected, "host-a's alerts, in order");
    let dead = std::fs::read_to_string(lab.dir.join("canopsis.deadletter.jsonl"))
        .expect("dead-letter file");
    assert_eq!(dead.lines().count(), (alerts / 2) as usize, "{dead}");
    assert!(dead.lines().all(|l| l.contains("host-b")), "{dead}");
    let log = lab.log();
    assert!(log.contains("Mattermost will never take an event"), "{log}");
    assert!(!log.contains("Canopsis refused"), "{log}");
}
