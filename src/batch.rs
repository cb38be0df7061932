//! Bulking: events wait here until a POST is worth it.

use std::time::{Duration, Instant};

/// Bodies stay under nginx's stock `client_max_body_size` (7 MiB in the
/// Canopsis image) with room to spare.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A JSON array of events ready to POST, with the sequence numbers it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Sequence number of the first event.
    pub first_seq: u64,
    /// Sequence number of the last event.
    pub last_seq: u64,
    /// Number of events.
    pub count: usize,
    /// `[ev,ev,...]`.
    pub body: Vec<u8>,
    /// The lane it goes through ([`crate::lanes`]).
    pub lane: usize,
}

/// Accumulates serialized events until `max_events`, `max_bytes` or `max_age`
/// says the batch is due.
#[derive(Debug)]
pub struct Batcher {
    body: Vec<u8>,
    count: usize,
    first_seq: u64,
    last_seq: u64,
    oldest: Option<Instant>,
    max_events: usize,
    max_bytes: usize,
    max_age: Duration,
    lane: usize,
    /// The last batch's size: what the next one reserves when it starts.
    expect: usize,
}

impl Batcher {
    /// A batcher cutting at `max_events` events, `max_bytes` bytes or
    /// `max_age` since the oldest event arrived.
    pub fn new(max_events: usize, max_bytes: usize, max_age: Duration) -> Batcher {
        Batcher {
            body: Vec::new(),
            count: 0,
            first_seq: 0,
            last_seq: 0,
            oldest: None,
            max_events: max_events.max(1),
            max_bytes,
            max_age,
            lane: 0,
            expect: 0,
        }
    }

    /// The same, for the batches of lane `lane`.
    pub fn for_lane(mut self, lane: usize) -> Batcher {
        self.lane = lane;
        self
    }

    /// Adds one serialized event.
    pub fn push(&mut self, seq: u64, json: &[u8], now: Instant) {
        self.push_with(seq, now, |body| body.extend_from_slice(json));
    }

    /// Adds one event that `write` serializes straight into the batch.
    pub fn push_with(&mut self, seq: u64, now: Instant, write: impl FnOnce(&mut Vec<u8>)) {
        if self.count == 0 {
            // Reserved only now: a lane left idle holds no buffer.
            self.body.reserve(self.expect);
            self.body.push(b'[');
            self.first_seq = seq;
            self.oldest = Some(now);
        } else {
            self.body.push(b',');
        }
        write(&mut self.body);
        self.count += 1;
        self.last_seq = seq;
    }

    /// The sequence number of the first event waiting, if any.
    pub fn first_seq(&self) -> Option<u64> {
        (self.count > 0).then_some(self.first_seq)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the batch should be sent now.
    pub fn due(&self, now: Instant) -> bool {
        self.count >= self.max_events
            || self.body.len() >= self.max_bytes
            || self
                .oldest
                .is_some_and(|t| now.duration_since(t) >= self.max_age)
    }

    /// Takes what waits, if anything.
    pub fn take(&mut self) -> Option<Batch> {
        if self.count == 0 {
            return None;
        }
        let mut body = std::mem::take(&mut self.body);
        body.push(b']');
        self.expect = body.len().min(self.max_bytes);
        let batch = Batch {
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            count: self.count,
            body,
            lane: self.lane,
        };
        self.count = 0;
        self.oldest = None;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_size_and_builds_an_array() {
        let now = Instant::now();
        let mut b = Batcher::new(2, MAX_BODY_BYTES, Duration::from_secs(5));
        b.push(1, br#"{"a":1}"#, now);
        assert!(!b.due(now));
        b.push(2, br#"{"a":2}"#, now);
        assert!(b.due(now));
        let batch = b.take().unwrap();
        assert_eq!(batch.body, br#"[{"a":1},{"a":2}]"#);
        assert_eq!((batch.first_seq, batch.last_seq, batch.count), (1, 2, 2));
        assert!(b.is_empty() && b.take().is_none());
    }

    #[test]
    fn cuts_on_age_and_bytes() {
        let t0 = Instant::now();
        let mut b = Batcher::new(100, MAX_BODY_BYTES, Duration::from_secs(5));
        b.push(7, b"{}", t0);
        assert!(!b.due(t0 + Duration::from_secs(4)));
        assert!(b.due(t0 + Duration::from_secs(5)));
        let mut b = Batcher::new(100, 10, Duration::from_secs(5));
        b.push(1, b"{\"x\":\"0123456789\"}", t0);
        assert!(b.due(t0));
    }
}
