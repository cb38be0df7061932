//! Broker events as broker builds them (host contract §5): BBDO 2 events
//! from the neb mappings (invalid fields are nil), BBDO 3 events from the
//! protobuf descriptors (every field present, proto3 defaults).
//!
//! Shaped after what a real Centreon Engine 23.10 sends
//! (`shared/traces/README.md`): a host's change is stamped a second after
//! its check, BBDO 2's `last_update` a second after the check, BBDO 3
//! downtimes use -1 for unset times where BBDO 2 leaves them out, and a
//! downtime lives through four events (see [`Downtime::life`]).

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    /// Lua integer.
    I(i64),
    /// Lua float.
    F(f64),
    /// Lua string (bytes).
    S(Vec<u8>),
    /// Lua boolean.
    B(bool),
}

/// Protocol version of the engine feeding broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bbdo {
    /// BBDO 2: classic neb events.
    V2,
    /// BBDO 3: `pb_*` events.
    V3,
}

/// One broker event. `None` values are BBDO 2 "invalid" fields: absent in
/// API 1 tables, nil in API 2.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `(category << 16) | element`.
    pub type_id: u32,
    /// Fields in mapping / descriptor order.
    pub fields: Vec<(&'static str, Option<V>)>,
}

impl Event {
    /// `category`.
    pub fn category(&self) -> u32 {
        self.type_id >> 16
    }
    /// `element`.
    pub fn element(&self) -> u32 {
        self.type_id & 0xffff
    }
    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.fields
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.as_ref())
    }
    /// An integer field's value, 0 when absent or of another type.
    pub fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            Some(V::I(i)) => *i,
            _ => 0,
        }
    }
    /// Replaces (or adds) a field, e.g. to make an event malformed.
    pub fn set(mut self, name: &'static str, v: Option<V>) -> Event {
        match self.fields.iter_mut().find(|(k, _)| *k == name) {
            Some(f) => f.1 = v,
            None => self.fields.push((name, v)),
        }
        self
    }
    /// An arbitrary event with no fields (unknown types, filter tests).
    pub fn bare(category: u32, element: u32) -> Event {
        Event {
            type_id: (category << 16) | element,
            fields: Vec::new(),
        }
    }
}

fn s(v: &str) -> Option<V> {
    Some(V::S(v.as_bytes().to_vec()))
}
fn i(v: i64) -> Option<V> {
    Some(V::I(v))
}
/// BBDO 2 "invalid on zero".
fn nz(v: i64) -> Option<V> {
    (v != 0).then_some(V::I(v))
}
/// BBDO 3 downtime "not yet": -1.
fn unset(v: i64) -> i64 {
    if v > 0 {
        v
    } else {
        -1
    }
}
fn b(v: bool) -> Option<V> {
    Some(V::B(v))
}

/// A host or service status, described once for both BBDO versions.
#[derive(Debug, Clone)]
pub struct Status {
    /// Host id.
    pub host_id: i64,
    /// Service id, for a service status.
    pub service_id: Option<i64>,
    /// Centreon state.
    pub state: i64,
    /// 0 SOFT, 1 HARD.
    pub state_type: i64,
    /// Check time.
    pub last_check: i64,
    /// Time of the last HARD state change.
    pub last_hard_state_change: i64,
    /// The engine's `last_hard_state`: on a host's change event it still
    /// holds the previous hard state.
    pub last_hard_state: i64,
    /// First line of output.
    pub output: String,
    /// Long output.
    pub long_output: String,
    /// Acknowledged.
    pub acknowledged: bool,
    /// Scheduled downtime depth.
    pub downtime_depth: i64,
    /// Flapping.
    pub flapping: bool,
}

impl Status {
    /// A HARD host state change checked at `t`, as the engine reports it:
    /// stamped when the result was processed, a second later, with the
    /// previous hard state (UP, or DOWN for a recovery) still in
    /// `last_hard_state`.
    pub fn host(host_id: i64, state: i64, t: i64) -> Status {
        Status {
            host_id,
            service_id: None,
            state,
            state_type: 1,
            last_check: t,
            last_hard_state_change: t + 1,
            last_hard_state: if state == 0 { 1 } else { 0 },
            output: format!("host state {state}"),
            long_output: String::new(),
            acknowledged: false,
            downtime_depth: 0,
            flapping: false,
        }
    }

    /// A HARD service state change at `t`: services are stamped with the
    /// check time, and `last_hard_state` already holds the new state.
    pub fn service(host_id: i64, service_id: i64, state: i64, t: i64) -> Status {
        Status {
            service_id: Some(service_id),
            output: format!("service state {state}"),
            last_hard_state_change: t,
            last_hard_state: state,
            ..Status::host(host_id, state, t)
        }
    }

    /// The `i`th HARD state change of each object of the emulator's small
    /// estate ([`CacheData::sample`](crate::broker::CacheData::sample)):
    /// host-a (12), host-b (13), then host-a's services 34 and 35, in the
    /// order broker sends them; checked at `t0 + 60 i`, UP/OK when `i` is
    /// even, DOWN/CRITICAL when odd, with output `change <i>` (so each
    /// object's order can be read back from what Canopsis got).
    pub fn sample_changes(i: i64, t0: i64) -> Vec<Status> {
        let t = t0 + 60 * i;
        let up = i % 2;
        let mut objects = vec![
            Status::host(12, up, t),
            Status::host(13, up, t),
            Status::service(12, 34, 2 * up, t),
            Status::service(12, 35, 2 * up, t),
        ];
        for s in &mut objects {
            s.output = format!("change {i}");
        }
        objects
    }

    /// The same object checked again at `t` without a change: the engine
    /// repeats the stamp of the change.
    pub fn again(&self, t: i64) -> Status {
        Status {
            last_check: t,
            last_hard_state: self.state,
            ..self.clone()
        }
    }

    /// The broker event.
    pub fn event(&self, bbdo: Bbdo) -> Event {
        let svc = self.service_id.is_some();
        match bbdo {
            Bbdo::V2 => {
                let output = if self.long_output.is_empty() || self.output.is_empty() {
                    format!("{}{}", self.output, self.long_output)
                } else {
                    format!("{}\n{}", self.output, self.long_output)
                };
                let mut f = vec![
                    ("acknowledged", b(self.acknowledged)),
                    ("acknowledgement_type", i(self.acknowledged as i64)),
                    ("active_checks", b(true)),
                    ("check_interval", Some(V::F(5.0))),
                    ("check_period", s("24x7")),
                    ("check_type", i(0)),
                    ("check_attempt", i(1)),
                    ("state", i(self.state)),
                    ("scheduled_downtime_depth", i(self.downtime_depth)),
                    ("enabled", b(true)),
                    ("event_handler", s("")),
                    ("event_handler_enabled", b(false)),
                    ("execution_time", Some(V::F(0.012))),
                    ("flap_detection", b(true)),
                    ("checked", b(true)),
                    ("host_id", nz(self.host_id)),
                    ("flapping", b(self.flapping)),
                    ("last_check", nz(self.last_check)),
                    ("last_hard_state", i(self.last_hard_state)),
                    ("last_hard_state_change", nz(self.last_hard_state_change)),
                    ("last_notification", None),
                    ("last_state_change", nz(self.last_hard_state_change)),
                    ("last_update", nz(self.last_check + 1)),
                    ("latency", Some(V::F(0.1))),
                    ("max_check_attempts", i(3)),
                    ("next_check", nz(self.last_check + 300)),
                    ("no_more_notifications", b(false)),
                    ("notification_number", i(0)),
                    ("notify", b(true)),
                    ("passive_checks", b(false)),
                    ("percent_state_change", Some(V::F(0.0))),
                    ("retry_interval", Some(V::F(1.0))),
                    ("should_be_scheduled", b(true)),
                    ("state_type", i(self.state_type)),
                    ("check_command", s("check_ping")),
                    ("output", s(&output)),
                    ("perfdata", s("rta=0.3ms;;;0;")),
                ];
                if svc {
                    f.insert(16, ("service_id", nz(self.service_id.unwrap_or(0))));
                    f.extend([
                        ("last_time_ok", nz(self.last_check)),
                        ("last_time_warning", None),
                        ("last_time_critical", None),
                        ("last_time_unknown", None),
                        ("next_notification", None),
                        ("obsess_over_service", b(false)),
                    ]);
                } else {
                    f.extend([
                        ("last_time_up", nz(self.last_check)),
                        ("last_time_down", None),
                        ("last_time_unreachable", None),
                        ("next_host_notification", None),
                        ("obsess_over_host", b(false)),
                    ]);
                }
                Event {
                    type_id: if svc { 65560 } else { 65550 },
                    fields: f,
                }
            }
            Bbdo::V3 => {
                let mut f = vec![("host_id", i(self.host_id))];
                if svc {
                    f.push(("service_id", i(self.service_id.unwrap_or(0))));
                }
                f.extend([
                    ("checked", b(true)),
                    ("check_type", i(0)),
                    ("state", i(self.state)),
                    ("state_type", i(self.state_type)),
                    ("last_state_change", i(self.last_hard_state_change)),
                    ("last_hard_state", i(self.last_hard_state)),
                    ("last_hard_state_change", i(self.last_hard_state_change)),
                    ("output", s(&self.output)),
                    ("long_output", s(&self.long_output)),
                    ("perfdata", s("rta=0.3ms;;;0;")),
                    ("flapping", b(self.flapping)),
                    ("percent_state_change", Some(V::F(0.0))),
                    ("latency", Some(V::F(0.1))),
                    ("execution_time", Some(V::F(0.012))),
                    ("last_check", i(self.last_check)),
                    ("next_check", i(self.last_check + 300)),
                    ("should_be_scheduled", b(true)),
                    ("check_attempt", i(1)),
                    ("notification_number", i(0)),
                    ("no_more_notifications", b(false)),
                    ("last_notification", i(0)),
                    ("acknowledgement_type", i(self.acknowledged as i64)),
                    ("scheduled_downtime_depth", i(self.downtime_depth)),
                ]);
                if svc {
                    f.extend([
                        ("last_time_ok", i(self.last_check)),
                        ("last_time_warning", i(0)),
                        ("last_time_critical", i(0)),
                        ("last_time_unknown", i(0)),
                        ("next_notification", i(0)),
                        ("type", i(0)),
                        ("internal_id", i(0)),
                    ]);
                } else {
                    f.extend([
                        ("last_time_up", i(self.last_check)),
                        ("last_time_down", i(0)),
                        ("last_time_unreachable", i(0)),
                        ("next_host_notification", i(0)),
                    ]);
                }
                Event {
                    type_id: if svc { 65565 } else { 65568 },
                    fields: f,
                }
            }
        }
    }
}

/// An acknowledgement, described once for both BBDO versions.
#[derive(Debug, Clone)]
pub struct Ack {
    /// Host id.
    pub host_id: i64,
    /// Service id, 0 for a host.
    pub service_id: i64,
    /// Poller id.
    pub instance_id: i64,
    /// Author.
    pub author: String,
    /// Comment.
    pub comment: String,
    /// When it was set.
    pub entry_time: i64,
    /// When it was removed, 0 while active.
    pub deletion_time: i64,
    /// Object state.
    pub state: i64,
}

impl Ack {
    /// An active acknowledgement.
    pub fn new(host_id: i64, service_id: i64, state: i64, t: i64) -> Ack {
        Ack {
            host_id,
            service_id,
            instance_id: 1,
            author: "admin".into(),
            comment: "Looking into it".into(),
            entry_time: t,
            deletion_time: 0,
            state,
        }
    }

    /// The broker event.
    pub fn event(&self, bbdo: Bbdo) -> Event {
        let kind = i((self.service_id != 0) as i64);
        match bbdo {
            Bbdo::V2 => Event {
                type_id: 65537,
                fields: vec![
                    ("type", kind),
                    ("author", s(&self.author)),
                    ("comment_data", s(&self.comment)),
                    (
                        "deletion_time",
                        (self.deletion_time > 0).then_some(V::I(self.deletion_time)),
                    ),
                    ("entry_time", nz(self.entry_time)),
                    ("host_id", nz(self.host_id)),
                    ("instance_id", nz(self.instance_id)),
                    ("service_id", nz(self.service_id)),
                    ("sticky", b(true)),
                    ("notify_contacts", b(false)),
                    ("persistent_comment", b(true)),
                    ("state", i(self.state)),
                ],
            },
            Bbdo::V3 => Event {
                type_id: 65581,
                fields: vec![
                    ("host_id", i(self.host_id)),
                    ("service_id", i(self.service_id)),
                    ("instance_id", i(self.instance_id)),
                    ("type", kind),
                    ("author", s(&self.author)),
                    ("comment_data", s(&self.comment)),
                    ("sticky", b(true)),
                    ("notify_contacts", b(false)),
                    ("entry_time", i(self.entry_time)),
                    ("deletion_time", i(self.deletion_time)),
                    ("persistent_comment", b(true)),
                    ("state", i(self.state)),
                ],
            },
        }
    }
}

/// A downtime, described once for both BBDO versions.
#[derive(Debug, Clone)]
pub struct Downtime {
    /// Downtime id (`internal_id` in BBDO 2, `id` in BBDO 3).
    pub id: i64,
    /// Host id.
    pub host_id: i64,
    /// Service id, 0 for a host downtime.
    pub service_id: i64,
    /// Poller id.
    pub instance_id: i64,
    /// Author.
    pub author: String,
    /// Comment.
    pub comment: String,
    /// When it was scheduled.
    pub entry_time: i64,
    /// Planned start.
    pub start_time: i64,
    /// Planned end.
    pub end_time: i64,
    /// When it really started (0: not yet).
    pub actual_start_time: i64,
    /// When it really ended (0: not yet).
    pub actual_end_time: i64,
    /// When it was deleted (0: not yet).
    pub deletion_time: i64,
    /// Cancelled.
    pub cancelled: bool,
    /// Started.
    pub started: bool,
}

impl Downtime {
    /// A downtime that has just started.
    pub fn started(id: i64, host_id: i64, service_id: i64, start: i64, end: i64) -> Downtime {
        Downtime {
            id,
            host_id,
            service_id,
            instance_id: 1,
            author: "admin".into(),
            comment: "Planned maintenance".into(),
            entry_time: start - 60,
            start_time: start,
            end_time: end,
            actual_start_time: start,
            actual_end_time: 0,
            deletion_time: 0,
            cancelled: false,
            started: true,
        }
    }

    /// The same downtime as scheduled, before it starts.
    pub fn scheduled(&self) -> Downtime {
        Downtime {
            actual_start_time: 0,
            started: false,
            ..self.clone()
        }
    }

    /// The same downtime, ended (or cancelled) at `t` and deleted: the last
    /// event the engine sends for it.
    pub fn ended(&self, t: i64) -> Downtime {
        Downtime {
            actual_end_time: t,
            deletion_time: t,
            ..self.clone()
        }
    }

    /// The events a real engine sends for a downtime that starts and ends
    /// (or is cancelled, `cancelled`) at `end`: scheduled, started, ended,
    /// deleted, all with the same id.
    pub fn life(&self, end: i64, cancelled: bool) -> Vec<Downtime> {
        let ending = Downtime {
            actual_end_time: end,
            cancelled,
            ..self.clone()
        };
        vec![
            self.scheduled(),
            self.clone(),
            ending.clone(),
            Downtime {
                deletion_time: end,
                ..ending
            },
        ]
    }

    /// The events for a downtime deleted at `t` before it started: the
    /// schedule, then one event cancelled and deleted.
    pub fn cancelled_before_start(&self, t: i64) -> Vec<Downtime> {
        let scheduled = self.scheduled();
        vec![
            scheduled.clone(),
            Downtime {
                cancelled: true,
                deletion_time: t,
                ..scheduled
            },
        ]
    }

    /// The broker event.
    pub fn event(&self, bbdo: Bbdo) -> Event {
        let kind = if self.service_id != 0 { 1 } else { 2 };
        match bbdo {
            Bbdo::V2 => {
                let t = |v: i64| (v > 0).then_some(V::I(v));
                Event {
                    type_id: 65541,
                    fields: vec![
                        ("actual_end_time", t(self.actual_end_time)),
                        ("actual_start_time", t(self.actual_start_time)),
                        ("author", s(&self.author)),
                        ("type", i(kind)),
                        ("deletion_time", t(self.deletion_time)),
                        ("duration", i(self.end_time - self.start_time)),
                        ("end_time", t(self.end_time)),
                        ("entry_time", t(self.entry_time)),
                        ("fixed", b(true)),
                        ("host_id", nz(self.host_id)),
                        ("instance_id", nz(self.instance_id)),
                        ("internal_id", nz(self.id)),
                        ("service_id", nz(self.service_id)),
                        ("start_time", t(self.start_time)),
                        ("triggered_by", None),
                        ("cancelled", b(self.cancelled)),
                        ("started", b(self.started)),
                        ("comment_data", s(&self.comment)),
                    ],
                }
            }
            Bbdo::V3 => Event {
                type_id: 65572,
                // Unset times are -1 in pb_downtime.
                fields: vec![
                    ("id", i(self.id)),
                    ("instance_id", i(self.instance_id)),
                    ("host_id", i(self.host_id)),
                    ("service_id", i(self.service_id)),
                    ("author", s(&self.author)),
                    ("comment_data", s(&self.comment)),
                    ("type", i(kind)),
                    ("duration", i(self.end_time - self.start_time)),
                    ("triggered_by", i(0)),
                    ("entry_time", i(self.entry_time)),
                    ("actual_start_time", i(unset(self.actual_start_time))),
                    ("actual_end_time", i(unset(self.actual_end_time))),
                    ("start_time", i(self.start_time)),
                    ("deletion_time", i(unset(self.deletion_time))),
                    ("end_time", i(self.end_time)),
                    ("started", b(self.started)),
                    ("cancelled", b(self.cancelled)),
                    ("fixed", b(true)),
                ],
            },
        }
    }
}

/// A BAM business activity's status. Broker 23.10 and later send
/// `pb_ba_status` (6:19) whatever the BBDO version; [`Ba::event_v2`] is
/// the older BBDO 2 `ba_status` (6:1).
#[derive(Debug, Clone)]
pub struct Ba {
    /// `ba_id`.
    pub ba_id: i64,
    /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub state: i64,
    /// `in_downtime`.
    pub in_downtime: bool,
    /// `output`.
    pub output: String,
    /// `last_state_change`.
    pub last_state_change: i64,
}

impl Ba {
    /// A BA in `state` since `t`.
    pub fn new(ba_id: i64, state: i64, t: i64) -> Ba {
        Ba {
            ba_id,
            state,
            in_downtime: false,
            output: format!("BA {ba_id} state {state}"),
            last_state_change: t,
        }
    }

    /// `pb_ba_status`.
    pub fn event(&self) -> Event {
        Event {
            type_id: (6 << 16) | 19,
            fields: vec![
                ("ba_id", i(self.ba_id)),
                ("in_downtime", b(self.in_downtime)),
                ("last_state_change", i(self.last_state_change)),
                ("level_acknowledgement", Some(V::F(100.0))),
                ("level_downtime", Some(V::F(100.0))),
                (
                    "level_nominal",
                    Some(V::F(if self.state == 0 { 100.0 } else { 40.0 })),
                ),
                ("state", i(self.state)),
                ("state_changed", b(true)),
                ("output", s(&self.output)),
            ],
        }
    }

    /// BBDO 2 `ba_status` (broker before 23.10).
    pub fn event_v2(&self) -> Event {
        Event {
            type_id: (6 << 16) | 1,
            ..self.event()
        }
    }
}
