//! `bench`: prints the connector's figures (issue 6) as a table. It measures
//! and asserts nothing; README keeps the targets and the last table. Each
//! figure of (a) and (b) is the median of several runs: the emulator, the
//! connector's sender and the mock share the machine's CPUs, and single
//! runs vary by a third.
//!
//! Usage: bench [--quick] [--network] [--webhook] [--soak SECONDS] [--write-only N [--templated] [--filtered]]
//!        bench --peer [--runs N] [--events N] [--latency-ms MS] [--queue N] [--validating] [--against OLD.so]
//!        bench --end-to-end BUFFER N   (one run of (b))
//!
//! (a) broker-thread time per `write` for BBDO 3 service statuses handed
//!     over as API 2 userdata, accepted and filtered (SOFT): each event is
//!     built (broker's cost, not timed) right before its timed `write`, as
//!     broker does, and the cost of reading the clock is taken off. Events
//!     come as fast as the emulator can make them, faster than the mock
//!     takes them, so accepted writes include the waits of the ack window
//!     (the connector's `waited_ms`, printed apart);
//! (b) end-to-end events/s delivered to the mock Canopsis on 127.0.0.1 for
//!     `max_buffer_size` 1, 100 and 1000 (event building excluded, as in (a));
//!     the mock answers by echoing, without validating (its JSON handling
//!     would otherwise be most of what is measured);
//! (c) peak RSS of a fresh process (emulator, connector, mock) while 1M
//!     events flow, and its growth between the first and second half;
//! (d) (a) to (c) with the spool on (`use_spool=1`, in a temporary
//!     directory: group commit with fdatasync on the broker thread);
//! (e) (a) and (b) with templates (`format_file`): a host and a service
//!     template using event, cache and group macros and a flag;
//! (f) (`--network` alone) end to end with Canopsis answering in 20 ms, then
//!     with 20% of its requests answered 500, then with the spool, over
//!     400 services; and downtimes started then ended, with the default
//!     settings (the bulk route), on the single and on the connector route
//!     (`BENCH_IN_FLIGHT=N` sets their `max_requests_in_flight`,
//!     `BENCH_SHOW_LOG=1` prints their stats lines);
//! (g) (`--webhook` alone) the webhook output: end-to-end events/s into
//!     the mock's Logstash input as JSON arrays and as NDJSON (counted, not
//!     parsed, as in (b)); Mattermost at the mock's limit of 10 messages per
//!     second: 60 events one message each, then 1000 at once summarised;
//! (h) (`--peer` alone) the acknowledgement window under broker's own
//!     loop: `--events` (20000) HARD statuses of 400 services queued at once
//!     in an emulated muxer (`event_queue_max_size` 10000, flush only when
//!     no event is ready), 16 lanes, `max_buffer_size` 100, dedup off,
//!     Canopsis answering after `--latency-ms` (20); events/s from the first
//!     `write` to broker's last acknowledgement, each run printed, with the
//!     mock in this process and in a child process of its own (this binary
//!     run as `--serve-peer MS`: loopback only, gone when the row ends or
//!     after ten minutes at most). `--runs N` (5) runs of each;
//!     `--against OLD.so` alternates every run with that module build, so
//!     the two are compared under the same load of the machine; `--queue`
//!     sets the muxer's `event_queue_max_size`; `--validating` has the mock
//!     validate every event as in tests (the CPU it then spends, under one
//!     lock, is a real Canopsis's, on another machine);
//! `--soak 600`: events at full speed for ten minutes (no spool), RSS read
//!     every minute: growth from the first minute to the last.

use canopsis_harness::broker::{Muxer, Output, Param};
use canopsis_harness::events::{Bbdo, Downtime, Event, Status};
use canopsis_harness::mock::State;
use canopsis_harness::{spread, Lab};
use std::time::{Duration, Instant};

const T: i64 = 1_763_000_000;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The templates of (e): every kind of macro the contract lists that a
/// status uses (event, flag, cache, groups).
fn templates() -> serde_json::Value {
    let common = |resource: bool| {
        let mut t = serde_json::json!({
            "event_type": "check", "connector": "centreon-stream",
            "connector_name": "{cache.instance.name}", "component": "{cache.host.name}",
            "source_type": "component", "state": "{state}", "timestamp": "{last_check}",
            "output": "{output_scshort}", "long_output": "{long_output}",
            "hostgroups": "{groups(hg,table,.*)}", "address": "{cache.host.address}",
            "host_id": "{host_id}"
        });
        if resource {
            t["source_type"] = "resource".into();
            t["resource"] = "{cache.service.description}".into();
            t["servicegroups"] = "{groups(sg,table,.*)}".into();
            t["severity"] = "{cache.severity.service}".into();
            t["notes_url"] = "{cache.service.notes_url}".into();
            t["service_id"] = "{service_id}".into();
        }
        t
    };
    serde_json::json!({"neb_host_status": common(false), "neb_service_status": common(true)})
}

fn open(lab: &Lab, buffer: i32, spool: bool) -> Output {
    open_with(lab, buffer, spool, false)
}

fn open_with(lab: &Lab, buffer: i32, spool: bool, templated: bool) -> Output {
    lab.mock.state().record = false;
    lab.mock.state().echo_only = true;
    let mut params = vec![
        ("max_buffer_size", Param::Num(buffer)),
        // Level 2 for the stats line (how long `write` waited); nothing is
        // logged per event or per batch at this level.
        ("log_level", Param::Num(2)),
    ];
    if templated {
        let path = lab.dir.join("format.json");
        std::fs::write(&path, templates().to_string()).expect("format file");
        params.push(("format_file", Param::Str(path.display().to_string())));
        params.push(("format_file_typed_values", Param::Num(1)));
    }
    if spool {
        params.push(("use_spool", Param::Num(1)));
        params.push((
            "spool_directory",
            Param::Str(lab.dir.join("spool").display().to_string()),
        ));
    }
    lab.open(lab.params(&params), Bbdo::V3)
}

fn event(i: i64, hard: bool) -> Event {
    let mut s = Status::service(12, 34, i % 3, T + i);
    if !hard {
        s.state_type = 0;
    }
    s.event(Bbdo::V3)
}

/// Nanoseconds two clock reads cost, measured once per bench.
fn clock_cost() -> f64 {
    static COST: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *COST.get_or_init(|| {
        let n = 1_000_000;
        let mut spent = Duration::ZERO;
        for _ in 0..n {
            let t = Instant::now();
            spent += t.elapsed();
        }
        spent.as_nanos() as f64 / n as f64
    })
}

/// `waited_ms` of the last stats line in the connector's log: time `write`
/// spent waiting until it could acknowledge.
fn waited(lab: &Lab) -> Duration {
    let log = lab.log();
    let ms = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("waited_ms=").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Duration::from_millis(ms)
}

/// Mean broker-thread nanoseconds per `write`, and how many of them were
/// spent waiting so it could acknowledge (for Canopsis at the ack window,
/// or for the spool's syncs).
fn write_cost(hard: bool, n: i64, spool: bool) -> (f64, f64) {
    write_cost_with(hard, n, spool, false)
}

fn write_cost_with(hard: bool, n: i64, spool: bool, templated: bool) -> (f64, f64) {
    let lab = Lab::new("bench-write");
    let mut out = open_with(&lab, 1000, spool, templated);
    // Every write is counted, the first ones too: the stats line that
    // tells the waits covers them all.
    let mut spent = Duration::ZERO;
    for i in 0..n {
        spent += out.timed_write(&event(i, hard)).0;
    }
    out.close();
    (
        (spent.as_nanos() as f64 / n as f64 - clock_cost()).max(0.0),
        waited(&lab).as_nanos() as f64 / n as f64,
    )
}

/// Events/s from the first `write` to the last confirmation by the mock,
/// not counting the time the emulator spends building events (broker's).
fn throughput(buffer: i32, n: i64, spool: bool) -> f64 {
    throughput_with(buffer, n, spool, false)
}

fn throughput_with(buffer: i32, n: i64, spool: bool, templated: bool) -> f64 {
    let lab = Lab::new("bench-e2e");
    let out = open_with(&lab, buffer, spool, templated);
    events_per_second(&lab, out, n, |st| st.published)
}

/// Events/s for `n` accepted statuses written to `out` until `delivered`
/// (read from the mock's state) counts them all: the writes' time, then
/// flushes until then (event building excluded).
fn events_per_second(lab: &Lab, mut out: Output, n: i64, delivered: impl Fn(&State) -> u64) -> f64 {
    let mut spent = Duration::ZERO;
    for i in 0..n {
        spent += out.timed_write(&event(i, true)).0;
    }
    let start = Instant::now();
    out.flush();
    while delivered(&lab.mock.state()) < n as u64 {
        out.flush();
        std::thread::sleep(Duration::from_millis(1));
    }
    spent += start.elapsed();
    out.close();
    n as f64 / spent.as_secs_f64()
}

/// (f): events/s to a mock answering after `latency`, failing `fail_rate`
/// of its requests with a 500, statuses of [`spread::SERVICES`] services.
fn over_network(latency: Duration, fail_rate: f64, n: i64, spool: bool) -> f64 {
    let lab = Lab::new("bench-net");
    let mut out = open(&lab, 100, spool);
    {
        let mut st = lab.mock.state();
        st.latency = latency;
        st.fail_rate = fail_rate;
    }
    spread::add_to_cache(&out);
    let start = Instant::now();
    for i in 0..n {
        out.write(&spread::status(i, T).event(Bbdo::V3));
    }
    out.flush();
    while lab.mock.state().published < n as u64 {
        out.flush();
        std::thread::sleep(Duration::from_millis(1));
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    out.close();
    show_stats(&lab);
    rate
}

/// A mock Canopsis in a child process: this binary run as `--serve-peer`.
/// Dropping it closes the child's stdin, which ends it.
struct Peer {
    child: std::process::Child,
    ask: Option<std::process::ChildStdin>,
    answers: std::io::BufReader<std::process::ChildStdout>,
    port: u16,
    authkey: String,
}

impl Peer {
    fn start(latency: Duration, echo: bool) -> Peer {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().expect("own path");
        let mut cmd = Command::new(exe);
        cmd.args(["--serve-peer", &latency.as_millis().to_string()]);
        if !echo {
            cmd.arg("--validating");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bench --serve-peer starts");
        let ask = child.stdin.take();
        let mut answers = std::io::BufReader::new(child.stdout.take().expect("peer stdout"));
        let mut line = String::new();
        answers
            .read_line(&mut line)
            .expect("peer says where it listens");
        let (port, authkey) = line
            .trim()
            .split_once(' ')
            .and_then(|(p, k)| Some((p.parse().ok()?, k.to_string())))
            .unwrap_or_else(|| panic!("peer said {line:?}"));
        Peer {
            child,
            ask,
            answers,
            port,
            authkey,
        }
    }

    /// Events the peer published so far.
    fn published(&mut self) -> u64 {
        use std::io::{BufRead, Write};
        let ask = self.ask.as_mut().expect("peer stdin");
        writeln!(ask, "published").expect("peer reads");
        ask.flush().expect("peer reads");
        let mut line = String::new();
        self.answers.read_line(&mut line).expect("peer answers");
        line.trim().parse().expect("a count")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.ask.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bench --serve-peer MS [--validating]`: the mock Canopsis on 127.0.0.1,
/// echoing event POSTs (or validating them) after MS milliseconds. Prints
/// `<port> <authkey>`, then the events published so far for each line
/// read; ends when stdin closes, or after ten minutes whatever happens.
fn serve_peer(latency: Duration, echo: bool) {
    use std::io::{BufRead, Write};
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(600));
        eprintln!("bench --serve-peer: ten minutes are up, exiting");
        std::process::exit(2);
    });
    let mock = canopsis_harness::mock::MockCanopsis::start();
    {
        let mut st = mock.state();
        st.record = false;
        st.echo_only = echo;
        st.latency = latency;
    }
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{} {}", mock.port(), mock.authkey()).is_err() || stdout.flush().is_err() {
        return;
    }
    for line in std::io::stdin().lock().lines() {
        let published = mock.state().published;
        if line.is_err() || writeln!(stdout, "{published}").is_err() || stdout.flush().is_err() {
            break;
        }
    }
}

/// Where (h)'s mock Canopsis runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PeerAt {
    ThisProcess,
    OtherProcess,
}

/// How (h) runs.
#[derive(Debug, Clone, Copy)]
struct PeerRun {
    latency: Duration,
    /// Statuses queued.
    events: i64,
    /// The emulated muxer's `event_queue_max_size`.
    queue: usize,
    /// The mock answers by echoing (true) or validates every event as it
    /// does in tests, which costs it CPU a real Canopsis spends elsewhere.
    echo: bool,
}

/// (h): `n` HARD statuses of [`spread::SERVICES`] services queued at once in an
/// emulated muxer and fed through broker's failover loop, Canopsis
/// answering after `latency`, 16 lanes of 100; events/s from the first
/// `write` to broker's last acknowledgement.
fn through_muxer(run: PeerRun, at: PeerAt) -> f64 {
    let (latency, n) = (run.latency, run.events);
    let lab = Lab::new("bench-peer");
    let mut peer = (at == PeerAt::OtherProcess).then(|| Peer::start(latency, run.echo));
    let mut extra = vec![
        ("max_buffer_size", Param::Num(100)),
        ("max_requests_in_flight", Param::Num(16)),
        ("enable_host_status_dedup", Param::Num(0)),
        ("enable_service_status_dedup", Param::Num(0)),
        ("log_level", Param::Num(2)),
    ];
    match &peer {
        Some(p) => {
            extra.push(("canopsis_port", Param::Num(p.port as i32)));
            extra.push(("canopsis_authkey", Param::Str(p.authkey.clone())));
        }
        None => {
            let mut st = lab.mock.state();
            st.record = false;
            st.echo_only = run.echo;
            st.latency = latency;
        }
    }
    let mut out = lab.open(lab.params(&extra), Bbdo::V3);
    spread::add_to_cache(&out);
    let mut mux = Muxer::new();
    mux.max_size = run.queue;
    for i in 0..n {
        mux.push(spread::status(i, T).event(Bbdo::V3));
    }
    let start = Instant::now();
    let done = mux.run(
        &mut out,
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_secs(300),
        |m| m.acked >= n as u64,
    );
    let rate = n as f64 / start.elapsed().as_secs_f64();
    out.close();
    show_stats(&lab);
    let published = match &mut peer {
        Some(p) => p.published(),
        None => lab.mock.state().published,
    };
    if !done || published < n as u64 {
        eprintln!(
            "(h): not all acknowledged ({} of {n}; {published} published)",
            mux.acked
        );
    }
    rate
}

/// (h), `--runs` times each, the module under test alternating with
/// `--against`'s when given.
fn peer_rows(args: &[String]) {
    let num = |name: &str, default: i64| {
        args.windows(2)
            .find(|w| w[0] == name)
            .and_then(|w| w[1].parse::<i64>().ok())
            .unwrap_or(default)
    };
    let runs = num("--runs", 5);
    let run = PeerRun {
        latency: Duration::from_millis(num("--latency-ms", 20) as u64),
        events: num("--events", 20_000),
        queue: num("--queue", 10_000) as usize,
        echo: !args.iter().any(|a| a == "--validating"),
    };
    let against = args
        .windows(2)
        .find(|w| w[0] == "--against")
        .map(|w| std::path::PathBuf::from(&w[1]));
    let mine = canopsis_harness::module_path();
    let mut builds = vec![("this build", mine)];
    if let Some(old) = against {
        builds.insert(0, ("--against", old));
    }
    for at in [PeerAt::OtherProcess, PeerAt::ThisProcess] {
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); builds.len()];
        for _ in 0..runs {
            for (b, (_, module)) in builds.iter().enumerate() {
                std::env::set_var("CANOPSIS_NATIVE_MODULE", module);
                rates[b].push(through_muxer(run, at));
            }
        }
        for ((name, _), rates) in builds.iter().zip(rates) {
            let each: Vec<String> = rates
                .iter()
                .map(|r| format!("{:.1}k", r / 1000.0))
                .collect();
            println!(
                "(h) {} statuses, {} ms{}, peer in {}, {name}: median {:.0} ev/s; runs {}",
                run.events,
                run.latency.as_millis(),
                if run.echo { "" } else { ", validating" },
                if at == PeerAt::OtherProcess {
                    "another process"
                } else {
                    "this process"
                },
                median(rates.clone()),
                each.join(" ")
            );
        }
    }
}

/// With `BENCH_SHOW_LOG` set, the connector's stats lines, to see where
/// the time went (`waited_ms`, `requests`...).
fn show_stats(lab: &Lab) {
    if std::env::var_os("BENCH_SHOW_LOG").is_some() {
        for line in lab.log().lines().filter(|l| l.contains("stats:")) {
            eprintln!("{line}");
        }
    }
}

/// (f): seconds until `n` downtimes (over [`spread::SERVICES`] services), started
/// and then ended, have had their pbehaviors created, commented and
/// deleted, with Canopsis answering after `latency`, through `route`
/// (`None`: the default settings).
fn downtimes(latency: Duration, n: i64, route: Option<&str>) -> f64 {
    let lab = Lab::new("bench-dt");
    let mut params = vec![("log_level", Param::Num(2))];
    if let Ok(n) = std::env::var("BENCH_IN_FLIGHT") {
        params.push(("max_requests_in_flight", Param::Str(n)));
    }
    if let Some(route) = route {
        params.push(("canopsis_downtime_route", Param::Str(route.into())));
    }
    let mut out = lab.open(lab.params(&params), Bbdo::V3);
    lab.mock.state().record = false;
    lab.mock.state().latency = latency;
    spread::add_to_cache(&out);
    let dts: Vec<Downtime> = (0..n)
        // One downtime per service and round, each round ending a second
        // later: on the connector route a round is one pbehavior (as a
        // host group's downtime), and no two downtimes of one service
        // share one (the first to end would take the service out).
        .map(|i| {
            let (host, round) = spread::nth(i);
            Downtime::started(10_000 + i, host, 1, T, T + 3600 + round)
        })
        .collect();
    let start = Instant::now();
    let mut mux = Muxer::new();
    for d in &dts {
        mux.push(d.event(Bbdo::V3));
    }
    for d in &dts {
        for e in &d.life(T + 100, false)[2..] {
            mux.push(e.event(Bbdo::V3));
        }
    }
    let done = mux.run(
        &mut out,
        Duration::from_millis(20),
        Duration::from_millis(200),
        Duration::from_secs(900),
        |m| m.unacked() == 0,
    );
    let secs = start.elapsed().as_secs_f64();
    let left = lab.mock.state().pbehaviors.len();
    out.close();
    show_stats(&lab);
    if !done || left > 0 {
        eprintln!("downtimes: not all done ({left} pbehaviors left)");
    }
    secs
}

/// Peak RSS (MiB) over a 1M-event run, and RSS growth (MiB) between the
/// middle and the end of the run.
fn memory(n: i64, spool: bool) -> (f64, f64) {
    let lab = Lab::new("bench-rss");
    let mut out = open(&lab, 1000, spool);
    let mut mid = 0;
    for i in 0..n {
        out.write(&event(i, true));
        if i == n / 2 {
            mid = status_kb("VmRSS:");
        }
    }
    while lab.mock.state().published < n as u64 {
        out.flush();
        std::thread::sleep(Duration::from_millis(1));
    }
    let end = status_kb("VmRSS:");
    out.close();
    (
        status_kb("VmHWM:") as f64 / 1024.0,
        (end as f64 - mid as f64) / 1024.0,
    )
}

/// RSS (MiB) at the end of each minute of `secs` seconds at full speed.
fn soak(secs: u64) -> (u64, Vec<f64>) {
    let lab = Lab::new("bench-soak");
    let mut out = open(&lab, 1000, false);
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut next = Duration::from_secs(60.min(secs));
    let mut i: i64 = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..1000 {
            out.write(&event(i, true));
            i += 1;
        }
        if start.elapsed() >= next {
            samples.push(status_kb("VmRSS:") as f64 / 1024.0);
            eprintln!(
                "soak: {} s, {i} events, RSS {:.1} MiB",
                next.as_secs(),
                samples.last().unwrap()
            );
            next += Duration::from_secs(60);
        }
    }
    out.close();
    (i as u64, samples)
}

/// Runs [`memory`] in a fresh process (`bench --rss N [--spool]`), so the
/// heap the other measures left behind does not count.
fn memory_in_child(n: i64, spool: bool) -> (f64, f64) {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--rss", &n.to_string()]);
    if spool {
        cmd.arg("--spool");
    }
    let out = cmd.output().expect("bench --rss runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut nums = text
        .split_whitespace()
        .filter_map(|w| w.parse::<f64>().ok());
    match (nums.next(), nums.next()) {
        (Some(peak), Some(growth)) => (peak, growth),
        _ => panic!("bench --rss printed {text:?}"),
    }
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(|a, b| a.total_cmp(b));
    runs[runs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args
        .windows(2)
        .find(|w| w[0] == "--rss")
        .and_then(|w| w[1].parse::<i64>().ok())
    {
        let (peak, growth) = memory(n, args.iter().any(|a| a == "--spool"));
        println!("{peak} {growth}");
        return;
    }
    if let Some(secs) = args
        .windows(2)
        .find(|w| w[0] == "--soak")
        .and_then(|w| w[1].parse::<u64>().ok())
    {
        let (events, rss) = soak(secs);
        println!(
            "soak {secs} s: {events} events ({:.0}/s), RSS by minute (MiB): {}",
            events as f64 / secs as f64,
            rss.iter()
                .map(|r| format!("{r:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
            println!(
                "soak growth, first minute to last: {:+.1} MiB",
                last - first
            );
        }
        return;
    }
    if let Some(ms) = args
        .windows(2)
        .find(|w| w[0] == "--serve-peer")
        .and_then(|w| w[1].parse::<u64>().ok())
    {
        serve_peer(
            Duration::from_millis(ms),
            !args.iter().any(|a| a == "--validating"),
        );
        return;
    }
    if args.iter().any(|a| a == "--peer") {
        peer_rows(&args);
        return;
    }
    // `--end-to-end BUFFER N`: one run of (b), to compare builds.
    if let Some((buffer, n)) = args
        .windows(3)
        .find(|w| w[0] == "--end-to-end")
        .and_then(|w| Some((w[1].parse::<i32>().ok()?, w[2].parse::<i64>().ok()?)))
    {
        println!("{:.0} ev/s", throughput(buffer, n, false));
        return;
    }
    // `--write-only N [--templated]`: accepted writes alone, for a profiler.
    if let Some(n) = args
        .windows(2)
        .find(|w| w[0] == "--write-only")
        .and_then(|w| w[1].parse::<i64>().ok())
    {
        let templated = args.iter().any(|a| a == "--templated");
        let hard = !args.iter().any(|a| a == "--filtered");
        let (ns, waited) = write_cost_with(hard, n, false, templated);
        println!(
            "{:.2} us per write ({:.2} us waiting)",
            ns / 1000.0,
            waited / 1000.0
        );
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    if args.iter().any(|a| a == "--network") {
        let row = |name: &str, value: String, target: &str| {
            println!("{name:<58} {value:>14} {target:>12}")
        };
        network_rows(scale, &row);
        return;
    }
    if args.iter().any(|a| a == "--webhook") {
        let row = |name: &str, value: String, target: &str| {
            println!("{name:<58} {value:>14} {target:>12}")
        };
        webhook_rows(scale, &row);
        return;
    }
    println!(
        "canopsis-native bench ({}, {} CPUs)",
        mlua_version(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<58} {:>14} {:>12}", "measure", "value", "target");
    let row =
        |name: &str, value: String, target: &str| println!("{name:<58} {value:>14} {target:>12}");

    for spool in [false, true] {
        let name = |what: &str| {
            if spool {
                format!("(d) {} + spool", &what[4..])
            } else {
                what.to_string()
            }
        };
        let runs: Vec<(f64, f64)> = (0..5)
            .map(|_| write_cost(true, 100_000 / scale, spool))
            .collect();
        let accepted = median(runs.iter().map(|r| r.0).collect());
        let waiting = median(runs.iter().map(|r| r.1).collect());
        row(
            &name("(a) write, accepted service_status (BBDO 3, API 2)"),
            format!("{:.2} us", accepted / 1000.0),
            "<= 2 us",
        );
        row(
            &name("(a)   of which waiting until it can acknowledge"),
            format!("{:.2} us", waiting / 1000.0),
            "",
        );
        if !spool {
            let filtered = median(
                (0..5)
                    .map(|_| write_cost(false, 100_000 / scale, spool).0)
                    .collect(),
            );
            row(
                "(a) write, filtered service_status (SOFT)",
                format!("{:.2} us", filtered / 1000.0),
                "<= 0.3 us",
            );
        }
        let sizes: &[(i32, i64)] = if spool {
            &[(1000, 300_000)]
        } else {
            &[(1, 20_000), (100, 300_000), (1000, 300_000)]
        };
        for &(buffer, n) in sizes {
            let rate = median(
                (0..3)
                    .map(|_| throughput(buffer, n / scale, spool))
                    .collect(),
            );
            row(
                &name(&format!("(b) end to end, max_buffer_size {buffer}")),
                format!("{:.0} ev/s", rate),
                if buffer > 1 { ">= 200k/s" } else { "" },
            );
        }
        let (peak, growth) = memory_in_child(1_000_000 / scale, spool);
        row(
            &name("(c) peak RSS of the process, 1M events"),
            format!("{peak:.1} MiB"),
            "<= 64 MiB",
        );
        row(
            &name("(c) RSS growth, second half of the run"),
            format!("{growth:+.1} MiB"),
            "~0",
        );
    }

    // Built-in and templated runs alternate, so the ratio compares runs
    // made under the same load of the machine.
    let pairs: Vec<(f64, f64)> = (0..5)
        .map(|_| {
            let plain = write_cost_with(true, 100_000 / scale, false, false).0;
            let templated = write_cost_with(true, 100_000 / scale, false, true).0;
            (plain, templated)
        })
        .collect();
    row(
        "(e) write, accepted service_status, templated",
        format!(
            "{:.2} us",
            median(pairs.iter().map(|p| p.1).collect()) / 1000.0
        ),
        "<= 1.5x (a)",
    );
    row(
        "(e)   ratio to the built-in format, runs side by side",
        format!(
            "{:.2}x",
            median(pairs.iter().map(|(a, e)| e / a.max(1.0)).collect())
        ),
        "<= 1.5x",
    );
    let rate = median(
        (0..3)
            .map(|_| throughput_with(100, 300_000 / scale, false, true))
            .collect(),
    );
    row(
        "(e) end to end, templated, max_buffer_size 100",
        format!("{:.0} ev/s", rate),
        ">= 200k/s",
    );

    network_rows(scale, &row);
    webhook_rows(scale, &row);
}

/// (g): events/s into the Logstash-like input, in `format`.
fn webhook_throughput(format: &str, n: i64) -> f64 {
    let lab = Lab::webhook("bench-webhook");
    lab.mock.state().record = false;
    lab.mock.state().echo_only = true;
    let out = lab.open(
        lab.webhook_params(
            format,
            &[
                ("max_buffer_size", Param::Num(100)),
                ("log_level", Param::Num(2)),
            ],
        ),
        Bbdo::V3,
    );
    events_per_second(&lab, out, n, |st| st.receivers.document_count)
}

/// What Mattermost saw of `n` state changes sent at once, its limit and
/// the connector's pace both 10 per second: (events accounted for in
/// messages and summaries, messages, seconds, busiest second, 429s).
fn mattermost_run(n: i64, summary_after: i32) -> (usize, usize, f64, usize, u64) {
    let lab = Lab::webhook("bench-mattermost");
    lab.mock.state().receivers.per_second = Some(10);
    let mut out = lab.open(
        lab.webhook_params(
            "mattermost",
            &[
                ("max_messages_per_second", Param::Num(10)),
                ("max_waiting_messages", Param::Num(summary_after)),
                ("log_level", Param::Num(2)),
                ("skip_anon_events", Param::Num(0)),
            ],
        ),
        Bbdo::V3,
    );
    let mut mux = Muxer::new();
    for i in 0..n {
        mux.push(Status::service(12, 1000 + i, i % 3, T + i).event(Bbdo::V3));
    }
    let start = Instant::now();
    mux.run(
        &mut out,
        Duration::from_millis(20),
        Duration::from_millis(200),
        Duration::from_secs(120),
        |m| m.unacked() == 0,
    );
    let secs = start.elapsed().as_secs_f64();
    out.close();
    let st = lab.mock.state();
    let r = &st.receivers;
    (
        r.events_posted(),
        r.posts.len(),
        secs,
        r.busiest_second,
        r.throttled,
    )
}

fn webhook_rows(scale: i64, row: &dyn Fn(&str, String, &str)) {
    for format in ["json", "ndjson"] {
        let rate = median(
            (0..3)
                .map(|_| webhook_throughput(format, 300_000 / scale))
                .collect(),
        );
        row(
            &format!("(g) webhook {format}, end to end, max_buffer_size 100"),
            format!("{rate:.0} ev/s"),
            ">= 200k/s",
        );
    }
    for (n, summary_after, what) in [(60, 1000, "one message each"), (1000, 20, "summarised")] {
        let (events, posts, secs, busiest, throttled) = mattermost_run(n, summary_after);
        row(
            &format!("(g) mattermost, {n} changes at once, {what}: accounted"),
            format!("{events}/{n}"),
            "all",
        );
        row(
            &format!("(g)   {posts} messages in {secs:.1} s, 429s {throttled}; busiest second"),
            format!("{busiest} msg"),
            "<= 10",
        );
    }
}

/// (f): over a network, with failures, and downtimes in number.
fn network_rows(scale: i64, row: &dyn Fn(&str, String, &str)) {
    let latency = Duration::from_millis(20);
    let clean = over_network(latency, 0.0, 200_000 / scale, false);
    row(
        "(f) end to end, Canopsis answering in 20 ms",
        format!("{clean:.0} ev/s"),
        ">= 50k/s",
    );
    let failing = over_network(latency, 0.2, 200_000 / scale, false);
    row(
        "(f) the same with 20% of requests answered 500",
        format!(
            "{failing:.0} ev/s ({:.0}%)",
            100.0 * failing / clean.max(1.0)
        ),
        ">= 50%",
    );
    let spooled = over_network(latency, 0.0, 200_000 / scale, true);
    row(
        "(f) end to end at 20 ms, with the spool",
        format!("{spooled:.0} ev/s"),
        "",
    );
    let n = 10_000 / scale;
    for (route, what, target) in [
        (None, "default settings (bulk route)", "<= 30 s"),
        (Some("/api/v4/pbehaviors"), "single route", ""),
        (
            Some("/api/v4/bulk/connector-pbehaviors"),
            "connector route",
            "",
        ),
    ] {
        let secs = downtimes(latency, n, route);
        row(
            &format!("(f) {n} downtimes started then ended, 20 ms, {what}"),
            format!("{secs:.1} s"),
            if scale == 1 { target } else { "" },
        );
    }
}

fn mlua_version() -> &'static str {
    if cfg!(feature = "lua54") {
        "Lua 5.4"
    } else {
        "Lua 5.3"
    }
}
