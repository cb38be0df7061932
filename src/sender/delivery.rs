//! One batch's delivery, as a pure state machine: no I/O, no clock (time
//! is an input). It says what to do next — send this body, pause, dead-letter
//! this event with this proof, done — and the lane's [`Worker`] does it
//! (transport, pauses, the dead-letter file, stats, log lines).
//!
//! The rules it keeps, for every peer:
//! - **Order per object.** What is resent after any answer keeps the
//!   request's order. After Canopsis's partial answer (`failed_events`
//!   while later events were taken, `canopsis-api.md` §2.2), the request is
//!   sent again from its first failed event on ([`PartiallyTaken`]): the
//!   events after it are taken twice, in order, so each object's last word
//!   at Canopsis is its last state. Resending a `check` is harmless.
//! - **Refusals are judged by proof, never by time.** An event goes to the
//!   dead-letter file only with a reason that proves the peer will never
//!   take it ([`RefusedWithProof`]): it breaks one of Canopsis's
//!   deterministic rules ([`rules`], checked before the first send);
//!   Mattermost said why in its own words ([`Verdict::Proven`]); a JSON
//!   receiver refused it alone, took an empty request just after, and
//!   refused it again ([`Probing`], [`Confirming`]). Everything else is retried
//!   with backoff, in order, however long it lasts ([`Retrying`],
//!   [`RateLimited`]): broker's retention (or the spool) holds what is not
//!   acknowledged, and a failure that no rule explains is the peer's
//!   (Canopsis's database or message bus) or the configuration's, which
//!   the log says at every try.
//! - A refused event with its proof costs no pause: it is dead-lettered and
//!   the batch goes on.
//!
//! [`Worker`]: super::worker::Worker
//! [`rules`]: crate::sink::canopsis::rules

use crate::batch::Part;
use crate::config::Framing;
use crate::sink::canopsis::rules;
use crate::sink::{Sink, Verdict};
use crate::transport::one_line;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[cfg(test)]
mod simulation;

/// What kind of peer, as far as delivery goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Canopsis's event route: per-event answers, deterministic rules.
    Canopsis,
    /// A JSON receiver: a whole request taken or refused.
    Documents(Framing),
    /// A Mattermost hook: one message per request.
    Mattermost,
}

/// The peer: its kind and the words log lines use for it.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// Its kind.
    pub kind: Kind,
    /// As log lines name it ([`Sink::peer`]).
    pub name: &'static str,
    /// The parameters to check when it refuses everything.
    pub where_to_look: &'static str,
}

impl Peer {
    /// The peer a sink talks to.
    pub fn of(sink: &Sink) -> Peer {
        let kind = match sink {
            Sink::Canopsis => Kind::Canopsis,
            Sink::Documents(f) => Kind::Documents(*f),
            Sink::Mattermost(_) => Kind::Mattermost,
        };
        Peer {
            kind,
            name: sink.peer(),
            where_to_look: sink.where_to_look(),
        }
    }

    fn framing(&self) -> Framing {
        match self.kind {
            Kind::Documents(f) => f,
            Kind::Canopsis | Kind::Mattermost => Framing::Array,
        }
    }

    /// A refused request's event as the dead-letter file keeps it.
    fn single<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        match self.kind {
            Kind::Mattermost => body,
            _ => self.framing().single(body),
        }
    }
}

/// What the worker does next.
#[derive(Debug, PartialEq)]
pub enum Step<'a> {
    /// Send this body, then report with [`Delivery::answered`].
    Send {
        /// The request body.
        body: &'a [u8],
        /// Events it carries (0 for a probe).
        count: usize,
    },
    /// The last attempt failed: log `reason`, pause (backoff, at least
    /// `hint`), then ask again.
    Pause {
        /// What failed, for the log line.
        reason: String,
        /// An admin has to act (a longer pause).
        config_fault: bool,
        /// The peer's own delay (Retry-After), what is left of it.
        hint: Option<Duration>,
    },
    /// Keep `event` in the dead-letter file; `proof` says why the peer will
    /// never take it.
    DeadLetter {
        /// The event as the peer would get it.
        event: Vec<u8>,
        /// Why it is proven bad.
        proof: String,
    },
    /// A line for the log (warning level).
    Note(String),
    /// Every event of the batch was taken or dead-lettered with proof.
    Done,
}

/// How a request ended.
#[derive(Debug)]
pub enum Answer {
    /// The peer answered.
    Peer(Verdict),
    /// No answer (connection, timeout, TLS...).
    Failed {
        /// For the log.
        reason: String,
        /// An admin has to act.
        config_fault: bool,
    },
}

/// After a transient failure: the same request goes again after a pause.
#[derive(Debug)]
struct Retrying {
    reason: String,
    config_fault: bool,
}

/// The peer asked to wait (429 or 503 with `Retry-After`) until `until`.
#[derive(Debug)]
struct RateLimited {
    reason: String,
    until: Instant,
}

/// A lone document refused: an empty request tells its content from the
/// receiver's state. Refused too, the receiver refuses everything (its
/// configuration, or it is failing): retried. Taken, the document is sent
/// once more ([`Confirming`]).
#[derive(Debug)]
struct Probing {
    refusal: String,
    probe: Vec<u8>,
}

/// The empty request was taken: the lone document goes once more, and a
/// second refusal proves it bad (a receiver that refused everything for a
/// while and just recovered takes it instead).
#[derive(Debug)]
struct Confirming {
    refusal: String,
}

/// An event the peer will never take, and why that is proven.
#[derive(Debug)]
struct RefusedWithProof {
    event: Vec<u8>,
    proof: String,
}

/// Canopsis took some events of a request and listed others in
/// `failed_events`: where the request is to be sent again from.
#[derive(Debug)]
struct PartiallyTaken {
    /// Index in the request of the first failed event, `None` when the
    /// echo matches none of them.
    first_failed: Option<usize>,
}

/// Fields Canopsis may change in the events it echoes (§2.2): it injects
/// `role`, `author` and `user_id`, blanks a `long_output` that is not a
/// string and rewrites `source_type`.
const REWRITTEN: [&str; 5] = ["role", "author", "user_id", "long_output", "source_type"];

impl PartiallyTaken {
    /// Finds `echo`, the first event of `failed_events`, among `request`'s
    /// events: the first one whose fields are all equal in the echo, but
    /// those Canopsis rewrites (and `state`, which it may turn from `"2"`
    /// into `2`).
    fn locate(request: &[&[u8]], echo: Option<&Value>) -> PartiallyTaken {
        let first_failed = echo.and_then(Value::as_object).and_then(|echo| {
            request.iter().position(|item| {
                serde_json::from_slice::<Map<String, Value>>(item)
                    .is_ok_and(|ev| same_event(&ev, echo))
            })
        });
        PartiallyTaken { first_failed }
    }
}

/// Whether `echo` is Canopsis's echo of `ev`.
fn same_event(ev: &Map<String, Value>, echo: &Map<String, Value>) -> bool {
    ev.iter().all(|(k, v)| {
        if REWRITTEN.contains(&k.as_str()) {
            return true;
        }
        let Some(e) = echo.get(k) else {
            return false;
        };
        e == v || (k == "state" && as_int(e).is_some() && as_int(e) == as_int(v))
    })
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Where a batch's delivery stands.
#[derive(Debug)]
enum State {
    /// The first request of the queue goes next.
    Sending,
    /// It goes again after a pause.
    Retrying(Retrying),
    /// It goes again once the peer's delay is over.
    RateLimited(RateLimited),
    /// A probe goes first.
    Probing(Probing),
    /// The first request goes once more, to confirm a refusal.
    Confirming(Confirming),
}

/// One batch's delivery.
#[derive(Debug)]
pub struct Delivery {
    peer: Peer,
    /// Requests still to be taken, in order; the first is the current one.
    queue: VecDeque<Part>,
    state: State,
    /// Refused events with their proof, dead-lettered before anything else.
    proven: VecDeque<RefusedWithProof>,
    notes: VecDeque<String>,
    /// Since when the current request fails.
    failing_since: Option<Instant>,
}

impl Delivery {
    /// A delivery of `requests`, in order (for Canopsis, one request whose
    /// events are checked against its rules first: those that break one
    /// are dead-lettered, the others go).
    pub fn new(peer: Peer, requests: VecDeque<Part>) -> Delivery {
        let mut d = Delivery {
            peer,
            queue: VecDeque::with_capacity(requests.len()),
            state: State::Sending,
            proven: VecDeque::new(),
            notes: VecDeque::new(),
            failing_since: None,
        };
        for part in requests {
            let part = match peer.kind {
                Kind::Canopsis => d.screen(part),
                _ => Some(part),
            };
            d.queue.extend(part);
        }
        d
    }

    /// The peer it delivers to.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// Removes the events that break Canopsis's rules from a request (they
    /// are dead-lettered with the rule); `None` if nothing is left.
    fn screen(&mut self, (body, count): Part) -> Option<Part> {
        let Some(items) = Framing::Array.items(&body) else {
            // Not an array of ours: Canopsis will say what it thinks.
            return Some((body, count));
        };
        let mut kept = Vec::with_capacity(items.len());
        for item in &items {
            match rules::check(item) {
                Ok(()) => kept.push(*item),
                Err(rule) => self.proven.push_back(RefusedWithProof {
                    event: item.to_vec(),
                    proof: format!(
                        "checked before sending: {rule} (canopsis-api.md §2.2), so it would fail every time"
                    ),
                }),
            }
        }
        if kept.is_empty() {
            return None;
        }
        if kept.len() == items.len() {
            return Some((body, count));
        }
        let n = kept.len();
        Some((Framing::Array.join(kept), n))
    }

    /// What to do now.
    pub fn next(&mut self, now: Instant) -> Step<'_> {
        if let Some(r) = self.proven.pop_front() {
            return Step::DeadLetter {
                event: r.event,
                proof: r.proof,
            };
        }
        if let Some(note) = self.notes.pop_front() {
            return Step::Note(note);
        }
        match std::mem::replace(&mut self.state, State::Sending) {
            State::Retrying(r) => {
                return Step::Pause {
                    reason: r.reason,
                    config_fault: r.config_fault,
                    hint: None,
                }
            }
            State::RateLimited(r) => {
                return Step::Pause {
                    reason: r.reason,
                    config_fault: false,
                    hint: Some(r.until.saturating_duration_since(now)),
                }
            }
            State::Probing(p) => self.state = State::Probing(p),
            State::Confirming(c) => self.state = State::Confirming(c),
            State::Sending => {}
        }
        if let State::Probing(p) = &self.state {
            return Step::Send {
                body: &p.probe,
                count: 0,
            };
        }
        match self.queue.front() {
            Some((body, count)) => Step::Send {
                body,
                count: *count,
            },
            None => Step::Done,
        }
    }

    /// How the request [`next`](Self::next) asked for ended.
    pub fn answered(&mut self, now: Instant, answer: Answer) {
        let confirming = match std::mem::replace(&mut self.state, State::Sending) {
            State::Probing(p) => return self.probed(now, p, answer),
            State::Confirming(c) => Some(c),
            _ => None,
        };
        match answer {
            Answer::Failed {
                reason,
                config_fault,
            } => self.retry(now, reason, config_fault),
            Answer::Peer(Verdict::Delivered) => {
                self.queue.pop_front();
                self.failing_since = None;
            }
            Answer::Peer(Verdict::Partial { sent, failed }) => {
                self.partially_taken(now, sent, &failed)
            }
            Answer::Peer(Verdict::Refused(reason)) => self.refused(now, reason, confirming),
            Answer::Peer(Verdict::Proven(reason)) => {
                if let Some((body, _)) = self.queue.pop_front() {
                    self.proven.push_back(RefusedWithProof {
                        event: self.peer.single(&body).to_vec(),
                        proof: reason,
                    });
                }
                self.failing_since = None;
            }
            Answer::Peer(Verdict::Retry {
                reason,
                config_fault,
                retry_after,
            }) => match retry_after {
                Some(delay) if !config_fault => {
                    self.failing_since.get_or_insert(now);
                    self.state = State::RateLimited(RateLimited {
                        reason: format!(
                            "{reason}; {} asked to wait {:.1}s",
                            self.peer.name,
                            delay.as_secs_f32()
                        ),
                        until: now + delay,
                    });
                }
                _ => self.retry(now, reason, config_fault),
            },
        }
    }

    /// The current request goes again after a pause.
    fn retry(&mut self, now: Instant, reason: String, config_fault: bool) {
        let since = *self.failing_since.get_or_insert(now);
        let failing = now.saturating_duration_since(since).as_secs();
        let reason = if failing > 0 {
            format!("{reason} (failing for {failing}s)")
        } else {
            reason
        };
        self.state = State::Retrying(Retrying {
            reason,
            config_fault,
        });
    }

    /// Canopsis took `sent` events and failed `failed`: the request goes
    /// again from its first failed event on.
    fn partially_taken(&mut self, now: Instant, sent: usize, failed: &[Value]) {
        let Some((body, count)) = self.queue.front_mut() else {
            return;
        };
        let items = Framing::Array.items(body).unwrap_or_default();
        let echo = failed.first();
        let shown = one_line(&echo.map(Value::to_string).unwrap_or_default(), 200);
        let n = failed.len();
        let reason = match PartiallyTaken::locate(&items, echo).first_failed {
            Some(0) if sent == 0 => format!(
                "Canopsis could not process any of the {n} event(s) sent (all in failed_events: its database or message bus is failing); retried, nothing is dead-lettered; first: {shown}"
            ),
            Some(at) => {
                let rest = items.len() - at;
                let resent = Framing::Array.join(items[at..].iter().copied());
                *body = resent;
                *count = rest;
                format!(
                    "Canopsis took {sent} event(s) and listed {n} in failed_events (the events pass its rules: its database or message bus failed them); the request goes again from the first failed event on, {rest} event(s) in order, nothing is dead-lettered; first failed: {shown}"
                )
            }
            None => format!(
                "Canopsis took {sent} event(s) and listed {n} in failed_events, the first of which matches no event sent: the whole request goes again, in order; first failed: {shown}"
            ),
        };
        self.retry(now, reason, false);
    }

    /// The peer refused the current request without a proof in its words.
    fn refused(&mut self, now: Instant, reason: String, confirming: Option<Confirming>) {
        let Some((body, count)) = self.queue.front() else {
            return;
        };
        let framing = self.peer.framing();
        if *count > 1 && self.peer.kind != Kind::Mattermost {
            if let Some((first, second)) = framing.split(body) {
                self.notes.push_back(format!(
                    "{} refused {count} events ({reason}): split to find the refused ones",
                    self.peer.name
                ));
                self.queue.pop_front();
                self.queue.push_front(second);
                self.queue.push_front(first);
                return;
            }
        }
        match self.peer.kind {
            Kind::Documents(_) if confirming.is_some() => {
                if let Some((body, _)) = self.queue.pop_front() {
                    self.proven.push_back(RefusedWithProof {
                        event: self.peer.single(&body).to_vec(),
                        proof: format!(
                            "refused alone ({}), then an empty request was taken, then it was refused again ({reason}): refused for its content",
                            confirming.map(|c| c.refusal).unwrap_or_default()
                        ),
                    });
                }
                self.failing_since = None;
            }
            Kind::Documents(framing) => {
                self.state = State::Probing(Probing {
                    refusal: reason,
                    probe: framing.join([]),
                })
            }
            Kind::Canopsis | Kind::Mattermost => self.retry(
                now,
                format!(
                    "{} refused a request ({reason}) in words that do not prove its content at fault: a configuration problem ({}); nothing is dead-lettered",
                    self.peer.name, self.peer.where_to_look
                ),
                true,
            ),
        }
    }

    /// How the empty request sent after a lone refusal ended.
    fn probed(&mut self, now: Instant, p: Probing, answer: Answer) {
        let (what, config_fault) = match answer {
            Answer::Peer(Verdict::Delivered) => {
                self.state = State::Confirming(Confirming { refusal: p.refusal });
                return;
            }
            Answer::Peer(Verdict::Refused(r) | Verdict::Proven(r)) => (r, true),
            Answer::Peer(Verdict::Partial { .. }) => ("a partial answer".to_string(), true),
            Answer::Peer(Verdict::Retry {
                reason,
                config_fault,
                ..
            }) => (reason, config_fault),
            Answer::Failed {
                reason,
                config_fault,
            } => (reason, config_fault),
        };
        self.retry(
            now,
            format!(
                "{} refused a lone document ({}) and did not take an empty request either ({what}): not proven bad, so a configuration problem ({}) or a failing receiver; nothing is dead-lettered",
                self.peer.name, p.refusal, self.peer.where_to_look
            ),
            config_fault,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canopsis() -> Peer {
        Peer::of(&Sink::Canopsis)
    }

    fn event(o: u32, n: u32) -> String {
        format!(
            r#"{{"event_type":"check","state":{},"connector":"c","connector_name":"n","component":"h{o}","output":"{n}"}}"#,
            n % 4
        )
    }

    fn body(events: &[String]) -> Part {
        (format!("[{}]", events.join(",")).into_bytes(), events.len())
    }

    fn text(p: Part) -> String {
        String::from_utf8(p.0).unwrap()
    }

    fn sent(d: &mut Delivery, now: Instant) -> String {
        match d.next(now) {
            Step::Send { body, .. } => String::from_utf8(body.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_partial_answer_resends_the_suffix_from_the_first_failed_event() {
        let now = Instant::now();
        let evs: Vec<String> = (0..4).map(|n| event(1, n)).collect();
        let mut d = Delivery::new(canopsis(), VecDeque::from([body(&evs)]));
        sent(&mut d, now);
        // Canopsis injects author and role in what it echoes.
        let mut echo: Value = serde_json::from_str(&evs[1]).unwrap();
        echo["author"] = json!("root");
        echo["role"] = json!("admin");
        d.answered(
            now,
            Answer::Peer(Verdict::Partial {
                sent: 3,
                failed: vec![echo],
            }),
        );
        assert!(
            matches!(d.next(now), Step::Pause { config_fault: false, reason, .. } if reason.contains("from the first failed event on, 3"))
        );
        assert_eq!(sent(&mut d, now), text(body(&evs[1..])));
        d.answered(now, Answer::Peer(Verdict::Delivered));
        assert_eq!(d.next(now), Step::Done);
    }

    #[test]
    fn an_echo_that_matches_nothing_resends_the_whole_request_and_all_failed_never_dead_letters() {
        let now = Instant::now();
        let evs: Vec<String> = (0..3).map(|n| event(1, n)).collect();
        let mut d = Delivery::new(canopsis(), VecDeque::from([body(&evs)]));
        for _ in 0..50 {
            sent(&mut d, now);
            d.answered(
                now,
                Answer::Peer(Verdict::Partial {
                    sent: 2,
                    failed: vec![json!({"garbled": true})],
                }),
            );
            assert!(
                matches!(d.next(now), Step::Pause { reason, .. } if reason.contains("whole request"))
            );
            assert_eq!(sent(&mut d, now), text(body(&evs)));
            let all: Vec<Value> = evs
                .iter()
                .map(|e| serde_json::from_str(e).unwrap())
                .collect();
            d.answered(
                now,
                Answer::Peer(Verdict::Partial {
                    sent: 0,
                    failed: all,
                }),
            );
            assert!(
                matches!(d.next(now), Step::Pause { reason, .. } if reason.contains("could not process any"))
            );
        }
    }

    #[test]
    fn events_breaking_a_rule_are_dead_lettered_before_the_rest_is_sent() {
        let now = Instant::now();
        let bad = r#"{"event_type":"check","state":"abc","connector":"c","connector_name":"n","component":"h"}"#;
        let evs = vec![event(1, 0), bad.to_string(), event(1, 2)];
        let mut d = Delivery::new(canopsis(), VecDeque::from([body(&evs)]));
        let Step::DeadLetter { event, proof } = d.next(now) else {
            panic!()
        };
        assert_eq!(event, bad.as_bytes());
        assert!(proof.contains("state must be"), "{proof}");
        assert_eq!(sent(&mut d, now), format!("[{},{}]", evs[0], evs[2]));
    }

    #[test]
    fn a_batch_of_rule_breakers_is_dead_lettered_without_a_request() {
        let now = Instant::now();
        let evs = vec![
            r#"{"event_type":"check","state":1,"connector":"c","connector_name":"n"}"#.to_string(),
            "[]".to_string(),
        ];
        let mut d = Delivery::new(canopsis(), VecDeque::from([body(&evs)]));
        assert!(
            matches!(d.next(now), Step::DeadLetter { proof, .. } if proof.contains("needs a component"))
        );
        assert!(
            matches!(d.next(now), Step::DeadLetter { proof, .. } if proof.contains("JSON object"))
        );
        assert_eq!(d.next(now), Step::Done);
    }

    #[test]
    fn mattermost_words_dead_letter_at_once_and_a_proxy_refusal_is_retried() {
        let now = Instant::now();
        let peer = Peer::of(&Sink::Mattermost(crate::config::MattermostSettings {
            username: None,
            icon_url: None,
            channel: None,
            per_second: 5,
            summary_after: 10,
            buttons: None,
            bot: None,
        }));
        let reqs = VecDeque::from([
            (b"{\"text\":\"a\"}".to_vec(), 1),
            (b"{\"text\":\"b\"}".to_vec(), 1),
        ]);
        let mut d = Delivery::new(peer, reqs);
        sent(&mut d, now);
        d.answered(now, Answer::Peer(Verdict::Proven("HTTP 400 text".into())));
        assert!(
            matches!(d.next(now), Step::DeadLetter { event, .. } if event == b"{\"text\":\"a\"}")
        );
        sent(&mut d, now);
        d.answered(now, Answer::Peer(Verdict::Refused("HTTP 413".into())));
        assert!(
            matches!(d.next(now), Step::Pause { config_fault: true, reason, .. } if reason.starts_with("Mattermost refused"))
        );
    }

    #[test]
    fn a_lone_refused_document_is_proven_bad_by_an_empty_request_taken() {
        let now = Instant::now();
        let peer = Peer::of(&Sink::Documents(Framing::Array));
        let mut d = Delivery::new(peer, VecDeque::from([(b"[{\"n\":1}]".to_vec(), 1)]));
        sent(&mut d, now);
        d.answered(now, Answer::Peer(Verdict::Refused("HTTP 400".into())));
        assert_eq!(sent(&mut d, now), "[]");
        d.answered(now, Answer::Peer(Verdict::Refused("HTTP 400".into())));
        assert!(matches!(
            d.next(now),
            Step::Pause {
                config_fault: true,
                ..
            }
        ));
        sent(&mut d, now);
        d.answered(now, Answer::Peer(Verdict::Refused("HTTP 400".into())));
        assert_eq!(sent(&mut d, now), "[]");
        d.answered(now, Answer::Peer(Verdict::Delivered));
        assert_eq!(sent(&mut d, now), "[{\"n\":1}]");
        d.answered(now, Answer::Peer(Verdict::Refused("HTTP 400".into())));
        assert!(
            matches!(d.next(now), Step::DeadLetter { event, proof } if event == b"{\"n\":1}" && proof.contains("empty request"))
        );
        assert_eq!(d.next(now), Step::Done);
    }

    #[test]
    fn retry_after_is_waited_out_as_what_is_left_of_it() {
        let now = Instant::now();
        let mut d = Delivery::new(canopsis(), VecDeque::from([body(&[event(1, 1)])]));
        sent(&mut d, now);
        d.answered(
            now,
            Answer::Peer(Verdict::Retry {
                reason: "HTTP 429".into(),
                config_fault: false,
                retry_after: Some(Duration::from_secs(5)),
            }),
        );
        let later = now + Duration::from_secs(2);
        assert!(
            matches!(d.next(later), Step::Pause { hint: Some(h), .. } if h == Duration::from_secs(3))
        );
    }
}
