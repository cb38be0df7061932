//! Bulking: events wait here until a POST is worth it.

use crate::config::Framing;
use std::time::{Duration, Instant};

/// Bodies stay under nginx's stock `client_max_body_size` (7 MiB in the
/// Canopsis image) with room to spare.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A body of documents and how many it holds.
pub type Part = (Vec<u8>, usize);

impl Framing {
    /// What a body starts with.
    fn open(self) -> &'static [u8] {
        match self {
            Framing::Array => b"[",
            Framing::Lines => b"",
        }
    }

    /// What stands between two documents.
    fn between(self) -> &'static [u8] {
        match self {
            Framing::Array => b",",
            Framing::Lines => b"",
        }
    }

    /// What ends each document.
    fn after_each(self) -> &'static [u8] {
        match self {
            Framing::Array => b"",
            Framing::Lines => b"\n",
        }
    }

    /// What a body ends with.
    fn close(self) -> &'static [u8] {
        match self {
            Framing::Array => b"]",
            Framing::Lines => b"",
        }
    }

    /// The documents of a body this framing built. `None` when it is not
    /// such a body.
    pub fn items(self, body: &[u8]) -> Option<Vec<&[u8]>> {
        match self {
            Framing::Array => {
                let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body).ok()?;
                Some(items.into_iter().map(|i| i.get().as_bytes()).collect())
            }
            Framing::Lines => Some(
                body.split(|&b| b == b'\n')
                    .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                    .collect(),
            ),
        }
    }

    /// A body holding `items`.
    pub fn join<'a>(self, items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut out = self.open().to_vec();
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(self.between());
            }
            out.extend_from_slice(item);
            out.extend_from_slice(self.after_each());
        }
        out.extend_from_slice(self.close());
        out
    }

    /// Splits a body of several documents in two halves, each with its
    /// count; `None` for a body of one document (or one this framing did
    /// not build).
    pub fn split(self, body: &[u8]) -> Option<(Part, Part)> {
        let items = self.items(body)?;
        if items.len() < 2 {
            return None;
        }
        let (a, b) = items.split_at(items.len() / 2);
        Some((
            (self.join(a.iter().copied()), a.len()),
            (self.join(b.iter().copied()), b.len()),
        ))
    }

    /// The one document of a body holding one, as it would stand alone
    /// (for the dead-letter file).
    pub fn single(self, body: &[u8]) -> &[u8] {
        let inner = body
            .strip_prefix(self.open())
            .and_then(|b| b.strip_suffix(self.close()))
            .unwrap_or(body);
        inner.strip_suffix(self.after_each()).unwrap_or(inner)
    }
}

/// A body of events ready to POST, with the sequence numbers it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Sequence number of the first event.
    pub first_seq: u64,
    /// Sequence number of the last event.
    pub last_seq: u64,
    /// Number of events.
    pub count: usize,
    /// `[ev,ev,...]`, or one per line ([`Framing`]).
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
    framing: Framing,
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
            framing: Framing::Array,
            expect: 0,
        }
    }

    /// The same, for the batches of lane `lane`.
    pub fn for_lane(mut self, lane: usize) -> Batcher {
        self.lane = lane;
        self
    }

    /// The same, framing its bodies with `framing`.
    pub fn framed(mut self, framing: Framing) -> Batcher {
        self.framing = framing;
        self
    }

    /// Adds one serialized event; `false` (nothing added) when it is empty.
    pub fn push(&mut self, seq: u64, json: &[u8], now: Instant) -> bool {
        self.push_with(seq, now, |body| body.extend_from_slice(json))
    }

    /// Adds one event that `write` serializes straight into the batch;
    /// `false` when it wrote nothing (no document for this event): then
    /// nothing is framed either (never `[a,,b]`) and the event is not
    /// counted.
    #[must_use = "an event that wrote nothing is not in the batch"]
    pub fn push_with(&mut self, seq: u64, now: Instant, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let before = self.body.len();
        if self.count == 0 {
            // Reserved only now: a lane left idle holds no buffer.
            self.body.reserve(self.expect);
            self.body.extend_from_slice(self.framing.open());
        } else {
            self.body.extend_from_slice(self.framing.between());
        }
        let document = self.body.len();
        write(&mut self.body);
        if self.body.len() == document {
            self.body.truncate(before);
            return false;
        }
        self.body.extend_from_slice(self.framing.after_each());
        if self.count == 0 {
            self.first_seq = seq;
            self.oldest = Some(now);
        }
        self.count += 1;
        self.last_seq = seq;
        true
    }

    /// Bytes waiting (what this batcher holds in memory).
    pub fn bytes(&self) -> usize {
        if self.count == 0 {
            0
        } else {
            self.body.len()
        }
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
        body.extend_from_slice(self.framing.close());
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
    fn lines_frame_one_document_per_line_and_split_like_arrays() {
        let now = Instant::now();
        let mut b = Batcher::new(3, MAX_BODY_BYTES, Duration::from_secs(5)).framed(Framing::Lines);
        for (seq, doc) in [(1, "{\"a\":1}"), (2, "{\"a\":2}"), (3, "{\"a\":3}")] {
            b.push(seq, doc.as_bytes(), now);
        }
        let batch = b.take().unwrap();
        assert_eq!(batch.body, b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
        let ((first, n1), (second, n2)) = Framing::Lines.split(&batch.body).unwrap();
        assert_eq!((first.as_slice(), n1), (&b"{\"a\":1}\n"[..], 1));
        assert_eq!((second.as_slice(), n2), (&b"{\"a\":2}\n{\"a\":3}\n"[..], 2));
        assert_eq!(Framing::Lines.single(&first), b"{\"a\":1}");
        let ((a, _), (c, _)) = Framing::Array
            .split(b"[{\"a\":1},[2,3],{\"b\":\"]\"}]")
            .unwrap();
        assert_eq!(
            (a.as_slice(), c.as_slice()),
            (&b"[{\"a\":1}]"[..], &b"[[2,3],{\"b\":\"]\"}]"[..])
        );
        assert_eq!(Framing::Array.single(&a), b"{\"a\":1}");
        assert!(Framing::Array.split(b"[{}]").is_none());
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

    #[test]
    fn an_event_that_writes_nothing_is_neither_framed_nor_counted() {
        let now = Instant::now();
        for (framing, want) in [
            (Framing::Array, &b"[{\"a\":1},{\"a\":3}]"[..]),
            (Framing::Lines, &b"{\"a\":1}\n{\"a\":3}\n"[..]),
        ] {
            let mut b = Batcher::new(10, MAX_BODY_BYTES, Duration::from_secs(5)).framed(framing);
            assert!(!b.push_with(1, now, |_| ()), "nothing written first");
            assert!(b.is_empty() && b.bytes() == 0 && b.first_seq().is_none());
            assert!(b.push(2, br#"{"a":1}"#, now));
            assert!(!b.push_with(3, now, |_| ()));
            assert!(b.push(4, br#"{"a":3}"#, now));
            assert!(!b.push(5, b"", now), "nothing written last");
            let batch = b.take().unwrap();
            assert_eq!(batch.body, want, "{framing:?}");
            assert_eq!((batch.first_seq, batch.last_seq, batch.count), (2, 4, 2));
            assert_eq!(framing.items(&batch.body).unwrap().len(), 2);
        }
    }
}
