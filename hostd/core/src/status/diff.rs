//! What changed between two status reads: the daemon announces each
//! changed bond (`LacpChanged`) and each NIC whose LLDP neighbours changed
//! (`LldpChanged`).
//!
//! A bond changed when anything in its [`BondStatus`] differs (mode, MII,
//! the active aggregator, a member's carrier, MII status, aggregator, actor
//! or partner details, churn); it appeared or went away. A NIC's LLDP
//! changed when its list of neighbours differs, including a NIC that
//! appeared or went away while hearing neighbours. A change of the LLDP
//! source (read, unavailable and why) is reported apart. An Open vSwitch
//! bond changed when its mode, LACP status, active member or a member's
//! state differs; its LACP PDU counters (`lacp/show-stats`) are not a
//! change (they move every second).

use std::collections::BTreeMap;

use super::{BondStatus, HostStatus, LldpNeighbor};
use crate::ovs::status::OvsBondStatus;

/// The names of what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Bonds that appeared or whose status changed, by name.
    pub bonds: Vec<String>,
    /// Bonds that went away.
    pub bonds_gone: Vec<String>,
    /// Open vSwitch bonds that appeared or whose state changed.
    pub ovs_bonds: Vec<String>,
    /// Open vSwitch bonds that went away.
    pub ovs_bonds_gone: Vec<String>,
    /// NICs whose LLDP neighbours changed (appeared, went away, changed).
    pub lldp: Vec<String>,
    /// Whether LLDP was read, and why not, changed.
    pub lldp_source: bool,
}

impl Changes {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.bonds.is_empty()
            && self.bonds_gone.is_empty()
            && self.ovs_bonds.is_empty()
            && self.ovs_bonds_gone.is_empty()
            && self.lldp.is_empty()
            && !self.lldp_source
    }
}

/// What differs from `old` to `new`; names sorted.
pub fn changes(old: &HostStatus, new: &HostStatus) -> Changes {
    let ob: BTreeMap<&str, &BondStatus> = old.bonds.iter().map(|b| (b.name.as_str(), b)).collect();
    let nb: BTreeMap<&str, &BondStatus> = new.bonds.iter().map(|b| (b.name.as_str(), b)).collect();
    let mut out = Changes {
        lldp_source: old.lldp != new.lldp,
        ..Changes::default()
    };
    for (name, b) in &nb {
        if ob.get(name).is_none_or(|o| !same_bond(o, b)) {
            out.bonds.push((*name).to_owned());
        }
    }
    for name in ob.keys() {
        if !nb.contains_key(name) {
            out.bonds_gone.push((*name).to_owned());
        }
    }
    let oo: BTreeMap<&str, OvsBondStatus> = old
        .ovs_bonds
        .iter()
        .map(|b| (b.name.as_str(), ovs_state(b)))
        .collect();
    for b in &new.ovs_bonds {
        if oo.get(b.name.as_str()) != Some(&ovs_state(b)) {
            out.ovs_bonds.push(b.name.clone());
        }
    }
    for name in oo.keys() {
        if !new.ovs_bonds.iter().any(|b| b.name == *name) {
            out.ovs_bonds_gone.push((*name).to_owned());
        }
    }
    out.ovs_bonds.sort();
    let neighbors = |s: &HostStatus| -> BTreeMap<String, Vec<LldpNeighbor>> {
        s.nics
            .iter()
            .filter(|n| !n.lldp.is_empty())
            .map(|n| (n.name.clone(), n.lldp.clone()))
            .collect()
    };
    let (on, nn) = (neighbors(old), neighbors(new));
    let mut nics: Vec<&String> = on.keys().chain(nn.keys()).collect();
    nics.sort();
    nics.dedup();
    for nic in nics {
        if on.get(nic) != nn.get(nic) {
            out.lldp.push(nic.clone());
        }
    }
    out
}

/// An OVS bond without its counters, members by name.
fn ovs_state(b: &OvsBondStatus) -> OvsBondStatus {
    let mut b = b.clone();
    for m in &mut b.members {
        m.stats = None;
    }
    b.members.sort_by(|x, y| x.name.cmp(&y.name));
    b
}

/// Members compared by name, whatever their order.
fn same_bond(a: &BondStatus, b: &BondStatus) -> bool {
    if a.members.len() != b.members.len() {
        return false;
    }
    fn key(x: &BondStatus) -> Vec<&super::MemberStatus> {
        let mut m: Vec<_> = x.members.iter().collect();
        m.sort_by(|p, q| p.name.cmp(&q.name));
        m
    }
    let strip = |x: &BondStatus| BondStatus {
        members: Vec::new(),
        ..x.clone()
    };
    strip(a) == strip(b) && key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{lldp, procfs, LldpSource, MemberStatus, MiiStatus, NicStatus};

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures-status/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn bond(name: &str) -> BondStatus {
        let mut b = procfs::parse("bond0", &fixture(name)).unwrap().bond;
        b.name = "bond0".into();
        b
    }

    fn host() -> HostStatus {
        let p = lldp::parse(&fixture("json0-lab-switch.json")).unwrap();
        HostStatus {
            ovs_bonds: Vec::new(),
            bonds: vec![bond("proc-8023ad-negotiated.txt")],
            nics: ["eth0", "eth1", "eth2"]
                .iter()
                .map(|n| NicStatus {
                    carrier: Some(true),
                    lldp: p.on(n).into_iter().cloned().collect(),
                    ..NicStatus::new(n)
                })
                .collect(),
            lldp: LldpSource::Read,
            notes: Vec::new(),
        }
    }

    #[test]
    fn nothing_changed_whatever_the_member_order() {
        let a = host();
        let mut b = a.clone();
        b.bonds[0].members.reverse();
        b.notes.push("a note is not a change".into());
        assert!(changes(&a, &b).is_empty(), "{:?}", changes(&a, &b));
    }

    #[test]
    fn a_cable_pull_changes_the_bond_only() {
        let a = host();
        let mut b = a.clone();
        // Carrier first (the NIC), then the bond's MII check.
        b.bonds[0].members[1].carrier = Some(false);
        b.nics[1].carrier = Some(false);
        let c = changes(&a, &b);
        assert_eq!(c.bonds, ["bond0"]);
        assert!(c.lldp.is_empty() && c.bonds_gone.is_empty() && !c.lldp_source);
        let mut d = b.clone();
        d.bonds[0] = bond("proc-8023ad-member-down.txt");
        assert_eq!(changes(&b, &d).bonds, ["bond0"]);
        let down: Vec<&MemberStatus> = d.bonds[0]
            .members
            .iter()
            .filter(|m| m.mii_status == Some(MiiStatus::Down))
            .collect();
        assert_eq!(down.len(), 1);
    }

    #[test]
    fn bonds_appear_and_go() {
        let a = host();
        let mut b = a.clone();
        let mut other = bond("proc-8023ad-negotiated.txt");
        other.name = "bond1".into();
        b.bonds.push(other);
        assert_eq!(changes(&a, &b).bonds, ["bond1"]);
        let c = changes(&b, &a);
        assert!(c.bonds.is_empty());
        assert_eq!(c.bonds_gone, ["bond1"]);
    }

    #[test]
    fn lldp_neighbours_and_source() {
        let a = host();
        let mut b = a.clone();
        b.nics[0].lldp.clear();
        b.nics[1].lldp[0].port_description = Some("moved".into());
        let c = changes(&a, &b);
        assert_eq!(c.lldp, ["eth0", "eth1"]);
        assert!(c.bonds.is_empty());
        // A NIC that goes away while hearing a neighbour; one without
        // neighbours that goes away is no LLDP change.
        let mut d = a.clone();
        d.nics.retain(|n| n.name != "eth1" && n.name != "eth2");
        assert_eq!(changes(&a, &d).lldp, ["eth1"]);
        let mut e = a.clone();
        e.lldp = LldpSource::Unavailable {
            reason: "lldpd not running".into(),
        };
        for n in &mut e.nics {
            n.lldp.clear();
        }
        let c = changes(&a, &e);
        assert!(c.lldp_source);
        assert_eq!(c.lldp, ["eth0", "eth1"]);
    }

    #[test]
    fn ovs_bond_state_changes_but_not_its_counters() {
        use crate::ovs::status::{LacpMember, LacpStats, OvsMemberStatus};
        let member = |name: &str, rx: u64| OvsMemberStatus {
            name: name.into(),
            enabled: true,
            active: true,
            lacp: Some(LacpMember {
                state: vec!["current".into(), "attached".into()],
                ..LacpMember::default()
            }),
            stats: Some(LacpStats {
                rx_pdus: rx,
                ..LacpStats::default()
            }),
            ..OvsMemberStatus::default()
        };
        let mut a = host();
        a.ovs_bonds.push(OvsBondStatus {
            name: "hbond".into(),
            lacp_status: Some("negotiated".into()),
            members: vec![member("h1", 10), member("h2", 10)],
            ..OvsBondStatus::default()
        });
        let mut b = a.clone();
        for (i, m) in b.ovs_bonds[0].members.iter_mut().enumerate() {
            m.stats = Some(LacpStats {
                rx_pdus: 40 + i as u64,
                ..LacpStats::default()
            });
        }
        b.ovs_bonds[0].members.reverse();
        assert!(changes(&a, &b).is_empty(), "{:?}", changes(&a, &b));
        let mut c = b.clone();
        c.ovs_bonds[0].members[0].lacp = Some(LacpMember {
            state: vec!["expired".into(), "attached".into()],
            ..LacpMember::default()
        });
        assert_eq!(changes(&b, &c).ovs_bonds, ["hbond"]);
        let d = host();
        let gone = changes(&c, &d);
        assert_eq!(gone.ovs_bonds_gone, ["hbond"]);
        assert!(gone.bonds.is_empty());
        assert_eq!(changes(&d, &c).ovs_bonds, ["hbond"]);
    }
}
