//! End to end: the built module, loaded by the broker emulator through the
//! shipped loader script, sending to the mock Canopsis on 127.0.0.1.

use canopsis_harness::broker::{Muxer, Param};
use canopsis_harness::events::{Ack, Bbdo, Event, Status, V};
use canopsis_harness::{deliver, drain, run_for, text, Lab};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const T: i64 = 1_763_000_000;

fn expected_events(bbdo: Bbdo) -> Vec<Value> {
    let long = match bbdo {
        Bbdo::V2 => "CRITICAL - 100% loss\nrtmin=0\nrtmax=0",
        Bbdo::V3 => "CRITICAL - 100% loss\nrtmin=0\nrtmax=0",
    };
    vec![
        json!({"event_type":"check","source_type":"component","connector":"centreon-stream","connector_name":"poller-1",
               "component":"host-a","output":"DOWN - unreachable","long_output":"DOWN - unreachable","state":3,"timestamp":T,
               "hostgroups":["linux","dc1"],"notes_url":"https://wiki/host-a","action_url":"","host_id":"12"}),
        json!({"event_type":"check","source_type":"resource","connector":"centreon-stream","connector_name":"poller-1",
               "component":"host-a","resource":"Ping","output":"CRITICAL - 100% loss","long_output":long,"state":3,"timestamp":T,
               "hostgroups":["linux","dc1"],"servicegroups":["network"],"notes_url":"","action_url":"https://act/ping",
               "host_id":"12","service_id":"34"}),
        json!({"event_type":"ack","source_type":"resource","connector":"centreon-stream","connector_name":"poller-1",
               "component":"host-a","resource":"Ping","author":"admin","output":"Looking into it","long_output":"Looking into it",
               "state":3,"timestamp":T + 10}),
        json!({"event_type":"ack","source_type":"component","connector":"centreon-stream","connector_name":"poller-2",
               "component":"host-b","resource":"","author":"admin","output":"Looking into it","long_output":"Looking into it",
               "state":3,"timestamp":T + 11}),
        json!({"event_type":"ackremove","source_type":"component","connector":"centreon-stream","connector_name":"poller-2",
               "component":"host-b","resource":"","author":"admin","output":"Looking into it","long_output":"Looking into it",
               "state":3,"timestamp":T + 11}),
    ]
}

/// Events sorted by their object (component, resource), each object's in
/// the order given.
fn by_object(mut events: Vec<Value>) -> Vec<Value> {
    events.sort_by_key(|e| (e["component"].to_string(), e["resource"].to_string()));
    events
}

fn sample_events(bbdo: Bbdo) -> Vec<Event> {
    let mut host = Status::host(12, 1, T);
    host.output = "DOWN - unreachable".into();
    let mut svc = Status::service(12, 34, 2, T);
    svc.output = "CRITICAL - 100% loss".into();
    svc.long_output = "rtmin=0\nrtmax=0".into();
    let mut host_ack = Ack::new(13, 0, 1, T + 11);
    host_ack.instance_id = 2;
    let mut removed = host_ack.clone();
    removed.deletion_time = T + 20;
    vec![
        host.event(bbdo),
        svc.event(bbdo),
        Ack::new(12, 34, 2, T + 10).event(bbdo),
        host_ack.event(bbdo),
        removed.event(bbdo),
    ]
}

#[test]
fn every_event_kind_in_both_bbdo_versions_and_both_apis() {
    for api in [1, 2] {
        for bbdo in [Bbdo::V2, Bbdo::V3] {
            let lab = Lab::new("kinds");
            if api == 1 {
                let text = std::fs::read_to_string(&lab.script).unwrap();
                std::fs::write(
                    &lab.script,
                    text.replace("broker_api_version = 2", "broker_api_version = 1"),
                )
                .unwrap();
            }
            let mut out = lab.open(lab.params(&[]), bbdo);
            assert_eq!(out.api_version(), api);
            assert!(
                out.has_filter(),
                "filter(1,2) probe failed: {:?}",
                out.broker_log.borrow()
            );
            let mux = deliver(&mut out, sample_events(bbdo));
            assert_eq!(mux.acked, 5);
            // Objects may overtake each other (several requests in
            // flight); each object's events keep their order.
            assert_eq!(
                by_object(lab.posted()),
                by_object(expected_events(bbdo)),
                "api {api} {bbdo:?}"
            );
            assert!(
                out.broker_log.borrow().is_empty(),
                "{:?}",
                out.broker_log.borrow()
            );
            out.close();
            // What Canopsis published: every event accepted, none failed.
            assert_eq!(lab.mock.state().events.len(), 5);
        }
    }
}

#[test]
fn filters_reject_what_they_must_and_acknowledge_it() {
    let lab = Lab::new("filters");
    let mut out = lab.open(
        lab.params(&[("accepted_hostgroups", text("linux"))]),
        Bbdo::V3,
    );
    let mut soft = Status::service(12, 34, 2, T);
    soft.state_type = 0;
    let mut acked = Status::service(12, 34, 2, T);
    acked.acknowledged = true;
    let mut in_dt = Status::service(12, 34, 2, T);
    in_dt.downtime_depth = 1;
    let mut dup = Status::service(12, 34, 2, T + 60);
    dup.last_hard_state_change = T;
    let events = vec![
        soft.event(Bbdo::V3),
        acked.event(Bbdo::V3),
        in_dt.event(Bbdo::V3),
        dup.event(Bbdo::V3),
        Status::service(12, 99, 2, T).event(Bbdo::V3), // unknown service
        Status::host(13, 1, T).event(Bbdo::V3),        // not in hostgroup linux
        Event::bare(1, 30),                            // pb_host: only clears remembered names
        Event::bare(3, 10),                            // storage: filter() says no
        Status::service(12, 34, 2, T).event(Bbdo::V3), // the one to send
    ];
    let mux = deliver(&mut out, events);
    assert_eq!(mux.acked, 9);
    let sent = lab.posted();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["resource"], "Ping");
    let log = lab.log();
    for reason in [
        "SOFT state",
        "acknowledged and acknowledged=0",
        "in downtime",
        "dedup",
        "service 99 is not in broker's cache",
        "host groups are not accepted",
    ] {
        assert!(log.contains(reason), "no log line for '{reason}'");
    }
}

#[test]
fn bulks_up_to_max_buffer_size() {
    let lab = Lab::new("bulk");
    let mut out = lab.open(lab.params(&[("max_buffer_size", Param::Num(10))]), Bbdo::V3);
    let events = (0..35)
        .map(|i| Status::service(12, 34, i % 3, T + i).event(Bbdo::V3))
        .collect();
    let mux = deliver(&mut out, events);
    assert_eq!(mux.acked, 35);
    let sizes: Vec<usize> = lab
        .mock
        .state()
        .event_posts()
        .iter()
        .map(|p| p.as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![10, 10, 10, 5]);
}

#[test]
fn old_events_are_sent_even_when_broker_never_calls_flush() {
    let lab = Lab::new("age");
    let mut out = lab.open(
        lab.params(&[
            ("max_buffer_size", Param::Num(1000)),
            ("max_all_queues_age", Param::Num(1)),
        ]),
        Bbdo::V3,
    );
    // Sustained load: write only, never flush.
    let start = Instant::now();
    let mut i = 0;
    while lab.mock.state().event_posts().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing sent without flush"
        );
        out.write(&Status::service(12, 34, i % 3, T + i).event(Bbdo::V3));
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(
        i < 1000,
        "sent because the batch was full, not because it was old"
    );
}

#[test]
fn acks_keep_flowing_under_sustained_load() {
    let lab = Lab::new("sustained");
    let mut out = lab.open(
        lab.params(&[
            ("max_buffer_size", Param::Num(500)),
            ("log_level", Param::Num(1)),
        ]),
        Bbdo::V3,
    );
    let mut acked = 0;
    let total = 12_000;
    for i in 0..total {
        acked += out.write(&Status::service(12, 34, i % 3, T + i).event(Bbdo::V3));
    }
    assert!(
        acked >= 5000,
        "broker would stall: only {acked} acks without flush"
    );
    // Broker idle: it flushes until everything is acknowledged (one object
    // is one lane, so what the window left takes a few round trips).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked < total as u64 && Instant::now() < deadline {
        acked += out.flush();
    }
    acked += out.close();
    assert_eq!(acked, total as u64);
    assert_eq!(lab.mock.state().events.len(), total as usize);
}

#[test]
fn nothing_is_acked_while_canopsis_is_down_and_everything_arrives_once_after() {
    let lab = Lab::new("down");
    let mut out = lab.open(lab.params(&[("max_buffer_size", Param::Num(8))]), Bbdo::V2);
    lab.mock.down();
    let mut mux = Muxer::new();
    for i in 0..20 {
        mux.push(Status::service(12, 34, i % 3, T + i).event(Bbdo::V2));
    }
    run_for(&mut out, &mut mux, Duration::from_secs(3));
    assert_eq!(mux.acked, 0, "acknowledged while Canopsis was unreachable");
    assert!(lab.mock.state().events.is_empty());
    assert!(lab.log().contains("send failed"));
    lab.mock.up();
    assert!(drain(&mut out, &mut mux, Duration::from_secs(40)));
    assert_eq!(mux.acked, 20);
    let mut stamps: Vec<i64> = lab
        .mock
        .state()
        .events
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    stamps.sort();
    assert_eq!(
        stamps,
        (0..20).map(|i| T + i).collect::<Vec<_>>(),
        "lost or duplicated events"
    );
}

#[test]
fn server_errors_and_throttling_are_retried_with_backoff_and_retry_after() {
    let lab = Lab::new("retry");
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    {
        let mut st = lab.mock.state();
        st.retry_after = Some(2);
        st.forced.push_back((500, r#"{"error":"boom"}"#.into()));
        st.forced
            .push_back((429, r#"{"error":"slow down"}"#.into()));
    }
    let mut mux = Muxer::new();
    for n in 0..10 {
        mux.push(Status::service(12, 34, n % 3, T + n).event(Bbdo::V3));
    }
    run_for(&mut out, &mut mux, Duration::from_millis(300));
    assert_eq!(mux.acked, 0, "acknowledged before Canopsis took them");
    assert!(drain(&mut out, &mut mux, Duration::from_secs(30)));
    let st = lab.mock.state();
    let posts: Vec<_> = st
        .requests
        .iter()
        .filter(|r| r.path == "/api/v4/event")
        .collect();
    let statuses: Vec<u16> = posts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 429, 200]);
    let first_pause = posts[1].at - posts[0].at;
    let after_429 = posts[2].at - posts[1].at;
    // Backoff starts between 10 and 20 ms (a blip costs milliseconds);
    // Retry-After: 2 is honoured.
    assert!(
        first_pause >= Duration::from_millis(10) && first_pause < Duration::from_millis(400),
        "{first_pause:?}"
    );
    assert!(after_429 >= Duration::from_millis(1950), "{after_429:?}");
    assert_eq!(st.events.len(), 10, "every event once");
    drop(st);
    let log = lab.log();
    assert!(
        log.contains("HTTP 500") && log.contains("HTTP 429"),
        "{log}"
    );
}

/// Canopsis took the events after the failed one: the request goes again
/// from the failed event on, so the object ends in its last state.
#[test]
fn events_canopsis_lists_as_failed_are_sent_again_with_those_after_them() {
    let lab = Lab::new("failed-events");
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    lab.mock.state().fail_next_events = 1;
    let mux = deliver(
        &mut out,
        (0..3)
            .map(|i| Status::service(12, 34, 1, T + i).event(Bbdo::V3))
            .collect(),
    );
    assert_eq!(mux.acked, 3);
    let st = lab.mock.state();
    assert_eq!(
        st.events.len(),
        5,
        "2 taken, then the 3 from the failed one on"
    );
    let posts = st.event_posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1], posts[0], "the request from its first event on");
}

#[test]
fn a_wrong_authkey_is_reported_and_nothing_is_acked() {
    let lab = Lab::new("authkey");
    let mut out = lab.open(
        lab.params(&[("canopsis_authkey", text("not-the-key"))]),
        Bbdo::V3,
    );
    let mut mux = Muxer::new();
    mux.push(Status::service(12, 34, 2, T).event(Bbdo::V3));
    run_for(&mut out, &mut mux, Duration::from_secs(2));
    assert_eq!(mux.acked, 0);
    let log = lab.log();
    assert!(
        log.contains("HTTP 401") && log.contains("canopsis_authkey"),
        "{log}"
    );
    assert_eq!(lab.mock.state().requests[0].status, 401);
    assert!(!log.contains("not-the-key"));
}

#[test]
fn a_malformed_configuration_is_named_and_nothing_is_acked() {
    let lab = Lab::new("badconf");
    let params = vec![
        ("canopsis_authkey".to_string(), text("k")),
        ("canopsis_port".to_string(), text("https")),
        (
            "logfile".to_string(),
            text(&lab.logfile().display().to_string()),
        ),
    ];
    let mut out = lab.open(params, Bbdo::V3);
    let mut mux = Muxer::new();
    mux.push(Status::service(12, 34, 2, T).event(Bbdo::V3));
    run_for(&mut out, &mut mux, Duration::from_millis(500));
    assert_eq!(mux.acked, 0);
    let log = lab.log();
    assert!(
        log.contains("invalid parameter 'canopsis_host': expected the Canopsis host name"),
        "{log}"
    );
    assert!(log.contains("invalid parameter 'canopsis_port': expected a TCP port between 1 and 65535, got 'https'"), "{log}");
    assert!(
        out.broker_log.borrow().is_empty(),
        "init must not raise: {:?}",
        out.broker_log.borrow()
    );
    assert_eq!(out.close(), 0);
}

#[test]
fn two_connectors_in_one_process_keep_their_own_state_and_log() {
    let labs: Vec<Lab> = (0..2).map(|i| Lab::new(&format!("pair{i}"))).collect();
    std::thread::scope(|scope| {
        for (i, lab) in labs.iter().enumerate() {
            scope.spawn(move || {
                let mut out = lab.open(
                    lab.params(&[
                        ("connector_name_type", text("custom")),
                        ("connector_name", text(&format!("central-{i}"))),
                    ]),
                    Bbdo::V3,
                );
                let mux = deliver(
                    &mut out,
                    (0..50)
                        .map(|n| Status::service(12, 34, n % 3, T + n).event(Bbdo::V3))
                        .collect(),
                );
                assert_eq!(mux.acked, 50);
                out.close();
            });
        }
    });
    for (i, lab) in labs.iter().enumerate() {
        let other = &labs[1 - i];
        let log = lab.log();
        assert!(log.contains(&format!("127.0.0.1:{}", lab.mock.port())));
        assert!(!log.contains(&format!("127.0.0.1:{}/", other.mock.port())));
        let events = lab.mock.state().events.clone();
        assert_eq!(events.len(), 50);
        assert!(events
            .iter()
            .all(|e| e["connector_name"] == format!("central-{i}")));
    }
}

#[test]
fn closing_the_state_stops_the_sender_in_time_and_the_module_reloads() {
    let lab = Lab::new("close");
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    // A failure, then recovery: the stats line no longer shows the error.
    lab.mock.down();
    let mut mux = Muxer::new();
    mux.push(Status::service(12, 34, 1, T).event(Bbdo::V3));
    run_for(&mut out, &mut mux, Duration::from_millis(600));
    assert_eq!(mux.acked, 0);
    lab.mock.up();
    assert!(drain(&mut out, &mut mux, Duration::from_secs(10)));
    out.close();
    let stats = lab.log();
    let stats = stats.lines().rfind(|l| l.contains("stats:"));
    assert!(
        stats.is_some_and(|l| l.contains("state=ok last_error=none")),
        "{stats:?}"
    );
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    // Canopsis unreachable: nothing can be delivered, so the state closes
    // at once (broker keeps the event) instead of spending a delivery
    // budget on top of broker's own stop.
    lab.mock.down();
    out.write(&Status::service(12, 34, 2, T + 1).event(Bbdo::V3));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let acked = out.close();
    assert_eq!(acked, 0);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "close took {:?}",
        started.elapsed()
    );
    let log = lab.log();
    assert!(log.contains("connector stopped"));
    let stats: Vec<&str> = log.lines().filter(|l| l.contains("stats:")).collect();
    assert!(
        stats
            .last()
            .unwrap()
            .contains("state=failing last_error=cannot connect"),
        "{stats:?}"
    );
    assert!(
        log.contains("events are kept, not retried") || !log.contains("retried in 4."),
        "a pause longer than the close budget was announced"
    );
    // A restarted stream gets a new state, loads the module again and works.
    lab.mock.up();
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    let mux = deliver(
        &mut out,
        vec![Status::service(12, 34, 2, T).event(Bbdo::V3)],
    );
    assert_eq!(mux.acked, 1);
    out.close();
}

#[test]
fn secrets_never_reach_the_log() {
    let lab = Lab::new("secrets");
    let key = lab.mock.authkey();
    let mut out = lab.open(
        lab.params(&[
            ("proxy_address", text("127.0.0.1")),
            ("proxy_port", Param::Num(1)),
            ("proxy_username", text("bob")),
            ("proxy_password", text("pr0xy-s3cret")),
        ]),
        Bbdo::V3,
    );
    let mut mux = Muxer::new();
    mux.push(Status::service(12, 34, 2, T).event(Bbdo::V3));
    run_for(&mut out, &mut mux, Duration::from_secs(1));
    out.close();
    let log = lab.log();
    assert!(
        log.contains("x-canopsis-authkey: ***") && log.contains("bob:***"),
        "no replayable request line: {log}"
    );
    assert!(!log.contains(&key), "auth key leaked");
    assert!(!log.contains("pr0xy-s3cret"), "proxy password leaked");
}

#[test]
fn log_curl_commands_logs_each_request_at_level_2_without_the_key() {
    let lab = Lab::new("log-curl");
    let mut out = lab.open(
        lab.params(&[
            ("log_level", Param::Num(2)),
            ("log_curl_commands", Param::Num(1)),
        ]),
        Bbdo::V3,
    );
    let mux = deliver(
        &mut out,
        vec![Status::service(12, 34, 2, T).event(Bbdo::V3)],
    );
    assert_eq!(mux.acked, 1);
    out.close();
    let log = lab.log();
    assert!(
        log.contains("[INFO] sending: curl -sS -X POST") && log.contains("x-canopsis-authkey: ***"),
        "{log}"
    );
    assert!(!log.contains(&lab.mock.authkey()), "auth key leaked");
    assert!(!log.contains("not handled"), "{log}");
}

#[test]
fn send_data_test_logs_payloads_instead_of_sending() {
    let lab = Lab::new("dryrun");
    let mut out = lab.open(lab.params(&[("send_data_test", Param::Num(1))]), Bbdo::V3);
    let mux = deliver(
        &mut out,
        vec![Status::service(12, 34, 2, T).event(Bbdo::V3)],
    );
    assert_eq!(mux.acked, 1);
    assert!(lab.mock.state().requests.is_empty());
    assert!(lab
        .log()
        .contains(r#"[send_data_test] POST /api/v4/event: [{"event_type":"check""#));
}

#[test]
fn malformed_events_are_logged_and_never_crash() {
    let lab = Lab::new("malformed");
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    let events = vec![
        Status::service(12, 34, 2, T)
            .event(Bbdo::V3)
            .set("host_id", Some(V::S(b"twelve".to_vec()))),
        Status::service(12, 34, 2, T)
            .event(Bbdo::V3)
            .set("output", Some(V::S(vec![0xff, 0xfe, b'o', b'k']))),
        Status::service(12, 34, 2, T)
            .event(Bbdo::V3)
            .set("state", None),
        Event::bare(1, 24),
        Event::bare(1, 1),
    ];
    let mux = deliver(&mut out, events);
    assert_eq!(mux.acked, 5);
    let sent = lab.posted();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["output"], "\u{fffd}\u{fffd}ok");
    assert!(lab.log().contains("unusable 'host_id' field"));
    assert!(
        out.broker_log.borrow().is_empty(),
        "{:?}",
        out.broker_log.borrow()
    );
}

/// An event that breaks one of Canopsis's per-event rules (here a template
/// whose `state` is not an integer) is dead-lettered before it is sent,
/// with the rule named; the rest of its batch arrives.
#[test]
fn an_event_breaking_canopsis_rules_is_dead_lettered_with_the_rule_and_the_rest_arrives() {
    let lab = Lab::new("deadletter");
    let path = lab.dir.join("format.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&serde_json::json!({"neb_service_status": {
            "event_type": "check", "state": "{output}", "connector": "centreon",
            "connector_name": "poller", "component": "{cache.host.name}",
            "resource": "{cache.service.description}", "output": "{output}"
        }}))
        .unwrap(),
    )
    .unwrap();
    let mut out = lab.open(
        lab.params(&[
            ("max_buffer_size", Param::Num(8)),
            ("format_file", text(&path.display().to_string())),
        ]),
        Bbdo::V3,
    );
    let events = (0..8)
        .map(|i| {
            let mut s = Status::service(12, 34, 2, T + i);
            s.output = if i == 5 { "POISON".into() } else { "2".into() };
            s.event(Bbdo::V3)
        })
        .collect();
    let mux = deliver(&mut out, events);
    assert_eq!(mux.acked, 8);
    assert_eq!(lab.mock.state().events.len(), 7);
    out.close();
    let kept = std::fs::read_to_string(lab.dir.join("canopsis.deadletter.jsonl"))
        .expect("dead-letter file");
    assert_eq!(kept.lines().count(), 1);
    let v: Value = serde_json::from_str(kept.trim()).unwrap();
    assert_eq!(v["event"]["output"], "POISON");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("state must be a number"),
        "{v}"
    );
    assert!(lab.log().contains("dead_lettered=1"));
}

/// xorshift: reproducible random events without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn ten_thousand_random_malformed_events_never_crash_and_are_all_acknowledged() {
    let lab = Lab::new("random");
    let mut out = lab.open(lab.params(&[("log_level", Param::Num(3))]), Bbdo::V3);
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let names = [
        "host_id",
        "service_id",
        "state",
        "state_type",
        "acknowledged",
        "acknowledgement_type",
        "scheduled_downtime_depth",
        "flapping",
        "last_check",
        "last_hard_state_change",
        "output",
        "long_output",
        "author",
        "comment_data",
        "entry_time",
        "deletion_time",
        "instance_id",
        "internal_id",
        "id",
        "start_time",
        "end_time",
        "actual_start_time",
        "actual_end_time",
        "cancelled",
    ];
    let huge = V::S(vec![b'x'; 1 << 20]);
    let mut events = Vec::new();
    for i in 0..10_000u64 {
        let base = match i % 5 {
            0 => Status::service(12, 34, 2, T + i as i64).event(Bbdo::V3),
            1 => Status::host(12, 1, T + i as i64).event(Bbdo::V2),
            2 => Ack::new(12, 34, 2, T).event(Bbdo::V3),
            3 => canopsis_harness::events::Downtime::started(i as i64, 12, 34, T, T + 60)
                .event(Bbdo::V2),
            _ => Event::bare(1, *rng.pick(&[14u32, 24, 1, 5, 29, 32, 45, 36, 2, 999])),
        };
        let mut ev = base;
        for _ in 0..(rng.next() % 4) {
            let value = match rng.next() % 8 {
                0 => None,
                1 => Some(V::I(rng.next() as i64)),
                2 => Some(V::F(f64::from_bits(rng.next()))),
                3 => Some(V::B(rng.next().is_multiple_of(2))),
                4 => Some(V::S(
                    (0..(rng.next() % 40)).map(|_| rng.next() as u8).collect(),
                )),
                5 => Some(V::I(-1)),
                6 if i.is_multiple_of(1000) => Some(huge.clone()),
                _ => Some(V::S(b"\xff\xfe not utf-8".to_vec())),
            };
            let name: &'static str = names[(rng.next() % names.len() as u64) as usize];
            ev = ev.set(name, value);
        }
        events.push(ev);
    }
    let mux = deliver(&mut out, events);
    assert_eq!(mux.acked, 10_000);
    assert!(
        out.broker_log.borrow().is_empty(),
        "Lua errors: {:?}",
        &out.broker_log.borrow()[..1]
    );
    out.close();
    let log = lab.log();
    // One kind of line per kind of damage, naming the field.
    for kind in [
        "expected an integer",
        "expected a positive id",
        "expected a string",
        "expected a boolean",
        "no host id",
        "is not accepted",
    ] {
        assert!(log.contains(kind), "no log line says {kind:?}");
    }
    let stats = log.lines().rev().find(|l| l.contains("stats:")).unwrap();
    assert!(
        !stats.contains("malformed=0 "),
        "malformed events are counted: {stats}"
    );
    assert!(log.contains("connector stopped"));
}

#[test]
fn a_thirty_second_outage_under_continuous_load_loses_and_acks_nothing_early() {
    let lab = Lab::new("outage");
    let mut out = lab.open(lab.params(&[("log_level", Param::Num(1))]), Bbdo::V3);
    let mut mux = Muxer::new();
    mux.max_size = 3000;
    lab.mock.down();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(30) {
        for _ in 0..40 {
            mux.push(Status::service(12, 34, n % 3, T + n).event(Bbdo::V3));
            n += 1;
        }
        run_for(&mut out, &mut mux, Duration::from_millis(100));
        assert_eq!(mux.acked, 0, "acknowledged while Canopsis was down");
    }
    lab.mock.up();
    assert!(drain(&mut out, &mut mux, Duration::from_secs(90)));
    assert_eq!(mux.acked, n as u64);
    let mut stamps: Vec<i64> = lab
        .mock
        .state()
        .events
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    stamps.sort();
    stamps.dedup();
    assert_eq!(stamps.len(), n as usize, "lost events");
    assert_eq!(
        lab.mock.state().events.len(),
        n as usize,
        "duplicated events"
    );
}
