//! Acknowledging through the engine's command file, on a single server.
//!
//! The command file is a FIFO Centreon Engine reads external commands
//! from, one line each:
//! `[<now>] ACKNOWLEDGE_HOST_PROBLEM;<host>;<sticky>;<notify>;<persistent>;<author>;<comment>`
//! or `ACKNOWLEDGE_SVC_PROBLEM;<host>;<service>;...`. It is opened for
//! writing without blocking: with no engine reading it, opening fails at
//! once (ENXIO) and the person is told, rather than the service hanging.
//! The line is written in one `write` shorter than `PIPE_BUF`, so it is
//! never interleaved with another writer's.

use super::acknowledge::{Ack, AckError, Acknowledger};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;

/// Longest line written: below Linux's `PIPE_BUF` (4096).
const MAX_LINE: usize = 4000;

/// The engine's command file.
pub struct CommandFile {
    path: PathBuf,
}

impl CommandFile {
    /// Writes to `path`.
    pub fn new(path: PathBuf) -> Self {
        CommandFile { path }
    }
}

/// A field as the engine's `;`-separated line can hold it.
fn field(text: &str) -> String {
    text.chars()
        .map(|c| if c == ';' || c.is_control() { ' ' } else { c })
        .collect()
}

/// The command line for `ack` at `now`.
pub fn line(ack: &Ack, now: u64) -> String {
    let t = &ack.target;
    let flags = format!(
        "{};{};{}",
        if t.sticky { 2 } else { 1 },
        u8::from(ack.notify),
        u8::from(ack.persistent)
    );
    let who = format!("{};{}", field(&ack.author), field(&ack.comment));
    let mut line = match &t.service {
        Some(service) => format!(
            "[{now}] ACKNOWLEDGE_SVC_PROBLEM;{};{};{flags};{who}",
            field(&t.host),
            field(service)
        ),
        None => format!(
            "[{now}] ACKNOWLEDGE_HOST_PROBLEM;{};{flags};{who}",
            field(&t.host)
        ),
    };
    if line.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line.push('\n');
    line
}

impl Acknowledger for CommandFile {
    fn acknowledge(&self, ack: &Ack) -> Result<(), AckError> {
        let shown = self.path.display();
        match std::fs::metadata(&self.path) {
            Ok(m) if m.file_type().is_fifo() => {}
            Ok(_) => {
                return Err(AckError(format!(
                    "the command file {shown} is not a FIFO (is command_file right?)"
                )))
            }
            Err(e) => {
                return Err(AckError(format!(
                "the command file {shown} cannot be found ({e}): is Centreon Engine running here?"
            )))
            }
        }
        let mut file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENXIO) => AckError(format!(
                    "nothing reads the command file {shown}: Centreon Engine is not running"
                )),
                _ => AckError(format!("the command file {shown} cannot be opened: {e}")),
            })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let text = line(ack, now);
        match file.write(text.as_bytes()) {
            Ok(n) if n == text.len() => Ok(()),
            Ok(_) => Err(AckError(format!(
                "the command file {shown} took only part of the command"
            ))),
            Err(e) => Err(AckError(format!(
                "the command file {shown} refused the command (the engine is behind?): {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::signature::tests::target;

    fn ack() -> Ack {
        Ack {
            target: target(),
            author: "alice".into(),
            comment: "Acknowledged; from Mattermost\n".into(),
            notify: true,
            persistent: false,
        }
    }

    #[test]
    fn lines_follow_the_engines_external_commands() {
        assert_eq!(
            line(&ack(), 7),
            "[7] ACKNOWLEDGE_SVC_PROBLEM;srv-web-01;HTTP;1;1;0;alice;Acknowledged  from Mattermost \n"
        );
        let mut a = ack();
        a.target.service = None;
        a.target.sticky = true;
        assert_eq!(
            line(&a, 7),
            "[7] ACKNOWLEDGE_HOST_PROBLEM;srv-web-01;2;1;0;alice;Acknowledged  from Mattermost \n"
        );
        a.comment = "é".repeat(5000);
        assert!(line(&a, 7).len() <= MAX_LINE + 1);
    }

    #[test]
    fn no_reader_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("ccn-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("centengine.cmd");
        let _ = std::fs::remove_file(&path);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = CommandFile::new(path.clone())
            .acknowledge(&ack())
            .unwrap_err();
        assert!(err.0.contains("not running"), "{err}");
        let err = CommandFile::new(dir.join("none"))
            .acknowledge(&ack())
            .unwrap_err();
        assert!(err.0.contains("cannot be found"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
