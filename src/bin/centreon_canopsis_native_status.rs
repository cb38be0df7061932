//! `centreon_canopsis_native_status`: a Centreon/Nagios plugin that checks a
//! Canopsis native connector output through its status file. Every
//! decision is in `src/status/check.rs`, included here by path so the
//! plugin does not link the connector (nor Lua).

#[path = "../status/check.rs"]
mod check;

fn main() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let answer = check::run(std::env::args().skip(1), now, |path| {
        std::fs::read_to_string(path)
    });
    println!("{}", answer.text);
    std::process::exit(answer.code as i32);
}
