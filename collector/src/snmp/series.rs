//! SNMP series in the collector's store, and what the API shows of each
//! target. Pure: fed with decoded polls ([`PollData`]) and a time.
//!
//! Series ids: `snmp/<target>/if/<ifIndex>` (COUNTER: in/out octets and
//! unicast packets, 64-bit from ifXTable or 32-bit from ifTable; in/out
//! errors and discards, 32-bit), `snmp/<target>/cpu/<hrDeviceIndex>`
//! (GAUGE load_percent), `snmp/<target>/storage/<hrStorageIndex>` (GAUGE
//! used_bytes, size_bytes; RAM is the row of kind 2) and
//! `snmp/<target>/sensor/<entPhysicalIndex>` (GAUGE celsius).
//!
//! Counter discontinuities follow the RRD's rule ([`crate::rrd`]): a
//! 64-bit counter going backwards is a reset (the interval is unknown), a
//! 32-bit one may wrap. An agent restart (sysUpTime going back) feeds
//! unknown for every counter of the target, so the next poll is a fresh
//! baseline instead of a bogus delta.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    config::SeriesConfig,
    rrd::{DsDef, DsType, Rrd, RrdDef, Value},
    snmp::decode::{Counter, IfNames, IfReading, StorageRow},
};

pub const IF_DS: [&str; 8] = [
    "in_octets",
    "out_octets",
    "in_ucast_pkts",
    "out_ucast_pkts",
    "in_errors",
    "out_errors",
    "in_discards",
    "out_discards",
];
pub const CPU_DS: [&str; 1] = ["load_percent"];
pub const STORAGE_DS: [&str; 2] = ["used_bytes", "size_bytes"];
pub const SENSOR_DS: [&str; 1] = ["celsius"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    If,
    Cpu,
    Storage,
    Sensor,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::If => "if",
            Kind::Cpu => "cpu",
            Kind::Storage => "storage",
            Kind::Sensor => "sensor",
        }
    }
    pub fn ds(self) -> &'static [&'static str] {
        match self {
            Kind::If => &IF_DS,
            Kind::Cpu => &CPU_DS,
            Kind::Storage => &STORAGE_DS,
            Kind::Sensor => &SENSOR_DS,
        }
    }
    /// `kind` in the series listing.
    pub fn series_kind(self) -> &'static str {
        match self {
            Kind::If => "snmp_interface",
            Kind::Cpu => "snmp_cpu",
            Kind::Storage => "snmp_storage",
            Kind::Sensor => "snmp_sensor",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "if" => Kind::If,
            "cpu" => Kind::Cpu,
            "storage" => Kind::Storage,
            "sensor" => Kind::Sensor,
            _ => return None,
        })
    }
}

/// What one poll read (decoded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PollData {
    pub uptime: Option<u32>,
    pub interfaces: Vec<IfReading>,
    /// Some when the names were walked in this poll.
    pub if_names: Option<BTreeMap<u32, IfNames>>,
    pub processors: Vec<(u32, f64)>,
    pub storage: Vec<StorageRow>,
    pub temperatures: Vec<(u32, Option<f64>)>,
    pub sensor_names: Option<BTreeMap<u32, String>>,
}

/// The result of one poll of one target.
#[derive(Debug, Clone)]
pub struct PollOutcome {
    pub target: usize,
    pub duration_ms: u64,
    pub result: Result<PollData, String>,
}

/// What the API shows of a target (never its credentials).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetStatus {
    pub name: String,
    pub address: String,
    pub version: &'static str,
    pub last_poll: Option<u64>,
    pub last_success: Option<u64>,
    pub last_duration_ms: Option<u64>,
    pub last_error: Option<String>,
    pub polls_ok: u64,
    pub polls_failed: u64,
    /// Due polls skipped because the previous one still ran.
    pub overruns: u64,
    /// Agent restarts seen (sysUpTime going back).
    pub restarts: u64,
    pub uptime_centiseconds: Option<u32>,
    pub interfaces: BTreeMap<u32, IfNames>,
    pub storage: BTreeMap<u32, StorageLabel>,
    pub sensors: BTreeMap<u32, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StorageLabel {
    pub kind: u32,
    pub descr: String,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub rrd: Rrd,
    /// Interface series: traffic DS are COUNTER64 (else COUNTER32).
    pub hc: bool,
}

/// Limits of the SNMP series (from `snmp:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_interfaces_per_target: usize,
    pub max_rows_per_table: usize,
    pub max_series: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let c = super::config::SnmpConfig::default();
        Self {
            max_interfaces_per_target: c.max_interfaces_per_target,
            max_rows_per_table: c.max_rows_per_table,
            max_series: c.max_series,
        }
    }
}

/// All SNMP series and target states.
#[derive(Debug, Clone, Default)]
pub struct SnmpSeries {
    pub series: BTreeMap<(usize, Kind, u32), Entry>,
    pub targets: Vec<TargetStatus>,
    pub limits: Limits,
    cfg: Option<SeriesConfig>,
    /// Heartbeat per target (at least the store's, and 2 intervals + 1).
    heartbeats: Vec<u64>,
    /// Rows not stored: over `max_interfaces_per_target`, `max_rows_per_table`
    /// or `max_series`.
    pub rows_over_limit: u64,
    /// Readings not applied (a second poll within the same second, or a
    /// counter whose width changed since the series was created).
    pub readings_dropped: u64,
    /// UDP sockets the poller has open (one per address family in use).
    pub sockets: usize,
    /// Most polls seen running at once (bounded by `snmp.max_in_flight`).
    pub peak_in_flight: usize,
}

fn def(cfg: &SeriesConfig, kind: Kind, hc: bool, heartbeat: u64) -> RrdDef {
    let ds = kind
        .ds()
        .iter()
        .enumerate()
        .map(|(i, n)| DsDef {
            name: (*n).into(),
            kind: match kind {
                Kind::If if i < 4 && hc => DsType::Counter64,
                Kind::If => DsType::Counter32,
                _ => DsType::Gauge,
            },
            heartbeat,
            min: None,
            max: None,
        })
        .collect();
    RrdDef {
        step: cfg.step,
        ds,
        rras: cfg.archives.clone(),
    }
}

impl SnmpSeries {
    /// Registers the configured targets (index = position in `snmp.targets`).
    pub fn configure(
        &mut self,
        cfg: &SeriesConfig,
        targets: &[super::config::TargetConfig],
        limits: Limits,
    ) {
        self.cfg = Some(cfg.clone());
        self.limits = limits;
        self.heartbeats = targets
            .iter()
            .map(|t| cfg.heartbeat.max(2 * t.interval + 1))
            .collect();
        self.targets = targets
            .iter()
            .map(|t| TargetStatus {
                name: t.name.clone(),
                address: t.address.clone(),
                version: match t.version {
                    super::config::SnmpVersion::V2c => "v2c",
                    super::config::SnmpVersion::V3 => "v3",
                },
                ..Default::default()
            })
            .collect();
    }

    pub fn memory_bytes(&self) -> usize {
        self.series.values().map(|e| e.rrd.memory_bytes()).sum()
    }

    fn count(&self, target: usize, kind: Kind) -> usize {
        self.series
            .range((target, kind, 0)..=(target, kind, u32::MAX))
            .count()
    }

    /// Creates the series if allowed; false when over a limit.
    fn ensure(&mut self, target: usize, kind: Kind, index: u32, hc: bool, t: u64) -> bool {
        let key = (target, kind, index);
        if self.series.contains_key(&key) {
            return true;
        }
        let Some(cfg) = &self.cfg else { return false };
        let max = match kind {
            Kind::If => self.limits.max_interfaces_per_target,
            _ => self.limits.max_rows_per_table,
        };
        if self.count(target, kind) >= max || self.series.len() >= self.limits.max_series {
            self.rows_over_limit += 1;
            return false;
        }
        let hb = self
            .heartbeats
            .get(target)
            .copied()
            .unwrap_or(cfg.heartbeat);
        match Rrd::new(def(cfg, kind, hc, hb), t.saturating_sub(1)) {
            Ok(rrd) => {
                self.series.insert(key, Entry { rrd, hc });
                true
            }
            Err(_) => false,
        }
    }

    fn update(&mut self, key: (usize, Kind, u32), t: u64, v: &[Value]) {
        if let Some(e) = self.series.get_mut(&key) {
            if t <= e.rrd.last_update() || e.rrd.update(t, v).is_err() {
                self.readings_dropped += 1;
            }
        }
    }

    /// Applies one poll's outcome at Unix time `t`.
    pub fn apply(&mut self, o: PollOutcome, t: u64) {
        let Some(st) = self.targets.get_mut(o.target) else {
            return;
        };
        st.last_poll = Some(t);
        st.last_duration_ms = Some(o.duration_ms);
        let d = match o.result {
            Err(e) => {
                st.polls_failed += 1;
                st.last_error = Some(e);
                return;
            }
            Ok(d) => d,
        };
        st.polls_ok += 1;
        st.last_success = Some(t);
        st.last_error = None;
        let restarted = super::decode::restarted(st.uptime_centiseconds, d.uptime);
        if restarted {
            st.restarts += 1;
        }
        if d.uptime.is_some() {
            st.uptime_centiseconds = d.uptime;
        }
        if let Some(n) = d.if_names {
            st.interfaces = n;
        }
        if let Some(n) = d.sensor_names {
            st.sensors = n;
        }
        for r in &d.storage {
            st.storage.insert(
                r.index,
                StorageLabel {
                    kind: r.kind,
                    descr: r.descr.clone(),
                },
            );
        }
        let target = o.target;
        for r in &d.interfaces {
            if !self.ensure(target, Kind::If, r.if_index, r.is_hc(), t) {
                continue;
            }
            let key = (target, Kind::If, r.if_index);
            let (hc, last) = {
                let e = &self.series[&key];
                (e.hc, e.rrd.last_update())
            };
            if !hc && r.is_hc() || hc && !r.is_hc() {
                self.readings_dropped += 1;
            }
            if restarted && t > last + 1 {
                // Forget the old baseline just before this reading, so the
                // reading itself is the new baseline (one unknown interval).
                self.update(key, t - 1, &[Value::Unknown; 8]);
                self.update(key, t, &if_values(r, hc, false));
            } else {
                self.update(key, t, &if_values(r, hc, restarted));
            }
        }
        for (i, load) in &d.processors {
            if self.ensure(target, Kind::Cpu, *i, false, t) {
                self.update((target, Kind::Cpu, *i), t, &[Value::Float(*load)]);
            }
        }
        for r in &d.storage {
            if self.ensure(target, Kind::Storage, r.index, false, t) {
                self.update(
                    (target, Kind::Storage, r.index),
                    t,
                    &[Value::Float(r.used_bytes), Value::Float(r.size_bytes)],
                );
            }
        }
        for (i, c) in &d.temperatures {
            if self.ensure(target, Kind::Sensor, *i, false, t) {
                let v = c.map_or(Value::Unknown, Value::Float);
                self.update((target, Kind::Sensor, *i), t, &[v]);
            }
        }
    }

    /// `<target>/<kind>/<index>` (the id after `snmp/`).
    pub fn find(&self, rest: &str) -> Option<(&Rrd, &'static [&'static str])> {
        let mut it = rest.split('/');
        let (name, kind, idx) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        let target = self.targets.iter().position(|t| t.name == name)?;
        let kind = Kind::parse(kind)?;
        let idx: u32 = idx.parse().ok()?;
        self.series
            .get(&(target, kind, idx))
            .map(|e| (&e.rrd, kind.ds()))
    }

    /// Series ids with their kinds, in id order per target.
    pub fn ids(&self) -> impl Iterator<Item = (String, Kind, &Rrd)> + '_ {
        self.series.iter().map(|((t, k, i), e)| {
            let name = self.targets.get(*t).map_or("?", |s| s.name.as_str());
            (format!("snmp/{name}/{}/{i}", k.as_str()), *k, &e.rrd)
        })
    }
}

/// Values of an interface series. A counter whose width differs from the
/// series' (the agent lost or gained its HC columns) is unknown, as is
/// everything after an agent restart.
pub fn if_values(r: &IfReading, hc: bool, restarted: bool) -> [Value; 8] {
    let mut v = [Value::Unknown; 8];
    if restarted {
        return v;
    }
    for (k, c) in r.traffic.iter().enumerate() {
        v[k] = match (c, hc) {
            (Some(Counter::C64(x)), true) => Value::Int(*x as i128),
            (Some(Counter::C32(x)), false) => Value::Int(*x as i128),
            _ => Value::Unknown,
        };
    }
    for (k, c) in r.errors.iter().enumerate() {
        v[4 + k] = match c {
            Some(Counter::C32(x)) => Value::Int(*x as i128),
            _ => Value::Unknown,
        };
    }
    v
}
