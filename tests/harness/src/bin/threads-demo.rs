//! `bash tests/demo.sh mattermost-threads`: one alert's thread end to end.
//! The emulated broker runs the webhook output as a Mattermost bot (REST
//! API, buttons on) into the mock Mattermost; a service goes CRITICAL (a
//! root post with its Acknowledge buttons), @alice clicks Acknowledge
//! (through the action service, built from this checkout, into a mock
//! Centreon), the acknowledgement comes back through broker into the
//! thread, the service goes WARNING, then OK: the root is edited to
//! "Resolved". The channel is printed as Mattermost shows it.

use canopsis_harness::actions::{buttons, click, ActionService, MockCentreon, CENTREON_TOKEN};
use canopsis_harness::events::{Ack, Bbdo, Status};
use canopsis_harness::mattermost_api::BOT_TOKEN;
use canopsis_harness::{deliver, text, Lab};
use serde_json::Value;
use std::process::ExitCode;

/// A post as the channel shows it: its attachments, and its buttons.
fn show(indent: &str, post: &Value) {
    let props = &post["props"];
    for a in props["attachments"].as_array().into_iter().flatten() {
        println!(
            "{indent}┃ {}   [{}]",
            a["title"].as_str().unwrap_or(""),
            a["color"].as_str().unwrap_or("")
        );
        if let Some(t) = a["text"].as_str().filter(|t| !t.is_empty()) {
            println!("{indent}┃ {t}");
        }
    }
    for (name, _, _) in buttons(props) {
        println!("{indent}[ {name} ]");
    }
}

/// The channel: each root, then its replies indented.
fn channel(lab: &Lab) {
    let st = lab.mock.state();
    let api = &st.receivers.api;
    for root in api.roots() {
        let edited = if root["edit_at"] != 0 {
            "  (edited)"
        } else {
            ""
        };
        println!(
            "  ● root post {}{edited}",
            root["id"].as_str().unwrap_or("")
        );
        show("    ", root);
        for reply in api.replies(root["id"].as_str().unwrap_or("")) {
            println!("      ↳ reply");
            show("        ", reply);
        }
    }
}

fn main() -> ExitCode {
    let secret = "demo-shared-secret-0123456789";
    let centreon = MockCentreon::start();
    let lab = Lab::webhook("threads-demo");
    let service = ActionService::start(
        &lab.dir.join("service"),
        &format!(
            "secret = {secret}\ncentreon_url = {}\ncentreon_token = {CENTREON_TOKEN}\n",
            centreon.url()
        ),
    );
    let params = lab.bot_params(&[
        ("mattermost_actions_url", text(&service.url())),
        ("mattermost_actions_secret", text(secret)),
    ]);
    let bbdo = Bbdo::V3;
    let now = canopsis_harness::actions::now() as i64;
    let mut out = lab.open(params, bbdo);

    let mut ping = Status::service(12, 34, 2, now);
    ping.output = "CRITICAL - 10.0.0.12: rta 812.4ms, lost 40%".into();
    deliver(&mut out, vec![ping.event(bbdo)]);
    println!("1. host-a / Ping goes CRITICAL: a thread opens\n");
    channel(&lab);

    let root = lab.mock.state().receivers.api.roots()[0].clone();
    let clicked = click(&root["props"], "Acknowledge", "alice");
    println!(
        "\n2. @alice clicks Acknowledge: the action service answers HTTP {}, Centreon got {} acknowledgement(s)",
        clicked.status,
        centreon.taken().len()
    );
    // Broker hands the acknowledgement back to the output, as Centreon
    // Engine reports it.
    let mut ack = Ack::new(12, 34, 2, now + 20);
    ack.author = "alice".into();
    ack.comment = "Acknowledged from Mattermost".into();
    let mut warning = Status::service(12, 34, 1, now + 60);
    warning.output = "WARNING - 10.0.0.12: rta 210.0ms, lost 0%".into();
    let mut ok = Status::service(12, 34, 0, now + 120);
    ok.output = "OK - 10.0.0.12: rta 0.4ms, lost 0%".into();
    deliver(&mut out, vec![ack.event(bbdo), warning.event(bbdo)]);
    println!("3. the acknowledgement and a change to WARNING are replies\n");
    channel(&lab);
    deliver(&mut out, vec![ok.event(bbdo)]);
    drop(out);
    println!("\n4. back to OK: a reply, and the root is edited to Resolved\n");
    channel(&lab);

    let st = lab.mock.state();
    let api = &st.receivers.api;
    let roots = api.roots();
    let replies = roots
        .first()
        .map_or(0, |r| api.replies(r["id"].as_str().unwrap_or("")).len());
    let resolved = roots.first().is_some_and(|r| {
        r["props"]["attachments"][0]["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Resolved"))
    });
    let secret_kept = !lab.log().contains(BOT_TOKEN);
    let ok = roots.len() == 1 && replies == 3 && resolved && clicked.status == 200 && secret_kept;
    println!(
        "\none thread, {replies} replies, root resolved: {resolved}; bot token in the log: {}",
        !secret_kept
    );
    println!("{}", if ok { "OK" } else { "FAILED" });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
