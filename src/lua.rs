//! The FFI edge: what broker calls, mapped onto a [`Connector`].
//!
//! Kept thin on purpose. Per-connector state lives in a userdata owned by
//! the Lua state (several connectors may share the process); when the state
//! closes, its `__gc` drops the connector, which stops and joins the sender
//! thread before Lua unloads this library. mlua turns a Rust panic in a
//! callback into a Lua error, which broker logs as "0 acks".

mod raw;

use crate::config::{self, ParamValue, Params};
use crate::connector::Connector;
use crate::event::{Field, FieldSource};
use crate::logger::{self, Logger};
use mlua::{Lua, Result as LuaResult, Table, UserData, UserDataMethods, Value};
use std::time::{Duration, Instant};

/// The fields of an event the connector does not take (never asked).
struct NoFields;

impl FieldSource for NoFields {
    fn field(&mut self, _: &str) -> Option<Field> {
        None
    }
}

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
    names: raw::Names,
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
        let kind_of = |cat: i64, el: i64| match (u32::try_from(cat), u32::try_from(el)) {
            (Ok(cat), Ok(el)) => c.kind_of(cat, el),
            _ => None,
        };
        let read = match raw::read_event(lua, &self.names, &event, kind_of, |kind| c.screen(kind)) {
            Ok(read) => read,
            Err(e) => {
                c.log().warn(format_args!("cannot read event: {e}"));
                raw::EventRead {
                    category: -1,
                    element: -1,
                    fields: None,
                    screened_out: None,
                }
            }
        };
        if let Some((kind, why)) = read.screened_out {
            return c.write_screened_out(kind, why);
        }
        let mut fields = read.fields;
        let mut cache = raw::RawCache::new(lua);
        c.write(
            u32::try_from(read.category).unwrap_or(u32::MAX),
            u32::try_from(read.element).unwrap_or(u32::MAX),
            fields
                .as_mut()
                .map_or(&mut NoFields as &mut dyn FieldSource, |f| {
                    f as &mut dyn FieldSource
                }),
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
        lua.create_function(|lua, ()| {
            Ok(Handle {
                state: State::Fresh,
                names: raw::Names::new(lua)?,
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
