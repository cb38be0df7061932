//! The acknowledgement window under broker's failover loop: with every
//! event ready at once (sustained load) broker never calls `flush`, so
//! acknowledgements must come from `write`, and before broker's memory
//! queue (`event_queue_max_size`, 10000 by default) is all handed over and
//! unacknowledged: broker then stops calling `write` and calls `flush`
//! once a second only.

use canopsis_harness::broker::{Muxer, Output, Param};
use canopsis_harness::events::{Bbdo, Event};
use canopsis_harness::{spread, Lab};
use std::time::Duration;

const T: i64 = 1_763_000_000;

/// broker's default `event_queue_max_size`.
const BROKER_QUEUE: u64 = 10_000;

fn sixteen_lanes_of_100(lab: &Lab) -> Output {
    let out = lab.open(
        lab.params(&[
            ("max_buffer_size", Param::Num(100)),
            ("max_requests_in_flight", Param::Num(16)),
            ("enable_service_status_dedup", Param::Num(0)),
            ("log_level", Param::Num(1)),
        ]),
        Bbdo::V3,
    );
    lab.mock.state().record = false;
    spread::add_to_cache(&out);
    out
}

/// The `i`th status: HARD changes of the spread services in turn.
fn status(i: i64) -> Event {
    spread::status(i, T).event(Bbdo::V3)
}

#[test]
fn sixteen_lanes_of_100_are_acknowledged_every_five_rounds_within_brokers_queue() {
    let lab = Lab::new("ack-window");
    let mut out = sixteen_lanes_of_100(&lab);
    let total = 3 * 8000 + 500;
    let (mut unacked, mut most, mut acked) = (0u64, 0u64, 0u64);
    for i in 0..total {
        assert!(
            unacked < BROKER_QUEUE,
            "broker's queue is all handed over and unacknowledged after event {i}: broker stops calling write"
        );
        let n = out.write(&status(i));
        unacked += 1;
        if n > 0 {
            assert_eq!(n, unacked, "broker's true acknowledges all written so far");
            most = most.max(unacked);
            acked += n;
            unacked = 0;
        }
    }
    // Five whole rounds of a full batch per lane: 8000 events, leaving a
    // fifth of broker's default queue for what the engine publishes while
    // `write` waits.
    assert_eq!(most, 8000, "the longest run without an acknowledgement");
    assert!(acked >= 3 * 8000, "{acked} acknowledged by write");
    acked += out.close();
    assert_eq!(acked, total as u64);
    assert_eq!(lab.mock.state().published, total as u64);
}

#[test]
fn a_smaller_broker_queue_is_found_out_and_the_window_fits_it() {
    let lab = Lab::new("ack-window-small-queue");
    let mut out = sixteen_lanes_of_100(&lab);
    let mut mux = Muxer::new();
    mux.max_size = 6000;
    let total = 40_000;
    for i in 0..total {
        mux.push(status(i));
    }
    let done = mux.run(
        &mut out,
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_secs(300),
        |m| m.acked == total as u64,
    );
    assert!(done, "{} of {total} acknowledged", mux.acked);
    // Dry twice at 6000, then 6000 less a fifth in whole rounds.
    assert!(
        lab.log().contains("the window is now 4800 events"),
        "{}",
        lab.log()
    );
    out.close();
    assert_eq!(lab.mock.state().published, total as u64);
}
