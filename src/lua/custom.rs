//! `custom_code_file`: the user's Lua code, run on broker's thread.
//!
//! The gate is Lua's own compiler: every file the library's textual gate
//! accepts (`return self, true|false` lines only) compiles, and so do files
//! it refuses for harmless reasons (a comment, CRLF endings, a helper's
//! `return`). The event table, its compatibility fields and `cache` are
//! built by `custom.lua`, as the library builds them.

use super::raw::{self, indexable, protect, push_field, read_field, CallError};
use crate::custom::{Hook, Snapshot, Verdict, BA_FIELDS, INSTANCE_FIELDS, SEVERITY_FIELDS};
use crate::event::{ElementKind, Field};
use crate::logger::Logger;
use crate::template::{Needs, HOST_FIELDS, SERVICE_FIELDS};
use mlua::ffi;
use std::ffi::CString;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The runner built by `custom.lua`.
const RUNNER: &str = include_str!("custom.lua");

/// The loaded code, as registry references.
pub struct CustomCode {
    chunk: c_int,
    run: c_int,
    proto: c_int,
}

/// Pushes an array of names.
unsafe fn push_names<'a>(state: *mut ffi::lua_State, names: impl Iterator<Item = &'a str>) {
    ffi::lua_createtable(state, 64, 0);
    for (i, n) in names.enumerate() {
        ffi::lua_pushlstring(state, n.as_ptr() as *const _, n.len());
        ffi::lua_rawseti(state, -2, i as ffi::lua_Integer + 1);
    }
}

/// `log(level, text)` for `sc_logger`: its upvalue owns a [`Logger`].
unsafe extern "C-unwind" fn l_log(state: *mut ffi::lua_State) -> c_int {
    let slot = ffi::lua_touserdata(state, ffi::lua_upvalueindex(1)) as *mut *mut Logger;
    if slot.is_null() || (*slot).is_null() {
        return 0;
    }
    let level = raw::int_at(state, 1).unwrap_or(1);
    let text = if ffi::lua_type(state, 2) == ffi::LUA_TSTRING {
        raw::text_at(state, 2)
    } else {
        String::new()
    };
    let log = &**slot;
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let args = format_args!("custom code: {text}");
        match level {
            1 => log.error(args),
            2 => log.warn(args),
            3 | 4 => log.info(args),
            _ => log.debug(args),
        }
    }));
    0
}

unsafe extern "C-unwind" fn l_log_gc(state: *mut ffi::lua_State) -> c_int {
    let slot = ffi::lua_touserdata(state, 1) as *mut *mut Logger;
    if !slot.is_null() && !(*slot).is_null() {
        let log = Box::from_raw(*slot);
        *slot = std::ptr::null_mut();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(log)));
    }
    0
}

impl CustomCode {
    /// Loads `path` and the runner; `params` is the index of init's
    /// parameter table (kept: the code may read and change it).
    ///
    /// # Safety
    /// `state` is the running Lua state; `params` an absolute index.
    pub unsafe fn load(
        state: *mut ffi::lua_State,
        path: &str,
        params: c_int,
        limit: Option<usize>,
        log: &Logger,
    ) -> Result<CustomCode, String> {
        let cpath = CString::new(path).map_err(|_| "the path contains a NUL byte".to_string())?;
        let mut refs = [ffi::LUA_NOREF; 3];
        let mut failure: Option<String> = None;
        // The logger's box is owned by its userdata from the start (its
        // `__gc` frees it), so nothing leaks if Lua raises meanwhile.
        let logger = Box::into_raw(Box::new(log.clone()));
        let r = protect(state, &[params], |state| {
            let slot =
                ffi::lua_newuserdata(state, std::mem::size_of::<*mut Logger>()) as *mut *mut Logger;
            slot.write(logger);
            let ud = ffi::lua_gettop(state);
            ffi::lua_createtable(state, 0, 1);
            ffi::lua_pushcfunction(state, l_log_gc);
            ffi::lua_setfield(state, -2, c"__gc".as_ptr());
            ffi::lua_setmetatable(state, ud);
            if ffi::luaL_loadfilex(state, cpath.as_ptr(), std::ptr::null()) != ffi::LUA_OK {
                failure = Some(raw::text_at(state, -1));
                return;
            }
            refs[0] = ffi::luaL_ref(state, ffi::LUA_REGISTRYINDEX);
            if ffi::luaL_loadbufferx(
                state,
                RUNNER.as_ptr() as *const _,
                RUNNER.len(),
                c"=canopsis-native custom code runner".as_ptr(),
                c"t".as_ptr(),
            ) != ffi::LUA_OK
            {
                failure = Some(raw::text_at(state, -1));
                return;
            }
            match limit {
                Some(n) => ffi::lua_pushinteger(state, n as ffi::lua_Integer),
                None => ffi::lua_pushnil(state),
            }
            ffi::lua_pushvalue(state, ud);
            ffi::lua_pushcclosure(state, l_log, 1);
            ffi::lua_pushvalue(state, 1);
            push_names(state, HOST_FIELDS.iter().copied());
            push_names(
                state,
                HOST_FIELDS
                    .iter()
                    .copied()
                    .filter(|n| !matches!(*n, "name" | "alias" | "address" | "instance_id"))
                    .chain(SERVICE_FIELDS.iter().copied()),
            );
            ffi::lua_call(state, 5, 2);
            refs[2] = ffi::luaL_ref(state, ffi::LUA_REGISTRYINDEX);
            refs[1] = ffi::luaL_ref(state, ffi::LUA_REGISTRYINDEX);
        });
        let code = CustomCode {
            chunk: refs[0],
            run: refs[1],
            proto: refs[2],
        };
        let why = match (r, failure) {
            (Err(e), _) => Some(e.to_string()),
            (Ok(()), Some(f)) => Some(f),
            (Ok(()), None) if refs.contains(&ffi::LUA_NOREF) => {
                Some("it could not be set up".into())
            }
            (Ok(()), None) => None,
        };
        match why {
            None => Ok(code),
            Some(why) => {
                code.release(state);
                Err(why)
            }
        }
    }

    /// Drops the registry references.
    ///
    /// # Safety
    /// `state` is the Lua state the code was loaded in.
    pub unsafe fn release(&self, state: *mut ffi::lua_State) {
        for r in [self.chunk, self.run, self.proto] {
            if r != ffi::LUA_NOREF {
                ffi::luaL_unref(state, ffi::LUA_REGISTRYINDEX, r);
            }
        }
    }
}

/// The hook for one `write`: the event at `event` on `state`'s stack.
pub struct LuaHook<'a> {
    /// The running state.
    pub state: *mut ffi::lua_State,
    /// The event's absolute index.
    pub event: c_int,
    /// The loaded code.
    pub code: &'a CustomCode,
}

/// Reads `names` of the object at the top of the stack into `out`.
unsafe fn read_names<S: AsRef<str>>(
    state: *mut ffi::lua_State,
    names: &[S],
    out: &mut Vec<Option<Field>>,
) {
    let object = indexable(ffi::lua_type(state, -1));
    for n in names {
        out.push(if object {
            read_field(state, -1, n.as_ref())
        } else {
            None
        });
    }
}

/// The objects under `cache` a snapshot reads, in [`take_snapshot`] order.
const OBJECTS: [&str; 5] = ["host", "service", "instance", "severity", "ba"];
/// The group lists under `cache`, and the key naming each group.
const GROUPS: [(&str, &str); 4] = [
    ("hostgroups", "group_name"),
    ("servicegroups", "group_name"),
    ("bvs", "bv_name"),
    // Set by custom code if it wants them (`get_hostgroup_alias`): the
    // library's `cache.hostgroups` entries have no alias.
    ("hostgroups", "alias"),
];

/// Fills `snap` from the event table at the top of the stack; `scratch`
/// is the caller's (nothing with a destructor lives in a frame that calls
/// Lua, see [`raw`]).
unsafe fn take_snapshot(
    state: *mut ffi::lua_State,
    needs: &Needs,
    snap: &mut Snapshot,
    scratch: &mut Vec<Option<Field>>,
) {
    let e = ffi::lua_gettop(state);
    for n in &needs.event {
        snap.event.push(read_field(state, e, n));
    }
    push_field(state, e, "cache");
    if !indexable(ffi::lua_type(state, -1)) {
        return;
    }
    let cache = ffi::lua_gettop(state);
    for (what, name) in OBJECTS.iter().enumerate() {
        push_field(state, cache, name);
        match what {
            0 => read_names(state, &needs.host, &mut snap.host),
            1 => read_names(state, &needs.service, &mut snap.service),
            _ => {
                let names: &[&str] = match what {
                    2 => &INSTANCE_FIELDS,
                    3 => &SEVERITY_FIELDS,
                    _ => &BA_FIELDS,
                };
                scratch.clear();
                read_names(state, names, scratch);
                let slots: &mut [Option<Field>] = match what {
                    2 => &mut snap.instance,
                    3 => &mut snap.severity,
                    _ => &mut snap.ba,
                };
                for (slot, v) in slots.iter_mut().zip(scratch.iter_mut()) {
                    *slot = v.take();
                }
            }
        }
        ffi::lua_pop(state, 1);
    }
    for (i, (name, key)) in GROUPS.iter().enumerate() {
        if needs.groups[i] {
            push_field(state, cache, name);
            raw::group_names(state, key, &mut snap.groups[i]);
            ffi::lua_pop(state, 1);
        }
    }
}

impl Hook for LuaHook<'_> {
    fn run(&mut self, kind: ElementKind, needs: Option<&Needs>) -> Verdict {
        let mut keep: Option<bool> = None;
        let mut error: Option<String> = None;
        let mut snap = needs.map(|_| Box::<Snapshot>::default());
        let mut scratch = Vec::with_capacity(BA_FIELDS.len());
        let code = self.code;
        let name = kind.name();
        // SAFETY: the hook's fields come from the running `write`; the
        // closure keeps its results outside its own frame.
        let r = unsafe {
            protect(self.state, &[self.event], |state| {
                ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, code.run as ffi::lua_Integer);
                ffi::lua_rawgeti(
                    state,
                    ffi::LUA_REGISTRYINDEX,
                    code.chunk as ffi::lua_Integer,
                );
                ffi::lua_rawgeti(
                    state,
                    ffi::LUA_REGISTRYINDEX,
                    code.proto as ffi::lua_Integer,
                );
                ffi::lua_pushvalue(state, 1);
                ffi::lua_pushlstring(state, name.as_ptr() as *const _, name.len());
                ffi::lua_call(state, 4, 2);
                if ffi::lua_type(state, -2) == ffi::LUA_TNIL {
                    error = Some(match ffi::lua_type(state, -1) {
                        ffi::LUA_TSTRING => raw::text_at(state, -1),
                        _ => "an error without a message".into(),
                    });
                    return;
                }
                let kept = ffi::lua_toboolean(state, -2) != 0;
                keep = Some(kept);
                if let (true, Some(needs), Some(snap)) = (kept, needs, snap.as_mut()) {
                    take_snapshot(state, needs, snap, &mut scratch);
                }
            })
        };
        match (r, error, keep) {
            (Err(CallError::Raised(e) | CallError::Fault(e)), _, _) => Verdict::Failed(e),
            (Ok(()), Some(e), _) => Verdict::Failed(e),
            (Ok(()), None, Some(true)) => Verdict::Keep(snap),
            (Ok(()), None, _) => Verdict::Drop,
        }
    }
}
