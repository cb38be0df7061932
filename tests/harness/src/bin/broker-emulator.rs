//! `broker-emulator`: runs the native connector end to end on an embedded
//! default: an emulated Centreon Broker feeds sample events (BBDO 3,
//! API 2, as Centreon 23.10+ does) into a mock Canopsis on 127.0.0.1.
//!
//! Usage: broker-emulator [--bbdo 2|3] [--script PATH] [--keep]
//!
//! `--script` runs an installed loader (e.g. from a package) instead of the
//! one built from this checkout; the module is then found on the Lua
//! `package.cpath` (set `LUA_CPATH_5_3` / `LUA_CPATH_5_4` to redirect it).

use canopsis_harness::broker::{Muxer, Param};
use canopsis_harness::events::{Ack, Bbdo, Status};
use canopsis_harness::Lab;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bbdo = if args.windows(2).any(|w| w[0] == "--bbdo" && w[1] == "2") {
        Bbdo::V2
    } else {
        Bbdo::V3
    };
    let keep = args.iter().any(|a| a == "--keep");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);

    let script = args
        .windows(2)
        .find(|w| w[0] == "--script")
        .map(|w| std::path::PathBuf::from(&w[1]));
    let lab = Lab::with_script("demo", script);
    println!(
        "mock Canopsis listening on http://127.0.0.1:{}",
        lab.mock.port()
    );
    println!("broker output path: {}", lab.script.display());
    let mut out = lab.open(
        lab.params(&[
            ("max_buffer_size", Param::Num(10)),
            ("log_level", Param::Num(2)),
        ]),
        bbdo,
    );
    println!(
        "output opened: filter probe {}, broker_api_version {}",
        if out.has_filter() { "passed" } else { "FAILED" },
        out.api_version()
    );

    let mut mux = Muxer::new();
    let mut samples = vec![
        Status::host(12, 0, now).event(bbdo),
        Status::host(13, 1, now).event(bbdo),
        Status::service(12, 34, 2, now).event(bbdo),
        Status::service(12, 35, 1, now).event(bbdo),
        Ack::new(12, 34, 2, now + 5).event(bbdo),
        Ack::new(13, 0, 1, now + 6).event(bbdo),
    ];
    let mut soft = Status::service(12, 35, 2, now);
    soft.state_type = 0;
    samples.push(soft.event(bbdo));
    samples.push(Status::service(99, 1, 2, now).event(bbdo));
    for i in 0..22 {
        samples.push(Status::service(12, 34, i % 3, now + 10 + i).event(bbdo));
    }
    // Two samples are filtered: a SOFT state and a host unknown to the cache.
    let fed = samples.len();
    let expected = fed - 2;
    for ev in samples {
        mux.push(ev);
    }
    let ok = mux.run(
        &mut out,
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_secs(30),
        |m| m.unacked() == 0,
    );
    let acked_by_flush = out.close();
    mux.ack(acked_by_flush);

    let st = lab.mock.state();
    let posts = st.event_posts();
    println!("\nbroker events fed: {fed}, acknowledged: {}", mux.acked);
    println!(
        "POSTs to /api/v4/event: {} (sizes {:?})",
        posts.len(),
        posts
            .iter()
            .map(|p| p.as_array().map_or(0, |a| a.len()))
            .collect::<Vec<_>>()
    );
    println!("events published by Canopsis: {}", st.events.len());
    if let Some(first) = posts
        .first()
        .and_then(|p| p.as_array())
        .and_then(|a| a.first())
    {
        println!(
            "\nfirst event on the wire:\n{}",
            serde_json::to_string_pretty(first).unwrap_or_default()
        );
    }
    println!("\nconnector log ({}):", lab.logfile().display());
    for line in lab.log().lines() {
        let cut: String = line.chars().take(160).collect();
        println!(
            "  {cut}{}",
            if cut.len() < line.len() { " ..." } else { "" }
        );
    }
    let all_delivered = ok && mux.unacked() == 0 && st.events.len() == expected;
    drop(st);
    if keep {
        println!("\nkept {}", lab.dir.display());
        std::mem::forget(lab);
    }
    if all_delivered {
        println!("\nOK: every event was filtered or delivered before broker acknowledged it");
    } else {
        println!("\nFAILED: not every accepted event reached the mock before acknowledgement");
        std::process::exit(1);
    }
}
