//! Where each NIC is cabled: its LLDP neighbour resolved against the
//! switches' facts, checked against the intent's topology, and the port
//! indexes (switch hostname, then switch port, both in natural order).

use std::collections::{BTreeMap, BTreeSet};

use super::{
    error::{Errs, IntentErrors},
    input::{Intent, Inventory, Nic, RedundancyMode, SwitchFacts, Topology},
    natural::natural_cmp,
};
use crate::types::MacAddr;

/// A NIC with the switch port it is cabled to and its index.
#[derive(Debug, Clone)]
pub(crate) struct CabledNic {
    /// Port index: 0 is the first by (switch hostname, switch port).
    pub index: usize,
    /// The NIC.
    pub nic: Nic,
    /// Its position in `inventory.nics` (error paths).
    pub at: usize,
    /// The switch's hostname (as in the facts).
    pub switch: String,
    /// The switch's port name.
    pub port: String,
}

/// The MLAG pair the NICs are cabled to.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    /// Both members, in natural order.
    pub members: [String; 2],
    /// The system MAC they present.
    pub system_mac: MacAddr,
}

/// The resolved cabling.
#[derive(Debug, Clone)]
pub(crate) struct Cabling {
    /// In index order.
    pub nics: Vec<CabledNic>,
    /// Set for the mlag-pair topology.
    pub pair: Option<Pair>,
}

fn host_matches(fact: &str, seen: &str) -> bool {
    let short = |s: &str| s.split('.').next().unwrap_or(s).to_ascii_lowercase();
    fact.eq_ignore_ascii_case(seen)
        || (seen.contains('.') && short(seen) == fact.to_ascii_lowercase())
        || (fact.contains('.') && short(fact) == seen.to_ascii_lowercase())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks the switches' facts on their own (names, MLAG symmetry).
pub(crate) fn check_switches(switches: &[SwitchFacts], e: &mut Errs) {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut chassis: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in switches.iter().enumerate() {
        let p = format!("inventory.switches[{i}]");
        if !valid_name(&s.hostname) {
            e.push(
                format!("{p}.hostname"),
                format!("{:?}", s.hostname),
                "a hostname is 1..=253 characters without whitespace",
            );
        }
        if let Some(first) = names.insert(s.hostname.to_ascii_lowercase(), i) {
            e.push(
                format!("{p}.hostname"),
                &s.hostname,
                format!("duplicate switch (first at inventory.switches[{first}])"),
            );
        }
        if let Some(c) = &s.chassis_id {
            if let Some(first) = chassis.insert(c.to_ascii_lowercase(), i) {
                e.push(
                    format!("{p}.chassis-id"),
                    c,
                    format!("chassis id already used by inventory.switches[{first}]"),
                );
            }
        }
        if let Some(m) = s.system_mac {
            if m.is_zero() || m.is_multicast() {
                e.push(
                    format!("{p}.system-mac"),
                    m,
                    "must be a unicast, non-zero MAC address",
                );
            }
        }
        let mut ports = BTreeSet::new();
        for (j, port) in s.ports.iter().enumerate() {
            if port.name.is_empty() {
                e.push(format!("{p}.ports[{j}].name"), "\"\"", "empty port name");
            }
            if !ports.insert(port.name.as_str()) {
                e.push(
                    format!("{p}.ports[{j}].name"),
                    &port.name,
                    "port listed twice",
                );
            }
        }
        let mut uplinks = BTreeSet::new();
        for (j, u) in s.uplinks.iter().enumerate() {
            if !uplinks.insert(u.as_str()) {
                e.push(format!("{p}.uplinks[{j}]"), u, "uplink listed twice");
            }
            if !s.ports.is_empty() && !ports.contains(u.as_str()) {
                e.push(
                    format!("{p}.uplinks[{j}]"),
                    u,
                    format!("switch {} has no such port in its ports", s.hostname),
                );
            }
        }
    }
    for (i, s) in switches.iter().enumerate() {
        let Some(m) = &s.mlag else { continue };
        let p = format!("inventory.switches[{i}].mlag");
        if m.system_mac.is_zero() || m.system_mac.is_multicast() {
            e.push(
                format!("{p}.system-mac"),
                m.system_mac,
                "must be a unicast, non-zero MAC address",
            );
        }
        if m.peer.eq_ignore_ascii_case(&s.hostname) {
            e.push(
                format!("{p}.peer"),
                &m.peer,
                "a switch cannot be its own MLAG peer",
            );
            continue;
        }
        match switches
            .iter()
            .find(|o| o.hostname.eq_ignore_ascii_case(&m.peer))
        {
            None => e.push(format!("{p}.peer"), &m.peer, "no switch with this hostname"),
            Some(peer) => match &peer.mlag {
                None => e.push(
                    format!("{p}.peer"),
                    &m.peer,
                    format!(
                        "{} names no MLAG peer: both members must name each other",
                        peer.hostname
                    ),
                ),
                Some(pm) if !pm.peer.eq_ignore_ascii_case(&s.hostname) => e.push(
                    format!("{p}.peer"),
                    &m.peer,
                    format!(
                        "{}'s MLAG peer is {}, not {}: both members must name each other",
                        peer.hostname, pm.peer, s.hostname
                    ),
                ),
                Some(pm) if pm.system_mac != m.system_mac => e.push(
                    format!("{p}.system-mac"),
                    m.system_mac,
                    format!(
                        "the MLAG peer {} presents system MAC {}: both members must present one",
                        peer.hostname, pm.system_mac
                    ),
                ),
                Some(_) => {}
            },
        }
    }
}

/// Resolves the cabling of the intent's NICs and checks it against the
/// topology. The switches' facts must have passed [`check_switches`].
pub(crate) fn cable(intent: &Intent, inv: &Inventory) -> Result<Cabling, IntentErrors> {
    let mut e = Errs::default();

    // Inventory NICs: unique names and MACs.
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut macs: BTreeMap<MacAddr, usize> = BTreeMap::new();
    for (i, n) in inv.nics.iter().enumerate() {
        if let Some(first) = names.insert(n.name.as_str(), i) {
            e.push(
                format!("inventory.nics[{i}].name"),
                &n.name,
                format!("duplicate NIC name (first at inventory.nics[{first}])"),
            );
        }
        if let Some(first) = macs.insert(n.mac, i) {
            e.push(
                format!("inventory.nics[{i}].mac"),
                n.mac,
                format!("MAC address already used by inventory.nics[{first}]"),
            );
        }
        if n.mac.is_zero() || n.mac.is_multicast() {
            e.push(
                format!("inventory.nics[{i}].mac"),
                n.mac,
                "not a unicast NIC address",
            );
        }
        if n.speed == Some(0) {
            e.push(
                format!("inventory.nics[{i}].speed"),
                0,
                "speed 0: leave it out when unknown",
            );
        }
    }

    // The NICs to use.
    let selected: Vec<usize> = match &intent.nics {
        Some(list) => {
            let mut seen = BTreeSet::new();
            let mut out = Vec::new();
            for (k, name) in list.iter().enumerate() {
                if !seen.insert(name.as_str()) {
                    e.push(format!("intent.nics[{k}]"), name, "NIC listed twice");
                    continue;
                }
                match names.get(name.as_str()) {
                    Some(&i) => out.push(i),
                    None => e.push(
                        format!("intent.nics[{k}]"),
                        name,
                        "no NIC of this name in inventory.nics",
                    ),
                }
            }
            if list.is_empty() {
                e.push("intent.nics", "[]", "lists no NIC");
            }
            out
        }
        None => (0..inv.nics.len()).collect(),
    };
    if inv.nics.is_empty() {
        e.push("inventory.nics", "[]", "the server has no NIC");
    }

    // Each selected NIC's neighbour.
    let mut cabled: Vec<CabledNic> = Vec::new();
    for &i in &selected {
        let nic = &inv.nics[i];
        let p = format!("inventory.nics[{i}].lldp");
        let Some(n) = &nic.lldp else {
            e.push(
                &p,
                "none",
                format!(
                    "NIC {} ({}) has no LLDP neighbour: the switch port it is cabled to is unknown",
                    nic.name, nic.mac
                ),
            );
            continue;
        };
        let by_name = n.system_name.as_ref().map(|sn| {
            (
                sn,
                inv.switches
                    .iter()
                    .position(|s| host_matches(&s.hostname, sn)),
            )
        });
        let by_chassis = n.chassis_id.as_ref().map(|c| {
            (
                c,
                inv.switches.iter().position(|s| {
                    s.chassis_id
                        .as_ref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(c))
                }),
            )
        });
        let sw = match (by_name, by_chassis) {
            (None, None) => {
                e.push(
                    &p,
                    format!("port {}", n.port),
                    format!(
                        "NIC {}'s neighbour names no switch (neither system-name nor chassis-id)",
                        nic.name
                    ),
                );
                continue;
            }
            (Some((sn, None)), _) => {
                e.push(
                    format!("{p}.system-name"),
                    sn,
                    format!(
                        "NIC {} sees a switch that is not in inventory.switches",
                        nic.name
                    ),
                );
                continue;
            }
            (None, Some((c, None))) => {
                e.push(
                    format!("{p}.chassis-id"),
                    c,
                    format!(
                        "NIC {} sees a chassis id no switch in inventory.switches has",
                        nic.name
                    ),
                );
                continue;
            }
            (Some((_, Some(a))), None) | (None, Some((_, Some(a)))) => a,
            (Some((sn, Some(a))), Some((c, other))) => {
                let known = inv.switches[a].chassis_id.as_ref();
                let contradicts = match other {
                    Some(b) => b != a,
                    None => known.is_some(),
                };
                if contradicts {
                    e.push(
                        format!("{p}.chassis-id"),
                        c,
                        format!(
                            "NIC {} sees system name {sn} (switch {}, chassis id {}) but this chassis id{}",
                            nic.name,
                            inv.switches[a].hostname,
                            known.map(String::as_str).unwrap_or("unknown"),
                            match other {
                                Some(b) => format!(" is {}'s", inv.switches[b].hostname),
                                None => " belongs to no known switch".into(),
                            }
                        ),
                    );
                    continue;
                }
                a
            }
        };
        let facts = &inv.switches[sw];
        if n.port.is_empty() {
            e.push(
                format!("{p}.port"),
                "\"\"",
                format!("NIC {}'s neighbour names no port", nic.name),
            );
            continue;
        }
        if !facts.ports.is_empty() && !facts.ports.iter().any(|x| x.name == n.port) {
            e.push(
                format!("{p}.port"),
                &n.port,
                format!(
                    "NIC {} sees a port that switch {} does not have",
                    nic.name, facts.hostname
                ),
            );
            continue;
        }
        if facts.uplinks.contains(&n.port) {
            e.push(
                format!("{p}.port"),
                &n.port,
                format!(
                    "NIC {} sees {} {}, which is one of that switch's uplinks",
                    nic.name, facts.hostname, n.port
                ),
            );
            continue;
        }
        cabled.push(CabledNic {
            index: 0,
            nic: nic.clone(),
            at: i,
            switch: facts.hostname.clone(),
            port: n.port.clone(),
        });
    }

    // Two NICs on one switch port.
    let mut ports: BTreeMap<(String, String), &CabledNic> = BTreeMap::new();
    let mut by_name: Vec<&CabledNic> = cabled.iter().collect();
    by_name.sort_by(|a, b| natural_cmp(a.nic.name.as_str(), b.nic.name.as_str()));
    for c in by_name {
        if let Some(first) = ports.insert((c.switch.clone(), c.port.clone()), c) {
            e.push(
                format!("inventory.nics[{}].lldp.port", c.at),
                &c.port,
                format!(
                    "NICs {} and {} both see {} {}: two NICs cannot be cabled to one switch port",
                    first.nic.name, c.nic.name, c.switch, c.port
                ),
            );
        }
    }
    e.check()?;

    // Indexes.
    cabled.sort_by(|a, b| {
        natural_cmp(&a.switch, &b.switch).then_with(|| natural_cmp(&a.port, &b.port))
    });
    for (i, c) in cabled.iter_mut().enumerate() {
        c.index = i;
    }

    let pair = check_topology(intent, inv, &cabled, &mut e);
    e.finish(Cabling { nics: cabled, pair })
}

fn facts<'a>(inv: &'a Inventory, hostname: &str) -> Option<&'a SwitchFacts> {
    inv.switches.iter().find(|s| s.hostname == hostname)
}

fn check_topology(
    intent: &Intent,
    inv: &Inventory,
    cabled: &[CabledNic],
    e: &mut Errs,
) -> Option<Pair> {
    let mode = intent.redundancy.mode;
    let topo = intent.redundancy.topology;
    let mut switches: Vec<&str> = cabled.iter().map(|c| c.switch.as_str()).collect();
    switches.dedup();
    let seen = switches.join(", ");
    let n = cabled.len();
    match mode {
        RedundancyMode::None if n != 1 => e.push(
            "intent.redundancy.mode",
            mode.as_str(),
            format!(
                "redundancy none uses exactly one NIC, but {n} are selected (give intent.nics)"
            ),
        ),
        RedundancyMode::ActiveBackup | RedundancyMode::ActiveActive if n < 2 => e.push(
            "intent.redundancy.mode",
            mode.as_str(),
            format!(
                "{} needs at least two NICs, but {n} is selected",
                mode.as_str()
            ),
        ),
        _ => {}
    }
    let off_switch = |e: &mut Errs, c: &CabledNic, why: String| {
        e.push(
            format!("inventory.nics[{}].lldp", c.at),
            format!("{} {}", c.switch, c.port),
            format!("NIC {} sees switch {}, but {why}", c.nic.name, c.switch),
        );
    };
    match topo {
        Topology::SingleSwitch => {
            if mode == RedundancyMode::None || n <= 1 {
                return None;
            }
            let first = &cabled[0].switch;
            for c in cabled.iter().filter(|c| &c.switch != first) {
                off_switch(
                    e,
                    c,
                    format!(
                        "topology single-switch puts every NIC on {first}, the switch of port #0"
                    ),
                );
            }
            None
        }
        Topology::MlagPair => {
            if mode == RedundancyMode::None {
                e.push(
                    "intent.redundancy.topology",
                    topo.as_str(),
                    "redundancy none uses one NIC on one switch: use single-switch",
                );
                return None;
            }
            // The pairs the NICs touch.
            let mut pairs: BTreeMap<(String, String), MacAddr> = BTreeMap::new();
            for s in &switches {
                if let Some(f) = facts(inv, s) {
                    if let Some(m) = &f.mlag {
                        let peer = facts(inv, &m.peer)
                            .map(|p| p.hostname.clone())
                            .unwrap_or_else(|| m.peer.clone());
                        let mut key = [f.hostname.clone(), peer];
                        key.sort_by(|a, b| natural_cmp(a, b));
                        let [a, b] = key;
                        pairs.insert((a, b), m.system_mac);
                    }
                }
            }
            if pairs.is_empty() {
                e.push(
                    "intent.redundancy.topology",
                    topo.as_str(),
                    format!("no NIC sees a member of an MLAG pair (switches seen: {seen})"),
                );
                return None;
            }
            if pairs.len() > 1 {
                let list: Vec<String> = pairs.keys().map(|(a, b)| format!("{a}/{b}")).collect();
                e.push(
                    "intent.redundancy.topology",
                    topo.as_str(),
                    format!("the NICs see more than one MLAG pair: {}", list.join(", ")),
                );
                return None;
            }
            let ((a, b), system_mac) = pairs.into_iter().next()?;
            for c in cabled.iter().filter(|c| c.switch != a && c.switch != b) {
                off_switch(e, c, format!("it is not a member of the MLAG pair {a}/{b}"));
            }
            for m in [&a, &b] {
                if !cabled.iter().any(|c| &c.switch == m) {
                    e.push(
                        "intent.redundancy.topology",
                        topo.as_str(),
                        format!("no NIC sees {m}: an MLAG pair needs NICs on both members {a} and {b} (switches seen: {seen})"),
                    );
                }
            }
            Some(Pair {
                members: [a, b],
                system_mac,
            })
        }
        Topology::IndependentSwitches => {
            if mode == RedundancyMode::None {
                e.push(
                    "intent.redundancy.topology",
                    topo.as_str(),
                    "redundancy none uses one NIC on one switch: use single-switch",
                );
                return None;
            }
            if mode == RedundancyMode::ActiveActive {
                e.push(
                    "intent.redundancy.mode",
                    mode.as_str(),
                    "LACP cannot aggregate links to two independent switches: use active-backup, or mlag-pair if they form one",
                );
            }
            if switches.len() < 2 {
                e.push(
                    "intent.redundancy.topology",
                    topo.as_str(),
                    format!("every NIC sees the same switch ({seen}): independent-switches needs NICs on two"),
                );
                return None;
            }
            for c in cabled
                .iter()
                .filter(|c| c.switch != switches[0] && c.switch != switches[1])
            {
                off_switch(
                    e,
                    c,
                    format!(
                        "independent-switches uses two switches, {} and {} (the first two in order)",
                        switches[0], switches[1]
                    ),
                );
            }
            if let (Some(x), Some(y)) = (facts(inv, switches[0]), facts(inv, switches[1])) {
                if x.mlag
                    .as_ref()
                    .is_some_and(|m| m.peer.eq_ignore_ascii_case(&y.hostname))
                {
                    e.push(
                        "intent.redundancy.topology",
                        topo.as_str(),
                        format!(
                            "{} and {} form an MLAG pair: use mlag-pair",
                            x.hostname, y.hostname
                        ),
                    );
                }
            }
            None
        }
    }
}
