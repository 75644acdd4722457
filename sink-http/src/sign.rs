//! Origin and integrity signature of a request: the `X-Auditstream-Signature` header.
//!
//! With a key shared with the receiver, every request carries
//!
//! ```text
//! X-Auditstream-Signature: t=<unix seconds>,v1=<lowercase hex of HMAC-SHA256(key, "<t>.<body>")>
//! ```
//!
//! where `<t>` is the decimal text of `t` and `<body>` the body bytes exactly as sent: after
//! gzip when the request is compressed. Signing the bytes on the wire lets a receiver check a
//! request before doing any work on it (decompressing, parsing), and binds the signature to the
//! `Content-Encoding` actually used. Including `t` in the signed text lets a receiver refuse
//! old requests replayed by someone who captured them.
//!
//! The sender signs each attempt anew, at the time it is sent ([`signature_header`]): a retry
//! re-sent hours later with its first signature would fall outside the receiver's window.
//!
//! # Verifying as a receiver
//!
//! [`verify`] does the following, which a receiver in another language can copy:
//!
//! 1. Keep the raw body bytes as received, before any decompression or JSON parsing.
//! 2. Split the header value on `,` into `name=value` parts; take `t` (exactly one, all digits)
//!    and every `v1` (more than one may come while keys are rotated). Ignore other names: later
//!    schemes may add some.
//! 3. Refuse the request when `t` is further than the tolerance from the receiver's clock, in
//!    either direction (clocks drift both ways). Five minutes is a usual tolerance. Within it a
//!    captured request can be replayed: de-duplicate on event ids, which at-least-once delivery
//!    requires anyway.
//! 4. Compute HMAC-SHA256 with the shared key over the text of `t` as received, a `.`, and the
//!    body bytes.
//! 5. Accept when one `v1` equals it, compared in constant time (e.g. Python's
//!    `hmac.compare_digest`), so that timing does not reveal how much of a guess was right.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the header carrying the signature (lower case, as HTTP/2 sends it).
pub const SIGNATURE_HEADER: &str = "x-auditstream-signature";

type HmacSha256 = Hmac<Sha256>;

/// The value of the `X-Auditstream-Signature` header for `body` (the exact bytes sent), signed
/// at `unix_seconds`.
pub fn signature_header(key: &[u8], unix_seconds: u64, body: &[u8]) -> String {
    let t = unix_seconds.to_string();
    let tag = signer(key, &t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// Whether `header_value` is a valid signature of `body` under `key`, made no further than
/// `tolerance` from `now_unix_seconds`. The steps are those of the module documentation.
pub fn verify(
    key: &[u8],
    header_value: &str,
    body: &[u8],
    now_unix_seconds: u64,
    tolerance: Duration,
) -> bool {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header_value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) if t.is_none() => t = Some(value),
            Some(("t", _)) => return false,
            Some(("v1", value)) => candidates.push(value),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    // Digits only: `u64::from_str` would also take a leading `+`.
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Ok(signed_at) = t.parse::<u64>() else {
        return false;
    };
    if signed_at.abs_diff(now_unix_seconds) > tolerance.as_secs() {
        return false;
    }
    let signer = signer(key, t, body);
    candidates.into_iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|tag| signer.clone().verify_slice(&tag).is_ok())
    })
}

/// HMAC-SHA256 state over `"<t>.<body>"`.
fn signer(key: &[u8], t: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"a":1}"#;
    /// From Python: `hmac.new(b'key', b'1700000000.{"a":1}', hashlib.sha256).hexdigest()`.
    const EXPECTED: &str = "a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03";
    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    #[test]
    fn known_vector() {
        assert_eq!(
            signature_header(b"key", 1_700_000_000, BODY),
            format!("t=1700000000,v1={EXPECTED}")
        );
    }

    #[test]
    fn verify_accepts_what_was_signed_within_the_window() {
        let header = signature_header(b"key", 1_700_000_000, BODY);
        for now in [1_700_000_000, 1_700_000_300, 1_699_999_700] {
            assert!(verify(b"key", &header, BODY, now, FIVE_MINUTES), "{now}");
        }
        let rotating = format!(
            "t=1700000000, v1={}, v1={EXPECTED}, v2=future",
            "00".repeat(32)
        );
        assert!(verify(b"key", &rotating, BODY, 1_700_000_000, FIVE_MINUTES));
    }

    #[test]
    fn verify_refuses_anything_else() {
        let now = 1_700_000_000;
        let good = format!("t=1700000000,v1={EXPECTED}");
        let cases = [
            (
                good.clone(),
                b"key".as_slice(),
                br#"{"a":2}"#.as_slice(),
                now,
            ),
            (good.clone(), b"other key", BODY, now),
            (good.clone(), b"key", BODY, now + 301),
            (good.clone(), b"key", BODY, now - 301),
            (format!("t=1700000001,v1={EXPECTED}"), b"key", BODY, now),
            (format!("t=+1700000000,v1={EXPECTED}"), b"key", BODY, now),
            (
                format!("t=1700000000,t=1700000000,v1={EXPECTED}"),
                b"key",
                BODY,
                now,
            ),
            (format!("v1={EXPECTED}"), b"key", BODY, now),
            ("t=1700000000".to_owned(), b"key", BODY, now),
            ("t=1700000000,v1=not hex".to_owned(), b"key", BODY, now),
            (
                format!("t=1700000000,v1={}", &EXPECTED[..62]),
                b"key",
                BODY,
                now,
            ),
            (String::new(), b"key", BODY, now),
        ];
        for (header, key, body, now) in cases {
            assert!(
                !verify(key, &header, body, now, FIVE_MINUTES),
                "{header:?} with key {key:?} at {now}"
            );
        }
    }

    /// The signature covers the compressed bytes that travel, not the JSON inside them.
    #[test]
    fn signs_the_bytes_sent() {
        let compressed = crate::encode::gzip(BODY);
        let header = signature_header(b"key", 1_700_000_000, &compressed);
        assert!(verify(
            b"key",
            &header,
            &compressed,
            1_700_000_000,
            FIVE_MINUTES
        ));
        assert!(!verify(b"key", &header, BODY, 1_700_000_000, FIVE_MINUTES));
    }
}
