//! Executes a [`Plan`] over netlink, pipelined.
//!
//! Every op becomes one rtnetlink request; requests go out in large
//! `sendmsg` batches ([`Rtnl::batch`]) and the acks are read per batch. A
//! batch ends where an operation refers to a link created earlier in it:
//! the kernel picks every new link's ifindex, and hostd reads it back by
//! name once the creation is acknowledged, so a request never reaches a link
//! another process made meanwhile (a VLAN's base, a port's controller are
//! always the links this plan made). The result says which operations the
//! kernel acknowledged, so a rollback undoes exactly those. The resolver
//! configuration (the file, or systemd-resolved over D-Bus: [`DnsTarget`])
//! is set between batches, at its place in the plan.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::Path,
};

use hostd_core::{
    model::{Observed, VlanEntry},
    plan::{NewLink, Op, Plan},
    route::RouteProtocol as Proto,
    schema::{BondMode, BondOptions, BridgeOptions, DnsConfig, Route, VlanProtocol},
};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{
        AfSpecBridge, AfSpecInet6, AfSpecUnspec, BridgeFlag, BridgeStpState, BridgeVlanInfo,
        BridgeVlanInfoFlags, In6AddrGenMode, InfoBond, InfoBridge, InfoData, InfoKind, InfoVlan,
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
    /// A link this plan created could not be found afterwards.
    #[error("the link {name} this plan created cannot be found: {error}")]
    Vanished {
        /// Name.
        name: String,
        /// Why.
        error: NlError,
    },
    /// A value does not fit its netlink attribute.
    #[error("{0}")]
    Encode(String),
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
    #[cfg(feature = "fault-injection")]
    #[error("failure injected at this step (fault injection)")]
    Injected,
}

/// Test-only failures (cargo feature `fault-injection`; the `hostd` binary
/// never reads them, only `hostd-fault` and the lab tests).
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Stop before the 1-based step, as if it had failed (nothing of it or
    /// after it is sent).
    StopBefore(usize),
    /// Send, in place of the 1-based step, a request the kernel refuses, in
    /// the middle of its batch: the requests after it in the batch still run.
    Refuse(usize),
}

#[cfg(feature = "fault-injection")]
impl std::str::FromStr for Fault {
    type Err = String;
    /// `N` or `stop:N` (stop before step N), `refuse:N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, n) = s.split_once(':').unwrap_or(("stop", s));
        let n: usize = n
            .parse()
            .map_err(|_| format!("fault {s:?}: expected stop:N or refuse:N"))?;
        match kind {
            "stop" => Ok(Self::StopBefore(n)),
            "refuse" => Ok(Self::Refuse(n)),
            _ => Err(format!("fault {s:?}: expected stop:N or refuse:N")),
        }
    }
}

/// Options of one execution.
pub struct ExecOptions<'a, 'p> {
    /// Where `write-dns` goes.
    pub dns: &'a DnsTarget,
    /// Test hook.
    #[cfg(feature = "fault-injection")]
    pub fault: Option<Fault>,
    /// Called with (done, total) after each batch.
    pub progress: Option<&'p mut dyn FnMut(usize, usize)>,
}

/// What an execution did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The operations the kernel acknowledged (or that succeeded), in order.
    pub acked: Vec<Op>,
    /// The first failed step, if any.
    pub failure: Option<StepFailure>,
}

/// Names to ifindexes, updated as the plan creates, renames and deletes.
struct Names {
    by_name: HashMap<String, u32>,
    /// Links created in the batch being built, not yet acknowledged.
    pending: HashSet<String>,
}

impl Names {
    fn new(obs: &Observed) -> Self {
        Self {
            by_name: obs
                .links
                .iter()
                .map(|l| (l.name.to_string(), l.index))
                .collect(),
            pending: HashSet::new(),
        }
    }

    fn get(&self, n: &str) -> Result<u32, StepError> {
        self.by_name
            .get(n)
            .copied()
            .ok_or_else(|| StepError::UnknownLink(n.to_owned()))
    }
}

/// Link names an op refers to (the ones that must resolve to an ifindex).
fn names_used(op: &Op) -> Vec<&str> {
    let mut v: Vec<&str> = Vec::new();
    match op {
        Op::RenameLink { from, .. } => v.push(from.as_str()),
        Op::DeleteRoute { route } | Op::AddRoute { route } => v.extend(route.interfaces()),
        Op::DeleteAddress { iface, .. }
        | Op::AddAddress { iface, .. }
        | Op::DeleteLink { iface }
        | Op::SetState { iface, .. }
        | Op::SetMtu { iface, .. }
        | Op::SetBridge { iface, .. }
        | Op::SetAddrGenMode { iface, .. }
        | Op::BridgeVlanAdd { iface, .. }
        | Op::BridgeVlanDel { iface, .. } => v.push(iface.as_str()),
        Op::SetController { iface, controller } => {
            v.push(iface.as_str());
            if let Some(c) = controller {
                v.push(c.as_str());
            }
        }
        Op::SetBond { iface, options, .. } => {
            v.push(iface.as_str());
            v.extend(options.primary.as_ref().map(|p| p.as_str()));
        }
        Op::CreateLink { link, .. } => match link {
            NewLink::Vlan { base, .. } => v.push(base.as_str()),
            NewLink::Bond { options, .. } => v.extend(options.primary.as_ref().map(|p| p.as_str())),
            NewLink::Bridge { .. } => {}
        },
        Op::WriteDns { .. } => {}
    }
    v
}

/// Executes `plan` on the host `observed` describes, in pipelined batches.
///
/// A batch ends before an operation that names a link created earlier in
/// it: the creations are acknowledged and the new links' ifindexes (picked
/// by the kernel) read back by name before anything refers to them, so a
/// request can never reach a link another process created meanwhile. After
/// a batch with a failed step nothing more is sent. Every acknowledged
/// operation is reported (a rollback undoes exactly those).
pub fn execute(
    nl: &mut Rtnl,
    observed: &Observed,
    plan: &Plan,
    mut opts: ExecOptions<'_, '_>,
) -> Outcome {
    let mut names = Names::new(observed);
    let total = plan.ops.len();
    #[cfg(feature = "fault-injection")]
    let (limit, refuse) = match opts.fault {
        Some(Fault::StopBefore(s)) => (s.saturating_sub(1).min(total), None),
        Some(Fault::Refuse(s)) => (total, Some(s)),
        None => (total, None),
    };
    #[cfg(not(feature = "fault-injection"))]
    let (limit, refuse): (usize, Option<usize>) = (total, None);
    let mut out = Outcome::default();
    let mut batch: Vec<(usize, RouteNetlinkMessage, u16)> = Vec::new();
    let mut i = 0;
    loop {
        let op = (i < limit).then(|| &plan.ops[i]);
        let barrier = match op {
            None => true,
            Some(Op::WriteDns { .. }) => true,
            Some(op) => names_used(op).iter().any(|n| names.pending.contains(*n)),
        };
        if barrier && !batch.is_empty() {
            if let Err(f) = flush(nl, plan, &mut batch, &mut names, &mut out) {
                out.failure = Some(f);
                return out;
            }
            if out.failure.is_some() {
                return out;
            }
            if let Some(p) = opts.progress.as_mut() {
                p(i, total);
            }
        }
        let Some(op) = op else { break };
        if let Op::WriteDns { config } = op {
            if let Err(error) = write_dns(opts.dns, &names, config) {
                out.failure = Some(StepFailure {
                    step: i + 1,
                    op: op.to_string(),
                    error,
                });
                return out;
            }
            tracing::info!(op = %op, "applied");
            out.acked.push(op.clone());
            i += 1;
            continue;
        }
        let req = if refuse == Some(i + 1) {
            Ok(refused_request())
        } else {
            to_request(op, &mut names)
        };
        match req {
            Ok((msg, flags)) => batch.push((i, msg, flags)),
            Err(error) => {
                // Nothing of this op was sent: send what came before, stop.
                if !batch.is_empty() {
                    if let Err(f) = flush(nl, plan, &mut batch, &mut names, &mut out) {
                        out.failure = Some(f);
                        return out;
                    }
                }
                if out.failure.is_none() {
                    out.failure = Some(StepFailure {
                        step: i + 1,
                        op: op.to_string(),
                        error,
                    });
                }
                return out;
            }
        }
        i += 1;
    }
    if limit < total && out.failure.is_none() {
        #[cfg(feature = "fault-injection")]
        {
            out.failure = Some(StepFailure {
                step: limit + 1,
                op: plan.ops[limit].to_string(),
                error: StepError::Injected,
            });
        }
    }
    out
}

/// A request the kernel refuses (`Fault::Refuse`): set an ifindex nobody has up.
fn refused_request() -> (RouteNetlinkMessage, u16) {
    let mut m = link_msg(0x7fff_fff0);
    m.header.change_mask = LinkFlags::Up;
    m.header.flags = LinkFlags::Up;
    (RouteNetlinkMessage::SetLink(m), 0)
}

/// Sends the batch, records what the kernel acknowledged (the first failure
/// in `out.failure`), then resolves the ifindexes of the links it created.
fn flush(
    nl: &mut Rtnl,
    plan: &Plan,
    batch: &mut Vec<(usize, RouteNetlinkMessage, u16)>,
    names: &mut Names,
    out: &mut Outcome,
) -> Result<(), StepFailure> {
    let reqs: Vec<(RouteNetlinkMessage, u16)> =
        batch.iter().map(|(_, m, f)| (m.clone(), *f)).collect();
    let first = batch.first().map(|(i, _, _)| *i).unwrap_or(0);
    let acks = nl.batch(&reqs).map_err(|e| StepFailure {
        step: first + 1,
        op: plan.ops[first].to_string(),
        error: e.into(),
    })?;
    let mut created = Vec::new();
    for ((i, _, _), ack) in batch.iter().zip(acks) {
        let op = &plan.ops[*i];
        match ack {
            Ok(()) => {
                tracing::info!(op = %op, "applied");
                out.acked.push(op.clone());
                if let Op::CreateLink { iface, .. } = op {
                    created.push(iface.to_string());
                }
            }
            Err(e) => {
                tracing::warn!(op = %op, error = %e, "refused");
                if out.failure.is_none() {
                    out.failure = Some(StepFailure {
                        step: i + 1,
                        op: op.to_string(),
                        error: e.into(),
                    });
                }
            }
        }
    }
    batch.clear();
    // Created links failed or not: none is pending any more.
    names.pending.clear();
    if created.is_empty() {
        return Ok(());
    }
    let found = nl.link_indexes(&created).map_err(|e| StepFailure {
        step: first + 1,
        op: plan.ops[first].to_string(),
        error: e.into(),
    })?;
    for (name, r) in created.into_iter().zip(found) {
        match r {
            Ok(index) => {
                names.by_name.insert(name, index);
            }
            Err(error) => {
                return Err(StepFailure {
                    step: first + 1,
                    op: plan.ops[first].to_string(),
                    error: StepError::Vanished { name, error },
                })
            }
        }
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
        // Replace: an address with this value that a DHCP client or SLAAC
        // made (with a lifetime) becomes static (no lifetime given).
        Op::AddAddress { iface, address } => (
            RouteNetlinkMessage::NewAddress(addr_msg(names.get(iface.as_str())?, address)),
            NLM_F_CREATE | NLM_F_REPLACE,
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
        Op::SetAddrGenMode { iface, mode } => {
            let mut m = link_msg(names.get(iface.as_str())?);
            m.attributes
                .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                    vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::from(
                        mode.number(),
                    ))],
                )]));
            (RouteNetlinkMessage::SetLink(m), 0)
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
            clear_primary,
        } => {
            let mut m = link_msg(names.get(iface.as_str())?);
            let mut info = bond_info(*mode, options, names)?;
            if *clear_primary {
                // IFLA_BOND_PRIMARY 0: no link, no primary.
                info.push(InfoBond::Other(netlink_packet_core::DefaultNla::new(
                    11,
                    0u32.to_ne_bytes().to_vec(),
                )));
            }
            m.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bond),
                LinkInfo::Data(InfoData::Bond(info)),
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
        Op::CreateLink {
            iface,
            mtu,
            link,
            index,
            mac,
        } => {
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
            // The kernel picks the ifindex (a rollback asks for the old
            // one); later requests refer to it only after it is read back.
            names.pending.insert(iface.to_string());
            let mut m = link_msg(index.unwrap_or(0));
            m.attributes.push(LinkAttribute::IfName(iface.to_string()));
            if let Some(mac) = mac {
                m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
            }
            if let Some(b) = base {
                m.attributes.push(LinkAttribute::Link(b));
            }
            if let Some(mtu) = mtu {
                m.attributes.push(LinkAttribute::Mtu(*mtu));
            }
            m.attributes.push(LinkAttribute::LinkInfo(info));
            (RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
        }
        Op::BridgeVlanAdd {
            iface,
            vlans,
            bridge_self,
        }
        | Op::BridgeVlanDel {
            iface,
            vlans,
            bridge_self,
        } => {
            let mut m = link_msg(names.get(iface.as_str())?);
            m.header.interface_family = AddressFamily::Bridge;
            let mut spec = vlan_infos(vlans);
            if *bridge_self {
                // IFLA_BRIDGE_FLAGS = BRIDGE_FLAGS_SELF: the bridge device
                // itself, not a port.
                spec.insert(0, AfSpecBridge::Flags(BridgeFlag::LowerDev));
            }
            m.attributes.push(LinkAttribute::AfSpecBridge(spec));
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
        m.header.protocol = RouteProtocol::from(r.protocol.unwrap_or(Proto::Static).number());
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
    crate::bond_attrs::encode(mode, o, |n| names.by_name.get(n).copied()).map_err(StepError::Encode)
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
