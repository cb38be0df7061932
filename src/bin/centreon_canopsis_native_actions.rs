//! `centreon-canopsis-native-actions`: the service Mattermost's
//! "Acknowledge" buttons call (see `canopsis_native::actions`).
//!
//! Usage: `centreon_canopsis_native_actions [--config PATH]` (default
//! `/etc/centreon-canopsis-native/actions.conf`; `-` reads standard input,
//! which is how the systemd unit hands over the root-only file to a
//! service running as `centreon-engine`). Logs go to stderr (journald
//! under systemd); no line holds a secret.

use canopsis_native::actions::acknowledge::Acknowledger;
use canopsis_native::actions::centreon_api::CentreonApi;
use canopsis_native::actions::command_file::CommandFile;
use canopsis_native::actions::config::{self, Via};
use canopsis_native::actions::handler::Handler;
use canopsis_native::actions::replay::Replay;
use canopsis_native::actions::server::Service;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;

/// The most used, unexpired buttons remembered.
const REMEMBERED: usize = 100_000;

fn main() -> ExitCode {
    let _ = simplelog::WriteLogger::init(
        log::LevelFilter::Info,
        simplelog::ConfigBuilder::new()
            .set_time_level(log::LevelFilter::Off)
            .set_target_level(log::LevelFilter::Off)
            .build(),
        std::io::stderr(),
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [] => config::DEFAULT_PATH.to_string(),
        [flag, path] if flag == "--config" => path.clone(),
        _ => {
            eprintln!("usage: centreon_canopsis_native_actions [--config PATH]");
            return ExitCode::from(2);
        }
    };
    let read = if path == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(&path)
    };
    let text = match read {
        Ok(t) => t,
        Err(e) => {
            log::error!("cannot read {path}: {e}");
            return ExitCode::from(1);
        }
    };
    if let Ok(meta) = std::fs::metadata(&path) {
        if path != "-" && meta.permissions().mode() & 0o004 != 0 {
            log::warn!("{path} is readable by every user: it holds secrets (chmod 0640)");
        }
    }
    let cfg = match config::parse(&text) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{path}: {e}");
            return ExitCode::from(1);
        }
    };
    let (acknowledger, how): (Box<dyn Acknowledger>, String) = match &cfg.via {
        Via::CentreonApi {
            url,
            token,
            verify_certificate,
        } => (
            Box::new(CentreonApi::new(
                url,
                token.clone(),
                cfg.request_timeout,
                *verify_certificate,
            )),
            format!("Centreon's API at {url}"),
        ),
        Via::CommandFile(p) => (
            Box::new(CommandFile::new(p.clone())),
            format!("the command file {}", p.display()),
        ),
    };
    let replay = match &cfg.state_file {
        None => Replay::new(REMEMBERED),
        Some(p) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            match Replay::open(p, REMEMBERED, now) {
                Ok(r) => r,
                Err(e) => {
                    log::error!("cannot use the state file {}: {e}", p.display());
                    return ExitCode::from(1);
                }
            }
        }
    };
    let handler = Handler::new(
        &cfg.route,
        cfg.secret.clone(),
        replay,
        acknowledger,
        cfg.notify,
        cfg.persistent,
    );
    let service = match Service::bind(&cfg, handler) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot listen on {}: {e}", cfg.listen);
            return ExitCode::from(1);
        }
    };
    log::info!(
        "listening on http://{}{}, acknowledging through {how}",
        service
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        cfg.route
    );
    service.run();
    ExitCode::SUCCESS
}
