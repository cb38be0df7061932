//! Reading the spool back into the lanes.
//!
//! One thread reads the spool in order and hands its records to the lanes
//! as the connector hands over broker's events without the spool: each
//! object's events through one lane while any of them may be unconfirmed
//! ([`Router`]), batched per lane. It moves the spool's checkpoint up to
//! what every lane confirmed, never past a record still waiting in a batch.
//!
//! Spools written before lanes hold events without their object: those go
//! through one lane, in order, and the lanes are emptied before and after
//! them, so no object's events overtake each other across the change.

use crate::batch::{Batcher, MAX_BODY_BYTES};
use crate::config::Framing;
use crate::lanes::{downtime_cost, Key, Router};
use crate::logger::Logger;
use crate::progress::Progress;
use crate::spool::{self, Record};
use crate::work::Work;
use crossbeam_channel::Sender as ChannelSender;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the reader sleeps when there is nothing to do.
const IDLE: Duration = Duration::from_millis(20);

/// Bytes of records read back and not yet confirmed (handed to the lanes,
/// or waiting in a batch) past which reading pauses: what the read-back
/// holds in memory, whatever `max_buffer_size` and the lanes (one record
/// more at most). Four full bodies ([`MAX_BODY_BYTES`]): enough for every
/// lane to have a batch in flight and the next one ready at common sizes.
pub const READ_AHEAD_BYTES: usize = 4 * MAX_BODY_BYTES;

/// The spool's read side, handing records to the lanes.
pub struct Readback {
    reader: Box<spool::Reader>,
    batchers: Vec<Batcher>,
    router: Router,
    lanes: Vec<ChannelSender<Work>>,
    progress: Arc<Progress>,
    /// The last record handed to a lane.
    handed: u64,
    /// Where the checkpoint was last moved.
    confirmed: u64,
    /// Whether the records read last came without their object.
    keyless: bool,
    /// Records handed over and not confirmed after which reading pauses.
    read_ahead: u64,
    /// Work handed over and not confirmed: its last record and its bytes.
    unconfirmed: VecDeque<(u64, usize)>,
    /// Their bytes together.
    unconfirmed_bytes: usize,
    /// A lane's thread was found gone (and it was said).
    lanes_gone: bool,
    max_events: usize,
    bulk: bool,
    log: Logger,
}

impl Readback {
    /// Reads from `reader` into `lanes`, in batches of `max_events` or
    /// `max_age`, framed for the sink.
    pub fn new(
        reader: Box<spool::Reader>,
        lanes: Vec<ChannelSender<Work>>,
        progress: Arc<Progress>,
        (max_events, max_age, framing): (usize, Duration, Framing),
        bulk: bool,
        log: Logger,
    ) -> Readback {
        let n = lanes.len().max(1);
        Readback {
            reader,
            batchers: (0..n)
                .map(|lane| {
                    Batcher::new(max_events, MAX_BODY_BYTES, max_age)
                        .for_lane(lane)
                        .framed(framing)
                })
                .collect(),
            router: Router::new(n),
            lanes,
            progress,
            handed: 0,
            confirmed: 0,
            keyless: false,
            read_ahead: (2 * n * max_events.max(1)).max(1000) as u64,
            unconfirmed: VecDeque::new(),
            unconfirmed_bytes: 0,
            lanes_gone: false,
            max_events,
            bulk,
            log,
        }
    }

    /// Reads and hands over. Once `stopping` gives the lanes' deadline,
    /// what is committed is still read and handed over (the lanes get the
    /// close budget to deliver it, as broker's events without the spool);
    /// then the lanes finish and the checkpoint moves a last time.
    pub fn run(&mut self, stopping: &dyn Fn() -> Option<Instant>) {
        loop {
            let delivered = self.checkpoint();
            let stop = stopping();
            let now = Instant::now();
            if stop.is_some_and(|deadline| now >= deadline) {
                break;
            }
            // A lane's part-filled batch goes when it is old enough, even
            // while other lanes keep the reader busy.
            self.hand_over(|b| b.due(now));
            let waiting = self.handed.saturating_sub(delivered);
            if self.held_bytes(delivered) >= READ_AHEAD_BYTES {
                // Part-filled batches count too: they go now rather than
                // wait for their age while reading waits for them.
                self.hand_over(|_| true);
            }
            if waiting >= self.read_ahead || self.held_bytes(delivered) >= READ_AHEAD_BYTES {
                self.pause();
                continue;
            }
            match self.reader.next_record() {
                Some((seq, record)) => self.route(seq, record, stopping),
                // Stopping, and everything committed is read.
                None if stop.is_some() => break,
                None => {
                    if self.reader.hurried() {
                        self.hand_over(|_| true);
                    }
                    self.reader.wait(IDLE);
                }
            }
        }
        self.hand_over(|_| true);
        // Closing the channels lets each lane stop once its work is done.
        self.lanes.clear();
        while let Some(deadline) = stopping() {
            if self.progress.delivered() >= self.handed || Instant::now() >= deadline {
                break;
            }
            self.pause();
        }
        self.checkpoint();
    }

    /// Starts over from the checkpoint after an internal error: once the
    /// lanes confirmed what they hold, what was read and not handed over
    /// is read again.
    pub fn restart(&mut self, stopping: &dyn Fn() -> Option<Instant>) {
        while !past(stopping) && self.progress.delivered() < self.handed {
            self.pause();
        }
        self.checkpoint();
        for b in &mut self.batchers {
            let _ = b.take();
        }
        self.router.drained();
        self.reader.rewind();
    }

    fn route(
        &mut self,
        seq: u64,
        record: Result<Record, String>,
        stopping: &dyn Fn() -> Option<Instant>,
    ) {
        let now = Instant::now();
        match record {
            Ok(Record::Keyed((host, service), json)) => {
                if !self.switch(false, stopping) {
                    return;
                }
                let lane = self.router.lane(Key::Object(host, service), seq, 1, 1);
                self.push(lane, seq, &json, now);
            }
            Ok(Record::Event(json)) => {
                if !self.switch(true, stopping) {
                    return;
                }
                self.push(0, seq, &json, now);
            }
            Ok(Record::Downtime(action)) => {
                let (weight, together) =
                    downtime_cost(action.creates(), self.bulk, self.max_events);
                let key = Key::downtime(action.name());
                let lane = self.router.lane(key, seq, weight, together);
                self.send(Work::Downtime { seq, action, lane });
            }
            Err(reason) => self.send(Work::Unreadable { seq, reason }),
        }
    }

    fn push(&mut self, lane: usize, seq: u64, json: &[u8], now: Instant) {
        let b = &mut self.batchers[lane];
        b.push(seq, json, now);
        if b.due(now) {
            if let Some(batch) = b.take() {
                self.send(Work::Events(batch));
            }
        }
    }

    /// Before records with (or without) their object follow the other
    /// kind, waits until the lanes confirmed everything read so far.
    /// `false` when the close budget ran out first: the record is read
    /// again at the next start.
    fn switch(&mut self, keyless: bool, stopping: &dyn Fn() -> Option<Instant>) -> bool {
        if keyless == self.keyless {
            return true;
        }
        self.hand_over(|_| true);
        while self.progress.delivered() < self.handed {
            if past(stopping) {
                return false;
            }
            self.pause();
        }
        self.router.drained();
        self.keyless = keyless;
        true
    }

    fn hand_over(&mut self, due: impl Fn(&Batcher) -> bool) {
        for lane in 0..self.batchers.len() {
            if due(&self.batchers[lane]) {
                if let Some(batch) = self.batchers[lane].take() {
                    self.send(Work::Events(batch));
                }
            }
        }
    }

    /// Bytes read back and not confirmed: handed over (as far as
    /// `delivered` says) and waiting in batches. Work is let go in the
    /// order it was handed over: a batch sent for its age, behind a later
    /// one, counts until that one is confirmed too (more, never less).
    fn held_bytes(&mut self, delivered: u64) -> usize {
        while let Some(&(last, bytes)) = self.unconfirmed.front() {
            if last > delivered {
                break;
            }
            self.unconfirmed.pop_front();
            self.unconfirmed_bytes -= bytes;
        }
        self.unconfirmed_bytes + self.batchers.iter().map(Batcher::bytes).sum::<usize>()
    }

    fn send(&mut self, work: Work) {
        let (first, last) = (work.first_seq(), work.last_seq());
        let bytes = work.held_bytes();
        if !crate::work::hand(&self.lanes, &self.progress, work) {
            // Once: the lanes stop together (the connector closing), and
            // every later record is left in the spool as well.
            if !self.lanes_gone {
                self.lanes_gone = true;
                self.log.error(format_args!(
                    "spool records from #{first} on not handed over: the sender threads are gone; they stay in the spool and are sent at the next start"
                ));
            }
            return;
        }
        self.handed = self.handed.max(last);
        self.unconfirmed.push_back((last, bytes));
        self.unconfirmed_bytes += bytes;
    }

    /// Moves the checkpoint to what the lanes confirmed, short of the
    /// oldest record still waiting in a batch; returns what they confirmed.
    fn checkpoint(&mut self) -> u64 {
        let delivered = self.progress.delivered();
        if self.handed == 0 {
            return delivered;
        }
        let waiting = self
            .batchers
            .iter()
            .filter_map(Batcher::first_seq)
            .min()
            .map_or(u64::MAX, |first| first - 1);
        let upto = delivered.min(self.handed).min(waiting);
        if upto > self.confirmed {
            self.reader.confirm(upto);
            self.confirmed = upto;
            self.router.confirmed(upto);
        }
        if upto >= self.handed && waiting == u64::MAX {
            self.router.drained();
        }
        delivered
    }

    /// Waits a little for the lanes to confirm something.
    fn pause(&self) {
        let next = self.progress.delivered() + 1;
        if !self.progress.wait_for(next, IDLE) && self.progress.failing() {
            std::thread::sleep(IDLE);
        }
    }
}

/// Whether the lanes' deadline (set once the connector closes) has passed.
fn past(stopping: &dyn Fn() -> Option<Instant>) -> bool {
    stopping().is_some_and(|deadline| Instant::now() >= deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_back_holds_at_most_its_bytes_whatever_the_batch_size_and_lanes() {
        let dir = std::env::temp_dir().join(format!("cn-readback-bound-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = crate::config::SpoolConfig {
            dir: dir.clone(),
            max_bytes: 1 << 30,
        };
        let log = Logger::memory(log::LevelFilter::Error);
        let (mut w, r) = spool::open(&cfg, &log).unwrap();
        // 24 MiB of big records, for 16 lanes of 10000-event batches:
        // counted in records, the read-back would take them all.
        let record = 256 * 1024;
        let count = 96u64;
        for n in 0..count {
            let json = format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(record - 32));
            w.append(&Record::Keyed((n % 40, 0), json.into_bytes()))
                .unwrap();
        }
        w.commit().unwrap();
        let lanes = 16;
        let (txs, rxs): (Vec<_>, Vec<_>) =
            (0..lanes).map(|_| crossbeam_channel::unbounded()).unzip();
        // Nothing is ever confirmed: what was read is still held when
        // reading stops, so the most ever held is what the lanes got.
        let progress = Arc::new(Progress::default());
        let mut rb = Readback::new(
            Box::new(r),
            txs,
            progress,
            (
                10_000,
                Duration::from_secs(3600),
                crate::config::Framing::Array,
            ),
            false,
            log,
        );
        let start = Instant::now();
        let until = start + Duration::from_millis(1500);
        rb.run(&|| (Instant::now() >= until).then_some(until));
        let held: usize = rxs
            .iter()
            .flat_map(|rx| rx.try_iter())
            .map(|work| match work {
                Work::Events(b) => b.body.len(),
                other => panic!("{other:?}"),
            })
            .sum();
        assert!(held > 0, "nothing read back");
        assert!(
            held <= READ_AHEAD_BYTES + record + 64,
            "held {held} bytes, bound {READ_AHEAD_BYTES}"
        );
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
