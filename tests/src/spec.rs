//! A rack described as data: switches, MLAG switch pairs, servers and the
//! cables between them. Deserializable (YAML/JSON) so demos and benchmarks can
//! keep topologies in files; [`RackSpec::validate`] checks references before
//! anything is created.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// The whole rack.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RackSpec {
    #[serde(default)]
    pub switches: Vec<SwitchSpec>,
    /// Switch pairs presented to servers as one LACP system (standing for
    /// MLAG): both members live in one namespace and share one bridge; a LAG
    /// may have members on both switches.
    #[serde(default)]
    pub pairs: Vec<PairSpec>,
    #[serde(default)]
    pub servers: Vec<ServerSpec>,
}

/// One switch: a Linux bridge (VLAN-aware when any port carries VLANs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSpec {
    /// Hostname, e.g. "sw1".
    pub name: String,
    /// VLAN configuration of single ports (by port name, e.g. "Ethernet10").
    /// Cabled ports not listed are untagged members of the default VLAN.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// LACP link aggregation groups (802.3ad bonds on the switch side).
    #[serde(default)]
    pub lags: Vec<LagSpec>,
    /// Run lldpd announcing this switch's hostname and port names.
    #[serde(default)]
    pub lldp: bool,
}

/// VLAN membership of a switch port or LAG.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VlanMembership {
    /// Untagged VLAN (PVID). `None` with `tagged` empty: default VLAN 1.
    #[serde(default)]
    pub access: Option<u16>,
    /// Tagged VLANs (a trunk).
    #[serde(default)]
    pub tagged: Vec<u16>,
}

impl VlanMembership {
    pub fn is_default(&self) -> bool {
        self.access.is_none() && self.tagged.is_empty()
    }
    /// Tagged VLANs only.
    pub fn trunk(vlans: impl IntoIterator<Item = u16>) -> Self {
        Self {
            access: None,
            tagged: vlans.into_iter().collect(),
        }
    }
    /// One untagged VLAN.
    pub fn access(vlan: u16) -> Self {
        Self {
            access: Some(vlan),
            tagged: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub name: String,
    #[serde(default, flatten)]
    pub vlans: VlanMembership,
}

impl PortSpec {
    /// A cabled switch port with its VLAN membership.
    pub fn new(name: &str, vlans: VlanMembership) -> Self {
        Self {
            name: name.to_owned(),
            vlans,
        }
    }
}

/// A switch-side LAG: an 802.3ad bond over ports (of one switch, or of both
/// members of a pair).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LagSpec {
    /// e.g. "Po10".
    pub name: String,
    pub members: Vec<PortRef>,
    #[serde(default, flatten)]
    pub vlans: VlanMembership,
    /// LACP rate "fast" (1 s) or "slow" (30 s). Default fast.
    #[serde(default = "default_lacp_rate")]
    pub lacp_rate: String,
    /// LACP (default) or a static LAG (no LACP; `lacp_rate` unused).
    #[serde(default)]
    pub mode: LagMode,
}

/// How a switch-side LAG aggregates its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LagMode {
    /// 802.3ad with LACP (a Linux `802.3ad` bond).
    #[default]
    Lacp,
    /// A static LAG, as "channel-group mode on": no LACPDU is sent or
    /// answered (a Linux `balance-xor` bond).
    Static,
}

fn default_lacp_rate() -> String {
    "fast".to_owned()
}

/// A port on a named switch: ("sw1", "Ethernet10").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRef {
    pub switch: String,
    pub port: String,
}

impl PortRef {
    pub fn new(switch: &str, port: &str) -> Self {
        Self {
            switch: switch.to_owned(),
            port: port.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSpec {
    /// Name of the pair ("leaf1"); its namespace's role.
    pub name: String,
    /// The two member switches (each also listed in `switches`).
    pub members: [String; 2],
    /// The LACP system MAC both members present. Default derived from name.
    #[serde(default)]
    pub system_mac: Option<String>,
}

/// A server: a namespace whose NICs are cabled to switch ports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub name: String,
    pub nics: Vec<NicSpec>,
    /// IPv6 on (default). Off makes traffic counts exact (no ND/MLD/RS).
    #[serde(default = "yes")]
    pub ipv6: bool,
}

impl ServerSpec {
    /// A server with these NICs and IPv6 off (exact traffic counts).
    pub fn new(name: &str, nics: Vec<NicSpec>) -> Self {
        Self {
            name: name.to_owned(),
            nics,
            ipv6: false,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// Kernel name inside the server, e.g. "eth0".
    pub name: String,
    /// Fixed MAC; default derived from server and NIC names.
    #[serde(default)]
    pub mac: Option<String>,
    /// Where the cable goes.
    pub cable: PortRef,
}

impl NicSpec {
    /// NIC `name` (MAC derived) cabled to `switch`'s `port`.
    pub fn cabled(name: &str, switch: &str, port: &str) -> Self {
        Self {
            name: name.to_owned(),
            mac: None,
            cable: PortRef::new(switch, port),
        }
    }
}

impl RackSpec {
    /// Checks names and references; returns the first problem found with the
    /// path of the offending field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut switches = BTreeSet::new();
        for (i, s) in self.switches.iter().enumerate() {
            check_name(&format!("switches[{i}].name"), &s.name)?;
            if !switches.insert(s.name.as_str()) {
                bail!("switches[{i}].name: duplicate switch {:?}", s.name);
            }
        }
        let mut paired = BTreeMap::new();
        for (i, p) in self.pairs.iter().enumerate() {
            check_name(&format!("pairs[{i}].name"), &p.name)?;
            for (j, m) in p.members.iter().enumerate() {
                if !switches.contains(m.as_str()) {
                    bail!("pairs[{i}].members[{j}]: unknown switch {m:?}");
                }
                if let Some(other) = paired.insert(m.as_str(), p.name.as_str()) {
                    bail!("pairs[{i}].members[{j}]: switch {m:?} already in pair {other:?}");
                }
            }
            if p.members[0] == p.members[1] {
                bail!(
                    "pairs[{i}].members: the same switch twice ({:?})",
                    p.members[0]
                );
            }
        }
        // Every cabled port, once.
        let mut cabled = BTreeSet::new();
        let mut servers = BTreeSet::new();
        for (i, srv) in self.servers.iter().enumerate() {
            check_name(&format!("servers[{i}].name"), &srv.name)?;
            if !servers.insert(srv.name.as_str()) {
                bail!("servers[{i}].name: duplicate server {:?}", srv.name);
            }
            let mut nics = BTreeSet::new();
            for (j, nic) in srv.nics.iter().enumerate() {
                check_ifname(&format!("servers[{i}].nics[{j}].name"), &nic.name)?;
                if !nics.insert(nic.name.as_str()) {
                    bail!("servers[{i}].nics[{j}].name: duplicate NIC {:?}", nic.name);
                }
                if !switches.contains(nic.cable.switch.as_str()) {
                    bail!(
                        "servers[{i}].nics[{j}].cable.switch: unknown switch {:?}",
                        nic.cable.switch
                    );
                }
                let kernel = self.switch_port_ifname(&nic.cable);
                check_ifname(&format!("servers[{i}].nics[{j}].cable.port"), &kernel)?;
                if !cabled.insert(nic.cable.clone()) {
                    bail!(
                        "servers[{i}].nics[{j}].cable: port {}:{} is already cabled",
                        nic.cable.switch,
                        nic.cable.port
                    );
                }
            }
        }
        for (i, s) in self.switches.iter().enumerate() {
            let ns = self.switch_namespace(&s.name);
            for (j, p) in s.ports.iter().enumerate() {
                let r = PortRef::new(&s.name, &p.name);
                if !cabled.contains(&r) {
                    bail!(
                        "switches[{i}].ports[{j}].name: port {:?} has no cable",
                        p.name
                    );
                }
                check_vlans(&format!("switches[{i}].ports[{j}]"), &p.vlans)?;
            }
            for (j, lag) in s.lags.iter().enumerate() {
                check_ifname(&format!("switches[{i}].lags[{j}].name"), &lag.name)?;
                check_vlans(&format!("switches[{i}].lags[{j}]"), &lag.vlans)?;
                if !matches!(lag.lacp_rate.as_str(), "fast" | "slow") {
                    bail!(
                        "switches[{i}].lags[{j}].lacp_rate: {:?} is not fast or slow",
                        lag.lacp_rate
                    );
                }
                for (k, m) in lag.members.iter().enumerate() {
                    if self.switch_namespace(&m.switch) != ns {
                        bail!(
                            "switches[{i}].lags[{j}].members[{k}]: {}:{} is not on {} or its pair",
                            m.switch,
                            m.port,
                            s.name
                        );
                    }
                    if !cabled.contains(m) {
                        bail!(
                            "switches[{i}].lags[{j}].members[{k}]: {}:{} has no cable",
                            m.switch,
                            m.port
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The namespace role a switch lives in: its pair's name, or its own.
    pub fn switch_namespace(&self, switch: &str) -> String {
        self.pairs
            .iter()
            .find(|p| p.members.iter().any(|m| m == switch))
            .map_or_else(|| switch.to_owned(), |p| p.name.clone())
    }

    /// Kernel name of a switch port: the port name on a lone switch,
    /// `<switch>-<port>` inside a pair's shared namespace.
    pub fn switch_port_ifname(&self, port: &PortRef) -> String {
        if self.switch_namespace(&port.switch) == port.switch {
            port.port.clone()
        } else {
            format!("{}-{}", port.switch, port.port)
        }
    }

    /// The LACP system MAC of a switch (its pair's when paired).
    pub fn system_mac(&self, switch: &str) -> String {
        let ns = self.switch_namespace(switch);
        self.pairs
            .iter()
            .find(|p| p.name == ns)
            .and_then(|p| p.system_mac.clone())
            .unwrap_or_else(|| derived_mac(&["system", &ns]))
    }
}

/// A locally administered unicast MAC derived from `parts` (stable across runs).
pub fn derived_mac(parts: &[&str]) -> String {
    // FNV-1a: tiny, stable, no dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let b = h.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[3], b[4], b[5], b[6], b[7]
    )
}

fn check_name(path: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 12
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        bail!("{path}: {name:?} must be 1..=12 ASCII letters, digits or '-'");
    }
    Ok(())
}

fn check_ifname(path: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
        bail!("{path}: {name:?} is not a valid interface name (1..=15 bytes, no '/', ' ' or ':')");
    }
    Ok(())
}

fn check_vlans(path: &str, v: &VlanMembership) -> anyhow::Result<()> {
    for id in v.access.iter().chain(&v.tagged) {
        if !(1..=4094).contains(id) {
            bail!("{path}: VLAN {id} outside 1..=4094");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    fn rack() -> RackSpec {
        serde_json::from_value(serde_json::json!({
            "switches": [
                {"name": "sw1", "lags": [{"name": "Po10", "members": [
                    {"switch": "sw1", "port": "Eth10"}, {"switch": "sw2", "port": "Eth10"}],
                    "tagged": [100, 200]}]},
                {"name": "sw2"}
            ],
            "pairs": [{"name": "leaf1", "members": ["sw1", "sw2"]}],
            "servers": [{"name": "srv1", "nics": [
                {"name": "eth0", "cable": {"switch": "sw1", "port": "Eth10"}},
                {"name": "eth1", "cable": {"switch": "sw2", "port": "Eth10"}}]}]
        }))
        .context("spec")
        .unwrap()
    }

    #[test]
    fn pair_shares_namespace_and_prefixes_ports() {
        let r = rack();
        r.validate().unwrap();
        assert_eq!(r.switch_namespace("sw2"), "leaf1");
        assert_eq!(
            r.switch_port_ifname(&PortRef::new("sw1", "Eth10")),
            "sw1-Eth10"
        );
        assert_eq!(r.system_mac("sw1"), r.system_mac("sw2"));
    }

    #[test]
    fn rejects_double_cabling_with_path() {
        let mut r = rack();
        r.servers[0].nics[1].cable = PortRef::new("sw1", "Eth10");
        let e = r.validate().unwrap_err().to_string();
        assert!(e.contains("servers[0].nics[1].cable"), "{e}");
    }

    #[test]
    fn rejects_bad_vlan_and_unknown_fields() {
        let mut r = rack();
        r.switches[0].lags[0].vlans.tagged.push(4095);
        let e = r.validate().unwrap_err().to_string();
        assert!(
            e.contains("switches[0].lags[0]") && e.contains("4095"),
            "{e}"
        );
        let bad = serde_json::from_str::<RackSpec>(r#"{"servers": [], "bogus": 1}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn port_name_limits_in_a_pair() {
        let mut r = rack();
        r.servers[0].nics[0].cable.port = "Ethernet100".into();
        r.switches[0].lags[0].members[0].port = "Ethernet100".into();
        r.validate().expect("sw1-Ethernet100 is 15 bytes: accepted");
        r.servers[0].nics[0].cable.port = "Ethernet1000".into();
        r.switches[0].lags[0].members[0].port = "Ethernet1000".into();
        let e = r.validate().unwrap_err().to_string();
        assert!(
            e.contains("servers[0].nics[0].cable.port") && e.contains("sw1-Ethernet1000"),
            "{e}"
        );
    }

    #[test]
    fn lag_mode_defaults_to_lacp() {
        let r = rack();
        assert_eq!(r.switches[0].lags[0].mode, LagMode::Lacp);
        let lag: LagSpec = serde_json::from_value(serde_json::json!({
            "name": "Po2", "members": [], "mode": "static"
        }))
        .unwrap();
        assert_eq!(lag.mode, LagMode::Static);
    }

    #[test]
    fn derived_mac_is_stable_and_local() {
        let a = derived_mac(&["srv1", "eth0"]);
        assert_eq!(a, derived_mac(&["srv1", "eth0"]));
        assert_ne!(a, derived_mac(&["srv1", "eth1"]));
        assert!(a.starts_with("02:"));
    }
}
