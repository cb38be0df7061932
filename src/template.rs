//! Custom event formats (`format_file`), as the Lua library's templates.
//!
//! The file is read once, at `init`. Each template is compiled into a tree
//! whose strings are already split into literal text and macros, so an
//! event costs one walk that writes JSON straight into the request body: no
//! text substitution, no JSON parsing, no Lua. The result is what the Lua
//! library sends for sane templates (see the templating contract §3.4),
//! minus the cases where the library loses the event; those are reported
//! once, at `init`, naming the key and the macro.
//!
//! Values come from a [`Resolve`]: the event's own fields (with the
//! library's BBDO 2/3 compatibility fields), broker's cache, group names.

mod fields;
mod plan;
pub mod values;

pub use fields::{HOST_FIELDS, SERVICE_FIELDS};

use crate::event::{ElementKind, Field};
use crate::luapattern::Pattern;
use fields::{kind_of_key, known_cache_field, known_event_field};
use values::{apply, backslash_pass, split_flag, Flag, FlagEnv, Value};

/// Where a cache macro's value comes from (`{cache.<type>.<field>}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheType {
    /// `get_host`.
    Host,
    /// `get_service`.
    Service,
    /// `{id, name}` of the host's poller.
    Instance,
    /// `{host, service}` severities.
    Severity,
    /// `get_ba`.
    Ba,
}

impl CacheType {
    fn from_name(name: &str) -> Option<CacheType> {
        Some(match name {
            "host" => CacheType::Host,
            "service" => CacheType::Service,
            "instance" => CacheType::Instance,
            "severity" => CacheType::Severity,
            "ba" => CacheType::Ba,
            _ => return None,
        })
    }
}

/// Whose group names a group macro lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOf {
    /// `hg`: the host's host groups.
    Host,
    /// `sg`: the service's service groups.
    Service,
    /// `bv`: the business activity's business views.
    Bv,
    /// `hgalias`: the aliases of the host's groups (broker 25.10's
    /// `get_hostgroup_alias`; none on older brokers). The Lua library's
    /// macros have no alias (its `sc_broker` can fetch one for custom
    /// code): an extension, in the group macros' own syntax.
    HostAlias,
}

/// The values a template asks for.
pub trait Resolve {
    /// The event's field `name` (compatibility fields included).
    fn event(&mut self, name: &str) -> Option<Field>;
    /// A cached object's field.
    fn cache(&mut self, ty: CacheType, field: &str) -> Option<Field>;
    /// Group names, in the cache's order (empty when there are none, or
    /// the event has no such object).
    fn groups(&mut self, of: GroupOf) -> &[String];
}

#[derive(Debug, Clone)]
enum Source {
    Event(String),
    Cache(CacheType, String),
    Groups {
        of: GroupOf,
        inline: bool,
        pattern: Pattern,
    },
}

#[derive(Debug, Clone)]
struct Macro {
    source: Source,
    flag: Option<Flag>,
    /// The macro as written, braces included: what stays when it has no
    /// value.
    raw: String,
}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Macro(Macro),
}

#[derive(Debug, Clone)]
enum Text {
    /// No macro: the final text.
    Lit(String),
    /// Exactly one macro: may become a number or an array.
    Whole(Macro),
    /// Text with macros inside.
    Parts(Vec<Part>),
}

#[derive(Debug, Clone)]
enum Node {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// `{}` or `[]`: broker writes both as `[]`.
    Empty,
    Str(Text),
    Array(Vec<Node>),
    Object(Vec<(Text, Node)>),
}

/// What a template reads, so callers fetch only that.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    /// Event fields.
    pub event: Vec<String>,
    /// `get_host` fields.
    pub host: Vec<String>,
    /// `get_service` fields.
    pub service: Vec<String>,
    /// Those of `host` that change with each check (`state`, `output`,
    /// `last_check`...): read for every event, not once per object.
    pub host_live: Vec<String>,
    /// The same for `service`.
    pub service_live: Vec<String>,
    /// Whether `{cache.instance.*}`, `{cache.severity.*}`, `{cache.ba.*}`
    /// or a group macro of each kind appears.
    pub instance: bool,
    /// See [`Needs::instance`].
    pub severity: bool,
    /// See [`Needs::instance`].
    pub ba: bool,
    /// See [`Needs::instance`].
    pub groups: [bool; 4],
}

fn add(list: &mut Vec<String>, name: &str) {
    if !list.iter().any(|n| n == name) {
        list.push(name.to_string());
    }
}

/// One kind's template.
#[derive(Debug, Clone)]
pub struct Template {
    root: Node,
    /// The same, with what depends only on the object set apart.
    plan: plan::Plan,
    /// What it reads.
    pub needs: Needs,
}

/// How whole-value macros are written.
#[derive(Debug, Clone)]
pub struct Env<'a> {
    /// For the flags.
    pub flags: FlagEnv<'a>,
    /// `format_file_typed_values=1`: numbers and booleans as JSON numbers
    /// and booleans (the library's documented intent) instead of strings
    /// (what it does).
    pub typed: bool,
}

/// The templates of a `format_file`, by event kind.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    slots: Vec<(ElementKind, Option<Template>)>,
}

impl Templates {
    /// `kind`'s template: `Some(None)` when it is empty (muted).
    pub fn choice(&self, kind: ElementKind) -> Option<Option<&Template>> {
        self.slots
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, t)| t.as_ref())
    }

    /// Whether no kind has a template.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Each kind with a template: `None` for an empty one (the kind is
    /// muted).
    pub fn into_slots(self) -> Vec<(ElementKind, Option<Template>)> {
        self.slots
    }

    /// Reads `path`. `Err` is the one line to log when nothing can be used
    /// (the built-in format then serves every kind, as in Lua); otherwise
    /// the templates that compiled, and one line per problem found.
    pub fn load(path: &str) -> Result<(Templates, Vec<String>), String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "format_file {path}: cannot read it ({e}): every event uses the built-in format"
            )
        })?;
        Templates::from_text(&text, path)
    }

    /// [`load`](Self::load) for a file's text; `path` names it in messages.
    pub fn from_text(text: &str, path: &str) -> Result<(Templates, Vec<String>), String> {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            format!(
                "format_file {path}: not valid JSON ({e}): every event uses the built-in format"
            )
        })?;
        let serde_json::Value::Object(map) = json else {
            return Err(format!(
                "format_file {path}: the file must be a JSON object of templates: every event uses the built-in format"
            ));
        };
        let mut t = Templates::default();
        let mut problems = Vec::new();
        for (key, value) in map {
            let mut say =
                |what: String| problems.push(format!("format_file {path}: {key}: {what}"));
            let kind = match kind_of_key(&key) {
                Ok(kind) => kind,
                Err(why) => {
                    say(why);
                    continue;
                }
            };
            if let Some(prev) = t.slots.iter().position(|(k, _)| *k == kind) {
                say(format!(
                    "a second template for {} events: this one is used",
                    kind.name()
                ));
                t.slots.remove(prev);
            }
            match value {
                serde_json::Value::Object(o) if o.is_empty() => {
                    // As in Lua, `{}` makes no event: a way to mute a kind.
                    t.slots.push((kind, None));
                }
                serde_json::Value::Object(_) => {
                    let mut c = Compiler {
                        kind,
                        needs: Needs::default(),
                        problems: Vec::new(),
                    };
                    let root = c.node(&value, "");
                    for p in c.problems {
                        say(p);
                    }
                    t.slots.push((kind, Some(Template::new(root, c.needs))));
                }
                other => say(format!(
                    "a template must be a JSON object, not {}: {} events use the built-in format",
                    json_type(&other),
                    kind.name()
                )),
            }
        }
        Ok((t, problems))
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `macro {raw}`, with where it stands in the template.
fn located(raw: &str, at: &str) -> String {
    if at.is_empty() {
        format!("macro {raw}")
    } else {
        format!("macro {raw} (at '{at}')")
    }
}

struct Compiler {
    kind: ElementKind,
    needs: Needs,
    problems: Vec<String>,
}

/// Characters allowed between a macro's braces (`[%w_.%(%),%%%+%-%*%?%[%]%^%$]`).
fn macro_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.(),%+-*?[]^$".contains(&b)
}

impl Compiler {
    fn node(&mut self, v: &serde_json::Value, at: &str) -> Node {
        use serde_json::Value as J;
        match v {
            // Broker's decoder drops nulls; callers skip them.
            J::Null => Node::Empty,
            J::Bool(b) => Node::Bool(*b),
            J::Number(n) => {
                // Broker's decoder keeps 32 bits of integers.
                if let Some(u) = n.as_u64() {
                    Node::Int(u as u32 as i64)
                } else if let Some(i) = n.as_i64() {
                    Node::Int(i as i32 as i64)
                } else {
                    Node::Float(n.as_f64().unwrap_or(0.0))
                }
            }
            J::String(s) => Node::Str(self.text(&backslash_pass(s), at, true)),
            J::Array(a) if a.iter().all(|x| x.is_null()) => Node::Empty,
            J::Array(a) => Node::Array(
                a.iter()
                    .filter(|x| !x.is_null())
                    .map(|x| self.node(x, at))
                    .collect(),
            ),
            J::Object(o) if o.values().all(|x| x.is_null()) => Node::Empty,
            J::Object(o) => Node::Object(
                o.iter()
                    .filter(|(_, x)| !x.is_null())
                    .map(|(k, x)| {
                        let path = if at.is_empty() {
                            k.clone()
                        } else {
                            format!("{at}.{k}")
                        };
                        let key = self.text(k, &path, false);
                        (key, self.node(x, &path))
                    })
                    .collect(),
            ),
        }
    }

    /// Splits `s` into literal text and macros. A value's literal text is
    /// decoded once more per event in Lua, hence `value`.
    fn text(&mut self, s: &str, at: &str, value: bool) -> Text {
        let b = s.as_bytes();
        let mut parts = Vec::new();
        let (mut lit_from, mut i) = (0, 0);
        while i < b.len() {
            if b[i] == b'{' {
                let mut j = i + 1;
                while j < b.len() && macro_char(b[j]) {
                    j += 1;
                }
                if j > i + 1 && j < b.len() && b[j] == b'}' {
                    if lit_from < i {
                        parts.push(Part::Lit(s[lit_from..i].to_string()));
                    }
                    let raw = &s[i..=j];
                    parts.push(match self.macro_of(raw, at) {
                        Some(m) => Part::Macro(m),
                        None => Part::Lit(raw.to_string()),
                    });
                    lit_from = j + 1;
                    i = j + 1;
                    continue;
                }
            }
            i += 1;
        }
        if lit_from < b.len() {
            parts.push(Part::Lit(s[lit_from..].to_string()));
        }
        let lit = |s: String| {
            if value {
                backslash_pass(&s).into_owned()
            } else {
                s
            }
        };
        match parts.len() {
            0 => Text::Lit(String::new()),
            1 => match parts.pop() {
                Some(Part::Macro(m)) => Text::Whole(m),
                Some(Part::Lit(l)) => Text::Lit(lit(l)),
                None => Text::Lit(String::new()),
            },
            _ if parts.iter().all(|p| matches!(p, Part::Lit(_))) => Text::Lit(lit(s.to_string())),
            _ => Text::Parts(parts),
        }
    }

    /// A macro that stays as written, and why.
    fn problem(&mut self, at: &str, raw: &str, why: String) {
        self.problems.push(format!(
            "{}: {why}; it is sent as written",
            located(raw, at)
        ));
    }

    fn macro_of(&mut self, raw: &str, at: &str) -> Option<Macro> {
        let inner = &raw[1..raw.len() - 1];
        if let Some(rest) = inner.strip_prefix("groups(") {
            return self.group_macro(raw, rest, at);
        }
        let (source, name) = match inner.strip_prefix("cache.") {
            Some(rest) => {
                let dot = rest
                    .find('.')
                    .filter(|&d| d > 0 && rest[..d].bytes().all(|b| b.is_ascii_alphanumeric()));
                let Some(dot) = dot else {
                    self.problem(at, raw, "expected {cache.<type>.<field>}".into());
                    return None;
                };
                let Some(ty) = CacheType::from_name(&rest[..dot]) else {
                    self.problem(
                        at,
                        raw,
                        format!(
                            "unknown cache type '{}' (host, service, instance, severity or ba)",
                            &rest[..dot]
                        ),
                    );
                    return None;
                };
                (Some(ty), &rest[dot + 1..])
            }
            None => (None, inner),
        };
        let (base, flag_name) = split_flag(name);
        let flag = match flag_name {
            None => None,
            Some(f) => match Flag::from_name(f) {
                Some(flag) => Some(flag),
                None => {
                    self.problem(
                        at,
                        raw,
                        format!("unknown flag '_sc{f}' (_scdate, _sctype, _scstate, _scshort, _scnumber or _scstring)"),
                    );
                    return None;
                }
            },
        };
        let source = match source {
            Some(ty) => {
                if !known_cache_field(ty, base) {
                    self.problem(
                        at,
                        raw,
                        format!("'{base}' is not a field of the cached object"),
                    );
                    return None;
                }
                match ty {
                    CacheType::Host => {
                        add(&mut self.needs.host, base);
                        if plan::volatile(base) {
                            add(&mut self.needs.host_live, base);
                        }
                    }
                    CacheType::Service => {
                        add(&mut self.needs.service, base);
                        if plan::volatile(base) {
                            add(&mut self.needs.service_live, base);
                        }
                    }
                    CacheType::Instance => self.needs.instance = true,
                    CacheType::Severity => self.needs.severity = true,
                    CacheType::Ba => self.needs.ba = true,
                }
                Source::Cache(ty, base.to_string())
            }
            None => {
                if !known_event_field(self.kind, base) {
                    self.problems.push(format!(
                        "{}: '{base}' is not a field of {} events; it is sent as written unless custom code sets it",
                        located(raw, at),
                        self.kind.name()
                    ));
                }
                add(&mut self.needs.event, base);
                Source::Event(base.to_string())
            }
        };
        Some(Macro {
            source,
            flag,
            raw: raw.to_string(),
        })
    }

    /// `{groups(<type>,<format>,<pattern>)}`: `rest` is what follows `groups(`.
    fn group_macro(&mut self, raw: &str, rest: &str, at: &str) -> Option<Macro> {
        let Some(body) = rest.strip_suffix(')') else {
            self.problem(
                at,
                raw,
                "expected {groups(hg|sg|bv|hgalias,table|inline,PATTERN)}".into(),
            );
            return None;
        };
        let mut it = body.splitn(3, ',');
        let (ty, format, pattern) = match (it.next(), it.next(), it.next()) {
            (Some(t), Some(f), Some(p)) => (t, f, p),
            _ => {
                self.problem(
                    at,
                    raw,
                    "expected {groups(hg|sg|bv|hgalias,table|inline,PATTERN)}".into(),
                );
                return None;
            }
        };
        let of = match ty {
            "hg" => GroupOf::Host,
            "sg" => GroupOf::Service,
            "bv" => GroupOf::Bv,
            "hgalias" => GroupOf::HostAlias,
            _ => {
                self.problem(
                    at,
                    raw,
                    format!("unknown group type '{ty}' (hg, sg, bv or hgalias)"),
                );
                return None;
            }
        };
        let inline = match format {
            "table" => false,
            "inline" => true,
            _ => {
                self.problem(
                    at,
                    raw,
                    format!("unknown group format '{format}' (table or inline)"),
                );
                return None;
            }
        };
        let pattern = match Pattern::new(pattern) {
            Ok(p) => p,
            Err(e) => {
                self.problem(at, raw, format!("bad Lua pattern '{pattern}': {e}"));
                return None;
            }
        };
        self.needs.groups[of as usize] = true;
        Some(Macro {
            source: Source::Groups {
                of,
                inline,
                pattern,
            },
            flag: None,
            raw: raw.to_string(),
        })
    }
}

/// Writes `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl Template {
    fn new(root: Node, needs: Needs) -> Template {
        Template {
            plan: plan::Plan::of(&root),
            root,
            needs,
        }
    }

    /// Writes the event's JSON into `out`.
    pub fn render(&self, r: &mut dyn Resolve, env: &Env<'_>, out: &mut Vec<u8>) {
        write_node(&self.root, r, env, out);
    }

    /// What depends only on the object, written once for it: the
    /// `objects` that [`render_with_objects`](Self::render_with_objects)
    /// takes for each of its events. `r` gives no event field.
    pub fn render_objects(&self, r: &mut dyn Resolve, env: &Env<'_>) -> Vec<Box<[u8]>> {
        self.plan.render_slots(r, env)
    }

    /// [`render`](Self::render), with what depends only on the object
    /// already written (`objects`, from [`render_objects`](Self::render_objects)
    /// for the same object).
    pub fn render_with_objects(
        &self,
        r: &mut dyn Resolve,
        env: &Env<'_>,
        objects: &[Box<[u8]>],
        out: &mut Vec<u8>,
    ) {
        self.plan.render(r, env, objects, out)
    }

    /// Whether the template writes `key` at its top level as a string
    /// made of one macro (for the `timestamp` warning).
    pub fn whole_macro_at(&self, key: &str) -> bool {
        let Node::Object(fields) = &self.root else {
            return false;
        };
        fields.iter().any(|(k, v)| {
            matches!(k, Text::Lit(l) if l == key) && matches!(v, Node::Str(Text::Whole(_)))
        })
    }

    /// Whether the template writes `key` at its top level.
    pub fn has_key(&self, key: &str) -> bool {
        let Node::Object(fields) = &self.root else {
            return false;
        };
        fields
            .iter()
            .any(|(k, _)| matches!(k, Text::Lit(l) if l == key))
    }
}

fn resolve(m: &Macro, r: &mut dyn Resolve, env: &Env<'_>) -> Option<Value> {
    let found = match &m.source {
        Source::Event(name) => r.event(name),
        Source::Cache(ty, field) => r.cache(*ty, field),
        Source::Groups {
            of,
            inline,
            pattern,
        } => {
            let names = r
                .groups(*of)
                .iter()
                .filter(|n| pattern.is_match(n.as_bytes()));
            return Some(if *inline {
                let mut s = String::new();
                for n in names {
                    if !s.is_empty() {
                        s.push(',');
                    }
                    s.push_str(n);
                }
                Value::Text(s)
            } else {
                Value::List(names.cloned().collect())
            });
        }
    };
    let v = Value::of(found?)?;
    match m.flag {
        Some(flag) => apply(flag, v, &env.flags),
        None => Some(v),
    }
}

/// The text of a string with macros, before broker's second pass.
fn joined(parts: &[Part], r: &mut dyn Resolve, env: &Env<'_>) -> String {
    let mut s = String::new();
    for p in parts {
        match p {
            Part::Lit(l) => s.push_str(l),
            Part::Macro(m) => match resolve(m, r, env) {
                Some(v) => s.push_str(&v.text()),
                None => s.push_str(&m.raw),
            },
        }
    }
    s
}

fn write_key(k: &Text, r: &mut dyn Resolve, env: &Env<'_>, out: &mut Vec<u8>) {
    match k {
        Text::Lit(l) => json_str(out, l),
        Text::Whole(m) => match resolve(m, r, env) {
            Some(v) => json_str(out, &v.text()),
            None => json_str(out, &m.raw),
        },
        Text::Parts(p) => json_str(out, &joined(p, r, env)),
    }
}

fn write_node(n: &Node, r: &mut dyn Resolve, env: &Env<'_>, out: &mut Vec<u8>) {
    match n {
        Node::Int(i) => write_int(out, *i),
        Node::Float(f) => out.extend_from_slice(values::lua_float(*f).as_bytes()),
        Node::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Node::Empty => out.extend_from_slice(b"[]"),
        Node::Str(Text::Lit(l)) => json_str(out, l),
        Node::Str(Text::Parts(p)) => json_str(out, &backslash_pass(&joined(p, r, env))),
        Node::Str(Text::Whole(m)) => match resolve(m, r, env) {
            None => json_str(out, &m.raw),
            Some(Value::List(names)) => {
                out.push(b'[');
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    json_str(out, &backslash_pass(name));
                }
                out.push(b']');
            }
            Some(Value::Int(i)) if env.typed => write_int(out, i),
            // As a string (parity): digits need no escaping.
            Some(Value::Int(i)) => {
                out.push(b'"');
                write_int(out, i);
                out.push(b'"');
            }
            Some(Value::Float(f)) if env.typed && f.is_finite() => {
                out.extend_from_slice(values::lua_float(f).as_bytes())
            }
            Some(Value::True) if env.typed => out.extend_from_slice(b"true"),
            Some(v) => json_str(out, &backslash_pass(&v.text())),
        },
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(item, r, env, out);
            }
            out.push(b']');
        }
        Node::Object(fields) => {
            out.push(b'{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_key(k, r, env, out);
                out.push(b':');
                write_node(v, r, env, out);
            }
            out.push(b'}');
        }
    }
}

/// Writes `i` in decimal (without `fmt`'s machinery: it is on every
/// event's path).
fn write_int(out: &mut Vec<u8>, i: i64) {
    let mut buf = [0u8; 20];
    let mut n = i.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dates::DateFormat;
    use serde_json::{json, Value as J};

    /// host_id=12, cache.host.name="srv01", output="o\nl1\nl2",
    /// flapping=false, hostgroups HG_1, web-01, web-xx: the contract's
    /// example event.
    struct Example;

    impl Resolve for Example {
        fn event(&mut self, name: &str) -> Option<Field> {
            Some(match name {
                "host_id" => Field::Int(12),
                "state" => Field::Int(2),
                "output" => Field::Str(b"o\nl1\nl2".to_vec()),
                "flapping" => Field::Bool(false),
                "acknowledged" => Field::Bool(true),
                "pct" => Field::Str(b"50%".to_vec()),
                "latency" => Field::Float(0.0),
                "last_check" => Field::Int(86400),
                "state_type" => Field::Int(0),
                "path" => Field::Str(br"a\nb".to_vec()),
                "ctrl" => Field::Str(b"bell\x07".to_vec()),
                _ => return None,
            })
        }
        fn cache(&mut self, ty: CacheType, field: &str) -> Option<Field> {
            match (ty, field) {
                (CacheType::Host, "name") => Some(Field::Str(b"srv01".to_vec())),
                (CacheType::Host, "tags") => Some(Field::Other("table")),
                (CacheType::Severity, "host") => None,
                (CacheType::Ba, "ba_name") => Some(Field::Str(b"BA-1".to_vec())),
                _ => None,
            }
        }
        fn groups(&mut self, of: GroupOf) -> &[String] {
            static HG: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
            match of {
                GroupOf::Host => {
                    HG.get_or_init(|| vec!["HG_1".into(), "web-01".into(), "web-xx".into()])
                }
                GroupOf::HostAlias => {
                    static HGA: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
                    HGA.get_or_init(|| vec!["Linux servers".into(), "Web front".into()])
                }
                _ => &[],
            }
        }
    }

    fn compile(kind: ElementKind, template: J) -> (Template, Vec<String>) {
        let mut c = Compiler {
            kind,
            needs: Needs::default(),
            problems: Vec::new(),
        };
        let root = c.node(&template, "");
        (Template::new(root, c.needs), c.problems)
    }

    fn render_with(kind: ElementKind, template: J, typed: bool) -> J {
        let (t, _) = compile(kind, template);
        let dates = DateFormat::new("!%Y-%m-%d %X", None).unwrap();
        let env = Env {
            flags: FlagEnv {
                kind,
                service: true,
                dates: &dates,
            },
            typed,
        };
        let mut out = Vec::new();
        t.render(&mut Example, &env, &mut out);
        // Written in two steps (the object's part once, then the event's),
        // the result is the same.
        let objects = t.render_objects(&mut Example, &env);
        let mut planned = Vec::new();
        t.render_with_objects(&mut Example, &env, &objects, &mut planned);
        assert_eq!(
            String::from_utf8_lossy(&planned),
            String::from_utf8_lossy(&out)
        );
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    fn render(template: J) -> J {
        render_with(ElementKind::ServiceStatus, template, false)
    }

    #[test]
    fn the_contract_examples_render_as_in_lua() {
        let cases = [
            (json!("{host_id}"), json!("12")),
            (
                json!("id={host_id} name={cache.host.name}"),
                json!("id=12 name=srv01"),
            ),
            (json!("{output_scshort}"), json!("o\nl1")),
            (json!("{flapping}"), json!("{flapping}")),
            (json!("{flapping_scstring}"), json!("{flapping_scstring}")),
            (json!("{unknown}"), json!("{unknown}")),
            (json!("x {unknown} y"), json!("x {unknown} y")),
            (
                json!("{groups(hg,table,.*)}"),
                json!(["HG_1", "web-01", "web-xx"]),
            ),
            (json!("{groups(hg,inline,.*)}"), json!("HG_1,web-01,web-xx")),
            (
                json!("{groups(hgalias,inline,.*)}"),
                json!("Linux servers,Web front"),
            ),
            (json!("{groups(hgalias,table,^Web)}"), json!(["Web front"])),
            (json!("{groups(sg,inline,.*)}"), json!("")),
            (json!("{groups(hg,inline,^web%-%d+$)}"), json!("web-01")),
            (json!("{groups(hg,table,^%u)}"), json!(["HG_1"])),
            (
                json!("{groups(hg,inline,^web %d)}"),
                json!("{groups(hg,inline,^web %d)}"),
            ),
            (json!("{groups(sg,table,)}"), json!([])),
            (json!("50% {pct}"), json!("50% 50%")),
            (json!("{state}"), json!("2")),
            (json!("{state_scstate}"), json!("CRITICAL")),
            (json!("{latency}"), json!("0.0")),
            (json!("{acknowledged_scstring}"), json!("true")),
            (json!("{state_type_sctype}"), json!("SOFT")),
            (json!("{last_check_scdate}"), json!("1970-01-02 00:00:00")),
            (
                json!("{cache.severity.host}"),
                json!("{cache.severity.host}"),
            ),
            (json!("{cache.host.tags}"), json!("{cache.host.tags}")),
            (json!("{path}"), json!("a\nb")),
            (json!("{ctrl}"), json!("bell\u{7}")),
        ];
        for (template, want) in cases {
            let got = render(json!({ "v": template.clone() }));
            assert_eq!(got["v"], want, "{template}");
        }
    }

    #[test]
    fn keys_nested_objects_and_arrays_are_substituted() {
        let got = render(json!({
            "{cache.host.name}": "k",
            "nested": {"a": ["{host_id}", 1, {"b": "{state_scstate}"}]},
            "empty": {},
            "gone": null,
            "list": [1, null, 3],
            "big": 1731000000000u64,
            "neg": -5,
            "f": 7.0
        }));
        assert_eq!(
            got,
            json!({
                "srv01": "k",
                "nested": {"a": ["12", 1, {"b": "CRITICAL"}]},
                "empty": [],
                "list": [1, 3],
                "big": 1731000000000u64 as u32,
                "neg": -5,
                "f": 7.0
            })
        );
    }

    #[test]
    fn literal_text_is_decoded_twice_as_broker_does() {
        // The file's "C:\\\\temp" is C:\\temp once decoded, then C:\temp,
        // which broker's second pass makes C:<TAB>emp.
        let got = render(json!({"p": "C:\\\\temp", "q": "C:\\\\temp {host_id}"}));
        assert_eq!(got["p"], "C:\temp");
        assert_eq!(got["q"], "C:\temp 12");
    }

    #[test]
    fn typed_values_keep_numbers_and_booleans() {
        let got = render_with(
            ElementKind::ServiceStatus,
            json!({"s": "{state}", "t": "{last_check}", "a": "{acknowledged}", "n": "{pct_scnumber}", "o": "{output_scshort}", "x": "at {state}"}),
            true,
        );
        assert_eq!(
            got,
            json!({"s": 2, "t": 86400, "a": true, "n": "{pct_scnumber}", "o": "o\nl1", "x": "at 2"})
        );
    }

    #[test]
    fn bad_macros_are_reported_once_and_sent_as_written() {
        let (t, problems) = compile(
            ElementKind::HostStatus,
            json!({
                "a": "{cache.host.name_scfoo}",
                "b": "{cache.nope.x}",
                "c": "{groups(xx,table,.*)}",
                "d": "{groups(hg,list,.*)}",
                "e": "{groups(hg,table,[a)}",
                "f": "{not_a_field}",
                "g": "{cache.host.no_such_field}"
            }),
        );
        assert_eq!(problems.len(), 7, "{problems:#?}");
        for (p, what) in problems.iter().zip([
            "_scfoo",
            "nope",
            "xx",
            "list",
            "[a",
            "not_a_field",
            "no_such_field",
        ]) {
            assert!(p.contains(what), "{p}");
        }
        let dates = DateFormat::local_default();
        let env = Env {
            flags: FlagEnv {
                kind: ElementKind::HostStatus,
                service: false,
                dates: &dates,
            },
            typed: false,
        };
        let mut out = Vec::new();
        t.render(&mut Example, &env, &mut out);
        let got: J = serde_json::from_slice(&out).unwrap();
        assert_eq!(got["a"], "{cache.host.name_scfoo}");
        assert_eq!(got["e"], "{groups(hg,table,[a)}");
    }

    #[test]
    fn needs_list_what_the_template_reads() {
        let (t, _) = compile(
            ElementKind::ServiceStatus,
            json!({"a": "{cache.host.alias} {cache.service.notes} {output} {output_scshort} {cache.instance.name}", "b": "{groups(hg,table,.*)}"}),
        );
        assert_eq!(t.needs.host, vec!["alias".to_string()]);
        assert_eq!(t.needs.service, vec!["notes".to_string()]);
        assert_eq!(t.needs.event, vec!["output".to_string()]);
        assert!(t.needs.instance && !t.needs.severity);
        assert_eq!(t.needs.groups, [true, false, false, false]);
        let (t, _) = compile(
            ElementKind::HostStatus,
            json!({"a": "{groups(hgalias,inline,.*)}"}),
        );
        assert_eq!(t.needs.groups, [false, false, false, true]);
    }

    fn load(text: &str) -> Result<(Templates, Vec<String>), String> {
        let dir = std::env::temp_dir().join(format!(
            "tpl-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("format.json");
        std::fs::write(&path, text).unwrap();
        let r = Templates::load(path.to_str().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn a_bad_key_or_template_is_reported_and_the_others_still_work() {
        let (t, problems) = load(
            r#"{"neb_host_status": {"a": "{host_id}"}, "foo_host_status": {}, "neb_foo": {}, "neb": {},
                "storage_metric": {}, "neb_ba_status": {}, "neb_comment": {}, "neb_service_status": "text",
                "neb_acknowledgement": {}, "bam_pb_ba_status": {"x": 1}}"#,
        )
        .unwrap();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert!(matches!(t.choice(ElementKind::HostStatus), Some(Some(_))));
        assert!(matches!(t.choice(ElementKind::Acknowledgement), Some(None)));
        assert!(matches!(t.choice(ElementKind::BaStatus), Some(Some(_))));
        assert!(t.choice(ElementKind::ServiceStatus).is_none());
    }

    #[test]
    fn an_unreadable_file_or_bad_json_is_one_error() {
        assert!(Templates::load("/nonexistent/format.json")
            .unwrap_err()
            .contains("cannot read"));
        assert!(load("{not json").unwrap_err().contains("not valid JSON"));
        assert!(load("[1]").unwrap_err().contains("JSON object"));
        assert!(load("{}").unwrap().0.is_empty());
    }
}
