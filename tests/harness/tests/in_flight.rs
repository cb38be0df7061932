//! Several requests in flight (`max_requests_in_flight`): each object's
//! events still reach Canopsis in broker's order, acknowledgements still
//! wait for every lane, and a single failure costs milliseconds.

use canopsis_harness::broker::{Muxer, Param};
use canopsis_harness::events::{Bbdo, Status};
use canopsis_harness::{deliver, drain, run_for, text, Lab};
use std::time::{Duration, Instant};

const T: i64 = 1_763_000_000;

/// `n` HARD state changes of each of the sample's four objects (two
/// hosts, two services), interleaved as broker would send them.
fn changes(n: i64, bbdo: Bbdo) -> Vec<canopsis_harness::events::Event> {
    (0..n)
        .flat_map(|i| Status::sample_changes(i, T))
        .map(|s| s.event(bbdo))
        .collect()
}

/// Each object's outputs, in the order Canopsis took them.
fn per_object(lab: &Lab) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut m = std::collections::BTreeMap::new();
    for e in lab.posted() {
        let key = format!("{}/{}", e["component"], e["resource"]);
        m.entry(key)
            .or_insert_with(Vec::new)
            .push(e["output"].as_str().unwrap_or_default().to_string());
    }
    m
}

/// Asserts that each of the four objects' `n` changes reached Canopsis
/// once, in order.
fn assert_each_in_order(lab: &Lab, n: i64, what: &str) {
    let got = per_object(lab);
    assert_eq!(got.len(), 4, "{what}: {got:?}");
    let expected: Vec<String> = (0..n).map(|i| format!("change {i}")).collect();
    for (object, outputs) in &got {
        assert_eq!(
            outputs, &expected,
            "{what} {object}: each change once, in order"
        );
    }
}

/// Canopsis behind an unsteady network: `latency` plus up to 10 ms, and
/// one request in five answered 500.
fn unsteady(lab: &Lab, latency: Duration) {
    let mut st = lab.mock.state();
    st.latency = latency;
    st.jitter = Duration::from_millis(10);
    st.fail_rate = 0.2;
}

#[test]
fn each_objects_changes_arrive_in_order_under_delays_and_failures() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::new("in-flight-order");
        unsteady(&lab, Duration::from_millis(2));
        let mut out = lab.open(
            lab.params(&[
                ("max_buffer_size", Param::Num(3)),
                ("max_all_queues_age", Param::Num(1)),
            ]),
            bbdo,
        );
        let mux = deliver(&mut out, changes(30, bbdo));
        assert_eq!(mux.acked, 120);
        assert_each_in_order(&lab, 30, &format!("{bbdo:?}"));
        let failed = lab
            .mock
            .state()
            .requests
            .iter()
            .filter(|r| r.status == 500)
            .count();
        assert!(failed > 0, "the mock failed some requests");
        out.close();
    }
}

/// Broker's `true` acknowledges everything before it: it never comes while
/// any lane still has something unconfirmed.
#[test]
fn acknowledgements_never_run_ahead_of_what_canopsis_took() {
    let lab = Lab::new("in-flight-acks");
    {
        let mut st = lab.mock.state();
        st.jitter = Duration::from_millis(15);
        st.fail_rate = 0.4;
    }
    let mut out = lab.open(lab.params(&[("max_buffer_size", Param::Num(2))]), Bbdo::V3);
    let mut mux = Muxer::new();
    for e in changes(20, Bbdo::V3) {
        mux.push(e);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while mux.unacked() > 0 && Instant::now() < deadline {
        run_for(&mut out, &mut mux, Duration::from_millis(30));
        let taken = lab.mock.state().events.len() as u64;
        assert!(
            mux.acked <= taken,
            "acknowledged {} events while Canopsis had taken {taken}",
            mux.acked
        );
    }
    assert_eq!(mux.unacked(), 0);
    out.close();
}

/// One 500 costs a retry tens of milliseconds later, not a second.
#[test]
fn a_single_failure_costs_milliseconds() {
    let lab = Lab::new("blip");
    lab.mock
        .state()
        .forced
        .push_back((500, r#"{"error":"Internal server error"}"#.into()));
    let mut out = lab.open(
        lab.params(&[("max_requests_in_flight", text("1"))]),
        Bbdo::V3,
    );
    let start = Instant::now();
    let mux = deliver(&mut out, vec![Status::host(12, 1, T).event(Bbdo::V3)]);
    let took = start.elapsed();
    assert_eq!(mux.acked, 1);
    let requests: Vec<(u16, Instant)> = lab
        .mock
        .state()
        .requests
        .iter()
        .filter(|r| r.path == "/api/v4/event")
        .map(|r| (r.status, r.at))
        .collect();
    assert_eq!(
        requests.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![500, 200]
    );
    let gap = requests[1].1 - requests[0].1;
    assert!(gap < Duration::from_millis(300), "retried after {gap:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    out.close();
}

/// Lanes reuse their connections: one per request in flight at most,
/// however many requests go out. Over TLS a new connection costs more
/// round trips than the request it carries.
#[test]
fn requests_in_flight_keep_their_connections_alive() {
    let lab = Lab::new("keep-alive");
    lab.mock.state().latency = Duration::from_millis(5);
    let mut out = lab.open(
        lab.params(&[
            ("max_buffer_size", Param::Num(1)),
            ("max_requests_in_flight", text("4")),
        ]),
        Bbdo::V3,
    );
    let mux = deliver(&mut out, changes(15, Bbdo::V3));
    assert_eq!(mux.acked, 60);
    let st = lab.mock.state();
    let requests = st.requests.len();
    assert!(requests >= 60, "{requests} requests");
    assert!(
        st.connections <= 4,
        "{} connections for {requests} requests",
        st.connections
    );
    drop(st);
    out.close();
}

/// A request Canopsis keeps failing holds back its own lane and broker's
/// acknowledgement, never the other lanes: the other objects' events are
/// all taken meanwhile. Once it goes through, everything is acknowledged,
/// each object's events once and in order.
#[test]
fn a_failing_request_holds_back_only_its_lane() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::new("one-lane-fails");
        lab.mock.state().fail_containing = Some("\"host-b\"".into());
        let mut out = lab.open(
            lab.params(&[
                ("max_buffer_size", Param::Num(2)),
                ("max_all_queues_age", Param::Num(1)),
                ("max_requests_in_flight", text("4")),
            ]),
            bbdo,
        );
        let mut mux = Muxer::new();
        for e in changes(10, bbdo) {
            mux.push(e);
        }
        // The four objects take one lane each; host-b's fails.
        let deadline = Instant::now() + Duration::from_secs(10);
        while lab.mock.state().events.len() < 30 && Instant::now() < deadline {
            run_for(&mut out, &mut mux, Duration::from_millis(50));
        }
        let got = per_object(&lab);
        assert_eq!(got.len(), 3, "{bbdo:?}: the other objects went on: {got:?}");
        assert!(got.values().all(|o| o.len() == 10), "{bbdo:?}: {got:?}");
        assert_eq!(mux.acked, 0, "{bbdo:?}: acknowledged past host-b's events");
        lab.mock.state().fail_containing = None;
        assert!(drain(&mut out, &mut mux, Duration::from_secs(30)));
        assert_eq!(mux.acked, 40);
        assert_each_in_order(&lab, 10, &format!("{bbdo:?}"));
        out.close();
    }
}

/// A lane whose batch Canopsis took does not make an older event, still
/// waiting in another lane's batch, count as delivered: here host-b's
/// event comes first, Canopsis refuses it, and nothing is acknowledged
/// however soon the other lane's three events are taken.
#[test]
fn a_confirmed_lane_does_not_acknowledge_an_older_event_of_another() {
    let lab = Lab::new("older-elsewhere");
    lab.mock.state().fail_containing = Some("\"host-b\"".into());
    let mut out = lab.open(
        lab.params(&[
            ("max_buffer_size", Param::Num(3)),
            ("max_requests_in_flight", text("2")),
        ]),
        Bbdo::V3,
    );
    // host-b waits in its lane's batch; the service's batch fills and goes.
    let mut acked = out.write(&Status::host(13, 1, T).event(Bbdo::V3));
    for i in 0..3 {
        acked += out.write(&Status::service(12, 34, 2 * (i % 2), T + i).event(Bbdo::V3));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.mock.state().events.len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lab.mock.state().events.len(), 3, "the full batch went");
    // Broker goes idle: host-b's batch goes now, and is refused.
    for _ in 0..5 {
        acked += out.flush();
    }
    assert_eq!(
        acked, 0,
        "acknowledged host-b's event while Canopsis refused it"
    );
    lab.mock.state().fail_containing = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked == 0 && Instant::now() < deadline {
        acked += out.flush();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(acked, 4);
    assert_eq!(lab.mock.state().events.len(), 4);
    out.close();
}

/// With the spool too, requests are in flight together and each object's
/// events arrive once, in broker's order, under delays and failures.
#[test]
fn with_the_spool_too_requests_overlap_and_each_object_keeps_its_order() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::new("in-flight-spool");
        unsteady(&lab, Duration::from_millis(5));
        let mut out = lab.open(
            lab.params(&[
                ("use_spool", Param::Num(1)),
                (
                    "spool_directory",
                    Param::Str(lab.dir.join("spool").display().to_string()),
                ),
                ("max_buffer_size", Param::Num(3)),
                ("max_all_queues_age", Param::Num(1)),
            ]),
            bbdo,
        );
        let mux = deliver(&mut out, changes(30, bbdo));
        assert_eq!(mux.acked, 120);
        let deadline = Instant::now() + Duration::from_secs(30);
        while lab.mock.state().events.len() < 120 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_each_in_order(&lab, 30, &format!("{bbdo:?}"));
        assert!(
            lab.mock.state().most_in_flight > 1,
            "{bbdo:?}: one request at a time"
        );
        out.close();
    }
}
