//! Stable route identity and the normalized form planner and verifier compare.

use std::{fmt, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::schema::{NextHop, Route, RouteState};

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// What identifies a route in the kernel for hostd: table, destination and
/// metric. Two routes with the same key conflict; a route with a known key
/// but other next hops is replaced.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteKey {
    /// Table id.
    pub table: u32,
    /// Destination prefix.
    pub destination: IpNet,
    /// Metric (priority).
    pub metric: u32,
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} table {} metric {}",
            self.destination, self.table, self.metric
        )
    }
}

/// The kernel's default metric for a destination's family.
pub fn default_metric(dst: &IpNet) -> u32 {
    match dst {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1024,
    }
}

impl Route {
    /// The route's key, with the kernel's defaults filled in.
    pub fn key(&self) -> RouteKey {
        RouteKey {
            table: self.table_id.unwrap_or(MAIN_TABLE),
            destination: self.destination,
            metric: self
                .metric
                .unwrap_or_else(|| default_metric(&self.destination)),
        }
    }

    /// Next hops, single or multipath, sorted, weights defaulted to 1.
    pub fn next_hops(&self) -> Vec<NextHop> {
        let mut v: Vec<NextHop> = if self.multipath.is_empty() {
            vec![NextHop {
                next_hop_address: self.next_hop_address,
                next_hop_interface: self.next_hop_interface.clone(),
                weight: Some(1),
            }]
        } else {
            self.multipath
                .iter()
                .map(|n| NextHop {
                    weight: Some(n.weight.unwrap_or(1)),
                    ..n.clone()
                })
                .collect()
        };
        v.sort();
        v
    }

    /// The same route with defaults made explicit and next hops sorted, so
    /// that a desired route and the kernel's compare equal when they mean
    /// the same.
    pub fn normalized(&self) -> Route {
        let key = self.key();
        let hops = self.next_hops();
        let (addr, iface, multipath) = if hops.len() == 1 {
            (
                hops[0].next_hop_address,
                hops[0].next_hop_interface.clone(),
                Vec::new(),
            )
        } else {
            (None, None, hops)
        };
        Route {
            destination: key.destination,
            next_hop_address: addr,
            next_hop_interface: iface,
            multipath,
            metric: Some(key.metric),
            table_id: Some(key.table),
            state: RouteState::Present,
        }
    }

    /// Interfaces the route's next hops use.
    pub fn interfaces(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.next_hop_interface.iter().map(|n| n.as_str()).collect();
        v.extend(
            self.multipath
                .iter()
                .filter_map(|n| n.next_hop_interface.as_ref().map(|n| n.as_str())),
        );
        v
    }

    /// Gateways the route uses.
    pub fn gateways(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.next_hop_address.into_iter().collect();
        v.extend(self.multipath.iter().filter_map(|n| n.next_hop_address));
        v
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.normalized();
        write!(f, "{}", r.destination)?;
        if let Some(gw) = r.next_hop_address {
            write!(f, " via {gw}")?;
        }
        if let Some(dev) = &r.next_hop_interface {
            write!(f, " dev {dev}")?;
        }
        for nh in &r.multipath {
            write!(f, " nexthop")?;
            if let Some(gw) = nh.next_hop_address {
                write!(f, " via {gw}")?;
            }
            if let Some(dev) = &nh.next_hop_interface {
                write!(f, " dev {dev}")?;
            }
            write!(f, " weight {}", nh.weight.unwrap_or(1))?;
        }
        write!(
            f,
            " table {} metric {}",
            r.table_id.unwrap_or(MAIN_TABLE),
            r.metric.unwrap_or(0)
        )
    }
}
