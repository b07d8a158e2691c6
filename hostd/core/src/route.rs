//! Stable route identity and the normalized form planner and verifier compare.

use std::{fmt, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::schema::{NextHop, Route, RouteState};

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// Who installed a route (`rtm_protocol`), with iproute2's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteProtocol {
    /// Redirect (1).
    Redirect,
    /// The kernel (2): prefix routes of addresses.
    Kernel,
    /// `ip route add` without `proto` (3).
    Boot,
    /// An administrator's static route (4): hostd's own routes.
    Static,
    /// IPv6 router advertisements (9).
    Ra,
    /// DHCP (16).
    Dhcp,
    /// Zebra/FRR (11).
    Zebra,
    /// BIRD (12).
    Bird,
    /// Any other number.
    Other(u8),
}

impl RouteProtocol {
    const NAMES: [(u8, &'static str); 8] = [
        (1, "redirect"),
        (2, "kernel"),
        (3, "boot"),
        (4, "static"),
        (9, "ra"),
        (11, "zebra"),
        (12, "bird"),
        (16, "dhcp"),
    ];

    /// The kernel number.
    pub fn number(self) -> u8 {
        match self {
            Self::Redirect => 1,
            Self::Kernel => 2,
            Self::Boot => 3,
            Self::Static => 4,
            Self::Ra => 9,
            Self::Zebra => 11,
            Self::Bird => 12,
            Self::Dhcp => 16,
            Self::Other(n) => n,
        }
    }

    /// From the kernel number.
    pub fn from_number(n: u8) -> Self {
        match n {
            1 => Self::Redirect,
            2 => Self::Kernel,
            3 => Self::Boot,
            4 => Self::Static,
            9 => Self::Ra,
            11 => Self::Zebra,
            12 => Self::Bird,
            16 => Self::Dhcp,
            n => Self::Other(n),
        }
    }

    /// True for protocols whose routes belong to a daemon or the kernel
    /// (DHCP, RA, routing daemons): dynamic state hostd leaves alone unless
    /// the document names the route.
    pub fn is_dynamic(self) -> bool {
        !matches!(self, Self::Boot | Self::Static)
    }
}

impl fmt::Display for RouteProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.number();
        match Self::NAMES.iter().find(|(k, _)| *k == n) {
            Some((_, s)) => f.write_str(s),
            None => write!(f, "{n}"),
        }
    }
}

impl Serialize for RouteProtocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for RouteProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some((n, _)) = Self::NAMES.iter().find(|(_, name)| *name == s) {
            return Ok(Self::from_number(*n));
        }
        s.parse::<u8>()
            .map(Self::from_number)
            .map_err(|_| serde::de::Error::custom(format!("unknown route protocol {s:?}")))
    }
}

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
            protocol: self.protocol,
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
