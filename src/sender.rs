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

mod delivery;
mod events;
mod pbehaviors;
mod threads;
mod worker;

use crate::backoff::Backoff;
use crate::config::DowntimeConfig;
use crate::config::Framing;
use crate::deadletter::DeadLetter;
use crate::logger::{panic_message, Logger};
use crate::progress::Progress;
use crate::readback::Readback;
use crate::sink::canopsis::pbehavior::Resolver;
use crate::sink::Sink;
use crate::spool;
use crate::transport::{Interrupt, Request, Response, Transport, TransportError};
use crate::work::{hand, Work, MAX_BULK};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender as ChannelSender};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use worker::Worker;

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
        /// How the sink frames a batch.
        framing: Framing,
    },
}

/// A lane's work, as handed over.
struct Feed {
    rx: Receiver<Work>,
    /// Work received while gathering, not part of it: delivered next.
    ahead: Option<Work>,
}

/// Events gathered for one Mattermost delivery at most.
pub const MAX_GATHERED: usize = 10_000;

impl Feed {
    /// The next work, waiting for it; `None` once there is no more.
    fn next(&mut self) -> Option<Work> {
        self.ahead.take().or_else(|| self.rx.recv().ok())
    }

    /// `first` with the work queued right behind it that goes in the same
    /// delivery, taken without waiting: for the bulk route, consecutive
    /// downtimes (up to [`MAX_BULK`]); for Mattermost, consecutive batches
    /// of events (up to [`MAX_GATHERED`] events), as what waits decides
    /// between messages and a summary.
    fn gather(&mut self, first: Work, routes: &Routes) -> Work {
        match first {
            Work::Downtime { seq, action, .. } if routes.bulk => {
                let (mut actions, mut last) = (vec![action], seq);
                self.join_queued(|work| match work {
                    Work::Downtime { seq, action, .. } if actions.len() < MAX_BULK => {
                        actions.push(action);
                        last = seq;
                        None
                    }
                    other => Some(other),
                });
                Work::Pbehaviors { seq: last, actions }
            }
            Work::Events(mut batch) if matches!(routes.sink, Sink::Mattermost(_)) => {
                self.join_queued(|work| match work {
                    Work::Events(next) if batch.count < MAX_GATHERED => {
                        // Both are JSON arrays: `[a,b]` + `[c]` is `[a,b,c]`.
                        batch.body.pop();
                        batch.body.push(b',');
                        batch
                            .body
                            .extend_from_slice(next.body.get(1..).unwrap_or_default());
                        batch.count += next.count;
                        batch.last_seq = next.last_seq;
                        None
                    }
                    other => Some(other),
                });
                Work::Events(batch)
            }
            other => other,
        }
    }

    /// Hands `join` the work queued, without waiting, until it gives one
    /// back (kept for [`next`](Self::next)) or nothing more is queued.
    fn join_queued(&mut self, mut join: impl FnMut(Work) -> Option<Work>) {
        while self.ahead.is_none() {
            let Ok(work) = self.rx.try_recv() else {
                break;
            };
            self.ahead = join(work);
        }
    }
}

/// Where the sender sends.
#[derive(Debug, Clone)]
pub struct Routes {
    /// What the peer is, and what its answers mean.
    pub sink: Sink,
    /// `canopsis_event_route`.
    pub event_route: String,
    /// Pbehavior routes and names.
    pub downtime: DowntimeConfig,
    /// `send_data_test=1`: fixed pbehavior ids, no lookups.
    pub placeholder_ids: bool,
    /// Where refused events are kept.
    pub deadletter: std::path::PathBuf,
    /// `canopsis_downtime_route` is the bulk route: consecutive downtimes
    /// go in one request.
    pub bulk: bool,
    /// Where Mattermost threads' roots are kept (threads through a bot
    /// account), beside the log.
    pub threads_file: std::path::PathBuf,
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

/// While the connector closes, nothing moving this long (no request began
/// or ended, nothing confirmed) means the peer holds its requests without
/// answering (or a connect hangs): the sender is stopped then, before its
/// budget is spent, as waiting longer buys nothing (broker or the spool
/// keeps what is not confirmed). A peer that answers moves sooner.
pub const STALL: Duration = Duration::from_millis(250);

/// How long stopped threads get to return. An interrupted request returns
/// at once; a TCP connect or name resolution in progress cannot be
/// interrupted and ends on its own timeout: its thread is left to finish
/// (the library is linked `-z nodelete`, so its code stays mapped) rather
/// than hold broker's stop.
pub const JOIN_GRACE: Duration = Duration::from_millis(200);

/// Time the sender gets to deliver what it holds when the Lua state closes
/// (none while it is failing; less when nothing moves for
/// [`STALL`]). Broker closes its outputs one after another,
/// and cbwd kills cbd 15 s after SIGTERM: with the final flush's
/// [`crate::connector::FLUSH_WAIT`] and [`JOIN_GRACE`], an output closes
/// within 1 s whatever its peer does, so five stop within 5 s. The final
/// flush gets the larger share, as only what it sees delivered is
/// acknowledged (what is delivered after it is sent again at the next
/// start). What is left (a paced Mattermost queue, a peer too slow) was
/// never acknowledged, and stays in broker's retention (or the spool).
pub const CLOSE_BUDGET: Duration = Duration::from_millis(300);

/// How often the closing connector looks at the threads.
const CLOSE_TICK: Duration = Duration::from_millis(10);

/// How the sender's threads ended when the connector closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// They returned by themselves: their work was done, or the budget was
    /// nothing (a failing peer) and they stopped at once.
    Returned,
    /// They were stopped when the budget ran out while the peer was still
    /// answering (a long or paced queue).
    BudgetSpent(Duration),
    /// They were stopped early: nothing moved for this long (a peer that
    /// takes requests and never answers, or a connect that hangs).
    Stalled(Duration),
}

/// What [`Sender::close`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// How the threads ended.
    pub ending: Ending,
    /// Whether every thread returned and was joined (one stuck in a connect
    /// is left to finish past [`JOIN_GRACE`]).
    pub joined: bool,
}

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
            framing,
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
                        (max_events, max_age, framing),
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
                dead: DeadLetter::new(routes.deadletter.clone(), log.clone())
                    .naming(routes.sink.peer()),
                resolver: resolver.clone(),
                routes: routes.clone(),
                log: log.clone(),
                shared: shared.clone(),
                wake: wake_rx.clone(),
                backoff: Backoff::new(),
                pbh_refused_in_a_row: 0,
                lane,
                spooled,
                last_request: None,
                threads: crate::sink::mattermost::threads::Threads::default(),
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

    /// [`close`](Self::close), saying only whether every thread returned:
    /// what the tests ask (the connector reads the whole [`Closed`]).
    #[cfg(test)]
    pub fn shutdown(&mut self, budget: Duration) -> bool {
        self.close(budget).joined
    }

    /// Asks the threads to deliver what they hold within `budget`, then
    /// stops them, interrupting their requests in flight, and joins them;
    /// stopped earlier when nothing moved for [`STALL`] (a silent peer
    /// must not hold broker's stop). Returns within `budget` plus
    /// [`JOIN_GRACE`] at most; a thread that did not return by then (a
    /// connect or name resolution in progress) is left to finish. What was
    /// not confirmed is handed back: it was never acknowledged (or stays
    /// in the spool). Logs nothing: the connector says in one line what
    /// was handed back, and where it stays.
    pub fn close(&mut self, budget: Duration) -> Closed {
        let mut closed = Closed {
            ending: Ending::Returned,
            joined: true,
        };
        if self.threads.is_empty() {
            return closed;
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
        // judged stalled; a request already waiting keeps its start time.
        if progress.in_flight.load(Ordering::Acquire) == 0 {
            progress.stir();
        }
        let returned = loop {
            match self.done.recv_timeout(CLOSE_TICK) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => break true,
            }
            let still = progress.still_for();
            if Instant::now() >= deadline {
                closed.ending = Ending::BudgetSpent(budget);
                break false;
            }
            if still >= STALL {
                closed.ending = Ending::Stalled(still);
                break false;
            }
        };
        if returned && !budget.is_zero() && Instant::now() >= deadline {
            // They stopped themselves for want of budget (a paced queue).
            closed.ending = Ending::BudgetSpent(budget);
        }
        if !returned {
            self.shared.set_deadline(Instant::now());
            for interrupt in self.interrupts.drain(..) {
                interrupt();
            }
            wake_all(&self.wake);
            if let Err(RecvTimeoutError::Timeout) = self.done.recv_timeout(JOIN_GRACE) {
                self.threads.clear();
                closed.joined = false;
                return closed;
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        closed
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.close(CLOSE_BUDGET);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, Batcher, MAX_BODY_BYTES};
    use crate::config::ParamValue;
    use crate::transport::tests::resp;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize;

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
            sink: Sink::Canopsis,
            event_route: cfg.http.event_route,
            downtime: cfg.downtime,
            placeholder_ids: false,
            deadletter: std::env::temp_dir()
                .join(format!("cn-sender-{}.deadletter.jsonl", std::process::id())),
            bulk: false,
            threads_file: std::env::temp_dir()
                .join(format!("cn-sender-{}.threads", std::process::id())),
        }
    }

    /// `{"n":1}`, `{"o":..}` and `{}` as Canopsis events that pass its
    /// per-event rules (checked before sending).
    fn ev(s: &str) -> String {
        const VALID: &str = r#"{"event_type":"check","state":0,"connector":"c","connector_name":"n","component":"h""#;
        s.replace("{\"n\":", &format!("{VALID},\"n\":"))
            .replace("{\"o\":", &format!("{VALID},\"o\":"))
            .replace("{}", &format!("{VALID}}}"))
    }

    fn batch(first: u64, last: u64, body: &str) -> Work {
        batch_raw(first, last, &ev(body))
    }

    fn batch_raw(first: u64, last: u64, body: &str) -> Work {
        Work::Events(Batch {
            first_seq: first,
            last_seq: last,
            count: (last - first + 1) as usize,
            body: body.as_bytes().to_vec(),
            lane: 0,
        })
    }

    #[test]
    fn retries_until_confirmed_and_resends_from_the_first_failed_event() {
        let script = Arc::new(Mutex::new(VecDeque::from(vec![
            Err(TransportError::Connect("refused".into())),
            Ok(resp(
                200,
                &ev(r#"{"sent_events":[{"n":1}],"failed_events":[{"n":2}]}"#),
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
        assert_eq!(seen[2], ev(r#"[{"n":2}]"#).as_bytes());
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

    /// A JSON receiver: Canopsis's 400 proves nothing, its events pass the
    /// rules that do.
    #[test]
    fn refused_batches_are_split_and_only_the_bad_event_is_dead_lettered() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let mut r = routes_named("picky");
        r.sink = Sink::Documents(Framing::Array);
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
        s.send(batch_raw(
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
        // Halves down to the bad one alone, then an empty request taken and
        // the bad one refused again: proof enough.
        assert_eq!(*sizes.lock().unwrap(), vec![5, 2, 3, 1, 0, 1, 2]);
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

    fn routes_named(name: &str) -> Routes {
        let mut r = routes();
        r.deadletter = std::env::temp_dir().join(format!(
            "cn-sender-{}-{name}.deadletter.jsonl",
            std::process::id()
        ));
        r
    }

    #[test]
    fn a_request_where_every_event_failed_is_retried_never_dead_lettered() {
        let all_failed =
            ev(r#"{"sent_events":[],"failed_events":[{"n":1},{"n":2}],"retry_events":[]}"#);
        let script = answers(&[(200, all_failed.as_str()); 8]);
        let (mut s, log) = spawn_with(
            Scripted(script, Default::default()),
            routes_named("all-failed"),
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

    /// What Canopsis fails beyond its per-event rules is its backend's
    /// doing: sent again, in order, never dead-lettered, however long.
    #[test]
    fn an_event_canopsis_keeps_failing_is_resent_in_order_never_dead_lettered() {
        let partial = ev(r#"{"sent_events":[{"n":1}],"failed_events":[{"n":2}]}"#);
        let again = ev(r#"{"sent_events":[],"failed_events":[{"n":2}]}"#);
        let mut list = vec![(200, partial.as_str())];
        list.extend([(200, again.as_str()); 7]);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut s, log) = spawn_with(Scripted(answers(&list), seen.clone()), routes_named("span"));
        s.send(batch(1, 2, r#"[{"n":1},{"n":2}]"#));
        wait_delivered(&s, 2, Duration::from_secs(20));
        assert!(s.shutdown(Duration::from_secs(1)));
        assert_eq!(s.progress().stats.dead_lettered.load(Ordering::Relaxed), 0);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 9);
        assert!(seen[1..].iter().all(|b| b == ev(r#"[{"n":2}]"#).as_bytes()));
        assert!(log
            .lines()
            .iter()
            .any(|l| l.contains("goes again from the first failed event on")));
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
        let r = routes_named("breaker");
        let (mut s, log) = spawn_with(RefuseAll(calls.clone()), r.clone());
        let body = format!(
            "[{}]",
            (1..=64)
                .map(|i| ev(&format!("{{\"n\":{i}}}")))
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
            .any(|l| l.contains("configuration problem") && l.contains("per-event rules")));
    }

    #[test]
    fn an_event_that_cannot_be_dead_lettered_is_not_confirmed() {
        let mut r = routes_named("unwritable");
        r.deadletter = std::env::temp_dir().join("cn-no-such-dir/x.deadletter.jsonl");
        let (mut s, _log) = spawn_with(Picky(Default::default()), r);
        // The second event breaks Canopsis's rules: it is to be dead-lettered.
        s.send(batch(1, 3, r#"[{"n":1},{"event_type":1},{"n":3}]"#));
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
        let (mut s, log) = spawn_with(PanicsOnce(false), routes_named("panic"));
        s.send(batch(1, 1, r#"[{"n":1}]"#));
        s.send(batch(2, 2, r#"[{"n":2}]"#));
        wait_delivered(&s, 2, Duration::from_secs(5));
        assert!(s.shutdown(Duration::from_secs(1)));
        let stats = &s.progress().stats;
        assert_eq!(stats.restarts.load(Ordering::Relaxed), 1);
        assert_eq!(stats.sent_events.load(Ordering::Relaxed), 2);
        assert!(log.lines().iter().any(|l| l.contains("starting over")));
    }

    /// Closing with Mattermost messages waiting on the pace: none more is
    /// posted, they are left unacknowledged to broker.
    #[test]
    fn closing_hands_back_paced_mattermost_messages_instead_of_posting_them() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut r = routes_named("paced");
        r.sink = Sink::Mattermost(crate::config::MattermostSettings {
            username: None,
            icon_url: None,
            channel: None,
            per_second: 1,
            summary_after: 10,
            buttons: None,
            bot: None,
        });
        let (mut s, log) = spawn_with(Scripted(Default::default(), seen.clone()), r);
        let body = r#"[{"summary":"OK","post":{"text":"a"}},{"summary":"OK","post":{"text":"b"}},{"summary":"OK","post":{"text":"c"}}]"#;
        s.send(batch_raw(1, 3, body));
        while seen.lock().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(s.shutdown(Duration::from_secs(10)));
        assert_eq!(seen.lock().unwrap().len(), 1, "posted while closing");
        assert_eq!(s.progress().delivered(), 0);
        assert!(log.lines().iter().any(|l| l.contains("not paced out")));
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
        let (mut s, _log) = spawn_with(Silent { gate, opener }, routes_named("silent"));
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

    /// Takes every request, answering each after 40 ms.
    struct Steady;

    impl Transport for Steady {
        fn send(&mut self, _: Request<'_>) -> Result<Response, TransportError> {
            std::thread::sleep(Duration::from_millis(40));
            Ok(resp(200, r#"{"sent_events":[],"failed_events":[]}"#))
        }
    }

    #[test]
    fn close_says_how_the_threads_ended_and_returns_soon_after_its_budget() {
        let (opener, gate) = crossbeam_channel::unbounded();
        let (mut s, _log) = spawn_with(Silent { gate, opener }, routes_named("close-silent"));
        s.send(batch(1, 1, "[{}]"));
        std::thread::sleep(Duration::from_millis(50));
        let closed = s.close(Duration::from_secs(10));
        assert!(
            matches!(closed.ending, Ending::Stalled(still) if still >= STALL) && closed.joined,
            "{closed:?}"
        );
        // A peer that answers, with more queued than the budget allows:
        // stopped at the end of the budget, the rest handed back.
        let (mut s, _log) = spawn_with(Steady, routes_named("close-steady"));
        for n in 1..=100 {
            s.send(batch(n, n, "[{}]"));
        }
        let budget = Duration::from_millis(300);
        let t = Instant::now();
        let closed = s.close(budget);
        let took = t.elapsed();
        assert_eq!(closed.ending, Ending::BudgetSpent(budget));
        assert!(closed.joined);
        assert!(
            took < budget + JOIN_GRACE + Duration::from_secs(1),
            "{took:?}"
        );
        let delivered = s.progress().delivered();
        assert!(delivered > 0 && delivered < 100, "{delivered}");
        // Once closed, closing again is nothing.
        assert_eq!(s.close(budget).ending, Ending::Returned);
    }

    #[test]
    fn a_connect_that_hangs_does_not_hold_the_close() {
        use std::net::{TcpListener, TcpStream};
        // A listener that never accepts: once its backlog is full, the
        // kernel drops further SYNs and a connect hangs (on loopback).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        let full = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(c) => held.push(c),
                Err(e) => break e,
            }
            assert!(held.len() < 10_000, "the backlog never filled");
        };
        if full.kind() != std::io::ErrorKind::TimedOut {
            // tcp_abort_on_overflow=1: a full backlog refuses at once.
            eprintln!("skipped: a full backlog answers {full}");
            return;
        }
        let mut p = crate::config::tests::minimal();
        for (k, v) in [
            ("canopsis_host", ParamValue::Str("127.0.0.1".into())),
            ("canopsis_port", ParamValue::Int(addr.port().into())),
            ("sending_protocol", ParamValue::Str("http".into())),
        ] {
            p.insert(k.into(), v);
        }
        let cfg = crate::config::parse(&p).unwrap().config;
        let log = Logger::memory(log::LevelFilter::Debug);
        let http = crate::transport::Http::new(&cfg.http, 1, log.clone()).unwrap();
        let mut s = Sender::spawn(Box::new(http), routes(), log, Source::Handover, 1)
            .map_err(|(e, _)| e)
            .unwrap();
        s.send(batch(1, 1, "[{}]"));
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        let closed = s.close(Duration::from_millis(300));
        let took = t.elapsed();
        // The connect cannot be interrupted: its thread is left to finish
        // on its own timeout rather than hold the close.
        assert!(!closed.joined, "{closed:?}");
        assert!(
            took < Duration::from_millis(300) + JOIN_GRACE + Duration::from_secs(1),
            "{took:?}"
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
                let json = ev(&format!(r#"{{"o":{o},"n":{n}}}"#));
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
        let cfg = crate::config::SpoolConfig {
            dir: dir.clone(),
            max_bytes: 1 << 20,
        };
        let log = Logger::memory(log::LevelFilter::Error);
        let (mut w, r) = spool::open(&cfg, &log).unwrap();
        // What a spool written before lanes holds (no object), then
        // records with their object, as this version writes them.
        for n in 0..6u64 {
            let json = ev(&format!(r#"{{"o":9,"n":{n}}}"#));
            w.append(&spool::Record::Event(json.into_bytes())).unwrap();
        }
        for n in 0..20u64 {
            for o in 0..4u64 {
                let json = ev(&format!(r#"{{"o":{o},"n":{n}}}"#));
                w.append(&spool::Record::Keyed((o, 0), json.into_bytes()))
                    .unwrap();
            }
        }
        w.commit().unwrap();
        let (t, seen, most) = Jittery::new();
        let source = Source::Spool {
            framing: Framing::Array,
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
