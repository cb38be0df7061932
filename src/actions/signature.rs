//! What a button carries, and the signature that makes it trustworthy.
//!
//! Mattermost hands the button's context back unchanged when someone
//! clicks, but anyone who can reach the service can POST a context too. So
//! the output signs it: HMAC-SHA-256, keyed with the secret it shares with
//! the service, over a canonical encoding of every field (each one
//! length-prefixed, so no two contexts encode alike) and the expiry. The
//! service recomputes it and compares in constant time (`hmac`'s
//! `verify_slice`), then checks the expiry.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Names the encoding, so a signature made for something else (or a later
/// version of this one) never verifies here.
const DOMAIN: &str = "centreon-canopsis-native/ack/1";

/// What a button acknowledges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The host's name.
    pub host: String,
    /// The service's description (a service's button only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The host's id (Centreon's API names resources by id).
    pub host_id: u64,
    /// The service's id (a service's button only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<u64>,
    /// The state the message showed ("CRITICAL"): what the person saw.
    pub state: String,
    /// A sticky acknowledgement lasts until the object is OK again, through
    /// changes between problem states.
    pub sticky: bool,
}

impl Target {
    /// `host` or `host / service`.
    pub fn object(&self) -> String {
        match &self.service {
            Some(s) => format!("{} / {s}", self.host),
            None => self.host.clone(),
        }
    }
}

/// A button's context, as the output writes it and Mattermost returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// What to acknowledge.
    #[serde(flatten)]
    pub target: Target,
    /// Seconds since the epoch after which the button acknowledges nothing.
    pub expires: u64,
    /// Hex HMAC-SHA-256 of the target and the expiry.
    pub sig: String,
}

/// Why a context is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The signature does not match: forged, altered, or another secret.
    Forged,
    /// Signed, but past its expiry.
    Expired,
}

/// The bytes the signature covers.
fn canonical(t: &Target, expires: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |field: &str| {
        out.extend_from_slice(field.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    };
    push(DOMAIN);
    push(&t.host);
    push(t.service.as_deref().unwrap_or(""));
    push(&t.host_id.to_string());
    push(&t.service_id.map(|id| id.to_string()).unwrap_or_default());
    push(&t.state);
    push(if t.sticky { "sticky" } else { "normal" });
    push(&expires.to_string());
    out
}

fn mac(secret: &[u8], t: &Target, expires: u64) -> HmacSha256 {
    // HMAC takes keys of any length: this never fails.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&canonical(t, expires));
    mac
}

/// Signs `target` until `expires`.
pub fn sign(secret: &[u8], target: Target, expires: u64) -> Context {
    let sig = hex(&mac(secret, &target, expires).finalize().into_bytes());
    Context {
        target,
        expires,
        sig,
    }
}

/// The target, if the signature is the secret's and `now` is before the
/// expiry.
pub fn verify<'a>(secret: &[u8], ctx: &'a Context, now: u64) -> Result<&'a Target, Refusal> {
    let given = unhex(&ctx.sig).ok_or(Refusal::Forged)?;
    mac(secret, &ctx.target, ctx.expires)
        .verify_slice(&given)
        .map_err(|_| Refusal::Forged)?;
    if now >= ctx.expires {
        return Err(Refusal::Expired);
    }
    Ok(&ctx.target)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn target() -> Target {
        Target {
            host: "srv-web-01".into(),
            service: Some("HTTP".into()),
            host_id: 12,
            service_id: Some(34),
            state: "CRITICAL".into(),
            sticky: false,
        }
    }

    #[test]
    fn a_signed_context_verifies_until_it_expires() {
        let ctx = sign(b"s3cret", target(), 1000);
        assert_eq!(ctx.sig.len(), 64);
        assert_eq!(verify(b"s3cret", &ctx, 999), Ok(&target()));
        assert_eq!(verify(b"s3cret", &ctx, 1000), Err(Refusal::Expired));
        assert_eq!(verify(b"other", &ctx, 999), Err(Refusal::Forged));
    }

    #[test]
    fn changing_any_field_breaks_the_signature() {
        let ctx = sign(b"s3cret", target(), 1000);
        let mut changed = Vec::new();
        for f in 0..7 {
            let mut c = ctx.clone();
            match f {
                0 => c.target.host.push('x'),
                1 => c.target.service = None,
                2 => c.target.host_id = 13,
                3 => c.target.service_id = Some(35),
                4 => c.target.state = "WARNING".into(),
                5 => c.target.sticky = true,
                _ => c.expires = 10_000,
            }
            changed.push(verify(b"s3cret", &c, 999).err());
        }
        assert!(
            changed.iter().all(|r| *r == Some(Refusal::Forged)),
            "{changed:?}"
        );
        let mut bad = ctx.clone();
        bad.sig = "zz".repeat(32);
        assert_eq!(verify(b"s3cret", &bad, 999), Err(Refusal::Forged));
    }

    #[test]
    fn fields_cannot_slide_into_each_other() {
        let mut a = target();
        a.host = "a".into();
        a.service = Some("bc".into());
        let mut b = a.clone();
        b.host = "ab".into();
        b.service = Some("c".into());
        assert_ne!(canonical(&a, 1), canonical(&b, 1));
    }

    #[test]
    fn the_context_round_trips_through_json() {
        let ctx = sign(b"k", target(), 5);
        let text = serde_json::to_string(&ctx).unwrap();
        assert!(text.contains("\"host_id\":12"), "{text}");
        let back: Context = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ctx);
    }
}
