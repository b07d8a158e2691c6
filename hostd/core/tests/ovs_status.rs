//! Parsers of ovs-vswitchd's `bond/show`, `lacp/show`, `lacp/show-stats`
//! (OVS 3.1) and the bond diagnosis. The fixtures are real output of two
//! dummy OVS bonds over patch ports, edited to show a disabled member
//! (bonda/a1) and a defaulted LACP member (bondb/b2).

use hostd_core::ovs::status::{merge, parse_bond_show};

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures-ovs/status")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn bond_show_both_bonds() {
    let bonds = parse_bond_show(&fixture("bond-show.txt"));
    assert_eq!(bonds.len(), 2);
    let a = bonds.iter().find(|b| b.name == "bonda").expect("bonda");
    assert_eq!(a.mode.as_deref(), Some("balance-tcp"));
    assert_eq!(a.lacp_status.as_deref(), Some("negotiated"));
    assert_eq!((a.updelay_ms, a.downdelay_ms), (Some(100), Some(200)));
    assert_eq!(a.active_member.as_deref(), Some("a2"));
    assert_eq!(a.members.len(), 2);
    assert!(!a.members[0].enabled && a.members[0].may_enable == Some(false));
    assert!(a.members[1].enabled && a.members[1].active);
    // bond/show alone has no lacp/show part: only the member problem.
    assert_eq!(
        a.problems(),
        vec!["OVS bond bonda member a1: disabled; bonda runs on a2 only"]
    );
}

#[test]
fn merged_status_and_diagnosis() {
    let bonds = merge(
        &fixture("bond-show.txt"),
        &fixture("lacp-show.txt"),
        &fixture("lacp-show-stats.txt"),
    );
    let b = bonds.iter().find(|b| b.name == "bondb").expect("bondb");
    let lacp = b.lacp.as_ref().expect("lacp part");
    assert_eq!(lacp.status, vec!["active", "negotiated"]);
    assert_eq!(lacp.sys_id.as_deref(), Some("96:c4:ff:06:0f:43"));
    assert_eq!(lacp.lacp_time.as_deref(), Some("slow"));
    assert_eq!(lacp.aggregation_key, Some(1));
    let b1 = b.members[0].lacp.as_ref().expect("b1 lacp");
    assert_eq!(b1.state, vec!["current", "attached"]);
    assert_eq!(b1.partner_sys_id.as_deref(), Some("fe:f8:b2:75:6e:4e"));
    assert_eq!((b1.partner_key, b1.partner_port_id), (Some(1), Some(1)));
    assert!(b1.partner_state.contains(&"distributing".to_owned()));
    let b2 = &b.members[1];
    assert_eq!(
        b2.lacp.as_ref().expect("b2").state,
        vec!["defaulted", "detached"]
    );
    assert!(b2.lacp.as_ref().expect("b2").partner_state.is_empty());
    let st = b2.stats.as_ref().expect("b2 stats");
    assert_eq!((st.tx_pdus, st.rx_pdus, st.rx_bad_pdus), (5, 0, 1));
    assert_eq!(
        (st.link_expired, st.link_defaulted, st.carrier_changes),
        (2, 1, 3)
    );
    assert_eq!(
        b.problems(),
        vec!["OVS bond bondb member b2: LACP defaulted detached (no partner PDUs in time)"]
    );
    // bonda has no lacp/show section in the fixture.
    let a = bonds.iter().find(|b| b.name == "bonda").expect("bonda");
    assert!(a.lacp.is_none());
}

#[test]
fn two_partners_and_garbage() {
    let lacp = fixture("lacp-show.txt")
        .replace(
            "member: b2: defaulted detached",
            "member: b2: current attached",
        )
        .replace(
            "partner sys_id: 00:00:00:00:00:00",
            "partner sys_id: 02:00:00:00:00:99",
        );
    let bonds = merge(&fixture("bond-show.txt"), &lacp, "");
    let b = bonds.iter().find(|b| b.name == "bondb").expect("bondb");
    assert_eq!(
        b.problems(),
        vec!["OVS bond bondb: members hear 2 different partner systems (02:00:00:00:00:99, fe:f8:b2:75:6e:4e): not one LAG"]
    );
    // Not OVS output at all: nothing, no panic.
    assert!(parse_bond_show("no bonds here\n:::\n---- x").is_empty());
    assert!(merge("", "garbage", "----  ----").is_empty());
}
