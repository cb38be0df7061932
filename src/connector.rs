//! One connector instance: filter, format, bulk, hand over to the sender,
//! and decide what to tell broker.
//!
//! The event path (`write`, `flush`: filter, format, queue, acknowledge)
//! is this file; each other concern has its own: `start` (the parts wired
//! from the configuration, and reviving what could not start), `outlet`
//! (the sender, or what waits for it), `queue` (batches per lane, or the
//! spool), `window` (the acknowledgement window), `stats` (the stats line
//! and the status file) and `close`.
//!
//! # Acknowledgements
//!
//! Broker's `true` acknowledges every event handed over since the previous
//! `true`, so `write`/`flush` answer `true` only when every accepted event
//! received so far has been confirmed by Canopsis, or refused by it and kept
//! in the dead-letter file (filtered events need nothing). Anything still
//! buffered, in flight or failing means `false`, and broker keeps those
//! events in its retention.
//!
//! Under sustained load broker never calls `flush` and the buffer is never
//! empty, so acks would stall until broker's queue fills. To keep them
//! flowing, once [`ack_window`] events have gone unacknowledged `write`
//! sends what it holds and waits (at most [`ACK_WAIT`]) for Canopsis to
//! confirm; it does not wait while the sender is failing, nor again until
//! the sender made progress after a wait that timed out.
//!
//! Why this window: see the `window` module.
//!
//! With the spool (`use_spool=1`), "confirmed" means "on disk": accepted
//! events are appended to the spool and `write` answers `true` after a
//! group commit ([`SPOOL_SYNC_INTERVAL`], [`SPOOL_SYNC_EVENTS`] events or
//! [`SPOOL_SYNC_BYTES`], whichever comes first; `flush` always commits). When the spool is full, new events
//! wait in memory and nothing is acknowledged until the sender frees room,
//! so broker's own retention takes the rest: never a silent drop.

mod close;
mod outlet;
mod queue;
mod start;
mod stats;
mod window;

use crate::cache::{self, Cache, Memo};
use crate::config::Config;
use crate::custom::{Hook, Snapshot, Verdict};
use crate::dedup;
use crate::downtime;
use crate::event::{ElementKind, EventError, FieldSource, NebEvent, NEB};
use crate::filter;
use crate::lanes::{downtime_cost, Key};
use crate::logger::Logger;
use crate::rejection::Rejection;
use crate::render::{Choice, Formats};
use crate::sink::canopsis::pbehavior;
use crate::spool::Record;
use crate::status::StatusFile;
use crate::subject::Subject;
use crate::work::Work;
use outlet::{sender_gone, Outlet};
use queue::{hand_over, hand_over_due, object_of, Queue};
use stats::Counters;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};
use window::Window;
pub use window::{
    ack_window, window_within, ACK_WINDOW, BROKER_QUEUE, DRY_QUEUE_MIN, DRY_WITHIN, WAIT_HEADROOM,
};

/// With the spool, events appended after which `write` commits them (and
/// so acknowledges).
pub const SPOOL_SYNC_EVENTS: u64 = 5000;

/// Longest wait for delivery inside `write`.
pub const ACK_WAIT: Duration = Duration::from_secs(5);

/// Longest wait for delivery inside `flush`. Broker is idle then, and
/// calls it again about every second; at stop it is the first part of an
/// output's close (see [`crate::sender::CLOSE_BUDGET`]).
pub const FLUSH_WAIT: Duration = Duration::from_millis(500);

/// Filtered events (with nothing queued) per reading of the clock.
const CLOCK_EVERY: u32 = 64;
/// How often the stats line and the status file are written by default
/// (`stats_interval`).
pub const STATS_INTERVAL: Duration = Duration::from_secs(60);

/// Longest time an appended event waits for its group commit (the figure
/// Vector's disk buffer uses).
pub const SPOOL_SYNC_INTERVAL: Duration = Duration::from_millis(500);

/// Uncommitted spool bytes (held in memory) that force a commit.
pub const SPOOL_SYNC_BYTES: usize = 8 * 1024 * 1024;

/// How often what could not be started is tried again.
pub const START_RETRY: Duration = Duration::from_secs(1);

/// How often a connector that cannot start, or is misconfigured, says why.
pub const REMINDER: Duration = Duration::from_secs(60);

/// Why nothing is acknowledged any more, until the output (or cbd)
/// restarts: broker's next `true` would cover an event that may never have
/// been sent, and broker replays only what it was not told is safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Events could not be read for a reason broker did not cause (Lua out
    /// of memory, a stack overflow): counted in `read_errors=`.
    Unreadable,
    /// `write` or `flush` hit an internal error (a panic, caught at the Lua
    /// edge): what became of the event it was handling is unknown.
    InternalError {
        /// The call that failed: `write` or `flush`.
        call: &'static str,
        /// What the panic said.
        message: String,
    },
}

/// A running connector.
pub struct Connector {
    cfg: Config,
    log: Logger,
    queue: Queue,
    outlet: Outlet,
    unacked: u64,
    /// Unacknowledged events after which `write` waits ([`ack_window`]).
    window: Window,
    counters: Counters,
    /// When the first of the `unacked` events was received (meaningless
    /// while `unacked` is 0): the age of the oldest event broker still
    /// keeps for this output.
    unacked_since: Instant,
    /// When the stats line is next due.
    next_stats: Instant,
    /// The stats line's figures as JSON, for monitoring.
    status_file: StatusFile,
    /// The last time read from the clock, and filtered events since.
    last_now: Instant,
    clock_skips: u32,
    memo: Memo,
    verdicts: filter::Verdicts,
    /// The state last sent per object, so a change is sent once.
    sent: dedup::Sent,
    /// Objects' HARD states and downtime starts not sent ([`crate::seen`]).
    seen: crate::seen::Seen,
    /// Set for good once an event may have been lost on the way in.
    hold: Option<Hold>,
    /// The kind taken for each neb element id (asked for every event).
    kinds: [Option<ElementKind>; 64],
    /// Whether bam `ba_status` events are taken.
    bas: bool,
    /// Templates (`format_file`).
    formats: Formats,
}

/// An event that passed the filters. Lives on the stack for one `write`;
/// boxing the big variant would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Accepted {
    /// For the event route; with custom code and a template, what the
    /// template reads.
    Event(NebEvent, Rc<Subject>, Option<Box<Snapshot>>),
    /// A pbehavior change.
    Downtime(pbehavior::Action),
}

impl Connector {
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The connector's log.
    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// broker's `filter(category, element)`: the events this connector
    /// sends, and configuration changes (to forget remembered cache answers).
    pub fn accepts(&self, category: u32, element: u32) -> bool {
        self.kind_of(category, element).is_some() || cache::changes_cache(category, element)
    }

    /// The kind of event this connector takes for a broker type, if any.
    pub fn kind_of(&self, category: u32, element: u32) -> Option<ElementKind> {
        if category != NEB {
            return ElementKind::of(category, element).filter(|_| self.bas);
        }
        *self.kinds.get(element as usize)?
    }

    /// A [`filter::Screen`] for events of `kind`, for readers that fetch
    /// fields one at a time and can stop early.
    pub fn screen(&self, kind: ElementKind) -> filter::Screen<'_> {
        filter::Screen::new(&self.cfg.filter, kind).knowing(&self.sent)
    }

    /// broker's `write(event)` for an event its [`screen`](Self::screen)
    /// rejected while it was being read.
    pub fn write_screened_out(&mut self, kind: ElementKind, why: Rejection) -> bool {
        self.count_received();
        let now = self.time_for_nothing_new();
        self.counters.filtered += 1;
        self.log
            .debug(format_args!("{} event not sent: {why}", kind.name()));
        self.answer(now)
    }

    fn count_received(&mut self) {
        if self.unacked == 0 {
            // The first event broker keeps since its last `true`. The time
            // is the last one read: a filtered event may read the clock
            // late, but it is acknowledged at once unless something else
            // already holds acknowledgements.
            self.unacked_since = self.last_now;
        }
        self.unacked += 1;
        self.counters.received += 1;
    }

    /// Counts an event in and reads the clock.
    fn received(&mut self) -> Instant {
        self.last_now = Instant::now();
        self.count_received();
        self.last_now
    }

    /// The time for an event that adds nothing to the queue. While nothing
    /// waits there, only the stats line needs the time, and it may be a few
    /// events late: the clock (as costly as the rest of a filtered write)
    /// is read once every [`CLOCK_EVERY`] such events.
    fn time_for_nothing_new(&mut self) -> Instant {
        let idle = match &self.queue {
            Queue::Handover(h) => h.is_empty(),
            Queue::Spool(q) => {
                q.writer.as_ref().is_none_or(|w| w.unsynced() == 0) && q.waiting.is_empty()
            }
        };
        self.clock_skips += 1;
        if !idle || self.clock_skips >= CLOCK_EVERY {
            self.clock_skips = 0;
            self.last_now = Instant::now();
        }
        self.last_now
    }

    /// broker's `write(event)`.
    pub fn write(
        &mut self,
        category: u32,
        element: u32,
        src: &mut dyn FieldSource,
        cache: &mut dyn Cache,
        hook: &mut dyn Hook,
    ) -> bool {
        let now = self.received();
        match self.kind_of(category, element) {
            None => {
                if cache::changes_cache(category, element) {
                    self.memo.clear();
                }
                self.counters.filtered += 1;
            }
            Some(kind) => {
                let read = NebEvent::read(kind, src);
                self.take(read, src, cache, hook, now)
            }
        }
        self.answer(now)
    }

    /// broker's `write(event)` for an event of a kind the connector takes,
    /// already read (or found unusable) by the caller; `src` gives its
    /// other fields (for templates).
    pub fn write_event(
        &mut self,
        read: Result<NebEvent, EventError>,
        src: &mut dyn FieldSource,
        cache: &mut dyn Cache,
        hook: &mut dyn Hook,
    ) -> bool {
        let now = self.received();
        self.take(read, src, cache, hook, now);
        self.answer(now)
    }

    /// Filters an event read (or found unusable) and queues it if accepted.
    fn take(
        &mut self,
        read: Result<NebEvent, EventError>,
        src: &mut dyn FieldSource,
        cache: &mut dyn Cache,
        hook: &mut dyn Hook,
        now: Instant,
    ) {
        let mut unsent = None;
        if let Some(accepted) = self.process(read, src, cache, hook, now, &mut unsent) {
            self.counters.accepted += 1;
            let queued = self.enqueue(accepted, src, cache, now);
            // Remembered as sent only now: custom code, the format and the
            // queue could all still drop it, and a state remembered but
            // never queued would never be sent, not even when the engine
            // repeats it.
            if let (true, Some(state)) = (queued, unsent) {
                self.sent.record(state);
            }
        }
    }

    /// What `write` returns: whether everything so far is safe.
    fn answer(&mut self, now: Instant) -> bool {
        self.maybe_stats(now);
        self.revive(now);
        let done = match &mut self.queue {
            Queue::Handover(h) => {
                hand_over_due(h, now, &mut self.outlet, &self.log);
                if self.unacked < self.window.size {
                    h.settle(None, &mut self.outlet, &self.log)
                } else {
                    let start = Instant::now();
                    let done = h.settle(Some(ACK_WAIT), &mut self.outlet, &self.log);
                    self.counters.waited += start.elapsed();
                    done
                }
            }
            Queue::Spool(q) => {
                let synced_before = q.sync_time();
                let done = q.settle(self.unacked >= self.window.size, now, &self.log);
                self.counters.waited += q.sync_time() - synced_before;
                done
            }
        };
        let acked = self.acknowledge(done);
        if acked {
            self.window.written();
        }
        acked
    }

    /// `done` unless acknowledgements are held; resets the count.
    fn acknowledge(&mut self, done: bool) -> bool {
        let done = done && !self.holding();
        if done {
            self.unacked = 0;
        }
        done
    }

    /// Whether acknowledgements are held (see [`Hold`]): an event may have
    /// been lost on the way in, so nothing after it is acknowledged either.
    fn holding(&self) -> bool {
        self.hold.is_some()
    }

    /// Why acknowledgements are held, if they are.
    pub fn hold(&self) -> Option<&Hold> {
        self.hold.as_ref()
    }

    /// Holds acknowledgements from now on; the first reason is the one
    /// reminded of.
    fn start_holding(&mut self, why: Hold) {
        self.hold.get_or_insert(why);
    }

    /// broker's `write(event)` for an event that could not be read for a
    /// reason broker did not cause (a Lua memory error, a stack overflow,
    /// an internal error in the reader): it is not acknowledged, now or
    /// later, so broker keeps it, and it is replayed when cbd or the output
    /// restarts.
    pub fn write_unreadable(&mut self, why: &str) -> bool {
        self.count_received();
        self.counters.read_errors += 1;
        self.start_holding(Hold::Unreadable);
        self.log.error(format_args!(
            "cannot read an event ({why}): it is not acknowledged, and neither is anything after it, so broker keeps them; restart the output (or cbd) to have them replayed"
        ));
        false
    }

    /// What the Lua edge calls after catching a panic in `call` (`write`
    /// or `flush`), which it answers `false`: the event being written may
    /// be lost, and broker's next `true` would acknowledge it, so from now
    /// on nothing is (as for an unreadable event). Returns that `false`.
    pub fn internal_error(&mut self, call: &'static str, message: &str) -> bool {
        self.start_holding(Hold::InternalError {
            call,
            message: message.to_string(),
        });
        self.log.error(format_args!(
            "internal error in {call}: {message}; from now on nothing is acknowledged, so broker keeps the event it was handling and everything after it; restart the output (or cbd) to have them replayed"
        ));
        false
    }

    /// broker's `flush()`: broker is idle, send (or commit) what waits.
    pub fn flush(&mut self) -> bool {
        let now = Instant::now();
        self.maybe_stats(now);
        self.revive(now);
        let done = match &mut self.queue {
            Queue::Handover(h) => {
                hand_over(h, &mut self.outlet, &self.log);
                h.settle(Some(FLUSH_WAIT), &mut self.outlet, &self.log)
            }
            Queue::Spool(q) => {
                let done = q.settle(true, now, &self.log);
                // Broker is idle: as without the spool, nothing waits for a
                // batch to fill.
                if let Some(w) = &q.writer {
                    w.hurry();
                }
                done
            }
        };
        let unacked = self.unacked;
        let acked = self.acknowledge(done);
        if acked {
            if let Some(size) = self.window.flushed(unacked, now) {
                // Once per Lua state, at the default log level: it costs
                // broker a 100 ms pause per window until it is fixed.
                self.log.error(format_args!(
                    "broker ran out of events to hand over twice with {unacked} unacknowledged: its event_queue_max_size looks smaller than the acknowledgement window; the window is now {size} events (raise event_queue_max_size to {BROKER_QUEUE} or more for the full window)"
                ));
            }
        }
        acked
    }

    /// Formats an accepted event into its lane's batch (or the spool);
    /// whether it was queued (something written for it).
    fn enqueue(
        &mut self,
        accepted: Accepted,
        src: &mut dyn FieldSource,
        cache: &mut dyn Cache,
        now: Instant,
    ) -> bool {
        let format = &self.cfg.format;
        let formats = &self.formats;
        let sink = &self.cfg.sink;
        // Straight into the request body (or the spool record).
        let mut write = |ev: &NebEvent,
                         subject: &crate::subject::Subject,
                         snapshot: Option<&Snapshot>,
                         body: &mut Vec<u8>| {
            sink.write_item(ev, body, |body| match formats.choice(ev.kind()) {
                Choice::Render(t) => {
                    t.render(ev, src, subject, cache, format, snapshot, body);
                    true
                }
                _ => sink.write_builtin(format, ev, subject, body),
            })
        };
        match &mut self.queue {
            Queue::Handover(h) => match accepted {
                Accepted::Event(ev, subject, snapshot) => {
                    h.last_seq += 1;
                    let (host, service) = object_of(&ev);
                    let lane = h.router.lane(Key::Object(host, service), h.last_seq, 1, 1);
                    let written = h.batchers[lane].push_with(h.last_seq, now, |body| {
                        write(&ev, &subject, snapshot.as_deref(), body)
                    });
                    if !written {
                        // No document: nothing to deliver, and its number
                        // goes to the next event (acknowledgements wait
                        // for every number handed out).
                        h.last_seq -= 1;
                        self.log.debug(format_args!(
                            "{} event not sent: no document for it",
                            ev.kind().name()
                        ));
                    }
                    written
                }
                Accepted::Downtime(action) => {
                    // A downtime keeps its own order only (see
                    // `crate::lanes`): batches that wait are not cut for it.
                    h.last_seq += 1;
                    let key = Key::downtime(action.name());
                    let bulk = pbehavior::is_bulk_route(&self.cfg.downtime.route);
                    let (weight, together) =
                        downtime_cost(action.creates(), bulk, self.cfg.max_buffer_size);
                    let work = Work::Downtime {
                        seq: h.last_seq,
                        lane: h.router.lane(key, h.last_seq, weight, together),
                        action,
                    };
                    if !self.outlet.send(work) {
                        sender_gone(&self.log);
                    }
                    true
                }
            },
            Queue::Spool(q) => {
                let record = match accepted {
                    Accepted::Event(ev, subject, snapshot) => {
                        let mut json = Vec::with_capacity(512);
                        write(&ev, &subject, snapshot.as_deref(), &mut json);
                        if json.is_empty() {
                            return false;
                        }
                        Record::Keyed(object_of(&ev), json)
                    }
                    Accepted::Downtime(action) => Record::Downtime(action),
                };
                q.push(record, &self.log);
                true
            }
        }
    }

    /// Reads, filters and formats one event: what to send, if anything.
    /// With dedup, `unsent` receives the state it reports, for the caller
    /// to [`record`](dedup::Sent::record) once the event is queued.
    fn process(
        &mut self,
        read: Result<NebEvent, EventError>,
        src: &mut dyn FieldSource,
        cache: &mut dyn Cache,
        hook: &mut dyn Hook,
        now: Instant,
        unsent: &mut Option<dedup::Unsent>,
    ) -> Option<Accepted> {
        let ev = match read {
            Ok(ev) => ev,
            Err(e) => {
                self.counters.malformed += 1;
                self.log.warn(format_args!("skipping event: {e}"));
                return None;
            }
        };
        let kind = ev.kind();
        let pbehaviors = self.cfg.sink.pbehaviors();
        if kind == ElementKind::Downtime && pbehaviors && !self.cfg.downtime.send_pbh {
            return not_sent(
                &mut self.counters,
                &self.log,
                kind,
                "canopsis_downtime_send_pbh=0",
            );
        }
        self.seen.status(&ev);
        let subject = match self.verdict(&ev, cache, now, unsent) {
            Ok(subject) => subject,
            Err(why) => return not_sent(&mut self.counters, &self.log, kind, why),
        };
        // The library runs custom code (the hook, when there is some) once
        // the filters accepted the event, before choosing its format.
        let choice = self.formats.choice(kind);
        let snapshot = custom_code(&mut self.counters, &self.log, kind, &choice, hook)?;
        let unformatted = match choice {
            Choice::Mute => Some("its template is empty"),
            Choice::BuiltIn if kind == ElementKind::BaStatus => {
                Some("format_file has no bam_ba_status template")
            }
            _ => None,
        };
        if let Some(why) = unformatted {
            return not_sent(&mut self.counters, &self.log, kind, why);
        }
        let NebEvent::Downtime(d) = &ev else {
            return Some(Accepted::Event(ev, subject, snapshot));
        };
        if !pbehaviors {
            // A webhook gets a downtime's start and end as events of their
            // own, in its object's order.
            return match downtime::phase(d) {
                Ok(_) => Some(Accepted::Event(ev, subject, snapshot)),
                Err(skip) => not_sent(&mut self.counters, &self.log, kind, skip),
            };
        }
        let action = match pbehavior::action(d, &subject) {
            Ok(action) => action,
            Err(skip) => return not_sent(&mut self.counters, &self.log, kind, skip),
        };
        let Choice::Render(t) = choice else {
            return Some(Accepted::Downtime(action));
        };
        // The template shapes the pbehavior; its lifecycle (create at the
        // start, delete at the end) stays.
        let phase = if action.creates() {
            downtime::Phase::Start
        } else {
            downtime::Phase::End
        };
        let mut json = Vec::with_capacity(512);
        t.render(
            &ev,
            src,
            &subject,
            cache,
            &self.cfg.format,
            snapshot.as_deref(),
            &mut json,
        );
        match pbehavior::templated(phase, &json, action.name()) {
            Ok(action) => Some(Accepted::Downtime(action)),
            Err(why) => {
                self.counters.filtered += 1;
                self.log.error(format_args!(
                    "downtime event not sent: {why}: {}",
                    String::from_utf8_lossy(&json)
                ));
                None
            }
        }
    }

    /// The filters' and dedup's verdict on `ev`: its subject, or why not.
    fn verdict(
        &mut self,
        ev: &NebEvent,
        cache: &mut dyn Cache,
        now: Instant,
        unsent: &mut Option<dedup::Unsent>,
    ) -> Result<Rc<Subject>, Rejection> {
        let kind = ev.kind();
        // Downtime starts read the object's current state (`crate::seen`).
        let subject = if kind == ElementKind::Downtime {
            (self.seen)
                .check_downtime(&self.cfg.filter, &self.cfg.format, ev, cache)
                .map(Rc::new)
        } else {
            self.verdicts.check_status(
                &self.cfg.filter,
                &self.cfg.format,
                ev,
                &mut self.memo,
                cache,
                now,
                &self.sent,
            )
        }?;
        // Repeats of a change already sent stop here, before custom code
        // and formatting; the change itself is remembered by `take`, once
        // queued: one held back (in downtime, acknowledged), dropped or
        // unformattable goes out with its next status that gets through.
        let service = kind == ElementKind::ServiceStatus;
        if let NebEvent::Host(s) | NebEvent::Service(s) = ev {
            if filter::dedup_enabled(&self.cfg.filter, service) {
                *unsent = self.sent.check(s, service)?;
            }
        }
        Ok(subject)
    }
}

/// An event the filters, dedup, custom code or its format kept back:
/// counted as filtered, and why said in the debug log.
fn not_sent(
    counters: &mut Counters,
    log: &Logger,
    kind: ElementKind,
    why: impl fmt::Display,
) -> Option<Accepted> {
    counters.filtered += 1;
    log.debug(format_args!("{} event not sent: {why}", kind.name()));
    None
}

/// Runs custom code on an accepted event: what the template reads of it,
/// or `None` when the code dropped the event or failed.
fn custom_code(
    counters: &mut Counters,
    log: &Logger,
    kind: ElementKind,
    choice: &Choice<'_>,
    hook: &mut dyn Hook,
) -> Option<Option<Box<Snapshot>>> {
    let needs = match choice {
        Choice::Render(t) => Some(&t.template.needs),
        _ => None,
    };
    match hook.run(kind, needs) {
        Verdict::Keep(s) => Some(s),
        Verdict::Drop => {
            not_sent(counters, log, kind, "custom code answered false");
            None
        }
        Verdict::Failed(e) => {
            counters.filtered += 1;
            log.error(format_args!(
                "custom code failed ({} event, not sent): {e}",
                kind.name()
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, tests::minimal, ParamValue};
    use crate::custom::NoHook;
    use crate::event::{Field, MapSource};
    use crate::filter::tests::cache;
    use crate::spool;
    use crate::transport::{Request, Response, Transport, TransportError};
    use std::collections::VecDeque;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Canopsis {
        bodies: Arc<Mutex<Vec<String>>>,
        down: Arc<Mutex<bool>>,
        /// How long each request takes.
        latency: Duration,
    }

    impl Transport for Canopsis {
        fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
            std::thread::sleep(self.latency);
            if *self.down.lock().unwrap() {
                return Err(TransportError::Connect("refused".into()));
            }
            let body = String::from_utf8(req.body.to_vec()).unwrap();
            self.bodies.lock().unwrap().push(body.clone());
            Ok(Response::new(
                200,
                format!("{{\"sent_events\":{body},\"failed_events\":[],\"retry_events\":[]}}"),
            ))
        }
    }

    fn connector(extra: &[(&str, ParamValue)], canopsis: &Canopsis) -> Connector {
        let mut p = minimal();
        for (k, v) in extra {
            p.insert(k.to_string(), v.clone());
        }
        let cfg = config::parse(&p).unwrap().config;
        Connector::with_transport(
            cfg,
            Logger::memory(log::LevelFilter::Debug),
            Box::new(canopsis.clone()),
        )
        .unwrap()
    }

    /// A HARD state change of service 12/34, each call a new one (as the
    /// engine stamps it), so dedup lets every one through.
    fn service_event(state: i64) -> MapSource {
        static STAMP: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(100);
        let t = STAMP.fetch_add(1, Ordering::Relaxed);
        MapSource(vec![
            ("host_id", Field::Int(12)),
            ("service_id", Field::Int(34)),
            ("state", Field::Int(state)),
            ("state_type", Field::Int(1)),
            ("last_check", Field::Int(t)),
            ("last_hard_state_change", Field::Int(t)),
            ("output", Field::Str(b"x".to_vec())),
        ])
    }

    #[test]
    fn filtered_events_are_acked_at_once_accepted_ones_after_delivery() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[("max_buffer_size", ParamValue::Int(2))], &canopsis);
        assert!(c.write(NEB, 2, &mut MapSource::default(), &mut cache(), &mut NoHook));
        assert!(!c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook));
        // Second event fills the batch; not delivered yet at return time.
        let _ = c.write(NEB, 24, &mut service_event(1), &mut cache(), &mut NoHook);
        assert!(c.flush());
        let bodies = canopsis.bodies.lock().unwrap();
        assert_eq!(bodies.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
    }

    #[test]
    fn nothing_is_acked_while_canopsis_is_down() {
        let canopsis = Canopsis::default();
        *canopsis.down.lock().unwrap() = true;
        let mut c = connector(&[], &canopsis);
        assert!(!c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook));
        assert!(!c.flush());
        assert!(!c.flush());
        *canopsis.down.lock().unwrap() = false;
        let t = Instant::now();
        while !c.flush() {
            assert!(t.elapsed() < Duration::from_secs(10), "never delivered");
        }
        assert_eq!(canopsis.bodies.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_smaller_broker_queue_shrinks_the_window_once_it_ran_dry_twice() {
        // A Canopsis a millisecond away, so that `write` never finds a batch
        // it just handed over delivered already (as over a network).
        let canopsis = Canopsis {
            latency: Duration::from_millis(1),
            ..Canopsis::default()
        };
        let mut c = connector(&[("max_buffer_size", ParamValue::Int(100))], &canopsis);
        // Broker with event_queue_max_size 6000: once 6000 events are
        // handed over unacknowledged, write is no longer called, flush is.
        let queue = 6000;
        let (mut since_ack, mut dry, mut dry_after, mut by_write_after) = (0, 0, 0, 0);
        for _ in 0..(10 * queue) {
            let shrunk = c.window.size < 8000;
            since_ack += 1;
            if c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook) {
                since_ack = 0;
                by_write_after += u32::from(shrunk);
            } else if since_ack == queue {
                assert!(c.flush(), "delivered, so acknowledged");
                since_ack = 0;
                dry += 1;
                dry_after += u32::from(shrunk);
            }
        }
        assert!(dry >= 2, "{dry}");
        // 6000 less a fifth, in whole rounds of 16 x 100.
        assert_eq!(c.window.size, 4800);
        assert_eq!(dry_after, 0, "broker's queue never ran dry again");
        assert!(by_write_after >= 3, "{by_write_after}");
        assert!(c
            .log
            .lines()
            .iter()
            .any(|l| l.contains("the window is now 4800 events")));
    }

    #[test]
    fn bursts_and_outages_leave_the_window_alone() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[("max_buffer_size", ParamValue::Int(100))], &canopsis);
        // Bursts of different sizes, each acknowledged by flush.
        for burst in [3000, 2000, 3000, 5000, 2000] {
            for _ in 0..burst {
                c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook);
            }
            assert!(c.flush());
        }
        // Canopsis down: broker flushes with the same events unacknowledged.
        *canopsis.down.lock().unwrap() = true;
        for _ in 0..3000 {
            c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook);
        }
        for _ in 0..3 {
            assert!(!c.flush());
        }
        assert_eq!(c.window.size, 8000);
        // A burst of the same size as the last one acknowledged by flush,
        // after an acknowledgement by write: no dry queue either.
        *canopsis.down.lock().unwrap() = false;
        eventually("delivered after the outage", || c.flush());
        // 3000 acknowledged by flush; then 8000 by write at the window.
        for _ in 0..8000 {
            c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook);
        }
        for _ in 0..3000 {
            c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook);
        }
        assert!(c.flush());
        assert_eq!(c.window.size, 8000);
    }

    #[test]
    fn sixteen_lanes_are_acknowledged_every_five_rounds_without_flush() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[("max_buffer_size", ParamValue::Int(100))], &canopsis);
        assert_eq!(c.window.size, 8000);
        let (mut since_ack, mut most, mut acks) = (0, 0, 0);
        for _ in 0..(3 * 8000) {
            since_ack += 1;
            if c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook) {
                most = most.max(since_ack);
                since_ack = 0;
                acks += 1;
            }
        }
        assert!(acks >= 3, "{acks} acks");
        assert!(
            most <= 8000,
            "broker's queue held {most} unacknowledged events"
        );
        assert!(c.flush());
        assert_eq!(delivered(&canopsis), 3 * 8000);
    }

    #[test]
    fn the_ack_window_keeps_acks_flowing_without_flush() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[("max_buffer_size", ParamValue::Int(1000))], &canopsis);
        let mut acked = 0;
        for _ in 0..(3 * ACK_WINDOW) {
            if c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook) {
                acked += 1;
            }
        }
        assert!(acked >= 2, "acks stalled under load ({acked})");
    }

    #[test]
    fn malformed_events_are_logged_not_fatal() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[], &canopsis);
        let mut bad = MapSource(vec![("host_id", Field::Other("table"))]);
        assert!(c.write(NEB, 14, &mut bad, &mut cache(), &mut NoHook));
        assert!(c
            .log
            .lines()
            .iter()
            .any(|l| l.contains("unusable 'host_id'")));
    }

    #[test]
    fn configuration_changes_clear_remembered_names() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[], &canopsis);
        let mut cache = cache();
        c.write(NEB, 24, &mut service_event(2), &mut cache, &mut NoHook);
        cache.hosts.get_mut(&12).unwrap().name = Some("renamed".into());
        c.write(NEB, 24, &mut service_event(1), &mut cache, &mut NoHook);
        assert!(c.accepts(NEB, 30), "pb_host reaches write");
        c.write(NEB, 30, &mut MapSource::default(), &mut cache, &mut NoHook);
        c.write(NEB, 24, &mut service_event(0), &mut cache, &mut NoHook);
        assert!(c.flush());
        let names: Vec<String> = canopsis
            .bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| serde_json::from_str::<Vec<serde_json::Value>>(b).unwrap())
            .map(|e| e["component"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["host-a", "host-a", "renamed"]);
    }

    fn spool_params(name: &str, max_mb: i64) -> Vec<(&'static str, ParamValue)> {
        let dir = std::env::temp_dir().join(format!("cn-conn-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        vec![
            ("use_spool", ParamValue::Int(1)),
            (
                "spool_directory",
                ParamValue::Str(dir.display().to_string()),
            ),
            ("spool_max_size_mb", ParamValue::Int(max_mb)),
            ("max_all_queues_age", ParamValue::Int(1)),
        ]
    }

    /// Waits (at most 5 s) until `done` holds.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let t = Instant::now();
        while !done() {
            assert!(t.elapsed() < Duration::from_secs(5), "never {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn delivered(canopsis: &Canopsis) -> usize {
        canopsis
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                serde_json::from_str::<Vec<serde_json::Value>>(b)
                    .unwrap()
                    .len()
            })
            .sum()
    }

    #[test]
    fn with_the_spool_events_are_acked_once_on_disk_and_survive_a_restart() {
        let canopsis = Canopsis::default();
        *canopsis.down.lock().unwrap() = true;
        let params = spool_params("restart", 16);
        {
            let mut c = connector(&params, &canopsis);
            assert!(!c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook));
            assert!(c.flush(), "acked once committed, Canopsis down or not");
            for _ in 0..(SPOOL_SYNC_EVENTS - 1) {
                c.write(NEB, 24, &mut service_event(1), &mut cache(), &mut NoHook);
            }
            assert!(
                c.write(NEB, 24, &mut service_event(1), &mut cache(), &mut NoHook),
                "a full ack window commits without flush"
            );
        }
        assert_eq!(delivered(&canopsis), 0);
        *canopsis.down.lock().unwrap() = false;
        let c = connector(&params, &canopsis);
        let t = Instant::now();
        while delivered(&canopsis) < SPOOL_SYNC_EVENTS as usize + 1 {
            assert!(t.elapsed() < Duration::from_secs(10), "spool not replayed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(c
            .log
            .lines()
            .iter()
            .any(|l| l.contains("left by the previous run")));
        drop(c);
        let c = connector(&params, &canopsis);
        std::thread::sleep(Duration::from_millis(300));
        drop(c);
        assert_eq!(
            delivered(&canopsis),
            SPOOL_SYNC_EVENTS as usize + 1,
            "nothing sent twice"
        );
    }

    #[test]
    fn a_full_spool_stops_acknowledging_until_canopsis_frees_room() {
        let canopsis = Canopsis::default();
        *canopsis.down.lock().unwrap() = true;
        let mut c = connector(&spool_params("full", 1), &canopsis);
        let big = || {
            let mut big = service_event(2);
            big.0.retain(|(k, _)| *k != "output");
            big.0.push(("output", Field::Str(vec![b'o'; 60 * 1024])));
            big
        };
        let mut written = 0;
        loop {
            c.write(NEB, 24, &mut big(), &mut cache(), &mut NoHook);
            written += 1;
            if !c.flush() {
                break;
            }
            assert!(written < 100, "the spool never filled");
        }
        assert!(c.log.lines().iter().any(|l| l.contains("spool is full")));
        assert!(!c.flush());
        *canopsis.down.lock().unwrap() = false;
        let t = Instant::now();
        while !c.flush() {
            assert!(t.elapsed() < Duration::from_secs(15), "acks never resumed");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(c);
        assert_eq!(delivered(&canopsis), written);
    }

    #[test]
    fn a_spool_still_held_elsewhere_is_retried_and_nothing_is_lost_meanwhile() {
        let canopsis = Canopsis::default();
        let params = spool_params("held", 16);
        let sc = {
            let mut p = minimal();
            for (k, v) in &params {
                p.insert(k.to_string(), v.clone());
            }
            config::parse(&p).unwrap().config.spool.unwrap()
        };
        // A Lua state of the same output, not closed yet.
        let held = spool::open(&sc, &Logger::memory(log::LevelFilter::Error)).unwrap();
        let mut c = connector(&params, &canopsis);
        assert!(!c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook));
        assert!(!c.flush(), "acknowledged with no spool to keep it");
        assert!(c.log.lines().iter().any(|l| l.contains("cannot start yet")));
        drop(held);
        eventually("started", || c.flush());
        eventually("delivered", || delivered(&canopsis) == 1);
        assert!(c
            .log
            .lines()
            .iter()
            .any(|l| l.contains("acknowledgements resume")));
    }

    #[test]
    fn nothing_is_acknowledged_after_an_internal_error_and_the_log_says_why_every_minute() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[], &canopsis);
        c.write(NEB, 24, &mut service_event(2), &mut cache(), &mut NoHook);
        assert!(c.flush(), "acknowledged before the fault");
        // `write` panicked on the next event: the edge answered false.
        assert!(!c.internal_error("write", "index out of bounds"));
        assert_eq!(
            c.hold(),
            Some(&Hold::InternalError {
                call: "write",
                message: "index out of bounds".into()
            })
        );
        for _ in 0..3 {
            assert!(!c.write(NEB, 24, &mut service_event(1), &mut cache(), &mut NoHook));
        }
        // Sent all the same, never acknowledged.
        eventually("delivered", || {
            assert!(!c.flush(), "the lost event acknowledged");
            delivered(&canopsis) == 4
        });
        // An unreadable event later keeps the first reason.
        assert!(!c.write_unreadable("Lua is out of memory"));
        let lines = c.log.lines();
        assert!(
            lines.iter().any(|l| l.starts_with("ERROR: internal error in write: index out of bounds; from now on nothing is acknowledged")),
            "{lines:#?}"
        );
        // The reminder comes with the stats line, every minute.
        c.next_stats = Instant::now();
        assert!(!c.flush());
        let lines = c.log.lines();
        assert!(
            lines.iter().any(|l| l.contains("not acknowledging: internal error in write (index out of bounds), and 1 event(s) could not be read")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("state=holding")),
            "{lines:#?}"
        );
    }

    /// Custom code answering from a script, one verdict per event.
    struct Scripted(VecDeque<Verdict>);

    impl Hook for Scripted {
        fn run(&mut self, _: ElementKind, _: Option<&crate::template::Needs>) -> Verdict {
            self.0.pop_front().unwrap_or(Verdict::Keep(None))
        }
    }

    /// A host's HARD change to DOWN (stamped as 23.10 stamps hosts), or a
    /// later check of it repeating that change.
    fn host_down(last_check: i64) -> MapSource {
        MapSource(vec![
            ("host_id", Field::Int(12)),
            ("state", Field::Int(1)),
            ("state_type", Field::Int(1)),
            ("last_check", Field::Int(last_check)),
            ("last_hard_state_change", Field::Int(1001)),
            ("output", Field::Str(b"down".to_vec())),
        ])
    }

    #[test]
    fn a_change_custom_code_did_not_let_through_is_sent_when_repeated() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[], &canopsis);
        let mut hook = Scripted(VecDeque::from([
            Verdict::Failed("boom".into()),
            Verdict::Drop,
            Verdict::Keep(None),
        ]));
        // The change (custom code fails), then two checks repeating it: the
        // first dropped by custom code, the second let through.
        for t in [1000, 1005, 1010] {
            c.write(NEB, 14, &mut host_down(t), &mut cache(), &mut hook);
        }
        // Sent once: a third repeat is a repeat.
        c.write(NEB, 14, &mut host_down(1015), &mut cache(), &mut hook);
        assert!(c.flush());
        let lines = c.log.lines();
        assert_eq!(delivered(&canopsis), 1, "{lines:#?}");
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains("was sent already"))
                .count(),
            1,
            "{lines:#?}"
        );
    }

    #[test]
    fn a_change_that_is_not_formatted_is_not_remembered_as_sent() {
        let dir = std::env::temp_dir().join(format!("cn-conn-{}-muted", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let format = dir.join("format.json");
        std::fs::write(&format, r#"{"neb_host_status": {}}"#).unwrap();
        let canopsis = Canopsis::default();
        let mut c = connector(
            &[("format_file", ParamValue::Str(format.display().to_string()))],
            &canopsis,
        );
        c.write(NEB, 14, &mut host_down(1000), &mut cache(), &mut NoHook);
        assert!(c.flush());
        assert_eq!(delivered(&canopsis), 0, "the template mutes host statuses");
        assert!(c.sent.is_empty(), "a muted change remembered as sent");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn accepts_only_configured_elements() {
        let c = connector(
            &[(
                "accepted_elements",
                ParamValue::Str("service_status".into()),
            )],
            &Canopsis::default(),
        );
        assert!(c.accepts(1, 24) && c.accepts(1, 29));
        assert!(!c.accepts(1, 14) && !c.accepts(1, 1) && !c.accepts(3, 24) && !c.accepts(1, 2));
    }
}
