//! The user's Lua code (`custom_code_file`), seen from the pure core.
//!
//! The Lua edge runs it on broker's thread for each event the filters
//! accepted, on a Lua table holding the event and its `cache` as the Lua
//! library builds them; the core only learns the answer and, when a
//! template will render the event, the values the template reads from the
//! (possibly changed) table.

use crate::event::{ElementKind, Field};
use crate::template::{CacheType, GroupOf, Needs, Resolve};

/// What the custom code decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep the event; with a template, the values it reads.
    Keep(Option<Box<Snapshot>>),
    /// The code answered false (or nil): the event is not sent.
    Drop,
    /// The code raised an error: the event is not sent.
    Failed(String),
}

/// Runs the custom code, when there is some.
pub trait Hook {
    /// Runs it on the accepted event of `kind`; `needs` are what its
    /// template reads, if it has one.
    fn run(&mut self, kind: ElementKind, needs: Option<&Needs>) -> Verdict;
}

/// No custom code: every event is kept as it is.
pub struct NoHook;

impl Hook for NoHook {
    fn run(&mut self, _: ElementKind, _: Option<&Needs>) -> Verdict {
        Verdict::Keep(None)
    }
}

/// The values a template reads, taken from the event table after the
/// custom code ran: it may have added or changed fields, and `cache`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// `needs.event`, in order.
    pub event: Vec<Option<Field>>,
    /// `needs.host`, in order (`event.cache.host`).
    pub host: Vec<Option<Field>>,
    /// `needs.service`, in order.
    pub service: Vec<Option<Field>>,
    /// `cache.instance.id` and `.name`.
    pub instance: [Option<Field>; 2],
    /// `cache.severity.host` and `.service`.
    pub severity: [Option<Field>; 2],
    /// `cache.ba.ba_id`, `.ba_name`, `.ba_description`.
    pub ba: [Option<Field>; 3],
    /// Group names: host groups, service groups, business views; and
    /// the `alias` of each `cache.hostgroups` entry that has one.
    pub groups: [Vec<String>; 4],
}

/// The names under `cache.instance`, `cache.severity` and `cache.ba`, in
/// [`Snapshot`] order.
pub const INSTANCE_FIELDS: [&str; 2] = ["id", "name"];
/// See [`INSTANCE_FIELDS`].
pub const SEVERITY_FIELDS: [&str; 2] = ["host", "service"];
/// See [`INSTANCE_FIELDS`].
pub const BA_FIELDS: [&str; 3] = ["ba_id", "ba_name", "ba_description"];

/// A [`Snapshot`] with the names it was taken for.
pub struct SnapshotValues<'a> {
    /// The snapshot.
    pub snapshot: &'a Snapshot,
    /// What it was taken for.
    pub needs: &'a Needs,
}

fn at(names: &[String], values: &[Option<Field>], name: &str) -> Option<Field> {
    let i = names.iter().position(|n| n == name)?;
    values.get(i)?.clone()
}

fn fixed(names: &[&str], values: &[Option<Field>], name: &str) -> Option<Field> {
    let i = names.iter().position(|n| *n == name)?;
    values.get(i)?.clone()
}

impl Resolve for SnapshotValues<'_> {
    fn event(&mut self, name: &str) -> Option<Field> {
        at(&self.needs.event, &self.snapshot.event, name)
    }

    fn cache(&mut self, ty: CacheType, field: &str) -> Option<Field> {
        let s = self.snapshot;
        match ty {
            CacheType::Host => at(&self.needs.host, &s.host, field),
            CacheType::Service => at(&self.needs.service, &s.service, field),
            CacheType::Instance => fixed(&INSTANCE_FIELDS, &s.instance, field),
            CacheType::Severity => fixed(&SEVERITY_FIELDS, &s.severity, field),
            CacheType::Ba => fixed(&BA_FIELDS, &s.ba, field),
        }
    }

    fn groups(&mut self, of: GroupOf) -> &[String] {
        &self.snapshot.groups[of as usize]
    }
}
