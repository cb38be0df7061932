//! Which redirects are followed, and where to.
//!
//! Canopsis's documentation tells clients to follow redirects: gin, its
//! router, answers `POST /api/v4/pbehaviors/` with a 307 to the path
//! without the slash (301 for a GET). Following one to another host would
//! take the auth key (or a webhook's `http_headers`, or a Mattermost hook's
//! key in the path) where the admin never sent it. So a redirect is
//! followed only while it stays on the configured origin — same scheme,
//! host and port — for at most [`MAX_HOPS`] hops; anything else is
//! answered to the sender as the 3xx it is, with why it was not followed.
//!
//! Method and body, as curl `-L` and browsers (the Fetch standard) decide:
//! 307 and 308 keep both; 301 and 302 turn a POST into a GET without its
//! body; 303 turns anything but a GET into a GET. The connector never makes
//! that change: a GET carries no events, and its 200 would pass for their
//! delivery. A redirect that would change the method is refused instead,
//! and the admin is told which route to configure. A GET (lookups,
//! `app-info`) follows all five; a DELETE follows 301/302 as itself, as
//! curl and browsers do.

use super::Method;
use std::fmt;

/// Most redirects followed for one request: a trailing slash, and room for
/// a front proxy's own rewrite or two. A chain longer than that is a loop
/// or a misconfiguration, not something to walk.
pub const MAX_HOPS: usize = 3;

/// Where the connector was told to send: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    /// Lower case, an IPv6 address without brackets.
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of `scheme://host:port` as configured.
    pub fn new(scheme: &str, host: &str, port: u16) -> Origin {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Origin {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            port,
        }
    }
}

/// The next request of a redirect that is followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// Method of the next request.
    pub method: Method,
    /// Path and query on the same origin (always starting with `/`).
    pub target: String,
}

/// Why a redirect was not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfollowed {
    /// `Location` points to another scheme, host or port (or carries
    /// credentials): nothing is sent there.
    LeavesOrigin {
        /// `scheme://host[:port]` of `Location`, never its path or query.
        to: String,
    },
    /// A 301/302/303 that curl `-L` and browsers would follow with a GET
    /// without the body: that would deliver nothing.
    WouldBecomeGet {
        /// The method that was redirected.
        method: Method,
        /// Where it pointed, on the same origin, as logs may show it.
        to: String,
    },
    /// More than [`MAX_HOPS`] redirects in a row.
    TooMany {
        /// Where the last one pointed, as logs may show it.
        to: String,
    },
    /// No `Location`, or one that is not a URL reference.
    NoLocation,
    /// A 3xx that is not a redirect to follow (300, 304, 305...).
    NotARedirect,
}

impl Unfollowed {
    /// Whether the fix is in the address (scheme, host, port) rather than
    /// the route.
    pub fn about_address(&self) -> bool {
        matches!(self, Unfollowed::LeavesOrigin { .. })
    }
}

impl fmt::Display for Unfollowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfollowed::LeavesOrigin { to } => write!(
                f,
                "redirect to {to} (not followed: it leaves the configured scheme, host and port, and credentials go there only)"
            ),
            Unfollowed::WouldBecomeGet { method, to } => write!(
                f,
                "redirect of a {} to {to} (not followed: it would be sent again as a GET without its body, as curl -L and browsers do, which delivers nothing; configure that route instead)",
                method.as_str()
            ),
            Unfollowed::TooMany { to } => write!(
                f,
                "redirect to {to} (not followed: more than {MAX_HOPS} redirects in a row)"
            ),
            Unfollowed::NoLocation => write!(f, "redirect without a usable Location (not followed)"),
            Unfollowed::NotARedirect => write!(f, "answer the connector does not follow"),
        }
    }
}

/// What to do with a 3xx answer to `method` on `path` (the `hops`-th
/// redirect of this request, counting from 1), whose `Location` is
/// `location`. `show` turns a same-origin path into what logs may show.
pub fn decide(
    origin: &Origin,
    path: &str,
    method: Method,
    status: u16,
    location: Option<&str>,
    hops: usize,
    show: impl Fn(&str) -> String,
) -> Result<Hop, Unfollowed> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Err(Unfollowed::NotARedirect);
    }
    let location = location.ok_or(Unfollowed::NoLocation)?;
    let target = resolve(origin, path, location)?;
    let next = match (status, method) {
        (307 | 308, m) => m,
        (_, Method::Get) => Method::Get,
        (301 | 302, Method::Delete) => Method::Delete,
        (_, m) => {
            return Err(Unfollowed::WouldBecomeGet {
                method: m,
                to: show(&target),
            })
        }
    };
    if hops > MAX_HOPS {
        return Err(Unfollowed::TooMany { to: show(&target) });
    }
    Ok(Hop {
        method: next,
        target,
    })
}

/// `location` resolved against `path` on `origin` (RFC 3986 §5.2), as a
/// path and query on that origin; `Err` when it points elsewhere or is not
/// a reference at all.
fn resolve(origin: &Origin, path: &str, location: &str) -> Result<String, Unfollowed> {
    let location = location.trim();
    if location.is_empty() || location.contains(|c: char| c.is_control() || c == ' ') {
        return Err(Unfollowed::NoLocation);
    }
    let location = location.split('#').next().unwrap_or("");
    let (scheme, rest) = match scheme_of(location) {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, location),
    };
    let reference = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            let (authority, reference) = after.split_at(end);
            let scheme = scheme.unwrap_or_else(|| origin.scheme.clone());
            if !same_origin(origin, &scheme, authority) {
                return Err(Unfollowed::LeavesOrigin {
                    to: shown_origin(&scheme, authority),
                });
            }
            if reference.is_empty() {
                "/"
            } else {
                reference
            }
        }
        // `http:/path` or `mailto:x`: not a same-origin reference a server
        // sends; refused rather than guessed at.
        None if scheme.is_some() => return Err(Unfollowed::NoLocation),
        None => rest,
    };
    let (ref_path, query) = match reference.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (reference, None),
    };
    let base = path.split('?').next().unwrap_or("/");
    let merged = if ref_path.starts_with('/') {
        ref_path.to_string()
    } else if ref_path.is_empty() {
        base.to_string()
    } else {
        let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{ref_path}")
    };
    let mut target = without_dot_segments(&merged);
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    Ok(target)
}

/// `scheme:` and what follows, when `reference` starts with a scheme.
fn scheme_of(reference: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = reference.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some((scheme, rest))
}

/// Whether `scheme` and `authority` name `origin`. User info counts as
/// leaving: the connector does not send credentials it was not given.
fn same_origin(origin: &Origin, scheme: &str, authority: &str) -> bool {
    if authority.contains('@') || scheme != origin.scheme {
        return false;
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        match inner.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':')),
            None => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let port = match port {
        None | Some("") => default,
        Some(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => return false,
        },
    };
    host.eq_ignore_ascii_case(&origin.host) && port == origin.port
}

/// `scheme://host[:port]` of another origin, without user info: enough
/// for an admin, nothing secret.
fn shown_origin(scheme: &str, authority: &str) -> String {
    let host = authority.rsplit('@').next().unwrap_or("");
    super::one_line(&format!("{scheme}://{host}"), 100)
}

/// `path` with its `.` and `..` segments applied (RFC 3986 §5.2.4).
fn without_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::new("https", "Canopsis.example", 443)
    }

    fn follow(method: Method, status: u16, location: &str) -> Result<Hop, Unfollowed> {
        decide(
            &origin(),
            "/api/v4/pbehaviors/",
            method,
            status,
            Some(location),
            1,
            |p| p.to_string(),
        )
    }

    fn hop(method: Method, target: &str) -> Result<Hop, Unfollowed> {
        Ok(Hop {
            method,
            target: target.into(),
        })
    }

    #[test]
    fn a_trailing_slash_redirect_on_the_same_origin_is_followed_with_its_method() {
        for status in [307, 308] {
            assert_eq!(
                follow(Method::Post, status, "/api/v4/pbehaviors"),
                hop(Method::Post, "/api/v4/pbehaviors")
            );
            assert_eq!(
                follow(Method::Delete, status, "/api/v4/pbehaviors?id=1"),
                hop(Method::Delete, "/api/v4/pbehaviors?id=1")
            );
        }
        for status in [301, 302, 303, 307, 308] {
            assert_eq!(
                follow(Method::Get, status, "/api/v4/pbehaviors"),
                hop(Method::Get, "/api/v4/pbehaviors")
            );
        }
    }

    #[test]
    fn absolute_locations_on_the_same_origin_are_followed() {
        for location in [
            "https://canopsis.example/api/v4/event",
            "HTTPS://CANOPSIS.EXAMPLE:443/api/v4/event",
            "//canopsis.example/api/v4/event",
            "https://canopsis.example:/api/v4/event#frag",
        ] {
            assert_eq!(
                follow(Method::Post, 307, location),
                hop(Method::Post, "/api/v4/event"),
                "{location}"
            );
        }
        let v6 = Origin::new("http", "[::1]", 8082);
        assert_eq!(
            decide(
                &v6,
                "/a",
                Method::Post,
                308,
                Some("http://[::1]:8082/b"),
                1,
                |p| p.into()
            ),
            hop(Method::Post, "/b")
        );
    }

    #[test]
    fn relative_locations_resolve_against_the_request_path() {
        assert_eq!(
            follow(Method::Post, 307, "../event"),
            hop(Method::Post, "/api/v4/event")
        );
        assert_eq!(
            follow(Method::Post, 307, "bulk/./x"),
            hop(Method::Post, "/api/v4/pbehaviors/bulk/x")
        );
        assert_eq!(
            follow(Method::Post, 307, "?page=2"),
            hop(Method::Post, "/api/v4/pbehaviors/?page=2")
        );
        assert_eq!(
            follow(Method::Post, 307, "/a/b/../../../c/."),
            hop(Method::Post, "/c/")
        );
    }

    #[test]
    fn a_redirect_leaving_the_origin_is_refused_and_named_by_its_origin_only() {
        for (location, to) in [
            (
                "http://canopsis.example/api/v4/event",
                "http://canopsis.example",
            ),
            (
                "https://canopsis.example:8443/x",
                "https://canopsis.example:8443",
            ),
            (
                "https://evil.example/api/v4/event?key=1",
                "https://evil.example",
            ),
            ("//evil.example/x", "https://evil.example"),
            (
                "https://user:pw@canopsis.example/x",
                "https://canopsis.example",
            ),
            (
                "https://canopsis.example.evil.example/x",
                "https://canopsis.example.evil.example",
            ),
        ] {
            for status in [301, 302, 303, 307, 308] {
                assert_eq!(
                    follow(Method::Post, status, location),
                    Err(Unfollowed::LeavesOrigin { to: to.into() }),
                    "{status} {location}"
                );
            }
        }
    }

    #[test]
    fn a_redirect_that_would_turn_a_body_into_a_get_is_refused() {
        for status in [301, 302, 303] {
            assert_eq!(
                follow(Method::Post, status, "/api/v4/pbehaviors"),
                Err(Unfollowed::WouldBecomeGet {
                    method: Method::Post,
                    to: "/api/v4/pbehaviors".into()
                })
            );
        }
        assert!(matches!(
            follow(Method::Delete, 303, "/x"),
            Err(Unfollowed::WouldBecomeGet { .. })
        ));
        assert_eq!(
            follow(Method::Delete, 301, "/api/v4/pbehaviors"),
            hop(Method::Delete, "/api/v4/pbehaviors")
        );
    }

    #[test]
    fn chains_loops_and_odd_answers_stop() {
        let at = |hops| {
            decide(&origin(), "/a/", Method::Post, 307, Some("/a"), hops, |p| {
                format!("shown{p}")
            })
        };
        assert!(at(MAX_HOPS).is_ok());
        assert_eq!(
            at(MAX_HOPS + 1),
            Err(Unfollowed::TooMany {
                to: "shown/a".into()
            })
        );
        let odd = |status, location| {
            decide(&origin(), "/a", Method::Get, status, location, 1, |p| {
                p.into()
            })
        };
        assert_eq!(odd(300, Some("/b")), Err(Unfollowed::NotARedirect));
        assert_eq!(odd(304, Some("/b")), Err(Unfollowed::NotARedirect));
        assert_eq!(odd(307, None), Err(Unfollowed::NoLocation));
        assert_eq!(odd(307, Some("  ")), Err(Unfollowed::NoLocation));
        assert_eq!(odd(307, Some("/a b")), Err(Unfollowed::NoLocation));
        assert_eq!(odd(307, Some("mailto:x@y")), Err(Unfollowed::NoLocation));
    }

    #[test]
    fn reasons_say_what_was_not_done() {
        let leaves = Unfollowed::LeavesOrigin {
            to: "https://sso.example".into(),
        };
        assert!(leaves.about_address());
        assert!(leaves
            .to_string()
            .starts_with("redirect to https://sso.example (not followed"));
        let get = Unfollowed::WouldBecomeGet {
            method: Method::Post,
            to: "/api/v4/pbehaviors".into(),
        };
        assert!(!get.about_address());
        assert!(get.to_string().contains("curl -L"), "{get}");
    }
}
