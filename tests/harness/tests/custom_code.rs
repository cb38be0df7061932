//! `custom_code_file`: the user's Lua code runs on broker's thread for each
//! event the filters accepted, with the event table and its `cache` as the
//! Lua library builds them; its answer decides, and what it adds or
//! changes is what the template's macros read.

use canopsis_harness::events::{Ack, Bbdo, Status};
use canopsis_harness::{deliver, text, Lab};
use serde_json::json;

const T: i64 = 1_763_000_000;

fn file(lab: &Lab, name: &str, text: &str) -> String {
    let path = lab.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const TEMPLATE: &str = r#"{"neb_service_status": {
    "event_type": "check", "connector": "centreon", "connector_name": "{cache.instance.name}",
    "component": "{cache.host.name}", "resource": "{cache.service.description}",
    "source_type": "resource", "state": "{state}", "output": "{output}",
    "origin": "{origin}", "site": "{site}", "groups": "{groups(hg,inline,.*)}"
}}"#;

/// Written the way the library's documentation shows custom code, and
/// passing its textual gate (`return self, true|false` only).
const CODE: &str = r#"local self = ...

-- drop what comes from the lab's test service
if self.event.service_id == 35 then
  return self, false
end

if self.event.element == 29 or self.event.element == 24 then
  self.event.origin = "custom-" .. tostring(self.event.state)
  self.event.site = self.params._sc_site
  self.event.cache.host.name = string.upper(self.event.cache.host.name)
  table.insert(self.event.cache.hostgroups, {group_id = 99, group_name = "added"})
  self.sc_logger:notice("tagged " .. self.event.cache.host.name)
end

if self.event.author == "boom" then
  error("this acknowledgement is cursed")
end

return self, true
"#;

#[test]
fn custom_code_decides_and_what_it_changes_reaches_the_template() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        for api in [1, 2] {
            let lab = Lab::new("custom-code");
            lab.use_api(api);
            let format = file(&lab, "format.json", TEMPLATE);
            let code = file(&lab, "custom.lua", CODE);
            let mut out = lab.open(
                lab.params(&[
                    ("format_file", text(&format)),
                    ("custom_code_file", text(&code)),
                    ("_sc_site", text("paris")),
                ]),
                bbdo,
            );
            let mut svc = Status::service(12, 34, 2, T);
            svc.output = "CRITICAL".into();
            let dropped = Status::service(12, 35, 2, T);
            let mut cursed = Ack::new(12, 34, 2, T + 10);
            cursed.author = "boom".into();
            let good_ack = Ack::new(12, 34, 2, T + 20);
            let mux = deliver(
                &mut out,
                vec![
                    svc.event(bbdo),
                    dropped.event(bbdo),
                    cursed.event(bbdo),
                    good_ack.event(bbdo),
                ],
            );
            assert_eq!(
                mux.acked, 4,
                "filtered and failed events are acknowledged too"
            );
            let got = lab.posted();
            assert_eq!(got.len(), 2, "{got:#?}");
            assert_eq!(
                got[0],
                json!({"event_type":"check","connector":"centreon","connector_name":"poller-1",
                       "component":"HOST-A","resource":"Ping","source_type":"resource","state":"2",
                       "output":"CRITICAL","origin":"custom-2","site":"paris",
                       "groups":"linux,dc1,added"}),
                "{bbdo:?} api {api}"
            );
            assert_eq!(
                got[1]["event_type"], "ack",
                "built-in format for acknowledgements"
            );
            let log = lab.log();
            assert!(log.contains("custom code: tagged HOST-A"), "{log}");
            assert!(
                log.lines().any(|l| l.contains("ERROR")
                    && l.contains("custom code failed (acknowledgement event, not sent)")
                    && l.contains("cursed")),
                "{log}"
            );
            out.close();
        }
    }
}

#[test]
fn code_that_does_not_load_is_reported_and_nothing_is_held_back() {
    let lab = Lab::new("custom-code-broken");
    let code = file(
        &lab,
        "broken.lua",
        "local self = ...\nreturn self, true end\n",
    );
    let mut out = lab.open(lab.params(&[("custom_code_file", text(&code))]), Bbdo::V3);
    let mux = deliver(
        &mut out,
        vec![Status::service(12, 34, 2, T).event(Bbdo::V3)],
    );
    assert_eq!(mux.acked, 1);
    assert_eq!(lab.posted().len(), 1);
    let log = lab.log();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("custom_code_file")
            && l.contains("broken.lua")),
        "{log}"
    );
    out.close();
}

/// Code the library's textual gate refuses for harmless reasons (a helper
/// returning a value, CRLF line ends) runs here: the gate is Lua's
/// compiler, which accepts everything the library's gate accepts.
#[test]
fn the_gate_accepts_more_than_the_library_does() {
    let lab = Lab::new("custom-code-gate");
    let code = file(
        &lab,
        "helper.lua",
        "local self = ...\r\nlocal function keep(e) return e.state ~= 0 end\r\nreturn self, keep(self.event)\r\n",
    );
    let mut out = lab.open(lab.params(&[("custom_code_file", text(&code))]), Bbdo::V3);
    let mux = deliver(
        &mut out,
        vec![
            Status::service(12, 34, 2, T).event(Bbdo::V3),
            Status::service(12, 35, 0, T).event(Bbdo::V3),
        ],
    );
    assert_eq!(mux.acked, 2);
    let got = lab.posted();
    assert_eq!(got.len(), 1, "the OK one is dropped by the code: {got:#?}");
    assert_eq!(got[0]["resource"], "Ping");
    assert!(lab
        .log()
        .contains("service_status event not sent: custom code answered false"));
    out.close();
}

/// Custom code that fails on one check's output and drops another's.
const MOODY: &str = r#"local self = ...
if self.event.output == "boom" then
  error("cannot handle this output")
end
if self.event.output == "hold it" then
  return self, false
end
return self, true
"#;

/// A host's HARD change to DOWN with `output`, checked at `t`, and a later
/// check of it repeating the change (the engine's stamp stays; hosts are
/// stamped within `delta_host_status_change_allow` of the check).
fn host_down(host: i64, output: &str) -> (Status, Status) {
    let mut change = Status::host(host, 1, T);
    change.output = output.into();
    let mut repeat = change.again(T + 15);
    repeat.output = "DOWN, still".into();
    (change, repeat)
}

/// Dedup remembers a state only once its event is queued: a change custom
/// code failed on or dropped goes out with the engine's repeat of it.
#[test]
fn a_change_custom_code_did_not_let_through_is_sent_when_the_engine_repeats_it() {
    let lab = Lab::new("custom-code-dedup");
    let code = file(&lab, "moody.lua", MOODY);
    let mut out = lab.open(lab.params(&[("custom_code_file", text(&code))]), Bbdo::V3);
    let (failed, failed_again) = host_down(12, "boom");
    let (dropped, dropped_again) = host_down(13, "hold it");
    let mux = deliver(
        &mut out,
        vec![
            failed.event(Bbdo::V3),
            dropped.event(Bbdo::V3),
            failed_again.event(Bbdo::V3),
            dropped_again.event(Bbdo::V3),
            // Sent now: a third check is a repeat.
            failed_again.again(T + 18).event(Bbdo::V3),
        ],
    );
    assert_eq!(mux.acked, 5);
    out.close();
    let posted = lab.posted();
    let mut sent: Vec<(&str, &str)> = posted
        .iter()
        .map(|e| {
            (
                e["component"].as_str().unwrap(),
                e["output"].as_str().unwrap(),
            )
        })
        .collect();
    // Two objects: each keeps its order, not the order between them.
    sent.sort();
    assert_eq!(
        sent,
        vec![("host-a", "DOWN, still"), ("host-b", "DOWN, still")],
        "{}",
        lab.log()
    );
    let log = lab.log();
    assert_eq!(log.matches("was sent already").count(), 1, "{log}");
}

/// The memory saved at close (`.sent-states`) holds only what was queued:
/// a change custom code failed on before a restart is sent by its repeat
/// after it.
#[test]
fn a_change_custom_code_failed_on_is_not_remembered_across_a_restart() {
    let lab = Lab::new("custom-code-dedup-restart");
    let code = file(&lab, "moody.lua", MOODY);
    let params = lab.params(&[("custom_code_file", text(&code))]);
    let (failed, failed_again) = host_down(12, "boom");
    let (sent, sent_again) = host_down(13, "fine");
    let mut out = lab.open(params.clone(), Bbdo::V3);
    let mux = deliver(&mut out, vec![failed.event(Bbdo::V3), sent.event(Bbdo::V3)]);
    assert_eq!(mux.acked, 2);
    out.close();
    assert!(
        lab.dir.join("canopsis.sent-states").exists(),
        "no memory saved: {}",
        lab.log()
    );
    let mut out = lab.open(params, Bbdo::V3);
    deliver(
        &mut out,
        vec![failed_again.event(Bbdo::V3), sent_again.event(Bbdo::V3)],
    );
    out.close();
    let posted = lab.posted();
    let sent: Vec<(&str, &str)> = posted
        .iter()
        .map(|e| {
            (
                e["component"].as_str().unwrap(),
                e["output"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        vec![("host-b", "fine"), ("host-a", "DOWN, still")],
        "{}",
        lab.log()
    );
}
