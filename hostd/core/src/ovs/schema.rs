//! The desired OVS state, nmstate-familiar.
//!
//! [`OvsState`] is a self-contained document: an `interfaces:` list holding
//! only the OVS entry types, `ovs-bridge` ([`OvsBridgeConfig`] under
//! `bridge:`) and `ovs-interface` (an internal port, or a patch port with
//! `patch: {peer}`). The main `NetworkState` document is meant to carry the
//! same entries beside kernel ones (see docs/ovs.md); [`OvsEntry`] is what
//! one such entry holds.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use crate::types::{IfName, Mtu, VlanId};

/// The OVS part of a desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvsState {
    /// OVS bridges (real and fake) and OVS interfaces.
    #[serde(default)]
    pub interfaces: Vec<OvsEntry>,
}

/// The entry types of this document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OvsEntryType {
    /// An OVS bridge (or a fake bridge, with `bridge.parent`).
    OvsBridge,
    /// An OVS internal port (or a patch port with `patch`).
    OvsInterface,
}

/// One `interfaces:` entry of an OVS type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OvsEntry {
    /// The name: the bridge (and its local internal port's netdev), or the
    /// internal/patch interface.
    pub name: IfName,
    /// `ovs-bridge` or `ovs-interface`.
    #[serde(rename = "type")]
    pub kind: OvsEntryType,
    /// MTU requested for the internal netdev (`Interface.mtu_request`); for a
    /// bridge, its local port's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<Mtu>,
    /// Bridge settings (type ovs-bridge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<OvsBridgeConfig>,
    /// A patch port's peer (type ovs-interface): not an internal port then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<OvsPatchConfig>,
}

/// `bridge:` of an `ovs-bridge` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OvsBridgeConfig {
    /// Bridge options (not for a fake bridge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<OvsBridgeOptions>,
    /// Ports. The bridge's own internal port (named as the bridge) is
    /// implicit, as with `ovs-vsctl add-br`.
    #[serde(default)]
    pub port: Vec<OvsPortConfig>,
    /// A fake bridge (`ovs-vsctl add-br NAME PARENT TAG`): a VLAN of `parent`
    /// seen as its own bridge. Not a Bridge row: a Port with
    /// `fake_bridge=true` and `tag` on the parent. Its ports become ports of
    /// the parent with that tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<IfName>,
    /// The fake bridge's VLAN (with `parent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<VlanId>,
}

/// `bridge.options`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OvsBridgeOptions {
    /// Spanning tree (`stp_enable`), default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stp: Option<bool>,
    /// Rapid spanning tree (`rstp_enable`), default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rstp: Option<bool>,
    /// IGMP/MLD snooping (`mcast_snooping_enable`), default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcast_snooping_enable: Option<bool>,
    /// `fail_mode`: what the bridge does without a controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_mode: Option<FailMode>,
    /// `datapath_type`: `system` (kernel, the default), `netdev`
    /// (userspace) or `dummy` (tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath: Option<Datapath>,
}

/// `fail_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailMode {
    Standalone,
    Secure,
}

impl FailMode {
    /// The OVSDB value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Secure => "secure",
        }
    }
}

/// `datapath_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Datapath {
    System,
    Netdev,
    Dummy,
}

impl Datapath {
    /// The OVSDB value ("system" is stored as the empty default).
    pub fn as_db(self) -> &'static str {
        match self {
            Self::System => "",
            Self::Netdev => "netdev",
            Self::Dummy => "dummy",
        }
    }
}

/// One port of a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OvsPortConfig {
    /// The port's name: a NIC (system interface), an `ovs-interface` entry,
    /// or the bond's name.
    pub name: IfName,
    /// VLAN of the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<OvsPortVlan>,
    /// Makes the port an OVS bond over `link-aggregation.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_aggregation: Option<OvsBondConfig>,
}

/// `vlan:` of a port (`tag`, `trunks`, `vlan_mode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OvsPortVlan {
    /// access, trunk, native-tagged, native-untagged.
    pub mode: VlanMode,
    /// The access VLAN (access) or native VLAN (native-*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<VlanId>,
    /// Trunked VLANs (trunk, native-*); empty trunk = all VLANs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunk_tags: Vec<TrunkTag>,
}

/// `vlan.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VlanMode {
    Access,
    Trunk,
    NativeTagged,
    NativeUntagged,
}

impl VlanMode {
    /// The OVSDB value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Trunk => "trunk",
            Self::NativeTagged => "native-tagged",
            Self::NativeUntagged => "native-untagged",
        }
    }
}

/// One element of `trunk-tags`: `{id: N}` or `{id-range: {min, max}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrunkTag {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<VlanId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_range: Option<VlanRange>,
}

/// An inclusive VLAN range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanRange {
    pub min: VlanId,
    pub max: VlanId,
}

/// `link-aggregation:` of a port: an OVS bond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OvsBondConfig {
    /// `bond_mode`.
    pub mode: OvsBondMode,
    /// LACP (`lacp`); default off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacp: Option<Lacp>,
    /// LACPDU rate (`other_config:lacp-time`); only with LACP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacp_time: Option<LacpTime>,
    /// `bond_updelay` in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_updelay: Option<u32>,
    /// `bond_downdelay` in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_downdelay: Option<u32>,
    /// The member interfaces (at least two).
    pub port: Vec<OvsBondMember>,
}

/// A bond member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvsBondMember {
    pub name: IfName,
}

/// `bond_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OvsBondMode {
    ActiveBackup,
    BalanceSlb,
    BalanceTcp,
}

impl OvsBondMode {
    /// The OVSDB value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActiveBackup => "active-backup",
            Self::BalanceSlb => "balance-slb",
            Self::BalanceTcp => "balance-tcp",
        }
    }
}

/// `lacp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lacp {
    Off,
    Active,
    Passive,
}

impl Lacp {
    /// The OVSDB value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Active => "active",
            Self::Passive => "passive",
        }
    }
}

/// `other_config:lacp-time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LacpTime {
    Fast,
    Slow,
}

impl LacpTime {
    /// The OVSDB value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Slow => "slow",
        }
    }
}

/// `patch:` of an `ovs-interface` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvsPatchConfig {
    /// The other end's interface name (`options:peer`).
    pub peer: IfName,
}

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsInvalid {
    /// Field path, e.g. `interfaces[2].bridge.port[0].vlan.tag`.
    pub path: String,
    /// The offending value, rendered.
    pub value: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for OvsInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (value: {})", self.path, self.reason, self.value)
    }
}

/// All validation failures of an [`OvsState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct OvsValidationErrors(pub Vec<OvsInvalid>);

impl fmt::Display for OvsValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} validation error(s):", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Errs(Vec<OvsInvalid>);

impl Errs {
    fn push(
        &mut self,
        path: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) {
        self.0.push(OvsInvalid {
            path: path.into(),
            value: value.to_string(),
            reason: reason.into(),
        });
    }
}

impl OvsState {
    /// Parses YAML or JSON, reporting the field path of the first error.
    pub fn parse(text: &str) -> Result<Self, crate::schema::ParseError> {
        if text.trim_start().starts_with('{') {
            crate::schema::from_json(text)
        } else {
            crate::schema::from_yaml(text)
        }
    }

    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Option<&OvsEntry> {
        self.interfaces.iter().find(|e| e.name.as_str() == name)
    }

    /// Checks everything that parsing cannot: references between entries,
    /// uniqueness, option combinations. Every failure is reported.
    pub fn validate(&self) -> Result<(), OvsValidationErrors> {
        let mut e = Errs::default();
        let mut first: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, ent) in self.interfaces.iter().enumerate() {
            let p = format!("interfaces[{i}]");
            if let Some(j) = first.get(ent.name.as_str()) {
                e.push(
                    format!("{p}.name"),
                    &ent.name,
                    format!("duplicate interface name (first at interfaces[{j}])"),
                );
            } else {
                first.insert(ent.name.as_str(), i);
            }
            match ent.kind {
                OvsEntryType::OvsBridge => {
                    if ent.patch.is_some() {
                        e.push(format!("{p}.patch"), "{..}", "only for type ovs-interface");
                    }
                }
                OvsEntryType::OvsInterface => {
                    if ent.bridge.is_some() {
                        e.push(format!("{p}.bridge"), "{..}", "only for type ovs-bridge");
                    }
                    if let Some(pc) = &ent.patch {
                        if pc.peer == ent.name {
                            e.push(
                                format!("{p}.patch.peer"),
                                &pc.peer,
                                "a patch port cannot peer with itself",
                            );
                        }
                        if ent.mtu.is_some() {
                            e.push(
                                format!("{p}.mtu"),
                                ent.mtu.map_or(0, Mtu::get),
                                "a patch port has no netdev and no MTU",
                            );
                        }
                    }
                }
            }
        }
        // Where each name is used as a port or bond member: name -> path.
        let mut used: BTreeMap<String, String> = BTreeMap::new();
        let mut use_name = |e: &mut Errs, name: &IfName, path: String, what: &str| {
            if let Some(prev) = used.get(name.as_str()) {
                e.push(&path, name, format!("{what} already used at {prev}"));
            } else {
                used.insert(name.to_string(), path);
            }
        };
        for (i, ent) in self.interfaces.iter().enumerate() {
            let Some(b) = &ent.bridge else { continue };
            let p = format!("interfaces[{i}].bridge");
            match (&b.parent, b.tag) {
                (Some(parent), tag) => {
                    match self.entry(parent.as_str()) {
                        Some(pe) if pe.kind == OvsEntryType::OvsBridge => {
                            if pe
                                .bridge
                                .as_ref()
                                .and_then(|pb| pb.parent.as_ref())
                                .is_some()
                            {
                                e.push(
                                    format!("{p}.parent"),
                                    parent,
                                    "the parent is itself a fake bridge",
                                );
                            }
                        }
                        _ => e.push(
                            format!("{p}.parent"),
                            parent,
                            "fake bridge parent is not an ovs-bridge in interfaces",
                        ),
                    }
                    if tag.is_none() {
                        e.push(
                            format!("{p}.tag"),
                            "none",
                            "a fake bridge needs the VLAN tag",
                        );
                    }
                    if b.options.is_some() {
                        e.push(
                            format!("{p}.options"),
                            "{..}",
                            "a fake bridge has its parent's options",
                        );
                    }
                    if parent == &ent.name {
                        e.push(
                            format!("{p}.parent"),
                            parent,
                            "a bridge cannot be its own parent",
                        );
                    }
                }
                (None, Some(tag)) => {
                    e.push(
                        format!("{p}.tag"),
                        tag,
                        "tag is only for a fake bridge (with parent)",
                    );
                }
                (None, None) => {}
            }
            for (j, port) in b.port.iter().enumerate() {
                let pp = format!("{p}.port[{j}]");
                let fake = b.parent.is_some();
                if port.name == ent.name {
                    e.push(
                        format!("{pp}.name"),
                        &port.name,
                        "the bridge's own internal port is implicit; do not list it",
                    );
                } else {
                    use_name(&mut e, &port.name, format!("{pp}.name"), "port");
                }
                let named = self.entry(port.name.as_str());
                if port.name != ent.name
                    && matches!(named, Some(n) if n.kind == OvsEntryType::OvsBridge)
                {
                    e.push(
                        format!("{pp}.name"),
                        &port.name,
                        "a bridge cannot be a port of another bridge (use a patch port pair)",
                    );
                }
                if let Some(v) = &port.vlan {
                    if fake {
                        e.push(
                            format!("{pp}.vlan"),
                            v.mode.as_str(),
                            "ports of a fake bridge carry its tag; no vlan here",
                        );
                    }
                    check_vlan(&mut e, &format!("{pp}.vlan"), v);
                }
                if let Some(bond) = &port.link_aggregation {
                    let bp = format!("{pp}.link-aggregation");
                    if matches!(named, Some(n) if n.kind == OvsEntryType::OvsInterface) {
                        e.push(
                            format!("{pp}.name"),
                            &port.name,
                            "a bond's name cannot be an ovs-interface entry",
                        );
                    }
                    if bond.port.len() < 2 {
                        e.push(
                            format!("{bp}.port"),
                            bond.port.len(),
                            "an OVS bond needs at least 2 interfaces",
                        );
                    }
                    let lacp = bond.lacp.unwrap_or(Lacp::Off);
                    if lacp == Lacp::Off && bond.lacp_time.is_some() {
                        e.push(
                            format!("{bp}.lacp-time"),
                            bond.lacp_time.map_or("", LacpTime::as_str),
                            "lacp-time needs lacp active or passive",
                        );
                    }
                    if bond.mode == OvsBondMode::BalanceTcp && lacp == Lacp::Off {
                        e.push(
                            format!("{bp}.lacp"),
                            lacp.as_str(),
                            "balance-tcp needs lacp active or passive",
                        );
                    }
                    for (k, m) in bond.port.iter().enumerate() {
                        let mp = format!("{bp}.port[{k}].name");
                        if m.name == port.name {
                            e.push(&mp, &m.name, "a bond member cannot be named as the bond");
                            continue;
                        }
                        use_name(&mut e, &m.name, mp.clone(), "interface");
                        match self.entry(m.name.as_str()) {
                            Some(n) if n.kind == OvsEntryType::OvsBridge => {
                                e.push(&mp, &m.name, "a bridge cannot be a bond member")
                            }
                            Some(n) if n.patch.is_none() => e.push(
                                &mp,
                                &m.name,
                                "an internal interface cannot be a bond member",
                            ),
                            _ => {}
                        }
                    }
                }
            }
        }
        for (i, ent) in self.interfaces.iter().enumerate() {
            if ent.kind == OvsEntryType::OvsInterface && !used.contains_key(ent.name.as_str()) {
                e.push(
                    format!("interfaces[{i}].name"),
                    &ent.name,
                    "an ovs-interface must be a port (or bond member) of an ovs-bridge",
                );
            }
            if ent.kind == OvsEntryType::OvsBridge && used.contains_key(ent.name.as_str()) {
                // Already reported at the port; nothing more.
            }
        }
        if e.0.is_empty() {
            Ok(())
        } else {
            Err(OvsValidationErrors(e.0))
        }
    }
}

fn check_vlan(e: &mut Errs, p: &str, v: &OvsPortVlan) {
    match v.mode {
        VlanMode::Access => {
            if v.tag.is_none() {
                e.push(format!("{p}.tag"), "none", "access mode needs a tag");
            }
            if !v.trunk_tags.is_empty() {
                e.push(
                    format!("{p}.trunk-tags"),
                    v.trunk_tags.len(),
                    "access mode carries no trunk tags",
                );
            }
        }
        VlanMode::Trunk => {
            if let Some(t) = v.tag {
                e.push(
                    format!("{p}.tag"),
                    t,
                    "trunk mode has no tag (use native-tagged or native-untagged)",
                );
            }
        }
        VlanMode::NativeTagged | VlanMode::NativeUntagged => {
            if v.tag.is_none() {
                e.push(
                    format!("{p}.tag"),
                    "none",
                    "native modes need the native VLAN as tag",
                );
            }
        }
    }
    for (i, t) in v.trunk_tags.iter().enumerate() {
        let tp = format!("{p}.trunk-tags[{i}]");
        match (&t.id, &t.id_range) {
            (Some(_), None) => {}
            (None, Some(r)) => {
                if r.min > r.max {
                    e.push(
                        format!("{tp}.id-range"),
                        format!("{}-{}", r.min, r.max),
                        "min is above max",
                    );
                }
            }
            _ => e.push(&tp, "{..}", "give exactly one of id and id-range"),
        }
    }
}

impl OvsPortVlan {
    /// The trunked VLAN ids, expanded and sorted.
    pub fn trunk_ids(&self) -> Vec<u16> {
        let mut out = std::collections::BTreeSet::new();
        for t in &self.trunk_tags {
            if let Some(id) = t.id {
                out.insert(id.get());
            }
            if let Some(r) = &t.id_range {
                out.extend(r.min.get()..=r.max.get());
            }
        }
        out.into_iter().collect()
    }
}
