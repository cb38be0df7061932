//! Canopsis 24.04's route for monitoring-tool connectors,
//! `/api/v4/bulk/connector-pbehaviors` (`lib/api/pbehavior`, commit
//! 9e7d299905).
//!
//! An item names entities, an `origin` (the connector), a window and a
//! comment; Canopsis keeps one pbehavior per (origin, tstart, tstop,
//! comment) and unites the entities of every item with that key, so a host
//! downtime with its services (`SCHEDULE_HOST_SVC_DOWNTIME`: one downtime
//! per object, same window and comment) is one pbehavior. The comment is
//! stored with it (no comment route). A deletion with the same key takes
//! its entities out, and the pbehavior goes with the last one. Canopsis
//! gives the pbehavior its own `_id` and takes the name of the item that
//! created it.

use super::{Create, End, Ids, COLOR_2210};
use serde_json::{json, Value};

/// The comment of a downtime without one: Canopsis requires a comment on
/// this route, and it is part of the key, so it must be the same at the
/// start and at the end.
pub const NO_COMMENT: &str = "Centreon downtime";

/// The comment sent for a downtime's `comment` (already cut to 255
/// characters).
pub fn comment(comment: &str) -> &str {
    if comment.is_empty() {
        NO_COMMENT
    } else {
        comment
    }
}

/// The name of the pbehavior of a key. It derives from the whole key, as
/// Canopsis names are unique and a pbehavior holds every downtime of its
/// key, and it never looks like `centreon-downtime-<ids>`, the name the
/// other routes delete by: switching routes never deletes a pbehavior
/// that holds other downtimes.
pub fn group_name(origin: &str, tstart: i64, tstop: i64, comment: &str) -> String {
    format!(
        "centreon-downtimes-{tstart}-{tstop}-{:016x}",
        fnv1a([origin.as_bytes(), b"\0", comment.as_bytes()])
    )
}

/// FNV-1a, 64 bits: the same digest in every build (std's hasher may
/// change between Rust versions, and names must not).
fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.into_iter().flatten() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One item of a creation.
pub fn create_item(c: &Create, ids: &Ids, origin: &str) -> Value {
    let comment = comment(&c.comment);
    let mut item = json!({
        "entities": [c.entity],
        "origin": origin,
        "tstart": c.tstart,
        "tstop": c.tstop,
        "comment": comment,
        "name": group_name(origin, c.tstart, c.tstop, comment),
        "reason": ids.reason,
        "type": ids.kind,
    });
    if ids.color_required {
        item["color"] = json!(COLOR_2210);
    }
    item
}

/// One item of a deletion; `None` when the end does not tell the window
/// (the key is then unknown).
pub fn delete_item(e: &End, origin: &str) -> Option<Value> {
    let (tstart, tstop) = e.window?;
    Some(json!({
        "entities": [e.entity],
        "origin": origin,
        "tstart": tstart,
        "tstop": tstop,
        "comment": comment(&e.comment),
    }))
}

/// A JSON array of `items`.
pub fn body(items: &[Value]) -> Vec<u8> {
    serde_json::to_vec(items).expect("serializing plain data cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(entity: &str, comment: &str) -> Create {
        Create {
            name: "centreon-downtime-12-34-7-1000".into(),
            author: "admin".into(),
            tstart: 1060,
            tstop: 4660,
            entity: entity.into(),
            comment: comment.into(),
        }
    }

    #[test]
    fn items_carry_the_key_and_the_comment_inline() {
        let ids = Ids {
            reason: "r1".into(),
            kind: "t1".into(),
            color_required: false,
        };
        let item = create_item(&create("Ping/host-a", "work"), &ids, "centreon-stream");
        let name = group_name("centreon-stream", 1060, 4660, "work");
        assert_eq!(
            item,
            json!({"entities": ["Ping/host-a"], "origin": "centreon-stream", "tstart": 1060,
                   "tstop": 4660, "comment": "work", "name": name, "reason": "r1", "type": "t1"})
        );
        // Same key, same name, whatever the entity.
        assert_eq!(
            create_item(&create("host-a", "work"), &ids, "centreon-stream")["name"],
            json!(name)
        );
        assert!(name.starts_with("centreon-downtimes-1060-4660-"));
        assert_ne!(name, group_name("other", 1060, 4660, "work"));
        assert_ne!(name, group_name("centreon-stream", 1060, 4660, "other"));
        let end = End {
            name: "x".into(),
            entity: "Ping/host-a".into(),
            window: Some((1060, 4660)),
            comment: String::new(),
        };
        assert_eq!(
            delete_item(&end, "o"),
            Some(
                json!({"entities": ["Ping/host-a"], "origin": "o", "tstart": 1060,
                        "tstop": 4660, "comment": NO_COMMENT})
            )
        );
        assert_eq!(
            delete_item(
                &End {
                    window: None,
                    ..end
                },
                "o"
            ),
            None,
            "no window, no key"
        );
    }

    #[test]
    fn the_digest_is_fnv1a() {
        assert_eq!(fnv1a([b"".as_slice()]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a([b"a".as_slice()]), 0xaf63_dc4c_8601_ec8c);
    }
}
