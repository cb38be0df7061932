//! Signatures already used, so a replayed click acknowledges nothing.
//!
//! A signature is remembered until its context expires: after that the
//! expiry refuses it anyway. Only verified signatures get here, so the
//! memory grows only with real clicks; it is bounded all the same, and
//! when full the service refuses new clicks rather than forget old ones.

use std::collections::HashMap;

/// Remembers used signatures until their expiry.
#[derive(Debug)]
pub struct Replay {
    used: HashMap<String, u64>,
    capacity: usize,
}

/// What a signature is to the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Never used: now reserved.
    First,
    /// Used before.
    Replayed,
    /// Not seen, but too many remembered to take it.
    Full,
}

impl Replay {
    /// An empty memory holding at most `capacity` signatures.
    pub fn new(capacity: usize) -> Self {
        Replay {
            used: HashMap::new(),
            capacity,
        }
    }

    /// Reserves `sig` (valid until `expires`) if it was never used.
    pub fn reserve(&mut self, sig: &str, expires: u64, now: u64) -> Use {
        self.used.retain(|_, until| *until > now);
        if self.used.contains_key(sig) {
            return Use::Replayed;
        }
        if self.used.len() >= self.capacity {
            return Use::Full;
        }
        self.used.insert(sig.to_string(), expires);
        Use::First
    }

    /// Forgets a reservation whose acknowledgement failed, so the person
    /// can click again.
    pub fn release(&mut self, sig: &str) {
        self.used.remove(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_taken_once_until_it_expires() {
        let mut r = Replay::new(2);
        assert_eq!(r.reserve("a", 100, 10), Use::First);
        assert_eq!(r.reserve("a", 100, 11), Use::Replayed);
        assert_eq!(r.reserve("b", 100, 11), Use::First);
        assert_eq!(r.reserve("c", 100, 11), Use::Full);
        r.release("b");
        assert_eq!(r.reserve("c", 100, 12), Use::First);
        // Past the expiry it is forgotten (the expiry refuses it first).
        assert_eq!(r.reserve("d", 200, 150), Use::First);
        assert_eq!(r.used.len(), 1);
    }
}
