//! Panics on request, for tests only: compiled with the `fault-injection`
//! feature, which `tests/build-modules.sh` enables for the modules it puts
//! in `target/lua/faults/` and nothing else does (packages are built with
//! `lua53`/`lua54` alone). A real panic in `init`, `filter`, `write` or
//! `flush` is a bug nobody can provoke at will; this makes one at a chosen
//! call so the harness can check what the Lua edge does after it.
//!
//! The plan comes from init's parameter `fault_injection`: a
//! comma-separated list of `call:n` (`write:3` panics in the third `write`
//! since `init`, `init:1` in `init` itself).

use super::Entries;
use crate::config::ParamValue;

/// The parameter naming the plan.
const PARAM: &str = "fault_injection";

/// Where to panic, and the calls counted so far.
#[derive(Debug, Default)]
pub struct Faults {
    /// (call, the call number that panics).
    plan: Vec<(String, u64)>,
    /// (call, calls so far).
    seen: Vec<(String, u64)>,
}

impl Faults {
    /// The plan init's parameters give; none if they do not.
    pub fn of(entries: &Entries) -> Faults {
        let text = entries
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find_map(|(name, value)| match (name.as_str(), value) {
                (PARAM, Some(ParamValue::Str(s))) => Some(s.as_str()),
                _ => None,
            });
        let plan = text
            .unwrap_or_default()
            .split(',')
            .filter_map(|item| {
                let (call, n) = item.trim().split_once(':')?;
                Some((call.to_string(), n.parse().ok()?))
            })
            .collect();
        Faults {
            plan,
            seen: Vec::new(),
        }
    }

    /// Counts a call to `call`, and panics if the plan says so.
    pub fn trip(&mut self, call: &str) {
        if self.plan.is_empty() {
            return;
        }
        let n = match self.seen.iter_mut().find(|(c, _)| c == call) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.seen.push((call.to_string(), 1));
                1
            }
        };
        if self.plan.iter().any(|(c, at)| c == call && *at == n) {
            panic!("fault injected in {call} (call {n})");
        }
    }
}
