//! What must be true after a plan, per object: the one input of the phase
//! planners. A document (with the ownership record), a teardown and a
//! rollback are each lowered into an [`Intent`]; the planner never looks at
//! where it came from.
//!
//! Every field that is `None` means "leave it as it is", so an intent names
//! only what its source decides: a document decides everything about the
//! interfaces it declares, and only the removal of hostd's own leftovers
//! (links it created, addresses and routes it set) about the rest; a
//! rollback decides only what the failed apply touched.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::{
    model::{AddrGenMode, LinkKind, Observed, VidFlags, VlanSet},
    ownership::Ownership,
    route::RouteKey,
    schema::{
        BondMode, BondOptions, BridgeConfig, BridgeOptions, DnsConfig, IfState, Interface,
        InterfaceType, NetworkState, PortVlan, PortVlanMode, Route, RouteState, VlanConfig,
    },
    types::{IfName, MacAddr},
    validate::{Invalid, ValidationErrors},
};

use super::PlanError;

/// How to find the link an intent is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Find {
    /// By its name.
    Name,
    /// A NIC by its (permanent) MAC address; renamed if its name differs.
    Mac(MacAddr),
    /// By ifindex (a rollback: the link a failed apply renamed or deleted);
    /// renamed back if its name differs, recreated with this index if gone.
    Index(u32),
}

/// Kind of controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CtrlKind {
    /// A bond (the port is set down before it is enslaved).
    Bond,
    /// A bridge.
    Bridge,
}

/// A link's wanted controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// The bond or bridge.
    pub name: IfName,
    /// Which of the two.
    pub kind: CtrlKind,
}

/// Addresses of one link: what must be there and what must go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddrIntent {
    /// The exact set of static IPv4 addresses (dynamic ones are never
    /// touched), when decided.
    pub exact_v4: Option<BTreeSet<IpNet>>,
    /// The same for IPv6 (link-local addresses are the kernel's).
    pub exact_v6: Option<BTreeSet<IpNet>>,
    /// Addresses that must be there (besides the exact sets).
    pub ensure: BTreeSet<IpNet>,
    /// Static addresses that must go (besides the exact sets).
    pub remove: BTreeSet<IpNet>,
}

impl AddrIntent {
    /// Every address that must be there.
    pub fn wanted(&self) -> BTreeSet<IpNet> {
        let mut w = self.ensure.clone();
        for s in [&self.exact_v4, &self.exact_v6].into_iter().flatten() {
            w.extend(s.iter().copied());
        }
        w
    }

    /// True when the static address `a` must go.
    pub fn unwanted(&self, a: &IpNet) -> bool {
        if self.ensure.contains(a) {
            return false;
        }
        let exact = match a {
            IpNet::V4(_) => &self.exact_v4,
            IpNet::V6(_) => &self.exact_v6,
        };
        match exact {
            Some(set) => !set.contains(a),
            None => self.remove.contains(a),
        }
    }
}

/// What a rollback needs to recreate a deleted link as it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restore {
    /// Its former ifindex.
    pub index: Option<u32>,
    /// Its former MAC address.
    pub mac: Option<MacAddr>,
    /// Its former IPv6 address generation mode.
    pub addr_gen_mode: Option<AddrGenMode>,
}

/// What must be true of one link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkIntent {
    /// Name it must have.
    pub name: IfName,
    /// Where it comes from, for errors (`interfaces[3]`, `rollback`).
    pub path: String,
    /// Its type.
    pub kind: InterfaceType,
    /// up, down or absent; `None`: as it was when the plan started.
    pub state: Option<IfState>,
    /// How to find it.
    pub find: Find,
    /// MTU; `None`: leave it (or follow the kernel).
    pub mtu: Option<u32>,
    /// Bond mode and options (options not set are left as they are).
    pub bond: Option<(BondMode, BondOptions)>,
    /// The bond must have no primary port (a rollback).
    pub clear_primary: bool,
    /// VLAN settings (a different one means delete and recreate).
    pub vlan: Option<VlanConfig>,
    /// Bridge options (options not set are left as they are).
    pub bridge: Option<BridgeOptions>,
    /// `Some(None)`: no controller; `Some(Some(c))`: a port of `c`;
    /// `None`: leave it.
    pub controller: Option<Option<Controller>>,
    /// Exact VLAN membership as a bridge port.
    pub port_vlans: Option<VlanSet>,
    /// Addresses.
    pub addrs: AddrIntent,
    /// How to recreate it as it was (rollback).
    pub restore: Restore,
}

impl LinkIntent {
    /// An intent that leaves everything about `name` as it is.
    pub fn keep(name: IfName, kind: InterfaceType, path: String) -> Self {
        Self {
            name,
            path,
            kind,
            state: None,
            find: Find::Name,
            mtu: None,
            bond: None,
            clear_primary: false,
            vlan: None,
            bridge: None,
            controller: None,
            port_vlans: None,
            addrs: AddrIntent::default(),
            restore: Restore::default(),
        }
    }

    /// True when the link must not exist (virtual) or must be down,
    /// released and without static addresses (a NIC).
    pub fn absent(&self) -> bool {
        self.state == Some(IfState::Absent)
    }

    /// True for a virtual link that must exist.
    pub fn present_virtual(&self) -> bool {
        self.kind.is_virtual() && !self.absent()
    }
}

/// How a route is removed.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteRemoval {
    /// The route with this key, whoever installed it (the document says
    /// `state: absent`).
    Key(RouteKey),
    /// The route with this key only when it is hostd's (`proto static` or
    /// `boot`): a key hostd set before that the document no longer lists.
    Owned(RouteKey),
    /// Exactly this route (a rollback removing a route it added).
    Exact(Route),
}

/// Routes: what must be there and what must go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutesIntent {
    /// Routes that must exist (replaced when the key holds another route),
    /// with where each comes from (`routes.config[2]`).
    pub ensure: Vec<(Route, String)>,
    /// Routes that must go.
    pub remove: Vec<RouteRemoval>,
}

/// Everything a plan must make true.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Intent {
    /// Links, in the document's order.
    pub links: Vec<LinkIntent>,
    /// Routes.
    pub routes: RoutesIntent,
    /// Resolver configuration.
    pub dns: Option<DnsConfig>,
    /// VLANs nobody declared may go with a link the intent deletes (a
    /// rollback undoing a creation); otherwise that is refused.
    pub may_destroy_uppers: bool,
}

impl Intent {
    /// The intent for `name`.
    pub fn link(&self, name: &str) -> Option<&LinkIntent> {
        self.links.iter().find(|l| l.name.as_str() == name)
    }

    /// Lowers a validated document: the interfaces it declares exactly as
    /// declared; links hostd created that it no longer declares are deleted
    /// (when they are still the links hostd created); addresses and routes
    /// hostd set that it no longer lists are removed. A document that
    /// declares no interface while hostd manages some is refused: applying it
    /// would tear the network down (`hostd teardown` does that on purpose).
    pub fn from_state(
        desired: &NetworkState,
        observed: &Observed,
        own: &Ownership,
    ) -> Result<Intent, PlanError> {
        refuse_teardown_by_document(desired, observed, own)?;
        let mut intent = Intent::default();
        let present = |w: &Interface| w.state != IfState::Absent;
        let by_name: BTreeMap<&str, &Interface> = desired
            .interfaces
            .iter()
            .map(|w| (w.name.as_str(), w))
            .collect();

        // Controllers claimed by bonds and bridges.
        let mut claims: BTreeMap<&str, (Controller, Option<&PortVlan>)> = BTreeMap::new();
        for w in desired.interfaces.iter().filter(|w| present(w)) {
            if let Some(b) = &w.link_aggregation {
                for p in &b.port {
                    claims.insert(
                        p.as_str(),
                        (
                            Controller {
                                name: w.name.clone(),
                                kind: CtrlKind::Bond,
                            },
                            None,
                        ),
                    );
                }
            }
            if let Some(b) = &w.bridge {
                for p in &b.port {
                    claims.insert(
                        p.name.as_str(),
                        (
                            Controller {
                                name: w.name.clone(),
                                kind: CtrlKind::Bridge,
                            },
                            p.vlan.as_ref(),
                        ),
                    );
                }
            }
        }

        // OVS (crate::ovs::doc): the netdevs of its entries, and the
        // interfaces it takes as ports, whose controller (`ovs-system`) is
        // ovs-vswitchd's.
        let (ovs_netdevs, ovs_claimed) = match crate::ovs::doc::ovs_part(desired) {
            Some(p) => (
                crate::ovs::doc::netdevs(&p.state),
                crate::ovs::doc::ovs_claimed(&p.state),
            ),
            None => Default::default(),
        };

        for (i, w) in desired.interfaces.iter().enumerate() {
            if w.kind.is_ovs() {
                // Rows are the OVS planner's; the netdev's state and
                // addresses are the kernel's (MTU: `mtu_request`).
                if w.state == IfState::Absent || !ovs_netdevs.contains_key(w.name.as_str()) {
                    continue;
                }
                let mut li = LinkIntent::keep(w.name.clone(), w.kind, format!("interfaces[{i}]"));
                li.state = Some(w.state);
                set_addresses(&mut li, w, &owned_addresses(own, w.name.as_str()));
                intent.links.push(li);
                continue;
            }
            let mut li = LinkIntent::keep(w.name.clone(), w.kind, format!("interfaces[{i}]"));
            li.state = Some(w.state);
            if let Some(mac) = w.mac_address {
                li.find = Find::Mac(mac);
            }
            let owned = owned_addresses(own, w.name.as_str());
            if w.state == IfState::Absent {
                if w.kind == InterfaceType::Ethernet {
                    li.controller = Some(None);
                    li.addrs.exact_v4 = Some(BTreeSet::new());
                    li.addrs.exact_v6 = Some(BTreeSet::new());
                }
                intent.links.push(li);
                continue;
            }
            let claim = claims.get(w.name.as_str());
            li.controller = if ovs_claimed.contains(w.name.as_str()) {
                None
            } else {
                Some(claim.map(|(c, _)| c.clone()))
            };
            li.port_vlans = claim.and_then(|(_, v)| v.map(port_vlan_set));
            if claim.is_none_or(|(c, _)| c.kind != CtrlKind::Bond) {
                li.mtu = target_mtu(&by_name, w);
            }
            li.bond = w
                .link_aggregation
                .as_ref()
                .map(|b| (b.mode, b.options.clone()));
            li.vlan = w.vlan.clone();
            li.bridge = w.bridge.as_ref().map(bridge_target);
            if let Some(v) = w.bridge.as_ref().and_then(|b| b.vlan.as_ref()) {
                li.port_vlans = Some(port_vlan_set(v));
            }
            set_addresses(&mut li, w, &owned);
            intent.links.push(li);
        }

        // hostd's leftovers on links the document does not declare.
        for l in &observed.links {
            if by_name.contains_key(l.name.as_str()) {
                continue;
            }
            let kind = l.kind.interface_type();
            if own.owns_created(l) && kind.is_virtual() {
                let mut li = LinkIntent::keep(l.name.clone(), kind, "ownership record".into());
                li.state = Some(IfState::Absent);
                intent.links.push(li);
                continue;
            }
            let owned = owned_addresses(own, l.name.as_str());
            if !owned.is_empty() && !matches!(l.kind, LinkKind::Loopback | LinkKind::Other) {
                let mut li = LinkIntent::keep(l.name.clone(), kind, "ownership record".into());
                li.addrs.remove = owned;
                intent.links.push(li);
            }
        }

        // Routes.
        let mut ensure_keys = BTreeSet::new();
        for (i, r) in desired.routes.config.iter().enumerate() {
            let path = format!("routes.config[{i}]");
            match r.state {
                RouteState::Present => {
                    ensure_keys.insert(r.key());
                    intent.routes.ensure.push((r.normalized(), path));
                }
                RouteState::Absent => intent.routes.remove.push(RouteRemoval::Key(r.key())),
            }
        }
        for k in &own.routes {
            if !ensure_keys.contains(k) {
                intent.routes.remove.push(RouteRemoval::Owned(k.clone()));
            }
        }
        intent.dns = desired.dns_resolver.as_ref().map(|d| d.config.clone());
        Ok(intent)
    }

    /// The intent of `hostd teardown`: the links hostd created are deleted;
    /// the NICs it configured end down, released and without static
    /// addresses; the routes and addresses it set elsewhere are removed.
    pub fn teardown(observed: &Observed, own: &Ownership) -> Intent {
        let mut intent = Intent::default();
        for l in &observed.links {
            let kind = l.kind.interface_type();
            let mut li = LinkIntent::keep(l.name.clone(), kind, "teardown".into());
            if own.owns_created(l) && kind.is_virtual() {
                li.state = Some(IfState::Absent);
            } else if own.managed.contains(&l.name) && kind == InterfaceType::Ethernet {
                li.state = Some(IfState::Absent);
                li.controller = Some(None);
                li.addrs.exact_v4 = Some(BTreeSet::new());
                li.addrs.exact_v6 = Some(BTreeSet::new());
            } else {
                let owned = owned_addresses(own, l.name.as_str());
                if owned.is_empty() || matches!(l.kind, LinkKind::Loopback | LinkKind::Other) {
                    continue;
                }
                li.addrs.remove = owned;
            }
            intent.links.push(li);
        }
        intent.routes.remove = own
            .routes
            .iter()
            .map(|k| RouteRemoval::Owned(k.clone()))
            .collect();
        intent
    }
}

/// The addresses a declared interface must have: the exact sets of the
/// families it lists; of the others, hostd's own addresses go.
fn set_addresses(li: &mut LinkIntent, w: &Interface, owned: &BTreeSet<IpNet>) {
    let wanted = addresses_of(w);
    for (v4, cfg) in [(true, &w.ipv4), (false, &w.ipv6)] {
        let fam = |a: &IpNet| matches!(a, IpNet::V4(_)) == v4;
        let set: BTreeSet<IpNet> = wanted.iter().filter(|a| fam(a)).copied().collect();
        match (cfg.is_some(), v4) {
            (true, true) => li.addrs.exact_v4 = Some(set),
            (true, false) => li.addrs.exact_v6 = Some(set),
            (false, _) => li
                .addrs
                .remove
                .extend(owned.iter().filter(|a| fam(a) && !wanted.contains(a))),
        }
    }
}

/// A document that declares no interface while hostd manages links on this
/// host would remove all of them: an empty or truncated file must never tear
/// the network down. (Declaring an interface `absent` is explicit.)
fn refuse_teardown_by_document(
    desired: &NetworkState,
    observed: &Observed,
    own: &Ownership,
) -> Result<(), PlanError> {
    if !desired.interfaces.is_empty() {
        return Ok(());
    }
    let managed: Vec<&str> = observed
        .links
        .iter()
        .filter(|l| {
            let kind = l.kind.interface_type();
            (own.owns_created(l) && kind.is_virtual())
                || (own.managed.contains(&l.name) && kind == InterfaceType::Ethernet)
        })
        .map(|l| l.name.as_str())
        .collect();
    if managed.is_empty() {
        return Ok(());
    }
    let reason = "the document declares no interface: applying it would remove everything hostd manages on this host (an empty or truncated file?); `hostd teardown` removes everything on purpose, and `state: absent` removes one interface";
    Err(PlanError::Invalid(ValidationErrors(vec![Invalid {
        path: "interfaces".into(),
        value: format!("hostd manages {}", managed.join(", ")),
        reason: reason.into(),
    }])))
}

fn owned_addresses(own: &Ownership, name: &str) -> BTreeSet<IpNet> {
    own.addresses
        .iter()
        .filter(|a| a.iface.as_str() == name)
        .map(|a| a.address)
        .collect()
}

/// The addresses an interface declares.
pub fn addresses_of(w: &Interface) -> BTreeSet<IpNet> {
    [&w.ipv4, &w.ipv6]
        .into_iter()
        .flatten()
        .flat_map(|c| c.address.iter())
        .filter_map(|a| IpNet::new(a.ip, a.prefix_length).ok())
        .collect()
}

/// MTU an interface must have: declared, or for a VLAN without one, its
/// base's (followed down the chain of declared bases).
pub fn target_mtu(by_name: &BTreeMap<&str, &Interface>, w: &Interface) -> Option<u32> {
    let mut cur = w;
    for _ in 0..8 {
        if let Some(m) = cur.mtu {
            return Some(m.get());
        }
        let v = cur.vlan.as_ref()?;
        cur = by_name.get(v.base_iface.as_str())?;
    }
    None
}

/// The bridge options to set, with VLAN filtering turned on when ports have
/// VLAN settings.
pub fn bridge_target(b: &BridgeConfig) -> BridgeOptions {
    let mut o = b.options.clone();
    if o.vlan_filtering.is_none() && (b.vlan.is_some() || b.port.iter().any(|p| p.vlan.is_some())) {
        o.vlan_filtering = Some(true);
    }
    o
}

/// VIDs a port's VLAN settings ask for.
pub fn port_vlan_set(pv: &PortVlan) -> VlanSet {
    let mut set = VlanSet::new();
    let native = VidFlags {
        pvid: true,
        untagged: true,
    };
    match pv.mode {
        PortVlanMode::Access => {
            if let Some(t) = pv.tag {
                set.insert(t.get(), native);
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
                    set.insert(t.get(), native);
                }
            }
        }
    }
    set
}
