//! Lua 5.3 patterns, as `string.match` reads them: the Lua connector's
//! `accepted_hosts`/`accepted_services` (and its templates' group macros)
//! are Lua patterns, not regular expressions (`%d`, `%-`, `[%w_]`, `%b()`,
//! `%f[%w]`...), so admins' existing values must keep matching the same
//! names.
//!
//! The matcher follows `lstrlib.c` step by step, over bytes, in the C
//! locale. Unlike Lua, a malformed pattern is refused when it is compiled
//! (at `init`), not raised when an event is matched.

use std::fmt;

const ESC: u8 = b'%';
/// Lua's `MAXCCALLS`: deeper backtracking is "pattern too complex".
const MAX_DEPTH: usize = 200;
/// Lua's `LUA_MAXCAPTURES`.
const MAX_CAPTURES: usize = 32;

/// A pattern checked for the errors Lua would raise while matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pat: Vec<u8>,
    anchored: bool,
}

/// Why a pattern is malformed (Lua's own wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub &'static str);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for PatternError {}

/// Where the single-character class starting at `i` ends.
fn class_end(p: &[u8], mut i: usize) -> Result<usize, PatternError> {
    let c = p[i];
    i += 1;
    match c {
        ESC => {
            if i >= p.len() {
                return Err(PatternError("malformed pattern (ends with '%')"));
            }
            Ok(i + 1)
        }
        b'[' => {
            if p.get(i) == Some(&b'^') {
                i += 1;
            }
            // The first character is taken before looking for `]`, so a
            // `]` right after `[` (or `[^`) is a literal.
            loop {
                if i >= p.len() {
                    return Err(PatternError("malformed pattern (missing ']')"));
                }
                let c = p[i];
                i += 1;
                if c == ESC && i < p.len() {
                    i += 1;
                }
                if p.get(i) == Some(&b']') {
                    return Ok(i + 1);
                }
            }
        }
        _ => Ok(i),
    }
}

impl Pattern {
    /// Checks `pattern` as Lua would while matching it.
    pub fn new(pattern: &str) -> Result<Pattern, PatternError> {
        let p = pattern.as_bytes();
        let anchored = p.first() == Some(&b'^');
        let body = &p[anchored as usize..];
        // Captures in the order they open: whether each is closed yet.
        let mut caps: Vec<bool> = Vec::new();
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'(' => {
                    if caps.len() == MAX_CAPTURES {
                        return Err(PatternError("too many captures"));
                    }
                    let position = body.get(i + 1) == Some(&b')');
                    caps.push(position);
                    i += if position { 2 } else { 1 };
                }
                b')' => {
                    match caps.iter().rposition(|closed| !closed) {
                        Some(open) => caps[open] = true,
                        None => return Err(PatternError("invalid pattern capture")),
                    }
                    i += 1;
                }
                b'$' if i + 1 == body.len() => i += 1,
                ESC if body.get(i + 1) == Some(&b'b') => {
                    if i + 3 >= body.len() {
                        return Err(PatternError("missing arguments to '%b'"));
                    }
                    i += 4;
                }
                ESC if body.get(i + 1) == Some(&b'f') => {
                    if body.get(i + 2) != Some(&b'[') {
                        return Err(PatternError("missing '[' after '%f' in pattern"));
                    }
                    i = class_end(body, i + 2)?;
                }
                ESC if body.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    let n = (body[i + 1] - b'0') as usize;
                    if n == 0 || !caps.get(n - 1).copied().unwrap_or(false) {
                        return Err(PatternError("invalid capture index"));
                    }
                    i += 2;
                }
                _ => {
                    let ep = class_end(body, i)?;
                    i = match body.get(ep) {
                        Some(b'*' | b'+' | b'-' | b'?') => ep + 1,
                        _ => ep,
                    };
                }
            }
        }
        if caps.iter().any(|closed| !closed) {
            return Err(PatternError("unfinished capture"));
        }
        Ok(Pattern {
            pat: body.to_vec(),
            anchored,
        })
    }

    /// Whether `string.match(text, pattern)` finds something.
    pub fn is_match(&self, text: &[u8]) -> bool {
        let mut m = Matcher {
            src: text,
            pat: &self.pat,
            caps: Vec::new(),
            depth: MAX_DEPTH,
        };
        let mut start = 0;
        loop {
            m.caps.clear();
            m.depth = MAX_DEPTH;
            if m.run(start, 0).is_some() {
                return true;
            }
            start += 1;
            if self.anchored || start > text.len() {
                return false;
            }
        }
    }
}

/// A capture's start, and its length once closed.
#[derive(Clone, Copy)]
enum Len {
    Open,
    Position,
    Closed(usize),
}

struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    caps: Vec<(usize, Len)>,
    depth: usize,
}

fn class_matches(c: u8, class: u8) -> bool {
    let hit = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return class == c,
    };
    hit != class.is_ascii_uppercase()
}

/// `c` against the set `p[start..=end]` (`[` at `start`, `]` at `end`).
fn set_matches(c: u8, p: &[u8], start: usize, end: usize) -> bool {
    let mut i = start + 1;
    let negated = p[i] == b'^';
    if negated {
        i += 1;
    }
    while i < end {
        if p[i] == ESC {
            i += 1;
            if class_matches(c, p[i]) {
                return !negated;
            }
            i += 1;
        } else if p.get(i + 1) == Some(&b'-') && i + 2 < end {
            if p[i] <= c && c <= p[i + 2] {
                return !negated;
            }
            i += 3;
        } else {
            if p[i] == c {
                return !negated;
            }
            i += 1;
        }
    }
    negated
}

impl Matcher<'_> {
    /// Whether the byte at `s` matches the class `p[pi..ep]`.
    fn single(&self, s: usize, pi: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.pat[pi] {
            b'.' => true,
            ESC => class_matches(c, self.pat[pi + 1]),
            b'[' => set_matches(c, self.pat, pi, ep - 1),
            lit => lit == c,
        }
    }

    /// Matches `pat[p..]` at `src[s..]`: where the match ends.
    fn run(&mut self, mut s: usize, mut p: usize) -> Option<usize> {
        if self.depth == 0 {
            return None; // "pattern too complex"
        }
        self.depth -= 1;
        let r = loop {
            if p == self.pat.len() {
                break Some(s);
            }
            match self.pat[p] {
                b'(' => {
                    break if self.pat.get(p + 1) == Some(&b')') {
                        self.capture(s, p + 2, Len::Position)
                    } else {
                        self.capture(s, p + 1, Len::Open)
                    };
                }
                b')' => break self.close(s, p + 1),
                b'$' if p + 1 == self.pat.len() => {
                    break (s == self.src.len()).then_some(s);
                }
                ESC if self.pat[p + 1] == b'b' => match self.balance(s, p + 2) {
                    Some(after) => {
                        s = after;
                        p += 4;
                    }
                    None => break None,
                },
                ESC if self.pat[p + 1] == b'f' => {
                    p += 2;
                    let ep = class_end(self.pat, p).ok()?;
                    let prev = if s == 0 { 0 } else { self.src[s - 1] };
                    let cur = self.src.get(s).copied().unwrap_or(0);
                    if !set_matches(prev, self.pat, p, ep - 1)
                        && set_matches(cur, self.pat, p, ep - 1)
                    {
                        p = ep;
                    } else {
                        break None;
                    }
                }
                ESC if self.pat[p + 1].is_ascii_digit() => {
                    match self.backref(s, (self.pat[p + 1] - b'1') as usize) {
                        Some(after) => {
                            s = after;
                            p += 2;
                        }
                        None => break None,
                    }
                }
                _ => {
                    let ep = class_end(self.pat, p).ok()?;
                    let quant = self.pat.get(ep).copied();
                    if !self.single(s, p, ep) {
                        if matches!(quant, Some(b'*' | b'?' | b'-')) {
                            p = ep + 1;
                            continue;
                        }
                        break None;
                    }
                    match quant {
                        Some(b'?') => match self.run(s + 1, ep + 1) {
                            Some(end) => break Some(end),
                            None => p = ep + 1,
                        },
                        Some(b'+') => break self.max_expand(s + 1, p, ep),
                        Some(b'*') => break self.max_expand(s, p, ep),
                        Some(b'-') => break self.min_expand(s, p, ep),
                        _ => {
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        };
        self.depth += 1;
        r
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Option<usize> {
        let mut n = 0;
        while self.single(s + n, p, ep) {
            n += 1;
        }
        loop {
            if let Some(end) = self.run(s + n, ep + 1) {
                return Some(end);
            }
            if n == 0 {
                return None;
            }
            n -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Option<usize> {
        loop {
            if let Some(end) = self.run(s, ep + 1) {
                return Some(end);
            }
            if !self.single(s, p, ep) {
                return None;
            }
            s += 1;
        }
    }

    fn capture(&mut self, s: usize, p: usize, len: Len) -> Option<usize> {
        self.caps.push((s, len));
        let r = self.run(s, p);
        if r.is_none() {
            self.caps.pop();
        }
        r
    }

    fn close(&mut self, s: usize, p: usize) -> Option<usize> {
        let l = self
            .caps
            .iter()
            .rposition(|(_, len)| matches!(len, Len::Open))?;
        self.caps[l].1 = Len::Closed(s - self.caps[l].0);
        let r = self.run(s, p);
        if r.is_none() {
            self.caps[l].1 = Len::Open;
        }
        r
    }

    fn balance(&self, s: usize, p: usize) -> Option<usize> {
        let (open, close) = (self.pat[p], self.pat[p + 1]);
        if self.src.get(s) != Some(&open) {
            return None;
        }
        let mut depth = 1;
        for (i, &c) in self.src.iter().enumerate().skip(s + 1) {
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            } else if c == open {
                depth += 1;
            }
        }
        None
    }

    fn backref(&self, s: usize, l: usize) -> Option<usize> {
        let (start, Len::Closed(len)) = *self.caps.get(l)? else {
            return None;
        };
        let want = &self.src[start..start + len];
        (self.src.get(s..s + len) == Some(want)).then_some(s + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pat: &str, text: &str) -> bool {
        Pattern::new(pat).unwrap().is_match(text.as_bytes())
    }

    /// Expected values are what `lua5.3 -e 'print(string.match(t, p) ~= nil)'`
    /// prints for each pair.
    #[test]
    fn matches_as_lua_string_match_does() {
        for (pat, text, want) in [
            ("web", "srv-web-01", true),
            ("^web", "srv-web-01", false),
            ("01$", "srv-web-01", true),
            ("^web%-%d+$", "web-01", true),
            ("^web%-%d+$", "web-xx", false),
            ("^%u", "HG_1", true),
            ("^%u", "hg", false),
            ("%U", "ABC", false),
            ("[%w_]+$", "a_b", true),
            ("^[^%d]+$", "abc", true),
            ("^[^%d]+$", "ab1", false),
            ("[]]", "a]b", true),
            ("[^]]", "]]", false),
            ("^[a-c]+$", "abcab", true),
            ("^[a-c]+$", "abcd", false),
            ("a.c", "abc", true),
            ("a%.c", "abc", false),
            ("colou?r", "color", true),
            ("^a-b$", "aaab", true),
            ("^a*$", "", true),
            ("", "anything", true),
            ("%b()", "f(a(b)c)", true),
            ("^%b()$", "(a(b)", false),
            ("%f[%w]db", "my db", true),
            ("%f[%w]db", "mydb", false),
            ("^(%a+)-%1$", "ab-ab", true),
            ("^(%a+)-%1$", "ab-ba", false),
            ("()x", "yx", true),
            ("^(a)(b)%2$", "abb", true),
            ("a$b", "a$b", true),
            ("^$", "", true),
            ("é", "café", true),
            ("^%a+$", "café", false),
            ("%s", "a\tb", true),
            ("%x+", "zz", false),
            ("%p", "a.b", true),
        ] {
            assert_eq!(m(pat, text), want, "string.match({text:?}, {pat:?})");
        }
    }

    #[test]
    fn malformed_patterns_are_refused_with_luas_words() {
        for (pat, err) in [
            ("abc%", "malformed pattern (ends with '%')"),
            ("[a", "malformed pattern (missing ']')"),
            ("[]", "malformed pattern (missing ']')"),
            ("%b(", "missing arguments to '%b'"),
            ("%fa", "missing '[' after '%f' in pattern"),
            ("(a", "unfinished capture"),
            ("a)", "invalid pattern capture"),
            ("%1", "invalid capture index"),
            ("(a%1)", "invalid capture index"),
        ] {
            assert_eq!(Pattern::new(pat).unwrap_err().0, err, "{pat}");
        }
    }

    #[test]
    fn runaway_backtracking_gives_up_instead_of_overflowing() {
        let p = Pattern::new(&"a?".repeat(300)).unwrap();
        let _ = p.is_match("a".repeat(300).as_bytes());
    }
}
