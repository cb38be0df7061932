//! One connector instance: filter, format, bulk, hand over to the sender,
//! and decide what to tell broker.
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
//! ## Why this window
//!
//! Broker's `true` acknowledges everything handed over, so each wait lasts
//! until every lane is empty, and once `write` returns every lane sits
//! idle until broker has handed over a full batch per lane again (a
//! round). That costs about the same for any window, so a window of `k`
//! rounds pays it once per `k` round trips: the window is as many whole
//! rounds as broker's own queue holds. Broker keeps what it handed over
//! unacknowledged in its memory queue (`event_queue_max_size`,
//! [`BROKER_QUEUE`] by default) and puts what the engine publishes beyond
//! it in queue files on disk; once its whole memory queue is handed over
//! unacknowledged it stops calling `write`, calls `flush` and pauses
//! 100 ms. The window leaves [`WAIT_HEADROOM`] of that queue for what the
//! engine publishes while `write` waits. With 16 lanes of 100 that is 8000
//! events, five rounds (half the queue gave three: up to 7 % fewer events
//! per second with a peer answering in 20 ms, bench (h)). Larger windows,
//! with broker's queue raised to fit them, gained under 5 % more in the
//! same bench, not worth a parameter. With an `event_queue_max_size`
//! below the window, broker runs dry first: its `flush` acknowledges, at
//! the cost of its 100 ms pause per window, and twice in a row at the same
//! count tells that queue's size (`Window::flushed`): the window then
//! fits it the same way. `flush` (broker idle) needs no window: it sends
//! what waits and waits for it at once ([`FLUSH_WAIT`]).
//!
//! With the spool (`use_spool=1`), "confirmed" means "on disk": accepted
//! events are appended to the spool and `write` answers `true` after a
//! group commit ([`SPOOL_SYNC_INTERVAL`], [`SPOOL_SYNC_EVENTS`] events or
//! [`SPOOL_SYNC_BYTES`], whichever comes first; `flush` always commits). When the spool is full, new events
//! wait in memory and nothing is acknowledged until the sender frees room,
//! so broker's own retention takes the rest: never a silent drop.

use crate::batch::{Batcher, MAX_BODY_BYTES};
use crate::cache::{self, Cache, Memo};
use crate::config::Config;
use crate::config::Framing;
use crate::custom::{Hook, Snapshot, Verdict};
use crate::dedup;
use crate::downtime;
use crate::event::{ElementKind, EventError, FieldSource, NebEvent, BAM, NEB};
use crate::filter;
use crate::lanes::{downtime_cost, Key, Router};
use crate::logger::Logger;
use crate::progress::Progress;
use crate::render::{Choice, Formats};
use crate::sender::{Closed, Ending, Routes, Sender, Source, CLOSE_BUDGET};
use crate::sink::canopsis::pbehavior;
use crate::sink::Sink;
use crate::spool::{self, AppendError, Record};
use crate::status::{self, Status, StatusFile};
use crate::transport::{DryRun, Http, Transport};
use crate::work::Work;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// broker's default `event_queue_max_size`: the events of an output its
/// memory queue holds, handed over or not (beyond it, they go to queue
/// files on disk; once all of it is handed over and unacknowledged,
/// broker stops calling `write`).
pub const BROKER_QUEUE: u64 = 10_000;

/// The part of broker's queue the window leaves for what the engine
/// publishes while `write` waits at the window: about a round trip and
/// the lanes' backlog, 2000 events at 50k events/s over 40 ms.
pub const WAIT_HEADROOM: u64 = 2_000;

/// Unacknowledged broker events after which `write` waits for delivery, at
/// most: broker's queue less the headroom.
pub const ACK_WINDOW: u64 = BROKER_QUEUE - WAIT_HEADROOM;

/// With the spool, events appended after which `write` commits them (and
/// so acknowledges).
pub const SPOOL_SYNC_EVENTS: u64 = 5000;

/// The acknowledgement window for `lanes` lanes sending batches of `batch`
/// events within broker's default queue ([`window_within`]). 16 lanes of
/// 100: 8000.
pub fn ack_window(lanes: usize, batch: usize) -> u64 {
    window_within(BROKER_QUEUE, (lanes * batch) as u64)
}

/// The acknowledgement window for a broker queue of `queue` events and
/// rounds of `round` events (a full batch in each lane): the largest whole
/// number of rounds within `queue` less its headroom (the share
/// [`WAIT_HEADROOM`] is of [`BROKER_QUEUE`]), or all of that when one
/// round is more. Waiting at the window empties every lane, so a lane left
/// with a part-filled batch would pay a whole round trip for it; and every
/// wait costs one refill of the lanes and one round trip, so the more
/// rounds per wait the better (see the module doc).
pub fn window_within(queue: u64, round: u64) -> u64 {
    let room = queue - queue * WAIT_HEADROOM / BROKER_QUEUE;
    if round == 0 || round > room {
        room
    } else {
        room / round * round
    }
}

/// Fewest unacknowledged events at a `flush` that may show broker's queue
/// ran dry (see `Window::flushed`).
pub const DRY_QUEUE_MIN: u64 = 1000;

/// Longest time between two `flush` calls that show broker's queue ran
/// dry: broker reads on 100 ms after the first, and runs dry again once it
/// handed over as many events (a queue of 10 000 at 5000 events/s: 2 s).
/// Bursts of one size end further apart (a poller's interval).
pub const DRY_WITHIN: Duration = Duration::from_secs(5);

/// The acknowledgement window, and what broker's `flush` calls showed of
/// its queue.
#[derive(Debug)]
struct Window {
    /// Unacknowledged events after which `write` waits.
    size: u64,
    /// A full batch in each lane; `None` with the spool (its window is a
    /// group commit, not rounds).
    round: Option<u64>,
    /// The unacknowledged events a `flush` acknowledged last, short of the
    /// window, with no acknowledgement by `write` since, and when.
    short_flush: Option<(u64, Instant)>,
}

impl Window {
    /// Broker's `flush` acknowledged `unacked` events at `now`. Broker calls
    /// it when no event is ready: at the end of a burst, or when its whole
    /// memory queue (`event_queue_max_size`) is handed over
    /// unacknowledged, and then pauses 100 ms before it reads on. Bursts
    /// end at any count, a queue runs dry at the same count each time: the
    /// second time in a row within [`DRY_WITHIN`], the window shrinks to fit
    /// that queue as it fits broker's default one. Returns the new size.
    fn flushed(&mut self, unacked: u64, now: Instant) -> Option<u64> {
        let round = self.round?;
        if unacked < DRY_QUEUE_MIN || unacked >= self.size {
            return None;
        }
        let again = self
            .short_flush
            .replace((unacked, now))
            .is_some_and(|(count, at)| count == unacked && now - at <= DRY_WITHIN);
        if !again {
            return None;
        }
        self.short_flush = None;
        let size = window_within(unacked, round);
        (size < self.size).then(|| {
            self.size = size;
            size
        })
    }

    /// `write` acknowledged: what `flush` saw before was no dry queue.
    fn written(&mut self) {
        self.short_flush = None;
    }
}

/// Longest wait for delivery inside `write`.
pub const ACK_WAIT: Duration = Duration::from_secs(5);

/// Longest wait for delivery inside `flush`. Broker is idle then, and
/// calls it again about every second; at stop it is the first part of an
/// output's close (see [`CLOSE_BUDGET`]).
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

/// The sender, or, until it could be started, what it needs and the work
/// waiting for it.
struct Outlet {
    sender: Option<Sender>,
    starting: Option<Starting>,
    /// Work handed over before the sender ran (without the spool).
    backlog: VecDeque<Work>,
    /// What is observed while no sender runs: nothing delivered.
    idle: Arc<Progress>,
}

/// What a sender not started yet needs, and why it is not running.
struct Starting {
    transport: Box<dyn Transport>,
    routes: Routes,
    why: String,
    since: Instant,
    next_try: Instant,
    next_log: Instant,
}

impl Starting {
    /// Notes a failed start; says so at once, then once per [`REMINDER`].
    fn failed(&mut self, why: String, now: Instant, log: &Logger) {
        if now >= self.next_log || why != self.why {
            self.next_log = now + REMINDER;
            log.error(format_args!(
                "cannot start yet ({why}): events wait unacknowledged in broker; retrying every {}s",
                START_RETRY.as_secs()
            ));
        }
        self.why = why;
    }
}

impl Outlet {
    /// Hands work to the sender, or keeps it until one runs; `false` if
    /// the sender is gone.
    fn send(&mut self, work: Work) -> bool {
        match &self.sender {
            Some(s) => s.send(work),
            None => {
                self.backlog.push_back(work);
                true
            }
        }
    }

    fn progress(&self) -> &Arc<Progress> {
        self.sender.as_ref().map_or(&self.idle, |s| s.progress())
    }
}

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

#[derive(Debug, Default)]
struct Counters {
    received: u64,
    accepted: u64,
    filtered: u64,
    malformed: u64,
    /// Events that could not be read (Lua memory error, stack overflow...).
    read_errors: u64,
    /// Time broker's thread spent in `write` waiting so it could
    /// acknowledge: for Canopsis at the ack window, or for the spool's
    /// disk syncs.
    waited: Duration,
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

/// Where accepted events go before the sender takes them.
enum Queue {
    /// Batches handed to the sender; acks wait for Canopsis.
    Handover(Handover),
    /// The spool; acks wait for the disk.
    Spool(Spooled),
}

/// An event that passed the filters. Lives on the stack for one `write`;
/// boxing the big variant would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Accepted {
    /// For the event route; with custom code and a template, what the
    /// template reads.
    Event(NebEvent, Rc<crate::subject::Subject>, Option<Box<Snapshot>>),
    /// A pbehavior change.
    Downtime(pbehavior::Action),
}

struct Handover {
    /// One per lane (`max_requests_in_flight`).
    batchers: Vec<Batcher>,
    /// Which lane each object's work takes.
    router: Router,
    last_seq: u64,
    wait_gate: Option<u64>,
}

struct Spooled {
    /// `None` until the spool could be opened (see [`Outlet`]).
    writer: Option<spool::Writer>,
    /// Events waiting for room in a full spool (never acknowledged).
    waiting: VecDeque<Record>,
    /// How many events had to wait so.
    full_waits: u64,
    /// The spool was found full and has not had room since.
    full: bool,
    /// Writing failed: nothing is acknowledged any more.
    broken: bool,
}

impl Connector {
    /// Starts a connector sending over HTTP (or to the log with
    /// `send_data_test=1`).
    pub fn start(cfg: Config, log: Logger) -> Result<Connector, String> {
        let transport: Box<dyn Transport> = if cfg.send_data_test {
            Box::new(DryRun::new(log.clone(), &cfg.http))
        } else {
            Box::new(Http::new(&cfg.http, cfg.max_in_flight, log.clone())?)
        };
        Connector::with_transport(cfg, log, transport)
    }

    /// Starts a connector over any transport.
    pub fn with_transport(
        cfg: Config,
        log: Logger,
        transport: Box<dyn Transport>,
    ) -> Result<Connector, String> {
        let framing = cfg.sink.framing();
        let routes = Routes {
            sink: cfg.sink.clone(),
            event_route: cfg.http.event_route.clone(),
            downtime: cfg.downtime.clone(),
            placeholder_ids: cfg.send_data_test,
            deadletter: cfg.deadletter_file.clone(),
            permanent_after: crate::sender::PERMANENT_AFTER,
            bulk: pbehavior::is_bulk_route(&cfg.downtime.route),
        };
        let queue = match &cfg.spool {
            None => Queue::Handover(Handover {
                batchers: (0..cfg.max_in_flight)
                    .map(|lane| {
                        Batcher::new(cfg.max_buffer_size, MAX_BODY_BYTES, cfg.max_buffer_age)
                            .for_lane(lane)
                            .framed(framing)
                    })
                    .collect(),
                router: Router::new(cfg.max_in_flight),
                last_seq: 0,
                wait_gate: None,
            }),
            Some(_) => Queue::Spool(Spooled {
                writer: None,
                waiting: VecDeque::new(),
                full_waits: 0,
                full: false,
                broken: false,
            }),
        };
        let how = match &cfg.sink {
            Sink::Mattermost(m) => format!(
                "Mattermost at {}, one message per request, at most {} per second, a summary when more than {} wait",
                cfg.http.shown_url(),
                m.per_second,
                m.summary_after
            ),
            sink => format!(
                "{} in batches of up to {} events or {}s{}",
                cfg.http.shown_url(),
                cfg.max_buffer_size,
                cfg.max_buffer_age.as_secs(),
                match sink {
                    Sink::Documents(Framing::Array) => ", one JSON array per request",
                    Sink::Documents(Framing::Lines) => ", one JSON document per line",
                    _ => "",
                }
            ),
        };
        log.info(format_args!(
            "connector started: sending to {how}{}",
            if cfg.send_data_test {
                " (send_data_test=1: payloads go to this log only)"
            } else {
                ""
            }
        ));
        let neb = cfg.categories.iter().any(|c| c.id() == NEB);
        let kinds = std::array::from_fn(|element| {
            ElementKind::from_element(element as u32).filter(|k| neb && cfg.elements.contains(k))
        });
        let bas = cfg.categories.iter().any(|c| c.id() == BAM)
            && cfg.elements.contains(&ElementKind::BaStatus);
        let formats = Formats::load(&cfg.format, &log);
        if bas && matches!(formats.choice(ElementKind::BaStatus), Choice::BuiltIn) {
            log.error(format_args!(
                "ba_status events are accepted but format_file has no bam_ba_status template: there is no built-in format for them, so they are not sent"
            ));
        }
        let sent = load_sent(&cfg, &log);
        let seen = crate::seen::Seen::load(&cfg.logfile, &log);
        let window = match &cfg.spool {
            None => Window {
                size: ack_window(cfg.max_in_flight, cfg.max_buffer_size),
                round: Some((cfg.max_in_flight * cfg.max_buffer_size) as u64),
                short_flush: None,
            },
            Some(_) => Window {
                size: SPOOL_SYNC_EVENTS,
                round: None,
                short_flush: None,
            },
        };
        let now = Instant::now();
        let next_stats = now + cfg.stats_interval;
        let status_file = StatusFile::new(status::path_for(&cfg.logfile), REMINDER);
        let mut c = Connector {
            queue,
            cfg,
            log,
            outlet: Outlet {
                sender: None,
                starting: Some(Starting {
                    transport,
                    routes,
                    why: String::new(),
                    since: now,
                    next_try: now,
                    next_log: now,
                }),
                backlog: VecDeque::new(),
                idle: Arc::new(Progress::default()),
            },
            unacked: 0,
            window,
            counters: Counters::default(),
            unacked_since: now,
            next_stats,
            status_file,
            last_now: Instant::now(),
            clock_skips: 0,
            memo: Memo::default(),
            verdicts: filter::Verdicts::default(),
            sent,
            seen,
            hold: None,
            kinds,
            bas,
            formats,
        };
        c.revive(now);
        // Monitoring sees the output from its start, not a minute later.
        c.write_status();
        Ok(c)
    }

    /// Starts what could not be started yet (the spool, held by a Lua
    /// state still closing or on a disk not yet writable; the sender
    /// thread), at most once per [`START_RETRY`]. Until then events wait in
    /// memory and nothing is acknowledged.
    fn revive(&mut self, now: Instant) {
        // Asked at every write: decide without moving anything.
        match &self.outlet.starting {
            Some(st) if now >= st.next_try => {}
            _ => return,
        }
        let Some(mut st) = self.outlet.starting.take() else {
            return;
        };
        st.next_try = now + START_RETRY;
        let mut opened = None;
        let source = match &self.cfg.spool {
            None => Source::Handover,
            Some(sc) => match spool::open(sc, &self.log) {
                Ok((writer, reader)) => {
                    opened = Some(writer);
                    Source::Spool {
                        reader: Box::new(reader),
                        max_events: self.cfg.max_buffer_size,
                        max_age: self.cfg.max_buffer_age,
                        framing: st.routes.sink.framing(),
                    }
                }
                Err(e) => {
                    st.failed(e.to_string(), now, &self.log);
                    self.outlet.starting = Some(st);
                    return;
                }
            },
        };
        match Sender::spawn(
            st.transport,
            st.routes.clone(),
            self.log.clone(),
            source,
            self.cfg.max_in_flight,
        ) {
            Ok(sender) => {
                if !st.why.is_empty() {
                    self.log.info(format_args!(
                        "started after {}s of retries; acknowledgements resume",
                        now.duration_since(st.since).as_secs()
                    ));
                }
                if let (Queue::Spool(q), Some(writer)) = (&mut self.queue, opened) {
                    let sc = self.cfg.spool.as_ref().expect("spool queue has a config");
                    self.log.info(format_args!(
                        "spool {} (up to {} MiB): events are acknowledged once on disk",
                        sc.dir.display(),
                        sc.max_bytes >> 20
                    ));
                    q.writer = Some(writer);
                }
                for work in self.outlet.backlog.drain(..) {
                    if !sender.send(work) {
                        sender_gone(&self.log);
                    }
                }
                self.outlet.sender = Some(sender);
            }
            Err((e, transport)) => {
                // The spool just opened is closed again (its lock freed).
                st.transport = transport;
                st.failed(
                    format!("cannot start the sender thread: {e}"),
                    now,
                    &self.log,
                );
                self.outlet.starting = Some(st);
            }
        }
    }

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
    pub fn write_screened_out(
        &mut self,
        kind: ElementKind,
        why: crate::rejection::Rejection,
    ) -> bool {
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
            self.counters.filtered += 1;
            self.log.debug(format_args!(
                "downtime event not sent: canopsis_downtime_send_pbh=0"
            ));
            return None;
        }
        self.seen.status(&ev);
        // Downtime starts read the object's current state (`crate::seen`).
        let checked = if kind == ElementKind::Downtime {
            (self.seen)
                .check_downtime(&self.cfg.filter, &self.cfg.format, &ev, cache)
                .map(Rc::new)
        } else {
            self.verdicts.check_status(
                &self.cfg.filter,
                &self.cfg.format,
                &ev,
                &mut self.memo,
                cache,
                now,
                &self.sent,
            )
        };
        // Repeats of a change already sent stop here, before custom code
        // and formatting; the change itself is remembered by `take`, once
        // queued: one held back (in downtime, acknowledged), dropped or
        // unformattable goes out with its next status that gets through.
        let service = kind == ElementKind::ServiceStatus;
        let checked = checked.and_then(|subject| match &ev {
            NebEvent::Host(s) | NebEvent::Service(s)
                if filter::dedup_enabled(&self.cfg.filter, service) =>
            {
                *unsent = self.sent.check(s, service)?;
                Ok(subject)
            }
            _ => Ok(subject),
        });
        let subject = match checked {
            Ok(subject) => subject,
            Err(why) => {
                self.counters.filtered += 1;
                self.log
                    .debug(format_args!("{} event not sent: {why}", kind.name()));
                return None;
            }
        };
        // The library runs custom code (the hook, when there is some) once
        // the filters accepted the event, before choosing its format.
        let choice = self.formats.choice(kind);
        let needs = match &choice {
            Choice::Render(t) => Some(&t.template.needs),
            _ => None,
        };
        let snapshot = match hook.run(kind, needs) {
            Verdict::Keep(s) => s,
            Verdict::Drop => {
                self.counters.filtered += 1;
                self.log.debug(format_args!(
                    "{} event not sent: custom code answered false",
                    kind.name()
                ));
                return None;
            }
            Verdict::Failed(e) => {
                self.counters.filtered += 1;
                self.log.error(format_args!(
                    "custom code failed ({} event, not sent): {e}",
                    kind.name()
                ));
                return None;
            }
        };
        let unformatted = match choice {
            Choice::Mute => Some("its template is empty"),
            Choice::BuiltIn if kind == ElementKind::BaStatus => {
                Some("format_file has no bam_ba_status template")
            }
            _ => None,
        };
        if let Some(why) = unformatted {
            self.counters.filtered += 1;
            self.log
                .debug(format_args!("{} event not sent: {why}", kind.name()));
            return None;
        }
        let NebEvent::Downtime(d) = &ev else {
            return Some(Accepted::Event(ev, subject, snapshot));
        };
        if !pbehaviors {
            // A webhook gets a downtime's start and end as events of their
            // own, in its object's order.
            return match downtime::phase(d) {
                Ok(_) => Some(Accepted::Event(ev, subject, snapshot)),
                Err(skip) => {
                    self.counters.filtered += 1;
                    self.log
                        .debug(format_args!("downtime event not sent: {skip}"));
                    None
                }
            };
        }
        let action = match pbehavior::action(d, &subject) {
            Ok(action) => action,
            Err(skip) => {
                self.counters.filtered += 1;
                self.log
                    .debug(format_args!("downtime event not sent: {skip}"));
                return None;
            }
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

    fn maybe_stats(&mut self, now: Instant) {
        if now >= self.next_stats {
            self.next_stats = now + self.cfg.stats_interval;
            self.log_stats();
            self.remind_hold();
        }
    }

    /// Says again why nothing is acknowledged, if it is not.
    fn remind_hold(&self) {
        let unread = self.counters.read_errors;
        match &self.hold {
            None => {}
            Some(Hold::Unreadable) => self.log.error(format_args!(
                "not acknowledging: {unread} event(s) could not be read; broker keeps them until the output (or cbd) restarts"
            )),
            Some(Hold::InternalError { call, message }) => self.log.error(format_args!(
                "not acknowledging: internal error in {call} ({message}){}; broker keeps the events since until the output (or cbd) restarts",
                if unread > 0 {
                    format!(", and {unread} event(s) could not be read")
                } else {
                    String::new()
                }
            )),
        }
    }

    /// The figures of the stats line and the status file, now.
    fn status(&self) -> Status {
        let p = self.outlet.progress();
        let s = &p.stats;
        let health = p.health();
        let state = if self.outlet.starting.is_some() {
            status::State::Starting
        } else if self.holding() {
            status::State::Holding
        } else if p.failing() {
            status::State::Failing
        } else {
            status::State::Ok
        };
        let last_error = match (&self.outlet.starting, health.error) {
            (Some(st), _) => Some(st.why.clone()),
            (None, Some(e)) => Some(e),
            (None, None) if self.holding() => Some(format!(
                "{} event(s) could not be read",
                self.counters.read_errors
            )),
            (None, None) => None,
        };
        let (waiting, spool_bytes) = match &self.queue {
            Queue::Handover(h) => (h.last_seq - p.delivered().min(h.last_seq), None),
            Queue::Spool(q) => {
                // Counted from the spool's checkpoint: it includes what an
                // earlier run left.
                let st = q.writer.as_ref().map(|w| w.stats()).unwrap_or_default();
                (st.pending + q.waiting.len() as u64, Some(st.bytes))
            }
        };
        let oldest_unacked_s = if self.unacked > 0 {
            self.unacked_since.elapsed().as_secs()
        } else {
            0
        };
        Status {
            version: env!("CARGO_PKG_VERSION"),
            written: status::unix_now(),
            period_s: self.cfg.stats_interval.as_secs(),
            state,
            unacked: self.unacked,
            oldest_unacked_s,
            waiting,
            dead_lettered: s.dead_lettered.load(Ordering::Relaxed),
            spool_bytes,
            spool_max_bytes: self.cfg.spool.as_ref().map(|sc| sc.max_bytes),
            failing_lanes: health.failing_lanes as u64,
            lanes: self.cfg.max_in_flight as u64,
            last_error,
            counters: status::Counters {
                received: self.counters.received,
                accepted: self.counters.accepted,
                sent: s.sent_events.load(Ordering::Relaxed),
                requests: s.requests.load(Ordering::Relaxed),
                failed_requests: s.failed_requests.load(Ordering::Relaxed),
            },
        }
    }

    /// Writes the health line, and the same figures to the status file.
    /// `last_error` stays last: it is free text.
    pub fn log_stats(&mut self) {
        let st = self.status();
        let s = &self.outlet.progress().stats;
        let spool = match &self.queue {
            Queue::Handover(_) => "spool=off".to_string(),
            Queue::Spool(q) => format!(
                "spool_bytes={} spool_full_waits={}{}",
                st.spool_bytes.unwrap_or_default(),
                q.full_waits,
                if q.broken { " spool=broken" } else { "" }
            ),
        };
        self.log.info(format_args!(
            "stats: received={} accepted={} filtered={} malformed={} read_errors={} waited_ms={} waiting={} sent={} requests={} failed_requests={} dead_lettered={} restarts={} unacked={} oldest_unacked_s={} failing_lanes={} lanes={} {spool} state={} last_error={}",
            st.counters.received,
            st.counters.accepted,
            self.counters.filtered,
            self.counters.malformed,
            self.counters.read_errors,
            self.counters.waited.as_millis(),
            st.waiting,
            st.counters.sent,
            st.counters.requests,
            st.counters.failed_requests,
            st.dead_lettered,
            s.restarts.load(Ordering::Relaxed),
            st.unacked,
            st.oldest_unacked_s,
            st.failing_lanes,
            st.lanes,
            st.state.name(),
            st.last_error.as_deref().unwrap_or("none"),
        ));
        self.status_file.write(&st, &self.log);
    }

    /// Writes the status file alone.
    fn write_status(&mut self) {
        let st = self.status();
        self.status_file.write(&st, &self.log);
    }
}

/// What the previous run sent, when dedup is on.
fn load_sent(cfg: &Config, log: &Logger) -> dedup::Sent {
    if !(cfg.filter.host_dedup || cfg.filter.service_dedup) {
        return dedup::Sent::default();
    }
    let path = dedup::path_for(&cfg.logfile);
    match dedup::Sent::load(&path) {
        Ok(sent) => {
            if !sent.is_empty() {
                log.info(format_args!(
                    "{}: the states last sent for {} objects, so changes already sent are not sent again",
                    path.display(),
                    sent.len()
                ));
            }
            sent
        }
        Err(e) => {
            log.warn(format_args!(
                "cannot read {} ({e}): a state change sent before the restart may be sent again",
                path.display()
            ));
            dedup::Sent::default()
        }
    }
}

fn sender_gone(log: &Logger) {
    log.error(format_args!(
        "sender thread is gone; events stay unacknowledged"
    ));
}

fn hand_over(h: &mut Handover, outlet: &mut Outlet, log: &Logger) {
    for batch in h.batchers.iter_mut().filter_map(Batcher::take) {
        if !outlet.send(Work::Events(batch)) {
            sender_gone(log);
        }
    }
}

/// Hands over the batches that are due, each on its own: a lane whose
/// batch is full does not make the others send theirs part-filled.
fn hand_over_due(h: &mut Handover, now: Instant, outlet: &mut Outlet, log: &Logger) {
    for b in h.batchers.iter_mut().filter(|b| b.due(now)) {
        if let Some(batch) = b.take() {
            if !outlet.send(Work::Events(batch)) {
                sender_gone(log);
            }
        }
    }
}

/// The object an event is about (host id, service id), for the
/// [`Router`]: its events keep their order.
fn object_of(ev: &NebEvent) -> (u64, u64) {
    let (host, service) = match ev {
        NebEvent::Host(s) | NebEvent::Service(s) => (s.host_id, s.service_id),
        NebEvent::Ack(a) => (a.host_id, a.service_id),
        NebEvent::Downtime(d) => (d.host_id, d.service_id),
        NebEvent::Ba(b) => (Some(u64::MAX), b.ba_id),
    };
    (host.unwrap_or(0), service.unwrap_or(0))
}

impl Handover {
    fn is_empty(&self) -> bool {
        self.batchers.iter().all(Batcher::is_empty)
    }

    /// `true` when everything received so far is confirmed; may wait up to
    /// `wait` for in-flight batches.
    fn settle(&mut self, wait: Option<Duration>, outlet: &mut Outlet, log: &Logger) -> bool {
        let mut done = self.is_empty() && outlet.progress().delivered() >= self.last_seq;
        if !done {
            if let Some(timeout) = wait {
                // Only here, where it may wait anyway: an Arc clone per
                // event would show on the filtered path.
                let progress = outlet.progress().clone();
                let gate_open = self.wait_gate.is_none_or(|g| progress.delivered() > g);
                if gate_open && !progress.failing() && outlet.sender.is_some() {
                    hand_over(self, outlet, log);
                    done = progress.wait_for(self.last_seq, timeout);
                    self.wait_gate = (!done).then(|| progress.delivered());
                }
            }
        }
        if done {
            self.router.drained();
        }
        done
    }
}

impl Spooled {
    fn push(&mut self, record: Record, log: &Logger) {
        if self.broken {
            // Never acknowledged from now on: broker keeps it.
            return;
        }
        if let (true, Some(writer)) = (self.waiting.is_empty(), &mut self.writer) {
            match writer.append(&record) {
                Ok(_) => return,
                Err(AppendError::Full) => {
                    self.full = true;
                    self.report_full(log);
                }
                Err(AppendError::Io(e)) => return self.fail(&e, log),
            }
        }
        if self.full {
            self.full_waits += 1;
        }
        self.waiting.push_back(record);
    }

    /// Time spent in commits so far.
    fn sync_time(&self) -> Duration {
        self.writer
            .as_ref()
            .map_or(Duration::ZERO, |w| w.sync_time())
    }

    /// Moves waiting events into the spool while it has room, commits when
    /// due (or `now_please`), and says whether everything is on disk.
    fn settle(&mut self, now_please: bool, now: Instant, log: &Logger) -> bool {
        let Some(writer) = &mut self.writer else {
            // Not open yet: nothing is on disk.
            return false;
        };
        while let Some(record) = self.waiting.front() {
            match writer.append(record) {
                Ok(_) => {
                    self.waiting.pop_front();
                    if self.waiting.is_empty() && std::mem::take(&mut self.full) {
                        log.info(format_args!(
                            "spool has room again; acknowledgements resume"
                        ));
                    }
                }
                Err(AppendError::Full) => {
                    if !std::mem::replace(&mut self.full, true) {
                        self.report_full(log);
                    }
                    break;
                }
                Err(AppendError::Io(e)) => {
                    self.fail(&e, log);
                    break;
                }
            }
        }
        if self.broken {
            return false;
        }
        let Some(writer) = &mut self.writer else {
            return false;
        };
        if writer.unsynced() > 0 {
            let due = now_please
                || writer.unsynced_bytes() >= SPOOL_SYNC_BYTES
                || writer
                    .oldest_unsynced()
                    .is_some_and(|t| now.duration_since(t) >= SPOOL_SYNC_INTERVAL);
            if !due {
                return false;
            }
            if let Err(e) = writer.commit() {
                self.fail(&e, log);
                return false;
            }
        }
        self.waiting.is_empty()
    }

    fn report_full(&self, log: &Logger) {
        let st = self.writer.as_ref().map(|w| w.stats()).unwrap_or_default();
        log.error(format_args!(
            "spool is full ({} bytes, {} events not yet confirmed by Canopsis): new events wait unacknowledged in broker's retention until Canopsis takes spooled ones; nothing is dropped",
            st.bytes, st.pending
        ));
    }

    fn fail(&mut self, e: &std::io::Error, log: &Logger) {
        self.broken = true;
        log.error(format_args!(
            "cannot write the spool ({e}): from now on nothing is acknowledged and broker keeps every event; fix the disk and restart cbd"
        ));
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        match &mut self.queue {
            Queue::Handover(h) => hand_over(h, &mut self.outlet, &self.log),
            Queue::Spool(q) => {
                if let (false, Some(writer)) = (q.broken, &mut q.writer) {
                    if let Err(e) = writer.commit() {
                        q.fail(&e, &self.log);
                    }
                }
            }
        }
        // While the peer is unreachable, waiting buys nothing: broker (or
        // the spool) keeps what is undelivered.
        let failing = self.outlet.progress().failing();
        let budget = if failing {
            Duration::ZERO
        } else {
            CLOSE_BUDGET
        };
        let closed = self.outlet.sender.as_mut().map(|s| s.close(budget));
        // Broker replays what it was not told is safe; a memory that
        // counted those as sent would drop them.
        if self.unacked == 0 && !self.holding() && !self.sent.is_empty() {
            let path = dedup::path_for(&self.cfg.logfile);
            if let Err(e) = self.sent.save(&path) {
                self.log.warn(format_args!(
                    "cannot write {} ({e}): after the restart a state change sent before it may be sent again",
                    path.display()
                ));
            }
        }
        self.log_stats();
        self.log_close(closed, failing);
    }
}

/// What a close hands back: events from `first` on, `count` of them.
struct HandedBack {
    first: u64,
    count: u64,
    /// Where they stay.
    kept: &'static str,
}

impl Connector {
    /// What was not delivered once the sender stopped.
    fn handed_back(&self) -> Option<HandedBack> {
        let delivered = self.outlet.progress().delivered();
        match &self.queue {
            Queue::Handover(h) => (delivered < h.last_seq).then(|| HandedBack {
                first: delivered + 1,
                count: h.last_seq - delivered,
                kept: "were never acknowledged: broker keeps them in its retention and sends them again at the next start",
            }),
            Queue::Spool(q) => {
                let pending = q.writer.as_ref().map_or(0, |w| w.stats().pending);
                let last = q.writer.as_ref().map_or(0, spool::Writer::last_seq);
                if pending > 0 {
                    Some(HandedBack {
                        first: last - pending + 1,
                        count: pending,
                        kept: "stay in the spool and are sent at the next start",
                    })
                } else if !q.waiting.is_empty() {
                    Some(HandedBack {
                        first: last + 1,
                        count: q.waiting.len() as u64,
                        kept: "were never acknowledged (not yet in the spool): broker keeps them in its retention",
                    })
                } else {
                    None
                }
            }
        }
    }

    /// The close's one line: what was handed back, from which event on,
    /// why, and where it stays.
    fn log_close(&self, closed: Option<Closed>, failing: bool) {
        let left = match closed {
            Some(c) if !c.joined => {
                "; a sender thread busy in a connect or name resolution was left to finish"
            }
            _ => "",
        };
        let Some(back) = self.handed_back() else {
            self.log.info(format_args!(
                "connector stopped: everything handed over was delivered{left}"
            ));
            return;
        };
        let why = match closed.map(|c| c.ending) {
            None => "the sender never started".to_string(),
            Some(_) if failing => "the peer was failing: not waited for".to_string(),
            Some(Ending::Stalled(still)) => format!(
                "no answer for {:.1}s: requests stopped",
                still.as_secs_f32()
            ),
            Some(Ending::BudgetSpent(budget)) => {
                format!("close budget of {:.1}s spent", budget.as_secs_f32())
            }
            Some(Ending::Returned) => "the sender stopped".to_string(),
        };
        self.log.warn(format_args!(
            "connector stopped: events from #{} on ({}) were not sent ({why}); they {}{left}",
            back.first, back.count, back.kept
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, tests::minimal, ParamValue};
    use crate::custom::NoHook;
    use crate::event::{Field, MapSource};
    use crate::filter::tests::cache;
    use crate::transport::{Request, Response, TransportError};
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
    fn the_ack_window_is_whole_rounds_of_full_batches() {
        assert_eq!(ack_window(16, 100), 8000);
        assert_eq!(ack_window(1, 100), 8000);
        assert_eq!(ack_window(3, 7), 7980);
        assert_eq!(ack_window(16, 500), 8000);
        // One round is more than the window: the window stays.
        assert_eq!(ack_window(16, 1000), ACK_WINDOW);
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
    fn only_the_same_count_twice_in_a_row_and_close_together_is_a_dry_queue() {
        let window = || Window {
            size: 8000,
            round: Some(1600),
            short_flush: None,
        };
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = window();
        assert_eq!(w.flushed(6000, t), None);
        assert_eq!(w.flushed(6000, t + s), Some(4800));
        assert_eq!(w.size, 4800);
        assert_eq!(w.flushed(6000, t + 2 * s), None, "no longer short");
        // Bursts of one size a poller's interval apart.
        let mut w = window();
        assert_eq!(w.flushed(3000, t), None);
        assert_eq!(w.flushed(3000, t + DRY_WITHIN + s), None);
        // Acknowledged by write between the two.
        let mut w = window();
        w.flushed(3000, t);
        w.written();
        assert_eq!(w.flushed(3000, t + s), None);
        // Another count between the two, or too few events.
        let mut w = window();
        w.flushed(3000, t);
        w.flushed(2000, t + s);
        assert_eq!(w.flushed(3000, t + 2 * s), None);
        assert_eq!(w.flushed(999, t + 3 * s), None);
        assert_eq!(w.flushed(999, t + 4 * s), None);
        // With the spool, the window is the group commit.
        let mut w = Window {
            round: None,
            ..window()
        };
        w.flushed(3000, t);
        assert_eq!(w.flushed(3000, t + s), None);
        assert_eq!(w.size, 8000);
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
    fn window_within_a_queue_keeps_a_fifth_of_it() {
        assert_eq!(window_within(BROKER_QUEUE, 1600), 8000);
        assert_eq!(window_within(6000, 1600), 4800);
        assert_eq!(window_within(100_000, 1600), 80_000);
        assert_eq!(window_within(3000, 16_000), 2400);
    }

    #[test]
    fn the_ack_window_leaves_room_in_brokers_queue() {
        for lanes in [1, 2, 3, 7, 16, 32, 64] {
            for batch in [1, 10, 100, 333, 1000, 10_000] {
                let w = ack_window(lanes, batch);
                assert!(
                    w > 0 && w + WAIT_HEADROOM <= BROKER_QUEUE,
                    "{lanes}x{batch}: {w}"
                );
                let round = (lanes * batch) as u64;
                if round <= ACK_WINDOW {
                    assert_eq!(w % round, 0, "{lanes}x{batch}: whole rounds");
                    assert!(w + round > ACK_WINDOW, "{lanes}x{batch}: as many as fit");
                }
            }
        }
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
