//! The connector's parameters: same names and defaults as the Lua
//! `canopsis2x-events-apiv2.lua` connector, parsed once in `init`.
//!
//! Broker hands `init` a flat table whose values are strings, integers or
//! floats (a `number` parameter arrives as an integer, anything typed in the
//! UI as `string` arrives as text even when it holds digits), so every
//! numeric parameter accepts both forms.

use crate::dates::DateFormat;
use crate::event::{Category, ElementKind};
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod canopsis;
mod filters;
mod output;
mod reader;
mod webhook;

pub use filters::FilterConfig;
pub use output::{Bot, Buttons, Framing, MattermostSettings, Sink};

use reader::{int_of, Reader};

/// One value of the table broker gives to `init`.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// A Lua integer (`number` parameters).
    Int(i64),
    /// A Lua float (single-object `lua_parameter` form only).
    Float(f64),
    /// A Lua string.
    Str(String),
    /// A Lua boolean (never sent by broker, accepted for hand-written configs).
    Bool(bool),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) => write!(f, "{s}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The raw parameter table, by name.
pub type Params = BTreeMap<String, ParamValue>;

/// Names whose values are never written to a log line.
pub const SECRET_PARAMS: &[&str] = &[
    "canopsis_authkey",
    "proxy_password",
    "http_headers",
    "mattermost_actions_secret",
    "mattermost_bot_token",
];

/// `max_requests_in_flight`'s default.
pub const DEFAULT_IN_FLIGHT: usize = 16;

/// The Lua library's `delta_host_status_change_allow`.
pub const DEFAULT_HOST_CHANGE_DELTA: i64 = 20;

/// Default log file, kept from the Lua connector's documentation.
pub const DEFAULT_LOGFILE: &str = "/var/log/centreon-broker/canopsis-events-apiv2.log";

/// The webhook output's default log file.
pub const DEFAULT_WEBHOOK_LOGFILE: &str = "/var/log/centreon-broker/webhook-events.log";

/// Which loader broker points at: what the output sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `canopsis-native-events-apiv2.lua`.
    Canopsis,
    /// `webhook-native-events.lua`.
    Webhook,
}

impl OutputKind {
    /// The log file when `logfile` is not set.
    pub fn default_logfile(self) -> &'static str {
        match self {
            OutputKind::Canopsis => DEFAULT_LOGFILE,
            OutputKind::Webhook => DEFAULT_WEBHOOK_LOGFILE,
        }
    }
}

/// Where requests go, as each output's parameters say.
#[derive(Debug, Clone, PartialEq)]
struct Destination {
    protocol: String,
    host: String,
    port: u16,
    headers: Vec<(String, Secret)>,
    route: String,
    shown_route: String,
    content_type: &'static str,
}

/// A parameter that is missing or malformed.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The parameter's name.
    pub param: String,
    /// What a valid value looks like.
    pub expected: &'static str,
    /// What was given (`***` for secrets, `nothing` when absent).
    pub got: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid parameter '{}': expected {}, got {}",
            self.param, self.expected, self.got
        )
    }
}

impl std::error::Error for ConfigError {}

/// Comparison used by `host_severity_operator` / `service_severity_operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeverityOp {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `==`
    Eq,
    /// `~=` or `!=`
    Ne,
}

impl SeverityOp {
    /// `threshold OP value`, the Lua library's argument order.
    pub fn holds(self, threshold: i64, value: i64) -> bool {
        match self {
            SeverityOp::Ge => threshold >= value,
            SeverityOp::Gt => threshold > value,
            SeverityOp::Le => threshold <= value,
            SeverityOp::Lt => threshold < value,
            SeverityOp::Eq => threshold == value,
            SeverityOp::Ne => threshold != value,
        }
    }
}

/// How `connector_name` is filled in Canopsis events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorNameType {
    /// The name of the poller that monitors the host.
    Poller,
    /// The `connector_name` parameter.
    Custom,
}

/// A comma-separated name list such as `accepted_hostgroups`.
pub type NameList = Vec<String>;

/// Everything the formatter needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatConfig {
    /// `connector`.
    pub connector: String,
    /// `connector_name`.
    pub connector_name: String,
    /// `connector_name_type`.
    pub connector_name_type: ConnectorNameType,
    /// `use_severity_as_state`.
    pub use_severity_as_state: bool,
    /// `canopsis_sort_list_hostgroups`.
    pub sort_hostgroups: bool,
    /// `canopsis_sort_list_servicegroups`.
    pub sort_servicegroups: bool,
    /// `output_size_limit` in bytes (cut on a character boundary).
    pub output_size_limit: Option<usize>,
    /// `format_file`: the templates' JSON file.
    pub format_file: Option<PathBuf>,
    /// `format_file_typed_values=1`: a value that is a macro alone keeps
    /// its type (numbers, booleans) instead of becoming a JSON string.
    pub typed_values: bool,
    /// `timestamp_conversion_format` and `local_time_diff_from_utc`, for
    /// `_scdate`.
    pub dates: DateFormat,
}

/// Proxy settings (`proxy_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    /// `proxy_protocol`: http or https.
    pub protocol: String,
    /// `proxy_address`.
    pub address: String,
    /// `proxy_port`.
    pub port: u16,
    /// `proxy_username`.
    pub username: String,
    /// `proxy_password`.
    pub password: Secret,
}

/// Where and how to reach Canopsis.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// `sending_protocol`.
    pub protocol: String,
    /// `canopsis_host`.
    pub host: String,
    /// `canopsis_port`.
    pub port: u16,
    /// Headers every request carries, values never logged:
    /// `x-canopsis-authkey`, or `http_headers`.
    pub headers: Vec<(String, Secret)>,
    /// `canopsis_event_route`, or the path and query of `http_server_url`.
    pub event_route: String,
    /// `event_route` as logs show it (a Mattermost hook's key hidden).
    pub shown_route: String,
    /// The body's media type.
    pub content_type: &'static str,
    /// `connection_timeout`.
    pub timeout: Duration,
    /// `verify_certificate`.
    pub verify_certificate: bool,
    /// `proxy_*`, when `proxy_address` is set.
    pub proxy: Option<Proxy>,
    /// `log_curl_commands`: each request's replayable curl line at info
    /// level (`log_level` 2), not only at debug.
    pub log_curl: bool,
}

impl HttpConfig {
    /// `protocol://host:port`.
    pub fn base_url(&self) -> String {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{}:{}", self.protocol, host, self.port)
    }

    /// Where events go, as log lines may show it.
    pub fn shown_url(&self) -> String {
        format!("{}{}", self.base_url(), self.shown_route)
    }

    /// `path` as log lines may show it: the event route as
    /// [`shown_route`](Self::shown_route), others as they are.
    pub fn shown_path<'a>(&'a self, path: &'a str) -> &'a str {
        if path == self.event_route {
            &self.shown_route
        } else {
            path
        }
    }
}

/// Downtime-to-pbehavior settings (`canopsis_downtime_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct DowntimeConfig {
    /// `canopsis_downtime_send_pbh`.
    pub send_pbh: bool,
    /// `canopsis_downtime_reason_name`.
    pub reason_name: String,
    /// `canopsis_downtime_type_name`.
    pub type_name: String,
    /// `canopsis_downtime_route`.
    pub route: String,
    /// `canopsis_downtime_reason_route`.
    pub reason_route: String,
    /// `canopsis_downtime_type_route`.
    pub type_route: String,
    /// `canopsis_downtime_comment_route`.
    pub comment_route: String,
    /// The connector route's `origin`: the `connector` parameter.
    pub origin: String,
}

impl Default for DowntimeConfig {
    /// The newest Lua connector's defaults (its downtime route is the bulk
    /// route; a Canopsis without it gets the single route by itself).
    fn default() -> Self {
        DowntimeConfig {
            send_pbh: true,
            reason_name: "Centreon_downtime".into(),
            type_name: "Default maintenance".into(),
            route: "/api/v4/bulk/pbehaviors".into(),
            reason_route: "/api/v4/pbehavior-reasons".into(),
            type_route: "/api/v4/pbehavior-types".into(),
            comment_route: "/api/v4/pbehavior-comments".into(),
            origin: "centreon-stream".into(),
        }
    }
}

/// The durable spool's parameters: where and how big (what it does with
/// them is [`crate::spool`]'s).
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    /// The spool directory.
    pub dir: PathBuf,
    /// Size cap of all segment files together.
    pub max_bytes: u64,
}

/// The whole, validated configuration of one connector.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Accepted categories (only `neb` carries events this connector handles).
    pub categories: Vec<Category>,
    /// Accepted elements.
    pub elements: Vec<ElementKind>,
    /// Event filters.
    pub filter: FilterConfig,
    /// Event formatting.
    pub format: FormatConfig,
    /// HTTP settings.
    pub http: HttpConfig,
    /// Downtime settings (Canopsis only).
    pub downtime: DowntimeConfig,
    /// What the output sends to: Canopsis, or the webhook's format.
    pub sink: Sink,
    /// `max_buffer_size`: events per POST.
    pub max_buffer_size: usize,
    /// `max_requests_in_flight`: requests sent at once (each object's in
    /// order); 1 sends one at a time.
    pub max_in_flight: usize,
    /// `max_all_queues_age` (or its deprecated name `max_buffer_age`).
    pub max_buffer_age: Duration,
    /// `logfile`.
    pub logfile: PathBuf,
    /// `deadletter_file`: where events Canopsis refuses are kept.
    pub deadletter_file: PathBuf,
    /// `use_spool=1`: the durable spool, with `spool_directory` and
    /// `spool_max_size_mb`.
    pub spool: Option<SpoolConfig>,
    /// `log_level`, 1 to 3.
    pub log_level: i64,
    /// `send_data_test`: write payloads to the log instead of sending them.
    pub send_data_test: bool,
    /// `custom_code_file`: Lua code run on each accepted event.
    pub custom_code_file: Option<PathBuf>,
    /// `stats_interval`: how often the stats line and the status file are
    /// written.
    pub stats_interval: Duration,
}

/// Parameters the Lua connector accepts that have no effect on what this
/// connector sends (they shape the Lua library's `output` field, which the
/// Canopsis format does not use, or select features it does not have).
const INERT_PARAMS: &[&str] = &[
    "sending_method",
    "use_long_output",
    "remove_line_break_in_output",
    "output_line_break_replacement_character",
    "accepted_metrics",
    "send_mixed_events",
    "max_stored_events",
    "metric_name_regex",
    "metric_replacement_character",
    // The library's storage for its downtime replay: not needed here
    // (`crate::seen::news`).
    "storage_backend",
];

/// The outcome of reading the parameter table: the config, plus remarks
/// worth a log line (unknown or inert parameters, fallbacks).
#[derive(Debug)]
pub struct Parsed {
    /// The validated configuration.
    pub config: Config,
    /// Informational remarks for the log.
    pub notices: Vec<String>,
    /// Parameters set to something this connector cannot honour, with why:
    /// for the log at error level.
    pub unhonoured: Vec<String>,
}

/// Reads and validates the table given to `init` of the Canopsis output.
///
/// Returns every problem at once, so one restart fixes them all.
pub fn parse(params: &Params) -> Result<Parsed, Vec<ConfigError>> {
    parse_for(OutputKind::Canopsis, params)
}

/// The same, for either output.
pub fn parse_for(kind: OutputKind, params: &Params) -> Result<Parsed, Vec<ConfigError>> {
    let mut r = Reader {
        params,
        errors: Vec::new(),
        notices: Vec::new(),
        unhonoured: Vec::new(),
        used: Vec::new(),
    };
    let config = r.config(kind);
    let unhonoured = std::mem::take(&mut r.unhonoured);
    for name in params.keys() {
        // `_sc*` parameters are the custom code's own.
        if name.starts_with("_sc") && config.custom_code_file.is_some() {
            continue;
        }
        if name.starts_with("_sc") || INERT_PARAMS.contains(&name.as_str()) {
            r.notices.push(format!(
                "parameter '{name}' has no effect in this connector"
            ));
        } else if !r.used.iter().any(|u| u == name) {
            r.notices.push(format!(
                "parameter '{name}' is not handled by this connector"
            ));
        }
    }
    if r.errors.is_empty() {
        Ok(Parsed {
            config,
            notices: r.notices,
            unhonoured,
        })
    } else {
        Err(r.errors)
    }
}

/// The two parameters needed before anything else, so even a broken
/// configuration is reported in the right file at the right level.
pub fn log_settings(kind: OutputKind, params: &Params) -> (PathBuf, i64) {
    let file = match params.get("logfile") {
        Some(ParamValue::Str(s)) if !s.trim().is_empty() => PathBuf::from(s.trim()),
        _ => PathBuf::from(kind.default_logfile()),
    };
    let level = params
        .get("log_level")
        .and_then(int_of)
        .unwrap_or(1)
        .clamp(1, 3);
    (file, level)
}

/// The default dead-letter file: next to the log,
/// `<logfile stem>.deadletter.jsonl`.
pub fn deadletter_path_for(logfile: &Path) -> PathBuf {
    crate::logger::beside(logfile, ".deadletter.jsonl")
}

/// The default spool directory: one per log file, so two outputs with their
/// own logs never share a spool.
pub fn spool_dir_for(logfile: &Path) -> PathBuf {
    let stem = logfile
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "canopsis".into());
    PathBuf::from(DEFAULT_SPOOL_PARENT).join(format!("{stem}.spool"))
}

/// Where spools live unless `spool_directory` says otherwise (broker's own
/// state directory, writable by centreon-broker).
pub const DEFAULT_SPOOL_PARENT: &str = "/var/lib/centreon-broker";

impl Reader<'_> {
    fn config(&mut self, kind: OutputKind) -> Config {
        let (dest, sink, downtime) = match kind {
            OutputKind::Canopsis => {
                let (dest, downtime) = self.canopsis();
                (dest, Sink::Canopsis, downtime)
            }
            OutputKind::Webhook => {
                let (dest, sink) = self.webhook();
                (dest, sink, DowntimeConfig::default())
            }
        };
        let timeout = self.int(
            "connection_timeout",
            60,
            1,
            3600,
            "a number of seconds between 1 and 3600",
        );
        // The deprecated name means what it says (the Lua library copies
        // its value into verify_certificate as is, inverting it);
        // verify_certificate wins when both are set.
        let insecure = self.flag("allow_insecure_connection", false);
        let verify_certificate = self.opt_flag("verify_certificate").unwrap_or(!insecure);
        let proxy = self.proxy();
        let log_curl = self.flag("log_curl_commands", false);

        let categories = self.categories();
        let elements = self.elements();

        let filter = self.filters();

        let connector_name_type = match self.string("connector_name_type", "poller").trim() {
            "poller" => ConnectorNameType::Poller,
            "custom" => ConnectorNameType::Custom,
            other => {
                self.notices.push(format!(
                    "connector_name_type '{other}' is neither poller nor custom: using poller, as the Lua connector does"
                ));
                ConnectorNameType::Poller
            }
        };
        let format = FormatConfig {
            connector: self.nonempty("connector", "centreon-stream", "a non-empty connector type"),
            connector_name: self.nonempty(
                "connector_name",
                "centreon-stream-central",
                "a non-empty connector name",
            ),
            connector_name_type,
            use_severity_as_state: self.flag("use_severity_as_state", false),
            sort_hostgroups: self.flag("canopsis_sort_list_hostgroups", false),
            sort_servicegroups: self.flag("canopsis_sort_list_servicegroups", false),
            output_size_limit: match self.int(
                "output_size_limit",
                0,
                0,
                i64::MAX,
                "a positive number of bytes",
            ) {
                0 => None,
                n => Some(n as usize),
            },
            format_file: match self.string("format_file", "").trim() {
                "" => None,
                path => Some(PathBuf::from(path)),
            },
            typed_values: self.flag("format_file_typed_values", false),
            dates: self.dates(),
        };

        let max_buffer_size = self.int(
            "max_buffer_size",
            100,
            1,
            100_000,
            "a number of events between 1 and 100000",
        ) as usize;
        let max_in_flight = self.int(
            "max_requests_in_flight",
            DEFAULT_IN_FLIGHT as i64,
            1,
            64,
            "a number of requests between 1 and 64",
        ) as usize;
        let age_expected = "a number of seconds between 1 and 3600";
        let old_age = self.int("max_buffer_age", 5, 1, 3600, age_expected);
        let max_buffer_age = if self.params.contains_key("max_all_queues_age") {
            self.int("max_all_queues_age", 5, 1, 3600, age_expected)
        } else {
            self.used.push("max_all_queues_age".into());
            old_age
        };
        // Mattermost shows messages in the order they are posted and
        // limits posts per second per client: one lane, and each event is
        // handed to it at once (a chat message must not wait for a batch;
        // the summary decides what to post when many wait). Threads through
        // a bot account rely on it too: one sender thread knows the roots.
        let (max_in_flight, max_buffer_age) = match &sink {
            Sink::Mattermost(_) => {
                if max_in_flight != 1 && self.params.contains_key("max_requests_in_flight") {
                    self.notices.push(
                        "parameter 'max_requests_in_flight' is 1 for Mattermost: messages are posted in order, one at a time".into(),
                    );
                }
                (1, 0)
            }
            _ => (max_in_flight, max_buffer_age),
        };
        let (logfile, _) = log_settings(kind, self.params);
        let deadletter_file = match self.string("deadletter_file", "").trim() {
            "" => deadletter_path_for(&logfile),
            path => PathBuf::from(path),
        };
        let spool_dir = match self.string("spool_directory", "").trim() {
            "" => spool_dir_for(&logfile),
            path => PathBuf::from(path),
        };
        let spool_mb = self.int(
            "spool_max_size_mb",
            1024,
            1,
            1 << 20,
            "a size in MiB between 1 and 1048576",
        ) as u64;
        let spool = self.flag("use_spool", false).then_some(SpoolConfig {
            dir: spool_dir,
            max_bytes: spool_mb << 20,
        });
        let log_level = self
            .int("log_level", 1, 0, 3, "1 (errors), 2 (notices) or 3 (debug)")
            .max(1);
        self.used.push("logfile".into());
        let send_data_test = self.flag("send_data_test", false);
        let custom_code_file = match self.string("custom_code_file", "").trim() {
            "" => None,
            path => Some(PathBuf::from(path)),
        };
        // The connector route names the connector as the pbehaviors' origin.
        let downtime = DowntimeConfig {
            origin: format.connector.clone(),
            ..downtime
        };
        let stats_interval = self.int(
            "stats_interval",
            60,
            1,
            3600,
            "a number of seconds between 1 and 3600",
        ) as u64;

        Config {
            categories,
            elements,
            filter,
            format,
            http: HttpConfig {
                protocol: dest.protocol,
                host: dest.host,
                port: dest.port,
                headers: dest.headers,
                event_route: dest.route,
                shown_route: dest.shown_route,
                content_type: dest.content_type,
                timeout: Duration::from_secs(timeout as u64),
                verify_certificate,
                proxy,
                log_curl,
            },
            downtime,
            sink,
            max_buffer_size,
            max_in_flight,
            max_buffer_age: Duration::from_secs(max_buffer_age as u64),
            logfile,
            deadletter_file,
            spool,
            log_level,
            send_data_test,
            custom_code_file,
            stats_interval: Duration::from_secs(stats_interval),
        }
    }

    fn proxy(&mut self) -> Option<Proxy> {
        let address = self.string("proxy_address", "").trim().to_string();
        let port = self.int("proxy_port", 0, 0, 65535, "a TCP port between 1 and 65535");
        let username = self.string("proxy_username", "");
        let password = Secret::new(self.string("proxy_password", ""));
        let protocol = self
            .string("proxy_protocol", "http")
            .trim()
            .to_ascii_lowercase();
        if address.is_empty() {
            return None;
        }
        if port == 0 {
            let raw = self.params.get("proxy_port").cloned();
            self.fail(
                "proxy_port",
                "a TCP port between 1 and 65535 (proxy_address is set)",
                raw.as_ref(),
            );
        }
        if protocol != "http" && protocol != "https" {
            let raw = self.params.get("proxy_protocol").cloned();
            self.fail("proxy_protocol", "http or https", raw.as_ref());
        }
        if !username.is_empty() && password.is_empty() {
            self.fail("proxy_password", "a password (proxy_username is set)", None);
        }
        Some(Proxy {
            protocol,
            address,
            port: port as u16,
            username,
            password,
        })
    }

    /// `_scdate`'s format. A format `os.date` would refuse is reported and
    /// replaced by the default: it must not take the output down.
    fn dates(&mut self) -> DateFormat {
        let fmt = self.string("timestamp_conversion_format", "%Y-%m-%d %X");
        let diff = match self.raw("local_time_diff_from_utc").cloned() {
            None => None,
            Some(ParamValue::Int(i)) => Some(i as f64),
            Some(ParamValue::Float(f)) => Some(f),
            Some(ParamValue::Str(s)) if s.trim().is_empty() => None,
            Some(ParamValue::Str(s)) => match s.trim().parse::<f64>() {
                Ok(f) => Some(f),
                Err(_) => {
                    self.unhonoured.push(format!(
                        "parameter 'local_time_diff_from_utc' is not a number of seconds ('{s}'): _scdate uses the zone's offset"
                    ));
                    None
                }
            },
            Some(ParamValue::Bool(_)) => None,
        };
        match DateFormat::new(&fmt, diff) {
            Ok(d) => d,
            Err(why) => {
                self.unhonoured.push(format!(
                    "parameter 'timestamp_conversion_format' ('{fmt}'): {why}: _scdate uses %Y-%m-%d %X"
                ));
                DateFormat::new("%Y-%m-%d %X", diff).unwrap_or_else(|_| DateFormat::local_default())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn params(pairs: &[(&str, ParamValue)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    pub(crate) fn minimal_webhook(format: &str) -> Params {
        params(&[
            (
                "http_server_url",
                ParamValue::Str("http://127.0.0.1:9/hooks/s3cr3t".into()),
            ),
            ("webhook_format", ParamValue::Str(format.into())),
        ])
    }

    pub(crate) fn minimal() -> Params {
        params(&[
            ("canopsis_authkey", ParamValue::Str("k3y".into())),
            ("canopsis_host", ParamValue::Str("canopsis.example".into())),
        ])
    }

    #[test]
    fn defaults_match_the_lua_connector() {
        let c = parse(&minimal()).unwrap().config;
        assert_eq!(c.http.base_url(), "https://canopsis.example:443");
        assert_eq!(c.http.event_route, "/api/v4/event");
        assert_eq!(c.http.timeout, Duration::from_secs(60));
        assert!(c.http.verify_certificate);
        assert_eq!(c.format.connector, "centreon-stream");
        assert_eq!(c.format.connector_name, "centreon-stream-central");
        assert_eq!(c.format.connector_name_type, ConnectorNameType::Poller);
        assert_eq!(c.categories, vec![Category::Neb]);
        assert_eq!(
            c.elements,
            vec![
                ElementKind::HostStatus,
                ElementKind::ServiceStatus,
                ElementKind::Acknowledgement,
                ElementKind::Downtime
            ]
        );
        assert_eq!(c.filter.host_status, vec![0, 1, 2]);
        assert_eq!(c.filter.ack_service_status, vec![0, 1, 2, 3]);
        assert!(c.filter.hard_only && !c.filter.acknowledged && !c.filter.in_downtime);
        assert!(c.filter.skip_anon_events && c.filter.skip_nil_id);
        assert!(c.filter.host_dedup && c.filter.service_dedup);
        assert!(
            !c.filter.flapping,
            "flapping=0 by default, as in the Lua library"
        );
        assert_eq!(c.logfile, PathBuf::from(DEFAULT_LOGFILE));
        assert_eq!(c.log_level, 1);
        assert_eq!(c.downtime.route, "/api/v4/bulk/pbehaviors");
        assert_eq!(c.downtime.origin, "centreon-stream");
        assert_eq!(c.downtime.reason_name, "Centreon_downtime");
        assert!(!c.send_data_test);
        assert_eq!(c.spool, None, "the spool is opt-in");
    }

    #[test]
    fn the_spool_defaults_next_to_broker_state_one_per_log_file() {
        let mut p = minimal();
        p.insert("use_spool".into(), ParamValue::Str("1".into()));
        p.insert(
            "logfile".into(),
            ParamValue::Str("/var/log/x/canopsis-a.log".into()),
        );
        let spool = parse(&p).unwrap().config.spool.unwrap();
        assert_eq!(
            spool.dir,
            PathBuf::from("/var/lib/centreon-broker/canopsis-a.spool")
        );
        assert_eq!(spool.max_bytes, 1024 << 20);
        p.insert(
            "spool_directory".into(),
            ParamValue::Str("/srv/spool".into()),
        );
        p.insert("spool_max_size_mb".into(), ParamValue::Int(64));
        let spool = parse(&p).unwrap().config.spool.unwrap();
        assert_eq!(
            (spool.dir, spool.max_bytes),
            (PathBuf::from("/srv/spool"), 64 << 20)
        );
        p.insert("spool_max_size_mb".into(), ParamValue::Int(0));
        let errs = parse(&p).unwrap_err();
        assert_eq!(errs[0].param, "spool_max_size_mb");
    }

    #[test]
    fn numbers_arrive_as_integers_or_strings() {
        let mut p = minimal();
        p.insert("canopsis_port".into(), ParamValue::Str(" 8082 ".into()));
        p.insert("max_buffer_size".into(), ParamValue::Int(500));
        p.insert("verify_certificate".into(), ParamValue::Str("0".into()));
        p.insert("connection_timeout".into(), ParamValue::Float(10.0));
        let c = parse(&p).unwrap().config;
        assert_eq!(c.http.port, 8082);
        assert_eq!(c.max_buffer_size, 500);
        assert!(!c.http.verify_certificate);
        assert_eq!(c.http.timeout, Duration::from_secs(10));
    }

    #[test]
    fn missing_mandatory_parameters_are_named() {
        let errs = parse(&Params::new()).unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.param.as_str()).collect();
        assert_eq!(names, vec!["canopsis_authkey", "canopsis_host"]);
        assert!(errs[0].to_string().contains("got nothing"));
    }

    #[test]
    fn malformed_values_say_what_is_expected_and_hide_secrets() {
        let mut p = minimal();
        p.insert("canopsis_port".into(), ParamValue::Str("https".into()));
        p.insert("hard_only".into(), ParamValue::Str("yes".into()));
        p.insert("host_status".into(), ParamValue::Str("0,down".into()));
        p.insert("proxy_address".into(), ParamValue::Str("proxy".into()));
        p.insert("proxy_username".into(), ParamValue::Str("bob".into()));
        let errs = parse(&p).unwrap_err();
        let text: Vec<_> = errs.iter().map(|e| e.to_string()).collect();
        assert!(text.contains(
            &"invalid parameter 'canopsis_port': expected a TCP port between 1 and 65535, got 'https'".to_string()
        ), "{text:?}");
        assert!(text
            .iter()
            .any(|t| t.contains("'hard_only': expected 0 or 1")));
        assert!(text.iter().any(|t| t.contains("'host_status'")));
        assert!(text.iter().any(|t| t.contains("'proxy_port'")));
        assert!(text.iter().any(|t| t.contains("'proxy_password'")));

        let mut p = params(&[
            ("canopsis_authkey", ParamValue::Int(3)),
            ("canopsis_host", ParamValue::Str("h".into())),
        ]);
        p.insert("x".into(), ParamValue::Int(1));
        let errs = parse(&p).unwrap_err();
        assert_eq!(errs[0].got, "***");
    }

    #[test]
    fn hosts_with_url_syntax_and_keys_with_control_characters_are_rejected() {
        for (host, ok) in [
            ("canopsis.example", true),
            ("10.0.0.5", true),
            ("::1", true),
            ("[fe80::1]", true),
            ("user@canopsis.example", false),
            ("canopsis.example:8082", false),
            ("canopsis.example/api", false),
            ("canopsis.example?x=1", false),
            ("canopsis.example#frag", false),
            ("evil.example\\@canopsis.example", false),
            ("[fe80::1]:443", false),
            ("", false),
        ] {
            let mut p = minimal();
            p.insert("canopsis_host".into(), ParamValue::Str(host.into()));
            let errs = parse(&p).err().unwrap_or_default();
            assert_eq!(errs.is_empty(), ok, "{host}: {errs:?}");
            if !ok {
                assert_eq!(errs.len(), 1, "one line: {errs:?}");
                assert_eq!(errs[0].param, "canopsis_host");
            }
        }
        let mut p = minimal();
        p.insert(
            "canopsis_authkey".into(),
            ParamValue::Str("k3y\r\nX-Evil: 1".into()),
        );
        let errs = parse(&p).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].param, "canopsis_authkey");
        assert!(!errs[0].to_string().contains("k3y"), "{}", errs[0]);
    }

    #[test]
    fn allow_insecure_connection_means_what_it_says() {
        let verify = |extra: &[(&str, i64)]| {
            let mut p = minimal();
            for (k, v) in extra {
                p.insert(k.to_string(), ParamValue::Int(*v));
            }
            parse(&p).unwrap().config.http.verify_certificate
        };
        assert!(verify(&[]));
        assert!(!verify(&[("allow_insecure_connection", 1)]));
        assert!(verify(&[("allow_insecure_connection", 0)]));
        assert!(verify(&[
            ("allow_insecure_connection", 1),
            ("verify_certificate", 1)
        ]));
    }

    #[test]
    fn parameters_that_are_not_honoured_are_reported_not_ignored() {
        let mut p = minimal();
        p.insert("format_file".into(), ParamValue::Str("/etc/x.json".into()));
        p.insert("custom_code_file".into(), ParamValue::Str("".into()));
        p.insert(
            "timestamp_conversion_format".into(),
            ParamValue::Str("%Y %Q".into()),
        );
        let parsed = parse(&p).unwrap();
        assert_eq!(parsed.unhonoured.len(), 1, "{:?}", parsed.unhonoured);
        assert!(parsed.unhonoured[0].contains("'%Q'"));
        assert!(parsed.notices.iter().all(|n| !n.contains("format_file")));
        assert_eq!(
            parsed.config.format.format_file.as_deref(),
            Some(std::path::Path::new("/etc/x.json"))
        );
    }

    #[test]
    fn accepted_hosts_are_lua_patterns_checked_at_init() {
        let mut p = minimal();
        p.insert(
            "accepted_hosts".into(),
            ParamValue::Str("^web%-%d+$,db".into()),
        );
        let one = parse(&p).unwrap().config.filter.accepted_hosts;
        assert_eq!(one.len(), 1, "not split unless asked");
        p.insert(
            "accepted_hosts_enable_split_pattern".into(),
            ParamValue::Int(1),
        );
        assert_eq!(parse(&p).unwrap().config.filter.accepted_hosts.len(), 2);
        p.insert("accepted_services".into(), ParamValue::Str("[a".into()));
        let errs = parse(&p).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].param, "accepted_services");
        assert!(errs[0].to_string().contains("missing ']'"), "{}", errs[0]);
    }

    #[test]
    fn log_curl_commands_is_read() {
        assert!(!parse(&minimal()).unwrap().config.http.log_curl);
        let mut p = minimal();
        p.insert("log_curl_commands".into(), ParamValue::Str("1".into()));
        let parsed = parse(&p).unwrap();
        assert!(parsed.config.http.log_curl);
        assert!(parsed
            .notices
            .iter()
            .all(|n| !n.contains("log_curl_commands")));
    }

    #[test]
    fn host_with_scheme_is_rejected() {
        let mut p = minimal();
        p.insert(
            "canopsis_host".into(),
            ParamValue::Str("https://c.example".into()),
        );
        assert_eq!(parse(&p).unwrap_err()[0].param, "canopsis_host");
    }

    #[test]
    fn ack_and_downtime_states_default_to_the_status_lists() {
        let mut p = minimal();
        p.insert("host_status".into(), ParamValue::Str("1,2".into()));
        let c = parse(&p).unwrap().config;
        assert_eq!(c.filter.ack_host_status, vec![1, 2]);
        assert_eq!(c.filter.dt_host_status, vec![1, 2]);
    }

    #[test]
    fn unknown_and_deprecated_parameters() {
        let mut p = minimal();
        p.insert("max_buffer_age".into(), ParamValue::Int(9));
        p.insert("frobnicate".into(), ParamValue::Int(9));
        p.insert("use_long_output".into(), ParamValue::Int(0));
        let parsed = parse(&p).unwrap();
        assert_eq!(parsed.config.max_buffer_age, Duration::from_secs(9));
        assert!(parsed
            .notices
            .iter()
            .any(|n| n.contains("'frobnicate' is not handled")));
        assert!(parsed
            .notices
            .iter()
            .any(|n| n.contains("'use_long_output' has no effect")));
        assert!(!parsed.notices.iter().any(|n| n.contains("max_buffer_age")));
    }

    #[test]
    fn log_settings_survive_a_broken_config() {
        let p = params(&[
            ("logfile", ParamValue::Str("/tmp/x.log".into())),
            ("log_level", ParamValue::Str("3".into())),
        ]);
        assert_eq!(
            log_settings(OutputKind::Canopsis, &p),
            (PathBuf::from("/tmp/x.log"), 3)
        );
        assert_eq!(
            log_settings(OutputKind::Canopsis, &Params::new()),
            (PathBuf::from(DEFAULT_LOGFILE), 1)
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let mut p = minimal();
        p.insert("canopsis_host".into(), ParamValue::Str("::1".into()));
        p.insert("sending_protocol".into(), ParamValue::Str("http".into()));
        p.insert("canopsis_port".into(), ParamValue::Int(8082));
        assert_eq!(
            parse(&p).unwrap().config.http.base_url(),
            "http://[::1]:8082"
        );
    }
}
