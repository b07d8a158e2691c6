//! A round-robin database in the manner of rrdtool, in memory, with no C.
//!
//! One [`Rrd`] is what rrdtool keeps in one `.rrd` file: a base step, data
//! sources ([`DsDef`]: GAUGE, COUNTER 32/64, DERIVE, ABSOLUTE with heartbeat
//! and min/max) and round-robin archives ([`RraDef`]: AVERAGE, MIN, MAX, LAST
//! with steps, rows, xff). All memory is allocated at creation
//! ([`Rrd::memory_bytes`]); updates never allocate.
//!
//! The update algorithm is rrdtool 1.7's (`rrd_update.c`: primary data
//! points with unknown seconds, consolidated data points with the xff rule,
//! bulk fill of skipped rows), and `tests/rrd_vs_rrdtool.rs` checks it row
//! for row against the `rrdtool` binary. Deliberate differences, each covered
//! by a test:
//!
//! 1. **Counter resets** (COUNTER only). rrdtool treats any decrease as a
//!    wrap, adding 2^32 (then 2^64), so an agent reboot becomes a spike of
//!    up to 2^64 bytes. Our rule ([`counter_delta`]): a decrease of a
//!    64-bit counter is always a reset (a real 64-bit wrap takes years at
//!    400 Gb/s); a decrease of a 32-bit counter is a wrap only when the
//!    wrapped difference `2^32 - last + new` is below 2^31 (the counter
//!    moved less than half its range, i.e. `last` was near the top and
//!    `new` near zero), otherwise a reset. A reset makes the interval that
//!    contains it *unknown* and the new value the baseline for the next.
//! 2. Times are whole seconds (rrdtool also accepts microseconds).
//! 3. Update values are typed ([`Value`]): COUNTER/DERIVE take integers
//!    (as rrdtool requires), GAUGE/ABSOLUTE integers or floats.
//! 4. [`Rrd::fetch`] chooses the archive by its own documented rule, not
//!    rrdtool fetch's (which is not part of the consolidated rows).

pub mod serial;

use std::fmt;

use serde::{Deserialize, Serialize};

/// Data source type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DsType {
    Gauge,
    /// A 32-bit counter (SNMP Counter32): decreases may be wraps.
    Counter32,
    /// A 64-bit counter: decreases are resets.
    Counter64,
    Derive,
    Absolute,
}

/// One data source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DsDef {
    pub name: String,
    pub kind: DsType,
    /// Seconds without an update after which the value is unknown.
    pub heartbeat: u64,
    /// Rates below `min` or above `max` are unknown (`None`: no limit).
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Consolidation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cf {
    Average,
    Min,
    Max,
    Last,
}

impl fmt::Display for Cf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cf::Average => "AVERAGE",
            Cf::Min => "MIN",
            Cf::Max => "MAX",
            Cf::Last => "LAST",
        })
    }
}

/// One round-robin archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RraDef {
    pub cf: Cf,
    /// Primary data points per row.
    pub steps: u64,
    pub rows: usize,
    /// Fraction of a row's PDPs that may be unknown with the row still known.
    pub xff: f64,
}

/// The shape of an RRD, fixed at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RrdDef {
    /// Base step in seconds (rrdtool `--step`).
    pub step: u64,
    pub ds: Vec<DsDef>,
    pub rras: Vec<RraDef>,
}

/// Errors of creation, update and fetch.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RrdError {
    #[error("invalid definition: {0}")]
    Definition(String),
    #[error("update time {time} is not after the last update {last}")]
    Time { time: u64, last: u64 },
    #[error("expected {expected} values, got {got}")]
    Arity { expected: usize, got: usize },
    #[error("data source {ds} ({kind:?}) needs an integer value")]
    NotInteger { ds: String, kind: DsType },
    #[error("no {0} archive")]
    NoArchive(Cf),
    #[error("bad range: start {start} must be before end {end}")]
    Range { start: u64, end: u64 },
    #[error("{rows} rows at {step} s resolution exceed the limit of {max}: ask for a shorter range or a coarser resolution")]
    TooManyRows { rows: u64, step: u64, max: u64 },
}

/// An update value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// rrdtool's `U`.
    Unknown,
    Int(i128),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v as i128)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

/// The delta of a COUNTER between two readings under our reset rule (see the
/// module doc): `Some(delta)` for an increase or a wrap, `None` for a reset.
pub fn counter_delta(last: i128, new: i128, kind: DsType) -> Option<i128> {
    if new >= last {
        return Some(new - last);
    }
    const W32: i128 = 1 << 32;
    if kind == DsType::Counter32 && (0..W32).contains(&last) && (0..W32).contains(&new) {
        let wrapped = W32 - last + new;
        if wrapped < (1 << 31) {
            return Some(wrapped);
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PdpPrep {
    /// Last integer reading of a COUNTER/DERIVE (`None`: rrdtool's "U").
    pub(crate) last_ds: Option<i128>,
    /// Accumulated rate*seconds of the current PDP.
    pub(crate) val: f64,
    pub(crate) unkn_sec: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CdpPrep {
    pub(crate) val: f64,
    pub(crate) unkn_pdp: u64,
    pub(crate) primary: f64,
    pub(crate) secondary: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rra {
    pub(crate) cur_row: usize,
    /// `rows * ds` values, row-major.
    pub(crate) data: Vec<f64>,
    /// One per DS.
    pub(crate) cdp: Vec<CdpPrep>,
}

/// A round-robin database.
#[derive(Debug, Clone, PartialEq)]
pub struct Rrd {
    def: RrdDef,
    last_up: u64,
    pub(crate) pdp: Vec<PdpPrep>,
    pub(crate) rras: Vec<Rra>,
    /// Scratch for one update, sized at creation.
    pdp_new: Vec<f64>,
    pdp_open: Vec<f64>,
    pdp_temp: Vec<f64>,
}

/// Rows of one archive between two times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fetched {
    pub cf: Cf,
    /// Seconds per row.
    pub step: u64,
    /// End time of the first row (a row at time T covers (T-step, T]).
    pub first: u64,
    /// `rows[i][ds]`, NaN for unknown.
    pub rows: Vec<Vec<f64>>,
}

impl Fetched {
    /// (end time, values) of each row.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[f64])> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, r)| (self.first + i as u64 * self.step, r.as_slice()))
    }
}

impl RrdDef {
    /// Checks the definition (rrdtool's create rules, plus sane bounds).
    pub fn validate(&self) -> Result<(), RrdError> {
        let bad = |m: String| Err(RrdError::Definition(m));
        if self.step == 0 {
            return bad("step must be at least 1 second".into());
        }
        if self.ds.is_empty() {
            return bad("at least one data source".into());
        }
        if self.rras.is_empty() {
            return bad("at least one archive".into());
        }
        for (i, d) in self.ds.iter().enumerate() {
            if d.heartbeat == 0 {
                return bad(format!("ds[{i}] {}: heartbeat must be at least 1", d.name));
            }
            if let (Some(a), Some(b)) = (d.min, d.max) {
                if a >= b {
                    return bad(format!("ds[{i}] {}: min {a} must be below max {b}", d.name));
                }
            }
        }
        for (i, r) in self.rras.iter().enumerate() {
            if r.steps == 0 || r.rows == 0 {
                return bad(format!("rra[{i}]: steps and rows must be at least 1"));
            }
            if !(0.0..1.0).contains(&r.xff) {
                return bad(format!("rra[{i}]: xff {} must be in [0, 1)", r.xff));
            }
            if r.rows
                .checked_mul(self.ds.len())
                .is_none_or(|n| n > 1 << 28)
            {
                return bad(format!(
                    "rra[{i}]: {} rows x {} ds is too large",
                    r.rows,
                    self.ds.len()
                ));
            }
        }
        Ok(())
    }

    /// Bytes an [`Rrd`] of this shape occupies (the archives' rows and the
    /// per-DS state), independent of updates.
    pub fn memory_bytes(&self) -> usize {
        let n = self.ds.len();
        let rows: usize = self.rras.iter().map(|r| r.rows * n * 8).sum();
        std::mem::size_of::<Rrd>()
            + rows
            + n * (std::mem::size_of::<PdpPrep>() + 16)
            + self.rras.len() * (std::mem::size_of::<Rra>() + n * std::mem::size_of::<CdpPrep>())
    }
}

impl Rrd {
    /// Creates an empty RRD whose last update is `start` (rrdtool `--start`).
    pub fn new(def: RrdDef, start: u64) -> Result<Self, RrdError> {
        def.validate()?;
        let step = def.step;
        let unkn_sec = start % step;
        let pdp = def
            .ds
            .iter()
            .map(|_| PdpPrep {
                last_ds: None,
                val: 0.0,
                unkn_sec,
            })
            .collect();
        let n = def.ds.len();
        let rras = def
            .rras
            .iter()
            .map(|r| Rra {
                // rrdtool randomises cur_row; the position is not observable in rows.
                cur_row: 0,
                data: vec![f64::NAN; r.rows * n],
                cdp: (0..n)
                    .map(|_| CdpPrep {
                        val: f64::NAN,
                        unkn_pdp: ((start - unkn_sec) % (step * r.steps)) / step,
                        primary: f64::NAN,
                        secondary: f64::NAN,
                    })
                    .collect(),
            })
            .collect();
        Ok(Self {
            pdp_new: vec![0.0; n],
            pdp_open: vec![0.0; n],
            pdp_temp: vec![0.0; n],
            def,
            last_up: start,
            pdp,
            rras,
        })
    }

    /// Creates an empty RRD whose last update is `start` and whose
    /// COUNTER/DERIVE data sources already hold a reading taken at `start`
    /// (`baseline`, one value per data source; others are ignored), so the
    /// first update counts from it instead of becoming the baseline.
    ///
    /// rrdtool has no such option (its first update after `create` only sets
    /// the baseline); the collector needs it because a subnet's cumulative
    /// total is known to be zero when its series is created: without it every
    /// sample of the first flush interval would be lost (docs/collector.md,
    /// "Accounting continuity").
    pub fn with_baseline(def: RrdDef, start: u64, baseline: &[Value]) -> Result<Self, RrdError> {
        let mut r = Self::new(def, start)?;
        if baseline.len() != r.def.ds.len() {
            return Err(RrdError::Arity {
                expected: r.def.ds.len(),
                got: baseline.len(),
            });
        }
        for ((d, p), v) in r.def.ds.iter().zip(&mut r.pdp).zip(baseline) {
            if let (DsType::Counter32 | DsType::Counter64 | DsType::Derive, Value::Int(x)) =
                (d.kind, v)
            {
                p.last_ds = Some(*x);
            }
        }
        Ok(r)
    }

    pub fn def(&self) -> &RrdDef {
        &self.def
    }

    /// Time of the last update.
    pub fn last_update(&self) -> u64 {
        self.last_up
    }

    /// Bytes this RRD occupies; fixed at creation.
    pub fn memory_bytes(&self) -> usize {
        self.def.memory_bytes()
    }

    /// `rrdtool update FILE t:v1:v2...`.
    pub fn update(&mut self, t: u64, values: &[Value]) -> Result<(), RrdError> {
        let n = self.def.ds.len();
        if values.len() != n {
            return Err(RrdError::Arity {
                expected: n,
                got: values.len(),
            });
        }
        if t <= self.last_up {
            return Err(RrdError::Time {
                time: t,
                last: self.last_up,
            });
        }
        // Type check first, so an error leaves the RRD untouched.
        for (d, v) in self.def.ds.iter().zip(values) {
            if matches!(
                d.kind,
                DsType::Counter32 | DsType::Counter64 | DsType::Derive
            ) && matches!(v, Value::Float(_))
            {
                return Err(RrdError::NotInteger {
                    ds: d.name.clone(),
                    kind: d.kind,
                });
            }
        }
        let interval = (t - self.last_up) as f64;
        self.update_pdp_prep(values, interval);

        let step = self.def.step;
        let proc_pdp_st = self.last_up - self.last_up % step;
        let occu_pdp_age = t % step;
        let occu_pdp_st = t - occu_pdp_age;
        let (pre_int, post_int) = if occu_pdp_st > proc_pdp_st {
            ((occu_pdp_st - self.last_up) as f64, occu_pdp_age as f64)
        } else {
            (interval, 0.0)
        };
        let proc_pdp_cnt = proc_pdp_st / step;
        let elapsed = (occu_pdp_st - proc_pdp_st) / step;

        if elapsed == 0 {
            for (p, &new) in self.pdp.iter_mut().zip(&self.pdp_new) {
                if new.is_nan() {
                    p.unkn_sec += interval as u64;
                } else if p.val.is_nan() {
                    p.val = new;
                } else {
                    p.val += new;
                }
            }
        } else {
            let (mut interval, mut pre_int, mut elapsed, mut proc_pdp_cnt) =
                (interval, pre_int, elapsed, proc_pdp_cnt);
            let mut new = std::mem::take(&mut self.pdp_new);
            // rrdtool 1.7's "JKammler bugfix": when several PDPs close and the
            // first one was open, close it first with its share of the update.
            let sec_open = (pre_int as u64) % step;
            if elapsed > 1 && sec_open > 0 {
                let mut open = std::mem::take(&mut self.pdp_open);
                for (o, n) in open.iter_mut().zip(new.iter_mut()) {
                    if !n.is_nan() && interval > 0.0 {
                        *o = *n * sec_open as f64 / interval;
                        *n -= *o;
                    } else {
                        *o = f64::NAN;
                    }
                }
                let so = sec_open as f64;
                self.process_pdp_st(&open, so, so, 0.0, step);
                self.pdp_open = open;
                self.update_cdps(1, proc_pdp_cnt);
                interval -= so;
                pre_int -= so;
                elapsed -= 1;
                proc_pdp_cnt += 1;
            }
            self.process_pdp_st(&new, interval, pre_int, post_int, elapsed * step);
            self.pdp_new = new;
            self.update_cdps(elapsed, proc_pdp_cnt);
        }
        self.last_up = t;
        Ok(())
    }

    fn update_pdp_prep(&mut self, values: &[Value], interval: f64) {
        for (i, (d, v)) in self.def.ds.iter().zip(values).enumerate() {
            let p = &mut self.pdp[i];
            if (d.heartbeat as f64) < interval {
                p.last_ds = None;
            }
            let mut new = f64::NAN;
            if !matches!(v, Value::Unknown) && d.heartbeat as f64 >= interval {
                let rate;
                match d.kind {
                    DsType::Counter32 | DsType::Counter64 | DsType::Derive => {
                        let Value::Int(x) = *v else {
                            unreachable!("checked in update")
                        };
                        match p.last_ds {
                            Some(last) => {
                                let delta = if d.kind == DsType::Derive {
                                    Some(x - last)
                                } else {
                                    counter_delta(last, x, d.kind)
                                };
                                new = delta.map_or(f64::NAN, |d| d as f64);
                                rate = new / interval;
                            }
                            None => rate = f64::NAN,
                        }
                    }
                    DsType::Absolute => {
                        new = as_f64(*v);
                        rate = new / interval;
                    }
                    DsType::Gauge => {
                        new = as_f64(*v) * interval;
                        rate = new / interval;
                    }
                }
                if !rate.is_nan()
                    && (d.max.is_some_and(|m| rate > m) || d.min.is_some_and(|m| rate < m))
                {
                    new = f64::NAN;
                }
            }
            self.pdp_new[i] = new;
            p.last_ds = match v {
                Value::Int(x) => Some(*x),
                _ => None,
            };
        }
    }

    fn process_pdp_st(
        &mut self,
        pdp_new: &[f64],
        interval: f64,
        pre_int: f64,
        post_int: f64,
        diff_pdp_st: u64,
    ) {
        let half = self.def.step as f64 / 2.0;
        for (i, d) in self.def.ds.iter().enumerate() {
            let p = &mut self.pdp[i];
            let new = pdp_new[i];
            let mut pre_unknown = 0.0;
            if new.is_nan() {
                pre_unknown = pre_int;
            } else {
                if p.val.is_nan() {
                    p.val = 0.0;
                }
                p.val += new / interval * pre_int;
            }
            self.pdp_temp[i] = if interval > d.heartbeat as f64 || half < p.unkn_sec as f64 {
                f64::NAN
            } else {
                p.val / ((diff_pdp_st as f64 - p.unkn_sec as f64) - pre_unknown)
            };
            if new.is_nan() {
                p.unkn_sec = post_int as u64;
                p.val = f64::NAN;
            } else {
                p.unkn_sec = 0;
                p.val = new / interval * post_int;
            }
        }
    }

    fn update_cdps(&mut self, elapsed: u64, proc_pdp_cnt: u64) {
        let n = self.def.ds.len();
        for (r, rra) in self.def.rras.iter().zip(self.rras.iter_mut()) {
            let pdp_cnt = r.steps;
            let start_off = pdp_cnt - proc_pdp_cnt % pdp_cnt;
            let step_cnt = if start_off <= elapsed {
                (elapsed - start_off) / pdp_cnt + 1
            } else {
                0
            };
            for (ds, c) in rra.cdp.iter_mut().enumerate() {
                let t = self.pdp_temp[ds];
                if pdp_cnt == 1 {
                    c.primary = t;
                    c.secondary = t;
                } else {
                    update_cdp(c, r.cf, t, step_cnt, elapsed, start_off, pdp_cnt, r.xff);
                }
            }
            // Write rows: the first from primary, the fill-ins from secondary.
            // Of more than `rows` writes only the last `rows` survive.
            if step_cnt > 0 {
                let rows = r.rows as u64;
                let cur = rra.cur_row as u64;
                for k in step_cnt.saturating_sub(rows)..step_cnt {
                    let pos = ((cur + 1 + k % rows) % rows) as usize;
                    let row = &mut rra.data[pos * n..(pos + 1) * n];
                    for (ds, v) in row.iter_mut().enumerate() {
                        *v = if k == 0 {
                            rra.cdp[ds].primary
                        } else {
                            rra.cdp[ds].secondary
                        };
                    }
                }
                rra.cur_row = ((cur + step_cnt % rows) % rows) as usize;
            }
        }
    }

    /// End time of the newest row of archive `i`.
    pub fn rra_end(&self, i: usize) -> u64 {
        let s = self.def.step * self.def.rras[i].steps;
        self.last_up - self.last_up % s
    }

    /// All rows of archive `i`, oldest first (what `rrdtool dump` prints).
    pub fn rra_rows(&self, i: usize) -> Fetched {
        let r = &self.def.rras[i];
        let n = self.def.ds.len();
        let rra = &self.rras[i];
        let step = self.def.step * r.steps;
        let end = self.rra_end(i);
        let rows = (0..r.rows)
            .map(|k| {
                let idx = (rra.cur_row + 1 + k) % r.rows;
                rra.data[idx * n..(idx + 1) * n].to_vec()
            })
            .collect();
        Fetched {
            cf: r.cf,
            step,
            first: end - (r.rows as u64 - 1) * step,
            rows,
        }
    }

    /// Index of the archive `fetch` would use (see [`Rrd::fetch`]).
    pub fn choose_rra(&self, cf: Cf, start: u64, resolution: u64) -> Result<usize, RrdError> {
        let mut best: Option<(bool, u64, usize)> = None;
        for (i, r) in self.def.rras.iter().enumerate() {
            if r.cf != cf {
                continue;
            }
            let step = self.def.step * r.steps;
            let oldest = self.rra_end(i).saturating_sub(r.rows as u64 * step);
            let covers = oldest <= start;
            let dist = step.abs_diff(resolution);
            let better = match best {
                None => true,
                Some((bc, bd, bi)) => {
                    if covers != bc {
                        covers
                    } else if covers {
                        dist < bd
                    } else {
                        // Neither covers: the one reaching back furthest.
                        let bs = self.def.step * self.def.rras[bi].steps;
                        let b_oldest = self
                            .rra_end(bi)
                            .saturating_sub(self.def.rras[bi].rows as u64 * bs);
                        oldest < b_oldest
                    }
                }
            };
            if better {
                best = Some((covers, dist, i));
            }
        }
        best.map(|b| b.2).ok_or(RrdError::NoArchive(cf))
    }

    /// Rows of `cf` covering `(start, end]`: among the archives of that CF,
    /// those that reach back to `start` are preferred, and among them the one
    /// whose row duration is closest to `resolution` (ties: the finer);
    /// if none reaches back, the one that reaches furthest. Times are aligned
    /// to the row duration; rows outside the archive are NaN.
    pub fn fetch(
        &self,
        cf: Cf,
        start: u64,
        end: u64,
        resolution: u64,
    ) -> Result<Fetched, RrdError> {
        if start >= end {
            return Err(RrdError::Range { start, end });
        }
        let i = self.choose_rra(cf, start, resolution)?;
        let r = &self.def.rras[i];
        let n = self.def.ds.len();
        let step = self.def.step * r.steps;
        let rra_end = self.rra_end(i);
        let rra_first = rra_end - (r.rows as u64 - 1) * step;
        let first = start - start % step + step;
        let last = (end - end % step).max(first);
        let rra = &self.rras[i];
        let count = (last - first) / step + 1;
        if count > MAX_FETCH_ROWS {
            return Err(RrdError::TooManyRows {
                rows: count,
                step,
                max: MAX_FETCH_ROWS,
            });
        }
        let count = count as usize;
        let mut rows = Vec::with_capacity(count.min(1 << 20));
        let mut t = first;
        while t <= last {
            if t >= rra_first && t <= rra_end {
                let back = ((rra_end - t) / step) as usize;
                let idx = (rra.cur_row + r.rows - back % r.rows) % r.rows;
                rows.push(rra.data[idx * n..(idx + 1) * n].to_vec());
            } else {
                rows.push(vec![f64::NAN; n]);
            }
            t += step;
        }
        Ok(Fetched {
            cf,
            step,
            first,
            rows,
        })
    }
}

/// Most rows one fetch returns (bounds the memory a query can take).
pub const MAX_FETCH_ROWS: u64 = 200_000;

fn as_f64(v: Value) -> f64 {
    match v {
        Value::Int(i) => i as f64,
        Value::Float(f) => f,
        Value::Unknown => f64::NAN,
    }
}

/// rrdtool's `initialize_carry_over`: the start value of the next CDP from
/// the PDPs of this update that fall into it.
fn carry_over(t: f64, cf: Cf, elapsed: u64, start_off: u64, pdp_cnt: u64) -> f64 {
    let into = (elapsed - start_off) % pdp_cnt;
    if into == 0 || t.is_nan() {
        match cf {
            Cf::Max => f64::NEG_INFINITY,
            Cf::Min => f64::INFINITY,
            Cf::Average => 0.0,
            Cf::Last => f64::NAN,
        }
    } else if cf == Cf::Average {
        t * into as f64
    } else {
        t
    }
}

#[allow(clippy::too_many_arguments, reason = "mirrors rrdtool's update_cdp")]
fn update_cdp(
    c: &mut CdpPrep,
    cf: Cf,
    t: f64,
    step_cnt: u64,
    elapsed: u64,
    start_off: u64,
    pdp_cnt: u64,
    xff: f64,
) {
    if step_cnt > 0 {
        if t.is_nan() {
            c.unkn_pdp += start_off;
            c.secondary = f64::NAN;
        } else {
            c.secondary = t;
        }
        if c.unkn_pdp as f64 > pdp_cnt as f64 * xff {
            c.primary = f64::NAN;
        } else {
            c.primary = match cf {
                Cf::Average => {
                    let cum = if c.val.is_nan() { 0.0 } else { c.val };
                    let cur = if t.is_nan() { 0.0 } else { t };
                    (cum + cur * start_off as f64) / (pdp_cnt - c.unkn_pdp) as f64
                }
                Cf::Max => {
                    let cum = if c.val.is_nan() {
                        f64::NEG_INFINITY
                    } else {
                        c.val
                    };
                    let cur = if t.is_nan() { f64::NEG_INFINITY } else { t };
                    if cur > cum {
                        cur
                    } else {
                        cum
                    }
                }
                Cf::Min => {
                    let cum = if c.val.is_nan() { f64::INFINITY } else { c.val };
                    let cur = if t.is_nan() { f64::INFINITY } else { t };
                    if cur < cum {
                        cur
                    } else {
                        cum
                    }
                }
                Cf::Last => t,
            };
        }
        c.val = carry_over(t, cf, elapsed, start_off, pdp_cnt);
        c.unkn_pdp = if t.is_nan() {
            (elapsed - start_off) % pdp_cnt
        } else {
            0
        };
    } else if t.is_nan() {
        c.unkn_pdp += elapsed;
    } else if c.val.is_nan() {
        c.val = if cf == Cf::Average {
            t * elapsed as f64
        } else {
            t
        };
    } else {
        c.val = match cf {
            Cf::Average => c.val + t * elapsed as f64,
            Cf::Min => {
                if t < c.val {
                    t
                } else {
                    c.val
                }
            }
            Cf::Max => {
                if t > c.val {
                    t
                } else {
                    c.val
                }
            }
            Cf::Last => t,
        };
    }
}

#[cfg(test)]
mod tests;
