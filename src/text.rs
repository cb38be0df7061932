//! Plugin output as every output shows it: its first line
//! ([`short_output`]), cut at `output_size_limit` on a character boundary
//! ([`limited_len`]), as the built-in formats and templates cut it.
//!
//! Shared by the renderer and the sinks from below them, so no output
//! borrows another's formatter for it.

use crate::config::FormatConfig;
use crate::event::StatusEvent;

/// The first line of a plugin output, cut at `output_size_limit`: the
/// Canopsis event's `output`, the Mattermost message's text.
pub fn short_output<'a>(cfg: &FormatConfig, s: &'a StatusEvent) -> &'a str {
    let first = s.output.split('\n').next().unwrap_or("");
    truncate(first, cfg.output_size_limit)
}

fn truncate(text: &str, limit: Option<usize>) -> &str {
    &text[..limited_len(text.as_bytes(), limit)]
}

/// How much of `bytes` `output_size_limit` keeps: at most `limit` bytes,
/// cut before a UTF-8 continuation byte (on a character boundary for
/// valid text).
pub fn limited_len(bytes: &[u8], limit: Option<usize>) -> usize {
    match limit {
        Some(n) if bytes.len() > n => {
            let mut end = n;
            while end > 0 && (bytes[end] & 0xC0) == 0x80 {
                end -= 1;
            }
            end
        }
        _ => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_limit_cuts_on_a_character_boundary() {
        assert_eq!(truncate("héllo", Some(2)), "h");
        assert_eq!(truncate("hello", None), "hello");
    }
}
