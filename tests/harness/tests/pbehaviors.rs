//! Downtimes to pbehaviors, end to end through the emulator and the mock.

use canopsis_harness::broker::{Muxer, Output, Param};
use canopsis_harness::events::{Bbdo, Downtime, Event, Status};
use canopsis_harness::{deliver, drain, run_for, Lab};
use serde_json::{json, Value};
use std::time::Duration;

const T: i64 = 1_763_000_000;

/// The DELETE requests the mock received on the single route: query and
/// status.
fn deletes(lab: &Lab) -> Vec<(String, u16)> {
    lab.mock
        .state()
        .requests
        .iter()
        .filter(|r| r.method == "DELETE" && r.path == SINGLE)
        .map(|r| (r.query.clone(), r.status))
        .collect()
}

fn pattern(entity: &str) -> Value {
    json!([[{"field": "_id", "cond": {"type": "eq", "value": entity}}]])
}

/// `canopsis_downtime_route` set to `route`.
fn route(route: &str) -> (&'static str, Param) {
    ("canopsis_downtime_route", Param::Str(route.into()))
}

const SINGLE: &str = "/api/v4/pbehaviors";
const BULK: &str = "/api/v4/bulk/pbehaviors";
const CONNECTOR: &str = "/api/v4/bulk/connector-pbehaviors";

#[test]
fn host_and_service_downtimes_in_both_bbdo_versions() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::new("downtimes");
        let mut out = lab.open(lab.params(&[route(SINGLE)]), bbdo);
        let svc = Downtime::started(7, 12, 34, T, T + 3600);
        let host = Downtime::started(8, 13, 0, T + 10, T + 7200);
        let mux = deliver(&mut out, vec![svc.event(bbdo), host.event(bbdo)]);
        assert_eq!(mux.acked, 2);
        let maintenance = lab.maintenance_id();
        {
            let st = lab.mock.state();
            let reason = st
                .reasons
                .iter()
                .find(|r| r["name"] == "Centreon_downtime")
                .expect("reason created")
                .clone();
            assert_eq!(reason["description"], "Activation Maintenance Centreon");
            assert_eq!(st.pbehaviors.len(), 2, "{bbdo:?}");
            // Two downtimes need no order between them: they may go
            // through different lanes.
            let by_id = |id: String| {
                st.pbehaviors
                    .iter()
                    .find(|p| p["_id"] == id)
                    .unwrap_or_else(|| panic!("{bbdo:?}: no pbehavior {id}"))
            };
            let p = by_id(format!("centreon-downtime-12-34-7-{}", T - 60));
            assert_eq!(p["name"], p["_id"]);
            assert_eq!(p["enabled"], true);
            assert_eq!(
                (p["tstart"].as_i64(), p["tstop"].as_i64()),
                (Some(T), Some(T + 3600))
            );
            assert_eq!(p["entity_pattern"], pattern("Ping/host-a"));
            assert_eq!(p["reason"]["_id"], reason["_id"]);
            assert_eq!(p["type"]["_id"], maintenance);
            assert_eq!(p["comments"][0]["message"], "Planned maintenance");
            let h = by_id(format!("centreon-downtime-13-0-8-{}", T - 50));
            assert_eq!(h["entity_pattern"], pattern("host-b"));
        }
        // The engine's end of a downtime: the end, then the deletion (one
        // expired, one cancelled); and a downtime deleted before it started.
        let never = Downtime::started(9, 12, 35, T + 500, T + 600);
        let ends: Vec<_> = svc.life(T + 100, false)[2..]
            .iter()
            .chain(&host.life(T + 200, true)[2..])
            .chain(&never.cancelled_before_start(T + 300))
            .map(|d| d.event(bbdo))
            .collect();
        let mux = deliver(&mut out, ends);
        assert_eq!(mux.acked, 6);
        assert!(
            lab.mock.state().pbehaviors.is_empty(),
            "{bbdo:?}: pbehaviors not deleted"
        );
        let mut deleted = deletes(&lab);
        deleted.sort();
        assert_eq!(
            deleted,
            vec![
                (format!("name=centreon-downtime-12-34-7-{}", T - 60), 204),
                (format!("name=centreon-downtime-13-0-8-{}", T - 50), 204)
            ],
            "{bbdo:?}: one DELETE per downtime, none for one that never started"
        );
        out.close();
    }
}

#[test]
fn the_reason_is_found_on_a_later_page_and_not_created_again() {
    let lab = Lab::new("reason-page");
    {
        let mut st = lab.mock.state();
        for i in 0..150 {
            st.reasons.push(
                json!({"_id": format!("r{i}"), "name": format!("reason {i}"), "description": "x"}),
            );
        }
        st.reasons.insert(
            140,
            json!({"_id": "r-centreon", "name": "Centreon_downtime", "description": "x"}),
        );
    }
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    deliver(
        &mut out,
        vec![Downtime::started(7, 12, 34, T, T + 60).event(Bbdo::V3)],
    );
    let st = lab.mock.state();
    assert!(!st
        .requests
        .iter()
        .any(|r| r.method == "POST" && r.path == "/api/v4/pbehavior-reasons"));
    assert!(st
        .requests
        .iter()
        .any(|r| r.path == "/api/v4/pbehavior-reasons" && r.query.contains("page=2")));
    assert_eq!(st.pbehaviors[0]["reason"]["_id"], "r-centreon");
}

#[test]
fn a_replayed_start_and_an_unknown_end_count_as_delivered() {
    let lab = Lab::new("idempotent");
    let mut out = lab.open(lab.params(&[route(SINGLE)]), Bbdo::V3);
    let dt = Downtime::started(7, 12, 34, T, T + 60);
    let unknown = Downtime::started(99, 12, 35, T, T + 60).ended(T + 5);
    let mux = deliver(
        &mut out,
        vec![
            dt.event(Bbdo::V3),
            dt.event(Bbdo::V3),
            unknown.event(Bbdo::V3),
        ],
    );
    assert_eq!(mux.acked, 3);
    let st = lab.mock.state();
    assert_eq!(st.pbehaviors.len(), 1);
    assert_eq!(
        st.comments.len(),
        1,
        "a replay must not post the comment twice"
    );
    // The two downtimes are about two services: their requests may
    // interleave (several in flight); each one's keep their order.
    let mut statuses: Vec<(String, u16)> = st
        .requests
        .iter()
        .filter(|r| r.path == "/api/v4/pbehaviors")
        .map(|r| (r.method.clone(), r.status))
        .collect();
    statuses.sort_by_key(|(m, _)| m != "POST");
    assert_eq!(
        statuses,
        vec![
            ("POST".into(), 201),
            ("POST".into(), 400),
            ("DELETE".into(), 404),
            ("DELETE".into(), 404)
        ]
    );
    drop(st);
    assert_eq!(
        deletes(&lab),
        vec![
            (format!("name=centreon-downtime-12-35-99-{}", T - 60), 404),
            (format!("name=centreon-downtime-99-{}", T - 60), 404)
        ],
        "our name, then the Lua connector's"
    );
    // Then on the connector route, where it may have begun: not there.
    assert_eq!(requests_on(&lab, CONNECTOR), vec![("DELETE".into(), 207)]);
}

#[test]
fn a_downtime_started_under_the_lua_connector_is_still_removed_when_it_ends() {
    let lab = Lab::new("legacy-name");
    let dt = Downtime::started(41, 12, 34, T, T + 3600);
    // What the Lua connector created when the downtime started.
    let legacy = format!("centreon-downtime-41-{}", T - 60);
    lab.mock.state().pbehaviors.push(json!({
        "_id": legacy, "name": legacy, "enabled": true, "tstart": T, "tstop": T + 3600,
        "entity_pattern": pattern("Ping/host-a"),
    }));
    let mut out = lab.open(lab.params(&[route(SINGLE)]), Bbdo::V3);
    let ends: Vec<_> = dt.life(T + 100, false)[2..]
        .iter()
        .map(|d| d.event(Bbdo::V3))
        .collect();
    let mux = deliver(&mut out, ends);
    assert_eq!(mux.acked, 2);
    let st = lab.mock.state();
    assert!(
        st.pbehaviors.is_empty(),
        "the Lua connector's pbehavior stays"
    );
    drop(st);
    assert_eq!(
        deletes(&lab),
        vec![
            (format!("name=centreon-downtime-12-34-41-{}", T - 60), 404),
            (format!("name={legacy}"), 204)
        ]
    );
    out.close();
    assert!(lab
        .log()
        .contains("deleted under the name the Lua connector gave it"));
}

#[test]
fn long_comments_are_cut_to_255_characters() {
    let lab = Lab::new("comment");
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    let mut dt = Downtime::started(7, 12, 34, T, T + 60);
    dt.comment = "é".repeat(300);
    deliver(&mut out, vec![dt.event(Bbdo::V3)]);
    let st = lab.mock.state();
    assert_eq!(
        st.comments[0]["message"].as_str().unwrap().chars().count(),
        255
    );
}

#[test]
fn nothing_is_acked_before_canopsis_confirms_the_downtime() {
    let lab = Lab::new("dt-down");
    let mut out = lab.open(lab.params(&[]), Bbdo::V2);
    lab.mock.down();
    let mut mux = Muxer::new();
    mux.push(Status::service(12, 34, 2, T).event(Bbdo::V2));
    mux.push(Downtime::started(7, 12, 34, T, T + 60).event(Bbdo::V2));
    run_for(&mut out, &mut mux, Duration::from_secs(2));
    assert_eq!(mux.acked, 0);
    lab.mock.up();
    assert!(drain(&mut out, &mut mux, Duration::from_secs(40)));
    assert_eq!(mux.acked, 2);
    let st = lab.mock.state();
    assert_eq!((st.events.len(), st.pbehaviors.len()), (1, 1));
}

#[test]
fn canopsis_2210_gets_a_color() {
    let lab = Lab::new("v2210");
    lab.mock.state().version = "22.10.4".into();
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    deliver(
        &mut out,
        vec![Downtime::started(7, 12, 34, T, T + 60).event(Bbdo::V3)],
    );
    assert_eq!(lab.mock.state().pbehaviors[0]["color"], "#73D8FF");
}

#[test]
fn a_stale_reason_id_is_resolved_again() {
    let lab = Lab::new("stale");
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    deliver(
        &mut out,
        vec![Downtime::started(7, 12, 34, T, T + 60).event(Bbdo::V3)],
    );
    // Someone deletes the reason in Canopsis; the cached id is now wrong.
    lab.mock
        .state()
        .reasons
        .retain(|r| r["name"] != "Centreon_downtime");
    deliver(
        &mut out,
        vec![Downtime::started(8, 12, 34, T, T + 60).event(Bbdo::V3)],
    );
    let st = lab.mock.state();
    assert_eq!(st.pbehaviors.len(), 2);
    assert_eq!(
        st.requests
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/api/v4/pbehavior-reasons")
            .count(),
        2
    );
    assert!(lab.log().contains("Reason doesn't exist"));
}

#[test]
fn missing_rights_are_named_and_nothing_is_acked() {
    let lab = Lab::new("rights");
    lab.mock.state().users[0].allowed = false;
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    let mut mux = Muxer::new();
    mux.push(Downtime::started(7, 12, 34, T, T + 60).event(Bbdo::V3));
    run_for(&mut out, &mut mux, Duration::from_secs(2));
    assert_eq!(mux.acked, 0);
    assert!(
        lab.log()
            .contains("lacks the right read on pbehavior reasons (api_pbehaviorreason)"),
        "{}",
        lab.log()
    );
}

#[test]
fn downtimes_can_be_turned_off() {
    let lab = Lab::new("no-pbh");
    let mut out = lab.open(
        lab.params(&[("canopsis_downtime_send_pbh", Param::Num(0))]),
        Bbdo::V3,
    );
    let mux = deliver(
        &mut out,
        vec![Downtime::started(7, 12, 34, T, T + 60).event(Bbdo::V3)],
    );
    assert_eq!(mux.acked, 1);
    assert!(lab.mock.state().requests.is_empty());
}

#[test]
fn send_data_test_logs_pbehaviors() {
    let lab = Lab::new("pbh-dryrun");
    let mut out = lab.open(lab.params(&[("send_data_test", Param::Num(1))]), Bbdo::V3);
    deliver(
        &mut out,
        vec![Downtime::started(7, 12, 34, T, T + 60).event(Bbdo::V3)],
    );
    assert!(lab.mock.state().requests.is_empty());
    assert!(
        lab.log().contains(
            r#"[send_data_test] POST /api/v4/bulk/pbehaviors: [{"_id":"centreon-downtime-12-34-7-"#
        ),
        "{}",
        lab.log()
    );
}

/// The requests the mock received on the bulk route: method, how many
/// items, status.
fn bulk_requests(lab: &Lab) -> Vec<(String, usize, u16)> {
    bulk_requests_of(&lab.mock.state())
}

fn bulk_requests_of(st: &canopsis_harness::mock::State) -> Vec<(String, usize, u16)> {
    st.requests
        .iter()
        .filter(|r| r.path == "/api/v4/bulk/pbehaviors")
        .map(|r| {
            let n = serde_json::from_str::<Value>(&r.body)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0);
            (r.method.clone(), n, r.status)
        })
        .collect()
}

/// `canopsis_downtime_route=/api/v4/bulk/pbehaviors`, as the current Lua
/// connector can use it: downtimes starting together go in one POST,
/// ending together in one DELETE, each item judged on its own (one that
/// already exists, or is already gone, counts as done; one started under
/// the Lua connector is deleted by its name). Comments go one by one.
#[test]
fn the_bulk_route_creates_and_deletes_many_downtimes_per_request() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::new("bulk");
        let mut out = lab.open(
            lab.params(&[(
                "canopsis_downtime_route",
                Param::Str("/api/v4/bulk/pbehaviors".into()),
            )]),
            bbdo,
        );
        let dts: Vec<Downtime> = (0..20)
            .map(|i| {
                Downtime::started(
                    100 + i,
                    12,
                    if i % 2 == 0 { 34 } else { 35 },
                    T + i,
                    T + 3600,
                )
            })
            .collect();
        // One of them already exists (a replay), another was created by
        // the Lua connector before the switch.
        let replayed = format!("centreon-downtime-12-34-100-{}", T - 60);
        let legacy_dt = Downtime::started(999, 12, 34, T, T + 3600);
        let legacy = format!("centreon-downtime-999-{}", T - 60);
        {
            let mut st = lab.mock.state();
            for (id, entity) in [(&replayed, "Ping/host-a"), (&legacy, "Ping/host-a")] {
                st.pbehaviors.push(json!({
                    "_id": id, "name": id, "enabled": true, "tstart": T, "tstop": T + 3600,
                    "entity_pattern": pattern(entity), "comments": [],
                }));
            }
        }
        // Canopsis behind a network: downtimes queue up while a request
        // is out, and go together in the next.
        lab.mock.state().latency = Duration::from_millis(30);
        let mut mux = Muxer::new();
        for d in &dts {
            mux.push(d.event(bbdo));
        }
        assert!(drain(&mut out, &mut mux, Duration::from_secs(30)));
        {
            let st = lab.mock.state();
            assert_eq!(st.pbehaviors.len(), 21, "20 and the legacy one: {bbdo:?}");
            // Comments: one per downtime created now (not the replayed one).
            assert_eq!(st.comments.len(), 19, "{bbdo:?}");
        }
        let posts: Vec<_> = bulk_requests(&lab)
            .into_iter()
            .filter(|(m, ..)| m == "POST")
            .collect();
        assert!(
            posts.iter().all(|(_, _, status)| *status == 207),
            "{posts:?}"
        );
        assert_eq!(posts.iter().map(|(_, n, _)| n).sum::<usize>(), 20);
        assert!(posts.len() < 20, "several downtimes per request: {posts:?}");

        let mut ends = Vec::new();
        for d in dts.iter().chain([&legacy_dt]) {
            ends.extend(d.life(T + 100, false)[2..].iter().map(|x| x.event(bbdo)));
        }
        let mux = deliver(&mut out, ends);
        assert_eq!(mux.acked, 42);
        assert!(
            lab.mock.state().pbehaviors.is_empty(),
            "{bbdo:?}: {:?}",
            lab.mock.state().pbehaviors
        );
        let dels: Vec<_> = bulk_requests(&lab)
            .into_iter()
            .filter(|(m, ..)| m == "DELETE")
            .collect();
        assert!(dels.iter().all(|(_, _, status)| *status == 207), "{dels:?}");
        assert!(dels.len() < 21, "several downtimes per request: {dels:?}");
        // 21 by the native name, then the legacy one by its own name.
        assert_eq!(
            dels.iter().map(|(_, n, _)| n).sum::<usize>(),
            22,
            "{dels:?}"
        );
        assert!(lab
            .log()
            .contains("deleted under the name the Lua connector gave it"));
        out.close();
    }
}

/// A bulk item Canopsis refuses in its own words does not hold back the
/// others: that answer is the proof, so it is dead-lettered at once, not
/// resent for minutes while broker's acknowledgements wait.
#[test]
fn a_refused_bulk_item_does_not_refuse_the_request() {
    let lab = Lab::new("bulk-refused");
    // One lane, so both downtimes share a request.
    let mut out = lab.open(
        lab.params(&[
            (
                "canopsis_downtime_route",
                Param::Str("/api/v4/bulk/pbehaviors".into()),
            ),
            ("max_requests_in_flight", Param::Num(1)),
        ]),
        Bbdo::V3,
    );
    {
        let mut st = lab.mock.state();
        st.refuse_containing = Some("Disk /var".into());
        st.latency = Duration::from_millis(100);
    }
    let first = Downtime::started(199, 13, 0, T, T + 3600);
    let good = Downtime::started(200, 12, 34, T, T + 3600);
    let bad = Downtime::started(201, 12, 35, T, T + 3600);
    let mut mux = Muxer::new();
    mux.push(first.event(Bbdo::V3));
    // The sender takes the first alone and looks reason and type up
    // (three requests of 100 ms): the other two wait for it, together.
    run_for(&mut out, &mut mux, Duration::from_millis(60));
    mux.push(bad.event(Bbdo::V3));
    mux.push(good.event(Bbdo::V3));
    run_for(&mut out, &mut mux, Duration::from_secs(3));
    let st = lab.mock.state();
    let ids: Vec<&Value> = st.pbehaviors.iter().map(|p| &p["_id"]).collect();
    assert_eq!(
        ids,
        vec![
            &json!(format!("centreon-downtime-13-0-199-{}", T - 60)),
            &json!(format!("centreon-downtime-12-34-200-{}", T - 60)),
        ],
        "the good one is created: {:?}",
        bulk_requests_of(&st)
    );
    drop(st);
    // The first may go alone or with the others, as the sender finds
    // them queued; the refused one and the good one share a request.
    let posts = bulk_requests(&lab);
    let shared = posts
        .iter()
        .position(|(m, n, status)| m == "POST" && *n >= 2 && *status == 207)
        .unwrap_or_else(|| panic!("no request with both: {posts:?}"));
    assert_eq!(
        posts.len(),
        shared + 1,
        "the refused one is not sent again: {posts:?}"
    );
    assert_eq!(mux.unacked(), 0, "all handled: {}", lab.log());
    let dead = std::fs::read_to_string(lab.dir.join("canopsis.deadletter.jsonl"))
        .expect("dead-letter file");
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(
        dead.contains("centreon-downtime-12-35-201")
            && dead.contains("in its own words")
            && dead.contains("invalid entity pattern"),
        "{dead}"
    );
    out.close();
}

/// The requests the mock received on `path`: method and status.
fn requests_on(lab: &Lab, path: &str) -> Vec<(String, u16)> {
    lab.mock
        .state()
        .requests
        .iter()
        .filter(|r| r.path == path)
        .map(|r| (r.method.clone(), r.status))
        .collect()
}

/// Events of downtimes that start, then of the same ones ending.
fn starts_then_ends(dts: &[Downtime], bbdo: Bbdo) -> (Vec<Event>, Vec<Event>) {
    let starts = dts.iter().map(|d| d.event(bbdo)).collect();
    let ends = dts
        .iter()
        .flat_map(|d| d.life(T + 100, false)[2..].to_vec())
        .map(|d| d.event(bbdo))
        .collect();
    (starts, ends)
}

/// Delivers `events`, at most 20 s: on a connector that never gets there,
/// the test fails rather than waits.
fn deliver_soon(out: &mut Output, events: Vec<Event>) -> Muxer {
    let mut mux = Muxer::new();
    for e in events {
        mux.push(e);
    }
    assert!(
        drain(out, &mut mux, Duration::from_secs(20)),
        "{} events never acknowledged",
        mux.unacked()
    );
    mux
}

/// Delivers the starts of `dts`, a pbehavior each, then their ends, and
/// closes `out`: no pbehavior is left.
fn start_and_end_each(lab: &Lab, mut out: Output, dts: &[Downtime]) {
    let (starts, ends) = starts_then_ends(dts, Bbdo::V3);
    deliver_soon(&mut out, starts);
    assert_eq!(lab.mock.state().pbehaviors.len(), dts.len());
    deliver_soon(&mut out, ends);
    out.close();
    assert!(lab.mock.state().pbehaviors.is_empty());
}

/// The log line saying a route is missing and where downtimes go
/// instead, which must be said once however many lanes learn it.
fn the_missing_route_line(lab: &Lab) -> String {
    let log = lab.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("is not a route of this Canopsis"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    lines[0].to_string()
}

/// As the newest Lua connector, downtimes go to the bulk route unless
/// told otherwise.
#[test]
fn the_default_route_is_the_bulk_route() {
    let lab = Lab::new("default-route");
    let out = lab.open(lab.params(&[]), Bbdo::V3);
    start_and_end_each(&lab, out, &[Downtime::started(7, 12, 34, T, T + 3600)]);
    assert_eq!(
        requests_on(&lab, BULK),
        vec![("POST".into(), 207), ("DELETE".into(), 207)]
    );
    assert!(requests_on(&lab, SINGLE).is_empty());
}

/// A Canopsis without the bulk route (404): the single route by itself,
/// said once in the log however many lanes learn it, and nothing lost.
#[test]
fn a_canopsis_without_the_bulk_route_gets_the_single_route() {
    let lab = Lab::new("no-bulk");
    lab.mock.state().missing_routes.push(BULK.into());
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    let dts: Vec<Downtime> = (0..8)
        .map(|i| Downtime::started(100 + i, 12, 34 + i % 2, T + i, T + 3600))
        .collect();
    let (starts, ends) = starts_then_ends(&dts, Bbdo::V3);
    deliver_soon(&mut out, starts);
    {
        let st = lab.mock.state();
        assert_eq!(st.pbehaviors.len(), 8);
        assert_eq!(st.comments.len(), 8);
    }
    deliver_soon(&mut out, ends);
    out.close();
    assert!(lab.mock.state().pbehaviors.is_empty());
    let line = the_missing_route_line(&lab);
    assert!(
        line.contains("/api/v4/bulk/pbehaviors")
            && line.contains("downtimes go through /api/v4/pbehaviors"),
        "{line}"
    );
    let single = requests_on(&lab, SINGLE);
    assert_eq!(
        single
            .iter()
            .filter(|(m, s)| m == "POST" && *s == 201)
            .count(),
        8
    );
    assert_eq!(
        single
            .iter()
            .filter(|(m, s)| m == "DELETE" && *s == 204)
            .count(),
        8
    );
}

/// `SCHEDULE_HOST_SVC_DOWNTIME` through the connector route: the host's
/// downtime and its services' (same window, comment, author) are one
/// pbehavior; each end takes its entity out, and the last one removes it.
#[test]
fn a_host_downtime_with_its_services_is_one_connector_pbehavior() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::new("connector-pbh");
        let mut out = lab.open(lab.params(&[route(CONNECTOR)]), bbdo);
        let host = Downtime::started(50, 12, 0, T, T + 3600);
        let ping = Downtime::started(51, 12, 34, T, T + 3600);
        let disk = Downtime::started(52, 12, 35, T, T + 3600);
        let mut other = Downtime::started(53, 13, 0, T, T + 3600);
        other.comment = "Disk change".into();
        let all = [host.clone(), ping.clone(), disk.clone(), other.clone()];
        let (starts, _) = starts_then_ends(&all, bbdo);
        deliver_soon(&mut out, starts);
        let maintenance = lab.maintenance_id();
        {
            let st = lab.mock.state();
            assert_eq!(st.pbehaviors.len(), 2, "{bbdo:?}: {:?}", st.pbehaviors);
            let p = st
                .pbehaviors
                .iter()
                .find(|p| p["comments"][0]["message"] == "Planned maintenance")
                .expect("the host's pbehavior");
            let mut entities: Vec<&str> = p["entities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap())
                .collect();
            entities.sort();
            assert_eq!(entities, vec!["Disk /var/host-a", "Ping/host-a", "host-a"]);
            assert_eq!(p["origin"], "centreon-stream");
            assert_eq!(p["comments"][0]["origin"], "centreon-stream");
            assert_eq!(
                (p["tstart"].as_i64(), p["tstop"].as_i64()),
                (Some(T), Some(T + 3600))
            );
            assert_eq!(p["type"]["_id"], maintenance);
            assert!(p["name"]
                .as_str()
                .unwrap()
                .starts_with("centreon-downtimes-"));
            let b = st
                .pbehaviors
                .iter()
                .find(|p| p["comments"][0]["message"] == "Disk change")
                .expect("host-b's own pbehavior");
            assert_eq!(b["entities"], json!(["host-b"]));
            assert!(
                st.requests
                    .iter()
                    .all(|r| r.path != "/api/v4/pbehavior-comments"),
                "the comment goes inline"
            );
        }
        // The host's downtime ends first: its services' stay.
        let (_, ends) = starts_then_ends(std::slice::from_ref(&host), bbdo);
        deliver_soon(&mut out, ends);
        {
            let st = lab.mock.state();
            assert_eq!(st.pbehaviors.len(), 2);
            let p = st
                .pbehaviors
                .iter()
                .find(|p| p["comments"][0]["message"] == "Planned maintenance")
                .expect("still there");
            assert_eq!(p["entities"].as_array().unwrap().len(), 2, "{p}");
            assert_eq!(
                p["entity_pattern"][0][0]["cond"]["value"]
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
        }
        let (_, ends) = starts_then_ends(&[ping, disk, other], bbdo);
        deliver_soon(&mut out, ends);
        out.close();
        assert!(lab.mock.state().pbehaviors.is_empty(), "{bbdo:?}");
        let calls = requests_on(&lab, CONNECTOR);
        assert!(calls.iter().all(|(_, s)| *s == 207), "{calls:?}");
        assert!(requests_on(&lab, SINGLE).is_empty(), "{bbdo:?}");
    }
}

/// Canopsis older than 24.04 has no connector route: refused at start
/// with one line, and downtimes take the bulk route.
#[test]
fn the_connector_route_is_refused_on_an_older_canopsis() {
    let lab = Lab::new("connector-old");
    lab.mock.state().version = "23.10.4".into();
    let mut out = lab.open(lab.params(&[route(CONNECTOR)]), Bbdo::V3);
    let said = |log: &str| {
        log.lines()
            .filter(|l| l.contains("needs Canopsis 24.04 or later"))
            .count()
    };
    // At start, before any downtime (within 20 s on a loaded machine).
    let mut idle = Muxer::new();
    for _ in 0..100 {
        if said(&lab.log()) > 0 {
            break;
        }
        run_for(&mut out, &mut idle, Duration::from_millis(200));
    }
    assert_eq!(said(&lab.log()), 1, "{}", lab.log());
    assert!(lab.log().contains("and this one is 23.10.4 (app-info): refused; downtimes go through /api/v4/bulk/pbehaviors instead"));
    let dts: Vec<Downtime> = (0..4)
        .map(|i| Downtime::started(60 + i, 12, 34, T, T + 3600))
        .collect();
    start_and_end_each(&lab, out, &dts);
    assert!(requests_on(&lab, CONNECTOR).is_empty());
    assert_eq!(said(&lab.log()), 1);
}

/// A downtime that began under the single route (this connector's or
/// the Lua one's name) is still removed when it ends under the connector
/// route: its key is unknown there (404), so it is deleted by name
/// (`_id`), as the bulk route does it.
#[test]
fn a_downtime_begun_under_another_route_ends_under_the_connector_route() {
    let lab = Lab::new("connector-switch");
    let ours = Downtime::started(70, 12, 34, T, T + 3600);
    let luas = Downtime::started(71, 12, 35, T, T + 3600);
    let mut out = lab.open(lab.params(&[route(SINGLE)]), Bbdo::V3);
    deliver_soon(&mut out, vec![ours.event(Bbdo::V3)]);
    out.close();
    let legacy = format!("centreon-downtime-71-{}", T - 60);
    lab.mock.state().pbehaviors.push(json!({
        "_id": legacy, "name": legacy, "enabled": true, "tstart": T, "tstop": T + 3600,
        "entity_pattern": pattern("Disk /var/host-a"), "comments": [],
    }));
    assert_eq!(lab.mock.state().pbehaviors.len(), 2);
    let mut out = lab.open(lab.params(&[route(CONNECTOR)]), Bbdo::V3);
    let (_, ends) = starts_then_ends(&[ours, luas], Bbdo::V3);
    deliver_soon(&mut out, ends);
    out.close();
    assert!(
        lab.mock.state().pbehaviors.is_empty(),
        "{:?}",
        lab.mock.state().pbehaviors
    );
    // Each DELETE: its route and what Canopsis answered each item.
    let dels: Vec<(String, Vec<(u64, Value)>)> = lab
        .mock
        .state()
        .requests
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| {
            let answer: Value = serde_json::from_str(&r.answer).unwrap();
            let items = answer.as_array().unwrap().iter();
            let items = items.map(|a| (a["status"].as_u64().unwrap(), a["item"].clone()));
            (r.path.clone(), items.collect())
        })
        .collect();
    let ours = format!("centreon-downtime-12-34-70-{}", T - 60);
    // The two ends may go in one request or two (the lane gathers what
    // is queued when it is free): judge the items, not the requests.
    let items_on = |route: &str| -> Vec<(u64, Value)> {
        dels.iter()
            .filter(|(path, _)| path == route)
            .flat_map(|(_, items)| items.iter().cloned())
            .collect()
    };
    let on_connector = items_on(CONNECTOR);
    assert_eq!(on_connector.len(), 2, "{dels:?}");
    assert!(on_connector.iter().all(|(s, _)| *s == 404), "{dels:?}");
    let on_bulk = items_on(BULK);
    let at = |item: &(u64, Value)| on_bulk.iter().position(|i| i == item);
    assert!(at(&(200, json!({ "_id": ours }))).is_some(), "{dels:?}");
    let under_ours = at(&(
        404,
        json!({ "_id": format!("centreon-downtime-12-35-71-{}", T - 60) }),
    ));
    let under_luas = at(&(200, json!({ "_id": legacy })));
    assert!(
        matches!((under_ours, under_luas), (Some(a), Some(b)) if a < b),
        "then under the Lua connector's name: {dels:?}"
    );
}

/// Every bulk route answers 207 item by item; a start sent again (a
/// replay) and the end of a pbehavior that is not there are done, not
/// refused, whichever bulk route carries them.
#[test]
fn bulk_items_are_idempotent_on_every_bulk_route() {
    for path in [BULK, CONNECTOR] {
        let lab = Lab::new("bulk-idempotent");
        let mut out = lab.open(lab.params(&[route(path)]), Bbdo::V3);
        let dt = Downtime::started(80, 12, 34, T, T + 3600);
        // Another window: not the key of `dt`'s pbehavior either.
        let unknown = Downtime::started(81, 12, 35, T, T + 60).ended(T + 5);
        let mux = deliver_soon(&mut out, vec![dt.event(Bbdo::V3)]);
        assert_eq!(mux.acked, 1);
        let mux = deliver_soon(&mut out, vec![dt.event(Bbdo::V3), unknown.event(Bbdo::V3)]);
        assert_eq!(mux.acked, 2, "{path}");
        out.close();
        let st = lab.mock.state();
        assert_eq!(st.pbehaviors.len(), 1, "{path}: {:?}", st.pbehaviors);
        assert_eq!(
            st.pbehaviors[0]["comments"].as_array().map(Vec::len),
            Some(1),
            "{path}: one comment"
        );
        // What Canopsis answered each item of the second delivery: the
        // replay (a duplicate `_id` on the bulk route; joined again on the
        // connector route) and the unknown end (404).
        let items: Vec<(String, Value)> = st
            .requests
            .iter()
            .filter(|r| r.path == path)
            .skip(1)
            .flat_map(|r| {
                let answer: Value = serde_json::from_str(&r.answer).unwrap();
                answer
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| (r.method.clone(), a.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        drop(st);
        let status = |method: &str| -> Vec<u64> {
            items
                .iter()
                .filter(|(m, _)| m == method)
                .map(|(_, a)| a["status"].as_u64().unwrap())
                .collect()
        };
        if path == BULK {
            assert_eq!(status("POST"), vec![400], "{items:?}");
            assert!(
                items[0].1["errors"]["_id"] == "ID already exists.",
                "{items:?}"
            );
            // Not under our name, then not under the Lua connector's.
            assert_eq!(status("DELETE"), vec![404, 404], "{items:?}");
        } else {
            assert_eq!(status("POST"), vec![200], "{items:?}");
            assert_eq!(status("DELETE"), vec![404], "{items:?}");
            assert_eq!(
                requests_on(&lab, BULK),
                vec![("DELETE".into(), 207), ("DELETE".into(), 207)],
                "then by name, ours and the Lua connector's"
            );
        }
        assert!(!lab.log().contains("dead-letter"), "{path}");
        assert!(!lab.log().contains("refused"), "{path}: {}", lab.log());
    }
}

/// Back from the connector route to another: a downtime that began there
/// is under none of the names the other routes give, so its entity is
/// taken out of the connector route's pbehavior, which goes with its last
/// entity.
#[test]
fn a_downtime_begun_under_the_connector_route_ends_under_another() {
    for back in [BULK, SINGLE] {
        let lab = Lab::new("connector-back");
        let host = Downtime::started(90, 12, 0, T, T + 3600);
        let ping = Downtime::started(91, 12, 34, T, T + 3600);
        let (starts, _) = starts_then_ends(&[host.clone(), ping.clone()], Bbdo::V3);
        let mut out = lab.open(lab.params(&[route(CONNECTOR)]), Bbdo::V3);
        deliver_soon(&mut out, starts);
        out.close();
        assert_eq!(lab.mock.state().pbehaviors.len(), 1);
        let mut out = lab.open(lab.params(&[route(back)]), Bbdo::V3);
        let (_, ends) = starts_then_ends(&[host], Bbdo::V3);
        deliver_soon(&mut out, ends);
        assert_eq!(
            lab.mock.state().pbehaviors[0]["entities"],
            json!(["Ping/host-a"]),
            "{back}: the host is out, its service stays"
        );
        let (_, ends) = starts_then_ends(&[ping], Bbdo::V3);
        deliver_soon(&mut out, ends);
        out.close();
        assert!(lab.mock.state().pbehaviors.is_empty(), "{back}");
        assert!(
            lab.log().contains("(connector route)")
                || lab
                    .log()
                    .contains("taken out of its connector route pbehavior"),
            "{back}"
        );
    }
}

/// A Canopsis whose version does not tell (`development`) and that has no
/// connector route: its 404 sends downtimes to the bulk route, said once.
#[test]
fn a_connector_route_answered_404_falls_back_to_the_bulk_route() {
    let lab = Lab::new("connector-404");
    {
        let mut st = lab.mock.state();
        st.version = "development".into();
        st.missing_routes.push(CONNECTOR.into());
    }
    let out = lab.open(lab.params(&[route(CONNECTOR)]), Bbdo::V3);
    let dts: Vec<Downtime> = (0..4)
        .map(|i| Downtime::started(95 + i, 12, 34 + i % 2, T, T + 3600))
        .collect();
    start_and_end_each(&lab, out, &dts);
    let line = the_missing_route_line(&lab);
    assert!(
        line.contains("downtimes go through /api/v4/bulk/pbehaviors from now on"),
        "{line}"
    );
    assert!(requests_on(&lab, CONNECTOR).iter().all(|(_, s)| *s == 404));
    let bulk = requests_on(&lab, BULK);
    assert!(bulk.iter().any(|(m, _)| m == "POST"), "{bulk:?}");
    assert!(bulk.iter().all(|(_, s)| *s == 207), "{bulk:?}");
}
