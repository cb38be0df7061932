//! The pbehavior routes of the mock Canopsis (`canopsis-api.md` §3–§7):
//! reasons, types, pbehaviors and comments, with pagination, the exact
//! validation bodies, and the 22.10 / 23.x / 24.x differences that matter.

use crate::mock::{error, query_param, State};
use serde_json::{json, Map, Value};

fn errors(map: Map<String, Value>) -> (u16, String) {
    (400, json!({ "errors": map }).to_string())
}

/// Percent-decoding of a query value.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn version_at_least(st: &State, major: u32, minor: u32) -> bool {
    let mut parts = st.version.split('.').filter_map(|p| p.parse::<u32>().ok());
    let (a, b) = (parts.next().unwrap_or(99), parts.next().unwrap_or(99));
    (a, b) >= (major, minor)
}

/// §1.4: `page`, `limit` (default 10), `paginate`, `search`.
fn paginate(items: &[Value], query: &str, search_fields: &[&str]) -> (u16, String) {
    let page = query_param(query, "page")
        .map(|p| p.parse::<i64>().unwrap_or(0))
        .unwrap_or(1);
    let limit = query_param(query, "limit")
        .map(|p| p.parse::<i64>().unwrap_or(0))
        .unwrap_or(10);
    if page <= 0 {
        return errors(Map::from_iter([(
            "page".to_string(),
            json!("Page should be greater than 0."),
        )]));
    }
    if limit <= 0 {
        return errors(Map::from_iter([(
            "limit".to_string(),
            json!("Limit should be greater than 0."),
        )]));
    }
    let search = query_param(query, "search")
        .unwrap_or_default()
        .to_lowercase();
    let matching: Vec<&Value> = items
        .iter()
        .filter(|it| {
            search.is_empty()
                || search_fields.iter().any(|f| {
                    it[*f]
                        .as_str()
                        .is_some_and(|v| v.to_lowercase().contains(&search))
                })
        })
        .collect();
    let total = matching.len() as i64;
    if query_param(query, "paginate").as_deref() == Some("false") {
        return (
            200,
            json!({"data": matching, "meta": {"page": 1, "per_page": total, "page_count": 1, "total_count": total}}).to_string(),
        );
    }
    let start = ((page - 1) * limit) as usize;
    let data: Vec<&Value> = matching
        .iter()
        .skip(start)
        .take(limit as usize)
        .copied()
        .collect();
    let page_count = ((total + limit - 1) / limit).max(1);
    (
        200,
        json!({"data": data, "meta": {"page": page, "per_page": limit, "page_count": page_count, "total_count": total}}).to_string(),
    )
}

/// Malformed JSON on the pbehavior/reason/comment POSTs: 500 up to 23.10
/// (the author middleware panics), 400 from 24.04.
fn parse_object(st: &State, body: &[u8]) -> Result<Map<String, Value>, (u16, String)> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) if version_at_least(st, 24, 10) => Err(error(400, "request has invalid structure")),
        Ok(_) => Err(error(500, "Internal server error")),
        Err(_) if version_at_least(st, 24, 4) => Err(error(400, "request has invalid structure")),
        Err(_) => Err(error(500, "Internal server error")),
    }
}

fn bad_id(id: &str) -> bool {
    id.len() > 255 || id.contains(['/', '?', '.', '$'])
}

/// Dispatches a pbehavior-related request.
pub fn route(st: &mut State, method: &str, path: &str, query: &str, body: &[u8]) -> (u16, String) {
    match (method, path) {
        ("GET", "/api/v4/pbehavior-reasons") => {
            paginate(&st.reasons, query, &["_id", "name", "description"])
        }
        ("POST", "/api/v4/pbehavior-reasons") => create_reason(st, body),
        ("GET", "/api/v4/pbehavior-types") => {
            paginate(&st.types, query, &["_id", "name", "description", "type"])
        }
        ("POST", "/api/v4/pbehaviors") => create_pbehavior(st, body),
        ("DELETE", "/api/v4/pbehaviors") => match query_param(query, "name") {
            None => errors(Map::from_iter([(
                "name".to_string(),
                json!("Name is missing."),
            )])),
            Some(n) if n.is_empty() => errors(Map::from_iter([(
                "name".to_string(),
                json!("Name is missing."),
            )])),
            Some(name) => delete(st, By::Name, &name),
        },
        ("DELETE", p) if p.starts_with("/api/v4/pbehaviors/") => {
            let id = decode(&p["/api/v4/pbehaviors/".len()..]);
            delete(st, By::Id, &id)
        }
        ("POST", "/api/v4/pbehavior-comments") => create_comment(st, body),
        ("POST", "/api/v4/bulk/pbehaviors") => bulk(st, body, bulk_create_item),
        ("DELETE", "/api/v4/bulk/pbehaviors") => bulk(st, body, bulk_delete_item),
        ("POST", CONNECTOR_ROUTE) => bulk(st, body, connector_create_item),
        ("DELETE", CONNECTOR_ROUTE) => bulk(st, body, connector_delete_item),
        _ => error(405, "Method Not Allowed"),
    }
}

/// The route Canopsis 24.04 made for monitoring-tool connectors.
pub const CONNECTOR_ROUTE: &str = "/api/v4/bulk/connector-pbehaviors";

/// Whether this Canopsis serves `path` (the connector route came with
/// 24.04; a test can take any route away to play an older Canopsis).
pub fn serves(st: &State, path: &str) -> bool {
    !st.missing_routes.iter().any(|r| r == path)
        && (path != CONNECTOR_ROUTE || version_at_least(st, 24, 4))
}

/// `config.ApiConfig.BulkMaxSize`'s default.
const BULK_MAX_SIZE: usize = 10_000;

/// The bulk routes (`lib/api/pbehavior/api.go` BulkCreate/BulkDelete): the
/// body must be a JSON array (else 400); each item gets its own answer,
/// in order, and the request is answered 207.
fn bulk(
    st: &mut State,
    body: &[u8],
    item: fn(&mut State, &Value) -> (u16, Option<String>, Value),
) -> (u16, String) {
    let items = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(a)) => a,
        Ok(_) => return error(400, "value doesn't contain array; it contains object"),
        Err(_) if body.is_empty() => return error(400, "cannot parse empty string"),
        Err(e) => return error(400, &format!("cannot parse JSON: {e}")),
    };
    // middleware.PreProcessBulk
    if items.len() > BULK_MAX_SIZE {
        return error(
            400,
            &format!("number of elements shouldn't be greater than {BULK_MAX_SIZE}"),
        );
    }
    let answers: Vec<Value> = items
        .iter()
        .map(|raw| {
            let (status, id, err) = item(st, raw);
            let mut a = json!({"status": status, "item": raw});
            match (id, err) {
                (Some(id), _) => a["id"] = json!(id),
                (None, Value::Object(o)) => a["errors"] = Value::Object(o),
                (None, e) => a["error"] = e,
            }
            a
        })
        .collect();
    (207, Value::Array(answers).to_string())
}

/// One item of a bulk creation: the single route's checks, status 200 for
/// a success, the error (`error` text or `errors` object) otherwise.
fn bulk_create_item(st: &mut State, raw: &Value) -> (u16, Option<String>, Value) {
    if !raw.is_object() {
        return (400, None, json!("value doesn't contain object"));
    }
    if let Some(marker) = &st.refuse_containing {
        if raw.to_string().contains(marker.as_str()) {
            return (
                400,
                None,
                json!({"entity_pattern": "EntityPattern is invalid entity pattern."}),
            );
        }
    }
    let (status, answer) = create_pbehavior(st, raw.to_string().as_bytes());
    let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    match status {
        201 => (200, answer["_id"].as_str().map(str::to_string), Value::Null),
        s => match (answer.get("errors"), answer.get("error")) {
            (Some(e), _) => (s, None, e.clone()),
            (_, Some(e)) => (s, None, e.clone()),
            _ => (s, None, json!("error")),
        },
    }
}

/// One item of a bulk deletion: `{"_id": ...}`.
fn bulk_delete_item(st: &mut State, raw: &Value) -> (u16, Option<String>, Value) {
    let Some(o) = raw.as_object() else {
        return (400, None, json!("value doesn't contain object"));
    };
    let id = o.get("_id").and_then(Value::as_str).unwrap_or("");
    if id.is_empty() {
        return (400, None, json!({"_id": "ID is missing."}));
    }
    match position(st, By::Id, id) {
        Some(i) => {
            remove(st, i);
            (200, Some(id.to_string()), Value::Null)
        }
        None => (404, None, json!("Not found")),
    }
}

fn delete(st: &mut State, by: By, value: &str) -> (u16, String) {
    match position(st, by, value) {
        Some(i) => {
            remove(st, i);
            (204, String::new())
        }
        None => error(404, "Not found"),
    }
}

/// Which key of a pbehavior a lookup compares.
#[derive(Clone, Copy)]
enum By {
    Id,
    Name,
}

/// Where the pbehavior whose `_id` (or name) is `value` sits in the list.
/// Plain strings kept beside the list are compared: reading thousands of
/// pbehaviors' JSON at each request, under the lock every request takes,
/// set the pace of the downtime benchmark. They are read again when a test
/// changed the list itself.
fn position(st: &mut State, by: By, value: &str) -> Option<usize> {
    let key = |p: &Value, k: &str| p[k].as_str().unwrap_or_default().to_string();
    let find = |keys: &[(String, String)]| {
        keys.iter().position(|(id, name)| match by {
            By::Id => id == value,
            By::Name => name == value,
        })
    };
    let stale = |st: &State, i: Option<usize>| {
        st.pbh_keys.len() != st.pbehaviors.len()
            || i.is_some_and(|i| {
                let p = &st.pbehaviors[i];
                (key(p, "_id"), key(p, "name")) != st.pbh_keys[i]
            })
    };
    let found = find(&st.pbh_keys);
    if !stale(st, found) {
        return found;
    }
    st.pbh_keys = st
        .pbehaviors
        .iter()
        .map(|p| (key(p, "_id"), key(p, "name")))
        .collect();
    find(&st.pbh_keys)
}

fn remove(st: &mut State, i: usize) {
    st.pbehaviors.remove(i);
    if st.pbh_keys.len() > i {
        st.pbh_keys.remove(i);
    }
}

fn create_reason(st: &mut State, body: &[u8]) -> (u16, String) {
    let o = match parse_object(st, body) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut errs = Map::new();
    for (field, label) in [("name", "Name"), ("description", "Description")] {
        match o.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {
                if s.chars().count() > 255 {
                    errs.insert(
                        field.into(),
                        json!(format!("{label} should be 255 or less.")),
                    );
                }
            }
            Some(Value::String(_)) | None => {
                errs.insert(field.into(), json!(format!("{label} is missing.")));
            }
            Some(_) => return error(400, "request has invalid structure"),
        }
    }
    if !errs.is_empty() {
        return errors(errs);
    }
    if st.reasons.iter().any(|r| r["name"] == o["name"]) {
        return errors(Map::from_iter([(
            "name".to_string(),
            json!("Name already exists."),
        )]));
    }
    let id = st.new_id("reason");
    let reason =
        json!({"_id": id, "name": o["name"], "description": o["description"], "hidden": false});
    st.reasons.push(reason.clone());
    (201, reason.to_string())
}

fn valid_color(c: &str) -> bool {
    let hex = c.strip_prefix('#').is_some_and(|h| {
        matches!(h.len(), 3 | 4 | 6 | 8) && h.chars().all(|ch| ch.is_ascii_hexdigit())
    });
    hex || ["rgb(", "rgba(", "hsl(", "hsla("]
        .iter()
        .any(|p| c.starts_with(p) && c.ends_with(')'))
}

fn valid_pattern(p: &Value) -> bool {
    let Some(outer) = p.as_array() else {
        return false;
    };
    !outer.is_empty()
        && outer.iter().all(|inner| {
            inner.as_array().is_some_and(|conds| {
                !conds.is_empty()
                    && conds.iter().all(|c| {
                        let field_ok = c["field"].as_str().is_some_and(|f| {
                            ["_id", "name", "category", "type", "connector", "component"]
                                .contains(&f)
                        });
                        let cond_ok = match c["cond"]["type"].as_str() {
                            Some(
                                "eq" | "neq" | "contain" | "not_contain" | "begin_with"
                                | "not_begin_with" | "end_with" | "not_end_with" | "regexp",
                            ) => c["cond"]["value"].is_string(),
                            Some("is_one_of" | "is_not_one_of") => c["cond"]["value"]
                                .as_array()
                                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)),
                            Some("exist") => c["cond"]["value"].is_boolean(),
                            _ => false,
                        };
                        field_ok && cond_ok
                    })
            })
        })
}

/// The type and the reason a pbehavior names, as stored (its document
/// embeds both); an id given that names none is a validation error
/// (`Type doesn't exist.`), on the single, bulk and connector routes alike.
fn type_and_reason(
    st: &State,
    type_id: &str,
    reason_id: &str,
    errs: &mut Map<String, Value>,
) -> (Option<Value>, Option<Value>) {
    let ty = st
        .types
        .iter()
        .find(|t| t["_id"] == json!(type_id))
        .cloned();
    if !type_id.is_empty() && ty.is_none() {
        errs.insert("type".into(), json!("Type doesn't exist."));
    }
    let reason = st
        .reasons
        .iter()
        .find(|r| r["_id"] == json!(reason_id))
        .cloned();
    if !reason_id.is_empty() && reason.is_none() {
        errs.insert("reason".into(), json!("Reason doesn't exist."));
    }
    (ty, reason)
}

fn create_pbehavior(st: &mut State, body: &[u8]) -> (u16, String) {
    let o = match parse_object(st, body) {
        Ok(o) => o,
        Err(e) => return e,
    };
    // Wrong JSON types: the body does not decode into the struct.
    let wrong_type =
        |f: &str, ok: fn(&Value) -> bool| o.get(f).is_some_and(|v| !v.is_null() && !ok(v));
    if wrong_type("enabled", Value::is_boolean)
        || wrong_type("tstart", Value::is_number)
        || wrong_type("tstop", Value::is_number)
        || wrong_type("name", Value::is_string)
        || wrong_type("_id", Value::is_string)
        || wrong_type("type", Value::is_string)
        || wrong_type("reason", Value::is_string)
        || wrong_type("color", Value::is_string)
        || wrong_type("entity_pattern", Value::is_array)
    {
        return error(400, "request has invalid structure");
    }
    let mut errs = Map::new();
    let mut missing = |f: &str, label: &str| {
        errs.insert(f.to_string(), json!(format!("{label} is missing.")));
    };
    let name = o.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        missing("name", "Name");
    }
    if o.get("enabled").is_none() {
        missing("enabled", "Enabled");
    }
    if o.get("tstart").is_none_or(Value::is_null) {
        missing("tstart", "Start");
    }
    let type_id = o.get("type").and_then(Value::as_str).unwrap_or("");
    let reason_id = o.get("reason").and_then(Value::as_str).unwrap_or("");
    if type_id.is_empty() {
        missing("type", "Type");
    }
    if reason_id.is_empty() {
        missing("reason", "Reason");
    }
    let color_required = !version_at_least(st, 23, 4);
    let color = o.get("color").and_then(Value::as_str).unwrap_or("");
    if color.is_empty() && color_required {
        missing("color", "Color");
    }
    match o.get("entity_pattern") {
        None => missing("entity_pattern", "EntityPattern"),
        Some(p) if p.as_array().is_some_and(|a| a.is_empty()) => {
            missing("entity_pattern", "EntityPattern")
        }
        Some(p) if !valid_pattern(p) => {
            errs.insert(
                "entity_pattern".into(),
                json!("EntityPattern is invalid entity pattern."),
            );
        }
        Some(_) => {}
    }
    if !color.is_empty() && !valid_color(color) {
        errs.insert("color".into(), json!("Color is not valid."));
    }
    if name.chars().count() > 255 {
        errs.insert("name".into(), json!("Name should be 255 or less."));
    }
    let (ty, reason) = type_and_reason(st, type_id, reason_id, &mut errs);
    let tstart = o.get("tstart").and_then(Value::as_f64);
    match o.get("tstop").and_then(Value::as_f64) {
        None if ty.as_ref().is_some_and(|t| t["type"] != "pause") => {
            errs.insert("tstop".into(), json!("Stop is missing."));
        }
        Some(stop) if tstart.is_some_and(|s| stop < s) => {
            errs.insert("tstop".into(), json!("Stop should be greater than Start."));
        }
        _ => {}
    }
    let id = o.get("_id").and_then(Value::as_str).map(str::to_string);
    if let Some(id) = &id {
        if bad_id(id) {
            errs.insert("_id".into(), json!("ID cannot contain /?.$ characters."));
        }
    }
    if !errs.is_empty() {
        return errors(errs);
    }
    if let Some(id) = &id {
        if position(st, By::Id, id).is_some() {
            return errors(Map::from_iter([(
                "_id".to_string(),
                json!("ID already exists."),
            )]));
        }
    }
    if position(st, By::Name, name).is_some() {
        return errors(Map::from_iter([(
            "name".to_string(),
            json!("Name already exists."),
        )]));
    }
    let id = id.unwrap_or_else(|| st.new_id("pbh"));
    let pbh = json!({
        "_id": id, "name": name, "enabled": o["enabled"], "author": {"_id": "u-0001", "name": "centreon"},
        "comments": [], "reason": reason, "type": ty, "rrule": o.get("rrule").cloned().unwrap_or(json!("")),
        "tstart": o["tstart"], "tstop": o.get("tstop").cloned().unwrap_or(Value::Null), "color": color,
        "exdates": [], "exceptions": [], "entity_pattern": o["entity_pattern"],
    });
    st.pbehaviors.push(pbh.clone());
    if st.pbh_keys.len() + 1 == st.pbehaviors.len() {
        st.pbh_keys.push((id, name.to_string()));
    }
    (201, pbh.to_string())
}

fn create_comment(st: &mut State, body: &[u8]) -> (u16, String) {
    let o = match parse_object(st, body) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut errs = Map::new();
    let pbh = o.get("pbehavior").and_then(Value::as_str).unwrap_or("");
    let msg = o.get("message").and_then(Value::as_str).unwrap_or("");
    if pbh.is_empty() {
        errs.insert("pbehavior".into(), json!("Pbehavior is missing."));
    }
    if msg.is_empty() {
        errs.insert("message".into(), json!("Message is missing."));
    } else if msg.chars().count() > 255 {
        errs.insert("message".into(), json!("Message should be 255 or less."));
    }
    if !errs.is_empty() {
        return errors(errs);
    }
    let Some(i) = position(st, By::Id, pbh) else {
        return error(404, "Not found");
    };
    let target = &mut st.pbehaviors[i];
    let comment = json!({"_id": format!("c-{}", msg.len()), "author": {"_id": "u-0001", "name": "centreon"}, "ts": 0, "message": msg});
    if let Some(list) = target["comments"].as_array_mut() {
        list.push(comment.clone());
    }
    st.comments.push(json!({"pbehavior": pbh, "message": msg}));
    (201, comment.to_string())
}

/// An item of the connector route as Go decodes it
/// (`BulkConnectorCreateRequestItem`, `BulkConnectorDeleteRequestItem`):
/// `null` and missing fields stay empty; a wrong JSON type is the item's
/// error text, as `json.Unmarshal` says it.
#[derive(Default)]
struct ConnectorItem {
    entities: Option<Vec<String>>,
    origin: String,
    tstart: Option<i64>,
    tstop: Option<i64>,
    comment: String,
    name: String,
    reason: String,
    kind: String,
    color: String,
}

fn decode_connector_item(raw: &Value, go_type: &str) -> Result<ConnectorItem, String> {
    let Some(o) = raw.as_object() else {
        let kind = match raw {
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "true",
            _ => "null",
        };
        return Err(format!("value doesn't contain object; it contains {kind}"));
    };
    let mismatch = |field: &str, v: &Value, want: &str| {
        let got = match v {
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            _ => "bool",
        };
        format!(
            "json: cannot unmarshal {got} into Go struct field {go_type}.{field} of type {want}"
        )
    };
    let text = |field: &str| -> Result<String, String> {
        match o.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(mismatch(field, v, "string")),
        }
    };
    // CpsTime.UnmarshalJSON: an integer, or a float truncated.
    let time = |field: &str| -> Result<Option<i64>, String> {
        match o.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))),
            Some(v) => Err(format!(
                "strconv.ParseFloat: parsing {:?}: invalid syntax",
                v.to_string()
            )),
        }
    };
    let entities = match o.get("entities") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|e| match e {
                    Value::String(s) => Ok(s.clone()),
                    v => Err(mismatch("entities", v, "string")),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(v) => Err(mismatch("entities", v, "[]string"))?,
    };
    Ok(ConnectorItem {
        entities,
        origin: text("origin")?,
        tstart: time("tstart")?,
        tstop: time("tstop")?,
        comment: text("comment")?,
        name: text("name")?,
        reason: text("reason")?,
        kind: text("type")?,
        color: text("color")?,
    })
}

/// The binding rules both connector items share: `entities`
/// required,notblank; `origin`, `tstart`, `tstop`, `comment` required.
fn connector_key_errors(it: &ConnectorItem, errs: &mut Map<String, Value>) {
    let mut put = |k: &str, m: &str| {
        errs.insert(k.into(), json!(m));
    };
    match &it.entities {
        None => put("entities", "Entities is missing."),
        Some(e) if e.is_empty() => put("entities", "Entities should not be blank."),
        Some(_) => {}
    }
    if it.origin.is_empty() {
        put("origin", "Origin is missing.");
    }
    if it.tstart.is_none() {
        put("tstart", "Start is missing.");
    }
    if it.tstop.is_none() {
        put("tstop", "Stop is missing.");
    }
    if it.comment.is_empty() {
        put("comment", "Comment is missing.");
    }
}

/// Where the connector pbehavior of a key is: same origin, window and a
/// comment with that message, and an `entities` list (a pbehavior made by
/// another route has none, and is never joined).
fn connector_position(st: &State, it: &ConnectorItem) -> Option<usize> {
    st.pbehaviors.iter().position(|p| {
        p["origin"] == json!(it.origin)
            && p["tstart"].as_i64() == it.tstart
            && p["tstop"].as_i64() == it.tstop
            && p["entities"].is_array()
            && p["comments"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["message"] == json!(it.comment)))
    })
}

fn set_entities(p: &mut Value, entities: Vec<Value>) {
    p["entity_pattern"] =
        json!([[{"field": "_id", "cond": {"type": "is_one_of", "value": entities}}]]);
    p["entities"] = Value::Array(entities);
}

/// `store.ConnectorCreate`: joins the pbehavior of the item's key (its
/// entities united with the item's), or creates it with the item's name,
/// the comment inline.
fn connector_create_item(st: &mut State, raw: &Value) -> (u16, Option<String>, Value) {
    let it = match decode_connector_item(raw, "BulkConnectorCreateRequestItem") {
        Ok(it) => it,
        Err(e) => return (400, None, json!(e)),
    };
    let mut errs = Map::new();
    connector_key_errors(&it, &mut errs);
    for (field, label, value) in [("name", "Name", &it.name), ("origin", "Origin", &it.origin)] {
        if value.chars().count() > 255 {
            errs.insert(
                field.into(),
                json!(format!("{label} should be 255 or less.")),
            );
        }
    }
    if it.name.is_empty() {
        errs.insert("name".into(), json!("Name is missing."));
    }
    if it.reason.is_empty() {
        errs.insert("reason".into(), json!("Reason is missing."));
    }
    if it.kind.is_empty() {
        errs.insert("type".into(), json!("Type is missing."));
    }
    if !it.color.is_empty() && !valid_color(&it.color) {
        errs.insert("color".into(), json!("Color is not valid."));
    }
    // ValidateConnectorCreateRequest
    let (ty, reason) = type_and_reason(st, &it.kind, &it.reason, &mut errs);
    if let (Some(start), Some(stop)) = (it.tstart, it.tstop) {
        if stop < start {
            errs.insert("tstop".into(), json!("Stop should be greater than Start."));
        }
    }
    if !errs.is_empty() {
        return (400, None, Value::Object(errs));
    }
    let mut entities: Vec<Value> = Vec::new();
    for e in it.entities.iter().flatten() {
        if !entities.contains(&json!(e)) {
            entities.push(json!(e));
        }
    }
    if let Some(i) = connector_position(st, &it) {
        let p = &mut st.pbehaviors[i];
        let mut united = p["entities"].as_array().cloned().unwrap_or_default();
        for e in entities {
            if !united.contains(&e) {
                united.push(e);
            }
        }
        set_entities(p, united);
        let id = p["_id"].as_str().unwrap_or_default().to_string();
        return (200, Some(id), Value::Null);
    }
    if position(st, By::Name, &it.name).is_some() {
        return (400, None, json!({"name": "Name already exists."}));
    }
    let id = st.new_id("pbh");
    let mut pbh = json!({
        "_id": id, "name": it.name, "enabled": true, "author": {"_id": "u-0001", "name": "centreon"},
        "comments": [{"_id": st.new_id("comment"), "author": {"_id": "u-0001", "name": "centreon"},
                      "origin": it.origin, "ts": 0, "message": it.comment}],
        "reason": reason, "type": ty, "rrule": "", "tstart": it.tstart, "tstop": it.tstop,
        "color": it.color, "exdates": [], "exceptions": [], "origin": it.origin,
    });
    set_entities(&mut pbh, entities);
    st.pbehaviors.push(pbh);
    if st.pbh_keys.len() + 1 == st.pbehaviors.len() {
        st.pbh_keys.push((id.clone(), it.name));
    }
    (200, Some(id), Value::Null)
}

/// `store.ConnectorDelete`: takes the item's entities out of the
/// pbehavior of its key (404 when there is none), and deletes it when it
/// has no entity left.
fn connector_delete_item(st: &mut State, raw: &Value) -> (u16, Option<String>, Value) {
    let it = match decode_connector_item(raw, "BulkConnectorDeleteRequestItem") {
        Ok(it) => it,
        Err(e) => return (400, None, json!(e)),
    };
    let mut errs = Map::new();
    connector_key_errors(&it, &mut errs);
    if !errs.is_empty() {
        return (400, None, Value::Object(errs));
    }
    let Some(i) = connector_position(st, &it) else {
        return (404, None, json!("Not found"));
    };
    let gone: Vec<Value> = it.entities.iter().flatten().map(|e| json!(e)).collect();
    let p = &mut st.pbehaviors[i];
    let left: Vec<Value> = p["entities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !gone.contains(e))
        .collect();
    let id = p["_id"].as_str().unwrap_or_default().to_string();
    let empty = left.is_empty();
    set_entities(p, left);
    if empty {
        remove(st, i);
    }
    (200, Some(id), Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(st: &mut State, method: &str, body: Value) -> (u16, Vec<Value>) {
        let (status, text) = route(st, method, CONNECTOR_ROUTE, "", body.to_string().as_bytes());
        let v: Value = serde_json::from_str(&text).unwrap();
        (status, v.as_array().cloned().unwrap_or_else(|| vec![v]))
    }

    fn item(entity: &str, comment: &str) -> Value {
        json!({"entities": [entity], "origin": "centreon-stream", "tstart": 100, "tstop": 200,
               "comment": comment, "name": format!("n-{comment}"), "reason": "r-default",
               "type": "a1b2c3d4-0000-4000-8000-000000000002"})
    }

    #[test]
    fn connector_items_are_validated_as_go_binds_them() {
        let mut st = State::new();
        let (status, a) = answers(
            &mut st,
            "POST",
            json!([{}, {"tstart": "100"}, 3, {"entities": [], "origin": "o", "tstart": 2, "tstop": 1,
                    "comment": "c", "name": "n", "reason": "nope", "type": "nope", "color": "red"}]),
        );
        assert_eq!(status, 207);
        assert_eq!(
            a[0]["errors"],
            json!({"entities": "Entities is missing.", "origin": "Origin is missing.",
                   "tstart": "Start is missing.", "tstop": "Stop is missing.",
                   "comment": "Comment is missing.", "name": "Name is missing.",
                   "reason": "Reason is missing.", "type": "Type is missing."})
        );
        assert!(a[1]["error"].as_str().unwrap().contains("invalid syntax"));
        assert_eq!(
            a[2]["error"],
            "value doesn't contain object; it contains number"
        );
        assert_eq!(
            a[3]["errors"],
            json!({"entities": "Entities should not be blank.", "tstop": "Stop should be greater than Start.",
                   "reason": "Reason doesn't exist.", "type": "Type doesn't exist.",
                   "color": "Color is not valid."})
        );
        assert!(a.iter().all(|a| a["status"] == 400));
        assert!(st.pbehaviors.is_empty());
        // The whole body: an array, at most 10,000 items.
        let (status, _) = answers(&mut st, "POST", json!({}));
        assert_eq!(status, 400);
        let (status, a) = answers(&mut st, "POST", Value::Array(vec![json!({}); 10_001]));
        assert_eq!(
            (status, &a[0]["error"]),
            (
                400,
                &json!("number of elements shouldn't be greater than 10000")
            )
        );
    }

    #[test]
    fn connector_items_merge_by_key_and_leave_one_by_one() {
        let mut st = State::new();
        let (_, a) = answers(
            &mut st,
            "POST",
            json!([
                item("host-a", "work"),
                item("Ping/host-a", "work"),
                item("host-a", "work"),
                item("host-b", "other")
            ]),
        );
        let ids: Vec<&Value> = a.iter().map(|a| &a["id"]).collect();
        assert!(a.iter().all(|a| a["status"] == 200), "{a:?}");
        assert!(ids[0] == ids[1] && ids[1] == ids[2] && ids[0] != ids[3]);
        assert_eq!(st.pbehaviors.len(), 2);
        let p = &st.pbehaviors[0];
        assert_eq!(p["entities"], json!(["host-a", "Ping/host-a"]));
        assert_eq!(
            p["entity_pattern"][0][0]["cond"],
            json!({"type": "is_one_of", "value": ["host-a", "Ping/host-a"]})
        );
        assert_eq!(
            (p["name"].as_str(), p["comments"][0]["message"].as_str()),
            (Some("n-work"), Some("work"))
        );
        // Another key, a name taken.
        let mut taken = item("host-c", "third");
        taken["name"] = json!("n-work");
        let (_, a) = answers(&mut st, "POST", json!([taken]));
        assert_eq!(
            (a[0]["status"].as_u64(), &a[0]["errors"]),
            (Some(400), &json!({"name": "Name already exists."}))
        );
        // A single-route pbehavior is never joined.
        st.pbehaviors.push(
            json!({"_id": "single", "name": "single", "origin": "centreon-stream",
            "tstart": 100, "tstop": 200, "comments": [{"message": "solo"}]}),
        );
        let (_, a) = answers(&mut st, "DELETE", json!([item("host-a", "solo")]));
        assert_eq!(
            (a[0]["status"].as_u64(), &a[0]["error"]),
            (Some(404), &json!("Not found"))
        );
        // Deletions take entities out; the last one takes the pbehavior.
        let (_, a) = answers(&mut st, "DELETE", json!([item("host-a", "work")]));
        assert_eq!((a[0]["status"].as_u64(), &a[0]["id"]), (Some(200), ids[0]));
        assert_eq!(st.pbehaviors[0]["entities"], json!(["Ping/host-a"]));
        let (_, a) = answers(
            &mut st,
            "DELETE",
            json!([item("Ping/host-a", "work"), item("Ping/host-a", "work")]),
        );
        assert_eq!(a[0]["status"], 200);
        assert_eq!(
            (a[1]["status"].as_u64(), &a[1]["error"]),
            (Some(404), &json!("Not found"))
        );
        assert!(st.pbehaviors.iter().all(|p| p["_id"] != *ids[0]));
        // Routes an older Canopsis lacks.
        assert!(serves(&st, CONNECTOR_ROUTE));
        st.version = "23.10.4".into();
        assert!(!serves(&st, CONNECTOR_ROUTE));
        st.missing_routes.push("/api/v4/bulk/pbehaviors".into());
        assert!(!serves(&st, "/api/v4/bulk/pbehaviors") && serves(&st, "/api/v4/pbehaviors"));
    }
}
