//! Changes a downtime or an acknowledgement hid from Canopsis (with the
//! default `in_downtime=0`, `acknowledged=0`), and objects' first states.
//!
//! A change made during a downtime is filtered; the status the engine sends
//! the moment the downtime ends (depth back to 0) or the acknowledgement is
//! removed repeats the change's stamp, so dedup's stamp rule dropped it too
//! and Canopsis kept the pre-downtime state until the next change. The
//! object's current state must reach Canopsis once, when the downtime ends
//! (with the time of the check that status carries), even across a broker
//! restart in between.

use canopsis_harness::events::{Ack, Bbdo, Downtime, Event, Status};
use canopsis_harness::{deliver, text, Lab};

const T: i64 = 1_800_000_000;

/// Check events Canopsis got: resource, state, timestamp.
fn checks(lab: &Lab) -> Vec<(String, i64, i64)> {
    lab.posted()
        .iter()
        .filter(|e| e["event_type"] == "check")
        .map(|e| {
            (
                e["resource"].as_str().unwrap_or("").to_string(),
                e["state"].as_i64().unwrap(),
                e["timestamp"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn events(bbdo: Bbdo, statuses: &[&Status], downtimes: &[&Downtime]) -> Vec<Event> {
    statuses
        .iter()
        .map(|s| s.event(bbdo))
        .chain(downtimes.iter().map(|d| d.event(bbdo)))
        .collect()
}

/// Ping (12/34): OK, then a downtime starts, it goes CRITICAL during it
/// and is checked again; the first part of the story.
fn before_the_end(bbdo: Bbdo) -> (Vec<Event>, Status, Downtime) {
    let ok = Status::service(12, 34, 0, T);
    let dt = Downtime::started(7, 12, 34, T + 5, T + 300);
    let mut in_dt = ok.again(T + 5);
    in_dt.downtime_depth = 1;
    let mut crit = Status::service(12, 34, 2, T + 20);
    crit.downtime_depth = 1;
    let crit_again = crit.again(T + 30);
    let mut evs = vec![ok.event(bbdo)];
    evs.extend(events(bbdo, &[], &[&dt.scheduled(), &dt]));
    evs.extend(events(bbdo, &[&in_dt, &crit, &crit_again], &[]));
    (evs, crit_again, dt)
}

/// The downtime ends: its end and deletion, then the status the engine
/// sends at once (depth 0, no new check), then the next check.
fn the_end(bbdo: Bbdo, crit: &Status, dt: &Downtime) -> Vec<Event> {
    let ending = Downtime {
        actual_end_time: T + 35,
        ..dt.clone()
    };
    let mut after = crit.again(T + 30);
    after.downtime_depth = 0;
    let next = after.again(T + 40);
    events(
        bbdo,
        &[],
        &[
            &ending,
            &Downtime {
                deletion_time: T + 35,
                ..ending.clone()
            },
        ],
    )
    .into_iter()
    .chain(events(bbdo, &[&after, &next], &[]))
    .collect()
}

#[test]
fn a_change_made_during_a_downtime_is_sent_once_when_it_ends() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        for api in [1, 2] {
            let lab = Lab::new("hidden-downtime");
            lab.use_api(api);
            // Downtime events are not needed (the library's functional
            // test runs without them too).
            let elements = if api == 1 {
                "host_status,service_status"
            } else {
                "host_status,service_status,acknowledgement,downtime"
            };
            let mut out = lab.open(lab.params(&[("accepted_elements", text(elements))]), bbdo);
            let (mut evs, crit, dt) = before_the_end(bbdo);
            evs.extend(the_end(bbdo, &crit, &dt));
            deliver(&mut out, evs);
            out.close();
            assert_eq!(
                checks(&lab),
                vec![("Ping".into(), 0, T), ("Ping".into(), 3, T + 30)],
                "{bbdo:?} api {api}: OK, then CRITICAL once the downtime ended, with the last check's time"
            );
        }
    }
}

/// How broker's first run ends, between the downtime's start and its end.
#[derive(Debug, Clone, Copy)]
enum FirstRun {
    /// Stopped: the memory of what was sent is written.
    Stopped,
    /// Killed: that memory was never written.
    Killed,
}

/// The downtime starts and the change is made in a first run of broker,
/// the downtime ends in a second one: the change reaches Canopsis then.
fn sent_when_it_ends_in_a_second_run(name: &str, first_run: FirstRun) {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::new(name);
        let (evs, crit, dt) = before_the_end(bbdo);
        let mut out = lab.open(lab.params(&[]), bbdo);
        deliver(&mut out, evs);
        out.close();
        assert_eq!(checks(&lab), vec![("Ping".into(), 0, T)], "{bbdo:?}");
        if let FirstRun::Killed = first_run {
            // The run was stopped; a kill is that stop without its memory.
            let memory = lab.logfile().with_extension("sent-states");
            std::fs::remove_file(&memory).expect("written at the clean stop");
        }
        let mut out = lab.open(lab.params(&[]), bbdo);
        deliver(&mut out, the_end(bbdo, &crit, &dt));
        out.close();
        assert_eq!(
            checks(&lab),
            vec![("Ping".into(), 0, T), ("Ping".into(), 3, T + 30)],
            "{bbdo:?} {first_run:?}"
        );
    }
}

#[test]
fn a_change_made_during_a_downtime_is_sent_when_it_ends_after_a_broker_restart() {
    sent_when_it_ends_in_a_second_run("hidden-downtime-restart", FirstRun::Stopped);
}

#[test]
fn a_change_made_during_a_downtime_is_sent_when_it_ends_after_a_broker_crash() {
    sent_when_it_ends_in_a_second_run("hidden-downtime-crash", FirstRun::Killed);
}

#[test]
fn a_change_made_while_acknowledged_is_sent_once_when_the_acknowledgement_goes() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::new("hidden-ack");
        let mut out = lab.open(lab.params(&[]), bbdo);
        let crit = Status::service(12, 34, 2, T);
        let ack = Ack::new(12, 34, 2, T + 5);
        let mut acked = crit.again(T + 5);
        acked.acknowledged = true;
        // A sticky acknowledgement stays through WARNING.
        let mut warn = Status::service(12, 34, 1, T + 20);
        warn.acknowledged = true;
        let removed = Ack {
            deletion_time: T + 25,
            ..ack.clone()
        };
        // Checked again while acknowledged: the removal's status repeats
        // that check (fact 8 of the traces), not the change's.
        let warn_again = warn.again(T + 22);
        let mut unacked = warn_again.again(T + 22);
        unacked.acknowledged = false;
        let next = unacked.again(T + 30);
        deliver(
            &mut out,
            vec![
                crit.event(bbdo),
                ack.event(bbdo),
                acked.event(bbdo),
                warn.event(bbdo),
                warn_again.event(bbdo),
                unacked.event(bbdo),
                removed.event(bbdo),
                next.event(bbdo),
            ],
        );
        out.close();
        assert_eq!(
            checks(&lab),
            vec![("Ping".into(), 3, T), ("Ping".into(), 1, T + 22)],
            "{bbdo:?}: CRITICAL, then WARNING once the acknowledgement went"
        );
        let acks: Vec<_> = lab
            .posted()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap_or("").to_string())
            .filter(|t| t.starts_with("ack"))
            .collect();
        assert_eq!(acks, vec!["ack", "ackremove"], "{bbdo:?}");
    }
}

#[test]
fn a_host_s_first_state_is_sent_though_the_engine_never_stamped_it() {
    for bbdo in [Bbdo::V2, Bbdo::V3] {
        let lab = Lab::new("first-state");
        let mut out = lab.open(lab.params(&[]), bbdo);
        // At engine start: UP, never changed (stamp 0), checked at T.
        let mut first = Status::host(12, 0, T);
        first.last_hard_state_change = 0;
        first.last_hard_state = 0;
        // The engine stamps that state a check later; then it goes DOWN.
        let mut stamped = first.again(T + 15);
        stamped.last_hard_state_change = T + 2;
        let down = Status::host(12, 1, T + 30);
        deliver(
            &mut out,
            vec![
                first.event(bbdo),
                first.again(T + 5).event(bbdo),
                stamped.event(bbdo),
                down.event(bbdo),
                down.again(T + 45).event(bbdo),
            ],
        );
        out.close();
        assert_eq!(
            checks(&lab),
            vec![(String::new(), 0, T), (String::new(), 3, T + 30)],
            "{bbdo:?}: UP at its first check, once; then DOWN"
        );
    }
}
