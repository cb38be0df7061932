//! How long to wait before trying again.

use std::time::Duration;

/// Longest pause between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// First backoff step: a blip (one 500, a dropped connection) costs tens
/// of milliseconds; each failure in a row doubles the step up to
/// [`MAX_BACKOFF`]. Unit tests run the same policy five times faster.
const BACKOFF_UNIT: Duration = if cfg!(test) {
    Duration::from_millis(4)
} else {
    Duration::from_millis(20)
};

/// Exponential backoff with jitter: 20 ms, 40 ms, 80 ms ... capped at
/// [`MAX_BACKOFF`], each delay drawn between half and all of its step so
/// connectors restarted together do not retry together.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    seed: u64,
}

impl Backoff {
    /// A fresh backoff.
    pub fn new() -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1;
        Backoff { attempt: 0, seed }
    }

    /// The next delay; `hint` (Retry-After) is honoured up to the cap.
    pub fn next(&mut self, hint: Option<Duration>) -> Duration {
        let step = (BACKOFF_UNIT * (1u32 << self.attempt.min(12))).min(MAX_BACKOFF);
        self.attempt = self.attempt.saturating_add(1);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = step / 2;
        let jitter = Duration::from_millis(self.seed % (half.as_millis() as u64 + 1));
        let delay = half + jitter;
        match hint {
            Some(h) => h.min(MAX_BACKOFF).max(delay),
            None => delay,
        }
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new();
        let delays: Vec<_> = (0..14).map(|_| b.next(None)).collect();
        let u = BACKOFF_UNIT;
        assert!(delays[0] >= u / 2 && delays[0] <= u);
        assert!(delays[3] >= u * 4 && delays[3] <= u * 8);
        assert!(delays[9] >= u * 256 && delays[9] <= u * 512);
        assert!(delays.iter().all(|d| *d <= MAX_BACKOFF));
        assert!(delays[13] >= u * 1024 || delays[13] >= MAX_BACKOFF / 2);
        assert_eq!(b.next(Some(Duration::from_secs(3600))), MAX_BACKOFF);
        b.reset();
        assert!(b.next(None) <= u);
    }
}
