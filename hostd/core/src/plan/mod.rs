//! The planner: `(intent, observed) -> Plan`, a pure function.
//!
//! A document ([`NetworkState`] with the [`Ownership`] record), a teardown
//! and a rollback are first lowered into one [`Intent`] ([`intent`]): per
//! link, what must be true of it (kind, state, MTU, settings, controller,
//! port VLANs, addresses to ensure or remove), plus routes and DNS. The
//! planner then runs per-kind phase planners ([`links`], [`ports`],
//! [`bridge_vlans`], [`mtu`], [`state`], [`addresses`], [`routes`], [`dns`])
//! in a fixed order, each over the merged view of the intent and the kernel
//! state *as it will be* when its operations run: every operation a phase
//! emits is applied at once to the kernel model ([`crate::sim`]), so later
//! phases see what the kernel will have done by itself (a released bond port
//! goes down, a bridge's MTU follows its ports, routes through a link that
//! goes down or loses its last IPv4 address are flushed, IPv6 addresses go
//! with a down link unless `keep_addr_on_down`, a VLAN's MTU follows its base
//! down, a new bridge port gets VLAN 1 untagged). The phases:
//!
//! 0. renames (NICs matched by MAC, links matched by ifindex in a rollback;
//!    the link is set down first),
//! 1. route deletions, 2. address deletions, 3. port releases,
//! 4. link deletions, children before parents (a VLAN before its base),
//! 5. changes to existing links (bond options, with the bond set down or
//!    emptied only when the kernel requires it; bridge options),
//! 6. link creations, parents before children,
//! 7. enslavements (a bond port is set down first, as the kernel wants),
//! 8. bridge port VLANs (deletions, then additions, as VLAN ranges),
//! 9. MTUs (lowering children first, raising parents first, until stable),
//! 10. link states (ups parents first, then downs),
//! 11. address additions, 12. routes (replace), 13. DNS.
//!
//! Inside a phase, ties are broken by name. The model also refuses what the
//! kernel would refuse (a VLAN MTU above its base's, a gateway not on a
//! connected subnet, enslaving an up link to a bond), so a document the
//! kernel would reject half-way is rejected before anything is touched,
//! naming the field.

mod addresses;
mod bridge_vlans;
mod dns;
pub mod intent;
mod links;
mod mtu;
mod ports;
mod rollback;
mod routes;
mod state;
mod work;

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use intent::Intent;
pub use rollback::plan_rollback;

use crate::{
    model::{AddrGenMode, LinkKind, Observed, VlanEntry},
    ownership::Ownership,
    schema::{BondMode, BondOptions, BridgeOptions, DnsConfig, NetworkState, Route, VlanProtocol},
    types::{IfName, MacAddr, VlanId},
    validate::{validate, ValidationErrors},
};

/// Settings of a link to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NewLink {
    /// `ip link add NAME type bond mode M ...`
    Bond {
        /// Mode.
        mode: BondMode,
        /// Options.
        options: BondOptions,
    },
    /// `ip link add link BASE name NAME type vlan id ID protocol P`
    Vlan {
        /// Lower device.
        base: IfName,
        /// Id.
        id: VlanId,
        /// Protocol.
        protocol: VlanProtocol,
    },
    /// `ip link add NAME type bridge ...`
    Bridge {
        /// Options.
        options: BridgeOptions,
    },
}

/// One operation on the kernel (or the resolver file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// `ip link set FROM name TO` (FROM is down).
    RenameLink {
        /// Current name.
        from: IfName,
        /// New name.
        to: IfName,
    },
    /// `ip route del ...`
    DeleteRoute {
        /// The route as observed.
        route: Route,
    },
    /// `ip addr del ADDRESS dev IFACE`
    DeleteAddress {
        /// Interface.
        iface: IfName,
        /// Address.
        address: IpNet,
    },
    /// `ip link set IFACE master C` / `nomaster`
    SetController {
        /// Port.
        iface: IfName,
        /// Controller, or none to release.
        controller: Option<IfName>,
    },
    /// `ip link del IFACE`
    DeleteLink {
        /// Link.
        iface: IfName,
    },
    /// `ip link set IFACE up|down`
    SetState {
        /// Link.
        iface: IfName,
        /// Up or down.
        up: bool,
    },
    /// `ip link set IFACE type bond ...` (only the options that change)
    SetBond {
        /// Bond.
        iface: IfName,
        /// New mode, if it changes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<BondMode>,
        /// Options that change.
        options: BondOptions,
        /// `primary ""`: no primary port any more (a rollback restoring a
        /// bond that had none).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        clear_primary: bool,
    },
    /// `ip link set IFACE type bridge ...` (only the options that change)
    SetBridge {
        /// Bridge.
        iface: IfName,
        /// Options that change.
        options: BridgeOptions,
    },
    /// `ip link set IFACE mtu MTU`
    SetMtu {
        /// Link.
        iface: IfName,
        /// MTU.
        mtu: u32,
    },
    /// `ip link add ...` (created down)
    CreateLink {
        /// Name.
        iface: IfName,
        /// MTU at creation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u32>,
        /// Kind and settings.
        link: NewLink,
        /// The ifindex to create it with (a rollback recreating a deleted
        /// link); otherwise the kernel picks one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
        /// The MAC address to create it with (a rollback recreating a
        /// deleted link); otherwise the kernel's (or its first port's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
    },
    /// `ip link set IFACE addrgenmode MODE` (a rollback restoring a
    /// recreated link's IPv6 link-local address generation)
    SetAddrGenMode {
        /// Link.
        iface: IfName,
        /// Mode.
        mode: AddrGenMode,
    },
    /// `bridge vlan del dev IFACE vid ... [self]`
    BridgeVlanDel {
        /// Port (or the bridge itself, with `bridge_self`).
        iface: IfName,
        /// VIDs (ranges).
        vlans: Vec<VlanEntry>,
        /// The bridge's own membership (`self`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bridge_self: bool,
    },
    /// `bridge vlan add dev IFACE vid ... [pvid] [untagged] [self]`
    BridgeVlanAdd {
        /// Port (or the bridge itself, with `bridge_self`).
        iface: IfName,
        /// VIDs (ranges) with flags.
        vlans: Vec<VlanEntry>,
        /// The bridge's own membership (`self`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bridge_self: bool,
    },
    /// `ip addr replace ADDRESS dev IFACE` (static: no lifetime; makes a
    /// dynamic address with the same value static)
    AddAddress {
        /// Interface.
        iface: IfName,
        /// Address.
        address: IpNet,
    },
    /// `ip route replace ... proto static` (or the route's own protocol,
    /// when a rollback restores a route another daemon had installed)
    AddRoute {
        /// The route, normalized.
        route: Route,
    },
    /// Writes the resolver configuration.
    WriteDns {
        /// Servers and search domains.
        config: DnsConfig,
    },
}

/// An ordered list of operations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// The operations, in execution order.
    pub ops: Vec<Op>,
}

impl Plan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ops.is_empty() {
            return writeln!(f, "no changes");
        }
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "{:>4}. {op}", i + 1)?;
        }
        Ok(())
    }
}

fn vlans_text(v: &[VlanEntry]) -> String {
    v.iter()
        .map(|e| {
            let mut s = match e.max {
                Some(m) => format!("{}-{}", e.min, m),
                None => e.min.to_string(),
            };
            if e.pvid {
                s.push_str(" pvid");
            }
            if e.untagged {
                s.push_str(" untagged");
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn bond_text(o: &BondOptions) -> String {
    o.text()
}

fn bridge_text(o: &BridgeOptions) -> String {
    let mut s = String::new();
    if let Some(stp) = &o.stp {
        s.push_str(&format!(" stp {}", if stp.enabled { "on" } else { "off" }));
        for (k, v) in [
            ("forward-delay", stp.forward_delay),
            ("hello-time", stp.hello_time),
            ("max-age", stp.max_age),
        ] {
            if let Some(v) = v {
                s.push_str(&format!(" {k} {v}"));
            }
        }
        if let Some(p) = stp.priority {
            s.push_str(&format!(" priority {p}"));
        }
    }
    if let Some(v) = o.vlan_filtering {
        s.push_str(&format!(" vlan-filtering {}", if v { "on" } else { "off" }));
    }
    if let Some(p) = o.vlan_protocol {
        s.push_str(&format!(" vlan-protocol {}", p.as_str()));
    }
    if let Some(a) = o.mac_ageing_time {
        s.push_str(&format!(" mac-ageing-time {a}"));
    }
    if let Some(m) = o.multicast_snooping {
        s.push_str(&format!(
            " multicast-snooping {}",
            if m { "on" } else { "off" }
        ));
    }
    s
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::RenameLink { from, to } => write!(f, "rename {from} to {to}"),
            Op::DeleteRoute { route } => write!(f, "delete route {route}"),
            Op::DeleteAddress { iface, address } => {
                write!(f, "delete address {address} from {iface}")
            }
            Op::SetController {
                iface,
                controller: Some(c),
            } => write!(f, "set {iface} controller {c}"),
            Op::SetController {
                iface,
                controller: None,
            } => write!(f, "release {iface} from its controller"),
            Op::DeleteLink { iface } => write!(f, "delete link {iface}"),
            Op::SetState { iface, up } => {
                write!(f, "set {iface} {}", if *up { "up" } else { "down" })
            }
            Op::SetBond {
                iface,
                mode,
                options,
                clear_primary,
            } => {
                write!(f, "set bond {iface}")?;
                if let Some(m) = mode {
                    write!(f, " mode {}", m.as_str())?;
                }
                write!(f, "{}", bond_text(options))?;
                if *clear_primary {
                    write!(f, " primary none")?;
                }
                Ok(())
            }
            Op::SetBridge { iface, options } => {
                write!(f, "set bridge {iface}{}", bridge_text(options))
            }
            Op::SetMtu { iface, mtu } => write!(f, "set {iface} mtu {mtu}"),
            Op::SetAddrGenMode { iface, mode } => {
                write!(f, "set {iface} addrgenmode {}", mode.as_str())
            }
            Op::CreateLink {
                iface,
                mtu,
                link,
                index,
                mac,
            } => {
                match link {
                    NewLink::Bond { mode, options } => write!(
                        f,
                        "create bond {iface} mode {}{}",
                        mode.as_str(),
                        bond_text(options)
                    )?,
                    NewLink::Vlan { base, id, protocol } => write!(
                        f,
                        "create vlan {iface} on {base} id {id} protocol {}",
                        protocol.as_str()
                    )?,
                    NewLink::Bridge { options } => {
                        write!(f, "create bridge {iface}{}", bridge_text(options))?
                    }
                }
                if let Some(m) = mtu {
                    write!(f, " mtu {m}")?;
                }
                if let Some(i) = index {
                    write!(f, " index {i}")?;
                }
                if let Some(m) = mac {
                    write!(f, " address {m}")?;
                }
                Ok(())
            }
            Op::BridgeVlanDel {
                iface,
                vlans,
                bridge_self,
            } => {
                write!(f, "delete bridge vlans {} from {iface}", vlans_text(vlans))?;
                if *bridge_self {
                    write!(f, " self")?;
                }
                Ok(())
            }
            Op::BridgeVlanAdd {
                iface,
                vlans,
                bridge_self,
            } => {
                write!(f, "add bridge vlans {} to {iface}", vlans_text(vlans))?;
                if *bridge_self {
                    write!(f, " self")?;
                }
                Ok(())
            }
            Op::AddAddress { iface, address } => write!(f, "add address {address} to {iface}"),
            Op::AddRoute { route } => write!(f, "add route {route}"),
            Op::WriteDns { config } => {
                let s: Vec<String> = config.server.iter().map(|s| s.to_string()).collect();
                write!(
                    f,
                    "write dns servers [{}] search [{}]",
                    s.join(", "),
                    config.search.join(", ")
                )
            }
        }
    }
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The desired state is invalid (also: invalid for this host, e.g. a VLAN
    /// MTU above the MTU its base will have).
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// A NIC the state names does not exist (hostd never creates NICs).
    #[error("{path} ({name}): no such ethernet interface on this host; hostd never creates NICs")]
    MissingNic {
        /// Where it is declared (`interfaces[3]`).
        path: String,
        /// Name.
        name: IfName,
    },
    /// No NIC carries the MAC address the state matches on.
    #[error("{path}.mac-address: no ethernet interface has MAC {mac} (wanted as {name})")]
    NoSuchMac {
        /// Where it is declared.
        path: String,
        /// Desired name.
        name: IfName,
        /// MAC.
        mac: MacAddr,
    },
    /// Renaming would take a name another link holds.
    #[error("{path}: renaming {from} to {to} is impossible: {to} exists")]
    RenameConflict {
        /// Where it is declared.
        path: String,
        /// Current name.
        from: IfName,
        /// Desired name.
        to: IfName,
    },
    /// The link exists with another kind and hostd may not replace it.
    #[error("{path}.type: {name} exists as {found:?} on the host but is declared {wanted}; hostd never deletes NICs or links it does not manage")]
    KindConflict {
        /// Where it is declared.
        path: String,
        /// Name.
        name: IfName,
        /// Kind found.
        found: LinkKind,
        /// Type declared.
        wanted: &'static str,
    },
    /// Deleting a link would destroy a VLAN on it that hostd must not touch.
    #[error("deleting {name} would destroy {upper} (a VLAN on it), which hostd neither created nor is told about")]
    WouldDestroy {
        /// Link to delete.
        name: IfName,
        /// The VLAN that would go with it.
        upper: IfName,
    },
    /// The kernel model refuses a step of the plan: applying it would fail
    /// half-way. Nothing was touched.
    #[error("the kernel would refuse step {step} ({op}): {reason}")]
    Refused {
        /// 1-based step.
        step: usize,
        /// The operation.
        op: String,
        /// Why.
        reason: String,
    },
}

/// Plans `desired` against `observed`: validates, lowers the document (with
/// the ownership record) into an [`Intent`], then plans it.
pub fn plan(
    desired: &NetworkState,
    observed: &Observed,
    own: &Ownership,
) -> Result<Plan, PlanError> {
    validate(desired)?;
    plan_validated(desired, observed, own)
}

/// [`plan`] for a document already validated (the engine validates once,
/// before it reads anything from the host, and re-plans while verifying).
pub fn plan_validated(
    desired: &NetworkState,
    observed: &Observed,
    own: &Ownership,
) -> Result<Plan, PlanError> {
    // OVS entries: their netdevs as ovs-vswitchd will have made them when
    // the operations on them run (crate::ovs::doc::stage).
    let predicted;
    let observed = if crate::ovs::doc::has_ovs(desired) {
        predicted = crate::ovs::doc::predict(observed, desired);
        &predicted
    } else {
        observed
    };
    let intent = Intent::from_state(desired, observed, own)?;
    plan_intent(&intent, observed)
}

/// The plan that removes everything hostd created and leaves the NICs it
/// configured down and without addresses (`hostd teardown`).
pub fn plan_teardown(observed: &Observed, own: &Ownership) -> Result<Plan, PlanError> {
    plan_intent(&Intent::teardown(observed, own), observed)
}

/// Plans an [`Intent`] against `observed`.
pub fn plan_intent(intent: &Intent, observed: &Observed) -> Result<Plan, PlanError> {
    work::run(intent, observed)
}

/// True when the observed route `c` is what the desired `w` asks for (a
/// desired next hop without an interface matches any interface; the
/// protocol is not compared).
pub fn route_matches(w: &Route, c: &Route) -> bool {
    if w.key() != c.key() {
        return false;
    }
    let wh = w.next_hops();
    let ch = c.next_hops();
    wh.len() == ch.len()
        && wh.iter().all(|h| {
            ch.iter().any(|o| {
                o.next_hop_address == h.next_hop_address
                    && o.weight == h.weight
                    && (h.next_hop_interface.is_none()
                        || o.next_hop_interface == h.next_hop_interface)
            })
        })
}

/// The desired bridge options that differ from the observed ones.
pub fn diff_bridge(want: &BridgeOptions, have: &BridgeOptions) -> BridgeOptions {
    let mut out = BridgeOptions::default();
    if want.vlan_filtering.is_some() && want.vlan_filtering != have.vlan_filtering {
        out.vlan_filtering = want.vlan_filtering;
    }
    if want.vlan_protocol.is_some() && want.vlan_protocol != have.vlan_protocol {
        out.vlan_protocol = want.vlan_protocol;
    }
    if want.mac_ageing_time.is_some() && want.mac_ageing_time != have.mac_ageing_time {
        out.mac_ageing_time = want.mac_ageing_time;
    }
    if want.multicast_snooping.is_some() && want.multicast_snooping != have.multicast_snooping {
        out.multicast_snooping = want.multicast_snooping;
    }
    if let Some(ws) = &want.stp {
        let hs = have.stp.clone().unwrap_or_default();
        let differs = ws.enabled != hs.enabled
            || (ws.forward_delay.is_some() && ws.forward_delay != hs.forward_delay)
            || (ws.hello_time.is_some() && ws.hello_time != hs.hello_time)
            || (ws.max_age.is_some() && ws.max_age != hs.max_age)
            || (ws.priority.is_some() && ws.priority != hs.priority);
        if differs {
            out.stp = Some(ws.clone());
        }
    }
    out
}

impl AddrGenMode {
    /// iproute2's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AddrGenMode::Eui64 => "eui64",
            AddrGenMode::None => "none",
            AddrGenMode::StablePrivacy => "stable_secret",
            AddrGenMode::Random => "random",
        }
    }
}
