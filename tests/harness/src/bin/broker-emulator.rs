//! `broker-emulator`: runs the native connector end to end on an embedded
//! default: an emulated Centreon Broker feeds sample events (BBDO 3,
//! API 2, as Centreon 23.10+ does) into a mock Canopsis on 127.0.0.1.
//!
//! Usage: broker-emulator [--bbdo 2|3] [--script PATH] [--keep]
//!        broker-emulator webhook [mattermost|json|ndjson] [--bbdo 2|3] [--script PATH] [--keep]
//!
//! `webhook` runs the webhook output instead, into the mock's Mattermost
//! (the default: the messages are printed as the channel shows them) or
//! Logstash input (the documents are printed).
//!
//! `--script` runs an installed loader (e.g. from a package) instead of the
//! one built from this checkout; the module is then found on the Lua
//! `package.cpath` (set `LUA_CPATH_5_3` / `LUA_CPATH_5_4` to redirect it).

use canopsis_harness::broker::{Muxer, Output, Param};
use canopsis_harness::events::{Ack, Bbdo, Downtime, Event, Status};
use canopsis_harness::{text, Lab};
use serde_json::Value;
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
    if let Some(i) = args.iter().position(|a| a == "webhook") {
        let format = args
            .get(i + 1)
            .filter(|f| ["mattermost", "json", "ndjson"].contains(&f.as_str()))
            .map_or("mattermost", String::as_str);
        let lab = Lab::webhook_with_script("webhook-demo", script);
        std::process::exit(webhook(lab, format, bbdo, keep, now));
    }
    let lab = Lab::with_script("demo", script);
    println!(
        "mock Canopsis listening on http://127.0.0.1:{}",
        lab.mock.port()
    );
    println!("broker output path: {}", lab.script.display());
    let out = lab.open(
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
    let ok = feed(out, &mut mux, samples);

    let st = lab.mock.state();
    let posts = st.event_posts();
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
    let all_delivered = ok && mux.unacked() == 0 && st.events.len() == expected;
    drop(st);
    std::process::exit(finish(lab, keep, all_delivered));
}

/// Runs broker's loop over `samples` until all are acknowledged (60 s at
/// most), then closes the output; whether all were.
fn feed(mut out: Output, mux: &mut Muxer, samples: Vec<Event>) -> bool {
    let fed = samples.len();
    for ev in samples {
        mux.push(ev);
    }
    let ok = mux.run(
        &mut out,
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_secs(60),
        |m| m.unacked() == 0,
    );
    let acked_by_flush = out.close();
    mux.ack(acked_by_flush);
    println!("\nbroker events fed: {fed}, acknowledged: {}", mux.acked);
    ok && mux.unacked() == 0
}

/// Prints the connector's log and the verdict; the exit code.
fn finish(lab: Lab, keep: bool, all_delivered: bool) -> i32 {
    println!("\nconnector log ({}):", lab.logfile().display());
    for line in lab.log().lines() {
        let cut: String = line.chars().take(160).collect();
        println!(
            "  {cut}{}",
            if cut.len() < line.len() { " ..." } else { "" }
        );
    }
    if keep {
        println!("\nkept {}", lab.dir.display());
        std::mem::forget(lab);
    }
    if all_delivered {
        println!("\nOK: every event was filtered or delivered before broker acknowledged it");
        0
    } else {
        println!("\nFAILED: not every accepted event reached its receiver before acknowledgement");
        1
    }
}

/// The webhook demo: sample events and a burst of state changes into the
/// mock's Mattermost (or Logstash input); returns the exit code.
fn webhook(lab: Lab, format: &str, bbdo: Bbdo, keep: bool, now: i64) -> i32 {
    lab.mock.state().receivers.per_second = Some(10);
    let mut extra = vec![
        ("log_level", Param::Num(2)),
        ("skip_anon_events", Param::Num(0)),
    ];
    if format == "mattermost" {
        extra.extend([
            ("username", text("Centreon")),
            ("channel", text("noc")),
            ("max_messages_per_second", Param::Num(10)),
            ("max_waiting_messages", Param::Num(10)),
        ]);
    }
    let params = lab.webhook_params(format, &extra);
    println!(
        "mock {format} receiver on http://127.0.0.1:{}",
        lab.mock.port()
    );
    println!("broker output path: {}", lab.script.display());
    let out = lab.open(params, bbdo);
    let mut mux = Muxer::new();
    let mut down = Status::host(13, 1, now);
    down.output = "CRITICAL - 10.0.0.13: rta nan, lost 100%".into();
    let mut ping = Status::service(12, 34, 2, now);
    ping.output = "CRITICAL - 10.0.0.12: rta 812.4ms, lost 40%".into();
    let mut ack = Ack::new(12, 34, 2, now + 5);
    ack.comment = "Network team is on it".into();
    let dt = Downtime::started(1, 13, 0, now + 10, now + 7200);
    let mut samples = vec![
        down.event(bbdo),
        ping.event(bbdo),
        ack.event(bbdo),
        dt.event(bbdo),
    ];
    // A switch goes down: 37 services change at once.
    for i in 0..37 {
        let mut s = Status::service(14, 100 + i, [2, 2, 1, 3][i as usize % 4], now + 20);
        s.output = format!("CRITICAL - interface {i} down");
        samples.push(s.event(bbdo));
    }
    let ok = feed(out, &mut mux, samples);
    let st = lab.mock.state();
    let r = &st.receivers;
    let taken = if format == "mattermost" {
        println!(
            "messages posted: {} (at most {} in any second, {} answered 429)\n",
            r.posts.len(),
            r.busiest_second,
            r.throttled
        );
        for post in &r.posts {
            print_post(post);
        }
        r.posts.len()
    } else {
        println!("documents received: {}\n", r.documents.len());
        for doc in r.documents.iter().take(4) {
            println!("{}", serde_json::to_string(doc).unwrap_or_default());
        }
        r.documents.len()
    };
    let all = ok && mux.unacked() == 0 && taken > 0;
    drop(st);
    finish(lab, keep, all)
}

/// A Mattermost message as the channel shows it, in text.
fn print_post(post: &Value) {
    let who = post["username"].as_str().unwrap_or("webhook");
    let channel = post["channel"].as_str().unwrap_or("(webhook's channel)");
    println!("[#{channel}] {who}:");
    if let Some(t) = post["text"].as_str() {
        println!("  {t}");
    }
    for a in post["attachments"].as_array().into_iter().flatten() {
        let colour = a["color"].as_str().unwrap_or("");
        let link = a["title_link"]
            .as_str()
            .map(|l| format!("  <{l}>"))
            .unwrap_or_default();
        println!(
            "  ┃ {}{link}   [{colour}]",
            a["title"].as_str().unwrap_or("")
        );
        if let Some(t) = a["text"].as_str().filter(|t| !t.is_empty()) {
            println!("  ┃ {t}");
        }
        let fields: Vec<String> = a["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                format!(
                    "{}: {}",
                    f["title"].as_str().unwrap_or(""),
                    f["value"].as_str().unwrap_or("")
                )
            })
            .collect();
        if !fields.is_empty() {
            println!("  ┃ {}", fields.join("   "));
        }
    }
    println!();
}
