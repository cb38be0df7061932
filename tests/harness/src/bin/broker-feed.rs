//! `broker-feed`: one broker output in a process of its own, for tests that
//! SIGKILL it as systemd's `cbwd` does to a stuck cbd.
//!
//! Usage: broker-feed --script PATH --params JSON --from N --to M
//!
//! Feeds service events numbered `N..=M` (event `n` has `last_check` =
//! [`BASE`] + n, which becomes its Canopsis `timestamp`), the way broker
//! replays its retention after a restart, and prints `acked <n>` (the
//! highest event number acknowledged) each time acknowledgements move.
//! Once everything is acknowledged it keeps broker's idle loop running until
//! its stdin closes, then closes the output and prints `closed`.

use canopsis_harness::broker::{Muxer, Output, OutputConfig, Param};
use canopsis_harness::events::{Bbdo, Status};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `last_check` of event 0.
pub const BASE: i64 = 1_700_000_000;

fn arg(args: &[String], name: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| panic!("missing {name}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let from: i64 = arg(&args, "--from").parse().expect("--from is a number");
    let to: i64 = arg(&args, "--to").parse().expect("--to is a number");
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&arg(&args, "--params")).expect("--params is a JSON object");
    let params = json
        .into_iter()
        .map(|(k, v)| {
            let p = match v {
                serde_json::Value::Number(n) => Param::Num(n.as_i64().expect("integer") as i32),
                serde_json::Value::String(s) => Param::Str(s),
                other => panic!("parameter {k}: {other}"),
            };
            (k, p)
        })
        .collect();
    let cfg = OutputConfig {
        script: arg(&args, "--script").into(),
        params,
        bbdo: Bbdo::V3,
    };
    let mut out =
        Output::open(&cfg, canopsis_harness::broker::CacheData::sample()).expect("output opens");

    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        flag.store(true, Ordering::SeqCst);
    });

    let mut mux = Muxer::new();
    let mut reported = 0;
    let mut report = |m: &Muxer| {
        if m.acked != reported {
            reported = m.acked;
            println!("acked {}", from - 1 + m.acked as i64);
            let _ = std::io::stdout().flush();
        }
    };
    let mut n = from;
    while n <= to || !closed.load(Ordering::SeqCst) {
        for _ in 0..100 {
            if n <= to {
                mux.push(Status::service(12, 34, n % 3, BASE + n).event(Bbdo::V3));
                n += 1;
            }
        }
        mux.run(
            &mut out,
            Duration::from_millis(10),
            Duration::from_millis(200),
            Duration::from_millis(10),
            |m| {
                report(m);
                false
            },
        );
    }
    let last = out.close();
    mux.ack(last);
    report(&mux);
    println!("closed");
}
