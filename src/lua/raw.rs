//! Talking to Lua with the plain C API.
//!
//! Broker calls `write` for every event, so the path from its `lua_pcall`
//! to the connector must cost little: no mlua dispatch, no registry
//! references, one protected call per event in which all its fields are
//! read (`lua_gettable` honours `__index`, so API 1 tables and API 2
//! userdata read the same way), and one per cache lookup.
//!
//! Safety rule for the closures given to [`protect`]: a Lua error inside
//! them unwinds with `longjmp` to the protected call, skipping their
//! frames. So they keep no value with a destructor in their own frame while
//! calling Lua; results go straight into storage owned by the caller.

use crate::cache::{BaInfo, Cache, HostInfo, ServiceInfo};
use crate::config::ParamValue;
use crate::event::{ElementKind, EventError, Field, FieldSource, StatusBuilder};
use crate::filter::Screen;
use crate::rejection::Rejection;
use mlua::ffi;
use std::ffi::c_void;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What [`trampoline`] runs, and whether it panicked.
struct Call<'a> {
    f: &'a mut dyn FnMut(*mut ffi::lua_State),
    panicked: bool,
}

/// The protected function behind [`protect`]: its first argument is the
/// [`Call`], the others are handed to the closure at indices 1, 2, ...
unsafe extern "C-unwind" fn trampoline(state: *mut ffi::lua_State) -> c_int {
    let call = &mut *(ffi::lua_touserdata(state, 1) as *mut Call);
    ffi::lua_remove(state, 1);
    // A panic must not unwind through Lua's C frames.
    call.panicked = catch_unwind(AssertUnwindSafe(|| (call.f)(state))).is_err();
    0
}

/// Why a protected call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// A Lua error raised by what the call ran: broker's event accessors
    /// (its documented behaviour), a cache method.
    Raised(String),
    /// Nothing the event or broker said: Lua out of memory, a stack
    /// overflow, an error while handling an error, a panic.
    Fault(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Raised(m) | CallError::Fault(m) => f.write_str(m),
        }
    }
}

/// Runs `f` in a protected call, with the values at `args` (absolute or
/// pseudo indices) at indices 1, 2, ... of its stack. A Lua error or a
/// panic inside comes back as `Err`; the stack is left as it was.
///
/// # Safety
/// `state` is the running Lua state, and `f` follows the module's rule.
pub unsafe fn protect(
    state: *mut ffi::lua_State,
    args: &[c_int],
    f: impl FnOnce(*mut ffi::lua_State),
) -> Result<(), CallError> {
    let base = ffi::lua_gettop(state);
    if ffi::lua_checkstack(state, args.len() as c_int + 2) == 0 {
        return Err(CallError::Fault("Lua stack exhausted".into()));
    }
    let mut f = Some(f);
    let mut once = |s: *mut ffi::lua_State| {
        if let Some(f) = f.take() {
            f(s)
        }
    };
    let mut call = Call {
        f: &mut once,
        panicked: false,
    };
    ffi::lua_pushcfunction(state, trampoline);
    ffi::lua_pushlightuserdata(state, &mut call as *mut Call as *mut c_void);
    for &a in args {
        ffi::lua_pushvalue(state, a);
    }
    let rc = ffi::lua_pcall(state, args.len() as c_int + 1, 0, 0);
    let r = if rc != 0 {
        let text = error_text(state);
        // A stack overflow is raised as an ordinary error, and so is a
        // failed buffer allocation in the auxiliary library: by message.
        let starved = rc == ffi::LUA_ERRMEM || text.contains("not enough memory");
        if starved {
            Err(CallError::Fault(format!("Lua is out of memory ({text})")))
        } else if rc == ffi::LUA_ERRRUN && !text.contains("stack overflow") {
            Err(CallError::Raised(text))
        } else {
            Err(CallError::Fault(text))
        }
    } else if call.panicked {
        Err(CallError::Fault(
            "internal error (panic, see stderr)".into(),
        ))
    } else {
        Ok(())
    };
    ffi::lua_settop(state, base);
    r
}

/// The error object on top of the stack, as text. Called outside any
/// protected call, so it converts nothing in Lua: a number is formatted
/// here (`lua_tolstring` would allocate a string, and could raise).
unsafe fn error_text(state: *mut ffi::lua_State) -> String {
    match ffi::lua_type(state, -1) {
        ffi::LUA_TSTRING => text_at(state, -1),
        ffi::LUA_TNUMBER if ffi::lua_isinteger(state, -1) != 0 => {
            ffi::lua_tointeger(state, -1).to_string()
        }
        ffi::LUA_TNUMBER => ffi::lua_tonumber(state, -1).to_string(),
        t => format!(
            "error object is a {}",
            std::ffi::CStr::from_ptr(ffi::lua_typename(state, t)).to_string_lossy()
        ),
    }
}

/// Converts the value on top of the stack. Raises no Lua error: strings are
/// read as they are, numbers are not converted.
pub(super) unsafe fn top_field(state: *mut ffi::lua_State) -> Option<Field> {
    field_at(state, -1, ffi::lua_type(state, -1))
}

/// The value at `idx`, of type `t`, converted as [`top_field`] does.
unsafe fn field_at(state: *mut ffi::lua_State, idx: c_int, t: c_int) -> Option<Field> {
    Some(match t {
        ffi::LUA_TNIL | ffi::LUA_TNONE => return None,
        ffi::LUA_TNUMBER => {
            if ffi::lua_isinteger(state, idx) != 0 {
                Field::Int(ffi::lua_tointeger(state, idx))
            } else {
                Field::Float(ffi::lua_tonumber(state, idx))
            }
        }
        ffi::LUA_TSTRING => {
            let mut len = 0;
            let p = ffi::lua_tolstring(state, idx, &mut len);
            Field::Str(std::slice::from_raw_parts(p as *const u8, len).to_vec())
        }
        ffi::LUA_TBOOLEAN => Field::Bool(ffi::lua_toboolean(state, idx) != 0),
        ffi::LUA_TTABLE => Field::Other("table"),
        ffi::LUA_TFUNCTION => Field::Other("function"),
        ffi::LUA_TTHREAD => Field::Other("thread"),
        _ => Field::Other("userdata"),
    })
}

/// Pushes `obj[name]` (metamethods honoured) for `obj` at `idx`.
pub(super) unsafe fn push_field(state: *mut ffi::lua_State, idx: c_int, name: &str) {
    let idx = ffi::lua_absindex(state, idx);
    ffi::lua_pushlstring(state, name.as_ptr() as *const _, name.len());
    ffi::lua_gettable(state, idx);
}

pub(super) unsafe fn read_field(
    state: *mut ffi::lua_State,
    idx: c_int,
    name: &str,
) -> Option<Field> {
    push_field(state, idx, name);
    let f = top_field(state);
    ffi::lua_pop(state, 1);
    f
}

/// Pushes `obj[names[i]]` and converts it.
unsafe fn read_named(
    state: *mut ffi::lua_State,
    obj: c_int,
    names: c_int,
    i: usize,
) -> Option<Field> {
    ffi::lua_rawgeti(state, names, i as ffi::lua_Integer);
    let t = ffi::lua_gettable(state, obj);
    let f = field_at(state, -1, t);
    ffi::lua_pop(state, 1);
    f
}

/// Every field name an event is read by, as Lua strings made once per
/// connector: `lua_pushlstring` would hash and intern each name on every
/// read. A sequence: [`TYPE_FIELDS`], then each kind's fields in [`KINDS`]
/// order.
pub struct Names;

/// Kinds in the order their names sit in [`Names`], after the three
/// type fields.
const KINDS: [ElementKind; 5] = [
    ElementKind::HostStatus,
    ElementKind::ServiceStatus,
    ElementKind::Acknowledgement,
    ElementKind::Downtime,
    ElementKind::BaStatus,
];

const TYPE_FIELDS: [&str; 3] = ["_type", "category", "element"];

impl Names {
    /// Pushes a new names table.
    ///
    /// # Safety
    /// `state` is the running Lua state; raises a Lua error when out of
    /// memory (nothing to release in this frame).
    pub unsafe fn push(state: *mut ffi::lua_State) {
        let all = TYPE_FIELDS
            .iter()
            .chain(KINDS.iter().flat_map(|k| k.fields().iter()));
        ffi::lua_createtable(state, 64, 0);
        for (i, name) in all.enumerate() {
            ffi::lua_pushlstring(state, name.as_ptr() as *const _, name.len());
            ffi::lua_rawseti(state, -2, i as ffi::lua_Integer + 1);
        }
    }

    /// Index (1-based) of `kind`'s first field name.
    fn first(kind: ElementKind) -> usize {
        /// The index for each of [`KINDS`].
        const FIRST: [usize; KINDS.len()] = {
            let mut first = [0; KINDS.len()];
            let mut next = TYPE_FIELDS.len() + 1;
            let mut i = 0;
            while i < KINDS.len() {
                first[i] = next;
                next += KINDS[i].fields().len();
                i += 1;
            }
            first
        };
        match kind {
            ElementKind::HostStatus => FIRST[0],
            ElementKind::ServiceStatus => FIRST[1],
            ElementKind::Acknowledgement => FIRST[2],
            ElementKind::Downtime => FIRST[3],
            ElementKind::BaStatus => FIRST[4],
        }
    }
}

pub(super) fn indexable(t: c_int) -> bool {
    t == ffi::LUA_TTABLE || t == ffi::LUA_TUSERDATA
}

/// A broker event on the Lua stack, read on demand (a template's fields).
#[derive(Debug, Clone, Copy)]
pub struct LuaEvent {
    state: *mut ffi::lua_State,
    idx: c_int,
}

impl LuaEvent {
    /// # Safety
    /// `state` is the running Lua state and the event stays at `idx` for
    /// as long as this lives.
    pub unsafe fn new(state: *mut ffi::lua_State, idx: c_int) -> LuaEvent {
        LuaEvent {
            state,
            idx: ffi::lua_absindex(state, idx),
        }
    }
}

impl FieldSource for LuaEvent {
    fn field(&mut self, name: &str) -> Option<Field> {
        let mut out = None;
        // SAFETY: `new`'s contract; the closure follows the module's rule.
        // A field broker cannot give is a field without value.
        let _ = unsafe {
            protect(self.state, &[self.idx], |state| {
                if indexable(ffi::lua_type(state, 1)) {
                    out = read_field(state, 1, name);
                }
            })
        };
        out
    }

    fn fields(&mut self, names: &[String], out: &mut Vec<Option<Field>>) {
        out.clear();
        // SAFETY: as in `field`; `out` lives outside the protected call.
        let _ = unsafe {
            protect(self.state, &[self.idx], |state| {
                if indexable(ffi::lua_type(state, 1)) {
                    for n in names {
                        out.push(read_field(state, 1, n));
                    }
                }
            })
        };
        out.resize(names.len(), None);
    }
}

/// An acknowledgement's, downtime's or BA's fields, fetched at once.
pub struct Prefetched<'v> {
    names: &'static [&'static str],
    values: &'v mut Vec<Option<Field>>,
    /// Where the next name asked is expected: readers ask in the order of
    /// `names`, mostly.
    next: usize,
    /// Which of `names` were handed out (a kind has fewer than 64).
    taken: u64,
    /// For any other field.
    event: LuaEvent,
}

impl FieldSource for Prefetched<'_> {
    /// Each prefetched field is handed out once
    /// ([`crate::event::NebEvent::read`] reads each at most once); asked
    /// again (by a template), it is read from broker.
    fn field(&mut self, name: &str) -> Option<Field> {
        let i = match self.names.get(self.next) {
            Some(n) if *n == name => self.next,
            _ => match self.names.iter().position(|n| *n == name) {
                Some(i) => i,
                None => return self.event.field(name),
            },
        };
        self.next = i + 1;
        if self.taken & (1 << i) != 0 {
            // Handed out already: ask broker again.
            return self.event.field(name);
        }
        self.taken |= 1 << i;
        self.values.get_mut(i)?.take()
    }

    fn fields(&mut self, names: &[String], out: &mut Vec<Option<Field>>) {
        self.event.fields(names, out)
    }
}

/// What `write` needs of an event: its type, and the fields of the kind the
/// connector takes (`kind_of` decides; nothing more is read for others).
pub struct EventRead<'v> {
    /// `category`, or -1 when unknown.
    pub category: i64,
    /// `element`, or -1 when unknown.
    pub element: i64,
    /// The fields of an acknowledgement or downtime the connector takes.
    pub fields: Option<Prefetched<'v>>,
    /// A status the connector takes: in the caller's builder, or why it
    /// could not be read.
    pub status: Option<Result<(), EventError>>,
    /// Why the screen rejected a status part way (the rest was not read).
    pub screened_out: Option<(ElementKind, Rejection)>,
}

impl EventRead<'_> {
    /// Nothing known of the event: its type unknown, nothing read.
    pub fn unread() -> Self {
        EventRead {
            category: -1,
            element: -1,
            fields: None,
            status: None,
            screened_out: None,
        }
    }
}

fn as_int(f: Option<Field>) -> Option<i64> {
    match f? {
        Field::Int(i) => Some(i),
        Field::Float(x) if x.fract() == 0.0 => Some(x as i64),
        _ => None,
    }
}

/// The value at `idx` as an integer (an integral float counts), if it is
/// a number.
///
/// # Safety
/// `state` is the running Lua state.
pub unsafe fn int_at(state: *mut ffi::lua_State, idx: c_int) -> Option<i64> {
    as_int(field_at(state, idx, ffi::lua_type(state, idx)))
}

/// What the loader already read from the event, in Lua, where reading a
/// field costs less than a protected call from C: `_type` and
/// `state_type`, the fields that decide most filtered events.
pub struct Preread {
    /// `_type`.
    pub type_id: Option<Field>,
    /// `state_type`.
    pub state_type: Option<Field>,
}

impl Preread {
    /// The values `write` was given after the event, at stack positions 2
    /// and 3 (none when called with the event alone).
    ///
    /// # Safety
    /// `state` is the running Lua state.
    pub unsafe fn from_args(state: *mut ffi::lua_State) -> Preread {
        Preread {
            type_id: field_at(state, 2, ffi::lua_type(state, 2)),
            state_type: field_at(state, 3, ffi::lua_type(state, 3)),
        }
    }
}

/// Reads the event at `event` (table or userdata), with the [`Names`]
/// table at `names`, handing each status field to the kind's `screen` and
/// stopping at the first it rejects. What `pre` holds is not read again: a
/// status rejected on it needs no call into Lua at all; otherwise the rest
/// is read in one protected call. A status is built in `status`; the fields
/// of other kinds go to `values` (cleared first). Both are kept by the
/// caller from one event to the next, so reading allocates nothing.
///
/// # Safety
/// `state` is the running Lua state; `event` and `names` are absolute or
/// pseudo indices.
#[allow(clippy::too_many_arguments)]
pub unsafe fn read_event<'c, 'v>(
    state: *mut ffi::lua_State,
    event: c_int,
    names_table: c_int,
    pre: Preread,
    values: &'v mut Vec<Option<Field>>,
    status: &mut StatusBuilder,
    kind_of: impl Fn(i64, i64) -> Option<ElementKind>,
    screen: impl Fn(ElementKind) -> Screen<'c>,
) -> Result<EventRead<'v>, CallError> {
    let mut out = EventRead::unread();
    values.clear();
    let mut names: &'static [&'static str] = &[];
    let mut kind = None;
    let mut is_status = false;
    let mut unusable: Option<EventError> = None;
    // Without `_type` (a table with `category` and `element` only), the
    // type is read in the protected call, and `state_type` with the rest.
    let pre = as_int(pre.type_id).map(|t| (t, pre.state_type));
    let typed = pre.is_some();
    if let Some((t, state_type)) = pre {
        out.category = t >> 16;
        out.element = t & 0xffff;
        kind = kind_of(out.category, out.element);
        match kind {
            None => return Ok(out),
            Some(k @ (ElementKind::HostStatus | ElementKind::ServiceStatus)) => {
                is_status = true;
                status.reset(k, u32::try_from(out.element).ok());
                // The first field of a status is always `state_type`.
                if let Some((i, _)) = status.next_field() {
                    if let Err(e) = status.set(i, state_type) {
                        out.status = Some(Err(e));
                        return Ok(out);
                    }
                    if let Some(why) = screen(k).after(i, status) {
                        out.screened_out = Some((k, why));
                        return Ok(out);
                    }
                }
            }
            Some(_) => {}
        }
    }
    // `out`, `values`, `names`, `kind`, `status` and `unusable` live
    // outside the protected call.
    protect(state, &[event, names_table], |state| {
        if !typed {
            if !indexable(ffi::lua_type(state, 1)) {
                return;
            }
            // `_type` is one read where `category` and `element` are two.
            let (cat, el) = match as_int(read_named(state, 1, 2, 1)) {
                Some(t) => (t >> 16, t & 0xffff),
                None => {
                    let cat = as_int(read_named(state, 1, 2, 2));
                    let el = as_int(read_named(state, 1, 2, 3));
                    (cat.unwrap_or(-1), el.unwrap_or(-1))
                }
            };
            out.category = cat;
            out.element = el;
            kind = kind_of(cat, el);
            if let Some(k @ (ElementKind::HostStatus | ElementKind::ServiceStatus)) = kind {
                is_status = true;
                status.reset(k, u32::try_from(el).ok());
            }
        }
        let Some(k) = kind else {
            return;
        };
        let first = Names::first(k);
        if is_status {
            let screen = screen(k);
            let b = &mut *status;
            while let Some((i, _)) = b.next_field() {
                if let Err(e) = b.set(i, read_named(state, 1, 2, first + i)) {
                    unusable = Some(e);
                    return;
                }
                if let Some(why) = screen.after(i, b) {
                    out.screened_out = Some((k, why));
                    return;
                }
            }
        } else {
            names = k.fields();
            for i in 0..names.len() {
                values.push(read_named(state, 1, 2, first + i));
            }
        }
    })?;
    if out.screened_out.is_some() {
        return Ok(out);
    }
    out.status = match (unusable, is_status) {
        (Some(e), _) => Some(Err(e)),
        (None, true) => Some(Ok(())),
        (None, false) => None,
    };
    if !names.is_empty() {
        out.fields = Some(Prefetched {
            names,
            values,
            next: 0,
            taken: 0,
            event: LuaEvent::new(state, event),
        });
    }
    Ok(out)
}

/// Bytes of the string at `idx` as text (lossy). Strings only: on a
/// number `lua_tolstring` would convert it in place.
pub(crate) unsafe fn text_at(state: *mut ffi::lua_State, idx: c_int) -> String {
    let mut len = 0;
    let p = ffi::lua_tolstring(state, idx, &mut len);
    String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len)).into_owned()
}

/// The `conf` table broker hands `init`, as (name, value) pairs; `None`
/// for a value that is neither a string, a number nor a boolean. Entries
/// whose key is not a string are skipped (broker never makes them).
///
/// # Safety
/// `state` is the running Lua state; `conf` an absolute index.
pub unsafe fn read_params(
    state: *mut ffi::lua_State,
    conf: c_int,
) -> Result<Vec<(String, Option<ParamValue>)>, CallError> {
    let mut out = Vec::new();
    if ffi::lua_type(state, conf) != ffi::LUA_TTABLE {
        return Ok(out);
    }
    protect(state, &[conf], |state| {
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, 1) != 0 {
            if ffi::lua_type(state, -2) == ffi::LUA_TSTRING {
                // No Lua call until both are moved into `out`.
                let name = text_at(state, -2);
                let value = match ffi::lua_type(state, -1) {
                    ffi::LUA_TNUMBER if ffi::lua_isinteger(state, -1) != 0 => {
                        Some(ParamValue::Int(ffi::lua_tointeger(state, -1)))
                    }
                    ffi::LUA_TNUMBER => Some(ParamValue::Float(ffi::lua_tonumber(state, -1))),
                    ffi::LUA_TSTRING => Some(ParamValue::Str(text_at(state, -1))),
                    ffi::LUA_TBOOLEAN => Some(ParamValue::Bool(ffi::lua_toboolean(state, -1) != 0)),
                    _ => None,
                };
                out.push((name, value));
            }
            ffi::lua_pop(state, 1);
        }
    })?;
    Ok(out)
}

/// Names (`key` of each element) of the group array at the top of the
/// stack, added to `out`; nothing for anything but a table.
///
/// # Safety
/// In a protected call, as [`protect`]'s closures are.
pub(super) unsafe fn group_names(state: *mut ffi::lua_State, key: &str, out: &mut Vec<String>) {
    if ffi::lua_type(state, -1) != ffi::LUA_TTABLE {
        return;
    }
    let n = ffi::lua_rawlen(state, -1) as ffi::lua_Integer;
    for i in 1..=n {
        ffi::lua_rawgeti(state, -1, i);
        if indexable(ffi::lua_type(state, -1)) {
            if let Some(Field::Str(b)) = read_field(state, -1, key) {
                out.push(String::from_utf8_lossy(&b).into_owned());
            }
        }
        ffi::lua_pop(state, 1);
    }
}

/// `broker_cache` (or any object with its methods), each lookup one
/// protected call. A failing or missing method is a cache miss.
pub struct RawCache {
    state: *mut ffi::lua_State,
}

impl RawCache {
    /// # Safety
    /// `state` is the running Lua state, for as long as this lives.
    pub unsafe fn new(state: *mut ffi::lua_State) -> RawCache {
        RawCache { state }
    }

    /// Calls `broker_cache:method(args...)` and hands the result (at stack
    /// top) to `read`, which must follow the module's safety rule.
    /// `broker_cache` is looked up at each call: it exists only once the
    /// script's main chunk ran, and most events need no lookup.
    fn call(&mut self, method: &str, args: &[i64], read: impl FnOnce(*mut ffi::lua_State)) -> bool {
        let mut called = false;
        // SAFETY: `new`'s contract; the closure follows the module's rule.
        let r = unsafe {
            protect(self.state, &[], |state| {
                ffi::lua_getglobal(state, c"broker_cache".as_ptr());
                if !indexable(ffi::lua_type(state, -1)) {
                    return;
                }
                push_field(state, -1, method);
                if ffi::lua_type(state, -1) != ffi::LUA_TFUNCTION {
                    return;
                }
                ffi::lua_pushvalue(state, -2);
                for a in args {
                    ffi::lua_pushinteger(state, *a);
                }
                ffi::lua_call(state, args.len() as c_int + 1, 1);
                called = true;
                read(state);
            })
        };
        r.is_ok() && called
    }

    /// `names` of the object a method returns; `None` when it returned nil.
    fn object_fields<S: AsRef<str>>(
        &mut self,
        method: &str,
        args: &[i64],
        names: &[S],
    ) -> Option<Vec<Option<Field>>> {
        let mut values = Vec::with_capacity(names.len());
        let mut found = false;
        self.call(method, args, |state| unsafe {
            if indexable(ffi::lua_type(state, -1)) {
                found = true;
                for n in names {
                    values.push(read_field(state, -1, n.as_ref()));
                }
            }
        });
        found.then_some(values)
    }

    fn string_result(&mut self, method: &str, args: &[i64]) -> Option<String> {
        let mut out = None;
        self.call(method, args, |state| unsafe {
            if let Some(Field::Str(b)) = top_field(state) {
                out = Some(b);
            }
        });
        out.map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Whether `broker_cache` has `method`: looked up without calling it,
    /// since calling a method broker does not have raises a Lua error.
    fn has_method(&mut self, method: &str) -> bool {
        let mut found = false;
        // SAFETY: `new`'s contract; the closure keeps nothing in its frame.
        let r = unsafe {
            protect(self.state, &[], |state| {
                ffi::lua_getglobal(state, c"broker_cache".as_ptr());
                if indexable(ffi::lua_type(state, -1)) {
                    push_field(state, -1, method);
                    found = ffi::lua_type(state, -1) == ffi::LUA_TFUNCTION;
                }
            })
        };
        r.is_ok() && found
    }

    /// The `group_id`s of a group list method's answer.
    fn group_ids(&mut self, method: &str, args: &[i64]) -> Vec<i64> {
        let mut ids = Vec::new();
        self.call(method, args, |state| unsafe {
            if ffi::lua_type(state, -1) != ffi::LUA_TTABLE {
                return;
            }
            let n = ffi::lua_rawlen(state, -1) as ffi::lua_Integer;
            for i in 1..=n {
                ffi::lua_rawgeti(state, -1, i);
                if indexable(ffi::lua_type(state, -1)) {
                    if let Some(id) = as_int(read_field(state, -1, "group_id")) {
                        ids.push(id);
                    }
                }
                ffi::lua_pop(state, 1);
            }
        });
        ids
    }

    fn groups(&mut self, method: &str, args: &[i64]) -> Vec<String> {
        let mut names = Vec::new();
        self.call(method, args, |state| unsafe {
            group_names(state, "group_name", &mut names)
        });
        names
    }
}

fn text_of(f: Option<Field>) -> Option<String> {
    match f? {
        Field::Str(b) if !b.is_empty() => Some(String::from_utf8_lossy(&b).into_owned()),
        _ => None,
    }
}

impl Cache for RawCache {
    fn host_fields(&mut self, host_id: u64, names: &[String]) -> Option<Vec<Option<Field>>> {
        self.object_fields("get_host", &[host_id as i64], names)
    }

    fn service_fields(
        &mut self,
        host_id: u64,
        service_id: u64,
        names: &[String],
    ) -> Option<Vec<Option<Field>>> {
        self.object_fields("get_service", &[host_id as i64, service_id as i64], names)
    }

    fn ba(&mut self, ba_id: u64) -> Option<BaInfo> {
        let mut f = self
            .object_fields("get_ba", &[ba_id as i64], &["ba_name", "ba_description"])?
            .into_iter();
        let mut next = || f.next().flatten();
        Some(BaInfo {
            name: text_of(next()),
            description: text_of(next()),
        })
    }

    fn bvs(&mut self, ba_id: u64) -> Vec<String> {
        let mut ids: Vec<i64> = Vec::new();
        self.call("get_bvs", &[ba_id as i64], |state| unsafe {
            if ffi::lua_type(state, -1) != ffi::LUA_TTABLE {
                return;
            }
            let n = ffi::lua_rawlen(state, -1) as ffi::lua_Integer;
            for i in 1..=n {
                ffi::lua_rawgeti(state, -1, i);
                if let Some(id) = as_int(top_field(state)) {
                    ids.push(id);
                }
                ffi::lua_pop(state, 1);
            }
        });
        ids.into_iter()
            .filter_map(|id| {
                let f = self.object_fields("get_bv", &[id], &["bv_name"])?;
                text_of(f.into_iter().next().flatten())
            })
            .collect()
    }

    fn host(&mut self, host_id: u64) -> Option<HostInfo> {
        let mut f = self
            .object_fields(
                "get_host",
                &[host_id as i64],
                &[
                    "name",
                    "instance_id",
                    "poller_id",
                    "notes_url",
                    "action_url",
                    "state",
                ],
            )?
            .into_iter();
        let mut next = || f.next().flatten();
        let name = match next() {
            Some(Field::Str(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        };
        let instance = as_int(next()).or(as_int(next()));
        Some(HostInfo {
            name,
            instance_id: instance.filter(|i| *i > 0).map(|i| i as u64),
            notes_url: text_of(next()),
            action_url: text_of(next()),
            state: as_int(next()),
        })
    }

    fn service(&mut self, host_id: u64, service_id: u64) -> Option<ServiceInfo> {
        let mut f = self
            .object_fields(
                "get_service",
                &[host_id as i64, service_id as i64],
                &["description", "notes_url", "action_url", "state"],
            )?
            .into_iter();
        let mut next = || f.next().flatten();
        Some(ServiceInfo {
            description: match next() {
                Some(Field::Str(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            },
            notes_url: text_of(next()),
            action_url: text_of(next()),
            state: as_int(next()),
        })
    }

    fn hostgroups(&mut self, host_id: u64) -> Vec<String> {
        self.groups("get_hostgroups", &[host_id as i64])
    }

    fn servicegroups(&mut self, host_id: u64, service_id: u64) -> Vec<String> {
        self.groups("get_servicegroups", &[host_id as i64, service_id as i64])
    }

    fn poller_name(&mut self, instance_id: u64) -> Option<String> {
        self.string_result("get_instance_name", &[instance_id as i64])
    }

    fn severity(&mut self, host_id: u64, service_id: Option<u64>) -> Option<i64> {
        let mut out = None;
        let args: Vec<i64> = match service_id {
            None => vec![host_id as i64],
            Some(s) => vec![host_id as i64, s as i64],
        };
        self.call("get_severity", &args, |state| unsafe {
            out = as_int(top_field(state));
        });
        out
    }

    fn hostgroup_aliases(&mut self, host_id: u64) -> Option<Vec<String>> {
        // Broker 25.10 added the method; before, there is nothing to say.
        if !self.has_method("get_hostgroup_alias") {
            return None;
        }
        let ids = self.group_ids("get_hostgroups", &[host_id as i64]);
        Some(
            ids.into_iter()
                .filter_map(|id| self.string_result("get_hostgroup_alias", &[id]))
                .filter(|alias| !alias.is_empty())
                .collect(),
        )
    }
}
