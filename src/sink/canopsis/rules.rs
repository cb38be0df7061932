//! Canopsis's deterministic per-event rules (`canopsis-api.md` §2.2),
//! checked before an event is first sent.
//!
//! `POST /api/v4/event` judges each event of an array alone and puts the
//! ones it cannot process in `failed_events`. Most reasons are rules about
//! the event's own fields: an event that breaks one fails every time, so it
//! is proven bad before it is sent and goes to the dead-letter file with
//! the rule named. What Canopsis fails beyond these rules (a Mongo lookup,
//! an AMQP publish) says nothing about the event: the sender retries it.
//!
//! The check runs on the sender threads for every event, so it reads only
//! the fields the rules name, borrowed from the body (no tree is built);
//! every other field is skipped.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// A field that is present, whatever its value (`null` included: Canopsis
/// sees a key holding `null` as a value that is not a string).
type Present<'a> = Option<&'a RawValue>;

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Present<'de>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The fields §2.2's rules read.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    event_type: Present<'a>,
    #[serde(default, borrow, deserialize_with = "present")]
    state: Present<'a>,
    #[serde(default, borrow, deserialize_with = "present")]
    author: Present<'a>,
    #[serde(default, borrow, deserialize_with = "present")]
    user_id: Present<'a>,
    #[serde(default, borrow, deserialize_with = "present")]
    ref_rk: Present<'a>,
    #[serde(default, borrow, deserialize_with = "present")]
    connector: Present<'a>,
    #[serde(default, borrow, deserialize_with = "present")]
    connector_name: Present<'a>,
    #[serde(default, borrow, deserialize_with = "present")]
    component: Present<'a>,
    #[serde(default, borrow, deserialize_with = "present")]
    resource: Present<'a>,
    #[serde(default, borrow, deserialize_with = "present")]
    source_type: Present<'a>,
}

/// A JSON value's text, when it is a string.
fn text(v: &RawValue) -> Option<String> {
    let raw = v.get();
    if !raw.starts_with('"') {
        return None;
    }
    serde_json::from_str(raw).ok()
}

fn is_string(v: Present<'_>) -> bool {
    v.is_some_and(|v| v.get().starts_with('"'))
}

/// A string holding at least one character (escapes included).
fn non_empty_string(v: Present<'_>) -> bool {
    v.is_some_and(|v| v.get().starts_with('"') && v.get().len() > 2)
}

/// `state` as Canopsis takes it: a JSON number, or a string that parses as
/// an integer.
fn state_ok(v: Present<'_>) -> bool {
    let Some(v) = v else { return false };
    let raw = v.get();
    if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return true;
    }
    text(v).is_some_and(|s| s.parse::<i64>().is_ok())
}

/// Event types whose `state` Canopsis reads (§2.2 step 2).
const STATEFUL: [&str; 4] = ["check", "changestate", "metaalarm", "junittestsuiteupdated"];

/// The rule of §2.2 an event breaks, named for the log and the dead-letter
/// file; `Ok` when Canopsis can take it (or fail it only for reasons of its
/// own).
pub fn check(event: &[u8]) -> Result<(), &'static str> {
    // A derived struct also reads a JSON array, field after field.
    let object = event.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let Some(f) = object
        .then(|| serde_json::from_slice::<Fields>(event).ok())
        .flatten()
    else {
        return Err("an event must be a JSON object");
    };
    let Some(event_type) = f.event_type.and_then(text) else {
        return Err("event_type must be a string");
    };
    if STATEFUL.contains(&event_type.as_str()) && !state_ok(f.state) {
        return Err("state must be a number or an integer string for this event_type");
    }
    if f.author.is_some() && !is_string(f.author) {
        return Err("author must be a string when present");
    }
    if f.user_id.is_some() && !is_string(f.user_id) {
        return Err("user_id must be a string when present");
    }
    if is_string(f.ref_rk) {
        return Ok(());
    }
    if !non_empty_string(f.connector) {
        return Err("connector must be a non-empty string");
    }
    if !non_empty_string(f.connector_name) {
        return Err("connector_name must be a non-empty string");
    }
    if f.component.is_some() && !is_string(f.component) {
        return Err("component must be a string when present");
    }
    if f.resource.is_some() && !is_string(f.resource) {
        return Err("resource must be a string when present");
    }
    if f.source_type.is_some() && !is_string(f.source_type) {
        return Err("source_type must be a string when present");
    }
    if event_type == "check" && !non_empty_string(f.component) {
        return Err("a check needs a component (without one its source_type is connector, which Canopsis refuses for checks)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"event_type":"check","state":2,"connector":"centreon","connector_name":"c1","component":"h","resource":"s","output":{"any":[1,2]}}"#;

    #[test]
    fn a_well_formed_event_passes_whatever_else_it_holds() {
        assert_eq!(check(OK.as_bytes()), Ok(()));
        for ev in [
            r#"{"event_type":"check","state":"2","connector":"c","connector_name":"n","component":"h"}"#,
            r#"{"event_type":"ack","connector":"c","connector_name":"n","component":"h","author":"x"}"#,
            r#"{"event_type":"check","state":1,"ref_rk":"x/y"}"#,
            r#"{"event_type":"whatever","connector":"c","connector_name":"n"}"#,
            r#"{"event_type":"check","state":-1.5,"connector":"c\"","connector_name":"\u00e9","component":"h","long_output":3}"#,
        ] {
            assert_eq!(check(ev.as_bytes()), Ok(()), "{ev}");
        }
    }

    #[test]
    fn each_rule_is_named() {
        for (ev, rule) in [
            ("[1]", "JSON object"),
            (r#"["check",2]"#, "JSON object"),
            ("{\"event_type\":1", "JSON object"),
            (r#"{"state":2}"#, "event_type"),
            (r#"{"event_type":null}"#, "event_type"),
            (
                r#"{"event_type":"check","connector":"c","connector_name":"n","component":"h"}"#,
                "state",
            ),
            (
                r#"{"event_type":"check","state":"abc","connector":"c","connector_name":"n","component":"h"}"#,
                "state",
            ),
            (
                r#"{"event_type":"changestate","state":true,"ref_rk":"r"}"#,
                "state",
            ),
            (
                r#"{"event_type":"ack","author":5,"connector":"c","connector_name":"n"}"#,
                "author",
            ),
            (
                r#"{"event_type":"ack","user_id":null,"connector":"c","connector_name":"n"}"#,
                "user_id",
            ),
            (
                r#"{"event_type":"ack","connector":"","connector_name":"n"}"#,
                "connector must",
            ),
            (r#"{"event_type":"ack","connector":"c"}"#, "connector_name"),
            (
                r#"{"event_type":"ack","connector":"c","connector_name":"n","component":1}"#,
                "component must",
            ),
            (
                r#"{"event_type":"ack","connector":"c","connector_name":"n","resource":[]}"#,
                "resource",
            ),
            (
                r#"{"event_type":"ack","connector":"c","connector_name":"n","source_type":0}"#,
                "source_type must",
            ),
            (
                r#"{"event_type":"check","state":0,"connector":"c","connector_name":"n","component":""}"#,
                "needs a component",
            ),
            (
                r#"{"event_type":"check","state":0,"connector":"c","connector_name":"n","resource":"s"}"#,
                "needs a component",
            ),
        ] {
            let got = check(ev.as_bytes());
            assert!(got.is_err_and(|r| r.contains(rule)), "{ev}: {got:?}");
        }
    }
}
