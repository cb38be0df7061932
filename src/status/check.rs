//! The monitoring plugin's decisions (`centreon_canopsis_native_status`):
//! reads a connector's status file and answers like any Centreon/Nagios
//! plugin, one status line with performance data and an exit code.
//!
//! Pure (the file is read through a function given to [`run`], the time is
//! given too) so every decision is unit-tested; the binary is a thin
//! `main` over it. Depends on `serde_json` and `std` only: the binary
//! includes this file by path and does not link the connector.
//!
//! Decisions:
//! - the file cannot be read, or is not a status document: UNKNOWN, with
//!   the path and the reason;
//! - the file is older than `--stale-periods` × its own period: CRITICAL
//!   (the output stopped, broker is down or its thread is stuck: events
//!   are not flowing, which is what this check exists to catch);
//! - state `holding` (an event could not be read; nothing is acknowledged
//!   until the output restarts): CRITICAL;
//! - state `failing` or `starting`: WARNING, raised by the thresholds;
//! - each threshold (Nagios ranges: `10`, `10:`, `~:10`, `10:20`, `@10:20`)
//!   on the oldest unacknowledged event's age, unacknowledged events,
//!   dead-lettered events, spool use (%) and failing lanes.

use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The status file of the Canopsis output with its default `logfile`.
pub const DEFAULT_FILE: &str = "/var/log/centreon-broker/canopsis-events-apiv2.status.json";

/// Status files older than this many periods are stale by default.
pub const DEFAULT_STALE_PERIODS: u64 = 3;

/// The usage text (`--help`, and after a wrong option).
pub const USAGE: &str = "\
Usage: centreon_canopsis_native_status [options]
Checks a Canopsis native connector output through its status file.

  --status-file PATH            default /var/log/centreon-broker/canopsis-events-apiv2.status.json
                                (webhook output: /var/log/centreon-broker/webhook-events.status.json)
  --stale-periods N             CRITICAL when the file is older than N stats periods (default 3)
  --warning-oldest-unacked R    age in seconds of the oldest unacknowledged event
  --critical-oldest-unacked R
  --warning-unacked R           unacknowledged events
  --critical-unacked R
  --warning-dead-lettered R     events dead-lettered since the connector started
  --critical-dead-lettered R
  --warning-spool-usage R       spool use in % of spool_max_size_mb
  --critical-spool-usage R
  --warning-failing-lanes R     lanes whose last attempt failed
  --critical-failing-lanes R
  --help

R is a Nagios range: 10 (above 10), 10: (below 10), ~:10, 10:20 (outside), @10:20 (inside);
empty is no threshold.
State failing or starting is WARNING, holding is CRITICAL; thresholds can raise it.";

/// A plugin's answer, as Centreon reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 0.
    Ok = 0,
    /// 1.
    Warning = 1,
    /// 2.
    Critical = 2,
    /// 3: the check could not be made.
    Unknown = 3,
}

impl Code {
    /// Its name at the head of the status line.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Warning => "WARNING",
            Code::Critical => "CRITICAL",
            Code::Unknown => "UNKNOWN",
        }
    }

    /// How bad it is, to keep the worst of several.
    fn rank(self) -> u8 {
        match self {
            Code::Ok => 0,
            Code::Unknown => 1,
            Code::Warning => 2,
            Code::Critical => 3,
        }
    }

    fn worst(self, other: Code) -> Code {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// A Nagios threshold range: alert outside `start..=end` (or inside, `@`).
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    start: f64,
    end: f64,
    inside: bool,
    text: String,
}

impl Range {
    /// Parses `[@][start:][end]`, `~` for minus infinity.
    pub fn parse(text: &str) -> Result<Range, String> {
        let bad = || format!("'{text}' is not a threshold range (10, 10:, ~:10, 10:20, @10:20)");
        let (inside, rest) = match text.strip_prefix('@') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let number = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
        let (start, end) = match rest.split_once(':') {
            None => (0.0, number(rest).ok_or_else(bad)?),
            Some((s, e)) => {
                let start = match s.trim() {
                    "~" => f64::NEG_INFINITY,
                    "" => 0.0,
                    s => number(s).ok_or_else(bad)?,
                };
                let end = match e.trim() {
                    "" => f64::INFINITY,
                    e => number(e).ok_or_else(bad)?,
                };
                (start, end)
            }
        };
        if start > end {
            return Err(bad());
        }
        Ok(Range {
            start,
            end,
            inside,
            text: text.to_string(),
        })
    }

    /// Whether `v` raises the alert.
    pub fn alerts(&self, v: f64) -> bool {
        let within = self.start <= v && v <= self.end;
        within == self.inside
    }
}

/// A warning and a critical range for one figure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    /// `--warning-…`.
    pub warning: Option<Range>,
    /// `--critical-…`.
    pub critical: Option<Range>,
}

impl Thresholds {
    /// The answer for `v`, and the range it broke.
    fn judge(&self, v: f64) -> Option<(Code, &Range)> {
        if let Some(r) = self.critical.as_ref().filter(|r| r.alerts(v)) {
            return Some((Code::Critical, r));
        }
        self.warning
            .as_ref()
            .filter(|r| r.alerts(v))
            .map(|r| (Code::Warning, r))
    }

    /// `;warn;crit` for the performance data.
    fn perf(&self) -> String {
        let text = |r: &Option<Range>| r.as_ref().map_or("", |r| r.text.as_str()).to_string();
        format!(";{};{}", text(&self.warning), text(&self.critical))
    }
}

/// What the plugin was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `--status-file`.
    pub file: PathBuf,
    /// `--stale-periods`.
    pub stale_periods: u64,
    /// Age of the oldest unacknowledged event, seconds.
    pub oldest: Thresholds,
    /// Unacknowledged events.
    pub unacked: Thresholds,
    /// Dead-lettered events since the connector started.
    pub dead_lettered: Thresholds,
    /// Spool use, %.
    pub spool_usage: Thresholds,
    /// Failing lanes.
    pub failing_lanes: Thresholds,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            file: PathBuf::from(DEFAULT_FILE),
            stale_periods: DEFAULT_STALE_PERIODS,
            oldest: Thresholds::default(),
            unacked: Thresholds::default(),
            dead_lettered: Thresholds::default(),
            spool_usage: Thresholds::default(),
            failing_lanes: Thresholds::default(),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Check with these options.
    Check(Box<Options>),
    /// Print the usage.
    Help,
}

/// Reads the command line (without the program name). Takes `--name value`
/// and `--name=value`.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Request, String> {
    let mut o = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Request::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let Some(value) = inline.or_else(|| args.next()) else {
            return Err(format!("{name} needs a value"));
        };
        // An empty threshold is none, as Centreon passes an empty macro.
        let range = || match value.trim() {
            "" => Ok(None),
            v => Range::parse(v).map(Some),
        };
        match name.as_str() {
            "--status-file" => o.file = PathBuf::from(&value),
            "--stale-periods" => {
                o.stale_periods = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("--stale-periods: '{value}' is not a whole number above 0")
                })?
            }
            "--warning-oldest-unacked" => o.oldest.warning = range()?,
            "--critical-oldest-unacked" => o.oldest.critical = range()?,
            "--warning-unacked" => o.unacked.warning = range()?,
            "--critical-unacked" => o.unacked.critical = range()?,
            "--warning-dead-lettered" => o.dead_lettered.warning = range()?,
            "--critical-dead-lettered" => o.dead_lettered.critical = range()?,
            "--warning-spool-usage" => o.spool_usage.warning = range()?,
            "--critical-spool-usage" => o.spool_usage.critical = range()?,
            "--warning-failing-lanes" => o.failing_lanes.warning = range()?,
            "--critical-failing-lanes" => o.failing_lanes.critical = range()?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Request::Check(Box::new(o)))
}

/// The plugin's answer: its exit code and its one line (performance data
/// after `|`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Exit code.
    pub code: Code,
    /// What it prints (usage text for `--help`).
    pub text: String,
}

impl Answer {
    fn unknown(why: String) -> Answer {
        Answer {
            code: Code::Unknown,
            text: format!("UNKNOWN: {}", clean(&why)),
        }
    }
}

/// Runs the plugin: `args` without the program name, `now` in Unix
/// seconds, `read` reads the status file.
pub fn run(
    args: impl IntoIterator<Item = String>,
    now: u64,
    read: impl FnOnce(&Path) -> std::io::Result<String>,
) -> Answer {
    let opts = match parse_args(args) {
        Ok(Request::Check(o)) => o,
        Ok(Request::Help) => {
            return Answer {
                code: Code::Unknown,
                text: USAGE.to_string(),
            }
        }
        Err(e) => return Answer::unknown(format!("{e}\n{USAGE}")),
    };
    let text = match read(&opts.file) {
        Ok(t) => t,
        Err(e) => {
            return Answer::unknown(format!(
                "cannot read status file {}: {e} (is the output configured with this logfile, and has it run?)",
                opts.file.display()
            ))
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(doc) if doc.is_object() => evaluate(&doc, now, &opts),
        Ok(_) | Err(_) => Answer::unknown(format!(
            "{} is not a connector status document",
            opts.file.display()
        )),
    }
}

/// The figures of a status document.
struct Figures<'a> {
    written: u64,
    period: u64,
    state: &'a str,
    unacked: u64,
    oldest: u64,
    dead_lettered: u64,
    spool: Option<(u64, u64)>,
    failing_lanes: u64,
    lanes: u64,
    error: Option<&'a str>,
}

impl<'a> Figures<'a> {
    fn read(doc: &'a Value) -> Result<Figures<'a>, String> {
        let num = |k: &str| {
            doc.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("the status document has no number '{k}'"))
        };
        let spool = match (
            doc.get("spool_bytes").and_then(Value::as_u64),
            doc.get("spool_max_bytes").and_then(Value::as_u64),
        ) {
            (Some(b), Some(m)) if m > 0 => Some((b, m)),
            _ => None,
        };
        Ok(Figures {
            written: num("written")?,
            period: num("period_s")?.max(1),
            state: doc
                .get("state")
                .and_then(Value::as_str)
                .ok_or("the status document has no state")?,
            unacked: num("unacked")?,
            oldest: num("oldest_unacked_s")?,
            dead_lettered: num("dead_lettered")?,
            spool,
            failing_lanes: num("failing_lanes")?,
            lanes: num("lanes")?,
            error: doc.get("last_error").and_then(Value::as_str),
        })
    }
}

/// The answer for a status document read at `now`.
pub fn evaluate(doc: &Value, now: u64, opts: &Options) -> Answer {
    let f = match Figures::read(doc) {
        Ok(f) => f,
        Err(e) => return Answer::unknown(format!("{}: {e}", opts.file.display())),
    };
    let mut code = Code::Ok;
    let mut problems: Vec<String> = Vec::new();
    let mut raise = |c: Code, why: String| {
        code = code.worst(c);
        problems.push(why);
    };
    let age = now.saturating_sub(f.written);
    if age > opts.stale_periods * f.period {
        raise(
            Code::Critical,
            format!(
                "status file not updated for {age}s (every {}s when the output runs): output stopped or broker stuck",
                f.period
            ),
        );
    }
    match f.state {
        "ok" => {}
        "holding" => raise(
            Code::Critical,
            "holding: an event could not be read, nothing is acknowledged until the output restarts".into(),
        ),
        "failing" => raise(
            Code::Warning,
            format!(
                "failing ({}/{} lanes): {}",
                f.failing_lanes,
                f.lanes,
                f.error.unwrap_or("no error given")
            ),
        ),
        "starting" => raise(
            Code::Warning,
            format!("starting: {}", f.error.unwrap_or("not started yet")),
        ),
        other => raise(Code::Unknown, format!("unknown state '{other}'")),
    }
    let usage = f.spool.map(|(b, m)| b as f64 * 100.0 / m as f64);
    let checks: [(&str, Option<f64>, &Thresholds, &str); 5] = [
        (
            "oldest unacknowledged event",
            Some(f.oldest as f64),
            &opts.oldest,
            "s old",
        ),
        (
            "unacknowledged events",
            Some(f.unacked as f64),
            &opts.unacked,
            "",
        ),
        (
            "dead-lettered events",
            Some(f.dead_lettered as f64),
            &opts.dead_lettered,
            "",
        ),
        ("spool use", usage, &opts.spool_usage, "%"),
        (
            "failing lanes",
            Some(f.failing_lanes as f64),
            &opts.failing_lanes,
            "",
        ),
    ];
    for (what, value, thresholds, unit) in checks {
        let Some(v) = value else { continue };
        if let Some((c, range)) = thresholds.judge(v) {
            raise(
                c,
                format!("{what}: {}{unit} (threshold {})", shown(v), range.text),
            );
        }
    }
    let mut text = format!("{}: ", code.name());
    if problems.is_empty() {
        text.push_str("connector ok");
    } else {
        text.push_str(&problems.join("; "));
    }
    let _ = write!(
        text,
        " - {} unacknowledged, oldest {}s, {} dead-lettered, {}/{} lanes failing, spool {}",
        f.unacked,
        f.oldest,
        f.dead_lettered,
        f.failing_lanes,
        f.lanes,
        usage.map_or("off".to_string(), |u| format!("{}%", shown(u)))
    );
    let mut text = clean(&text);
    let _ = write!(
        text,
        "|'unacked'={}{};0; 'oldest_unacked'={}s{};0; 'dead_lettered'={}{};0; 'failing_lanes'={}{};0;{}",
        f.unacked,
        opts.unacked.perf(),
        f.oldest,
        opts.oldest.perf(),
        f.dead_lettered,
        opts.dead_lettered.perf(),
        f.failing_lanes,
        opts.failing_lanes.perf(),
        f.lanes
    );
    if let (Some(u), Some((bytes, max))) = (usage, f.spool) {
        let _ = write!(
            text,
            " 'spool_usage'={}%{};0;100 'spool_bytes'={bytes}B;;;0;{max}",
            shown(u),
            opts.spool_usage.perf()
        );
    }
    Answer { code, text }
}

/// A figure with at most two decimals, none when whole.
fn shown(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One line without `|` (it starts the performance data).
fn clean(s: &str) -> String {
    s.replace('|', "/").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_765_000_100;

    fn doc() -> Value {
        json!({
            "version": "0.1.0", "written": NOW - 30, "period_s": 60, "state": "ok",
            "unacked": 12, "oldest_unacked_s": 3, "waiting": 12, "dead_lettered": 0,
            "spool_bytes": null, "spool_max_bytes": null, "failing_lanes": 0, "lanes": 16,
            "last_error": null,
            "counters": {"received": 10, "accepted": 9, "sent": 8, "requests": 2, "failed_requests": 0}
        })
    }

    fn args(a: &str) -> Options {
        match parse_args(a.split_whitespace().map(String::from)).unwrap() {
            Request::Check(o) => *o,
            Request::Help => panic!("help"),
        }
    }

    fn check(d: &Value, a: &str) -> Answer {
        evaluate(d, NOW, &args(a))
    }

    #[test]
    fn a_healthy_connector_is_ok_with_its_perfdata() {
        let a = check(
            &doc(),
            "--warning-oldest-unacked 60 --critical-oldest-unacked 300",
        );
        assert_eq!(a.code, Code::Ok);
        assert_eq!(
            a.text,
            "OK: connector ok - 12 unacknowledged, oldest 3s, 0 dead-lettered, 0/16 lanes failing, spool off\
             |'unacked'=12;;;0; 'oldest_unacked'=3s;60;300;0; 'dead_lettered'=0;;;0; 'failing_lanes'=0;;;0;16"
        );
    }

    #[test]
    fn failing_is_a_warning_and_the_age_thresholds_raise_it() {
        let mut d = doc();
        d["state"] = json!("failing");
        d["failing_lanes"] = json!(1);
        d["oldest_unacked_s"] = json!(400);
        d["last_error"] = json!("HTTP 500: a|b");
        let a = check(&d, "");
        assert_eq!(a.code, Code::Warning);
        assert!(
            a.text
                .starts_with("WARNING: failing (1/16 lanes): HTTP 500: a/b - "),
            "{}",
            a.text
        );
        assert_eq!(a.text.matches('|').count(), 1, "{}", a.text);
        let a = check(
            &d,
            "--warning-oldest-unacked 60 --critical-oldest-unacked=300",
        );
        assert_eq!(a.code, Code::Critical);
        assert!(
            a.text
                .contains("oldest unacknowledged event: 400s old (threshold 300)"),
            "{}",
            a.text
        );
        let a = check(&d, "--critical-failing-lanes 0");
        assert_eq!(a.code, Code::Critical);
    }

    #[test]
    fn holding_is_critical_and_starting_a_warning() {
        let mut d = doc();
        d["state"] = json!("holding");
        assert_eq!(check(&d, "").code, Code::Critical);
        d["state"] = json!("starting");
        d["last_error"] = json!("spool locked");
        let a = check(&d, "");
        assert_eq!(a.code, Code::Warning);
        assert!(a.text.contains("starting: spool locked"), "{}", a.text);
    }

    #[test]
    fn a_stale_file_is_critical() {
        let mut d = doc();
        d["written"] = json!(NOW - 181);
        let a = check(&d, "");
        assert_eq!(a.code, Code::Critical);
        assert!(a.text.contains("not updated for 181s"), "{}", a.text);
        assert_eq!(check(&d, "--stale-periods 4").code, Code::Ok);
        d["written"] = json!(NOW - 180);
        assert_eq!(
            check(&d, "").code,
            Code::Ok,
            "three periods is not stale yet"
        );
    }

    #[test]
    fn spool_use_is_a_percentage_with_its_own_perfdata() {
        let mut d = doc();
        d["spool_bytes"] = json!(900u64 << 20);
        d["spool_max_bytes"] = json!(1024u64 << 20);
        let a = check(&d, "--warning-spool-usage 80 --critical-spool-usage 95");
        assert_eq!(a.code, Code::Warning);
        assert!(
            a.text.contains("spool use: 87.89% (threshold 80)"),
            "{}",
            a.text
        );
        assert!(
            a.text.ends_with(
                " 'spool_usage'=87.89%;80;95;0;100 'spool_bytes'=943718400B;;;0;1073741824"
            ),
            "{}",
            a.text
        );
    }

    #[test]
    fn unacked_and_dead_lettered_thresholds() {
        let mut d = doc();
        d["dead_lettered"] = json!(3);
        assert_eq!(check(&d, "--warning-dead-lettered 0").code, Code::Warning);
        assert_eq!(check(&d, "--critical-dead-lettered 2").code, Code::Critical);
        assert_eq!(check(&d, "--critical-dead-lettered 5").code, Code::Ok);
        assert_eq!(check(&d, "--critical-unacked 10").code, Code::Critical);
        assert_eq!(check(&d, "--warning-unacked @10:20").code, Code::Warning);
    }

    #[test]
    fn nagios_ranges() {
        let r = |t: &str| Range::parse(t).unwrap();
        assert!(r("10").alerts(11.0) && !r("10").alerts(10.0) && r("10").alerts(-1.0));
        assert!(r("10:").alerts(9.0) && !r("10:").alerts(1e9));
        assert!(r("~:10").alerts(11.0) && !r("~:10").alerts(-5.0));
        assert!(r("10:20").alerts(21.0) && !r("10:20").alerts(15.0));
        assert!(r("@10:20").alerts(15.0) && !r("@10:20").alerts(21.0));
        for bad in ["", "x", "20:10", "1:2:3", "@"] {
            assert!(Range::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_or_broken_file_is_unknown_with_a_clear_message() {
        let missing = run(Vec::<String>::new(), NOW, |_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        });
        assert_eq!(missing.code, Code::Unknown);
        assert!(
            missing
                .text
                .starts_with(&format!("UNKNOWN: cannot read status file {DEFAULT_FILE}")),
            "{}",
            missing.text
        );
        let broken = run(["--status-file".into(), "/x.json".into()], NOW, |p| {
            assert_eq!(p, Path::new("/x.json"));
            Ok("{\"writ".into())
        });
        assert_eq!(broken.code, Code::Unknown);
        assert!(broken
            .text
            .contains("/x.json is not a connector status document"));
        let partial = run(Vec::<String>::new(), NOW, |_| {
            Ok("{\"state\":\"ok\"}".into())
        });
        assert_eq!(partial.code, Code::Unknown);
        assert!(
            partial.text.contains("no number 'written'"),
            "{}",
            partial.text
        );
    }

    #[test]
    fn wrong_options_are_unknown_and_help_prints_the_usage() {
        let a = run(
            ["--warning-unacked".into(), "lots".into()],
            NOW,
            |_| unreachable!(),
        );
        assert_eq!(a.code, Code::Unknown);
        assert!(
            a.text.contains("'lots' is not a threshold range"),
            "{}",
            a.text
        );
        let a = run(["--nope".into(), "1".into()], NOW, |_| unreachable!());
        assert!(a.text.contains("unknown option --nope"));
        let a = run(["--status-file".into()], NOW, |_| unreachable!());
        assert!(a.text.contains("--status-file needs a value"));
        assert_eq!(
            args("--warning-spool-usage= --critical-unacked=").spool_usage,
            Thresholds::default(),
            "empty macros are no threshold"
        );
        let a = run(["--help".into()], NOW, |_| unreachable!());
        assert!(a.text.starts_with("Usage:"));
    }
}
