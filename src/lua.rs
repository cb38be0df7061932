//! The FFI edge: what broker calls, mapped onto a [`Connector`].
//!
//! Kept thin on purpose. `new()` returns `{init, filter, write, flush}`, C
//! closures sharing one userdata that owns the connector, so the loader
//! makes them broker's globals as they are (`filter = connector.filter`):
//! from broker's `lua_pcall` to Rust there is no method lookup or mlua
//! dispatch, which on a filtered event cost more than the work. `write`
//! alone goes through a one-line Lua function that also hands over the
//! two fields deciding most filtered events (`raw::Preread`).
//!
//! Per-connector state lives in that userdata (several connectors may share
//! the process); when the state closes, its `__gc` drops the connector,
//! which stops and joins the sender thread before Lua unloads this library.
//!
//! A panic stops at this edge, and every call still answers a real boolean.
//! What it costs depends on the call ([`Call::panicked`]): after `write` or
//! `flush` the connector holds acknowledgements for good (the event being
//! written may be lost, and broker's next `true` would acknowledge it);
//! after `init` the output refuses every event ([`Refusal`]); `filter`
//! lets the event through to `write`. Each is logged, and reminded of once
//! a minute.

mod custom;
#[cfg(feature = "fault-injection")]
mod fault;
mod raw;

use crate::config::{self, OutputKind, ParamValue, Params};
use crate::connector::Connector;
use crate::custom::{Hook, NoHook};
use crate::event::{ElementKind, Field, FieldSource, StatusBuilder};
use crate::logger::{self, Logger};
use crate::refusal::Refusal;
use mlua::{ffi, Lua, Result as LuaResult, Table};
use std::cell::RefCell;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// The fields of an event the connector does not take (never asked).
struct NoFields;

impl FieldSource for NoFields {
    fn field(&mut self, _: &str) -> Option<Field> {
        None
    }
}

enum State {
    /// Before `init`: broker probes `filter(1, 2)` here.
    Fresh,
    /// `init` found bad parameters, or failed: nothing is acknowledged.
    Refusing(Refusal),
    Running(Box<Connector>),
}

/// The calls broker makes, for what a panic in each costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Init,
    Filter,
    Write,
    Flush,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Init => "init",
            Call::Filter => "filter",
            Call::Write => "write",
            Call::Flush => "flush",
        }
    }
}

/// What the userdata behind `new()`'s closures owns.
struct Handle {
    /// Which loader made it.
    kind: OutputKind,
    state: State,
    /// `custom_code_file`, once loaded.
    custom: Option<custom::CustomCode>,
    /// Where `write` reads an event's fields into, reused.
    fields: Vec<Option<Field>>,
    status: StatusBuilder,
    /// Test builds only: where to panic (see `fault`).
    #[cfg(feature = "fault-injection")]
    faults: fault::Faults,
}

/// `init`'s parameters as read from Lua, or why they could not be.
type Entries = Result<Vec<(String, Option<ParamValue>)>, raw::CallError>;

impl Handle {
    /// # Safety
    /// `lua` is the running Lua state and `conf` the absolute index of
    /// init's parameter table.
    unsafe fn init(&mut self, lua: *mut ffi::lua_State, conf: c_int, entries: &Entries) {
        if let Some(old) = self.custom.take() {
            old.release(lua);
        }
        let (params, skipped) = params_of(entries);
        let log = open_log(self.kind, &params);
        if let Err(e) = entries {
            log.error(format_args!("cannot read the parameters: {e}"));
        }
        for name in skipped {
            log.error(format_args!(
                "parameter '{name}' has a value that is neither a string nor a number: ignored"
            ));
        }
        // Dropping a previous connector (init called twice) stops its sender first.
        self.state = State::Fresh;
        match config::parse_for(self.kind, &params) {
            Err(errors) => {
                let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                for e in &errors {
                    log.error(format_args!("{e}"));
                }
                self.state = State::Refusing(Refusal::configuration(log, errors, Instant::now()));
            }
            Ok(parsed) => {
                for u in &parsed.unhonoured {
                    log.error(format_args!("{u}"));
                }
                for n in &parsed.notices {
                    log.info(format_args!("{n}"));
                }
                self.state = match Connector::start(parsed.config, log.clone()) {
                    Ok(c) => {
                        self.custom = load_custom_code(lua, conf, &c);
                        State::Running(Box::new(c))
                    }
                    Err(e) => {
                        log.error(format_args!("{e}"));
                        State::Refusing(Refusal::configuration(log, vec![e], Instant::now()))
                    }
                };
            }
        }
    }

    /// What `write` and `flush` answer when no connector runs.
    fn refuse(&mut self) -> bool {
        match &mut self.state {
            State::Refusing(r) => r.refuse(Instant::now()),
            _ => false,
        }
    }

    fn filter(&self, category: Option<u32>, element: Option<u32>) -> bool {
        match &self.state {
            State::Running(c) => match (category, element) {
                (Some(cat), Some(el)) => c.accepts(cat, el),
                _ => false,
            },
            // Before init (broker's filter(1, 2) probe) and while
            // misconfigured, let events reach write, which answers false.
            State::Fresh | State::Refusing(_) => true,
        }
    }

    /// # Safety
    /// `state` is the running Lua state; `event` and `names` (the
    /// [`raw::Names`] table) absolute or pseudo indices.
    unsafe fn write(
        &mut self,
        state: *mut ffi::lua_State,
        event: c_int,
        names: c_int,
        pre: raw::Preread,
    ) -> bool {
        let State::Running(c) = &mut self.state else {
            return self.refuse();
        };
        let (values, status) = (&mut self.fields, &mut self.status);
        let kind_of = |cat: i64, el: i64| match (u32::try_from(cat), u32::try_from(el)) {
            (Ok(cat), Ok(el)) => c.kind_of(cat, el),
            _ => None,
        };
        let read =
            match raw::read_event(state, event, names, pre, values, status, kind_of, |kind| {
                c.screen(kind)
            }) {
                Ok(read) => read,
                // Broker's accessors raise errors as documented: the event
                // is skipped and acknowledged with the next ones.
                Err(raw::CallError::Raised(e)) => {
                    c.log().warn(format_args!("cannot read event: {e}"));
                    raw::EventRead::unread()
                }
                Err(raw::CallError::Fault(e)) => return c.write_unreadable(&e),
            };
        if let Some((kind, why)) = read.screened_out {
            return c.write_screened_out(kind, why);
        }
        let mut cache = raw::RawCache::new(state);
        let mut lua_hook;
        let hook: &mut dyn Hook = match &self.custom {
            Some(code) => {
                lua_hook = custom::LuaHook {
                    state,
                    event: ffi::lua_absindex(state, event),
                    code,
                };
                &mut lua_hook
            }
            None => &mut NoHook,
        };
        if let Some(read) = read.status {
            let mut src = raw::LuaEvent::new(state, event);
            return c.write_event(read.map(|()| status.finish()), &mut src, &mut cache, hook);
        }
        let mut fields = read.fields;
        c.write(
            u32::try_from(read.category).unwrap_or(u32::MAX),
            u32::try_from(read.element).unwrap_or(u32::MAX),
            fields
                .as_mut()
                .map_or(&mut NoFields as &mut dyn FieldSource, |f| {
                    f as &mut dyn FieldSource
                }),
            &mut cache,
            hook,
        )
    }

    fn flush(&mut self) -> bool {
        match &mut self.state {
            State::Running(c) => c.flush(),
            _ => self.refuse(),
        }
    }

    fn log(&self) -> Option<&Logger> {
        match &self.state {
            State::Running(c) => Some(c.log()),
            State::Refusing(r) => Some(r.log()),
            State::Fresh => None,
        }
    }
}

impl Call {
    /// What follows a panic in this call (already answered with its
    /// fallback). `entries` are init's parameters, to find its log.
    fn panicked(self, h: &mut Handle, message: &str, entries: Option<&Entries>) {
        match (self, &mut h.state) {
            (Call::Write | Call::Flush, State::Running(c)) => {
                c.internal_error(self.name(), message);
            }
            (Call::Init, _) => {
                // Whatever `init` left behind is not trusted; a connector
                // it may have started is stopped.
                h.state = State::Fresh;
                let log = entries
                    .map(|e| params_of(e).0)
                    .and_then(|params| {
                        catch_unwind(AssertUnwindSafe(|| open_log(h.kind, &params))).ok()
                    })
                    .unwrap_or_else(|| open_log(h.kind, &Params::new()));
                h.state = State::Refusing(Refusal::internal_error(log, message, Instant::now()));
            }
            _ => {
                let then = match self {
                    Call::Filter => "the event goes on to write",
                    _ => "nothing acknowledged",
                };
                if let Some(log) = h.log() {
                    log.error(format_args!(
                        "internal error in {}: {message}; {then}",
                        self.name()
                    ));
                }
            }
        }
    }
}

/// init's parameters as [`Params`], and the names of those whose value is
/// neither a string nor a number. Unreadable parameters read as none.
fn params_of(entries: &Entries) -> (Params, Vec<String>) {
    let mut params = Params::new();
    let mut skipped = Vec::new();
    for (name, value) in entries.as_deref().unwrap_or_default() {
        match value {
            Some(p) => {
                params.insert(name.clone(), p.clone());
            }
            None => skipped.push(name.clone()),
        }
    }
    (params, skipped)
}

/// The log `params` name (`logfile`, `log_level`), or the default log;
/// stderr (cbd's journal) if it cannot be opened.
fn open_log(kind: OutputKind, params: &Params) -> Logger {
    let (path, level) = config::log_settings(kind, params);
    let filter = logger::level_filter(level);
    Logger::open(&path, filter).unwrap_or_else(|e| {
        let l = Logger::stderr(filter);
        l.error(format_args!(
            "cannot open logfile {}: {e}; logging to stderr",
            path.display()
        ));
        l
    })
}

/// What the userdata holds: null once `__gc` dropped the handle.
type Slot = *mut RefCell<Handle>;

/// The handle of the closure being called (its first upvalue), if it has
/// not been collected.
///
/// # Safety
/// Called from one of `new()`'s closures, with `state` running it.
unsafe fn handle<'a>(state: *mut ffi::lua_State) -> Option<&'a RefCell<Handle>> {
    let slot = ffi::lua_touserdata(state, ffi::lua_upvalueindex(1)) as *mut Slot;
    if slot.is_null() || (*slot).is_null() {
        return None;
    }
    Some(&**slot)
}

/// Runs `f` on the handle of the closure being called, or answers
/// `fallback` when there is none (collected, or already in use: a cache
/// method calling back into the connector). A panic in `f` is answered
/// with `fallback` too, after [`Call::panicked`] (itself guarded: nothing
/// unwinds into Lua). `entries` are init's parameters.
///
/// # Safety
/// As [`handle`].
unsafe fn run<T>(
    state: *mut ffi::lua_State,
    call: Call,
    fallback: T,
    entries: Option<&Entries>,
    f: impl FnOnce(&mut Handle) -> T,
) -> T {
    let Some(cell) = handle(state) else {
        return fallback;
    };
    let Ok(mut h) = cell.try_borrow_mut() else {
        return fallback;
    };
    let ran = catch_unwind(AssertUnwindSafe(|| {
        #[cfg(feature = "fault-injection")]
        h.faults.trip(call.name());
        f(&mut h)
    }));
    match ran {
        Ok(v) => v,
        Err(payload) => {
            let message = logger::panic_message(&*payload).to_string();
            let _ = catch_unwind(AssertUnwindSafe(|| {
                call.panicked(&mut h, &message, entries)
            }));
            fallback
        }
    }
}

/// A number argument as a broker type part.
unsafe fn u32_arg(state: *mut ffi::lua_State, idx: c_int) -> Option<u32> {
    raw::int_at(state, idx).and_then(|i| u32::try_from(i).ok())
}

unsafe extern "C-unwind" fn l_init(state: *mut ffi::lua_State) -> c_int {
    let entries = raw::read_params(state, 1);
    #[cfg(feature = "fault-injection")]
    if let Some(Ok(mut h)) = handle(state).map(RefCell::try_borrow_mut) {
        h.faults = fault::Faults::of(&entries);
    }
    run(state, Call::Init, (), Some(&entries), |h| {
        h.init(state, 1, &entries)
    });
    0
}

/// Loads `custom_code_file` when set. As in Lua, code that cannot be loaded
/// is reported and the connector runs without it.
///
/// # Safety
/// As [`Handle::init`].
unsafe fn load_custom_code(
    lua: *mut ffi::lua_State,
    conf: c_int,
    c: &Connector,
) -> Option<custom::CustomCode> {
    let path = c.config().custom_code_file.clone()?;
    let shown = path.display().to_string();
    let limit = c.config().format.output_size_limit;
    match custom::CustomCode::load(lua, &shown, conf, limit, c.log()) {
        Ok(code) => {
            c.log().info(format_args!(
                "custom_code_file {shown}: loaded, run on every event the filters accept"
            ));
            Some(code)
        }
        Err(e) => {
            c.log().error(format_args!(
                "custom_code_file {shown}: cannot load it ({e}): no custom code runs, and every event the filters accept is sent"
            ));
            None
        }
    }
}

unsafe extern "C-unwind" fn l_filter(state: *mut ffi::lua_State) -> c_int {
    let (category, element) = (u32_arg(state, 1), u32_arg(state, 2));
    // On failure let the event reach `write`: `false` would drop it.
    let pass = run(state, Call::Filter, true, None, |h| {
        h.filter(category, element)
    });
    ffi::lua_pushboolean(state, pass as c_int);
    1
}

/// `write(event [, _type, state_type])`: the loader passes the two fields
/// it read (see [`raw::Preread`]).
unsafe extern "C-unwind" fn l_write(state: *mut ffi::lua_State) -> c_int {
    let names = ffi::lua_upvalueindex(2);
    let pre = raw::Preread::from_args(state);
    let acked = run(state, Call::Write, false, None, |h| {
        h.write(state, 1, names, pre)
    });
    ffi::lua_pushboolean(state, acked as c_int);
    1
}

unsafe extern "C-unwind" fn l_flush(state: *mut ffi::lua_State) -> c_int {
    let acked = run(state, Call::Flush, false, None, |h| h.flush());
    ffi::lua_pushboolean(state, acked as c_int);
    1
}

/// The userdata's finalizer: stops the connector (joins its threads).
unsafe extern "C-unwind" fn l_gc(state: *mut ffi::lua_State) -> c_int {
    let slot = ffi::lua_touserdata(state, 1) as *mut Slot;
    if !slot.is_null() && !(*slot).is_null() {
        let handle = Box::from_raw(*slot);
        *slot = std::ptr::null_mut();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(handle)));
    }
    0
}

/// `new([output])`: a fresh connector, as `{init, filter, write, flush}`;
/// `output` is `"canopsis"` (the default) or `"webhook"`.
unsafe extern "C-unwind" fn l_new(state: *mut ffi::lua_State) -> c_int {
    let name = (ffi::lua_type(state, 1) == ffi::LUA_TSTRING).then(|| raw::text_at(state, 1));
    let kind = match name.as_deref() {
        None | Some("canopsis") => OutputKind::Canopsis,
        Some("webhook") => OutputKind::Webhook,
        Some(_) => {
            ffi::lua_pushstring(
                state,
                c"new(output): output is \"canopsis\" or \"webhook\"".as_ptr(),
            );
            ffi::lua_error(state);
        }
    };
    // Any of these calls may raise "out of memory": until the handle is
    // boxed there is nothing to release, and after it `__gc` owns it.
    let slot = ffi::lua_newuserdata(state, std::mem::size_of::<Slot>()) as *mut Slot;
    slot.write(std::ptr::null_mut());
    let ud = ffi::lua_gettop(state);
    ffi::lua_createtable(state, 0, 1);
    ffi::lua_pushcfunction(state, l_gc);
    ffi::lua_setfield(state, -2, c"__gc".as_ptr());
    ffi::lua_setmetatable(state, ud);
    *slot = Box::into_raw(Box::new(RefCell::new(Handle {
        kind,
        state: State::Fresh,
        custom: None,
        fields: Vec::with_capacity(16),
        status: StatusBuilder::new(ElementKind::ServiceStatus, None),
        #[cfg(feature = "fault-injection")]
        faults: fault::Faults::default(),
    })));
    ffi::lua_createtable(state, 0, 4);
    let closures: [(&std::ffi::CStr, ffi::lua_CFunction); 3] = [
        (c"init", l_init),
        (c"filter", l_filter),
        (c"flush", l_flush),
    ];
    for (name, f) in closures {
        ffi::lua_pushvalue(state, ud);
        ffi::lua_pushcclosure(state, f, 1);
        ffi::lua_setfield(state, -2, name.as_ptr());
    }
    ffi::lua_pushvalue(state, ud);
    raw::Names::push(state);
    ffi::lua_pushcclosure(state, l_write, 2);
    ffi::lua_setfield(state, -2, c"write".as_ptr());
    1
}

fn exports(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    // SAFETY: `l_new` follows the Lua C API's rules for C functions.
    t.set("new", unsafe { lua.create_c_function(l_new)? })?;
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
