//! The OVS entries of the main document: `interfaces:` entries of type
//! `ovs-bridge` and `ovs-interface` beside the kernel ones.
//!
//! - [`ovs_part`]: the entries as an [`OvsState`] (what the OVS planner
//!   takes), with each entry's index in the document for error paths;
//! - [`validate_document`]: the OVS rules in the document's paths, and the
//!   rules that span both sides (an OVS port that is a declared kernel
//!   interface, a kernel VLAN on an OVS internal port, addresses on a port
//!   without a netdev);
//! - [`netdevs`] and [`predict`]: the kernel netdevs the OVS part means (a
//!   bridge's local port, fake bridges, internal ports; none on the `dummy`
//!   datapath), added to the observation for the kernel planner when
//!   ovs-vswitchd has not created them yet;
//! - [`ovs_claimed`]: names OVS takes as ports (the kernel planner leaves
//!   their controller, `ovs-system`, alone);
//! - [`stage`]: a kernel plan cut in three around the OVS steps (see
//!   docs/ovs.md, "One document, one pipeline").
//!
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    model::{LinkKind, Observed},
    plan::{Op, Plan},
    schema::{IfState, Interface, InterfaceType, NetworkState},
    validate::Invalid,
};

use super::{
    model::{Col, OvsObserved, OvsRow, Table},
    schema::{Datapath, OvsEntry, OvsEntryType, OvsPortConfig, OvsState},
};

/// The OVS entries of a document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OvsPart {
    /// The entries, in the document's order.
    pub state: OvsState,
    /// `index[j]`: the position in `interfaces` of `state.interfaces[j]`.
    pub index: Vec<usize>,
}

impl OvsPart {
    /// Rewrites a path of [`OvsState`] (`interfaces[j]...`) into the
    /// document's (`interfaces[i]...`).
    pub fn doc_path(&self, path: &str) -> String {
        let Some(rest) = path.strip_prefix("interfaces[") else {
            return path.to_owned();
        };
        let Some((n, tail)) = rest.split_once(']') else {
            return path.to_owned();
        };
        match n.parse::<usize>().ok().and_then(|j| self.index.get(j)) {
            Some(i) => format!("interfaces[{i}]{tail}"),
            None => path.to_owned(),
        }
    }
}

fn entry_of(i: &Interface) -> Option<OvsEntry> {
    let kind = match i.kind {
        InterfaceType::OvsBridge => OvsEntryType::OvsBridge,
        InterfaceType::OvsInterface => OvsEntryType::OvsInterface,
        _ => return None,
    };
    Some(OvsEntry {
        name: i.name.clone(),
        kind,
        mtu: i.mtu,
        bridge: i.ovs_bridge.clone(),
        patch: i.patch.clone(),
    })
}

/// True when the document has OVS entries (then, and only then, hostd
/// talks to OVSDB).
pub fn has_ovs(d: &NetworkState) -> bool {
    d.interfaces.iter().any(|i| i.kind.is_ovs())
}

/// The document's OVS entries, or `None` when it has none. Entries
/// declared `absent` are refused by validation and left out here.
pub fn ovs_part(d: &NetworkState) -> Option<OvsPart> {
    if !has_ovs(d) {
        return None;
    }
    let mut part = OvsPart::default();
    for (i, w) in d.interfaces.iter().enumerate() {
        if w.state == IfState::Absent {
            continue;
        }
        if let Some(e) = entry_of(w) {
            part.state.interfaces.push(e);
            part.index.push(i);
        }
    }
    Some(part)
}

/// The bridge (real one: a fake bridge's parent) each OVS name belongs to:
/// bridges and fake bridges to themselves' real bridge, ports and bond
/// members to the real bridge holding them.
fn real_bridge_of(s: &OvsState) -> BTreeMap<&str, &str> {
    let mut out = BTreeMap::new();
    for e in &s.interfaces {
        let Some(b) = &e.bridge else {
            if e.kind == OvsEntryType::OvsBridge {
                out.insert(e.name.as_str(), e.name.as_str());
            }
            continue;
        };
        let real = b.parent.as_ref().map_or(e.name.as_str(), |p| p.as_str());
        out.insert(e.name.as_str(), real);
        for p in &b.port {
            out.insert(p.name.as_str(), real);
            for m in p.link_aggregation.iter().flat_map(|l| &l.port) {
                out.insert(m.name.as_str(), real);
            }
        }
    }
    out
}

fn datapath_of(s: &OvsState, bridge: &str) -> Datapath {
    s.entry(bridge)
        .and_then(|e| e.bridge.as_ref())
        .and_then(|b| b.options.as_ref())
        .and_then(|o| o.datapath)
        .unwrap_or(Datapath::System)
}

/// The kernel netdevs the OVS part means, with their requested MTU: each
/// bridge's local port, fake bridges, internal `ovs-interface` entries.
/// None on the `dummy` datapath (its ports are not netdevs); none for patch
/// ports.
pub fn netdevs(s: &OvsState) -> BTreeMap<String, Option<u32>> {
    let real = real_bridge_of(s);
    let mut out = BTreeMap::new();
    for e in &s.interfaces {
        if e.patch.is_some() {
            continue;
        }
        let Some(bridge) = real.get(e.name.as_str()) else {
            continue;
        };
        if datapath_of(s, bridge) == Datapath::Dummy {
            continue;
        }
        out.insert(e.name.to_string(), e.mtu.map(|m| m.get()));
    }
    out
}

/// Names OVS takes as ports that are not OVS entries: NICs, Linux bonds,
/// VLANs (each bridge port that is not a bond or an OVS entry, and every
/// bond member that is not an OVS entry).
pub fn ovs_claimed(s: &OvsState) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in &s.interfaces {
        let Some(b) = &e.bridge else { continue };
        for p in &b.port {
            match &p.link_aggregation {
                Some(l) => {
                    for m in &l.port {
                        if s.entry(m.name.as_str()).is_none() {
                            out.insert(m.name.to_string());
                        }
                    }
                }
                None => {
                    if s.entry(p.name.as_str()).is_none() {
                        out.insert(p.name.to_string());
                    }
                }
            }
        }
    }
    out
}

/// The observation with the netdevs the OVS part will add (down, at their
/// requested MTU or 1500, no addresses) when they do not exist yet: the
/// kernel planner plans addresses, states and VLANs on them as if
/// ovs-vswitchd had made them, which it has when those operations run.
pub fn predict(observed: &Observed, d: &NetworkState) -> Observed {
    let Some(part) = ovs_part(d) else {
        return observed.clone();
    };
    let mut out = observed.clone();
    // Above any real ifindex, so nothing collides in the model.
    let mut index = u32::MAX - 4096;
    for (name, mtu) in netdevs(&part.state) {
        if out.link(&name).is_some() {
            continue;
        }
        let Ok(name) = crate::types::IfName::new(&name) else {
            continue;
        };
        index += 1;
        out.links.push(crate::model::Link {
            name,
            index,
            kind: LinkKind::Other,
            mac: None,
            mtu: mtu.unwrap_or(1500),
            up: false,
            controller: None,
            addresses: Vec::new(),
            dynamic: Vec::new(),
            bond: None,
            vlan: None,
            bridge: None,
            vlans: Vec::new(),
            addr_gen_mode: None,
            keep_addr_on_down: false,
            max_mtu: None,
        });
    }
    out
}

/// Validates the OVS entries in the document's paths, and what spans both
/// sides. Called by [`crate::validate::validate`].
pub fn validate_document(d: &NetworkState) -> Vec<Invalid> {
    let mut e = Vec::new();
    let mut push = |path: String, value: String, reason: &str| {
        e.push(Invalid {
            path,
            value,
            reason: reason.to_owned(),
        })
    };
    let Some(part) = ovs_part(d) else {
        return e;
    };
    for (i, w) in d.interfaces.iter().enumerate() {
        if !w.kind.is_ovs() {
            continue;
        }
        let p = format!("interfaces[{i}]");
        if w.state == IfState::Absent {
            push(
                format!("{p}.state"),
                "absent".into(),
                "an OVS entry is removed by leaving it out of the document (hostd removes the OVS rows it created that the document no longer declares)",
            );
        }
    }
    if let Err(errs) = part.state.validate() {
        for x in errs.0 {
            push(part.doc_path(&x.path), x.value, &x.reason);
        }
    }
    let dev = netdevs(&part.state);
    let by_name: BTreeMap<&str, (usize, &Interface)> = d
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, w)| (w.name.as_str(), (i, w)))
        .collect();
    // Addresses need a netdev.
    for (i, w) in d.interfaces.iter().enumerate() {
        if !w.kind.is_ovs() || w.state == IfState::Absent || dev.contains_key(w.name.as_str()) {
            continue;
        }
        for (f, c) in [("ipv4", &w.ipv4), ("ipv6", &w.ipv6)] {
            if c.as_ref().is_some_and(|c| !c.address.is_empty()) {
                push(
                    format!("interfaces[{i}].{f}"),
                    w.name.to_string(),
                    if w.patch.is_some() {
                        "a patch port has no netdev to carry addresses"
                    } else {
                        "a port of a bridge on the dummy datapath (or outside any bridge) has no netdev to carry addresses"
                    },
                );
            }
        }
    }
    // Kernel controllers, to catch a name taken by both sides.
    let mut kernel_ctrl: BTreeMap<&str, String> = BTreeMap::new();
    for (i, w) in d.interfaces.iter().enumerate() {
        if w.kind.is_ovs() || w.state == IfState::Absent {
            continue;
        }
        if let Some(b) = &w.link_aggregation {
            for (j, p) in b.port.iter().enumerate() {
                kernel_ctrl.insert(
                    p.as_str(),
                    format!("interfaces[{i}].link-aggregation.port[{j}]"),
                );
            }
        }
        if let Some(b) = &w.bridge {
            for (j, p) in b.port.iter().enumerate() {
                let pp = format!("interfaces[{i}].bridge.port[{j}].name");
                if let Some((_, pw)) = by_name.get(p.name.as_str()) {
                    if pw.kind.is_ovs() {
                        push(
                            pp.clone(),
                            p.name.to_string(),
                            "an OVS port is ovs-vswitchd's: it cannot be a port of a Linux bridge",
                        );
                    }
                }
                kernel_ctrl.insert(p.name.as_str(), pp);
            }
        }
        if let Some(v) = &w.vlan {
            if let Some((_, b)) = by_name.get(v.base_iface.as_str()) {
                if b.kind.is_ovs() && !dev.contains_key(b.name.as_str()) {
                    push(
                        format!("interfaces[{i}].vlan.base-iface"),
                        v.base_iface.to_string(),
                        "the base is an OVS port without a netdev (a patch port, or on the dummy datapath)",
                    );
                }
            }
        }
    }
    // OVS ports that are kernel interfaces, and OVS bonds' names.
    for (j, ent) in part.state.interfaces.iter().enumerate() {
        let Some(b) = &ent.bridge else { continue };
        let bp = format!("interfaces[{}].bridge", part.index[j]);
        for (k, port) in b.port.iter().enumerate() {
            let pp = format!("{bp}.port[{k}]");
            let mut names: Vec<(String, &str)> = Vec::new();
            match &port.link_aggregation {
                Some(l) => {
                    if let Some((ki, kw)) = by_name.get(port.name.as_str()) {
                        if !kw.kind.is_ovs() {
                            push(
                                format!("{pp}.name"),
                                port.name.to_string(),
                                &format!("an OVS bond is not a netdev; the name is declared as a {} at interfaces[{ki}]", kw.kind.as_str()),
                            );
                        }
                    }
                    for (m, member) in l.port.iter().enumerate() {
                        names.push((
                            format!("{pp}.link-aggregation.port[{m}].name"),
                            member.name.as_str(),
                        ));
                    }
                }
                None => names.push((format!("{pp}.name"), port.name.as_str())),
            }
            for (path, name) in names {
                let Some((ki, kw)) = by_name.get(name) else {
                    continue;
                };
                if kw.kind.is_ovs() {
                    continue;
                }
                if !matches!(
                    kw.kind,
                    InterfaceType::Ethernet | InterfaceType::Bond | InterfaceType::Vlan
                ) {
                    push(
                        path.clone(),
                        name.to_owned(),
                        &format!(
                            "an OVS port must be a NIC, a Linux bond or a VLAN; interfaces[{ki}] is a {}",
                            kw.kind.as_str()
                        ),
                    );
                }
                if kw.state == IfState::Absent {
                    push(
                        path.clone(),
                        name.to_owned(),
                        "the interface is declared absent",
                    );
                }
                if let Some(first) = kernel_ctrl.get(name) {
                    push(
                        path,
                        name.to_owned(),
                        &format!("already a port of a kernel bond or bridge at {first}"),
                    );
                }
            }
        }
    }
    e
}

/// Where each operation of a kernel plan runs around the OVS steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Staged {
    /// Before the OVS `remove` step: every route deletion, and removals on
    /// links that depend on an OVS netdev (an address of an internal port,
    /// a VLAN on one), which must go while the netdev is still there.
    pub pre: Plan,
    /// Between the `remove` step and the other OVS steps: everything that
    /// does not depend on an OVS netdev (a Linux bond OVS takes as a port
    /// exists before the step that adds it).
    pub main: Plan,
    /// After the OVS steps (ovs-vswitchd applied them: `cur_cfg`): the
    /// rest on links that depend on OVS netdevs (a VLAN on an internal
    /// port, its state), and every address, route and DNS operation.
    pub post: Plan,
}

/// Links that depend on an OVS netdev: the netdevs, VLANs on them, and
/// kernel bonds/bridges with such a port, transitively (observed and
/// desired). Controllers of kind `Other` (the `ovs-system` datapath) are
/// not followed.
pub fn dependents(
    ovs_netdevs: &BTreeSet<String>,
    observed: &Observed,
    desired: Option<&NetworkState>,
) -> BTreeSet<String> {
    let mut dep = ovs_netdevs.clone();
    let other: BTreeSet<&str> = observed
        .links
        .iter()
        .filter(|l| l.kind == LinkKind::Other)
        .map(|l| l.name.as_str())
        .collect();
    loop {
        let n = dep.len();
        for l in &observed.links {
            if l.vlan
                .as_ref()
                .is_some_and(|v| dep.contains(v.base_iface.as_str()))
            {
                dep.insert(l.name.to_string());
            }
            if let Some(c) = &l.controller {
                if dep.contains(l.name.as_str()) && !other.contains(c.as_str()) {
                    dep.insert(c.to_string());
                }
            }
        }
        for w in desired.iter().flat_map(|d| &d.interfaces) {
            if w.kind.is_ovs() {
                continue;
            }
            let mut hit = w
                .vlan
                .as_ref()
                .is_some_and(|v| dep.contains(v.base_iface.as_str()));
            hit |= w
                .link_aggregation
                .iter()
                .flat_map(|b| &b.port)
                .any(|p| dep.contains(p.as_str()));
            hit |= w
                .bridge
                .iter()
                .flat_map(|b| &b.port)
                .any(|p| dep.contains(p.name.as_str()));
            if hit {
                dep.insert(w.name.to_string());
            }
        }
        if dep.len() == n {
            return dep;
        }
    }
}

fn op_links<'a>(op: &'a Op, observed: &'a Observed) -> Vec<&'a str> {
    let mut v: Vec<&str> = Vec::new();
    match op {
        Op::RenameLink { from, to } => v.extend([from.as_str(), to.as_str()]),
        Op::DeleteRoute { route } | Op::AddRoute { route } => v.extend(route.interfaces()),
        Op::DeleteAddress { iface, .. }
        | Op::AddAddress { iface, .. }
        | Op::DeleteLink { iface }
        | Op::SetState { iface, .. }
        | Op::SetMtu { iface, .. }
        | Op::SetBridge { iface, .. }
        | Op::SetBond { iface, .. }
        | Op::SetAddrGenMode { iface, .. }
        | Op::BridgeVlanAdd { iface, .. }
        | Op::BridgeVlanDel { iface, .. } => v.push(iface.as_str()),
        Op::SetController { iface, controller } => {
            v.push(iface.as_str());
            match controller {
                Some(c) => v.push(c.as_str()),
                // A release also concerns the controller it leaves.
                None => v.extend(
                    observed
                        .link(iface.as_str())
                        .and_then(|l| l.controller.as_ref())
                        .map(|c| c.as_str()),
                ),
            }
        }
        Op::CreateLink { iface, link, .. } => {
            v.push(iface.as_str());
            if let crate::plan::NewLink::Vlan { base, .. } = link {
                v.push(base.as_str());
            }
        }
        Op::WriteDns { .. } => {}
    }
    v
}

/// Cuts `plan` (planned against `observed`) around the OVS steps; see
/// [`Staged`]. `dep` is [`dependents`]. Each part keeps the plan's order.
pub fn stage(plan: &Plan, observed: &Observed, dep: &BTreeSet<String>) -> Staged {
    let mut s = Staged::default();
    for op in &plan.ops {
        let on_dep = op_links(op, observed).iter().any(|n| dep.contains(*n));
        let removal = matches!(
            op,
            Op::DeleteAddress { .. }
                | Op::SetController {
                    controller: None,
                    ..
                }
                | Op::DeleteLink { .. }
                | Op::BridgeVlanDel { .. }
        );
        let part = match op {
            Op::DeleteRoute { .. } => &mut s.pre,
            Op::AddAddress { .. } | Op::AddRoute { .. } | Op::WriteDns { .. } => &mut s.post,
            _ if on_dep && removal => &mut s.pre,
            _ if on_dep => &mut s.post,
            _ => &mut s.main,
        };
        part.ops.push(op.clone());
    }
    s
}

fn vid(c: &Col) -> Option<crate::types::VlanId> {
    match c {
        Col::Int(i) => u32::try_from(*i)
            .ok()
            .and_then(|v| crate::types::VlanId::new(v).ok()),
        _ => None,
    }
}

fn port_config(o: &OvsObserved, p: &OvsRow, in_fake: bool) -> Option<OvsPortConfig> {
    use super::schema::{
        Lacp, LacpTime, OvsBondConfig, OvsBondMember, OvsBondMode, OvsPortVlan, TrunkTag, VlanMode,
    };
    let name = crate::types::IfName::new(&p.name).ok()?;
    let tag = vid(&p.col(Table::Port, "tag"));
    let trunks: Vec<TrunkTag> = match p.col(Table::Port, "trunks") {
        Col::Ints(v) => v
            .iter()
            .filter_map(|i| vid(&Col::Int(*i)))
            .map(|id| TrunkTag {
                id: Some(id),
                id_range: None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mode = match p.col(Table::Port, "vlan_mode") {
        Col::Str(m) if m == "trunk" => Some(VlanMode::Trunk),
        Col::Str(m) if m == "native-tagged" => Some(VlanMode::NativeTagged),
        Col::Str(m) if m == "native-untagged" => Some(VlanMode::NativeUntagged),
        Col::Str(m) if m == "access" => Some(VlanMode::Access),
        _ if tag.is_some() => Some(VlanMode::Access),
        _ if !trunks.is_empty() => Some(VlanMode::Trunk),
        _ => None,
    };
    let vlan = match mode {
        // A fake bridge's port carries the fake bridge's tag.
        _ if in_fake => None,
        Some(mode) => Some(OvsPortVlan {
            mode,
            tag: if mode == VlanMode::Trunk { None } else { tag },
            trunk_tags: if mode == VlanMode::Access {
                Vec::new()
            } else {
                trunks
            },
        }),
        None => None,
    };
    let bond_mode = match p.col(Table::Port, "bond_mode") {
        Col::Str(m) if m == "active-backup" => Some(OvsBondMode::ActiveBackup),
        Col::Str(m) if m == "balance-slb" => Some(OvsBondMode::BalanceSlb),
        Col::Str(m) if m == "balance-tcp" => Some(OvsBondMode::BalanceTcp),
        _ => None,
    };
    let link_aggregation = if p.refs.len() > 1 || bond_mode.is_some() {
        let int = |c: &str| match p.col(Table::Port, c) {
            Col::Int(i) if i > 0 => u32::try_from(i).ok(),
            _ => None,
        };
        Some(OvsBondConfig {
            mode: bond_mode.unwrap_or(OvsBondMode::ActiveBackup),
            lacp: match p.col(Table::Port, "lacp") {
                Col::Str(l) if l == "active" => Some(Lacp::Active),
                Col::Str(l) if l == "passive" => Some(Lacp::Passive),
                Col::Str(l) if l == "off" => Some(Lacp::Off),
                _ => None,
            },
            lacp_time: match p.col(Table::Port, "other_config") {
                Col::Map(m) => match m.get("lacp-time").map(String::as_str) {
                    Some("fast") => Some(LacpTime::Fast),
                    Some("slow") => Some(LacpTime::Slow),
                    _ => None,
                },
                _ => None,
            },
            bond_updelay: int("bond_updelay"),
            bond_downdelay: int("bond_downdelay"),
            port: p
                .refs
                .iter()
                .filter_map(|m| crate::types::IfName::new(m).ok())
                .map(|name| OvsBondMember { name })
                .collect(),
        })
    } else {
        None
    };
    let _ = o;
    Some(OvsPortConfig {
        name,
        vlan,
        link_aggregation,
    })
}

/// What OVSDB holds, as OVS entries of the schema (`hostd show`): every
/// bridge (hostd's or not), fake bridges, internal and patch interfaces.
/// Ports on a fake bridge are shown on its parent with their tag.
pub fn to_interfaces(o: &OvsObserved) -> Vec<Interface> {
    use super::schema::{Datapath, FailMode, OvsBridgeOptions, OvsPatchConfig};
    let mut out = Vec::new();
    let fake: BTreeSet<&str> = o
        .ports
        .iter()
        .filter(|p| p.col(Table::Port, "fake_bridge") == Col::Bool(true))
        .map(|p| p.name.as_str())
        .collect();
    for b in &o.bridges {
        let Ok(name) = crate::types::IfName::new(&b.name) else {
            continue;
        };
        let bool_col = |c: &str| match b.col(Table::Bridge, c) {
            Col::Bool(v) => Some(v),
            _ => None,
        };
        let options = OvsBridgeOptions {
            stp: bool_col("stp_enable"),
            rstp: bool_col("rstp_enable"),
            mcast_snooping_enable: bool_col("mcast_snooping_enable"),
            fail_mode: match b.col(Table::Bridge, "fail_mode") {
                Col::Str(f) if f == "secure" => Some(FailMode::Secure),
                Col::Str(f) if f == "standalone" => Some(FailMode::Standalone),
                _ => None,
            },
            datapath: match b.col(Table::Bridge, "datapath_type") {
                Col::Str(d) if d == "netdev" => Some(Datapath::Netdev),
                Col::Str(d) if d == "dummy" => Some(Datapath::Dummy),
                _ => Some(Datapath::System),
            },
        };
        // Fake bridges of this bridge by tag: a port with that tag and no
        // vlan_mode is the fake bridge's (`ovs-vsctl list-ports FAKE`).
        let fake_tags: BTreeMap<i64, &str> = b
            .refs
            .iter()
            .filter(|p| fake.contains(p.as_str()))
            .filter_map(|f| match o.get(Table::Port, f)?.col(Table::Port, "tag") {
                Col::Int(t) => Some((t, f.as_str())),
                _ => None,
            })
            .collect();
        let mut ports = Vec::new();
        let mut fake_ports: BTreeMap<&str, Vec<OvsPortConfig>> = BTreeMap::new();
        for pn in &b.refs {
            if pn == &b.name || fake.contains(pn.as_str()) {
                continue;
            }
            let Some(p) = o.get(Table::Port, pn) else {
                continue;
            };
            let on_fake = match (p.col(Table::Port, "tag"), p.col(Table::Port, "vlan_mode")) {
                (Col::Int(t), Col::Null) if p.refs.len() <= 1 => fake_tags.get(&t).copied(),
                _ => None,
            };
            match on_fake {
                Some(f) => fake_ports
                    .entry(f)
                    .or_default()
                    .extend(port_config(o, p, true)),
                None => ports.extend(port_config(o, p, false)),
            }
        }
        let mut i = Interface::new(name.clone(), InterfaceType::OvsBridge);
        i.ovs_bridge = Some(super::schema::OvsBridgeConfig {
            options: Some(options),
            port: ports,
            parent: None,
            tag: None,
        });
        out.push(i);
        for f in b.refs.iter().filter(|p| fake.contains(p.as_str())) {
            let (Some(p), Ok(fname)) = (o.get(Table::Port, f), crate::types::IfName::new(f)) else {
                continue;
            };
            let mut i = Interface::new(fname, InterfaceType::OvsBridge);
            i.ovs_bridge = Some(super::schema::OvsBridgeConfig {
                options: None,
                port: fake_ports.remove(f.as_str()).unwrap_or_default(),
                parent: Some(name.clone()),
                tag: vid(&p.col(Table::Port, "tag")),
            });
            out.push(i);
        }
    }
    let bridge_like: BTreeSet<&str> = o
        .bridges
        .iter()
        .map(|b| b.name.as_str())
        .chain(fake.iter().copied())
        .collect();
    for r in &o.interfaces {
        if bridge_like.contains(r.name.as_str()) {
            continue;
        }
        let Ok(name) = crate::types::IfName::new(&r.name) else {
            continue;
        };
        let ty = r.col(Table::Interface, "type");
        let mut i = Interface::new(name, InterfaceType::OvsInterface);
        match ty {
            Col::Str(t) if t == "internal" => {}
            Col::Str(t) if t == "patch" => {
                let peer = match r.col(Table::Interface, "options") {
                    Col::Map(m) => m
                        .get("peer")
                        .and_then(|p| crate::types::IfName::new(p).ok()),
                    _ => None,
                };
                let Some(peer) = peer else { continue };
                i.patch = Some(OvsPatchConfig { peer });
            }
            _ => continue,
        }
        if let Col::Int(m) = r.col(Table::Interface, "mtu_request") {
            i.mtu = u32::try_from(m)
                .ok()
                .and_then(|m| crate::types::Mtu::new(m).ok());
        }
        out.push(i);
    }
    out
}

/// Adds the OVS entries to a shown state: the kernel's view of an OVS
/// netdev (shown as `unknown`) is replaced by its OVS entry, which keeps
/// the netdev's state, MTU and addresses.
pub fn merge_into_shown(state: &mut NetworkState, o: &OvsObserved) {
    for mut e in to_interfaces(o) {
        if let Some(pos) = state
            .interfaces
            .iter()
            .position(|k| k.name == e.name && k.kind == InterfaceType::Unknown)
        {
            let k = state.interfaces.remove(pos);
            e.state = k.state;
            if e.patch.is_none() {
                e.mtu = k.mtu;
            }
            e.ipv4 = k.ipv4;
            e.ipv6 = k.ipv6;
        }
        state.interfaces.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
interfaces:
  - name: eth0
    type: ethernet
  - name: eth1
    type: ethernet
  - name: bond1
    type: bond
    link-aggregation: { mode: active-backup, port: [eth2, eth3] }
  - name: eth2
    type: ethernet
  - name: eth3
    type: ethernet
  - name: br0
    type: ovs-bridge
    bridge:
      port:
        - name: ovsbond
          link-aggregation:
            mode: balance-tcp
            lacp: active
            port: [{ name: eth0 }, { name: eth1 }]
        - name: bond1
        - name: mgmt0
          vlan: { mode: access, tag: 200 }
  - name: mgmt0
    type: ovs-interface
    mtu: 1500
    ipv4: { address: [{ ip: 192.0.2.10, prefix-length: 24 }] }
  - name: mgmt0.300
    type: vlan
    vlan: { base-iface: mgmt0, id: 300 }
    ipv4: { address: [{ ip: 198.51.100.10, prefix-length: 24 }] }
routes:
  config:
    - { destination: 0.0.0.0/0, next-hop-address: 192.0.2.1 }
"#;

    fn doc() -> NetworkState {
        NetworkState::parse(DOC).expect("parses")
    }

    #[test]
    fn parses_both_bridge_shapes_and_round_trips() {
        let d = doc();
        let br0 = d.interface("br0").expect("br0");
        assert_eq!(br0.kind, InterfaceType::OvsBridge);
        assert!(br0.bridge.is_none());
        let ob = br0.ovs_bridge.as_ref().expect("ovs bridge");
        assert_eq!(ob.port.len(), 3);
        // Serialized with `bridge:`, parsed back the same.
        let y = serde_norway::to_string(&d).expect("yaml");
        assert!(
            y.contains("type: ovs-bridge\n  state: up\n  bridge:"),
            "{y}"
        );
        assert_eq!(NetworkState::parse(&y).expect("back"), d);
        let j = serde_json::to_string(&d).expect("json");
        assert_eq!(NetworkState::parse(&j).expect("back"), d);
        // `bridge` before `type`: buffered, same result.
        let swapped = "interfaces:\n  - bridge: { port: [{ name: eth0 }] }\n    name: br0\n    type: ovs-bridge\n  - bridge: { options: { stp: { enabled: true } } }\n    name: br1\n    type: linux-bridge\n";
        let s = NetworkState::parse(swapped).expect("parses");
        assert!(s.interfaces[0].ovs_bridge.is_some() && s.interfaces[0].bridge.is_none());
        assert!(s.interfaces[1].bridge.is_some() && s.interfaces[1].ovs_bridge.is_none());
    }

    #[test]
    fn parse_errors_keep_paths() {
        let e = NetworkState::parse(
            "interfaces:\n  - name: br0\n    type: ovs-bridge\n    bridge: { port: [{ name: p, vlan: { mode: acces } }] }\n",
        )
        .expect_err("bad mode");
        assert_eq!(e.path, "interfaces[0].bridge.port[0].vlan.mode", "{e}");
        let e = NetworkState::parse(
            "interfaces:\n  - bridge: { port: [{ name: p, vlan: { mode: acces } }] }\n    name: br0\n    type: ovs-bridge\n",
        )
        .expect_err("bad mode");
        assert!(e.to_string().contains("bridge.port[0].vlan.mode"), "{e}");
        // A linux-bridge's bridge is still the kernel shape.
        let e = NetworkState::parse(
            "interfaces:\n  - name: br0\n    type: linux-bridge\n    bridge: { port: [{ name: p, link-aggregation: {} }] }\n",
        )
        .expect_err("unknown field");
        assert_eq!(
            e.path, "interfaces[0].bridge.port[0].link-aggregation",
            "{e}"
        );
    }

    #[test]
    fn valid_mixed_document() {
        crate::validate::validate(&doc()).expect("valid");
        let part = ovs_part(&doc()).expect("ovs");
        assert_eq!(part.index, vec![5, 6]);
        let nd = netdevs(&part.state);
        assert_eq!(
            nd.keys().map(String::as_str).collect::<Vec<_>>(),
            ["br0", "mgmt0"]
        );
        assert_eq!(
            ovs_claimed(&part.state),
            BTreeSet::from(["bond1".into(), "eth0".into(), "eth1".into()])
        );
    }

    #[test]
    fn cross_side_errors_name_document_paths() {
        let bad = r#"
interfaces:
  - name: eth0
    type: ethernet
  - name: lbr
    type: linux-bridge
    bridge: { port: [{ name: eth0 }, { name: mgmt0 }] }
  - name: br0
    type: ovs-bridge
    bridge:
      options: { datapath: dummy }
      port:
        - name: eth0
        - name: mgmt0
        - name: lbr
        - name: patch-a
  - name: mgmt0
    type: ovs-interface
    ipv4: { address: [{ ip: 192.0.2.10, prefix-length: 24 }] }
  - name: patch-a
    type: ovs-interface
    patch: { peer: patch-a }
  - name: v9
    type: vlan
    vlan: { base-iface: patch-a, id: 9 }
  - name: gone
    type: ovs-interface
    state: absent
"#;
        let d = NetworkState::parse(bad).expect("parses");
        let errs = crate::validate::validate(&d).expect_err("invalid").0;
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let has = |p: &str, r: &str| {
            assert!(
                errs.iter().any(|e| e.path == p && e.reason.contains(r)),
                "no {p}: {r} in {text:#?}"
            )
        };
        has(
            "interfaces[1].bridge.port[1].name",
            "cannot be a port of a Linux bridge",
        );
        has(
            "interfaces[2].bridge.port[0].name",
            "already a port of a kernel bond or bridge",
        );
        has(
            "interfaces[2].bridge.port[2].name",
            "an OVS port must be a NIC",
        );
        has("interfaces[3].ipv4", "no netdev");
        has("interfaces[4].patch.peer", "cannot peer with itself");
        has("interfaces[5].vlan.base-iface", "without a netdev");
        has("interfaces[6].state", "leaving it out");
    }

    #[test]
    fn predicted_netdevs_and_stages() {
        let d = doc();
        let mut observed = Observed::default();
        for (n, i) in [("eth0", 2), ("eth1", 3), ("eth2", 4), ("eth3", 5)] {
            observed.links.push(
                serde_json::from_value(serde_json::json!({
                    "name": n, "index": i, "kind": "ethernet", "mtu": 1500, "up": false
                }))
                .expect("link"),
            );
        }
        let p = predict(&observed, &d);
        let br0 = p.link("br0").expect("predicted br0");
        assert!(!br0.up && br0.kind == LinkKind::Other);
        let own = crate::Ownership::default();
        let plan = crate::plan(&d, &observed, &own).expect("plan");
        let nd: BTreeSet<String> = netdevs(&ovs_part(&d).expect("ovs").state)
            .into_keys()
            .collect();
        let dep = dependents(&nd, &p, Some(&d));
        assert!(
            dep.contains("mgmt0.300") && !dep.contains("bond1"),
            "{dep:?}"
        );
        let s = stage(&plan, &p, &dep);
        let text = |p: &Plan| p.ops.iter().map(ToString::to_string).collect::<Vec<_>>();
        let (main, post) = (text(&s.main), text(&s.post));
        assert!(s.pre.is_empty(), "{:?}", text(&s.pre));
        assert!(
            main.iter().any(|o| o.starts_with("create bond bond1")),
            "{main:?}"
        );
        assert!(main.iter().all(|o| !o.contains("mgmt0")), "{main:?}");
        assert!(
            post.iter()
                .any(|o| o.starts_with("create vlan mgmt0.300 on mgmt0")),
            "{post:?}"
        );
        assert!(post.contains(&"set mgmt0 up".to_owned()), "{post:?}");
        assert!(
            post.contains(&"add address 192.0.2.10/24 to mgmt0".to_owned()),
            "{post:?}"
        );
        assert!(
            post.last().is_some_and(|o| o.starts_with("add route")),
            "{post:?}"
        );
        // eth0/eth1 (OVS bond members) are not released or enslaved.
        assert!(
            plan.ops
                .iter()
                .all(|o| !matches!(o, Op::SetController { iface, .. } if iface.as_str() == "eth0")),
            "{plan}"
        );
    }
}
