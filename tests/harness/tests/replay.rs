//! Replays of event streams recorded from a real Centreon Engine 23.10 and
//! Broker (`shared/traces/`), BBDO 3 and BBDO 2, as API 1 tables and API 2
//! objects, into the connector and the mock Canopsis.
//!
//! What Canopsis should get is derived from the trace itself, from what the
//! engine reported, never from the connector's rules:
//!
//! - a HARD state change is the first status that carries a new
//!   `last_hard_state_change` stamp (with its state) for an object: the
//!   engine stamps each change once and repeats the stamp on every later
//!   status until the next change;
//! - an object's first HARD status is a change too, stamped or not (at
//!   engine start a host that never changed says `last_hard_state_change`
//!   0): Canopsis has never heard of the object. The stamp the engine puts
//!   on that same state a check or two later is not a new change;
//! - each such change reaches Canopsis once, with its state (mapped as
//!   `canopsis-api.md` says) and the check time of the status that
//!   reported it; SOFT states and repeated states never do;
//! - with the default `flapping=0`, no status that said `flapping` reaches
//!   Canopsis (the recordings were made with flap detection off, so the
//!   replays mark some objects' statuses as flapping for a while, as an
//!   engine with it on does); `flapping=1` sends their changes too;
//! - every acknowledgement and every removal of one is sent once;
//! - every downtime that started gets one pbehavior, deleted once when the
//!   downtime goes; one deleted before it started gets nothing; with state
//!   filters on downtimes, a downtime whose object's last HARD state (the
//!   last HARD status the engine reported before the start) is refused gets
//!   no pbehavior, and no DELETE either.

use canopsis_harness::broker::Param;
use canopsis_harness::mock::{Recorded, State};
use canopsis_harness::trace::{self, Step, Trace};
use canopsis_harness::Lab;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const BBDO3: &str = "real-engine-23.10-bbdo3.jsonl";
const BBDO2: &str = "real-engine-23.10-bbdo2.jsonl";

fn int(f: &Map<String, Value>, k: &str) -> Option<i64> {
    f.get(k).and_then(Value::as_i64)
}

fn element(step: &Step) -> u32 {
    step.event.type_id & 0xffff
}

/// An object: host id and service id (0 for a host).
type Object = (i64, i64);

/// Names as the trace's `broker_cache` answers gave them.
struct Names {
    hosts: HashMap<i64, String>,
    services: HashMap<Object, String>,
}

impl Names {
    fn of(t: &Trace) -> Names {
        let mut names = Names {
            hosts: HashMap::new(),
            services: HashMap::new(),
        };
        for step in t.runs.iter().flatten() {
            for c in &step.cache {
                for (method, result) in &c.calls {
                    let Some(name) = result.as_str() else {
                        continue;
                    };
                    match method.as_str() {
                        "get_hostname" => {
                            names.hosts.insert(c.key.0, name.to_string());
                        }
                        "get_service_description" => {
                            names.services.insert(c.key, name.to_string());
                        }
                        _ => {}
                    }
                }
            }
        }
        names
    }

    /// Canopsis `component` and `resource` of an object.
    fn entity(&self, (host, service): Object) -> (String, String) {
        let component = self.hosts[&host].clone();
        let resource = if service == 0 {
            String::new()
        } else {
            self.services[&(host, service)].clone()
        };
        (component, resource)
    }
}

/// A state change as the engine reported it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Change {
    object: Object,
    /// Centreon state.
    state: i64,
    /// The engine's stamp of the change.
    stamp: i64,
    /// `last_check` of the first status that carried it.
    checked: i64,
    /// That first status was acknowledged, in downtime or flapping.
    held_back: bool,
}

/// The HARD host and service statuses of the trace, in order, with their
/// object.
fn hard_statuses(t: &Trace) -> impl Iterator<Item = (Object, &Map<String, Value>)> {
    t.runs.iter().flatten().filter_map(|step| {
        let service = match element(step) {
            14 | 32 => false,
            24 | 29 => true,
            _ => return None,
        };
        let f = &step.fields;
        (int(f, "state_type") == Some(1)).then_some(())?;
        let host = int(f, "host_id").unwrap();
        let service = if service {
            int(f, "service_id").unwrap()
        } else {
            0
        };
        Some(((host, service), f))
    })
}

/// The HARD state changes the engine reported, in order: each object's
/// first state, then each new stamp.
fn changes(t: &Trace) -> Vec<Change> {
    let mut seen = BTreeSet::new();
    // Each object's first state, while the engine has not stamped it.
    let mut unstamped: HashMap<Object, Option<i64>> = HashMap::new();
    let mut out = Vec::new();
    for (object, f) in hard_statuses(t) {
        // BBDO 2 leaves an unset stamp out, BBDO 3 sends 0: never changed.
        let stamp = int(f, "last_hard_state_change")
            .filter(|t| *t > 0)
            .unwrap_or(0);
        let state = int(f, "state").unwrap();
        let first = !unstamped.contains_key(&object);
        let pending = unstamped.insert(object, (stamp == 0).then_some(state));
        let new = if first {
            seen.insert((object, stamp, state))
        } else if stamp == 0 {
            false
        } else {
            // The engine stamping the unstamped first state.
            let late_stamp = pending.flatten() == Some(state);
            seen.insert((object, stamp, state)) && !late_stamp
        };
        if new {
            let acked = int(f, "acknowledgement_type").unwrap_or(0) != 0
                || f.get("acknowledged") == Some(&Value::Bool(true));
            out.push(Change {
                object,
                state,
                stamp,
                checked: int(f, "last_check").or(int(f, "last_update")).unwrap(),
                held_back: acked
                    || int(f, "scheduled_downtime_depth").unwrap_or(0) > 0
                    || flapping(f),
            });
        }
    }
    out
}

/// The status said its object was flapping.
fn flapping(f: &Map<String, Value>) -> bool {
    f.get("flapping") == Some(&Value::Bool(true))
}

/// Loads a trace with some objects flapping for a while: every fifth
/// service (service ids 2, 7, ... 47; service 7 also has a downtime) and
/// host 3 (which changes every 40 s), for the statuses checked from one to
/// four minutes after the first check.
fn load_with_flapping(name: &str) -> Trace {
    let mut t = trace::load(&trace::path(name));
    let first = t
        .runs
        .iter()
        .flatten()
        .filter(|s| matches!(element(s), 14 | 24 | 29 | 32))
        .filter_map(|s| int(&s.fields, "last_check").or(int(&s.fields, "last_update")))
        .min()
        .unwrap();
    let window = first + 60..first + 240;
    let marked = t.mark_flapping(|(host, service), checked| {
        (service % 5 == 2 || (host == 3 && service == 0)) && window.contains(&checked)
    });
    assert!(marked > 100, "{name}: {marked} statuses marked flapping");
    t
}

/// Canopsis state of a Centreon state (`canopsis-api.md`).
fn canopsis_state(service: bool, state: i64) -> i64 {
    match (service, state) {
        (false, 1) => 3,
        (true, 2) => 3,
        (true, 3) => 2,
        (_, s) => s,
    }
}

/// A check event as Canopsis received it: entity, state, timestamp.
type Check = (String, String, i64, i64);

fn check_of(names: &Names, c: &Change) -> Check {
    let (component, resource) = names.entity(c.object);
    (
        component,
        resource,
        canopsis_state(c.object.1 != 0, c.state),
        c.checked,
    )
}

fn published(lab: &Lab, event_type: &str) -> Vec<Value> {
    lab.mock
        .state()
        .events
        .iter()
        .filter(|e| e["event_type"] == event_type)
        .cloned()
        .collect()
}

fn checks(lab: &Lab) -> Vec<Check> {
    published(lab, "check")
        .iter()
        .map(|e| {
            (
                e["component"].as_str().unwrap().to_string(),
                e["resource"].as_str().unwrap_or("").to_string(),
                e["state"].as_i64().unwrap(),
                e["timestamp"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn counts<T: Ord + Clone>(items: &[T]) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.clone()).or_insert(0) += 1;
    }
    m
}

/// Panics with what differs between two multisets (a whole trace's worth
/// of events would drown the difference).
fn assert_same<T: Ord + Clone + std::fmt::Debug>(got: &[T], expected: &[T], what: &str) {
    let (got, expected) = (counts(got), counts(expected));
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, n)| got.get(*k) < Some(*n))
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, n)| expected.get(*k) < Some(*n))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} missing (wanted, count): {missing:?}\n{} extra (sent, count): {extra:?}",
        missing.len(),
        extra.len()
    );
}

fn replay(name: &str, api: i64, extra: &[(&str, Param)]) -> (Trace, Lab) {
    replay_trace(trace::load(&trace::path(name)), name, api, extra)
}

fn replay_trace(t: Trace, name: &str, api: i64, extra: &[(&str, Param)]) -> (Trace, Lab) {
    let lab = Lab::new("replay");
    lab.use_api(api);
    let done = t.replay(&lab, lab.params(extra));
    let events: usize = t.runs.iter().map(Vec::len).sum();
    assert_eq!(done.acked, events as u64, "every event acknowledged");
    assert!(done.broker_log.is_empty(), "{:?}", done.broker_log);
    let log = lab.log();
    assert!(!log.contains("[ERROR]"), "{name} api {api}: {log}");
    assert!(
        !log.contains("skipping event"),
        "{name} api {api}: malformed"
    );
    (t, lab)
}

/// Acknowledged and in-downtime objects accepted: every HARD change the
/// engine reported reaches Canopsis once, nothing else does.
fn every_change_once(name: &str, api: i64) {
    let t = trace::load(&trace::path(name));
    every_change_of_once(t, name, api, &[]);
}

/// The same with objects flapping and `flapping=1`: their changes too.
fn flapping_changes_once(name: &str, api: i64) {
    let t = load_with_flapping(name);
    let flapping_changes = changes(&t)
        .iter()
        .filter(|c| {
            hard_statuses(&t).any(|(o, f)| {
                o == c.object && flapping(f) && int(f, "last_hard_state_change") == Some(c.stamp)
            })
        })
        .count();
    assert!(flapping_changes >= 10, "{name}: {flapping_changes}");
    every_change_of_once(t, name, api, &[("flapping", Param::Num(1))]);
}

fn every_change_of_once(t: Trace, name: &str, api: i64, extra: &[(&str, Param)]) {
    let mut params = vec![
        ("acknowledged", Param::Num(1)),
        ("in_downtime", Param::Num(1)),
    ];
    params.extend(extra.iter().cloned());
    let (t, lab) = replay_trace(t, name, api, &params);
    let names = Names::of(&t);
    let expected: Vec<Check> = changes(&t).iter().map(|c| check_of(&names, c)).collect();
    let hosts = expected.iter().filter(|c| c.1.is_empty()).count();
    assert!(hosts >= 20, "{name}: the trace has host changes ({hosts})");
    assert_same(
        &checks(&lab),
        &expected,
        &format!("{name} api {api}: check events"),
    );
}

/// Default filters: a change first reported while acknowledged, in
/// downtime or flapping may go out with a later status of it that is none
/// of these, once; every other change goes out once, with its first
/// report; nothing goes out twice, nothing a flapping status reported.
fn defaults(name: &str, api: i64) {
    // The single route, whose requests say each pbehavior by itself.
    let single = Param::Str("/api/v4/pbehaviors".into());
    let (t, lab) = replay_trace(
        load_with_flapping(name),
        name,
        api,
        &[("canopsis_downtime_route", single)],
    );
    let names = Names::of(&t);
    let all = changes(&t);
    let sent = counts(&checks(&lab));
    for c in all.iter().filter(|c| !c.held_back) {
        assert_eq!(
            sent.get(&check_of(&names, c)),
            Some(&1),
            "{name} api {api}: change not sent once: {c:?}"
        );
    }
    // Whatever went out is a HARD status the engine sent, and no change
    // (object, stamp, state) went out twice, even through two statuses.
    let mut reported: BTreeMap<Check, (Object, i64, i64)> = BTreeMap::new();
    let mut steady = BTreeSet::new();
    for (object, f) in hard_statuses(&t) {
        let service = object.1 != 0;
        let (component, resource) = names.entity(object);
        let state = int(f, "state").unwrap();
        let checked = int(f, "last_check").or(int(f, "last_update")).unwrap();
        let stamp = int(f, "last_hard_state_change").unwrap_or(0);
        let check = (component, resource, canopsis_state(service, state), checked);
        if !flapping(f) {
            steady.insert(check.clone());
        }
        reported.insert(check, (object, stamp, state));
    }
    let mut identities = BTreeSet::new();
    for (check, n) in &sent {
        assert_eq!(*n, 1, "{name} api {api}: sent twice: {check:?}");
        let identity = reported
            .get(check)
            .unwrap_or_else(|| panic!("{name} api {api}: no HARD status reported {check:?}"));
        assert!(
            identities.insert(identity),
            "{name} api {api}: the change {identity:?} went out twice"
        );
        assert!(
            steady.contains(check),
            "{name} api {api}: sent from a flapping status (flapping=0): {check:?}"
        );
    }
    never_behind(&t, &lab, &names, &format!("{name} api {api}"));
    acknowledgements(&t, &lab, &names);
    downtimes(&t, &lab);
}

/// Whether a status was acknowledged, in downtime or flapping: what the
/// default filters hold back.
fn held_back(f: &Map<String, Value>) -> bool {
    int(f, "acknowledgement_type").unwrap_or(0) != 0
        || f.get("acknowledged") == Some(&Value::Bool(true))
        || int(f, "scheduled_downtime_depth").unwrap_or(0) > 0
        || flapping(f)
}

/// Canopsis is never left behind by what the filters held back: at each
/// HARD status that is none of acknowledged, in downtime or flapping, the
/// state Canopsis last got for the object (the check sent with the latest
/// time up to that status's check) is that status's state. A change made
/// during a downtime reaches it when the downtime ends; an object's first
/// state, at its first check. Check times are seconds: of the statuses of
/// an object checked in the same second (passive results), the last one
/// counts.
fn never_behind(t: &Trace, lab: &Lab, names: &Names, what: &str) {
    let mut got: HashMap<(String, String), Vec<(i64, i64)>> = HashMap::new();
    for (component, resource, state, timestamp) in checks(lab) {
        got.entry((component, resource))
            .or_default()
            .push((timestamp, state));
    }
    for sent in got.values_mut() {
        // Stable: for one check time, the last sent wins.
        sent.sort_by_key(|(timestamp, _)| *timestamp);
    }
    let checked = |f: &Map<String, Value>| int(f, "last_check").or(int(f, "last_update")).unwrap();
    let mut last_of_second = HashMap::new();
    for (n, (object, f)) in hard_statuses(t).enumerate() {
        last_of_second.insert((object, checked(f)), n);
    }
    let mut compared = 0;
    for (n, (object, f)) in hard_statuses(t).enumerate() {
        let checked = checked(f);
        if held_back(f) || last_of_second[&(object, checked)] != n {
            continue;
        }
        let expected = canopsis_state(object.1 != 0, int(f, "state").unwrap());
        let last = got.get(&names.entity(object)).and_then(|sent| {
            sent.iter()
                .take_while(|(timestamp, _)| *timestamp <= checked)
                .last()
                .map(|(_, state)| *state)
        });
        assert_eq!(
            last,
            Some(expected),
            "{what}: Canopsis is behind {object:?} at its check {checked}"
        );
        compared += 1;
    }
    assert!(compared > 1000, "{what}: {compared} statuses compared");
}

/// Default filters on the recording as made (nothing flapping): the
/// service that turned CRITICAL during its downtime (host_2/service_7)
/// reaches Canopsis when the downtime ends, and Canopsis is never behind.
fn never_behind_after_downtimes(name: &str, api: i64) {
    let (t, lab) = replay(name, api, &[]);
    let names = Names::of(&t);
    never_behind(&t, &lab, &names, &format!("{name} api {api}"));
}

/// Every acknowledgement and removal, once, with its author and time.
fn acknowledgements(t: &Trace, lab: &Lab, names: &Names) {
    let mut expected = Vec::new();
    for step in t.runs.iter().flatten() {
        if !matches!(element(step), 1 | 45) {
            continue;
        }
        let f = &step.fields;
        let object = (
            int(f, "host_id").unwrap(),
            int(f, "service_id").unwrap_or(0),
        );
        let removed = int(f, "deletion_time").is_some_and(|t| t > 0);
        let (component, resource) = names.entity(object);
        expected.push((
            if removed { "ackremove" } else { "ack" }.to_string(),
            component,
            resource,
            int(f, "entry_time").unwrap(),
        ));
    }
    assert!(expected.len() >= 6, "the trace has acknowledgements");
    let mut acks = published(lab, "ack");
    acks.extend(published(lab, "ackremove"));
    let got: Vec<_> = acks
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_string(),
                e["component"].as_str().unwrap().to_string(),
                e["resource"].as_str().unwrap_or("").to_string(),
                e["timestamp"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_same(&got, &expected, "acknowledgements");
}

/// The pbehaviors the mock was asked, on the single route
/// (`/api/v4/pbehaviors`), to create (by their `_id`) and to delete (by
/// name), in the order asked.
fn single_route_pbehaviors(st: &State) -> (Vec<String>, Vec<String>) {
    let asked = |method: &str| -> Vec<&Recorded> {
        st.requests
            .iter()
            .filter(|r| r.method == method && r.path == "/api/v4/pbehaviors")
            .collect()
    };
    let created = asked("POST")
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let deleted = asked("DELETE")
        .iter()
        .map(|r| canopsis_harness::pbh::decode(r.query.trim_start_matches("name=")))
        .collect();
    (created, deleted)
}

/// One create per downtime that started, one delete per such downtime
/// that ended (expired or cancelled), nothing for one deleted before it
/// started.
fn downtimes(t: &Trace, lab: &Lab) {
    // By downtime id: (host, service, entry time, started, deleted).
    let mut seen: BTreeMap<i64, (i64, i64, i64, bool, bool)> = BTreeMap::new();
    for step in t.runs.iter().flatten() {
        if !matches!(element(step), 5 | 36) {
            continue;
        }
        let f = &step.fields;
        let id = int(f, "internal_id").or(int(f, "id")).unwrap();
        let d = seen.entry(id).or_insert((
            int(f, "host_id").unwrap(),
            int(f, "service_id").unwrap_or(0),
            int(f, "entry_time").unwrap(),
            false,
            false,
        ));
        d.3 |= f.get("started") == Some(&Value::Bool(true));
        d.4 |= int(f, "deletion_time").is_some_and(|t| t > 0);
    }
    let name = |id: &i64, d: &(i64, i64, i64, bool, bool)| {
        format!("centreon-downtime-{}-{}-{id}-{}", d.0, d.1, d.2)
    };
    let started: Vec<String> = seen
        .iter()
        .filter(|(_, d)| d.3)
        .map(|(i, d)| name(i, d))
        .collect();
    let ended: Vec<String> = seen
        .iter()
        .filter(|(_, d)| d.3 && d.4)
        .map(|(i, d)| name(i, d))
        .collect();
    assert!(started.len() >= 4 && seen.len() > started.len());
    let st = lab.mock.state();
    let (created, deleted) = single_route_pbehaviors(&st);
    assert_same(&created, &started, "pbehaviors created");
    assert_same(&deleted, &ended, "pbehaviors deleted");
    assert!(
        st.pbehaviors.is_empty(),
        "every pbehavior removed: {:?}",
        st.pbehaviors
    );
}

/// Downtimes with state filters (`dt_service_status=0`,
/// `dt_host_status=0`: OK and UP only): a downtime whose object's last HARD state
/// before the start (as the engine reported it) is accepted gets its
/// pbehavior, created then deleted once; one refused gets nothing at all:
/// no pbehavior, and no DELETE at its end, even when that end comes after
/// the broker restart. An object with no HARD status yet blocks nothing.
fn downtimes_state_filtered(name: &str, api: i64, refused_at_least: usize) {
    let (t, lab) = replay(
        name,
        api,
        &[
            ("dt_service_status", Param::Str("0".into())),
            ("dt_host_status", Param::Str("0".into())),
            (
                "canopsis_downtime_route",
                Param::Str("/api/v4/pbehaviors".into()),
            ),
        ],
    );
    let mut last_hard: HashMap<Object, i64> = HashMap::new();
    // By pbehavior name: whether the start is accepted.
    let mut starts: BTreeMap<String, bool> = BTreeMap::new();
    for step in t.runs.iter().flatten() {
        let f = &step.fields;
        match element(step) {
            14 | 32 | 24 | 29 if int(f, "state_type") == Some(1) => {
                let service = matches!(element(step), 24 | 29);
                let object = (
                    int(f, "host_id").unwrap(),
                    if service {
                        int(f, "service_id").unwrap()
                    } else {
                        0
                    },
                );
                last_hard.insert(object, int(f, "state").unwrap());
            }
            5 | 36 => {
                let started = int(f, "actual_start_time").is_some_and(|t| t > 0);
                let ending = int(f, "actual_end_time").is_some_and(|t| t > 0)
                    || int(f, "deletion_time").is_some_and(|t| t > 0);
                if !started || ending {
                    continue;
                }
                let object = (
                    int(f, "host_id").unwrap(),
                    int(f, "service_id").unwrap_or(0),
                );
                let accepted = last_hard.get(&object).is_none_or(|s| *s == 0);
                let id = int(f, "internal_id").or(int(f, "id")).unwrap();
                let entry = int(f, "entry_time").unwrap();
                let pbh = format!("centreon-downtime-{}-{}-{id}-{entry}", object.0, object.1);
                starts.insert(pbh, accepted);
            }
            _ => {}
        }
    }
    let accepted: Vec<String> = starts
        .iter()
        .filter(|(_, ok)| **ok)
        .map(|(n, _)| n.clone())
        .collect();
    let refused = starts.len() - accepted.len();
    assert!(
        refused >= refused_at_least && !accepted.is_empty(),
        "{name}: {refused} of {} downtime starts refused",
        starts.len()
    );
    let st = lab.mock.state();
    let (created, deleted) = single_route_pbehaviors(&st);
    assert_same(&created, &accepted, &format!("{name} api {api}: created"));
    assert_same(
        &deleted,
        &accepted,
        &format!("{name} api {api}: one DELETE per pbehavior created, none other"),
    );
    assert!(st.pbehaviors.is_empty(), "{:?}", st.pbehaviors);
    assert!(
        lab.log()
            .contains("its start was not sent, so there is no pbehavior to delete"),
        "{name} api {api}: the skipped end is logged"
    );
}

/// The emulator's `broker_cache` agrees with every answer broker gave in
/// the recording: on BBDO 3 an object follows its statuses, on BBDO 2 it
/// keeps its configuration's values (pending, unchecked).
fn cache_model_follows_the_recording(name: &str) {
    let t = trace::load(&trace::path(name));
    let compared = t
        .runs
        .iter()
        .flatten()
        .flat_map(|s| &s.cache)
        .filter(|c| c.reason == "first_seen" && c.key.0 != 0)
        .count();
    assert!(compared >= 50, "{name}: {compared} answers to compare");
    let wrong = t.cache_model_disagreements();
    assert!(
        wrong.is_empty(),
        "{name}: {} disagreements, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

#[test]
fn bbdo3_cache_model_follows_the_recording() {
    cache_model_follows_the_recording(BBDO3);
}

#[test]
fn bbdo2_cache_model_follows_the_recording() {
    cache_model_follows_the_recording(BBDO2);
}

#[test]
fn bbdo3_flapping_1_sends_flapping_changes_api2() {
    flapping_changes_once(BBDO3, 2);
}

#[test]
fn bbdo2_flapping_1_sends_flapping_changes_api1() {
    flapping_changes_once(BBDO2, 1);
}

#[test]
fn bbdo3_downtime_state_filters_api2() {
    downtimes_state_filtered(BBDO3, 2, 1);
}

#[test]
fn bbdo2_downtime_state_filters_api1() {
    downtimes_state_filtered(BBDO2, 1, 2);
}

#[test]
fn bbdo2_downtime_state_filters_api2() {
    downtimes_state_filtered(BBDO2, 2, 2);
}

#[test]
fn bbdo3_every_hard_change_once_api2() {
    every_change_once(BBDO3, 2);
}

#[test]
fn bbdo3_every_hard_change_once_api1() {
    every_change_once(BBDO3, 1);
}

#[test]
fn bbdo2_every_hard_change_once_api2() {
    every_change_once(BBDO2, 2);
}

#[test]
fn bbdo2_every_hard_change_once_api1() {
    every_change_once(BBDO2, 1);
}

#[test]
fn bbdo3_default_filters_acks_and_downtimes_api2() {
    defaults(BBDO3, 2);
}

#[test]
fn bbdo3_default_filters_acks_and_downtimes_api1() {
    defaults(BBDO3, 1);
}

#[test]
fn bbdo2_default_filters_acks_and_downtimes_api2() {
    defaults(BBDO2, 2);
}

#[test]
fn bbdo2_default_filters_acks_and_downtimes_api1() {
    defaults(BBDO2, 1);
}

#[test]
fn bbdo3_changes_hidden_by_downtimes_reach_canopsis_api2() {
    never_behind_after_downtimes(BBDO3, 2);
}

#[test]
fn bbdo2_changes_hidden_by_downtimes_reach_canopsis_api1() {
    never_behind_after_downtimes(BBDO2, 1);
}
