//! The diagnosis: what a [`HostStatus`] (and, optionally, the intended
//! cabling) says is wrong, as findings with a severity, the object and one
//! human sentence.
//!
//! Each finding names the most specific cause it can see, and a consequence
//! of a cause already named is not reported again: a member cabled to a port
//! outside the LAG is *defaulted* (no LACPDU) and therefore also alone in
//! its own aggregator; it gets the no-partner finding, not an aggregator
//! split as well. The rules:
//!
//! | code | when |
//! |---|---|
//! | `bond-down` | a bond without members, or with every member down |
//! | `member-down` | one member's MII status is down, or its NIC lost carrier |
//! | `lacp-no-partner` | 802.3ad member (up) defaulted or expired, or its partner system is all-zero: the switch port does not speak LACP; on the bond when no member has a partner (a static LAG) |
//! | `lacp-partner-mismatch` | members of one bond hear different partner systems: two switches that are not one MLAG pair |
//! | `lacp-aggregator-split` | a member with the same partner is outside the active aggregator: the switch port is in another LAG |
//! | `lacp-not-in-sync` | a member of the active aggregator is not (yet) in sync, collecting and distributing |
//! | `lacp-churned` | churn detection fired on a member with no other finding |
//!
//! Open vSwitch bonds (`HostStatus::ovs_bonds`) get the same codes, from
//! what ovs-vswitchd reports: `bond-down` (no member enabled),
//! `member-down` (a member disabled while others carry the traffic),
//! `lacp-no-partner` (LACP configured but not negotiated on the bond; a
//! member whose LACP state is not current), `lacp-partner-mismatch`.
//!
//! | code | when |
//! |---|---|
//! | `nic-missing` | the intent names a NIC this host does not have |
//! | `nic-no-link` | a NIC the intent names (not a bond member: `member-down` says it) has no carrier |
//! | `lldp-unavailable` | intent given, but lldpd could not be asked |
//! | `lldp-no-neighbor` | a NIC the intent names (or any NIC with carrier) has a link but hears no LLDP neighbour |
//! | `lldp-several-neighbors` | more than one neighbour on one NIC (something in between) |
//! | `lldp-wrong-neighbor` | the neighbour is not the intended switch and port |
//! | `lldp-mtu-mismatch` | the neighbour's announced maximum frame size is below what the NIC's MTU needs |

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use serde::{Deserialize, Serialize};

use super::{
    BondMode, BondStatus, ChurnState, HostStatus, LacpState, LldpNeighbor, LldpSource,
    MemberStatus, MiiStatus, NicStatus,
};
use crate::types::MacAddr;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth knowing; nothing is broken.
    Info,
    /// Redundancy or visibility is reduced; traffic flows.
    Warning,
    /// Misconfigured or miscabled: traffic is lost or does not use a link.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

/// What a finding is about (stable names for scripts and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingCode {
    /// No member, or every member down.
    BondDown,
    /// One member down.
    MemberDown,
    /// No LACP partner (defaulted, expired, all-zero partner).
    LacpNoPartner,
    /// Members hear different partner systems.
    LacpPartnerMismatch,
    /// A member outside the active aggregator, with the same partner.
    LacpAggregatorSplit,
    /// A member of the active aggregator not in sync/collecting/distributing.
    LacpNotInSync,
    /// Churn detected.
    LacpChurned,
    /// A NIC named by the intent is missing.
    NicMissing,
    /// A NIC named by the intent (not a bond member) has no carrier.
    NicNoLink,
    /// LLDP could not be read.
    LldpUnavailable,
    /// No LLDP neighbour.
    LldpNoNeighbor,
    /// More than one LLDP neighbour on a NIC.
    LldpSeveralNeighbors,
    /// The LLDP neighbour is not the intended switch port.
    LldpWrongNeighbor,
    /// The neighbour's maximum frame size is below the NIC's MTU.
    LldpMtuMismatch,
}

impl FindingCode {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BondDown => "bond-down",
            Self::MemberDown => "member-down",
            Self::LacpNoPartner => "lacp-no-partner",
            Self::LacpPartnerMismatch => "lacp-partner-mismatch",
            Self::LacpAggregatorSplit => "lacp-aggregator-split",
            Self::LacpNotInSync => "lacp-not-in-sync",
            Self::LacpChurned => "lacp-churned",
            Self::NicMissing => "nic-missing",
            Self::NicNoLink => "nic-no-link",
            Self::LldpUnavailable => "lldp-unavailable",
            Self::LldpNoNeighbor => "lldp-no-neighbor",
            Self::LldpSeveralNeighbors => "lldp-several-neighbors",
            Self::LldpWrongNeighbor => "lldp-wrong-neighbor",
            Self::LldpMtuMismatch => "lldp-mtu-mismatch",
        }
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// Which rule.
    pub code: FindingCode,
    /// The object: `bond0`, `bond0/eth1` (a member), `eth1` (a NIC).
    pub object: String,
    /// One sentence for a human.
    pub message: String,
}

/// The intended cabling: NIC -> switch hostname and port name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Intent {
    /// By NIC name.
    #[serde(default)]
    pub nics: BTreeMap<String, ExpectedPort>,
}

/// An intent document that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct IntentError {
    /// Field path (`nics.eth0.port`), `.` for the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Intent {
    /// Parses an intent, YAML or JSON (`nics: {eth0: {switch: sw1, port:
    /// Ethernet1}}`); errors name the field path.
    pub fn parse(text: &str) -> Result<Self, IntentError> {
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| IntentError {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }
}

/// Where a NIC should be cabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExpectedPort {
    /// The switch's hostname (its LLDP system name; an FQDN whose first
    /// label is this also matches).
    pub switch: String,
    /// The switch's port name (its LLDP port id or port description).
    pub port: String,
}

impl ExpectedPort {
    /// `switch`'s `port`.
    pub fn new(switch: &str, port: &str) -> Self {
        Self {
            switch: switch.to_owned(),
            port: port.to_owned(),
        }
    }
}

impl fmt::Display for ExpectedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} port {}", self.switch, self.port)
    }
}

/// Ethernet header and FCS around an MTU-sized payload.
pub const FRAME_OVERHEAD: u32 = 18;
/// An 802.1Q tag.
pub const VLAN_TAG: u32 = 4;

/// Diagnoses `status`, against `intent` when given. Findings come sorted:
/// errors first, then by object and code.
pub fn diagnose(status: &HostStatus, intent: Option<&Intent>) -> Vec<Finding> {
    let mut out = Vec::new();
    for b in &status.bonds {
        bond_findings(b, &mut out);
    }
    for b in &status.ovs_bonds {
        ovs_bond_findings(b, &mut out);
    }
    nic_findings(status, intent, &mut out);
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.object.cmp(&b.object))
            .then_with(|| a.code.cmp(&b.code))
    });
    out
}

fn push(
    out: &mut Vec<Finding>,
    severity: Severity,
    code: FindingCode,
    object: &str,
    message: String,
) {
    out.push(Finding {
        severity,
        code,
        object: object.to_owned(),
        message,
    });
}

fn names<'a>(members: impl IntoIterator<Item = &'a MemberStatus>) -> String {
    let v: Vec<&str> = members.into_iter().map(|m| m.name.as_str()).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// Why a member has no LACP partner, when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoPartner {
    /// Expired with a partner still recorded: its LACPDUs stopped.
    Stopped,
    /// Using the default partner values: no LACPDU received (Linux sets
    /// EXPIRED together with DEFAULTED while it waits).
    NoLacpdu { expired: bool },
    /// The partner system is all-zero.
    ZeroPartner,
}

impl NoPartner {
    fn of(m: &MemberStatus) -> Option<Self> {
        if let Some(s) = m.actor.as_ref().and_then(|a| a.state) {
            let (expired, defaulted) = (s.has(LacpState::EXPIRED), s.has(LacpState::DEFAULTED));
            if expired && !defaulted && m.partner_system().is_some() {
                return Some(Self::Stopped);
            }
            if expired || defaulted {
                return Some(Self::NoLacpdu { expired });
            }
        }
        match m.partner.as_ref().and_then(|p| p.system_mac) {
            Some(mac) if mac.is_zero() => Some(Self::ZeroPartner),
            _ => None,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Stopped => "its partner's LACPDUs stopped arriving (expired)",
            Self::NoLacpdu { expired: false } => "no LACPDU received (defaulted)",
            Self::NoLacpdu { expired: true } => {
                "no LACPDU received within the timeout (defaulted, expired)"
            }
            Self::ZeroPartner => "its partner system is 00:00:00:00:00:00",
        }
    }
}

/// The findings of one Open vSwitch bond (see the module's table).
pub fn ovs_bond_findings(b: &crate::ovs::status::OvsBondStatus, out: &mut Vec<Finding>) {
    let name = format!("ovs:{}", b.name);
    let lacp_on = b.lacp.is_some();
    let enabled: Vec<&str> = b
        .members
        .iter()
        .filter(|m| m.enabled)
        .map(|m| m.name.as_str())
        .collect();
    if lacp_on && b.lacp_status.as_deref() != Some("negotiated") {
        push(
            out,
            Severity::Error,
            FindingCode::LacpNoPartner,
            &name,
            format!(
                "OVS bond {}: LACP not negotiated (lacp_status {}): the switch ports do not answer LACP",
                b.name,
                b.lacp_status.as_deref().unwrap_or("unknown")
            ),
        );
    }
    if enabled.is_empty() {
        push(
            out,
            Severity::Error,
            FindingCode::BondDown,
            &name,
            if b.members.is_empty() {
                format!("OVS bond {}: no members", b.name)
            } else {
                format!(
                    "OVS bond {}: no member enabled: no link carries its traffic",
                    b.name
                )
            },
        );
    }
    for m in &b.members {
        let object = format!("{name}/{}", m.name);
        if !m.enabled && !enabled.is_empty() {
            push(
                out,
                Severity::Warning,
                FindingCode::MemberDown,
                &object,
                format!(
                    "OVS bond {} member {}: disabled; {} runs on {} only",
                    b.name,
                    m.name,
                    b.name,
                    enabled.join(", ")
                ),
            );
        }
        if let Some(l) = &m.lacp {
            if !l.state.iter().any(|s| s == "current") {
                push(
                    out,
                    Severity::Warning,
                    FindingCode::LacpNoPartner,
                    &object,
                    format!(
                        "OVS bond {} member {}: LACP {} (no partner PDUs in time)",
                        b.name,
                        m.name,
                        l.state.join(" ")
                    ),
                );
            }
        }
    }
    // Members answered by different partner systems: cabled to two
    // switches that are not one LAG (no MLAG), or miswired.
    let partners: BTreeSet<&str> = b
        .members
        .iter()
        .filter_map(|m| m.lacp.as_ref())
        .filter(|l| l.state.iter().any(|s| s == "current"))
        .filter_map(|l| l.partner_sys_id.as_deref())
        .collect();
    if partners.len() > 1 {
        push(
            out,
            Severity::Error,
            FindingCode::LacpPartnerMismatch,
            &name,
            format!(
                "OVS bond {}: members hear {} different partner systems ({}): not one LAG",
                b.name,
                partners.len(),
                partners.into_iter().collect::<Vec<_>>().join(", ")
            ),
        );
    }
}

fn bond_findings(b: &BondStatus, out: &mut Vec<Finding>) {
    if b.members.is_empty() {
        push(
            out,
            Severity::Error,
            FindingCode::BondDown,
            &b.name,
            format!("{} ({}) has no members", b.name, b.mode),
        );
        return;
    }
    let (up, down): (Vec<&MemberStatus>, Vec<&MemberStatus>) =
        b.members.iter().partition(|m| m.is_up());
    if up.is_empty() {
        push(
            out,
            Severity::Error,
            FindingCode::BondDown,
            &b.name,
            format!(
                "every member of {} is down ({}): no link carries its traffic",
                b.name,
                names(down.iter().copied())
            ),
        );
        return;
    }
    for m in &down {
        let failures = m
            .link_failure_count
            .map(|n| format!(", {n} link failure(s) since it joined"))
            .unwrap_or_default();
        let mii = m.mii_status.unwrap_or(MiiStatus::Down);
        let state = if m.carrier == Some(false) {
            format!("no carrier, MII status {mii}")
        } else {
            format!("MII status {mii}")
        };
        push(
            out,
            Severity::Warning,
            FindingCode::MemberDown,
            &format!("{}/{}", b.name, m.name),
            format!(
                "{} (member of {}) is down ({state}{failures}); {} runs on {} only",
                m.name,
                b.name,
                b.name,
                names(up.iter().copied())
            ),
        );
    }
    if b.mode == BondMode::Lacp {
        lacp_findings(b, &up, out);
    }
}

fn lacp_findings(b: &BondStatus, up: &[&MemberStatus], out: &mut Vec<Finding>) {
    let mut flagged: BTreeSet<&str> = BTreeSet::new();
    let no_partner: Vec<(&MemberStatus, NoPartner)> = up
        .iter()
        .filter_map(|m| NoPartner::of(m).map(|w| (*m, w)))
        .collect();
    let partnered: Vec<&MemberStatus> = up
        .iter()
        .copied()
        .filter(|m| NoPartner::of(m).is_none())
        .collect();

    // No partner anywhere: the switch side does not speak LACP.
    if !no_partner.is_empty() && partnered.is_empty() {
        let whys: Vec<String> = no_partner
            .iter()
            .map(|(m, w)| format!("{}: {}", m.name, w.text()))
            .collect();
        push(
            out,
            Severity::Error,
            FindingCode::LacpNoPartner,
            &b.name,
            format!(
                "no member of {} has an LACP partner ({}): the switch side is not configured for LACP (a static LAG, or ports outside any LAG); at most one member carries traffic",
                b.name,
                whys.join("; ")
            ),
        );
        return;
    }
    for (m, why) in &no_partner {
        flagged.insert(&m.name);
        push(
            out,
            Severity::Error,
            FindingCode::LacpNoPartner,
            &format!("{}/{}", b.name, m.name),
            format!(
                "{} hears no LACP partner ({}) while {} do: its switch port is not in the LAG (not configured for LACP, or in no LAG at all)",
                m.name,
                why.text(),
                names(partnered.iter().copied())
            ),
        );
    }

    // Members hearing different partner systems.
    let mut by_partner: BTreeMap<MacAddr, Vec<&MemberStatus>> = BTreeMap::new();
    for m in &partnered {
        if let Some(mac) = m.partner_system() {
            by_partner.entry(mac).or_default().push(m);
        }
    }
    let active = b.active_aggregator_id();
    let active_partner = b
        .lacp
        .as_ref()
        .and_then(|l| l.active_aggregator.as_ref())
        .map(|a| a.partner_mac)
        .filter(|m| !m.is_zero());
    if by_partner.len() > 1 {
        let groups: Vec<String> = by_partner
            .iter()
            .map(|(mac, ms)| format!("{} -> {mac}", names(ms.iter().copied())))
            .collect();
        let carrying = active
            .map(|id| {
                let ms: Vec<&MemberStatus> = partnered
                    .iter()
                    .copied()
                    .filter(|m| m.aggregator_id == Some(id))
                    .collect();
                format!("; only aggregator {id} ({}) carries traffic", names(ms))
            })
            .unwrap_or_default();
        push(
            out,
            Severity::Error,
            FindingCode::LacpPartnerMismatch,
            &b.name,
            format!(
                "the members of {} hear different LACP partners ({}): they are cabled to switches that are not one MLAG pair{carrying}",
                b.name,
                groups.join(", ")
            ),
        );
        // The members outside the active partner's group are explained.
        let reference = active_partner.or_else(|| {
            by_partner
                .iter()
                .max_by_key(|(_, ms)| ms.len())
                .map(|(mac, _)| *mac)
        });
        for (mac, ms) in &by_partner {
            if Some(*mac) != reference {
                flagged.extend(ms.iter().map(|m| m.name.as_str()));
            }
        }
    }

    // Members outside the active (else the most common) aggregator.
    let reference_agg = active.or_else(|| {
        let mut count: BTreeMap<u16, usize> = BTreeMap::new();
        for m in &partnered {
            if let Some(a) = m.aggregator_id {
                *count.entry(a).or_default() += 1;
            }
        }
        count.into_iter().max_by_key(|(_, n)| *n).map(|(a, _)| a)
    });
    if let Some(agg) = reference_agg {
        let inside: Vec<&MemberStatus> = partnered
            .iter()
            .copied()
            .filter(|m| m.aggregator_id == Some(agg))
            .collect();
        let inside_key = inside
            .iter()
            .find_map(|m| m.partner.as_ref().and_then(|p| p.key))
            .or_else(|| {
                b.lacp
                    .as_ref()
                    .and_then(|l| l.active_aggregator.as_ref())
                    .map(|a| a.partner_key)
            });
        for m in &partnered {
            let Some(id) = m.aggregator_id else { continue };
            if id == agg || flagged.contains(m.name.as_str()) {
                continue;
            }
            flagged.insert(&m.name);
            let key = m.partner.as_ref().and_then(|p| p.key);
            let why = match (key, inside_key) {
                (Some(k), Some(ik)) if k != ik => format!(
                    "the partner answers with key {k}, the active aggregator's with {ik}: its switch port is in another LAG"
                ),
                _ => "its switch port is not in the same LAG".to_owned(),
            };
            push(
                out,
                Severity::Error,
                FindingCode::LacpAggregatorSplit,
                &format!("{}/{}", b.name, m.name),
                format!(
                    "{} is in aggregator {id}, not in {}'s active aggregator {agg} ({}): {why}; it carries no traffic",
                    m.name,
                    b.name,
                    names(inside.iter().copied())
                ),
            );
        }
        // In the right aggregator but not (yet) carrying traffic.
        for m in &inside {
            if flagged.contains(m.name.as_str()) {
                continue;
            }
            let actor = m.actor.as_ref().and_then(|a| a.state);
            let partner = m.partner.as_ref().and_then(|p| p.state);
            let actor_ok = actor.is_none_or(|s| s.negotiated());
            let partner_ok = partner.is_none_or(|s| s.has(LacpState::NEGOTIATED));
            if actor_ok && partner_ok {
                continue;
            }
            flagged.insert(&m.name);
            let show = |s: Option<LacpState>| s.map_or("unknown".to_owned(), |s| s.to_string());
            push(
                out,
                Severity::Warning,
                FindingCode::LacpNotInSync,
                &format!("{}/{}", b.name, m.name),
                format!(
                    "{} is in the active aggregator {agg} but not in sync, collecting and distributing (actor {}, partner {}): negotiation in progress, or the partner holds it out",
                    m.name,
                    show(actor),
                    show(partner)
                ),
            );
        }
    }

    for m in up {
        if flagged.contains(m.name.as_str()) {
            continue;
        }
        let sides: Vec<&str> = [
            (m.actor_churn, "our side"),
            (m.partner_churn, "the partner's side"),
        ]
        .iter()
        .filter(|(c, _)| *c == Some(ChurnState::Churned))
        .map(|(_, s)| *s)
        .collect();
        if sides.is_empty() {
            continue;
        }
        push(
            out,
            Severity::Warning,
            FindingCode::LacpChurned,
            &format!("{}/{}", b.name, m.name),
            format!(
                "{}: LACP churn detected on {} (out of sync for more than 60 s; churned {} / {} times)",
                m.name,
                sides.join(" and "),
                m.actor_churned_count.map_or("?".into(), |n| n.to_string()),
                m.partner_churned_count.map_or("?".into(), |n| n.to_string()),
            ),
        );
    }
}

/// "sw1 port Ethernet1" for a neighbour.
fn neighbor_text(n: &LldpNeighbor) -> String {
    let system = n.system_name.as_deref().unwrap_or(&n.chassis_id.value);
    let mut s = format!("{system} port {}", n.port_id.value);
    if let Some(d) = &n.port_description {
        if !d.eq_ignore_ascii_case(&n.port_id.value) {
            s.push_str(&format!(" ({d:?})"));
        }
    }
    s
}

fn switch_matches(expected: &str, n: &LldpNeighbor) -> bool {
    let Some(name) = n.system_name.as_deref() else {
        return n.chassis_id.value.eq_ignore_ascii_case(expected);
    };
    let (a, b) = (name.to_ascii_lowercase(), expected.to_ascii_lowercase());
    a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."))
}

fn port_matches(expected: &str, n: &LldpNeighbor) -> bool {
    let id_ok = n.port_id.subtype != super::IdSubtype::Mac
        && n.port_id.value.eq_ignore_ascii_case(expected);
    id_ok
        || n.port_description
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(expected))
}

fn nic_findings(status: &HostStatus, intent: Option<&Intent>, out: &mut Vec<Finding>) {
    let empty = BTreeMap::new();
    let expected = intent.map_or(&empty, |i| &i.nics);
    for (nic, want) in expected {
        match status.nic(nic) {
            None => push(
                out,
                Severity::Error,
                FindingCode::NicMissing,
                nic,
                format!("{nic} is not on this host (it should be cabled to {want})"),
            ),
            // A bond member's link is the bond's finding (member-down).
            Some(n) if n.carrier == Some(false) && n.bond.is_none() => push(
                out,
                Severity::Warning,
                FindingCode::NicNoLink,
                nic,
                format!("{nic} has no link (it should be cabled to {want}): the cable is out, or the switch port is down"),
            ),
            Some(_) => {}
        }
    }
    match &status.lldp {
        LldpSource::Read => {}
        LldpSource::NotRead => return,
        LldpSource::Unavailable { reason } => {
            if !expected.is_empty() {
                push(
                    out,
                    Severity::Warning,
                    FindingCode::LldpUnavailable,
                    "lldp",
                    format!("LLDP neighbours could not be read ({reason}): the cabling of {} was not checked", expected.keys().cloned().collect::<Vec<_>>().join(", ")),
                );
            }
            return;
        }
    }
    for nic in &status.nics {
        let want = expected.get(&nic.name);
        // Without a link, what lldpd still remembers is stale and a missing
        // neighbour says nothing: the link finding above is the cause.
        if want.is_some() && nic.carrier == Some(false) {
            continue;
        }
        lldp_findings(nic, want, out);
    }
}

fn lldp_findings(nic: &NicStatus, want: Option<&ExpectedPort>, out: &mut Vec<Finding>) {
    let name = &nic.name;
    if nic.lldp.is_empty() {
        match (want, nic.carrier) {
            (Some(w), _) => push(
                out,
                Severity::Warning,
                FindingCode::LldpNoNeighbor,
                name,
                format!("{name} hears no LLDP neighbour (it should be cabled to {w}): the switch does not run LLDP on that port, or the cable goes elsewhere"),
            ),
            (None, Some(true)) => push(
                out,
                Severity::Warning,
                FindingCode::LldpNoNeighbor,
                name,
                format!("{name} has a link but hears no LLDP neighbour"),
            ),
            (None, _) => {}
        }
        return;
    }
    if nic.lldp.len() > 1 {
        let all: Vec<String> = nic.lldp.iter().map(neighbor_text).collect();
        push(
            out,
            Severity::Warning,
            FindingCode::LldpSeveralNeighbors,
            name,
            format!(
                "{name} hears {} LLDP neighbours ({}): something (a hub, an unmanaged switch, a passive tap) sits between it and the switch",
                nic.lldp.len(),
                all.join("; ")
            ),
        );
    }
    if let Some(w) = want {
        let ok = nic
            .lldp
            .iter()
            .any(|n| switch_matches(&w.switch, n) && port_matches(&w.port, n));
        if !ok {
            let n = &nic.lldp[0];
            let what = match (switch_matches(&w.switch, n), port_matches(&w.port, n)) {
                (true, false) => "the right switch, the wrong port",
                (false, true) => "the wrong switch",
                _ => "the wrong switch and port",
            };
            push(
                out,
                Severity::Error,
                FindingCode::LldpWrongNeighbor,
                name,
                format!(
                    "{name} is cabled to {} (LLDP), not to {w} as intended: {what}",
                    neighbor_text(n)
                ),
            );
        }
    }
    if let Some(mtu) = nic.mtu {
        for n in &nic.lldp {
            let Some(mfs) = n.max_frame_size else {
                continue;
            };
            let need = mtu + FRAME_OVERHEAD;
            let tagged = n.vlans.iter().any(|v| !v.pvid);
            if need > mfs {
                push(
                    out,
                    Severity::Error,
                    FindingCode::LldpMtuMismatch,
                    name,
                    format!(
                        "{name} has MTU {mtu} (frames up to {need} bytes, {} tagged) but {} accepts frames of at most {mfs} bytes: larger packets are dropped",
                        need + VLAN_TAG,
                        neighbor_text(n)
                    ),
                );
            } else if tagged && need + VLAN_TAG > mfs {
                push(
                    out,
                    Severity::Warning,
                    FindingCode::LldpMtuMismatch,
                    name,
                    format!(
                        "{name} has MTU {mtu}: tagged frames reach {} bytes but {} accepts at most {mfs}: full-size packets on its tagged VLANs are dropped",
                        need + VLAN_TAG,
                        neighbor_text(n)
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
