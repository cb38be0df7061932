//! Custom formats (`format_file`) and BAM business activities, end to end:
//! the emulated broker feeds events to the connector, which sends what the
//! templates make of them to the mock Canopsis. Expected JSON is worked
//! out by hand from the templating contract, not from the code.

use canopsis_harness::broker::{Muxer, Param};
use canopsis_harness::events::{Ack, Ba, Bbdo, Status};
use canopsis_harness::{deliver, drain, text, Lab};
use serde_json::{json, Value};
use std::time::Duration;

const T: i64 = 1_763_000_000;

fn write_format(lab: &Lab, template: &Value) -> String {
    let path = lab.dir.join("format.json");
    std::fs::write(&path, serde_json::to_vec_pretty(template).unwrap()).unwrap();
    path.display().to_string()
}

/// The Lua documentation's own example (templating.md): the Splunk host
/// template and the ba_status one. Neither makes a valid Canopsis event,
/// so the mock refuses them; what matters is what it received.
#[test]
fn the_lua_documentation_examples_send_what_the_library_sends() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::new("doc-examples");
        let format = write_format(
            &lab,
            &json!({
              "neb_host_status": {
                "event_type": "host",
                "state": "{state}",
                "state_type": "{state_type}",
                "hostname": "{cache.host.name}",
                "outout": "{output_scshort}",
                "MY_HOST_ID": "{host_id}",
                "IP": "{cache.host.address}"
              },
              "bam_ba_status": {
                "event_type": "BA",
                "ba_name": "{cache.ba.ba_name}",
                "ba_id": "{ba_id}",
                "state": "{state}"
              }
            }),
        );
        let mut out = lab.open(
            lab.params(&[
                ("format_file", text(&format)),
                ("accepted_categories", text("neb,bam")),
                ("accepted_elements", text("host_status,ba_status")),
            ]),
            bbdo,
        );
        let mut host = Status::host(12, 1, T);
        host.output = "DOWN - unreachable".into();
        let mut mux = Muxer::new();
        mux.push(host.event(bbdo));
        mux.push(Ba::new(5, 1, T).event());
        // Without a connector, Canopsis would refuse them every time
        // (§2.2): they are dead-lettered before sending, as the library
        // sends them, with the rule named, and acknowledged.
        assert!(drain(&mut out, &mut mux, Duration::from_secs(20)));
        assert!(lab.posted().is_empty(), "{:?}", lab.posted());
        let mut kept: Vec<Value> =
            std::fs::read_to_string(lab.dir.join("canopsis.deadletter.jsonl"))
                .expect("dead-letter file")
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        // Two lanes: in either order.
        kept.sort_by_key(|k| k["event"]["event_type"] != "host");
        assert_eq!(
            kept.iter().map(|k| k["event"].clone()).collect::<Vec<_>>(),
            [
                json!({"event_type":"host","state":"1","state_type":"1","hostname":"host-a",
                       "outout":"DOWN - unreachable","MY_HOST_ID":"12","IP":"192.0.2.10"}),
                json!({"event_type":"BA","ba_name":"Web shop","ba_id":"5","state":"1"}),
            ],
            "{bbdo:?}"
        );
        assert!(kept
            .iter()
            .all(|k| k["reason"].as_str().unwrap().contains("connector must be")));
        let log = lab.log();
        assert!(
            log.contains("neb_host_status") && log.contains("'connector'"),
            "the template that cannot make a Canopsis event is named at init: {log}"
        );
        out.close();
    }
}

/// Every macro kind and every flag, in keys and values, nested objects and
/// arrays, under both BBDO versions, with and without typed values.
#[test]
fn a_template_using_every_macro_kind_and_flag() {
    let template = json!({
      "neb_service_status": {
        "event_type": "check",
        "connector": "centreon",
        "connector_name": "{cache.instance.name}",
        "component": "{cache.host.name}",
        "resource": "{cache.service.description}",
        "source_type": "resource",
        "state": "{state}",
        "timestamp": "{last_check}",
        "output": "{output_scshort}",
        "long_output": "{long_output}",
        "state_name": "{state_scstate}",
        "hard": "{state_type_sctype}",
        "checked_at": "{last_check_scdate}",
        "sev": "{cache.severity.service}",
        "hsev": "{cache.severity.host}",
        "hostgroups": "{groups(hg,table,.*)}",
        "dc": "{groups(hg,table,^dc%d$)}",
        "sg": "{groups(sg,inline,^net)}",
        "latency": "{cache.host.latency}",
        "attempts": "{cache.host.max_check_attempts_scnumber}",
        "ids": "{host_id}/{service_id}",
        "{cache.host.name}_tag": "x",
        "flapping": "{flapping}",
        "acked": "{acknowledged_scstring}",
        "nested": {"list": ["{service_id}", 1, null, {"empty": {}}]},
        "poller_id": "{cache.instance.id}"
      }
    });
    for typed in [false, true] {
        for bbdo in [Bbdo::V2, Bbdo::V3] {
            let lab = Lab::new("every-macro");
            let format = write_format(&lab, &template);
            let mut out = lab.open(
                lab.params(&[
                    ("format_file", text(&format)),
                    ("format_file_typed_values", Param::Num(typed as i32)),
                    ("timestamp_conversion_format", text("!%Y-%m-%d %H:%M:%S")),
                ]),
                bbdo,
            );
            let mut svc = Status::service(12, 34, 2, T);
            svc.output = "CRITICAL - 100% loss".into();
            svc.long_output = "rtmin=0\nrtmax=0".into();
            deliver(&mut out, vec![svc.event(bbdo)]);
            // BBDO 2 carries the whole text in `output`; `_scshort` keeps
            // what comes before its last newline, as the library does.
            let (short, long) = match bbdo {
                Bbdo::V2 => (
                    "CRITICAL - 100% loss\nrtmin=0",
                    "CRITICAL - 100% loss\nrtmin=0\nrtmax=0",
                ),
                Bbdo::V3 => (
                    "CRITICAL - 100% loss",
                    "CRITICAL - 100% loss\nrtmin=0\nrtmax=0",
                ),
            };
            let n = |v: Value, text: &str| if typed { v } else { json!(text) };
            let expected = json!({
                "event_type": "check",
                "connector": "centreon",
                "connector_name": "poller-1",
                "component": "host-a",
                "resource": "Ping",
                "source_type": "resource",
                "state": n(json!(2), "2"),
                "timestamp": n(json!(T), &T.to_string()),
                "output": short,
                "long_output": long,
                "state_name": "CRITICAL",
                "hard": "HARD",
                "checked_at": "2025-11-13 02:13:20",
                "sev": n(json!(5), "5"),
                "hsev": n(json!(2), "2"),
                "hostgroups": ["linux", "dc1"],
                "dc": ["dc1"],
                "sg": "network",
                "latency": n(json!(0.25), "0.25"),
                "attempts": n(json!(3), "3"),
                "ids": "12/34",
                "host-a_tag": "x",
                "flapping": "{flapping}",
                "acked": "{acknowledged_scstring}",
                "nested": {"list": [n(json!(34), "34"), 1, {"empty": []}]},
                "poller_id": n(json!(1), "1")
            });
            assert_eq!(lab.posted(), vec![expected], "typed={typed} {bbdo:?}");
            // Canopsis took it (a string state is converted by its API).
            assert_eq!(lab.mock.state().events.len(), 1);
            out.close();
        }
    }
}

/// Bad templates never take the output down: each problem is one error
/// line naming the key, the other templates work, events are acknowledged.
#[test]
fn bad_templates_are_reported_and_the_rest_works() {
    let lab = Lab::new("bad-templates");
    let format = write_format(
        &lab,
        &json!({
            "neb_host_status": {
                "event_type": "check", "connector": "c", "connector_name": "n",
                "component": "{cache.host.name}", "source_type": "component",
                "state": "{state}", "output": "{output} {cache.host.name_scfoo}",
                "groups": "{groups(hg,table,[a)}"
            },
            "neb_foo": {"a": 1},
            "storage_metric": {"a": 1},
            "neb_service_status": "text",
            "neb_acknowledgement": {}
        }),
    );
    let mut out = lab.open(lab.params(&[("format_file", text(&format))]), Bbdo::V3);
    let mut host = Status::host(12, 1, T);
    host.output = "DOWN".into();
    let mut svc = Status::service(12, 34, 2, T);
    svc.output = "CRITICAL".into();
    let mux = deliver(
        &mut out,
        vec![
            host.event(Bbdo::V3),
            svc.event(Bbdo::V3),
            Ack::new(12, 34, 2, T + 10).event(Bbdo::V3),
        ],
    );
    assert_eq!(mux.acked, 3);
    let mut got = lab.posted();
    assert_eq!(
        got.len(),
        2,
        "the acknowledgement's template is empty: muted"
    );
    // Two objects: either may arrive first.
    got.sort_by_key(|e| e.get("resource").is_some());
    assert_eq!(
        got[0],
        json!({"event_type":"check","connector":"c","connector_name":"n","component":"host-a",
               "source_type":"component","state":"1","output":"DOWN {cache.host.name_scfoo}",
               "groups":"{groups(hg,table,[a)}"})
    );
    assert_eq!(
        got[1]["resource"], "Ping",
        "built-in format for service_status"
    );
    let log = lab.log();
    for what in [
        "_scfoo",
        "[a",
        "neb_foo",
        "storage_metric",
        "neb_service_status",
    ] {
        assert!(
            log.lines().any(|l| l.contains("ERROR") && l.contains(what)),
            "no error line about {what}: {log}"
        );
    }
    out.close();
}

#[test]
fn an_unreadable_format_file_leaves_the_built_in_format() {
    for (broken, what) in [(true, "not valid JSON"), (false, "cannot read")] {
        let lab = Lab::new("no-format");
        let path = match broken {
            true => {
                let bad = lab.dir.join("broken.json");
                std::fs::write(&bad, "{\"neb_host_status\": ").unwrap();
                bad.display().to_string()
            }
            false => "/nonexistent/format.json".into(),
        };
        let mut out = lab.open(lab.params(&[("format_file", text(&path))]), Bbdo::V3);
        let mux = deliver(&mut out, vec![Status::host(12, 1, T).event(Bbdo::V3)]);
        assert_eq!(mux.acked, 1);
        out.close();
        let got = lab.posted();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (&got[0]["component"], &got[0]["state"]),
            (&json!("host-a"), &json!(3))
        );
        let log = lab.log();
        assert!(
            log.lines().any(|l| l.contains("ERROR") && l.contains(what)),
            "{log}"
        );
    }
}

fn ba_template() -> Value {
    json!({"bam_ba_status": {
        "event_type": "check", "connector": "centreon-bam", "connector_name": "central",
        "component": "{cache.ba.ba_name}", "source_type": "component", "state": "{state}",
        "output": "{output}", "views": "{groups(bv,inline,)}", "id": "{cache.ba.ba_id}",
        "state_name": "{state_scstate}"
    }})
}

/// BAs go to the event route through their template; business views are
/// those of the BA (the library looks them up by a missing host id), and a
/// BA broker does not know is skipped, not a crash. Both element ids are
/// taken (broker 23.10+ sends 6:19 even with BBDO 2).
#[test]
fn ba_status_events_with_business_view_filters() {
    let lab = Lab::new("bam");
    let format = write_format(&lab, &ba_template());
    let mut out = lab.open(
        lab.params(&[
            ("format_file", text(&format)),
            ("accepted_categories", text("neb,bam")),
            (
                "accepted_elements",
                text("host_status,service_status,ba_status"),
            ),
            ("accepted_bvs", text("Business")),
        ]),
        Bbdo::V2,
    );
    let mux = deliver(
        &mut out,
        vec![
            Ba::new(5, 2, T).event(),    // in view Business
            Ba::new(6, 2, T).event(),    // in view Internal: rejected
            Ba::new(5, 3, T).event_v2(), // UNKNOWN: not in ba_status
            Ba::new(99, 2, T).event(),   // unknown to broker's cache
            Ba::new(5, 0, T + 60).event_v2(),
        ],
    );
    assert_eq!(mux.acked, 5);
    assert_eq!(
        lab.posted(),
        vec![
            json!({"event_type":"check","connector":"centreon-bam","connector_name":"central",
                   "component":"Web shop","source_type":"component","state":"2",
                   "output":"BA 5 state 2","views":"Business","id":"5","state_name":"CRITICAL"}),
            json!({"event_type":"check","connector":"centreon-bam","connector_name":"central",
                   "component":"Web shop","source_type":"component","state":"0",
                   "output":"BA 5 state 0","views":"Business","id":"5","state_name":"OK"}),
        ]
    );
    out.close();
}

#[test]
fn without_a_template_ba_status_is_dropped_with_a_reason() {
    let lab = Lab::new("bam-no-template");
    let mut out = lab.open(
        lab.params(&[
            ("accepted_categories", text("neb,bam")),
            ("accepted_elements", text("ba_status")),
        ]),
        Bbdo::V3,
    );
    assert!(out.passes_filter_for(6, 19), "filter() takes bam ba_status");
    let mux = deliver(&mut out, vec![Ba::new(5, 2, T).event()]);
    assert_eq!(mux.acked, 1);
    assert!(lab.posted().is_empty());
    let log = lab.log();
    assert!(log.contains("no bam_ba_status template"), "{log}");
    out.close();
}

/// A `neb_downtime` template shapes the pbehavior; the connector keeps its
/// lifecycle: created when the downtime starts (its `comment` posted to
/// the comment route), deleted by `_id` when it ends. Without an `_id`
/// in the template, the connector's name is the `_id`.
#[test]
fn a_downtime_template_shapes_the_pbehavior_and_its_end_removes_it() {
    use canopsis_harness::events::Downtime;
    for bulk in [false, true] {
        let lab = Lab::new("dt-template");
        let maintenance = lab.maintenance_id();
        let format = write_format(
            &lab,
            &json!({"neb_downtime": {
                "name": "Maintenance {cache.host.name} #{internal_id}",
                "author": "{author}", "enabled": true, "reason": "r-default", "type": maintenance,
                "rrule": "", "tstart": "{start_time}", "tstop": "{end_time}",
                "entity_pattern": [[{"field": "_id", "cond": {"type": "eq",
                    "value": "{cache.service.description}/{cache.host.name}"}}]],
                "comment": "{comment_data}"
            }}),
        );
        let route = if bulk {
            "/api/v4/bulk/pbehaviors"
        } else {
            "/api/v4/pbehaviors"
        };
        let mut out = lab.open(
            lab.params(&[
                ("format_file", text(&format)),
                ("format_file_typed_values", Param::Num(1)),
                ("canopsis_downtime_route", text(route)),
            ]),
            Bbdo::V3,
        );
        let dt = Downtime::started(7, 12, 34, T, T + 3600);
        deliver(&mut out, vec![dt.event(Bbdo::V3)]);
        let id = format!("centreon-downtime-12-34-7-{}", T - 60);
        {
            let st = lab.mock.state();
            assert_eq!(st.pbehaviors.len(), 1, "bulk={bulk}");
            let p = &st.pbehaviors[0];
            assert_eq!(p["_id"], id.as_str());
            assert_eq!(p["name"], "Maintenance host-a #7");
            assert_eq!(
                (p["tstart"].as_i64(), p["tstop"].as_i64()),
                (Some(T), Some(T + 3600))
            );
            assert_eq!(p["entity_pattern"][0][0]["cond"]["value"], "Ping/host-a");
            assert_eq!(p["comments"][0]["message"], "Planned maintenance");
        }
        let ends: Vec<_> = dt.life(T + 100, false)[2..]
            .iter()
            .map(|d| d.event(Bbdo::V3))
            .collect();
        let mux = deliver(&mut out, ends);
        assert_eq!(mux.acked, 2);
        assert!(lab.mock.state().pbehaviors.is_empty(), "bulk={bulk}");
        out.close();
    }
}
