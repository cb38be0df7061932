//! Delivering a batch of events to the sink, whatever it is: what an
//! answer means is the sink's ([`crate::sink`]); what to do about it — send
//! again, from where, pause, dead-letter with which proof — is decided by
//! the pure state machine of [`super::delivery`]; this file only carries
//! its decisions out (transport, pace, pauses, dead-letter file, stats,
//! log lines).

use super::delivery::{Answer, Delivery, Peer, Step};
use super::worker::Worker;
use crate::batch::Batch;
use crate::config::MattermostSettings;
use crate::sink::mattermost;
use crate::sink::{Sink, Verdict};
use crate::transport::{Method, Request, Response, Transport};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Worker {
    /// Sends a batch until each event was taken by the peer or
    /// dead-lettered with proof that it never will be; `false` when the
    /// connector closes first (what is not confirmed stays with broker or
    /// the spool). See [`super::delivery`] for the rules.
    ///
    /// For Mattermost each event is a request of its own, paced, and what
    /// waits beyond [`MattermostSettings::summary_after`] is one summary request.
    pub(super) fn deliver_events(&mut self, batch: &Batch) -> bool {
        if let Sink::Mattermost(settings @ MattermostSettings { bot: Some(_), .. }) =
            &self.routes.sink
        {
            let settings = settings.clone();
            return self.deliver_threads(batch, &settings);
        }
        let requests = match &self.routes.sink {
            Sink::Mattermost(settings) => match mattermost_requests(batch, settings) {
                Some(requests) => requests,
                None => {
                    return self.keep_dead(
                        "records that are not Mattermost messages (a spool written with another webhook_format?)",
                        &batch.body,
                    )
                }
            },
            _ => VecDeque::from([(batch.body.clone(), batch.count)]),
        };
        let peer = Peer::of(&self.routes.sink);
        let interval = match &self.routes.sink {
            Sink::Mattermost(settings) => Some(settings.interval()),
            _ => None,
        };
        let route = self.routes.event_route.clone();
        let delivery = Delivery::new(peer, requests);
        !matches!(
            self.drive(delivery, Method::Post, &route, interval, None),
            Driven::Stopped
        )
    }

    /// Carries out `delivery`'s steps, each request a `method` to `path`
    /// (paced by `interval`), until it is done ([`Driven::Done`], with the
    /// last answer taken) or the connector closes ([`Driven::Stopped`]).
    /// `stop_on` ends it early on an answer the caller handles itself
    /// ([`Driven::Answered`]: a thread's root gone), before the sink judges it.
    pub(super) fn drive(
        &mut self,
        mut delivery: Delivery,
        method: Method,
        path: &str,
        interval: Option<std::time::Duration>,
        stop_on: Option<fn(&Response) -> bool>,
    ) -> Driven {
        let peer = delivery.peer();
        let mut taken: Option<Response> = None;
        loop {
            match delivery.next(Instant::now()) {
                Step::Done => return Driven::Done(taken),
                Step::Note(line) => self.log.warn(format_args!("{line}")),
                Step::DeadLetter { event, proof } => {
                    if !self.keep_dead(&proof, &event) {
                        return Driven::Stopped;
                    }
                }
                Step::Pause {
                    reason,
                    config_fault,
                    hint,
                } => {
                    let step = self.failed(&reason, config_fault, hint);
                    if !self.wait(step) {
                        return Driven::Stopped;
                    }
                }
                Step::Send { body, count } => {
                    if let Some(interval) = interval {
                        if !self.pace(interval) {
                            return Driven::Stopped;
                        }
                    }
                    let stats = &self.shared.progress.stats;
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                    self.transport.set_deadline(self.shared.deadline());
                    let req = Request { method, path, body };
                    let answer = match self.transport.send(req) {
                        Err(e) => Answer::Failed {
                            reason: e.to_string(),
                            config_fault: e.is_config_fault(),
                        },
                        Ok(resp) if stop_on.is_some_and(|stop| stop(&resp)) => {
                            return Driven::Answered
                        }
                        Ok(resp) => {
                            let verdict = self.routes.sink.judge(&resp);
                            let n = match &verdict {
                                Verdict::Delivered => count,
                                Verdict::Partial { sent, .. } => *sent,
                                _ => 0,
                            };
                            if n > 0 {
                                let stats = &self.shared.progress.stats;
                                stats.sent_events.fetch_add(n as u64, Ordering::Relaxed);
                                self.log
                                    .debug(format_args!("{} took {n} event(s)", peer.name));
                            }
                            if verdict == Verdict::Delivered {
                                self.backoff.reset();
                                taken = Some(resp);
                            }
                            Answer::Peer(verdict)
                        }
                    };
                    delivery.answered(Instant::now(), answer);
                }
            }
        }
    }

    /// Waits until `interval` has passed since the last request began;
    /// `false` if the connector is closing and a wait is due: the messages
    /// not sent yet are handed back (left unacknowledged, broker's
    /// retention keeps them), not posted at the pace while broker waits.
    fn pace(&mut self, interval: std::time::Duration) -> bool {
        if let Some(last) = self.last_request {
            let next = last + interval;
            let now = Instant::now();
            // Closing before or during the wait: hand back, do not post.
            if next > now && (self.closing() || !self.pause(next - now) || self.closing()) {
                return false;
            }
        }
        self.last_request = Some(Instant::now());
        true
    }

    /// Whether the connector is closing; logs that the messages not posted
    /// yet are handed back.
    fn closing(&self) -> bool {
        let closing = self.shared.deadline().is_some();
        if closing {
            self.log.info(format_args!(
                "closing: the {} messages not posted yet are left to broker, not paced out",
                self.routes.sink.peer()
            ));
        }
        closing
    }
}

/// How a [`Worker::drive`] ended.
pub(super) enum Driven {
    /// Every request taken or dead-lettered; the last answer taken.
    Done(Option<Response>),
    /// An answer the caller asked to see before the sink judges it.
    Answered,
    /// The connector closes: nothing more is sent.
    Stopped,
}

/// How many of `waiting` messages go one by one when at most
/// `summary_after` may: all, or the first ones, the rest in one summary.
pub(super) fn shown(waiting: usize, summary_after: usize) -> usize {
    if waiting > summary_after {
        summary_after.saturating_sub(1).max(1)
    } else {
        waiting
    }
}

/// What goes to Mattermost for a batch: a request per message, and when
/// more than [`MattermostSettings::summary_after`] wait, the first ones and one
/// summary for the rest. `None` if the batch is not envelopes.
fn mattermost_requests(
    batch: &Batch,
    settings: &MattermostSettings,
) -> Option<VecDeque<(Vec<u8>, usize)>> {
    let messages = mattermost::messages(&batch.body)?;
    let shown = shown(messages.len(), settings.summary_after);
    let mut out: VecDeque<(Vec<u8>, usize)> = messages[..shown]
        .iter()
        .map(|m| (mattermost::request_body(&m.post, settings), 1))
        .collect();
    let rest = &messages[shown..];
    if !rest.is_empty() {
        out.push_back((mattermost::summary(rest, settings), rest.len()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelopes(states: &[&str]) -> Batch {
        let items: Vec<String> = states
            .iter()
            .map(|s| format!(r#"{{"summary":"{s}","post":{{"text":"{s}"}}}}"#))
            .collect();
        Batch {
            first_seq: 1,
            last_seq: states.len() as u64,
            count: states.len(),
            body: format!("[{}]", items.join(",")).into_bytes(),
            lane: 0,
        }
    }

    #[test]
    fn more_waiting_than_allowed_is_the_first_ones_and_one_summary_in_as_many_requests() {
        let s = MattermostSettings {
            username: None,
            icon_url: None,
            channel: None,
            per_second: 5,
            summary_after: 3,
            buttons: None,
            bot: None,
        };
        let few = mattermost_requests(&envelopes(&["OK", "WARNING", "OK"]), &s).unwrap();
        assert_eq!(few.len(), 3);
        assert!(few.iter().all(|(_, n)| *n == 1));
        let many = envelopes(&["CRITICAL", "OK", "WARNING", "CRITICAL", "OK"]);
        let reqs: Vec<(String, usize)> = mattermost_requests(&many, &s)
            .unwrap()
            .into_iter()
            .map(|(b, n)| (String::from_utf8(b).unwrap(), n))
            .collect();
        assert_eq!(
            reqs,
            [
                (r#"{"text":"CRITICAL"}"#.to_string(), 1),
                (r#"{"text":"OK"}"#.to_string(), 1),
                (
                    r#"{"text":"3 more state changes: 1 WARNING, 1 CRITICAL, 1 OK"}"#.to_string(),
                    3
                ),
            ]
        );
        assert!(mattermost_requests(&envelopes(&[]), &s).unwrap().is_empty());
        let mut foreign = many.clone();
        foreign.body = br#"[{"event_type":"check"}]"#.to_vec();
        assert!(mattermost_requests(&foreign, &s).is_none());
    }
}
