//! Renderings of a status with its findings: [`Report`] is the YAML/JSON
//! form (serde), [`text`] the one for people.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{
    diagnose::Finding, BondStatus, HostStatus, LacpPort, LldpNeighbor, LldpSource, MemberStatus,
};

/// What `hostd status --output yaml|json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Report {
    /// The status.
    pub status: HostStatus,
    /// The diagnosis.
    pub findings: Vec<Finding>,
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

fn port_text(p: &LacpPort) -> String {
    let mut s = String::new();
    if let Some(m) = p.system_mac {
        let _ = write!(s, "system {m}");
        if let Some(pr) = p.system_priority {
            let _ = write!(s, " prio {pr}");
        }
        s.push(' ');
    }
    let _ = write!(
        s,
        "key {} port {} prio {} state {}",
        opt(&p.key),
        opt(&p.port_number),
        opt(&p.port_priority),
        opt(&p.state)
    );
    s
}

fn member_text(out: &mut String, m: &MemberStatus) {
    let _ = write!(out, "  member {}: mii {}", m.name, opt(&m.mii_status));
    if m.carrier == Some(false) {
        out.push_str(", no carrier");
    }
    if let Some(r) = m.role {
        let _ = write!(out, ", {}", serde_plain(&r));
    }
    if let Some(n) = m.link_failure_count {
        let _ = write!(out, ", {n} link failures");
    }
    if let Some(mac) = m.permanent_mac {
        let _ = write!(out, ", permanent MAC {mac}");
    }
    if let Some(s) = m.speed_mbps {
        let _ = write!(out, ", {s} Mb/s");
    }
    if let Some(a) = m.aggregator_id {
        let _ = write!(out, ", aggregator {a}");
    }
    out.push('\n');
    if let Some(a) = &m.actor {
        let _ = writeln!(out, "    actor   {}", port_text(a));
    }
    if let Some(p) = &m.partner {
        let _ = writeln!(out, "    partner {}", port_text(p));
    }
    if m.actor_churn.is_some() || m.partner_churn.is_some() {
        let _ = writeln!(
            out,
            "    churn   actor {} ({} times), partner {} ({} times)",
            m.actor_churn.map_or("-", |c| c.as_str()),
            opt(&m.actor_churned_count),
            m.partner_churn.map_or("-", |c| c.as_str()),
            opt(&m.partner_churned_count)
        );
    }
}

/// A unit enum's serde name ("active", "fast").
fn serde_plain<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn bond_text(out: &mut String, b: &BondStatus) {
    let _ = write!(
        out,
        "bond {}: {}, mii {}",
        b.name,
        b.mode,
        opt(&b.mii_status)
    );
    if let Some(p) = &b.active_port {
        let _ = write!(out, ", active port {p}");
    }
    if let Some(p) = &b.primary {
        let _ = write!(out, ", primary {p}");
    }
    out.push('\n');
    if let Some(l) = &b.lacp {
        let _ = write!(
            out,
            "  lacp: rate {}",
            l.rate.map_or("-".to_owned(), |r| serde_plain(&r))
        );
        if let Some(a) = l.active {
            let _ = write!(out, ", {}", if a { "active" } else { "passive" });
        }
        if let Some(m) = l.system_mac {
            let _ = write!(out, ", system {m} prio {}", opt(&l.system_priority));
        }
        out.push('\n');
        match &l.active_aggregator {
            Some(a) => {
                let _ = writeln!(
                    out,
                    "  active aggregator {}: {} ports, actor key {}, partner key {}, partner {} prio {}",
                    a.id,
                    a.ports,
                    a.actor_key,
                    a.partner_key,
                    a.partner_mac,
                    opt(&a.partner_priority)
                );
            }
            None => out.push_str("  no active aggregator\n"),
        }
    }
    for m in &b.members {
        member_text(out, m);
    }
}

fn neighbor_text(out: &mut String, n: &LldpNeighbor) {
    let _ = writeln!(
        out,
        "  lldp ({}): {} (chassis {} {}) port {} ({})",
        n.via,
        n.system_name.as_deref().unwrap_or("-"),
        n.chassis_id.subtype.as_str(),
        n.chassis_id.value,
        n.port_id.value,
        n.port_id.subtype.as_str()
    );
    if let Some(d) = &n.port_description {
        let _ = writeln!(out, "    port description {d:?}");
    }
    if let Some(d) = &n.system_description {
        let _ = writeln!(out, "    system description {d:?}");
    }
    if !n.vlans.is_empty() {
        let v: Vec<String> = n
            .vlans
            .iter()
            .map(|v| {
                let mut s = v.id.to_string();
                if v.pvid {
                    s.push_str(" (pvid)");
                }
                if let Some(name) = &v.name {
                    let _ = write!(s, " {name}");
                }
                s
            })
            .collect();
        let _ = writeln!(out, "    vlans {}", v.join(", "));
    }
    if !n.management_addresses.is_empty() {
        let a: Vec<String> = n
            .management_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(out, "    management {}", a.join(", "));
    }
    let mut tail = Vec::new();
    if let Some(t) = n.ttl {
        tail.push(format!("ttl {t} s"));
    }
    if let Some(m) = n.max_frame_size {
        tail.push(format!("max frame {m}"));
    }
    if let Some(a) = n.aggregation_port_id {
        tail.push(format!("aggregated (port id {a})"));
    }
    if !tail.is_empty() {
        let _ = writeln!(out, "    {}", tail.join(", "));
    }
}

fn ovs_bond_text(out: &mut String, b: &crate::ovs::status::OvsBondStatus) {
    let _ = write!(
        out,
        "ovs bond {}: {}, lacp {}",
        b.name,
        b.mode.as_deref().unwrap_or("-"),
        b.lacp_status.as_deref().unwrap_or("-")
    );
    if let Some(l) = &b.lacp {
        let _ = write!(
            out,
            " (system {}, key {}, {} rate)",
            l.sys_id.as_deref().unwrap_or("-"),
            opt(&l.aggregation_key),
            l.lacp_time.as_deref().unwrap_or("-")
        );
    }
    if let Some(a) = &b.active_member {
        let _ = write!(out, ", active {a}");
    }
    out.push('\n');
    for m in &b.members {
        let _ = write!(
            out,
            "  member {}: {}",
            m.name,
            if m.enabled { "enabled" } else { "disabled" }
        );
        if let Some(l) = &m.lacp {
            let _ = write!(out, ", lacp {}", l.state.join(" "));
            if let Some(p) = &l.partner_sys_id {
                let _ = write!(out, ", partner {p} key {}", opt(&l.partner_key));
            }
        }
        if let Some(st) = &m.stats {
            let _ = write!(out, ", pdus tx {} rx {}", st.tx_pdus, st.rx_pdus);
        }
        out.push('\n');
    }
}

/// The status and findings as text.
pub fn text(status: &HostStatus, findings: &[Finding]) -> String {
    let mut out = String::new();
    for b in &status.bonds {
        bond_text(&mut out, b);
    }
    for b in &status.ovs_bonds {
        ovs_bond_text(&mut out, b);
    }
    for n in &status.nics {
        let _ = write!(out, "nic {}: mtu {}", n.name, opt(&n.mtu));
        match n.carrier {
            Some(true) => out.push_str(", carrier"),
            Some(false) => out.push_str(", no carrier"),
            None => {}
        }
        if let Some(b) = &n.bond {
            let _ = write!(out, ", in {b}");
        }
        out.push('\n');
        if status.lldp == LldpSource::Read && n.lldp.is_empty() {
            out.push_str("  lldp: no neighbour\n");
        }
        for l in &n.lldp {
            neighbor_text(&mut out, l);
        }
    }
    if let LldpSource::Unavailable { reason } = &status.lldp {
        let _ = writeln!(out, "lldp: unavailable ({reason})");
    }
    for note in &status.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if findings.is_empty() {
        out.push_str("findings: none\n");
    } else {
        out.push_str("findings:\n");
        for f in findings {
            let _ = writeln!(
                out,
                "  {:<7} {} {}: {}",
                f.severity.to_string(),
                f.code,
                f.object,
                f.message
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{diagnose, lldp, procfs, NicStatus};

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures-status/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn sample() -> HostStatus {
        let bond = procfs::parse("bond0", &fixture("proc-8023ad-nonlag-member.txt"))
            .unwrap()
            .bond;
        let l = lldp::parse(&fixture("json0-injected-rich.json")).unwrap();
        HostStatus {
            ovs_bonds: Vec::new(),
            bonds: vec![bond],
            nics: vec![NicStatus {
                mtu: Some(9000),
                carrier: Some(true),
                bond: Some("bond0".into()),
                lldp: l.on("eth0").into_iter().cloned().collect(),
                ..NicStatus::new("eth0")
            }],
            lldp: LldpSource::Read,
            notes: vec![],
        }
    }

    #[test]
    fn text_shows_every_part() {
        let s = sample();
        let f = diagnose(&s, None);
        let t = text(&s, &f);
        for want in [
            "bond bond0: 802.3ad, mii up\n",
            "  lacp: rate fast, active, system 42:7e:8e:45:fc:bb prio 65535\n",
            "  active aggregator 1: 2 ports, actor key 15, partner key 15, partner 02:00:00:00:aa:01 prio 65535\n",
            "  member eth2: mii up, 0 link failures, permanent MAC da:55:92:29:17:43, 10000 Mb/s, aggregator 3\n",
            "    actor   system 42:7e:8e:45:fc:bb prio 65535 key 15 port 3 prio 255 state 0x47 (activity,timeout,aggregation,defaulted)\n",
            "    partner system 00:00:00:00:00:00 prio 65535 key 1 port 1 prio 255 state 0x00\n",
            "    churn   actor monitoring (0 times), partner monitoring (0 times)\n",
            "nic eth0: mtu 9000, carrier, in bond0\n",
            "  lldp (LLDP): leaf7.dc1 (chassis mac 00:1c:73:aa:bb:07) port Ethernet48 (ifname)\n",
            "    vlans 100 wan, 200 san, 10 (pvid)\n",
            "    management 10.0.0.7, 2001:db8::7\n",
            "    ttl 120 s, max frame 9236, aggregated (port id 1000001)\n",
            "findings:\n  error   lacp-no-partner bond0/eth2: eth2 hears no LACP partner",
        ] {
            assert!(t.contains(want), "missing {want:?} in:\n{t}");
        }
    }

    #[test]
    fn yaml_and_json_round_trip() {
        let s = sample();
        let r = Report {
            findings: diagnose(&s, None),
            status: s,
        };
        let y = serde_norway::to_string(&r).unwrap();
        assert!(y.contains("mode: 802.3ad"), "{y}");
        assert!(y.contains("synchronization: true"), "{y}");
        assert_eq!(serde_norway::from_str::<Report>(&y).unwrap(), r);
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&j).unwrap(), r);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(
            v["status"]["bonds"][0]["members"][2]["partner"]["system-mac"],
            "00:00:00:00:00:00"
        );
        assert_eq!(v["status"]["lldp"]["state"], "read");
        assert_eq!(v["status"]["nics"][0]["lldp"][0]["max-frame-size"], 9236);
    }

    #[test]
    fn unavailable_lldp_and_no_findings() {
        let s = HostStatus {
            ovs_bonds: Vec::new(),
            lldp: LldpSource::Unavailable {
                reason: "no lldpd".into(),
            },
            notes: vec!["a note".into()],
            ..HostStatus::default()
        };
        assert_eq!(
            text(&s, &[]),
            "lldp: unavailable (no lldpd)\nnote: a note\nfindings: none\n"
        );
    }
}
