//! A model of how the Linux kernel reacts to each [`Op`], on the observed
//! model. Pure. The planner runs every operation it emits through it, so
//! each phase plans against the state the kernel will really be in; tests
//! replay plans through it; and the differential test (`tests/tests/
//! kernel_differential.rs`) checks it against the real kernel, which wins
//! when they disagree.
//!
//! What it models (each checked against Debian 12's 6.1 kernel):
//! - refusals: renaming an up link (EBUSY), enslaving an up link to a bond
//!   ("Device can not be enslaved while up"), a VLAN MTU above its base's
//!   (ERANGE), an MTU above a device's maximum, bringing a VLAN up on a down
//!   base (ENETDOWN), a bond option that needs the bond down or without
//!   ports, a route through a down link or to a gateway on no connected
//!   subnet (ENETUNREACH), deleting a NIC;
//! - side effects: a link going down takes its VLANs down, drops its IPv6
//!   addresses (unless `keep_addr_on_down`) and flushes the routes through
//!   it (a multipath route only once every next hop is dead); a link coming
//!   up brings its VLANs up; removing a link's last IPv4 address flushes its
//!   IPv4 routes; deleting a link deletes the VLANs on it, releases its ports
//!   and flushes every route using it; a bond port takes the bond's MTU, is
//!   brought up by the bond, and gets its own MTU back and goes down when
//!   released; setting a bond's MTU sets its ports'; lowering a link's MTU
//!   lowers its VLANs' above it; a bridge whose MTU was never set by hand
//!   follows the smallest MTU of its ports (1500 without ports) whenever a
//!   port comes, goes or changes MTU; a new bridge, and a new bridge port,
//!   get VLAN 1 as PVID, untagged.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;

use crate::{
    bond::BondOptions,
    model::{
        compress_vlans, expand_vlans, AddrGenMode, BondState, Link, LinkKind, Observed, VidFlags,
        VlanSet,
    },
    plan::{NewLink, Op},
    route::RouteProtocol,
    schema::{BridgeOptions, DnsConfig, Route, StpOptions, VlanConfig},
    types::IfName,
};

/// What the kernel would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {step} ({op}): {reason}")]
pub struct SimError {
    /// 1-based step.
    pub step: usize,
    /// The operation.
    pub op: String,
    /// Why the kernel refuses it.
    pub reason: String,
}

/// Applies `ops` to a copy of `state` as the kernel would.
pub fn simulate(state: &Observed, ops: &[Op]) -> Result<Observed, SimError> {
    simulate_kernel(state, ops).map(|k| k.observed())
}

/// [`simulate`], returning the model itself (what it cannot know included:
/// [`Kernel::mtu_uncertain`]).
pub fn simulate_kernel(state: &Observed, ops: &[Op]) -> Result<Kernel, SimError> {
    let mut k = Kernel::new(state);
    for (i, op) in ops.iter().enumerate() {
        k.apply(op).map_err(|reason| SimError {
            step: i + 1,
            op: op.to_string(),
            reason,
        })?;
    }
    Ok(k)
}

/// The default ethernet MTU (a new bond or bridge, a bridge without ports).
pub const DEFAULT_MTU: u32 = 1500;

/// The kernel model: links by name, routes, the resolver file.
#[derive(Debug, Clone)]
pub struct Kernel {
    links: BTreeMap<String, Link>,
    routes: Vec<Route>,
    dns: Option<DnsConfig>,
    next_index: u32,
    /// Bridges whose MTU was set by hand (the kernel stops following ports).
    user_mtu: BTreeSet<String>,
    /// Bridges found with the MTU following their ports would give: the
    /// kernel may still hold it as set by hand (an earlier `mtu` set to the
    /// same value; netlink does not show the flag), so whether they follow
    /// their ports from now on is unknown until hostd sets their MTU.
    follow_unknown: BTreeSet<String>,
    /// MTU of bond ports before they were enslaved (restored on release).
    orig_mtu: BTreeMap<String, u32>,
    /// Links whose MTU the kernel set from state netlink does not show: a
    /// bond port enslaved before this plan, released, gets back the MTU it
    /// had when it was enslaved (the kernel's `original_mtu`), unknown here.
    /// Known again once set.
    mtu_unknown: BTreeSet<String>,
    /// The primary port each bond was configured with (`params.primary`):
    /// the kernel reports it only while that port is enslaved.
    primary_name: HashMap<String, IfName>,
    /// Ports of each controller, by name (kept with the links).
    ports: HashMap<String, BTreeSet<String>>,
    /// VLANs on each link, by name (kept with the links).
    uppers: HashMap<String, BTreeSet<String>>,
    /// Bond delays (up, down, peer notification) as the kernel keeps them:
    /// in MII monitor ticks, reported as ticks x miimon.
    delay_ticks: HashMap<String, [u32; 3]>,
}

impl Kernel {
    /// The kernel as observed.
    pub fn new(obs: &Observed) -> Self {
        let links: BTreeMap<String, Link> = obs
            .links
            .iter()
            .map(|l| (l.name.to_string(), l.clone()))
            .collect();
        let next_index = links.values().map(|l| l.index).max().unwrap_or(0) + 1;
        let mut k = Self {
            links,
            routes: obs.routes.clone(),
            dns: obs.dns.clone(),
            next_index,
            user_mtu: BTreeSet::new(),
            follow_unknown: BTreeSet::new(),
            orig_mtu: BTreeMap::new(),
            mtu_unknown: BTreeSet::new(),
            primary_name: obs
                .links
                .iter()
                .filter_map(|l| {
                    let p = l.bond.as_ref()?.options.primary.clone()?;
                    Some((l.name.to_string(), p))
                })
                .collect(),
            ports: HashMap::new(),
            uppers: HashMap::new(),
            delay_ticks: HashMap::new(),
        };
        k.reindex();
        for l in k.links.values() {
            if let Some(b) = &l.bond {
                let m = b.options.miimon.unwrap_or(0);
                if m > 0 {
                    let t = |v: Option<u32>| v.unwrap_or(0) / m;
                    k.delay_ticks.insert(
                        l.name.to_string(),
                        [
                            t(b.options.updelay),
                            t(b.options.downdelay),
                            t(b.options.peer_notif_delay),
                        ],
                    );
                }
            }
        }
        // A bridge whose MTU is not what following its ports would give was
        // set by hand.
        let bridges: Vec<(String, u32)> = k
            .links
            .values()
            .filter(|l| l.kind == LinkKind::Bridge)
            .map(|l| (l.name.to_string(), l.mtu))
            .collect();
        for (b, mtu) in bridges {
            let min = k
                .ports_of(&b)
                .iter()
                .map(|p| p.mtu)
                .min()
                .unwrap_or(DEFAULT_MTU);
            if mtu != min {
                k.user_mtu.insert(b);
            } else {
                k.follow_unknown.insert(b);
            }
        }
        k
    }

    /// Rebuilds the relation indexes from the links.
    fn reindex(&mut self) {
        self.ports.clear();
        self.uppers.clear();
        for l in self.links.values() {
            if let Some(c) = &l.controller {
                self.ports
                    .entry(c.to_string())
                    .or_default()
                    .insert(l.name.to_string());
            }
            if let Some(v) = &l.vlan {
                self.uppers
                    .entry(v.base_iface.to_string())
                    .or_default()
                    .insert(l.name.to_string());
            }
        }
    }

    /// Sets `name`'s controller, keeping the index.
    fn set_controller(&mut self, name: &str, c: Option<IfName>) {
        let Some(l) = self.links.get_mut(name) else {
            return;
        };
        if let Some(old) = l.controller.take() {
            if let Some(set) = self.ports.get_mut(old.as_str()) {
                set.remove(name);
            }
        }
        if let Some(new) = &c {
            self.ports
                .entry(new.to_string())
                .or_default()
                .insert(name.to_owned());
        }
        l.controller = c;
    }

    /// The state as an observation (links in ifindex order).
    pub fn observed(&self) -> Observed {
        let mut links: Vec<Link> = self.links.values().cloned().collect();
        links.sort_by_key(|l| l.index);
        let mut routes = self.routes.clone();
        routes.sort_by_key(|r| r.key());
        Observed {
            links,
            routes,
            dns: self.dns.clone(),
        }
    }

    /// The primary a bond reports: its configured primary while that port
    /// is enslaved to it, in a mode that uses a primary (active-backup,
    /// balance-tlb, balance-alb: the kernel keeps the name in other modes,
    /// and uses it again when the mode comes back and the port is
    /// enslaved).
    fn sync_primary(&mut self, bond: &str) {
        let uses_primary = self
            .links
            .get(bond)
            .and_then(|l| l.bond.as_ref())
            .is_some_and(|b| b.mode.uses_primary());
        let shown = self
            .primary_name
            .get(bond)
            .filter(|_| uses_primary)
            .filter(|p| {
                self.links
                    .get(p.as_str())
                    .is_some_and(|l| l.controller.as_ref().is_some_and(|c| c.as_str() == bond))
            })
            .cloned();
        if let Some(b) = self.links.get_mut(bond).and_then(|l| l.bond.as_mut()) {
            b.options.primary = shown;
        }
    }

    /// Links whose MTU the kernel decided from state this model cannot
    /// see (see `mtu_unknown`), with the links whose MTU follows theirs
    /// (VLANs on them, bridges over them without a hand-set MTU).
    pub fn mtu_uncertain(&self) -> BTreeSet<String> {
        let mut out = self.mtu_unknown.clone();
        loop {
            let before = out.len();
            for l in self.links.values() {
                let name = l.name.as_str();
                if out.contains(name) {
                    continue;
                }
                let via_base = l
                    .vlan
                    .as_ref()
                    .is_some_and(|v| out.contains(v.base_iface.as_str()));
                let via_port = l.kind == LinkKind::Bridge
                    && !self.user_mtu.contains(name)
                    && self
                        .ports
                        .get(name)
                        .is_some_and(|ps| ps.iter().any(|p| out.contains(p)));
                if via_base || via_port {
                    out.insert(name.to_owned());
                }
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// The bond `name` as configured: its options with the primary it was
    /// given, enslaved or not (the kernel reports it only while enslaved,
    /// and takes it when that port comes).
    pub fn bond_configured(&self, name: &str) -> Option<crate::model::BondState> {
        let mut b = self.links.get(name)?.bond.clone()?;
        b.options.primary = self.primary_name.get(name).cloned();
        Some(b)
    }

    /// True when the model knows `name`'s MTU (see `mtu_unknown`).
    pub fn mtu_known(&self, name: &str) -> bool {
        !self.mtu_unknown.contains(name)
    }

    /// The link named `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.get(name)
    }

    /// Every link, by name.
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The resolver configuration.
    pub fn dns(&self) -> Option<&DnsConfig> {
        self.dns.as_ref()
    }

    /// Ports of `name` (links whose controller it is).
    pub fn ports_of(&self, name: &str) -> Vec<&Link> {
        self.ports
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|p| self.links.get(p))
            .collect()
    }

    /// VLANs whose base is `name`.
    pub fn vlans_on(&self, name: &str) -> Vec<&Link> {
        self.uppers
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|p| self.links.get(p))
            .collect()
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut Link, String> {
        self.links
            .get_mut(name)
            .ok_or_else(|| format!("no link {name} (ENODEV)"))
    }

    fn is_up(&self, name: &str) -> bool {
        self.links.get(name).is_some_and(|l| l.up)
    }

    /// Routes flushed because `dev` went down (`v4_only`: lost its last IPv4
    /// address) or was deleted (`gone`).
    fn flush_routes(&mut self, dev: &str, v4_only: bool, gone: bool) {
        let links = &self.links;
        let dead = |n: &str| n == dev || !links.get(n).is_some_and(|l| l.up);
        self.routes.retain(|r| {
            if v4_only && !matches!(r.destination, IpNet::V4(_)) {
                return true;
            }
            let ifs = r.interfaces();
            if !ifs.contains(&dev) {
                return true;
            }
            if gone || r.multipath.is_empty() {
                return false;
            }
            !ifs.iter().all(|i| dead(i))
        });
    }

    /// Link down: routes through it flushed, IPv6 addresses dropped (unless
    /// `keep_addr_on_down`), the VLANs on it go down too.
    fn go_down(&mut self, name: &str) {
        let Some(l) = self.links.get_mut(name) else {
            return;
        };
        if !l.up {
            return;
        }
        l.up = false;
        if !l.keep_addr_on_down {
            l.addresses.retain(|a| matches!(a, IpNet::V4(_)));
            l.dynamic.retain(|a| matches!(a, IpNet::V4(_)));
        }
        self.flush_routes(name, false, false);
        let uppers: Vec<String> = self
            .vlans_on(name)
            .iter()
            .filter(|u| u.up)
            .map(|u| u.name.to_string())
            .collect();
        for u in uppers {
            self.go_down(&u);
        }
    }

    /// Link up: the VLANs on it come up with it.
    fn go_up(&mut self, name: &str) {
        let Some(l) = self.links.get_mut(name) else {
            return;
        };
        if l.up {
            return;
        }
        l.up = true;
        let uppers: Vec<String> = self
            .vlans_on(name)
            .iter()
            .filter(|u| !u.up)
            .map(|u| u.name.to_string())
            .collect();
        for u in uppers {
            self.go_up(&u);
        }
    }

    /// A bridge whose MTU was not set by hand follows its ports.
    fn bridge_follow(&mut self, bridge: &str) {
        if self.user_mtu.contains(bridge) {
            return;
        }
        if !self
            .links
            .get(bridge)
            .is_some_and(|b| b.kind == LinkKind::Bridge)
        {
            return;
        }
        let min = self
            .ports_of(bridge)
            .iter()
            .map(|p| p.mtu)
            .min()
            .unwrap_or(DEFAULT_MTU);
        if self.follow_unknown.contains(bridge) {
            // Either it follows (min) or it keeps its MTU: unknown unless
            // both are the same. The model keeps the MTU it has, the lower
            // guess when the ports went up (a VLAN above is checked against
            // it).
            if self.links.get(bridge).is_some_and(|b| b.mtu != min) {
                self.mtu_unknown.insert(bridge.to_owned());
            }
            return;
        }
        self.set_mtu_effects(bridge, min);
    }

    /// An MTU change and what follows from it (ports of a bond, VLANs above,
    /// the bridge the link is a port of).
    fn set_mtu_effects(&mut self, name: &str, mtu: u32) {
        let Some(l) = self.links.get_mut(name) else {
            return;
        };
        if l.mtu == mtu {
            return;
        }
        l.mtu = mtu;
        let is_bond = l.kind == LinkKind::Bond;
        let controller = l.controller.clone();
        if is_bond {
            let ports: Vec<String> = self
                .ports_of(name)
                .iter()
                .map(|p| p.name.to_string())
                .collect();
            for p in ports {
                if let Some(pl) = self.links.get_mut(&p) {
                    pl.mtu = mtu;
                }
            }
        }
        let uppers: Vec<(String, u32)> = self
            .vlans_on(name)
            .iter()
            .filter(|u| u.mtu > mtu)
            .map(|u| (u.name.to_string(), mtu))
            .collect();
        for (u, m) in uppers {
            self.set_mtu_effects(&u, m);
        }
        if let Some(c) = controller {
            self.bridge_follow(c.as_str());
        }
    }

    fn release(&mut self, name: &str) -> Result<(), String> {
        let l = self.get_mut(name)?;
        let Some(c) = l.controller.clone() else {
            return Err("not enslaved".into());
        };
        l.vlans.clear();
        self.set_controller(name, None);
        let was_bond = self
            .links
            .get(c.as_str())
            .is_some_and(|c| c.kind == LinkKind::Bond);
        if was_bond {
            if let Some(m) = self.orig_mtu.remove(name) {
                if let Some(l) = self.links.get_mut(name) {
                    l.mtu = m;
                }
            } else {
                self.mtu_unknown.insert(name.to_owned());
            }
            self.go_down(name);
            self.sync_primary(c.as_str());
        } else {
            self.bridge_follow(c.as_str());
        }
        Ok(())
    }

    fn remove_link(&mut self, name: &str) {
        let Some(l) = self.links.remove(name) else {
            return;
        };
        if let Some(c) = &l.controller {
            if let Some(set) = self.ports.get_mut(c.as_str()) {
                set.remove(name);
            }
        }
        if let Some(v) = &l.vlan {
            if let Some(set) = self.uppers.get_mut(v.base_iface.as_str()) {
                set.remove(name);
            }
        }
        self.user_mtu.remove(name);
        self.follow_unknown.remove(name);
        self.orig_mtu.remove(name);
        self.mtu_unknown.remove(name);
        self.primary_name.remove(name);
        self.delay_ticks.remove(name);
        self.flush_routes(name, false, true);
        let uppers: Vec<String> = self
            .vlans_on(name)
            .iter()
            .map(|u| u.name.to_string())
            .collect();
        for u in uppers {
            self.remove_link(&u);
        }
        let ports: Vec<String> = self
            .ports_of(name)
            .iter()
            .map(|p| p.name.to_string())
            .collect();
        for p in ports {
            self.set_controller(&p, None);
            if let Some(pl) = self.links.get_mut(&p) {
                pl.vlans.clear();
            }
            if l.kind == LinkKind::Bond {
                if let Some(m) = self.orig_mtu.remove(&p) {
                    if let Some(pl) = self.links.get_mut(&p) {
                        pl.mtu = m;
                    }
                } else {
                    self.mtu_unknown.insert(p.clone());
                }
                self.go_down(&p);
            }
        }
        self.ports.remove(name);
        self.uppers.remove(name);
        if let Some(c) = &l.controller {
            self.bridge_follow(c.as_str());
        }
    }

    /// Applies one operation as the kernel would, or says why it refuses.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::RenameLink { from, to } => {
                if self.links.contains_key(to.as_str()) {
                    return Err(format!("{to} exists (EEXIST)"));
                }
                if self.get_mut(from.as_str())?.up {
                    return Err("renaming a link that is up (EBUSY)".into());
                }
                let Some(mut l) = self.links.remove(from.as_str()) else {
                    return Err(format!("no link {from} (ENODEV)"));
                };
                l.name = to.clone();
                self.links.insert(to.to_string(), l);
                for o in self.links.values_mut() {
                    if o.controller.as_ref() == Some(from) {
                        o.controller = Some(to.clone());
                    }
                    if let Some(v) = &mut o.vlan {
                        if &v.base_iface == from {
                            v.base_iface = to.clone();
                        }
                    }
                    if let Some(b) = &mut o.bond {
                        if b.options.primary.as_ref() == Some(from) {
                            b.options.primary = Some(to.clone());
                        }
                    }
                }
                for r in self.routes.iter_mut() {
                    if r.next_hop_interface.as_ref() == Some(from) {
                        r.next_hop_interface = Some(to.clone());
                    }
                    for nh in r.multipath.iter_mut() {
                        if nh.next_hop_interface.as_ref() == Some(from) {
                            nh.next_hop_interface = Some(to.clone());
                        }
                    }
                }
                for set in [&mut self.user_mtu, &mut self.follow_unknown] {
                    if set.remove(from.as_str()) {
                        set.insert(to.to_string());
                    }
                }
                if let Some(m) = self.orig_mtu.remove(from.as_str()) {
                    self.orig_mtu.insert(to.to_string(), m);
                }
                if self.mtu_unknown.remove(from.as_str()) {
                    self.mtu_unknown.insert(to.to_string());
                }
                if let Some(p) = self.primary_name.remove(from.as_str()) {
                    self.primary_name.insert(to.to_string(), p);
                }
                for p in self.primary_name.values_mut() {
                    if p == from {
                        *p = to.clone();
                    }
                }
                if let Some(t) = self.delay_ticks.remove(from.as_str()) {
                    self.delay_ticks.insert(to.to_string(), t);
                }
                self.reindex();
            }
            Op::DeleteRoute { route } => {
                let before = self.routes.len();
                let k = route.key();
                self.routes.retain(|r| r.key() != k);
                if self.routes.len() == before {
                    return Err("no such route (ESRCH)".into());
                }
            }
            Op::DeleteAddress { iface, address } => {
                let l = self.get_mut(iface.as_str())?;
                let before = l.addresses.len();
                l.addresses.retain(|a| a != address);
                if l.addresses.len() == before {
                    return Err("no such address (EADDRNOTAVAIL)".into());
                }
                let no_v4 = !l
                    .addresses
                    .iter()
                    .chain(l.dynamic.iter())
                    .any(|a| matches!(a, IpNet::V4(_)));
                if matches!(address, IpNet::V4(_)) && no_v4 {
                    self.flush_routes(iface.as_str(), true, false);
                }
            }
            Op::SetController {
                iface,
                controller: None,
            } => self.release(iface.as_str())?,
            Op::SetController {
                iface,
                controller: Some(c),
            } => {
                let ctrl = self
                    .links
                    .get(c.as_str())
                    .cloned()
                    .ok_or_else(|| format!("no controller {c} (ENODEV)"))?;
                let l = self.get_mut(iface.as_str())?;
                if l.controller.is_some() {
                    return Err("already enslaved (EBUSY)".into());
                }
                match ctrl.kind {
                    LinkKind::Bond => {
                        if l.up {
                            return Err("device can not be enslaved while up".into());
                        }
                        let orig = l.mtu;
                        l.mtu = ctrl.mtu;
                        self.set_controller(iface.as_str(), Some(c.clone()));
                        // Restored on release: known only when this
                        // port's MTU was known when it was enslaved.
                        if !self.mtu_unknown.remove(iface.as_str()) {
                            self.orig_mtu.insert(iface.to_string(), orig);
                        }
                        self.go_up(iface.as_str());
                        self.sync_primary(c.as_str());
                    }
                    LinkKind::Bridge => {
                        if l.kind == LinkKind::Bridge {
                            return Err("a bridge in a bridge (ELOOP)".into());
                        }
                        l.vlans = compress_vlans(&VlanSet::from([(
                            1,
                            VidFlags {
                                pvid: true,
                                untagged: true,
                            },
                        )]));
                        self.set_controller(iface.as_str(), Some(c.clone()));
                        self.bridge_follow(c.as_str());
                    }
                    _ => return Err(format!("{c} is not a bond or bridge")),
                }
            }
            Op::DeleteLink { iface } => {
                let l = self.get_mut(iface.as_str())?;
                if matches!(
                    l.kind,
                    LinkKind::Ethernet | LinkKind::Veth | LinkKind::Loopback
                ) {
                    return Err("deleting a NIC".into());
                }
                self.remove_link(iface.as_str());
            }
            Op::SetState { iface, up } => {
                let l = self.get_mut(iface.as_str())?;
                if *up {
                    if let Some(v) = l.vlan.clone() {
                        if !self.is_up(v.base_iface.as_str()) {
                            return Err(format!("base {} is down (ENETDOWN)", v.base_iface));
                        }
                    }
                    self.go_up(iface.as_str());
                } else {
                    self.go_down(iface.as_str());
                }
            }
            Op::SetBond {
                iface,
                mode,
                options,
                clear_primary,
            } => {
                let has_ports = !self.ports_of(iface.as_str()).is_empty();
                let l = self.get_mut(iface.as_str())?;
                let up = l.up;
                if l.bond.is_none() {
                    return Err("not a bond".into());
                }
                // A mode change needs the bond down and without ports.
                if (mode.is_some() || options.needs_no_ports()) && has_ports {
                    return Err("bond has ports (ENOTEMPTY)".into());
                }
                if (mode.is_some() || options.needs_down()) && up {
                    return Err("bond is up (EBUSY)".into());
                }
                let mut ticks = self
                    .delay_ticks
                    .get(iface.as_str())
                    .copied()
                    .unwrap_or_default();
                let Some(b) = self
                    .links
                    .get_mut(iface.as_str())
                    .and_then(|l| l.bond.as_mut())
                else {
                    return Err("not a bond".into());
                };
                let mut o = b.options.clone();
                set_bond_options(&mut o, &mut ticks, *mode, options)?;
                if let Some(m) = mode {
                    b.mode = *m;
                }
                b.options = o;
                if *clear_primary {
                    b.options.primary = None;
                    self.primary_name.remove(iface.as_str());
                }
                if let Some(p) = &options.primary {
                    self.primary_name.insert(iface.to_string(), p.clone());
                }
                self.delay_ticks.insert(iface.to_string(), ticks);
                self.sync_primary(iface.as_str());
            }
            Op::SetBridge { iface, options } => {
                let l = self.get_mut(iface.as_str())?;
                let Some(b) = &mut l.bridge else {
                    return Err("not a bridge".into());
                };
                merge_bridge(b, options);
            }
            Op::SetMtu { iface, mtu } => {
                self.mtu_unknown.remove(iface.as_str());
                let l = self.get_mut(iface.as_str())?;
                if !(68..=65535).contains(mtu) {
                    return Err(format!("MTU {mtu} out of range (EINVAL)"));
                }
                if let Some(max) = l.max_mtu.filter(|m| mtu > m) {
                    return Err(format!(
                        "MTU {mtu} above the device's maximum {max} (EINVAL)"
                    ));
                }
                if let Some(v) = l.vlan.clone() {
                    let bm = self
                        .links
                        .get(v.base_iface.as_str())
                        .map(|b| b.mtu)
                        .unwrap_or(0);
                    if *mtu > bm {
                        return Err(format!("VLAN MTU {mtu} above base MTU {bm} (ERANGE)"));
                    }
                }
                if self
                    .links
                    .get(iface.as_str())
                    .is_some_and(|l| l.kind == LinkKind::Bridge)
                {
                    self.user_mtu.insert(iface.to_string());
                    self.follow_unknown.remove(iface.as_str());
                }
                self.set_mtu_effects(iface.as_str(), *mtu);
            }
            Op::CreateLink {
                iface,
                mtu,
                link,
                index,
                mac,
            } => {
                if self.links.contains_key(iface.as_str()) {
                    return Err("exists (EEXIST)".into());
                }
                let index = match index {
                    Some(i) if self.links.values().any(|l| l.index == *i) => {
                        return Err(format!("ifindex {i} in use (EBUSY)"));
                    }
                    Some(i) => *i,
                    None => {
                        let i = self.next_index;
                        self.next_index += 1;
                        i
                    }
                };
                self.next_index = self.next_index.max(index + 1);
                let mut l = Link {
                    name: iface.clone(),
                    index,
                    kind: link.kind(),
                    mac: *mac,
                    mtu: mtu.unwrap_or(DEFAULT_MTU),
                    up: false,
                    controller: None,
                    addresses: Vec::new(),
                    dynamic: Vec::new(),
                    bond: None,
                    vlan: None,
                    bridge: None,
                    vlans: Vec::new(),
                    addr_gen_mode: Some(AddrGenMode::Eui64),
                    keep_addr_on_down: false,
                    max_mtu: None,
                };
                match link {
                    NewLink::Bond { mode, options } => {
                        let mut o = BondOptions::kernel_defaults(*mode);
                        let mut ticks = [0; 3];
                        set_bond_options(&mut o, &mut ticks, None, options)?;
                        self.delay_ticks.insert(iface.to_string(), ticks);
                        // Shown once that port is enslaved (`sync_primary`).
                        if let Some(p) = o.primary.take() {
                            self.primary_name.insert(iface.to_string(), p);
                        }
                        l.bond = Some(BondState {
                            mode: *mode,
                            options: o,
                        });
                    }
                    NewLink::Vlan { base, id, protocol } => {
                        let b = self
                            .links
                            .get(base.as_str())
                            .ok_or_else(|| format!("base {base} missing (ENODEV)"))?;
                        if mtu.is_some_and(|m| m > b.mtu) {
                            return Err(format!("VLAN MTU above base MTU {} (ERANGE)", b.mtu));
                        }
                        l.mtu = mtu.unwrap_or(b.mtu);
                        l.vlan = Some(VlanConfig {
                            base_iface: base.clone(),
                            id: *id,
                            protocol: *protocol,
                        });
                    }
                    NewLink::Bridge { options } => {
                        let mut o = default_bridge();
                        merge_bridge(&mut o, options);
                        l.bridge = Some(o);
                        // The bridge's own port ("self") gets the default
                        // PVID, untagged.
                        l.vlans = compress_vlans(&VlanSet::from([(
                            1,
                            VidFlags {
                                pvid: true,
                                untagged: true,
                            },
                        )]));
                    }
                }
                if let Some(v) = &l.vlan {
                    self.uppers
                        .entry(v.base_iface.to_string())
                        .or_default()
                        .insert(iface.to_string());
                }
                self.links.insert(iface.to_string(), l);
            }
            Op::SetAddrGenMode { iface, mode } => {
                self.get_mut(iface.as_str())?.addr_gen_mode = Some(*mode);
            }
            Op::BridgeVlanDel { iface, vlans, .. } => {
                let l = self.get_mut(iface.as_str())?;
                let mut set = expand_vlans(&l.vlans);
                for v in expand_vlans(vlans).keys() {
                    if set.remove(v).is_none() {
                        return Err(format!("VLAN {v} not on port (ENOENT)"));
                    }
                }
                l.vlans = compress_vlans(&set);
            }
            Op::BridgeVlanAdd {
                iface,
                vlans,
                bridge_self,
            } => {
                let ctrl = self
                    .links
                    .get(iface.as_str())
                    .and_then(|l| l.controller.clone());
                let in_bridge = ctrl
                    .and_then(|c| self.links.get(c.as_str()))
                    .is_some_and(|b| b.kind == LinkKind::Bridge);
                let is_bridge = self
                    .links
                    .get(iface.as_str())
                    .is_some_and(|l| l.kind == LinkKind::Bridge);
                if !(in_bridge || (*bridge_self && is_bridge)) {
                    return Err("not a bridge port (EOPNOTSUPP)".into());
                }
                let l = self.get_mut(iface.as_str())?;
                let mut set = expand_vlans(&l.vlans);
                for (v, f) in expand_vlans(vlans) {
                    if f.pvid {
                        for other in set.values_mut() {
                            other.pvid = false;
                        }
                    }
                    set.insert(v, f);
                }
                l.vlans = compress_vlans(&set);
            }
            Op::AddAddress { iface, address } => {
                let l = self.get_mut(iface.as_str())?;
                l.dynamic.retain(|a| a != address);
                if !l.addresses.contains(address) {
                    l.addresses.push(*address);
                    l.addresses.sort();
                }
            }
            Op::AddRoute { route } => {
                let mut r: Route = route.normalized();
                r.protocol = Some(route.protocol.unwrap_or(RouteProtocol::Static));
                let hops: Vec<(Option<std::net::IpAddr>, Option<IfName>)> =
                    if r.multipath.is_empty() {
                        vec![(r.next_hop_address, r.next_hop_interface.clone())]
                    } else {
                        r.multipath
                            .iter()
                            .map(|n| (n.next_hop_address, n.next_hop_interface.clone()))
                            .collect()
                    };
                let mut resolved = Vec::new();
                for (gw, dev) in hops {
                    let dev = match (dev, gw) {
                        (Some(d), _) => d,
                        (None, Some(gw)) => self.dev_for(gw)?,
                        (None, None) => return Err("a next hop without gateway or device".into()),
                    };
                    if !self.is_up(dev.as_str()) {
                        return Err(format!("{dev} is down (ENETDOWN)"));
                    }
                    if let Some(gw) = gw {
                        let ok = self.links.get(dev.as_str()).is_some_and(|l| {
                            l.addresses
                                .iter()
                                .chain(l.dynamic.iter())
                                .any(|a| a.contains(&gw))
                        });
                        if !ok {
                            return Err(format!(
                                "gateway {gw} is not on a subnet of {dev} (ENETUNREACH)"
                            ));
                        }
                    }
                    resolved.push(dev);
                }
                if r.multipath.is_empty() {
                    r.next_hop_interface = resolved.into_iter().next();
                } else {
                    for (nh, dev) in r.multipath.iter_mut().zip(resolved) {
                        nh.next_hop_interface = Some(dev);
                    }
                    r.multipath.sort();
                }
                let k = r.key();
                self.routes.retain(|o| o.key() != k);
                self.routes.push(r);
            }
            Op::WriteDns { config } => self.dns = Some(config.clone()),
        }
        Ok(())
    }

    fn dev_for(&self, gw: std::net::IpAddr) -> Result<IfName, String> {
        self.links
            .values()
            .find(|l| {
                l.up && l
                    .addresses
                    .iter()
                    .chain(l.dynamic.iter())
                    .any(|a| a.contains(&gw))
            })
            .map(|l| l.name.clone())
            .ok_or_else(|| format!("gateway {gw} unreachable (ENETUNREACH)"))
    }
}

/// Bond options set as the kernel's `bond_changelink` does, in its order:
/// the mode first (a mode without ARP monitoring turns it off and the MII
/// monitor on at 100 ms, and resets `arp_validate`), then `miimon` (a
/// non-zero MII monitor turns ARP monitoring and its validation off), then the delays (refused while the MII monitor is off;
/// kept as ticks of it, so a later `miimon` change scales them), then
/// `arp_interval` (a non-zero ARP monitor turns the MII monitor off), then
/// the rest.
pub fn set_bond_options(
    o: &mut BondOptions,
    ticks: &mut [u32; 3],
    mode: Option<crate::schema::BondMode>,
    changes: &BondOptions,
) -> Result<(), String> {
    if let Some(m) = mode {
        o.after_mode_set(m);
    }
    if let Some(m) = changes.miimon {
        o.miimon = Some(m);
        if m != 0 && o.arp_interval.is_some_and(|a| a != 0) {
            // `bond_option_miimon_set`: the ARP monitor off, and with it
            // its validation.
            o.arp_interval = Some(0);
            o.arp_validate = Some(crate::bond::ArpValidate::None);
        }
    }
    let miimon = o.miimon.unwrap_or(0);
    for (i, v) in [changes.updelay, changes.downdelay, changes.peer_notif_delay]
        .into_iter()
        .enumerate()
    {
        if let Some(v) = v {
            if miimon == 0 {
                return Err(format!(
                    "{} cannot be set while MII monitoring is disabled (EPERM)",
                    BondOptions::NEED_MIIMON[i]
                ));
            }
            ticks[i] = v / miimon;
        }
    }
    if let Some(a) = changes.arp_interval {
        o.arp_interval = Some(a);
        if a != 0 {
            o.miimon = Some(0);
        }
    }
    let mut rest = changes.clone();
    rest.miimon = None;
    rest.updelay = None;
    rest.downdelay = None;
    rest.peer_notif_delay = None;
    rest.arp_interval = None;
    o.merge(&rest);
    // Reported delays: ticks x the MII monitor's interval.
    let miimon = o.miimon.unwrap_or(0);
    o.updelay = Some(ticks[0] * miimon);
    o.downdelay = Some(ticks[1] * miimon);
    o.peer_notif_delay = Some(ticks[2] * miimon);
    Ok(())
}

/// The options the kernel reports for a new bond of `mode`.
pub fn default_bond(mode: crate::schema::BondMode) -> BondOptions {
    BondOptions::kernel_defaults(mode)
}

/// A new bridge's options as the kernel reports them.
pub fn default_bridge() -> BridgeOptions {
    BridgeOptions {
        stp: Some(StpOptions {
            enabled: false,
            forward_delay: Some(15),
            hello_time: Some(2),
            max_age: Some(20),
            priority: Some(32768),
        }),
        vlan_filtering: Some(false),
        vlan_protocol: Some(crate::schema::VlanProtocol::Dot1Q),
        mac_ageing_time: Some(300),
        multicast_snooping: Some(true),
    }
}

/// Sets every bridge option set in `src`.
pub fn merge_bridge(dst: &mut BridgeOptions, src: &BridgeOptions) {
    if src.vlan_filtering.is_some() {
        dst.vlan_filtering = src.vlan_filtering;
    }
    if src.vlan_protocol.is_some() {
        dst.vlan_protocol = src.vlan_protocol;
    }
    if src.mac_ageing_time.is_some() {
        dst.mac_ageing_time = src.mac_ageing_time;
    }
    if src.multicast_snooping.is_some() {
        dst.multicast_snooping = src.multicast_snooping;
    }
    if let Some(stp) = &src.stp {
        let d = dst.stp.get_or_insert_with(StpOptions::default);
        d.enabled = stp.enabled;
        if stp.forward_delay.is_some() {
            d.forward_delay = stp.forward_delay;
        }
        if stp.hello_time.is_some() {
            d.hello_time = stp.hello_time;
        }
        if stp.max_age.is_some() {
            d.max_age = stp.max_age;
        }
        if stp.priority.is_some() {
            d.priority = stp.priority;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(yaml: &str) -> Observed {
        serde_norway::from_str(yaml).expect("observed")
    }

    /// The kernel's `bond_option_mode_set` resets `arp_validate` ("don't
    /// cache arp_validate between modes") and `bond_option_miimon_set`
    /// turns ARP validation off with the ARP monitor (seed 1796320259).
    #[test]
    fn mode_and_miimon_reset_arp_validate() {
        use crate::bond::ArpValidate;
        use crate::schema::BondMode;
        let mut o = BondOptions::kernel_defaults(BondMode::ActiveBackup);
        let mut ticks = [0; 3];
        let arp = BondOptions {
            arp_interval: Some(100),
            arp_validate: Some(ArpValidate::Filter),
            ..Default::default()
        };
        set_bond_options(&mut o, &mut ticks, None, &arp).expect("arp");
        assert_eq!(o.arp_validate, Some(ArpValidate::Filter));
        assert_eq!(o.miimon, Some(0));
        let mii = BondOptions {
            miimon: Some(100),
            ..Default::default()
        };
        set_bond_options(&mut o, &mut ticks, None, &mii).expect("miimon");
        assert_eq!(
            (o.arp_interval, o.arp_validate),
            (Some(0), Some(ArpValidate::None))
        );
        set_bond_options(&mut o, &mut ticks, None, &arp).expect("arp again");
        set_bond_options(
            &mut o,
            &mut ticks,
            Some(BondMode::BalanceXor),
            &BondOptions::default(),
        )
        .expect("mode");
        assert_eq!(o.arp_validate, Some(ArpValidate::None));
        assert_eq!(
            o.arp_interval,
            Some(100),
            "balance-xor keeps the ARP monitor"
        );
    }

    /// A bridge found at the MTU its ports give may hold it as set by hand
    /// (netlink does not say): after a port leaves, its MTU is unknown,
    /// not the ports' minimum.
    #[test]
    fn found_bridge_at_its_ports_mtu_may_not_follow() {
        let o = observed(
            "links:
  - { name: eth1, index: 2, kind: veth, mtu: 9000, up: true, controller: br0 }
  - { name: br0, index: 3, kind: bridge, mtu: 9000, up: true }
",
        );
        let op = Op::SetController {
            iface: IfName::new("eth1").expect("name"),
            controller: None,
        };
        let k = simulate_kernel(&o, &[op]).expect("release");
        assert!(!k.mtu_known("br0"));
        assert!(k.mtu_uncertain().contains("br0"));
        // Set by hostd: known again, and held.
        let set = Op::SetMtu {
            iface: IfName::new("br0").expect("name"),
            mtu: 9000,
        };
        let k = simulate_kernel(&o, &[set]).expect("set");
        assert!(k.mtu_known("br0"));
    }

    /// A bridge found at an MTU its ports do not give was set by hand: it
    /// keeps it, known.
    #[test]
    fn found_bridge_off_its_ports_mtu_keeps_it() {
        let o = observed(
            "links:
  - { name: eth1, index: 2, kind: veth, mtu: 9000, up: true, controller: br0 }
  - { name: br0, index: 3, kind: bridge, mtu: 1500, up: true }
",
        );
        let op = Op::SetController {
            iface: IfName::new("eth1").expect("name"),
            controller: None,
        };
        let k = simulate_kernel(&o, &[op]).expect("release");
        assert!(k.mtu_known("br0"));
        assert_eq!(k.link("br0").map(|l| l.mtu), Some(1500));
    }

    /// A bond's primary is reported only in the modes that use one; the
    /// kernel keeps the name and takes the port again when the mode comes
    /// back (seed 1796308759: balance-alb with primary eth0 to balance-rr).
    #[test]
    fn primary_shown_only_in_modes_that_use_it() {
        let o = observed(
            "links:
  - { name: eth0, index: 2, kind: veth, mtu: 1500, up: true, controller: bond0 }
  - name: bond0
    index: 3
    kind: bond
    mtu: 1500
    up: true
    bond: { mode: balance-alb, options: { miimon: 100, primary: eth0 } }
",
        );
        let ops: Vec<Op> = serde_norway::from_str(
            "- { op: set-controller, iface: eth0, controller: null }
- { op: set-state, iface: bond0, up: false }
- { op: set-bond, iface: bond0, mode: balance-rr, options: {} }
- { op: set-controller, iface: eth0, controller: bond0 }
",
        )
        .expect("ops");
        let k = simulate_kernel(&o, &ops).expect("to balance-rr");
        let primary = |k: &Kernel| {
            k.link("bond0")
                .and_then(|l| l.bond.as_ref())
                .and_then(|b| b.options.primary.clone())
        };
        assert_eq!(primary(&k), None);
        let back: Vec<Op> = serde_norway::from_str(
            "- { op: set-controller, iface: eth0, controller: null }
- { op: set-bond, iface: bond0, mode: active-backup, options: {} }
- { op: set-controller, iface: eth0, controller: bond0 }
",
        )
        .expect("ops");
        let k2 = simulate_kernel(&k.observed(), &back).expect("back");
        // A fresh model of the kernel does not know the kept name (netlink
        // did not show it in balance-rr): the model of one plan does.
        assert_eq!(primary(&k2), None);
        let mut all = ops.clone();
        all.extend(back);
        let k3 = simulate_kernel(&o, &all).expect("both");
        assert_eq!(primary(&k3).map(|p| p.to_string()), Some("eth0".into()));
    }
}
