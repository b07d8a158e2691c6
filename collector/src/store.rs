//! The series registry and its snapshots.
//!
//! - One series per configured subnet, created at start (fixed memory), with
//!   data sources `in_bytes out_bytes in_pkts out_pkts` (COUNTER64, fed with
//!   the cumulative scaled totals at every flush).
//! - One series per interface (agent, ifIndex) seen in counter samples,
//!   created on first sight up to `series.max_interfaces`, with
//!   `in_octets out_octets in_pkts out_pkts` (COUNTER64) and
//!   `in_errors out_errors in_discards out_discards` (COUNTER32), updated at
//!   each reading's receive time. Packets are ucast+multicast+broadcast: each
//!   32-bit part is differenced with the reset rule and the sum kept as a
//!   64-bit total; an interval in which a part was reset is unknown.
//!
//! Snapshots ([`Store::snapshot`]): `HNCOLSNP`, format version, payload, CRC32
//! of the payload. Written to `PATH.tmp`, fsynced, renamed over `PATH`, and
//! the directory fsynced: a crash leaves either the old or the new file.
//! [`Store::restore`] keeps series whose subnet and shape still match the
//! configuration and starts the others afresh.

use std::{collections::BTreeMap, fs, io::Write, net::IpAddr, path::Path};

use ipnet::IpNet;
use serde::Serialize;

use crate::{
    accounting::{Drained, IfKey, SubnetCounters},
    config::SeriesConfig,
    rrd::{
        counter_delta,
        serial::{Corrupt, Dec, Enc},
        Cf, DsDef, DsType, Fetched, Rrd, RrdDef, Value,
    },
    sflow::IfCounters,
};

pub const SUBNET_DS: [&str; 4] = ["in_bytes", "out_bytes", "in_pkts", "out_pkts"];
pub const IFACE_DS: [&str; 8] = [
    "in_octets",
    "out_octets",
    "in_pkts",
    "out_pkts",
    "in_errors",
    "out_errors",
    "in_discards",
    "out_discards",
];

const MAGIC: &[u8; 8] = b"HNCOLSNP";
const VERSION: u64 = 1;

fn ds(name: &str, kind: DsType, hb: u64) -> DsDef {
    DsDef {
        name: name.into(),
        kind,
        heartbeat: hb,
        min: None,
        max: None,
    }
}

/// Shape of a subnet series.
pub fn subnet_def(c: &SeriesConfig) -> RrdDef {
    RrdDef {
        step: c.step,
        ds: SUBNET_DS
            .iter()
            .map(|n| ds(n, DsType::Counter64, c.heartbeat))
            .collect(),
        rras: c.archives.clone(),
    }
}

/// Shape of an interface series.
pub fn iface_def(c: &SeriesConfig) -> RrdDef {
    RrdDef {
        step: c.step,
        ds: IFACE_DS
            .iter()
            .enumerate()
            .map(|(i, n)| {
                ds(
                    n,
                    if i < 4 {
                        DsType::Counter64
                    } else {
                        DsType::Counter32
                    },
                    c.heartbeat,
                )
            })
            .collect(),
        rras: c.archives.clone(),
    }
}

#[derive(Debug, Clone)]
pub struct SubnetSeries {
    pub net: IpNet,
    /// Cumulative scaled totals since the series was created.
    pub totals: SubnetCounters,
    pub rrd: Rrd,
}

#[derive(Debug, Clone)]
pub struct IfaceSeries {
    last: Option<IfCounters>,
    /// Cumulative in/out packets (sum of the three 32-bit counters' deltas).
    pkts: [u64; 2],
    pub rrd: Rrd,
}

/// How a restore went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub subnets_restored: usize,
    pub interfaces_restored: usize,
    /// Series in the snapshot whose subnet is no longer configured.
    pub subnets_dropped: usize,
    /// Series whose shape (step, heartbeat, archives) changed: started anew.
    pub reshaped: usize,
    pub saved_at: u64,
}

/// Summary of one series for listings.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesInfo {
    pub id: String,
    pub kind: &'static str,
    pub ds: Vec<String>,
    pub step: u64,
    pub archives: Vec<ArchiveInfo>,
    pub last_update: u64,
    pub memory_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveInfo {
    pub cf: Cf,
    pub resolution: u64,
    pub rows: usize,
    pub span_seconds: u64,
}

/// One subnet in a traffic report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubnetReport {
    pub subnet: String,
    pub in_bytes: f64,
    pub out_bytes: f64,
    pub in_pkts: f64,
    pub out_pkts: f64,
    /// The report's percentile of the per-row rate, bits per second.
    pub in_percentile_bps: Option<f64>,
    pub out_percentile_bps: Option<f64>,
    pub in_max_bps: Option<f64>,
    pub out_max_bps: Option<f64>,
    /// Rows with unknown data (not counted in totals).
    pub unknown_rows: usize,
    pub rows: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub start: u64,
    pub end: u64,
    pub resolution: u64,
    pub percentile: f64,
    pub subnets: Vec<SubnetReport>,
}

/// All series.
#[derive(Debug, Clone)]
pub struct Store {
    cfg: SeriesConfig,
    subnet_def: RrdDef,
    iface_def: RrdDef,
    pub subnets: Vec<SubnetSeries>,
    pub ifaces: BTreeMap<IfKey, IfaceSeries>,
    /// Interface readings not applied: over a limit (below), or not newer
    /// than the series' last update (a second reading within the same second).
    pub iface_readings_dropped: u64,
    /// Interface series allowed per agent address.
    pub max_interfaces_per_agent: usize,
    /// Interface series per agent address (agents with at least one).
    agent_ifaces: BTreeMap<IpAddr, usize>,
    /// Readings of a new interface refused: `series.max_interfaces` reached.
    pub iface_over_total_limit: u64,
    /// ... or the agent's `limits.max_interfaces_per_agent` reached.
    pub iface_over_agent_limit: u64,
    /// SNMP series (`snmp/...`, crate::snmp::series; not in snapshots yet).
    pub snmp: crate::snmp::series::SnmpSeries,
}

impl Store {
    /// Empty series for `nets` (in subnet-id order), starting at `now`.
    ///
    /// A new subnet series starts at the step boundary at or before `now`
    /// with its counters' baseline at zero (the totals are zero then and
    /// nothing has been received yet), so the first flush counts every
    /// sample received since start, and the first row is exact instead of
    /// being extrapolated from a partly unknown step.
    pub fn new(cfg: &SeriesConfig, nets: &[IpNet], now: u64) -> Self {
        let subnet_def = subnet_def(cfg);
        let iface_def = iface_def(cfg);
        let start = now - now % cfg.step.max(1);
        let zero = [Value::Int(0); 4];
        let subnets = nets
            .iter()
            .map(|n| SubnetSeries {
                net: *n,
                totals: SubnetCounters::default(),
                rrd: Rrd::with_baseline(subnet_def.clone(), start, &zero)
                    .expect("validated in config"),
            })
            .collect();
        Self {
            cfg: cfg.clone(),
            subnet_def,
            iface_def,
            subnets,
            ifaces: BTreeMap::new(),
            iface_readings_dropped: 0,
            max_interfaces_per_agent: crate::config::LimitsConfig::default()
                .max_interfaces_per_agent,
            agent_ifaces: BTreeMap::new(),
            iface_over_total_limit: 0,
            iface_over_agent_limit: 0,
            snmp: Default::default(),
        }
    }

    /// Adds drained shard deltas to the totals and applies interface readings.
    pub fn apply(&mut self, d: Drained) {
        for (id, c) in d.subnets {
            if let Some(s) = self.subnets.get_mut(id as usize) {
                s.totals.add(&c);
            }
        }
        for (k, c, t) in d.ifaces {
            self.iface_reading(k, c, t);
        }
    }

    fn iface_reading(&mut self, k: IfKey, c: IfCounters, t: u64) {
        if !self.ifaces.contains_key(&k) {
            if self.ifaces.len() >= self.cfg.max_interfaces {
                self.iface_readings_dropped += 1;
                self.iface_over_total_limit += 1;
                return;
            }
            let per_agent = self.agent_ifaces.entry(k.agent).or_default();
            if *per_agent >= self.max_interfaces_per_agent {
                self.iface_readings_dropped += 1;
                self.iface_over_agent_limit += 1;
                return;
            }
            *per_agent += 1;
            let rrd =
                Rrd::new(self.iface_def.clone(), t.saturating_sub(1)).expect("validated in config");
            self.ifaces.insert(
                k,
                IfaceSeries {
                    last: None,
                    pkts: [0, 0],
                    rrd,
                },
            );
        }
        let Some(s) = self.ifaces.get_mut(&k) else {
            return;
        };
        if t <= s.rrd.last_update() {
            self.iface_readings_dropped += 1;
            return;
        }
        let pkt =
            |s: &mut IfaceSeries, dir: usize, now: [u32; 3], last: Option<[u32; 3]>| -> Value {
                match last {
                    None => Value::Int(s.pkts[dir] as i128),
                    Some(l) => {
                        let mut sum = 0u64;
                        for (n, l) in now.iter().zip(l) {
                            match counter_delta(l as i128, *n as i128, DsType::Counter32) {
                                Some(d) => sum += d as u64,
                                None => return Value::Unknown,
                            }
                        }
                        s.pkts[dir] = s.pkts[dir].wrapping_add(sum);
                        Value::Int(s.pkts[dir] as i128)
                    }
                }
            };
        let last = s.last;
        let pin = pkt(
            s,
            0,
            [c.in_ucast_pkts, c.in_multicast_pkts, c.in_broadcast_pkts],
            last.map(|l| [l.in_ucast_pkts, l.in_multicast_pkts, l.in_broadcast_pkts]),
        );
        let pout = pkt(
            s,
            1,
            [c.out_ucast_pkts, c.out_multicast_pkts, c.out_broadcast_pkts],
            last.map(|l| [l.out_ucast_pkts, l.out_multicast_pkts, l.out_broadcast_pkts]),
        );
        let v = [
            Value::Int(c.in_octets as i128),
            Value::Int(c.out_octets as i128),
            pin,
            pout,
            Value::Int(c.in_errors as i128),
            Value::Int(c.out_errors as i128),
            Value::Int(c.in_discards as i128),
            Value::Int(c.out_discards as i128),
        ];
        if s.rrd.update(t, &v).is_ok() {
            s.last = Some(c);
        }
    }

    /// Continues a restored subnet series at `now`, the restart time: the
    /// totals are pushed at the end of the step that holds the last update
    /// (that step closes with what was received in it, exactly), at the
    /// step boundary before `now` (the whole steps of the downtime: zero if
    /// shorter than the heartbeat, unknown otherwise) and at `now` (zero:
    /// nothing was received since that boundary). Without this the first
    /// flush after a restart spans the downtime, and with a downtime longer
    /// than the heartbeat everything received in that first interval would
    /// be unknown; a partly unknown step would also be extrapolated.
    fn resume_subnet(s: &mut SubnetSeries, now: u64) {
        let step = s.rrd.def().step.max(1);
        let t = s.totals;
        let v = [t.in_bytes, t.out_bytes, t.in_pkts, t.out_pkts].map(Value::from);
        let last = s.rrd.last_update();
        let close = last.div_ceil(step).saturating_mul(step);
        for at in [close, now - now % step, now] {
            if at > s.rrd.last_update() && at <= now {
                // Cannot fail: arity and types are ours, time checked.
                let _ = s.rrd.update(at, &v);
            }
        }
    }

    /// Pushes every subnet's totals into its series at `now`.
    pub fn flush_subnets(&mut self, now: u64) {
        for s in &mut self.subnets {
            if now > s.rrd.last_update() {
                let t = s.totals;
                let v = [t.in_bytes, t.out_bytes, t.in_pkts, t.out_pkts].map(Value::from);
                // Cannot fail: arity and types are ours, time checked above.
                let _ = s.rrd.update(now, &v);
            }
        }
    }

    /// Bytes held by all series (fixed per series).
    pub fn memory_bytes(&self) -> usize {
        self.subnet_def.memory_bytes() * self.subnets.len()
            + self.iface_def.memory_bytes() * self.ifaces.len()
            + self.snmp.memory_bytes()
    }

    /// Agents with at least one interface series.
    pub fn interface_agents(&self) -> usize {
        self.agent_ifaces.len()
    }

    pub fn subnet_series_bytes(&self) -> usize {
        self.subnet_def.memory_bytes()
    }

    /// Finds a series by id: `subnet/<prefix>` or `if/<agent>/<ifIndex>`.
    pub fn find(&self, id: &str) -> Option<(&Rrd, &'static [&'static str])> {
        if let Some(rest) = id.strip_prefix("snmp/") {
            return self.snmp.find(rest);
        }
        if let Some(net) = id.strip_prefix("subnet/") {
            let net: IpNet = net.parse().ok()?;
            return self
                .subnets
                .iter()
                .find(|s| s.net == net)
                .map(|s| (&s.rrd, &SUBNET_DS[..]));
        }
        let rest = id.strip_prefix("if/")?;
        let (agent, idx) = rest.rsplit_once('/')?;
        let key = IfKey {
            agent: agent.parse::<IpAddr>().ok()?,
            if_index: idx.parse().ok()?,
        };
        self.ifaces.get(&key).map(|s| (&s.rrd, &IFACE_DS[..]))
    }

    /// Every series, subnets first.
    pub fn list(&self) -> Vec<SeriesInfo> {
        let info = |id: String, kind, names: &[&str], r: &Rrd| SeriesInfo {
            id,
            kind,
            ds: names.iter().map(|s| s.to_string()).collect(),
            step: r.def().step,
            archives: r
                .def()
                .rras
                .iter()
                .map(|a| ArchiveInfo {
                    cf: a.cf,
                    resolution: a.steps * r.def().step,
                    rows: a.rows,
                    span_seconds: a.steps * r.def().step * a.rows as u64,
                })
                .collect(),
            last_update: r.last_update(),
            memory_bytes: r.memory_bytes(),
        };
        let mut v: Vec<SeriesInfo> = self
            .subnets
            .iter()
            .map(|s| info(format!("subnet/{}", s.net), "subnet", &SUBNET_DS, &s.rrd))
            .collect();
        v.extend(self.ifaces.iter().map(|(k, s)| {
            info(
                format!("if/{}/{}", k.agent, k.if_index),
                "interface",
                &IFACE_DS,
                &s.rrd,
            )
        }));
        v.extend(
            self.snmp
                .ids()
                .map(|(id, k, r)| info(id, k.series_kind(), k.ds(), r)),
        );
        v
    }

    /// Traffic per subnet over `(start, end]` from AVERAGE rows at the
    /// resolution closest to `resolution`: totals are the sum of rate x row
    /// duration over known rows; the percentile is nearest-rank over the
    /// known rows' rates in bits per second.
    pub fn report(
        &self,
        start: u64,
        end: u64,
        resolution: u64,
        percentile: f64,
        only: Option<IpNet>,
    ) -> Result<Report, crate::rrd::RrdError> {
        let mut out = Report {
            start,
            end,
            resolution,
            percentile,
            subnets: Vec::new(),
        };
        for s in self
            .subnets
            .iter()
            .filter(|s| only.is_none_or(|n| n == s.net))
        {
            let f = s.rrd.fetch(Cf::Average, start, end, resolution)?;
            out.resolution = f.step;
            out.subnets
                .push(subnet_report(&s.net.to_string(), &f, percentile));
        }
        Ok(out)
    }

    /// Encodes all series into memory (see [`Store::write_snapshot`]).
    pub fn snapshot(&self, now: u64) -> Vec<u8> {
        let mut v = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_snapshot(&mut v, now);
        v
    }

    /// Streams the snapshot to `w` one series at a time (no second copy of
    /// the store in memory); returns the bytes written.
    pub fn write_snapshot(&self, w: &mut dyn Write, now: u64) -> std::io::Result<usize> {
        let mut crc = crc32fast::Hasher::new();
        let mut total = 0usize;
        let mut head = Enc::default();
        head.buf.extend_from_slice(MAGIC);
        head.u64(VERSION);
        w.write_all(&head.buf)?;
        total += head.buf.len();
        let mut e = Enc::default();
        let mut emit = |e: &mut Enc, w: &mut dyn Write| -> std::io::Result<()> {
            crc.update(&e.buf);
            w.write_all(&e.buf)?;
            total += e.buf.len();
            e.buf.clear();
            Ok(())
        };
        e.u64(now);
        e.u64(self.subnets.len() as u64);
        for s in &self.subnets {
            e.str(&s.net.to_string());
            for v in [
                s.totals.in_bytes,
                s.totals.out_bytes,
                s.totals.in_pkts,
                s.totals.out_pkts,
            ] {
                e.u64(v);
            }
            s.rrd.encode(&mut e);
            emit(&mut e, w)?;
        }
        e.u64(self.ifaces.len() as u64);
        for (k, s) in &self.ifaces {
            e.str(&k.agent.to_string());
            e.u64(k.if_index as u64);
            match &s.last {
                None => e.u8(0),
                Some(c) => {
                    e.u8(1);
                    for v in if_fields(c) {
                        e.u64(v);
                    }
                }
            }
            e.u64(s.pkts[0]);
            e.u64(s.pkts[1]);
            s.rrd.encode(&mut e);
            emit(&mut e, w)?;
        }
        emit(&mut e, w)?;
        let crc = crc.finalize() as u64;
        w.write_all(&crc.to_le_bytes())?;
        Ok(total + 8)
    }

    /// Rebuilds the store from a snapshot for the current configuration.
    pub fn restore(
        cfg: &SeriesConfig,
        nets: &[IpNet],
        bytes: &[u8],
        now: u64,
    ) -> Result<(Self, RestoreReport), Corrupt> {
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err(Corrupt("not a collector snapshot".into()));
        }
        let version = u64::from_le_bytes(
            bytes[8..16]
                .try_into()
                .map_err(|_| Corrupt("version".into()))?,
        );
        if version != VERSION {
            return Err(Corrupt(format!("unsupported snapshot version {version}")));
        }
        let payload = &bytes[16..bytes.len() - 8];
        let crc = u64::from_le_bytes(
            bytes[bytes.len() - 8..]
                .try_into()
                .map_err(|_| Corrupt("crc".into()))?,
        );
        if crc32fast::hash(payload) as u64 != crc {
            return Err(Corrupt("checksum mismatch".into()));
        }
        let mut d = Dec::new(payload);
        let mut store = Store::new(cfg, nets, now);
        let mut rep = RestoreReport {
            saved_at: d.u64("saved_at")?,
            ..Default::default()
        };
        let n = d.u64("subnet count")?;
        for _ in 0..n {
            let net: IpNet = d
                .str("subnet")?
                .parse()
                .map_err(|_| Corrupt("subnet prefix".into()))?;
            let t = SubnetCounters {
                in_bytes: d.u64("totals")?,
                out_bytes: d.u64("totals")?,
                in_pkts: d.u64("totals")?,
                out_pkts: d.u64("totals")?,
            };
            let rrd = Rrd::decode(&mut d)?;
            match store.subnets.iter_mut().find(|s| s.net == net) {
                Some(s) if *rrd.def() == store.subnet_def => {
                    s.totals = t;
                    s.rrd = rrd;
                    Self::resume_subnet(s, now);
                    rep.subnets_restored += 1;
                }
                Some(_) => rep.reshaped += 1,
                None => rep.subnets_dropped += 1,
            }
        }
        let n = d.u64("interface count")?;
        for _ in 0..n {
            let agent: IpAddr = d
                .str("agent")?
                .parse()
                .map_err(|_| Corrupt("agent address".into()))?;
            let if_index =
                u32::try_from(d.u64("ifIndex")?).map_err(|_| Corrupt("ifIndex".into()))?;
            let last = match d.u8("last tag")? {
                0 => None,
                1 => {
                    let mut f = [0u64; 19];
                    for v in &mut f {
                        *v = d.u64("interface counters")?;
                    }
                    Some(if_from_fields(&f))
                }
                t => return Err(Corrupt(format!("last tag {t}"))),
            };
            let pkts = [d.u64("pkts")?, d.u64("pkts")?];
            let rrd = Rrd::decode(&mut d)?;
            if *rrd.def() == store.iface_def {
                let old = store
                    .ifaces
                    .insert(IfKey { agent, if_index }, IfaceSeries { last, pkts, rrd });
                if old.is_none() {
                    *store.agent_ifaces.entry(agent).or_default() += 1;
                }
                rep.interfaces_restored += 1;
            } else {
                rep.reshaped += 1;
            }
        }
        if !d.is_empty() {
            return Err(Corrupt("trailing bytes".into()));
        }
        Ok((store, rep))
    }
}

fn subnet_report(name: &str, f: &Fetched, percentile: f64) -> SubnetReport {
    let mut r = SubnetReport {
        subnet: name.into(),
        in_bytes: 0.0,
        out_bytes: 0.0,
        in_pkts: 0.0,
        out_pkts: 0.0,
        in_percentile_bps: None,
        out_percentile_bps: None,
        in_max_bps: None,
        out_max_bps: None,
        unknown_rows: 0,
        rows: f.rows.len(),
    };
    let (mut ins, mut outs) = (Vec::new(), Vec::new());
    for row in &f.rows {
        if row.iter().any(|v| v.is_nan()) {
            r.unknown_rows += 1;
            continue;
        }
        let step = f.step as f64;
        r.in_bytes += row[0] * step;
        r.out_bytes += row[1] * step;
        r.in_pkts += row[2] * step;
        r.out_pkts += row[3] * step;
        ins.push(row[0] * 8.0);
        outs.push(row[1] * 8.0);
    }
    r.in_percentile_bps = nearest_rank(&mut ins, percentile);
    r.out_percentile_bps = nearest_rank(&mut outs, percentile);
    r.in_max_bps = ins.iter().copied().reduce(f64::max);
    r.out_max_bps = outs.iter().copied().reduce(f64::max);
    r
}

/// Nearest-rank percentile: the smallest value with at least p% of the
/// values at or below it.
pub fn nearest_rank(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

fn if_fields(c: &IfCounters) -> [u64; 19] {
    [
        c.if_index as u64,
        c.if_type as u64,
        c.if_speed,
        c.if_direction as u64,
        c.if_status as u64,
        c.in_octets,
        c.in_ucast_pkts as u64,
        c.in_multicast_pkts as u64,
        c.in_broadcast_pkts as u64,
        c.in_discards as u64,
        c.in_errors as u64,
        c.in_unknown_protos as u64,
        c.out_octets,
        c.out_ucast_pkts as u64,
        c.out_multicast_pkts as u64,
        c.out_broadcast_pkts as u64,
        c.out_discards as u64,
        c.out_errors as u64,
        c.promiscuous_mode as u64,
    ]
}

fn if_from_fields(f: &[u64; 19]) -> IfCounters {
    let u = |i: usize| f[i] as u32;
    IfCounters {
        if_index: u(0),
        if_type: u(1),
        if_speed: f[2],
        if_direction: u(3),
        if_status: u(4),
        in_octets: f[5],
        in_ucast_pkts: u(6),
        in_multicast_pkts: u(7),
        in_broadcast_pkts: u(8),
        in_discards: u(9),
        in_errors: u(10),
        in_unknown_protos: u(11),
        out_octets: f[12],
        out_ucast_pkts: u(13),
        out_multicast_pkts: u(14),
        out_broadcast_pkts: u(15),
        out_discards: u(16),
        out_errors: u(17),
        promiscuous_mode: u(18),
    }
}

/// Writes a file atomically: `PATH.tmp` filled by `fill`, fsynced, renamed
/// over `PATH`, and the directory fsynced.
pub fn write_atomic<T>(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let tmp = path.with_extension("tmp");
    let r = {
        let f = fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let r = fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        r
    };
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
