//! Mattermost's Acknowledge buttons end to end: the webhook output (the
//! built module, through the broker emulator) posts problem messages with
//! signed buttons to the mock Mattermost; the mock "clicks" them by POSTing
//! what Mattermost would to the action service (the built
//! `centreon_canopsis_native_actions`, run as a process on 127.0.0.1),
//! which acknowledges through a mock of Centreon's REST API or a FIFO
//! standing for the engine's command file.
//!
//! The output's test runs with each Lua build; the service's own tests
//! run once (with the Lua 5.3 build of the harness).

#[cfg(feature = "lua53")]
use canopsis_harness::actions::CommandFifo;
use canopsis_harness::actions::{
    action_body, buttons, click, context, now, request, sign, ActionService, MockCentreon, ROUTE,
};
use canopsis_harness::events::{Bbdo, Status};
use canopsis_harness::{deliver, text, Lab};
use serde_json::{json, Value};
#[cfg(feature = "lua53")]
use std::time::Duration;

const T: i64 = 1_763_000_000;
const SECRET: &str = "9c2e-shared-s3cret-4d7a";

fn api_config(centreon: &MockCentreon, token: &str) -> String {
    format!(
        "secret = {SECRET}\nacknowledge_with = centreon_api\ncentreon_url = {}\ncentreon_token = {token}\nrequest_timeout = 20\n",
        centreon.url()
    )
}

/// The post whose attachment title ends with `suffix`.
fn post_titled(posts: &[Value], suffix: &str) -> Value {
    posts
        .iter()
        .find(|p| {
            p["attachments"][0]["title"]
                .as_str()
                .is_some_and(|t| t.ends_with(suffix))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no post titled ...{suffix} in {posts:?}"))
}

#[test]
fn problem_messages_carry_signed_buttons_that_acknowledge_once_in_centreon() {
    let centreon = MockCentreon::start();
    let lab = Lab::webhook("buttons");
    let service = ActionService::start(
        &lab.dir.join("service"),
        &api_config(&centreon, canopsis_harness::actions::CENTREON_TOKEN),
    );
    let params = lab.webhook_params(
        "mattermost",
        &[
            ("mattermost_actions_url", text(&service.url())),
            ("mattermost_actions_secret", text(SECRET)),
        ],
    );
    let bbdo = Bbdo::V3;
    let mut out = lab.open(params, bbdo);
    let mut down = Status::host(12, 1, T);
    down.output = "DOWN - unreachable".into();
    let mut critical = Status::service(12, 34, 2, T);
    critical.output = "CRITICAL - 100% loss".into();
    let ok = Status::service(12, 34, 0, T + 60);
    let written = now();
    deliver(
        &mut out,
        vec![down.event(bbdo), critical.event(bbdo), ok.event(bbdo)],
    );
    drop(out);
    let posts = lab.mock.state().receivers.posts.clone();
    assert_eq!(posts.len(), 3, "{posts:?}");

    // The problem's buttons: the service's URL, a context signed with the
    // shared secret (recomputed here), valid for a day.
    let crit = post_titled(&posts, "Ping is CRITICAL");
    let b = buttons(&crit);
    let names: Vec<&str> = b.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["Acknowledge", "Acknowledge sticky"]);
    for (_, url, ctx) in &b {
        assert_eq!(url, &service.url());
        assert_eq!(ctx["sig"], json!(sign(SECRET, ctx)), "{ctx}");
        assert_eq!(
            (
                &ctx["host"],
                &ctx["service"],
                &ctx["host_id"],
                &ctx["service_id"]
            ),
            (&json!("host-a"), &json!("Ping"), &json!(12), &json!(34))
        );
        assert_eq!(ctx["state"], "CRITICAL");
        let expires = ctx["expires"].as_u64().unwrap();
        assert!(
            expires >= written + 86_400 && expires <= now() + 86_400,
            "{expires}"
        );
    }
    // A recovery has none.
    assert!(buttons(&post_titled(&posts, "Ping is OK")).is_empty());

    // alice clicks: acknowledged once in Centreon, the post updated.
    let first = click(&crit, "Acknowledge", "alice");
    assert_eq!(first.status, 200, "{first:?}");
    assert!(buttons(&first.post).is_empty(), "{:?}", first.post);
    assert_eq!(
        first.post["attachments"][0]["text"],
        "Acknowledged by @alice"
    );
    let taken = centreon.taken();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        taken[0]["resources"],
        json!([{"type": "service", "id": 34, "parent": {"id": 12}}])
    );
    assert_eq!(
        taken[0]["acknowledgement"]["comment"],
        "Acknowledged by @alice from Mattermost"
    );
    assert_eq!(taken[0]["acknowledgement"]["is_sticky"], false);

    // The same button again (a second click, or a replay): nothing more.
    let again = click(&crit, "Acknowledge", "bob");
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(centreon.taken().len(), 1);

    // The host's sticky button.
    let host = click(
        &post_titled(&posts, "host-a is DOWN"),
        "Acknowledge sticky",
        "bob",
    );
    assert_eq!(host.status, 200, "{host:?}");
    let taken = centreon.taken();
    assert_eq!(taken.len(), 2);
    assert_eq!(
        taken[1]["resources"],
        json!([{"type": "host", "id": 12, "parent": null}])
    );
    assert_eq!(taken[1]["acknowledgement"]["is_sticky"], true);

    // Secrets in no log. (At log_level 3 the output logs the bodies it
    // sends, buttons' signed contexts included, as Mattermost gets them.)
    let sig = crit["attachments"][0]["actions"][0]["integration"]["context"]["sig"]
        .as_str()
        .unwrap()
        .to_string();
    for (who, log) in [("output", lab.log()), ("service", service.log())] {
        assert!(!log.contains(SECRET), "{who}: {log}");
        assert!(
            !log.contains(canopsis_harness::actions::CENTREON_TOKEN),
            "{who}: {log}"
        );
    }
    assert!(!service.log().contains(&sig), "{}", service.log());
    assert!(
        service
            .log()
            .contains("host-a / Ping (CRITICAL) acknowledged by @alice"),
        "{}",
        service.log()
    );
}

#[cfg(feature = "lua53")]
#[test]
fn forged_expired_replayed_or_misrouted_requests_acknowledge_nothing() {
    let centreon = MockCentreon::start();
    let dir =
        std::env::temp_dir().join(format!("canopsis-actions-{}-refusals", std::process::id()));
    let service = ActionService::start(
        &dir,
        &api_config(&centreon, canopsis_harness::actions::CENTREON_TOKEN),
    );
    let post = |body: &[u8]| request(service.addr, "POST", ROUTE, body);
    let valid = context(SECRET, true, false, now() + 3600);
    let mut forged = context(SECRET, true, false, now() + 3600);
    forged["host_id"] = json!(13);
    let mut other_secret = context("another-secret-0123456", true, false, now() + 3600);
    other_secret["sig"] = json!(sign("another-secret-0123456", &other_secret));
    let expired = context(SECRET, true, false, now() - 10);
    let cases: Vec<(&str, (u16, String), u16)> = vec![
        ("forged", post(&action_body("mallory", &forged)), 401),
        (
            "other secret",
            post(&action_body("mallory", &other_secret)),
            401,
        ),
        ("expired", post(&action_body("alice", &expired)), 401),
        ("not JSON", post(b"user_id=alice&context=x"), 400),
        (
            "no context",
            post(br#"{"user_id":"a1","user_name":"alice"}"#),
            400,
        ),
        (
            "wrong route",
            request(
                service.addr,
                "POST",
                "/admin",
                &action_body("alice", &valid),
            ),
            404,
        ),
        ("GET", request(service.addr, "GET", ROUTE, b""), 405),
        ("first", post(&action_body("alice", &valid)), 200),
        ("replayed", post(&action_body("alice", &valid)), 409),
    ];
    for (what, (status, body), expected) in &cases {
        assert_eq!(status, expected, "{what}: {body}");
    }
    assert_eq!(centreon.taken().len(), 1, "only the first valid click");
    let log = service.log();
    assert_eq!(log.matches("refused").count(), 8, "{log}");
    assert!(log.contains("the signature does not match"), "{log}");
    assert!(log.contains("expired"), "{log}");
    assert!(log.contains("already used"), "{log}");
    assert!(!log.contains(SECRET) && !log.contains(canopsis_harness::actions::CENTREON_TOKEN));
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "lua53")]
#[test]
fn a_refused_token_is_told_to_the_person_and_the_button_stays_usable() {
    let centreon = MockCentreon::start();
    let dir = std::env::temp_dir().join(format!("canopsis-actions-{}-token", std::process::id()));
    let service = ActionService::start(&dir, &api_config(&centreon, "wr0ng-t0ken-x"));
    let ctx = context(SECRET, false, false, now() + 3600);
    let (status, body) = request(service.addr, "POST", ROUTE, &action_body("alice", &ctx));
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let told = answer["ephemeral_text"].as_str().unwrap_or_default();
    assert!(
        told.contains("HTTP 401") && told.contains("centreon_token"),
        "{told}"
    );
    assert!(answer.get("update").is_none());
    assert_eq!(*centreon.refused.lock().unwrap(), [401]);
    let log = service.log();
    assert!(log.contains("[ERROR]") && log.contains("failed"), "{log}");
    assert!(
        !log.contains("wr0ng-t0ken-x") && !log.contains(SECRET),
        "{log}"
    );
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "lua53")]
#[test]
fn the_command_file_gets_the_engines_acknowledge_commands_and_no_reader_is_told() {
    let dir = std::env::temp_dir().join(format!("canopsis-actions-{}-fifo", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut fifo = CommandFifo::create(&dir);
    let service = ActionService::start(
        &dir.join("service"),
        &format!(
            "secret = {SECRET}\nacknowledge_with = command_file\ncommand_file = {}\n",
            fifo.path.display()
        ),
    );
    let svc = context(SECRET, true, false, now() + 3600);
    // No engine reading: told, nothing written, the button still usable.
    let (status, body) = request(service.addr, "POST", ROUTE, &action_body("alice", &svc));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("not running"), "{body}");
    fifo.read();
    let (status, body) = request(service.addr, "POST", ROUTE, &action_body("alice", &svc));
    assert!(
        status == 200 && body.contains("Acknowledged by @alice"),
        "{status} {body}"
    );
    let host = context(SECRET, false, true, now() + 3600);
    let (status, _) = request(service.addr, "POST", ROUTE, &action_body("bob", &host));
    assert_eq!(status, 200);
    let lines = fifo.lines(2, Duration::from_secs(20));
    assert_eq!(lines.len(), 2, "{lines:?}");
    let commands: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once("] ").expect("[time] command").1)
        .collect();
    assert_eq!(
        commands,
        [
            "ACKNOWLEDGE_SVC_PROBLEM;host-a;Ping;1;1;1;alice;Acknowledged by @alice from Mattermost",
            "ACKNOWLEDGE_HOST_PROBLEM;host-a;2;1;1;bob;Acknowledged by @bob from Mattermost",
        ]
    );
    drop(service);
    drop(fifo);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "lua53")]
#[test]
fn a_used_button_stays_used_across_a_restart_of_the_service() {
    let centreon = MockCentreon::start();
    let dir = std::env::temp_dir().join(format!("canopsis-actions-{}-restart", std::process::id()));
    let config = format!(
        "{}state_file = {}\n",
        api_config(&centreon, canopsis_harness::actions::CENTREON_TOKEN),
        dir.join("used-buttons").display()
    );
    let used = context(SECRET, true, false, now() + 3600);
    let fresh = context(SECRET, false, false, now() + 3600);
    let service = ActionService::start(&dir, &config);
    let (status, body) = request(service.addr, "POST", ROUTE, &action_body("alice", &used));
    assert_eq!(status, 200, "{body}");
    drop(service);
    let service = ActionService::start(&dir, &config);
    let (replayed, body) = request(service.addr, "POST", ROUTE, &action_body("alice", &used));
    assert_eq!(replayed, 409, "{body}");
    let (status, body) = request(service.addr, "POST", ROUTE, &action_body("bob", &fresh));
    assert_eq!(status, 200, "{body}");
    assert_eq!(centreon.taken().len(), 2);
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
}
