//! Executes a [`Plan`] over netlink, pipelined.
//!
//! Every op becomes one rtnetlink request. Links are created with an
//! ifindex hostd picks (`ip link add ... index N`), so later requests can
//! name them (a VLAN's base, a port's controller) without asking the kernel
//! first: the whole plan goes out in large `sendmsg` batches ([`Rtnl::batch`])
//! and the acks are read per batch. The resolver configuration (the file,
//! or systemd-resolved over D-Bus: [`DnsTarget`]) is set between batches, at
//! its place in the plan.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::Path,
};

use hostd_core::{
    model::{Observed, VlanEntry},
    plan::{NewLink, Op, Plan},
    schema::{
        AdSelect, ArpAllTargets, ArpValidate, BondMode, BondOptions, BridgeOptions, DnsConfig,
        FailOverMac, LacpRate, PrimaryReselect, Route, VlanProtocol, XmitHashPolicy,
    },
};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{
        AfSpecBridge, BondAdSelect, BondAllPortActive, BondArpAllTargets, BondArpValidate,
        BondFailOverMac, BondLacpRate, BondPrimaryReselect, BondXmitHashPolicy, BridgeStpState,
        BridgeVlanInfo, BridgeVlanInfoFlags, InfoBond, InfoBridge, InfoData, InfoKind, InfoVlan,
        LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    },
    route::{
        RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteScope,
        RouteType,
    },
    AddressFamily, RouteNetlinkMessage,
};

use crate::{
    netlink::{NlError, Rtnl},
    resolved::DnsTarget,
};

/// A step that failed.
#[derive(Debug, thiserror::Error)]
#[error("step {step} ({op}) failed: {error}")]
pub struct StepFailure {
    /// 1-based step number.
    pub step: usize,
    /// The op, printed.
    pub op: String,
    /// Why.
    pub error: StepError,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The kernel refused it.
    #[error(transparent)]
    Netlink(#[from] NlError),
    /// A name the op refers to has no ifindex.
    #[error("no link named {0}")]
    UnknownLink(String),
    /// Writing the resolver file failed.
    #[error("writing {path}: {source}")]
    Dns {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// systemd-resolved refused or failed the per-link DNS calls.
    #[error(transparent)]
    Resolved(#[from] crate::resolved::Error),
    /// The test-only failure hook fired.
    #[error("failure injected at this step (HOSTD_FAIL_AT_STEP)")]
    Injected,
}

/// Options of one execution.
pub struct ExecOptions<'a, 'p> {
    /// Where `write-dns` goes.
    pub dns: &'a DnsTarget,
    /// Test hook: fail (without executing it) at this 1-based step.
    pub fail_at_step: Option<usize>,
    /// Called with (done, total) after each batch.
    pub progress: Option<&'p mut dyn FnMut(usize, usize)>,
}

/// Names to ifindexes, updated as the plan creates, renames and deletes.
struct Names {
    by_name: HashMap<String, u32>,
    used: HashSet<u32>,
    next: u32,
}

impl Names {
    fn new(obs: &Observed) -> Self {
        let by_name: HashMap<String, u32> = obs
            .links
            .iter()
            .map(|l| (l.name.to_string(), l.index))
            .collect();
        let used: HashSet<u32> = by_name.values().copied().collect();
        let next = used.iter().copied().max().unwrap_or(0) + 1;
        Self {
            by_name,
            used,
            next,
        }
    }

    fn get(&self, n: &str) -> Result<u32, StepError> {
        self.by_name
            .get(n)
            .copied()
            .ok_or_else(|| StepError::UnknownLink(n.to_owned()))
    }

    fn alloc(&mut self, n: &str) -> u32 {
        while self.used.contains(&self.next) {
            self.next += 1;
        }
        let i = self.next;
        self.used.insert(i);
        self.by_name.insert(n.to_owned(), i);
        i
    }
}

/// Executes `plan` on the host `observed` describes. Stops at the first
/// batch holding a failed step and reports the first failed step.
pub fn execute(
    nl: &mut Rtnl,
    observed: &Observed,
    plan: &Plan,
    mut opts: ExecOptions<'_, '_>,
) -> Result<(), StepFailure> {
    let mut names = Names::new(observed);
    let total = plan.ops.len();
    let limit = opts
        .fail_at_step
        .map(|s| s.saturating_sub(1))
        .unwrap_or(total)
        .min(total);
    let mut i = 0;
    while i < limit {
        // Collect netlink requests up to the next non-netlink op.
        let mut reqs: Vec<(RouteNetlinkMessage, u16)> = Vec::new();
        let start = i;
        while i < limit && !matches!(plan.ops[i], Op::WriteDns { .. }) {
            let req = to_request(&plan.ops[i], &mut names).map_err(|error| StepFailure {
                step: i + 1,
                op: plan.ops[i].to_string(),
                error,
            })?;
            reqs.push(req);
            i += 1;
        }
        if !reqs.is_empty() {
            let acks = nl.batch(&reqs).map_err(|e| StepFailure {
                step: start + 1,
                op: plan.ops[start].to_string(),
                error: e.into(),
            })?;
            for (k, ack) in acks.into_iter().enumerate() {
                if let Err(e) = ack {
                    let step = start + k;
                    return Err(StepFailure {
                        step: step + 1,
                        op: plan.ops[step].to_string(),
                        error: e.into(),
                    });
                }
            }
            for op in &plan.ops[start..i] {
                tracing::info!(op = %op, "applied");
            }
        }
        if i < limit {
            if let Op::WriteDns { config } = &plan.ops[i] {
                write_dns(opts.dns, &names, config).map_err(|error| StepFailure {
                    step: i + 1,
                    op: plan.ops[i].to_string(),
                    error,
                })?;
                tracing::info!(op = %plan.ops[i], "applied");
                i += 1;
            }
        }
        if let Some(p) = opts.progress.as_mut() {
            p(i, total);
        }
    }
    if limit < total {
        return Err(StepFailure {
            step: limit + 1,
            op: plan.ops[limit].to_string(),
            error: StepError::Injected,
        });
    }
    Ok(())
}

fn link_msg(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

fn to_request(op: &Op, names: &mut Names) -> Result<(RouteNetlinkMessage, u16), StepError> {
    Ok(match op {
        Op::RenameLink { from, to } => {
            let i = names.get(from.as_str())?;
            names.by_name.remove(from.as_str());
            names.by_name.insert(to.to_string(), i);
            let mut m = link_msg(i);
            m.attributes.push(LinkAttribute::IfName(to.to_string()));
            (RouteNetlinkMessage::SetLink(m), 0)
        }
        Op::DeleteRoute { route } => (
            RouteNetlinkMessage::DelRoute(route_msg(route, names, false)?),
            0,
        ),
        Op::AddRoute { route } => (
            RouteNetlinkMessage::NewRoute(route_msg(route, names, true)?),
            NLM_F_CREATE | NLM_F_REPLACE,
        ),
        Op::DeleteAddress { iface, address } => (
            RouteNetlinkMessage::DelAddress(addr_msg(names.get(iface.as_str())?, address)),
            0,
        ),
        Op::AddAddress { iface, address } => (
            RouteNetlinkMessage::NewAddress(addr_msg(names.get(iface.as_str())?, address)),
            NLM_F_CREATE | NLM_F_EXCL,
        ),
        Op::SetController { iface, controller } => {
            let c = match controller {
                Some(c) => names.get(c.as_str())?,
                None => 0,
            };
            let mut m = link_msg(names.get(iface.as_str())?);
            m.attributes.push(LinkAttribute::Controller(c));
            (RouteNetlinkMessage::SetLink(m), 0)
        }
        Op::DeleteLink { iface } => {
            let i = names.get(iface.as_str())?;
            names.by_name.remove(iface.as_str());
            (RouteNetlinkMessage::DelLink(link_msg(i)), 0)
        }
        Op::SetState { iface, up } => {
            let mut m = link_msg(names.get(iface.as_str())?);
            m.header.change_mask = LinkFlags::Up;
            if *up {
                m.header.flags = LinkFlags::Up;
            }
            (RouteNetlinkMessage::SetLink(m), 0)
        }
        Op::SetMtu { iface, mtu } => {
            let mut m = link_msg(names.get(iface.as_str())?);
            m.attributes.push(LinkAttribute::Mtu(*mtu));
            (RouteNetlinkMessage::SetLink(m), 0)
        }
        Op::SetBond {
            iface,
            mode,
            options,
        } => {
            let mut m = link_msg(names.get(iface.as_str())?);
            m.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bond),
                LinkInfo::Data(InfoData::Bond(bond_info(*mode, options, names)?)),
            ]));
            (RouteNetlinkMessage::NewLink(m), 0)
        }
        Op::SetBridge { iface, options } => {
            let mut m = link_msg(names.get(iface.as_str())?);
            m.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(bridge_info(options))),
            ]));
            (RouteNetlinkMessage::NewLink(m), 0)
        }
        Op::CreateLink { iface, mtu, link } => {
            let info = match link {
                NewLink::Bond { mode, options } => {
                    vec![
                        LinkInfo::Kind(InfoKind::Bond),
                        LinkInfo::Data(InfoData::Bond(bond_info(Some(*mode), options, names)?)),
                    ]
                }
                NewLink::Bridge { options } => {
                    vec![
                        LinkInfo::Kind(InfoKind::Bridge),
                        LinkInfo::Data(InfoData::Bridge(bridge_info(options))),
                    ]
                }
                NewLink::Vlan { id, protocol, .. } => vec![
                    LinkInfo::Kind(InfoKind::Vlan),
                    LinkInfo::Data(InfoData::Vlan(vec![
                        InfoVlan::Id(id.get()),
                        InfoVlan::Protocol(match protocol {
                            VlanProtocol::Dot1Q => {
                                netlink_packet_route::link::VlanProtocol::Ieee8021Q
                            }
                            VlanProtocol::Dot1Ad => {
                                netlink_packet_route::link::VlanProtocol::Ieee8021Ad
                            }
                        }),
                    ])),
                ],
            };
            let base = match link {
                NewLink::Vlan { base, .. } => Some(names.get(base.as_str())?),
                _ => None,
            };
            let index = names.alloc(iface.as_str());
            let mut m = link_msg(index);
            m.attributes.push(LinkAttribute::IfName(iface.to_string()));
            if let Some(b) = base {
                m.attributes.push(LinkAttribute::Link(b));
            }
            if let Some(mtu) = mtu {
                m.attributes.push(LinkAttribute::Mtu(*mtu));
            }
            m.attributes.push(LinkAttribute::LinkInfo(info));
            (RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
        }
        Op::BridgeVlanAdd { iface, vlans } | Op::BridgeVlanDel { iface, vlans } => {
            let mut m = link_msg(names.get(iface.as_str())?);
            m.header.interface_family = AddressFamily::Bridge;
            m.attributes
                .push(LinkAttribute::AfSpecBridge(vlan_infos(vlans)));
            if matches!(op, Op::BridgeVlanAdd { .. }) {
                (RouteNetlinkMessage::SetLink(m), 0)
            } else {
                (RouteNetlinkMessage::DelLink(m), 0)
            }
        }
        // execute() handles write-dns itself.
        Op::WriteDns { .. } => {
            return Err(StepError::UnknownLink(
                "(write-dns is not a netlink request)".into(),
            ))
        }
    })
}

/// VLAN entries as IFLA_BRIDGE_VLAN_INFO, ranges as BEGIN/END pairs.
fn vlan_infos(vlans: &[VlanEntry]) -> Vec<AfSpecBridge> {
    let mut out = Vec::new();
    for e in vlans {
        let mut flags = BridgeVlanInfoFlags::empty();
        if e.pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if e.untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        match e.max {
            Some(max) if max > e.min => {
                out.push(AfSpecBridge::VlanInfo(BridgeVlanInfo {
                    flags: flags | BridgeVlanInfoFlags::RangeBegin,
                    vid: e.min,
                }));
                out.push(AfSpecBridge::VlanInfo(BridgeVlanInfo {
                    flags: flags | BridgeVlanInfoFlags::RangeEnd,
                    vid: max,
                }));
            }
            _ => out.push(AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid: e.min })),
        }
    }
    out
}

fn addr_msg(index: u32, a: &IpNet) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = a.prefix_len();
    m.header.family = if a.addr().is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    if a.addr().is_ipv4() {
        m.attributes.push(AddressAttribute::Local(a.addr()));
    }
    m.attributes.push(AddressAttribute::Address(a.addr()));
    m
}

fn route_msg(r: &Route, names: &Names, add: bool) -> Result<RouteMessage, StepError> {
    let r = r.normalized();
    let key = r.key();
    let mut m = RouteMessage::default();
    let v4 = r.destination.addr().is_ipv4();
    m.header.address_family = if v4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.destination_prefix_length = r.destination.prefix_len();
    if key.table < 256 {
        m.header.table = key.table as u8;
    }
    m.attributes.push(RouteAttribute::Table(key.table));
    if add {
        m.header.protocol = RouteProtocol::Static;
        m.header.kind = RouteType::Unicast;
        m.header.scope = if r.next_hop_address.is_none() && r.multipath.is_empty() {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
    } else {
        m.header.scope = RouteScope::NoWhere;
    }
    if r.destination.prefix_len() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                r.destination.addr(),
            )));
    }
    m.attributes.push(RouteAttribute::Priority(key.metric));
    if r.multipath.is_empty() {
        if let Some(gw) = r.next_hop_address {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(dev) = &r.next_hop_interface {
            m.attributes
                .push(RouteAttribute::Oif(names.get(dev.as_str())?));
        }
    } else {
        let mut hops = Vec::new();
        for nh in &r.multipath {
            let mut h = RouteNextHop::default();
            h.hops = nh.weight.unwrap_or(1).saturating_sub(1).min(255) as u8;
            if let Some(dev) = &nh.next_hop_interface {
                h.interface_index = names.get(dev.as_str())?;
            }
            if let Some(gw) = nh.next_hop_address {
                h.attributes.push(gateway_attr(gw, v4));
            }
            hops.push(h);
        }
        m.attributes.push(RouteAttribute::MultiPath(hops));
    }
    Ok(m)
}

fn gateway_attr(gw: IpAddr, _v4: bool) -> RouteAttribute {
    RouteAttribute::Gateway(RouteAddress::from(gw))
}

fn bond_info(
    mode: Option<BondMode>,
    o: &BondOptions,
    names: &Names,
) -> Result<Vec<InfoBond>, StepError> {
    use netlink_packet_route::link::BondMode as K;
    let mut v = Vec::new();
    if let Some(m) = mode {
        v.push(InfoBond::Mode(match m {
            BondMode::BalanceRr => K::BalanceRr,
            BondMode::ActiveBackup => K::ActiveBackup,
            BondMode::BalanceXor => K::BalanceXor,
            BondMode::Broadcast => K::Broadcast,
            BondMode::Lacp => K::Ieee8023Ad,
            BondMode::BalanceTlb => K::BalanceTlb,
            BondMode::BalanceAlb => K::BalanceAlb,
        }));
    }
    // fail_over_mac and the LACP identity before the rest, as iproute2 does.
    if let Some(x) = o.fail_over_mac {
        v.push(InfoBond::FailOverMac(match x {
            FailOverMac::None => BondFailOverMac::None,
            FailOverMac::Active => BondFailOverMac::Active,
            FailOverMac::Follow => BondFailOverMac::Follow,
        }));
    }
    if let Some(x) = o.miimon {
        v.push(InfoBond::MiiMon(x));
    }
    if let Some(x) = o.updelay {
        v.push(InfoBond::UpDelay(x));
    }
    if let Some(x) = o.downdelay {
        v.push(InfoBond::DownDelay(x));
    }
    if let Some(x) = o.use_carrier {
        v.push(InfoBond::UseCarrier(x));
    }
    if let Some(x) = o.arp_interval {
        v.push(InfoBond::ArpInterval(x));
    }
    if let Some(x) = &o.arp_ip_target {
        v.push(InfoBond::ArpIpTarget(x.clone()));
    }
    if let Some(x) = o.arp_validate {
        v.push(InfoBond::ArpValidate(match x {
            ArpValidate::None => BondArpValidate::None,
            ArpValidate::Active => BondArpValidate::Active,
            ArpValidate::Backup => BondArpValidate::Backup,
            ArpValidate::All => BondArpValidate::All,
            ArpValidate::Filter => BondArpValidate::Filter,
            ArpValidate::FilterActive => BondArpValidate::FilterActive,
            ArpValidate::FilterBackup => BondArpValidate::FilterBackup,
        }));
    }
    if let Some(x) = o.arp_all_targets {
        v.push(InfoBond::ArpAllTargets(match x {
            ArpAllTargets::Any => BondArpAllTargets::Any,
            ArpAllTargets::All => BondArpAllTargets::All,
        }));
    }
    if let Some(p) = &o.primary {
        v.push(InfoBond::Primary(names.get(p.as_str())?));
    }
    if let Some(x) = o.primary_reselect {
        v.push(InfoBond::PrimaryReselect(match x {
            PrimaryReselect::Always => BondPrimaryReselect::Always,
            PrimaryReselect::Better => BondPrimaryReselect::Better,
            PrimaryReselect::Failure => BondPrimaryReselect::Failure,
        }));
    }
    if let Some(x) = o.xmit_hash_policy {
        v.push(InfoBond::XmitHashPolicy(match x {
            XmitHashPolicy::Layer2 => BondXmitHashPolicy::Layer2,
            XmitHashPolicy::Layer34 => BondXmitHashPolicy::Layer34,
            XmitHashPolicy::Layer23 => BondXmitHashPolicy::Layer23,
            XmitHashPolicy::Encap23 => BondXmitHashPolicy::Encap23,
            XmitHashPolicy::Encap34 => BondXmitHashPolicy::Encap34,
            XmitHashPolicy::VlanSrcMac => BondXmitHashPolicy::VlanSrcMac,
        }));
    }
    if let Some(x) = o.resend_igmp {
        v.push(InfoBond::ResendIgmp(x));
    }
    if let Some(x) = o.num_grat_arp {
        v.push(InfoBond::NumPeerNotif(x));
    }
    if let Some(x) = o.all_slaves_active {
        v.push(InfoBond::AllPortsActive(if x {
            BondAllPortActive::Delivered
        } else {
            BondAllPortActive::Dropped
        }));
    }
    if let Some(x) = o.min_links {
        v.push(InfoBond::MinLinks(x));
    }
    if let Some(x) = o.lp_interval {
        v.push(InfoBond::LpInterval(x));
    }
    if let Some(x) = o.packets_per_slave {
        v.push(InfoBond::PacketsPerPort(x));
    }
    if let Some(x) = o.lacp_rate {
        v.push(InfoBond::AdLacpRate(match x {
            LacpRate::Slow => BondLacpRate::Slow,
            LacpRate::Fast => BondLacpRate::Fast,
        }));
    }
    if let Some(x) = o.ad_select {
        v.push(InfoBond::AdSelect(match x {
            AdSelect::Stable => BondAdSelect::Stable,
            AdSelect::Bandwidth => BondAdSelect::Bandwidth,
            AdSelect::Count => BondAdSelect::Count,
        }));
    }
    if let Some(x) = o.ad_actor_sys_prio {
        v.push(InfoBond::AdActorSysPrio(x));
    }
    if let Some(x) = o.ad_user_port_key {
        v.push(InfoBond::AdUserPortKey(x));
    }
    if let Some(x) = o.ad_actor_system {
        v.push(InfoBond::AdActorSystem(x.0));
    }
    if let Some(x) = o.tlb_dynamic_lb {
        v.push(InfoBond::TlbDynamicLb(x));
    }
    if let Some(x) = o.peer_notif_delay {
        v.push(InfoBond::PeerNotifDelay(x));
    }
    if let Some(x) = o.lacp_active {
        v.push(InfoBond::AdLacpActive(x));
    }
    if let Some(x) = o.missed_max {
        v.push(InfoBond::MissedMax(x));
    }
    Ok(v)
}

fn bridge_info(o: &BridgeOptions) -> Vec<InfoBridge> {
    let mut v = Vec::new();
    if let Some(stp) = &o.stp {
        // Timers before the STP state: the kernel checks them when STP is on.
        if let Some(x) = stp.forward_delay {
            v.push(InfoBridge::ForwardDelay(x * 100));
        }
        if let Some(x) = stp.hello_time {
            v.push(InfoBridge::HelloTime(x * 100));
        }
        if let Some(x) = stp.max_age {
            v.push(InfoBridge::MaxAge(x * 100));
        }
        if let Some(x) = stp.priority {
            v.push(InfoBridge::Priority(x));
        }
        v.push(InfoBridge::StpState(if stp.enabled {
            BridgeStpState::KernelStp
        } else {
            BridgeStpState::Disabled
        }));
    }
    if let Some(x) = o.vlan_protocol {
        v.push(InfoBridge::VlanProtocol(match x {
            VlanProtocol::Dot1Q => netlink_packet_route::link::VlanProtocol::Ieee8021Q,
            VlanProtocol::Dot1Ad => netlink_packet_route::link::VlanProtocol::Ieee8021Ad,
        }));
    }
    if let Some(x) = o.vlan_filtering {
        v.push(InfoBridge::VlanFiltering(x));
    }
    if let Some(x) = o.mac_ageing_time {
        v.push(InfoBridge::AgeingTime(x * 100));
    }
    if let Some(x) = o.multicast_snooping {
        v.push(InfoBridge::MulticastSnooping(x));
    }
    v
}

/// Sets the resolver configuration where `target` says: the file, or the
/// carrier link's servers and domains in systemd-resolved (by the ifindex
/// the plan gave it, so a link created by this plan works too).
fn write_dns(target: &DnsTarget, names: &Names, c: &DnsConfig) -> Result<(), StepError> {
    match target {
        DnsTarget::File(path) => write_resolv_conf(path, c),
        DnsTarget::Resolved { bus, iface } => {
            let ifindex = names.get(iface.as_str())?;
            Ok(bus.set_link_dns(ifindex, c)?)
        }
    }
}

/// Writes a resolv.conf atomically (temporary file in the same directory,
/// then rename).
pub fn write_resolv_conf(path: &Path, c: &DnsConfig) -> Result<(), StepError> {
    let mut text = String::from("# Written by hostd. Changes here are overwritten.\n");
    for s in &c.server {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !c.search.is_empty() {
        text.push_str(&format!("search {}\n", c.search.join(" ")));
    }
    crate::store::write_atomic(path, text.as_bytes()).map_err(|source| StepError::Dns {
        path: path.display().to_string(),
        source,
    })
}
