//! Dates as the Lua library writes them: `timestamp_conversion_format`
//! and `local_time_diff_from_utc`, read once from the parameters and used
//! by the `_scdate` flag ([`DateFormat`]).
//!
//! A parameter value with its own small strftime, below the configuration
//! that holds it and the templates that use it.

use std::ffi::{CStr, CString};

/// `timestamp_conversion_format` with `local_time_diff_from_utc`: how
/// `_scdate` writes a time, as `os.date(fmt, os.time(os.date("!*t", v + D)))`.
#[derive(Debug, Clone, PartialEq)]
pub struct DateFormat {
    format: CString,
    utc: bool,
    /// `D` minus the standard offset of the zone at start: 0 with the
    /// default `D`, which makes the result plain local time of `v`.
    shift: i64,
}

/// The conversions Lua 5.3's `os.date` accepts (`LUA_STRFTIMEOPTIONS`,
/// C99): anything else is a Lua error there, refused at `init` here.
const STRFTIME_SINGLE: &str = "aAbBcCdDeFgGhHIjmMnprRStTuUVwWxXyYzZ%";

impl DateFormat {
    /// The library's default: `%Y-%m-%d %X`, local time.
    pub fn local_default() -> DateFormat {
        DateFormat::new("%Y-%m-%d %X", None).expect("the default format is valid")
    }

    /// Checks `fmt` as `os.date` would; `diff` is `local_time_diff_from_utc`
    /// when set.
    pub fn new(fmt: &str, diff: Option<f64>) -> Result<DateFormat, String> {
        let (utc, body) = match fmt.strip_prefix('!') {
            Some(b) => (true, b),
            None => (false, fmt),
        };
        if body.starts_with("*t") {
            return Err("'*t' makes a table, not text".into());
        }
        let b = body.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let ok = match b.get(i + 1) {
                    Some(b'E') => matches!(b.get(i + 2), Some(c) if b"cCxXyY".contains(c)),
                    Some(b'O') => matches!(b.get(i + 2), Some(c) if b"deHImMSuUVwWy".contains(c)),
                    Some(&c) => STRFTIME_SINGLE.as_bytes().contains(&c),
                    None => false,
                };
                if !ok {
                    let bad: String = body[i..].chars().take(2).collect();
                    return Err(format!("invalid conversion specifier '{bad}'"));
                }
                i += if matches!(b.get(i + 1), Some(b'E' | b'O')) {
                    3
                } else {
                    2
                };
            } else {
                i += 1;
            }
        }
        let format = CString::new(body).map_err(|_| "it contains a NUL byte".to_string())?;
        let shift = match diff {
            Some(d) if d.is_finite() => d as i64 - standard_offset(),
            _ => 0,
        };
        Ok(DateFormat { format, utc, shift })
    }

    /// `v` as text, or `None` if the C library cannot represent it.
    pub fn format(&self, v: i64) -> Option<String> {
        // `time_t` is 32 bits on some targets.
        #[allow(clippy::useless_conversion)]
        let t: libc::time_t = v.checked_add(self.shift)?.try_into().ok()?;
        // SAFETY: plain libc calls on owned, initialised values.
        unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            let got = if self.utc {
                libc::gmtime_r(&t, &mut tm)
            } else {
                libc::localtime_r(&t, &mut tm)
            };
            if got.is_null() {
                return None;
            }
            let mut buf = [0u8; 512];
            let n = libc::strftime(
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
                self.format.as_ptr(),
                &tm,
            );
            if n == 0 && !self.format.as_bytes().is_empty() {
                return None;
            }
            Some(
                CStr::from_bytes_with_nul(&buf[..=n])
                    .ok()?
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    }
}

/// The zone's standard (non-DST) offset from UTC now, in seconds: what the
/// library computes as `local_time_diff_from_utc`'s default.
pub fn standard_offset() -> i64 {
    // SAFETY: plain libc calls on owned, initialised values.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::gmtime_r(&now, &mut tm).is_null() {
            return 0;
        }
        tm.tm_isdst = 0;
        let as_local = libc::mktime(&mut tm);
        if as_local == -1 {
            return 0;
        }
        (now - as_local) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_formats_are_checked_as_os_date_does() {
        assert!(DateFormat::new("%Y-%m-%d %X", None).is_ok());
        assert!(DateFormat::new("%Ec", None).is_ok());
        assert!(DateFormat::new("%Q", None).unwrap_err().contains("%Q"));
        assert!(DateFormat::new("*t", None).is_err());
        assert!(DateFormat::new("100%", None).is_err());
    }

    #[test]
    fn a_set_offset_shifts_from_the_standard_one() {
        // In UTC (the test process's zone unless TZ says otherwise), the
        // standard offset is 0, so D shifts the time by D.
        if standard_offset() != 0 {
            return;
        }
        let d = DateFormat::new("!%H:%M", Some(3600.0)).unwrap();
        assert_eq!(d.format(0).as_deref(), Some("01:00"));
    }
}
