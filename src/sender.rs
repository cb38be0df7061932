//! The background threads that talk to Canopsis.
//!
//! Broker's thread never waits on the network: it hands over batches
//! through a channel per lane, or, with the spool, appends to it and one
//! more thread reads it back into the lanes ([`crate::readback`]). Each
//! lane's thread takes its work in order, sends it, retries with backoff
//! until Canopsis confirms it, and confirms it in turn; an event is
//! delivered once every event before it, in every lane, is confirmed (the
//! spool's checkpoint follows). Lanes overtake each other; an object's
//! events take the same lane while any of them may be unconfirmed
//! ([`crate::lanes`]), so Canopsis sees them in order. The threads never
//! touch Lua.

use crate::answer;
use crate::backoff::Backoff;
use crate::batch::Batch;
use crate::config::DowntimeConfig;
use crate::deadletter::DeadLetter;
use crate::logger::Logger;
use crate::pbehavior::{self, Action, ItemAnswer, Outcome, Resolver};
use crate::progress::Progress;
use crate::readback::Readback;
use crate::spool;
use crate::transport::{one_line, Interrupt, Method, Request, Response, Transport, TransportError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender as ChannelSender};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An event Canopsis keeps refusing (while taking others) is tried at least
/// this many times, over at least [`PERMANENT_AFTER`], before it goes to the
/// dead-letter file and counts as handled: one event Canopsis will never
/// take must not block every event behind it, but a Canopsis whose backend
/// restarts must not see events diverted either.
pub const MAX_PARTIAL_ATTEMPTS: u32 = 5;

/// See [`MAX_PARTIAL_ATTEMPTS`].
pub const PERMANENT_AFTER: Duration = Duration::from_secs(300);

/// Work for the sender thread.
#[derive(Debug)]
pub enum Work {
    /// A JSON array for the event route.
    Events(Batch),
    /// A pbehavior change for one downtime event.
    Downtime {
        /// The event's sequence number.
        seq: u64,
        /// What to do.
        action: Action,
        /// Its lane (see [`crate::lanes`]).
        lane: usize,
    },
    /// Consecutive pbehavior changes sent through the bulk route.
    Pbehaviors {
        /// The last one's sequence number.
        seq: u64,
        /// In broker's order.
        actions: Vec<Action>,
    },
    /// A spool record that cannot be read back (kept aside, then skipped).
    Unreadable {
        /// Its sequence number.
        seq: u64,
        /// Why.
        reason: String,
    },
}

impl Work {
    fn first_seq(&self) -> u64 {
        match self {
            Work::Events(b) => b.first_seq,
            other => other.last_seq(),
        }
    }

    fn lane(&self) -> usize {
        match self {
            Work::Events(b) => b.lane,
            Work::Downtime { lane, .. } => *lane,
            Work::Pbehaviors { .. } | Work::Unreadable { .. } => 0,
        }
    }

    pub(crate) fn last_seq(&self) -> u64 {
        match self {
            Work::Events(b) => b.last_seq,
            Work::Downtime { seq, .. }
            | Work::Pbehaviors { seq, .. }
            | Work::Unreadable { seq, .. } => *seq,
        }
    }
}

/// Where the sender's work comes from.
pub enum Source {
    /// Batches the connector hands over with [`Sender::send`].
    Handover,
    /// Records read back from the spool, bulked per lane.
    Spool {
        /// The spool's read side.
        reader: Box<spool::Reader>,
        /// `max_buffer_size`.
        max_events: usize,
        /// `max_all_queues_age`: how long a partial batch waits for more.
        max_age: Duration,
    },
}

/// A lane's work, as handed over.
struct Feed {
    rx: Receiver<Work>,
    /// Work received while looking for more downtimes.
    ahead: Option<Work>,
}

/// Downtimes sent in one bulk request at most.
pub const MAX_BULK: usize = 100;

impl Feed {
    /// The next work, waiting for it; `None` once there is no more.
    fn next(&mut self) -> Option<Work> {
        self.ahead.take().or_else(|| self.rx.recv().ok())
    }

    /// Joins the downtimes queued right behind `first` (for the bulk
    /// route), without waiting for any.
    fn with_following_downtimes(&mut self, first: Work) -> Work {
        let Work::Downtime { seq, action, .. } = first else {
            return first;
        };
        let (mut actions, mut last) = (vec![action], seq);
        while self.ahead.is_none() && actions.len() < MAX_BULK {
            match self.rx.try_recv() {
                Ok(Work::Downtime { seq, action, .. }) => {
                    actions.push(action);
                    last = seq;
                }
                Ok(other) => self.ahead = Some(other),
                Err(_) => break,
            }
        }
        Work::Pbehaviors { seq: last, actions }
    }
}

/// Queues `work` on its lane and notes it in `progress`; `false` if the
/// lane's thread is gone.
pub(crate) fn hand(lanes: &[ChannelSender<Work>], progress: &Progress, work: Work) -> bool {
    if lanes.is_empty() {
        return false;
    }
    let lane = work.lane() % lanes.len();
    progress.handed(lane, work.first_seq(), work.last_seq());
    lanes[lane].send(work).is_ok()
}

/// Where the sender sends.
#[derive(Debug, Clone)]
pub struct Routes {
    /// `canopsis_event_route`.
    pub event_route: String,
    /// Pbehavior routes and names.
    pub downtime: DowntimeConfig,
    /// `send_data_test=1`: fixed pbehavior ids, no lookups.
    pub placeholder_ids: bool,
    /// Where refused events are kept.
    pub deadletter: std::path::PathBuf,
    /// How long Canopsis must go on refusing an event before it is judged
    /// permanent ([`PERMANENT_AFTER`]; shorter in tests).
    pub permanent_after: Duration,
    /// `canopsis_downtime_route` is the bulk route: consecutive downtimes
    /// go in one request.
    pub bulk: bool,
}

/// How Canopsis answered a POST to the event route.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Every event was taken.
    Delivered,
    /// Some or all events are in `failed_events`; they are to be sent again.
    Partial {
        /// Events taken.
        sent: usize,
        /// The events that failed, as Canopsis echoed them.
        failed: Vec<serde_json::Value>,
    },
    /// Canopsis refuses the batch's content (400, 413, 422 with its JSON
    /// error): split it to find the events at fault.
    Refused(String),
    /// Nothing was taken; try again later.
    Retry {
        /// For the log.
        reason: String,
        /// Credentials, permissions or addresses are wrong: an admin must act.
        config_fault: bool,
        /// Server-requested delay.
        retry_after: Option<Duration>,
    },
}

/// Reads an answer of `POST /api/v4/event`.
pub fn judge_events(resp: &Response) -> Verdict {
    if let Some(f) = answer::foreign(resp) {
        return Verdict::Retry {
            reason: f.reason,
            config_fault: true,
            retry_after: None,
        };
    }
    match resp.status {
        200..=299 if nothing_failed(&resp.body) => Verdict::Delivered,
        200..=299 => {
            // Canopsis echoes every event; only the failed ones are kept,
            // the sent ones are skipped without being built.
            #[derive(serde::Deserialize)]
            struct Answer {
                sent_events: Vec<serde::de::IgnoredAny>,
                failed_events: Vec<serde_json::Value>,
            }
            match serde_json::from_str::<Answer>(&resp.body) {
                Ok(a) if a.failed_events.is_empty() => Verdict::Delivered,
                Ok(a) => Verdict::Partial {
                    sent: a.sent_events.len(),
                    failed: a.failed_events,
                },
                Err(_) => Verdict::Retry {
                    reason: format!(
                        "HTTP {} with an answer that is not a Canopsis API v4 event response (check canopsis_host, canopsis_port and canopsis_event_route): {}",
                        resp.status,
                        resp.snippet()
                    ),
                    config_fault: true,
                    retry_after: None,
                },
            }
        }
        400 | 413 | 422 => Verdict::Refused(format!("HTTP {} {}", resp.status, resp.snippet())),
        401 => Verdict::Retry {
            reason: format!(
                "HTTP 401 {}: Canopsis refused canopsis_authkey (unknown key or disabled user)",
                resp.snippet()
            ),
            config_fault: true,
            retry_after: None,
        },
        403 => Verdict::Retry {
            reason: format!(
                "HTTP 403 {}: the user of canopsis_authkey lacks the api_event permission",
                resp.snippet()
            ),
            config_fault: true,
            retry_after: None,
        },
        407 => Verdict::Retry {
            reason: "HTTP 407: the proxy refused proxy_username/proxy_password".to_string(),
            config_fault: true,
            retry_after: None,
        },
        status => Verdict::Retry {
            reason: format!("HTTP {status}: {}", resp.snippet()),
            config_fault: matches!(status, 404 | 405),
            retry_after: resp.retry_after,
        },
    }
}

/// Whether an answer is Canopsis's `{"sent_events":[...],"failed_events":[],...}`
/// with nothing failed, found without parsing the echo of every event (the
/// sender would spend more time on that than on the request). The last
/// `"failed_events":` is the top-level one: inside the echoed events' text
/// every quote is escaped, and the keys come in this order. Anything else
/// goes through the full parse.
fn nothing_failed(body: &str) -> bool {
    const KEY: &str = "\"failed_events\":";
    let b = body.trim();
    b.strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with("\"sent_events\":"))
        && b.ends_with('}')
        && b.rfind(KEY)
            .is_some_and(|i| b[i + KEY.len()..].trim_start().starts_with("[]"))
}

struct Shared {
    progress: Arc<Progress>,
    deadline: Mutex<Option<Instant>>,
}

impl Shared {
    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_deadline(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
    }
}

/// A transport that tells [`Progress`] when requests begin and end, so the
/// connector can tell a sender at work from one stuck on a silent server.
struct Watched {
    inner: Box<dyn Transport>,
    progress: Arc<Progress>,
}

impl Transport for Watched {
    fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
        self.progress.stir();
        self.progress.in_flight.fetch_add(1, Ordering::AcqRel);
        let r = self.inner.send(req);
        self.progress.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.progress.stir();
        r
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.inner.set_deadline(deadline);
    }
}

/// How long the sender may sit on one request (or a pause) while the
/// connector closes before it is stopped: past that, waiting buys nothing
/// (broker or the spool keeps what is not confirmed).
pub const STALL: Duration = Duration::from_secs(1);

/// How long a stopped sender gets to return: a name resolution or TCP
/// connect in progress cannot be interrupted and ends on its own timeout.
const JOIN_GRACE: Duration = Duration::from_millis(3500);

/// Handle on the sender threads, owned by the connector.
pub struct Sender {
    /// One channel per lane; none once stopping (or with the spool, whose
    /// reader hands work over).
    txs: Vec<ChannelSender<Work>>,
    wake: Option<ChannelSender<()>>,
    /// Disconnected once every thread returned.
    done: Receiver<()>,
    threads: Vec<JoinHandle<()>>,
    interrupts: Vec<Interrupt>,
    shared: Arc<Shared>,
    log: Logger,
}

/// What a sender thread runs, handed over through a slot so a failed spawn
/// gives it back.
type Job = Arc<Mutex<Option<(Worker, Feed)>>>;

impl Sender {
    /// Starts the threads, taking work from `source`: up to `lanes`
    /// threads, each with its own connection and its requests in order
    /// (and, with the spool, one that reads it back into them). If
    /// no thread can be started (the system is out of threads), the
    /// transport comes back with the error, for a later try.
    pub fn spawn(
        transport: Box<dyn Transport>,
        routes: Routes,
        log: Logger,
        source: Source,
        lanes: usize,
    ) -> Result<Sender, (std::io::Error, Box<dyn Transport>)> {
        let shared = Arc::new(Shared {
            progress: Arc::new(Progress::default()),
            deadline: Mutex::new(None),
        });
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        let mut threads = Vec::new();
        // With the spool, one more thread reads it back into the lanes. It
        // starts first, so a failure to start it gives the transport back,
        // and gets the lanes once they run.
        let (lanes_tx, lanes_rx) = crossbeam_channel::bounded::<Vec<ChannelSender<Work>>>(1);
        let spooled = matches!(source, Source::Spool { .. });
        if let Source::Spool {
            reader,
            max_events,
            max_age,
        } = source
        {
            let done = done_tx.clone();
            let (sh, bulk, rlog) = (shared.clone(), routes.bulk, log.clone());
            let spawned = std::thread::Builder::new()
                .name("canopsis-spool".into())
                .spawn(move || {
                    let _done = done;
                    let Ok(lanes) = lanes_rx.recv() else {
                        return;
                    };
                    let mut rb = Readback::new(
                        reader,
                        lanes,
                        sh.progress.clone(),
                        (max_events, max_age),
                        bulk,
                        rlog.clone(),
                    );
                    read_back(&mut rb, &sh, &rlog);
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => return Err((e, transport)),
            }
        }
        let mut feeds = Vec::new();
        let mut txs = Vec::new();
        let mut transports = vec![transport];
        // The other lanes' transports share the first one's pool.
        while transports.len() < lanes {
            match transports[0].fork() {
                Some(t) => transports.push(t),
                None => break,
            }
        }
        for _ in 0..transports.len() {
            let (tx, rx) = crossbeam_channel::unbounded();
            txs.push(tx);
            feeds.push(Feed { rx, ahead: None });
        }
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(feeds.len());
        let mut interrupts = Vec::new();
        let resolver = Arc::new(Mutex::new(Resolver::new(routes.placeholder_ids)));
        for (lane, (feed, transport)) in feeds.into_iter().zip(transports).enumerate() {
            let interrupt = transport.interrupter();
            let worker = Worker {
                transport: Watched {
                    inner: transport,
                    progress: shared.progress.clone(),
                },
                dead: DeadLetter::new(routes.deadletter.clone(), log.clone()),
                resolver: resolver.clone(),
                routes: routes.clone(),
                log: log.clone(),
                shared: shared.clone(),
                wake: wake_rx.clone(),
                backoff: Backoff::new(),
                pbh_refused_in_a_row: 0,
                lane,
                spooled,
            };
            let slot: Job = Arc::new(Mutex::new(Some((worker, feed))));
            let taken = slot.clone();
            let done = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name("canopsis-sender".into())
                .spawn(move || {
                    let _done = done;
                    let job = taken.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some((mut worker, feed)) = job {
                        worker.run(feed);
                    }
                });
            match spawned {
                Ok(t) => {
                    threads.push(t);
                    interrupts.extend(interrupt);
                }
                Err(e) if lane == 0 => {
                    let job = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                    let (worker, _feed) = job.expect("the thread never ran");
                    return Err((e, worker.transport.inner));
                }
                Err(e) => {
                    // Fewer lanes: work goes to those that run.
                    log.error(format_args!(
                        "cannot start sender thread {} ({e}): {lane} requests in flight at most",
                        lane + 1
                    ));
                    txs.truncate(lane);
                    break;
                }
            }
        }
        let txs = if spooled {
            // The spool's reader hands work over; the connector does not.
            let _ = lanes_tx.send(txs);
            Vec::new()
        } else {
            txs
        };
        Ok(Sender {
            txs,
            wake: Some(wake_tx),
            done: done_rx,
            threads,
            interrupts,
            shared,
            log,
        })
    }

    /// What the broker thread may read.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.shared.progress
    }

    /// Queues work on its lane; `false` if the threads are gone (they then
    /// logged why).
    pub fn send(&self, work: Work) -> bool {
        hand(&self.txs, &self.shared.progress, work)
    }

    /// Asks the threads to deliver what they hold within `budget`, then to
    /// stop, and joins them. A sender that sat [`STALL`] on one request or
    /// pause is stopped early, its requests in flight interrupted: a silent
    /// or unreachable Canopsis must not hold broker's stop. Returns `false`
    /// only if a thread did not return even then (a connect or name
    /// resolution outliving [`JOIN_GRACE`]); it is left to finish, and the
    /// library is linked `-z nodelete`, so its code stays mapped.
    pub fn shutdown(&mut self, budget: Duration) -> bool {
        if self.threads.is_empty() {
            return true;
        }
        let deadline = Instant::now() + budget;
        self.shared.set_deadline(deadline);
        self.txs.clear();
        // One message per thread wakes each backoff pause once; the
        // channel stays open so later pauses still wait.
        let wake_all = |w: &Option<ChannelSender<()>>| {
            if let Some(w) = w {
                while w.try_send(()).is_ok() {}
            }
        };
        wake_all(&self.wake);
        let progress = self.shared.progress.clone();
        // Work handed over just now gets its chance before the sender is
        // judged stuck; a request already waiting keeps its start time.
        if progress.in_flight.load(Ordering::Acquire) == 0 {
            progress.stir();
        }
        while let Err(RecvTimeoutError::Timeout) = self.done.recv_timeout(Duration::from_millis(20))
        {
            if Instant::now() < deadline && progress.still_for() < STALL {
                continue;
            }
            self.shared.set_deadline(Instant::now());
            for interrupt in self.interrupts.drain(..) {
                interrupt();
            }
            wake_all(&self.wake);
            if let Err(RecvTimeoutError::Timeout) = self.done.recv_timeout(JOIN_GRACE) {
                self.log.error(format_args!(
                    "sender thread still busy {:.1}s after it was stopped; leaving it to finish",
                    JOIN_GRACE.as_secs_f32()
                ));
                self.threads.clear();
                return false;
            }
            break;
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        true
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(4));
    }
}

/// The spool reader's thread: reads back until stopped; after an internal
/// error, starts over from the checkpoint.
fn read_back(rb: &mut Readback, shared: &Shared, log: &Logger) {
    let stopping = || shared.deadline();
    loop {
        match catch_unwind(AssertUnwindSafe(|| rb.run(&stopping))) {
            Ok(()) => return,
            Err(payload) => {
                let msg = panic_message(&*payload);
                let progress = &shared.progress;
                progress.stats.restarts.fetch_add(1, Ordering::Relaxed);
                log.error(format_args!(
                    "spool reader caught an internal error ({msg}); reading again from the checkpoint"
                ));
                rb.restart(&stopping);
            }
        }
    }
}

/// What a panic said.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

struct Worker {
    transport: Watched,
    dead: DeadLetter,
    routes: Routes,
    /// Shared by the lanes, so reason and type are looked up (and the
    /// reason created) once.
    resolver: Arc<Mutex<Resolver>>,
    log: Logger,
    shared: Arc<Shared>,
    wake: Receiver<()>,
    backoff: Backoff,
    /// Pbehavior changes dead-lettered in a row, none taken in between.
    pbh_refused_in_a_row: u32,
    /// Its lane.
    lane: usize,
    /// Whether its work comes from the spool.
    spooled: bool,
}

enum Attempt {
    Done,
    Again(Option<Duration>),
}

/// How far a pbehavior creation got, across retries.
#[derive(Debug, Default)]
struct Created {
    created: bool,
    /// Comments posted.
    comments: usize,
}

/// Where one pbehavior change of a bulk delivery stands.
#[derive(Debug, Default)]
struct BulkItem {
    state: BulkState,
    /// Comments posted.
    comments: usize,
    /// Since when, and how many times, Canopsis refused it.
    refused: Option<(Instant, u32)>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum BulkState {
    /// Not taken yet.
    #[default]
    Todo,
    /// Created; its comment is left to post.
    Comment,
    /// Done.
    Done,
}

/// Shortest pause after a configuration fault: an admin has to act.
const CONFIG_FAULT_PAUSE: Duration = if cfg!(test) {
    Duration::from_millis(300)
} else {
    Duration::from_secs(30)
};

/// Single events Canopsis refuses one after the other, none taken, before
/// the refusals are judged a configuration fault rather than bad events.
pub const BREAKER: usize = 3;

/// What the sender loop does after one step.
enum Flow {
    Next,
    Stop,
}

impl Worker {
    /// Reason and type ids, looked up once for all lanes (a lane waits
    /// while another looks them up).
    fn pbehavior_ids(&mut self) -> Result<pbehavior::Ids, Outcome> {
        let mut r = self.resolver.lock().unwrap_or_else(|e| e.into_inner());
        r.ids(&mut self.transport, &self.routes.downtime)
    }

    fn forget_pbehavior_ids(&self) {
        self.resolver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget();
    }

    fn run(&mut self, mut feed: Feed) {
        let left_where = if self.spooled {
            "stay in the spool and are sent at the next start"
        } else {
            "stay unacknowledged in broker and will be replayed"
        };
        // The work being delivered: kept across an internal error so the
        // loop, started over, sends it again.
        let mut current: Option<Work> = None;
        loop {
            let step = catch_unwind(AssertUnwindSafe(|| {
                if current.is_none() {
                    current = feed.next();
                    if self.routes.bulk {
                        if let Some(w) = current.take() {
                            current = Some(feed.with_following_downtimes(w));
                        }
                    }
                }
                let Some(work) = &current else {
                    return Flow::Stop;
                };
                if !self.budget_spent() && self.deliver(work) {
                    let last = work.last_seq();
                    current = None;
                    self.shared.progress.confirm(self.lane, last);
                    return Flow::Next;
                }
                self.log.error(format_args!(
                    "shutdown budget spent: events from #{} on {left_where}",
                    self.shared.progress.delivered() + 1
                ));
                Flow::Stop
            }));
            match step {
                Ok(Flow::Next) => {}
                Ok(Flow::Stop) => return,
                Err(payload) => {
                    let msg = panic_message(&*payload);
                    let progress = &self.shared.progress;
                    progress.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    progress.set_failing(&format!("internal error in sender: {msg}"));
                    self.log.error(format_args!(
                        "sender caught an internal error ({msg}); starting over: events from #{} are sent again",
                        progress.delivered() + 1
                    ));
                    // `current` still holds the work.
                    self.forget_pbehavior_ids();
                    let delay = self.backoff.next(None);
                    if !self.pause(delay) {
                        return;
                    }
                }
            }
        }
    }

    /// Sends until confirmed (`true`) or the shutdown budget is spent.
    fn deliver(&mut self, work: &Work) -> bool {
        match work {
            Work::Events(batch) => self.deliver_events(batch),
            Work::Downtime { action, .. } if self.routes.bulk => {
                self.deliver_bulk(std::slice::from_ref(action))
            }
            Work::Downtime { action, .. } => self.deliver_pbehavior(action),
            Work::Pbehaviors { actions, .. } => self.deliver_bulk(actions),
            Work::Unreadable { seq, reason } => self.keep_dead(
                &format!("spool record #{seq} cannot be read back: {reason}"),
                b"null",
            ),
        }
    }

    /// Keeps what Canopsis will never take in the dead-letter file, and
    /// counts it for the stats line. `false` when it could not be written:
    /// the caller keeps the event.
    fn dead_letter(&self, reason: &str, event: &[u8]) -> bool {
        if self.dead.keep(reason, event).is_err() {
            return false;
        }
        self.shared
            .progress
            .stats
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// [`dead_letter`](Self::dead_letter), retrying with backoff until the
    /// file takes it; `false` when the close budget ran out first.
    fn keep_dead(&mut self, reason: &str, event: &[u8]) -> bool {
        loop {
            if self.dead_letter(reason, event) {
                return true;
            }
            let step = self.failed("cannot write the dead-letter file", true, None);
            if !self.wait(step) {
                return false;
            }
        }
    }

    /// Waits as `step` says; `false` when no try is left.
    fn wait(&self, step: Attempt) -> bool {
        match step {
            Attempt::Done => true,
            Attempt::Again(None) => false,
            Attempt::Again(Some(delay)) => self.pause(delay),
        }
    }

    /// Sends a batch until Canopsis confirmed each event or refused it for
    /// good. Order is kept.
    ///
    /// A refusal condemns an event only when Canopsis is seen taking others:
    /// - 400/413/422 with Canopsis's JSON error: the batch is split in
    ///   halves down to single events. A refused single event is dead-lettered
    ///   once another event of the batch was taken; if [`BREAKER`] single
    ///   events are refused in a row and none taken, or the batch holds no
    ///   other event, the refusal is treated as a configuration fault and
    ///   retried (a lone event is dead-lettered after `permanent_after` of
    ///   refusals).
    /// - `failed_events`: when every event of a request failed, Canopsis's
    ///   backend is failing (its message bus, its database): retried, never
    ///   dead-lettered. Events listed while others were taken are resent,
    ///   and dead-lettered only after [`MAX_PARTIAL_ATTEMPTS`] tries over
    ///   `permanent_after`.
    fn deliver_events(&mut self, batch: &Batch) -> bool {
        let mut pending = VecDeque::from([(batch.body.clone(), batch.count)]);
        // Single events refused while nothing of this batch was taken yet.
        let mut held: Vec<(Vec<u8>, String)> = Vec::new();
        let mut taken_here = false;
        let mut refused_since: Option<Instant> = None;
        // Events listed in failed_events: since when, how many tries.
        let mut failing_since: Option<(Instant, u32)> = None;
        loop {
            let Some((body, count)) = pending.pop_front() else {
                if held.is_empty() {
                    return true;
                }
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.routes.permanent_after {
                    let why = format!("refused alone for {}s", since.elapsed().as_secs());
                    if !self.dead_letter_held(&mut held, &why) {
                        return false;
                    }
                    continue;
                }
                let n = held.len();
                for (body, _) in held.drain(..).rev() {
                    pending.push_front((body, 1));
                }
                let step = self.failed(
                    &format!(
                        "Canopsis refused {n} event(s) and took no other yet: sent again; dead-lettered only if it takes others or goes on refusing them for {}s",
                        self.routes.permanent_after.as_secs()
                    ),
                    false,
                    None,
                );
                if !self.wait(step) {
                    return false;
                }
                continue;
            };
            let stats = &self.shared.progress.stats;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            self.transport.set_deadline(self.shared.deadline());
            let req = Request {
                method: Method::Post,
                path: &self.routes.event_route,
                body: &body,
            };
            let step = match self.transport.send(req) {
                Err(e) => {
                    pending.push_front((body, count));
                    self.failed(&e.to_string(), e.is_config_fault(), None)
                }
                Ok(resp) => match judge_events(&resp) {
                    Verdict::Delivered => {
                        stats.sent_events.fetch_add(count as u64, Ordering::Relaxed);
                        self.log
                            .debug(format_args!("Canopsis took {count} event(s)"));
                        self.backoff.reset();
                        taken_here = true;
                        failing_since = None;
                        if !self
                            .dead_letter_held(&mut held, "Canopsis took other events of its batch")
                        {
                            return false;
                        }
                        continue;
                    }
                    Verdict::Refused(reason) => {
                        if count > 1 {
                            if let Some((first, second)) = split(&body) {
                                self.log.warn(format_args!(
                                    "{reason}: splitting {count} events to find the refused ones"
                                ));
                                pending.push_front(second);
                                pending.push_front(first);
                                continue;
                            }
                        }
                        refused_since.get_or_insert_with(Instant::now);
                        held.push((single(&body).to_vec(), reason));
                        if taken_here {
                            if !self.dead_letter_held(
                                &mut held,
                                "Canopsis took other events of its batch",
                            ) {
                                return false;
                            }
                            continue;
                        }
                        if held.len() < BREAKER {
                            continue;
                        }
                        let n = held.len();
                        let last = held.last().map(|(_, r)| r.clone()).unwrap_or_default();
                        for (body, _) in held.drain(..).rev() {
                            pending.push_front((body, 1));
                        }
                        self.failed(
                            &format!(
                                "Canopsis refused {n} events one by one and took none ({last}): a configuration problem (Canopsis version, canopsis_event_route), not bad events; nothing is dead-lettered"
                            ),
                            true,
                            None,
                        )
                    }
                    Verdict::Partial { sent, failed } => {
                        stats.sent_events.fetch_add(sent as u64, Ordering::Relaxed);
                        let (since, tries) =
                            failing_since.get_or_insert_with(|| (Instant::now(), 0));
                        *tries += 1;
                        let (since, tries) = (*since, *tries);
                        let n = failed.len();
                        let failed_json = serde_json::to_vec(&failed).unwrap_or_default();
                        if sent > 0 {
                            taken_here = true;
                            if !self.dead_letter_held(
                                &mut held,
                                "Canopsis took other events of its batch",
                            ) {
                                return false;
                            }
                        }
                        let permanent = taken_here
                            && tries >= MAX_PARTIAL_ATTEMPTS
                            && since.elapsed() >= self.routes.permanent_after;
                        if permanent {
                            let why = format!(
                                "listed in failed_events {tries} times over {}s while Canopsis took the other events of its batch: judged permanent",
                                since.elapsed().as_secs()
                            );
                            for ev in &failed {
                                let ev = serde_json::to_vec(ev).unwrap_or_default();
                                if !self.keep_dead(&why, &ev) {
                                    return false;
                                }
                            }
                            failing_since = None;
                            continue;
                        }
                        let reason = if sent == 0 {
                            format!(
                                "Canopsis could not process any of the {n} event(s) sent (all in failed_events: its message bus or database is failing); retried, nothing is dead-lettered: {}",
                                one_line(&String::from_utf8_lossy(&failed_json), 120)
                            )
                        } else {
                            format!(
                                "Canopsis took {sent} event(s) and listed {n} in failed_events (try {tries}); they are sent again: {}",
                                one_line(&String::from_utf8_lossy(&failed_json), 120)
                            )
                        };
                        pending.push_front((failed_json, n));
                        self.failed(&reason, false, resp.retry_after)
                    }
                    Verdict::Retry {
                        reason,
                        config_fault,
                        retry_after,
                    } => {
                        pending.push_front((body, count));
                        self.failed(&reason, config_fault, retry_after)
                    }
                },
            };
            if !self.wait(step) {
                return false;
            }
        }
    }

    /// Dead-letters the refused events held so far, `why` saying what
    /// proved them refused for their content.
    fn dead_letter_held(&mut self, held: &mut Vec<(Vec<u8>, String)>, why: &str) -> bool {
        while let Some((event, reason)) = held.first() {
            let reason = format!("{reason}; {why}");
            let event = event.clone();
            if !self.keep_dead(&reason, &event) {
                return false;
            }
            held.remove(0);
        }
        true
    }

    fn deliver_pbehavior(&mut self, action: &Action) -> bool {
        let mut created = Created::default();
        let mut refused_since: Option<(Instant, u32)> = None;
        loop {
            self.transport.set_deadline(self.shared.deadline());
            let outcome = self.pbehavior_step(action, &mut created);
            let step = match outcome {
                Outcome::Created => {
                    self.backoff.reset();
                    self.pbh_refused_in_a_row = 0;
                    self.log
                        .info(format_args!("pbehavior {}: created", action.name()));
                    Attempt::Done
                }
                Outcome::StaleIds(reason) => {
                    self.forget_pbehavior_ids();
                    self.failed(
                        &format!(
                            "pbehavior {}: {reason}; resolving reason and type again",
                            action.name()
                        ),
                        false,
                        None,
                    )
                }
                Outcome::Done(what) => {
                    self.backoff.reset();
                    self.pbh_refused_in_a_row = 0;
                    self.log
                        .info(format_args!("pbehavior {}: {what}", action.name()));
                    Attempt::Done
                }
                Outcome::Retry {
                    reason,
                    config_fault,
                } => self.failed(
                    &format!("pbehavior {}: {reason}", action.name()),
                    config_fault,
                    None,
                ),
                Outcome::Refused(reason) => {
                    let (since, tries) = refused_since.get_or_insert_with(|| (Instant::now(), 0));
                    *tries += 1;
                    let (since, tries) = (*since, *tries);
                    let breaker = self.pbh_refused_in_a_row as usize + 1 >= BREAKER;
                    if !breaker
                        && tries >= MAX_PARTIAL_ATTEMPTS
                        && since.elapsed() >= self.routes.permanent_after
                    {
                        let why = format!(
                            "pbehavior change refused {tries} times over {}s: {reason}",
                            since.elapsed().as_secs()
                        );
                        if !self.keep_dead(&why, &pbehavior::action_json(action)) {
                            return false;
                        }
                        self.pbh_refused_in_a_row += 1;
                        Attempt::Done
                    } else {
                        let what = if breaker {
                            format!(
                                "{BREAKER} pbehavior changes in a row refused by Canopsis: a configuration problem (Canopsis version, pbehavior routes), nothing more is dead-lettered"
                            )
                        } else {
                            "refused; sent again".to_string()
                        };
                        self.failed(
                            &format!("pbehavior {}: {reason}: {what}", action.name()),
                            breaker,
                            None,
                        )
                    }
                }
            };
            if let Attempt::Done = step {
                return true;
            }
            if !self.wait(step) {
                return false;
            }
        }
    }

    /// Sends consecutive pbehavior changes through the bulk route until
    /// each is done, in order: a run of creations is one `POST`, a run of
    /// deletions one `DELETE`, and a run starts only once everything
    /// before it is done (a deletion never overtakes its creation).
    /// Canopsis answers each item on its own: one refused item is not a
    /// refused request; "already exists" and "not found" count as done.
    /// Comments go one per downtime, after their pbehavior exists.
    fn deliver_bulk(&mut self, actions: &[Action]) -> bool {
        let mut items: Vec<BulkItem> = actions.iter().map(|_| BulkItem::default()).collect();
        loop {
            self.transport.set_deadline(self.shared.deadline());
            let step = match self.bulk_round(actions, &mut items) {
                None => {
                    self.backoff.reset();
                    return true;
                }
                Some(Outcome::StaleIds(reason)) => {
                    self.forget_pbehavior_ids();
                    self.failed(
                        &format!("pbehaviors: {reason}; resolving reason and type again"),
                        false,
                        None,
                    )
                }
                Some(Outcome::Retry {
                    reason,
                    config_fault,
                }) => self.failed(&format!("pbehaviors: {reason}"), config_fault, None),
                Some(Outcome::Refused(reason)) => {
                    self.failed(&format!("pbehaviors: {reason}; sent again"), false, None)
                }
                Some(Outcome::Created | Outcome::Done(_)) => Attempt::Done,
            };
            if let Attempt::Done = step {
                continue;
            }
            if !self.wait(step) {
                return false;
            }
        }
    }

    /// One pass over what is left; `None` when everything is done, or
    /// why the first unfinished run must wait.
    fn bulk_round(&mut self, actions: &[Action], items: &mut [BulkItem]) -> Option<Outcome> {
        let mut i = 0;
        while i < actions.len() {
            match items[i].state {
                BulkState::Done => {
                    i += 1;
                    continue;
                }
                BulkState::Comment => {
                    if let Err(o) = self.bulk_comment(&actions[i], &mut items[i]) {
                        return Some(o);
                    }
                    i += 1;
                    continue;
                }
                BulkState::Todo => {}
            }
            let create = actions[i].creates();
            let run: Vec<usize> = (i..actions.len())
                .take_while(|&k| {
                    items[k].state != BulkState::Comment && actions[k].creates() == create
                })
                .filter(|&k| items[k].state == BulkState::Todo)
                .collect();
            let end = run.last().map_or(i + 1, |&k| k + 1);
            let failure = if create {
                self.bulk_create(actions, items, &run)
            } else {
                self.bulk_delete(actions, items, &run)
            };
            // Comments of what this run created, in order.
            for &k in &run {
                if items[k].state == BulkState::Comment {
                    if let Err(o) = self.bulk_comment(&actions[k], &mut items[k]) {
                        return Some(o);
                    }
                }
            }
            if let Some(o) = failure {
                return Some(o);
            }
            i = end;
        }
        None
    }

    fn bulk_send(
        &mut self,
        method: Method,
        body: &[u8],
        sent: usize,
        right: &str,
    ) -> Result<Vec<ItemAnswer>, Outcome> {
        let route = self.routes.downtime.route.clone();
        let resp = self.request(method, &route, body)?;
        pbehavior::judge_bulk(&resp, sent, right)
    }

    fn bulk_create(
        &mut self,
        actions: &[Action],
        items: &mut [BulkItem],
        run: &[usize],
    ) -> Option<Outcome> {
        // Reason and type ids only serve the built-in format.
        let ids = if run.iter().any(|&k| matches!(actions[k], Action::Create(_))) {
            match self.pbehavior_ids() {
                Ok(ids) => Some(ids),
                Err(o) => return Some(o),
            }
        } else {
            None
        };
        let body = pbehavior::bulk_create_body(run.iter().map(|&k| &actions[k]), ids.as_ref());
        let answers = match self.bulk_send(
            Method::Post,
            &body,
            run.len(),
            "create on pbehaviors (api_pbehavior)",
        ) {
            Ok(a) => a,
            Err(o) => return Some(o),
        };
        let mut failure = None;
        for (&k, answer) in run.iter().zip(&answers) {
            let name = actions[k].name();
            match pbehavior::judge_create_item(answer) {
                Outcome::Created => {
                    self.log.info(format_args!("pbehavior {name}: created"));
                    items[k].state = if pbehavior::comment_bodies(&actions[k]).is_empty() {
                        BulkState::Done
                    } else {
                        BulkState::Comment
                    };
                }
                other => {
                    if let Some(o) = self.bulk_item_settled(&actions[k], &mut items[k], other) {
                        failure.get_or_insert(o);
                    }
                }
            }
        }
        failure
    }

    fn bulk_delete(
        &mut self,
        actions: &[Action],
        items: &mut [BulkItem],
        run: &[usize],
    ) -> Option<Outcome> {
        let names = run.iter().map(|&k| actions[k].name());
        let body = pbehavior::bulk_delete_body(names);
        let right = "delete on pbehaviors (api_pbehavior)";
        let answers = match self.bulk_send(Method::Delete, &body, run.len(), right) {
            Ok(a) => a,
            Err(o) => return Some(o),
        };
        let mut failure = None;
        // Not there under our name: it may be an older connector's.
        let mut legacy: Vec<(usize, String)> = Vec::new();
        for (&k, answer) in run.iter().zip(&answers) {
            let name = actions[k].name();
            match pbehavior::judge_delete_item(answer) {
                Outcome::Done("already deleted") if pbehavior::legacy_name(name).is_some() => {
                    legacy.push((k, pbehavior::legacy_name(name).unwrap_or_default()));
                }
                other => {
                    if let Some(o) = self.bulk_item_settled(&actions[k], &mut items[k], other) {
                        failure.get_or_insert(o);
                    }
                }
            }
        }
        if legacy.is_empty() {
            return failure;
        }
        let body = pbehavior::bulk_delete_body(legacy.iter().map(|(_, n)| n.as_str()));
        let answers = match self.bulk_send(Method::Delete, &body, legacy.len(), right) {
            Ok(a) => a,
            Err(o) => return failure.or(Some(o)),
        };
        for ((k, _), answer) in legacy.iter().zip(&answers) {
            let name = actions[*k].name();
            match pbehavior::judge_delete_item(answer) {
                Outcome::Done("deleted") => {
                    self.log.info(format_args!(
                        "pbehavior {name}: deleted under the name the Lua connector gave it"
                    ));
                    items[*k].state = BulkState::Done;
                }
                other => {
                    if let Some(o) = self.bulk_item_settled(&actions[*k], &mut items[*k], other) {
                        failure.get_or_insert(o);
                    }
                }
            }
        }
        failure
    }

    /// An item's outcome: done (logged), or [`bulk_item_failed`](Self::bulk_item_failed).
    fn bulk_item_settled(
        &mut self,
        action: &Action,
        item: &mut BulkItem,
        outcome: Outcome,
    ) -> Option<Outcome> {
        match outcome {
            Outcome::Done(what) => {
                self.log
                    .info(format_args!("pbehavior {}: {what}", action.name()));
                item.state = BulkState::Done;
                None
            }
            other => self.bulk_item_failed(action, item, other),
        }
    }

    /// An item Canopsis did not take: refused for good after
    /// [`MAX_PARTIAL_ATTEMPTS`] tries over `permanent_after` (then
    /// dead-lettered, and done), otherwise the reason to wait and resend.
    fn bulk_item_failed(
        &mut self,
        action: &Action,
        item: &mut BulkItem,
        outcome: Outcome,
    ) -> Option<Outcome> {
        let Outcome::Refused(reason) = outcome else {
            return Some(outcome);
        };
        let (since, tries) = item.refused.get_or_insert_with(|| (Instant::now(), 0));
        *tries += 1;
        if *tries < MAX_PARTIAL_ATTEMPTS || since.elapsed() < self.routes.permanent_after {
            return Some(Outcome::Refused(format!(
                "pbehavior {}: {reason}",
                action.name()
            )));
        }
        let why = format!(
            "pbehavior change refused {tries} times over {}s: {reason}",
            since.elapsed().as_secs()
        );
        if !self.dead_letter(&why, &pbehavior::action_json(action)) {
            return Some(Outcome::Retry {
                reason: "cannot write the dead-letter file".into(),
                config_fault: true,
            });
        }
        item.state = BulkState::Done;
        None
    }

    /// Posts the comments of a pbehavior the bulk route just created.
    fn bulk_comment(&mut self, action: &Action, item: &mut BulkItem) -> Result<(), Outcome> {
        match self.post_comments(action, &mut item.comments) {
            Outcome::Done(what) => {
                if what != "created" {
                    self.log
                        .info(format_args!("pbehavior {}: {what}", action.name()));
                }
                item.state = BulkState::Done;
                Ok(())
            }
            other => match self.bulk_item_failed(action, item, other) {
                None => Ok(()),
                Some(o) => Err(o),
            },
        }
    }

    /// One try at a pbehavior change; `done` remembers, across retries,
    /// that it was created and how many of its comments were posted.
    fn pbehavior_step(&mut self, action: &Action, done: &mut Created) -> Outcome {
        let route = self.routes.downtime.route.clone();
        match action {
            Action::Delete(name) => {
                let path = |name: &str| format!("{route}?name={}", pbehavior::url_encode(name));
                let outcome = match self.request(Method::Delete, &path(name), b"") {
                    Ok(resp) => pbehavior::judge_delete(&resp),
                    Err(o) => o,
                };
                // Not there under our name: it may be an older connector's.
                let legacy = pbehavior::legacy_name(name);
                match (outcome, legacy) {
                    (Outcome::Done("already deleted"), Some(legacy)) => {
                        match self.request(Method::Delete, &path(&legacy), b"") {
                            Ok(resp) => match pbehavior::judge_delete(&resp) {
                                Outcome::Done("deleted") => Outcome::Done(
                                    "deleted under the name the Lua connector gave it",
                                ),
                                other => other,
                            },
                            Err(o) => o,
                        }
                    }
                    (outcome, _) => outcome,
                }
            }
            Action::DeleteId(id) => {
                let path = format!(
                    "{}/{}",
                    route.trim_end_matches('/'),
                    pbehavior::url_encode(id)
                );
                match self.request(Method::Delete, &path, b"") {
                    Ok(resp) => pbehavior::judge_delete(&resp),
                    Err(o) => o,
                }
            }
            Action::Create(_) | Action::CreateTemplated(_) => {
                if !done.created {
                    let body = match action {
                        Action::Create(c) => {
                            let ids = match self.pbehavior_ids() {
                                Ok(ids) => ids,
                                Err(o) => return o,
                            };
                            pbehavior::create_body(c, &ids)
                        }
                        Action::CreateTemplated(t) => t.body.clone(),
                        _ => unreachable!("matched above"),
                    };
                    match self.request(Method::Post, &route, &body) {
                        Ok(resp) => match pbehavior::judge_create(&resp) {
                            Outcome::Created => done.created = true,
                            other => return other,
                        },
                        Err(o) => return o,
                    }
                }
                self.post_comments(action, &mut done.comments)
            }
        }
    }

    /// One request, counted; a transport error as the outcome to retry.
    fn request(&mut self, method: Method, path: &str, body: &[u8]) -> Result<Response, Outcome> {
        self.shared
            .progress
            .stats
            .requests
            .fetch_add(1, Ordering::Relaxed);
        self.transport
            .send(Request { method, path, body })
            .map_err(|e| Outcome::Retry {
                reason: e.to_string(),
                config_fault: e.is_config_fault(),
            })
    }

    /// Posts the comments of a pbehavior just created, from the
    /// `posted`-th on.
    fn post_comments(&mut self, action: &Action, posted: &mut usize) -> Outcome {
        let bodies = pbehavior::comment_bodies(action);
        if bodies.is_empty() {
            return Outcome::Done("created");
        }
        let route = self.routes.downtime.comment_route.clone();
        while *posted < bodies.len() {
            match self.request(Method::Post, &route, &bodies[*posted]) {
                Ok(resp) => match pbehavior::judge_comment(&resp) {
                    Outcome::Done(_) => *posted += 1,
                    other => return other,
                },
                Err(o) => return o,
            }
        }
        Outcome::Done("created with its comment")
    }

    /// Whether the connector is closing and its budget is spent.
    fn budget_spent(&self) -> bool {
        self.shared.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Waits `delay` before the next try, or less when woken by the
    /// connector closing; `false` if no try is left in the close budget.
    fn pause(&self, delay: Duration) -> bool {
        let _ = self.wake.recv_timeout(delay);
        !self.budget_spent()
    }

    /// Logs a failed attempt and picks the pause before the next one;
    /// `Again(None)` when the shutdown budget leaves no room for it.
    fn failed(&mut self, reason: &str, config_fault: bool, hint: Option<Duration>) -> Attempt {
        let progress = &self.shared.progress;
        progress
            .stats
            .failed_requests
            .fetch_add(1, Ordering::Relaxed);
        let mut delay = self.backoff.next(hint);
        if config_fault {
            // An admin has to act; retrying fast would only fill the log.
            delay = delay.max(CONFIG_FAULT_PAUSE);
        }
        let what = if config_fault {
            "configuration problem"
        } else {
            "send failed"
        };
        progress.set_failing(reason);
        // Closing: what is left of the budget bounds the pause, and the
        // log says the pause actually taken.
        let step = match self.shared.deadline() {
            None => Attempt::Again(Some(delay)),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left < Duration::from_millis(100) {
                    Attempt::Again(None)
                } else {
                    Attempt::Again(Some(delay.min(left / 2)))
                }
            }
        };
        match step {
            Attempt::Again(Some(pause)) => self.log.error(format_args!(
                "{what}: {reason}; events are kept and retried in {:.1}s",
                pause.as_secs_f32()
            )),
            _ => self.log.error(format_args!(
                "{what}: {reason}; the connector is closing: events are kept, not retried"
            )),
        }
        step
    }
}

/// The one event of a JSON array holding one.
fn single(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"[")
        .and_then(|b| b.strip_suffix(b"]"))
        .unwrap_or(body)
}

/// A JSON array of events and how many it holds.
type Part = (Vec<u8>, usize);

/// Splits a JSON array of events in two halves.
fn split(body: &[u8]) -> Option<(Part, Part)> {
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body).ok()?;
    if items.len() < 2 {
        return None;
    }
    let join = |part: &[&serde_json::value::RawValue]| {
        let mut out = b"[".to_vec();
        for (i, item) in part.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item.get().as_bytes());
        }
        out.push(b']');
        (out, part.len())
    };
    let (a, b) = items.split_at(items.len() / 2);
    Some((join(a), join(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batcher, MAX_BODY_BYTES};
    use crate::transport::tests::resp;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn the_quick_check_agrees_with_the_full_parse() {
        for (body, delivered) in [
            (
                r#"{"sent_events":[{"a":1}],"failed_events":[],"retry_events":[]}"#,
                true,
            ),
            (r#"{ "sent_events": [], "failed_events": [ ] }"#, true),
            (
                r#"{"sent_events":[{"output":"\"failed_events\":[]"}],"failed_events":[{"b":2}],"retry_events":[]}"#,
                false,
            ),
            (r#"{"failed_events":[],"sent_events":[{"a":1}]}"#, true),
            (
                r#"{"sent_events":[{"a":1}],"failed_events":[{"a":1}]}"#,
                false,
            ),
            (r#"{"sent_events":[{"a":1}],"failed_events":[]"#, false),
        ] {
            assert_eq!(
                judge_events(&resp(200, body)) == Verdict::Delivered,
                delivered,
                "{body}"
            );
        }
        assert!(!nothing_failed(r#"{"failed_events":[],"sent_events":[]}"#));
        assert!(!nothing_failed(
            r#"{"sent_events":[{"output":"x"}],"failed_events":[{"o":"\"failed_events\":[]"}]}"#
        ));
    }

    #[test]
    fn judges_canopsis_answers() {
        assert_eq!(
            judge_events(&resp(
                200,
                r#"{"sent_events":[{}],"failed_events":[],"retry_events":[]}"#
            )),
            Verdict::Delivered
        );
        assert_eq!(
            judge_events(&resp(
                200,
                r#"{"sent_events":[{}],"failed_events":[{"a":1}],"retry_events":[]}"#
            )),
            Verdict::Partial {
                sent: 1,
                failed: vec![serde_json::json!({"a":1})]
            }
        );
        let Verdict::Retry {
            config_fault,
            reason,
            ..
        } = judge_events(&resp(401, r#"{"error":"Unauthorized"}"#))
        else {
            panic!()
        };
        assert!(config_fault && reason.contains("canopsis_authkey"));
        let Verdict::Retry { config_fault, .. } = judge_events(&resp(200, "<html>portal</html>"))
        else {
            panic!()
        };
        assert!(config_fault);
        let Verdict::Retry { config_fault, .. } = judge_events(&resp(503, "")) else {
            panic!()
        };
        assert!(!config_fault);
        // A proxy's 413, a WAF's 400, a redirect: never the content's fault.
        for (status, body) in [(413, ""), (400, "<html>Bad Request</html>"), (302, "")] {
            let Verdict::Retry { config_fault, .. } = judge_events(&resp(status, body)) else {
                panic!("{status} {body}")
            };
            assert!(config_fault, "{status}");
        }
        assert!(matches!(
            judge_events(&resp(413, r#"{"error":"too large"}"#)),
            Verdict::Refused(_)
        ));
    }

    struct Scripted(
        Arc<Mutex<VecDeque<Result<Response, TransportError>>>>,
        Arc<Mutex<Vec<Vec<u8>>>>,
    );

    impl Transport for Scripted {
        fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
            self.1.lock().unwrap().push(req.body.to_vec());
            self.0
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Ok(resp(200, r#"{"sent_events":[],"failed_events":[]}"#)))
        }
    }

    fn routes() -> Routes {
        let cfg = crate::config::parse(&crate::config::tests::minimal())
            .unwrap()
            .config;
        Routes {
            event_route: cfg.http.event_route,
            downtime: cfg.downtime,
            placeholder_ids: false,
            deadletter: std::env::temp_dir()
                .join(format!("cn-sender-{}.deadletter.jsonl", std::process::id())),
            permanent_after: PERMANENT_AFTER,
            bulk: false,
        }
    }

    fn batch(first: u64, last: u64, body: &str) -> Work {
        Work::Events(Batch {
            first_seq: first,
            last_seq: last,
            count: (last - first + 1) as usize,
            body: body.as_bytes().to_vec(),
            lane: 0,
        })
    }

    #[test]
    fn retries_until_confirmed_and_resends_only_failed_events() {
        let script = Arc::new(Mutex::new(VecDeque::from(vec![
            Err(TransportError::Connect("refused".into())),
            Ok(resp(
                200,
                r#"{"sent_events":[{"n":1}],"failed_events":[{"n":2}]}"#,
            )),
        ])));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Logger::memory(log::LevelFilter::Debug);
        let mut s = Sender::spawn(
            Box::new(Scripted(script, seen.clone())),
            routes(),
            log.clone(),
            Source::Handover,
            1,
        )
        .map_err(|(e, _)| e)
        .unwrap();
        assert!(s.send(batch(1, 2, r#"[{"n":1},{"n":2}]"#)));
        let t = Instant::now();
        while s.progress().delivered() < 2 {
            assert!(t.elapsed() < Duration::from_secs(10), "never confirmed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(s.shutdown(Duration::from_secs(1)));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2], br#"[{"n":2}]"#);
        assert_eq!(s.progress().stats.sent_events.load(Ordering::Relaxed), 2);
        assert!(log
            .lines()
            .iter()
            .any(|l| l.contains("cannot connect: refused")));
    }

    /// Refuses (400) any body holding "bad", takes the others.
    struct Picky(Arc<Mutex<Vec<usize>>>);

    impl Transport for Picky {
        fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
            let n: Vec<serde_json::Value> = serde_json::from_slice(req.body).unwrap();
            self.0.lock().unwrap().push(n.len());
            if String::from_utf8_lossy(req.body).contains("bad") {
                return Ok(resp(400, r#"{"error":"request has invalid structure"}"#));
            }
            Ok(resp(200, r#"{"sent_events":[],"failed_events":[]}"#))
        }
    }

    #[test]
    fn refused_batches_are_split_and_only_the_bad_event_is_dead_lettered() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let r = routes();
        let _ = std::fs::remove_file(&r.deadletter);
        let mut s = Sender::spawn(
            Box::new(Picky(sizes.clone())),
            r.clone(),
            Logger::memory(log::LevelFilter::Error),
            Source::Handover,
            1,
        )
        .map_err(|(e, _)| e)
        .unwrap();
        s.send(batch(
            1,
            5,
            r#"[{"n":1},{"n":2},{"n":"bad"},{"n":4},{"n":5}]"#,
        ));
        let t = Instant::now();
        while s.progress().delivered() < 5 {
            assert!(t.elapsed() < Duration::from_secs(5), "never settled");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(s.shutdown(Duration::from_secs(1)));
        assert_eq!(*sizes.lock().unwrap(), vec![5, 2, 3, 1, 2]);
        let stats = &s.progress().stats;
        assert_eq!(stats.sent_events.load(Ordering::Relaxed), 4);
        assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 1);
        let kept = std::fs::read_to_string(&r.deadletter).unwrap();
        assert!(
            kept.contains(r#""event":{"n":"bad"}"#) && kept.contains("HTTP 400"),
            "{kept}"
        );
    }

    fn answers(list: &[(u16, &str)]) -> Arc<Mutex<VecDeque<Result<Response, TransportError>>>> {
        Arc::new(Mutex::new(
            list.iter().map(|(st, b)| Ok(resp(*st, b))).collect(),
        ))
    }

    fn wait_delivered(s: &Sender, seq: u64, within: Duration) {
        let t = Instant::now();
        while s.progress().delivered() < seq {
            assert!(t.elapsed() < within, "never confirmed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn spawn_with(t: impl Transport + 'static, r: Routes) -> (Sender, Logger) {
        let _ = std::fs::remove_file(&r.deadletter);
        let log = Logger::memory(log::LevelFilter::Debug);
        let s = Sender::spawn(Box::new(t), r, log.clone(), Source::Handover, 1)
            .map_err(|(e, _)| e)
            .unwrap();
        (s, log)
    }

    fn routes_named(name: &str, permanent_after: Duration) -> Routes {
        let mut r = routes();
        r.deadletter = std::env::temp_dir().join(format!(
            "cn-sender-{}-{name}.deadletter.jsonl",
            std::process::id()
        ));
        r.permanent_after = permanent_after;
        r
    }

    #[test]
    fn a_request_where_every_event_failed_is_retried_never_dead_lettered() {
        let all_failed =
            r#"{"sent_events":[],"failed_events":[{"n":1},{"n":2}],"retry_events":[]}"#;
        let script = answers(&[(200, all_failed); 8]);
        let (mut s, log) = spawn_with(
            Scripted(script, Default::default()),
            routes_named("all-failed", Duration::ZERO),
        );
        s.send(batch(1, 2, r#"[{"n":1},{"n":2}]"#));
        wait_delivered(&s, 2, Duration::from_secs(20));
        assert!(s.shutdown(Duration::from_secs(1)));
        let stats = &s.progress().stats;
        assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
        assert_eq!(stats.failed_requests.load(Ordering::Relaxed), 8);
        assert!(log
            .lines()
            .iter()
            .any(|l| l.contains("could not process any")));
    }

    #[test]
    fn an_event_refused_while_others_are_taken_is_dead_lettered_only_after_a_span() {
        let partial = r#"{"sent_events":[{"n":1}],"failed_events":[{"n":2}]}"#;
        let again = r#"{"sent_events":[],"failed_events":[{"n":2}]}"#;
        let mut list = vec![(200, partial)];
        list.extend([(200, again); 7]);
        for (span, dead) in [(Duration::ZERO, 1), (Duration::from_secs(3600), 0)] {
            let (mut s, log) = spawn_with(
                Scripted(answers(&list), Default::default()),
                routes_named(&format!("span-{dead}"), span),
            );
            s.send(batch(1, 2, r#"[{"n":1},{"n":2}]"#));
            wait_delivered(&s, 2, Duration::from_secs(20));
            assert!(s.shutdown(Duration::from_secs(1)));
            assert_eq!(
                s.progress().stats.dead_lettered.load(Ordering::Relaxed),
                dead,
                "span {span:?}"
            );
            if dead == 1 {
                assert!(log.lines().iter().any(|l| l.contains("judged permanent")));
            }
        }
    }

    /// Refuses every event POST with Canopsis's 400.
    struct RefuseAll(Arc<Mutex<u32>>);

    impl Transport for RefuseAll {
        fn send(&mut self, _: Request<'_>) -> Result<Response, TransportError> {
            *self.0.lock().unwrap() += 1;
            Ok(resp(400, r#"{"error":"request has invalid structure"}"#))
        }
    }

    #[test]
    fn when_every_single_event_is_refused_it_is_a_configuration_fault() {
        let calls = Arc::new(Mutex::new(0));
        let r = routes_named("breaker", Duration::ZERO);
        let (mut s, log) = spawn_with(RefuseAll(calls.clone()), r.clone());
        let body = format!(
            "[{}]",
            (1..=64)
                .map(|i| format!("{{\"n\":{i}}}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        s.send(batch(1, 64, &body));
        let t = Instant::now();
        while !s.progress().failing() {
            assert!(t.elapsed() < Duration::from_secs(5), "never failing");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(s.shutdown(Duration::from_millis(200)));
        assert_eq!(s.progress().delivered(), 0);
        assert_eq!(s.progress().stats.dead_lettered.load(Ordering::Relaxed), 0);
        assert!(!r.deadletter.exists());
        assert!(*calls.lock().unwrap() < 20, "split down to every event");
        assert!(log
            .lines()
            .iter()
            .any(|l| l.contains("configuration problem") && l.contains("one by one")));
    }

    #[test]
    fn an_event_that_cannot_be_dead_lettered_is_not_confirmed() {
        let mut r = routes_named("unwritable", Duration::ZERO);
        r.deadletter = std::env::temp_dir().join("cn-no-such-dir/x.deadletter.jsonl");
        let (mut s, _log) = spawn_with(Picky(Default::default()), r);
        s.send(batch(1, 3, r#"[{"n":1},{"n":"bad"},{"n":3}]"#));
        std::thread::sleep(Duration::from_millis(300));
        assert!(s.progress().failing());
        assert_eq!(s.progress().delivered(), 0, "acknowledged while not kept");
        assert!(s.shutdown(Duration::from_millis(200)));
    }

    /// Panics on its first request.
    struct PanicsOnce(bool);

    impl Transport for PanicsOnce {
        fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
            if !std::mem::replace(&mut self.0, true) {
                panic!("bug in a transport");
            }
            Ok(resp(
                200,
                &format!(
                    "{{\"sent_events\":{},\"failed_events\":[]}}",
                    String::from_utf8_lossy(req.body)
                ),
            ))
        }
    }

    #[test]
    fn a_panic_in_the_sender_starts_its_loop_over_and_resends() {
        let (mut s, log) = spawn_with(PanicsOnce(false), routes_named("panic", Duration::ZERO));
        s.send(batch(1, 1, r#"[{"n":1}]"#));
        s.send(batch(2, 2, r#"[{"n":2}]"#));
        wait_delivered(&s, 2, Duration::from_secs(5));
        assert!(s.shutdown(Duration::from_secs(1)));
        let stats = &s.progress().stats;
        assert_eq!(stats.restarts.load(Ordering::Relaxed), 1);
        assert_eq!(stats.sent_events.load(Ordering::Relaxed), 2);
        assert!(log.lines().iter().any(|l| l.contains("starting over")));
    }

    /// A server that never answers until interrupted.
    struct Silent {
        gate: Receiver<()>,
        opener: ChannelSender<()>,
    }

    impl Transport for Silent {
        fn send(&mut self, _: Request<'_>) -> Result<Response, TransportError> {
            let _ = self.gate.recv_timeout(Duration::from_secs(60));
            Err(TransportError::Connect("interrupted".into()))
        }

        fn interrupter(&self) -> Option<Interrupt> {
            let opener = self.opener.clone();
            Some(Box::new(move || {
                let _ = opener.send(());
            }))
        }
    }

    #[test]
    fn closing_interrupts_a_request_a_silent_server_holds() {
        let (opener, gate) = crossbeam_channel::unbounded();
        let (mut s, _log) = spawn_with(
            Silent { gate, opener },
            routes_named("silent", Duration::ZERO),
        );
        s.send(batch(1, 1, "[{}]"));
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        assert!(s.shutdown(Duration::from_secs(4)), "thread left running");
        assert!(
            t.elapsed() < STALL + Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(s.progress().delivered(), 0);
    }

    #[test]
    fn shutdown_with_a_dead_endpoint_keeps_its_budget() {
        let script = Arc::new(Mutex::new(VecDeque::from(
            (0..100)
                .map(|_| Err(TransportError::Timeout))
                .collect::<Vec<_>>(),
        )));
        let log = Logger::memory(log::LevelFilter::Error);
        let mut s = Sender::spawn(
            Box::new(Scripted(script, Default::default())),
            routes(),
            log,
            Source::Handover,
            1,
        )
        .map_err(|(e, _)| e)
        .unwrap();
        s.send(batch(1, 1, "[{}]"));
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        assert!(s.shutdown(Duration::from_secs(1)));
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(s.progress().delivered(), 0);
    }

    /// Answers after a random pause, and fails one request in five: the
    /// lanes' requests overlap and retry on their own.
    struct Jittery {
        seen: Arc<Mutex<Vec<(u64, u64)>>>,
        seed: u64,
        in_flight: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    impl Jittery {
        /// The transport, what it will see (object, number) and the most
        /// requests it will have had at once.
        #[allow(clippy::type_complexity)]
        fn new() -> (Jittery, Arc<Mutex<Vec<(u64, u64)>>>, Arc<AtomicUsize>) {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let most = Arc::new(AtomicUsize::new(0));
            let t = Jittery {
                seen: seen.clone(),
                seed: 0x2545_f491_4f6c_dd1d,
                in_flight: Arc::new(AtomicUsize::new(0)),
                most: most.clone(),
            };
            (t, seen, most)
        }
    }

    impl Transport for Jittery {
        fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(self.seed % 4));
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.seed.is_multiple_of(5) {
                return Ok(resp(500, "oops"));
            }
            let events: Vec<serde_json::Value> = serde_json::from_slice(req.body).unwrap();
            let mut seen = self.seen.lock().unwrap();
            for e in &events {
                seen.push((e["o"].as_u64().unwrap(), e["n"].as_u64().unwrap()));
            }
            Ok(resp(
                200,
                &format!(
                    r#"{{"sent_events":{},"failed_events":[]}}"#,
                    String::from_utf8_lossy(req.body)
                ),
            ))
        }

        fn fork(&self) -> Option<Box<dyn Transport>> {
            Some(Box::new(Jittery {
                seen: self.seen.clone(),
                seed: self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
                in_flight: self.in_flight.clone(),
                most: self.most.clone(),
            }))
        }
    }

    /// Object `o`'s numbers, in the order the transport saw them.
    fn numbers_of(seen: &[(u64, u64)], o: u64) -> Vec<u64> {
        seen.iter()
            .filter(|(x, _)| *x == o)
            .map(|(_, n)| *n)
            .collect()
    }

    #[test]
    fn several_requests_in_flight_keep_each_objects_order() {
        let (t, seen, most) = Jittery::new();
        let log = Logger::memory(log::LevelFilter::Error);
        let s = Sender::spawn(Box::new(t), routes(), log, Source::Handover, 4)
            .map_err(|(e, _)| e)
            .unwrap();
        // 5 objects, 40 changes each, in batches of 4 events of one lane.
        let lanes = 4;
        let mut batchers: Vec<Batcher> = (0..lanes)
            .map(|l| Batcher::new(4, MAX_BODY_BYTES, Duration::from_secs(60)).for_lane(l))
            .collect();
        let mut router = crate::lanes::Router::new(lanes);
        let mut seq = 0;
        for n in 0..40u64 {
            for o in 0..5u64 {
                seq += 1;
                let lane = router.lane(crate::lanes::Key::Object(o, 0), seq, 1, 1);
                let json = format!(r#"{{"o":{o},"n":{n}}}"#);
                batchers[lane].push(seq, json.as_bytes(), Instant::now());
                if batchers[lane].due(Instant::now()) {
                    assert!(s.send(Work::Events(batchers[lane].take().unwrap())));
                }
            }
        }
        for b in &mut batchers {
            if let Some(batch) = b.take() {
                assert!(s.send(Work::Events(batch)));
            }
        }
        wait_delivered(&s, seq, Duration::from_secs(20));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 200, "each event once");
        for o in 0..5 {
            assert_eq!(
                numbers_of(&seen, o),
                (0..40).collect::<Vec<_>>(),
                "object {o}"
            );
        }
        assert!(most.load(Ordering::SeqCst) > 1, "requests overlapped");
    }

    #[test]
    fn the_spool_is_read_back_through_the_lanes_and_older_records_in_order() {
        let dir = std::env::temp_dir().join(format!("cn-readback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = spool::SpoolConfig {
            dir: dir.clone(),
            max_bytes: 1 << 20,
        };
        let log = Logger::memory(log::LevelFilter::Error);
        let (mut w, r) = spool::open(&cfg, &log).unwrap();
        // What a spool written before lanes holds (no object), then
        // records with their object, as this version writes them.
        for n in 0..6u64 {
            let json = format!(r#"{{"o":9,"n":{n}}}"#);
            w.append(&spool::Record::Event(json.into_bytes())).unwrap();
        }
        for n in 0..20u64 {
            for o in 0..4u64 {
                let json = format!(r#"{{"o":{o},"n":{n}}}"#);
                w.append(&spool::Record::Keyed((o, 0), json.into_bytes()))
                    .unwrap();
            }
        }
        w.commit().unwrap();
        let (t, seen, most) = Jittery::new();
        let source = Source::Spool {
            reader: Box::new(r),
            max_events: 3,
            max_age: Duration::from_secs(60),
        };
        let mut s = Sender::spawn(Box::new(t), routes(), log.clone(), source, 4)
            .map_err(|(e, _)| e)
            .unwrap();
        w.hurry();
        wait_delivered(&s, 86, Duration::from_secs(20));
        assert!(s.shutdown(Duration::from_secs(2)));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 86, "each record once");
        let older: Vec<usize> = (0..seen.len()).filter(|&i| seen[i].0 == 9).collect();
        assert_eq!(older, (0..6).collect::<Vec<_>>(), "older records first");
        assert_eq!(numbers_of(&seen, 9), (0..6).collect::<Vec<_>>());
        for o in 0..4 {
            assert_eq!(
                numbers_of(&seen, o),
                (0..20).collect::<Vec<_>>(),
                "object {o}"
            );
        }
        assert!(most.load(Ordering::SeqCst) > 1, "requests overlapped");
        // The checkpoint followed: nothing is read again at the next start.
        drop(w);
        let (_w, mut r) = spool::open(&cfg, &log).unwrap();
        assert!(r.next_record().is_none(), "all confirmed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
