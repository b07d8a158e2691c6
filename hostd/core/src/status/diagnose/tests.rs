//! Every finding, from the captured fixtures (hostd/core/tests/fixtures-status).

use super::*;
use crate::status::{lldp, procfs, LldpSource, NicStatus};

fn text(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures-status/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bond_from(text: &str) -> BondStatus {
    let p = procfs::parse("bond0", text).unwrap();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    p.bond
}

fn with_bond(text: &str) -> HostStatus {
    HostStatus {
        ovs_bonds: Vec::new(),
        bonds: vec![bond_from(text)],
        ..HostStatus::default()
    }
}

/// NICs with the neighbours of an lldpcli json0 fixture, each with `mtu`
/// and carrier up.
fn with_lldp(fixture: &str, nics: &[&str], mtu: u32) -> HostStatus {
    let p = lldp::parse(&text(fixture)).unwrap();
    HostStatus {
        ovs_bonds: Vec::new(),
        nics: nics
            .iter()
            .map(|n| NicStatus {
                mtu: Some(mtu),
                carrier: Some(true),
                lldp: p.on(n).into_iter().cloned().collect(),
                ..NicStatus::new(n)
            })
            .collect(),
        lldp: LldpSource::Read,
        ..HostStatus::default()
    }
}

fn codes(f: &[Finding]) -> Vec<(FindingCode, &str)> {
    f.iter().map(|f| (f.code, f.object.as_str())).collect()
}

fn intent(pairs: &[(&str, &str, &str)]) -> Intent {
    Intent {
        nics: pairs
            .iter()
            .map(|(nic, sw, port)| ((*nic).to_owned(), ExpectedPort::new(sw, port)))
            .collect(),
    }
}

#[test]
fn healthy_bond_and_cabling_have_no_findings() {
    let mut s = with_bond(&text("proc-8023ad-negotiated.txt"));
    let l = with_lldp("json0-lab-switch.json", &["eth0", "eth1"], 1500);
    s.nics = l.nics;
    s.lldp = l.lldp;
    let i = intent(&[("eth0", "sw1", "Ethernet1"), ("eth1", "sw1", "Ethernet2")]);
    assert_eq!(diagnose(&s, Some(&i)), vec![]);
    assert_eq!(diagnose(&s, None), vec![]);
    let ab = with_bond(&text("proc-active-backup.txt"));
    assert_eq!(diagnose(&ab, None), vec![]);
}

#[test]
fn member_on_a_non_lag_port_has_no_partner() {
    let s = with_bond(&text("proc-8023ad-nonlag-member.txt"));
    let f = diagnose(&s, None);
    assert_eq!(codes(&f), [(FindingCode::LacpNoPartner, "bond0/eth2")]);
    assert_eq!(f[0].severity, Severity::Error);
    assert!(f[0].message.contains("defaulted"), "{}", f[0].message);
    assert!(
        f[0].message.contains("while eth0, eth1 do"),
        "{}",
        f[0].message
    );
}

#[test]
fn static_lag_on_the_switch_is_one_bond_finding() {
    let s = with_bond(&text("proc-8023ad-static-switch.txt"));
    let f = diagnose(&s, None);
    assert_eq!(codes(&f), [(FindingCode::LacpNoPartner, "bond0")]);
    assert!(
        f[0].message.contains("not configured for LACP"),
        "{}",
        f[0].message
    );
    assert!(
        f[0].message
            .contains("eth0: no LACPDU received (defaulted)"),
        "{}",
        f[0].message
    );
    // A minute later both sides churned: still the one finding (the churn
    // is a consequence).
    let s = with_bond(&text("proc-8023ad-static-churned.txt"));
    assert_eq!(
        codes(&diagnose(&s, None)),
        [(FindingCode::LacpNoPartner, "bond0")]
    );
}

#[test]
fn two_switches_that_are_not_a_pair() {
    let s = with_bond(&text("proc-8023ad-two-switches.txt"));
    let f = diagnose(&s, None);
    assert_eq!(codes(&f), [(FindingCode::LacpPartnerMismatch, "bond0")]);
    let m = &f[0].message;
    assert!(
        m.contains("eth0 -> 02:00:00:00:0a:01") && m.contains("eth1 -> 02:00:00:00:0b:01"),
        "{m}"
    );
    assert!(m.contains("only aggregator 2 (eth1)"), "{m}");
}

#[test]
fn member_in_another_lag_of_the_same_switch_is_a_split() {
    // eth1 answered by the same switch, but from a LAG with key 79.
    let t = text("proc-8023ad-negotiated.txt");
    let (head, tail) = t.split_at(t.find("Slave Interface: eth1").unwrap());
    let tail = tail
        .replacen("Aggregator ID: 1", "Aggregator ID: 2", 1)
        .replacen("oper key: 15", "oper key: 79", 1)
        .replace("port state: 63", "port state: 7");
    let s = with_bond(&format!("{head}{tail}"));
    let f = diagnose(&s, None);
    assert_eq!(
        codes(&f),
        [(FindingCode::LacpAggregatorSplit, "bond0/eth1")]
    );
    assert!(
        f[0].message
            .contains("aggregator 2, not in bond0's active aggregator 1 (eth0)"),
        "{}",
        f[0].message
    );
    assert!(
        f[0].message.contains("key 79") && f[0].message.contains("another LAG"),
        "{}",
        f[0].message
    );
}

#[test]
fn expired_partner() {
    let s = with_bond(&text("proc-8023ad-expired.txt"));
    let f = diagnose(&s, None);
    assert_eq!(codes(&f), [(FindingCode::LacpNoPartner, "bond0/eth1")]);
    assert!(
        f[0].message
            .contains("no LACPDU received within the timeout (defaulted, expired)"),
        "{}",
        f[0].message
    );
}

#[test]
fn expired_with_a_partner_recorded_means_lacpdus_stopped() {
    let t = text("proc-8023ad-negotiated.txt");
    let (head, tail) = t.split_at(t.find("Slave Interface: eth1").unwrap());
    // Actor: expired, not defaulted; the partner still recorded.
    let s = with_bond(&format!(
        "{head}{}",
        tail.replacen("port state: 63", "port state: 135", 1)
    ));
    let f = diagnose(&s, None);
    assert_eq!(codes(&f), [(FindingCode::LacpNoPartner, "bond0/eth1")]);
    assert!(
        f[0].message.contains("stopped arriving (expired)"),
        "{}",
        f[0].message
    );
}

#[test]
fn member_down_and_bond_down() {
    let s = with_bond(&text("proc-8023ad-member-down.txt"));
    let f = diagnose(&s, None);
    assert_eq!(
        codes(&f),
        [
            (FindingCode::LacpNoPartner, "bond0/eth2"),
            (FindingCode::MemberDown, "bond0/eth1"),
        ]
    );
    assert_eq!(f[1].severity, Severity::Warning);
    assert!(
        f[1].message.contains("1 link failure(s)"),
        "{}",
        f[1].message
    );
    assert!(
        f[1].message.contains("runs on eth0, eth2 only"),
        "{}",
        f[1].message
    );

    let ab = with_bond(&text("proc-active-backup-failover.txt"));
    assert_eq!(
        codes(&diagnose(&ab, None)),
        [(FindingCode::MemberDown, "bond0/eth0")]
    );

    // The cable just pulled: the NIC lost carrier, the bond's MII check
    // has not polled yet (MII still up): down already.
    let mut pulled = with_bond(&text("proc-8023ad-negotiated.txt"));
    pulled.bonds[0].members[1].carrier = Some(false);
    let f = diagnose(&pulled, None);
    assert_eq!(codes(&f), [(FindingCode::MemberDown, "bond0/eth1")]);
    assert!(
        f[0].message.contains("(no carrier, MII status up"),
        "{}",
        f[0].message
    );

    let all_down =
        text("proc-active-backup-failover.txt").replace("MII Status: up", "MII Status: down");
    let f = diagnose(&with_bond(&all_down), None);
    assert_eq!(codes(&f), [(FindingCode::BondDown, "bond0")]);
    assert!(f[0].message.contains("every member"), "{}", f[0].message);

    let empty = diagnose(&with_bond(&text("proc-8023ad-empty-up.txt")), None);
    assert_eq!(codes(&empty), [(FindingCode::BondDown, "bond0")]);
    assert!(empty[0].message.contains("no members"));
}

#[test]
fn not_in_sync_and_churned() {
    let t = text("proc-8023ad-negotiated.txt");
    let (head, tail) = t.split_at(t.find("Slave Interface: eth1").unwrap());
    let out_of_sync = format!(
        "{head}{}",
        tail.replacen("port state: 63", "port state: 7", 1)
    );
    let f = diagnose(&with_bond(&out_of_sync), None);
    assert_eq!(codes(&f), [(FindingCode::LacpNotInSync, "bond0/eth1")]);
    assert!(f[0].message.contains("actor 0x07"), "{}", f[0].message);

    let churned = format!(
        "{head}{}",
        tail.replacen(
            "Partner Churn State: monitoring",
            "Partner Churn State: churned",
            1
        )
        .replacen("Partner Churned Count: 0", "Partner Churned Count: 3", 1)
    );
    let f = diagnose(&with_bond(&churned), None);
    assert_eq!(codes(&f), [(FindingCode::LacpChurned, "bond0/eth1")]);
    assert!(
        f[0].message.contains("the partner's side"),
        "{}",
        f[0].message
    );
    assert!(f[0].message.contains("0 / 3"), "{}", f[0].message);
}

#[test]
fn netlink_only_view_still_finds_the_split() {
    // Without CAP_NET_ADMIN, procfs has no partner details: the diagnosis
    // works from the states and aggregator ids.
    let mut b = bond_from(&text("proc-8023ad-nonlag-member.txt"));
    for m in &mut b.members {
        m.partner = None;
        if let Some(a) = m.actor.as_mut() {
            a.system_mac = None;
        }
    }
    let s = HostStatus {
        ovs_bonds: Vec::new(),
        bonds: vec![b],
        ..HostStatus::default()
    };
    assert_eq!(
        codes(&diagnose(&s, None)),
        [(FindingCode::LacpNoPartner, "bond0/eth2")]
    );
}

#[test]
fn lldp_wrong_neighbor_port_and_switch() {
    let s = with_lldp("json0-lab-switch.json", &["eth0", "eth1"], 1500);
    let i = intent(&[("eth0", "sw1", "Ethernet2"), ("eth1", "sw2", "Ethernet2")]);
    let f = diagnose(&s, Some(&i));
    assert_eq!(
        codes(&f),
        [
            (FindingCode::LldpWrongNeighbor, "eth0"),
            (FindingCode::LldpWrongNeighbor, "eth1"),
        ]
    );
    assert!(
        f[0].message.contains(
            "cabled to sw1 port Ethernet1 (\"to srv eth0\") (LLDP), not to sw1 port Ethernet2"
        ),
        "{}",
        f[0].message
    );
    assert!(
        f[0].message.ends_with("the right switch, the wrong port"),
        "{}",
        f[0].message
    );
    assert!(
        f[1].message.ends_with("the wrong switch"),
        "{}",
        f[1].message
    );
}

#[test]
fn lldp_matches_fqdn_and_port_description() {
    let s = with_lldp("json0-injected-rich.json", &["eth0"], 1500);
    // leaf7.dc1 is leaf7; the port is matched by id, or by description.
    for i in [
        intent(&[("eth0", "leaf7", "Ethernet48")]),
        intent(&[("eth0", "LEAF7.dc1", "ethernet48")]),
        intent(&[("eth0", "leaf7", "srv42 eth0")]),
    ] {
        assert_eq!(diagnose(&s, Some(&i)), vec![], "{i:?}");
    }
    let f = diagnose(&s, Some(&intent(&[("eth0", "leaf7.dc2", "Ethernet48")])));
    assert_eq!(codes(&f), [(FindingCode::LldpWrongNeighbor, "eth0")]);
}

#[test]
fn lldp_no_neighbor_missing_nic_and_unavailable() {
    let mut s = with_lldp("json0-lab-switch.json", &["eth0", "eth1", "eth2"], 1500);
    // eth2 has a link but no neighbour; no intent: a warning.
    assert_eq!(
        codes(&diagnose(&s, None)),
        [(FindingCode::LldpNoNeighbor, "eth2")]
    );
    // With intent, and without a link.
    s.nics[2].carrier = Some(false);
    assert_eq!(diagnose(&s, None), vec![]);
    let i = intent(&[
        ("eth0", "sw1", "Ethernet1"),
        ("eth1", "sw1", "Ethernet2"),
        ("eth2", "sw1", "Ethernet3"),
        ("eth7", "sw1", "Ethernet7"),
    ]);
    let f = diagnose(&s, Some(&i));
    assert_eq!(
        codes(&f),
        [
            (FindingCode::NicMissing, "eth7"),
            (FindingCode::NicNoLink, "eth2")
        ]
    );
    assert!(
        f[1].message
            .contains("has no link (it should be cabled to sw1 port Ethernet3)"),
        "{}",
        f[1].message
    );
    // Without a link, the neighbour lldpd still remembers is not checked:
    // eth1 hears sw1 Ethernet2, the intent says Ethernet3 for eth2, but a
    // NIC without link gets the link finding only.
    let mut stale = s.clone();
    stale.nics[2].lldp = stale.nics[1].lldp.clone();
    assert_eq!(
        codes(&diagnose(&stale, Some(&i))),
        [
            (FindingCode::NicMissing, "eth7"),
            (FindingCode::NicNoLink, "eth2")
        ]
    );
    // And the link is checked when LLDP could not be read at all.
    stale.lldp = LldpSource::Unavailable {
        reason: "test".into(),
    };
    assert!(codes(&diagnose(&stale, Some(&i))).contains(&(FindingCode::NicNoLink, "eth2")));
    // A bond member's link is the bond's finding.
    stale.nics[2].bond = Some("bond0".into());
    assert!(!codes(&diagnose(&stale, Some(&i))).contains(&(FindingCode::NicNoLink, "eth2")));
    s.nics[2].carrier = Some(true);
    let f = diagnose(&s, Some(&i));
    assert!(
        f[1].message
            .contains("hears no LLDP neighbour (it should be cabled to sw1 port Ethernet3)"),
        "{}",
        f[1].message
    );

    s.lldp = LldpSource::Unavailable {
        reason: "lldpcli: no such file".into(),
    };
    let f = diagnose(&s, Some(&i));
    assert_eq!(
        codes(&f),
        [
            (FindingCode::NicMissing, "eth7"),
            (FindingCode::LldpUnavailable, "lldp")
        ]
    );
    assert!(
        f[1].message.contains("eth0, eth1, eth2, eth7"),
        "{}",
        f[1].message
    );
    // Without intent, an unavailable lldpd is not a finding (nothing to check).
    assert_eq!(diagnose(&s, None), vec![]);
}

#[test]
fn lldp_several_neighbors() {
    let mut s = with_lldp("json0-lab-switch.json", &["eth0", "eth1"], 1500);
    let other = s.nics[1].lldp[0].clone();
    s.nics[0].lldp.push(other);
    let f = diagnose(&s, Some(&intent(&[("eth0", "sw1", "Ethernet1")])));
    assert_eq!(codes(&f), [(FindingCode::LldpSeveralNeighbors, "eth0")]);
    assert!(
        f[0].message.contains("2 LLDP neighbours"),
        "{}",
        f[0].message
    );
}

#[test]
fn lldp_mtu_mismatch() {
    // eth1's neighbour accepts 1518-byte frames: MTU 9000 does not fit.
    let s = with_lldp("json0-injected-rich.json", &["eth0", "eth1"], 9000);
    let f = diagnose(&s, None);
    assert_eq!(codes(&f), [(FindingCode::LldpMtuMismatch, "eth1")]);
    assert_eq!(f[0].severity, Severity::Error);
    assert!(
        f[0].message.contains("MTU 9000 (frames up to 9018 bytes")
            && f[0].message.contains("at most 1518"),
        "{}",
        f[0].message
    );
    // 1500 fits 1518 exactly.
    assert_eq!(
        diagnose(
            &with_lldp("json0-injected-rich.json", &["eth1"], 1500),
            None
        ),
        vec![]
    );
    // eth0's neighbour accepts 9236 and carries tagged VLANs: MTU 9216 fits
    // untagged (9234) but not tagged (9238).
    let f = diagnose(
        &with_lldp("json0-injected-rich.json", &["eth0"], 9216),
        None,
    );
    assert_eq!(codes(&f), [(FindingCode::LldpMtuMismatch, "eth0")]);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(f[0].message.contains("9238"), "{}", f[0].message);
}

#[test]
fn findings_are_sorted_errors_first() {
    let mut s = with_bond(&text("proc-8023ad-member-down.txt"));
    s.bonds.push(BondStatus {
        name: "bond1".into(),
        ..bond_from(&text("proc-8023ad-two-switches.txt"))
    });
    let f = diagnose(&s, None);
    let sev: Vec<Severity> = f.iter().map(|f| f.severity).collect();
    let mut sorted = sev.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(sev, sorted);
    assert_eq!(
        codes(&f),
        [
            (FindingCode::LacpNoPartner, "bond0/eth2"),
            (FindingCode::LacpPartnerMismatch, "bond1"),
            (FindingCode::MemberDown, "bond0/eth1"),
        ]
    );
}

#[test]
fn finding_and_intent_serde() {
    let i: Intent =
        serde_norway::from_str("nics:\n  eth0: {switch: sw1, port: Ethernet1}\n").unwrap();
    assert_eq!(i, intent(&[("eth0", "sw1", "Ethernet1")]));
    let e = Intent::parse("nics:\n  eth0: {switch: sw1, prot: Ethernet1}\n").unwrap_err();
    assert_eq!(e.path, "nics.eth0.prot", "{e}");
    assert!(e.to_string().contains("unknown field `prot`"), "{e}");
    assert!(Intent::parse(r#"{"nics": {"eth0": {"switch": "sw1", "port": "Ethernet1"}}}"#).is_ok());
    let f = diagnose(&with_bond(&text("proc-8023ad-static-switch.txt")), None);
    let v = serde_json::to_value(&f[0]).unwrap();
    assert_eq!(v["severity"], "error");
    assert_eq!(v["code"], "lacp-no-partner");
    assert_eq!(v["object"], "bond0");
}
