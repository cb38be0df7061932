//! Where accepted events wait before the sender takes them: per-lane
//! batches handed over (acknowledged on delivery), or the spool
//! (acknowledged once on disk, by group commit).

use super::outlet::{sender_gone, Outlet};
use super::{SPOOL_SYNC_BYTES, SPOOL_SYNC_INTERVAL};
use crate::batch::{Batcher, MAX_BODY_BYTES};
use crate::config::Config;
use crate::event::NebEvent;
use crate::lanes::Router;
use crate::logger::Logger;
use crate::spool;
use crate::spool::{AppendError, Record};
use crate::work::Work;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Where accepted events go before the sender takes them.
pub(super) enum Queue {
    /// Batches handed to the sender; acks wait for Canopsis.
    Handover(Handover),
    /// The spool; acks wait for the disk.
    Spool(Spooled),
}

pub(super) struct Handover {
    /// One per lane (`max_requests_in_flight`).
    pub(super) batchers: Vec<Batcher>,
    /// Which lane each object's work takes.
    pub(super) router: Router,
    pub(super) last_seq: u64,
    pub(super) wait_gate: Option<u64>,
}

pub(super) struct Spooled {
    /// `None` until the spool could be opened (see [`Outlet`]).
    pub(super) writer: Option<spool::Writer>,
    /// Events waiting for room in a full spool (never acknowledged).
    pub(super) waiting: VecDeque<Record>,
    /// How many events had to wait so.
    pub(super) full_waits: u64,
    /// The spool was found full and has not had room since.
    pub(super) full: bool,
    /// Writing failed: nothing is acknowledged any more.
    pub(super) broken: bool,
}

pub(super) fn hand_over(h: &mut Handover, outlet: &mut Outlet, log: &Logger) {
    for batch in h.batchers.iter_mut().filter_map(Batcher::take) {
        if !outlet.send(Work::Events(batch)) {
            sender_gone(log);
        }
    }
}

/// Hands over the batches that are due, each on its own: a lane whose
/// batch is full does not make the others send theirs part-filled.
pub(super) fn hand_over_due(h: &mut Handover, now: Instant, outlet: &mut Outlet, log: &Logger) {
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
pub(super) fn object_of(ev: &NebEvent) -> (u64, u64) {
    let (host, service) = match ev {
        NebEvent::Host(s) | NebEvent::Service(s) => (s.host_id, s.service_id),
        NebEvent::Ack(a) => (a.host_id, a.service_id),
        NebEvent::Downtime(d) => (d.host_id, d.service_id),
        NebEvent::Ba(b) => (Some(u64::MAX), b.ba_id),
    };
    (host.unwrap_or(0), service.unwrap_or(0))
}

impl Queue {
    /// Per-lane batches, or the spool (opened once the outlet starts).
    pub(super) fn new(cfg: &Config) -> Queue {
        let framing = cfg.sink.framing();
        match &cfg.spool {
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
        }
    }
}

impl Handover {
    pub(super) fn is_empty(&self) -> bool {
        self.batchers.iter().all(Batcher::is_empty)
    }

    /// `true` when everything received so far is confirmed; may wait up to
    /// `wait` for in-flight batches.
    pub(super) fn settle(
        &mut self,
        wait: Option<Duration>,
        outlet: &mut Outlet,
        log: &Logger,
    ) -> bool {
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
    pub(super) fn push(&mut self, record: Record, log: &Logger) {
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
    pub(super) fn sync_time(&self) -> Duration {
        self.writer
            .as_ref()
            .map_or(Duration::ZERO, |w| w.sync_time())
    }

    /// Moves waiting events into the spool while it has room, commits when
    /// due (or `now_please`), and says whether everything is on disk.
    pub(super) fn settle(&mut self, now_please: bool, now: Instant, log: &Logger) -> bool {
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

    pub(super) fn report_full(&self, log: &Logger) {
        let st = self.writer.as_ref().map(|w| w.stats()).unwrap_or_default();
        log.error(format_args!(
            "spool is full ({} bytes, {} events not yet confirmed by Canopsis): new events wait unacknowledged in broker's retention until Canopsis takes spooled ones; nothing is dropped",
            st.bytes, st.pending
        ));
    }

    pub(super) fn fail(&mut self, e: &std::io::Error, log: &Logger) {
        self.broken = true;
        log.error(format_args!(
            "cannot write the spool ({e}): from now on nothing is acknowledged and broker keeps every event; fix the disk and restart cbd"
        ));
    }
}
