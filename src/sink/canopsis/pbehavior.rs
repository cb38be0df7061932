//! Centreon downtimes as Canopsis maintenance pbehaviors.
//!
//! A downtime start creates one pbehavior whose `_id` and `name` derive from
//! the downtime, so a replay is idempotent ("ID already exists" counts as
//! done); its comment follows on the comment route. A downtime end or
//! cancellation deletes it by name ("Not found" counts as done).
//!
//! The reason and type ids and whether `color` is required (Canopsis 22.10)
//! are learnt on the sender thread, never in `init` or broker's thread:
//! [`Resolver`] walks every page of the lists, creates the reason when it is
//! missing, caches the ids and forgets them when Canopsis says they are gone.
//!
//! Here: the changes a downtime makes ([`Action`]) and their request bodies;
//! what Canopsis's answers mean is `outcome`, learning the ids `resolver`,
//! the three routes `route` and the connector route's items `connector`.

pub mod connector;
mod outcome;
mod resolver;
pub mod route;

pub use outcome::{
    judge_bulk, judge_comment, judge_create, judge_create_item, judge_delete, judge_delete_item,
    ItemAnswer, Outcome,
};
pub use resolver::Resolver;

use crate::downtime::{name, phase, Phase, Skip};
use crate::event::DowntimeEvent;
use crate::subject::Subject;
use route::Kind;
use serde_json::{json, Value};

/// The colour the Lua connector gives pbehaviors where Canopsis requires one.
pub const COLOR_2210: &str = "#73D8FF";

/// Canopsis caps comments at 255 characters.
pub const MAX_COMMENT_CHARS: usize = 255;

/// The name the Lua connector gave the same downtime's pbehavior
/// (`centreon-downtime-<downtime id>-<entry time>`), read back from a name
/// [`name`] made: a downtime that started before the switch to this
/// connector still has its pbehavior removed when it ends.
pub fn legacy_name(name: &str) -> Option<String> {
    let ids = name.strip_prefix("centreon-downtime-")?;
    let parts: Vec<&str> = ids.split('-').collect();
    match parts[..] {
        [_, _, id, entry] if parts.iter().all(|p| p.parse::<i64>().is_ok()) => {
            Some(format!("centreon-downtime-{id}-{entry}"))
        }
        _ => None,
    }
}

/// A pbehavior to create, before reason and type ids are known.
#[derive(Debug, Clone, PartialEq)]
pub struct Create {
    /// `_id` and `name`.
    pub name: String,
    /// Downtime author.
    pub author: String,
    /// Planned start.
    pub tstart: i64,
    /// Planned end.
    pub tstop: i64,
    /// Canopsis entity id: `<service>/<host>` or `<host>`.
    pub entity: String,
    /// Downtime comment, cut to [`MAX_COMMENT_CHARS`].
    pub comment: String,
}

/// A pbehavior shaped by the user's `neb_downtime` template.
#[derive(Debug, Clone, PartialEq)]
pub struct Templated {
    /// Its `_id`: the template's, or the connector's pbehavior name.
    pub id: String,
    /// The creation body (a JSON object, `_id` included, `comment` out).
    pub body: Vec<u8>,
    /// Bodies for the comment route (the template's `comment`).
    pub comments: Vec<Vec<u8>>,
}

/// A downtime's end: the pbehavior's name, for the single and bulk
/// routes, and what the connector route finds it by (origin aside).
#[derive(Debug, Clone, PartialEq)]
pub struct End {
    /// The name (and `_id`) [`name`] gives the downtime's pbehavior.
    pub name: String,
    /// Canopsis entity id, as in [`Create`].
    pub entity: String,
    /// Planned start and end, when the event tells them.
    pub window: Option<(i64, i64)>,
    /// Comment, cut as at the start.
    pub comment: String,
}

/// Work for the sender: one pbehavior change.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create a pbehavior (and post its comment).
    Create(Create),
    /// Delete the pbehavior with this name (a spool record written before
    /// [`Action::End`] existed).
    Delete(String),
    /// A downtime ended: delete its pbehavior by name, or take its entity
    /// out of the connector route's pbehavior.
    End(End),
    /// Create a pbehavior from a template (and post its comments).
    CreateTemplated(Templated),
    /// Delete a templated downtime's pbehavior, by `_id`.
    DeleteId(String),
}

impl Action {
    /// The pbehavior name (its `_id` for templated ones).
    pub fn name(&self) -> &str {
        match self {
            Action::Create(c) => &c.name,
            Action::Delete(n) | Action::DeleteId(n) => n,
            Action::End(e) => &e.name,
            Action::CreateTemplated(t) => &t.id,
        }
    }

    /// Whether it creates a pbehavior.
    pub fn creates(&self) -> bool {
        matches!(self, Action::Create(_) | Action::CreateTemplated(_))
    }
}

/// A `neb_downtime` template's rendering as a pbehavior change: the start
/// creates what the template describes, the end deletes it by `_id`. The
/// template's `_id` is kept; without one, the connector's name is used, so
/// the end finds it. `comment` goes to the comment route: a text becomes
/// `{pbehavior, message}`, an object is posted as it is, an array item by
/// item.
pub fn templated(phase: Phase, rendered: &[u8], default_id: &str) -> Result<Action, String> {
    let mut v: Value = serde_json::from_slice(rendered)
        .map_err(|e| format!("the neb_downtime template did not render JSON ({e})"))?;
    let Some(o) = v.as_object_mut() else {
        return Err("the neb_downtime template did not render an object".into());
    };
    let id = match o.get("_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => {
            o.insert("_id".into(), json!(default_id));
            default_id.to_string()
        }
    };
    if phase == Phase::End {
        return Ok(Action::DeleteId(id));
    }
    let comments = match o.remove("comment") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => vec![json!({"pbehavior": id, "message": s})],
        Some(Value::Array(a)) => a,
        Some(other) => vec![other],
    };
    let to_vec = |v: &Value| serde_json::to_vec(v).expect("serializing plain data cannot fail");
    Ok(Action::CreateTemplated(Templated {
        body: to_vec(&v),
        comments: comments.iter().map(to_vec).collect(),
        id,
    }))
}

/// The Canopsis entity id of a downtime's subject.
fn entity(subj: &Subject) -> String {
    match &subj.service {
        Some((_, desc)) => format!("{desc}/{}", subj.host_name),
        None => subj.host_name.clone(),
    }
}

/// The pbehavior change for an accepted downtime event.
pub fn action(d: &DowntimeEvent, subj: &Subject) -> Result<Action, Skip> {
    let window = match (d.start_time, d.end_time) {
        (Some(s), Some(e)) if e >= s => Ok((s, e)),
        (s, e) => Err(Skip::BadWindow(s, e)),
    };
    let comment: String = d.comment.chars().take(MAX_COMMENT_CHARS).collect();
    match phase(d)? {
        Phase::End => Ok(Action::End(End {
            name: name(d),
            entity: entity(subj),
            window: window.ok(),
            comment,
        })),
        Phase::Start => {
            let (tstart, tstop) = window?;
            Ok(Action::Create(Create {
                name: name(d),
                author: d.author.clone(),
                tstart,
                tstop,
                entity: entity(subj),
                comment,
            }))
        }
    }
}

/// A pbehavior change as JSON, for the dead-letter file.
pub fn action_json(action: &Action) -> Vec<u8> {
    let v = match action {
        Action::Create(c) => json!({"pbehavior_create": {
            "name": c.name, "author": c.author, "tstart": c.tstart, "tstop": c.tstop,
            "entity": c.entity, "comment": c.comment}}),
        Action::Delete(name) => json!({"pbehavior_delete": {"name": name}}),
        // The same record as a plain deletion, with more: read by an older
        // version, it still deletes by name.
        Action::End(e) => json!({"pbehavior_delete": {
            "name": e.name, "entity": e.entity, "comment": e.comment,
            "tstart": e.window.map(|w| w.0), "tstop": e.window.map(|w| w.1)}}),
        Action::CreateTemplated(t) => json!({"pbehavior_create_templated": {
            "_id": t.id,
            "body": serde_json::from_slice::<Value>(&t.body).unwrap_or(Value::Null),
            "comments": t.comments.iter()
                .map(|c| serde_json::from_slice::<Value>(c).unwrap_or(Value::Null))
                .collect::<Vec<_>>()}}),
        Action::DeleteId(id) => json!({"pbehavior_delete_id": {"_id": id}}),
    };
    serde_json::to_vec(&v).expect("serializing plain data cannot fail")
}

/// Reads back what [`action_json`] wrote (the spool keeps changes that way).
pub fn action_from_json(json: &[u8]) -> Option<Action> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    if let Some(d) = v.get("pbehavior_delete") {
        let name = d.get("name")?.as_str()?.to_string();
        let Some(entity) = d.get("entity").and_then(Value::as_str) else {
            return Some(Action::Delete(name));
        };
        let at = |k: &str| d.get(k).and_then(Value::as_i64);
        return Some(Action::End(End {
            name,
            entity: entity.to_string(),
            window: at("tstart").zip(at("tstop")),
            comment: d.get("comment")?.as_str()?.to_string(),
        }));
    }
    if let Some(d) = v.get("pbehavior_delete_id") {
        return Some(Action::DeleteId(d.get("_id")?.as_str()?.to_string()));
    }
    if let Some(t) = v.get("pbehavior_create_templated") {
        let to_vec = |v: &Value| serde_json::to_vec(v).ok();
        return Some(Action::CreateTemplated(Templated {
            id: t.get("_id")?.as_str()?.to_string(),
            body: to_vec(t.get("body")?)?,
            comments: t
                .get("comments")?
                .as_array()?
                .iter()
                .map(to_vec)
                .collect::<Option<Vec<_>>>()?,
        }));
    }
    let c = v.get("pbehavior_create")?;
    let text = |k: &str| c.get(k)?.as_str().map(str::to_string);
    Some(Action::Create(Create {
        name: text("name")?,
        author: text("author")?,
        tstart: c.get("tstart")?.as_i64()?,
        tstop: c.get("tstop")?.as_i64()?,
        entity: text("entity")?,
        comment: text("comment")?,
    }))
}

/// Ids a pbehavior needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// Reason `_id`.
    pub reason: String,
    /// Type `_id`.
    pub kind: String,
    /// Whether Canopsis requires `color` (22.10).
    pub color_required: bool,
}

/// The body of `POST /api/v4/pbehaviors`.
pub fn create_body(c: &Create, ids: &Ids) -> Vec<u8> {
    let mut body = json!({
        "_id": c.name,
        "name": c.name,
        "author": c.author,
        "enabled": true,
        "reason": ids.reason,
        "type": ids.kind,
        "rrule": "",
        "tstart": c.tstart,
        "tstop": c.tstop,
        "entity_pattern": [[{"field": "_id", "cond": {"type": "eq", "value": c.entity}}]],
    });
    if ids.color_required {
        body["color"] = json!(COLOR_2210);
    }
    serde_json::to_vec(&body).expect("serializing plain data cannot fail")
}

/// The body of `POST /api/v4/pbehavior-comments`.
pub fn comment_body(c: &Create) -> Vec<u8> {
    serde_json::to_vec(&json!({"pbehavior": c.name, "message": c.comment}))
        .expect("serializing plain data cannot fail")
}

/// The bodies to post to the comment route once `action`'s pbehavior
/// exists.
pub fn comment_bodies(action: &Action) -> Vec<Vec<u8>> {
    match action {
        Action::Create(c) if !c.comment.is_empty() => vec![comment_body(c)],
        Action::CreateTemplated(t) => t.comments.clone(),
        _ => Vec::new(),
    }
}

/// Percent-encodes a query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `route` is one of Canopsis's bulk pbehavior routes (the bulk
/// route or the connector route), which take arrays and answer 207 with
/// one status per item: the sender joins the downtimes queued together.
pub fn is_bulk_route(route: &str) -> bool {
    Kind::of(route).takes_arrays()
}

/// The body of a bulk creation: [`create_body`] of each, or the
/// template's body. `ids` is needed only for built-in creations.
pub fn bulk_create_body<'a>(
    creates: impl Iterator<Item = &'a Action>,
    ids: Option<&Ids>,
) -> Vec<u8> {
    let mut body = vec![b'['];
    let mut first = true;
    for a in creates {
        let one = match (a, ids) {
            (Action::Create(c), Some(ids)) => create_body(c, ids),
            (Action::CreateTemplated(t), _) => t.body.clone(),
            _ => continue,
        };
        if !first {
            body.push(b',');
        }
        first = false;
        body.extend_from_slice(&one);
    }
    body.push(b']');
    body
}

/// The body of a bulk deletion: pbehaviors by `_id` (this connector and
/// the Lua one give `_id` the pbehavior's name).
pub fn bulk_delete_body<'a>(names: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let items: Vec<Value> = names.map(|n| json!({ "_id": n })).collect();
    serde_json::to_vec(&items).expect("serializing plain data cannot fail")
}

#[cfg(test)]
mod tests {
    use super::resolver::{find, MAX_PAGES};
    use super::*;
    use crate::config::DowntimeConfig;
    use crate::logger::Logger;
    use crate::transport::tests::resp;
    use crate::transport::TransportError;
    use crate::transport::{Request, Response, Transport};
    use std::collections::VecDeque;

    fn dt() -> DowntimeEvent {
        DowntimeEvent {
            host_id: Some(12),
            service_id: Some(34),
            id: Some(7),
            author: "admin".into(),
            comment: "x".repeat(300),
            entry_time: Some(1000),
            start_time: Some(1060),
            end_time: Some(4660),
            actual_start_time: Some(1060),
            ..DowntimeEvent::default()
        }
    }

    fn subject(service: bool) -> Subject {
        Subject {
            host_id: 12,
            host_name: "host-a".into(),
            service: service.then(|| (34, "Ping".into())),
            ..Subject::default()
        }
    }

    #[test]
    fn start_creates_end_deletes_others_are_skipped() {
        let Action::Create(c) = action(&dt(), &subject(true)).unwrap() else {
            panic!()
        };
        assert_eq!(c.name, "centreon-downtime-12-34-7-1000");
        assert_eq!(c.entity, "Ping/host-a");
        assert_eq!((c.tstart, c.tstop), (1060, 4660));
        assert_eq!(c.comment.chars().count(), 255);
        let mut host = dt();
        host.service_id = Some(0);
        let Action::Create(c) = action(&host, &subject(false)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.name.as_str(), c.entity.as_str()),
            ("centreon-downtime-12-0-7-1000", "host-a")
        );
        // The engine's end of a downtime is two events: the end, then the
        // deletion. Only the deletion deletes.
        let mut end = dt();
        end.started = true;
        end.actual_end_time = Some(2000);
        assert_eq!(action(&end, &subject(true)), Err(Skip::Ending));
        end.deletion_time = Some(2000);
        let ended = action(&end, &subject(true));
        assert_eq!(
            ended,
            Ok(Action::End(End {
                name: "centreon-downtime-12-34-7-1000".into(),
                entity: "Ping/host-a".into(),
                window: Some((1060, 4660)),
                comment: "x".repeat(255),
            }))
        );
        let ended = ended.unwrap();
        assert_eq!(pbehavior_roundtrip(&ended), ended, "the spool keeps it");
        // A record written before ends carried their key still deletes.
        assert_eq!(
            action_from_json(br#"{"pbehavior_delete":{"name":"n"}}"#),
            Some(Action::Delete("n".into()))
        );
        // Cancelled, as DEL_SVC_DOWNTIME does it: cancelled, then deleted.
        let mut cancelled = dt();
        cancelled.cancelled = true;
        assert_eq!(action(&cancelled, &subject(true)), Err(Skip::Ending));
        cancelled.deletion_time = Some(2000);
        assert!(matches!(
            action(&cancelled, &subject(true)),
            Ok(Action::End(_))
        ));
        let mut scheduled = dt();
        scheduled.actual_start_time = None;
        assert_eq!(action(&scheduled, &subject(true)), Err(Skip::NotStarted));
        // Deleted before it started: one event, and nothing to delete.
        scheduled.cancelled = true;
        scheduled.deletion_time = Some(2000);
        assert_eq!(action(&scheduled, &subject(true)), Err(Skip::NeverStarted));
        let mut bad = dt();
        bad.end_time = Some(10);
        assert!(matches!(
            action(&bad, &subject(true)),
            Err(Skip::BadWindow(..))
        ));
    }

    #[test]
    fn create_body_matches_the_lua_connector() {
        let Action::Create(c) = action(&dt(), &subject(true)).unwrap() else {
            panic!()
        };
        let ids = Ids {
            reason: "r1".into(),
            kind: "t1".into(),
            color_required: true,
        };
        let v: Value = serde_json::from_slice(&create_body(&c, &ids)).unwrap();
        assert_eq!(
            v,
            json!({"_id":"centreon-downtime-12-34-7-1000","name":"centreon-downtime-12-34-7-1000","author":"admin",
                   "enabled":true,"reason":"r1","type":"t1","rrule":"","tstart":1060,"tstop":4660,"color":"#73D8FF",
                   "entity_pattern":[[{"field":"_id","cond":{"type":"eq","value":"Ping/host-a"}}]]})
        );
    }

    #[test]
    fn idempotent_answers_count_as_done() {
        assert_eq!(
            judge_create(&resp(400, r#"{"errors":{"_id":"ID already exists."}}"#)),
            Outcome::Done("already exists")
        );
        assert_eq!(
            judge_delete(&resp(404, r#"{"error":"Not found"}"#)),
            Outcome::Done("already deleted")
        );
        assert!(matches!(
            judge_create(&resp(
                400,
                r#"{"errors":{"reason":"Reason doesn't exist."}}"#
            )),
            Outcome::StaleIds(_)
        ));
        assert_eq!(judge_create(&resp(201, "{}")), Outcome::Created);
        assert!(matches!(
            judge_create(&resp(400, r#"{"errors":{"tstop":"Stop is missing."}}"#)),
            Outcome::Refused(_)
        ));
        let Outcome::Retry {
            reason,
            config_fault,
        } = judge_delete(&resp(403, r#"{"error":"Forbidden"}"#))
        else {
            panic!()
        };
        assert!(config_fault && reason.contains("delete on pbehaviors"));
    }

    struct Script(VecDeque<Response>, Vec<String>);

    impl Transport for Script {
        fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
            self.1.push(format!("{:?} {}", req.method, req.path));
            self.0.pop_front().ok_or(TransportError::Timeout)
        }
    }

    fn cfg() -> DowntimeConfig {
        crate::config::parse(&crate::config::tests::minimal())
            .unwrap()
            .config
            .downtime
    }

    #[test]
    fn a_list_that_never_ends_is_read_a_sane_number_of_pages() {
        let page = json!({"data": [{"_id": "x", "name": "other"}], "meta": {"page": 1, "page_count": 1_000_000}})
            .to_string();
        let mut t = Script((0..1000).map(|_| resp(200, &page)).collect(), Vec::new());
        let got = find(&mut t, "/api/v4/pbehavior-reasons", "Centreon", "read");
        assert!(matches!(
            got,
            Err(Outcome::Retry {
                config_fault: true,
                ..
            })
        ));
        assert_eq!(t.1.len() as u64, MAX_PAGES);
    }

    #[test]
    fn proxies_and_redirects_never_pass_for_canopsis_answers() {
        // nginx's 404 page says "Not Found": not "already deleted".
        assert!(matches!(
            judge_delete(&resp(404, "<html><center>404 Not Found</center></html>")),
            Outcome::Retry { .. }
        ));
        for r in [resp(400, "<html>bad</html>"), resp(302, "")] {
            assert!(matches!(
                judge_create(&r),
                Outcome::Retry {
                    config_fault: true,
                    ..
                }
            ));
        }
        assert!(matches!(
            judge_create(&resp(400, r#"{"errors":{"name":"Name is missing."}}"#)),
            Outcome::Refused(_)
        ));
    }

    #[test]
    fn resolver_walks_pages_creates_the_reason_and_caches() {
        let page1 = json!({"data": (0..100).map(|i| json!({"_id": format!("r{i}"), "name": format!("reason {i}")})).collect::<Vec<_>>(),
                           "meta": {"page": 1, "page_count": 2}});
        let mut t = Script(
            VecDeque::from(vec![
                resp(200, &page1.to_string()),
                resp(
                    200,
                    r#"{"data":[{"_id":"r-x","name":"other"}],"meta":{"page":2,"page_count":2}}"#,
                ),
                resp(201, r#"{"_id":"r-new","name":"Centreon_downtime"}"#),
                resp(
                    200,
                    r#"{"data":[{"_id":"t-m","name":"Default maintenance"}],"meta":{"page":1,"page_count":1}}"#,
                ),
                resp(200, r#"{"version":"22.10.3"}"#),
            ]),
            Vec::new(),
        );
        let mut r = Resolver::new(false);
        let ids = r.ids(&mut t, &cfg()).unwrap();
        assert_eq!(
            ids,
            Ids {
                reason: "r-new".into(),
                kind: "t-m".into(),
                color_required: true
            }
        );
        assert_eq!(
            t.1,
            vec![
                "Get /api/v4/pbehavior-reasons?limit=100&page=1",
                "Get /api/v4/pbehavior-reasons?limit=100&page=2",
                "Post /api/v4/pbehavior-reasons",
                "Get /api/v4/pbehavior-types?limit=100&page=1",
                "Get /api/v4/app-info"
            ]
        );
        assert_eq!(
            r.ids(&mut t, &cfg()).unwrap(),
            ids,
            "cached: no more requests"
        );
        assert_eq!(t.1.len(), 5);
    }

    #[test]
    fn the_connector_route_needs_canopsis_2404() {
        let mut connector = cfg();
        connector.route = "/api/v4/bulk/connector-pbehaviors".into();
        for (version, kind) in [
            ("23.10.4", Kind::Bulk),
            ("24.04.0", Kind::Connector),
            ("development", Kind::Connector),
        ] {
            let log = Logger::memory(crate::logger::level_filter(3));
            let mut t = Script(
                VecDeque::from(vec![resp(200, &json!({ "version": version }).to_string())]),
                Vec::new(),
            );
            let mut r = Resolver::new(false);
            assert_eq!(r.route(&mut t, &connector, &log), Ok(kind), "{version}");
            assert_eq!(r.route(&mut t, &connector, &log), Ok(kind), "asked once");
            assert_eq!(t.1, vec!["Get /api/v4/app-info"]);
            let refused = log
                .lines()
                .iter()
                .filter(|l| l.contains("needs Canopsis 24.04 or later"))
                .count();
            assert_eq!(refused, usize::from(kind == Kind::Bulk), "{version}");
        }
        // Unanswered: asked again next time, nothing decided.
        let log = Logger::memory(crate::logger::level_filter(3));
        let mut t = Script(VecDeque::new(), Vec::new());
        let mut r = Resolver::new(false);
        assert!(r.route(&mut t, &connector, &log).is_err());
        // Other routes need no question; a 404 falls back once.
        let mut t = Script(VecDeque::new(), Vec::new());
        assert_eq!(r.route(&mut t, &cfg(), &log), Ok(Kind::Bulk));
        r.lacks(Kind::Bulk, &cfg(), "HTTP 404", &log);
        r.lacks(Kind::Bulk, &cfg(), "HTTP 404", &log);
        assert_eq!(r.route(&mut t, &cfg(), &log), Ok(Kind::Single));
        assert!(t.1.is_empty());
        let fell = log
            .lines()
            .iter()
            .filter(|l| l.contains("is not a route of this Canopsis (HTTP 404): downtimes go through /api/v4/pbehaviors from now on"))
            .count();
        assert_eq!(fell, 1);
    }

    #[test]
    fn missing_rights_are_named() {
        let mut t = Script(
            VecDeque::from(vec![resp(403, r#"{"error":"Forbidden"}"#)]),
            Vec::new(),
        );
        let Err(Outcome::Retry {
            reason,
            config_fault,
        }) = Resolver::new(false).ids(&mut t, &cfg())
        else {
            panic!()
        };
        assert!(config_fault);
        assert!(
            reason.contains("lacks the right read on pbehavior reasons (api_pbehaviorreason)"),
            "{reason}"
        );
    }

    #[test]
    fn the_lua_connector_name_is_read_back_from_ours() {
        let mut d = dt();
        d.id = Some(7);
        d.entry_time = Some(1_700_000_000);
        assert_eq!(
            legacy_name(&name(&d)).as_deref(),
            Some("centreon-downtime-7-1700000000")
        );
        assert_eq!(legacy_name("centreon-downtime-7-1700000000"), None);
        assert_eq!(legacy_name("other-1-2-3-4"), None);
    }

    #[test]
    fn url_encoding_of_names() {
        assert_eq!(
            url_encode("centreon-downtime-1 a/b"),
            "centreon-downtime-1%20a%2Fb"
        );
    }

    #[test]
    fn bulk_answers_are_judged_item_by_item() {
        let body = r#"[{"status":200,"id":"a","item":{}},
            {"status":400,"item":{},"errors":{"_id":"ID already exists."}},
            {"status":400,"item":{},"errors":{"entity_pattern":"EntityPattern is invalid entity pattern."}},
            {"status":500,"item":{},"error":"db down"},
            {"status":404,"item":{},"error":"Not found"}]"#;
        let items = judge_bulk(&resp(207, body), 5, "x").unwrap();
        let created: Vec<Outcome> = items[..4].iter().map(judge_create_item).collect();
        assert_eq!(created[0], Outcome::Created);
        assert_eq!(created[1], Outcome::Done("already exists"));
        assert!(matches!(&created[2], Outcome::Refused(r) if r.contains("EntityPattern")));
        assert!(matches!(
            &created[3],
            Outcome::Retry {
                config_fault: false,
                ..
            }
        ));
        assert_eq!(
            judge_delete_item(&items[4]),
            Outcome::Done("already deleted")
        );
        assert_eq!(judge_delete_item(&items[0]), Outcome::Done("deleted"));
        // Not one answer per item: the whole request is tried again.
        assert!(matches!(
            judge_bulk(&resp(207, body), 4, "x"),
            Err(Outcome::Retry {
                config_fault: false,
                ..
            })
        ));
        // A Canopsis without the route.
        assert!(matches!(
            judge_bulk(&resp(404, r#"{"error":"Not found"}"#), 1, "x"),
            Err(Outcome::RouteMissing(_))
        ));
        assert_eq!(items[0].id, "a");
        // Rights are judged as for a single request.
        let denied = ItemAnswer {
            status: 403,
            error: "Forbidden".into(),
            id: String::new(),
        };
        for o in [judge_create_item(&denied), judge_delete_item(&denied)] {
            assert!(
                matches!(o, Outcome::Retry { config_fault: true, reason } if reason.contains("lacks the right"))
            );
        }
        assert!(is_bulk_route("/api/v4/bulk/pbehaviors/"));
        assert!(!is_bulk_route("/api/v4/pbehaviors"));
    }

    #[test]
    fn a_templated_downtime_keeps_its_id_and_posts_its_comment_apart() {
        let rendered = br#"{"name":"m","comment":"hello","tstart":1}"#;
        let Ok(Action::CreateTemplated(t)) = templated(Phase::Start, rendered, "native") else {
            panic!()
        };
        assert_eq!(t.id, "native");
        let body: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(body, json!({"_id": "native", "name": "m", "tstart": 1}));
        assert_eq!(
            t.comments,
            vec![br#"{"message":"hello","pbehavior":"native"}"#.to_vec()]
        );
        let own = br#"{"_id":"mine","comment":[{"pbehavior":"mine","message":"a"}]}"#;
        let a = templated(Phase::Start, own, "native").unwrap();
        assert_eq!(a.name(), "mine");
        assert_eq!(pbehavior_roundtrip(&a), a, "the spool keeps it");
        let end = templated(Phase::End, own, "native").unwrap();
        assert_eq!(end, Action::DeleteId("mine".into()));
        assert_eq!(pbehavior_roundtrip(&end), end);
        assert!(templated(Phase::Start, b"[1]", "n").is_err());
    }

    fn pbehavior_roundtrip(a: &Action) -> Action {
        action_from_json(&action_json(a)).expect("reads back")
    }
}
