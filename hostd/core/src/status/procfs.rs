//! The parser of `/proc/net/bonding/BOND` (`drivers/net/bonding/bond_procfs.c`).
//!
//! Written against the 6.1 kernel's text (Debian 12), which is the only
//! source there of a member's partner system, key, port number and priority
//! and of the churn counters. The `details actor lacp pdu` / `details
//! partner lacp pdu` blocks are printed only to readers with CAP_NET_ADMIN;
//! without them a member keeps its aggregator id, churn states and counts.
//!
//! Why hand-written: no crate parses this file (Telegraf and node_exporter
//! parse it in Go). The text is line-oriented `Key: value`; unknown lines are
//! skipped, and a value that does not parse is reported in
//! [`Parsed::problems`] without discarding the rest of the bond.

use super::{
    Aggregator, BondLacp, BondMode, BondStatus, ChurnState, LacpPort, LacpRate, LacpState,
    MemberStatus, MiiStatus,
};
use crate::types::MacAddr;

/// A bond parsed from its procfs text.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// What the text says.
    pub bond: BondStatus,
    /// Values that did not parse: `line N: key: value: why`.
    pub problems: Vec<String>,
}

/// The text is not a bonding status file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcfsError {
    /// No `Bonding Mode:` line.
    #[error("/proc/net/bonding/{bond}: no \"Bonding Mode\" line: not a bonding status file")]
    NotBonding {
        /// The bond's name.
        bond: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Top,
    ActiveAggregator,
    Member,
    ActorPdu,
    PartnerPdu,
}

/// Parses the text of `/proc/net/bonding/<bond>`.
pub fn parse(bond: &str, text: &str) -> Result<Parsed, ProcfsError> {
    let mut out = BondStatus::new(bond, BondMode::Other(String::new()));
    let mut problems = Vec::new();
    let mut saw_mode = false;
    let mut section = Section::Top;
    let mut agg = AggBuilder::default();
    let mut member: Option<MemberStatus> = None;

    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let lineno = i + 1;
        // Lines without a value.
        if line == "802.3ad info" {
            out.lacp.get_or_insert_with(BondLacp::default);
            continue;
        }
        if line.starts_with("bond ") && line.ends_with("has no active aggregator") {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let mut bad = |what: &str| {
            problems.push(format!("line {lineno}: {key}: {value:?}: {what}"));
        };

        match key {
            "Slave Interface" => {
                if let Some(m) = member.take() {
                    out.members.push(m);
                }
                member = Some(MemberStatus::new(value));
                section = Section::Member;
                continue;
            }
            "Active Aggregator Info" => {
                section = Section::ActiveAggregator;
                continue;
            }
            "details actor lacp pdu" if member.is_some() => {
                section = Section::ActorPdu;
                continue;
            }
            "details partner lacp pdu" if member.is_some() => {
                section = Section::PartnerPdu;
                continue;
            }
            _ => {}
        }

        match section {
            Section::Top => match key {
                "Bonding Mode" => {
                    saw_mode = true;
                    out.mode = mode_of(value);
                }
                "Primary Slave" => {
                    // "eth0 (primary_reselect always)" or "None".
                    let name = value.split_whitespace().next().unwrap_or_default();
                    if !name.is_empty() && name != "None" {
                        out.primary = Some(name.to_owned());
                    }
                }
                "Currently Active Slave" if !value.is_empty() && value != "None" => {
                    out.active_port = Some(value.to_owned());
                }
                "MII Status" => match mii_of(value) {
                    Some(m) => out.mii_status = Some(m),
                    None => bad("unknown MII status"),
                },
                "LACP active" => match value {
                    "on" => lacp(&mut out).active = Some(true),
                    "off" => lacp(&mut out).active = Some(false),
                    _ => bad("expected on or off"),
                },
                "LACP rate" => match value {
                    "fast" => lacp(&mut out).rate = Some(LacpRate::Fast),
                    "slow" => lacp(&mut out).rate = Some(LacpRate::Slow),
                    _ => bad("expected fast or slow"),
                },
                "System priority" => match value.parse() {
                    Ok(p) => lacp(&mut out).system_priority = Some(p),
                    Err(_) => bad("not a 16-bit number"),
                },
                "System MAC address" => match value.parse::<MacAddr>() {
                    Ok(m) => lacp(&mut out).system_mac = Some(m),
                    Err(e) => bad(&e),
                },
                _ => {}
            },
            Section::ActiveAggregator => {
                let n = value.parse::<u16>();
                match (key, n) {
                    ("Aggregator ID", Ok(n)) => agg.id = Some(n),
                    ("Number of ports", Ok(n)) => agg.ports = Some(n),
                    ("Actor Key", Ok(n)) => agg.actor_key = Some(n),
                    ("Partner Key", Ok(n)) => agg.partner_key = Some(n),
                    ("Partner Mac Address", _) => match value.parse::<MacAddr>() {
                        Ok(m) => agg.partner_mac = Some(m),
                        Err(e) => bad(&e),
                    },
                    ("Aggregator ID" | "Number of ports" | "Actor Key" | "Partner Key", Err(_)) => {
                        bad("not a 16-bit number")
                    }
                    _ => {}
                }
            }
            Section::Member => {
                let Some(m) = member.as_mut() else { continue };
                match key {
                    "MII Status" => match mii_of(value) {
                        Some(s) => m.mii_status = Some(s),
                        None => bad("unknown MII status"),
                    },
                    "Speed" => {
                        // "10000 Mbps" or "Unknown".
                        if let Some(n) = value.strip_suffix(" Mbps") {
                            match n.parse() {
                                Ok(n) => m.speed_mbps = Some(n),
                                Err(_) => bad("not a speed"),
                            }
                        }
                    }
                    "Duplex" if value != "unknown" => m.duplex = Some(value.to_owned()),
                    "Link Failure Count" => match value.parse() {
                        Ok(n) => m.link_failure_count = Some(n),
                        Err(_) => bad("not a number"),
                    },
                    "Permanent HW addr" => match value.parse::<MacAddr>() {
                        Ok(a) => m.permanent_mac = Some(a),
                        Err(e) => bad(&e),
                    },
                    "Aggregator ID" => match value.parse() {
                        Ok(n) => m.aggregator_id = Some(n),
                        // "N/A" when the member has no aggregator.
                        Err(_) if value == "N/A" => {}
                        Err(_) => bad("not a 16-bit number"),
                    },
                    "Actor Churn State" => match churn_of(value) {
                        Some(c) => m.actor_churn = Some(c),
                        None => bad("unknown churn state"),
                    },
                    "Partner Churn State" => match churn_of(value) {
                        Some(c) => m.partner_churn = Some(c),
                        None => bad("unknown churn state"),
                    },
                    "Actor Churned Count" => match value.parse() {
                        Ok(n) => m.actor_churned_count = Some(n),
                        Err(_) => bad("not a number"),
                    },
                    "Partner Churned Count" => match value.parse() {
                        Ok(n) => m.partner_churned_count = Some(n),
                        Err(_) => bad("not a number"),
                    },
                    _ => {}
                }
            }
            Section::ActorPdu | Section::PartnerPdu => {
                let Some(m) = member.as_mut() else { continue };
                let side = if section == Section::ActorPdu {
                    m.actor.get_or_insert_with(LacpPort::default)
                } else {
                    m.partner.get_or_insert_with(LacpPort::default)
                };
                if key == "system mac address" {
                    match value.parse::<MacAddr>() {
                        Ok(a) => side.system_mac = Some(a),
                        Err(e) => bad(&e),
                    }
                    continue;
                }
                let Ok(n) = value.parse::<u16>() else {
                    if matches!(
                        key,
                        "system priority"
                            | "port key"
                            | "oper key"
                            | "port priority"
                            | "port number"
                            | "port state"
                    ) {
                        bad("not a number");
                    }
                    continue;
                };
                match key {
                    "system priority" => side.system_priority = Some(n),
                    "port key" | "oper key" => side.key = Some(n),
                    "port priority" => side.port_priority = Some(n),
                    "port number" => side.port_number = Some(n),
                    "port state" => match u8::try_from(n) {
                        Ok(s) => side.state = Some(LacpState(s)),
                        Err(_) => bad("not an 8-bit state"),
                    },
                    _ => {}
                }
            }
        }
    }
    if let Some(m) = member.take() {
        out.members.push(m);
    }
    if !saw_mode {
        return Err(ProcfsError::NotBonding {
            bond: bond.to_owned(),
        });
    }
    if let Some(a) = agg.build() {
        let partner_priority = partner_priority_of(&out.members, a.id, a.partner_mac);
        lacp(&mut out).active_aggregator = Some(Aggregator {
            partner_priority,
            ..a
        });
    } else if agg.id.is_some() {
        problems.push("Active Aggregator Info: incomplete".to_owned());
    }
    if out.mode != BondMode::Lacp {
        out.lacp = None;
    }
    Ok(Parsed {
        bond: out,
        problems,
    })
}

/// The partner system priority the members of aggregator `id` report for
/// partner `mac`.
pub(crate) fn partner_priority_of(members: &[MemberStatus], id: u16, mac: MacAddr) -> Option<u16> {
    members
        .iter()
        .filter(|m| m.aggregator_id == Some(id))
        .filter_map(|m| m.partner.as_ref())
        .filter(|p| p.system_mac == Some(mac))
        .find_map(|p| p.system_priority)
}

fn lacp(b: &mut BondStatus) -> &mut BondLacp {
    b.lacp.get_or_insert_with(BondLacp::default)
}

#[derive(Default)]
struct AggBuilder {
    id: Option<u16>,
    ports: Option<u16>,
    actor_key: Option<u16>,
    partner_key: Option<u16>,
    partner_mac: Option<MacAddr>,
}

impl AggBuilder {
    fn build(&self) -> Option<Aggregator> {
        Some(Aggregator {
            id: self.id?,
            ports: self.ports?,
            actor_key: self.actor_key?,
            partner_key: self.partner_key?,
            partner_mac: self.partner_mac?,
            partner_priority: None,
        })
    }
}

/// `bond_mode_name()` in the kernel's bond_options.c / bond_main.c.
fn mode_of(text: &str) -> BondMode {
    match text {
        "load balancing (round-robin)" => BondMode::BalanceRr,
        "fault-tolerance (active-backup)" => BondMode::ActiveBackup,
        "load balancing (xor)" => BondMode::BalanceXor,
        "fault-tolerance (broadcast)" => BondMode::Broadcast,
        "IEEE 802.3ad Dynamic link aggregation" => BondMode::Lacp,
        "transmit load balancing" => BondMode::BalanceTlb,
        "adaptive load balancing" => BondMode::BalanceAlb,
        other => BondMode::Other(other.to_owned()),
    }
}

fn mii_of(text: &str) -> Option<MiiStatus> {
    Some(match text {
        "up" => MiiStatus::Up,
        "down" => MiiStatus::Down,
        "going down" => MiiStatus::GoingDown,
        "going back" => MiiStatus::GoingBack,
        _ => return None,
    })
}

fn churn_of(text: &str) -> Option<ChurnState> {
    Some(match text {
        "none" => ChurnState::None,
        "monitoring" => ChurnState::Monitoring,
        "churned" => ChurnState::Churned,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures-status/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn parse_ok(name: &str) -> BondStatus {
        let p = parse("bond0", &fixture(name)).unwrap();
        assert_eq!(p.problems, Vec::<String>::new(), "{name}");
        p.bond
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn negotiated_8023ad_every_field() {
        let b = parse_ok("proc-8023ad-negotiated.txt");
        assert_eq!(b.mode, BondMode::Lacp);
        assert_eq!(b.mii_status, Some(MiiStatus::Up));
        let l = b.lacp.as_ref().unwrap();
        assert_eq!(l.rate, Some(LacpRate::Fast));
        assert_eq!(l.active, Some(true));
        assert_eq!(l.system_priority, Some(65535));
        assert_eq!(l.system_mac, Some(mac("42:7e:8e:45:fc:bb")));
        assert_eq!(
            l.active_aggregator,
            Some(Aggregator {
                id: 1,
                ports: 2,
                actor_key: 15,
                partner_key: 15,
                partner_mac: mac("02:00:00:00:aa:01"),
                partner_priority: Some(65535),
            })
        );
        assert_eq!(b.members.len(), 2);
        let m = &b.members[1];
        assert_eq!(m.name, "eth1");
        assert_eq!(m.mii_status, Some(MiiStatus::Up));
        assert_eq!(m.speed_mbps, Some(10000));
        assert_eq!(m.duplex.as_deref(), Some("full"));
        assert_eq!(m.link_failure_count, Some(1));
        assert_eq!(m.permanent_mac, Some(mac("c2:6f:6a:b1:51:3a")));
        assert_eq!(m.aggregator_id, Some(1));
        assert_eq!(m.actor_churn, Some(ChurnState::Monitoring));
        assert_eq!(m.partner_churn, Some(ChurnState::Monitoring));
        assert_eq!(m.actor_churned_count, Some(0));
        assert_eq!(m.partner_churned_count, Some(0));
        assert_eq!(
            m.actor,
            Some(LacpPort {
                system_priority: Some(65535),
                system_mac: Some(mac("42:7e:8e:45:fc:bb")),
                key: Some(15),
                port_priority: Some(255),
                port_number: Some(2),
                state: Some(LacpState(63)),
            })
        );
        assert_eq!(
            m.partner,
            Some(LacpPort {
                system_priority: Some(65535),
                system_mac: Some(mac("02:00:00:00:aa:01")),
                key: Some(15),
                port_priority: Some(255),
                port_number: Some(2),
                state: Some(LacpState(63)),
            })
        );
        assert!(m.actor.as_ref().unwrap().state.unwrap().negotiated());
        assert_eq!(b.active_port, None);
    }

    #[test]
    fn member_on_a_non_lag_port_is_defaulted_in_its_own_aggregator() {
        let b = parse_ok("proc-8023ad-nonlag-member.txt");
        assert_eq!(b.members.len(), 3);
        let eth2 = b.member("eth2").unwrap();
        assert_eq!(eth2.aggregator_id, Some(3));
        let actor = eth2.actor.as_ref().unwrap().state.unwrap();
        assert!(actor.has(LacpState::DEFAULTED));
        assert!(!actor.has(LacpState::SYNCHRONIZATION));
        let partner = eth2.partner.as_ref().unwrap();
        assert_eq!(partner.system_mac, Some(MacAddr([0; 6])));
        assert_eq!(partner.state, Some(LacpState(0)));
        assert_eq!(partner.key, Some(1));
        assert_eq!(eth2.partner_system(), None);
        assert_eq!(b.active_aggregator_id(), Some(1));
    }

    #[test]
    fn member_down_keeps_its_failure_count() {
        let b = parse_ok("proc-8023ad-member-down.txt");
        let eth1 = b.member("eth1").unwrap();
        assert_eq!(eth1.mii_status, Some(MiiStatus::Down));
        assert!(!eth1.is_up());
        assert_eq!(eth1.link_failure_count, Some(1));
        assert_eq!(eth1.actor.as_ref().unwrap().state, Some(LacpState(15)));
        assert_eq!(
            b.lacp
                .as_ref()
                .unwrap()
                .active_aggregator
                .as_ref()
                .unwrap()
                .ports,
            1
        );
    }

    #[test]
    fn two_switches_two_partners() {
        let b = parse_ok("proc-8023ad-two-switches.txt");
        assert_eq!(b.active_aggregator_id(), Some(2));
        assert_eq!(
            b.member("eth0").unwrap().partner_system(),
            Some(mac("02:00:00:00:0a:01"))
        );
        assert_eq!(
            b.member("eth1").unwrap().partner_system(),
            Some(mac("02:00:00:00:0b:01"))
        );
        assert_eq!(b.member("eth0").unwrap().aggregator_id, Some(1));
    }

    #[test]
    fn static_switch_side_every_member_defaulted() {
        let b = parse_ok("proc-8023ad-static-switch.txt");
        let a = b.lacp.as_ref().unwrap().active_aggregator.clone().unwrap();
        assert!(a.partner_mac.is_zero());
        assert_eq!(a.partner_key, 1);
        // The partner priority of an all-zero partner is not a partner's.
        assert_eq!(a.partner_priority, Some(65535));
        for m in &b.members {
            let s = m.actor.as_ref().unwrap().state.unwrap();
            assert!(s.has(LacpState::DEFAULTED), "{}", m.name);
        }
    }

    #[test]
    fn active_backup_and_failover() {
        let b = parse_ok("proc-active-backup.txt");
        assert_eq!(b.mode, BondMode::ActiveBackup);
        assert_eq!(b.primary.as_deref(), Some("eth0"));
        assert_eq!(b.active_port.as_deref(), Some("eth0"));
        assert!(b.lacp.is_none());
        assert_eq!(b.members.len(), 2);
        assert!(b
            .members
            .iter()
            .all(|m| m.aggregator_id.is_none() && m.actor.is_none() && m.permanent_mac.is_some()));
        let f = parse_ok("proc-active-backup-failover.txt");
        assert_eq!(f.active_port.as_deref(), Some("eth1"));
        assert_eq!(f.member("eth0").unwrap().mii_status, Some(MiiStatus::Down));
        assert_eq!(f.member("eth0").unwrap().link_failure_count, Some(1));
    }

    #[test]
    fn other_modes_and_empty_bonds() {
        let x = parse_ok("proc-balance-xor.txt");
        assert_eq!(x.mode, BondMode::BalanceXor);
        assert_eq!(x.members.len(), 2);
        let e = parse_ok("proc-8023ad-empty-up.txt");
        assert_eq!(e.mode, BondMode::Lacp);
        assert_eq!(e.mii_status, Some(MiiStatus::Down));
        let l = e.lacp.unwrap();
        assert_eq!(l.rate, Some(LacpRate::Slow));
        assert_eq!(l.active_aggregator, None);
        assert!(e.members.is_empty());
    }

    #[test]
    fn without_cap_net_admin_no_pdu_details() {
        let b = parse_ok("proc-8023ad-nonroot.txt");
        assert_eq!(b.members.len(), 2);
        for m in &b.members {
            assert!(m.actor.is_none() && m.partner.is_none(), "{}", m.name);
            assert!(m.aggregator_id.is_some());
            assert!(m.actor_churn.is_some());
        }
        // Nor the bond's system and active aggregator: netlink has them.
        assert_eq!(
            b.lacp,
            Some(BondLacp {
                rate: Some(LacpRate::Fast),
                active: Some(true),
                ..BondLacp::default()
            })
        );
    }

    #[test]
    fn churned_after_a_minute_out_of_sync() {
        let b = parse_ok("proc-8023ad-static-churned.txt");
        assert!(
            b.members
                .iter()
                .any(|m| m.actor_churn == Some(ChurnState::Churned)),
            "{b:#?}"
        );
    }

    #[test]
    fn expired_partner_state() {
        let b = parse_ok("proc-8023ad-expired.txt");
        let eth1 = b.member("eth1").unwrap();
        assert!(eth1
            .actor
            .as_ref()
            .unwrap()
            .state
            .unwrap()
            .has(LacpState::EXPIRED));
    }

    #[test]
    fn bad_values_are_reported_and_the_rest_kept() {
        let text = fixture("proc-8023ad-negotiated.txt")
            .replacen("Link Failure Count: 0", "Link Failure Count: lots", 1)
            .replacen("port state: 63", "port state: 999", 1)
            .replacen(
                "Partner Mac Address: 02:00:00:00:aa:01",
                "Partner Mac Address: 02:00:00",
                1,
            );
        let p = parse("bond0", &text).unwrap();
        assert_eq!(p.problems.len(), 4, "{:?}", p.problems);
        assert!(
            p.problems[0].contains("Partner Mac Address"),
            "{:?}",
            p.problems
        );
        assert!(p.problems.iter().any(|x| x.contains("Link Failure Count")));
        assert!(p.problems.iter().any(|x| x.contains("port state")));
        assert!(p.problems.iter().any(|x| x.contains("incomplete")));
        // The neighbours of a bad value survive.
        assert_eq!(p.bond.members.len(), 2);
        assert_eq!(p.bond.members[0].link_failure_count, None);
        assert_eq!(p.bond.members[0].aggregator_id, Some(1));
        assert_eq!(p.bond.members[1].link_failure_count, Some(1));
    }

    #[test]
    fn not_a_bonding_file() {
        let e = parse("bond0", "hello: world\n").unwrap_err();
        assert!(e.to_string().contains("/proc/net/bonding/bond0"), "{e}");
        assert!(parse("bond0", "").is_err());
    }
}
