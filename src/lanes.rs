//! Which lane each piece of work takes.
//!
//! A lane sends one request at a time and retries it before the next, so
//! what goes through one lane reaches Canopsis in broker's order. One
//! object's events must keep that order (an OK must never overtake the
//! CRITICAL it follows), so an object stays in its lane for as long as any
//! of its work may be unconfirmed. Once everything handed over is
//! confirmed, nothing of anyone is in flight and every object is free to
//! move: [`Router::drained`] forgets the assignments.
//!
//! A newly seen object goes to the lane given the least work since then.
//! The acknowledgement window empties every lane before broker's `true`,
//! so what counts is that lanes finish together: a hash of the ids (what
//! was here before) left some lanes half as busy again as others with a
//! few hundred objects, and the busiest one set the pace.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::work::MAX_BULK;

/// What keeps its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// A host or service (host id, service id; 0 for a host), or a BA.
    Object(u64, u64),
    /// One downtime, by its pbehavior's name: its create goes before its
    /// delete. Downtimes of one object are separate pbehaviors, so they
    /// need no order between them, nor with the object's statuses.
    Downtime(u64),
}

impl Key {
    /// The key of the downtime whose pbehavior is called `name`.
    pub fn downtime(name: &str) -> Key {
        // Two names colliding only share a lane.
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        Key::Downtime(h.finish())
    }
}

/// What a downtime's pbehavior change (a creation or not) costs its lane,
/// in events (a request weighs a full batch of `batch`), and how many such
/// changes go to one lane in a row. Through the bulk route a lane sends up
/// to [`MAX_BULK`] of them per request, so they fill a lane before the
/// next; a creation still costs a request of its own there, its comment.
pub fn downtime_cost(creates: bool, bulk: bool, batch: usize) -> (u64, usize) {
    let request = batch as u64;
    match (bulk, creates) {
        (false, true) => (2 * request, 1),
        (false, false) => (request, 1),
        (true, true) => (request, MAX_BULK),
        (true, false) => (1, MAX_BULK),
    }
}

/// Assigns keys to lanes: sticky until drained, least busy otherwise.
#[derive(Debug)]
pub struct Router {
    /// Work given to each lane since the last drain, in events (a request
    /// of its own counts as a full batch).
    load: Vec<u64>,
    /// The lane of each key seen since the last drain, and the sequence
    /// number of its last piece of work.
    taken: HashMap<Key, (usize, u64)>,
    /// The lane the last new keys sent together went to, and how many.
    run: (usize, usize),
    /// Keys held when [`confirmed`](Router::confirmed) next sweeps.
    sweep_at: usize,
}

/// Fewest keys held before [`Router::confirmed`] sweeps.
const SWEEP_FLOOR: usize = 4096;

impl Router {
    /// A router over `lanes` lanes (at least one).
    pub fn new(lanes: usize) -> Router {
        Router {
            load: vec![0; lanes.max(1)],
            taken: HashMap::new(),
            run: (0, 0),
            sweep_at: SWEEP_FLOOR,
        }
    }

    /// The lane for `key`'s next piece of work, numbered `seq`, which
    /// weighs `weight`. A new key goes to the least busy lane; with
    /// `together` above 1, it joins the new keys before it until `together`
    /// of them went to one lane in a row (work a lane sends in bulk, such
    /// as pbehaviors through the bulk route: spread one per lane, each
    /// would be a request).
    pub fn lane(&mut self, key: Key, seq: u64, weight: u64, together: usize) -> usize {
        if self.load.len() == 1 {
            return 0;
        }
        let lane = match self.taken.entry(key) {
            Entry::Occupied(mut e) => {
                e.get_mut().1 = seq;
                e.get().0
            }
            Entry::Vacant(e) => {
                let (last, count) = self.run;
                let joining = together > 1 && count > 0 && count < together;
                let lane = if joining {
                    last
                } else {
                    (0..self.load.len())
                        .min_by_key(|&l| self.load[l])
                        .unwrap_or(0)
                };
                if together > 1 {
                    self.run = (lane, if joining { count + 1 } else { 1 });
                }
                e.insert((lane, seq));
                lane
            }
        };
        self.load[lane] += weight;
        lane
    }

    /// Everything up to `seq` is confirmed (and was handed over): keys
    /// whose work all lies there may move. They are forgotten once there
    /// are many, one pass each time their number doubles, so the router
    /// stays small even when the lanes are never all empty at once (the
    /// spool read back under steady load).
    pub fn confirmed(&mut self, seq: u64) {
        if self.taken.len() < self.sweep_at {
            return;
        }
        self.taken.retain(|_, (_, last)| *last > seq);
        self.sweep_at = (2 * self.taken.len()).max(SWEEP_FLOOR);
    }

    /// Everything handed over so far is confirmed: every key may move.
    pub fn drained(&mut self) {
        if !self.taken.is_empty() {
            self.taken.clear();
            self.load.iter_mut().for_each(|l| *l = 0);
            self.run = (0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_keeps_its_lane_until_drained() {
        let mut r = Router::new(4);
        let a = r.lane(Key::Object(1, 0), 0, 1, 1);
        for _ in 0..50 {
            // Other objects pile up elsewhere; `a` stays put however busy
            // its lane gets.
            assert_eq!(r.lane(Key::Object(1, 0), 0, 10, 1), a);
            r.lane(Key::Object(2, 7), 0, 1, 1);
        }
        r.drained();
        // Its lane is no busier than the others now: it may go anywhere,
        // and does go to the least busy one.
        let b = r.lane(Key::Object(9, 9), 0, 5, 1);
        assert_ne!(r.lane(Key::Object(1, 0), 0, 1, 1), b);
    }

    #[test]
    fn new_keys_go_to_the_least_busy_lane() {
        let mut r = Router::new(16);
        // 400 objects seen round after round, as in the bench: every lane
        // gets 25 of them, where a hash gave some lanes 35 and others 15.
        for round in 0..10 {
            for o in 0..400 {
                r.lane(Key::Object(1000 + o, 1), 0, 1, 1);
            }
            if round == 0 {
                assert_eq!(r.taken.len(), 400);
            }
        }
        assert!(r.load.iter().all(|&l| l == 250), "{:?}", r.load);
        // A heavy downtime does not land where the events pile.
        let mut r = Router::new(2);
        let busy = r.lane(Key::Object(1, 1), 0, 100, 1);
        assert_ne!(
            r.lane(Key::downtime("centreon-downtime-1-2"), 0, 100, 1),
            busy
        );
    }

    #[test]
    fn one_lane_is_always_lane_zero() {
        let mut r = Router::new(1);
        assert_eq!(r.lane(Key::Object(1, 2), 0, 1, 1), 0);
        assert_eq!(r.lane(Key::downtime("x"), 0, 100, 1), 0);
        assert!(r.taken.is_empty());
    }

    #[test]
    fn a_downtimes_create_and_delete_share_a_lane() {
        let mut r = Router::new(8);
        let name = "centreon-downtime-42-1731000000";
        let lane = r.lane(Key::downtime(name), 0, 100, 1);
        for o in 0..100 {
            r.lane(Key::Object(o, 0), 0, 100, 1);
        }
        assert_eq!(r.lane(Key::downtime(name), 0, 100, 1), lane);
    }

    #[test]
    fn work_sent_in_bulk_fills_a_lane_before_the_next() {
        let mut r = Router::new(4);
        let busy = r.lane(Key::Object(1, 1), 0, 500, 1);
        let lanes: Vec<usize> = (0..250)
            .map(|i| r.lane(Key::downtime(&format!("dt-{i}")), 0, 1, 100))
            .collect();
        // 100 in one lane (not the busy one), 100 in another, then 50.
        assert!(lanes[..100].iter().all(|&l| l == lanes[0] && l != busy));
        assert!(lanes[100..200].iter().all(|&l| l == lanes[100]));
        assert!(lanes[200..].iter().all(|&l| l == lanes[200]));
        assert_ne!(lanes[0], lanes[100]);
        // A key seen before keeps its lane, whatever the run.
        assert_eq!(r.lane(Key::downtime("dt-7"), 0, 1, 100), lanes[0]);
    }

    #[test]
    fn keys_whose_work_is_confirmed_are_forgotten_once_many() {
        let mut r = Router::new(4);
        for seq in 1..=4_000u64 {
            r.lane(Key::Object(seq, 0), seq, 1, 1);
        }
        // Few keys: no pass over them.
        r.confirmed(4_000);
        assert_eq!(r.taken.len(), 4_000);
        for seq in 4_001..=10_000u64 {
            r.lane(Key::Object(seq, 0), seq, 1, 1);
        }
        // Many: what is confirmed goes, the rest stays where it is.
        let kept = r.lane(Key::Object(9_999, 0), 10_001, 1, 1);
        r.confirmed(9_000);
        assert_eq!(r.taken.len(), 1_000);
        assert_eq!(r.lane(Key::Object(9_999, 0), 10_002, 1, 1), kept);
    }
}
