//! Reading one parameter: the primitives every part of the configuration
//! uses, each recording what it read (for the "not handled" notices) and
//! what was wrong with it (all reported at once).

use super::{ConfigError, NameList, ParamValue, Params, SeverityOp, SECRET_PARAMS};
use crate::luapattern::Pattern;

pub(super) fn int_of(v: &ParamValue) -> Option<i64> {
    match v {
        ParamValue::Int(i) => Some(*i),
        ParamValue::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        ParamValue::Str(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
        }
        ParamValue::Bool(_) | ParamValue::Float(_) => None,
    }
}

pub(super) struct Reader<'a> {
    pub(super) params: &'a Params,
    pub(super) errors: Vec<ConfigError>,
    pub(super) notices: Vec<String>,
    /// Values set to something this connector cannot honour, with why.
    pub(super) unhonoured: Vec<String>,
    pub(super) used: Vec<String>,
}

impl Reader<'_> {
    pub(super) fn raw(&mut self, name: &str) -> Option<&ParamValue> {
        self.used.push(name.to_string());
        self.params.get(name)
    }

    pub(super) fn fail(&mut self, name: &str, expected: &'static str, got: Option<&ParamValue>) {
        let got = match got {
            None => "nothing".to_string(),
            Some(_) if SECRET_PARAMS.contains(&name) => "***".to_string(),
            Some(v) => format!("'{v}'"),
        };
        self.errors.push(ConfigError {
            param: name.to_string(),
            expected,
            got,
        });
    }

    pub(super) fn string(&mut self, name: &str, default: &str) -> String {
        match self.raw(name).cloned() {
            None => default.to_string(),
            Some(ParamValue::Str(s)) => s,
            Some(v @ (ParamValue::Int(_) | ParamValue::Float(_))) => v.to_string(),
            Some(v) => {
                self.fail(name, "a string", Some(&v));
                default.to_string()
            }
        }
    }

    pub(super) fn nonempty(&mut self, name: &str, default: &str, expected: &'static str) -> String {
        let v = self.string(name, default).trim().to_string();
        if v.is_empty() {
            let raw = self.params.get(name).cloned();
            self.fail(name, expected, raw.as_ref());
        }
        v
    }

    pub(super) fn mandatory(&mut self, name: &str, expected: &'static str) -> String {
        match self.raw(name).cloned() {
            Some(ParamValue::Str(s)) if !s.trim().is_empty() => s.trim().to_string(),
            other => {
                self.fail(name, expected, other.as_ref());
                String::new()
            }
        }
    }

    pub(super) fn int(
        &mut self,
        name: &str,
        default: i64,
        min: i64,
        max: i64,
        expected: &'static str,
    ) -> i64 {
        match self.raw(name).cloned() {
            None => default,
            Some(ParamValue::Str(s)) if s.trim().is_empty() => default,
            Some(v) => match int_of(&v) {
                Some(i) if (min..=max).contains(&i) => i,
                _ => {
                    self.fail(name, expected, Some(&v));
                    default
                }
            },
        }
    }

    pub(super) fn flag(&mut self, name: &str, default: bool) -> bool {
        self.opt_flag(name).unwrap_or(default)
    }

    pub(super) fn opt_flag(&mut self, name: &str) -> Option<bool> {
        match self.raw(name).cloned() {
            None => None,
            Some(ParamValue::Bool(b)) => Some(b),
            Some(ParamValue::Str(s)) if s.trim().is_empty() => None,
            Some(v) => match int_of(&v) {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => {
                    self.fail(name, "0 or 1", Some(&v));
                    None
                }
            },
        }
    }

    pub(super) fn names(&mut self, name: &str) -> NameList {
        split_list(&self.string(name, ""))
    }

    /// A Lua pattern, or with `<name>_enable_split_pattern=1` several,
    /// split on `<name>_split_character` (default `,`), as the Lua library
    /// reads `accepted_hosts` and `accepted_services`. A malformed one is
    /// refused here, where Lua would raise an error for every event.
    pub(super) fn patterns(&mut self, name: &str) -> Vec<Pattern> {
        let text = self.string(name, "");
        let split = self.flag(&format!("{name}_enable_split_pattern"), false);
        let sep = self.string(&format!("{name}_split_character"), ",");
        if text.is_empty() {
            return Vec::new();
        }
        let pieces: Vec<&str> = match sep.chars().next() {
            Some(c) if split => text.split(c).filter(|p| !p.is_empty()).collect(),
            _ => vec![text.as_str()],
        };
        let mut out = Vec::new();
        for piece in pieces {
            match Pattern::new(piece) {
                Ok(p) => out.push(p),
                Err(e) => {
                    let got = ParamValue::Str(format!("{piece}: {e}"));
                    self.fail(name, "a Lua pattern (as string.match reads it)", Some(&got));
                }
            }
        }
        out
    }

    pub(super) fn states(&mut self, name: &str, default: &str, max: i64) -> Vec<i64> {
        let text = self.string(name, default);
        let text = if text.trim().is_empty() {
            default.to_string()
        } else {
            text
        };
        let mut out = Vec::new();
        for item in split_list(&text) {
            match item.parse::<i64>() {
                Ok(s) if (0..=max).contains(&s) => out.push(s),
                _ => {
                    let got = ParamValue::Str(text.clone());
                    self.fail(
                        name,
                        "a comma-separated list of state codes (e.g. 0,1,2)",
                        Some(&got),
                    );
                    return out;
                }
            }
        }
        out
    }

    pub(super) fn route(&mut self, name: &str, default: &str) -> String {
        let v = self.string(name, default).trim().to_string();
        if !v.starts_with('/') || v.contains(char::is_whitespace) {
            let raw = self.params.get(name).cloned();
            self.fail(
                name,
                "an absolute URL path such as /api/v4/event",
                raw.as_ref(),
            );
        }
        v
    }

    pub(super) fn severity(
        &mut self,
        threshold: &str,
        operator: &str,
    ) -> Option<(i64, SeverityOp)> {
        let th = match self.raw(threshold).cloned() {
            None => None,
            Some(ParamValue::Str(s)) if s.trim().is_empty() => None,
            Some(v) => match int_of(&v) {
                Some(i) => Some(i),
                None => {
                    self.fail(threshold, "an integer severity level", Some(&v));
                    None
                }
            },
        };
        let op_text = self.string(operator, ">=");
        let op = match op_text.trim() {
            ">=" | "" => SeverityOp::Ge,
            ">" => SeverityOp::Gt,
            "<=" => SeverityOp::Le,
            "<" => SeverityOp::Lt,
            "==" => SeverityOp::Eq,
            "~=" | "!=" => SeverityOp::Ne,
            _ => {
                let got = ParamValue::Str(op_text.clone());
                self.fail(operator, "one of >=, >, <=, <, ==, ~=", Some(&got));
                SeverityOp::Ge
            }
        };
        th.map(|t| (t, op))
    }
}

pub(super) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) fn join(states: &[i64]) -> String {
    states
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
