//! How the Lua library turns a macro's value into text: Lua's `tostring`
//! and `tonumber`, Broker's second backslash pass, and the `_sc*` flags.
//!
//! Every rule here is the observable behaviour of `sc_macros.lua` under
//! Lua 5.3, except where a Lua error would lose the event: there the value
//! is left out (the macro stays verbatim) and the template's compiler has
//! already said why at `init`.

use crate::dates::DateFormat;
use crate::event::{ElementKind, Field};

/// A value a macro resolved to, after its flag.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A Lua string (plugin output may not be UTF-8: it is read lossily).
    Text(String),
    /// A Lua integer.
    Int(i64),
    /// A Lua float.
    Float(f64),
    /// `true` (a `false` value counts as not found, as in Lua).
    True,
    /// The names a group macro in `table` format selected.
    List(Vec<String>),
}

impl Value {
    /// The value of a field, when Lua would find it truthy and usable:
    /// `false`, `nil` and tables leave the macro verbatim.
    pub fn of(field: Field) -> Option<Value> {
        Some(match field {
            Field::Int(i) => Value::Int(i),
            Field::Float(f) => Value::Float(f),
            Field::Str(s) => Value::Text(match String::from_utf8(s) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            }),
            Field::Bool(true) => Value::True,
            Field::Bool(false) | Field::Other(_) => return None,
        })
    }

    /// Lua's `tostring`, which is what the library inserts into the text.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::Text(s) => s.as_str().into(),
            Value::Int(i) => i.to_string().into(),
            Value::Float(f) => lua_float(*f).into(),
            Value::True => "true".into(),
            Value::List(names) => serde_json::to_string(names).unwrap_or_default().into(),
        }
    }
}

/// Lua 5.3's `tostring` of a float: `%.14g`, plus `.0` when that looks
/// like an integer.
pub fn lua_float(f: f64) -> String {
    if f.is_nan() {
        return if f.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.into();
    }
    let mut s = g14(f);
    if !s.contains(['.', 'e', 'n', 'i']) {
        s.push_str(".0");
    }
    s
}

/// C's `%.14g`.
fn g14(f: f64) -> String {
    const P: i32 = 14;
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // `{:e}` with P-1 decimals rounds like printf and gives the exponent.
    let e = format!("{:.*e}", (P - 1) as usize, f);
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..P).contains(&exp) {
        let m = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (P - 1 - exp).max(0) as usize;
        trim_fraction(&format!("{f:.decimals$}")).to_string()
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Lua's `tonumber` on a string: surrounding spaces, decimal integers,
/// hexadecimal integers, and floats (decimal or hexadecimal).
pub fn lua_tonumber(s: &str) -> Option<Value> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Lua wraps hexadecimal integers around.
            let v = hex.bytes().fold(0u64, |acc, b| {
                acc.wrapping_mul(16)
                    .wrapping_add((b as char).to_digit(16).unwrap_or(0) as u64)
            }) as i64;
            return Some(Value::Int(if neg { v.wrapping_neg() } else { v }));
        }
        return None;
    }
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b))
    {
        return None;
    }
    if body.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = t.trim_start_matches('+').parse::<i64>() {
            return Some(Value::Int(v));
        }
    }
    t.trim_start_matches('+')
        .parse::<f64>()
        .ok()
        .map(Value::Float)
}

/// Broker's second pass over every string `json_decode` returns: `\` then
/// one of `\ " t r n` becomes that one character.
pub fn backslash_pass(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\\') {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let replaced = match chars.peek() {
                Some('\\') => Some('\\'),
                Some('"') => Some('"'),
                Some('t') => Some('\t'),
                Some('r') => Some('\r'),
                Some('n') => Some('\n'),
                _ => None,
            };
            if let Some(r) = replaced {
                chars.next();
                out.push(r);
                continue;
            }
        }
        out.push(c);
    }
    out.into()
}

/// A transformation flag: the `_sc<name>` suffix of a macro.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `_scdate`: a timestamp as local time, `timestamp_conversion_format`.
    Date,
    /// `_sctype`: 0 is `SOFT`, anything else `HARD`.
    Type,
    /// `_scstate`: a state code as its name.
    State,
    /// `_scshort`: the text before the last newline.
    Short,
    /// `_scnumber`: Lua's `tonumber`.
    Number,
    /// `_scstring`: Lua's `tostring`.
    String,
}

impl Flag {
    /// The flag called `name`, if the library knows it.
    pub fn from_name(name: &str) -> Option<Flag> {
        Some(match name {
            "date" => Flag::Date,
            "type" => Flag::Type,
            "state" => Flag::State,
            "short" => Flag::Short,
            "number" => Flag::Number,
            "string" => Flag::String,
            _ => return None,
        })
    }
}

/// Splits a macro name as the library does (`(.*)_sc(%w+)$`, greedy): the
/// base name and the flag's name, if there is one.
pub fn split_flag(name: &str) -> (&str, Option<&str>) {
    // Only the last `_sc` can qualify: the text after an earlier one
    // contains the `_` of the last.
    if let Some(pos) = name.rfind("_sc") {
        let rest = &name[pos + 3..];
        if !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return (&name[..pos], Some(rest));
        }
    }
    (name, None)
}

/// What the flags need besides the value.
#[derive(Debug, Clone)]
pub struct FlagEnv<'a> {
    /// The event's kind (`_scstate` names states by it).
    pub kind: ElementKind,
    /// For acknowledgements: whether it is a service's.
    pub service: bool,
    /// How `_scdate` writes a time.
    pub dates: &'a DateFormat,
}

/// Applies `flag` to a truthy value: `None` leaves the macro verbatim.
pub fn apply(flag: Flag, v: Value, env: &FlagEnv<'_>) -> Option<Value> {
    match flag {
        Flag::Date => env.dates.format(seconds(&v)?).map(Value::Text),
        Flag::Type => Some(Value::Text(
            if matches!(v, Value::Int(0)) || matches!(v, Value::Float(f) if f == 0.0) {
                "SOFT"
            } else {
                "HARD"
            }
            .into(),
        )),
        Flag::State => state_name(env, &v)
            .map(|n| Value::Text(n.into()))
            .or(Some(v)),
        Flag::Short => Some(match v {
            Value::Text(mut s) => {
                if let Some(i) = s.rfind('\n') {
                    s.truncate(i);
                }
                Value::Text(s)
            }
            other => other,
        }),
        Flag::Number => match v {
            Value::Int(_) | Value::Float(_) => Some(v),
            Value::Text(s) => lua_tonumber(&s),
            Value::True | Value::List(_) => None,
        },
        Flag::String => Some(Value::Text(v.text().into_owned())),
    }
}

/// A time in seconds, as `os.date` accepts it (numbers and numeric text).
fn seconds(v: &Value) -> Option<i64> {
    let n = match v {
        Value::Text(s) => lua_tonumber(s)?,
        other => other.clone(),
    };
    match n {
        Value::Int(i) => Some(i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        _ => None,
    }
}

/// `_scstate`'s names. Unlike the library (a Lua error on downtimes and
/// BAs, service names on BBDO 2 host acknowledgements), every kind has
/// names, and an unknown code stays as it is.
fn state_name(env: &FlagEnv<'_>, v: &Value) -> Option<&'static str> {
    let code = match v {
        Value::Int(i) => *i,
        Value::Float(f) if f.fract() == 0.0 => *f as i64,
        _ => return None,
    };
    const HOST: [&str; 3] = ["UP", "DOWN", "UNREACHABLE"];
    const SERVICE: [&str; 4] = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];
    let names: &[&str] = match env.kind {
        ElementKind::HostStatus => &HOST,
        ElementKind::ServiceStatus | ElementKind::BaStatus => &SERVICE,
        ElementKind::Acknowledgement | ElementKind::Downtime => {
            if env.service {
                &SERVICE
            } else {
                &HOST
            }
        }
    };
    usize::try_from(code)
        .ok()
        .and_then(|i| names.get(i).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_lua_tostring_does() {
        for (f, s) in [
            (1.5, "1.5"),
            (7.0, "7.0"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (-0.0, "-0.0"),
            (123456789012345.0, "1.2345678901234e+14"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (std::f64::consts::E, "2.718281828459"),
            (1234.567890123456, "1234.5678901235"),
            (100.0, "100.0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(lua_float(f), s, "{f}");
        }
    }

    #[test]
    fn tonumber_reads_what_lua_reads() {
        assert_eq!(lua_tonumber(" 12 "), Some(Value::Int(12)));
        assert_eq!(lua_tonumber("0x10"), Some(Value::Int(16)));
        assert_eq!(lua_tonumber("1e3"), Some(Value::Float(1000.0)));
        assert_eq!(lua_tonumber("-2.5"), Some(Value::Float(-2.5)));
        assert_eq!(lua_tonumber("abc"), None);
        assert_eq!(lua_tonumber(""), None);
        assert_eq!(lua_tonumber("1 2"), None);
    }

    #[test]
    fn the_backslash_pass_turns_escapes_into_characters() {
        assert_eq!(backslash_pass(r"C:\temp"), "C:\temp");
        assert_eq!(backslash_pass(r"a\nb"), "a\nb");
        assert_eq!(backslash_pass(r"a\\nb"), r"a\nb");
        assert_eq!(backslash_pass(r"50% \x"), r"50% \x");
        assert_eq!(backslash_pass("end\\"), "end\\");
    }

    #[test]
    fn the_last_sc_suffix_is_the_flag() {
        assert_eq!(
            split_flag("last_time_critical_scdate"),
            ("last_time_critical", Some("date"))
        );
        assert_eq!(
            split_flag("a_scdate_scstring"),
            ("a_scdate", Some("string"))
        );
        assert_eq!(split_flag("output"), ("output", None));
        assert_eq!(split_flag("host_scope"), ("host", Some("ope")));
        assert_eq!(split_flag("x_sc"), ("x_sc", None));
        assert_eq!(split_flag("a_scb.c"), ("a_scb.c", None));
    }

    fn env(kind: ElementKind, dates: &DateFormat) -> FlagEnv<'_> {
        FlagEnv {
            kind,
            service: false,
            dates,
        }
    }

    #[test]
    fn flags_transform_as_the_library_does() {
        let d = DateFormat::new("!%Y-%m-%d %X", None).unwrap();
        let e = env(ElementKind::ServiceStatus, &d);
        assert_eq!(
            apply(Flag::Date, Value::Int(0), &e),
            Some(Value::Text("1970-01-01 00:00:00".into()))
        );
        assert_eq!(
            apply(Flag::Date, Value::Text("86400".into()), &e),
            Some(Value::Text("1970-01-02 00:00:00".into()))
        );
        assert_eq!(apply(Flag::Date, Value::Text("x".into()), &e), None);
        assert_eq!(
            apply(Flag::Type, Value::Int(0), &e),
            Some(Value::Text("SOFT".into()))
        );
        assert_eq!(
            apply(Flag::Type, Value::Text("0".into()), &e),
            Some(Value::Text("HARD".into()))
        );
        assert_eq!(
            apply(Flag::State, Value::Int(2), &e),
            Some(Value::Text("CRITICAL".into()))
        );
        assert_eq!(apply(Flag::State, Value::Int(4), &e), Some(Value::Int(4)));
        let h = env(ElementKind::HostStatus, &d);
        assert_eq!(
            apply(Flag::State, Value::Int(1), &h),
            Some(Value::Text("DOWN".into()))
        );
        let ba = env(ElementKind::BaStatus, &d);
        assert_eq!(
            apply(Flag::State, Value::Int(3), &ba),
            Some(Value::Text("UNKNOWN".into()))
        );
        assert_eq!(
            apply(Flag::Short, Value::Text("o\nl1\nl2".into()), &e),
            Some(Value::Text("o\nl1".into()))
        );
        assert_eq!(apply(Flag::Short, Value::Int(3), &e), Some(Value::Int(3)));
        assert_eq!(
            apply(Flag::Number, Value::Text("0x10".into()), &e),
            Some(Value::Int(16))
        );
        assert_eq!(apply(Flag::Number, Value::Text("no".into()), &e), None);
        assert_eq!(
            apply(Flag::String, Value::True, &e),
            Some(Value::Text("true".into()))
        );
        assert_eq!(
            apply(Flag::String, Value::Float(2.0), &e),
            Some(Value::Text("2.0".into()))
        );
    }
}
