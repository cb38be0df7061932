//! Broker 25.10's `broker_cache:get_hostgroup_alias(id)`, offered to
//! templates as `{groups(hgalias,table|inline,PATTERN)}`; on an older
//! broker, whose cache has no such method, the macro has nothing to say
//! (an empty list) and no Lua error reaches broker.

use canopsis_harness::broker::{CacheData, Muxer, Output, OutputConfig};
use canopsis_harness::events::{Bbdo, Status};
use canopsis_harness::{drain, text, Lab};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const T: i64 = 1_763_000_000;

/// Sends two statuses of service 12/34 (host groups linux and dc1) with a
/// template listing the host groups and their aliases; what Canopsis got.
fn sent_with(cache: CacheData) -> (Vec<Value>, Vec<String>) {
    let lab = Lab::new("hostgroup-alias");
    let format = lab.dir.join("format.json");
    let template = json!({
        "neb_service_status": {
            "event_type": "check",
            "connector": "centreon",
            "connector_name": "central",
            "component": "{cache.host.name}",
            "resource": "{cache.service.description}",
            "state": "{state}",
            "output": "{groups(hgalias,inline,.*)}",
            "hostgroups": "{groups(hg,table,.*)}",
            "hostgroup_aliases": "{groups(hgalias,table,.*)}"
        }
    });
    std::fs::write(&format, template.to_string()).unwrap();
    let params = lab.params(&[("format_file", text(&format.display().to_string()))]);
    let mut out = Output::open(
        &OutputConfig {
            script: lab.script.clone(),
            params,
            bbdo: Bbdo::V3,
        },
        cache,
    )
    .expect("output opens");
    let mut mux = Muxer::new();
    mux.push(Status::service(12, 34, 2, T).event(Bbdo::V3));
    mux.push(Status::service(12, 34, 0, T + 60).event(Bbdo::V3));
    assert!(
        drain(&mut out, &mut mux, Duration::from_secs(30)),
        "{}",
        lab.log()
    );
    let said = out.broker_log.borrow().clone();
    drop(out);
    let events = lab.mock.state().events.clone();
    (events, said)
}

#[test]
fn a_25_10_broker_gives_the_aliases_of_the_host_groups() {
    let mut cache = CacheData::sample();
    cache.hostgroup_aliases = Some(HashMap::from([
        (1, "Linux servers".to_string()),
        (2, "Datacenter 1".to_string()),
    ]));
    let (events, said) = sent_with(cache);
    assert!(said.is_empty(), "broker complained: {said:?}");
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e["hostgroups"], json!(["linux", "dc1"]));
        assert_eq!(
            e["hostgroup_aliases"],
            json!(["Linux servers", "Datacenter 1"])
        );
        assert_eq!(e["output"], "Linux servers,Datacenter 1");
    }
}

#[test]
fn an_older_broker_without_the_method_has_nothing_to_say() {
    let (events, said) = sent_with(CacheData::sample());
    assert!(said.is_empty(), "broker complained: {said:?}");
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e["hostgroups"], json!(["linux", "dc1"]));
        assert_eq!(e["hostgroup_aliases"], json!([]));
        assert_eq!(e["output"], "");
    }
}
