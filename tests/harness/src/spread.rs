//! Many services spread over the lanes: the load of a real estate, for the
//! tests and benches whose figures depend on events of many objects rather
//! than of one (the acknowledgement window, the network runs of `bench`).

use crate::broker::{CachedHost, CachedService, Output};
use crate::events::Status;

/// How many services: hosts `host-1000` to `host-1399`, each with one
/// service, `Ping` (id 1).
pub const SERVICES: i64 = 400;

/// The id of the first host.
const FIRST_HOST: i64 = 1000;

/// Puts the hosts and their services in `out`'s emulated cache.
pub fn add_to_cache(out: &Output) {
    let cache = out.cache();
    let mut c = cache.borrow_mut();
    for id in FIRST_HOST..FIRST_HOST + SERVICES {
        c.hosts.insert(
            id,
            CachedHost {
                name: format!("host-{id}"),
                instance_id: 1,
                ..CachedHost::default()
            },
        );
        c.services.insert(
            (id, 1),
            CachedService {
                description: "Ping".into(),
                ..CachedService::default()
            },
        );
    }
}

/// The `i`th of a stream that goes over the services in turn, round after
/// round: its host id and its round.
pub fn nth(i: i64) -> (i64, i64) {
    (FIRST_HOST + i % SERVICES, i / SERVICES)
}

/// The `i`th status of that stream: a HARD change each (OK in even rounds,
/// CRITICAL in odd ones), a round a minute after the one before, from `t0`.
pub fn status(i: i64, t0: i64) -> Status {
    let (host, round) = nth(i);
    Status::service(host, 1, 2 * (round % 2), t0 + 60 * round)
}
