//! Internal errors at the Lua edge: a panic in `init`, `filter`, `write` or
//! `flush` is caught where broker calls in, answered with a real boolean,
//! and never followed by an acknowledgement that would cover an event it
//! may have lost.
//!
//! A panic is a bug nobody can provoke at will, so these tests run the
//! module's test-only twin (`target/lua/faults/`, built by
//! `tests/build-modules.sh` with the `fault-injection` feature, never
//! packaged), whose parameter `fault_injection` (`write:2`: the second
//! `write` after `init`) makes a chosen call panic.

use canopsis_harness::broker::{install_connector, module_name, Muxer, Output, Param};
use canopsis_harness::events::{Bbdo, Status};
use canopsis_harness::{drain, loader_path, repo_root, run_for, text, Lab};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T: i64 = 1_700_000_000;

/// The fault-injecting module: `$CANOPSIS_NATIVE_FAULT_MODULE`, else
/// `target/lua/faults/<name>.so`.
fn fault_module() -> PathBuf {
    std::env::var_os("CANOPSIS_NATIVE_FAULT_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/lua/faults").join(module_name()))
}

/// A lab whose connector is the fault-injecting twin.
fn lab(name: &str) -> Lab {
    let lab = Lab::new(name);
    let module = fault_module();
    assert!(
        module.exists(),
        "{} is missing: build it with tests/build-modules.sh",
        module.display()
    );
    install_connector(&lab.dir.join("lua"), &loader_path(), &module).expect("install");
    lab
}

fn open(lab: &Lab, faults: &str) -> Output {
    lab.open(lab.params(&[("fault_injection", text(faults))]), Bbdo::V3)
}

/// `n` HARD changes of one service, each with its own stamp (all sent).
fn statuses(n: i64) -> Muxer {
    let mut mux = Muxer::new();
    for i in 0..n {
        mux.push(Status::service(12, 34, i % 3, T + i).event(Bbdo::V3));
    }
    mux
}

/// Runs broker's loop until the mock got `n` events (at most 30 s), then
/// a few more idle flushes: time enough for a `true` to come, if one would.
fn until_posted(lab: &Lab, out: &mut Output, mux: &mut Muxer, n: usize) {
    let t = Instant::now();
    while lab.posted().len() < n && t.elapsed() < Duration::from_secs(30) {
        run_for(out, mux, Duration::from_millis(200));
    }
    run_for(out, mux, Duration::from_millis(800));
}

/// Broker logs a call that raised or answered something else than a
/// boolean: none may.
fn assert_booleans(out: &Output) {
    let said = out.broker_log.borrow();
    assert!(said.is_empty(), "broker complained: {said:?}");
}

#[test]
fn after_a_panic_in_write_nothing_is_acknowledged_again() {
    let lab = lab("panic-write");
    let mut out = open(&lab, "write:2");
    let mut mux = statuses(5);
    until_posted(&lab, &mut out, &mut mux, 4);
    assert_booleans(&out);
    // The second event never reached the connector; the others are sent.
    assert_eq!(lab.posted().len(), 4, "{}", lab.log());
    assert_eq!(mux.acked, 0, "the lost event was acknowledged");
    // More events, delivered, still not acknowledged.
    for i in 5..8 {
        mux.push(Status::service(12, 34, i % 3, T + i).event(Bbdo::V3));
    }
    until_posted(&lab, &mut out, &mut mux, 7);
    assert_eq!(lab.posted().len(), 7);
    assert_eq!(mux.acked, 0, "acknowledged past the panic");
    assert_booleans(&out);
    out.close();
    let log = lab.log();
    assert!(
        log.contains(
            "internal error in write: fault injected in write (call 2); from now on nothing is acknowledged"
        ),
        "{log}"
    );
    assert!(log.contains("state=holding"), "{log}");
}

#[test]
fn after_a_panic_in_flush_nothing_is_acknowledged_again() {
    let lab = lab("panic-flush");
    let mut out = open(&lab, "flush:1");
    let mut mux = statuses(3);
    until_posted(&lab, &mut out, &mut mux, 3);
    assert_booleans(&out);
    assert_eq!(lab.posted().len(), 3, "{}", lab.log());
    assert_eq!(mux.acked, 0, "acknowledged past the panic");
    out.close();
    let log = lab.log();
    assert!(
        log.contains("internal error in flush: fault injected in flush (call 1)"),
        "{log}"
    );
}

#[test]
fn a_panic_in_init_is_logged_and_the_output_refuses_every_event() {
    let lab = lab("panic-init");
    let mut out = open(&lab, "init:1");
    let mut mux = statuses(3);
    run_for(&mut out, &mut mux, Duration::from_millis(600));
    assert_booleans(&out);
    assert_eq!(mux.acked, 0);
    assert!(lab.posted().is_empty());
    let log = lab.log();
    assert!(
        log.contains("internal error in init: fault injected in init (call 1); the output is not running: no event is acknowledged"),
        "the log file the parameters name says nothing: {log}"
    );
    out.close();
}

/// `filter` answers `true` when it fails (`false` would drop the event),
/// and the event is handled by `write` as any other.
#[test]
fn a_panic_in_filter_lets_the_event_through_as_a_boolean() {
    let lab = lab("panic-filter");
    let mut out = open(&lab, "filter:1");
    assert!(out.passes_filter_for(1, 24));
    // The next one did not panic; a type the output does not take.
    assert!(!out.passes_filter_for(3, 24));
    assert_booleans(&out);
    let mut mux = statuses(2);
    assert!(drain(&mut out, &mut mux, Duration::from_secs(10)));
    out.close();
    let log = lab.log();
    assert!(
        log.contains("internal error in filter: fault injected in filter (call 1); the event goes on to write"),
        "{log}"
    );
}

/// Without the parameter the twin behaves as the real module.
#[test]
fn without_a_plan_nothing_panics() {
    let lab = lab("panic-none");
    let mut out = lab.open(lab.params(&[("log_level", Param::Num(2))]), Bbdo::V3);
    let mut mux = statuses(3);
    assert!(drain(&mut out, &mut mux, Duration::from_secs(10)));
    out.close();
    assert!(!lab.log().contains("internal error"));
}
