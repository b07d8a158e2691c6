//! The desired-state schema: what a server's network should be, as data.
//!
//! Its shape follows nmstate (a list of `interfaces` with `name`, `type` and
//! `state`; `routes.config`; `dns-resolver.config`) so that people who know
//! nmstate can read it. Every struct refuses unknown fields, and every value
//! with a range is a validated newtype ([`IfName`], [`VlanId`], [`Mtu`]).
//! Cross-field rules (references, duplicates, cycles, MTU ordering, overlaps)
//! are checked by [`crate::validate`].

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::bond::{
    AdSelect, ArpAllTargets, ArpValidate, BondConfig, BondMode, BondOptions, FailOverMac, LacpRate,
    PrimaryReselect, XmitHashPolicy,
};
pub use crate::ovs::schema::{OvsBridgeConfig, OvsPatchConfig};
pub use crate::route::RouteProtocol;
use crate::types::{IfName, MacAddr, Mtu, VlanId};

/// The whole desired state of one server's network.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkState {
    /// Interfaces hostd manages.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Static routes.
    #[serde(default, skip_serializing_if = "Routes::is_empty")]
    pub routes: Routes,
    /// DNS servers and search domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_resolver: Option<DnsResolver>,
    /// The InstanceArray firewall (see `crate::firewall`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<crate::firewall::FirewallSpec>,
    /// eBPF counters and sFlow export (see `crate::telemetry`); run by
    /// `hostd telemetry run`, not by `apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<crate::telemetry::TelemetrySpec>,
}

/// Interface types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InterfaceType {
    /// A NIC (physical, or a veth in the lab). Never created or deleted.
    Ethernet,
    /// A Linux bond.
    Bond,
    /// An 802.1Q / 802.1ad VLAN device.
    Vlan,
    /// A Linux bridge.
    LinuxBridge,
    /// Loopback: shown, never managed.
    Loopback,
    /// Any other kind of link: shown, never managed.
    Unknown,
    /// An Open vSwitch bridge (or fake bridge): rows in OVSDB, planned by
    /// `crate::ovs`; its local internal port is a netdev of the same name.
    OvsBridge,
    /// An Open vSwitch internal port (a netdev), or a patch port (`patch`).
    OvsInterface,
}

impl InterfaceType {
    /// The name used in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ethernet => "ethernet",
            Self::Bond => "bond",
            Self::Vlan => "vlan",
            Self::LinuxBridge => "linux-bridge",
            Self::Loopback => "loopback",
            Self::Unknown => "unknown",
            Self::OvsBridge => "ovs-bridge",
            Self::OvsInterface => "ovs-interface",
        }
    }

    /// True for the link types hostd creates and deletes over netlink.
    pub fn is_virtual(self) -> bool {
        matches!(self, Self::Bond | Self::Vlan | Self::LinuxBridge)
    }

    /// True for the Open vSwitch entry types (OVSDB rows; their netdevs
    /// are ovs-vswitchd's).
    pub fn is_ovs(self) -> bool {
        matches!(self, Self::OvsBridge | Self::OvsInterface)
    }
}

/// Administrative state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IfState {
    /// Exists and is up.
    #[default]
    Up,
    /// Exists and is down.
    Down,
    /// Does not exist (virtual links), or down and unconfigured (NICs).
    Absent,
}

/// One interface.
///
/// `bridge:` means [`BridgeConfig`] for a `linux-bridge` and
/// [`OvsBridgeConfig`] for an `ovs-bridge` (nmstate's shape for both), so
/// this type's `Deserialize` is written by hand (see [`de_interface`]): it
/// reads `bridge` as the type already read asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// Kernel name.
    pub name: IfName,
    /// Type.
    pub kind: InterfaceType,
    /// up (default), down or absent.
    pub state: IfState,
    /// MTU; unset keeps the current one (a VLAN follows its base's). For
    /// an OVS entry: its internal port's `mtu_request`.
    pub mtu: Option<Mtu>,
    /// Ethernet: identify the NIC by MAC; it is renamed to `name` if needed.
    pub mac_address: Option<MacAddr>,
    /// IPv4 addresses; when present, the exact set on this interface.
    pub ipv4: Option<IpConfig>,
    /// IPv6 addresses (link-local ones are the kernel's and ignored).
    pub ipv6: Option<IpConfig>,
    /// Bond settings (type bond).
    pub link_aggregation: Option<BondConfig>,
    /// VLAN settings (type vlan).
    pub vlan: Option<VlanConfig>,
    /// Bridge settings (type linux-bridge).
    pub bridge: Option<BridgeConfig>,
    /// OVS bridge settings (type ovs-bridge), written `bridge:`.
    pub ovs_bridge: Option<OvsBridgeConfig>,
    /// A patch port's peer (type ovs-interface).
    pub patch: Option<OvsPatchConfig>,
}

impl Interface {
    /// A bare interface of `kind`, state up.
    pub fn new(name: IfName, kind: InterfaceType) -> Self {
        Self {
            name,
            kind,
            state: IfState::Up,
            mtu: None,
            mac_address: None,
            ipv4: None,
            ipv6: None,
            link_aggregation: None,
            vlan: None,
            bridge: None,
            ovs_bridge: None,
            patch: None,
        }
    }
}

mod de_interface {
    //! `Interface`'s serde. Written by hand because `bridge:` has two shapes
    //! chosen by `type`: the field is read straight into the right type when
    //! `type` came first (the usual order, and error paths stay exact), and
    //! buffered otherwise (then an error inside it names the path in its
    //! message).
    use std::fmt;

    use serde::{
        de::{self, MapAccess, Visitor},
        Deserialize, Deserializer, Serialize, Serializer,
    };

    use super::*;

    const FIELDS: &[&str] = &[
        "name",
        "type",
        "state",
        "mtu",
        "mac-address",
        "ipv4",
        "ipv6",
        "link-aggregation",
        "vlan",
        "bridge",
        "patch",
    ];

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "kebab-case")]
    enum Field {
        Name,
        Type,
        State,
        Mtu,
        MacAddress,
        Ipv4,
        Ipv6,
        LinkAggregation,
        Vlan,
        Bridge,
        Patch,
    }

    enum AnyBridge {
        Linux(BridgeConfig),
        Ovs(OvsBridgeConfig),
    }

    fn bridge_from_value<E: de::Error>(
        kind: InterfaceType,
        v: serde_json::Value,
    ) -> Result<Option<AnyBridge>, E> {
        if v.is_null() {
            return Ok(None);
        }
        let r = if kind == InterfaceType::OvsBridge {
            serde_path_to_error::deserialize(v).map(AnyBridge::Ovs)
        } else {
            serde_path_to_error::deserialize(v).map(AnyBridge::Linux)
        };
        r.map(Some).map_err(|e| {
            let p = e.path().to_string();
            E::custom(format!("bridge.{p}: {}", e.inner()))
        })
    }

    struct V;

    impl<'de> Visitor<'de> for V {
        type Value = Interface;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("struct Interface")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Interface, A::Error> {
            macro_rules! once {
                ($slot:ident, $name:literal) => {{
                    if $slot.is_some() {
                        return Err(de::Error::duplicate_field($name));
                    }
                    $slot = Some(map.next_value()?);
                }};
            }
            let mut name: Option<IfName> = None;
            let mut kind: Option<InterfaceType> = None;
            let mut state: Option<IfState> = None;
            let mut mtu: Option<Option<Mtu>> = None;
            let mut mac: Option<Option<MacAddr>> = None;
            let mut ipv4: Option<Option<IpConfig>> = None;
            let mut ipv6: Option<Option<IpConfig>> = None;
            let mut la: Option<Option<BondConfig>> = None;
            let mut vlan: Option<Option<VlanConfig>> = None;
            let mut patch: Option<Option<OvsPatchConfig>> = None;
            let mut bridge: Option<Option<AnyBridge>> = None;
            let mut pending: Option<serde_json::Value> = None;
            while let Some(key) = map.next_key::<Field>()? {
                match key {
                    Field::Name => once!(name, "name"),
                    Field::Type => once!(kind, "type"),
                    Field::State => once!(state, "state"),
                    Field::Mtu => once!(mtu, "mtu"),
                    Field::MacAddress => once!(mac, "mac-address"),
                    Field::Ipv4 => once!(ipv4, "ipv4"),
                    Field::Ipv6 => once!(ipv6, "ipv6"),
                    Field::LinkAggregation => once!(la, "link-aggregation"),
                    Field::Vlan => once!(vlan, "vlan"),
                    Field::Patch => once!(patch, "patch"),
                    Field::Bridge => {
                        if bridge.is_some() || pending.is_some() {
                            return Err(de::Error::duplicate_field("bridge"));
                        }
                        match kind {
                            Some(InterfaceType::OvsBridge) => {
                                bridge = Some(
                                    map.next_value::<Option<OvsBridgeConfig>>()?
                                        .map(AnyBridge::Ovs),
                                )
                            }
                            Some(_) => {
                                bridge = Some(
                                    map.next_value::<Option<BridgeConfig>>()?
                                        .map(AnyBridge::Linux),
                                )
                            }
                            None => pending = Some(map.next_value()?),
                        }
                    }
                }
            }
            let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
            let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
            if let Some(v) = pending {
                bridge = Some(bridge_from_value(kind, v)?);
            }
            let (bridge, ovs_bridge) = match bridge.flatten() {
                Some(AnyBridge::Linux(b)) => (Some(b), None),
                Some(AnyBridge::Ovs(b)) => (None, Some(b)),
                None => (None, None),
            };
            Ok(Interface {
                name,
                kind,
                state: state.unwrap_or_default(),
                mtu: mtu.flatten(),
                mac_address: mac.flatten(),
                ipv4: ipv4.flatten(),
                ipv6: ipv6.flatten(),
                link_aggregation: la.flatten(),
                vlan: vlan.flatten(),
                bridge,
                ovs_bridge,
                patch: patch.flatten(),
            })
        }
    }

    impl<'de> Deserialize<'de> for Interface {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_struct("Interface", FIELDS, V)
        }
    }

    #[derive(Serialize)]
    #[serde(untagged)]
    enum BridgeOut<'a> {
        Linux(&'a BridgeConfig),
        Ovs(&'a OvsBridgeConfig),
    }

    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Out<'a> {
        name: &'a IfName,
        #[serde(rename = "type")]
        kind: InterfaceType,
        state: IfState,
        #[serde(skip_serializing_if = "Option::is_none")]
        mtu: Option<Mtu>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mac_address: Option<MacAddr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ipv4: Option<&'a IpConfig>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ipv6: Option<&'a IpConfig>,
        #[serde(skip_serializing_if = "Option::is_none")]
        link_aggregation: Option<&'a BondConfig>,
        #[serde(skip_serializing_if = "Option::is_none")]
        vlan: Option<&'a VlanConfig>,
        #[serde(skip_serializing_if = "Option::is_none")]
        bridge: Option<BridgeOut<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<&'a OvsPatchConfig>,
    }

    impl Serialize for Interface {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Out {
                name: &self.name,
                kind: self.kind,
                state: self.state,
                mtu: self.mtu,
                mac_address: self.mac_address,
                ipv4: self.ipv4.as_ref(),
                ipv6: self.ipv6.as_ref(),
                link_aggregation: self.link_aggregation.as_ref(),
                vlan: self.vlan.as_ref(),
                bridge: match (&self.bridge, &self.ovs_bridge) {
                    (Some(b), _) => Some(BridgeOut::Linux(b)),
                    (None, Some(b)) => Some(BridgeOut::Ovs(b)),
                    (None, None) => None,
                },
                patch: self.patch.as_ref(),
            }
            .serialize(s)
        }
    }
}

/// Static addresses of one family.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IpConfig {
    /// The addresses.
    #[serde(default)]
    pub address: Vec<IpAddress>,
}

/// One address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IpAddress {
    /// The address.
    pub ip: IpAddr,
    /// Prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix_length: u8,
}

/// VLAN protocol.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum VlanProtocol {
    /// 802.1Q (C-tag, 0x8100).
    #[default]
    #[serde(rename = "802.1q")]
    Dot1Q,
    /// 802.1ad (S-tag, 0x88a8).
    #[serde(rename = "802.1ad")]
    Dot1Ad,
}

impl VlanProtocol {
    /// Name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dot1Q => "802.1q",
            Self::Dot1Ad => "802.1ad",
        }
    }
}

/// VLAN device settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VlanConfig {
    /// Lower device.
    pub base_iface: IfName,
    /// VLAN id.
    pub id: VlanId,
    /// 802.1q (default) or 802.1ad.
    #[serde(default)]
    pub protocol: VlanProtocol,
}

/// Linux bridge settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BridgeConfig {
    /// Bridge options.
    #[serde(default, skip_serializing_if = "BridgeOptions::is_empty")]
    pub options: BridgeOptions,
    /// Ports.
    #[serde(default)]
    pub port: Vec<BridgePort>,
    /// The bridge's own VLAN membership (`bridge vlan ... self`), on a
    /// VLAN-filtering bridge: the VLANs the host itself takes part in (an
    /// address on the bridge is in its PVID, untagged; a VLAN interface over
    /// the bridge needs its VLAN here, tagged). When present, exact; when
    /// absent, the kernel's default (VLAN 1, PVID, untagged) is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<PortVlan>,
}

/// Bridge options; unset ones keep the kernel's value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BridgeOptions {
    /// Spanning tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stp: Option<StpOptions>,
    /// VLAN filtering; defaults to on when any port has `vlan` settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_filtering: Option<bool>,
    /// VLAN protocol of a VLAN-filtering bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_protocol: Option<VlanProtocol>,
    /// FDB ageing time in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_ageing_time: Option<u32>,
    /// IGMP/MLD snooping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multicast_snooping: Option<bool>,
}

impl BridgeOptions {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Spanning tree settings (timers in seconds, as `ip link` takes them /100).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StpOptions {
    /// STP on or off.
    #[serde(default)]
    pub enabled: bool,
    /// Forward delay, 2..=30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_delay: Option<u32>,
    /// Hello time, 1..=10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello_time: Option<u32>,
    /// Max age, 6..=40 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
    /// Bridge priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
}

/// A bridge port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BridgePort {
    /// Port interface (declared in the same state).
    pub name: IfName,
    /// VLAN membership on a VLAN-filtering bridge; when present, exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<PortVlan>,
}

/// Port VLAN mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortVlanMode {
    /// Carries the trunk tags tagged (and `tag` untagged if `enable-native`).
    Trunk,
    /// Carries `tag` untagged only (PVID).
    Access,
}

/// VLAN membership of a bridge port (nmstate's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PortVlan {
    /// trunk or access.
    pub mode: PortVlanMode,
    /// Access VLAN, or the native VLAN of a trunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<VlanId>,
    /// Trunk: carry `tag` untagged as PVID.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_native: bool,
    /// Trunk: tagged VLANs, single ids or ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunk_tags: Vec<TrunkTag>,
}

/// One trunk entry: `id: N` or `id-range: {min, max}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrunkTag {
    /// A single VLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<VlanId>,
    /// A range of VLANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_range: Option<VlanRange>,
}

/// Inclusive VLAN range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanRange {
    /// First id.
    pub min: VlanId,
    /// Last id.
    pub max: VlanId,
}

/// Routes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routes {
    /// Route entries.
    #[serde(default)]
    pub config: Vec<Route>,
}

impl Routes {
    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.config.is_empty()
    }
}

/// Route state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteState {
    /// The route exists.
    #[default]
    Present,
    /// The route with this key is removed.
    Absent,
}

/// A static route. Identified by [`crate::route::RouteKey`]
/// `{table, destination, metric}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Route {
    /// Destination prefix (`0.0.0.0/0` / `::/0` for the default route).
    pub destination: IpNet,
    /// Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_address: Option<IpAddr>,
    /// Output interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_interface: Option<IfName>,
    /// ECMP next hops with weights (instead of `next-hop-*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multipath: Vec<NextHop>,
    /// Metric (default 0 for IPv4, 1024 for IPv6, as the kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// Routing table (default 254, main).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_id: Option<u32>,
    /// present (default) or absent.
    #[serde(default, skip_serializing_if = "is_present")]
    pub state: RouteState,
    /// Who installed the route, as the kernel reports it (`hostd show`).
    /// Observed only: a desired state may not set it (hostd's routes are
    /// `static`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<RouteProtocol>,
}

fn is_present(s: &RouteState) -> bool {
    *s == RouteState::Present
}

/// One ECMP next hop.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NextHop {
    /// Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_address: Option<IpAddr>,
    /// Output interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_interface: Option<IfName>,
    /// Weight 1..=256 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
}

/// DNS resolver section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    /// The configuration to write.
    pub config: DnsConfig,
}

/// Name servers and search domains.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers (at most 3: the resolver ignores more).
    #[serde(default)]
    pub server: Vec<IpAddr>,
    /// Search domains.
    #[serde(default)]
    pub search: Vec<String>,
}

/// A parse failure, with the field path and the parser's message.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ParseError {
    /// Field path, e.g. `interfaces[3].vlan.id`, or `.` for the document.
    pub path: String,
    /// What was wrong (includes the offending value).
    pub message: String,
}

fn path_string(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut s = String::new();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => s.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(key);
            }
            Segment::Enum { variant } => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(variant);
            }
            Segment::Unknown => s.push_str(".?"),
        }
    }
    if s.is_empty() {
        ".".into()
    } else {
        s
    }
}

/// Parses YAML, reporting the field path of the first error.
pub fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = path_string(e.path());
        let mut message = e.inner().to_string();
        // The YAML error repeats the enclosing path ("interfaces[1]: ...").
        if let Some((prefix, rest)) = message.split_once(": ") {
            if !prefix.contains(' ') && path.starts_with(prefix) {
                message = rest.to_owned();
            }
        }
        ParseError { path, message }
    })
}

/// Parses JSON, reporting the field path of the first error.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| ParseError {
        path: path_string(e.path()),
        message: e.inner().to_string(),
    })
}

impl NetworkState {
    /// Parses YAML or JSON (JSON when the first non-blank character is `{`).
    /// An empty document (nothing but blanks and comments, or `null`) is
    /// refused: it is far more likely a truncated or unwritten file than a
    /// wish to manage nothing.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let content = text
            .lines()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#') && *l != "---" && *l != "...")
            .collect::<Vec<_>>();
        if content.is_empty() || content == ["null"] || content == ["~"] {
            return Err(ParseError {
                path: ".".into(),
                message: "the document is empty (an unwritten or truncated file?); nothing was applied; `hostd teardown` removes everything hostd manages".into(),
            });
        }
        if text.trim_start().starts_with('{') {
            from_json(text)
        } else {
            from_yaml(text)
        }
    }

    /// The interface named `name`.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name.as_str() == name)
    }
}
