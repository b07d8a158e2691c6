//! What is written (pure): the rows of the store's finest AVERAGE archive,
//! one sample per data source per consolidated row, as the store closes
//! them.
//!
//! Metric names and labels (stable; documented in docs/collector.md):
//!
//! | store series / data source        | metric                                  | labels |
//! |-----------------------------------|-----------------------------------------|--------|
//! | `subnet/P` `in_bytes` `out_bytes` | `hostnet_subnet_bytes_per_second`       | `subnet="P"`, `direction="in"/"out"` |
//! | `subnet/P` `in_pkts` `out_pkts`   | `hostnet_subnet_packets_per_second`     | same |
//! | `if/A/I` `in_octets` `out_octets` | `hostnet_interface_octets_per_second`   | `agent="A"`, `ifindex="I"`, `direction` |
//! | `if/A/I` `in_pkts` `out_pkts`     | `hostnet_interface_packets_per_second`  | same |
//! | `if/A/I` `in_errors` `out_errors` | `hostnet_interface_errors_per_second`   | same |
//! | `if/A/I` `in_discards` ...        | `hostnet_interface_discards_per_second` | same |
//!
//! plus the configured `labels`. A sample's timestamp is its row's end
//! (a row at T covers (T - step, T]), its value the row's average rate per
//! second; unknown rows are not sent (a gap in the TSDB, as in the store).

use std::{collections::HashMap, sync::Arc};

use ipnet::IpNet;

use crate::{
    accounting::IfKey,
    rrd::{Cf, Rrd},
    store::Store,
};

use super::proto::Label;

pub const SUBNET_METRICS: [(&str, &str); 4] = [
    ("hostnet_subnet_bytes_per_second", "in"),
    ("hostnet_subnet_bytes_per_second", "out"),
    ("hostnet_subnet_packets_per_second", "in"),
    ("hostnet_subnet_packets_per_second", "out"),
];

pub const IFACE_METRICS: [(&str, &str); 8] = [
    ("hostnet_interface_octets_per_second", "in"),
    ("hostnet_interface_octets_per_second", "out"),
    ("hostnet_interface_packets_per_second", "in"),
    ("hostnet_interface_packets_per_second", "out"),
    ("hostnet_interface_errors_per_second", "in"),
    ("hostnet_interface_errors_per_second", "out"),
    ("hostnet_interface_discards_per_second", "in"),
    ("hostnet_interface_discards_per_second", "out"),
];

/// One sample to send; `labels` is shared by every sample of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub labels: Arc<[Label]>,
    pub ts_ms: i64,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Subnet(IpNet),
    Iface(IfKey),
}

#[derive(Debug)]
struct Cursor {
    /// End time of the last row handed out.
    last: u64,
    /// Labels per data source, sorted by name.
    labels: Vec<Arc<[Label]>>,
}

/// Per-series cursors over the store's rows.
#[derive(Debug)]
pub struct Exporter {
    extra: Vec<Label>,
    cursors: HashMap<Source, Cursor>,
}

/// The archive written: the finest AVERAGE one.
pub fn archive(rrd: &Rrd) -> Option<usize> {
    rrd.def()
        .rras
        .iter()
        .enumerate()
        .filter(|(_, r)| r.cf == Cf::Average)
        .min_by_key(|(_, r)| r.steps)
        .map(|(i, _)| i)
}

/// Calls `f(end time, values)` for each row of archive `i` that ends after
/// `after`, oldest first. Reads the rows in place (no copy of the archive):
/// this runs at every flush over every series.
pub fn rows_after(rrd: &Rrd, i: usize, after: u64, mut f: impl FnMut(u64, &[f64])) {
    let def = rrd.def();
    let r = &def.rras[i];
    let n = def.ds.len();
    let step = def.step * r.steps;
    let end = rrd.rra_end(i);
    let first = end.saturating_sub((r.rows as u64 - 1) * step);
    let from = (after - after % step + step).max(first);
    let rra = &rrd.rras[i];
    let mut t = from;
    while t <= end {
        let back = ((end - t) / step) as usize;
        let idx = (rra.cur_row + r.rows - back % r.rows) % r.rows;
        f(t, &rra.data[idx * n..(idx + 1) * n]);
        t += step;
    }
}

fn labels(extra: &[Label], name: &str, own: &[(&str, String)]) -> Arc<[Label]> {
    let mut v: Vec<Label> = extra.to_vec();
    v.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    v.extend(own.iter().map(|(k, val)| Label {
        name: (*k).into(),
        value: val.clone(),
    }));
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v.into()
}

impl Exporter {
    /// Cursors start at the newest row of every series already in `store`
    /// (rows consolidated before this process started are not re-sent: a
    /// receiver rejects samples older than the newest it holds); series that
    /// appear later are sent from their first known row.
    pub fn new(extra: &std::collections::BTreeMap<String, String>, store: &Store) -> Self {
        let mut e = Self {
            extra: extra
                .iter()
                .map(|(k, v)| Label {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            cursors: HashMap::new(),
        };
        for s in &store.subnets {
            if let Some(i) = archive(&s.rrd) {
                let end = s.rrd.rra_end(i);
                e.cursor(Source::Subnet(s.net)).last = end;
            }
        }
        for (k, s) in &store.ifaces {
            if let Some(i) = archive(&s.rrd) {
                let end = s.rrd.rra_end(i);
                e.cursor(Source::Iface(*k)).last = end;
            }
        }
        e
    }

    fn cursor(&mut self, src: Source) -> &mut Cursor {
        let extra = &self.extra;
        self.cursors.entry(src).or_insert_with(|| {
            let labels = match src {
                Source::Subnet(net) => SUBNET_METRICS
                    .iter()
                    .map(|(m, d)| {
                        labels(
                            extra,
                            m,
                            &[("subnet", net.to_string()), ("direction", d.to_string())],
                        )
                    })
                    .collect(),
                Source::Iface(k) => IFACE_METRICS
                    .iter()
                    .map(|(m, d)| {
                        labels(
                            extra,
                            m,
                            &[
                                ("agent", k.agent.to_string()),
                                ("ifindex", k.if_index.to_string()),
                                ("direction", d.to_string()),
                            ],
                        )
                    })
                    .collect(),
            };
            Cursor { last: 0, labels }
        })
    }

    fn series(&mut self, src: Source, rrd: &Rrd, out: &mut Vec<Item>) {
        let Some(i) = archive(rrd) else { return };
        let c = self.cursor(src);
        let mut last = c.last;
        rows_after(rrd, i, c.last, |t, row| {
            last = t;
            for (v, l) in row.iter().zip(&c.labels) {
                if v.is_finite() {
                    out.push(Item {
                        labels: l.clone(),
                        ts_ms: (t as i64).saturating_mul(1000),
                        value: *v,
                    });
                }
            }
        });
        c.last = c.last.max(last);
    }

    /// Appends the samples of every row closed since the last call, series
    /// by series, each series' rows oldest first.
    pub fn collect(&mut self, store: &Store, out: &mut Vec<Item>) {
        for s in &store.subnets {
            self.series(Source::Subnet(s.net), &s.rrd, out);
        }
        for (k, s) in &store.ifaces {
            self.series(Source::Iface(*k), &s.rrd, out);
        }
    }
}
