//! `bash tests/demo.sh mattermost-actions`: a click end to end. The
//! emulated broker runs the webhook output (Mattermost format, buttons on)
//! into the mock Mattermost; the action service (built from this checkout)
//! runs on 127.0.0.1 against a mock Centreon; the mock Mattermost clicks
//! Acknowledge as @alice, then once more as @bob. Everything is printed.

use canopsis_harness::actions::{buttons, click, ActionService, MockCentreon, CENTREON_TOKEN};
use canopsis_harness::events::{Bbdo, Status};
use canopsis_harness::{deliver, text, Lab};
use serde_json::Value;
use std::process::ExitCode;

fn show(post: &Value) {
    for a in post["attachments"].as_array().into_iter().flatten() {
        println!(
            "  ┃ {}   [{}]",
            a["title"].as_str().unwrap_or(""),
            a["color"].as_str().unwrap_or("")
        );
        if let Some(t) = a["text"].as_str() {
            println!("  ┃ {t}");
        }
    }
    for (name, url, _) in buttons(post) {
        println!("  [ {name} ] -> {url}");
    }
}

fn main() -> ExitCode {
    let secret = "demo-shared-secret-0123456789";
    let centreon = MockCentreon::start();
    let lab = Lab::webhook("actions-demo");
    let service = ActionService::start(
        &lab.dir.join("service"),
        &format!(
            "secret = {secret}\ncentreon_url = {}\ncentreon_token = {CENTREON_TOKEN}\n",
            centreon.url()
        ),
    );
    println!("action service on {}", service.url());
    println!("mock Centreon API on {}", centreon.url());
    let params = lab.webhook_params(
        "mattermost",
        &[
            ("username", text("Centreon")),
            ("mattermost_actions_url", text(&service.url())),
            ("mattermost_actions_secret", text(secret)),
        ],
    );
    let now = canopsis_harness::actions::now() as i64;
    let mut out = lab.open(params, Bbdo::V3);
    let mut ping = Status::service(12, 34, 2, now);
    ping.output = "CRITICAL - 10.0.0.12: rta 812.4ms, lost 40%".into();
    deliver(&mut out, vec![ping.event(Bbdo::V3)]);
    drop(out);
    let post = lab.mock.state().receivers.posts[0].clone();
    println!("\nMattermost channel:");
    show(&post);

    println!("\n@alice clicks Acknowledge:");
    let first = click(&post, "Acknowledge", "alice");
    println!("  service answered HTTP {}", first.status);
    for ack in centreon.taken() {
        println!("  Centreon got: {ack}");
    }
    println!("Mattermost channel, post updated:");
    show(&first.post);

    println!("\n@bob clicks the same (old) button:");
    let again = click(&post, "Acknowledge", "bob");
    println!(
        "  service answered HTTP {} {}; Centreon got {} acknowledgement(s) in all",
        again.status,
        again.answer,
        centreon.taken().len()
    );
    println!("\nthe service's log:");
    for line in service.log().lines() {
        println!("  {line}");
    }
    let ok = first.status == 200 && again.status == 409 && centreon.taken().len() == 1;
    println!("\n{}", if ok { "OK" } else { "FAILED" });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
