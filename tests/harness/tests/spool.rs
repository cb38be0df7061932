//! The durable spool (`use_spool=1`) under the broker emulator: acks once on
//! disk, SIGKILL of the broker process, restarts, bounded close.

use canopsis_harness::broker::{Muxer, Param};
use canopsis_harness::events::{Bbdo, Downtime, Status};
use canopsis_harness::{drain, run_for, Lab};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// `last_check` of event 0 in `broker-feed`.
const BASE: i64 = 1_700_000_000;

fn spool_params(lab: &Lab, extra: &[(&str, Param)]) -> Vec<(String, Param)> {
    let mut p = vec![
        ("use_spool", Param::Num(1)),
        (
            "spool_directory",
            Param::Str(lab.dir.join("spool").display().to_string()),
        ),
        ("max_buffer_size", Param::Num(100)),
        ("log_level", Param::Num(2)),
    ];
    p.extend(extra.iter().cloned());
    lab.params(&p)
}

/// How many times Canopsis published each event number.
fn published(lab: &Lab) -> HashMap<i64, usize> {
    let mut seen = HashMap::new();
    for e in &lab.mock.state().events {
        *seen
            .entry(e["timestamp"].as_i64().unwrap() - BASE)
            .or_insert(0) += 1;
    }
    seen
}

fn feed(
    lab: &Lab,
    params: &[(String, Param)],
    from: i64,
    to: i64,
) -> (Child, BufReader<ChildStdout>) {
    let json: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Param::Str(s) => serde_json::Value::from(s.as_str()),
                Param::Num(n) => serde_json::Value::from(*n),
            };
            (k.clone(), v)
        })
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_broker-feed"))
        .args(["--script", &lab.script.display().to_string()])
        .args(["--params", &serde_json::Value::Object(json).to_string()])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("broker-feed runs");
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// Reads `acked <n>` lines until `stop(n)`; the last acked number.
fn acked_until(out: &mut BufReader<ChildStdout>, mut stop: impl FnMut(i64) -> bool) -> i64 {
    let mut acked = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            return acked;
        }
        if let Some(n) = line.trim().strip_prefix("acked ") {
            acked = n.parse().unwrap();
            if stop(acked) {
                return acked;
            }
        }
    }
}

fn spool_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_mid_stream_loses_nothing_acknowledged() {
    const N: i64 = 30_000;
    let lab = Lab::new("sigkill");
    let params = spool_params(&lab, &[]);
    let (mut child, mut out) = feed(&lab, &params, 1, N);
    let mut went_down = false;
    let acked = acked_until(&mut out, |n| {
        if n >= 3_000 && !went_down {
            // Some events confirmed and checkpointed, the rest only on disk.
            lab.mock.down();
            went_down = true;
        }
        n >= 10_000
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!((10_000..N).contains(&acked), "killed at {acked}");
    let before = published(&lab);
    assert!(
        (1..=acked).any(|n| !before.contains_key(&n)),
        "the kill should leave acknowledged events undelivered"
    );

    // Broker restarts and replays what it never got an ack for.
    lab.mock.up();
    let (mut child, mut out) = feed(&lab, &params, acked + 1, N);
    let t = Instant::now();
    while published(&lab).len() < N as usize && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(child.stdin.take());
    let mut rest = String::new();
    std::io::Read::read_to_string(out.get_mut(), &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(rest.contains("closed"), "{rest}");

    let seen = published(&lab);
    let lost: Vec<i64> = (1..=N).filter(|n| !seen.contains_key(n)).collect();
    assert!(
        lost.is_empty(),
        "{} events lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let doubled: usize = seen.values().map(|c| c - 1).sum();
    // At least once: the batch in flight when Canopsis went away may come
    // twice, and so may one commit group if the kill fell between the
    // fsync and broker counting the ack.
    assert!(doubled <= 100 + 5_000, "{doubled} duplicates");
    let log = lab.log();
    assert!(
        log.contains("left by the previous run are sent first"),
        "{log}"
    );
    eprintln!("acked at kill: {acked}, duplicates after restart: {doubled}");
}

#[test]
fn with_canopsis_down_broker_retention_stays_empty_and_a_restart_delivers() {
    let lab = Lab::new("spool-down");
    let params = spool_params(&lab, &[]);
    lab.mock.down();
    let mut out = lab.open(params.clone(), Bbdo::V3);
    let mut mux = Muxer::new();
    for n in 0..20_000 {
        mux.push(Status::service(12, 34, n % 3, BASE + n).event(Bbdo::V3));
    }
    assert!(
        drain(&mut out, &mut mux, Duration::from_secs(30)),
        "acknowledged once on disk, Canopsis down or not"
    );
    assert_eq!(mux.acked, 20_000);
    let t = Instant::now();
    let closed = out.close();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "close took {:?}",
        t.elapsed()
    );
    assert_eq!(closed, 0);
    assert!(published(&lab).is_empty());
    assert!(spool_bytes(&lab.dir.join("spool")) > 0);

    lab.mock.up();
    let mut out = lab.open(params, Bbdo::V3);
    let mut idle = Muxer::new();
    let t = Instant::now();
    while published(&lab).len() < 20_000 && t.elapsed() < Duration::from_secs(30) {
        run_for(&mut out, &mut idle, Duration::from_millis(100));
    }
    drop(out);
    let seen = published(&lab);
    assert_eq!(seen.len(), 20_000);
    assert!(
        seen.values().all(|c| *c == 1),
        "a clean restart sends nothing twice"
    );
    let log = lab.log();
    assert!(
        log.contains("events are acknowledged once on disk"),
        "{log}"
    );
}

#[test]
fn a_full_spool_stops_acknowledging_then_resumes_and_nothing_is_dropped() {
    let lab = Lab::new("spool-full");
    let params = spool_params(
        &lab,
        &[
            ("spool_max_size_mb", Param::Num(1)),
            ("log_level", Param::Num(1)),
        ],
    );
    lab.mock.down();
    let mut out = lab.open(params, Bbdo::V3);
    let mut mux = Muxer::new();
    mux.max_size = 3_000;
    let mut n = 0;
    // ~600 bytes per event: a 1 MiB spool holds fewer than 2000.
    while n < 6_000 {
        for _ in 0..200 {
            mux.push(Status::service(12, 34, n % 3, BASE + n).event(Bbdo::V3));
            n += 1;
        }
        run_for(&mut out, &mut mux, Duration::from_millis(50));
    }
    run_for(&mut out, &mut mux, Duration::from_secs(1));
    let stuck = mux.acked;
    assert!(stuck < 6_000, "acknowledged past a full spool");
    assert!(mux.unacked() > 0);
    assert!(lab.log().contains("spool is full"), "{}", lab.log());

    lab.mock.up();
    assert!(drain(&mut out, &mut mux, Duration::from_secs(60)));
    let t = Instant::now();
    while published(&lab).len() < 6_000 && t.elapsed() < Duration::from_secs(30) {
        run_for(&mut out, &mut mux, Duration::from_millis(100));
    }
    drop(out);
    let seen = published(&lab);
    assert_eq!(seen.len(), 6_000, "events dropped");
    assert!(seen.values().all(|c| *c == 1));
}

#[test]
fn a_second_output_on_the_same_spool_is_refused_and_acks_nothing() {
    let lab = Lab::new("spool-lock");
    let params = spool_params(&lab, &[]);
    let _first = lab.open(params.clone(), Bbdo::V3);
    let mut second = lab.open(params, Bbdo::V3);
    let mut mux = Muxer::new();
    mux.push(Status::service(12, 34, 2, BASE).event(Bbdo::V3));
    run_for(&mut second, &mut mux, Duration::from_millis(300));
    assert_eq!(mux.acked, 0);
    assert!(
        lab.log().contains("is in use by another connector"),
        "{}",
        lab.log()
    );
}

#[test]
fn downtimes_travel_through_the_spool_with_the_events_around_them() {
    let lab = Lab::new("spool-downtimes");
    let params = spool_params(&lab, &[]);
    lab.mock.down();
    let dt = Downtime::started(7, 12, 34, BASE, BASE + 3600);
    {
        let mut out = lab.open(params.clone(), Bbdo::V3);
        let mut mux = Muxer::new();
        mux.push(Status::service(12, 34, 2, BASE + 1).event(Bbdo::V3));
        mux.push(dt.event(Bbdo::V3));
        mux.push(Status::service(12, 34, 1, BASE + 2).event(Bbdo::V3));
        assert!(drain(&mut out, &mut mux, Duration::from_secs(10)));
    }
    // Canopsis comes back after the restart: the spool replays all three.
    lab.mock.up();
    let mut out = lab.open(params.clone(), Bbdo::V3);
    let mut idle = Muxer::new();
    let t = Instant::now();
    while (published(&lab).len() < 2 || lab.mock.state().pbehaviors.is_empty())
        && t.elapsed() < Duration::from_secs(30)
    {
        run_for(&mut out, &mut idle, Duration::from_millis(100));
    }
    {
        let st = lab.mock.state();
        assert_eq!(st.pbehaviors.len(), 1, "pbehavior created from the spool");
        assert_eq!(
            st.pbehaviors[0]["_id"],
            format!("centreon-downtime-12-34-7-{}", BASE - 60)
        );
        assert_eq!(
            st.pbehaviors[0]["comments"][0]["message"],
            "Planned maintenance"
        );
        // The service's events keep broker's order; the downtime's
        // pbehavior keeps its own (create, then delete below), as without
        // the spool.
        let stamps: Vec<i64> = st
            .events
            .iter()
            .map(|e| e["timestamp"].as_i64().unwrap() - BASE)
            .collect();
        assert_eq!(stamps, vec![1, 2]);
    }
    let mut mux = Muxer::new();
    mux.push(dt.ended(BASE + 100).event(Bbdo::V3));
    assert!(drain(&mut out, &mut mux, Duration::from_secs(10)));
    let t = Instant::now();
    while !lab.mock.state().pbehaviors.is_empty() && t.elapsed() < Duration::from_secs(10) {
        run_for(&mut out, &mut idle, Duration::from_millis(100));
    }
    assert!(lab.mock.state().pbehaviors.is_empty(), "pbehavior deleted");
}
