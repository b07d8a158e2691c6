//! Probes for the kernel features the lab and hostd need. Each probe builds
//! the feature for real inside a throw-away namespace. A test that needs a
//! missing feature calls [`require`] and fails naming it: it never passes by
//! skipping.

use std::fmt;

use crate::netns::NetNs;

/// A kernel capability a test may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feature {
    Veth,
    Bridge,
    /// 802.3ad and the other bonding modes (CONFIG_BONDING).
    Bonding,
    /// 802.1Q VLAN subinterfaces (CONFIG_VLAN_8021Q).
    Vlan8021q,
    /// VLAN-aware bridges (CONFIG_BRIDGE_VLAN_FILTERING).
    BridgeVlanFiltering,
    /// The Open vSwitch kernel datapath (CONFIG_OPENVSWITCH).
    OvsDatapath,
    /// nf_tables with the inet family.
    Nftables,
}

impl Feature {
    /// Everything hostd configures on a real server.
    pub const HOSTD: &'static [Feature] = &[
        Feature::Veth,
        Feature::Bridge,
        Feature::Bonding,
        Feature::Vlan8021q,
        Feature::BridgeVlanFiltering,
    ];

    /// What the VM runner checks before running privileged tests natively.
    pub const ALL_NETWORKING: &'static [Feature] = &[
        Feature::Veth,
        Feature::Bridge,
        Feature::Bonding,
        Feature::Vlan8021q,
        Feature::BridgeVlanFiltering,
        Feature::OvsDatapath,
    ];

    fn config(self) -> &'static str {
        match self {
            Feature::Veth => "CONFIG_VETH",
            Feature::Bridge => "CONFIG_BRIDGE",
            Feature::Bonding => "CONFIG_BONDING",
            Feature::Vlan8021q => "CONFIG_VLAN_8021Q",
            Feature::BridgeVlanFiltering => "CONFIG_BRIDGE_VLAN_FILTERING",
            Feature::OvsDatapath => "CONFIG_OPENVSWITCH",
            Feature::Nftables => "CONFIG_NF_TABLES_INET",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Feature::Veth => "veth pairs",
            Feature::Bridge => "Linux bridge",
            Feature::Bonding => "bonding (802.3ad, active-backup, ...)",
            Feature::Vlan8021q => "802.1Q VLAN subinterfaces",
            Feature::BridgeVlanFiltering => "bridge VLAN filtering",
            Feature::OvsDatapath => "Open vSwitch kernel datapath",
            Feature::Nftables => "nftables (inet family)",
        };
        write!(f, "{name} ({})", self.config())
    }
}

/// Tries the feature for real in a fresh namespace. `Err` carries the
/// kernel's answer.
pub fn probe(feature: Feature) -> Result<(), String> {
    let ns = NetNs::new("probe").map_err(|e| format!("{e:#}"))?;
    let ip = |args: &[&str]| ns.try_ip(args).map(drop).map_err(|e| format!("{e:#}"));
    match feature {
        Feature::Veth => ip(&["link", "add", "p0", "type", "veth", "peer", "name", "p1"]),
        Feature::Bridge => ip(&["link", "add", "br0", "type", "bridge"]),
        Feature::Bonding => ip(&["link", "add", "bond0", "type", "bond", "mode", "802.3ad"]),
        Feature::Vlan8021q => {
            ip(&["link", "add", "p0", "type", "veth", "peer", "name", "p1"])?;
            ip(&[
                "link", "add", "link", "p0", "name", "p0.100", "type", "vlan", "id", "100",
            ])
        }
        Feature::BridgeVlanFiltering => {
            ip(&[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "vlan_filtering",
                "1",
            ])?;
            let details = ns
                .try_ip(&["-d", "link", "show", "br0"])
                .map_err(|e| format!("{e:#}"))?;
            if details.contains("vlan_filtering 1") {
                Ok(())
            } else {
                Err("bridge accepted vlan_filtering 1 but reports it off".to_owned())
            }
        }
        Feature::OvsDatapath => ns
            .try_run(&["ovs-dpctl", "add-dp", "labprobe"])
            .map(drop)
            .map_err(|e| format!("{e:#}"))
            .and_then(|()| {
                ns.try_run(&["ovs-dpctl", "del-dp", "labprobe"])
                    .map(drop)
                    .map_err(|e| format!("{e:#}"))
            }),
        Feature::Nftables => ns
            .try_run(&["nft", "add", "table", "inet", "probe"])
            .map(drop)
            .map_err(|e| format!("{e:#}")),
    }
}

/// The features of `wanted` this kernel lacks, with the kernel's answer.
pub fn missing(wanted: &[Feature]) -> Vec<(Feature, String)> {
    wanted
        .iter()
        .filter_map(|&f| probe(f).err().map(|e| (f, e)))
        .collect()
}

/// Fails the calling test, naming every missing feature and the running
/// kernel, unless all of `wanted` work here.
#[track_caller]
pub fn require(wanted: &[Feature]) {
    let missing = missing(wanted);
    if missing.is_empty() {
        return;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let list: Vec<String> = missing
        .iter()
        .map(|(f, e)| format!("  - {f}: {e}"))
        .collect();
    panic!(
        "kernel {} lacks features this test needs:\n{}\nrun it with `cargo xtask test` (boots Debian's kernel in a VM) or on a kernel that has them",
        release.trim(),
        list.join("\n")
    );
}

/// The running kernel's release string.
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
