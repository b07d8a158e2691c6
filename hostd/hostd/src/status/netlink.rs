//! Bonds, members and NICs from one RTM_GETLINK dump.
//!
//! Bond side: `IFLA_BOND_MODE`, `ACTIVE_SLAVE`, `PRIMARY`, `AD_LACP_RATE`,
//! `AD_LACP_ACTIVE`, `AD_ACTOR_SYS_PRIO`, `AD_ACTOR_SYSTEM` and
//! `IFLA_BOND_AD_INFO` (the active aggregator: id, ports, keys, partner MAC).
//! Member side (`IFLA_BOND_SLAVE_*`): state, MII status, link failure count,
//! permanent address, aggregator id, actor and partner oper port state,
//! actor port priority and churn states where the kernel has them (2025+).
//! What the 6.1 kernel leaves out (a member's partner system, key, port) is
//! filled from procfs by `hostd_core::status::merge`.

use std::collections::HashMap;

use hostd_core::{
    status::{
        Aggregator, BondLacp, BondMode, BondStatus, ChurnState, LacpPort, LacpRate, LacpState,
        MemberStatus, MiiStatus, NicStatus, PortRole,
    },
    types::MacAddr,
};
use netlink_packet_route::link::{
    self as nl, BondAdInfo, InfoBond, InfoBondPort, InfoData, InfoKind, InfoPortData,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};

/// What one link dump says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Links {
    /// Bonds, with their members (netlink's view).
    pub bonds: Vec<BondStatus>,
    /// NICs: links without a kind (physical) and veth (the lab's NICs).
    pub nics: Vec<NicStatus>,
    /// Index and name of every link the status reports on (bonds, members,
    /// NICs), and of every other link of the dump: which link events can
    /// change the status.
    pub indexes: Indexes,
}

/// Which links the status is about, by ifindex.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexes {
    /// Bonds, their members and NICs.
    pub reported: HashMap<u32, String>,
    /// Every other link seen (VLANs, bridges, a hypervisor's ports ...).
    pub others: HashMap<u32, String>,
}

impl Indexes {
    /// Whether an event of the link `index` (named `name` when the event
    /// says) can change the status: a link it reports on, or one it has
    /// not seen yet (a new link may be a NIC or a bond). A link seen as
    /// something else (a VLAN, a bridge, a VM's port) cannot, unless it
    /// was renamed to a name the status reports on.
    pub fn concerns(&self, index: u32, name: Option<&str>) -> bool {
        if self.reported.contains_key(&index) {
            return true;
        }
        match self.others.get(&index) {
            None => true,
            Some(known) => {
                name.is_some_and(|n| n != known && self.reported.values().any(|r| r == n))
            }
        }
    }
}

/// An RTM_GETLINK dump request filtered by the kernel (`ip link show type
/// KIND` / `ip link show master INDEX`): only the links of that kind, or
/// enslaved to that link, are serialised, so a poll of the bonds costs in
/// proportion to the bonds, not to every link of the host.
pub fn filtered_dump(kind: Option<InfoKind>, controller: Option<u32>) -> LinkMessage {
    let mut m = LinkMessage::default();
    if let Some(k) = kind {
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(k)]));
    }
    if let Some(c) = controller {
        m.attributes.push(LinkAttribute::Controller(c));
    }
    m
}

fn mac6(b: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(b).ok().map(MacAddr)
}

struct Seen<'a> {
    index: u32,
    name: &'a str,
    kind: Option<&'a InfoKind>,
    bond: Option<&'a [InfoBond]>,
    port: Option<&'a [InfoBondPort]>,
    controller: Option<u32>,
    mtu: Option<u32>,
    carrier: Option<bool>,
    mac: Option<MacAddr>,
    loopback: bool,
}

fn seen(l: &LinkMessage) -> Option<Seen<'_>> {
    let mut s = Seen {
        index: l.header.index,
        name: "",
        kind: None,
        bond: None,
        port: None,
        controller: None,
        mtu: None,
        carrier: None,
        mac: None,
        loopback: l.header.flags.contains(LinkFlags::Loopback),
    };
    let mut oper = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => s.name = n,
            LinkAttribute::Mtu(m) => s.mtu = Some(*m),
            LinkAttribute::Carrier(c) => s.carrier = Some(*c != 0),
            LinkAttribute::OperState(st) => oper = Some(st),
            LinkAttribute::Controller(c) => s.controller = Some(*c),
            LinkAttribute::Address(b) => s.mac = mac6(b),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => s.kind = Some(k),
                        LinkInfo::Data(InfoData::Bond(b)) => s.bond = Some(b),
                        LinkInfo::PortData(InfoPortData::BondPort(p)) => s.port = Some(p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if s.carrier.is_none() {
        s.carrier = oper.map(|o| *o == State::Up);
    }
    (!s.name.is_empty()).then_some(s)
}

fn mii(m: &nl::MiiStatus) -> Option<MiiStatus> {
    Some(match m {
        nl::MiiStatus::Up => MiiStatus::Up,
        nl::MiiStatus::GoingDown => MiiStatus::GoingDown,
        nl::MiiStatus::Down => MiiStatus::Down,
        nl::MiiStatus::GoingBack => MiiStatus::GoingBack,
        _ => return None,
    })
}

fn churn(c: &nl::ChurnState) -> Option<ChurnState> {
    Some(match c {
        nl::ChurnState::Monitor => ChurnState::Monitoring,
        nl::ChurnState::Churn => ChurnState::Churned,
        nl::ChurnState::NoChurn => ChurnState::None,
        _ => return None,
    })
}

fn bond_of(s: &Seen<'_>, attrs: &[InfoBond], names: &HashMap<u32, &str>) -> BondStatus {
    let mut mode = BondMode::BalanceRr;
    let mut lacp = BondLacp::default();
    let mut actor_system = None;
    let mut b = BondStatus::new(s.name, BondMode::BalanceRr);
    for a in attrs {
        match a {
            InfoBond::Mode(m) => mode = BondMode::from_number(u8::from(*m)),
            InfoBond::ActivePort(i) => b.active_port = names.get(i).map(|n| (*n).to_owned()),
            InfoBond::Primary(i) => b.primary = names.get(i).map(|n| (*n).to_owned()),
            InfoBond::AdLacpRate(r) => {
                lacp.rate = match r {
                    nl::BondLacpRate::Slow => Some(LacpRate::Slow),
                    nl::BondLacpRate::Fast => Some(LacpRate::Fast),
                    _ => None,
                }
            }
            InfoBond::AdLacpActive(on) => lacp.active = Some(*on),
            InfoBond::AdActorSysPrio(p) => lacp.system_priority = Some(*p),
            InfoBond::AdActorSystem(m) => actor_system = Some(MacAddr(*m)),
            InfoBond::AdInfo(info) => {
                let (mut id, mut ports, mut ak, mut pk, mut pm) = (None, None, None, None, None);
                for i in info {
                    match i {
                        BondAdInfo::Aggregator(v) => id = Some(*v),
                        BondAdInfo::NumPorts(v) => ports = Some(*v),
                        BondAdInfo::ActorKey(v) => ak = Some(*v),
                        BondAdInfo::PartnerKey(v) => pk = Some(*v),
                        BondAdInfo::PartnerMac(m) => pm = Some(MacAddr(*m)),
                        _ => {}
                    }
                }
                if let (
                    Some(id),
                    Some(ports),
                    Some(actor_key),
                    Some(partner_key),
                    Some(partner_mac),
                ) = (id, ports, ak, pk, pm)
                {
                    lacp.active_aggregator = Some(Aggregator {
                        id,
                        ports,
                        actor_key,
                        partner_key,
                        partner_mac,
                        partner_priority: None,
                    });
                }
            }
            _ => {}
        }
    }
    b.mode = mode;
    b.mii_status = s
        .carrier
        .map(|c| if c { MiiStatus::Up } else { MiiStatus::Down });
    if b.mode == BondMode::Lacp {
        // ad_actor_system unset (zero) means the bond's own MAC.
        lacp.system_mac = actor_system.filter(|m| !m.is_zero()).or(s.mac);
        b.lacp = Some(lacp);
    }
    b
}

fn member_of(name: &str, attrs: &[InfoBondPort]) -> MemberStatus {
    let mut m = MemberStatus::new(name);
    let mut actor = LacpPort::default();
    let mut partner = LacpPort::default();
    for a in attrs {
        match a {
            InfoBondPort::BondPortState(s) => {
                m.role = match s {
                    nl::BondPortState::Active => Some(PortRole::Active),
                    nl::BondPortState::Backup => Some(PortRole::Backup),
                    _ => None,
                }
            }
            InfoBondPort::MiiStatus(s) => m.mii_status = mii(s),
            InfoBondPort::LinkFailureCount(n) => m.link_failure_count = Some(*n),
            InfoBondPort::PermHwaddr(b) => m.permanent_mac = mac6(b),
            InfoBondPort::AdAggregatorId(id) => m.aggregator_id = Some(*id),
            InfoBondPort::AdActorOperPortState(s) => actor.state = Some(LacpState(s.bits())),
            InfoBondPort::AdPartnerOperPortState(s) => partner.state = Some(LacpState(s.bits())),
            InfoBondPort::ActorPortPrio(p) => actor.port_priority = Some(*p),
            InfoBondPort::AdChurnActorState(c) => m.actor_churn = churn(c),
            InfoBondPort::AdChurnPartnerState(c) => m.partner_churn = churn(c),
            _ => {}
        }
    }
    if actor != LacpPort::default() {
        m.actor = Some(actor);
    }
    if partner != LacpPort::default() {
        m.partner = Some(partner);
    }
    m
}

/// Decodes the answer of one RTM_GETLINK dump.
pub fn decode(links: &[LinkMessage]) -> Links {
    let all: Vec<Seen<'_>> = links.iter().filter_map(seen).collect();
    let names: HashMap<u32, &str> = all.iter().map(|s| (s.index, s.name)).collect();
    let mut out = Links::default();
    let mut bonds: HashMap<u32, usize> = HashMap::new();
    for s in &all {
        if let (Some(InfoKind::Bond), Some(attrs)) = (s.kind, s.bond) {
            bonds.insert(s.index, out.bonds.len());
            out.bonds.push(bond_of(s, attrs, &names));
        }
    }
    for s in &all {
        if let (Some(port), Some(c)) = (s.port, s.controller) {
            if let Some(&i) = bonds.get(&c) {
                let mut m = member_of(s.name, port);
                m.carrier = s.carrier;
                out.bonds[i].members.push(m);
                out.indexes.reported.insert(s.index, s.name.to_owned());
            }
        }
        if bonds.contains_key(&s.index) {
            out.indexes.reported.insert(s.index, s.name.to_owned());
        }
        let is_nic = !s.loopback && matches!(s.kind, None | Some(InfoKind::Veth));
        if !is_nic && !out.indexes.reported.contains_key(&s.index) {
            out.indexes.others.insert(s.index, s.name.to_owned());
        }
        if is_nic {
            out.indexes.reported.insert(s.index, s.name.to_owned());
            out.nics.push(NicStatus {
                mtu: s.mtu,
                carrier: s.carrier,
                bond: s
                    .controller
                    .filter(|c| bonds.contains_key(c))
                    .and_then(|c| names.get(&c))
                    .map(|n| (*n).to_owned()),
                ..NicStatus::new(s.name)
            });
        }
    }
    for b in &mut out.bonds {
        b.members.sort_by(|x, y| x.name.cmp(&y.name));
    }
    out.bonds.sort_by(|a, b| a.name.cmp(&b.name));
    out.nics.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Emitable, Parseable};
    use netlink_packet_route::link::{InfoPortKind, LinkHeader};

    use super::*;

    /// Serialises and parses back, as the kernel's bytes would be.
    fn wire(m: LinkMessage) -> LinkMessage {
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        LinkMessage::parse(&buf).expect("parse back")
    }

    fn link(index: u32, name: &str, mut attrs: Vec<LinkAttribute>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header = LinkHeader {
            index,
            ..LinkHeader::default()
        };
        attrs.insert(0, LinkAttribute::IfName(name.to_owned()));
        m.attributes = attrs;
        wire(m)
    }

    /// The bond of the non-LAG-member capture (`ip -d -j` of the VM, 6.1):
    /// bond0 (index 5) over eth0..eth2 (2..4), plus lo.
    fn dump() -> Vec<LinkMessage> {
        let port = |agg: u16, actor: u8, partner: u8, perm: [u8; 6], active: bool| {
            vec![
                LinkInfo::PortKind(InfoPortKind::Bond),
                LinkInfo::PortData(InfoPortData::BondPort(vec![
                    InfoBondPort::BondPortState(if active {
                        nl::BondPortState::Active
                    } else {
                        nl::BondPortState::Backup
                    }),
                    InfoBondPort::MiiStatus(nl::MiiStatus::Up),
                    InfoBondPort::LinkFailureCount(0),
                    InfoBondPort::PermHwaddr(perm.to_vec()),
                    InfoBondPort::QueueId(0),
                    InfoBondPort::Prio(0),
                    InfoBondPort::AdAggregatorId(agg),
                    InfoBondPort::AdActorOperPortState(nl::LacpState::from_bits_retain(actor)),
                    InfoBondPort::AdPartnerOperPortState(nl::LacpState::from_bits_retain(partner)),
                ])),
            ]
        };
        let nic = |i: u32, name: &str, info: Vec<LinkInfo>| {
            link(
                i,
                name,
                vec![
                    LinkAttribute::Mtu(1500),
                    LinkAttribute::Carrier(1),
                    LinkAttribute::Controller(5),
                    LinkAttribute::LinkInfo([vec![LinkInfo::Kind(InfoKind::Veth)], info].concat()),
                ],
            )
        };
        let mut lo = LinkMessage::default();
        lo.header.index = 1;
        lo.header.flags = LinkFlags::Loopback | LinkFlags::Up;
        lo.attributes = vec![
            LinkAttribute::IfName("lo".into()),
            LinkAttribute::Mtu(65536),
        ];
        vec![
            wire(lo),
            nic(
                2,
                "eth0",
                port(1, 63, 63, [0x42, 0x7e, 0x8e, 0x45, 0xfc, 0xbb], true),
            ),
            nic(
                3,
                "eth1",
                port(1, 63, 63, [0xc2, 0x6f, 0x6a, 0xb1, 0x51, 0x3a], true),
            ),
            nic(
                4,
                "eth2",
                port(3, 71, 0, [0xda, 0x55, 0x92, 0x29, 0x17, 0x43], false),
            ),
            link(
                5,
                "bond0",
                vec![
                    LinkAttribute::Mtu(1500),
                    LinkAttribute::Carrier(1),
                    LinkAttribute::Address(vec![0x42, 0x7e, 0x8e, 0x45, 0xfc, 0xbb]),
                    LinkAttribute::LinkInfo(vec![
                        LinkInfo::Kind(InfoKind::Bond),
                        LinkInfo::Data(InfoData::Bond(vec![
                            InfoBond::Mode(nl::BondMode::Ieee8023Ad),
                            InfoBond::MiiMon(100),
                            InfoBond::AdLacpActive(true),
                            InfoBond::AdLacpRate(nl::BondLacpRate::Fast),
                            InfoBond::AdInfo(vec![
                                BondAdInfo::Aggregator(1),
                                BondAdInfo::NumPorts(2),
                                BondAdInfo::ActorKey(15),
                                BondAdInfo::PartnerKey(15),
                                BondAdInfo::PartnerMac([2, 0, 0, 0, 0xaa, 1]),
                            ]),
                            InfoBond::AdActorSysPrio(65535),
                            InfoBond::AdUserPortKey(0),
                            InfoBond::AdActorSystem([0; 6]),
                        ])),
                    ]),
                ],
            ),
        ]
    }

    #[test]
    fn decodes_bond_members_and_nics() {
        let l = decode(&dump());
        assert_eq!(l.bonds.len(), 1);
        let b = &l.bonds[0];
        assert_eq!(b.mode, BondMode::Lacp);
        assert_eq!(b.mii_status, Some(MiiStatus::Up));
        let lacp = b.lacp.as_ref().unwrap();
        assert_eq!(lacp.rate, Some(LacpRate::Fast));
        assert_eq!(lacp.active, Some(true));
        assert_eq!(lacp.system_priority, Some(65535));
        // ad_actor_system zero: the bond's own MAC.
        assert_eq!(lacp.system_mac, Some("42:7e:8e:45:fc:bb".parse().unwrap()));
        let a = lacp.active_aggregator.as_ref().unwrap();
        assert_eq!((a.id, a.ports, a.actor_key, a.partner_key), (1, 2, 15, 15));
        assert_eq!(a.partner_mac.to_string(), "02:00:00:00:aa:01");
        let names: Vec<&str> = b.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1", "eth2"]);
        let eth2 = b.member("eth2").unwrap();
        assert_eq!(eth2.role, Some(PortRole::Backup));
        assert_eq!(eth2.aggregator_id, Some(3));
        assert_eq!(eth2.actor.as_ref().unwrap().state, Some(LacpState(71)));
        assert_eq!(eth2.partner.as_ref().unwrap().state, Some(LacpState(0)));
        assert_eq!(eth2.partner.as_ref().unwrap().system_mac, None);
        assert_eq!(eth2.permanent_mac.unwrap().to_string(), "da:55:92:29:17:43");
        assert_eq!(l.nics.len(), 3, "lo and the bond are not NICs");
        assert!(b.members.iter().all(|m| m.carrier == Some(true)));
        // Link events: of the bond, its members and NICs; of a new link;
        // not of lo (seen, reported on by nothing) unless renamed to a NIC's
        // name.
        let ix = &l.indexes;
        assert!([2, 3, 4, 5].iter().all(|i| ix.concerns(*i, None)));
        assert!(!ix.concerns(1, Some("lo")));
        assert!(ix.concerns(99, Some("vnet7")), "a link not seen yet");
        assert!(ix.concerns(1, Some("eth0")));
        assert!(l.nics.iter().all(|n| n.bond.as_deref() == Some("bond0")
            && n.carrier == Some(true)
            && n.mtu == Some(1500)));
    }

    #[test]
    fn merged_with_procfs_gives_the_full_picture() {
        let mut l = decode(&dump());
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../core/tests/fixtures-status/proc-8023ad-nonlag-member.txt"
        ))
        .unwrap();
        let p = hostd_core::status::procfs::parse("bond0", &text).unwrap();
        let notes = hostd_core::status::merge::fill_from_procfs(&mut l.bonds[0], &p.bond);
        assert!(notes.is_empty(), "{notes:?}");
        let eth2 = l.bonds[0].member("eth2").unwrap();
        assert_eq!(
            eth2.partner.as_ref().unwrap().system_mac,
            Some(MacAddr([0; 6]))
        );
        assert_eq!(eth2.partner.as_ref().unwrap().key, Some(1));
        let f = hostd_core::status::diagnose(
            &hostd_core::status::HostStatus {
                bonds: l.bonds,
                ..Default::default()
            },
            None,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].object, "bond0/eth2");
    }

    #[test]
    fn active_backup_names_its_active_port() {
        let ab = link(
            7,
            "bond1",
            vec![LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bond),
                LinkInfo::Data(InfoData::Bond(vec![
                    InfoBond::Mode(nl::BondMode::ActiveBackup),
                    InfoBond::ActivePort(2),
                    InfoBond::Primary(2),
                ])),
            ])],
        );
        let mut d = dump();
        d.push(ab);
        let l = decode(&d);
        let b = l.bonds.iter().find(|b| b.name == "bond1").unwrap();
        assert_eq!(b.mode, BondMode::ActiveBackup);
        assert_eq!(b.active_port.as_deref(), Some("eth0"));
        assert_eq!(b.primary.as_deref(), Some("eth0"));
        assert!(b.lacp.is_none());
        assert_eq!(b.mii_status, None);
    }
}
