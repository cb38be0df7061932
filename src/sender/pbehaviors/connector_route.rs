//! The connector route's deliveries (Canopsis 24.04+,
//! [`connector`](crate::sink::canopsis::pbehavior::connector)): starts and
//! ends as items of one request each, what that route cannot carry on
//! the single route, and ends of downtimes that began under another
//! route.

use super::{BulkItem, BulkState, Created};
use crate::sender::worker::Worker;
use crate::sink::canopsis::pbehavior::route::Kind;
use crate::sink::canopsis::pbehavior::{self, connector, Action, ItemAnswer, Outcome};
use crate::transport::Method;
use serde_json::Value;

/// How the connector route takes a pbehavior change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// An item of a creation.
    Create,
    /// An item of a deletion.
    End,
    /// On its own, on the single route: a templated pbehavior (the
    /// template describes a whole pbehavior), or an end whose window, and
    /// so key, is unknown.
    Apart,
}

impl Via {
    fn of(action: &Action) -> Via {
        match action {
            Action::Create(_) => Via::Create,
            Action::End(e) if e.window.is_some() => Via::End,
            _ => Via::Apart,
        }
    }
}

impl Worker {
    /// One pass over what is left on the connector route; `None` when
    /// everything is done, or why the first unfinished run must wait.
    pub(super) fn connector_round(
        &mut self,
        actions: &[Action],
        items: &mut [BulkItem],
    ) -> Option<Outcome> {
        let mut i = 0;
        while i < actions.len() {
            if items[i].state == BulkState::Done {
                i += 1;
                continue;
            }
            let via = Via::of(&actions[i]);
            if via == Via::Apart || items[i].state == BulkState::Comment {
                if let Some(o) = self.apart_step(&actions[i], &mut items[i]) {
                    return Some(o);
                }
                i += 1;
                continue;
            }
            let run: Vec<usize> = (i..actions.len())
                .take_while(|&k| {
                    items[k].state != BulkState::Comment && Via::of(&actions[k]) == via
                })
                .filter(|&k| items[k].state == BulkState::Todo)
                .collect();
            let end = run.last().map_or(i + 1, |&k| k + 1);
            let failure = if via == Via::Create {
                self.connector_create(actions, items, &run)
            } else {
                self.connector_end(actions, items, &run)
            };
            if failure.is_some() {
                return failure;
            }
            i = end;
        }
        None
    }

    /// Creations on the connector route: Canopsis puts each downtime's
    /// entity in the pbehavior of its key, made by the first.
    fn connector_create(
        &mut self,
        actions: &[Action],
        items: &mut [BulkItem],
        run: &[usize],
    ) -> Option<Outcome> {
        let ids = match self.pbehavior_ids() {
            Ok(ids) => ids,
            Err(o) => return Some(o),
        };
        let origin = &self.routes.downtime.origin;
        let body: Vec<Value> = run
            .iter()
            .filter_map(|&k| match &actions[k] {
                Action::Create(c) => Some(connector::create_item(c, &ids, origin)),
                _ => None,
            })
            .collect();
        let answers = match self.connector_send(Method::Post, &body) {
            Ok(a) => a,
            Err(o) => return Some(o),
        };
        let mut failure = None;
        for (&k, answer) in run.iter().zip(&answers) {
            match pbehavior::judge_create_item(answer) {
                Outcome::Created => {
                    self.log.info(format_args!(
                        "pbehavior {}: in pbehavior {}",
                        actions[k].name(),
                        answer.id
                    ));
                    items[k].state = BulkState::Done;
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

    /// Ends on the connector route: each downtime's entity leaves the
    /// pbehavior of its key (which goes with its last entity). A key
    /// Canopsis does not know is a downtime that began under another
    /// route (or is gone already): it is deleted by name, as there,
    /// through the bulk route (Canopsis has it, having this one), all in
    /// one request.
    fn connector_end(
        &mut self,
        actions: &[Action],
        items: &mut [BulkItem],
        run: &[usize],
    ) -> Option<Outcome> {
        let origin = &self.routes.downtime.origin;
        let body: Vec<Value> = run
            .iter()
            .filter_map(|&k| match &actions[k] {
                Action::End(e) => connector::delete_item(e, origin),
                _ => None,
            })
            .collect();
        let answers = match self.connector_send(Method::Delete, &body) {
            Ok(a) => a,
            Err(o) => return Some(o),
        };
        let mut failure = None;
        let mut unknown = Vec::new();
        for (&k, answer) in run.iter().zip(&answers) {
            match answer.status {
                200..=299 => {
                    self.log.info(format_args!(
                        "pbehavior {}: taken out of pbehavior {}",
                        actions[k].name(),
                        answer.id
                    ));
                    items[k].state = BulkState::Done;
                }
                404 => unknown.push(k),
                _ => {
                    let outcome = pbehavior::judge_delete_item(answer);
                    if let Some(o) = self.bulk_item_settled(&actions[k], &mut items[k], outcome) {
                        failure.get_or_insert(o);
                    }
                }
            }
        }
        if failure.is_none() && !unknown.is_empty() {
            // A 404 here is the bulk route's, not this one's.
            failure = match self.bulk_delete(actions, items, &unknown, false) {
                Some(Outcome::RouteMissing(why)) => Some(Outcome::Retry {
                    reason: format!("{}: {why}", self.downtime_path(Kind::Bulk)),
                    config_fault: true,
                }),
                other => other,
            };
        }
        failure
    }

    /// Sends `items` (creations with `Post`, deletions with `Delete`) in
    /// one request to the connector route: the answer to each, in order.
    /// Callers give one item per change (creations, and ends that tell
    /// their window), so the answers line up with their changes.
    fn connector_send(
        &mut self,
        method: Method,
        items: &[Value],
    ) -> Result<Vec<ItemAnswer>, Outcome> {
        let right = match method {
            Method::Post => "create on pbehaviors (api_pbehavior)",
            _ => "delete on pbehaviors (api_pbehavior)",
        };
        let path = self.downtime_path(Kind::Connector);
        self.array_send(method, &path, &connector::body(items), items.len(), right)
    }

    /// One try at a change on the single route, within a bulk delivery:
    /// `None` once it is done.
    fn apart_step(&mut self, action: &Action, item: &mut BulkItem) -> Option<Outcome> {
        let mut done = Created {
            created: item.state == BulkState::Comment,
            comments: item.comments,
        };
        let outcome = self.pbehavior_step(action, &mut done);
        item.comments = done.comments;
        if done.created && item.state == BulkState::Todo {
            item.state = BulkState::Comment;
        }
        match outcome {
            Outcome::Created => {
                self.log
                    .info(format_args!("pbehavior {}: created", action.name()));
                item.state = BulkState::Done;
                None
            }
            other => self.bulk_item_settled(action, item, other),
        }
    }

    /// Ends whose pbehavior is under none of the names the other routes
    /// give: on a Canopsis with the connector route, each one's entity is
    /// taken out of the pbehavior of its key there (a downtime that began
    /// under the connector route, before a switch to another). The
    /// pbehavior that held each, `None` where there was none.
    pub(super) fn connector_leftovers(
        &mut self,
        ends: &[&pbehavior::End],
    ) -> Result<Vec<Option<String>>, Outcome> {
        let none = vec![None; ends.len()];
        let has_route = {
            let mut r = self.resolver.lock().unwrap_or_else(|e| e.into_inner());
            r.has_connector_route(&mut self.transport)?
        };
        if !has_route {
            return Ok(none);
        }
        let origin = &self.routes.downtime.origin;
        let body: Vec<Value> = ends
            .iter()
            .filter_map(|e| connector::delete_item(e, origin))
            .collect();
        let answers = match self.connector_send(Method::Delete, &body) {
            Ok(a) => a,
            Err(Outcome::RouteMissing(_)) => return Ok(none),
            Err(o) => return Err(o),
        };
        answers
            .iter()
            .map(|a| match a.status {
                200..=299 => Ok(Some(a.id.clone())),
                404 => Ok(None),
                _ => Err(match pbehavior::judge_delete_item(a) {
                    Outcome::Refused(why) => Outcome::Retry {
                        reason: why,
                        config_fault: false,
                    },
                    other => other,
                }),
            })
            .collect()
    }
}
