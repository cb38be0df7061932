//! The FFI edge: what broker calls, mapped onto a [`Connector`].
//!
//! Kept thin on purpose. Per-connector state lives in a userdata owned by
//! the Lua state (several connectors may share the process); when the state
//! closes, its `__gc` drops the connector, which stops and joins the sender
//! thread before Lua unloads this library. mlua turns a Rust panic in a
//! callback into a Lua error, which broker logs as "0 acks".

use crate::cache::{Cache, HostInfo, ServiceInfo};
use crate::config::{self, ParamValue, Params};
use crate::connector::Connector;
use crate::event::{Field, FieldSource};
use crate::logger::{self, Logger};
use mlua::{
    FromLuaMulti, IntoLuaMulti, Lua, ObjectLike, Result as LuaResult, Table, UserData,
    UserDataMethods, Value,
};
use std::time::{Duration, Instant};

/// How often a misconfigured connector repeats why it acknowledges nothing.
const REMINDER: Duration = Duration::from_secs(60);

enum State {
    /// Before `init`: broker probes `filter(1, 2)` here.
    Fresh,
    /// `init` found bad parameters: nothing is acknowledged.
    Broken {
        log: Logger,
        errors: Vec<String>,
        last_reminder: Instant,
    },
    Running(Box<Connector>),
}

/// The userdata behind the loader's `connector` object.
pub struct Handle {
    state: State,
}

fn param_value(v: &Value) -> Option<ParamValue> {
    Some(match v {
        Value::Integer(i) => ParamValue::Int(*i),
        Value::Number(f) => ParamValue::Float(*f),
        Value::String(s) => ParamValue::Str(s.to_string_lossy()),
        Value::Boolean(b) => ParamValue::Bool(*b),
        _ => return None,
    })
}

fn field_of(v: Value) -> Option<Field> {
    Some(match v {
        Value::Nil => return None,
        Value::Integer(i) => Field::Int(i),
        Value::Number(f) => Field::Float(f),
        Value::String(s) => Field::Str(s.as_bytes().to_vec()),
        Value::Boolean(b) => Field::Bool(b),
        other => Field::Other(other.type_name()),
    })
}

fn get(v: &Value, key: &str) -> Option<Value> {
    match v {
        Value::Table(t) => t.get::<Value>(key).ok(),
        Value::UserData(u) => u.get::<Value>(key).ok(),
        _ => None,
    }
}

fn get_string(v: &Value, key: &str) -> Option<String> {
    match get(v, key)? {
        Value::String(s) => Some(s.to_string_lossy()),
        _ => None,
    }
}

fn get_int(v: &Value, key: &str) -> Option<i64> {
    match get(v, key)? {
        Value::Integer(i) => Some(i),
        Value::Number(f) if f.fract() == 0.0 => Some(f as i64),
        _ => None,
    }
}

/// An event as broker hands it: API 1 table or API 2 userdata.
struct LuaEvent<'a>(&'a Value);

impl FieldSource for LuaEvent<'_> {
    fn field(&mut self, name: &str) -> Option<Field> {
        field_of(get(self.0, name)?)
    }
}

/// `broker_cache`, looked up in the globals at each event (it only exists
/// after the script's main chunk ran). Broker's is a userdata; any object
/// with the same methods works.
struct LuaCache(Value);

impl LuaCache {
    fn call<R: FromLuaMulti>(&self, method: &str, args: impl IntoLuaMulti) -> Option<R> {
        match &self.0 {
            Value::UserData(u) => u.call_method::<R>(method, args).ok(),
            Value::Table(t) => t.call_method::<R>(method, args).ok(),
            _ => None,
        }
    }

    fn groups(&self, method: &str, args: impl IntoLuaMulti) -> Vec<String> {
        let Some(list) = self.call::<Option<Table>>(method, args).flatten() else {
            return Vec::new();
        };
        list.sequence_values::<Value>()
            .filter_map(|g| g.ok())
            .filter_map(|g| get_string(&g, "group_name"))
            .collect()
    }
}

impl Cache for LuaCache {
    fn host(&mut self, host_id: u64) -> Option<HostInfo> {
        let h = self.call::<Value>("get_host", host_id)?;
        if h.is_nil() {
            return None;
        }
        Some(HostInfo {
            name: get_string(&h, "name"),
            instance_id: get_int(&h, "instance_id")
                .or_else(|| get_int(&h, "poller_id"))
                .filter(|i| *i > 0)
                .map(|i| i as u64),
            notes_url: get_string(&h, "notes_url").filter(|s| !s.is_empty()),
            action_url: get_string(&h, "action_url").filter(|s| !s.is_empty()),
            state: get_int(&h, "state"),
        })
    }

    fn service(&mut self, host_id: u64, service_id: u64) -> Option<ServiceInfo> {
        let s = self.call::<Value>("get_service", (host_id, service_id))?;
        if s.is_nil() {
            return None;
        }
        Some(ServiceInfo {
            description: get_string(&s, "description"),
            notes_url: get_string(&s, "notes_url").filter(|s| !s.is_empty()),
            action_url: get_string(&s, "action_url").filter(|s| !s.is_empty()),
            state: get_int(&s, "state"),
        })
    }

    fn hostgroups(&mut self, host_id: u64) -> Vec<String> {
        self.groups("get_hostgroups", host_id)
    }

    fn servicegroups(&mut self, host_id: u64, service_id: u64) -> Vec<String> {
        self.groups("get_servicegroups", (host_id, service_id))
    }

    fn poller_name(&mut self, instance_id: u64) -> Option<String> {
        self.call::<Option<String>>("get_instance_name", instance_id)
            .flatten()
    }

    fn severity(&mut self, host_id: u64, service_id: Option<u64>) -> Option<i64> {
        match service_id {
            None => self.call::<Option<i64>>("get_severity", host_id).flatten(),
            Some(s) => self
                .call::<Option<i64>>("get_severity", (host_id, s))
                .flatten(),
        }
    }
}

impl Handle {
    fn init(&mut self, conf: Value) {
        let mut params = Params::new();
        let mut skipped = Vec::new();
        if let Value::Table(t) = &conf {
            for (k, v) in t.pairs::<Value, Value>().flatten() {
                let Value::String(k) = k else { continue };
                let name = k.to_string_lossy();
                match param_value(&v) {
                    Some(p) => {
                        params.insert(name, p);
                    }
                    None => skipped.push(name),
                }
            }
        }
        let (path, level) = config::log_settings(&params);
        let filter = logger::level_filter(level);
        let log = Logger::open(&path, filter).unwrap_or_else(|e| {
            let l = Logger::stderr(filter);
            l.error(format_args!(
                "cannot open logfile {}: {e}; logging to stderr",
                path.display()
            ));
            l
        });
        for name in skipped {
            log.error(format_args!(
                "parameter '{name}' has a value that is neither a string nor a number: ignored"
            ));
        }
        // Dropping a previous connector (init called twice) stops its sender first.
        self.state = State::Fresh;
        match config::parse(&params) {
            Err(errors) => {
                let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                for e in &errors {
                    log.error(format_args!("{e}"));
                }
                log.error(format_args!(
                    "configuration rejected: no event is acknowledged, broker keeps them until the output is fixed"
                ));
                self.state = State::Broken {
                    log,
                    errors,
                    last_reminder: Instant::now(),
                };
            }
            Ok(parsed) => {
                for n in &parsed.notices {
                    log.info(format_args!("{n}"));
                }
                self.state = match Connector::start(parsed.config, log.clone()) {
                    Ok(c) => State::Running(Box::new(c)),
                    Err(e) => {
                        log.error(format_args!("{e}"));
                        State::Broken {
                            log,
                            errors: vec![e],
                            last_reminder: Instant::now(),
                        }
                    }
                };
            }
        }
    }

    fn refuse(&mut self) -> bool {
        if let State::Broken {
            log,
            errors,
            last_reminder,
        } = &mut self.state
        {
            if last_reminder.elapsed() >= REMINDER {
                *last_reminder = Instant::now();
                log.error(format_args!(
                    "not acknowledging events: configuration rejected ({})",
                    errors.join("; ")
                ));
            }
        }
        false
    }

    fn filter(&self, category: Value, element: Value) -> bool {
        let as_u32 = |v: &Value| match v {
            Value::Integer(i) => u32::try_from(*i).ok(),
            Value::Number(f) if f.fract() == 0.0 && *f >= 0.0 => Some(*f as u32),
            _ => None,
        };
        match &self.state {
            State::Running(c) => match (as_u32(&category), as_u32(&element)) {
                (Some(cat), Some(el)) => c.accepts(cat, el),
                _ => false,
            },
            // Before init (broker's filter(1, 2) probe) and while
            // misconfigured, let events reach write, which answers false.
            State::Fresh | State::Broken { .. } => true,
        }
    }

    fn write(&mut self, lua: &Lua, event: Value) -> bool {
        let State::Running(c) = &mut self.state else {
            return self.refuse();
        };
        let (category, element) = match (get_int(&event, "category"), get_int(&event, "element")) {
            (Some(cat), Some(el)) => (cat, el),
            _ => match get_int(&event, "_type") {
                Some(t) => (t >> 16, t & 0xffff),
                None => (-1, -1),
            },
        };
        let mut cache = LuaCache(
            lua.globals()
                .get::<Value>("broker_cache")
                .unwrap_or(Value::Nil),
        );
        c.write(
            u32::try_from(category).unwrap_or(u32::MAX),
            u32::try_from(element).unwrap_or(u32::MAX),
            &mut LuaEvent(&event),
            &mut cache,
        )
    }

    fn flush(&mut self) -> bool {
        match &mut self.state {
            State::Running(c) => c.flush(),
            _ => self.refuse(),
        }
    }
}

impl UserData for Handle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("init", |_, this, conf: Value| {
            this.init(conf);
            Ok(())
        });
        methods.add_method("filter", |_, this, (category, element): (Value, Value)| {
            Ok(this.filter(category, element))
        });
        methods.add_method_mut(
            "write",
            |lua, this, event: Value| Ok(this.write(lua, event)),
        );
        methods.add_method_mut("flush", |_, this, ()| Ok(this.flush()));
    }
}

fn exports(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.set(
        "new",
        lua.create_function(|_, ()| {
            Ok(Handle {
                state: State::Fresh,
            })
        })?,
    )?;
    t.set("version", env!("CARGO_PKG_VERSION"))?;
    Ok(t)
}

/// `require("canopsis_native_53")`.
#[cfg(feature = "lua53")]
#[mlua::lua_module(name = "canopsis_native_53")]
fn canopsis_native_53(lua: &Lua) -> LuaResult<Table> {
    exports(lua)
}

/// `require("canopsis_native_54")`.
#[cfg(feature = "lua54")]
#[mlua::lua_module(name = "canopsis_native_54")]
fn canopsis_native_54(lua: &Lua) -> LuaResult<Table> {
    exports(lua)
}
