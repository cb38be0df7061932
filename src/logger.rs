//! One log file per connector.
//!
//! `log::set_logger` is process-wide, but several connectors (Lua states) can
//! live in one cbd process, each with its own `logfile` and `log_level`. So
//! each connector owns a simplelog [`WriteLogger`] and hands it records built
//! with [`log::Record`] directly; no global logger is installed.

use log::{Level, LevelFilter, Log, Record};
use simplelog::{ConfigBuilder, WriteLogger};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file kept next to the log, named after it: `<logfile stem><suffix>`
/// (the dead-letter file, the states sent). Outputs with their own log
/// files get their own.
pub fn beside(logfile: &Path, suffix: &str) -> PathBuf {
    let stem = logfile
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "canopsis".into());
    logfile.with_file_name(format!("{stem}{suffix}"))
}

/// A cheap-to-clone handle on a connector's log file.
#[derive(Clone)]
pub struct Logger {
    inner: Arc<Inner>,
    /// The most verbose level written, checked before anything else: on
    /// broker's thread, a debug line is skipped for most events.
    max: LevelFilter,
}

enum Inner {
    File(Box<WriteLogger<File>>),
    Stderr,
    #[cfg(test)]
    Memory(std::sync::Mutex<Vec<String>>),
}

/// Maps the Lua connector's `log_level` (1 errors, 2 adds warnings, notices
/// and info, 3 adds debug) to a level filter.
pub fn level_filter(log_level: i64) -> LevelFilter {
    match log_level {
        i64::MIN..=1 => LevelFilter::Error,
        2 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    }
}

impl Logger {
    /// Opens (creating if needed, appending) `path` for this connector.
    pub fn open(path: &Path, level: LevelFilter) -> io::Result<Logger> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let config = ConfigBuilder::new()
            .set_time_format_rfc3339()
            .set_target_level(LevelFilter::Off)
            .set_thread_level(LevelFilter::Off)
            .set_location_level(LevelFilter::Off)
            .build();
        Ok(Logger {
            inner: Arc::new(Inner::File(WriteLogger::new(level, config, file))),
            max: level,
        })
    }

    /// Used when the log file cannot be opened: cbd's journal gets the lines.
    pub fn stderr(level: LevelFilter) -> Logger {
        Logger {
            inner: Arc::new(Inner::Stderr),
            max: level,
        }
    }

    /// A logger that keeps lines in memory, for unit tests.
    #[cfg(test)]
    pub fn memory(level: LevelFilter) -> Logger {
        Logger {
            inner: Arc::new(Inner::Memory(Default::default())),
            max: level,
        }
    }

    /// Lines kept by a [`Logger::memory`] logger.
    #[cfg(test)]
    pub fn lines(&self) -> Vec<String> {
        match &*self.inner {
            Inner::Memory(lines) => lines.lock().unwrap().clone(),
            _ => Vec::new(),
        }
    }

    /// Whether a message at `level` would be written; lets callers skip
    /// building expensive messages (payload dumps).
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.max
    }

    /// Writes one record.
    pub fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        if !self.enabled(level) {
            return;
        }
        match &*self.inner {
            Inner::File(l) => {
                l.log(
                    &Record::builder()
                        .args(args)
                        .level(level)
                        .target("canopsis")
                        .build(),
                );
            }
            Inner::Stderr => eprintln!("canopsis-native: {level}: {args}"),
            #[cfg(test)]
            Inner::Memory(lines) => lines.lock().unwrap().push(format!("{level}: {args}")),
        }
    }

    /// Logs at error level.
    pub fn error(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Error, args)
    }
    /// Logs at warning level.
    pub fn warn(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Warn, args)
    }
    /// Logs at info level (the Lua connector's "notice" and "info").
    pub fn info(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Info, args)
    }
    /// Logs at debug level.
    pub fn debug(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Debug, args)
    }
}

/// What a caught panic said, for a log line.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_up_to_its_level() {
        let dir = std::env::temp_dir().join(format!("cn-logger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let _ = std::fs::remove_file(&path);
        let log = Logger::open(&path, level_filter(1)).unwrap();
        log.error(format_args!("boom {}", 1));
        log.info(format_args!("hidden"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("boom 1"), "{text}");
        assert!(!text.contains("hidden"), "{text}");
    }

    #[test]
    fn maps_lua_levels() {
        assert_eq!(level_filter(1), LevelFilter::Error);
        assert_eq!(level_filter(2), LevelFilter::Info);
        assert_eq!(level_filter(3), LevelFilter::Debug);
    }
}
