//! Connection intent, compiled for both ends of the cable.
//!
//! The controller says what one server's network connection must be
//! ([`Intent`]: networks with VLAN, MTU and addressing, which one is
//! untagged, redundancy mode and topology, the host layout); the server's
//! agent reports its NICs with their LLDP neighbours and the fabric service
//! knows the switches ([`Inventory`]). [`compile`] turns them into
//!
//! - the host's desired state ([`HostSide`]: a [`NetworkState`](crate::schema::NetworkState) that passes
//!   [`crate::validate::validate`], plus what it needs that the schema
//!   cannot say yet),
//! - the switch-side intent per switch port ([`SwitchIntent`]: LAG/MLAG
//!   membership and id, LACP mode, rate and port priority, access or trunk
//!   VLANs, native VLAN, MTU, description),
//!
//! and [`linux_switch`] compiles the switch-side intents of every server on
//! a Linux switch into the [`NetworkState`](crate::schema::NetworkState) hostd applies on that switch.
//!
//! Port indexes: NICs ordered by switch hostname, then switch port name,
//! both in natural order ([`natural::natural_cmp`]: Ethernet2 before
//! Ethernet10). Port #0 is the bond's first member (enslaved first), the
//! active-backup primary, and the LAG member with the best LACP port
//! priority, so it is the port both ends keep when LACP falls back. A NIC
//! without an LLDP neighbour, or one that contradicts the intent, is an
//! error naming it before anything is produced. See `docs/intent.md`.
//!
//! Parts: [`input`] (the documents), `cabling` (neighbours, topology,
//! indexes), `networks` (VLANs, addresses, routes), `host`, `switch`,
//! [`natural`], `error`.

mod cabling;
mod error;
mod host;
pub mod input;
pub mod natural;
mod networks;
mod switch;

use std::collections::BTreeMap;

pub use error::{IntentError, IntentErrors};
pub use host::HostSide;
pub use input::{
    HostLayout, HostOptions, Intent, Inventory, LldpNeighbor, MlagFacts, Network, NetworkRoute,
    NetworkType, Nic, Redundancy, RedundancyMode, SwitchFacts, SwitchPortFacts, Topology,
};
pub use switch::{
    linux_switch, port_priority, LacpMode, Lag, LagKind, PortIntent, PortVlans, SwitchIntent,
    SwitchPorts, VlanMode,
};

use error::Errs;

/// Both ends of one server's connection (serializable, for a controller
/// to store or send).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Compiled {
    /// The host's side.
    pub host: HostSide,
    /// The switches' side.
    pub switches: SwitchIntent,
}

/// Compiles `intent` for the server whose NICs and switches `inventory`
/// describes. Returns every problem found, each naming its field and value;
/// nothing is produced when there is one.
pub fn compile(intent: &Intent, inventory: &Inventory) -> Result<Compiled, IntentErrors> {
    let mut e = Errs::default();
    if intent.server.is_empty()
        || intent.server.len() > 253
        || intent
            .server
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        e.push(
            "intent.server",
            format!("{:?}", intent.server),
            "a server name is 1..=253 characters without whitespace",
        );
    }
    cabling::check_switches(&inventory.switches, &mut e);
    let nets = networks::check(intent, &mut e);
    e.check()?;
    let Some(nets) = nets else {
        // `check` returns None only with an error pushed.
        e.push(
            "intent.networks",
            "?",
            "not usable (internal: no error was recorded)",
        );
        return Err(IntentErrors(e.0));
    };
    let cab = cabling::cable(intent, inventory)?;

    host::check_bond_options(intent, &cab, &mut e);
    let lag_id = switch::lag_id(intent, &cab, &mut e);
    if intent.redundancy.mode == input::RedundancyMode::ActiveActive {
        // LACP aggregates ports of one speed only.
        let speeds: BTreeMap<u32, &str> = cab
            .nics
            .iter()
            .filter_map(|c| c.nic.speed.map(|s| (s, c.nic.name.as_str())))
            .collect();
        if speeds.len() > 1 {
            let first = cab.nics.iter().find_map(|c| c.nic.speed).unwrap_or(0);
            for c in cab
                .nics
                .iter()
                .filter(|c| c.nic.speed.is_some_and(|s| s != first))
            {
                e.push(
                    format!("inventory.nics[{}].speed", c.at),
                    c.nic.speed.unwrap_or(0),
                    format!(
                        "NIC {} runs at another speed than port #0 ({} Mb/s): an LACP aggregate needs one speed",
                        c.nic.name, first
                    ),
                );
            }
        }
    }
    check_names(intent, &cab, &nets, &mut e);
    e.check()?;

    let host = host::build(intent, &cab, &nets);
    if let Err(v) = crate::validate::validate(&host.state) {
        let bond_at = host
            .state
            .interfaces
            .iter()
            .position(|i| i.link_aggregation.is_some());
        for i in v.0 {
            match bond_at.and_then(|b| {
                i.path
                    .strip_prefix(&format!("interfaces[{b}].link-aggregation.options"))
                    .map(str::to_owned)
            }) {
                Some(rest) => e.push(
                    format!("intent.redundancy.bond-options{rest}"),
                    i.value,
                    i.reason,
                ),
                None => e.push(
                    format!("host document: {}", i.path),
                    i.value,
                    format!(
                        "{} (the compiled host state does not validate: a compiler bug)",
                        i.reason
                    ),
                ),
            }
        }
    }
    e.check()?;
    let switches = switch::build(intent, &inventory.switches, &cab, &nets, lag_id);
    Ok(Compiled { host, switches })
}

/// The interface names the host state will use must be distinct from each
/// other and from the NICs'.
fn check_names(intent: &Intent, cab: &cabling::Cabling, nets: &networks::Nets, e: &mut Errs) {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut claim = |e: &mut Errs, name: String, at: String, what: &str| {
        if let Some(first) = names.insert(name.clone(), at.clone()) {
            e.push(
                at,
                &name,
                format!("{what} would take a name already used by {first}"),
            );
        }
    };
    for c in &cab.nics {
        claim(
            e,
            c.nic.name.to_string(),
            format!("inventory.nics[{}].name", c.at),
            "the NIC",
        );
    }
    let uplink = match host::bond_mode(intent.redundancy.mode) {
        Some(_) => {
            claim(
                e,
                intent.host.bond.to_string(),
                "intent.host.bond".into(),
                "the bond",
            );
            intent.host.bond.clone()
        }
        None => cab.nics[0].nic.name.clone(),
    };
    match intent.host.layout {
        HostLayout::VlanSubinterfaces => {
            for (i, n) in nets.tagged() {
                claim(
                    e,
                    host::vlan_name(&uplink, n.vlan).to_string(),
                    format!("intent.networks[{i}].vlan"),
                    "its VLAN interface",
                );
            }
        }
        HostLayout::VlanAwareBridge => {
            claim(
                e,
                intent.host.bridge.to_string(),
                "intent.host.bridge".into(),
                "the bridge",
            );
            for (i, n) in nets.tagged().filter(|(_, n)| !n.addresses.is_empty()) {
                claim(
                    e,
                    host::vlan_name(&intent.host.bridge, n.vlan).to_string(),
                    format!("intent.networks[{i}].vlan"),
                    "its VLAN interface",
                );
            }
        }
        HostLayout::PerVlanBridges => {
            for (i, n) in &nets.all {
                if !n.untagged {
                    claim(
                        e,
                        host::vlan_name(&uplink, n.vlan).to_string(),
                        format!("intent.networks[{i}].vlan"),
                        "its VLAN interface",
                    );
                }
                claim(
                    e,
                    host::bridge_name(n.vlan).to_string(),
                    format!("intent.networks[{i}].vlan"),
                    "its bridge",
                );
            }
        }
    }
}

/// The host document as YAML, for people and golden files.
pub fn host_yaml(host: &HostSide) -> Result<String, serde_norway::Error> {
    serde_norway::to_string(&host.state)
}
