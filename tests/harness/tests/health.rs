//! Honest health: with one lane stuck on retries while the others deliver,
//! the stats line and the status file say `failing`, with the stuck lane's
//! error, in every sample while acknowledgements are frozen; the oldest
//! unacknowledged event's age grows; once Canopsis takes the stuck
//! object's events again, both say `ok`.

use canopsis_harness::broker::{Muxer, Param};
use canopsis_harness::events::{Bbdo, Event, Status};
use canopsis_harness::{drain, run_for, text, Lab};
use serde_json::Value;
use std::time::{Duration, Instant};

const T: i64 = 1_763_000_000;

/// host-b's id.
const HOST_B: i64 = 13;

/// The `i`th HARD state change of each of the sample's objects (host-a,
/// its two services, and host-b when `with_b`), as broker would send them.
fn change(i: i64, with_b: bool) -> Vec<Event> {
    Status::sample_changes(i, T)
        .into_iter()
        .filter(|s| with_b || s.host_id != HOST_B)
        .map(|s| s.event(Bbdo::V3))
        .collect()
}

/// The `stats:` lines of the log so far.
fn stats_lines(lab: &Lab) -> Vec<String> {
    lab.log()
        .lines()
        .filter(|l| l.contains(" stats: "))
        .map(String::from)
        .collect()
}

/// A `name=value` field of a stats line (`last_error` takes the rest).
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line
        .find(&format!(" {name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 2;
    let rest = &line[start..];
    if name == "last_error" {
        return rest;
    }
    rest.split(' ').next().unwrap_or_default()
}

fn number(line: &str, name: &str) -> u64 {
    field(line, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} in {line}"))
}

/// The status file, if there is one (and it is whole).
fn status(lab: &Lab) -> Option<Value> {
    let text = std::fs::read_to_string(lab.dir.join("canopsis.status.json")).ok()?;
    Some(serde_json::from_str(&text).expect("the status file is always whole JSON"))
}

#[test]
fn a_lane_stuck_on_retries_shows_in_every_sample_until_it_heals() {
    let lab = Lab::new("health-stuck-lane");
    // host-b's requests keep failing; the other three objects' go through.
    lab.mock.state().fail_containing = Some("\"host-b\"".into());
    let mut out = lab.open(
        lab.params(&[
            ("max_buffer_size", Param::Num(2)),
            ("max_all_queues_age", Param::Num(1)),
            ("max_requests_in_flight", text("4")),
            ("stats_interval", Param::Num(1)),
        ]),
        Bbdo::V3,
    );
    let mut mux = Muxer::new();
    for i in 0..10 {
        for e in change(i, true) {
            mux.push(e);
        }
    }
    // Until the other objects' events are all taken and host-b's failed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        run_for(&mut out, &mut mux, Duration::from_millis(100));
        let st = lab.mock.state();
        let failed = st.requests.iter().any(|r| r.status == 500);
        if (failed && st.events.len() >= 30) || Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(lab.mock.state().events.len(), 30, "the other lanes went on");
    // Let the failure reach the lane's state before sampling.
    run_for(&mut out, &mut mux, Duration::from_millis(300));
    let before = stats_lines(&lab).len();
    // Meanwhile the other objects keep changing, and their lanes keep
    // delivering: a success elsewhere must not hide host-b's lane.
    let mut files = Vec::new();
    let mut fed = 40;
    let sampling = Instant::now();
    let mut i = 10;
    while sampling.elapsed() < Duration::from_secs(5) {
        for e in change(i, false) {
            mux.push(e);
            fed += 1;
        }
        i += 1;
        run_for(&mut out, &mut mux, Duration::from_millis(250));
        files.extend(status(&lab));
    }
    assert_eq!(mux.acked, 0, "acknowledged past host-b's events");
    assert!(
        lab.mock.state().events.len() > 40,
        "the other lanes delivered while sampling"
    );
    let samples: Vec<String> = stats_lines(&lab).split_off(before);
    assert!(
        samples.len() >= 3,
        "a stats line every second (stats_interval=1): {samples:?}"
    );
    for line in &samples {
        assert_eq!(field(line, "state"), "failing", "{line}");
        assert!(field(line, "last_error").contains("500"), "{line}");
    }
    for line in &samples {
        assert_eq!(number(line, "failing_lanes"), 1, "{line}");
        assert_eq!(number(line, "lanes"), 4, "{line}");
        assert!(number(line, "unacked") > 40, "{line}");
    }
    let ages: Vec<u64> = samples
        .iter()
        .map(|l| number(l, "oldest_unacked_s"))
        .collect();
    assert!(
        ages.windows(2).all(|w| w[0] <= w[1]) && ages.last() > ages.first(),
        "the oldest unacknowledged event's age grows: {ages:?}"
    );
    assert!(files.len() >= 10, "{} status files read", files.len());
    for f in &files[files.len() - 10..] {
        assert_eq!(f["state"], "failing", "{f}");
        assert_eq!(f["failing_lanes"], 1, "{f}");
        assert_eq!(f["lanes"], 4, "{f}");
        assert!(f["unacked"].as_u64() > Some(40), "{f}");
        assert!(
            f["last_error"].as_str().is_some_and(|e| e.contains("500")),
            "{f}"
        );
        assert!(f["spool_bytes"].is_null(), "{f}");
        assert!(f["oldest_unacked_s"].as_u64() >= Some(1), "{f}");
    }

    // Canopsis takes host-b's events again: everything is acknowledged,
    // and the next samples say so.
    lab.mock.state().fail_containing = None;
    assert!(drain(&mut out, &mut mux, Duration::from_secs(30)));
    assert_eq!(mux.acked, fed);
    let healed = stats_lines(&lab).len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats_lines(&lab).len() < healed + 2 && Instant::now() < deadline {
        run_for(&mut out, &mut mux, Duration::from_millis(250));
    }
    let line = stats_lines(&lab).pop().unwrap();
    assert!(line.ends_with("state=ok last_error=none"), "{line}");
    assert_eq!(number(&line, "failing_lanes"), 0, "{line}");
    assert_eq!(number(&line, "oldest_unacked_s"), 0, "{line}");
    let f = status(&lab).unwrap();
    assert_eq!(f["state"], "ok", "{f}");
    assert!(f["last_error"].is_null(), "{f}");
    assert_eq!(f["counters"]["sent"], fed, "{f}");
    out.close();
    let f = status(&lab).unwrap();
    assert_eq!(
        (f["state"].as_str(), f["unacked"].as_u64()),
        (Some("ok"), Some(0))
    );
    // Figures only: the auth key is nowhere in it.
    let text = std::fs::read_to_string(lab.dir.join("canopsis.status.json")).unwrap();
    assert!(!text.contains(&lab.mock.authkey()));
}
