//! A model of how the Linux kernel reacts to each [`Op`], on the observed
//! model. Pure: it lets tests check, without root, that a plan is accepted
//! in its order (a VLAN's base exists, a bond is empty before its mode
//! changes, a bond port is down when enslaved, a VLAN's MTU never exceeds its
//! base's) and that it converges (re-planning after it plans nothing).
//!
//! It models what hostd relies on, not the whole kernel: released bond ports
//! go down, enslaved ones come up and take the bond's MTU; routes through a
//! link that goes down are flushed, and so are its IPv6 addresses; deleting a
//! link deletes the VLANs on it; a new bridge port gets VLAN 1 as PVID.

use ipnet::IpNet;

use crate::{
    model::{compress_vlans, expand_vlans, BondState, Link, LinkKind, Observed, VidFlags, VlanSet},
    plan::{NewLink, Op},
    schema::{BondMode, BridgeOptions, Route, StpOptions, VlanConfig},
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
    let mut s = state.clone();
    let mut next_index = s.links.iter().map(|l| l.index).max().unwrap_or(0) + 1;
    for (i, op) in ops.iter().enumerate() {
        step(&mut s, op, &mut next_index).map_err(|reason| SimError {
            step: i + 1,
            op: op.to_string(),
            reason,
        })?;
    }
    Ok(s)
}

fn find<'a>(s: &'a mut Observed, name: &str) -> Result<&'a mut Link, String> {
    s.links
        .iter_mut()
        .find(|l| l.name.as_str() == name)
        .ok_or_else(|| format!("no link {name} (ENODEV)"))
}

/// Link down: routes through it are flushed, IPv6 addresses dropped, and
/// the VLANs on it go down too (vlan_device_event, NETDEV_DOWN).
fn go_down(s: &mut Observed, name: &str) {
    if let Some(l) = s.links.iter_mut().find(|l| l.name.as_str() == name) {
        if l.up {
            l.up = false;
            l.addresses.retain(|a| matches!(a, IpNet::V4(_)));
        }
    }
    s.routes.retain(|r| !r.interfaces().contains(&name));
    let uppers: Vec<String> = s
        .links
        .iter()
        .filter(|l| {
            l.up && l
                .vlan
                .as_ref()
                .is_some_and(|v| v.base_iface.as_str() == name)
        })
        .map(|l| l.name.to_string())
        .collect();
    for u in uppers {
        go_down(s, &u);
    }
}

/// Link up: the VLANs on it come up with it (NETDEV_UP).
fn go_up(s: &mut Observed, name: &str) {
    let mut was_down = false;
    if let Some(l) = s.links.iter_mut().find(|l| l.name.as_str() == name) {
        was_down = !l.up;
        l.up = true;
    }
    if !was_down {
        return;
    }
    let uppers: Vec<String> = s
        .links
        .iter()
        .filter(|l| {
            !l.up
                && l.vlan
                    .as_ref()
                    .is_some_and(|v| v.base_iface.as_str() == name)
        })
        .map(|l| l.name.to_string())
        .collect();
    for u in uppers {
        go_up(s, &u);
    }
}

fn remove_link(s: &mut Observed, name: &str) {
    let Some(pos) = s.links.iter().position(|l| l.name.as_str() == name) else {
        return;
    };
    let l = s.links.remove(pos);
    s.routes.retain(|r| !r.interfaces().contains(&name));
    let mut uppers = Vec::new();
    for o in s.links.iter_mut() {
        if o.controller.as_ref() == Some(&l.name) {
            o.controller = None;
            o.vlans.clear();
            if l.kind == LinkKind::Bond {
                uppers.push((o.name.to_string(), false));
            }
        }
        if o.vlan.as_ref().is_some_and(|v| v.base_iface == l.name) {
            uppers.push((o.name.to_string(), true));
        }
    }
    for (n, delete) in uppers {
        if delete {
            remove_link(s, &n);
        } else {
            go_down(s, &n);
        }
    }
}

fn step(s: &mut Observed, op: &Op, next_index: &mut u32) -> Result<(), String> {
    match op {
        Op::RenameLink { from, to } => {
            if s.link(to.as_str()).is_some() {
                return Err(format!("{to} exists (EEXIST)"));
            }
            let l = find(s, from.as_str())?;
            if l.up {
                return Err("renaming a link that is up (EBUSY)".into());
            }
            l.name = to.clone();
            for o in s.links.iter_mut() {
                if o.controller.as_ref() == Some(from) {
                    o.controller = Some(to.clone());
                }
                if let Some(v) = &mut o.vlan {
                    if &v.base_iface == from {
                        v.base_iface = to.clone();
                    }
                }
            }
        }
        Op::DeleteRoute { route } => {
            let before = s.routes.len();
            let k = route.key();
            s.routes.retain(|r| r.key() != k);
            if s.routes.len() == before {
                return Err("no such route (ESRCH)".into());
            }
        }
        Op::DeleteAddress { iface, address } => {
            let l = find(s, iface.as_str())?;
            let before = l.addresses.len();
            l.addresses.retain(|a| a != address);
            if l.addresses.len() == before {
                return Err("no such address (EADDRNOTAVAIL)".into());
            }
        }
        Op::SetController {
            iface,
            controller: None,
        } => {
            let l = find(s, iface.as_str())?;
            let Some(c) = l.controller.take() else {
                return Err("not enslaved".into());
            };
            l.vlans.clear();
            let was_bond = s.link(c.as_str()).is_some_and(|c| c.kind == LinkKind::Bond);
            if was_bond {
                go_down(s, iface.as_str());
            }
        }
        Op::SetController {
            iface,
            controller: Some(c),
        } => {
            let ctrl = s
                .link(c.as_str())
                .cloned()
                .ok_or_else(|| format!("no controller {c}"))?;
            let l = find(s, iface.as_str())?;
            if l.controller.is_some() {
                return Err("already enslaved (EBUSY)".into());
            }
            match ctrl.kind {
                LinkKind::Bond => {
                    if l.up {
                        return Err("enslaving an up link to a bond".into());
                    }
                    l.mtu = ctrl.mtu;
                    l.controller = Some(c.clone());
                    go_up(s, iface.as_str());
                }
                LinkKind::Bridge => {
                    if l.kind == LinkKind::Bridge {
                        return Err("a bridge in a bridge (ELOOP)".into());
                    }
                    l.controller = Some(c.clone());
                    l.vlans = compress_vlans(&VlanSet::from([(
                        1,
                        VidFlags {
                            pvid: true,
                            untagged: true,
                        },
                    )]));
                }
                _ => return Err(format!("{c} is not a bond or bridge")),
            }
        }
        Op::DeleteLink { iface } => {
            let l = find(s, iface.as_str())?;
            if matches!(
                l.kind,
                LinkKind::Ethernet | LinkKind::Veth | LinkKind::Loopback
            ) {
                return Err("deleting a NIC".into());
            }
            remove_link(s, iface.as_str());
        }
        Op::SetState { iface, up } => {
            find(s, iface.as_str())?;
            if *up {
                if let Some(v) = s.link(iface.as_str()).and_then(|l| l.vlan.clone()) {
                    if !s.link(v.base_iface.as_str()).is_some_and(|b| b.up) {
                        return Err(format!("base {} is down (ENETDOWN)", v.base_iface));
                    }
                }
                go_up(s, iface.as_str());
            } else {
                go_down(s, iface.as_str());
            }
        }
        Op::SetBond {
            iface,
            mode,
            options,
        } => {
            let has_ports = s.links.iter().any(|l| l.controller.as_ref() == Some(iface));
            let l = find(s, iface.as_str())?;
            let Some(b) = &mut l.bond else {
                return Err("not a bond".into());
            };
            let noports = mode.is_some() || options.fail_over_mac.is_some();
            let ifdown = noports
                || options.lacp_rate.is_some()
                || options.ad_select.is_some()
                || options.ad_actor_sys_prio.is_some()
                || options.ad_actor_system.is_some()
                || options.ad_user_port_key.is_some()
                || options.tlb_dynamic_lb.is_some()
                || options.lacp_active.is_some();
            if noports && has_ports {
                return Err("bond has ports (ENOTEMPTY)".into());
            }
            if ifdown && l.up {
                return Err("bond is up (EBUSY)".into());
            }
            if let Some(m) = mode {
                b.mode = *m;
            }
            merge_bond(&mut b.options, options);
        }
        Op::SetBridge { iface, options } => {
            let l = find(s, iface.as_str())?;
            let Some(b) = &mut l.bridge else {
                return Err("not a bridge".into());
            };
            merge_bridge(b, options);
        }
        Op::SetMtu { iface, mtu } => {
            let base = s.link(iface.as_str()).and_then(|l| l.vlan.clone());
            if let Some(v) = base {
                let bm = s.link(v.base_iface.as_str()).map(|b| b.mtu).unwrap_or(0);
                if *mtu > bm {
                    return Err(format!("VLAN MTU {mtu} above base MTU {bm} (ERANGE)"));
                }
            }
            let bond_mtu = s
                .link(iface.as_str())
                .and_then(|l| l.bond.as_ref())
                .map(|_| *mtu);
            find(s, iface.as_str())?.mtu = *mtu;
            if let Some(m) = bond_mtu {
                for p in s
                    .links
                    .iter_mut()
                    .filter(|p| p.controller.as_ref() == Some(iface))
                {
                    p.mtu = m;
                }
            }
            // Lowering a base lowers the VLANs above it.
            for o in s.links.iter_mut() {
                if o.vlan.as_ref().is_some_and(|v| &v.base_iface == iface) && o.mtu > *mtu {
                    o.mtu = *mtu;
                }
            }
        }
        Op::CreateLink { iface, mtu, link } => {
            if s.link(iface.as_str()).is_some() {
                return Err("exists (EEXIST)".into());
            }
            let mut l = Link {
                name: iface.clone(),
                index: *next_index,
                kind: LinkKind::Other,
                mac: None,
                mtu: mtu.unwrap_or(1500),
                up: false,
                controller: None,
                addresses: Vec::new(),
                bond: None,
                vlan: None,
                bridge: None,
                vlans: Vec::new(),
            };
            *next_index += 1;
            match link {
                NewLink::Bond { mode, options } => {
                    l.kind = LinkKind::Bond;
                    let mut o = default_bond(*mode);
                    merge_bond(&mut o, options);
                    l.bond = Some(BondState {
                        mode: *mode,
                        options: o,
                    });
                }
                NewLink::Vlan { base, id, protocol } => {
                    let b = s
                        .link(base.as_str())
                        .ok_or_else(|| format!("base {base} missing (ENODEV)"))?;
                    if mtu.is_some_and(|m| m > b.mtu) {
                        return Err(format!("VLAN MTU above base MTU {} (ERANGE)", b.mtu));
                    }
                    l.mtu = mtu.unwrap_or(b.mtu);
                    l.kind = LinkKind::Vlan;
                    l.vlan = Some(VlanConfig {
                        base_iface: base.clone(),
                        id: *id,
                        protocol: *protocol,
                    });
                }
                NewLink::Bridge { options } => {
                    l.kind = LinkKind::Bridge;
                    let mut o = default_bridge();
                    merge_bridge(&mut o, options);
                    l.bridge = Some(o);
                }
            }
            s.links.push(l);
        }
        Op::BridgeVlanDel { iface, vlans } => {
            let l = find(s, iface.as_str())?;
            let mut set = expand_vlans(&l.vlans);
            for v in expand_vlans(vlans).keys() {
                if set.remove(v).is_none() {
                    return Err(format!("VLAN {v} not on port (ENOENT)"));
                }
            }
            l.vlans = compress_vlans(&set);
        }
        Op::BridgeVlanAdd { iface, vlans } => {
            let ctrl = s.link(iface.as_str()).and_then(|l| l.controller.clone());
            let filtering = ctrl
                .and_then(|c| s.link(c.as_str()).and_then(|b| b.bridge.clone()))
                .is_some_and(|b| b.vlan_filtering == Some(true));
            if !filtering {
                return Err("port is not in a VLAN-filtering bridge".into());
            }
            let l = find(s, iface.as_str())?;
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
            let l = find(s, iface.as_str())?;
            if l.addresses.contains(address) {
                return Err("address exists (EEXIST)".into());
            }
            l.addresses.push(*address);
        }
        Op::AddRoute { route } => {
            let mut r: Route = route.normalized();
            if r.multipath.is_empty() {
                if r.next_hop_interface.is_none() {
                    let gw = r.next_hop_address.ok_or("route without next hop")?;
                    r.next_hop_interface = Some(dev_for(s, gw)?);
                }
                let dev = r.next_hop_interface.clone().ok_or("no device")?;
                if !s.link(dev.as_str()).is_some_and(|l| l.up) {
                    return Err(format!("{dev} is down (ENETDOWN)"));
                }
            } else {
                for nh in r.multipath.iter_mut() {
                    if nh.next_hop_interface.is_none() {
                        let gw = nh.next_hop_address.ok_or("next hop without address")?;
                        nh.next_hop_interface = Some(dev_for(s, gw)?);
                    }
                }
            }
            let hops: Vec<(Option<std::net::IpAddr>, Option<IfName>)> = if r.multipath.is_empty() {
                vec![(r.next_hop_address, r.next_hop_interface.clone())]
            } else {
                r.multipath
                    .iter()
                    .map(|n| (n.next_hop_address, n.next_hop_interface.clone()))
                    .collect()
            };
            for (gw, dev) in hops {
                let (Some(gw), Some(dev)) = (gw, dev) else {
                    continue;
                };
                let ok = s
                    .link(dev.as_str())
                    .is_some_and(|l| l.up && l.addresses.iter().any(|a| a.contains(&gw)));
                if !ok {
                    return Err(format!(
                        "gateway {gw} is not on a subnet of {dev} (ENETUNREACH)"
                    ));
                }
            }
            let k = r.key();
            s.routes.retain(|o| o.key() != k);
            s.routes.push(r);
        }
        Op::WriteDns { config } => s.dns = Some(config.clone()),
    }
    Ok(())
}

fn dev_for(s: &Observed, gw: std::net::IpAddr) -> Result<IfName, String> {
    s.links
        .iter()
        .find(|l| l.up && l.addresses.iter().any(|a| a.contains(&gw)))
        .map(|l| l.name.clone())
        .ok_or_else(|| format!("gateway {gw} unreachable (ENETUNREACH)"))
}

/// The options the kernel reports for a new bond of `mode` (the defaults
/// that matter for comparisons).
pub fn default_bond(mode: BondMode) -> crate::schema::BondOptions {
    crate::schema::BondOptions {
        miimon: Some(0),
        updelay: Some(0),
        downdelay: Some(0),
        min_links: Some(0),
        ..Default::default()
    }
    .for_mode(mode)
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

macro_rules! merge_fields {
    ($dst:expr, $src:expr, $($f:ident),*) => {$(
        if $src.$f.is_some() { $dst.$f = $src.$f.clone(); }
    )*};
}

fn merge_bond(dst: &mut crate::schema::BondOptions, src: &crate::schema::BondOptions) {
    merge_fields!(
        dst,
        src,
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
}

fn merge_bridge(dst: &mut BridgeOptions, src: &BridgeOptions) {
    merge_fields!(
        dst,
        src,
        vlan_filtering,
        vlan_protocol,
        mac_ageing_time,
        multicast_snooping
    );
    if let Some(stp) = &src.stp {
        let d = dst.stp.get_or_insert_with(StpOptions::default);
        d.enabled = stp.enabled;
        merge_fields!(d, stp, forward_delay, hello_time, max_age, priority);
    }
}
