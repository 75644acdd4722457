//! What to do with a failed delivery, and how long to wait before trying again.
//!
//! [`classify`] maps an HTTP status to an [`Action`]. Defaults: 2xx is delivered; the statuses in
//! `retry.permanent_statuses` (400, 404, 405, 410, 411, 413, 414, 415, 422 unless configured)
//! can never succeed, so the event goes to the dead-letter topic at once; every other status,
//! and every network error or timeout, is retried. 401 and 403 are always retried, never
//! dead-lettered: a revoked token must raise an alarm and hold events back until it is fixed,
//! not silently divert them (configuration validation refuses them as permanent).
//!
//! [`Backoff`] is capped exponential backoff with full jitter: the n-th retry waits a uniformly
//! random time in `[0, min(cap, initial * 2^n)]`, which spreads the retries of many workers after
//! a shared outage. A `Retry-After` answer raises the wait to what the server asked for (capped).

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Default statuses that can never succeed by retrying.
pub const DEFAULT_PERMANENT_STATUSES: [u16; 9] = [400, 404, 405, 410, 411, 413, 414, 415, 422];

/// Statuses that must never be classified permanent: credentials problems are fixed by people.
pub const ALWAYS_RETRIED: [u16; 2] = [401, 403];

/// What to do after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 2xx: the event is delivered.
    Delivered,
    /// Try again after a backoff.
    Retry,
    /// Try again, and raise the authentication alarm (401/403).
    RetryAuthFailure,
    /// Send to the dead-letter topic now.
    DeadLetter,
}

/// Classifies an HTTP status; `permanent` lists the statuses that are dead-lettered at once.
pub fn classify(status: u16, permanent: &[u16]) -> Action {
    match status {
        200..=299 => Action::Delivered,
        401 | 403 => Action::RetryAuthFailure,
        _ if permanent.contains(&status) => Action::DeadLetter,
        _ => Action::Retry,
    }
}

/// Backoff state of one delivery.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff.
    pub fn new(initial: Duration, cap: Duration) -> Backoff {
        Backoff {
            initial,
            cap,
            attempt: 0,
        }
    }

    /// Upper bound of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// The next delay: full jitter under the ceiling, at least `retry_after` (both capped).
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let jittered =
            Duration::from_secs_f64(rand::rng().random_range(0.0..=ceiling.as_secs_f64()));
        jittered.max(retry_after.unwrap_or_default()).min(self.cap)
    }

    /// Retries so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Parses `Retry-After` as delta-seconds or an HTTP date, relative to `now`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn classification_table() {
        let permanent = DEFAULT_PERMANENT_STATUSES;
        let table = [
            (200, Action::Delivered),
            (201, Action::Delivered),
            (204, Action::Delivered),
            (299, Action::Delivered),
            (301, Action::Retry),
            (400, Action::DeadLetter),
            (401, Action::RetryAuthFailure),
            (403, Action::RetryAuthFailure),
            (404, Action::DeadLetter),
            (408, Action::Retry),
            (409, Action::Retry),
            (413, Action::DeadLetter),
            (422, Action::DeadLetter),
            (429, Action::Retry),
            (500, Action::Retry),
            (502, Action::Retry),
            (503, Action::Retry),
            (504, Action::Retry),
        ];
        for (status, expected) in table {
            assert_eq!(classify(status, &permanent), expected, "status {status}");
        }
        // Configurable, but 401/403 stay retried whatever the list says.
        assert_eq!(classify(409, &[409]), Action::DeadLetter);
        assert_eq!(classify(400, &[]), Action::Retry);
        assert_eq!(classify(401, &[401]), Action::RetryAuthFailure);
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.next_delay(None);
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.attempts(), 6);
    }

    #[test]
    fn delays_stay_within_jitter_bounds_and_honour_retry_after() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..100 {
            let ceiling = backoff.ceiling();
            assert!(backoff.next_delay(None) <= ceiling);
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(3600))),
            Duration::from_secs(5),
            "capped"
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").unwrap();
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(with("120"), Some(Duration::from_secs(120)));
        assert_eq!(with(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            with("Sun, 22 Nov 2026 10:00:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            with("Sun, 22 Nov 2026 09:00:00 GMT"),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(with("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
