//! An emulation of Centreon Broker's Lua host (`luabinding`, `failover`,
//! `muxer`), following `shared/docs/broker-lua-host.md` §9.
//!
//! The emulator links the system liblua (mlua without `module`), so the
//! connector's `.so`, loaded by `require`, resolves its `lua_*` symbols
//! against it, as it does against `70-lua.so` inside cbd.

use crate::events::{Bbdo, Event, V};
use mlua::{
    Function, IntoLua, Lua, LuaOptions, MetaMethod, StdLib, Table, UserData, UserDataMethods, Value,
};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A `lua_parameter` entry (array form, as Centreon Web writes it).
#[derive(Debug, Clone)]
pub enum Param {
    /// `"type": "string"` (or `password`).
    Str(String),
    /// `"type": "number"`: pushed with `lua_pushinteger` (int32 only).
    Num(i32),
}

/// What a broker output definition holds.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    /// `path`: the Lua script.
    pub script: PathBuf,
    /// `lua_parameter`.
    pub params: Vec<(String, Param)>,
    /// The BBDO version engine and broker speak.
    pub bbdo: Bbdo,
}

/// A cached host (what `pb_host` gives broker's cache).
#[derive(Debug, Clone, Default)]
pub struct CachedHost {
    /// `name`.
    pub name: String,
    /// `instance_id` (poller).
    pub instance_id: i64,
    /// `notes_url`.
    pub notes_url: String,
    /// `action_url`.
    pub action_url: String,
    /// `CRITICALITY_LEVEL` custom variable.
    pub severity: Option<i64>,
}

/// A cached service.
#[derive(Debug, Clone, Default)]
pub struct CachedService {
    /// `description`.
    pub description: String,
    /// `notes_url`.
    pub notes_url: String,
    /// `action_url`.
    pub action_url: String,
    /// Severity.
    pub severity: Option<i64>,
}

/// The contents of broker's macro cache for one output.
#[derive(Debug, Clone, Default)]
pub struct CacheData {
    /// Hosts by id.
    pub hosts: HashMap<i64, CachedHost>,
    /// Services by (host id, service id).
    pub services: HashMap<(i64, i64), CachedService>,
    /// Host group memberships: host id → (group id, name).
    pub hostgroups: HashMap<i64, Vec<(i64, String)>>,
    /// Service group memberships.
    pub servicegroups: HashMap<(i64, i64), Vec<(i64, String)>>,
    /// Poller names by instance id.
    pub instances: HashMap<i64, String>,
    /// BAM business activities: id → (name, description).
    pub bas: HashMap<i64, (String, String)>,
    /// Business views: id → name.
    pub bvs: HashMap<i64, String>,
    /// The business views of each BA.
    pub ba_bvs: HashMap<i64, Vec<i64>>,
    /// Host group aliases by group id, as broker 25.10's
    /// `get_hostgroup_alias` answers them; `None` (the default) plays an
    /// older broker, whose `broker_cache` has no such method at all.
    pub hostgroup_aliases: Option<HashMap<i64, String>>,
    /// Replaying a trace: every method answers from [`recorded`](Self::recorded)
    /// (nil when nothing was recorded), not from the typed maps above.
    pub replay: bool,
    /// Recorded answers by (method, first id, second id or 0).
    pub recorded: HashMap<(String, i64, i64), serde_json::Value>,
}

impl CacheData {
    /// A small estate: host 12 "host-a" on poller 1 with services Ping (34)
    /// and Disk (35), host 13 "host-b" without groups, poller 1 "poller-1".
    pub fn sample() -> CacheData {
        let mut c = CacheData::default();
        c.instances.insert(1, "poller-1".into());
        c.instances.insert(2, "poller-2".into());
        c.hosts.insert(
            12,
            CachedHost {
                name: "host-a".into(),
                instance_id: 1,
                notes_url: "https://wiki/host-a".into(),
                action_url: String::new(),
                severity: Some(2),
            },
        );
        c.hosts.insert(
            13,
            CachedHost {
                name: "host-b".into(),
                instance_id: 2,
                ..CachedHost::default()
            },
        );
        c.services.insert(
            (12, 34),
            CachedService {
                description: "Ping".into(),
                action_url: "https://act/ping".into(),
                severity: Some(5),
                ..CachedService::default()
            },
        );
        c.services.insert(
            (12, 35),
            CachedService {
                description: "Disk /var".into(),
                ..CachedService::default()
            },
        );
        c.hostgroups
            .insert(12, vec![(1, "linux".into()), (2, "dc1".into())]);
        c.servicegroups
            .insert((12, 34), vec![(7, "network".into())]);
        c.bas
            .insert(5, ("Web shop".into(), "Customer-facing shop".into()));
        c.bas.insert(6, ("Mail".into(), String::new()));
        c.bvs.insert(1, "Business".into());
        c.bvs.insert(2, "Internal".into());
        c.ba_bvs.insert(5, vec![1]);
        c.ba_bvs.insert(6, vec![2]);
        c
    }

    /// Updates from configuration events, as broker's cache does.
    pub(crate) fn feed(&mut self, ev: &Event) {
        if self.replay {
            return self.feed_recorded(ev);
        }
        let text = |n: &str| match ev.get(n) {
            Some(V::S(s)) => String::from_utf8_lossy(s).into_owned(),
            _ => String::new(),
        };
        match ev.type_id {
            65548 | 65566 => {
                let id = ev.int("host_id");
                let poller = if ev.get("instance_id").is_some() {
                    ev.int("instance_id")
                } else {
                    ev.int("poller_id")
                };
                let h = self.hosts.entry(id).or_default();
                h.name = text("name");
                h.instance_id = poller;
                h.notes_url = text("notes_url");
                h.action_url = text("action_url");
            }
            65559 | 65563 => {
                let s = self
                    .services
                    .entry((ev.int("host_id"), ev.int("service_id")))
                    .or_default();
                s.description = text("description");
                s.notes_url = text("notes_url");
                s.action_url = text("action_url");
            }
            65551 | 65580 => {
                self.instances
                    .insert(ev.int("poller_id").max(ev.int("instance_id")), text("name"));
            }
            _ => {}
        }
    }
}

impl CacheData {
    /// Broker 23.10's cache takes each BBDO 3 host and service status
    /// (`pb_host_status`, `pb_service_status`) into the cached object, and
    /// nothing from BBDO 2 ones (`host_status`, `service_status`): there an
    /// object keeps what its configuration event said (`state` 4, pending,
    /// `checked` false). Both as the traces record it
    /// (`shared/traces` README, fact 15; `Trace::cache_model_disagreements`
    /// checks this model against every recorded answer).
    fn feed_recorded(&mut self, ev: &Event) {
        let key = match ev.type_id {
            65568 => ("get_host".to_string(), ev.int("host_id"), 0),
            65565 => (
                "get_service".to_string(),
                ev.int("host_id"),
                ev.int("service_id"),
            ),
            _ => return,
        };
        let Some(serde_json::Value::Object(obj)) = self.recorded.get_mut(&key) else {
            return;
        };
        for (name, v) in &ev.fields {
            if let (Some(slot), Some(v)) = (obj.get_mut(*name), v) {
                *slot = match v {
                    V::I(i) => (*i).into(),
                    V::F(f) => (*f).into(),
                    V::S(s) => String::from_utf8_lossy(s).into_owned().into(),
                    V::B(b) => (*b).into(),
                };
            }
        }
    }

    /// The recorded answer of `method` for these ids, when replaying.
    fn answer(&self, method: &str, a: i64, b: i64) -> Option<&serde_json::Value> {
        self.recorded.get(&(method.to_string(), a, b))
    }
}

/// A recorded answer as broker's cache returns it: objects as the API's
/// objects, everything else as plain Lua values (64-bit integers kept).
fn recorded_to_lua(
    lua: &Lua,
    cache: &BrokerCache,
    v: Option<&serde_json::Value>,
    object: bool,
) -> mlua::Result<Value> {
    match v {
        None => Ok(Value::Nil),
        Some(serde_json::Value::Object(o)) if object => {
            let fields = o
                .iter()
                .filter_map(|(k, v)| Some((crate::trace::intern(k), crate::trace::scalar(v)??)))
                .collect();
            cache.object(lua, fields)
        }
        Some(v) => json_to_lua(lua, v, |i| i),
    }
}

fn to_lua(lua: &Lua, v: &V) -> mlua::Result<Value> {
    Ok(match v {
        V::I(i) => Value::Integer(*i),
        V::F(f) => Value::Number(*f),
        V::S(s) => Value::String(lua.create_string(s)?),
        V::B(b) => Value::Boolean(*b),
    })
}

/// API 2 objects from `broker_cache:get_host` / `get_service`.
struct ObjUd(Vec<(&'static str, V)>);

impl UserData for ObjUd {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: String| {
            match this.0.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => to_lua(lua, v),
                None => Ok(Value::Nil),
            }
        });
    }
}

struct BrokerCache {
    data: Rc<RefCell<CacheData>>,
    api: i64,
}

impl BrokerCache {
    fn object(&self, lua: &Lua, fields: Vec<(&'static str, V)>) -> mlua::Result<Value> {
        if self.api == 2 {
            Ok(Value::UserData(lua.create_userdata(ObjUd(fields))?))
        } else {
            let t = lua.create_table()?;
            for (k, v) in &fields {
                t.set(*k, to_lua(lua, v)?)?;
            }
            Ok(Value::Table(t))
        }
    }
}

fn str_v(s: &str) -> V {
    V::S(s.as_bytes().to_vec())
}

fn groups(lua: &Lua, list: Option<&Vec<(i64, String)>>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (id, name) in list.into_iter().flatten() {
        let g = lua.create_table()?;
        g.set("group_id", *id)?;
        g.set("group_name", name.as_str())?;
        t.push(g)?;
    }
    Ok(t)
}

impl BrokerCache {
    /// When replaying, the recorded answer for `method` and these ids.
    fn replayed(
        &self,
        lua: &Lua,
        method: &str,
        a: i64,
        b: Option<i64>,
    ) -> Option<mlua::Result<Value>> {
        let data = self.data.borrow();
        if !data.replay {
            return None;
        }
        let object = matches!(method, "get_host" | "get_service");
        Some(recorded_to_lua(
            lua,
            self,
            data.answer(method, a, b.unwrap_or(0)),
            object,
        ))
    }
}

/// Answers from the recording first when replaying a trace.
macro_rules! replayed {
    ($this:expr, $lua:expr, $method:expr, $a:expr, $b:expr) => {
        if let Some(v) = $this.replayed($lua, $method, $a, $b) {
            return v;
        }
    };
}

impl UserData for BrokerCache {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // Looked up after the methods: present only on a 25.10 broker.
        m.add_meta_method(MetaMethod::Index, |lua, this, key: String| {
            if key != "get_hostgroup_alias" || this.data.borrow().hostgroup_aliases.is_none() {
                return Ok(Value::Nil);
            }
            let alias = lua.create_function(|lua, (cache, id): (mlua::AnyUserData, i64)| {
                let cache = cache.borrow::<BrokerCache>()?;
                let data = cache.data.borrow();
                data.hostgroup_aliases
                    .as_ref()
                    .and_then(|a| a.get(&id).cloned())
                    .into_lua(lua)
            })?;
            Ok(Value::Function(alias))
        });
        m.add_method("get_hostname", |lua, this, id: i64| {
            replayed!(this, lua, "get_hostname", id, None);
            this.data
                .borrow()
                .hosts
                .get(&id)
                .map(|h| h.name.clone())
                .into_lua(lua)
        });
        m.add_method("get_host", |lua, this, id: i64| {
            replayed!(this, lua, "get_host", id, None);
            let h = this.data.borrow().hosts.get(&id).cloned();
            match h {
                None => Ok(Value::Nil),
                Some(h) => this.object(
                    lua,
                    vec![
                        ("_type", V::I(65566)),
                        ("host_id", V::I(id)),
                        ("name", str_v(&h.name)),
                        ("alias", str_v(&h.name)),
                        ("address", str_v("192.0.2.10")),
                        ("instance_id", V::I(h.instance_id)),
                        ("notes_url", str_v(&h.notes_url)),
                        ("action_url", str_v(&h.action_url)),
                        ("enabled", V::B(true)),
                        ("state", V::I(0)),
                        ("latency", V::F(0.25)),
                        ("max_check_attempts", V::I(3)),
                    ],
                ),
            }
        });
        m.add_method("get_ba", |lua, this, id: i64| {
            replayed!(this, lua, "get_ba", id, None);
            let ba = this.data.borrow().bas.get(&id).cloned();
            match ba {
                None => Ok(Value::Nil),
                Some((name, description)) => this.object(
                    lua,
                    vec![
                        ("ba_id", V::I(id)),
                        ("ba_name", str_v(&name)),
                        ("ba_description", str_v(&description)),
                    ],
                ),
            }
        });
        m.add_method("get_bvs", |lua, this, id: i64| {
            replayed!(this, lua, "get_bvs", id, None);
            let t = lua.create_table()?;
            for bv in this.data.borrow().ba_bvs.get(&id).into_iter().flatten() {
                t.push(*bv)?;
            }
            Ok(Value::Table(t))
        });
        m.add_method("get_bv", |lua, this, id: i64| {
            replayed!(this, lua, "get_bv", id, None);
            let bv = this.data.borrow().bvs.get(&id).cloned();
            match bv {
                None => Ok(Value::Nil),
                Some(name) => this.object(
                    lua,
                    vec![
                        ("bv_id", V::I(id)),
                        ("bv_name", str_v(&name)),
                        ("bv_description", str_v("")),
                    ],
                ),
            }
        });
        m.add_method("get_service", |lua, this, (host, svc): (i64, i64)| {
            replayed!(this, lua, "get_service", host, Some(svc));
            let s = this.data.borrow().services.get(&(host, svc)).cloned();
            let host_name = this
                .data
                .borrow()
                .hosts
                .get(&host)
                .map(|h| h.name.clone())
                .unwrap_or_default();
            match s {
                None => Ok(Value::Nil),
                Some(s) => this.object(
                    lua,
                    vec![
                        ("_type", V::I(65563)),
                        ("host_id", V::I(host)),
                        ("service_id", V::I(svc)),
                        ("description", str_v(&s.description)),
                        ("host_name", str_v(&host_name)),
                        ("notes_url", str_v(&s.notes_url)),
                        ("action_url", str_v(&s.action_url)),
                        ("enabled", V::B(true)),
                        ("state", V::I(0)),
                    ],
                ),
            }
        });
        m.add_method(
            "get_service_description",
            |lua, this, (host, svc): (i64, i64)| {
                replayed!(this, lua, "get_service_description", host, Some(svc));
                this.data
                    .borrow()
                    .services
                    .get(&(host, svc))
                    .map(|s| s.description.clone())
                    .into_lua(lua)
            },
        );
        m.add_method("get_hostgroups", |lua, this, id: i64| {
            replayed!(this, lua, "get_hostgroups", id, None);
            groups(lua, this.data.borrow().hostgroups.get(&id)).map(Value::Table)
        });
        m.add_method("get_servicegroups", |lua, this, (host, svc): (i64, i64)| {
            replayed!(this, lua, "get_servicegroups", host, Some(svc));
            groups(lua, this.data.borrow().servicegroups.get(&(host, svc))).map(Value::Table)
        });
        m.add_method("get_instance_name", |lua, this, id: i64| {
            replayed!(this, lua, "get_instance_name", id, None);
            this.data.borrow().instances.get(&id).cloned().into_lua(lua)
        });
        m.add_method(
            "get_severity",
            |lua, this, (host, svc): (i64, Option<i64>)| {
                replayed!(this, lua, "get_severity", host, svc);
                let d = this.data.borrow();
                match svc.filter(|s| *s != 0) {
                    None => d.hosts.get(&host).and_then(|h| h.severity),
                    Some(s) => d.services.get(&(host, s)).and_then(|s| s.severity),
                }
                .into_lua(lua)
            },
        );
        m.add_method(
            "get_notes_url",
            |lua, this, (host, svc): (i64, Option<i64>)| {
                replayed!(this, lua, "get_notes_url", host, svc);
                let d = this.data.borrow();
                match svc.filter(|s| *s != 0) {
                    None => d.hosts.get(&host).map(|h| h.notes_url.clone()),
                    Some(s) => d.services.get(&(host, s)).map(|s| s.notes_url.clone()),
                }
                .into_lua(lua)
            },
        );
        m.add_method(
            "get_action_url",
            |lua, this, (host, svc): (i64, Option<i64>)| {
                replayed!(this, lua, "get_action_url", host, svc);
                let d = this.data.borrow();
                match svc.filter(|s| *s != 0) {
                    None => d.hosts.get(&host).map(|h| h.action_url.clone()),
                    Some(s) => d.services.get(&(host, s)).map(|s| s.action_url.clone()),
                }
                .into_lua(lua)
            },
        );
    }
}

/// `broker_log`: writes to its file, or to the emulator's memory (standing
/// for broker's own log) when no file was set.
struct BrokerLog {
    level: Option<i64>,
    file: Option<PathBuf>,
    lines: Rc<RefCell<Vec<String>>>,
}

impl BrokerLog {
    fn write(&self, kind: &str, level: Value, text: Value) {
        let level = match level {
            Value::Integer(i) => i,
            Value::Number(f) => f as i64,
            _ => 0,
        };
        if level > self.level.unwrap_or(0) {
            return;
        }
        let text = match text {
            Value::String(s) => s.to_string_lossy(),
            _ => "(null)".into(),
        };
        let line = format!("{kind}: {text}");
        match &self.file {
            Some(f) => {
                use std::io::Write;
                if let Ok(mut file) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(f)
                {
                    let _ = writeln!(file, "{line}");
                }
            }
            None => self.lines.borrow_mut().push(line),
        }
    }
}

impl UserData for BrokerLog {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method_mut("set_parameters", |_, this, (level, file): (i64, String)| {
            if !(0..=3).contains(&level) {
                return Err(mlua::Error::runtime("set_parameters: level must be 0 to 3"));
            }
            this.level = Some(level);
            this.file = Some(PathBuf::from(file));
            Ok(())
        });
        m.add_method("info", |_, this, (l, t): (Value, Value)| {
            this.write("INFO", l, t);
            Ok(())
        });
        m.add_method("warning", |_, this, (l, t): (Value, Value)| {
            this.write("WARNING", l, t);
            Ok(())
        });
        m.add_method("error", |_, this, (l, t): (Value, Value)| {
            this.write("ERROR", l, t);
            Ok(())
        });
    }
}

fn json_of(v: &Value) -> mlua::Result<serde_json::Value> {
    use serde_json::Value as J;
    Ok(match v {
        Value::Nil => return Err(mlua::Error::runtime("json_encode: type not implemented")),
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => J::from(*i),
        Value::Number(f) => J::from(*f),
        Value::String(s) => J::String(s.to_string_lossy()),
        Value::Table(t) => {
            if t.raw_len() > 0 || t.clone().pairs::<Value, Value>().next().is_none() {
                J::Array(
                    t.clone()
                        .sequence_values::<Value>()
                        .map(|v| json_of(&v?))
                        .collect::<mlua::Result<_>>()?,
                )
            } else {
                let mut m = serde_json::Map::new();
                for pair in t.clone().pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    let key = match k {
                        Value::String(s) => s.to_string_lossy(),
                        Value::Integer(i) => i.to_string(),
                        _ => continue,
                    };
                    m.insert(key, json_of(&v)?);
                }
                J::Object(m)
            }
        }
        _ => return Err(mlua::Error::runtime("json_encode: type not implemented")),
    })
}

/// `broker.json_decode`'s conversion: broker truncates integers to 32 bits
/// (host contract §4.2).
fn lua_of(lua: &Lua, j: &serde_json::Value) -> mlua::Result<Value> {
    json_to_lua(lua, j, |i| {
        if i >= 0 {
            i as u32 as i64
        } else {
            i as i32 as i64
        }
    })
}

/// A JSON value as Lua values, integers passed through `int`.
fn json_to_lua(lua: &Lua, j: &serde_json::Value, int: fn(i64) -> i64) -> mlua::Result<Value> {
    use serde_json::Value as J;
    Ok(match j {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(int(i)),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(a) => {
            let t = lua.create_table()?;
            for v in a {
                t.push(json_to_lua(lua, v, int)?)?;
            }
            Value::Table(t)
        }
        J::Object(o) => {
            let t = lua.create_table()?;
            for (k, v) in o {
                t.set(k.as_str(), json_to_lua(lua, v, int)?)?;
            }
            Value::Table(t)
        }
    })
}

fn broker_table(lua: &Lua, bbdo: Bbdo) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "json_encode",
        lua.create_function(|_, v: Value| Ok(serde_json::to_string(&json_of(&v)?).ok()))?,
    )?;
    t.set(
        "json_decode",
        lua.create_function(|lua, s: String| {
            match serde_json::from_str::<serde_json::Value>(&s) {
                Ok(j) => Ok((lua_of(lua, &j)?, Value::Nil)),
                Err(e) => Ok((
                    Value::Nil,
                    Value::String(
                        lua.create_string(format!("[json.exception.parse_error.101] {e}"))?,
                    ),
                )),
            }
        })?,
    )?;
    let version = match bbdo {
        Bbdo::V2 => "2.0.0",
        Bbdo::V3 => "3.0.1",
    };
    t.set(
        "bbdo_version",
        lua.create_function(move |_, ()| Ok(version))?,
    )?;
    t.set(
        "url_encode",
        lua.create_function(|_, s: mlua::LuaString| {
            let mut out = String::new();
            for b in s.as_bytes().iter().take_while(|b| **b != 0) {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
                    out.push(*b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            Ok(out)
        })?,
    )?;
    t.set(
        "stat",
        lua.create_function(|lua, path: String| {
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata(&path) {
                Ok(m) => {
                    let r = lua.create_table()?;
                    r.set("uid", m.uid())?;
                    r.set("gid", m.gid())?;
                    r.set("size", m.size())?;
                    r.set("atime", m.atime())?;
                    r.set("mtime", m.mtime())?;
                    r.set("ctime", m.ctime())?;
                    Ok((Value::Table(r), Value::Nil))
                }
                Err(e) => Ok((Value::Nil, Value::String(lua.create_string(e.to_string())?))),
            }
        })?,
    )?;
    Ok(t)
}

/// One Lua output: one state, as `luabinding` builds it.
pub struct Output {
    lua: Lua,
    write_fn: Function,
    pairs_fn: Function,
    filter_fn: Option<Function>,
    flush_fn: Option<Function>,
    api: i64,
    total: u64,
    cache: Rc<RefCell<CacheData>>,
    /// What broker itself would log about this output (load problems,
    /// `write` errors, non-boolean answers, `broker_log` lines without file).
    pub broker_log: Rc<RefCell<Vec<String>>>,
}

impl Output {
    /// Builds the state, runs the script, probes `filter(1, 2)`, registers
    /// the globals and calls `init(conf)`, in broker's order.
    pub fn open(cfg: &OutputConfig, cache: CacheData) -> Result<Output, String> {
        // SAFETY: broker opens every standard library, C modules included.
        let lua = unsafe { Lua::unsafe_new_with(StdLib::ALL, LuaOptions::new()) };
        let dir = cfg
            .script
            .parent()
            .unwrap_or(Path::new("."))
            .to_string_lossy()
            .into_owned();
        let package: Table = lua.globals().get("package").map_err(|e| e.to_string())?;
        let path: String = package.get("path").map_err(|e| e.to_string())?;
        let cpath: String = package.get("cpath").map_err(|e| e.to_string())?;
        package
            .set("path", format!("{path};{dir}/?.lua"))
            .map_err(|e| e.to_string())?;
        package
            .set("cpath", format!("{cpath};{dir}/lib/?.so"))
            .map_err(|e| e.to_string())?;

        let source = std::fs::read(&cfg.script)
            .map_err(|e| format!("lua: '{}' could not be loaded: {e}", cfg.script.display()))?;
        let chunk = lua
            .load(&source[..])
            .set_name(format!("@{}", cfg.script.display()))
            .into_function()
            .map_err(|e| format!("lua: '{}' could not be loaded: {e}", cfg.script.display()))?;
        chunk.call::<()>(()).map_err(|e| {
            format!(
                "lua: '{}' could not be compiled ({e})",
                cfg.script.display()
            )
        })?;

        let globals = lua.globals();
        let init: Function = globals
            .get::<Option<Function>>("init")
            .ok()
            .flatten()
            .ok_or("lua: init() global function is missing")?;
        let write_fn: Function = globals
            .get::<Option<Function>>("write")
            .ok()
            .flatten()
            .ok_or("lua: write() global function is missing")?;
        let broker_log = Rc::new(RefCell::new(Vec::new()));
        let filter_fn = match globals.get::<Option<Function>>("filter").ok().flatten() {
            None => None,
            Some(f) => match f.call::<Value>((1, 2)) {
                Ok(Value::Boolean(_)) => Some(f),
                Ok(_) => {
                    broker_log
                        .borrow_mut()
                        .push("lua: filter() should return a boolean".into());
                    None
                }
                Err(_) => {
                    broker_log
                        .borrow_mut()
                        .push("lua: The filter() function doesn't work correctly".into());
                    None
                }
            },
        };
        let flush_fn = globals.get::<Option<Function>>("flush").ok().flatten();
        let api = match globals.get::<Value>("broker_api_version") {
            Ok(Value::Integer(i)) if i == 1 || i == 2 => i,
            Ok(Value::Number(f)) if f == 1.0 || f == 2.0 => f as i64,
            Ok(Value::String(s)) => match s.to_string_lossy().trim() {
                "2" => 2,
                _ => 1,
            },
            _ => 1,
        };

        let cache = Rc::new(RefCell::new(cache));
        let reg = || -> mlua::Result<()> {
            globals.set(
                "broker_log",
                lua.create_userdata(BrokerLog {
                    level: None,
                    file: None,
                    lines: broker_log.clone(),
                })?,
            )?;
            globals.set("broker_event", lua.create_table()?)?;
            let sock = lua.create_table()?;
            sock.set(
                "new",
                lua.create_function(|_, ()| -> mlua::Result<()> {
                    Err(mlua::Error::runtime("broker_tcp_socket is not emulated"))
                })?,
            )?;
            globals.set("broker_tcp_socket", sock)?;
            globals.set("broker", broker_table(&lua, cfg.bbdo)?)?;
            globals.set(
                "broker_cache",
                lua.create_userdata(BrokerCache {
                    data: cache.clone(),
                    api,
                })?,
            )?;
            let conf = lua.create_table()?;
            for (name, value) in &cfg.params {
                match value {
                    Param::Str(s) => conf.raw_set(name.as_str(), s.as_str())?,
                    Param::Num(n) => conf.raw_set(name.as_str(), *n as i64)?,
                }
            }
            init.call::<()>(conf)
        };
        reg().map_err(|e| format!("lua: error running function `init' {e}"))?;
        let pairs_fn = lua
            .load("return function(e) return next, getmetatable(e).__index, nil end")
            .eval::<Function>()
            .map_err(|e| e.to_string())?;
        Ok(Output {
            lua,
            write_fn,
            pairs_fn,
            filter_fn,
            flush_fn,
            api,
            total: 0,
            cache,
            broker_log,
        })
    }

    /// Whether the `filter(1, 2)` probe passed.
    pub fn has_filter(&self) -> bool {
        self.filter_fn.is_some()
    }

    /// `broker_api_version` as broker read it.
    pub fn api_version(&self) -> i64 {
        self.api
    }

    /// The cache, for tests that change it mid-stream.
    pub fn cache(&self) -> Rc<RefCell<CacheData>> {
        self.cache.clone()
    }

    fn acks(&mut self, name: &str, r: mlua::Result<Value>) -> u64 {
        match r {
            Ok(Value::Boolean(true)) => std::mem::take(&mut self.total),
            Ok(Value::Boolean(false)) => 0,
            Ok(_) => {
                self.broker_log
                    .borrow_mut()
                    .push(format!("lua: `{name}' must return a boolean"));
                0
            }
            Err(e) => {
                self.broker_log
                    .borrow_mut()
                    .push(format!("lua: error running function `{name}' {e}"));
                0
            }
        }
    }

    /// `luabinding::write`: feeds the cache, counts, filters, builds the
    /// event for the API version, calls `write`. Returns the events acked.
    pub fn write(&mut self, ev: &Event) -> u64 {
        self.cache.borrow_mut().feed(ev);
        self.total += 1;
        if !self.passes_filter(ev.category(), ev.element()) {
            return 0;
        }
        let arg = match self.build(ev) {
            Ok(v) => v,
            Err(e) => {
                self.broker_log
                    .borrow_mut()
                    .push(format!("lua: cannot build event: {e}"));
                return 0;
            }
        };
        let r = self.write_fn.call::<Value>(arg);
        self.acks("write", r)
    }

    /// Whether `filter(category, element)` lets the event reach `write`.
    /// What the script's `filter` answers for this type.
    pub fn passes_filter_for(&mut self, category: u32, element: u32) -> bool {
        self.passes_filter(category, element)
    }

    fn passes_filter(&mut self, category: u32, element: u32) -> bool {
        let Some(f) = &self.filter_fn else {
            return true;
        };
        match f.call::<Value>((category as i64, element as i64)) {
            Ok(Value::Boolean(b)) => b,
            other => {
                let msg = match other {
                    Err(e) => format!("lua: error running function `filter' {e}"),
                    _ => "lua: `filter' must return a boolean".into(),
                };
                self.broker_log.borrow_mut().push(msg);
                false
            }
        }
    }

    /// `luabinding::write` for an event a test builds in Lua itself, to
    /// play accessors that fail as a broken or starved host's would.
    pub fn write_lua(
        &mut self,
        category: u32,
        element: u32,
        make: impl FnOnce(&Lua) -> mlua::Result<Value>,
    ) -> u64 {
        self.total += 1;
        if !self.passes_filter(category, element) {
            return 0;
        }
        let r = make(&self.lua).and_then(|arg| self.write_fn.call::<Value>(arg));
        self.acks("write", r)
    }

    /// The output's Lua state (for memory limits in tests).
    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// API 1: a fresh table. API 2: a read-only userdata whose metatable's
    /// `__index` holds the fields, so fields read at C speed as broker's
    /// C++ accessors do; assigning a field raises an error, `pairs` works.
    fn build(&self, ev: &Event) -> mlua::Result<Value> {
        let t = self
            .lua
            .create_table_with_capacity(0, ev.fields.len() + 3)?;
        t.raw_set("_type", ev.type_id as i64)?;
        t.raw_set("category", ev.category() as i64)?;
        t.raw_set("element", ev.element() as i64)?;
        for (k, v) in &ev.fields {
            if let Some(v) = v {
                t.raw_set(*k, to_lua(&self.lua, v)?)?;
            }
        }
        if self.api != 2 {
            return Ok(Value::Table(t));
        }
        let mt = self.lua.create_table_with_capacity(0, 2)?;
        mt.raw_set("__index", t)?;
        mt.raw_set("__pairs", self.pairs_fn.clone())?;
        // SAFETY: pushes one new userdata, sets its metatable, returns it.
        unsafe {
            self.lua.exec_raw::<Value>(mt, |state| {
                mlua::ffi::lua_newuserdata(state, 0);
                mlua::ffi::lua_pushvalue(state, 1);
                mlua::ffi::lua_setmetatable(state, -2);
                // Leave only the userdata as the result.
                mlua::ffi::lua_remove(state, 1);
            })
        }
    }

    /// Benchmark helper: builds one event (broker's cost, not timed) and
    /// times the call to the script's `write` right after, as broker calls
    /// it with the event fresh in cache. Returns the time spent in `write`
    /// and the events acked.
    ///
    /// The call is made as broker makes it, `lua_pcall` on the function and
    /// the event already on the stack, and only that call is timed: mlua's
    /// own calling machinery is the emulator's cost, not broker's.
    pub fn timed_write(&mut self, ev: &Event) -> (Duration, u64) {
        self.cache.borrow_mut().feed(ev);
        let arg = self.build(ev).expect("event builds");
        self.total += 1;
        let mut spent = Duration::ZERO;
        let mut answer: Option<mlua::Result<Option<bool>>> = None;
        // SAFETY: the stack holds `write` and the event; the closure keeps
        // no value with a destructor across the protected call.
        let ran = unsafe {
            self.lua.exec_raw::<()>((&self.write_fn, arg), |state| {
                use mlua::ffi;
                let start = Instant::now();
                let rc = ffi::lua_pcall(state, 1, 1, 0);
                spent = start.elapsed();
                answer = Some(if rc != 0 {
                    let mut len = 0;
                    let p = ffi::lua_tolstring(state, -1, &mut len);
                    let text = if p.is_null() {
                        "(error object is not a string)".to_string()
                    } else {
                        String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len))
                            .into_owned()
                    };
                    Err(mlua::Error::runtime(text))
                } else if ffi::lua_type(state, -1) == ffi::LUA_TBOOLEAN {
                    Ok(Some(ffi::lua_toboolean(state, -1) != 0))
                } else {
                    Ok(None)
                });
            })
        };
        let r = match (ran, answer) {
            (Err(e), _) | (Ok(()), Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(Some(b)))) => Ok(Value::Boolean(b)),
            (Ok(()), _) => Ok(Value::Nil),
        };
        (spent, self.acks("write", r))
    }

    /// `luabinding::flush`. Returns the events acked.
    pub fn flush(&mut self) -> u64 {
        match self.flush_fn.clone() {
            None => 0,
            Some(f) => {
                let r = f.call::<Value>(());
                self.acks("flush", r)
            }
        }
    }

    /// `stop()`: a last flush, then `lua_close` (finalizers, then dlclose).
    /// Returns the events the last flush acked.
    pub fn close(mut self) -> u64 {
        let n = self.flush();
        drop(self);
        n
    }
}

/// An output's muxer queue with broker's ack and back-pressure rules.
#[derive(Debug)]
pub struct Muxer {
    queue: VecDeque<Event>,
    read: usize,
    /// `event_queue_max_size`.
    pub max_size: usize,
    /// Events acknowledged so far.
    pub acked: u64,
}

impl Muxer {
    /// An empty queue with broker's default size.
    pub fn new() -> Muxer {
        Muxer {
            queue: VecDeque::new(),
            read: 0,
            max_size: 10_000,
            acked: 0,
        }
    }

    /// The engine publishes an event.
    pub fn push(&mut self, ev: Event) {
        self.queue.push_back(ev);
    }

    /// Events not yet acknowledged (handed over or not).
    pub fn unacked(&self) -> usize {
        self.queue.len()
    }

    /// Events not yet handed to `write`.
    pub fn unread(&self) -> usize {
        self.queue.len() - self.read
    }

    /// `ack_events(n)`: pops from the head, never past the read cursor.
    pub fn ack(&mut self, n: u64) {
        let n = (n as usize).min(self.read);
        self.queue.drain(..n);
        self.read -= n;
        self.acked += n as u64;
    }

    /// `nack_events()`: a restarted stream is handed every unacked event again.
    pub fn nack(&mut self) {
        self.read = 0;
    }

    /// The next event `write` may get: none when the memory part of the
    /// queue is all handed over but unacknowledged.
    fn next(&mut self) -> Option<Event> {
        if self.read < self.queue.len().min(self.max_size) {
            self.read += 1;
            Some(self.queue[self.read - 1].clone())
        } else {
            None
        }
    }

    /// The failover loop (§3.3): `write` while events are ready; when none
    /// is, `flush` right after a burst and then every `idle_flush` (1 s in
    /// broker), sleeping `tick` (100 ms in broker) in between. Runs until
    /// `done` holds or `timeout` passes; returns whether `done` held.
    pub fn run(
        &mut self,
        out: &mut Output,
        tick: Duration,
        idle_flush: Duration,
        timeout: Duration,
        mut done: impl FnMut(&Muxer) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut since_flush = false;
        let mut next_flush = Instant::now();
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            if let Some(ev) = self.next() {
                let n = out.write(&ev);
                self.ack(n);
                since_flush = true;
                continue;
            }
            let now = Instant::now();
            if since_flush || now >= next_flush {
                let n = out.flush();
                self.ack(n);
                since_flush = false;
                next_flush = now + idle_flush;
                if done(self) {
                    return true;
                }
            }
            std::thread::sleep(tick);
        }
    }
}

impl Default for Muxer {
    fn default() -> Self {
        Muxer::new()
    }
}

/// Lays out a broker Lua directory like a package install:
/// `<dir>/<loader's name>` and `<dir>/lib/<module>.so`. Returns the script
/// path.
pub fn install_connector(dir: &Path, loader: &Path, module: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("lib"))?;
    let script = dir.join(loader.file_name().expect("loader path has a file name"));
    std::fs::copy(loader, &script)?;
    let name = module.file_name().expect("module path has a file name");
    std::fs::copy(module, dir.join("lib").join(name))?;
    Ok(script)
}

/// The module file name for the Lua version the harness was built for.
pub fn module_name() -> &'static str {
    if cfg!(feature = "lua54") {
        "canopsis_native_54.so"
    } else {
        "canopsis_native_53.so"
    }
}
