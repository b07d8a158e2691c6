//! Renders a validated [`FirewallSpec`] into the complete nftables table hostd
//! owns (`inet hostd`), as a value ([`Ruleset`]) and as nft script text.
//!
//! Layout of the table:
//!
//! - named interval sets for every CIDR list (`mgmt4_<hash>`,
//!   `r3_src6_<hash>`): 10,000 CIDRs are one set lookup. Lists are
//!   aggregated first (duplicates, overlaps and neighbours merged). The
//!   name carries a hash of the content, so a set whose content changes gets
//!   a new name.
//! - chain `input` (policy drop): established/related, loopback, the ICMP and
//!   ICMPv6 needed for path MTU discovery and neighbour discovery, invalid
//!   dropped, then the management exception, then the user rules in order,
//!   then a counter of what the policy drops.
//! - chain `output`: its defaults and rules only when there are outbound
//!   rules or the outbound policy is drop; otherwise empty with policy
//!   accept (it is never deleted: see [`Ruleset::reload_script`]).
//!
//! Every rule carries a counter and a comment whose first word is a tag
//! (`default:established`, `mgmt/v4`, `rule:3/v6`): `hostd firewall show`
//! maps counters back to spec rules with it ([`RuleTag::parse`]).

use std::{
    collections::BTreeSet,
    fmt::{self, Write as _},
};

use ipnet::IpNet;

use super::{
    model::{
        content_hash, merge_ranges, net_range, parse_statement, BaseChain, ChainModel, Drift,
        Model, RuleModel, SetModel,
    },
    spec::{Action, Cidr, Direction, FirewallSpec, OutboundPolicy, Protocol, Rule},
    validate::rule_families,
};

/// Family of hostd's table.
pub const FAMILY: &str = "inet";
/// Name of hostd's table. Nothing else in nftables is ever touched.
pub const TABLE: &str = "hostd";

/// Prefix of the fingerprint in the comment of the input chain's last rule
/// (`default:policy fp=0123456789abcdef input=01234567 output=89abcdef`;
/// see [`Carrier`](super::Carrier)).
pub const FINGERPRINT_KEY: &str = "fp=";

/// The complete content of hostd's table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ruleset {
    /// Named CIDR sets, in order of first use.
    pub sets: Vec<NamedSet>,
    /// `input`, then `output` when present.
    pub chains: Vec<Chain>,
    /// Hash of the sets and chains (16 hex digits, format in
    /// [`model`](super::Model::canonical_text)), also stored in the comment
    /// of the input chain's last rule.
    pub fingerprint: String,
}

/// What hostd's table holds now (read with
/// [`parse_current`](super::parse_current) or [`Current::from_model`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    /// The table exists.
    pub present: bool,
    /// Fingerprint of the ruleset the table holds: the one recorded in the
    /// input chain, and only if the table still matches it (no
    /// [`drift`](Current::drift)). `None`: absent, not hostd's, or modified
    /// by hand.
    pub fingerprint: Option<String>,
    /// The fingerprint recorded in the input chain, whether or not the table
    /// still matches it.
    pub recorded: Option<String>,
    /// Hand edits found by checking the table against what hostd recorded in
    /// it ([`Model::check`]); empty when it is as hostd wrote it.
    pub drift: Vec<Drift>,
    /// Chains of the table.
    pub chains: BTreeSet<String>,
    /// Sets of the table (listed, or referenced by its rules).
    pub sets: BTreeSet<String>,
    /// Other objects in the table (kind, name): none unless added by hand.
    pub objects: BTreeSet<(String, String)>,
    /// The table as listed.
    pub listed: Model,
    /// The elements of its sets as the kernel returned them (start keys and
    /// end markers), by set name, where the caller read them (hostd dumps
    /// them over netlink); empty otherwise. The base of an in-place list
    /// change ([`plan_element_update`](super::plan_element_update)).
    pub live_elements: std::collections::BTreeMap<String, Vec<IntervalElement>>,
}

impl Current {
    /// Checks `listed` (elements included where they were read) and sums it
    /// up.
    pub fn from_model(listed: Model) -> Self {
        let drift = listed.check();
        let recorded = listed.recorded().map(|c| c.fingerprint);
        let mut sets: BTreeSet<String> = listed.sets.keys().cloned().collect();
        sets.extend(listed.referenced_sets());
        Self {
            present: listed.present,
            fingerprint: if drift.is_empty() {
                recorded.clone()
            } else {
                None
            },
            recorded,
            drift,
            chains: listed.chains.keys().cloned().collect(),
            sets,
            objects: listed.objects.clone(),
            listed,
            live_elements: std::collections::BTreeMap::new(),
        }
    }

    /// Sets `rs` would reuse (same name) whose elements, as read, are not
    /// the ones the name stands for: an update must not keep them.
    pub fn stale_reused_sets(&self, rs: &Ruleset) -> Vec<Drift> {
        let want = rs.model();
        let mut out = Vec::new();
        for (name, w) in &want.sets {
            let Some(h) = self.listed.sets.get(name) else {
                continue;
            };
            let differs = h.odd_element.is_some()
                || matches!((&h.elements, &w.elements), (Some(a), Some(b)) if a != b);
            if differs {
                let mut d = super::diff(
                    &Model {
                        present: true,
                        sets: [(name.clone(), w.clone())].into(),
                        ..Model::default()
                    },
                    &Model {
                        present: true,
                        sets: [(name.clone(), h.clone())].into(),
                        ..Model::default()
                    },
                );
                d.retain(|d| matches!(d, Drift::SetElements { .. }));
                out.extend(d);
            }
        }
        out
    }

    /// The hand edits to report before replacing the table with `rs`: with
    /// the same fingerprint, exactly what differs from `rs` ([`diff`]);
    /// otherwise what the check without the spec found.
    ///
    /// [`diff`]: super::diff
    pub fn hand_edits(&self, rs: &Ruleset) -> Vec<Drift> {
        if !self.present {
            return Vec::new();
        }
        if self.drift.is_empty() {
            // As recorded: only a set left unused and edited can be wrong.
            return self.stale_reused_sets(rs);
        }
        if self.recorded.as_deref() == Some(rs.fingerprint.as_str()) {
            // Compared under the names the table uses (a list changed in
            // place keeps the name of the set it was first loaded in).
            let on_live = super::delta::on_live_names(rs, self);
            let exact = super::diff(&on_live.model(), &self.listed);
            if !exact.is_empty() {
                return exact;
            }
        }
        let mut edits = self.drift.clone();
        for d in self.stale_reused_sets(rs) {
            if !edits.iter().any(|e| matches!((e, &d), (Drift::SetElements { set: a, .. }, Drift::SetElements { set: b, .. }) if a == b)) {
                edits.push(d);
            }
        }
        edits
    }
}

/// A named interval set of IPv4 or IPv6 networks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamedSet {
    /// `r3_src4_1a2b3c4d`.
    pub name: String,
    /// `ipv6_addr` when true, `ipv4_addr` otherwise.
    pub v6: bool,
    /// Aggregated, sorted networks.
    pub elements: Vec<IpNet>,
}

/// One element of an interval set as the kernel stores it: a start key, or
/// the first key past a range (`end`). Built by [`NamedSet::interval_elements`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalElement {
    /// Address in network byte order (4 or 16 bytes).
    pub key: Vec<u8>,
    /// `NFT_SET_ELEM_INTERVAL_END`.
    pub end: bool,
    /// The range runs to the top of the address space (no end element follows).
    pub open: bool,
}

impl NamedSet {
    /// The elements nft itself would send for this set (as `nft --debug=netlink`
    /// shows): an end marker at 0 when the first range starts above 0, then
    /// for each network its start and the first address past it (end marker),
    /// none after a network reaching the top of the address space. Elements
    /// must be aggregated (no overlaps), as [`render`] leaves them.
    pub fn interval_elements(&self) -> Vec<IntervalElement> {
        let width = if self.v6 { 128 } else { 32 };
        let to_key = |v: u128| -> Vec<u8> {
            if self.v6 {
                v.to_be_bytes().to_vec()
            } else {
                (v as u32).to_be_bytes().to_vec()
            }
        };
        let mut ranges: Vec<(u128, Option<u128>)> = self
            .elements
            .iter()
            .map(|n| {
                let (start, host_bits) = match n {
                    IpNet::V4(n) => (
                        u128::from(u32::from(n.network())),
                        32 - u32::from(n.prefix_len()),
                    ),
                    IpNet::V6(n) => (u128::from(n.network()), 128 - u32::from(n.prefix_len())),
                };
                let size_minus_one = if host_bits >= 128 {
                    u128::MAX
                } else {
                    (1u128 << host_bits) - 1
                };
                let last = start + size_minus_one;
                let top = if width == 128 {
                    u128::MAX
                } else {
                    (1u128 << width) - 1
                };
                (start, if last >= top { None } else { Some(last + 1) })
            })
            .collect();
        ranges.sort_unstable();
        let mut out = Vec::with_capacity(ranges.len() * 2 + 1);
        if ranges.first().is_some_and(|r| r.0 != 0) {
            out.push(IntervalElement {
                key: to_key(0),
                end: true,
                open: false,
            });
        }
        for (start, end) in ranges {
            out.push(IntervalElement {
                key: to_key(start),
                end: false,
                open: end.is_none(),
            });
            if let Some(e) = end {
                out.push(IntervalElement {
                    key: to_key(e),
                    end: true,
                    open: false,
                });
            }
        }
        out
    }

    /// `{ type ipv4_addr; flags interval; elements = { ... } }` and a newline.
    fn write_body(&self, s: &mut String) {
        let _ = writeln!(s, "{{");
        let _ = writeln!(
            s,
            "\t\ttype {}",
            if self.v6 { "ipv6_addr" } else { "ipv4_addr" }
        );
        let _ = writeln!(s, "\t\tflags interval");
        s.push_str("\t\telements = { ");
        for (i, e) in self.elements.iter().enumerate() {
            if i > 0 {
                s.push_str(if i % 8 == 0 { ",\n\t\t\t" } else { ", " });
            }
            let _ = write!(s, "{e}");
        }
        s.push_str(" }\n\t}\n");
    }
}

/// A base chain of hostd's table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// `input` or `output` (also the hook).
    pub name: &'static str,
    /// Policy verdict: `drop` or `accept`.
    pub policy: &'static str,
    /// Rules in evaluation order.
    pub rules: Vec<NftRule>,
}

/// One nftables rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NftRule {
    /// Where the rule comes from; the first word of its comment.
    pub tag: RuleTag,
    /// The nft statement without the comment (`tcp dport { 22 } counter accept`).
    pub statement: String,
    /// The user's comment, if any (follows the tag in the nft comment).
    pub comment: Option<String>,
}

impl NftRule {
    /// The full nft comment: tag, then the user's comment.
    pub fn nft_comment(&self) -> String {
        match &self.comment {
            Some(c) => format!("{} {c}", self.tag),
            None => self.tag.to_string(),
        }
    }
}

/// Origin of an nftables rule, stored as the first word of its comment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleTag {
    /// A built-in default (`default:established`, `default:policy`...).
    Default(String),
    /// The protected management exception (`mgmt/v4`).
    Management(String),
    /// User rule `rules[index]`; `variant` tells the nft rules of one spec
    /// rule apart (`v4`, `v6/tcp`), empty when there is only one.
    User {
        /// Index in `firewall.rules`.
        index: usize,
        /// Sub-rule (`v4`, `v6`, `tcp`, `v4/tcp`), possibly empty.
        variant: String,
    },
}

impl fmt::Display for RuleTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default(n) => write!(f, "default:{n}"),
            Self::Management(v) => write!(f, "mgmt/{v}"),
            Self::User { index, variant } if variant.is_empty() => write!(f, "rule:{index}"),
            Self::User { index, variant } => write!(f, "rule:{index}/{variant}"),
        }
    }
}

impl RuleTag {
    /// Parses the first word of an nft comment written by [`render`];
    /// `None` for comments hostd did not write.
    pub fn parse(comment: &str) -> Option<(Self, Option<String>)> {
        let (tag, rest) = match comment.split_once(' ') {
            Some((t, r)) => (t, Some(r.to_owned())),
            None => (comment, None),
        };
        let parsed = if let Some(n) = tag.strip_prefix("default:") {
            Self::Default(n.to_owned())
        } else if let Some(v) = tag.strip_prefix("mgmt/") {
            Self::Management(v.to_owned())
        } else if let Some(r) = tag.strip_prefix("rule:") {
            let (idx, variant) = r.split_once('/').unwrap_or((r, ""));
            Self::User {
                index: idx.parse().ok()?,
                variant: variant.to_owned(),
            }
        } else {
            return None;
        };
        Some((parsed, rest))
    }
}

/// Renders `spec` (already validated). A disabled spec renders to `None`:
/// hostd's table is removed.
pub fn render(spec: &FirewallSpec) -> Option<Ruleset> {
    if !spec.enabled {
        return None;
    }
    let mut sets = Vec::new();
    let mut input = Vec::new();
    let mut output = Vec::new();
    let d = |n: &str, statement: &str| NftRule {
        tag: RuleTag::Default(n.to_owned()),
        statement: statement.to_owned(),
        comment: None,
    };

    // Defaults, before everything: nothing below can break them.
    input.push(d(
        "established",
        "ct state established,related counter accept",
    ));
    input.push(d("loopback", "iifname \"lo\" counter accept"));
    input.push(d(
        "icmp",
        "icmp type { destination-unreachable, time-exceeded, parameter-problem } counter accept",
    ));
    input.push(d(
        "icmpv6",
        "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } counter accept",
    ));
    input.push(d(
        "icmpv6-nd",
        "ip6 hoplimit 255 icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, \
         nd-neighbor-advert, nd-redirect } counter accept",
    ));
    input.push(d(
        "icmpv6-mld",
        "ip6 saddr fe80::/10 icmpv6 type mld-listener-query counter accept",
    ));
    input.push(d("invalid", "ct state invalid counter drop"));

    let outbound_chain = spec.outbound_policy == OutboundPolicy::Drop
        || spec
            .rules
            .iter()
            .any(|r| r.direction == Direction::Outbound);
    if outbound_chain {
        output.push(d(
            "established",
            "ct state established,related counter accept",
        ));
        output.push(d("loopback", "oifname \"lo\" counter accept"));
        output.push(d("icmp", "icmp type { destination-unreachable, time-exceeded, parameter-problem } counter accept"));
        output.push(d(
            "icmpv6",
            "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, \
             nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, \
             mld-listener-report, mld2-listener-report } counter accept",
        ));
    }

    // The protected management exception.
    if let Some(m) = &spec.management {
        let mut ports: Vec<(u16, u16)> = std::iter::once(m.channel_port)
            .chain(m.extra_tcp_ports.iter().copied())
            .map(|p| (p.get(), p.get()))
            .collect();
        let ports = port_set(&mut ports);
        for (v6, fam, ver) in [(false, "ip", "v4"), (true, "ip6", "v6")] {
            let Some(set) = add_set(&mut sets, "mgmt", &m.controllers, v6) else {
                continue;
            };
            input.push(NftRule {
                tag: RuleTag::Management(ver.to_owned()),
                statement: format!("{fam} saddr @{set} tcp dport {ports} counter accept"),
                comment: None,
            });
            if outbound_chain {
                output.push(NftRule {
                    tag: RuleTag::Management(ver.to_owned()),
                    statement: format!("{fam} daddr @{set} counter accept"),
                    comment: None,
                });
            }
        }
    }

    for (index, rule) in spec.rules.iter().enumerate() {
        let chain = match rule.direction {
            Direction::Inbound => &mut input,
            Direction::Outbound => &mut output,
        };
        render_rule(index, rule, &mut sets, chain);
    }

    input.push(d("policy", "counter"));
    let mut chains = vec![Chain {
        name: "input",
        policy: "drop",
        rules: input,
    }];
    // The output chain always exists (empty, policy accept, when outbound
    // filtering is off): a base chain with policy drop is never deleted
    // while in use, which the kernel cannot do without a brief window where
    // the old chain runs with no rules.
    let policy = match spec.outbound_policy {
        OutboundPolicy::Accept => "accept",
        OutboundPolicy::Drop => "drop",
    };
    if outbound_chain {
        output.push(d("policy", "counter"));
    }
    chains.push(Chain {
        name: "output",
        policy,
        rules: output,
    });
    // The fingerprint of everything else, and the hash of each chain, ride in
    // the comment of the input chain's last rule: `apply` reads them back to
    // skip unchanged rulesets and to find hand edits.
    let mut rs = Ruleset {
        sets,
        chains,
        fingerprint: String::new(),
    };
    rs.seal();
    Some(rs)
}

fn render_rule(index: usize, rule: &Rule, sets: &mut Vec<NamedSet>, chain: &mut Vec<NftRule>) {
    let iface = rule.interface.as_ref().map(|i| {
        let kw = match rule.direction {
            Direction::Inbound => "iifname",
            Direction::Outbound => "oifname",
        };
        format!("{kw} \"{}\" ", i.as_str())
    });
    let l4 = match rule.protocol {
        Protocol::Tcp | Protocol::Udp if !rule.ports.is_empty() => {
            let mut ranges: Vec<(u16, u16)> =
                rule.ports.iter().map(|r| (r.first(), r.last())).collect();
            format!(
                "{} dport {} ",
                rule.protocol.as_str(),
                port_set(&mut ranges)
            )
        }
        Protocol::Tcp => "meta l4proto tcp ".to_owned(),
        Protocol::Udp => "meta l4proto udp ".to_owned(),
        Protocol::Icmp => "meta nfproto ipv4 meta l4proto icmp ".to_owned(),
        Protocol::Icmpv6 => "meta nfproto ipv6 meta l4proto ipv6-icmp ".to_owned(),
        Protocol::Any => String::new(),
    };

    // One nft rule per address family when addresses are matched.
    let mut addr_variants: Vec<(String, String)> = Vec::new();
    if rule.sources.is_empty() && rule.destinations.is_empty() {
        addr_variants.push((String::new(), String::new()));
    } else {
        let fams = rule_families(rule);
        for (v6, fam, ver, on) in [(false, "ip", "v4", fams.v4), (true, "ip6", "v6", fams.v6)] {
            if !on {
                continue;
            }
            let mut m = String::new();
            if let Some(s) = add_set(sets, &format!("r{index}_src"), &rule.sources, v6) {
                let _ = write!(m, "{fam} saddr @{s} ");
            }
            if let Some(s) = add_set(sets, &format!("r{index}_dst"), &rule.destinations, v6) {
                let _ = write!(m, "{fam} daddr @{s} ");
            }
            addr_variants.push((ver.to_owned(), m));
        }
    }

    // Reject answers TCP with a reset and the rest with ICMP port unreachable.
    let verdicts: Vec<(&str, &str, &str)> = match (rule.action, rule.protocol) {
        (Action::Accept, _) => vec![("", "", "accept")],
        (Action::Drop, _) => vec![("", "", "drop")],
        (Action::Reject, Protocol::Tcp) => vec![("", "", "reject with tcp reset")],
        (Action::Reject, Protocol::Any) => vec![
            ("tcp", "meta l4proto tcp ", "reject with tcp reset"),
            ("other", "", "reject with icmpx port-unreachable"),
        ],
        (Action::Reject, _) => vec![("", "", "reject with icmpx port-unreachable")],
    };

    for (ver, addrs) in &addr_variants {
        for (vname, pre, verdict) in &verdicts {
            let variant = [ver.as_str(), vname]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            let statement = format!(
                "{}{pre}{l4}{addrs}counter {verdict}",
                iface.as_deref().unwrap_or("")
            );
            chain.push(NftRule {
                tag: RuleTag::User { index, variant },
                statement,
                comment: rule.comment.as_ref().map(|c| c.as_str().to_owned()),
            });
        }
    }
}

/// Adds the `v6` (or v4) part of `cidrs` as a named set; `None` when that
/// family is absent from the list.
fn add_set(sets: &mut Vec<NamedSet>, base: &str, cidrs: &[Cidr], v6: bool) -> Option<String> {
    let nets: Vec<IpNet> = cidrs
        .iter()
        .filter(|c| c.is_v4() != v6)
        .map(|c| c.net())
        .collect();
    if nets.is_empty() {
        return None;
    }
    let elements = IpNet::aggregate(&nets);
    let ranges = merge_ranges(elements.iter().map(net_range).collect());
    let name = format!(
        "{base}{}_{}",
        if v6 { 6 } else { 4 },
        content_hash(v6, &ranges)
    );
    if !sets.iter().any(|s| s.name == name) {
        sets.push(NamedSet {
            name: name.clone(),
            v6,
            elements,
        });
    }
    Some(name)
}

/// `{ 22, 8000-8080 }` with overlapping and adjacent ranges merged (nft
/// rejects overlapping intervals in one set).
fn port_set(ranges: &mut [(u16, u16)]) -> String {
    ranges.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for &(a, b) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let items: Vec<String> = merged
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    format!("{{ {} }}", items.join(", "))
}

impl Ruleset {
    /// Computes the fingerprint and writes the carrier into the comment of
    /// the input chain's last rule.
    pub(super) fn seal(&mut self) {
        let carrier = self.model().fingerprint();
        self.fingerprint.clone_from(&carrier.fingerprint);
        if let Some(last) = self.chains.first_mut().and_then(|c| c.rules.last_mut()) {
            last.comment = Some(carrier.to_string());
        }
    }

    /// The ruleset as a [`Model`], comparable with a listing
    /// ([`Model::from_listing`]).
    pub fn model(&self) -> Model {
        let mut m = Model {
            present: true,
            ..Model::default()
        };
        for s in &self.sets {
            m.sets.insert(
                s.name.clone(),
                SetModel {
                    kind: if s.v6 { "ipv6_addr" } else { "ipv4_addr" }.to_owned(),
                    flags: vec!["interval".to_owned()],
                    elements: Some(merge_ranges(s.elements.iter().map(net_range).collect())),
                    odd_element: None,
                },
            );
        }
        for c in &self.chains {
            m.chains.insert(
                c.name.to_owned(),
                ChainModel {
                    base: Some(BaseChain {
                        kind: "filter".to_owned(),
                        hook: c.name.to_owned(),
                        prio: 0,
                        policy: c.policy.to_owned(),
                    }),
                    rules: c
                        .rules
                        .iter()
                        .map(|r| RuleModel {
                            handle: None,
                            comment: Some(r.nft_comment()),
                            terms: parse_statement(&r.statement),
                        })
                        .collect(),
                },
            );
        }
        m
    }

    /// The table as an nft script block (`table inet hostd { ... }`).
    pub fn table_script(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "table {FAMILY} {TABLE} {{");
        let _ = writeln!(
            s,
            "\tcomment \"managed by hostd: replaced on every change, do not edit\""
        );
        for set in &self.sets {
            let _ = write!(s, "\tset {} ", set.name);
            set.write_body(&mut s);
        }
        for chain in &self.chains {
            let _ = writeln!(s, "\tchain {} {{", chain.name);
            let _ = writeln!(
                s,
                "\t\ttype filter hook {} priority filter; policy {};",
                chain.name, chain.policy
            );
            for r in &chain.rules {
                let _ = writeln!(s, "\t\t{} comment \"{}\"", r.statement, r.nft_comment());
            }
            s.push_str("\t}\n");
        }
        s.push_str("}\n");
        s
    }

    /// One nft transaction that replaces hostd's table and nothing else:
    /// create it if absent, delete it, create it with the new content. nft
    /// sends the whole file as one batch: the kernel applies all of it or
    /// none, and packets see either the old table or the new one.
    pub fn replace_script(&self) -> String {
        format!(
            "add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n{}",
            self.table_script()
        )
    }

    /// One nft transaction that turns the table described by `current` into
    /// this ruleset without reloading unchanged sets: new sets are added,
    /// chains are flushed and refilled. Sets no longer used are left for
    /// [`Ruleset::cleanup_script`], sent after this one commits.
    /// Set names carry a hash of their content, so a set of the same name
    /// holds the same elements. Like [`Ruleset::replace_script`] it is one
    /// batch: packets see the old rules or the new ones, never neither.
    pub fn update_script(&self, current: &Current) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "add table {FAMILY} {TABLE}");
        for set in self
            .sets
            .iter()
            .filter(|set| !current.sets.contains(&set.name))
        {
            let _ = write!(s, "add set {FAMILY} {TABLE} {} ", set.name);
            set.write_body(&mut s);
        }
        for chain in &self.chains {
            let _ = writeln!(
                s,
                "add chain {FAMILY} {TABLE} {0} {{ type filter hook {0} priority filter; policy {1}; }}",
                chain.name, chain.policy
            );
            if current.chains.contains(chain.name) {
                let _ = writeln!(s, "flush chain {FAMILY} {TABLE} {}", chain.name);
            }
        }
        for old in current
            .chains
            .iter()
            .filter(|c| !self.chains.iter().any(|d| d.name == c.as_str()))
        {
            let _ = writeln!(s, "flush chain {FAMILY} {TABLE} {old}");
            let _ = writeln!(s, "delete chain {FAMILY} {TABLE} {old}");
        }
        for chain in &self.chains {
            for r in &chain.rules {
                let _ = writeln!(
                    s,
                    "add rule {FAMILY} {TABLE} {} {} comment \"{}\"",
                    chain.name,
                    r.statement,
                    r.nft_comment()
                );
            }
        }
        s
    }

    /// The second transaction of an update: deletes the sets of `current`
    /// this ruleset no longer uses; `None` when there are none.
    ///
    /// It is separate because a set must not be deleted in the transaction
    /// that stops using it: a packet already traversing the old rules when
    /// that transaction commits may still look the old set up, and the lab
    /// measured such lookups failing (an allowed SYN dropped) when the set
    /// was deleted in the same batch. Once the switch has committed, no rule
    /// references these sets.
    pub fn cleanup_script(&self, current: &Current) -> Option<String> {
        let mut s = String::new();
        for old in current
            .sets
            .iter()
            .filter(|n| !self.sets.iter().any(|d| &d.name == *n))
        {
            let _ = writeln!(s, "delete set {FAMILY} {TABLE} {old}");
        }
        (!s.is_empty()).then_some(s)
    }

    /// A full rewrite of hostd's table that keeps its base chains: one nft
    /// transaction that flushes every rule, deletes every set, chain and
    /// object of `current` hostd does not render, and recreates all sets and
    /// rules. Used for `--force`, to repair a table modified by hand, and
    /// when an [`update_script`](Ruleset::update_script) was refused.
    ///
    /// Deleting a live base chain whose policy is drop (as `delete table`
    /// does) leaves a window of microseconds after the commit in which
    /// packets still traverse the old chain, now without rules, and get its
    /// drop policy; the lab measured such drops. Keeping the chains avoids it.
    pub fn reload_script(&self, current: &Current) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "add table {FAMILY} {TABLE}");
        for chain in &self.chains {
            let _ = writeln!(
                s,
                "add chain {FAMILY} {TABLE} {0} {{ type filter hook {0} priority filter; policy {1}; }}",
                chain.name, chain.policy
            );
        }
        // Chains are flushed one by one: `flush table` would also flush the
        // sets' elements, and a packet already traversing the old rules can
        // look a set up after the commit: it must still find the elements.
        for chain in &current.chains {
            let _ = writeln!(s, "flush chain {FAMILY} {TABLE} {chain}");
        }
        for old in current
            .chains
            .iter()
            .filter(|c| !self.chains.iter().any(|d| d.name == c.as_str()))
        {
            let _ = writeln!(s, "delete chain {FAMILY} {TABLE} {old}");
        }
        // Maps, named counters... only a hand edit puts there: no rule uses
        // them once the chains are flushed.
        for (kind, name) in &current.objects {
            let _ = writeln!(s, "delete {kind} {FAMILY} {TABLE} {name}");
        }
        for old in &current.sets {
            let _ = writeln!(s, "delete set {FAMILY} {TABLE} {old}");
        }
        for set in &self.sets {
            let _ = write!(s, "add set {FAMILY} {TABLE} {} ", set.name);
            set.write_body(&mut s);
        }
        for chain in &self.chains {
            for r in &chain.rules {
                let _ = writeln!(
                    s,
                    "add rule {FAMILY} {TABLE} {} {} comment \"{}\"",
                    chain.name,
                    r.statement,
                    r.nft_comment()
                );
            }
        }
        s
    }

    /// Number of CIDR set elements (after aggregation).
    pub fn element_count(&self) -> usize {
        self.sets.iter().map(|s| s.elements.len()).sum()
    }
}

/// One nft transaction that removes hostd's table if present (and succeeds
/// when it is absent); nothing else is touched.
pub fn remove_script() -> String {
    format!("add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
}
