//! A template split once into what changes with each event and what
//! depends only on the object the event is about.
//!
//! Most of a template is literal text, names, groups and URLs, which are
//! the same for every status of a host or service: those parts ("slots")
//! are written once per object, kept with the object's other remembered
//! cache answers, and copied into each event's JSON. Only event macros and
//! the cache fields that change with each check are written per event.

use super::CacheType;
use super::{json_str, write_key, write_node, Env, Macro, Node, Resolve, Source, Text};

/// Cache fields of hosts and services that change with each check: read
/// for every event, never remembered with the object.
pub(super) fn volatile(field: &str) -> bool {
    field.starts_with("last_")
        || field.starts_with("next_")
        || matches!(
            field,
            "state"
                | "state_type"
                | "output"
                | "long_output"
                | "perfdata"
                | "latency"
                | "execution_time"
                | "percent_state_change"
                | "scheduled_downtime_depth"
                | "acknowledged"
                | "acknowledgement_type"
                | "flapping"
                | "checked"
                | "check_attempt"
                | "check_type"
                | "notification_number"
                | "no_more_notifications"
                | "should_be_scheduled"
        )
}

fn dynamic(m: &Macro) -> bool {
    match &m.source {
        Source::Event(_) => true,
        Source::Cache(CacheType::Host | CacheType::Service, field) => volatile(field),
        Source::Cache(..) | Source::Groups { .. } => false,
    }
}

fn text_static(t: &Text) -> bool {
    match t {
        Text::Lit(_) => true,
        Text::Whole(m) => !dynamic(m),
        Text::Parts(parts) => parts.iter().all(|p| match p {
            super::Part::Lit(_) => true,
            super::Part::Macro(m) => !dynamic(m),
        }),
    }
}

fn is_static(n: &Node) -> bool {
    match n {
        Node::Str(t) => text_static(t),
        Node::Array(items) => items.iter().all(is_static),
        Node::Object(fields) => fields.iter().all(|(k, v)| text_static(k) && is_static(v)),
        Node::Int(_) | Node::Float(_) | Node::Bool(_) | Node::Empty => true,
    }
}

/// What a slot holds.
#[derive(Debug, Clone)]
enum Slot {
    /// A whole value.
    Value(Node),
    /// Consecutive array items, written with their commas.
    Items(Vec<Node>),
    /// Consecutive object members, written with their commas.
    Members(Vec<(Text, Node)>),
}

#[derive(Debug, Clone)]
enum PNode {
    /// A slot standing for a value or a run of array items.
    Slot(usize),
    /// A string with event macros.
    Leaf(Node),
    Array(Vec<PNode>),
    Object(Vec<Member>),
}

#[derive(Debug, Clone)]
enum Member {
    /// A run of members in a slot.
    Slot(usize),
    Entry(Text, PNode),
}

/// See the module's documentation.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    root: PNode,
    slots: Vec<Slot>,
}

impl Plan {
    pub(super) fn of(root: &Node) -> Plan {
        let mut slots = Vec::new();
        let root = plan(root, &mut slots);
        Plan { root, slots }
    }

    /// Writes each slot.
    pub(super) fn render_slots(&self, r: &mut dyn Resolve, env: &Env<'_>) -> Vec<Box<[u8]>> {
        self.slots
            .iter()
            .map(|slot| {
                let mut out = Vec::new();
                match slot {
                    Slot::Value(n) => write_node(n, r, env, &mut out),
                    Slot::Items(items) => {
                        for (i, n) in items.iter().enumerate() {
                            if i > 0 {
                                out.push(b',');
                            }
                            write_node(n, r, env, &mut out);
                        }
                    }
                    Slot::Members(members) => {
                        for (i, (k, v)) in members.iter().enumerate() {
                            if i > 0 {
                                out.push(b',');
                            }
                            write_key(k, r, env, &mut out);
                            out.push(b':');
                            write_node(v, r, env, &mut out);
                        }
                    }
                }
                out.into_boxed_slice()
            })
            .collect()
    }

    pub(super) fn render(
        &self,
        r: &mut dyn Resolve,
        env: &Env<'_>,
        slots: &[Box<[u8]>],
        out: &mut Vec<u8>,
    ) {
        write(&self.root, r, env, slots, out);
    }
}

fn plan(n: &Node, slots: &mut Vec<Slot>) -> PNode {
    if is_static(n) {
        slots.push(Slot::Value(n.clone()));
        return PNode::Slot(slots.len() - 1);
    }
    match n {
        Node::Array(items) => {
            let mut out = Vec::new();
            let mut run: Vec<Node> = Vec::new();
            for item in items {
                if is_static(item) {
                    run.push(item.clone());
                    continue;
                }
                if !run.is_empty() {
                    slots.push(Slot::Items(std::mem::take(&mut run)));
                    out.push(PNode::Slot(slots.len() - 1));
                }
                out.push(plan(item, slots));
            }
            if !run.is_empty() {
                slots.push(Slot::Items(run));
                out.push(PNode::Slot(slots.len() - 1));
            }
            PNode::Array(out)
        }
        Node::Object(fields) => {
            let mut out = Vec::new();
            let mut run: Vec<(Text, Node)> = Vec::new();
            for (k, v) in fields {
                if text_static(k) && is_static(v) {
                    run.push((k.clone(), v.clone()));
                    continue;
                }
                if !run.is_empty() {
                    slots.push(Slot::Members(std::mem::take(&mut run)));
                    out.push(Member::Slot(slots.len() - 1));
                }
                out.push(Member::Entry(k.clone(), plan(v, slots)));
            }
            if !run.is_empty() {
                slots.push(Slot::Members(run));
                out.push(Member::Slot(slots.len() - 1));
            }
            PNode::Object(out)
        }
        other => PNode::Leaf(other.clone()),
    }
}

fn write(n: &PNode, r: &mut dyn Resolve, env: &Env<'_>, slots: &[Box<[u8]>], out: &mut Vec<u8>) {
    match n {
        PNode::Slot(i) => match slots.get(*i) {
            Some(bytes) => out.extend_from_slice(bytes),
            // Not written for this object (cannot happen): stay valid JSON.
            None => json_str(out, ""),
        },
        PNode::Leaf(node) => write_node(node, r, env, out),
        PNode::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, r, env, slots, out);
            }
            out.push(b']');
        }
        PNode::Object(members) => {
            out.push(b'{');
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match m {
                    Member::Slot(i) => {
                        if let Some(bytes) = slots.get(*i) {
                            out.extend_from_slice(bytes);
                        }
                    }
                    Member::Entry(k, v) => {
                        write_key(k, r, env, out);
                        out.push(b':');
                        write(v, r, env, slots, out);
                    }
                }
            }
            out.push(b'}');
        }
    }
}
