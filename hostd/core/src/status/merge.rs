//! Netlink first, procfs for the rest.
//!
//! Netlink (`IFLA_BOND_AD_INFO`, the bond port attributes) describes a
//! member's own LACP state, its aggregator id and the active aggregator's
//! partner, but on Debian 12's 6.1 kernel not a member's partner system,
//! key, port number or priority, nor the churn states and counts; those are
//! only in `/proc/net/bonding/BOND`. [`fill_from_procfs`] keeps every value
//! netlink gave and fills the gaps from the procfs text. The two are read a
//! few microseconds apart: during a renegotiation they can describe two
//! instants, which the next read corrects.

use super::{procfs, BondStatus, LacpPort, MemberStatus};

fn fill<T: Clone>(dst: &mut Option<T>, src: &Option<T>) {
    if dst.is_none() {
        dst.clone_from(src);
    }
}

fn fill_port(dst: &mut Option<LacpPort>, src: &Option<LacpPort>) {
    match (dst.as_mut(), src) {
        (_, None) => {}
        (None, Some(s)) => *dst = Some(s.clone()),
        (Some(d), Some(s)) => {
            fill(&mut d.system_priority, &s.system_priority);
            fill(&mut d.system_mac, &s.system_mac);
            fill(&mut d.key, &s.key);
            fill(&mut d.port_priority, &s.port_priority);
            fill(&mut d.port_number, &s.port_number);
            fill(&mut d.state, &s.state);
        }
    }
}

fn fill_member(dst: &mut MemberStatus, src: &MemberStatus) {
    fill(&mut dst.mii_status, &src.mii_status);
    fill(&mut dst.role, &src.role);
    fill(&mut dst.link_failure_count, &src.link_failure_count);
    fill(&mut dst.permanent_mac, &src.permanent_mac);
    fill(&mut dst.speed_mbps, &src.speed_mbps);
    fill(&mut dst.duplex, &src.duplex);
    fill(&mut dst.aggregator_id, &src.aggregator_id);
    fill_port(&mut dst.actor, &src.actor);
    fill_port(&mut dst.partner, &src.partner);
    fill(&mut dst.actor_churn, &src.actor_churn);
    fill(&mut dst.partner_churn, &src.partner_churn);
    fill(&mut dst.actor_churned_count, &src.actor_churned_count);
    fill(&mut dst.partner_churned_count, &src.partner_churned_count);
}

/// Fills what `bond` (from netlink) lacks with `procfs`'s values. Returns
/// notes on members only one source knew.
pub fn fill_from_procfs(bond: &mut BondStatus, procfs: &BondStatus) -> Vec<String> {
    let mut notes = Vec::new();
    fill(&mut bond.mii_status, &procfs.mii_status);
    fill(&mut bond.active_port, &procfs.active_port);
    fill(&mut bond.primary, &procfs.primary);
    if let Some(p) = &procfs.lacp {
        let l = bond.lacp.get_or_insert_with(Default::default);
        fill(&mut l.rate, &p.rate);
        fill(&mut l.active, &p.active);
        fill(&mut l.system_priority, &p.system_priority);
        fill(&mut l.system_mac, &p.system_mac);
        match (&mut l.active_aggregator, &p.active_aggregator) {
            (None, Some(a)) => l.active_aggregator = Some(a.clone()),
            (Some(a), Some(pa)) if pa.id == a.id => {
                fill(&mut a.partner_priority, &pa.partner_priority)
            }
            _ => {}
        }
    }
    for m in &mut bond.members {
        match procfs.members.iter().find(|p| p.name == m.name) {
            Some(p) => fill_member(m, p),
            None => notes.push(format!(
                "{}: member {} is not in /proc/net/bonding/{} (it joined between the two reads?)",
                bond.name, m.name, bond.name
            )),
        }
    }
    for p in &procfs.members {
        if !bond.members.iter().any(|m| m.name == p.name) {
            notes.push(format!(
                "{}: member {} is in /proc/net/bonding/{} only (it left between the two reads?)",
                bond.name, p.name, bond.name
            ));
        }
    }
    // The partner priority of the active aggregator, from its members.
    if let Some(a) = bond
        .lacp
        .as_mut()
        .and_then(|l| l.active_aggregator.as_mut())
    {
        if a.partner_priority.is_none() {
            a.partner_priority = procfs::partner_priority_of(&bond.members, a.id, a.partner_mac);
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{
        procfs::parse, Aggregator, BondLacp, BondMode, LacpRate, LacpState, MiiStatus, PortRole,
    };
    use crate::types::MacAddr;

    fn fixture(name: &str) -> BondStatus {
        let path = format!(
            "{}/tests/fixtures-status/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse("bond0", &text).unwrap().bond
    }

    /// What the 6.1 kernel's netlink says about the bond of
    /// `proc-8023ad-nonlag-member.txt` (from `ip -d -j link show` of the
    /// same capture, `ip-d-j-8023ad-nonlag-member.json`).
    fn netlink_view() -> BondStatus {
        let mac = |s: &str| s.parse::<MacAddr>().unwrap();
        let member = |name: &str, agg, actor, partner, perm: &str, role| MemberStatus {
            mii_status: Some(MiiStatus::Up),
            role: Some(role),
            link_failure_count: Some(0),
            permanent_mac: Some(mac(perm)),
            aggregator_id: Some(agg),
            actor: Some(LacpPort {
                state: Some(LacpState(actor)),
                ..LacpPort::default()
            }),
            partner: Some(LacpPort {
                state: Some(LacpState(partner)),
                ..LacpPort::default()
            }),
            ..MemberStatus::new(name)
        };
        BondStatus {
            mii_status: Some(MiiStatus::Up),
            lacp: Some(BondLacp {
                rate: Some(LacpRate::Fast),
                active: Some(true),
                system_priority: Some(65535),
                system_mac: None,
                active_aggregator: Some(Aggregator {
                    id: 1,
                    ports: 2,
                    actor_key: 15,
                    partner_key: 15,
                    partner_mac: mac("02:00:00:00:aa:01"),
                    partner_priority: None,
                }),
            }),
            members: vec![
                member("eth0", 1, 63, 63, "42:7e:8e:45:fc:bb", PortRole::Active),
                member("eth1", 1, 63, 63, "c2:6f:6a:b1:51:3a", PortRole::Active),
                member("eth2", 3, 71, 0, "da:55:92:29:17:43", PortRole::Backup),
            ],
            ..BondStatus::new("bond0", BondMode::Lacp)
        }
    }

    #[test]
    fn netlink_view_matches_the_captured_ip_json() {
        // The hand-written netlink view above is what `ip -d -j` printed.
        let path = format!(
            "{}/tests/fixtures-status/ip-d-j-8023ad-nonlag-member.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let links: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let nl = netlink_view();
        for l in links.as_array().unwrap() {
            let name = l["ifname"].as_str().unwrap();
            let Some(m) = nl.member(name) else { continue };
            let d = &l["linkinfo"]["info_slave_data"];
            assert_eq!(d["ad_aggregator_id"], m.aggregator_id.unwrap());
            assert_eq!(
                d["ad_actor_oper_port_state"],
                m.actor.as_ref().unwrap().state.unwrap().0
            );
            assert_eq!(
                d["ad_partner_oper_port_state"],
                m.partner.as_ref().unwrap().state.unwrap().0
            );
            assert_eq!(d["perm_hwaddr"], m.permanent_mac.unwrap().to_string());
        }
    }

    #[test]
    fn procfs_fills_partner_details_and_churn() {
        let mut b = netlink_view();
        let notes = fill_from_procfs(&mut b, &fixture("proc-8023ad-nonlag-member.txt"));
        assert!(notes.is_empty(), "{notes:?}");
        let eth1 = b.member("eth1").unwrap();
        let p = eth1.partner.as_ref().unwrap();
        assert_eq!(p.system_mac, Some("02:00:00:00:aa:01".parse().unwrap()));
        assert_eq!(p.key, Some(15));
        assert_eq!(p.port_number, Some(2));
        assert_eq!(p.port_priority, Some(255));
        assert_eq!(p.state, Some(LacpState(63)));
        assert_eq!(eth1.actor.as_ref().unwrap().port_number, Some(2));
        assert_eq!(eth1.actor_churned_count, Some(0));
        assert_eq!(eth1.speed_mbps, Some(10000));
        // Netlink's values win; the bond's system MAC came from procfs.
        assert_eq!(eth1.role, Some(PortRole::Active));
        let l = b.lacp.as_ref().unwrap();
        assert_eq!(l.system_mac, Some("42:7e:8e:45:fc:bb".parse().unwrap()));
        assert_eq!(
            l.active_aggregator.as_ref().unwrap().partner_priority,
            Some(65535)
        );
    }

    #[test]
    fn netlink_state_wins_over_procfs() {
        let mut b = netlink_view();
        let mut p = fixture("proc-8023ad-nonlag-member.txt");
        // procfs read a moment later, after eth0's partner changed state.
        p.members[0].partner.as_mut().unwrap().state = Some(LacpState(0x47));
        fill_from_procfs(&mut b, &p);
        assert_eq!(
            b.member("eth0").unwrap().partner.as_ref().unwrap().state,
            Some(LacpState(63))
        );
    }

    #[test]
    fn members_known_to_one_source_only_are_noted() {
        let mut b = netlink_view();
        b.members.retain(|m| m.name != "eth2");
        b.members.push(MemberStatus::new("eth9"));
        let notes = fill_from_procfs(&mut b, &fixture("proc-8023ad-nonlag-member.txt"));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("eth9") && notes[1].contains("eth2"));
    }

    #[test]
    fn without_netlink_lacp_procfs_provides_it() {
        let mut b = BondStatus::new("bond0", BondMode::Lacp);
        let p = fixture("proc-8023ad-negotiated.txt");
        fill_from_procfs(&mut b, &p);
        assert_eq!(b.lacp, p.lacp);
    }
}
