//! The reconcile loop's two bounds, as pure state machines over
//! `tokio::time::Instant` (tested with a paused clock):
//!
//! - [`Coalescer`]: kernel events mark the state dirty; one reconcile runs
//!   when events have been quiet for `quiet`, or at the latest `max_delay`
//!   after the first one. A burst of thousands of events is a handful of
//!   plans.
//! - [`Repairs`]: repairs are rate-limited with exponential back-off, and
//!   `fight_threshold` repairs within `window` mean another manager keeps
//!   undoing them: repairs stop (reported as a fight) until a new document
//!   is applied or the drift goes away by itself. Repairs count towards a
//!   fight per drift (a key: the operations the repair needed), so several
//!   different mistakes in a row are not a fight; the back-off is shared.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

/// Debounces events into reconciles.
#[derive(Debug, Clone)]
pub struct Coalescer {
    quiet: Duration,
    max_delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
    pending: u64,
}

impl Coalescer {
    /// A coalescer waiting `quiet` after the last event, `max_delay` after
    /// the first at most.
    pub fn new(quiet: Duration, max_delay: Duration) -> Self {
        Self {
            quiet,
            max_delay,
            first: None,
            last: None,
            pending: 0,
        }
    }

    /// An event arrived at `now`.
    pub fn note(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.pending += 1;
    }

    /// When the next reconcile is due (None: nothing pending).
    pub fn deadline(&self) -> Option<Instant> {
        match (self.first, self.last) {
            (Some(f), Some(l)) => Some((l + self.quiet).min(f + self.max_delay)),
            _ => None,
        }
    }

    /// Whether a reconcile is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// Starts a reconcile: returns how many events it covers.
    pub fn take(&mut self) -> u64 {
        self.first = None;
        self.last = None;
        std::mem::take(&mut self.pending)
    }
}

/// Back-off and fight detection settings.
#[derive(Debug, Clone, Copy)]
pub struct RepairLimits {
    /// Wait after the second repair; doubles with each further one.
    pub initial: Duration,
    /// Longest wait between repairs.
    pub max: Duration,
    /// This many repairs within `window` is a fight.
    pub fight_threshold: usize,
    /// The window, and how long without repairs resets the back-off.
    pub window: Duration,
}

impl Default for RepairLimits {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            fight_threshold: 5,
            window: Duration::from_secs(120),
        }
    }
}

/// What to do about a drift now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Repair now.
    Repair,
    /// Back-off: repair at this instant at the earliest.
    Wait(Instant),
    /// A fight was detected: do not repair, only report.
    Suspended,
}

/// Rate limit, back-off and fight detection for repairs.
#[derive(Debug, Clone)]
pub struct Repairs {
    limits: RepairLimits,
    recent: VecDeque<(Instant, u64)>,
    last_key: u64,
    delay: Duration,
    next: Option<Instant>,
    fighting: bool,
    /// While fighting: since when no drift has been seen.
    calm_since: Option<Instant>,
}

impl Repairs {
    /// Fresh state.
    pub fn new(limits: RepairLimits) -> Self {
        Self {
            limits,
            recent: VecDeque::new(),
            last_key: 0,
            delay: Duration::ZERO,
            next: None,
            fighting: false,
            calm_since: None,
        }
    }

    fn prune(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.limits.window)
        {
            self.recent.pop_front();
        }
        // Quiet for well over the back-off since the last repair: a new,
        // unrelated drift is repaired at once (the repairs still count
        // towards a fight within the window).
        let quiet = self.delay * 2 + self.limits.initial;
        if self
            .recent
            .back()
            .is_none_or(|(last, _)| now.duration_since(*last) > quiet)
        {
            self.delay = Duration::ZERO;
            self.next = None;
        }
    }

    /// May a drift be repaired at `now`? (Called when drift is seen.)
    pub fn decide(&mut self, now: Instant) -> Decision {
        self.prune(now);
        if self.fighting {
            // The fight ends once no drift was seen for `max`; a drift seen
            // earlier means the other manager is still at it.
            match self.calm_since.take() {
                Some(c) if now.duration_since(c) >= self.limits.max => self.fighting = false,
                _ => return Decision::Suspended,
            }
        }
        match self.next {
            Some(t) if now < t => Decision::Wait(t),
            _ => Decision::Repair,
        }
    }

    /// A repair of the drift `key` ran at `now`. Returns true when this
    /// repair makes it a fight (reported once; repairs are suspended from
    /// here).
    pub fn repaired(&mut self, now: Instant, key: u64) -> bool {
        self.prune(now);
        self.recent.push_back((now, key));
        self.last_key = key;
        self.delay = if self.delay.is_zero() {
            self.limits.initial
        } else {
            (self.delay * 2).min(self.limits.max)
        };
        self.next = Some(now + self.delay);
        if !self.fighting && self.recent() >= self.limits.fight_threshold {
            self.fighting = true;
            return true;
        }
        false
    }

    /// The observation matches the document (nothing to repair). During a
    /// fight this starts the calm period that ends it (right after a repair
    /// the other manager may simply not have struck yet).
    pub fn converged(&mut self, now: Instant) {
        if self.fighting {
            self.calm_since.get_or_insert(now);
        }
    }

    /// A new document (or the same one re-applied): start afresh.
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    /// Whether repairs are suspended by a fight.
    pub fn fighting(&self) -> bool {
        self.fighting
    }

    /// Repairs of the last repaired drift within the window.
    pub fn recent(&self) -> usize {
        self.recent
            .iter()
            .filter(|(_, k)| *k == self.last_key)
            .count()
    }

    /// The current back-off delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{advance, sleep_until};

    const QUIET: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);

    /// Drives a coalescer the way the loop does: events arrive on a
    /// schedule, a reconcile runs whenever the deadline passes.
    async fn reconciles_for(events: &[Duration]) -> Vec<u64> {
        let start = Instant::now();
        let mut c = Coalescer::new(QUIET, MAX);
        let mut runs = Vec::new();
        for at in events {
            let t = start + *at;
            while let Some(d) = c.deadline().filter(|d| *d <= t) {
                sleep_until(d).await;
                runs.push(c.take());
            }
            sleep_until(t).await;
            c.note(Instant::now());
        }
        if let Some(d) = c.deadline() {
            sleep_until(d).await;
            runs.push(c.take());
        }
        runs
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_4000_events_is_one_reconcile() {
        // 4000 events within 40 ms (what `ip -batch` produces).
        let events: Vec<Duration> = (0..4000).map(|i| Duration::from_micros(i * 10)).collect();
        let runs = reconciles_for(&events).await;
        assert_eq!(runs, vec![4000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_is_bounded_by_max_delay() {
        // One event every 50 ms for 10 s: never quiet, so max_delay rules:
        // about one reconcile per second, not 200.
        let events: Vec<Duration> = (0..200).map(|i| Duration::from_millis(i * 50)).collect();
        let runs = reconciles_for(&events).await;
        assert!((10..=11).contains(&runs.len()), "{runs:?}");
        assert_eq!(runs.iter().sum::<u64>(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn separate_events_each_get_a_reconcile_after_the_quiet_time() {
        let start = Instant::now();
        let mut c = Coalescer::new(QUIET, MAX);
        c.note(Instant::now());
        assert_eq!(c.deadline(), Some(start + QUIET));
        advance(Duration::from_millis(99)).await;
        assert!(!c.due(Instant::now()));
        advance(Duration::from_millis(1)).await;
        assert!(c.due(Instant::now()));
        assert_eq!(c.take(), 1);
        assert_eq!(c.deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn back_off_doubles_and_a_fight_suspends_repairs() {
        let limits = RepairLimits {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
            fight_threshold: 5,
            window: Duration::from_secs(60),
        };
        let mut r = Repairs::new(limits);
        let mut waits = Vec::new();
        let mut fight_at = None;
        // Another manager undoes every repair at once: drift is seen again
        // immediately after each one.
        for n in 1..=10 {
            match r.decide(Instant::now()) {
                Decision::Repair => {
                    if r.repaired(Instant::now(), 1) {
                        fight_at = Some(n);
                    }
                }
                Decision::Wait(t) => {
                    waits.push(t - Instant::now());
                    sleep_until(t).await;
                }
                Decision::Suspended => break,
            }
        }
        assert_eq!(
            waits,
            [1, 2, 4, 4].map(Duration::from_secs).to_vec(),
            "exponential, capped"
        );
        assert_eq!(fight_at, Some(9), "5th repair (9th decision) is the fight");
        assert!(r.fighting());
        assert_eq!(r.decide(Instant::now()), Decision::Suspended);
        // Suspended stays suspended while the drift lasts, however long.
        advance(Duration::from_secs(3600)).await;
        assert_eq!(r.decide(Instant::now()), Decision::Suspended);
        // Calm for a moment (right after a repair, before the other manager
        // strikes again): still a fight.
        r.converged(Instant::now());
        advance(Duration::from_secs(1)).await;
        assert_eq!(r.decide(Instant::now()), Decision::Suspended);
        // The drift goes away for longer than the longest back-off: repairs
        // resume, from scratch since the window passed.
        r.converged(Instant::now());
        advance(limits.max).await;
        assert_eq!(r.decide(Instant::now()), Decision::Repair);
        assert_eq!(r.delay(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn occasional_drift_is_repaired_at_once_every_time() {
        let mut r = Repairs::new(RepairLimits::default());
        for _ in 0..20 {
            assert_eq!(r.decide(Instant::now()), Decision::Repair);
            assert!(!r.repaired(Instant::now(), 1));
            // An operator mistake once every 10 minutes is no fight.
            advance(Duration::from_secs(600)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unrelated_drifts_seconds_apart_are_not_delayed() {
        let mut r = Repairs::new(RepairLimits::default());
        for _ in 0..3 {
            assert_eq!(r.decide(Instant::now()), Decision::Repair);
            assert!(!r.repaired(Instant::now(), 1));
            advance(Duration::from_secs(4)).await;
        }
        assert_eq!(r.recent(), 3, "still counted for fight detection");
    }

    #[tokio::test(start_paused = true)]
    async fn different_drifts_in_a_row_are_no_fight() {
        let mut r = Repairs::new(RepairLimits::default());
        for key in 0..20 {
            if let Decision::Wait(t) = r.decide(Instant::now()) {
                sleep_until(t).await;
            }
            assert_eq!(r.decide(Instant::now()), Decision::Repair);
            assert!(!r.repaired(Instant::now(), key), "drift {key}");
        }
        assert!(!r.fighting());
    }

    #[tokio::test(start_paused = true)]
    async fn reset_forgets_a_fight() {
        let mut r = Repairs::new(RepairLimits {
            fight_threshold: 2,
            ..RepairLimits::default()
        });
        r.repaired(Instant::now(), 1);
        assert!(r.repaired(Instant::now(), 1));
        assert_eq!(r.decide(Instant::now()), Decision::Suspended);
        r.reset();
        assert_eq!(r.decide(Instant::now()), Decision::Repair);
        assert_eq!(r.recent(), 0);
    }
}
