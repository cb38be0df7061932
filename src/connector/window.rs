//! The acknowledgement window: how many events `write` lets go
//! unacknowledged before it waits for delivery, and how broker's `flush`
//! calls shrink it to fit a smaller broker queue.
//!
//! # Why this window
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
//! what waits and waits for it at once ([`super::FLUSH_WAIT`]).

use super::SPOOL_SYNC_EVENTS;
use crate::config::Config;
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
pub(super) struct Window {
    /// Unacknowledged events after which `write` waits.
    pub(super) size: u64,
    /// A full batch in each lane; `None` with the spool (its window is a
    /// group commit, not rounds).
    pub(super) round: Option<u64>,
    /// The unacknowledged events a `flush` acknowledged last, short of the
    /// window, with no acknowledgement by `write` since, and when.
    pub(super) short_flush: Option<(u64, Instant)>,
}

impl Window {
    /// The window for the configured lanes and batches, or the spool's
    /// group commit.
    pub(super) fn new(cfg: &Config) -> Window {
        match &cfg.spool {
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
        }
    }

    /// Broker's `flush` acknowledged `unacked` events at `now`. Broker calls
    /// it when no event is ready: at the end of a burst, or when its whole
    /// memory queue (`event_queue_max_size`) is handed over
    /// unacknowledged, and then pauses 100 ms before it reads on. Bursts
    /// end at any count, a queue runs dry at the same count each time: the
    /// second time in a row within [`DRY_WITHIN`], the window shrinks to fit
    /// that queue as it fits broker's default one. Returns the new size.
    pub(super) fn flushed(&mut self, unacked: u64, now: Instant) -> Option<u64> {
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
    pub(super) fn written(&mut self) {
        self.short_flush = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
