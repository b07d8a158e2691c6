//! The switch side: what each switch port cabled to the server must be
//! (LAG/MLAG membership, LACP, VLANs, MTU, description), and its compile into
//! a [`NetworkState`] for a Linux switch running hostd (bond = LAG, one
//! VLAN-aware bridge = the VLAN table).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    cabling::Cabling,
    error::{Errs, IntentErrors},
    host::{lacp_rate, port_vlan},
    input::{Intent, RedundancyMode, SwitchFacts, Topology},
    natural::{natural_cmp, trailing_number},
    networks::Nets,
};
use crate::{
    schema::{
        BondConfig, BondMode, BondOptions, BridgeConfig, BridgeOptions, BridgePort, Interface,
        InterfaceType, LacpRate, NetworkState, StpOptions, XmitHashPolicy,
    },
    types::{IfName, MacAddr, Mtu, VlanId},
};

/// The switch side of one server's connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SwitchIntent {
    /// The server.
    pub server: String,
    /// Per switch (natural order of hostnames), the ports cabled to it.
    pub switches: Vec<SwitchPorts>,
}

impl SwitchIntent {
    /// The ports on `hostname`.
    pub fn switch(&self, hostname: &str) -> Option<&SwitchPorts> {
        self.switches.iter().find(|s| s.hostname == hostname)
    }

    /// Every port, in index order.
    pub fn ports(&self) -> Vec<(&str, &PortIntent)> {
        let mut v: Vec<(&str, &PortIntent)> = self
            .switches
            .iter()
            .flat_map(|s| s.ports.iter().map(move |p| (s.hostname.as_str(), p)))
            .collect();
        v.sort_by_key(|(_, p)| p.index);
        v
    }
}

/// One switch's ports for the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SwitchPorts {
    /// Hostname.
    pub hostname: String,
    /// Ports in index order.
    pub ports: Vec<PortIntent>,
}

/// LACP on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LacpMode {
    /// Sends LACPDUs (member of a LAG).
    Active,
    /// No LACP: a plain port.
    Off,
}

/// A LAG spanning one switch, or an MLAG spanning a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LagKind {
    /// Link aggregation on one switch.
    Lag,
    /// Multi-chassis link aggregation over an MLAG pair.
    Mlag,
}

/// LAG membership of a port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Lag {
    /// LAG (port-channel) id; the same on both members of an MLAG pair.
    pub id: u16,
    /// The LAG interface's name (`Po10`).
    pub name: String,
    /// lag or mlag.
    pub kind: LagKind,
    /// The MLAG peer of this switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// LACP system MAC the LAG presents (the pair's for an MLAG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_mac: Option<MacAddr>,
    /// LACPDU rate.
    pub rate: LacpRate,
    /// LACP port priority (lower is preferred): increases with the port
    /// index, so that port #0 is the one kept on fallback.
    pub port_priority: u16,
    /// Forward on port #0 alone while the server sends no LACPDU.
    pub fallback: bool,
}

/// Port VLAN mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VlanMode {
    /// One VLAN, untagged.
    Access,
    /// Tagged VLANs, and a native (untagged) one if set.
    Trunk,
}

/// VLANs of a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PortVlans {
    /// access or trunk.
    pub mode: VlanMode,
    /// Access VLAN, or the trunk's native VLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untagged: Option<VlanId>,
    /// Tagged VLANs (trunk), ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tagged: Vec<VlanId>,
}

/// One switch port cabled to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PortIntent {
    /// The switch's port name.
    pub port: String,
    /// The server port index (0 = first by switch hostname, then port).
    pub index: usize,
    /// The server's NIC on the other end.
    pub nic: IfName,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Port description.
    pub description: String,
    /// MTU, as Linux counts it (the largest frame's payload; a switch OS
    /// counting whole frames adds its L2 overhead).
    pub mtu: Mtu,
    /// active (LAG member) or off.
    pub lacp: LacpMode,
    /// LAG membership.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Lag>,
    /// VLANs.
    pub vlans: PortVlans,
}

/// LACP port priority of port `index`: 100, 200, ... (lower is preferred in
/// LACP, so port #0 wins; spaced so an operator can slot a value between;
/// all below the usual default 32768).
pub fn port_priority(index: usize) -> u16 {
    u16::try_from((index + 1) * 100).unwrap_or(u16::MAX)
}

/// Checks what the LAG id needs; returns it for active-active.
pub(crate) fn lag_id(intent: &Intent, cab: &Cabling, e: &mut Errs) -> Option<u16> {
    if intent.redundancy.mode != RedundancyMode::ActiveActive {
        if let Some(id) = intent.redundancy.lag_id {
            e.push(
                "intent.redundancy.lag-id",
                id,
                format!(
                    "only active-active makes a LAG, not {}",
                    intent.redundancy.mode.as_str()
                ),
            );
        }
        return None;
    }
    match intent.redundancy.lag_id {
        Some(0) => {
            e.push("intent.redundancy.lag-id", 0, "LAG ids start at 1");
            None
        }
        Some(id) => Some(id),
        None => {
            let first = cab.nics.first()?;
            match trailing_number(&first.port).and_then(|n| u16::try_from(n).ok()) {
                Some(n) if n > 0 => Some(n),
                _ => {
                    e.push(
                        "intent.redundancy.lag-id",
                        "none",
                        format!(
                            "the LAG id defaults to the number ending port #0's name ({} {}), which has none usable (1..=65535): give lag-id",
                            first.switch, first.port
                        ),
                    );
                    None
                }
            }
        }
    }
}

/// Builds the switch-side intent. Inputs are checked.
pub(crate) fn build(
    intent: &Intent,
    inv_switches: &[SwitchFacts],
    cab: &Cabling,
    nets: &Nets,
    lag_id: Option<u16>,
) -> SwitchIntent {
    let tagged = nets.tagged_vlans();
    let untagged = nets.native.map(|(_, n)| n.vlan);
    let vlans = PortVlans {
        mode: if tagged.is_empty() {
            VlanMode::Access
        } else {
            VlanMode::Trunk
        },
        untagged,
        tagged,
    };
    let nets_text: Vec<String> = nets.all.iter().map(|(_, n)| n.name.clone()).collect();
    let mut by_switch: BTreeMap<&str, Vec<PortIntent>> = BTreeMap::new();
    for c in &cab.nics {
        let lag = lag_id.map(|id| {
            let mlag = intent.redundancy.topology == Topology::MlagPair;
            let pair = cab.pair.as_ref().filter(|_| mlag);
            Lag {
                id,
                name: format!("Po{id}"),
                kind: if mlag { LagKind::Mlag } else { LagKind::Lag },
                peer: pair.map(|p| {
                    if p.members[0] == c.switch {
                        p.members[1].clone()
                    } else {
                        p.members[0].clone()
                    }
                }),
                system_mac: match pair {
                    Some(p) => Some(p.system_mac),
                    None => inv_switches
                        .iter()
                        .find(|s| s.hostname == c.switch)
                        .and_then(|s| s.system_mac),
                },
                rate: lacp_rate(intent),
                port_priority: port_priority(c.index),
                fallback: intent.redundancy.lacp_fallback.unwrap_or(true),
            }
        });
        by_switch
            .entry(c.switch.as_str())
            .or_default()
            .push(PortIntent {
                port: c.port.clone(),
                index: c.index,
                nic: c.nic.name.clone(),
                mac: c.nic.mac,
                description: format!(
                    "{} {} port#{} [{}]",
                    intent.server,
                    c.nic.name,
                    c.index,
                    nets_text.join(",")
                ),
                mtu: nets.max_mtu,
                lacp: if lag.is_some() {
                    LacpMode::Active
                } else {
                    LacpMode::Off
                },
                lag,
                vlans: vlans.clone(),
            });
    }
    let mut switches: Vec<SwitchPorts> = by_switch
        .into_iter()
        .map(|(h, ports)| SwitchPorts {
            hostname: h.to_owned(),
            ports,
        })
        .collect();
    switches.sort_by(|a, b| natural_cmp(&a.hostname, &b.hostname));
    SwitchIntent {
        server: intent.server.clone(),
        switches,
    }
}

/// One port to configure on the Linux switch.
struct Placed<'a> {
    ifname: IfName,
    port: &'a PortIntent,
    at: String,
}

/// Compiles the switch-side intents of every server cabled to `hostnames`
/// into one [`NetworkState`] for hostd on a Linux switch: one switch, or
/// both members of a lab MLAG pair living in one namespace (their LAGs then
/// span both, with the pair's system MAC).
///
/// Each LAG becomes an 802.3ad bond (`Po<id>`, members in port index order so
/// that port #0 is enslaved first and kept when LACP falls back), every
/// server port or LAG a port of the VLAN-aware bridge with its VLANs, every
/// uplink a trunk of all the VLANs used. Error paths are `switches[..]`
/// (the facts) and `intents[k]` (the switch-side intents).
pub fn linux_switch(
    switches: &[SwitchFacts],
    hostnames: &[&str],
    intents: &[SwitchIntent],
) -> Result<NetworkState, IntentErrors> {
    let mut e = Errs::default();
    let mut scope: Vec<&SwitchFacts> = Vec::new();
    for (k, h) in hostnames.iter().enumerate() {
        match switches.iter().find(|s| s.hostname == *h) {
            Some(f) => scope.push(f),
            None => e.push(
                format!("hostnames[{k}]"),
                h,
                "no switch with this hostname in the facts",
            ),
        }
    }
    if hostnames.is_empty() {
        e.push("hostnames", "[]", "no switch to compile");
    }
    e.check()?;
    let bridge = scope[0]
        .bridge
        .clone()
        .unwrap_or_else(|| IfName::new("br0").unwrap_or_else(|_| unreachable!("br0 is valid")));
    for f in &scope[1..] {
        let b = f.bridge.clone().unwrap_or_else(|| bridge.clone());
        if b != bridge {
            e.push(
                format!("switches[{}].bridge", f.hostname),
                &b,
                format!("switches compiled together share one bridge, {bridge}"),
            );
        }
    }
    let ifname_of = |f: &SwitchFacts, port: &str| -> Result<IfName, String> {
        match f
            .ports
            .iter()
            .find(|p| p.name == port)
            .and_then(|p| p.ifname.clone())
        {
            Some(n) => Ok(n),
            None => IfName::new(port)
                .map_err(|err| format!("{err}: give the port's ifname in the switch's facts")),
        }
    };

    // Every server port in scope, once.
    let mut placed: Vec<Placed> = Vec::new();
    let mut owners: BTreeMap<(&str, &str), String> = BTreeMap::new();
    for (k, si) in intents.iter().enumerate() {
        for (j, sp) in si.switches.iter().enumerate() {
            let Some(f) = scope.iter().find(|f| f.hostname == sp.hostname) else {
                continue;
            };
            for (m, p) in sp.ports.iter().enumerate() {
                let at = format!("intents[{k}].switches[{j}].ports[{m}]");
                if let Some(first) =
                    owners.insert((f.hostname.as_str(), p.port.as_str()), si.server.clone())
                {
                    e.push(
                        format!("{at}.port"),
                        &p.port,
                        format!(
                            "{} {} is already the port of server {first}",
                            sp.hostname, p.port
                        ),
                    );
                    continue;
                }
                if f.uplinks.contains(&p.port) {
                    e.push(
                        format!("{at}.port"),
                        &p.port,
                        format!("{} {} is an uplink", sp.hostname, p.port),
                    );
                    continue;
                }
                match ifname_of(f, &p.port) {
                    Ok(ifname) => placed.push(Placed {
                        ifname,
                        port: p,
                        at,
                    }),
                    Err(msg) => e.push(format!("{at}.port"), &p.port, msg),
                }
            }
        }
    }

    // LAGs by id: one server each, one set of settings.
    let mut lags: BTreeMap<u16, Vec<&Placed>> = BTreeMap::new();
    let mut lag_server: BTreeMap<u16, (&str, &str)> = BTreeMap::new();
    for (k, si) in intents.iter().enumerate() {
        for pl in placed
            .iter()
            .filter(|pl| pl.at.starts_with(&format!("intents[{k}].")))
        {
            let Some(lag) = &pl.port.lag else { continue };
            if let Some((server, at)) = lag_server.get(&lag.id) {
                if *server != si.server.as_str() {
                    e.push(
                        format!("{}.lag.id", pl.at),
                        lag.id,
                        format!("LAG id already used by server {server} ({at}): give one of them another intent.redundancy.lag-id"),
                    );
                    continue;
                }
            } else {
                lag_server.insert(lag.id, (si.server.as_str(), pl.at.as_str()));
            }
            lags.entry(lag.id).or_default().push(pl);
        }
    }
    let mut ifaces: Vec<Interface> = Vec::new();
    let mut bridge_ports: Vec<BridgePort> = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut claim = |e: &mut Errs, name: &IfName, at: &str| {
        if let Some(first) = names.insert(name.to_string(), at.to_owned()) {
            e.push(at, name, format!("interface name already used by {first}"));
        }
    };
    for (id, members) in &mut lags {
        members.sort_by_key(|pl| pl.port.index);
        let first = members[0];
        let Some(lag) = &first.port.lag else { continue };
        let bond_name = match IfName::new(&lag.name) {
            Ok(n) => n,
            Err(err) => {
                e.push(format!("{}.lag.name", first.at), &lag.name, err);
                continue;
            }
        };
        for pl in members.iter() {
            let same = |l: &Lag| {
                (l.id, &l.name, l.kind, l.system_mac, l.rate, l.fallback)
                    == (
                        lag.id,
                        &lag.name,
                        lag.kind,
                        lag.system_mac,
                        lag.rate,
                        lag.fallback,
                    )
            };
            if !pl.port.lag.as_ref().is_some_and(same)
                || pl.port.mtu != first.port.mtu
                || pl.port.vlans != first.port.vlans
            {
                e.push(
                    format!("{}.lag", pl.at),
                    id,
                    format!("the members of LAG {id} disagree on its settings, MTU or VLANs"),
                );
            }
        }
        claim(&mut e, &bond_name, &format!("{}.lag.name", first.at));
        for pl in members.iter() {
            claim(&mut e, &pl.ifname, &format!("{}.port", pl.at));
            ifaces.push(Interface::new(pl.ifname.clone(), InterfaceType::Ethernet));
        }
        let mut bond = Interface::new(bond_name.clone(), InterfaceType::Bond);
        bond.mtu = Some(first.port.mtu);
        bond.link_aggregation = Some(BondConfig {
            mode: BondMode::Lacp,
            port: members.iter().map(|pl| pl.ifname.clone()).collect(),
            options: BondOptions {
                miimon: Some(100),
                lacp_rate: Some(lag.rate),
                xmit_hash_policy: Some(XmitHashPolicy::Layer34),
                ad_actor_system: lag.system_mac,
                ..BondOptions::default()
            },
        });
        ifaces.push(bond);
        bridge_ports.push(BridgePort {
            name: bond_name,
            vlan: Some(port_vlan(
                first.port.vlans.untagged,
                &first.port.vlans.tagged,
            )),
        });
    }
    let mut singles: Vec<&Placed> = placed.iter().filter(|pl| pl.port.lag.is_none()).collect();
    singles.sort_by(|a, b| natural_cmp(a.ifname.as_str(), b.ifname.as_str()));
    for pl in singles {
        claim(&mut e, &pl.ifname, &format!("{}.port", pl.at));
        let mut i = Interface::new(pl.ifname.clone(), InterfaceType::Ethernet);
        i.mtu = Some(pl.port.mtu);
        ifaces.push(i);
        bridge_ports.push(BridgePort {
            name: pl.ifname.clone(),
            vlan: Some(port_vlan(pl.port.vlans.untagged, &pl.port.vlans.tagged)),
        });
    }

    // Uplinks: every VLAN in use, tagged, at the largest MTU.
    let used: BTreeSet<VlanId> = placed
        .iter()
        .flat_map(|pl| {
            pl.port
                .vlans
                .tagged
                .iter()
                .copied()
                .chain(pl.port.vlans.untagged)
        })
        .collect();
    let used: Vec<VlanId> = used.into_iter().collect();
    let max_mtu = placed.iter().map(|pl| pl.port.mtu).max();
    if !used.is_empty() {
        for f in &scope {
            for (j, u) in f.uplinks.iter().enumerate() {
                let at = format!("switches[{}].uplinks[{j}]", f.hostname);
                let ifname = match ifname_of(f, u) {
                    Ok(n) => n,
                    Err(msg) => {
                        e.push(&at, u, msg);
                        continue;
                    }
                };
                claim(&mut e, &ifname, &at);
                let mut i = Interface::new(ifname.clone(), InterfaceType::Ethernet);
                i.mtu = max_mtu;
                ifaces.push(i);
                bridge_ports.push(BridgePort {
                    name: ifname,
                    vlan: Some(port_vlan(None, &used)),
                });
            }
        }
    }

    let mut br = Interface::new(bridge.clone(), InterfaceType::LinuxBridge);
    claim(&mut e, &bridge, "switches[].bridge");
    br.bridge = Some(BridgeConfig {
        vlan: None,
        options: BridgeOptions {
            stp: Some(StpOptions {
                enabled: false,
                ..StpOptions::default()
            }),
            vlan_filtering: Some(true),
            ..BridgeOptions::default()
        },
        port: bridge_ports,
    });
    ifaces.push(br);
    e.check()?;
    let state = NetworkState {
        interfaces: ifaces,
        ..NetworkState::default()
    };
    if let Err(v) = crate::validate::validate(&state) {
        for i in v.0 {
            e.push(
                format!("switch document: {}", i.path),
                i.value,
                format!(
                    "{} (the compiled switch state does not validate: a compiler bug)",
                    i.reason
                ),
            );
        }
    }
    e.finish(state)
}
