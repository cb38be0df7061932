//! Starting a connector: its parts wired from the configuration (sender or
//! spool, templates, memories), and reviving what could not start yet.

use super::outlet::{sender_gone, Outlet, Starting};
use super::queue::Queue;
use super::stats::Counters;
use super::window::Window;
use super::{Connector, REMINDER, START_RETRY};
use crate::cache::Memo;
use crate::config::{Config, Framing};
use crate::event::{ElementKind, BAM, NEB};
use crate::logger::Logger;
use crate::progress::Progress;
use crate::render::{Choice, Formats};
use crate::sender::{Routes, Sender, Source};
use crate::sink::canopsis::pbehavior;
use crate::sink::Sink;
use crate::status::StatusFile;
use crate::transport::{DryRun, Http, Transport};
use crate::{dedup, filter, spool, status};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// What the previous run sent, when dedup is on.
pub(super) fn load_sent(cfg: &Config, log: &Logger) -> dedup::Sent {
    if !(cfg.filter.host_dedup || cfg.filter.service_dedup) {
        return dedup::Sent::default();
    }
    let path = dedup::path_for(&cfg.logfile);
    match dedup::Sent::load(&path) {
        Ok(sent) => {
            if !sent.is_empty() {
                log.info(format_args!(
                    "{}: the states last sent for {} objects, so changes already sent are not sent again",
                    path.display(),
                    sent.len()
                ));
            }
            sent
        }
        Err(e) => {
            log.warn(format_args!(
                "cannot read {} ({e}): a state change sent before the restart may be sent again",
                path.display()
            ));
            dedup::Sent::default()
        }
    }
}

/// The start's line: where events go, how they are bulked or paced.
fn log_started(cfg: &Config, log: &Logger) {
    let how = match &cfg.sink {
        Sink::Mattermost(m) if m.bot.is_some() => format!(
            "Mattermost's API at {} as a bot, one thread per alert, at most {} requests per second, a summary when more than {} wait",
            cfg.http.shown_url(),
            m.per_second,
            m.summary_after
        ),
        Sink::Mattermost(m) => format!(
            "Mattermost at {}, one message per request, at most {} per second, a summary when more than {} wait",
            cfg.http.shown_url(),
            m.per_second,
            m.summary_after
        ),
        sink => format!(
            "{} in batches of up to {} events or {}s{}",
            cfg.http.shown_url(),
            cfg.max_buffer_size,
            cfg.max_buffer_age.as_secs(),
            match sink {
                Sink::Documents(Framing::Array) => ", one JSON array per request",
                Sink::Documents(Framing::Lines) => ", one JSON document per line",
                _ => "",
            }
        ),
    };
    log.info(format_args!(
        "connector started: sending to {how}{}",
        if cfg.send_data_test {
            " (send_data_test=1: payloads go to this log only)"
        } else {
            ""
        }
    ));
}

impl Connector {
    /// Starts a connector sending over HTTP (or to the log with
    /// `send_data_test=1`).
    pub fn start(cfg: Config, log: Logger) -> Result<Connector, String> {
        let transport: Box<dyn Transport> = if cfg.send_data_test {
            Box::new(DryRun::new(log.clone(), &cfg.http))
        } else {
            Box::new(Http::new(&cfg.http, cfg.max_in_flight, log.clone())?)
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
            sink: cfg.sink.clone(),
            event_route: cfg.http.event_route.clone(),
            downtime: cfg.downtime.clone(),
            placeholder_ids: cfg.send_data_test,
            deadletter: cfg.deadletter_file.clone(),
            bulk: pbehavior::is_bulk_route(&cfg.downtime.route),
            threads_file: crate::sink::mattermost::threads::path_for(&cfg.logfile),
        };
        let queue = Queue::new(&cfg);
        log_started(&cfg, &log);
        let neb = cfg.categories.iter().any(|c| c.id() == NEB);
        let kinds = std::array::from_fn(|element| {
            ElementKind::from_element(element as u32).filter(|k| neb && cfg.elements.contains(k))
        });
        let bas = cfg.categories.iter().any(|c| c.id() == BAM)
            && cfg.elements.contains(&ElementKind::BaStatus);
        let formats = Formats::load(&cfg.format, &log);
        if bas && matches!(formats.choice(ElementKind::BaStatus), Choice::BuiltIn) {
            log.error(format_args!(
                "ba_status events are accepted but format_file has no bam_ba_status template: there is no built-in format for them, so they are not sent"
            ));
        }
        let sent = load_sent(&cfg, &log);
        let seen = crate::seen::Seen::load(&cfg.logfile, &log);
        let window = Window::new(&cfg);
        let now = Instant::now();
        let next_stats = now + cfg.stats_interval;
        let status_file = StatusFile::new(status::path_for(&cfg.logfile), REMINDER);
        let mut c = Connector {
            queue,
            cfg,
            log,
            outlet: Outlet {
                sender: None,
                starting: Some(Starting {
                    transport,
                    routes,
                    why: String::new(),
                    since: now,
                    next_try: now,
                    next_log: now,
                }),
                backlog: VecDeque::new(),
                idle: Arc::new(Progress::default()),
            },
            unacked: 0,
            window,
            counters: Counters::default(),
            unacked_since: now,
            next_stats,
            status_file,
            last_now: Instant::now(),
            clock_skips: 0,
            memo: Memo::default(),
            verdicts: filter::Verdicts::default(),
            sent,
            seen,
            hold: None,
            kinds,
            bas,
            formats,
        };
        c.revive(now);
        // Monitoring sees the output from its start, not a minute later.
        c.write_status();
        Ok(c)
    }

    /// Starts what could not be started yet (the spool, held by a Lua
    /// state still closing or on a disk not yet writable; the sender
    /// thread), at most once per [`START_RETRY`]. Until then events wait in
    /// memory and nothing is acknowledged.
    pub(super) fn revive(&mut self, now: Instant) {
        // Asked at every write: decide without moving anything.
        match &self.outlet.starting {
            Some(st) if now >= st.next_try => {}
            _ => return,
        }
        let Some(mut st) = self.outlet.starting.take() else {
            return;
        };
        st.next_try = now + START_RETRY;
        let mut opened = None;
        let source = match &self.cfg.spool {
            None => Source::Handover,
            Some(sc) => match spool::open(sc, &self.log) {
                Ok((writer, reader)) => {
                    opened = Some(writer);
                    Source::Spool {
                        reader: Box::new(reader),
                        max_events: self.cfg.max_buffer_size,
                        max_age: self.cfg.max_buffer_age,
                        framing: st.routes.sink.framing(),
                    }
                }
                Err(e) => {
                    st.failed(e.to_string(), now, &self.log);
                    self.outlet.starting = Some(st);
                    return;
                }
            },
        };
        match Sender::spawn(
            st.transport,
            st.routes.clone(),
            self.log.clone(),
            source,
            self.cfg.max_in_flight,
        ) {
            Ok(sender) => {
                if !st.why.is_empty() {
                    self.log.info(format_args!(
                        "started after {}s of retries; acknowledgements resume",
                        now.duration_since(st.since).as_secs()
                    ));
                }
                if let (Queue::Spool(q), Some(writer)) = (&mut self.queue, opened) {
                    let sc = self.cfg.spool.as_ref().expect("spool queue has a config");
                    self.log.info(format_args!(
                        "spool {} (up to {} MiB): events are acknowledged once on disk",
                        sc.dir.display(),
                        sc.max_bytes >> 20
                    ));
                    q.writer = Some(writer);
                }
                for work in self.outlet.backlog.drain(..) {
                    if !sender.send(work) {
                        sender_gone(&self.log);
                    }
                }
                self.outlet.sender = Some(sender);
            }
            Err((e, transport)) => {
                // The spool just opened is closed again (its lock freed).
                st.transport = transport;
                st.failed(
                    format!("cannot start the sender thread: {e}"),
                    now,
                    &self.log,
                );
                self.outlet.starting = Some(st);
            }
        }
    }
}
