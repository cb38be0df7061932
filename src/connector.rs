//! One connector instance: filter, format, bulk, hand over to the sender,
//! and decide what to tell broker.
//!
//! # Acknowledgements
//!
//! Broker's `true` acknowledges every event handed over since the previous
//! `true`, so `write`/`flush` answer `true` only when every accepted event
//! received so far has been confirmed by Canopsis, or refused by it and kept
//! in the dead-letter file (filtered events need nothing). Anything still
//! buffered, in flight or failing means `false`, and broker keeps those
//! events in its retention.
//!
//! Under sustained load broker never calls `flush` and the buffer is never
//! empty, so acks would stall until broker's queue fills. To keep them
//! flowing, once [`ACK_WINDOW`] events have gone unacknowledged `write` sends
//! what it holds and waits (at most [`ACK_WAIT`]) for Canopsis to confirm;
//! it does not wait while the sender is failing, nor again until the sender
//! made progress after a wait that timed out.

use crate::batch::{Batcher, MAX_BODY_BYTES};
use crate::cache::{self, Cache, Memo};
use crate::config::Config;
use crate::event::{ElementKind, FieldSource, NebEvent, NEB};
use crate::filter;
use crate::format;
use crate::logger::Logger;
use crate::pbehavior;
use crate::sender::{Routes, Sender, Work};
use crate::transport::{DryRun, Http, Transport};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Unacknowledged broker events after which `write` waits for delivery.
/// Half of broker's default `event_queue_max_size` (10000), so broker never
/// stops calling `write` for lack of acks in the normal case.
pub const ACK_WINDOW: u64 = 5000;

/// Longest wait for delivery inside `write`.
pub const ACK_WAIT: Duration = Duration::from_secs(5);

/// Longest wait for delivery inside `flush` (broker is idle then; at stop,
/// this plus [`CLOSE_BUDGET`] stays within 5 s).
pub const FLUSH_WAIT: Duration = Duration::from_millis(500);

/// Time the sender gets to deliver what it holds when the Lua state closes.
pub const CLOSE_BUDGET: Duration = Duration::from_secs(4);

/// How often the stats line is written.
pub const STATS_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Counters {
    received: u64,
    accepted: u64,
    filtered: u64,
    malformed: u64,
}

/// A running connector.
pub struct Connector {
    cfg: Config,
    log: Logger,
    batcher: Batcher,
    sender: Sender,
    last_seq: u64,
    unacked: u64,
    wait_gate: Option<u64>,
    counters: Counters,
    last_stats: Instant,
    memo: Memo,
}

impl Connector {
    /// Starts a connector sending over HTTP (or to the log with
    /// `send_data_test=1`).
    pub fn start(cfg: Config, log: Logger) -> Result<Connector, String> {
        let transport: Box<dyn Transport> = if cfg.send_data_test {
            Box::new(DryRun::new(log.clone()))
        } else {
            Box::new(Http::new(&cfg.http, log.clone())?)
        };
        Connector::with_transport(cfg, log, transport)
    }

    /// Starts a connector over any transport.
    pub fn with_transport(
        cfg: Config,
        log: Logger,
        transport: Box<dyn Transport>,
    ) -> Result<Connector, String> {
        let routes = Routes {
            event_route: cfg.http.event_route.clone(),
            downtime: cfg.downtime.clone(),
            placeholder_ids: cfg.send_data_test,
            deadletter: cfg.deadletter_file.clone(),
        };
        let sender = Sender::spawn(transport, routes, log.clone())
            .map_err(|e| format!("cannot start the sender thread: {e}"))?;
        log.info(format_args!(
            "connector started: sending to {}{} in batches of up to {} events or {}s{}",
            cfg.http.base_url(),
            cfg.http.event_route,
            cfg.max_buffer_size,
            cfg.max_buffer_age.as_secs(),
            if cfg.send_data_test {
                " (send_data_test=1: payloads go to this log only)"
            } else {
                ""
            }
        ));
        Ok(Connector {
            batcher: Batcher::new(cfg.max_buffer_size, MAX_BODY_BYTES, cfg.max_buffer_age),
            cfg,
            log,
            sender,
            last_seq: 0,
            unacked: 0,
            wait_gate: None,
            counters: Counters::default(),
            last_stats: Instant::now(),
            memo: Memo::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The connector's log.
    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// broker's `filter(category, element)`: the events this connector
    /// sends, and configuration changes (to forget remembered cache answers).
    pub fn accepts(&self, category: u32, element: u32) -> bool {
        self.kind_of(category, element).is_some() || cache::changes_cache(category, element)
    }

    /// The kind of event this connector takes for a broker type, if any.
    pub fn kind_of(&self, category: u32, element: u32) -> Option<ElementKind> {
        if category != NEB || !self.cfg.categories.iter().any(|c| c.id() == category) {
            return None;
        }
        ElementKind::from_element(element).filter(|k| self.cfg.elements.contains(k))
    }

    /// broker's `write(event)`.
    pub fn write(
        &mut self,
        category: u32,
        element: u32,
        src: &mut dyn FieldSource,
        cache: &mut dyn Cache,
    ) -> bool {
        self.unacked += 1;
        self.counters.received += 1;
        let now = Instant::now();
        match self.kind_of(category, element) {
            None => {
                if cache::changes_cache(category, element) {
                    self.memo.clear();
                }
                self.counters.filtered += 1;
            }
            Some(kind) => self.process(kind, src, cache, now),
        }
        if self.batcher.due(now) {
            self.hand_over();
        }
        self.maybe_stats(now);
        let wait = (self.unacked >= ACK_WINDOW).then_some(ACK_WAIT);
        self.settle(wait)
    }

    /// broker's `flush()`: broker is idle, send what waits.
    pub fn flush(&mut self) -> bool {
        self.hand_over();
        self.maybe_stats(Instant::now());
        self.settle(Some(FLUSH_WAIT))
    }

    fn process(
        &mut self,
        kind: ElementKind,
        src: &mut dyn FieldSource,
        cache: &mut dyn Cache,
        now: Instant,
    ) {
        let ev = match NebEvent::read(kind, src) {
            Ok(ev) => ev,
            Err(e) => {
                self.counters.malformed += 1;
                self.log.warn(format_args!("skipping event: {e}"));
                return;
            }
        };
        if kind == ElementKind::Downtime && !self.cfg.downtime.send_pbh {
            self.counters.filtered += 1;
            self.log.debug(format_args!(
                "downtime event not sent: canopsis_downtime_send_pbh=0"
            ));
            return;
        }
        // Downtime starts read the object's current state: ask broker.
        let checked = if kind == ElementKind::Downtime {
            filter::check(&self.cfg.filter, &self.cfg.format, &ev, cache)
        } else {
            filter::check(
                &self.cfg.filter,
                &self.cfg.format,
                &ev,
                &mut self.memo.over(cache),
            )
        };
        let subject = match checked {
            Ok(subject) => subject,
            Err(why) => {
                self.counters.filtered += 1;
                self.log
                    .debug(format_args!("{} event not sent: {why}", kind.name()));
                return;
            }
        };
        match &ev {
            NebEvent::Downtime(d) => match pbehavior::action(d, &subject) {
                Ok(action) => {
                    // Keep Canopsis's view in broker's order: events before
                    // this downtime go first.
                    self.hand_over();
                    self.counters.accepted += 1;
                    self.last_seq += 1;
                    if !self.sender.send(Work::Downtime {
                        seq: self.last_seq,
                        action,
                    }) {
                        self.log.error(format_args!(
                            "sender thread is gone; events stay unacknowledged"
                        ));
                    }
                }
                Err(skip) => {
                    self.counters.filtered += 1;
                    self.log
                        .debug(format_args!("downtime event not sent: {skip}"));
                }
            },
            _ => {
                if let Some(json) = format::event_json(&self.cfg.format, &ev, &subject) {
                    self.counters.accepted += 1;
                    self.last_seq += 1;
                    self.batcher.push(self.last_seq, &json, now);
                }
            }
        }
    }

    fn hand_over(&mut self) {
        if let Some(batch) = self.batcher.take() {
            if !self.sender.send(Work::Events(batch)) {
                self.log.error(format_args!(
                    "sender thread is gone; events stay unacknowledged"
                ));
            }
        }
    }

    /// `true` when everything received so far is confirmed; may wait up to
    /// `wait` for in-flight batches.
    fn settle(&mut self, wait: Option<Duration>) -> bool {
        let progress = self.sender.progress();
        let mut done = self.batcher.is_empty() && progress.delivered() >= self.last_seq;
        if !done {
            if let Some(timeout) = wait {
                let gate_open = self.wait_gate.is_none_or(|g| progress.delivered() > g);
                if gate_open && !progress.failing() {
                    self.hand_over();
                    let progress = self.sender.progress();
                    done = progress.wait_for(self.last_seq, timeout);
                    self.wait_gate = (!done).then(|| progress.delivered());
                }
            }
        }
        if done {
            self.unacked = 0;
        }
        done
    }

    fn maybe_stats(&mut self, now: Instant) {
        if now.duration_since(self.last_stats) >= STATS_INTERVAL {
            self.last_stats = now;
            self.log_stats();
        }
    }

    /// Writes the health line.
    pub fn log_stats(&self) {
        let p = self.sender.progress();
        let s = &p.stats;
        let last_error = s.last_error.lock().map(|e| e.clone()).unwrap_or_default();
        self.log.info(format_args!(
            "stats: received={} accepted={} filtered={} malformed={} waiting={} sent={} requests={} failed_requests={} dead_lettered={} unacked={} state={} last_error={}",
            self.counters.received,
            self.counters.accepted,
            self.counters.filtered,
            self.counters.malformed,
            self.last_seq - p.delivered().min(self.last_seq),
            s.sent_events.load(Ordering::Relaxed),
            s.requests.load(Ordering::Relaxed),
            s.failed_requests.load(Ordering::Relaxed),
            s.dead_lettered.load(Ordering::Relaxed),
            self.unacked,
            if p.failing() { "failing" } else { "ok" },
            last_error.as_deref().unwrap_or("none"),
        ));
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.hand_over();
        let joined = self.sender.shutdown(CLOSE_BUDGET);
        self.log_stats();
        self.log.info(format_args!(
            "connector stopped{}",
            if joined {
                ""
            } else {
                " (sender thread still busy)"
            }
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, tests::minimal, ParamValue};
    use crate::event::{Field, MapSource};
    use crate::filter::tests::cache;
    use crate::transport::{Request, Response, TransportError};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Canopsis {
        bodies: Arc<Mutex<Vec<String>>>,
        down: Arc<Mutex<bool>>,
    }

    impl Transport for Canopsis {
        fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
            if *self.down.lock().unwrap() {
                return Err(TransportError::Connect("refused".into()));
            }
            let body = String::from_utf8(req.body.to_vec()).unwrap();
            self.bodies.lock().unwrap().push(body.clone());
            Ok(Response {
                status: 200,
                body: format!(
                    "{{\"sent_events\":{body},\"failed_events\":[],\"retry_events\":[]}}"
                ),
                retry_after: None,
            })
        }
    }

    fn connector(extra: &[(&str, ParamValue)], canopsis: &Canopsis) -> Connector {
        let mut p = minimal();
        for (k, v) in extra {
            p.insert(k.to_string(), v.clone());
        }
        let cfg = config::parse(&p).unwrap().config;
        Connector::with_transport(
            cfg,
            Logger::memory(log::LevelFilter::Debug),
            Box::new(canopsis.clone()),
        )
        .unwrap()
    }

    fn service_event(state: i64) -> MapSource {
        MapSource(vec![
            ("host_id", Field::Int(12)),
            ("service_id", Field::Int(34)),
            ("state", Field::Int(state)),
            ("state_type", Field::Int(1)),
            ("last_check", Field::Int(100)),
            ("last_hard_state_change", Field::Int(100)),
            ("output", Field::Str(b"x".to_vec())),
        ])
    }

    #[test]
    fn filtered_events_are_acked_at_once_accepted_ones_after_delivery() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[("max_buffer_size", ParamValue::Int(2))], &canopsis);
        assert!(c.write(NEB, 2, &mut MapSource::default(), &mut cache()));
        assert!(!c.write(NEB, 24, &mut service_event(2), &mut cache()));
        // Second event fills the batch; not delivered yet at return time.
        let _ = c.write(NEB, 24, &mut service_event(1), &mut cache());
        assert!(c.flush());
        let bodies = canopsis.bodies.lock().unwrap();
        assert_eq!(bodies.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
    }

    #[test]
    fn nothing_is_acked_while_canopsis_is_down() {
        let canopsis = Canopsis::default();
        *canopsis.down.lock().unwrap() = true;
        let mut c = connector(&[], &canopsis);
        assert!(!c.write(NEB, 24, &mut service_event(2), &mut cache()));
        assert!(!c.flush());
        assert!(!c.flush());
        *canopsis.down.lock().unwrap() = false;
        let t = Instant::now();
        while !c.flush() {
            assert!(t.elapsed() < Duration::from_secs(10), "never delivered");
        }
        assert_eq!(canopsis.bodies.lock().unwrap().len(), 1);
    }

    #[test]
    fn the_ack_window_keeps_acks_flowing_without_flush() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[("max_buffer_size", ParamValue::Int(1000))], &canopsis);
        let mut acked = 0;
        for _ in 0..(3 * ACK_WINDOW) {
            if c.write(NEB, 24, &mut service_event(2), &mut cache()) {
                acked += 1;
            }
        }
        assert!(acked >= 2, "acks stalled under load ({acked})");
    }

    #[test]
    fn malformed_events_are_logged_not_fatal() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[], &canopsis);
        let mut bad = MapSource(vec![("host_id", Field::Other("table"))]);
        assert!(c.write(NEB, 14, &mut bad, &mut cache()));
        assert!(c
            .log
            .lines()
            .iter()
            .any(|l| l.contains("unusable 'host_id'")));
    }

    #[test]
    fn configuration_changes_clear_remembered_names() {
        let canopsis = Canopsis::default();
        let mut c = connector(&[], &canopsis);
        let mut cache = cache();
        c.write(NEB, 24, &mut service_event(2), &mut cache);
        cache.hosts.get_mut(&12).unwrap().name = Some("renamed".into());
        c.write(NEB, 24, &mut service_event(1), &mut cache);
        assert!(c.accepts(NEB, 30), "pb_host reaches write");
        c.write(NEB, 30, &mut MapSource::default(), &mut cache);
        c.write(NEB, 24, &mut service_event(0), &mut cache);
        assert!(c.flush());
        let names: Vec<String> = canopsis
            .bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| serde_json::from_str::<Vec<serde_json::Value>>(b).unwrap())
            .map(|e| e["component"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["host-a", "host-a", "renamed"]);
    }

    #[test]
    fn accepts_only_configured_elements() {
        let c = connector(
            &[(
                "accepted_elements",
                ParamValue::Str("service_status".into()),
            )],
            &Canopsis::default(),
        );
        assert!(c.accepts(1, 24) && c.accepts(1, 29));
        assert!(!c.accepts(1, 14) && !c.accepts(1, 1) && !c.accepts(3, 24) && !c.accepts(1, 2));
    }
}
