//! `actions-check --service PATH`: runs an installed action service
//! (packaging/check.sh) against the mock Centreon on 127.0.0.1, clicks
//! once with a signed context, and checks that it acknowledged exactly
//! once and refuses the same button again; then stops it.

use canopsis_harness::actions::{
    action_body, context, now, request, ActionService, MockCentreon, CENTREON_TOKEN, ROUTE,
};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flag, service] = args.as_slice() else {
        eprintln!("usage: actions-check --service PATH");
        return ExitCode::from(2);
    };
    if flag != "--service" {
        eprintln!("usage: actions-check --service PATH");
        return ExitCode::from(2);
    }
    let secret = "packaging-check-s3cret-0123";
    let centreon = MockCentreon::start();
    let dir = std::env::temp_dir().join(format!("canopsis-actions-check-{}", std::process::id()));
    let svc = ActionService::start_with(
        &PathBuf::from(service),
        &dir,
        &format!(
            "secret = {secret}\ncentreon_url = {}\ncentreon_token = {CENTREON_TOKEN}\n",
            centreon.url()
        ),
    );
    let ctx = context(secret, true, false, now() + 600);
    let first = request(svc.addr, "POST", ROUTE, &action_body("alice", &ctx));
    let again = request(svc.addr, "POST", ROUTE, &action_body("alice", &ctx));
    let taken = centreon.taken();
    let log = svc.log();
    drop(svc);
    let _ = std::fs::remove_dir_all(&dir);
    let ok = first.0 == 200
        && first.1.contains("Acknowledged by @alice")
        && again.0 == 409
        && taken.len() == 1
        && !log.contains(secret)
        && !log.contains(CENTREON_TOKEN);
    println!(
        "action service {service}: click {} then {}, {} acknowledgement(s) in the mock Centreon",
        first.0,
        again.0,
        taken.len()
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("unexpected: first {first:?}, again {again:?}, taken {taken:?}\n{log}");
        ExitCode::from(1)
    }
}
