//! Mattermost threads through a bot account, end to end: the webhook
//! output (the built module, through the broker emulator) posts to the
//! mock's REST API (`POST /api/v4/posts`, `PUT /api/v4/posts/{id}/patch`)
//! one thread per alert: a problem is a root post, its changes,
//! acknowledgement and recovery are replies, and the recovery edits the
//! root to read "Resolved". Runs with each Lua build.

use canopsis_harness::broker::{Muxer, Param};
use canopsis_harness::events::{Ack, Bbdo, Status};
use canopsis_harness::mattermost_api::BOT_TOKEN;
use canopsis_harness::{deliver, drain, text, Lab};
use serde_json::Value;
use std::time::Duration;

const T: i64 = 1_763_000_000;

fn title(post: &Value) -> String {
    post["props"]["attachments"][0]["title"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn service(state: i64, t: i64) -> Status {
    let mut s = Status::service(12, 34, state, t);
    s.output = format!("state {state} at {t}");
    s
}

/// The one root post and its replies' titles.
fn thread(lab: &Lab) -> (Value, Vec<String>) {
    let st = lab.mock.state();
    let api = &st.receivers.api;
    let roots = api.roots();
    assert_eq!(roots.len(), 1, "{:#?}", api.posts);
    let root = roots[0].clone();
    let replies = api
        .replies(root["id"].as_str().unwrap())
        .iter()
        .map(|p| title(p))
        .collect();
    (root, replies)
}

#[test]
fn a_problem_two_changes_and_a_recovery_are_one_thread_whose_root_reads_resolved() {
    let lab = Lab::webhook("threads");
    let bbdo = Bbdo::V3;
    // The first request is rate-limited: waited out, nothing lost.
    lab.mock.state().receivers.api.throttle_next = 1;
    let mut out = lab.open(lab.bot_params(&[]), bbdo);
    deliver(
        &mut out,
        vec![
            service(2, T).event(bbdo),
            service(1, T + 60).event(bbdo),
            service(2, T + 120).event(bbdo),
            service(0, T + 180).event(bbdo),
        ],
    );
    drop(out);
    let (root, replies) = thread(&lab);
    assert_eq!(
        replies,
        [
            "host-a / Ping is WARNING",
            "host-a / Ping is CRITICAL",
            "host-a / Ping is OK"
        ]
    );
    // The root was posted CRITICAL and edited on recovery.
    assert_eq!(root["edit_at"], 1, "{root}");
    assert_eq!(title(&root), "Resolved: host-a / Ping is OK");
    assert_eq!(root["props"]["attachments"][0]["color"], "#88b917");
    let st = lab.mock.state();
    assert_eq!(st.receivers.api.throttled, 1);
    assert_eq!(st.receivers.api.posts.len(), 4);
    // Requests went to the API only, never to an incoming webhook.
    assert!(st.receivers.posts.is_empty());
    drop(st);
    let log = lab.log();
    assert!(log.contains("Mattermost's API at"), "{log}");
    assert!(!log.contains(BOT_TOKEN), "{log}");
}

#[test]
fn a_restart_in_the_middle_keeps_the_thread_and_the_acknowledgement_goes_in_it() {
    let lab = Lab::webhook("threads-restart");
    let bbdo = Bbdo::V3;
    let mut out = lab.open(lab.bot_params(&[]), bbdo);
    deliver(&mut out, vec![service(2, T).event(bbdo)]);
    drop(out);
    // Beside the log, as `<logfile stem>.threads`.
    let kept = std::fs::read_to_string(lab.logfile().with_extension("threads"))
        .expect("the open thread is kept beside the log");
    assert!(kept.contains("12:34"), "{kept}");

    let mut out = lab.open(lab.bot_params(&[]), bbdo);
    deliver(
        &mut out,
        vec![
            Ack::new(12, 34, 2, T + 30).event(bbdo),
            service(1, T + 60).event(bbdo),
            service(0, T + 120).event(bbdo),
        ],
    );
    drop(out);
    let (root, replies) = thread(&lab);
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[0], "host-a / Ping acknowledged by admin");
    assert_eq!(replies[2], "host-a / Ping is OK");
    assert_eq!(title(&root), "Resolved: host-a / Ping is OK");
    let log = lab.log();
    assert!(log.contains("1 open Mattermost thread(s) read"), "{log}");
    assert!(!log.contains(BOT_TOKEN), "{log}");
}

#[test]
fn a_deleted_root_starts_the_thread_again() {
    let lab = Lab::webhook("threads-deleted");
    let bbdo = Bbdo::V3;
    let mut out = lab.open(lab.bot_params(&[]), bbdo);
    deliver(&mut out, vec![service(2, T).event(bbdo)]);
    let first = lab.mock.state().receivers.api.roots()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    lab.mock.state().receivers.api.delete(&first);
    deliver(
        &mut out,
        vec![
            service(1, T + 60).event(bbdo),
            service(0, T + 120).event(bbdo),
        ],
    );
    drop(out);
    let (root, replies) = thread(&lab);
    assert_ne!(root["id"], first.as_str());
    assert_eq!(title(&root), "Resolved: host-a / Ping is OK");
    assert_eq!(replies, ["host-a / Ping is OK"]);
    let log = lab.log();
    assert!(log.contains("is gone (deleted?)"), "{log}");
    assert!(!log.contains(BOT_TOKEN), "{log}");
}

/// A problem posted with `param` set to `value`, which Mattermost
/// refuses: the event stays unacknowledged and nothing is posted. The log.
fn refused_setting(name: &str, param: &str, value: &str) -> String {
    let lab = Lab::webhook(name);
    let bbdo = Bbdo::V3;
    let mut out = lab.open(lab.bot_params(&[(param, text(value))]), bbdo);
    let mut mux = Muxer::new();
    mux.push(service(2, T).event(bbdo));
    assert!(!drain(&mut out, &mut mux, Duration::from_secs(2)));
    assert_eq!(mux.unacked(), 1);
    drop(out);
    assert!(lab.mock.state().receivers.api.posts.is_empty());
    let log = lab.log();
    assert!(!log.contains(BOT_TOKEN), "{log}");
    log
}

#[test]
fn a_refused_token_is_a_configuration_fault_that_keeps_the_events_and_stays_secret() {
    let wrong = "wrong-bot-t0ken-9zq";
    let log = refused_setting("threads-token", "mattermost_bot_token", wrong);
    assert!(
        log.contains("HTTP 401") && log.contains("mattermost_bot_token"),
        "{log}"
    );
    assert!(!log.contains(wrong), "{log}");
}

#[test]
fn a_flood_is_the_first_threads_and_one_top_level_summary() {
    let lab = Lab::webhook("threads-flood");
    let params = lab.bot_params(&[
        ("max_messages_per_second", Param::Num(20)),
        ("max_waiting_messages", Param::Num(5)),
        ("skip_anon_events", Param::Num(0)),
    ]);
    let mut out = lab.open(params, Bbdo::V3);
    let mut mux = Muxer::new();
    for i in 0..30 {
        mux.push(Status::service(12, 100 + i, 2, T + i).event(Bbdo::V3));
    }
    assert!(drain(&mut out, &mut mux, Duration::from_secs(30)));
    drop(out);
    let st = lab.mock.state();
    let api = &st.receivers.api;
    let counted = |p: &&Value| match p["message"].as_str() {
        Some(t) if t.contains(" more ") => t.split(' ').next().unwrap().parse().unwrap(),
        _ => 1usize,
    };
    assert_eq!(api.posts.iter().map(|p| counted(&p)).sum::<usize>(), 30);
    assert!(
        api.posts.len() < 30,
        "{} posts for 30 events",
        api.posts.len()
    );
    let summary = api
        .posts
        .iter()
        .find(|p| {
            p["message"]
                .as_str()
                .is_some_and(|m| m.contains("more state changes"))
        })
        .expect("a summary");
    // Top-level, as each problem's root: a flood of problems opens no reply.
    assert!(api.posts.iter().all(|p| p["root_id"] == ""), "{summary}");
}

#[test]
fn a_channel_the_bot_is_not_in_is_a_configuration_fault_naming_the_parameter() {
    let other = "9zzzzzzzzzzzzzzzzzzzzzzzzz";
    let log = refused_setting("threads-channel", "mattermost_channel_id", other);
    assert!(
        log.contains("HTTP 403") && log.contains("mattermost_channel_id"),
        "{log}"
    );
}
