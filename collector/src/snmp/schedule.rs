//! Pure scheduling decisions: when each target is due, what a poll walks,
//! and what happens when a poll overruns. Times are milliseconds on any
//! monotonic clock.

/// Per-target schedule state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub interval_ms: u64,
    pub next_due: u64,
    pub running: bool,
    /// Polls started (decides the names refresh).
    pub polls: u64,
    /// Due times passed while the previous poll still ran (skipped).
    pub overruns: u64,
}

/// First-poll offset of a target inside its interval: spread by a hash of
/// the name so that many targets do not all fire at the same instant, but
/// within the first tenth of the interval (capped at 5 s) so a new
/// collector has data soon.
pub fn first_offset(name: &str, interval_ms: u64) -> u64 {
    // FNV-1a: a stable, dependency-free spread (not security relevant).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let window = (interval_ms / 10).min(5_000);
    if window == 0 {
        0
    } else {
        h % window
    }
}

/// The schedule of all targets.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    pub slots: Vec<Slot>,
}

impl Schedule {
    pub fn new(targets: &[(&str, u64)], now: u64) -> Self {
        Self {
            slots: targets
                .iter()
                .map(|(name, interval_s)| {
                    let interval_ms = interval_s.saturating_mul(1000).max(1);
                    Slot {
                        interval_ms,
                        next_due: now + first_offset(name, interval_ms),
                        running: false,
                        polls: 0,
                        overruns: 0,
                    }
                })
                .collect(),
        }
    }

    /// Targets to start now, marked running; a due target whose previous
    /// poll still runs is skipped to its next due time (counted).
    pub fn take_due(&mut self, now: u64) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.next_due > now {
                continue;
            }
            // Keep the phase: the next due time after `now` on the grid.
            let behind = (now - s.next_due) / s.interval_ms + 1;
            s.next_due += behind * s.interval_ms;
            if s.running {
                s.overruns += behind;
                continue;
            }
            s.overruns += behind - 1;
            s.running = true;
            s.polls += 1;
            out.push(i);
        }
        out
    }

    /// A poll ended (success, error or deadline).
    pub fn finished(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i) {
            s.running = false;
        }
    }

    /// The earliest due time (the scheduler sleeps until then).
    pub fn next_wake(&self) -> Option<u64> {
        self.slots.iter().map(|s| s.next_due).min()
    }
}

/// Whether the poll number `poll` (1 = first) walks the names: the first
/// poll and every `refresh`-th after it.
pub fn names_due(poll: u64, refresh: u64) -> bool {
    poll <= 1 || (poll - 1).is_multiple_of(refresh.max(1))
}
