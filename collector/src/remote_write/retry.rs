//! Retry policy (pure): which responses are retried, and how long to wait.

use std::time::{Duration, SystemTime};

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the receiver has the samples.
    Sent,
    /// 5xx, 429, a timeout or a connection error: send the same batch again,
    /// after `after` if the receiver said so (Retry-After), else after the
    /// back-off.
    Retry { after: Option<Duration> },
    /// Any other status (4xx but 429, 1xx, 3xx): the receiver will never
    /// accept this batch; it is dropped and counted.
    Reject,
}

/// A Retry-After longer than this is cut to it (a receiver's typo must not
/// stop the sender for a day while the queue overflows).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Classifies a response status (with its Retry-After header, if any).
pub fn classify(status: u16, retry_after: Option<&str>, now: SystemTime) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        429 | 500..=599 => Outcome::Retry {
            after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        _ => Outcome::Reject,
    }
}

/// `Retry-After: <seconds>` or `Retry-After: <HTTP-date>` (RFC 9110 10.2.3),
/// capped at [`MAX_RETRY_AFTER`]; a date in the past is zero.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(s) = v.parse::<u64>() {
        Duration::from_secs(s)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// Capped exponential back-off: `min`, `2 min`, `4 min`, ... up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(classify(204, None, now), Outcome::Sent);
        assert_eq!(classify(200, Some("5"), now), Outcome::Sent);
        for s in [500, 502, 503, 599] {
            assert_eq!(classify(s, None, now), Outcome::Retry { after: None });
        }
        assert_eq!(
            classify(429, Some("7"), now),
            Outcome::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify(503, Some("junk"), now),
            Outcome::Retry { after: None }
        );
        for s in [400, 401, 403, 404, 413, 301, 100] {
            assert_eq!(classify(s, Some("1"), now), Outcome::Reject, "{s}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(42)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(42));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        let got: Vec<_> = (0..7).map(|_| b.next_delay()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000, 1000].map(ms).to_vec());
        b.reset();
        assert_eq!(b.next_delay(), ms(100));
    }
}
