//! Rollback: undo exactly what a failed apply did.
//!
//! The input is the pre-apply observation, the host now, and the operations
//! the kernel acknowledged (in order). The intent it lowers to touches only:
//! the links those operations named (followed through renames), the links
//! the kernel changed because of them (the VLANs deleted with their base or
//! taken down with it, the ports of a deleted or emptied bond, the bridge
//! that followed a port's MTU: links related to a touched one that differ
//! from before), the addresses those operations added or the kernel dropped
//! on those links, the routes they added, replaced or deleted and the routes
//! through those links that the kernel flushed, and the resolver file if it
//! was written. Everything else that appeared or changed meanwhile (a
//! hypervisor's tap, a DHCP address, an FRR route) is left alone.

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;

use crate::{
    model::{expand_vlans, Link, LinkKind, Observed},
    route::RouteKey,
    schema::IfState,
    types::IfName,
};

use super::{
    intent::{Controller, CtrlKind, Find, Intent, LinkIntent, Restore, RouteRemoval},
    plan_intent, Op, Plan, PlanError,
};

/// The plan that undoes `sent` (the operations the kernel acknowledged),
/// taking the host from `now` back to `before` for what they touched.
pub fn plan_rollback(before: &Observed, now: &Observed, sent: &[Op]) -> Result<Plan, PlanError> {
    plan_intent(&rollback_intent(before, now, sent), now)
}

/// A link's identity through a plan: the ifindex it had before, or the
/// name of a link the plan created.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Id {
    Before(u32),
    New(String),
}

/// The intent of a rollback (see the module documentation).
pub fn rollback_intent(before: &Observed, now: &Observed, sent: &[Op]) -> Intent {
    let b_by_index: HashMap<u32, &Link> = before.links.iter().map(|l| (l.index, l)).collect();
    let b_by_name: HashMap<&str, &Link> =
        before.links.iter().map(|l| (l.name.as_str(), l)).collect();
    let n_by_index: HashMap<u32, &Link> = now.links.iter().map(|l| (l.index, l)).collect();

    let mut names: HashMap<String, Id> = before
        .links
        .iter()
        .map(|l| (l.name.to_string(), Id::Before(l.index)))
        .collect();
    let id_of = |names: &HashMap<String, Id>, n: &str| {
        names
            .get(n)
            .cloned()
            .unwrap_or_else(|| Id::New(n.to_owned()))
    };
    let mut touched: BTreeSet<Id> = BTreeSet::new();
    let mut created: BTreeSet<String> = BTreeSet::new();
    let mut added: BTreeSet<(Id, IpNet)> = BTreeSet::new();
    let mut route_keys: BTreeSet<RouteKey> = BTreeSet::new();
    let mut dns_written = false;
    for op in sent {
        match op {
            Op::RenameLink { from, to } => {
                let id = names
                    .remove(from.as_str())
                    .unwrap_or_else(|| Id::New(from.to_string()));
                names.insert(to.to_string(), id.clone());
                touched.insert(id);
            }
            Op::CreateLink { iface, .. } => {
                names.insert(iface.to_string(), Id::New(iface.to_string()));
                created.insert(iface.to_string());
            }
            Op::DeleteLink { iface } => {
                let id = id_of(&names, iface.as_str());
                names.remove(iface.as_str());
                touched.insert(id);
            }
            Op::SetController { iface, controller } => {
                touched.insert(id_of(&names, iface.as_str()));
                if let Some(c) = controller {
                    touched.insert(id_of(&names, c.as_str()));
                }
            }
            Op::SetState { iface, .. }
            | Op::SetMtu { iface, .. }
            | Op::SetBond { iface, .. }
            | Op::SetBridge { iface, .. }
            | Op::BridgeVlanAdd { iface, .. }
            | Op::BridgeVlanDel { iface, .. }
            | Op::SetAddrGenMode { iface, .. }
            | Op::DeleteAddress { iface, .. } => {
                touched.insert(id_of(&names, iface.as_str()));
            }
            Op::AddAddress { iface, address } => {
                let id = id_of(&names, iface.as_str());
                touched.insert(id.clone());
                added.insert((id, *address));
            }
            Op::AddRoute { route } | Op::DeleteRoute { route } => {
                route_keys.insert(route.key());
            }
            Op::WriteDns { .. } => dns_written = true,
        }
    }

    // What the kernel changed because of them: related links that differ.
    let differs = |idx: u32| match (b_by_index.get(&idx), n_by_index.get(&idx)) {
        (Some(b), Some(n)) => !same_config(b, n),
        (Some(_), None) => true,
        _ => false,
    };
    let mut queue: Vec<u32> = touched
        .iter()
        .filter_map(|id| match id {
            Id::Before(i) => Some(*i),
            Id::New(_) => None,
        })
        .collect();
    let mut scope: BTreeSet<u32> = queue.iter().copied().collect();
    // The controller and the base of a touched link are always in scope (a
    // rollback re-enslaving a port makes a bridge follow its MTU again);
    // other related links when they differ from before.
    for idx in queue.clone() {
        if let Some(b) = b_by_index.get(&idx) {
            for n in [
                b.controller.as_ref(),
                b.vlan.as_ref().map(|v| &v.base_iface),
            ]
            .into_iter()
            .flatten()
            {
                if let Some(o) = b_by_name.get(n.as_str()) {
                    if scope.insert(o.index) {
                        queue.push(o.index);
                    }
                }
            }
        }
    }
    while let Some(idx) = queue.pop() {
        let Some(b) = b_by_index.get(&idx) else {
            continue;
        };
        // The VLANs on it always (they went down and up with it, and routes
        // through them were flushed); its ports when they differ.
        for o in before
            .links
            .iter()
            .filter(|o| o.vlan.as_ref().is_some_and(|v| v.base_iface == b.name))
        {
            if scope.insert(o.index) {
                queue.push(o.index);
            }
        }
        let mut related: Vec<u32> = before
            .links
            .iter()
            .filter(|o| o.controller.as_ref() == Some(&b.name))
            .map(|o| o.index)
            .collect();
        for n in [
            b.controller.as_ref(),
            b.vlan.as_ref().map(|v| &v.base_iface),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(o) = b_by_name.get(n.as_str()) {
                related.push(o.index);
            }
        }
        for r in related {
            if !scope.contains(&r) && differs(r) {
                scope.insert(r);
                queue.push(r);
            }
        }
    }

    let mut intent = Intent {
        may_destroy_uppers: true,
        ..Intent::default()
    };
    for idx in &scope {
        let Some(b) = b_by_index.get(idx) else {
            continue;
        };
        let kind = b.kind.interface_type();
        if matches!(b.kind, LinkKind::Loopback | LinkKind::Other) {
            continue;
        }
        let mut li = LinkIntent::keep(b.name.clone(), kind, "rollback".into());
        li.find = Find::Index(*idx);
        li.state = Some(if b.up { IfState::Up } else { IfState::Down });
        li.mtu = Some(b.mtu);
        li.bond = b.bond.as_ref().map(|s| (s.mode, s.options.clone()));
        li.clear_primary = b.bond.as_ref().is_some_and(|s| s.options.primary.is_none());
        li.vlan = b.vlan.clone();
        li.bridge = b.bridge.clone();
        li.controller = Some(b.controller.as_ref().map(|c| Controller {
            name: c.clone(),
            kind: match b_by_name.get(c.as_str()).map(|c| c.kind) {
                Some(LinkKind::Bond) => CtrlKind::Bond,
                _ => CtrlKind::Bridge,
            },
        }));
        let in_bridge = b
            .controller
            .as_ref()
            .and_then(|c| b_by_name.get(c.as_str()))
            .is_some_and(|c| c.kind == LinkKind::Bridge);
        if in_bridge || b.kind == LinkKind::Bridge {
            li.port_vlans = Some(expand_vlans(&b.vlans));
        }
        // All of them, present now or not: the rollback's own steps (a link
        // set down again) can drop them.
        li.addrs.ensure = b.addresses.iter().copied().collect();
        li.addrs.remove = added
            .iter()
            .filter(|(id, a)| *id == Id::Before(*idx) && !b.addresses.contains(a))
            .map(|(_, a)| *a)
            .collect();
        if !n_by_index.contains_key(idx) && kind.is_virtual() {
            li.restore = Restore {
                index: Some(*idx),
                mac: b.mac,
                addr_gen_mode: b.addr_gen_mode,
            };
        }
        intent.links.push(li);
    }
    // Links the apply created go (with the addresses it put on them).
    let restored: std::collections::HashSet<IfName> =
        intent.links.iter().map(|l| l.name.clone()).collect();
    let now_links = now.links_by_name();
    for name in &created {
        let Ok(n) = IfName::new(name) else { continue };
        // A link restored under the same name replaces it (see `Find::Index`).
        if restored.contains(&n) {
            continue;
        }
        if let Some(l) = now_links.get(name.as_str()) {
            if b_by_name.contains_key(name.as_str()) && !l.kind.interface_type().is_virtual() {
                continue;
            }
            let mut li = LinkIntent::keep(n, l.kind.interface_type(), "rollback".into());
            li.state = Some(IfState::Absent);
            intent.links.push(li);
        }
    }

    // Routes: what the apply added goes, what it replaced or deleted, and
    // what the kernel flushed through the links it touched, comes back.
    let scope_names: BTreeSet<&str> = scope
        .iter()
        .filter_map(|i| b_by_index.get(i).map(|l| l.name.as_str()))
        .collect();
    // Every such route is ensured, present now or not: the rollback's own
    // steps (an address removed and added back) can flush it again.
    for r in &before.routes {
        let ours =
            route_keys.contains(&r.key()) || r.interfaces().iter().any(|i| scope_names.contains(i));
        if ours {
            intent.routes.ensure.push((r.clone(), "rollback".into()));
        }
    }
    let before_keys: BTreeSet<RouteKey> = before.routes.iter().map(|r| r.key()).collect();
    for c in &now.routes {
        let k = c.key();
        if route_keys.contains(&k) && !before_keys.contains(&k) {
            intent.routes.remove.push(RouteRemoval::Exact(c.clone()));
        }
    }
    if dns_written {
        intent.dns = before.dns.clone();
    }
    intent
}

/// True when two observations of one link agree on everything a plan can
/// change.
fn same_config(b: &Link, n: &Link) -> bool {
    b.name == n.name
        && b.up == n.up
        && b.mtu == n.mtu
        && b.controller == n.controller
        && b.addresses == n.addresses
        && expand_vlans(&b.vlans) == expand_vlans(&n.vlans)
        && b.bond == n.bond
        && b.bridge == n.bridge
        && b.vlan == n.vlan
}
