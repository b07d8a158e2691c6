//! LACP and LLDP status, read-only, and a diagnosis on top of it.
//!
//! The status is what the kernel and lldpd say *now*; it is never planned or
//! applied (spec and status are different types). The side-effecting half
//! (netlink, `/proc/net/bonding`, `lldpcli`) lives in `hostd::status`; this
//! module holds everything that can be tested without root:
//!
//! - the model: [`HostStatus`] with [`BondStatus`] per bond (mode, active
//!   aggregator, MII, members with their actor and partner LACP details) and
//!   [`NicStatus`] per NIC (MTU, carrier, LLDP neighbours);
//! - [`procfs`]: the parser of `/proc/net/bonding/BOND` (6.1 kernel format,
//!   with the per-member `details actor/partner lacp pdu` blocks that only a
//!   reader with CAP_NET_ADMIN sees);
//! - [`lldp`]: the parser of `lldpcli -f json0 show neighbors details`
//!   (lldpd 1.0.16);
//! - [`merge`]: what netlink lacks per member (partner details, churn counts)
//!   taken from the procfs text;
//! - [`diff`]: what changed between two reads (the daemon's signals);
//! - [`diagnose`]: findings (severity, object, sentence) from a status and an
//!   optional intent (NIC -> switch hostname and port);
//! - [`render`]: the text rendering (YAML and JSON are the serde forms).

pub mod diagnose;
pub mod diff;
pub mod lldp;
pub mod merge;
pub mod procfs;
pub mod render;

use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::types::MacAddr;

pub use diagnose::{diagnose, ExpectedPort, Finding, FindingCode, Intent, IntentError, Severity};

/// Everything `hostd status` reports about one host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostStatus {
    /// Bonds, by name.
    #[serde(default)]
    pub bonds: Vec<BondStatus>,
    /// NICs (physical links; veth in the lab), by name.
    #[serde(default)]
    pub nics: Vec<NicStatus>,
    /// Open vSwitch bonds, as ovs-vswitchd reports them (`bond/show`,
    /// `lacp/show`, `lacp/show-stats`), when it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ovs_bonds: Vec<crate::ovs::status::OvsBondStatus>,
    /// Whether LLDP neighbours were read, and why not.
    #[serde(default)]
    pub lldp: LldpSource,
    /// Problems with a source that did not stop the read (a procfs file
    /// that could not be read, a member netlink did not describe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl HostStatus {
    /// The bond named `name`.
    pub fn bond(&self, name: &str) -> Option<&BondStatus> {
        self.bonds.iter().find(|b| b.name == name)
    }

    /// The Open vSwitch bond named `name`.
    pub fn ovs_bond(&self, name: &str) -> Option<&crate::ovs::status::OvsBondStatus> {
        self.ovs_bonds.iter().find(|b| b.name == name)
    }

    /// The NIC named `name`.
    pub fn nic(&self, name: &str) -> Option<&NicStatus> {
        self.nics.iter().find(|n| n.name == name)
    }

    /// Sorts bonds, members and NICs by name (stable output).
    pub fn sort(&mut self) {
        self.bonds.sort_by(|a, b| a.name.cmp(&b.name));
        for b in &mut self.bonds {
            b.members.sort_by(|x, y| x.name.cmp(&y.name));
        }
        self.nics.sort_by(|a, b| a.name.cmp(&b.name));
        self.ovs_bonds.sort_by(|a, b| a.name.cmp(&b.name));
        for b in &mut self.ovs_bonds {
            b.members.sort_by(|x, y| x.name.cmp(&y.name));
        }
    }
}

/// Where LLDP neighbours came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum LldpSource {
    /// Not asked for.
    #[default]
    NotRead,
    /// Read from lldpd.
    Read,
    /// lldpd could not be asked (not running, no permission, bad output).
    Unavailable {
        /// Why, in one line.
        reason: String,
    },
}

/// The bonding mode, with the kernel's names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BondMode {
    /// balance-rr (0).
    BalanceRr,
    /// active-backup (1).
    ActiveBackup,
    /// balance-xor (2).
    BalanceXor,
    /// broadcast (3).
    Broadcast,
    /// 802.3ad (4), LACP.
    #[serde(rename = "802.3ad")]
    Lacp,
    /// balance-tlb (5).
    BalanceTlb,
    /// balance-alb (6).
    BalanceAlb,
    /// Anything else, as reported.
    Other(String),
}

impl BondMode {
    /// The kernel's numeric mode.
    pub fn from_number(n: u8) -> Self {
        match n {
            0 => Self::BalanceRr,
            1 => Self::ActiveBackup,
            2 => Self::BalanceXor,
            3 => Self::Broadcast,
            4 => Self::Lacp,
            5 => Self::BalanceTlb,
            6 => Self::BalanceAlb,
            n => Self::Other(n.to_string()),
        }
    }

    /// The name `ip link` uses.
    pub fn as_str(&self) -> &str {
        match self {
            Self::BalanceRr => "balance-rr",
            Self::ActiveBackup => "active-backup",
            Self::BalanceXor => "balance-xor",
            Self::Broadcast => "broadcast",
            Self::Lacp => "802.3ad",
            Self::BalanceTlb => "balance-tlb",
            Self::BalanceAlb => "balance-alb",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for BondMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A link's MII status as the bonding driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MiiStatus {
    /// Link up.
    Up,
    /// Link lost, within downdelay.
    GoingDown,
    /// Link down.
    Down,
    /// Link back, within updelay.
    GoingBack,
}

impl MiiStatus {
    /// As `/proc/net/bonding` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::GoingDown => "going down",
            Self::Down => "down",
            Self::GoingBack => "going back",
        }
    }
}

impl fmt::Display for MiiStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bond member's role outside 802.3ad (`IFLA_BOND_SLAVE_STATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortRole {
    /// Carries traffic.
    Active,
    /// Standing by (active-backup), or outside the active aggregator.
    Backup,
}

/// LACP rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LacpRate {
    /// LACPDUs every 30 s.
    Slow,
    /// LACPDUs every second.
    Fast,
}

/// Churn detection state of one side of a member (802.3ad).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChurnState {
    /// In sync: no churn.
    None,
    /// Not yet in sync; the churn timer runs.
    Monitoring,
    /// Not in sync for longer than the churn timer (60 s).
    Churned,
}

impl ChurnState {
    /// As `/proc/net/bonding` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Monitoring => "monitoring",
            Self::Churned => "churned",
        }
    }
}

/// The eight LACP port state bits (IEEE 802.1AX), kept as the raw byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LacpState(pub u8);

impl LacpState {
    /// LACP_Activity: active (1) or passive (0).
    pub const ACTIVITY: u8 = 0x01;
    /// LACP_Timeout: short (1, fast) or long (0).
    pub const TIMEOUT: u8 = 0x02;
    /// Aggregation: aggregatable (1) or individual (0).
    pub const AGGREGATION: u8 = 0x04;
    /// Synchronization: in the right aggregator.
    pub const SYNCHRONIZATION: u8 = 0x08;
    /// Collecting enabled.
    pub const COLLECTING: u8 = 0x10;
    /// Distributing enabled.
    pub const DISTRIBUTING: u8 = 0x20;
    /// Defaulted: using the administrative defaults for the partner (no
    /// LACPDU received).
    pub const DEFAULTED: u8 = 0x40;
    /// Expired: the receive machine timed out.
    pub const EXPIRED: u8 = 0x80;

    /// Sync, collecting and distributing: a member that carries traffic.
    pub const NEGOTIATED: u8 = Self::SYNCHRONIZATION | Self::COLLECTING | Self::DISTRIBUTING;

    /// True when every bit of `mask` is set.
    pub fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }

    /// In sync, collecting and distributing, neither defaulted nor expired.
    pub fn negotiated(self) -> bool {
        self.has(Self::NEGOTIATED) && self.0 & (Self::DEFAULTED | Self::EXPIRED) == 0
    }

    /// The names of the set bits.
    pub fn names(self) -> Vec<&'static str> {
        const NAMES: [(u8, &str); 8] = [
            (LacpState::ACTIVITY, "activity"),
            (LacpState::TIMEOUT, "timeout"),
            (LacpState::AGGREGATION, "aggregation"),
            (LacpState::SYNCHRONIZATION, "synchronization"),
            (LacpState::COLLECTING, "collecting"),
            (LacpState::DISTRIBUTING, "distributing"),
            (LacpState::DEFAULTED, "defaulted"),
            (LacpState::EXPIRED, "expired"),
        ];
        NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

impl fmt::Display for LacpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02x}", self.0)?;
        let names = self.names();
        if !names.is_empty() {
            write!(f, " ({})", names.join(","))?;
        }
        Ok(())
    }
}

/// The serde form of [`LacpState`]: the byte and each bit by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LacpStateBits {
    raw: u8,
    activity: bool,
    timeout: bool,
    aggregation: bool,
    synchronization: bool,
    collecting: bool,
    distributing: bool,
    defaulted: bool,
    expired: bool,
}

impl Serialize for LacpState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = |m| self.0 & m != 0;
        LacpStateBits {
            raw: self.0,
            activity: b(Self::ACTIVITY),
            timeout: b(Self::TIMEOUT),
            aggregation: b(Self::AGGREGATION),
            synchronization: b(Self::SYNCHRONIZATION),
            collecting: b(Self::COLLECTING),
            distributing: b(Self::DISTRIBUTING),
            defaulted: b(Self::DEFAULTED),
            expired: b(Self::EXPIRED),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for LacpState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bits = LacpStateBits::deserialize(d)?;
        let state = LacpState(bits.raw);
        let named = [
            (Self::ACTIVITY, bits.activity),
            (Self::TIMEOUT, bits.timeout),
            (Self::AGGREGATION, bits.aggregation),
            (Self::SYNCHRONIZATION, bits.synchronization),
            (Self::COLLECTING, bits.collecting),
            (Self::DISTRIBUTING, bits.distributing),
            (Self::DEFAULTED, bits.defaulted),
            (Self::EXPIRED, bits.expired),
        ];
        for (bit, set) in named {
            if state.has(bit) != set {
                return Err(serde::de::Error::custom(format!(
                    "LACP state raw 0x{:02x} disagrees with its named bits",
                    bits.raw
                )));
            }
        }
        Ok(state)
    }
}

/// One bond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BondStatus {
    /// Kernel name.
    pub name: String,
    /// Bonding mode.
    pub mode: BondMode,
    /// The bond's own MII status (up when enough members are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mii_status: Option<MiiStatus>,
    /// active-backup (and tlb/alb): the member carrying traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_port: Option<String>,
    /// active-backup: the configured primary member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// 802.3ad only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacp: Option<BondLacp>,
    /// Members, by name.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
}

impl BondStatus {
    /// A bond with no details yet.
    pub fn new(name: &str, mode: BondMode) -> Self {
        Self {
            name: name.to_owned(),
            mode,
            mii_status: None,
            active_port: None,
            primary: None,
            lacp: None,
            members: Vec::new(),
        }
    }

    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&MemberStatus> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The active aggregator's id (802.3ad).
    pub fn active_aggregator_id(&self) -> Option<u16> {
        self.lacp
            .as_ref()
            .and_then(|l| l.active_aggregator.as_ref())
            .map(|a| a.id)
    }
}

/// A bond's 802.3ad details.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BondLacp {
    /// LACP rate this bond asks its partner for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<LacpRate>,
    /// LACP active (sends LACPDUs periodically) or passive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// This bond's (the actor's) system priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_priority: Option<u16>,
    /// This bond's (the actor's) system MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_mac: Option<MacAddr>,
    /// The aggregator carrying traffic; none before any negotiation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_aggregator: Option<Aggregator>,
}

/// The active aggregator of an 802.3ad bond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Aggregator {
    /// Aggregator id.
    pub id: u16,
    /// Members in it.
    pub ports: u16,
    /// Our operational key.
    pub actor_key: u16,
    /// The partner's operational key.
    pub partner_key: u16,
    /// The partner's system MAC (all zeros: no partner).
    pub partner_mac: MacAddr,
    /// The partner's system priority (from a member of this aggregator,
    /// when the per-member details are readable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_priority: Option<u16>,
}

/// One bond member.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MemberStatus {
    /// Kernel name.
    pub name: String,
    /// MII status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mii_status: Option<MiiStatus>,
    /// The member NIC's carrier (netlink): lost at once when the cable is
    /// pulled, before the bond's MII check (`miimon`) notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<bool>,
    /// Active or backup (netlink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<PortRole>,
    /// Times the link went down since it joined the bond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_failure_count: Option<u32>,
    /// The NIC's own (permanent) MAC, as the bonding driver recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permanent_mac: Option<MacAddr>,
    /// Link speed, Mb/s (procfs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<u32>,
    /// Duplex (procfs): "full", "half".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplex: Option<String>,
    /// 802.3ad: the aggregator this member is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregator_id: Option<u16>,
    /// 802.3ad: our side of the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<LacpPort>,
    /// 802.3ad: what the partner said in its last LACPDU (or the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<LacpPort>,
    /// 802.3ad: churn detection, our side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_churn: Option<ChurnState>,
    /// 802.3ad: churn detection, the partner's side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_churn: Option<ChurnState>,
    /// 802.3ad: times our side churned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_churned_count: Option<u32>,
    /// 802.3ad: times the partner's side churned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_churned_count: Option<u32>,
}

impl MemberStatus {
    /// A member with only its name.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    /// MII up and carrier not lost (unknown counts as up: nothing says
    /// otherwise). A member without carrier is down even while its MII
    /// status still says up (the bond's `miimon` has not polled yet).
    pub fn is_up(&self) -> bool {
        !matches!(
            self.mii_status,
            Some(MiiStatus::Down | MiiStatus::GoingDown)
        ) && self.carrier != Some(false)
    }

    /// The partner's system MAC when one was heard (non-zero).
    pub fn partner_system(&self) -> Option<MacAddr> {
        self.partner
            .as_ref()
            .and_then(|p| p.system_mac)
            .filter(|m| !m.is_zero())
    }
}

/// One side of an LACP member: the system, the key and the port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LacpPort {
    /// System priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_priority: Option<u16>,
    /// System MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_mac: Option<MacAddr>,
    /// Operational key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u16>,
    /// Port priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_priority: Option<u16>,
    /// Port number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u16>,
    /// Port state bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<LacpState>,
}

/// One NIC.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NicStatus {
    /// Kernel name.
    pub name: String,
    /// MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Carrier (lower layer up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<bool>,
    /// The bond it is a member of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond: Option<String>,
    /// LLDP neighbours heard on it (usually one).
    #[serde(default)]
    pub lldp: Vec<LldpNeighbor>,
}

impl NicStatus {
    /// A NIC with only its name.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }
}

/// An identifier with its LLDP subtype (chassis id, port id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LldpId {
    /// Subtype as lldpd names it.
    pub subtype: IdSubtype,
    /// The value, as lldpd prints it.
    pub value: String,
}

/// Chassis and port id subtypes (IEEE 802.1AB), with lldpd's names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum IdSubtype {
    /// A MAC address.
    Mac,
    /// A network address.
    Ip,
    /// An interface name (ifName).
    Ifname,
    /// An interface alias (ifAlias).
    Ifalias,
    /// Locally assigned.
    Local,
    /// Chassis component (chassis id).
    Chassis,
    /// Port component.
    Port,
    /// Agent circuit id (port id).
    Agentcid,
    /// Anything else, as lldpd printed it.
    Other(String),
}

impl IdSubtype {
    /// From lldpd's name.
    pub fn from_lldpd(s: &str) -> Self {
        match s {
            "mac" => Self::Mac,
            "ip" => Self::Ip,
            "ifname" => Self::Ifname,
            "ifalias" => Self::Ifalias,
            "local" => Self::Local,
            "chassis" => Self::Chassis,
            "port" => Self::Port,
            "agentcid" => Self::Agentcid,
            other => Self::Other(other.to_owned()),
        }
    }

    /// lldpd's name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Mac => "mac",
            Self::Ip => "ip",
            Self::Ifname => "ifname",
            Self::Ifalias => "ifalias",
            Self::Local => "local",
            Self::Chassis => "chassis",
            Self::Port => "port",
            Self::Agentcid => "agentcid",
            Self::Other(s) => s,
        }
    }
}

/// One VLAN a neighbour announces on its port (802.1 TLVs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LldpVlan {
    /// VLAN id.
    pub id: u16,
    /// The port's PVID (untagged VLAN).
    pub pvid: bool,
    /// VLAN name, when announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One LLDP neighbour heard on a NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LldpNeighbor {
    /// The protocol lldpd heard it by ("LLDP"; CDP and others when enabled).
    pub via: String,
    /// Chassis id.
    pub chassis_id: LldpId,
    /// System name (the switch's hostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_name: Option<String>,
    /// System description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_description: Option<String>,
    /// Port id.
    pub port_id: LldpId,
    /// Port description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_description: Option<String>,
    /// VLANs announced for the port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<LldpVlan>,
    /// Management addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub management_addresses: Vec<IpAddr>,
    /// Time to live of the information, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Maximum frame size the neighbour's port accepts (802.3 TLV), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_size: Option<u32>,
    /// The neighbour's port is in a link aggregation (802.3 TLV): its
    /// aggregated port id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_port_id: Option<u32>,
}

impl LldpNeighbor {
    /// The PVID announced, if any.
    pub fn pvid(&self) -> Option<u16> {
        self.vlans.iter().find(|v| v.pvid).map(|v| v.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lacp_state_names_and_predicates() {
        let s = LacpState(0x3f);
        assert!(s.negotiated());
        assert_eq!(
            s.names(),
            [
                "activity",
                "timeout",
                "aggregation",
                "synchronization",
                "collecting",
                "distributing"
            ]
        );
        assert_eq!(
            s.to_string(),
            "0x3f (activity,timeout,aggregation,synchronization,collecting,distributing)"
        );
        // 71 = 0x47: defaulted, not in sync (a member cabled to a non-LACP port).
        let d = LacpState(71);
        assert!(!d.negotiated());
        assert!(d.has(LacpState::DEFAULTED));
        assert_eq!(LacpState(0).to_string(), "0x00");
        // Sync+collecting+distributing but defaulted is not negotiated.
        assert!(!LacpState(0x7f).negotiated());
    }

    #[test]
    fn lacp_state_serde_round_trip_and_consistency() {
        let s = LacpState(0x4f);
        let v = serde_json::to_value(s).unwrap();
        assert_eq!(v["raw"], 79);
        assert_eq!(v["defaulted"], true);
        assert_eq!(v["collecting"], false);
        let back: LacpState = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, s);
        let mut bad = v;
        bad["expired"] = serde_json::Value::Bool(true);
        let e = serde_json::from_value::<LacpState>(bad).unwrap_err();
        assert!(e.to_string().contains("0x4f"), "{e}");
    }

    #[test]
    fn bond_mode_names() {
        assert_eq!(BondMode::from_number(4).as_str(), "802.3ad");
        assert_eq!(
            serde_json::to_value(BondMode::Lacp).unwrap(),
            serde_json::json!("802.3ad")
        );
        assert_eq!(
            serde_json::to_value(BondMode::ActiveBackup).unwrap(),
            serde_json::json!("active-backup")
        );
        assert_eq!(BondMode::from_number(9), BondMode::Other("9".into()));
    }
}
