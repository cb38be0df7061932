//! Event streams recorded from a real Centreon Engine and Broker
//! (`shared/traces/`, see its README), read back for replay: every event
//! with its exact fields in recorded order, what `broker_cache` answered for
//! each object, and where broker restarted.

use crate::broker::CacheData;
use crate::events::{Bbdo, Event, V};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One event as recorded, with the cache answers recorded right after it
/// (broker's cache already held them when the event was written).
#[derive(Debug, Clone)]
pub struct Step {
    /// The recorder's running number.
    pub seq: i64,
    /// The event, as broker hands it to `write`.
    pub event: Event,
    /// The recorded fields, for deriving what Canopsis should get.
    pub fields: Map<String, Value>,
    /// Cache answers to install before the event is written.
    pub cache: Vec<CacheAnswers>,
}

/// What `broker_cache` answered for one object.
#[derive(Debug, Clone)]
pub struct CacheAnswers {
    /// The key the methods were called with: (host id, service id) or
    /// (instance id, 0).
    pub key: (i64, i64),
    /// Why the recorder asked: `first_seen` (the object's first event in
    /// this broker run) or `host_config_event` / `service_config_event`.
    pub reason: String,
    /// Method name to its result (`Null` for nil).
    pub calls: Vec<(String, Value)>,
}

/// A recorded trace, cut at each broker (re)start.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The protocol of the run.
    pub bbdo: Bbdo,
    /// Each broker run's events, in order.
    pub runs: Vec<Vec<Step>>,
}

/// `shared/traces/<name>`, beside the repository.
pub fn path(name: &str) -> PathBuf {
    crate::repo_root().join("../shared/traces").join(name)
}

/// Field names live as long as the process, as the emulator's events want.
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    match names.get(name) {
        Some(n) => n,
        None => {
            let n: &'static str = Box::leak(name.to_string().into_boxed_str());
            names.insert(n);
            n
        }
    }
}

/// A scalar JSON value as the Lua value broker would hand over; `None`
/// for nested tables (`header`, `tags`), which the connector never reads.
pub fn scalar(v: &Value) -> Option<Option<V>> {
    Some(match v {
        Value::Null => None,
        Value::Bool(b) => Some(V::B(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => V::I(i),
            None => V::F(n.as_f64()?),
        }),
        Value::String(s) => Some(V::S(s.as_bytes().to_vec())),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// Reads a trace file.
pub fn load(file: &Path) -> Trace {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let mut runs: Vec<Vec<Step>> = Vec::new();
    let mut bbdo = None;
    for (n, line) in text.lines().enumerate() {
        let v: Map<String, Value> = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), n + 1));
        if v.contains_key("recorder_init") {
            runs.push(Vec::new());
            continue;
        }
        let run = runs.last_mut().expect("a trace starts with recorder_init");
        if let Some(kind) = v.get("cache_for").and_then(Value::as_str) {
            let int = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
            let key = match kind {
                "instance" => (int("instance_id"), 0),
                "host" => (int("host_id"), 0),
                _ => (int("host_id"), int("service_id")),
            };
            let calls = v["calls"]
                .as_object()
                .expect("calls")
                .iter()
                .filter(|(_, c)| c["ok"] == Value::Bool(true))
                .map(|(m, c)| (m.clone(), c.get("result").cloned().unwrap_or(Value::Null)))
                .collect();
            let step = run.last_mut().expect("cache line after its event");
            assert_eq!(v["trigger_seq"], Value::from(step.seq), "line {}", n + 1);
            let reason = v["reason"].as_str().unwrap_or_default().to_string();
            step.cache.push(CacheAnswers { key, calls, reason });
            continue;
        }
        let type_id = v["_type"].as_u64().expect("_type") as u32;
        if matches!(type_id & 0xffff, 29 | 32 | 36 | 45) && type_id >> 16 == 1 {
            bbdo = Some(Bbdo::V3);
        } else if matches!(type_id, 65550 | 65560) {
            bbdo = bbdo.or(Some(Bbdo::V2));
        }
        let fields = v
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "_type" | "category" | "element" | "seq" | "wall"
                )
            })
            .filter_map(|(k, val)| Some((intern(k), scalar(val)?)))
            .collect();
        run.push(Step {
            seq: v["seq"].as_i64().expect("seq"),
            event: Event { type_id, fields },
            fields: v,
            cache: Vec::new(),
        });
    }
    Trace {
        bbdo: bbdo.expect("a trace with status events"),
        runs,
    }
}

impl CacheData {
    /// Installs recorded answers: from now on `broker_cache` answers what
    /// was recorded for the objects it knows, and nil for the others.
    pub fn install(&mut self, answers: &CacheAnswers) {
        self.replay = true;
        for (method, result) in &answers.calls {
            self.recorded.insert(
                (method.clone(), answers.key.0, answers.key.1),
                result.clone(),
            );
        }
    }
}

impl Trace {
    /// Marks the host and service statuses `pick` chooses (by object, host
    /// id and service id or 0, and `last_check`) as flapping, as an engine
    /// with flap detection on sends them (the recordings were made with it
    /// off: every status says `flapping` false).
    pub fn mark_flapping(&mut self, pick: impl Fn((i64, i64), i64) -> bool) -> usize {
        let mut marked = 0;
        for step in self.runs.iter_mut().flatten() {
            let service = match step.event.type_id & 0xffff {
                14 | 32 => false,
                24 | 29 => true,
                _ => continue,
            };
            let int = |k: &str| step.fields.get(k).and_then(Value::as_i64);
            let object = (
                int("host_id").unwrap_or(0),
                if service {
                    int("service_id").unwrap_or(0)
                } else {
                    0
                },
            );
            let Some(checked) = int("last_check").or(int("last_update")) else {
                continue;
            };
            if !pick(object, checked) {
                continue;
            }
            step.fields.insert("flapping".into(), Value::Bool(true));
            for (name, v) in &mut step.event.fields {
                if *name == "flapping" {
                    *v = Some(V::B(true));
                }
            }
            marked += 1;
        }
        marked
    }

    /// Where the emulator's model of `broker_cache` differs from what broker
    /// answered: the trace's events are fed to a [`CacheData`] in order,
    /// and each object's `get_host`/`get_service` `state`, `checked` and
    /// `last_check` are compared with every answer recorded the first time
    /// a broker run saw the object (answers recorded at configuration
    /// events are what the configuration says; they are installed as is).
    pub fn cache_model_disagreements(&self) -> Vec<String> {
        let mut model = CacheData {
            replay: true,
            ..CacheData::default()
        };
        let mut out = Vec::new();
        for step in self.runs.iter().flatten() {
            model.feed(&step.event);
            for answers in &step.cache {
                let method = match (answers.reason.as_str(), answers.key.1) {
                    ("first_seen", 0) => "get_host",
                    ("first_seen", _) => "get_service",
                    _ => {
                        model.install(answers);
                        continue;
                    }
                };
                let Some((_, Value::Object(got))) = answers.calls.iter().find(|(m, _)| m == method)
                else {
                    continue;
                };
                let key = (method.to_string(), answers.key.0, answers.key.1);
                if let Some(Value::Object(had)) = model.recorded.get(&key) {
                    for field in ["state", "checked", "last_check"] {
                        if had.get(field) != got.get(field) {
                            out.push(format!(
                                "seq {}: {method}{:?}.{field}: model {:?}, broker {:?}",
                                step.seq,
                                answers.key,
                                had.get(field),
                                got.get(field)
                            ));
                        }
                    }
                }
                model.install(answers);
            }
        }
        out
    }
}

/// What a replay left behind.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Events broker got acknowledged.
    pub acked: u64,
    /// What broker itself logged about the outputs.
    pub broker_log: Vec<String>,
}

impl Trace {
    /// Replays the trace into the connector installed in `lab`, as broker
    /// ran it: one Lua state per broker run, events in recorded order with
    /// `broker_cache` answering what was recorded, the failover loop
    /// acknowledging, and at the end of each run broker's stop (a last
    /// flush once everything is acknowledged, then `lua_close`).
    pub fn replay(
        &self,
        lab: &crate::Lab,
        params: Vec<(String, crate::broker::Param)>,
    ) -> Replayed {
        use crate::broker::{Muxer, Output, OutputConfig};
        use std::time::Duration;
        let mut cache = CacheData {
            replay: true,
            ..CacheData::default()
        };
        let mut done = Replayed::default();
        for run in &self.runs {
            let mut out = Output::open(
                &OutputConfig {
                    script: lab.script.clone(),
                    params: params.clone(),
                    bbdo: self.bbdo,
                },
                cache,
            )
            .expect("output opens");
            let mut mux = Muxer::new();
            for step in run {
                {
                    let c = out.cache();
                    let mut c = c.borrow_mut();
                    for answers in &step.cache {
                        c.install(answers);
                    }
                }
                mux.push(step.event.clone());
                let handed = mux.run(
                    &mut out,
                    Duration::from_millis(5),
                    Duration::from_millis(200),
                    Duration::from_secs(60),
                    |m| m.unread() == 0,
                );
                assert!(handed, "event #{} never handed over", step.seq);
            }
            assert!(
                crate::drain(&mut out, &mut mux, Duration::from_secs(40)),
                "{} events never acknowledged",
                mux.unacked()
            );
            done.acked += mux.acked;
            done.broker_log
                .extend(out.broker_log.borrow().iter().cloned());
            cache = out.cache().borrow().clone();
            out.close();
        }
        done
    }
}
