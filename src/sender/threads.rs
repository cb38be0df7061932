//! Threads through a bot account ([`crate::sink::mattermost::threads`]):
//! each message is posted in its object's thread, one request at a time,
//! as a reply needs the root's id, which only Mattermost's answer to the
//! root post gives. Every request is one [`Delivery`], so the delivery
//! rules hold for each (retries, proof, pace, the close budget); this file
//! only picks the request and keeps [`Threads`] up to date.
//!
//! The thread memory lives in this sender thread, which alone learns root
//! ids; it is rewritten beside the log whenever a thread opens or closes,
//! so a restart (or a crash) answers in the same threads.

use super::delivery::{Delivery, Peer};
use super::events::{shown, Driven};
use super::worker::Worker;
use crate::batch::Batch;
use crate::config::MattermostSettings;
use crate::sink::mattermost::threads::{self, Threads, Turn};
use crate::sink::mattermost::{self, Message};
use crate::transport::Method;
use std::collections::VecDeque;

/// How one message's posting ended.
enum Posted {
    /// Posted (or dead-lettered with proof).
    Done,
    /// The connector closes: it stays with broker or the spool.
    Stopped,
}

impl Worker {
    /// Loads the open threads kept beside the log; none (and a warning)
    /// when the file cannot be read: new threads start.
    pub(super) fn load_threads(&mut self) {
        if !matches!(&self.routes.sink, crate::sink::Sink::Mattermost(m) if m.bot.is_some()) {
            return;
        }
        let path = self.routes.threads_file.clone();
        match Threads::load(&path) {
            Ok(t) => {
                if !t.is_empty() {
                    self.log.info(format_args!(
                        "{} open Mattermost thread(s) read from {}",
                        t.len(),
                        path.display()
                    ));
                }
                self.threads = t;
            }
            Err(e) => self.log.warn(format_args!(
                "cannot read {} ({e}): open alerts get new threads",
                path.display()
            )),
        }
    }

    /// Posts a batch in threads: the messages one by one, and when more
    /// than [`MattermostSettings::summary_after`] wait, the first ones and
    /// one top-level summary for the rest (their threads are left as they
    /// are). `false` when the connector closes first.
    pub(super) fn deliver_threads(&mut self, batch: &Batch, settings: &MattermostSettings) -> bool {
        let Some(messages) = mattermost::messages(&batch.body) else {
            return self.keep_dead(
                "records that are not Mattermost messages (a spool written with another webhook_format?)",
                &batch.body,
            );
        };
        let channel = settings
            .bot
            .as_ref()
            .map(|b| b.channel_id.clone())
            .unwrap_or_default();
        let shown = shown(messages.len(), settings.summary_after);
        for m in &messages[..shown] {
            if let Posted::Stopped = self.post_in_thread(m, &channel, settings) {
                return false;
            }
        }
        let rest = &messages[shown..];
        if !rest.is_empty() {
            let summary = mattermost::summary(rest, settings);
            let body = threads::post_body(&summary, &channel, None);
            if let Posted::Stopped =
                self.post_once(Method::Post, None, body, rest.len(), settings, None)
            {
                return false;
            }
        }
        true
    }

    /// Posts one message: in its object's open thread, or as the root of a
    /// new one (a problem), or at the top level; after a recovery in a
    /// thread, edits the root to show it resolved. A root deleted in
    /// Mattermost ends its thread, and the message goes again as if there
    /// had been none.
    fn post_in_thread(&mut self, m: &Message, channel: &str, s: &MattermostSettings) -> Posted {
        let place = m.place.as_ref();
        loop {
            let root = place.and_then(|p| self.threads.root(&p.object).map(str::to_string));
            let opens = root.is_none() && place.is_some_and(|p| p.turn == Turn::Problem);
            let body = threads::post_body(&m.post, channel, root.as_deref());
            let delivery = self.one(body, 1);
            let route = self.routes.event_route.clone();
            let stop_on: Option<fn(&_) -> bool> = root.as_ref().map(|_| threads::root_gone as _);
            match self.drive(delivery, Method::Post, &route, Some(s.interval()), stop_on) {
                Driven::Stopped => return Posted::Stopped,
                Driven::Answered => {
                    // Only a reply's root gone stops a drive.
                    let object = place.map(|p| p.object.clone()).unwrap_or_default();
                    self.log.warn(format_args!(
                        "the root post of {object}'s Mattermost thread is gone (deleted?): the thread is started again"
                    ));
                    self.threads.close(&object);
                    self.save_threads();
                }
                Driven::Done(answer) => {
                    let Some(place) = place else {
                        return Posted::Done;
                    };
                    if opens {
                        match answer.and_then(|a| threads::post_id(&a.body)) {
                            Some(id) => {
                                self.threads.open(&place.object, &id);
                                self.save_threads();
                            }
                            None => self.log.warn(format_args!(
                                "Mattermost took the root post of {}'s thread without saying its id: its changes go at the top level",
                                place.object
                            )),
                        }
                    }
                    if let (Some(root), Turn::Recovery) = (root, place.turn) {
                        let patch = threads::resolved_patch(&m.post);
                        let route = threads::patch_route(&self.routes.event_route, &root);
                        if let Posted::Stopped = self.post_once(
                            Method::Put,
                            Some(&route),
                            patch,
                            0,
                            s,
                            Some(threads::edited_post_gone),
                        ) {
                            return Posted::Stopped;
                        }
                        self.threads.close(&place.object);
                        self.save_threads();
                    }
                    return Posted::Done;
                }
            }
        }
    }

    /// One request (`count` events; 0 for a root's edit, which carries no
    /// event of its own) until taken or proven refused, or answered as
    /// `done_on` says is the end (a root to edit that is gone).
    fn post_once(
        &mut self,
        method: Method,
        route: Option<&str>,
        body: Vec<u8>,
        count: usize,
        s: &MattermostSettings,
        done_on: Option<fn(&crate::transport::Response) -> bool>,
    ) -> Posted {
        let route = route
            .map(str::to_string)
            .unwrap_or_else(|| self.routes.event_route.clone());
        let delivery = self.one(body, count.max(1));
        match self.drive(delivery, method, &route, Some(s.interval()), done_on) {
            Driven::Stopped => Posted::Stopped,
            _ => Posted::Done,
        }
    }

    fn one(&self, body: Vec<u8>, count: usize) -> Delivery {
        Delivery::new(Peer::of(&self.routes.sink), VecDeque::from([(body, count)]))
    }

    /// Rewrites the thread memory; a failure costs a warning (the threads
    /// open now may be started again after a restart), never an event.
    fn save_threads(&self) {
        if let Err(e) = self.threads.save(&self.routes.threads_file) {
            self.log.warn(format_args!(
                "cannot write {} ({e}): after a restart, open alerts may get new threads",
                self.routes.threads_file.display()
            ));
        }
    }
}
