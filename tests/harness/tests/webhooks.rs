//! The webhook output end to end: the built module, loaded by the broker
//! emulator through `webhook-native-events.lua`, posting to the mock's
//! Mattermost incoming webhook and Logstash-like input on 127.0.0.1.

use canopsis_harness::broker::{Muxer, Param};
use canopsis_harness::events::{Ack, Bbdo, Downtime, Event, Status};
use canopsis_harness::receivers::HOOK_ID;
use canopsis_harness::{deliver, drain, run_for, text, Lab};
use serde_json::{json, Value};
use std::time::Duration;

const T: i64 = 1_763_000_000;

/// A host going DOWN, its service CRITICAL, the service acknowledged and a
/// downtime on the host that starts and ends.
fn sample(bbdo: Bbdo) -> Vec<Event> {
    let mut host = Status::host(12, 1, T);
    host.output = "DOWN - unreachable".into();
    let mut svc = Status::service(12, 34, 2, T);
    svc.output = "CRITICAL - 100% loss".into();
    let mut ack = Ack::new(12, 34, 2, T + 10);
    ack.comment = "Looking into it".into();
    let mut events = vec![host.event(bbdo), svc.event(bbdo), ack.event(bbdo)];
    let dt = Downtime::started(7, 12, 0, T + 20, T + 3620);
    events.extend(dt.life(T + 3620, false).iter().map(|d| d.event(bbdo)));
    events
}

/// What a receiver gets for [`sample`], written out by hand: the Canopsis
/// events (as the Canopsis output sends them) with their kind, and the
/// downtime's start and end.
fn expected_documents() -> Vec<Value> {
    vec![
        json!({"event_type":"check","source_type":"component","connector":"centreon-stream","connector_name":"poller-1",
               "component":"host-a","output":"DOWN - unreachable","long_output":"DOWN - unreachable","state":3,"timestamp":T,
               "hostgroups":["linux","dc1"],"notes_url":"https://wiki/host-a","action_url":"","host_id":"12",
               "event_kind":"host_status"}),
        json!({"event_type":"check","source_type":"resource","connector":"centreon-stream","connector_name":"poller-1",
               "component":"host-a","resource":"Ping","output":"CRITICAL - 100% loss","long_output":"CRITICAL - 100% loss",
               "state":3,"timestamp":T,"hostgroups":["linux","dc1"],"servicegroups":["network"],"notes_url":"",
               "action_url":"https://act/ping","host_id":"12","service_id":"34","event_kind":"service_status"}),
        json!({"event_type":"ack","source_type":"resource","connector":"centreon-stream","connector_name":"poller-1",
               "component":"host-a","resource":"Ping","author":"admin","output":"Looking into it","long_output":"Looking into it",
               "state":3,"timestamp":T + 10,"event_kind":"acknowledgement","host_id":"12","service_id":"34"}),
        json!({"event_type":"downtime","phase":"start","connector":"centreon-stream","component":"host-a","author":"admin",
               "output":"Planned maintenance","start_time":T + 20,"end_time":T + 3620,"timestamp":T + 20,"downtime_id":7,
               "event_kind":"downtime","host_id":"12"}),
        json!({"event_type":"downtime","phase":"end","connector":"centreon-stream","component":"host-a","author":"admin",
               "output":"Planned maintenance","start_time":T + 20,"end_time":T + 3620,"timestamp":T + 3620,"downtime_id":7,
               "event_kind":"downtime","host_id":"12"}),
    ]
}

/// Documents in a stable order: by object, each object's in arrival order
/// (objects go through separate lanes).
fn by_object(mut docs: Vec<Value>) -> Vec<Value> {
    docs.sort_by_key(|d| (d["component"].to_string(), d["resource"].to_string()));
    docs
}

#[test]
fn json_and_ndjson_receivers_get_one_document_per_event_with_the_headers_set() {
    for format in ["json", "ndjson"] {
        for bbdo in [Bbdo::V2, Bbdo::V3] {
            let lab = Lab::webhook(format);
            lab.mock.state().receivers.logstash_auth = Some("Bearer t0k3n-xyz".into());
            let params = lab.webhook_params(
                format,
                &[(
                    "http_headers",
                    text("Authorization: Bearer t0k3n-xyz; X-Team: noc"),
                )],
            );
            let mut out = lab.open(params, bbdo);
            deliver(&mut out, sample(bbdo));
            drop(out);
            let st = lab.mock.state();
            let docs = st.receivers.documents.clone();
            assert_eq!(
                by_object(docs),
                by_object(expected_documents()),
                "{format} {bbdo:?}"
            );
            let ct = if format == "json" { "[" } else { "{" };
            assert!(
                st.requests.iter().all(|r| r.body.starts_with(ct)),
                "{format}: bodies framed as {ct}…"
            );
            drop(st);
            let log = lab.log();
            assert!(
                !log.contains("t0k3n-xyz"),
                "a header's value reached the log"
            );
            assert!(log.contains("one JSON"), "{log}");
        }
    }
}

/// A `Content-Type` set in `http_headers` is the only one sent: a
/// receiver reads the first of two (Go's `Header.Get`, Netty's `get`), so
/// the one the administrator set would be ignored.
#[test]
fn a_content_type_from_http_headers_is_the_only_one_the_receiver_gets() {
    let lab = Lab::webhook("ndjson");
    let mine = "application/x-ndjson; charset=utf-8";
    let params = lab.webhook_params(
        "ndjson",
        &[("http_headers", text(&format!("content-type: {mine}")))],
    );
    let mut out = lab.open(params, Bbdo::V3);
    deliver(&mut out, sample(Bbdo::V3));
    drop(out);
    let st = lab.mock.state();
    assert!(!st.receivers.content_types.is_empty(), "no request");
    for seen in &st.receivers.content_types {
        assert_eq!(seen, &[mine.to_string()], "Content-Type headers sent");
    }
    assert_eq!(
        by_object(st.receivers.documents.clone()),
        by_object(expected_documents())
    );
}

#[test]
fn mattermost_gets_a_message_per_event_in_its_own_words() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::webhook("mattermost");
        let params = lab.webhook_params(
            "mattermost",
            &[
                ("username", text("Centreon")),
                ("channel", text("noc")),
                ("max_messages_per_second", Param::Num(50)),
            ],
        );
        let mut out = lab.open(params, bbdo);
        deliver(&mut out, sample(bbdo));
        drop(out);
        let posts = lab.mock.state().receivers.posts.clone();
        let titles: Vec<&str> = posts
            .iter()
            .map(|p| p["attachments"][0]["title"].as_str().unwrap_or(""))
            .collect();
        // One lane: Mattermost shows them in broker's order.
        assert_eq!(
            titles,
            [
                "host-a is DOWN",
                "host-a / Ping is CRITICAL",
                "host-a / Ping acknowledged by admin",
                &format!("Downtime on host-a by admin until {}", local_time(T + 3620)),
                "Downtime on host-a ended",
            ],
            "{bbdo:?}"
        );
        for p in &posts {
            assert_eq!(
                (&p["username"], &p["channel"]),
                (&json!("Centreon"), &json!("noc"))
            );
        }
        let host = &posts[0]["attachments"][0];
        assert_eq!(host["color"], "#e00b3d");
        assert_eq!(host["text"], "DOWN - unreachable");
        assert_eq!(host["title_link"], "https://wiki/host-a");
        let svc = &posts[1]["attachments"][0];
        let links = svc["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["title"] == "Links")
            .expect("links field");
        assert_eq!(links["value"], "[Action](https://act/ping)");
        assert_eq!(posts[2]["attachments"][0]["text"], "Looking into it");
        let log = lab.log();
        assert!(!log.contains(HOOK_ID), "the hook's key reached the log");
        assert!(log.contains("/hooks/***"), "{log}");
    }
}

/// `t` as the connector's default `_scdate` format writes it (local time).
fn local_time(t: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-d", &format!("@{t}"), "+%Y-%m-%d %H:%M:%S"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_flood_becomes_a_summary_within_the_rate_and_nothing_is_acknowledged_before() {
    let lab = Lab::webhook("flood");
    // The connector paces at 3 a second under the mock's limit of 4, so a
    // request delayed on a loaded machine does not make the next ones
    // arrive too close together.
    lab.mock.state().receivers.per_second = Some(4);
    let params = lab.webhook_params(
        "mattermost",
        &[
            ("max_messages_per_second", Param::Num(3)),
            ("max_waiting_messages", Param::Num(5)),
            ("skip_anon_events", Param::Num(0)),
        ],
    );
    let mut out = lab.open(params, Bbdo::V3);
    let mut mux = Muxer::new();
    for i in 0..60 {
        let state = [2, 1, 0][i % 3];
        mux.push(Status::service(12, 100 + i as i64, state, T + i as i64).event(Bbdo::V3));
    }
    // Nothing is acknowledged while messages and the summary wait.
    run_for(&mut out, &mut mux, Duration::from_millis(300));
    assert!(
        mux.unacked() > 0,
        "acknowledged before Mattermost took them"
    );
    assert!(drain(&mut out, &mut mux, Duration::from_secs(30)));
    drop(out);
    let st = lab.mock.state();
    let posts = &st.receivers.posts;
    assert_eq!(
        st.receivers.events_posted(),
        60,
        "every event is a message or counted in a summary"
    );
    assert!(posts.len() <= 12, "{} messages for 60 events", posts.len());
    let summary = posts
        .iter()
        .filter_map(|p| p["text"].as_str())
        .find(|t| t.contains("more state changes"))
        .expect("a summary");
    assert!(
        summary.contains("CRITICAL") && summary.contains("WARNING") && summary.contains("OK"),
        "{summary}"
    );
    assert!(
        st.receivers.busiest_second <= 4,
        "{}",
        st.receivers.busiest_second
    );
    assert_eq!(st.receivers.throttled, 0, "the connector kept to its pace");
}

#[test]
fn mattermost_rate_limiting_is_waited_out_without_losing_a_message() {
    let lab = Lab::webhook("throttled");
    lab.mock.state().receivers.per_second = Some(2);
    let params = lab.webhook_params(
        "mattermost",
        &[
            ("max_messages_per_second", Param::Num(20)),
            ("skip_anon_events", Param::Num(0)),
        ],
    );
    let mut out = lab.open(params, Bbdo::V3);
    let events: Vec<Event> = (0..8)
        .map(|i| Status::service(12, 200 + i, 2, T + i).event(Bbdo::V3))
        .collect();
    deliver(&mut out, events);
    drop(out);
    let st = lab.mock.state();
    assert!(
        st.receivers.throttled > 0,
        "the mock never limited the connector"
    );
    assert_eq!(st.receivers.events_posted(), 8);
    drop(st);
    assert!(lab.log().contains("HTTP 429"), "the limit is logged");
}

#[test]
fn a_wrong_hook_is_a_configuration_fault_and_nothing_is_dead_lettered() {
    let lab = Lab::webhook("badhook");
    let mut params = lab.webhook_params("mattermost", &[]);
    params.retain(|(k, _)| k != "http_server_url");
    params.push((
        "http_server_url".into(),
        text(&format!(
            "http://127.0.0.1:{}/hooks/nosuchhook",
            lab.mock.port()
        )),
    ));
    let mut out = lab.open(params, Bbdo::V3);
    let mut mux = Muxer::new();
    mux.push(Status::service(12, 34, 2, T).event(Bbdo::V3));
    run_for(&mut out, &mut mux, Duration::from_secs(1));
    assert_eq!(mux.unacked(), 1);
    drop(out);
    let log = lab.log();
    assert!(log.contains("no such incoming webhook"), "{log}");
    assert!(
        !log.contains("nosuchhook"),
        "the hook's key reached the log"
    );
    assert!(!lab.dir.join("canopsis.deadletter.jsonl").exists());
}

#[test]
fn a_refused_document_is_dead_lettered_and_the_others_delivered_through_the_spool() {
    let lab = Lab::webhook("refused");
    lab.mock.state().refuse_containing = Some("poison".into());
    let spool = lab.dir.join("spool");
    let params = lab.webhook_params(
        "ndjson",
        &[
            ("use_spool", Param::Num(1)),
            ("spool_directory", text(&spool.display().to_string())),
            ("max_buffer_size", Param::Num(10)),
            // One lane, so the refused event shares its batch with others
            // the receiver takes (alone, it is retried for 300 s first).
            ("max_requests_in_flight", Param::Num(1)),
            ("skip_anon_events", Param::Num(0)),
        ],
    );
    let mut out = lab.open(params, Bbdo::V3);
    let events: Vec<Event> = (0..10)
        .map(|i| {
            let mut s = Status::service(12, 300 + i, 2, T + i);
            s.output = if i == 4 {
                "poison".into()
            } else {
                format!("CRITICAL {i}")
            };
            s.event(Bbdo::V3)
        })
        .collect();
    deliver(&mut out, events);
    // The spool acknowledges once on disk; the receiver gets them after.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lab.mock.state().receivers.documents.len() < 9 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(out);
    let docs = lab.mock.state().receivers.documents.clone();
    let outputs: Vec<&str> = docs.iter().map(|d| d["output"].as_str().unwrap()).collect();
    assert_eq!(outputs.len(), 9, "{outputs:?}");
    assert!(!outputs.contains(&"poison"));
    let dead = std::fs::read_to_string(lab.dir.join("canopsis.deadletter.jsonl")).unwrap();
    assert!(
        dead.contains("poison") && dead.lines().count() == 1,
        "{dead}"
    );
}

#[test]
fn a_template_shapes_the_message_or_the_document_and_other_kinds_keep_theirs() {
    for format in ["mattermost", "json"] {
        let lab = Lab::webhook("templated");
        let path = lab.dir.join("format.json");
        std::fs::write(
            &path,
            json!({"neb_service_status": {
                "text": "{cache.host.name}/{cache.service.description} went {state}: {output}"
            }})
            .to_string(),
        )
        .unwrap();
        let params = lab.webhook_params(
            format,
            &[
                ("format_file", text(&path.display().to_string())),
                ("max_messages_per_second", Param::Num(50)),
            ],
        );
        let mut out = lab.open(params, Bbdo::V3);
        let mut host = Status::host(12, 1, T);
        host.output = "DOWN - unreachable".into();
        let mut svc = Status::service(12, 34, 2, T);
        svc.output = "CRITICAL - 100% loss".into();
        deliver(&mut out, vec![host.event(Bbdo::V3), svc.event(Bbdo::V3)]);
        drop(out);
        let st = lab.mock.state();
        let got = if format == "mattermost" {
            st.receivers.posts.clone()
        } else {
            st.receivers.documents.clone()
        };
        let templated = json!({"text": "host-a/Ping went 2: CRITICAL - 100% loss"});
        assert!(got.contains(&templated), "{format}: {got:?}");
        assert_eq!(got.len(), 2, "{format}: {got:?}");
        let host_kept_its_own = if format == "mattermost" {
            got.iter()
                .any(|p| p["attachments"][0]["title"] == "host-a is DOWN")
        } else {
            got.iter().any(|d| d["event_kind"] == "host_status")
        };
        assert!(host_kept_its_own, "{format}: {got:?}");
    }
}

#[test]
fn a_canopsis_and_a_webhook_output_share_the_module_not_their_state() {
    let canopsis = Lab::new("beside-canopsis");
    let hook = Lab::webhook("beside-webhook");
    let mut to_canopsis = canopsis.open(canopsis.params(&[]), Bbdo::V3);
    let mut to_logstash = hook.open(hook.webhook_params("ndjson", &[]), Bbdo::V3);
    let svc = |state| Status::service(12, 34, state, T + state).event(Bbdo::V3);
    deliver(&mut to_canopsis, vec![svc(2)]);
    deliver(&mut to_logstash, vec![svc(1), svc(2)]);
    drop((to_canopsis, to_logstash));
    let states: Vec<i64> = canopsis
        .posted()
        .iter()
        .map(|e| e["state"].as_i64().unwrap())
        .collect();
    assert_eq!(states, [3], "Canopsis got its one event");
    let docs = hook.mock.state().receivers.documents.clone();
    assert_eq!(
        docs.len(),
        2,
        "the webhook's dedup state is its own: {docs:?}"
    );
    assert!(canopsis.log().contains("/api/v4/event") && !canopsis.log().contains("/logstash"));
    assert!(hook.log().contains("/logstash") && !hook.log().contains("/api/v4/event"));
}
