//! Test harness for the native Canopsis connector: a Centreon Broker Lua
//! host emulator ([`broker`]), broker events in both BBDO versions
//! ([`events`]) and a mock Canopsis API v4 on 127.0.0.1 ([`mock`], [`pbh`])
//! that also plays a Mattermost incoming webhook and a Logstash input
//! ([`receivers`]).

pub mod actions;
pub mod broker;
pub mod events;
pub mod mattermost_api;
pub mod mock;
pub mod pbh;
pub mod receivers;
pub mod spread;
pub mod trace;

use broker::{install_connector, module_name, CacheData, Muxer, Output, OutputConfig, Param};
use events::Bbdo;
use events::Event;
use mock::MockCanopsis;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The repository root (this crate lives in `tests/harness`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The built module: `$CANOPSIS_NATIVE_MODULE`, else `target/lua/<name>.so`
/// as `tests/build-modules.sh` leaves it.
pub fn module_path() -> PathBuf {
    std::env::var_os("CANOPSIS_NATIVE_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/lua").join(module_name()))
}

/// The loader script broker points at.
pub fn loader_path() -> PathBuf {
    repo_root().join("lua/canopsis-native-events-apiv2.lua")
}

/// The webhook output's loader.
pub fn webhook_loader_path() -> PathBuf {
    repo_root().join("lua/webhook-native-events.lua")
}

static LABS: AtomicUsize = AtomicUsize::new(0);

/// A scratch broker Lua directory with the connector installed, plus a mock
/// Canopsis to send to.
pub struct Lab {
    /// The scratch directory (logs go here).
    pub dir: PathBuf,
    /// The installed loader script.
    pub script: PathBuf,
    /// The mock Canopsis.
    pub mock: MockCanopsis,
}

impl Lab {
    /// A fresh lab named after the test, with the connector built from
    /// this checkout installed in it.
    pub fn new(name: &str) -> Lab {
        Lab::with_script(name, None)
    }

    /// A fresh lab running `script` (an installed loader) when given, or
    /// else the connector built from this checkout.
    pub fn with_script(name: &str, script: Option<PathBuf>) -> Lab {
        Lab::installing(name, script, &loader_path())
    }

    /// A fresh lab with the webhook loader installed; its mock plays
    /// Mattermost and Logstash too ([`receivers`]).
    pub fn webhook(name: &str) -> Lab {
        Lab::webhook_with_script(name, None)
    }

    /// The same, running `script` (an installed webhook loader) when given.
    pub fn webhook_with_script(name: &str, script: Option<PathBuf>) -> Lab {
        Lab::installing(name, script, &webhook_loader_path())
    }

    fn installing(name: &str, script: Option<PathBuf>, loader: &Path) -> Lab {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("canopsis-lab-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab directory");
        let script = script.unwrap_or_else(|| {
            let module = module_path();
            assert!(
                module.exists(),
                "{} is missing: build it with tests/build-modules.sh",
                module.display()
            );
            install_connector(&dir.join("lua"), loader, &module).expect("install connector")
        });
        Lab {
            dir,
            script,
            mock: MockCanopsis::start(),
        }
    }

    /// Makes the installed loader declare broker API `api` (1: events as
    /// tables, 2: read-only userdata, the loader's own choice).
    pub fn use_api(&self, api: i64) {
        let text = std::fs::read_to_string(&self.script).expect("loader");
        std::fs::write(
            &self.script,
            text.replace(
                "broker_api_version = 2",
                &format!("broker_api_version = {api}"),
            ),
        )
        .expect("loader");
    }

    /// The connector's log file.
    pub fn logfile(&self) -> PathBuf {
        self.dir.join("canopsis.log")
    }

    /// Parameters pointing at the mock, with `extra` added or overriding.
    pub fn params(&self, extra: &[(&str, Param)]) -> Vec<(String, Param)> {
        let p: Vec<(String, Param)> = vec![
            ("canopsis_authkey".into(), Param::Str(self.mock.authkey())),
            ("canopsis_host".into(), Param::Str("127.0.0.1".into())),
            ("canopsis_port".into(), Param::Num(self.mock.port() as i32)),
            ("sending_protocol".into(), Param::Str("http".into())),
            (
                "logfile".into(),
                Param::Str(self.logfile().display().to_string()),
            ),
            ("log_level".into(), Param::Num(3)),
        ];
        overriding(p, extra)
    }

    /// Webhook output parameters for `format` (mattermost, json, ndjson)
    /// pointing at the mock's receiver for it, with `extra` added or
    /// overriding.
    pub fn webhook_params(&self, format: &str, extra: &[(&str, Param)]) -> Vec<(String, Param)> {
        let path = match format {
            "mattermost" => format!("{}{}", receivers::HOOKS, receivers::HOOK_ID),
            _ => receivers::LOGSTASH.to_string(),
        };
        let p: Vec<(String, Param)> = vec![
            (
                "http_server_url".into(),
                Param::Str(format!("http://127.0.0.1:{}{path}", self.mock.port())),
            ),
            ("webhook_format".into(), Param::Str(format.into())),
            (
                "logfile".into(),
                Param::Str(self.logfile().display().to_string()),
            ),
            ("log_level".into(), Param::Num(3)),
        ];
        overriding(p, extra)
    }

    /// Webhook output parameters for Mattermost threads through a bot
    /// account, on the mock's REST API, with `extra` added or overriding.
    pub fn bot_params(&self, extra: &[(&str, Param)]) -> Vec<(String, Param)> {
        let p: Vec<(String, Param)> = vec![
            (
                "mattermost_url".into(),
                Param::Str(format!("http://127.0.0.1:{}", self.mock.port())),
            ),
            (
                "mattermost_bot_token".into(),
                Param::Str(mattermost_api::BOT_TOKEN.into()),
            ),
            (
                "mattermost_channel_id".into(),
                Param::Str(mattermost_api::CHANNEL_ID.into()),
            ),
            ("webhook_format".into(), Param::Str("mattermost".into())),
            (
                "logfile".into(),
                Param::Str(self.logfile().display().to_string()),
            ),
            ("log_level".into(), Param::Num(3)),
        ];
        overriding(p, extra)
    }

    /// Opens an output with `params` over the sample cache.
    pub fn open(&self, params: Vec<(String, Param)>, bbdo: Bbdo) -> Output {
        Output::open(
            &OutputConfig {
                script: self.script.clone(),
                params,
                bbdo,
            },
            CacheData::sample(),
        )
        .expect("output opens")
    }

    /// The connector's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.logfile()).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // CANOPSIS_KEEP_LABS=1 keeps them (logs, and the installed module
        // for a profiler to find its symbols).
        if !std::thread::panicking() && std::env::var_os("CANOPSIS_KEEP_LABS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Lab {
    /// The `_id` of the mock's "Default maintenance" pbehavior type.
    pub fn maintenance_id(&self) -> serde_json::Value {
        let st = self.mock.state();
        st.types
            .iter()
            .find(|t| t["name"] == "Default maintenance")
            .map(|t| t["_id"].clone())
            .unwrap_or_default()
    }

    /// Every event the mock received on the event route, in order, each
    /// request's array flattened.
    pub fn posted(&self) -> Vec<serde_json::Value> {
        self.mock
            .state()
            .event_posts()
            .into_iter()
            .flat_map(|p| p.as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// `params` with `extra` added, or replacing those of the same name.
fn overriding(mut params: Vec<(String, Param)>, extra: &[(&str, Param)]) -> Vec<(String, Param)> {
    for (k, v) in extra {
        params.retain(|(name, _)| name != k);
        params.push((k.to_string(), v.clone()));
    }
    params
}

/// A string parameter.
pub fn text(v: &str) -> Param {
    Param::Str(v.into())
}

/// Runs broker's failover loop (20 ms ticks, idle flush every 200 ms) until
/// every event is acknowledged; panics after 40 s.
pub fn deliver(out: &mut Output, events: Vec<Event>) -> Muxer {
    let mut mux = Muxer::new();
    for e in events {
        mux.push(e);
    }
    assert!(
        drain(out, &mut mux, Duration::from_secs(40)),
        "{} events never acknowledged",
        mux.unacked()
    );
    mux
}

/// Runs the failover loop until every queued event is acknowledged, at most
/// `timeout`; whether it got there.
pub fn drain(out: &mut Output, mux: &mut Muxer, timeout: Duration) -> bool {
    mux.run(
        out,
        Duration::from_millis(20),
        Duration::from_millis(200),
        timeout,
        |m| m.unacked() == 0,
    )
}

/// Runs the failover loop for `d`, whatever happens.
pub fn run_for(out: &mut Output, mux: &mut Muxer, d: Duration) {
    mux.run(
        out,
        Duration::from_millis(20),
        Duration::from_millis(200),
        d,
        |_| false,
    );
}
