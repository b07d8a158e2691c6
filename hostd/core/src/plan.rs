//! The planner: `(desired, observed, ownership) -> Plan`, a pure function.
//!
//! A [`Plan`] is an ordered list of [`Op`]s that apply executes as given. The
//! order is deterministic and safe for the kernel:
//!
//! 0. renames (NICs matched by MAC; the link is set down first)
//! 1. route deletions, 2. address deletions, 3. port releases,
//! 4. link deletions, children before parents (a VLAN before its base),
//! 5. changes to existing links (bond options, with the bond set down or
//!    emptied only when the kernel requires it; bridge options; MTU: lowering
//!    children first, raising parents first),
//! 6. link creations, parents before children,
//! 7. enslavements (a bond port is set down first, as the kernel wants),
//! 8. bridge port VLANs (deletions, then additions, as VLAN ranges),
//! 9. link states, lower devices first,
//! 10. address additions, 11. routes (replace), 12. DNS.
//!
//! Inside a phase, ties are broken by name. The planner simulates the
//! kernel's side effects it relies on (a released bond port goes down; IPv4
//! and IPv6 routes through a link that goes down are flushed; IPv6
//! addresses go with it) so that a plan leads to the desired state and the
//! re-observation after apply plans nothing.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    model::{compress_vlans, expand_vlans, Link, LinkKind, Observed, VidFlags, VlanEntry, VlanSet},
    ownership::Ownership,
    route::RouteKey,
    schema::{
        BondMode, BondOptions, BridgeOptions, DnsConfig, IfState, Interface, InterfaceType,
        NetworkState, PortVlan, PortVlanMode, Route, RouteState, StpOptions, VlanProtocol,
    },
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
    },
    /// `bridge vlan del dev IFACE vid ...`
    BridgeVlanDel {
        /// Port.
        iface: IfName,
        /// VIDs (ranges).
        vlans: Vec<VlanEntry>,
    },
    /// `bridge vlan add dev IFACE vid ... [pvid] [untagged]`
    BridgeVlanAdd {
        /// Port.
        iface: IfName,
        /// VIDs (ranges) with flags.
        vlans: Vec<VlanEntry>,
    },
    /// `ip addr add ADDRESS dev IFACE`
    AddAddress {
        /// Interface.
        iface: IfName,
        /// Address.
        address: IpNet,
    },
    /// `ip route replace ...`
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
    // The serialized form keeps the kernel names and a stable order.
    match serde_json::to_value(o) {
        Ok(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!(" {k} {s}"),
                serde_json::Value::Array(a) => {
                    format!(
                        " {k} {}",
                        a.iter()
                            .map(|x| x.as_str().unwrap_or("?").to_owned())
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                }
                other => format!(" {k} {other}"),
            })
            .collect(),
        _ => String::new(),
    }
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
            } => {
                write!(f, "set bond {iface}")?;
                if let Some(m) = mode {
                    write!(f, " mode {}", m.as_str())?;
                }
                write!(f, "{}", bond_text(options))
            }
            Op::SetBridge { iface, options } => {
                write!(f, "set bridge {iface}{}", bridge_text(options))
            }
            Op::SetMtu { iface, mtu } => write!(f, "set {iface} mtu {mtu}"),
            Op::CreateLink { iface, mtu, link } => {
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
                Ok(())
            }
            Op::BridgeVlanDel { iface, vlans } => {
                write!(f, "delete bridge vlans {} from {iface}", vlans_text(vlans))
            }
            Op::BridgeVlanAdd { iface, vlans } => {
                write!(f, "add bridge vlans {} to {iface}", vlans_text(vlans))
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
    /// The desired state is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// A NIC the state names does not exist (hostd never creates NICs).
    #[error("interfaces[{index}] ({name}): no such ethernet interface on this host; hostd never creates NICs")]
    MissingNic {
        /// Index in `interfaces`.
        index: usize,
        /// Name.
        name: IfName,
    },
    /// No NIC carries the MAC address the state matches on.
    #[error(
        "interfaces[{index}].mac-address: no ethernet interface has MAC {mac} (wanted as {name})"
    )]
    NoSuchMac {
        /// Index in `interfaces`.
        index: usize,
        /// Desired name.
        name: IfName,
        /// MAC.
        mac: MacAddr,
    },
    /// Renaming would take a name another link holds.
    #[error(
        "interfaces[{index}]: renaming {from} (matched by MAC) to {to} is impossible: {to} exists"
    )]
    RenameConflict {
        /// Index in `interfaces`.
        index: usize,
        /// Current name.
        from: IfName,
        /// Desired name.
        to: IfName,
    },
    /// The link exists with another kind and hostd may not replace it.
    #[error("interfaces[{index}].type: {name} exists as {found:?} on the host but is declared {wanted}; hostd never deletes NICs or links it does not manage")]
    KindConflict {
        /// Index in `interfaces`.
        index: usize,
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
}

/// Plans `desired` against `observed`: validates, then computes the ops.
pub fn plan(
    desired: &NetworkState,
    observed: &Observed,
    own: &Ownership,
) -> Result<Plan, PlanError> {
    validate(desired)?;
    plan_unchecked(desired, observed, own)
}

/// The plan that removes everything hostd created and leaves the NICs it
/// configured down and without addresses (`hostd teardown`).
pub fn plan_teardown(observed: &Observed, own: &Ownership) -> Result<Plan, PlanError> {
    let mut desired = NetworkState::default();
    for l in &observed.links {
        let kind = l.kind.interface_type();
        let owned = (own.created.contains(&l.name) && kind.is_virtual())
            || (own.managed.contains(&l.name) && kind == InterfaceType::Ethernet);
        if owned {
            let mut i = Interface::new(l.name.clone(), kind);
            i.state = IfState::Absent;
            desired.interfaces.push(i);
        }
    }
    plan_unchecked(&desired, observed, own)
}

/// The plan that takes the host from `now` back to `before` (rollback):
/// links created since are deleted, deleted ones recreated, modified ones
/// restored; routes added since are removed.
pub fn plan_rollback(before: &Observed, now: &Observed) -> Result<Plan, PlanError> {
    let desired = before.to_restore_state();
    let before_names = before.names();
    let before_keys: BTreeSet<RouteKey> = before.routes.iter().map(|r| r.key()).collect();
    let own = Ownership {
        created: now
            .links
            .iter()
            .filter(|l| {
                !before_names.contains(l.name.as_str()) && l.kind.interface_type().is_virtual()
            })
            .map(|l| l.name.clone())
            .collect(),
        managed: BTreeSet::new(),
        addresses: BTreeSet::new(),
        routes: now
            .routes
            .iter()
            .map(|r| r.key())
            .filter(|k| !before_keys.contains(k))
            .collect(),
    };
    plan_unchecked(&desired, now, &own)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CtrlKind {
    Bond,
    Bridge,
}

/// Plans without validating first (for states derived from the kernel).
pub fn plan_unchecked(
    desired: &NetworkState,
    observed: &Observed,
    own: &Ownership,
) -> Result<Plan, PlanError> {
    let mut ops: Vec<Op> = Vec::new();

    // Current view, keyed by name; updated as renames are planned.
    let mut cur: BTreeMap<String, Link> = observed
        .links
        .iter()
        .map(|l| (l.name.to_string(), l.clone()))
        .collect();
    let want: BTreeMap<&str, (usize, &Interface)> = desired
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, w)| (w.name.as_str(), (i, w)))
        .collect();

    // 0. Renames: ethernet interfaces matched by MAC.
    for (idx, w) in desired.interfaces.iter().enumerate() {
        let (InterfaceType::Ethernet, Some(mac)) = (w.kind, w.mac_address) else {
            continue;
        };
        if cur.get(w.name.as_str()).is_some_and(|l| l.mac == Some(mac)) {
            continue;
        }
        let found: Vec<String> = cur
            .values()
            .filter(|l| matches!(l.kind, LinkKind::Ethernet | LinkKind::Veth) && l.mac == Some(mac))
            .filter(|l| !want.contains_key(l.name.as_str()))
            .map(|l| l.name.to_string())
            .collect();
        let Some(from) = found.first() else {
            return Err(PlanError::NoSuchMac {
                index: idx,
                name: w.name.clone(),
                mac,
            });
        };
        if cur.contains_key(w.name.as_str()) {
            return Err(PlanError::RenameConflict {
                index: idx,
                from: IfName::new(from).map_err(|_| PlanError::MissingNic {
                    index: idx,
                    name: w.name.clone(),
                })?,
                to: w.name.clone(),
            });
        }
        let Some(mut link) = cur.remove(from) else {
            continue;
        };
        if link.up {
            ops.push(Op::SetState {
                iface: link.name.clone(),
                up: false,
            });
            link.up = false;
        }
        ops.push(Op::RenameLink {
            from: link.name.clone(),
            to: w.name.clone(),
        });
        for other in cur.values_mut() {
            if other.controller.as_ref() == Some(&link.name) {
                other.controller = Some(w.name.clone());
            }
            if let Some(v) = &mut other.vlan {
                if v.base_iface == link.name {
                    v.base_iface = w.name.clone();
                }
            }
        }
        link.name = w.name.clone();
        cur.insert(w.name.to_string(), link);
    }
    let renamed: BTreeSet<String> = ops
        .iter()
        .filter_map(|o| {
            if let Op::RenameLink { to, .. } = o {
                Some(to.to_string())
            } else {
                None
            }
        })
        .collect();
    let mut cur_routes: Vec<Route> = observed.routes.clone();
    // Routes and v6 addresses of renamed links go with the down.
    let mut goes_down: BTreeSet<String> = renamed.clone();

    // Desired controllers of ports.
    let present = |w: &Interface| w.state != IfState::Absent;
    let mut want_ctrl: BTreeMap<String, (String, CtrlKind)> = BTreeMap::new();
    for w in desired.interfaces.iter().filter(|w| present(w)) {
        if let Some(b) = &w.link_aggregation {
            for p in &b.port {
                want_ctrl.insert(p.to_string(), (w.name.to_string(), CtrlKind::Bond));
            }
        }
        if let Some(b) = &w.bridge {
            for p in &b.port {
                want_ctrl.insert(p.name.to_string(), (w.name.to_string(), CtrlKind::Bridge));
            }
        }
    }

    // 1. Which links go (and come back).
    let mut delete: BTreeSet<String> = BTreeSet::new();
    for (idx, w) in desired.interfaces.iter().enumerate() {
        let existing = cur.get(w.name.as_str());
        if w.kind.is_virtual() {
            let Some(l) = existing else { continue };
            let lt = l.kind.interface_type();
            if !lt.is_virtual() {
                return Err(PlanError::KindConflict {
                    index: idx,
                    name: w.name.clone(),
                    found: l.kind,
                    wanted: w.kind.as_str(),
                });
            }
            if w.state == IfState::Absent || lt != w.kind {
                delete.insert(w.name.to_string());
            } else if let (Some(wv), Some(lv)) = (&w.vlan, &l.vlan) {
                if wv != lv {
                    delete.insert(w.name.to_string());
                }
            }
        } else if w.kind == InterfaceType::Ethernet {
            match existing {
                Some(l) if !matches!(l.kind, LinkKind::Ethernet | LinkKind::Veth) => {
                    return Err(PlanError::KindConflict {
                        index: idx,
                        name: w.name.clone(),
                        found: l.kind,
                        wanted: "ethernet",
                    })
                }
                None if present(w) => {
                    return Err(PlanError::MissingNic {
                        index: idx,
                        name: w.name.clone(),
                    })
                }
                _ => {}
            }
        }
    }
    for name in &own.created {
        if !want.contains_key(name.as_str()) {
            if let Some(l) = cur.get(name.as_str()) {
                if l.kind.interface_type().is_virtual() {
                    delete.insert(name.to_string());
                }
            }
        }
    }
    // VLANs on deleted links go with them: recreate them if wanted, or
    // refuse if nobody said hostd may touch them.
    loop {
        let mut added = false;
        for l in cur.values() {
            let Some(v) = &l.vlan else { continue };
            if delete.contains(v.base_iface.as_str()) && !delete.contains(l.name.as_str()) {
                if want.contains_key(l.name.as_str()) || own.created.contains(&l.name) {
                    delete.insert(l.name.to_string());
                    added = true;
                } else {
                    return Err(PlanError::WouldDestroy {
                        name: v.base_iface.clone(),
                        upper: l.name.clone(),
                    });
                }
            }
        }
        if !added {
            break;
        }
    }
    goes_down.extend(delete.iter().cloned());

    // Links that exist after phase 4, with what the deletions did to them.
    let mut after: BTreeMap<String, Link> = cur.clone();
    for d in &delete {
        if let Some(l) = after.remove(d) {
            for other in after.values_mut() {
                if other.controller.as_ref() == Some(&l.name) {
                    other.controller = None;
                    other.vlans.clear();
                    if l.kind == LinkKind::Bond {
                        other.up = false;
                    }
                }
            }
        }
    }

    // 2. Existing bonds and bridges: option changes.
    let mut set_bonds: Vec<Op> = Vec::new();
    let mut set_bridges: Vec<Op> = Vec::new();
    let mut bond_down: BTreeSet<String> = BTreeSet::new();
    let mut bond_empty: BTreeSet<String> = BTreeSet::new();
    for w in desired.interfaces.iter().filter(|w| present(w)) {
        let Some(l) = after.get(w.name.as_str()) else {
            continue;
        };
        if let (Some(wb), Some(lb)) = (&w.link_aggregation, &l.bond) {
            let mode_changes = wb.mode != lb.mode;
            let diff = if mode_changes {
                wb.options.clone()
            } else {
                diff_bond(&wb.options, &lb.options)
            };
            if mode_changes || !diff.is_empty() {
                let noports = mode_changes || diff.fail_over_mac.is_some();
                let needs_down = noports
                    || diff.lacp_rate.is_some()
                    || diff.lacp_active.is_some()
                    || diff.ad_select.is_some()
                    || diff.ad_actor_sys_prio.is_some()
                    || diff.ad_actor_system.is_some()
                    || diff.ad_user_port_key.is_some()
                    || diff.tlb_dynamic_lb.is_some();
                if noports {
                    bond_empty.insert(w.name.to_string());
                }
                if needs_down && l.up {
                    bond_down.insert(w.name.to_string());
                }
                set_bonds.push(Op::SetBond {
                    iface: w.name.clone(),
                    mode: mode_changes.then_some(wb.mode),
                    options: diff,
                });
            }
        }
        if let (Some(wb), Some(lb)) = (&w.bridge, &l.bridge) {
            let diff = diff_bridge(&bridge_target(wb), lb);
            if !diff.is_empty() {
                set_bridges.push(Op::SetBridge {
                    iface: w.name.clone(),
                    options: diff,
                });
            }
        }
    }
    goes_down.extend(bond_down.iter().cloned());

    // 3. Controllers: releases and enslavements.
    let mut releases: Vec<IfName> = Vec::new();
    let mut enslave: Vec<(IfName, IfName, CtrlKind)> = Vec::new();
    let mut port_names: BTreeSet<String> = want_ctrl.keys().cloned().collect();
    for w in desired.interfaces.iter() {
        port_names.insert(w.name.to_string());
    }
    for p in &port_names {
        let declared = want.get(p.as_str()).map(|(_, w)| *w);
        let target = want_ctrl.get(p);
        let Some(l) = after.get(p) else {
            // Created by this plan: no controller yet.
            if let (Some(w), Some((c, kind))) = (declared, target) {
                if present(w) && w.kind.is_virtual() {
                    if let Ok(c) = IfName::new(c) {
                        enslave.push((w.name.clone(), c, *kind));
                    }
                }
            }
            continue;
        };
        let mut current = l.controller.as_ref().map(|c| c.to_string());
        if current.as_ref().is_some_and(|c| bond_empty.contains(c)) {
            releases.push(l.name.clone());
            current = None;
        } else if current.is_some() && current.as_ref() != target.map(|t| &t.0) {
            // Undeclared links keep their controller unless a desired
            // controller claims them; NICs declared absent are released.
            if declared.is_some() || target.is_some() {
                releases.push(l.name.clone());
                current = None;
            }
        }
        if let Some((c, kind)) = target {
            if current.as_deref() != Some(c.as_str()) {
                if let Ok(c) = IfName::new(c) {
                    enslave.push((l.name.clone(), c, *kind));
                }
            }
        }
    }
    let mut up_now: BTreeMap<String, bool> = after.iter().map(|(k, l)| (k.clone(), l.up)).collect();
    for r in &releases {
        if let Some(l) = after.get_mut(r.as_str()) {
            let was_bond = l
                .controller
                .as_ref()
                .and_then(|c| cur.get(c.as_str()))
                .is_some_and(|c| c.kind == LinkKind::Bond);
            l.controller = None;
            l.vlans.clear();
            if was_bond {
                up_now.insert(r.to_string(), false);
                goes_down.insert(r.to_string());
            }
        }
    }

    // Depths: lower devices first.
    let depth = depths(desired, &cur);

    // Emit phases 1-4.
    // Routes: which observed routes survive, and which the plan removes.
    let route_gone =
        |r: &Route, down: &BTreeSet<String>| r.interfaces().iter().any(|i| down.contains(*i));
    // Enslaving to a bond sets the port down first.
    for (p, _, kind) in &enslave {
        if *kind == CtrlKind::Bond && up_now.get(p.as_str()).copied().unwrap_or(false) {
            goes_down.insert(p.to_string());
        }
    }
    // Desired-down links and links whose state goes down also lose routes.
    for w in desired.interfaces.iter() {
        if w.state != IfState::Up && up_now.get(w.name.as_str()).copied().unwrap_or(false) {
            goes_down.insert(w.name.to_string());
        }
    }
    // VLANs follow their base down (and back up, by themselves).
    loop {
        let more: Vec<String> = cur
            .values()
            .filter(|l| l.up && !goes_down.contains(l.name.as_str()))
            .filter(|l| {
                l.vlan
                    .as_ref()
                    .is_some_and(|v| goes_down.contains(v.base_iface.as_str()))
            })
            .map(|l| l.name.to_string())
            .collect();
        if more.is_empty() {
            break;
        }
        goes_down.extend(more);
    }
    let want_routes: Vec<Route> = desired
        .routes
        .config
        .iter()
        .filter(|r| r.state == RouteState::Present)
        .map(|r| r.normalized())
        .collect();
    let want_keys: BTreeSet<RouteKey> = want_routes.iter().map(|r| r.key()).collect();
    let absent_keys: BTreeSet<RouteKey> = desired
        .routes
        .config
        .iter()
        .filter(|r| r.state == RouteState::Absent)
        .map(|r| r.key())
        .collect();
    let mut del_routes: Vec<Route> = Vec::new();
    cur_routes.retain(|r| !route_gone(r, &goes_down));
    for r in &cur_routes {
        let k = r.key();
        if !want_keys.contains(&k) && (absent_keys.contains(&k) || own.routes.contains(&k)) {
            del_routes.push(r.clone());
        }
    }
    del_routes.sort_by_key(|r| r.key());
    for r in del_routes {
        ops.push(Op::DeleteRoute { route: r });
    }

    // Addresses.
    let mut del_addrs: Vec<(IfName, IpNet)> = Vec::new();
    let mut add_addrs: Vec<(IfName, IpNet)> = Vec::new();
    for (name, l) in &after {
        let was_up = cur.get(name).is_some_and(|c| c.up);
        let cur_addrs: BTreeSet<IpNet> = l
            .addresses
            .iter()
            .filter(|a| !(matches!(a, IpNet::V6(_)) && goes_down.contains(name) && was_up))
            .copied()
            .collect();
        let owned: BTreeSet<IpNet> = own
            .addresses
            .iter()
            .filter(|a| a.iface.as_str() == name)
            .map(|a| a.address)
            .collect();
        let mut target: BTreeSet<IpNet> = cur_addrs.clone();
        match want.get(name.as_str()) {
            Some((_, w)) if w.state == IfState::Absent => {
                if w.kind == InterfaceType::Ethernet {
                    target.clear();
                }
            }
            Some((_, w)) => {
                let wanted = addresses_of(w);
                for (v4, cfg) in [(true, &w.ipv4), (false, &w.ipv6)] {
                    let fam = |a: &IpNet| matches!(a, IpNet::V4(_)) == v4;
                    if cfg.is_some() {
                        target.retain(|a| !fam(a));
                        target.extend(wanted.iter().filter(|a| fam(a)));
                    } else {
                        target.retain(|a| !(fam(a) && owned.contains(a) && !wanted.contains(a)));
                    }
                }
            }
            None => target.retain(|a| !owned.contains(a)),
        }
        for a in l
            .addresses
            .iter()
            .filter(|a| cur_addrs.contains(a) && !target.contains(a))
        {
            del_addrs.push((l.name.clone(), *a));
        }
        for a in target.iter().filter(|a| !cur_addrs.contains(a)) {
            add_addrs.push((l.name.clone(), *a));
        }
    }
    for r in &releases {
        ops.push(Op::SetController {
            iface: r.clone(),
            controller: None,
        });
    }
    // Address deletions go before releases only when the link stays; order
    // does not matter for the kernel, the phase order is documented.
    let release_count = releases.len();
    let release_start = ops.len() - release_count;
    let addr_ops: Vec<Op> = del_addrs
        .iter()
        .map(|(i, a)| Op::DeleteAddress {
            iface: i.clone(),
            address: *a,
        })
        .collect();
    ops.splice(release_start..release_start, addr_ops);

    let mut dels: Vec<&String> = delete.iter().collect();
    dels.sort_by_key(|n| {
        (
            std::cmp::Reverse(depth.get(n.as_str()).copied().unwrap_or(0)),
            n.to_string(),
        )
    });
    for d in dels {
        if let Some(l) = cur.get(d.as_str()) {
            ops.push(Op::DeleteLink {
                iface: l.name.clone(),
            });
        }
    }

    // 5. Changes to existing links.
    for b in &bond_down {
        if let Ok(n) = IfName::new(b) {
            ops.push(Op::SetState {
                iface: n,
                up: false,
            });
            up_now.insert(b.clone(), false);
        }
    }
    ops.extend(set_bonds);
    ops.extend(set_bridges);
    let mut lower: Vec<(usize, String, u32)> = Vec::new();
    let mut raise: Vec<(usize, String, u32)> = Vec::new();
    for w in desired.interfaces.iter().filter(|w| present(w)) {
        let Some(l) = after.get(w.name.as_str()) else {
            continue;
        };
        if want_ctrl
            .get(w.name.as_str())
            .is_some_and(|(_, k)| *k == CtrlKind::Bond)
        {
            continue; // bond ports follow their bond
        }
        let Some(m) = target_mtu(desired, &want, w) else {
            continue;
        };
        let d = depth.get(w.name.as_str()).copied().unwrap_or(0);
        if m < l.mtu {
            lower.push((usize::MAX - d, w.name.to_string(), m));
        } else if m > l.mtu {
            raise.push((d, w.name.to_string(), m));
        }
    }
    lower.sort();
    raise.sort();
    for (_, n, m) in lower.into_iter().chain(raise) {
        if let Ok(iface) = IfName::new(&n) {
            ops.push(Op::SetMtu { iface, mtu: m });
        }
    }

    // 6. Creations, parents first.
    let mut creates: Vec<(usize, &Interface)> = desired
        .interfaces
        .iter()
        .filter(|w| present(w) && w.kind.is_virtual() && !after.contains_key(w.name.as_str()))
        .map(|w| (depth.get(w.name.as_str()).copied().unwrap_or(0), w))
        .collect();
    creates.sort_by(|a, b| (a.0, a.1.name.as_str()).cmp(&(b.0, b.1.name.as_str())));
    for (_, w) in &creates {
        let link = match w.kind {
            InterfaceType::Bond => {
                let Some(b) = &w.link_aggregation else {
                    continue;
                };
                NewLink::Bond {
                    mode: b.mode,
                    options: b.options.clone(),
                }
            }
            InterfaceType::Vlan => {
                let Some(v) = &w.vlan else { continue };
                NewLink::Vlan {
                    base: v.base_iface.clone(),
                    id: v.id,
                    protocol: v.protocol,
                }
            }
            InterfaceType::LinuxBridge => NewLink::Bridge {
                options: w.bridge.as_ref().map(bridge_target).unwrap_or_default(),
            },
            _ => continue,
        };
        let mtu = if w.kind == InterfaceType::Vlan {
            w.mtu.map(|m| m.get())
        } else {
            target_mtu(desired, &want, w)
        };
        ops.push(Op::CreateLink {
            iface: w.name.clone(),
            mtu,
            link,
        });
        up_now.insert(w.name.to_string(), false);
    }

    // 7. Enslavements.
    enslave.sort_by(|a, b| {
        let da = depth.get(a.1.as_str()).copied().unwrap_or(0);
        let db = depth.get(b.1.as_str()).copied().unwrap_or(0);
        (da, a.1.as_str(), a.0.as_str()).cmp(&(db, b.1.as_str(), b.0.as_str()))
    });
    for (p, c, kind) in &enslave {
        if *kind == CtrlKind::Bond && up_now.get(p.as_str()).copied().unwrap_or(false) {
            ops.push(Op::SetState {
                iface: p.clone(),
                up: false,
            });
            up_now.insert(p.to_string(), false);
        }
        ops.push(Op::SetController {
            iface: p.clone(),
            controller: Some(c.clone()),
        });
        if *kind == CtrlKind::Bond {
            // The bonding driver opens (brings up) a port it enslaves.
            up_now.insert(p.to_string(), true);
        }
    }
    let enslaved: BTreeSet<&str> = enslave.iter().map(|(p, _, _)| p.as_str()).collect();

    // 8. Bridge port VLANs.
    let mut vlan_ports: Vec<(&IfName, &PortVlan)> = Vec::new();
    for w in desired.interfaces.iter().filter(|w| present(w)) {
        if let Some(b) = &w.bridge {
            for p in &b.port {
                if let Some(v) = &p.vlan {
                    vlan_ports.push((&p.name, v));
                }
            }
        }
    }
    vlan_ports.sort_by_key(|(n, _)| n.as_str());
    for (name, pv) in vlan_ports {
        let target = port_vlan_set(pv);
        let current: VlanSet = match after.get(name.as_str()) {
            Some(l) if !enslaved.contains(name.as_str()) => expand_vlans(&l.vlans),
            _ => VlanSet::from([(
                1,
                VidFlags {
                    pvid: true,
                    untagged: true,
                },
            )]),
        };
        let gone: VlanSet = current
            .iter()
            .filter(|(v, _)| !target.contains_key(v))
            .map(|(v, _)| (*v, VidFlags::default()))
            .collect();
        let add: VlanSet = target
            .iter()
            .filter(|(v, f)| current.get(v) != Some(f))
            .map(|(v, f)| (*v, *f))
            .collect();
        if !gone.is_empty() {
            ops.push(Op::BridgeVlanDel {
                iface: name.clone(),
                vlans: compress_vlans(&gone),
            });
        }
        if !add.is_empty() {
            ops.push(Op::BridgeVlanAdd {
                iface: name.clone(),
                vlans: compress_vlans(&add),
            });
        }
    }

    // 9. States, lower devices first.
    let mut states: Vec<(usize, &IfName, bool)> = Vec::new();
    for w in &desired.interfaces {
        let exists =
            after.contains_key(w.name.as_str()) || creates.iter().any(|(_, c)| c.name == w.name);
        if !exists || (w.state == IfState::Absent && w.kind.is_virtual()) {
            continue;
        }
        let up = w.state == IfState::Up;
        if up_now.get(w.name.as_str()).copied().unwrap_or(false) != up {
            states.push((
                depth.get(w.name.as_str()).copied().unwrap_or(0),
                &w.name,
                up,
            ));
        }
    }
    // Bonds taken down for options and ports released from emptied bonds come
    // back up even when the state does not name them.
    for b in bond_down.iter().chain(
        releases
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect::<Vec<_>>()
            .iter(),
    ) {
        if want.contains_key(b.as_str()) {
            continue;
        }
        if cur.get(b.as_str()).is_some_and(|l| l.up)
            && !up_now.get(b.as_str()).copied().unwrap_or(false)
        {
            if let Some(l) = cur.get(b.as_str()) {
                states.push((depth.get(b.as_str()).copied().unwrap_or(0), &l.name, true));
            }
        }
    }
    states.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
    states.dedup_by(|a, b| a.1 == b.1);
    for (_, n, up) in states {
        ops.push(Op::SetState {
            iface: n.clone(),
            up,
        });
    }

    // 10. Addresses.
    for w in creates.iter().map(|(_, w)| w) {
        for a in addresses_of(w) {
            add_addrs.push((w.name.clone(), a));
        }
    }
    add_addrs.sort();
    for (i, a) in add_addrs {
        ops.push(Op::AddAddress {
            iface: i,
            address: a,
        });
    }

    // 11. Routes.
    let mut adds: Vec<&Route> = want_routes
        .iter()
        .filter(|w| !cur_routes.iter().any(|c| route_matches(w, c)))
        .collect();
    adds.sort_by_key(|r| r.key());
    for r in adds {
        ops.push(Op::AddRoute { route: r.clone() });
    }

    // 12. DNS.
    if let Some(dns) = &desired.dns_resolver {
        if observed.dns.as_ref() != Some(&dns.config) {
            ops.push(Op::WriteDns {
                config: dns.config.clone(),
            });
        }
    }
    Ok(Plan { ops })
}

/// True when the observed route `c` is what the desired `w` asks for (a
/// desired next hop without an interface matches any interface).
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

fn addresses_of(w: &Interface) -> BTreeSet<IpNet> {
    [&w.ipv4, &w.ipv6]
        .into_iter()
        .flatten()
        .flat_map(|c| c.address.iter())
        .filter_map(|a| IpNet::new(a.ip, a.prefix_length).ok())
        .collect()
}

/// MTU the planner sets: declared, or a VLAN's base's (propagation).
fn target_mtu(
    desired: &NetworkState,
    want: &BTreeMap<&str, (usize, &Interface)>,
    w: &Interface,
) -> Option<u32> {
    let _ = desired;
    let mut cur = w;
    for _ in 0..8 {
        if let Some(m) = cur.mtu {
            return Some(m.get());
        }
        let v = cur.vlan.as_ref()?;
        cur = want.get(v.base_iface.as_str())?.1;
    }
    None
}

/// The bridge options to set, with VLAN filtering turned on when ports have
/// VLAN settings.
fn bridge_target(b: &crate::schema::BridgeConfig) -> BridgeOptions {
    let mut o = b.options.clone();
    if o.vlan_filtering.is_none() && b.port.iter().any(|p| p.vlan.is_some()) {
        o.vlan_filtering = Some(true);
    }
    o
}

/// VIDs a port's VLAN settings ask for.
pub fn port_vlan_set(pv: &PortVlan) -> VlanSet {
    let mut set = VlanSet::new();
    match pv.mode {
        PortVlanMode::Access => {
            if let Some(t) = pv.tag {
                set.insert(
                    t.get(),
                    VidFlags {
                        pvid: true,
                        untagged: true,
                    },
                );
            }
        }
        PortVlanMode::Trunk => {
            for t in &pv.trunk_tags {
                let (lo, hi) = match (t.id, t.id_range) {
                    (Some(i), _) => (i.get(), i.get()),
                    (None, Some(r)) => (r.min.get(), r.max.get()),
                    _ => continue,
                };
                for v in lo..=hi {
                    set.insert(v, VidFlags::default());
                }
            }
            if pv.enable_native {
                if let Some(t) = pv.tag {
                    set.insert(
                        t.get(),
                        VidFlags {
                            pvid: true,
                            untagged: true,
                        },
                    );
                }
            }
        }
    }
    set
}

/// Depth of each link: 0 for NICs, one more than its deepest lower device
/// (a VLAN's base, a controller's ports), over desired and current links.
fn depths(desired: &NetworkState, cur: &BTreeMap<String, Link>) -> BTreeMap<String, usize> {
    let mut lowers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in cur.values() {
        let e = lowers.entry(l.name.to_string()).or_default();
        if let Some(v) = &l.vlan {
            e.insert(v.base_iface.to_string());
        }
        if let Some(c) = &l.controller {
            lowers
                .entry(c.to_string())
                .or_default()
                .insert(l.name.to_string());
        }
    }
    for w in &desired.interfaces {
        let e = lowers.entry(w.name.to_string()).or_default();
        if let Some(v) = &w.vlan {
            e.insert(v.base_iface.to_string());
        }
        if let Some(b) = &w.link_aggregation {
            e.extend(b.port.iter().map(|p| p.to_string()));
        }
        if let Some(b) = &w.bridge {
            e.extend(b.port.iter().map(|p| p.name.to_string()));
        }
    }
    let mut memo: BTreeMap<String, usize> = BTreeMap::new();
    fn go(
        n: &str,
        lowers: &BTreeMap<String, BTreeSet<String>>,
        memo: &mut BTreeMap<String, usize>,
        guard: usize,
    ) -> usize {
        if let Some(d) = memo.get(n) {
            return *d;
        }
        if guard > 64 {
            return 0; // a cycle (validation refuses those); do not recurse forever
        }
        let d = lowers
            .get(n)
            .map(|ls| {
                ls.iter()
                    .map(|l| go(l, lowers, memo, guard + 1) + 1)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        memo.insert(n.to_owned(), d);
        d
    }
    let names: Vec<String> = lowers.keys().cloned().collect();
    for n in names {
        go(&n, &lowers, &mut memo, 0);
    }
    memo
}

macro_rules! diff_fields {
    ($want:expr, $have:expr, $out:expr, $($f:ident),*) => {$(
        if $want.$f.is_some() && $want.$f != $have.$f {
            $out.$f = $want.$f.clone();
        }
    )*};
}

/// The desired bond options that differ from the observed ones.
pub fn diff_bond(want: &BondOptions, have: &BondOptions) -> BondOptions {
    let mut out = BondOptions::default();
    diff_fields!(
        want,
        have,
        out,
        miimon,
        updelay,
        downdelay,
        use_carrier,
        lacp_rate,
        lacp_active,
        xmit_hash_policy,
        min_links,
        primary,
        primary_reselect,
        ad_select,
        ad_actor_sys_prio,
        ad_actor_system,
        ad_user_port_key,
        arp_interval,
        arp_ip_target,
        arp_validate,
        arp_all_targets,
        fail_over_mac,
        all_slaves_active,
        resend_igmp,
        num_grat_arp,
        packets_per_slave,
        lp_interval,
        tlb_dynamic_lb,
        peer_notif_delay,
        missed_max
    );
    out
}

/// The desired bridge options that differ from the observed ones.
pub fn diff_bridge(want: &BridgeOptions, have: &BridgeOptions) -> BridgeOptions {
    let mut out = BridgeOptions::default();
    diff_fields!(
        want,
        have,
        out,
        vlan_filtering,
        vlan_protocol,
        mac_ageing_time,
        multicast_snooping
    );
    if let Some(ws) = &want.stp {
        let hs = have.stp.clone().unwrap_or_default();
        let differs = ws.enabled != hs.enabled
            || (ws.forward_delay.is_some() && ws.forward_delay != hs.forward_delay)
            || (ws.hello_time.is_some() && ws.hello_time != hs.hello_time)
            || (ws.max_age.is_some() && ws.max_age != hs.max_age)
            || (ws.priority.is_some() && ws.priority != hs.priority);
        if differs {
            out.stp = Some(StpOptions { ..ws.clone() });
        }
    }
    out
}
