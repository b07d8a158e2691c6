//! OVS bond and LACP status as ovs-vswitchd reports it on its control
//! socket: parsers for the text of `bond/show`, `lacp/show` and
//! `lacp/show-stats` (OVS 3.1; the commands have no JSON output there), and
//! a diagnosis. Status is only ever read.
//!
//! The parsers are line-based and tolerant: unknown lines are skipped, a
//! malformed value leaves its field unset, and one odd bond never hides
//! the others.

use serde::{Deserialize, Serialize};

/// One OVS bond, merged from `bond/show`, `lacp/show`, `lacp/show-stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OvsBondStatus {
    pub name: String,
    /// `bond_mode`.
    pub mode: Option<String>,
    /// `lacp_status`: negotiated, configured, off.
    pub lacp_status: Option<String>,
    pub updelay_ms: Option<u64>,
    pub downdelay_ms: Option<u64>,
    /// The member carrying traffic (active-backup), or the one named
    /// "active member".
    pub active_member: Option<String>,
    /// From `lacp/show`: our system id and LACP rate.
    pub lacp: Option<LacpBond>,
    pub members: Vec<OvsMemberStatus>,
}

/// The bond-level part of `lacp/show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LacpBond {
    /// `status: active negotiated` -> ["active", "negotiated"].
    pub status: Vec<String>,
    pub sys_id: Option<String>,
    pub aggregation_key: Option<u64>,
    pub lacp_time: Option<String>,
}

/// One member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OvsMemberStatus {
    pub name: String,
    /// `bond/show`: enabled / disabled.
    pub enabled: bool,
    pub may_enable: Option<bool>,
    pub active: bool,
    /// `Interface.lacp_current` from OVSDB (filled by the backend).
    pub lacp_current: Option<bool>,
    /// `lacp/show`.
    pub lacp: Option<LacpMember>,
    /// `lacp/show-stats`.
    pub stats: Option<LacpStats>,
}

/// A member's LACP state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LacpMember {
    /// `member: X: current attached` -> ["current", "attached"]
    /// (or expired, defaulted, detached).
    pub state: Vec<String>,
    pub actor_state: Vec<String>,
    pub actor_key: Option<u64>,
    pub partner_sys_id: Option<String>,
    pub partner_key: Option<u64>,
    pub partner_port_id: Option<u64>,
    pub partner_state: Vec<String>,
}

/// A member's LACP counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LacpStats {
    pub tx_pdus: u64,
    pub rx_pdus: u64,
    pub rx_bad_pdus: u64,
    pub link_expired: u64,
    pub link_defaulted: u64,
    pub carrier_changes: u64,
}

/// Splits text into `---- NAME ----` sections.
fn sections(text: &str) -> Vec<(String, Vec<&str>)> {
    let mut out: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(h) = t
            .strip_prefix("---- ")
            .and_then(|s| s.strip_suffix(" ----"))
        {
            let name = h.trim_end_matches(" statistics").to_owned();
            out.push((name, Vec::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push(line);
        }
    }
    out
}

fn kv(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.trim().split_once(':')?;
    Some((k.trim(), v.trim()))
}

fn num(v: &str) -> Option<u64> {
    v.split_whitespace().next()?.parse().ok()
}

fn words(v: &str) -> Vec<String> {
    v.split_whitespace().map(str::to_owned).collect()
}

/// Parses `bond/show` (all bonds, or one).
pub fn parse_bond_show(text: &str) -> Vec<OvsBondStatus> {
    let mut out = Vec::new();
    for (name, lines) in sections(text) {
        let mut b = OvsBondStatus {
            name,
            ..Default::default()
        };
        let mut member: Option<OvsMemberStatus> = None;
        for line in lines {
            let t = line.trim();
            if let Some(rest) = t
                .strip_prefix("member ")
                .or_else(|| t.strip_prefix("slave "))
            {
                if let Some(m) = member.take() {
                    b.members.push(m);
                }
                let (n, state) = rest.split_once(':').unwrap_or((rest, ""));
                member = Some(OvsMemberStatus {
                    name: n.trim().to_owned(),
                    enabled: state.trim() == "enabled",
                    ..Default::default()
                });
                continue;
            }
            if let Some(m) = member.as_mut() {
                if t == "active member" || t == "active slave" {
                    m.active = true;
                } else if let Some(("may_enable", v)) = kv(t) {
                    m.may_enable = Some(v == "true");
                }
                continue;
            }
            match kv(t) {
                Some(("bond_mode", v)) => b.mode = Some(v.to_owned()),
                Some(("lacp_status", v)) => b.lacp_status = Some(v.to_owned()),
                Some(("updelay", v)) => b.updelay_ms = num(v),
                Some(("downdelay", v)) => b.downdelay_ms = num(v),
                _ => {}
            }
        }
        if let Some(m) = member.take() {
            b.members.push(m);
        }
        b.active_member = b.members.iter().find(|m| m.active).map(|m| m.name.clone());
        out.push(b);
    }
    out
}

/// One bond of `lacp/show`: name, bond part, members by name.
pub type LacpShowBond = (String, LacpBond, Vec<(String, LacpMember)>);

/// Parses `lacp/show` into the bond part and members.
pub fn parse_lacp_show(text: &str) -> Vec<LacpShowBond> {
    let mut out = Vec::new();
    for (name, lines) in sections(text) {
        let mut bond = LacpBond::default();
        let mut members: Vec<(String, LacpMember)> = Vec::new();
        for line in lines {
            let t = line.trim();
            if let Some(rest) = t
                .strip_prefix("member: ")
                .or_else(|| t.strip_prefix("slave: "))
            {
                let (n, state) = rest.split_once(':').unwrap_or((rest, ""));
                members.push((
                    n.trim().to_owned(),
                    LacpMember {
                        state: words(state),
                        ..Default::default()
                    },
                ));
                continue;
            }
            let Some((k, v)) = kv(t) else { continue };
            match members.last_mut() {
                None => match k {
                    "status" => bond.status = words(v),
                    "sys_id" => bond.sys_id = Some(v.to_owned()),
                    "aggregation key" => bond.aggregation_key = num(v),
                    "lacp_time" => bond.lacp_time = Some(v.to_owned()),
                    _ => {}
                },
                Some((_, m)) => match k {
                    "actor state" => m.actor_state = words(v),
                    "actor key" => m.actor_key = num(v),
                    "partner sys_id" => m.partner_sys_id = Some(v.to_owned()),
                    "partner key" => m.partner_key = num(v),
                    "partner port_id" => m.partner_port_id = num(v),
                    "partner state" => m.partner_state = words(v),
                    _ => {}
                },
            }
        }
        out.push((name, bond, members));
    }
    out
}

/// Parses `lacp/show-stats`.
pub fn parse_lacp_stats(text: &str) -> Vec<(String, Vec<(String, LacpStats)>)> {
    let mut out = Vec::new();
    for (name, lines) in sections(text) {
        let mut members: Vec<(String, LacpStats)> = Vec::new();
        for line in lines {
            let t = line.trim();
            if let Some(rest) = t
                .strip_prefix("member: ")
                .or_else(|| t.strip_prefix("slave: "))
            {
                members.push((
                    rest.trim_end_matches(':').trim().to_owned(),
                    LacpStats::default(),
                ));
                continue;
            }
            let (Some((_, s)), Some((k, v))) = (members.last_mut(), kv(t)) else {
                continue;
            };
            let v = num(v).unwrap_or(0);
            match k {
                "TX PDUs" => s.tx_pdus = v,
                "RX PDUs" => s.rx_pdus = v,
                "RX Bad PDUs" => s.rx_bad_pdus = v,
                "Link Expired" => s.link_expired = v,
                "Link Defaulted" => s.link_defaulted = v,
                "Carrier Status Changed" => s.carrier_changes = v,
                _ => {}
            }
        }
        out.push((name, members));
    }
    out
}

/// Merges the three outputs into one status per bond (bonds from `bond/show`).
pub fn merge(bond_show: &str, lacp_show: &str, lacp_stats: &str) -> Vec<OvsBondStatus> {
    let mut bonds = parse_bond_show(bond_show);
    let lacp = parse_lacp_show(lacp_show);
    let stats = parse_lacp_stats(lacp_stats);
    for b in &mut bonds {
        if let Some((_, lb, members)) = lacp.iter().find(|(n, _, _)| *n == b.name) {
            b.lacp = Some(lb.clone());
            for (mn, lm) in members {
                if let Some(m) = b.members.iter_mut().find(|m| &m.name == mn) {
                    m.lacp = Some(lm.clone());
                }
            }
        }
        if let Some((_, members)) = stats.iter().find(|(n, _)| *n == b.name) {
            for (mn, st) in members {
                if let Some(m) = b.members.iter_mut().find(|m| &m.name == mn) {
                    m.stats = Some(st.clone());
                }
            }
        }
    }
    bonds
}

impl OvsBondStatus {
    /// What is wrong, in words (empty when healthy): the diagnosis of
    /// `hostd status` (`status::diagnose::ovs_bond_findings`).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        crate::status::diagnose::ovs_bond_findings(self, &mut out);
        out.into_iter().map(|f| f.message).collect()
    }
}
