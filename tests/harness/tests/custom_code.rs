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
