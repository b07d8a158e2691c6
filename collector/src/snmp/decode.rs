//! Pure decoding of walked columns into rows: OID tables, the IF-MIB
//! HC/32-bit fallback, HOST-RESOURCES storage and processors, ENTITY-SENSOR
//! temperatures. No I/O: the poller turns the client's varbinds into
//! [`Varbind`]s and calls these.

use std::collections::BTreeMap;

/// The value kinds we use (the poller maps the client's values onto them).
#[derive(Debug, Clone, PartialEq)]
pub enum SnmpValue {
    Int(i64),
    Counter32(u32),
    Counter64(u64),
    /// Gauge32 / Unsigned32 / TimeTicks.
    Unsigned(u32),
    Bytes(Vec<u8>),
    /// Exceptions (noSuchObject, ...) and kinds we do not read.
    Other,
}

/// One walked binding: OID arcs and value.
pub type Varbind = (Vec<u32>, SnmpValue);

/// OIDs polled (arcs). Columns are walked one subtree each.
pub mod oids {
    pub const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
    // IF-MIB ifTable (1.3.6.1.2.1.2.2.1.x)
    pub const IF_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
    pub const IF_OPER_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8];
    pub const IF_IN_OCTETS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 10];
    pub const IF_IN_UCAST: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 11];
    pub const IF_IN_DISCARDS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 13];
    pub const IF_IN_ERRORS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 14];
    pub const IF_OUT_OCTETS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 16];
    pub const IF_OUT_UCAST: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 17];
    pub const IF_OUT_DISCARDS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 19];
    pub const IF_OUT_ERRORS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 20];
    // IF-MIB ifXTable (1.3.6.1.2.1.31.1.1.1.x)
    pub const IF_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];
    pub const IF_HC_IN_OCTETS: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6];
    pub const IF_HC_IN_UCAST: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 7];
    pub const IF_HC_OUT_OCTETS: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10];
    pub const IF_HC_OUT_UCAST: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 11];
    pub const IF_HIGH_SPEED: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15];
    pub const IF_ALIAS: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18];
    // HOST-RESOURCES-MIB
    pub const HR_PROCESSOR_LOAD: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 3, 3, 1, 2];
    pub const HR_STORAGE_TYPE: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 2, 3, 1, 2];
    pub const HR_STORAGE_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 2, 3, 1, 3];
    pub const HR_STORAGE_UNITS: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 2, 3, 1, 4];
    pub const HR_STORAGE_SIZE: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 2, 3, 1, 5];
    pub const HR_STORAGE_USED: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 2, 3, 1, 6];
    // ENTITY-SENSOR-MIB entPhySensorTable (1.3.6.1.2.1.99.1.1.1.x)
    pub const ENT_SENSOR_TYPE: &[u32] = &[1, 3, 6, 1, 2, 1, 99, 1, 1, 1, 1];
    pub const ENT_SENSOR_SCALE: &[u32] = &[1, 3, 6, 1, 2, 1, 99, 1, 1, 1, 2];
    pub const ENT_SENSOR_PRECISION: &[u32] = &[1, 3, 6, 1, 2, 1, 99, 1, 1, 1, 3];
    pub const ENT_SENSOR_VALUE: &[u32] = &[1, 3, 6, 1, 2, 1, 99, 1, 1, 1, 4];
    pub const ENT_SENSOR_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 99, 1, 1, 1, 5];
    /// ENTITY-MIB entPhysicalName.
    pub const ENT_PHYSICAL_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1, 7];

    /// Counter columns walked every poll.
    pub const IF_COUNTERS_HC: [&[u32]; 4] = [
        IF_HC_IN_OCTETS,
        IF_HC_OUT_OCTETS,
        IF_HC_IN_UCAST,
        IF_HC_OUT_UCAST,
    ];
    /// Walked only when an interface lacks the HC counters.
    pub const IF_COUNTERS_32: [&[u32]; 4] =
        [IF_IN_OCTETS, IF_OUT_OCTETS, IF_IN_UCAST, IF_OUT_UCAST];
    pub const IF_ERRORS: [&[u32]; 4] =
        [IF_IN_ERRORS, IF_OUT_ERRORS, IF_IN_DISCARDS, IF_OUT_DISCARDS];
    pub const IF_NAMES: [&[u32]; 3] = [IF_NAME, IF_ALIAS, IF_DESCR];
    pub const STORAGE: [&[u32]; 5] = [
        HR_STORAGE_TYPE,
        HR_STORAGE_DESCR,
        HR_STORAGE_UNITS,
        HR_STORAGE_SIZE,
        HR_STORAGE_USED,
    ];
    pub const SENSORS: [&[u32]; 5] = [
        ENT_SENSOR_TYPE,
        ENT_SENSOR_SCALE,
        ENT_SENSOR_PRECISION,
        ENT_SENSOR_VALUE,
        ENT_SENSOR_STATUS,
    ];
}

/// One walked column: row index (the single arc after the column OID) ->
/// value. Rows with a longer or missing index and exceptions are dropped.
pub type Column = BTreeMap<u32, SnmpValue>;

pub fn column(base: &[u32], vbs: &[Varbind]) -> Column {
    vbs.iter()
        .filter_map(|(oid, v)| {
            let rest = oid.strip_prefix(base)?;
            match (rest, v) {
                (_, SnmpValue::Other) => None,
                ([idx], v) => Some((*idx, v.clone())),
                _ => None,
            }
        })
        .collect()
}

fn int(v: Option<&SnmpValue>) -> Option<i64> {
    match v? {
        SnmpValue::Int(i) => Some(*i),
        SnmpValue::Unsigned(u) | SnmpValue::Counter32(u) => Some(*u as i64),
        _ => None,
    }
}

fn text(v: Option<&SnmpValue>) -> Option<String> {
    match v? {
        SnmpValue::Bytes(b) => Some(
            String::from_utf8_lossy(b)
                .trim_end_matches('\0')
                .chars()
                .take(256)
                .collect(),
        ),
        _ => None,
    }
}

/// A counter reading: width decides the reset/wrap rule in the RRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    C64(u64),
    C32(u32),
}

fn counter(v: Option<&SnmpValue>) -> Option<Counter> {
    match v? {
        SnmpValue::Counter64(c) => Some(Counter::C64(*c)),
        SnmpValue::Counter32(c) => Some(Counter::C32(*c)),
        _ => None,
    }
}

/// One interface's counters of one poll. `None`: the agent gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfReading {
    pub if_index: u32,
    /// in_octets, out_octets, in_ucast_pkts, out_ucast_pkts: 64-bit when
    /// the agent has ifXTable's HC columns, else ifTable's 32-bit ones.
    pub traffic: [Option<Counter>; 4],
    /// in_errors, out_errors, in_discards, out_discards (32-bit).
    pub errors: [Option<Counter>; 4],
}

impl IfReading {
    /// True when every traffic counter is 64-bit.
    pub fn is_hc(&self) -> bool {
        self.traffic
            .iter()
            .all(|c| matches!(c, Some(Counter::C64(_))))
    }
}

/// Interfaces whose HC traffic counters are missing (for the 32-bit walk).
pub fn lacking_hc(hc: &[Column; 4], indexes: &[u32]) -> bool {
    indexes.iter().any(|i| {
        hc.iter()
            .any(|c| !matches!(c.get(i), Some(SnmpValue::Counter64(_))))
    })
}

/// Builds per-interface readings: the interfaces are those of the error
/// columns and of the HC columns; each traffic counter is the HC value if
/// present, else the 32-bit one (`c32` may be empty when all had HC).
pub fn interfaces(hc: &[Column; 4], c32: &[Column; 4], errors: &[Column; 4]) -> Vec<IfReading> {
    let mut idx: Vec<u32> = hc
        .iter()
        .chain(errors.iter())
        .chain(c32.iter())
        .flat_map(|c| c.keys().copied())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx.into_iter()
        .map(|i| {
            let mut traffic = [None; 4];
            for (k, t) in traffic.iter_mut().enumerate() {
                *t = match counter(hc[k].get(&i)) {
                    Some(Counter::C64(c)) => Some(Counter::C64(c)),
                    _ => counter(c32[k].get(&i)),
                };
            }
            let mut errs = [None; 4];
            for (k, e) in errs.iter_mut().enumerate() {
                *e = counter(errors[k].get(&i));
            }
            IfReading {
                if_index: i,
                traffic,
                errors: errs,
            }
        })
        .collect()
}

/// Cached interface labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IfNames {
    pub name: Option<String>,
    pub alias: Option<String>,
    pub descr: Option<String>,
}

pub fn if_names(cols: &[Column; 3]) -> BTreeMap<u32, IfNames> {
    let mut out: BTreeMap<u32, IfNames> = BTreeMap::new();
    for (k, c) in cols.iter().enumerate() {
        for (i, v) in c {
            let e = out.entry(*i).or_default();
            let t = text(Some(v));
            match k {
                0 => e.name = t,
                1 => e.alias = t,
                _ => e.descr = t,
            }
        }
    }
    out
}

/// hrProcessorLoad rows: (hrDeviceIndex, percent).
pub fn processors(col: &Column) -> Vec<(u32, f64)> {
    col.iter()
        .filter_map(|(i, v)| int(Some(v)).map(|l| (*i, l as f64)))
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct StorageRow {
    pub index: u32,
    /// Last arc of hrStorageType (2 = RAM, 3 = virtual memory, 4 = fixed
    /// disk, ...), 0 if unknown.
    pub kind: u32,
    pub descr: String,
    pub used_bytes: f64,
    pub size_bytes: f64,
}

/// hrStorageTable rows (columns in [`oids::STORAGE`] order) with sizes in
/// bytes (allocation units x count). hrStorageType arrives as the dotted
/// text of its OID (see the poller). Rows without units, size or used are
/// skipped.
pub fn storage(cols: &[Column; 5]) -> Vec<StorageRow> {
    let kind_of = |i: &u32| -> u32 {
        match cols[0].get(i) {
            Some(SnmpValue::Bytes(b)) => String::from_utf8_lossy(b)
                .trim_start_matches('.')
                .strip_prefix("1.3.6.1.2.1.25.2.1.")
                .and_then(|k| k.parse().ok())
                .unwrap_or(0),
            _ => 0,
        }
    };
    cols[4]
        .keys()
        .filter_map(|i| {
            let units = int(cols[2].get(i))?;
            let size = int(cols[3].get(i))?;
            let used = int(cols[4].get(i))?;
            if units <= 0 || size < 0 || used < 0 {
                return None;
            }
            Some(StorageRow {
                index: *i,
                kind: kind_of(i),
                descr: text(cols[1].get(i)).unwrap_or_default(),
                used_bytes: used as f64 * units as f64,
                size_bytes: size as f64 * units as f64,
            })
        })
        .collect()
}

/// entPhySensorScale (RFC 3433 SensorDataScale) -> power of ten.
/// The RFC lists exa(14) before peta(15): the enum is not monotonic there.
pub fn scale_exponent(scale: i64) -> Option<i32> {
    Some(match scale {
        1 => -24,
        2 => -21,
        3 => -18,
        4 => -15,
        5 => -12,
        6 => -9,
        7 => -6,
        8 => -3,
        9 => 0,
        10 => 3,
        11 => 6,
        12 => 9,
        13 => 12,
        14 => 18,
        15 => 15,
        16 => 21,
        17 => 24,
        _ => return None,
    })
}

/// entPhySensorType celsius(8).
pub const SENSOR_CELSIUS: i64 = 8;

/// A sensor's value: raw x 10^scale x 10^-precision (RFC 3433).
pub fn sensor_value(raw: i64, scale: i64, precision: i64) -> Option<f64> {
    let e = scale_exponent(scale)?;
    if !(-8..=9).contains(&precision) {
        return None;
    }
    Some(raw as f64 * 10f64.powi(e - precision as i32))
}

/// Temperatures in Celsius: (entPhysicalIndex, Some(value)) for celsius
/// sensors; `None` when the sensor's status is not ok(1) or its
/// scale/precision is invalid (the row becomes unknown).
pub fn temperatures(cols: &[Column; 5]) -> Vec<(u32, Option<f64>)> {
    cols[0]
        .iter()
        .filter(|(_, t)| int(Some(t)) == Some(SENSOR_CELSIUS))
        .map(|(i, _)| {
            let ok = int(cols[4].get(i)).is_none_or(|s| s == 1);
            let v = match (
                int(cols[3].get(i)),
                int(cols[1].get(i)),
                int(cols[2].get(i)),
            ) {
                (Some(raw), Some(scale), Some(prec)) if ok => sensor_value(raw, scale, prec),
                _ => None,
            };
            (*i, v)
        })
        .collect()
}

/// sysUpTime in hundredths of a second.
pub fn uptime(vbs: &[Varbind]) -> Option<u32> {
    vbs.iter().find_map(|(oid, v)| match v {
        SnmpValue::Unsigned(t) if oid.as_slice() == oids::SYS_UPTIME => Some(*t),
        _ => None,
    })
}

/// True when the agent restarted between two polls (sysUpTime went back):
/// every counter's new value is then a new baseline.
pub fn restarted(prev: Option<u32>, now: Option<u32>) -> bool {
    matches!((prev, now), (Some(p), Some(n)) if n < p)
}
