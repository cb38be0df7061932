//! An output that refuses every event: `init` rejected the parameters,
//! could not start the connector, or hit an internal error (a panic).
//!
//! Nothing is acknowledged, so broker keeps every event in its retention
//! until the output is fixed and restarted. A refusal that nobody reads
//! about looks like a stalled output, so the log says why at once and
//! again once per [`REMINDER`] while broker keeps calling.

use crate::connector::REMINDER;
use crate::logger::Logger;
use std::time::Instant;

/// Why the output refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The parameters were rejected, or the connector could not be built
    /// from them: each error, as logged.
    Configuration(Vec<String>),
    /// `init` panicked: what the panic said. Nothing about the parameters
    /// is known to be wrong, but nothing was set up either.
    InternalError(String),
}

/// The refusing state: its log and cause, and when it last said so.
pub struct Refusal {
    log: Logger,
    cause: Cause,
    last_reminder: Instant,
}

impl Refusal {
    /// Refuses for rejected parameters (already logged one by one).
    pub fn configuration(log: Logger, errors: Vec<String>, now: Instant) -> Refusal {
        log.error(format_args!(
            "configuration rejected: no event is acknowledged, broker keeps them until the output is fixed"
        ));
        Refusal {
            log,
            cause: Cause::Configuration(errors),
            last_reminder: now,
        }
    }

    /// Refuses after `init` panicked with `message`.
    pub fn internal_error(log: Logger, message: &str, now: Instant) -> Refusal {
        log.error(format_args!(
            "internal error in init: {message}; the output is not running: no event is acknowledged, broker keeps them until the output is restarted (reload or restart cbd)"
        ));
        Refusal {
            log,
            cause: Cause::InternalError(message.to_string()),
            last_reminder: now,
        }
    }

    /// The log the output writes to.
    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// Why it refuses.
    pub fn cause(&self) -> &Cause {
        &self.cause
    }

    /// What `write` and `flush` answer: `false`, saying why again once
    /// per [`REMINDER`].
    pub fn refuse(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last_reminder) >= REMINDER {
            self.last_reminder = now;
            match &self.cause {
                Cause::Configuration(errors) => self.log.error(format_args!(
                    "not acknowledging events: configuration rejected ({})",
                    errors.join("; ")
                )),
                Cause::InternalError(message) => self.log.error(format_args!(
                    "not acknowledging events: internal error in init ({message}); broker keeps them until the output is restarted"
                )),
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reminders(log: &Logger) -> usize {
        log.lines()
            .iter()
            .filter(|l| l.contains("not acknowledging events"))
            .count()
    }

    #[test]
    fn an_init_that_panicked_refuses_and_says_so_once_a_minute() {
        let log = Logger::memory(log::LevelFilter::Error);
        let t0 = Instant::now();
        let mut r = Refusal::internal_error(log.clone(), "attempt to divide by zero", t0);
        assert!(log.lines()[0].contains("internal error in init: attempt to divide by zero"));
        assert!(!r.refuse(t0 + Duration::from_secs(1)));
        assert_eq!(reminders(&log), 0, "at once after the first line");
        assert!(!r.refuse(t0 + REMINDER));
        assert!(!r.refuse(t0 + REMINDER + Duration::from_secs(30)));
        assert_eq!(reminders(&log), 1);
        assert!(!r.refuse(t0 + 2 * REMINDER));
        assert_eq!(reminders(&log), 2);
        assert!(log
            .lines()
            .last()
            .unwrap()
            .contains("internal error in init (attempt to divide by zero)"));
        assert_eq!(
            r.cause(),
            &Cause::InternalError("attempt to divide by zero".into())
        );
    }

    #[test]
    fn rejected_parameters_are_named_in_the_reminder() {
        let log = Logger::memory(log::LevelFilter::Error);
        let t0 = Instant::now();
        let mut r = Refusal::configuration(log.clone(), vec!["a".into(), "b".into()], t0);
        assert!(!r.refuse(t0 + REMINDER));
        assert!(log
            .lines()
            .last()
            .unwrap()
            .contains("configuration rejected (a; b)"));
    }
}
