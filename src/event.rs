//! The broker events this connector understands, as plain Rust values.
//!
//! Broker hands `write` either a table (API 1) or a read-only userdata
//! (API 2), built from a BBDO 2 mapping (invalid fields absent) or a BBDO 3
//! protobuf (every field present, with defaults). [`FieldSource`] hides those
//! four shapes; [`NebEvent::read`] turns them into one typed value, or says
//! which field was unusable.

use std::fmt;

/// Broker event categories this connector can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `neb` (1): monitoring events.
    Neb,
    /// `bam` (6): business activities.
    Bam,
}

impl Category {
    /// Broker's numeric category.
    pub fn id(self) -> u32 {
        match self {
            Category::Neb => NEB,
            Category::Bam => BAM,
        }
    }

    /// Parses a name from `accepted_categories`.
    pub fn from_name(name: &str) -> Option<Category> {
        match name {
            "neb" => Some(Category::Neb),
            "bam" => Some(Category::Bam),
            _ => None,
        }
    }
}

/// The `neb` category id.
pub const NEB: u32 = 1;

/// The `bam` category id.
pub const BAM: u32 = 6;

/// The kinds of neb event the connector handles, each with its BBDO 2 and
/// BBDO 3 element ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementKind {
    /// `host_status` (14) / `pb_host_status` (32).
    HostStatus,
    /// `service_status` (24) / `pb_service_status` (29).
    ServiceStatus,
    /// `acknowledgement` (1) / `pb_acknowledgement` (45).
    Acknowledgement,
    /// `downtime` (5) / `pb_downtime` (36).
    Downtime,
    /// bam `ba_status` (1) / `pb_ba_status` (19). Broker 23.10 and later
    /// send 19 whatever the BBDO version.
    BaStatus,
}

impl ElementKind {
    /// Parses a name from `accepted_elements` (Lua library names, plus the
    /// `pb_*` spellings).
    pub fn from_name(name: &str) -> Option<ElementKind> {
        Some(match name {
            "host_status" | "pb_host_status" => ElementKind::HostStatus,
            "service_status" | "pb_service_status" => ElementKind::ServiceStatus,
            "acknowledgement" | "pb_acknowledgement" => ElementKind::Acknowledgement,
            "downtime" | "pb_downtime" => ElementKind::Downtime,
            "ba_status" | "pb_ba_status" => ElementKind::BaStatus,
            _ => return None,
        })
    }

    /// Which kind a broker type is, in either BBDO version.
    pub fn of(category: u32, element: u32) -> Option<ElementKind> {
        match category {
            NEB => ElementKind::from_element(element),
            BAM if matches!(element, 1 | 19) => Some(ElementKind::BaStatus),
            _ => None,
        }
    }

    /// The category of events of this kind.
    pub fn category(self) -> u32 {
        match self {
            ElementKind::BaStatus => BAM,
            _ => NEB,
        }
    }

    /// Which kind a neb element id is, in either BBDO version.
    pub fn from_element(element: u32) -> Option<ElementKind> {
        Some(match element {
            14 | 32 => ElementKind::HostStatus,
            24 | 29 => ElementKind::ServiceStatus,
            1 | 45 => ElementKind::Acknowledgement,
            5 | 36 => ElementKind::Downtime,
            _ => return None,
        })
    }

    /// Every field [`NebEvent::read`] may ask for, so a caller can fetch
    /// them all at once.
    pub const fn fields(self) -> &'static [&'static str] {
        match self {
            // Ordered for [`crate::filter::Screen`]: the fields that most
            // often reject an event come first.
            ElementKind::HostStatus | ElementKind::ServiceStatus => &[
                "state_type",
                "state",
                "last_check",
                "last_update",
                "last_hard_state_change",
                "acknowledged",
                "acknowledgement_type",
                "scheduled_downtime_depth",
                "flapping",
                "host_id",
                "service_id",
                "output",
                "long_output",
            ],
            ElementKind::Acknowledgement => &[
                "host_id",
                "service_id",
                "instance_id",
                "author",
                "comment_data",
                "entry_time",
                "deletion_time",
                "state",
            ],
            ElementKind::Downtime => &[
                "host_id",
                "service_id",
                "instance_id",
                "internal_id",
                "id",
                "author",
                "comment_data",
                "entry_time",
                "start_time",
                "end_time",
                "actual_start_time",
                "actual_end_time",
                "deletion_time",
                "cancelled",
                "started",
            ],
            ElementKind::BaStatus => &["ba_id", "state", "in_downtime"],
        }
    }

    /// The name used in logs and `accepted_elements`.
    pub fn name(self) -> &'static str {
        match self {
            ElementKind::HostStatus => "host_status",
            ElementKind::ServiceStatus => "service_status",
            ElementKind::Acknowledgement => "acknowledgement",
            ElementKind::Downtime => "downtime",
            ElementKind::BaStatus => "ba_status",
        }
    }
}

/// A value read from a broker event field.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A Lua integer.
    Int(i64),
    /// A Lua float.
    Float(f64),
    /// A Lua string (raw bytes: plugin output is not always UTF-8).
    Str(Vec<u8>),
    /// A Lua boolean.
    Bool(bool),
    /// Anything else (table, function, ...).
    Other(&'static str),
}

/// Read access to one broker event, whatever its shape.
pub trait FieldSource {
    /// The field's value, or `None` when absent or nil.
    fn field(&mut self, name: &str) -> Option<Field>;

    /// Several fields at once into `out` (cleared first): one call into
    /// Lua for a broker event.
    fn fields(&mut self, names: &[String], out: &mut Vec<Option<Field>>) {
        out.clear();
        for n in names {
            let f = self.field(n);
            out.push(f);
        }
    }
}

/// A field that is present but unusable.
#[derive(Debug, Clone, PartialEq)]
pub struct EventError {
    /// The element being read.
    pub kind: ElementKind,
    /// The offending field.
    pub field: &'static str,
    /// What was expected.
    pub expected: &'static str,
    /// What was found.
    pub found: String,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} event has an unusable '{}' field: expected {}, found {}",
            self.kind.name(),
            self.field,
            self.expected,
            self.found
        )
    }
}

impl std::error::Error for EventError {}

/// A host or service status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusEvent {
    /// `host_id`.
    pub host_id: Option<u64>,
    /// `service_id` (service status only).
    pub service_id: Option<u64>,
    /// `state`.
    pub state: Option<i64>,
    /// `state_type`: 0 soft, 1 hard.
    pub state_type: Option<i64>,
    /// `acknowledged` (BBDO 2) or `acknowledgement_type != 0` (BBDO 3).
    pub acknowledged: bool,
    /// `scheduled_downtime_depth`.
    pub downtime_depth: i64,
    /// `flapping`.
    pub flapping: bool,
    /// `last_check`.
    pub last_check: Option<i64>,
    /// `last_hard_state_change`.
    pub last_hard_state_change: Option<i64>,
    /// `last_update` (BBDO 2 only): when the engine last updated the
    /// object, which a host's change stamp may match better than the check.
    pub last_update: Option<i64>,
    /// `output`: BBDO 2 holds first line and long output; BBDO 3 the first line.
    pub output: String,
    /// `long_output` (BBDO 3 only).
    pub long_output: Option<String>,
}

/// An acknowledgement being set or removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AckEvent {
    /// `host_id`.
    pub host_id: Option<u64>,
    /// `service_id` (absent or 0 for a host).
    pub service_id: Option<u64>,
    /// `instance_id`: the poller.
    pub instance_id: Option<u64>,
    /// `author`.
    pub author: String,
    /// `comment_data`.
    pub comment: String,
    /// `entry_time`.
    pub entry_time: Option<i64>,
    /// `deletion_time`: set (non-zero) when the acknowledgement is removed.
    pub deletion_time: Option<i64>,
    /// `state` of the object when acknowledged.
    pub state: Option<i64>,
}

impl AckEvent {
    /// Whether it concerns a service (`service_id` set and not 0).
    pub fn is_service(&self) -> bool {
        self.service_id.is_some_and(|s| s != 0)
    }

    /// Whether it is the removal of an acknowledgement.
    pub fn is_removal(&self) -> bool {
        self.deletion_time.is_some_and(|t| t > 0)
    }
}

/// A downtime starting, ending or being cancelled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DowntimeEvent {
    /// `host_id`.
    pub host_id: Option<u64>,
    /// `service_id` (0 or absent for a host downtime).
    pub service_id: Option<u64>,
    /// `instance_id`.
    pub instance_id: Option<u64>,
    /// `internal_id` (BBDO 2) or `id` (BBDO 3).
    pub id: Option<u64>,
    /// `author`.
    pub author: String,
    /// `comment_data`.
    pub comment: String,
    /// `entry_time`.
    pub entry_time: Option<i64>,
    /// `start_time`.
    pub start_time: Option<i64>,
    /// `end_time`.
    pub end_time: Option<i64>,
    /// `actual_start_time`.
    pub actual_start_time: Option<i64>,
    /// `actual_end_time`.
    pub actual_end_time: Option<i64>,
    /// `deletion_time`.
    pub deletion_time: Option<i64>,
    /// `cancelled`.
    pub cancelled: bool,
    /// `started`.
    pub started: bool,
}

impl DowntimeEvent {
    /// Whether it concerns a service.
    pub fn is_service(&self) -> bool {
        self.service_id.is_some_and(|s| s != 0)
    }
}

/// One event, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum NebEvent {
    /// A host status.
    Host(StatusEvent),
    /// A service status.
    Service(StatusEvent),
    /// An acknowledgement.
    Ack(AckEvent),
    /// A downtime.
    Downtime(DowntimeEvent),
    /// A business activity's status.
    Ba(BaEvent),
}

/// A BAM business activity's status (`ba_status`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BaEvent {
    /// `ba_id`.
    pub ba_id: Option<u64>,
    /// `state`: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub state: Option<i64>,
    /// `in_downtime`.
    pub in_downtime: bool,
}

impl NebEvent {
    /// Reads an event of `kind` from `src`.
    ///
    /// Absent fields are `None` (BBDO 2 leaves invalid ones out); present
    /// fields of the wrong type are an error naming the field.
    pub fn read(kind: ElementKind, src: &mut dyn FieldSource) -> Result<NebEvent, EventError> {
        let mut r = Reader { kind, src };
        Ok(match kind {
            ElementKind::HostStatus | ElementKind::ServiceStatus => {
                let mut b = StatusBuilder::new(kind, None);
                while let Some((i, name)) = b.next_field() {
                    b.set(i, r.src.field(name))?;
                }
                b.finish()
            }
            ElementKind::Acknowledgement => NebEvent::Ack(AckEvent {
                host_id: r.id("host_id")?,
                service_id: r.id("service_id")?,
                instance_id: r.id("instance_id")?,
                author: r.text("author")?.unwrap_or_default(),
                comment: r.text("comment_data")?.unwrap_or_default(),
                entry_time: r.time("entry_time")?,
                deletion_time: r.time("deletion_time")?,
                state: r.int("state")?,
            }),
            ElementKind::Downtime => NebEvent::Downtime(DowntimeEvent {
                host_id: r.id("host_id")?,
                service_id: r.id("service_id")?,
                instance_id: r.id("instance_id")?,
                id: match r.id("internal_id")? {
                    Some(id) => Some(id),
                    None => r.id("id")?,
                },
                author: r.text("author")?.unwrap_or_default(),
                comment: r.text("comment_data")?.unwrap_or_default(),
                entry_time: r.time("entry_time")?,
                start_time: r.time("start_time")?,
                end_time: r.time("end_time")?,
                actual_start_time: r.time("actual_start_time")?,
                actual_end_time: r.time("actual_end_time")?,
                deletion_time: r.time("deletion_time")?,
                cancelled: r.boolean("cancelled")?.unwrap_or(false),
                started: r.boolean("started")?.unwrap_or(false),
            }),
            ElementKind::BaStatus => NebEvent::Ba(BaEvent {
                ba_id: r.id("ba_id")?,
                state: r.int("state")?,
                in_downtime: r.boolean("in_downtime")?.unwrap_or(false),
            }),
        })
    }

    /// The element kind.
    pub fn kind(&self) -> ElementKind {
        match self {
            NebEvent::Host(_) => ElementKind::HostStatus,
            NebEvent::Service(_) => ElementKind::ServiceStatus,
            NebEvent::Ack(_) => ElementKind::Acknowledgement,
            NebEvent::Downtime(_) => ElementKind::Downtime,
            NebEvent::Ba(_) => ElementKind::BaStatus,
        }
    }
}

struct Reader<'a> {
    kind: ElementKind,
    src: &'a mut dyn FieldSource,
}

/// Positions of a status's fields in [`ElementKind::fields`].
pub mod status_field {
    /// `state_type`.
    pub const STATE_TYPE: usize = 0;
    /// `state`.
    pub const STATE: usize = 1;
    /// `last_check`.
    pub const LAST_CHECK: usize = 2;
    /// `last_update`.
    pub const LAST_UPDATE: usize = 3;
    /// `last_hard_state_change`.
    pub const LAST_HARD_STATE_CHANGE: usize = 4;
    /// `acknowledged`.
    pub const ACKNOWLEDGED: usize = 5;
    /// `acknowledgement_type`.
    pub const ACKNOWLEDGEMENT_TYPE: usize = 6;
    /// `scheduled_downtime_depth`.
    pub const SCHEDULED_DOWNTIME_DEPTH: usize = 7;
    /// `flapping`.
    pub const FLAPPING: usize = 8;
    /// `host_id`.
    pub const HOST_ID: usize = 9;
    /// `service_id`.
    pub const SERVICE_ID: usize = 10;
    /// `output`.
    pub const OUTPUT: usize = 11;
    /// `long_output`.
    pub const LONG_OUTPUT: usize = 12;
}

/// A host or service status built from its fields, taken one at a time in
/// [`ElementKind::fields`] order and converted once each, so a reader that
/// fetches them one by one from broker can stop at the first that rejects
/// the event ([`crate::filter::Screen`]) or cannot be used.
#[derive(Debug)]
pub struct StatusBuilder {
    kind: ElementKind,
    bbdo3: Option<bool>,
    status: StatusEvent,
    acknowledged_present: bool,
    next: usize,
}

impl StatusBuilder {
    /// For a status of `kind` carried by broker element `element`, when
    /// known.
    pub fn new(kind: ElementKind, element: Option<u32>) -> StatusBuilder {
        let mut b = StatusBuilder {
            kind,
            bbdo3: None,
            status: StatusEvent::default(),
            acknowledged_present: false,
            next: 0,
        };
        b.reset(kind, element);
        b
    }

    /// The next field worth fetching, as its position and name. Not worth a
    /// lookup in broker's event: what the status would not use, or its BBDO
    /// version never carries (host statuses have no `service_id`; BBDO 3
    /// statuses no `acknowledged` nor `last_update`, BBDO 2 ones no
    /// `long_output`;
    /// `acknowledged` makes `acknowledgement_type` moot).
    pub fn next_field(&mut self) -> Option<(usize, &'static str)> {
        use status_field::*;
        let names = self.kind.fields();
        while self.next < names.len() {
            let i = self.next;
            self.next += 1;
            let skip = match i {
                SERVICE_ID => self.kind == ElementKind::HostStatus,
                ACKNOWLEDGED | LAST_UPDATE => self.bbdo3 == Some(true),
                ACKNOWLEDGEMENT_TYPE => self.acknowledged_present,
                LONG_OUTPUT => self.bbdo3 == Some(false),
                _ => false,
            };
            if !skip {
                return Some((i, names[i]));
            }
        }
        None
    }

    /// Converts and keeps the value of the field at position `i`.
    pub fn set(&mut self, i: usize, v: Option<Field>) -> Result<(), EventError> {
        use status_field::*;
        let name = self.kind.fields()[i];
        let c = Convert(self.kind);
        let s = &mut self.status;
        match i {
            STATE_TYPE => s.state_type = c.int(name, v)?,
            STATE => s.state = c.int(name, v)?,
            LAST_CHECK => s.last_check = c.time(name, v)?,
            LAST_UPDATE => s.last_update = c.time(name, v)?,
            LAST_HARD_STATE_CHANGE => s.last_hard_state_change = c.time(name, v)?,
            ACKNOWLEDGED => {
                if let Some(b) = c.boolean(name, v)? {
                    s.acknowledged = b;
                    self.acknowledged_present = true;
                }
            }
            ACKNOWLEDGEMENT_TYPE => s.acknowledged = c.int(name, v)?.unwrap_or(0) != 0,
            SCHEDULED_DOWNTIME_DEPTH => s.downtime_depth = c.int(name, v)?.unwrap_or(0),
            FLAPPING => s.flapping = c.boolean(name, v)?.unwrap_or(false),
            HOST_ID => s.host_id = c.id(name, v)?,
            SERVICE_ID => s.service_id = c.id(name, v)?,
            OUTPUT => s.output = c.text(name, v)?.unwrap_or_default(),
            _ => s.long_output = c.text(name, v)?,
        }
        Ok(())
    }

    /// The status as taken so far.
    pub fn status(&self) -> &StatusEvent {
        &self.status
    }

    /// The event (taken: the builder is left empty, ready for [`reset`](Self::reset)).
    pub fn finish(&mut self) -> NebEvent {
        let status = std::mem::take(&mut self.status);
        if self.kind == ElementKind::HostStatus {
            NebEvent::Host(status)
        } else {
            NebEvent::Service(status)
        }
    }

    /// Starts over, for a status of `kind` carried by `element` (as
    /// [`new`](Self::new), without moving a new builder into place).
    pub fn reset(&mut self, kind: ElementKind, element: Option<u32>) {
        self.kind = kind;
        self.bbdo3 = element.map(|e| matches!(e, 29 | 32));
        self.status = StatusEvent::default();
        self.acknowledged_present = false;
        self.next = 0;
    }
}

/// Conversions of one field's value, the error naming the field and
/// the kind of event.
#[derive(Clone, Copy)]
struct Convert(ElementKind);

impl Convert {
    fn err(self, field: &'static str, expected: &'static str, found: &Field) -> EventError {
        let found = match found {
            Field::Int(i) => format!("integer {i}"),
            Field::Float(x) => format!("number {x}"),
            Field::Str(s) => format!(
                "string '{}'",
                String::from_utf8_lossy(&s[..s.len().min(40)])
            ),
            Field::Bool(b) => format!("boolean {b}"),
            Field::Other(t) => t.to_string(),
        };
        EventError {
            kind: self.0,
            field,
            expected,
            found,
        }
    }

    fn int(self, name: &'static str, value: Option<Field>) -> Result<Option<i64>, EventError> {
        match value {
            None => Ok(None),
            Some(Field::Int(i)) => Ok(Some(i)),
            Some(Field::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            Some(Field::Bool(b)) => Ok(Some(b as i64)),
            Some(Field::Str(ref s))
                if std::str::from_utf8(s)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .is_some() =>
            {
                Ok(std::str::from_utf8(s)
                    .ok()
                    .and_then(|s| s.trim().parse().ok()))
            }
            Some(other) => Err(self.err(name, "an integer", &other)),
        }
    }

    /// An id: BBDO 2 leaves out zero ids, BBDO 3 sends 0; both mean "none"
    /// except for `service_id`, where 0 means "the host" and is kept.
    fn id(self, name: &'static str, value: Option<Field>) -> Result<Option<u64>, EventError> {
        match self.int(name, value)? {
            None => Ok(None),
            Some(i) if i < 0 => Err(EventError {
                kind: self.0,
                field: name,
                expected: "a positive id",
                found: format!("integer {i}"),
            }),
            Some(0) if name != "service_id" => Ok(None),
            Some(i) => Ok(Some(i as u64)),
        }
    }

    /// A timestamp: BBDO 2 uses nil for "invalid", BBDO 3 uses 0 or -1.
    fn time(self, name: &'static str, value: Option<Field>) -> Result<Option<i64>, EventError> {
        Ok(self.int(name, value)?.filter(|t| *t > 0))
    }

    fn boolean(self, name: &'static str, value: Option<Field>) -> Result<Option<bool>, EventError> {
        match value {
            None => Ok(None),
            Some(Field::Bool(b)) => Ok(Some(b)),
            Some(Field::Int(i)) => Ok(Some(i != 0)),
            Some(other) => Err(self.err(name, "a boolean", &other)),
        }
    }

    fn text(self, name: &'static str, value: Option<Field>) -> Result<Option<String>, EventError> {
        match value {
            None => Ok(None),
            Some(Field::Str(bytes)) => Ok(Some(match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            })),
            Some(Field::Int(i)) => Ok(Some(i.to_string())),
            Some(Field::Float(f)) => Ok(Some(f.to_string())),
            Some(other) => Err(self.err(name, "a string", &other)),
        }
    }
}

impl Reader<'_> {
    fn int(&mut self, name: &'static str) -> Result<Option<i64>, EventError> {
        Convert(self.kind).int(name, self.src.field(name))
    }

    fn id(&mut self, name: &'static str) -> Result<Option<u64>, EventError> {
        Convert(self.kind).id(name, self.src.field(name))
    }

    fn time(&mut self, name: &'static str) -> Result<Option<i64>, EventError> {
        Convert(self.kind).time(name, self.src.field(name))
    }

    fn boolean(&mut self, name: &'static str) -> Result<Option<bool>, EventError> {
        Convert(self.kind).boolean(name, self.src.field(name))
    }

    fn text(&mut self, name: &'static str) -> Result<Option<String>, EventError> {
        Convert(self.kind).text(name, self.src.field(name))
    }
}

/// A [`FieldSource`] over a list of pairs, for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct MapSource(pub Vec<(&'static str, Field)>);

impl FieldSource for MapSource {
    fn field(&mut self, name: &str) -> Option<Field> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Field {
        Field::Str(v.as_bytes().to_vec())
    }

    /// Skipping what [`StatusBuilder::next_field`] says is not needed reads
    /// the same event as reading every field, for broker's shapes of each
    /// BBDO version (and a BBDO 2 event missing `acknowledged`).
    #[test]
    fn skipped_fields_change_nothing_for_broker_shaped_events() {
        for (kind, element) in [
            (ElementKind::ServiceStatus, 24),
            (ElementKind::ServiceStatus, 29),
            (ElementKind::HostStatus, 14),
            (ElementKind::HostStatus, 32),
        ] {
            let bbdo3 = element == 29 || element == 32;
            for ack in [None, Some(false), Some(true)] {
                if bbdo3 && ack.is_some() {
                    continue;
                }
                let mut fields = vec![
                    ("host_id", Field::Int(12)),
                    ("state", Field::Int(2)),
                    ("state_type", Field::Int(1)),
                    ("acknowledgement_type", Field::Int(2)),
                    ("output", s("out")),
                ];
                if kind == ElementKind::ServiceStatus {
                    fields.push(("service_id", Field::Int(34)));
                }
                if let Some(a) = ack {
                    fields.push(("acknowledged", Field::Bool(a)));
                }
                if bbdo3 {
                    fields.push(("long_output", s("long")));
                }
                let full = NebEvent::read(kind, &mut MapSource(fields.clone())).unwrap();
                let mut b = StatusBuilder::new(kind, Some(element));
                while let Some((i, name)) = b.next_field() {
                    let v = fields
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| v.clone());
                    b.set(i, v).unwrap();
                }
                assert_eq!(full, b.finish(), "{kind:?} {element} {ack:?}");
            }
        }
    }

    #[test]
    fn status_field_positions_name_their_fields() {
        use status_field::*;
        for kind in [ElementKind::HostStatus, ElementKind::ServiceStatus] {
            let f = kind.fields();
            let named = [
                (STATE_TYPE, "state_type"),
                (STATE, "state"),
                (LAST_CHECK, "last_check"),
                (LAST_UPDATE, "last_update"),
                (LAST_HARD_STATE_CHANGE, "last_hard_state_change"),
                (ACKNOWLEDGED, "acknowledged"),
                (ACKNOWLEDGEMENT_TYPE, "acknowledgement_type"),
                (SCHEDULED_DOWNTIME_DEPTH, "scheduled_downtime_depth"),
                (FLAPPING, "flapping"),
                (HOST_ID, "host_id"),
                (SERVICE_ID, "service_id"),
                (OUTPUT, "output"),
                (LONG_OUTPUT, "long_output"),
            ];
            assert_eq!(f.len(), named.len());
            for (i, name) in named {
                assert_eq!(f[i], name);
            }
        }
    }

    #[test]
    fn reads_a_bbdo2_service_status() {
        let mut src = MapSource(vec![
            ("host_id", Field::Int(12)),
            ("service_id", Field::Int(34)),
            ("state", Field::Int(2)),
            ("state_type", Field::Int(1)),
            ("acknowledged", Field::Bool(false)),
            ("scheduled_downtime_depth", Field::Int(0)),
            ("last_check", Field::Int(1_700_000_000)),
            ("last_hard_state_change", Field::Int(1_700_000_000)),
            ("output", s("CRITICAL - down\nline 2")),
        ]);
        let NebEvent::Service(e) = NebEvent::read(ElementKind::ServiceStatus, &mut src).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (e.host_id, e.service_id, e.state),
            (Some(12), Some(34), Some(2))
        );
        assert_eq!(e.output, "CRITICAL - down\nline 2");
        assert_eq!(e.long_output, None);
    }

    #[test]
    fn bbdo3_ack_type_means_acknowledged_and_zero_times_are_none() {
        let mut src = MapSource(vec![
            ("host_id", Field::Int(1)),
            ("acknowledgement_type", Field::Int(1)),
            ("last_check", Field::Int(0)),
            ("output", s("x")),
            ("long_output", s("")),
        ]);
        let NebEvent::Host(e) = NebEvent::read(ElementKind::HostStatus, &mut src).unwrap() else {
            panic!()
        };
        assert!(e.acknowledged);
        assert_eq!(e.last_check, None);
        assert_eq!(e.long_output.as_deref(), Some(""));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let mut src = MapSource(vec![("host_id", s("abc"))]);
        let err = NebEvent::read(ElementKind::HostStatus, &mut src).unwrap_err();
        assert_eq!(err.field, "host_id");
        assert!(err
            .to_string()
            .contains("expected an integer, found string 'abc'"));
        let mut src = MapSource(vec![("output", Field::Other("table"))]);
        assert_eq!(
            NebEvent::read(ElementKind::HostStatus, &mut src)
                .unwrap_err()
                .field,
            "output"
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let mut src = MapSource(vec![("output", Field::Str(vec![b'o', 0xff, b'k']))]);
        let NebEvent::Host(e) = NebEvent::read(ElementKind::HostStatus, &mut src).unwrap() else {
            panic!()
        };
        assert_eq!(e.output, "o\u{fffd}k");
    }

    #[test]
    fn host_ack_on_bbdo3_has_service_id_zero() {
        let mut src = MapSource(vec![
            ("host_id", Field::Int(1)),
            ("service_id", Field::Int(0)),
            ("deletion_time", Field::Int(0)),
        ]);
        let NebEvent::Ack(a) = NebEvent::read(ElementKind::Acknowledgement, &mut src).unwrap()
        else {
            panic!()
        };
        assert!(!a.is_service());
        assert!(!a.is_removal());
    }

    /// A source that records what was asked.
    struct Asked(Vec<String>);

    impl FieldSource for Asked {
        fn field(&mut self, name: &str) -> Option<Field> {
            self.0.push(name.to_string());
            None
        }
    }

    #[test]
    fn reads_only_declared_fields_each_once() {
        for kind in [
            ElementKind::HostStatus,
            ElementKind::ServiceStatus,
            ElementKind::Acknowledgement,
            ElementKind::Downtime,
        ] {
            let mut asked = Asked(Vec::new());
            let _ = NebEvent::read(kind, &mut asked);
            let mut sorted = asked.0.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), asked.0.len(), "{kind:?} reads a field twice");
            for name in &asked.0 {
                assert!(
                    kind.fields().contains(&name.as_str()),
                    "{kind:?} reads undeclared {name}"
                );
            }
        }
    }

    #[test]
    fn element_ids_cover_both_bbdo_versions() {
        for (id, kind) in [
            (14, ElementKind::HostStatus),
            (32, ElementKind::HostStatus),
            (24, ElementKind::ServiceStatus),
            (29, ElementKind::ServiceStatus),
            (1, ElementKind::Acknowledgement),
            (45, ElementKind::Acknowledgement),
            (5, ElementKind::Downtime),
            (36, ElementKind::Downtime),
        ] {
            assert_eq!(ElementKind::from_element(id), Some(kind));
        }
        assert_eq!(ElementKind::from_element(2), None);
    }
}
