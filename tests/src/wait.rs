//! Waiting on conditions. Under TCG emulation a namespace teardown can stall
//! netlink for seconds, so tests never sleep a fixed time: they poll a
//! condition until a deadline and fail with what they were waiting for.

use std::time::{Duration, Instant};

/// Polls `cond` until it returns `true` or `timeout` passes; panics naming
/// `what` on timeout. Polls quickly at first, then backs off to 500 ms.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    if let Err(waited) = try_wait_until(timeout, &mut cond) {
        panic!("timed out after {waited:?} waiting for: {what}");
    }
}

/// Like [`wait_until`] but returns `Err(elapsed)` instead of panicking.
pub fn try_wait_until(
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<Duration, Duration> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        if cond() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(start.elapsed());
        }
        std::thread::sleep(delay.min(timeout.saturating_sub(start.elapsed())));
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// A default generous timeout, scaled by `LAB_TIME_SCALE` (set by the VM
/// runner under TCG emulation, where everything runs 10-20x slower).
pub fn scaled(base: Duration) -> Duration {
    let scale = std::env::var("LAB_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    base * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_condition_holds() {
        let mut n = 0;
        let r = try_wait_until(Duration::from_secs(5), || {
            n += 1;
            n >= 3
        });
        assert!(r.is_ok());
        assert_eq!(n, 3);
    }

    #[test]
    fn times_out_when_condition_never_holds() {
        let r = try_wait_until(Duration::from_millis(100), || false);
        let waited = r.expect_err("must time out");
        assert!(waited >= Duration::from_millis(100));
    }

    #[test]
    #[should_panic(expected = "waiting for: the impossible")]
    fn wait_until_panics_with_what() {
        wait_until("the impossible", Duration::from_millis(50), || false);
    }
}
