//! Delivering a batch of events to the sink, whatever it is: what an
//! answer means is the sink's ([`crate::sink`]); when a refused event is
//! judged bad rather than the configuration, and when it goes to the
//! dead-letter file, is decided here for all of them.

use super::worker::{Worker, BREAKER};
use super::MAX_PARTIAL_ATTEMPTS;
use crate::batch::Batch;
use crate::sink::mattermost::{self, Settings};
use crate::sink::{Sink, Verdict};
use crate::transport::{one_line, Method, Request, Transport};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Worker {
    /// Sends a batch until the peer confirmed each event or refused it for
    /// good. Order is kept.
    ///
    /// A refusal condemns an event only when the peer is seen taking others:
    /// - a refusal of content (for Canopsis, 400/413/422 with its JSON
    ///   error; see [`crate::sink`]): the batch is split in
    ///   halves down to single events. A refused single event is dead-lettered
    ///   once another event of the batch was taken; if [`BREAKER`] single
    ///   events are refused in a row and none taken, or the batch holds no
    ///   other event, the refusal is treated as a configuration fault and
    ///   retried (a lone event is dead-lettered after `permanent_after` of
    ///   refusals).
    /// - `failed_events`: when every event of a request failed, Canopsis's
    ///   backend is failing (its message bus, its database): retried, never
    ///   dead-lettered. Events listed while others were taken are resent,
    ///   and dead-lettered only after [`MAX_PARTIAL_ATTEMPTS`] tries over
    ///   `permanent_after`.
    ///
    /// For Mattermost each event is a request of its own, paced, and what
    /// waits beyond [`Settings::summary_after`] is one summary request.
    pub(super) fn deliver_events(&mut self, batch: &Batch) -> bool {
        let mut pending = match &self.routes.sink {
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
        let framing = self.routes.sink.framing();
        let peer = self.routes.sink.peer();
        let took_others = format!("{peer} took other events of its batch");
        // Single events refused while nothing of this batch was taken yet.
        let mut held: Vec<(Vec<u8>, String)> = Vec::new();
        let mut taken_here = false;
        let mut refused_since: Option<Instant> = None;
        // Events listed in failed_events: since when, how many tries.
        let mut failing_since: Option<(Instant, u32)> = None;
        loop {
            let Some((body, count)) = pending.pop_front() else {
                if held.is_empty() {
                    return true;
                }
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.routes.permanent_after {
                    let why = format!("refused alone for {}s", since.elapsed().as_secs());
                    if !self.dead_letter_held(&mut held, &why) {
                        return false;
                    }
                    continue;
                }
                let n = held.len();
                for (body, _) in held.drain(..).rev() {
                    pending.push_front((body, 1));
                }
                let step = self.failed(
                    &format!(
                        "{peer} refused {n} event(s) and took no other yet: sent again; dead-lettered only if it takes others or goes on refusing them for {}s",
                        self.routes.permanent_after.as_secs()
                    ),
                    false,
                    None,
                );
                if !self.wait(step) {
                    return false;
                }
                continue;
            };
            if let Sink::Mattermost(settings) = &self.routes.sink {
                let interval = settings.interval();
                if !self.pace(interval) {
                    return false;
                }
            }
            let stats = &self.shared.progress.stats;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            self.transport.set_deadline(self.shared.deadline());
            let req = Request {
                method: Method::Post,
                path: &self.routes.event_route,
                body: &body,
            };
            let step = match self.transport.send(req) {
                Err(e) => {
                    pending.push_front((body, count));
                    self.failed(&e.to_string(), e.is_config_fault(), None)
                }
                Ok(resp) => match self.routes.sink.judge(&resp) {
                    Verdict::Delivered => {
                        stats.sent_events.fetch_add(count as u64, Ordering::Relaxed);
                        self.log.debug(format_args!("{peer} took {count} event(s)"));
                        self.backoff.reset();
                        taken_here = true;
                        failing_since = None;
                        if !self.dead_letter_held(&mut held, &took_others) {
                            return false;
                        }
                        continue;
                    }
                    Verdict::Refused(reason) => {
                        if count > 1 {
                            if let Some((first, second)) = framing.split(&body) {
                                self.log.warn(format_args!(
                                    "{reason}: splitting {count} events to find the refused ones"
                                ));
                                pending.push_front(second);
                                pending.push_front(first);
                                continue;
                            }
                        }
                        refused_since.get_or_insert_with(Instant::now);
                        held.push((framing.single(&body).to_vec(), reason));
                        if taken_here {
                            if !self.dead_letter_held(&mut held, &took_others) {
                                return false;
                            }
                            continue;
                        }
                        if held.len() < BREAKER {
                            continue;
                        }
                        let n = held.len();
                        let last = held.last().map(|(_, r)| r.clone()).unwrap_or_default();
                        for (body, _) in held.drain(..).rev() {
                            pending.push_front((body, 1));
                        }
                        self.failed(
                            &format!(
                                "{peer} refused {n} events one by one and took none ({last}): a configuration problem ({}), not bad events; nothing is dead-lettered",
                                self.routes.sink.where_to_look()
                            ),
                            true,
                            None,
                        )
                    }
                    Verdict::Partial { sent, failed } => {
                        stats.sent_events.fetch_add(sent as u64, Ordering::Relaxed);
                        let (since, tries) =
                            failing_since.get_or_insert_with(|| (Instant::now(), 0));
                        *tries += 1;
                        let (since, tries) = (*since, *tries);
                        let n = failed.len();
                        let failed_json = serde_json::to_vec(&failed).unwrap_or_default();
                        if sent > 0 {
                            taken_here = true;
                            if !self.dead_letter_held(&mut held, &took_others) {
                                return false;
                            }
                        }
                        let permanent = taken_here
                            && tries >= MAX_PARTIAL_ATTEMPTS
                            && since.elapsed() >= self.routes.permanent_after;
                        if permanent {
                            let why = format!(
                                "listed in failed_events {tries} times over {}s while Canopsis took the other events of its batch: judged permanent",
                                since.elapsed().as_secs()
                            );
                            for ev in &failed {
                                let ev = serde_json::to_vec(ev).unwrap_or_default();
                                if !self.keep_dead(&why, &ev) {
                                    return false;
                                }
                            }
                            failing_since = None;
                            continue;
                        }
                        let reason = if sent == 0 {
                            format!(
                                "Canopsis could not process any of the {n} event(s) sent (all in failed_events: its message bus or database is failing); retried, nothing is dead-lettered: {}",
                                one_line(&String::from_utf8_lossy(&failed_json), 120)
                            )
                        } else {
                            format!(
                                "Canopsis took {sent} event(s) and listed {n} in failed_events (try {tries}); they are sent again: {}",
                                one_line(&String::from_utf8_lossy(&failed_json), 120)
                            )
                        };
                        pending.push_front((failed_json, n));
                        self.failed(&reason, false, resp.retry_after)
                    }
                    Verdict::Retry {
                        reason,
                        config_fault,
                        retry_after,
                    } => {
                        pending.push_front((body, count));
                        self.failed(&reason, config_fault, retry_after)
                    }
                },
            };
            if !self.wait(step) {
                return false;
            }
        }
    }

    /// Dead-letters the refused events held so far, `why` saying what
    /// proved them refused for their content.
    fn dead_letter_held(&mut self, held: &mut Vec<(Vec<u8>, String)>, why: &str) -> bool {
        while let Some((event, reason)) = held.first() {
            let reason = format!("{reason}; {why}");
            let event = event.clone();
            if !self.keep_dead(&reason, &event) {
                return false;
            }
            held.remove(0);
        }
        true
    }

    /// Waits until `interval` has passed since the last request began;
    /// `false` if the connector closed meanwhile and its budget is spent.
    fn pace(&mut self, interval: std::time::Duration) -> bool {
        if let Some(last) = self.last_request {
            let next = last + interval;
            let now = Instant::now();
            if next > now && !self.pause(next - now) {
                return false;
            }
        }
        self.last_request = Some(Instant::now());
        true
    }
}

/// What goes to Mattermost for a batch: a request per message, and when
/// more than [`Settings::summary_after`] wait, the first ones and one
/// summary for the rest. `None` if the batch is not envelopes.
fn mattermost_requests(batch: &Batch, settings: &Settings) -> Option<VecDeque<(Vec<u8>, usize)>> {
    let messages = mattermost::messages(&batch.body)?;
    let shown = if messages.len() > settings.summary_after {
        settings.summary_after.saturating_sub(1).max(1)
    } else {
        messages.len()
    };
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
        let s = Settings {
            username: None,
            icon_url: None,
            channel: None,
            per_second: 5,
            summary_after: 3,
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
