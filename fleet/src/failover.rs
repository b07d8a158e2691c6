//! The controller failover list: ordered, sticky, jittered back-off,
//! fail-back after a delay (pure; time is passed in).
//!
//! - The agent tries the controllers in list order, starting with the
//!   first (the preferred one).
//! - While connected it stays on its controller (sticky), even when an
//!   earlier one comes back.
//! - A failed attempt moves to the next controller; after a whole round of
//!   failures it waits a back-off that doubles per round up to a maximum,
//!   with ±50 % jitter (so a restarted controller is not hit by every
//!   agent at once).
//! - Fail-back: connected to a controller other than the first, the agent
//!   checks the preferred one every `failback_check`; once it has answered
//!   continuously for `failback_after`, the agent moves back to it.
//!   (SaltStack's failover never failed back and retried in dead loops:
//!   the anchors in the research notes.)

use std::time::Duration;

/// Settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverPolicy {
    /// First back-off after a round of failures.
    pub backoff_min: Duration,
    /// Largest back-off.
    pub backoff_max: Duration,
    /// Jitter, as a fraction of the back-off (0.5: ±50 %).
    pub jitter: f64,
    /// The preferred controller must answer this long before fail-back.
    pub failback_after: Duration,
    /// How often it is checked meanwhile.
    pub failback_check: Duration,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            jitter: 0.5,
            failback_after: Duration::from_secs(60),
            failback_check: Duration::from_secs(5),
        }
    }
}

/// Where the agent is in the list.
#[derive(Debug, Clone)]
pub struct Failover {
    n: usize,
    policy: FailoverPolicy,
    current: usize,
    failures_in_round: usize,
    rounds: u32,
    /// Since when (ms, caller's clock) the preferred one answers.
    preferred_up_since: Option<u64>,
}

impl Failover {
    /// A list of `n` controllers (n >= 1).
    pub fn new(n: usize, policy: FailoverPolicy) -> Self {
        Self {
            n: n.max(1),
            policy,
            current: 0,
            failures_in_round: 0,
            rounds: 0,
            preferred_up_since: None,
        }
    }

    /// The controller to use (or being used).
    pub fn current(&self) -> usize {
        self.current
    }

    /// Connected to the current one: stays there; back-off reset.
    pub fn connected(&mut self) {
        self.failures_in_round = 0;
        self.rounds = 0;
        if self.current == 0 {
            self.preferred_up_since = None;
        }
    }

    /// The current one failed (could not connect, or the stream broke):
    /// moves to the next; returns how long to wait before trying it
    /// (`rand01` in [0, 1) gives the jitter).
    pub fn failed(&mut self, rand01: f64) -> Duration {
        self.current = (self.current + 1) % self.n;
        self.failures_in_round += 1;
        if self.failures_in_round < self.n {
            return Duration::ZERO;
        }
        // A whole round failed.
        self.failures_in_round = 0;
        self.rounds = self.rounds.saturating_add(1);
        let base = self
            .policy
            .backoff_min
            .saturating_mul(1u32 << (self.rounds - 1).min(16))
            .min(self.policy.backoff_max);
        let j = 1.0 + self.policy.jitter * (2.0 * rand01.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(j.max(0.0))
    }

    /// Whether fail-back checks are due at all (connected elsewhere).
    pub fn wants_failback(&self) -> bool {
        self.current != 0
    }

    /// A fail-back check of the preferred controller at `now_ms`: returns
    /// true when the agent should move back now.
    pub fn preferred_checked(&mut self, answered: bool, now_ms: u64) -> bool {
        if self.current == 0 {
            return false;
        }
        if !answered {
            self.preferred_up_since = None;
            return false;
        }
        let since = *self.preferred_up_since.get_or_insert(now_ms);
        if now_ms.saturating_sub(since) >= self.policy.failback_after.as_millis() as u64 {
            self.current = 0;
            self.preferred_up_since = None;
            self.failures_in_round = 0;
            return true;
        }
        false
    }

    /// The policy.
    pub fn policy(&self) -> &FailoverPolicy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> FailoverPolicy {
        FailoverPolicy {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            jitter: 0.5,
            failback_after: Duration::from_secs(60),
            failback_check: Duration::from_secs(5),
        }
    }

    #[test]
    fn ordered_then_backoff_doubles_with_jitter_and_cap() {
        let mut f = Failover::new(3, p());
        assert_eq!(f.current(), 0);
        assert_eq!(f.failed(0.5), Duration::ZERO);
        assert_eq!(f.current(), 1);
        assert_eq!(f.failed(0.5), Duration::ZERO);
        assert_eq!(f.current(), 2);
        // A round failed: 1 s (no jitter at 0.5), back to the first.
        assert_eq!(f.failed(0.5), Duration::from_secs(1));
        assert_eq!(f.current(), 0);
        f.failed(0.5);
        f.failed(0.5);
        assert_eq!(f.failed(0.5), Duration::from_secs(2));
        for _ in 0..3 * 5 {
            f.failed(0.5);
        }
        assert_eq!(f.failed(0.5), Duration::ZERO);
        f.failed(0.5);
        assert_eq!(f.failed(0.5), Duration::from_secs(8), "capped");
        // Jitter: ±50 %.
        let mut g = Failover::new(1, p());
        assert_eq!(g.failed(0.0), Duration::from_millis(500));
        assert_eq!(g.failed(0.999_999_9).as_millis(), 2999);
    }

    #[test]
    fn sticky_and_failback_after_delay() {
        let mut f = Failover::new(2, p());
        f.failed(0.5);
        assert_eq!(f.current(), 1);
        f.connected();
        assert!(f.wants_failback());
        // The preferred one answers, but not for long enough: sticky.
        assert!(!f.preferred_checked(true, 0));
        assert!(!f.preferred_checked(true, 30_000));
        // A miss restarts the wait.
        assert!(!f.preferred_checked(false, 40_000));
        assert!(!f.preferred_checked(true, 45_000));
        assert!(!f.preferred_checked(true, 100_000));
        assert!(f.preferred_checked(true, 105_000));
        assert_eq!(f.current(), 0);
        assert!(!f.wants_failback());
        // A connection resets the back-off.
        f.failed(0.5);
        f.failed(0.5);
        f.connected();
        f.failed(0.5);
        assert_eq!(f.failed(0.5), Duration::from_secs(1));
    }
}
