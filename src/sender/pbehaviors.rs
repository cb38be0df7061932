//! Downtimes as Canopsis pbehaviors: one change at a time on the single
//! route, many per request on the bulk and connector routes, with the
//! comments that go with them. The route in use is the configured one
//! until Canopsis turns out not to have it (see
//! [`route`](crate::sink::canopsis::pbehavior::route)).

use super::worker::{Attempt, Worker};
use crate::sink::canopsis::pbehavior::route::{self, Kind};
use crate::sink::canopsis::pbehavior::{self, Action, ItemAnswer, Outcome};
use crate::sink::Sink;
use crate::transport::{Method, Request, Response, Transport};

mod connector_route;
use std::sync::atomic::Ordering;

/// Pbehavior changes Canopsis refuses one after the other, none taken in
/// between, before the refusals are judged a configuration fault (a
/// Canopsis version that wants other fields, a wrong route) rather than
/// bad downtimes.
const BREAKER: usize = 3;

/// How far a pbehavior creation got, across retries.
#[derive(Debug, Default, Clone, Copy)]
struct Created {
    created: bool,
    /// Comments posted.
    comments: usize,
}

/// Where one pbehavior change of a bulk delivery stands.
#[derive(Debug, Default)]
struct BulkItem {
    state: BulkState,
    /// Comments posted.
    comments: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum BulkState {
    /// Not taken yet.
    #[default]
    Todo,
    /// Created; its comment is left to post.
    Comment,
    /// Done.
    Done,
}

impl Worker {
    /// Reason and type ids, looked up once for all lanes (a lane waits
    /// while another looks them up).
    fn pbehavior_ids(&mut self) -> Result<pbehavior::Ids, Outcome> {
        let mut r = self.resolver.lock().unwrap_or_else(|e| e.into_inner());
        r.ids(&mut self.transport, &self.routes.downtime)
    }

    /// The kind of route downtimes take now.
    fn downtime_kind(&mut self) -> Result<Kind, Outcome> {
        let mut r = self.resolver.lock().unwrap_or_else(|e| e.into_inner());
        r.route(&mut self.transport, &self.routes.downtime, &self.log)
    }

    /// Canopsis has no `kind` route: every lane takes the next older one.
    fn route_lacking(&self, kind: Kind, why: &str) {
        self.resolver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lacks(kind, &self.routes.downtime, why, &self.log);
    }

    /// `kind`'s path, from the configured route.
    fn downtime_path(&self, kind: Kind) -> String {
        route::path_for(&self.routes.downtime.route, kind)
    }

    /// At the sender's start, with the connector route configured: asks
    /// Canopsis once whether it has that route, so an older Canopsis is
    /// told at once rather than at the first downtime. Unanswered, the
    /// question is asked again before the first downtime.
    pub(super) fn check_downtime_route(&mut self) {
        let d = &self.routes.downtime;
        if matches!(self.routes.sink, Sink::Canopsis)
            && d.send_pbh
            && Kind::of(&d.route) == Kind::Connector
        {
            let _ = self.downtime_kind();
        }
    }

    pub(super) fn forget_pbehavior_ids(&self) {
        self.resolver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget();
    }

    pub(super) fn deliver_pbehavior(&mut self, action: &Action) -> bool {
        self.deliver_pbehavior_from(action, Created::default())
    }

    /// [`deliver_pbehavior`](Self::deliver_pbehavior), from where an
    /// earlier try left it.
    fn deliver_pbehavior_from(&mut self, action: &Action, mut created: Created) -> bool {
        loop {
            self.transport.set_deadline(self.shared.deadline());
            let outcome = self.pbehavior_step(action, &mut created);
            let step = match outcome {
                Outcome::Created => {
                    self.backoff.reset();
                    self.pbh_refused_in_a_row = 0;
                    self.log
                        .info(format_args!("pbehavior {}: created", action.name()));
                    Attempt::Done
                }
                Outcome::StaleIds(reason) => {
                    self.forget_pbehavior_ids();
                    self.failed(
                        &format!(
                            "pbehavior {}: {reason}; resolving reason and type again",
                            action.name()
                        ),
                        false,
                        None,
                    )
                }
                Outcome::Done(what) => {
                    self.backoff.reset();
                    self.pbh_refused_in_a_row = 0;
                    self.log
                        .info(format_args!("pbehavior {}: {what}", action.name()));
                    Attempt::Done
                }
                Outcome::Retry {
                    reason,
                    config_fault,
                } => self.failed(
                    &format!("pbehavior {}: {reason}", action.name()),
                    config_fault,
                    None,
                ),
                Outcome::Refused(reason) => match self.judge_refusal(action, &reason) {
                    Ok(true) => Attempt::Done,
                    Ok(false) => return false,
                    Err(why) => self.failed(&why, true, None),
                },
                // Only bulk routes say so.
                Outcome::RouteMissing(reason) => self.failed(
                    &format!("pbehavior {}: {reason}", action.name()),
                    true,
                    None,
                ),
            };
            if let Attempt::Done = step {
                return true;
            }
            if !self.wait(step) {
                return false;
            }
        }
    }

    /// Sends consecutive pbehavior changes through the bulk or the
    /// connector route until each is done, in order: a run of creations is
    /// one `POST`, a run of deletions one `DELETE`, and a run starts only
    /// once everything before it is done (a deletion never overtakes its
    /// creation). Canopsis answers each item on its own: one refused item
    /// is not a refused request; "already exists" and "not found" count as
    /// done. On the bulk route, comments go one per downtime, after their
    /// pbehavior exists. A Canopsis without the route gets the rest
    /// through the next older one.
    pub(super) fn deliver_bulk(&mut self, actions: &[Action]) -> bool {
        let mut items: Vec<BulkItem> = actions.iter().map(|_| BulkItem::default()).collect();
        loop {
            self.transport.set_deadline(self.shared.deadline());
            let (kind, round) = match self.downtime_kind() {
                Err(o) => (None, Some(o)),
                Ok(Kind::Single) => return self.deliver_singly(actions, &items),
                Ok(Kind::Bulk) => (Some(Kind::Bulk), self.bulk_round(actions, &mut items)),
                Ok(Kind::Connector) => (
                    Some(Kind::Connector),
                    self.connector_round(actions, &mut items),
                ),
            };
            let step = match round {
                None => {
                    self.backoff.reset();
                    return true;
                }
                Some(Outcome::RouteMissing(why)) => {
                    if let Some(kind) = kind {
                        self.route_lacking(kind, &why);
                    }
                    continue;
                }
                Some(Outcome::StaleIds(reason)) => {
                    self.forget_pbehavior_ids();
                    self.failed(
                        &format!("pbehaviors: {reason}; resolving reason and type again"),
                        false,
                        None,
                    )
                }
                Some(Outcome::Retry {
                    reason,
                    config_fault,
                }) => self.failed(&format!("pbehaviors: {reason}"), config_fault, None),
                Some(Outcome::Refused(reason)) => {
                    self.failed(&format!("pbehaviors: {reason}; sent again"), false, None)
                }
                Some(Outcome::Created | Outcome::Done(_)) => Attempt::Done,
            };
            if let Attempt::Done = step {
                continue;
            }
            if !self.wait(step) {
                return false;
            }
        }
    }

    /// What is not done yet, one change at a time on the single route.
    fn deliver_singly(&mut self, actions: &[Action], items: &[BulkItem]) -> bool {
        actions
            .iter()
            .zip(items)
            .all(|(action, item)| match item.state {
                BulkState::Done => true,
                state => self.deliver_pbehavior_from(
                    action,
                    Created {
                        created: state == BulkState::Comment,
                        comments: item.comments,
                    },
                ),
            })
    }

    /// One pass over what is left; `None` when everything is done, or
    /// why the first unfinished run must wait.
    fn bulk_round(&mut self, actions: &[Action], items: &mut [BulkItem]) -> Option<Outcome> {
        let mut i = 0;
        while i < actions.len() {
            match items[i].state {
                BulkState::Done => {
                    i += 1;
                    continue;
                }
                BulkState::Comment => {
                    if let Err(o) = self.bulk_comment(&actions[i], &mut items[i]) {
                        return Some(o);
                    }
                    i += 1;
                    continue;
                }
                BulkState::Todo => {}
            }
            let create = actions[i].creates();
            let run: Vec<usize> = (i..actions.len())
                .take_while(|&k| {
                    items[k].state != BulkState::Comment && actions[k].creates() == create
                })
                .filter(|&k| items[k].state == BulkState::Todo)
                .collect();
            let end = run.last().map_or(i + 1, |&k| k + 1);
            let failure = if create {
                self.bulk_create(actions, items, &run)
            } else {
                self.bulk_delete(actions, items, &run, true)
            };
            // Comments of what this run created, in order.
            for &k in &run {
                if items[k].state == BulkState::Comment {
                    if let Err(o) = self.bulk_comment(&actions[k], &mut items[k]) {
                        return Some(o);
                    }
                }
            }
            if let Some(o) = failure {
                return Some(o);
            }
            i = end;
        }
        None
    }

    fn bulk_send(
        &mut self,
        method: Method,
        body: &[u8],
        sent: usize,
        right: &str,
    ) -> Result<Vec<ItemAnswer>, Outcome> {
        let path = self.downtime_path(Kind::Bulk);
        self.array_send(method, &path, body, sent, right)
    }

    /// One request of a bulk route, answered item by item.
    fn array_send(
        &mut self,
        method: Method,
        path: &str,
        body: &[u8],
        sent: usize,
        right: &str,
    ) -> Result<Vec<ItemAnswer>, Outcome> {
        let resp = self.request(method, path, body)?;
        if self.routes.placeholder_ids {
            // send_data_test: logged, and taken.
            return Ok(vec![ItemAnswer::taken(); sent]);
        }
        pbehavior::judge_bulk(&resp, sent, right)
    }

    fn bulk_create(
        &mut self,
        actions: &[Action],
        items: &mut [BulkItem],
        run: &[usize],
    ) -> Option<Outcome> {
        // Reason and type ids only serve the built-in format.
        let ids = if run.iter().any(|&k| matches!(actions[k], Action::Create(_))) {
            match self.pbehavior_ids() {
                Ok(ids) => Some(ids),
                Err(o) => return Some(o),
            }
        } else {
            None
        };
        let body = pbehavior::bulk_create_body(run.iter().map(|&k| &actions[k]), ids.as_ref());
        let answers = match self.bulk_send(
            Method::Post,
            &body,
            run.len(),
            "create on pbehaviors (api_pbehavior)",
        ) {
            Ok(a) => a,
            Err(o) => return Some(o),
        };
        let mut failure = None;
        for (&k, answer) in run.iter().zip(&answers) {
            let name = actions[k].name();
            match pbehavior::judge_create_item(answer) {
                Outcome::Created => {
                    self.log.info(format_args!("pbehavior {name}: created"));
                    items[k].state = if pbehavior::comment_bodies(&actions[k]).is_empty() {
                        BulkState::Done
                    } else {
                        BulkState::Comment
                    };
                }
                other => {
                    if let Some(o) = self.bulk_item_settled(&actions[k], &mut items[k], other) {
                        failure.get_or_insert(o);
                    }
                }
            }
        }
        failure
    }

    /// Deletes by name (`_id`) through the bulk route, then under the Lua
    /// connector's names; with `connector_too`, an end found under
    /// neither is looked for on the connector route.
    fn bulk_delete(
        &mut self,
        actions: &[Action],
        items: &mut [BulkItem],
        run: &[usize],
        connector_too: bool,
    ) -> Option<Outcome> {
        let names = run.iter().map(|&k| actions[k].name());
        let body = pbehavior::bulk_delete_body(names);
        let right = "delete on pbehaviors (api_pbehavior)";
        let answers = match self.bulk_send(Method::Delete, &body, run.len(), right) {
            Ok(a) => a,
            Err(o) => return Some(o),
        };
        let mut failure = None;
        // Not there under our name: it may be an older connector's.
        let mut legacy: Vec<(usize, String)> = Vec::new();
        for (&k, answer) in run.iter().zip(&answers) {
            let name = actions[k].name();
            match pbehavior::judge_delete_item(answer) {
                Outcome::Done("already deleted") if pbehavior::legacy_name(name).is_some() => {
                    legacy.push((k, pbehavior::legacy_name(name).unwrap_or_default()));
                }
                other => {
                    if let Some(o) = self.bulk_item_settled(&actions[k], &mut items[k], other) {
                        failure.get_or_insert(o);
                    }
                }
            }
        }
        if legacy.is_empty() {
            return failure;
        }
        let body = pbehavior::bulk_delete_body(legacy.iter().map(|(_, n)| n.as_str()));
        let answers = match self.bulk_send(Method::Delete, &body, legacy.len(), right) {
            Ok(a) => a,
            Err(o) => return failure.or(Some(o)),
        };
        // Under neither name: it may have begun under the connector route.
        let mut elsewhere: Vec<(usize, &pbehavior::End)> = Vec::new();
        for ((k, _), answer) in legacy.iter().zip(&answers) {
            let name = actions[*k].name();
            match (pbehavior::judge_delete_item(answer), &actions[*k]) {
                (Outcome::Done("deleted"), _) => {
                    self.log.info(format_args!(
                        "pbehavior {name}: deleted under the name the Lua connector gave it"
                    ));
                    items[*k].state = BulkState::Done;
                }
                (Outcome::Done("already deleted"), Action::End(end))
                    if connector_too && end.window.is_some() =>
                {
                    elsewhere.push((*k, end));
                }
                (other, _) => {
                    if let Some(o) = self.bulk_item_settled(&actions[*k], &mut items[*k], other) {
                        failure.get_or_insert(o);
                    }
                }
            }
        }
        if elsewhere.is_empty() || failure.is_some() {
            return failure;
        }
        let ends: Vec<&pbehavior::End> = elsewhere.iter().map(|(_, e)| *e).collect();
        match self.connector_leftovers(&ends) {
            Ok(found) => {
                for ((k, _), id) in elsewhere.iter().zip(found) {
                    let what = match id {
                        Some(id) => format!("taken out of pbehavior {id} (connector route)"),
                        None => "already deleted".to_string(),
                    };
                    self.log
                        .info(format_args!("pbehavior {}: {what}", actions[*k].name()));
                    items[*k].state = BulkState::Done;
                }
                None
            }
            Err(o) => Some(o),
        }
    }

    /// An item's outcome: done (logged), or [`bulk_item_failed`](Self::bulk_item_failed).
    fn bulk_item_settled(
        &mut self,
        action: &Action,
        item: &mut BulkItem,
        outcome: Outcome,
    ) -> Option<Outcome> {
        match outcome {
            Outcome::Done(what) => {
                self.pbh_refused_in_a_row = 0;
                self.log
                    .info(format_args!("pbehavior {}: {what}", action.name()));
                item.state = BulkState::Done;
                None
            }
            other => self.bulk_item_failed(action, item, other),
        }
    }

    /// An item Canopsis did not take: refused in Canopsis's own words, it is
    /// dead-lettered at once (and done), unless refusals in a row show a
    /// configuration problem; otherwise the reason to wait and resend.
    fn bulk_item_failed(
        &mut self,
        action: &Action,
        item: &mut BulkItem,
        outcome: Outcome,
    ) -> Option<Outcome> {
        let Outcome::Refused(reason) = outcome else {
            return Some(outcome);
        };
        match self.judge_refusal(action, &reason) {
            Ok(true) => {
                item.state = BulkState::Done;
                None
            }
            Ok(false) => Some(Outcome::Retry {
                reason: "cannot write the dead-letter file".into(),
                config_fault: true,
            }),
            Err(why) => Some(Outcome::Retry {
                reason: why,
                config_fault: true,
            }),
        }
    }

    /// A pbehavior change Canopsis refused with its own validation error
    /// (a 400 with its JSON, reason and type ids already ruled out): that
    /// answer is the proof, as [`crate::sink::canopsis::rules`] is for
    /// events, so the change is dead-lettered at once (`Ok(true)`;
    /// `Ok(false)` if the file would not take it and the connector is
    /// closing). But [`BREAKER`] refusals in a row, none taken in between,
    /// say the configuration is wrong (a Canopsis version that wants other
    /// fields, a wrong route), not the changes: `Err` with the reason,
    /// retried as a configuration fault and nothing more dead-lettered.
    fn judge_refusal(&mut self, action: &Action, reason: &str) -> Result<bool, String> {
        if self.pbh_refused_in_a_row as usize + 1 >= BREAKER {
            return Err(format!(
                "pbehavior {}: {reason}: {BREAKER} pbehavior changes in a row refused by Canopsis: a configuration problem (Canopsis version, pbehavior routes), nothing more is dead-lettered",
                action.name()
            ));
        }
        let why = format!("Canopsis refused the pbehavior change in its own words: {reason}");
        if !self.keep_dead(&why, &pbehavior::action_json(action)) {
            return Ok(false);
        }
        self.pbh_refused_in_a_row += 1;
        Ok(true)
    }

    /// Posts the comments of a pbehavior the bulk route just created.
    fn bulk_comment(&mut self, action: &Action, item: &mut BulkItem) -> Result<(), Outcome> {
        match self.post_comments(action, &mut item.comments) {
            Outcome::Done(what) => {
                if what != "created" {
                    self.log
                        .info(format_args!("pbehavior {}: {what}", action.name()));
                }
                item.state = BulkState::Done;
                Ok(())
            }
            other => match self.bulk_item_failed(action, item, other) {
                None => Ok(()),
                Some(o) => Err(o),
            },
        }
    }

    /// One try at a pbehavior change; `done` remembers, across retries,
    /// that it was created and how many of its comments were posted.
    fn pbehavior_step(&mut self, action: &Action, done: &mut Created) -> Outcome {
        let route = self.downtime_path(Kind::Single);
        match action {
            Action::Delete(name) | Action::End(pbehavior::End { name, .. }) => {
                let path = |name: &str| format!("{route}?name={}", pbehavior::url_encode(name));
                let outcome = match self.request(Method::Delete, &path(name), b"") {
                    Ok(resp) => pbehavior::judge_delete(&resp),
                    Err(o) => o,
                };
                // Not there under our name: it may be an older connector's.
                let legacy = pbehavior::legacy_name(name);
                let outcome = match (outcome, legacy) {
                    (Outcome::Done("already deleted"), Some(legacy)) => {
                        match self.request(Method::Delete, &path(&legacy), b"") {
                            Ok(resp) => match pbehavior::judge_delete(&resp) {
                                Outcome::Done("deleted") => Outcome::Done(
                                    "deleted under the name the Lua connector gave it",
                                ),
                                other => other,
                            },
                            Err(o) => o,
                        }
                    }
                    (outcome, _) => outcome,
                };
                // Under neither name: it may have begun under the
                // connector route.
                match (outcome, action) {
                    (Outcome::Done("already deleted"), Action::End(end))
                        if end.window.is_some() =>
                    {
                        match self.connector_leftovers(&[end]) {
                            Ok(found) if found[0].is_some() => {
                                Outcome::Done("taken out of its connector route pbehavior")
                            }
                            Ok(_) => Outcome::Done("already deleted"),
                            Err(o) => o,
                        }
                    }
                    (outcome, _) => outcome,
                }
            }
            Action::DeleteId(id) => {
                let path = format!(
                    "{}/{}",
                    route.trim_end_matches('/'),
                    pbehavior::url_encode(id)
                );
                match self.request(Method::Delete, &path, b"") {
                    Ok(resp) => pbehavior::judge_delete(&resp),
                    Err(o) => o,
                }
            }
            Action::Create(_) | Action::CreateTemplated(_) => {
                if !done.created {
                    let body = match action {
                        Action::Create(c) => {
                            let ids = match self.pbehavior_ids() {
                                Ok(ids) => ids,
                                Err(o) => return o,
                            };
                            pbehavior::create_body(c, &ids)
                        }
                        Action::CreateTemplated(t) => t.body.clone(),
                        _ => unreachable!("matched above"),
                    };
                    match self.request(Method::Post, &route, &body) {
                        Ok(resp) => match pbehavior::judge_create(&resp) {
                            Outcome::Created => done.created = true,
                            other => return other,
                        },
                        Err(o) => return o,
                    }
                }
                self.post_comments(action, &mut done.comments)
            }
        }
    }

    /// One request, counted; a transport error as the outcome to retry.
    fn request(&mut self, method: Method, path: &str, body: &[u8]) -> Result<Response, Outcome> {
        self.shared
            .progress
            .stats
            .requests
            .fetch_add(1, Ordering::Relaxed);
        self.transport
            .send(Request { method, path, body })
            .map_err(|e| Outcome::Retry {
                reason: e.to_string(),
                config_fault: e.is_config_fault(),
            })
    }

    /// Posts the comments of a pbehavior just created, from the
    /// `posted`-th on.
    fn post_comments(&mut self, action: &Action, posted: &mut usize) -> Outcome {
        let bodies = pbehavior::comment_bodies(action);
        if bodies.is_empty() {
            return Outcome::Done("created");
        }
        let route = self.routes.downtime.comment_route.clone();
        while *posted < bodies.len() {
            match self.request(Method::Post, &route, &bodies[*posted]) {
                Ok(resp) => match pbehavior::judge_comment(&resp) {
                    Outcome::Done(_) => *posted += 1,
                    other => return other,
                },
                Err(o) => return o,
            }
        }
        Outcome::Done("created with its comment")
    }
}
