//! hostd's table as a comparable value ([`Model`]), built either from what
//! hostd renders ([`Ruleset::model`](super::Ruleset::model)) or from what
//! `nft -j list` shows ([`Model::from_listing`]), and what makes the two
//! comparable: the fingerprint ([`Model::fingerprint`]) and the hand-edit
//! checks ([`Model::check`] without the spec, [`diff`] with it).
//!
//! # Why a normalized model
//!
//! nft does not list a rule the way it was written: `udp dport { 53 }` comes
//! back as `udp dport 53`, `reject with icmpx port-unreachable` as `reject`,
//! `meta nfproto ipv4 meta l4proto icmp` as `meta l4proto icmp` (nft hides
//! what it treats as a dependency), sets of ICMP types in another order.
//! Every rule is therefore reduced to [`Term`]s with these differences
//! normalized away (a single value is a set of one, values sorted, `in` is
//! `==`, implied `meta nfproto`/`meta l4proto` matches dropped), on both
//! sides, by the same code. Anything hostd never writes is kept verbatim
//! ([`Term::Other`]) and so always differs.
//!
//! # The fingerprint (format v2)
//!
//! [`Model::canonical_text`] writes the model as lines:
//!
//! ```text
//! hostd-firewall v1
//! set <name> <type> <flags,...> <content hash>      sets used by a rule, by name
//! chain <name> <type> <hook> <priority> <policy>    base chains, by name
//! chain <name>                                      (a regular chain)
//! rule <chain> "<comment>" <term> <term> ...        its rules, in order
//! object <kind> <name>                              anything else in the table
//! ```
//!
//! where a rule's comment is hostd's tag plus the user's comment, except
//! that the fingerprint carrier's own `fp=... input=... output=...` words are
//! left out. The fingerprint is the first 8 bytes of the SHA-256 of that
//! text (16 hex digits); each chain's hash is the first 4 bytes of the
//! SHA-256 of its `chain` and `rule` lines. Set *elements* enter the text as
//! their content hash ([`content_hash`], the 4th word of the `set` line): a
//! set's name ends in the hash of the content it was *created* with, but
//! hostd changes the elements of a live set in place when only a CIDR list
//! changes (`plan_element_update`), so the name no longer stands for the
//! elements. SHA-256 (crate `sha2`) gives the same value on every build,
//! unlike std's `DefaultHasher`.
//!
//! The carrier is the comment of the input chain's last rule:
//! `default:policy fp=<16 hex> input=<8 hex> output=<8 hex>`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::{self, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::render::{IntervalElement, RuleTag, FAMILY, FINGERPRINT_KEY, TABLE};

/// First line of the canonical text; bumped when its format changes.
pub const FORMAT: &str = "hostd-firewall v2";

/// One expression of a rule, normalized (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Term {
    /// `key op values`: `tcp dport == {22, 8000-8080}`. `key` is `meta
    /// l4proto`, `meta iifname`, `ct state`, `ip saddr`...; `values` are
    /// sorted, duplicates removed (a single value is a set of one).
    Match {
        /// What is matched.
        key: String,
        /// `==` (also for nft's `in`), `!=`, `<`...
        op: String,
        /// Values: numbers, names, `8000-8080`, `fe80::/10`, `@set`.
        values: Vec<String>,
    },
    /// An anonymous counter (its values are not part of the rule).
    Counter,
    /// `accept`, `drop`, `reject with tcp reset`,
    /// `reject with icmpx port-unreachable`, `jump <chain>`...
    Verdict(String),
    /// Anything hostd never writes, verbatim (nft JSON, or rendered text).
    Other(String),
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Match { key, op, values } => {
                let key = match key.as_str() {
                    "meta iifname" => "iifname",
                    "meta oifname" => "oifname",
                    k => k,
                };
                f.write_str(key)?;
                if op != "==" {
                    write!(f, " {op}")?;
                }
                match values.as_slice() {
                    [one] => write!(f, " {one}"),
                    many => write!(f, " {{ {} }}", many.join(", ")),
                }
            }
            Self::Counter => f.write_str("counter"),
            Self::Verdict(v) => f.write_str(v),
            Self::Other(o) => f.write_str(o),
        }
    }
}

/// A rule's terms as one line of nft-like text.
pub fn terms_text(terms: &[Term]) -> String {
    terms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// An inclusive range of addresses (IPv4 in the low 32 bits).
pub type AddrRange = (u128, u128);

/// A named set of hostd's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetModel {
    /// `ipv4_addr`, `ipv6_addr`, or whatever nft lists.
    pub kind: String,
    /// Set flags, sorted (`interval`).
    pub flags: Vec<String>,
    /// Merged, sorted ranges; `None` when the elements were not read (a
    /// terse listing) and not checked.
    pub elements: Option<Vec<AddrRange>>,
    /// An element that is not an address, a prefix or a range (so never one
    /// hostd wrote).
    pub odd_element: Option<String>,
}

impl SetModel {
    fn v6(&self) -> bool {
        self.kind == "ipv6_addr"
    }
}

/// A base chain's type, hook, priority and policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    /// `filter`.
    pub kind: String,
    /// `input`, `output`.
    pub hook: String,
    /// Priority (`filter` is 0).
    pub prio: i64,
    /// `accept` or `drop`.
    pub policy: String,
}

impl fmt::Display for BaseChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {} hook {} priority {} policy {}",
            self.kind, self.hook, self.prio, self.policy
        )
    }
}

/// A chain and its rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainModel {
    /// `None` for a regular (non-base) chain.
    pub base: Option<BaseChain>,
    /// Rules in evaluation order.
    pub rules: Vec<RuleModel>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleModel {
    /// Kernel handle (listed rules only).
    pub handle: Option<u64>,
    /// The whole nft comment.
    pub comment: Option<String>,
    /// Normalized terms.
    pub terms: Vec<Term>,
}

impl RuleModel {
    /// The comment as it enters the fingerprint: the carrier's `fp=...`
    /// words are left out (they hold the hashes of everything else).
    pub fn canonical_comment(&self) -> Option<String> {
        let c = self.comment.as_deref()?;
        match RuleTag::parse(c) {
            Some((t @ RuleTag::Default(_), Some(rest)))
                if t == RuleTag::Default("policy".into())
                    && rest.split(' ').all(|w| w.contains('=')) =>
            {
                Some(t.to_string())
            }
            _ => Some(c.to_owned()),
        }
    }

    /// hostd's tag, when the comment starts with one.
    pub fn tag(&self) -> Option<RuleTag> {
        self.comment
            .as_deref()
            .and_then(RuleTag::parse)
            .map(|(t, _)| t)
    }

    fn describe(&self) -> String {
        let mut s = format!("`{}`", terms_text(&self.terms));
        if let Some(c) = &self.comment {
            let _ = write!(s, " (comment \"{c}\")");
        }
        s
    }
}

/// hostd's table: sets, chains, and any other object found in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// The table exists.
    pub present: bool,
    /// Named sets by name.
    pub sets: BTreeMap<String, SetModel>,
    /// Chains by name.
    pub chains: BTreeMap<String, ChainModel>,
    /// Other objects (`map`, `counter`, `flowtable`...): kind and name.
    pub objects: BTreeSet<(String, String)>,
}

/// What the fingerprint carrier records: `fp=... input=... output=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    /// Fingerprint of the whole table.
    pub fingerprint: String,
    /// Hash of each chain; empty for a table written before chain hashes
    /// were recorded.
    pub chains: BTreeMap<String, String>,
    /// Hash of the sets' elements ([`Model::sets_hash`]), `sets=`; `None`
    /// for a table written before it was recorded.
    pub sets: Option<String>,
}

impl Carrier {
    /// Parses the words after `default:policy` (`None` without `fp=`).
    pub fn parse(words: &str) -> Option<Self> {
        let mut fingerprint = None;
        let mut chains = BTreeMap::new();
        let mut sets = None;
        for w in words.split(' ') {
            if let Some(fp) = w.strip_prefix(FINGERPRINT_KEY) {
                fingerprint = Some(fp.to_owned());
            } else if let Some(h) = w.strip_prefix("sets=") {
                sets = Some(h.to_owned());
            } else if let Some((chain, hash)) = w.split_once('=') {
                chains.insert(chain.to_owned(), hash.to_owned());
            }
        }
        Some(Self {
            fingerprint: fingerprint?,
            chains,
            sets,
        })
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{FINGERPRINT_KEY}{}", self.fingerprint)?;
        for (c, h) in &self.chains {
            write!(f, " {c}={h}")?;
        }
        if let Some(h) = &self.sets {
            write!(f, " sets={h}")?;
        }
        Ok(())
    }
}

fn sha256_hex(text: &str, bytes: usize) -> String {
    sha256_hex_bytes(text.as_bytes(), bytes)
}

fn sha256_hex_bytes(text: &[u8], bytes: usize) -> String {
    let digest = Sha256::digest(text);
    digest
        .iter()
        .take(bytes)
        .fold(String::with_capacity(bytes * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The hash a set's name ends with: the first 4 bytes (8 hex digits) of the
/// SHA-256 of `<type> <range>,<range>...` (`ipv4_addr
/// 192.0.2.10,198.51.100.0-198.51.100.255`), ranges merged and sorted.
pub fn content_hash(v6: bool, ranges: &[AddrRange]) -> String {
    // The text is built in a byte buffer with IPv4 addresses written by
    // hand: `Ipv4Addr`'s `Display` (through `core::fmt`) was most of the
    // user-space cost of an apply with a 10,000-CIDR list (perf), and this
    // hash is taken for every set of every model read or rendered. The
    // text is exactly what `Display` prints (tested).
    let mut s: Vec<u8> = Vec::with_capacity(10 + ranges.len() * 32);
    s.extend_from_slice(if v6 { b"ipv6_addr " } else { b"ipv4_addr " });
    for (i, &(a, b)) in ranges.iter().enumerate() {
        if i > 0 {
            s.push(b',');
        }
        push_addr(&mut s, v6, a);
        if a != b {
            s.push(b'-');
            push_addr(&mut s, v6, b);
        }
    }
    sha256_hex_bytes(&s, 4)
}

/// Appends `v` as `Ipv4Addr`/`Ipv6Addr`'s `Display` prints it.
fn push_addr(s: &mut Vec<u8>, v6: bool, v: u128) {
    if v6 {
        let mut t = String::new();
        let _ = write!(t, "{}", Ipv6Addr::from(v));
        s.extend_from_slice(t.as_bytes());
        return;
    }
    let v = v as u32;
    for (i, shift) in [24u32, 16, 8, 0].into_iter().enumerate() {
        if i > 0 {
            s.push(b'.');
        }
        let o = (v >> shift) as u8;
        if o >= 100 {
            s.push(b'0' + o / 100);
        }
        if o >= 10 {
            s.push(b'0' + (o / 10) % 10);
        }
        s.push(b'0' + o % 10);
    }
}

/// The hash at the end of a name hostd gives its sets (`r3_src4_1a2b3c4d`):
/// family and hash, `None` for a name hostd does not make.
pub fn set_name_hash(name: &str) -> Option<(bool, &str)> {
    let (stem, hash) = name.rsplit_once('_')?;
    if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v6 = match stem.as_bytes().last()? {
        b'4' => false,
        b'6' => true,
        _ => return None,
    };
    let base = &stem[..stem.len() - 1];
    let ours = base == "mgmt"
        || base.strip_prefix('r').is_some_and(|r| {
            r.split_once('_').is_some_and(|(i, d)| {
                !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) && (d == "src" || d == "dst")
            })
        });
    ours.then_some((v6, hash))
}

fn addr(v6: bool, v: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    }
}

fn addr_value(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The range a network covers.
pub fn net_range(n: &IpNet) -> AddrRange {
    let (start, host_bits) = match n {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            32 - u32::from(n.prefix_len()),
        ),
        IpNet::V6(n) => (u128::from(n.network()), 128 - u32::from(n.prefix_len())),
    };
    let span = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    (start, start.saturating_add(span))
}

/// Sorts ranges and merges those that overlap or touch.
pub fn merge_ranges(mut r: Vec<AddrRange>) -> Vec<AddrRange> {
    r.sort_unstable();
    let mut out: Vec<AddrRange> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The ranges a set's interval elements describe, as the kernel stores
/// them (see [`NamedSet::interval_elements`](super::NamedSet::interval_elements)):
/// a start key opens a range, the next end key closes it just before
/// itself; a start with no end runs to the top of the address space; an end
/// with no start (the marker at 0) closes nothing.
pub fn ranges_from_intervals(v6: bool, elements: &[IntervalElement]) -> Vec<AddrRange> {
    let key = |k: &[u8]| k.iter().fold(0u128, |v, b| (v << 8) | u128::from(*b));
    let top = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    let mut keys: Vec<(u128, bool)> = elements.iter().map(|e| (key(&e.key), !e.end)).collect();
    // Ends before starts at the same key: [a, k) then [k, ...).
    keys.sort_unstable();
    let mut out = Vec::new();
    let mut open: Option<u128> = None;
    for (k, start) in keys {
        match (start, open) {
            (true, Some(s)) => {
                out.push((s, k.saturating_sub(1).max(s)));
                open = Some(k);
            }
            (true, None) => open = Some(k),
            (false, Some(s)) => {
                if k > s {
                    out.push((s, k - 1));
                }
                open = None;
            }
            (false, None) => {}
        }
    }
    if let Some(s) = open {
        out.push((s, top));
    }
    merge_ranges(out)
}

/// The shortest list of networks covering a range.
pub fn range_cidrs(v6: bool, (mut a, b): AddrRange) -> Vec<IpNet> {
    let width: u32 = if v6 { 128 } else { 32 };
    let mut out = Vec::new();
    loop {
        let mut bits = a.trailing_zeros().min(width);
        // Largest block aligned at `a` that stays within `b`.
        while bits > 0 {
            let last = if bits >= 128 {
                u128::MAX
            } else {
                a + ((1u128 << bits) - 1)
            };
            if last <= b {
                break;
            }
            bits -= 1;
        }
        let len = (width - bits) as u8;
        if let Ok(n) = IpNet::new(addr(v6, a), len) {
            out.push(n);
        }
        let last = if bits >= 128 {
            u128::MAX
        } else {
            a + ((1u128 << bits) - 1)
        };
        if last >= b {
            break;
        }
        a = last + 1;
    }
    out
}

fn cidr_list(v6: bool, ranges: &[AddrRange]) -> Vec<String> {
    ranges
        .iter()
        .flat_map(|r| range_cidrs(v6, *r))
        .map(|n| n.to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Terms from hostd's rendered text and from nft's JSON.

/// Canonical spelling of one value: addresses and networks reprinted,
/// quotes removed.
fn canon_value(s: &str) -> String {
    let s = s.trim().trim_matches('"');
    if let Ok(a) = s.parse::<IpAddr>() {
        return a.to_string();
    }
    if s.contains('/') {
        if let Ok(n) = s.parse::<IpNet>() {
            return n.to_string();
        }
    }
    s.to_owned()
}

fn sort_values(mut v: Vec<String>) -> Vec<String> {
    let num = |s: &str| -> Option<u64> { s.split('-').next().and_then(|x| x.parse().ok()) };
    v.sort_by(|a, b| match (num(a), num(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    });
    v.dedup();
    v
}

/// Splits a rendered statement into words, keeping `{ ... }` and `"..."`
/// whole.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                cur.push(c);
            }
            '{' if !quoted => {
                depth += 1;
                cur.push(c);
            }
            '}' if !quoted => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ' ' | '\t' | '\n' if depth == 0 && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn text_values(w: &str) -> Vec<String> {
    let inner = w
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(w);
    let items: Vec<String> = if inner.starts_with('"') {
        vec![canon_value(inner)]
    } else {
        inner
            .split(',')
            .map(canon_value)
            .filter(|x| !x.is_empty())
            .collect()
    };
    sort_values(items)
}

/// The terms of a statement as hostd renders it (`iifname "eth0" udp dport
/// { 53 } counter reject with icmpx port-unreachable`). Words it does not
/// know end the parse: the rest is one [`Term::Other`].
pub fn parse_statement(statement: &str) -> Vec<Term> {
    let w = words(statement);
    let mut terms = Vec::new();
    let mut i = 0;
    let m = |key: String, value: &str| Term::Match {
        key,
        op: "==".into(),
        values: text_values(value),
    };
    while i < w.len() {
        let rest = |from: usize| w.get(from..).map(|r| r.join(" ")).unwrap_or_default();
        match w[i].as_str() {
            "counter" => {
                terms.push(Term::Counter);
                i += 1;
            }
            v @ ("accept" | "drop") => {
                terms.push(Term::Verdict(v.to_owned()));
                i += 1;
            }
            "reject" => {
                if w.get(i + 1).map(String::as_str) == Some("with") && i + 3 < w.len() {
                    terms.push(Term::Verdict(format!(
                        "reject with {} {}",
                        w[i + 2],
                        w[i + 3]
                    )));
                    i += 4;
                } else {
                    terms.push(Term::Verdict("reject with icmpx port-unreachable".into()));
                    i += 1;
                }
            }
            k @ ("iifname" | "oifname") if i + 1 < w.len() => {
                terms.push(m(format!("meta {k}"), &w[i + 1]));
                i += 2;
            }
            p @ ("meta" | "ct" | "ip" | "ip6" | "tcp" | "udp" | "icmp" | "icmpv6")
                if i + 2 < w.len() =>
            {
                terms.push(m(format!("{p} {}", w[i + 1]), &w[i + 2]));
                i += 3;
            }
            _ => {
                terms.push(Term::Other(rest(i)));
                break;
            }
        }
    }
    normalize(terms)
}

fn json_key(left: &Value) -> Option<String> {
    if let Some(m) = left.get("meta") {
        return Some(format!("meta {}", m.get("key")?.as_str()?));
    }
    if let Some(p) = left.get("payload") {
        return Some(format!(
            "{} {}",
            p.get("protocol")?.as_str()?,
            p.get("field")?.as_str()?
        ));
    }
    if let Some(c) = left.get("ct") {
        if c.get("dir").is_some() || c.get("family").is_some() {
            return None;
        }
        return Some(format!("ct {}", c.get("key")?.as_str()?));
    }
    None
}

fn json_atom(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(canon_value(s)),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => {
            if let Some(r) = o.get("range").and_then(Value::as_array) {
                let a = json_atom(r.first()?)?;
                let b = json_atom(r.get(1)?)?;
                Some(format!("{a}-{b}"))
            } else if let Some(p) = o.get("prefix") {
                let a = p.get("addr")?.as_str()?;
                let len = p.get("len")?.as_u64()?;
                Some(canon_value(&format!("{a}/{len}")))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn json_values(right: &Value) -> Option<Vec<String>> {
    let items = match right {
        Value::Array(a) => a.iter().map(json_atom).collect::<Option<Vec<_>>>()?,
        Value::Object(o) if o.contains_key("set") => o
            .get("set")?
            .as_array()?
            .iter()
            .map(json_atom)
            .collect::<Option<Vec<_>>>()?,
        other => vec![json_atom(other)?],
    };
    Some(sort_values(items))
}

/// One expression of `nft -j` output as a [`Term`].
fn json_term(e: &Value) -> Term {
    let other = || Term::Other(e.to_string());
    let Some(obj) = e.as_object().filter(|o| o.len() == 1) else {
        return other();
    };
    let Some((kind, body)) = obj.iter().next() else {
        return other();
    };
    match kind.as_str() {
        "match" => {
            let op = body.get("op").and_then(Value::as_str).unwrap_or("==");
            let op = if op == "in" { "==" } else { op };
            match (
                body.get("left").and_then(json_key),
                body.get("right").and_then(json_values),
            ) {
                (Some(key), Some(values)) => Term::Match {
                    key,
                    op: op.to_owned(),
                    values,
                },
                _ => other(),
            }
        }
        "counter" if body.get("packets").is_some() => Term::Counter,
        "accept" | "drop" if body.is_null() => Term::Verdict(kind.clone()),
        "reject" => {
            let t = body.get("type").and_then(Value::as_str);
            let x = body.get("expr").and_then(Value::as_str);
            match (t, x) {
                (None | Some("icmpx"), None) => {
                    Term::Verdict("reject with icmpx port-unreachable".into())
                }
                (Some(t), None) => Term::Verdict(format!("reject with {t}")),
                (Some(t), Some(x)) => Term::Verdict(format!("reject with {t} {x}")),
                (None, Some(_)) => other(),
            }
        }
        "jump" | "goto" => match body.get("target").and_then(Value::as_str) {
            Some(t) => Term::Verdict(format!("{kind} {t}")),
            None => other(),
        },
        _ => other(),
    }
}

/// Drops what nft treats as dependencies (it may hide them when listing):
/// `meta nfproto` implied by an IPv4/IPv6 match in the same rule, and `meta
/// l4proto` implied by a TCP/UDP/ICMP header match or a TCP reset.
fn normalize(terms: Vec<Term>) -> Vec<Term> {
    let mut families = BTreeSet::new();
    let mut l4 = BTreeSet::new();
    for t in &terms {
        match t {
            Term::Match { key, values, .. } => {
                let proto = key.split(' ').next().unwrap_or_default();
                match proto {
                    "ip" => {
                        families.insert("ipv4");
                    }
                    "ip6" => {
                        families.insert("ipv6");
                    }
                    "tcp" | "udp" => {
                        l4.insert(proto.to_owned());
                    }
                    "icmp" => {
                        families.insert("ipv4");
                        l4.insert("icmp".to_owned());
                    }
                    "icmpv6" => {
                        families.insert("ipv6");
                        l4.insert("ipv6-icmp".to_owned());
                    }
                    _ => {}
                }
                if key == "meta l4proto" {
                    match values.as_slice() {
                        [v] if v == "icmp" => {
                            families.insert("ipv4");
                        }
                        [v] if v == "ipv6-icmp" => {
                            families.insert("ipv6");
                        }
                        _ => {}
                    }
                }
            }
            Term::Verdict(v) if v == "reject with tcp reset" => {
                l4.insert("tcp".to_owned());
            }
            _ => {}
        }
    }
    terms
        .into_iter()
        .filter(|t| match t {
            Term::Match { key, op, values } if op == "==" && values.len() == 1 => {
                let v = values[0].as_str();
                !((key == "meta nfproto" && families.contains(v))
                    || (key == "meta l4proto" && l4.contains(v)))
            }
            _ => true,
        })
        .collect()
}

/// Why `nft -j` output could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read nft JSON output: {0}")]
pub struct ListingError(pub(crate) String);

fn is_ours(o: &Value) -> bool {
    o.get("family").and_then(Value::as_str) == Some(FAMILY)
        && o.get("table").and_then(Value::as_str) == Some(TABLE)
}

fn json_elements(v6: bool, elems: &[Value]) -> Result<Vec<AddrRange>, String> {
    let mut out = Vec::with_capacity(elems.len());
    for e in elems {
        // `{"elem": {"val": ..., "comment": ...}}` wraps an element with options.
        let e = e.get("elem").and_then(|x| x.get("val")).unwrap_or(e);
        let atom = json_atom(e).ok_or_else(|| e.to_string())?;
        let range = if let Some((a, b)) = atom.split_once('-') {
            match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
                (Ok(a), Ok(b)) => (addr_value(a), addr_value(b)),
                _ => return Err(atom),
            }
        } else if let Ok(n) = atom.parse::<IpNet>() {
            net_range(&n)
        } else if let Ok(a) = atom.parse::<IpAddr>() {
            (addr_value(a), addr_value(a))
        } else {
            return Err(atom);
        };
        if v6 != atom.contains(':') {
            return Err(atom);
        }
        out.push(range);
    }
    Ok(merge_ranges(out))
}

impl Model {
    /// Reads hostd's table from `nft -j list ruleset` (other tables are
    /// ignored) or `nft -j list table inet hostd`. Set elements are read
    /// when the listing has them (not with `-t`).
    pub fn from_listing(json: &str) -> Result<Self, ListingError> {
        let mut m = Self::default();
        m.add_listing(json)?;
        Ok(m)
    }

    /// Adds what another listing shows of hostd's table.
    pub fn add_listing(&mut self, json: &str) -> Result<(), ListingError> {
        let v: Value = serde_json::from_str(json).map_err(|e| ListingError(e.to_string()))?;
        let items = v
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or_else(|| ListingError("no top-level \"nftables\" array".into()))?;
        for item in items {
            let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            if kind == "table" {
                self.present |= body.get("family").and_then(Value::as_str) == Some(FAMILY)
                    && body.get("name").and_then(Value::as_str) == Some(TABLE);
                continue;
            }
            if kind == "metainfo" || !is_ours(body) {
                continue;
            }
            self.present = true;
            let name = body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            match kind.as_str() {
                "set" => {
                    let set_kind = match body.get("type") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    let mut flags: Vec<String> = body
                        .get("flags")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect();
                    flags.sort();
                    let v6 = set_kind == "ipv6_addr";
                    let (elements, odd_element) = match body.get("elem").and_then(Value::as_array) {
                        Some(e) => match json_elements(v6, e) {
                            Ok(r) => (Some(r), None),
                            Err(odd) => (None, Some(odd)),
                        },
                        // A set listed with its elements but empty has no `elem`;
                        // a terse listing never has one.
                        None => (None, None),
                    };
                    self.sets.insert(
                        name,
                        SetModel {
                            kind: set_kind,
                            flags,
                            elements,
                            odd_element,
                        },
                    );
                }
                "chain" => {
                    let base = body.get("hook").map(|h| BaseChain {
                        kind: body
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        hook: h.as_str().unwrap_or_default().to_owned(),
                        prio: body.get("prio").and_then(Value::as_i64).unwrap_or_default(),
                        policy: body
                            .get("policy")
                            .and_then(Value::as_str)
                            .unwrap_or("accept")
                            .to_owned(),
                    });
                    self.chains.entry(name).or_default().base = base;
                }
                "rule" => {
                    let chain = body
                        .get("chain")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let terms = normalize(
                        body.get("expr")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .map(json_term)
                            .collect(),
                    );
                    self.chains.entry(chain).or_default().rules.push(RuleModel {
                        handle: body.get("handle").and_then(Value::as_u64),
                        comment: body
                            .get("comment")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        terms,
                    });
                }
                other => {
                    self.objects.insert((other.to_owned(), name));
                }
            }
        }
        Ok(())
    }

    /// Records the elements of set `name` read from the kernel (e.g. over
    /// netlink) as interval elements.
    pub fn set_interval_elements(&mut self, name: &str, elements: &[IntervalElement]) {
        if let Some(s) = self.sets.get_mut(name) {
            s.elements = Some(ranges_from_intervals(s.v6(), elements));
        }
    }

    /// Names of the sets some rule of the table looks up (`@name`).
    pub fn referenced_sets(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for c in self.chains.values() {
            for r in &c.rules {
                for t in &r.terms {
                    match t {
                        Term::Match { values, .. } => out.extend(
                            values
                                .iter()
                                .filter_map(|v| v.strip_prefix('@'))
                                .map(str::to_owned),
                        ),
                        Term::Other(o) => {
                            // A lookup hostd does not model still keeps the set in use.
                            for name in self.sets.keys() {
                                if o.contains(&format!("@{name}")) {
                                    out.insert(name.clone());
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        out
    }

    /// Sets no rule uses: they do not affect packets, are not part of the
    /// fingerprint, and the next apply that changes the table deletes them.
    pub fn unused_sets(&self) -> Vec<String> {
        let used = self.referenced_sets();
        self.sets
            .keys()
            .filter(|n| !used.contains(*n))
            .cloned()
            .collect()
    }

    fn chain_text(name: &str, c: &ChainModel) -> String {
        chain_text(name, c.base.as_ref(), c.rules.iter())
    }

    /// The canonical text the fingerprint hashes (module docs).
    pub fn canonical_text(&self) -> String {
        let mut s = format!("{FORMAT}\n");
        let used = self.referenced_sets();
        for (name, set) in self.sets.iter().filter(|(n, _)| used.contains(*n)) {
            let _ = writeln!(
                s,
                "set {} {} {}",
                set_role(name),
                set.kind,
                set.flags.join(",")
            );
        }
        for (name, c) in &self.chains {
            s.push_str(&Self::chain_text(name, c));
        }
        for (kind, name) in &self.objects {
            let _ = writeln!(s, "object {kind} {name}");
        }
        let sets = self
            .sets_hash()
            .or_else(|| self.recorded().and_then(|c| c.sets))
            .unwrap_or_else(|| "unread".to_owned());
        let _ = writeln!(s, "sets {sets}");
        s
    }

    /// The hash of the elements of the sets the rules use: the first 4
    /// bytes of the SHA-256 of one line per set, `<role> <content hash>`,
    /// in order of role. `None` when the elements of one of them were not
    /// read (a terse listing).
    pub fn sets_hash(&self) -> Option<String> {
        let used = self.referenced_sets();
        let mut lines = Vec::new();
        for (name, set) in self.sets.iter().filter(|(n, _)| used.contains(*n)) {
            let content = match (&set.odd_element, &set.elements) {
                (Some(odd), _) => format!("odd {odd}"),
                (None, Some(r)) => content_hash(set.v6(), r),
                (None, None) => return None,
            };
            lines.push(format!("{} {content}\n", set_role(name)));
        }
        lines.sort();
        Some(sha256_hex(&lines.concat(), 4))
    }

    /// The fingerprint and the hash of each chain, as the carrier records
    /// them.
    pub fn fingerprint(&self) -> Carrier {
        Carrier {
            fingerprint: sha256_hex(&self.canonical_text(), 8),
            sets: Some(
                self.sets_hash()
                    .or_else(|| self.recorded().and_then(|c| c.sets))
                    .unwrap_or_else(|| "unread".to_owned()),
            ),
            chains: self
                .chains
                .iter()
                .map(|(n, c)| (n.clone(), sha256_hex(&Self::chain_text(n, c), 4)))
                .collect(),
        }
    }

    /// The carrier found in the input chain's `default:policy` rule.
    pub fn recorded(&self) -> Option<Carrier> {
        self.chains.get("input")?.rules.iter().rev().find_map(|r| {
            match RuleTag::parse(r.comment.as_deref()?)? {
                (RuleTag::Default(d), Some(rest)) if d == "policy" => Carrier::parse(&rest),
                _ => None,
            }
        })
    }

    /// Checks the table against what hostd recorded in it, without the spec:
    /// the whole table against the fingerprint, each chain against its hash,
    /// each set's elements against the hash in its name. An absent table, or
    /// one whose every part matches, has no [`Drift`].
    pub fn check(&self) -> Vec<Drift> {
        if !self.present {
            return Vec::new();
        }
        let mut out = Vec::new();
        let used = self.referenced_sets();
        for (name, set) in self.sets.iter().filter(|(n, _)| used.contains(*n)) {
            let Some((v6, _created_with)) = set_name_hash(name) else {
                out.push(Drift::ExtraSet { set: name.clone() });
                continue;
            };
            let kind = if v6 { "ipv6_addr" } else { "ipv4_addr" };
            if set.kind != kind || set.flags != ["interval"] {
                out.push(Drift::SetType {
                    set: name.clone(),
                    now: format!("type {} flags {}", set.kind, set.flags.join(",")),
                    expected: format!("type {kind} flags interval"),
                });
            }
            if let Some(odd) = &set.odd_element {
                out.push(Drift::SetElements {
                    set: name.clone(),
                    now: vec![odd.clone()],
                    added: Vec::new(),
                    removed: Vec::new(),
                });
            }
            // The elements are checked through the fingerprint (their content
            // hash is in the canonical text): the hash in a set's name is the
            // content it was created with, and hostd changes the elements of
            // a live set in place.
        }
        let Some(rec) = self.recorded() else {
            out.push(Drift::NoFingerprint);
            return out;
        };
        if rec.chains.is_empty() || rec.sets.is_none() {
            out.push(Drift::OldFormat {
                recorded: rec.fingerprint,
            });
            return out;
        }
        let now = self.fingerprint();
        for (name, c) in &self.chains {
            match rec.chains.get(name) {
                None => out.push(Drift::ExtraChain {
                    chain: name.clone(),
                }),
                Some(h) if now.chains.get(name) != Some(h) => {
                    out.extend(explain_chain(name, c, h));
                }
                Some(_) => {}
            }
        }
        for name in rec.chains.keys() {
            if !self.chains.contains_key(name) {
                out.push(Drift::MissingChain {
                    chain: name.clone(),
                });
            }
        }
        for (kind, name) in &self.objects {
            out.push(Drift::ExtraObject {
                object: format!("{kind} {name}"),
            });
        }
        if out.is_empty() && now.fingerprint != rec.fingerprint {
            out.push(Drift::Fingerprint {
                recorded: rec.fingerprint,
                computed: now.fingerprint,
            });
        }
        out
    }
}

fn chain_text<'a>(
    name: &str,
    base: Option<&BaseChain>,
    rules: impl Iterator<Item = &'a RuleModel>,
) -> String {
    let mut s = String::new();
    match base {
        Some(b) => {
            let _ = writeln!(
                s,
                "chain {name} {} {} {} {}",
                b.kind, b.hook, b.prio, b.policy
            );
        }
        None => {
            let _ = writeln!(s, "chain {name}");
        }
    }
    for r in rules {
        let _ = writeln!(
            s,
            "rule {name} {:?} {}",
            r.canonical_comment().unwrap_or_default(),
            set_roles_in(&terms_text(&r.terms))
        );
    }
    s
}

/// The role of a set hostd names (`r0_src4` for `r0_src4_1a2b3c4d`); any
/// other name as it is.
pub fn set_role(name: &str) -> &str {
    match set_name_hash(name) {
        Some(_) => name.rsplit_once('_').map_or(name, |(r, _)| r),
        None => name,
    }
}

/// `text` with each `@<set>` reference to a set hostd names replaced by its
/// role: the fingerprint and the chain hashes do not depend on which name
/// (which creation) holds a list, only on its role and content.
fn set_roles_in(text: &str) -> String {
    text.split(' ')
        .map(|w| match w.strip_prefix('@') {
            Some(n) => {
                let end = n
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(n.len());
                format!("@{}{}", set_role(&n[..end]), &n[end..])
            }
            None => w.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What can be said of a chain whose hash is no longer `recorded`, without
/// the spec: rules hostd did not write (no tag, a second rule with a tag),
/// expressions hostd never writes, a base chain hostd would not make. Then,
/// if the chain without those extra rules hashes to `recorded` (with its
/// policy, or the other one), that was all; otherwise something else
/// changed too ([`Drift::Chain`]: a rule deleted, changed or moved).
fn explain_chain(name: &str, c: &ChainModel, recorded: &str) -> Vec<Drift> {
    let mut out = chain_anomalies(name, c);
    let kept: Vec<&RuleModel> = {
        let mut seen = BTreeSet::new();
        c.rules
            .iter()
            .filter(|r| r.tag().is_some_and(|t| seen.insert(t.to_string())))
            .collect()
    };
    let policies = match &c.base {
        Some(b) => {
            let mut p = vec![b.policy.clone()];
            p.extend(
                ["drop", "accept"]
                    .iter()
                    .filter(|x| **x != b.policy)
                    .map(|x| (*x).to_owned()),
            );
            p
        }
        None => Vec::new(),
    };
    let explained = if let Some(b) = &c.base {
        policies.iter().find_map(|p| {
            let base = BaseChain {
                policy: p.clone(),
                ..b.clone()
            };
            let text = chain_text(name, Some(&base), kept.iter().copied());
            (sha256_hex(&text, 4) == recorded).then(|| p.clone())
        })
    } else {
        let text = chain_text(name, None, kept.iter().copied());
        (sha256_hex(&text, 4) == recorded).then(String::new)
    };
    match (explained, &c.base) {
        (Some(p), Some(b)) if p != b.policy => {
            out.retain(|d| !matches!(d, Drift::ChainBase { now, .. } if now.starts_with("policy")));
            out.push(Drift::ChainBase {
                chain: name.into(),
                now: format!("policy {}", b.policy),
                expected: format!("policy {p}"),
            });
        }
        (Some(_), _) => {}
        (None, _) => out.push(Drift::Chain {
            chain: name.into(),
            more: !out.is_empty(),
        }),
    }
    out
}

/// Rules and base-chain settings hostd would not have written.
fn chain_anomalies(name: &str, c: &ChainModel) -> Vec<Drift> {
    let mut out = Vec::new();
    if let Some(b) = &c.base {
        let expected_hook = matches!(name, "input" | "output");
        if b.kind != "filter" || b.hook != name || b.prio != 0 || !expected_hook {
            out.push(Drift::ChainBase {
                chain: name.into(),
                now: b.to_string(),
                expected: format!("type filter hook {name} priority 0"),
            });
        }
        if name == "input" && b.policy != "drop" {
            out.push(Drift::ChainBase {
                chain: name.into(),
                now: format!("policy {}", b.policy),
                expected: "policy drop".into(),
            });
        }
        if name == "output" && b.policy == "drop" && c.rules.is_empty() {
            out.push(Drift::ChainBase {
                chain: name.into(),
                now: "policy drop with no rules".into(),
                expected: "the defaults and the management exception before a drop policy".into(),
            });
        }
    }
    let mut seen = BTreeSet::new();
    for r in &c.rules {
        match r.tag() {
            None => out.push(Drift::ExtraRule {
                chain: name.into(),
                handle: r.handle,
                rule: r.describe(),
            }),
            Some(t) => {
                if !seen.insert(t.to_string()) {
                    out.push(Drift::ExtraRule {
                        chain: name.into(),
                        handle: r.handle,
                        rule: format!("{} (a second rule tagged {t})", r.describe()),
                    });
                } else if let Some(o) = r.terms.iter().find(|t| matches!(t, Term::Other(_))) {
                    out.push(Drift::ChangedRule {
                        chain: name.into(),
                        handle: r.handle,
                        tag: t.to_string(),
                        now: terms_text(&r.terms),
                        expected: None,
                        why: Some(format!("`{o}` is not an expression hostd writes")),
                    });
                }
            }
        }
    }
    out
}

/// Every difference between what hostd rendered (`expected`) and what the
/// kernel lists (`listed`), by set, chain and rule. Rules are matched by
/// their comment (hostd's tag). Set elements are compared when the listing
/// has them.
pub fn diff(expected: &Model, listed: &Model) -> Vec<Drift> {
    let mut out = Vec::new();
    if !listed.present {
        return out;
    }
    let used = listed.referenced_sets();
    for (name, want) in &expected.sets {
        let Some(have) = listed.sets.get(name) else {
            out.push(Drift::MissingSet { set: name.clone() });
            continue;
        };
        if (&have.kind, &have.flags) != (&want.kind, &want.flags) {
            out.push(Drift::SetType {
                set: name.clone(),
                now: format!("type {} flags {}", have.kind, have.flags.join(",")),
                expected: format!("type {} flags {}", want.kind, want.flags.join(",")),
            });
        }
        let v6 = want.v6();
        if let Some(odd) = &have.odd_element {
            out.push(Drift::SetElements {
                set: name.clone(),
                now: vec![odd.clone()],
                added: Vec::new(),
                removed: Vec::new(),
            });
        } else if let (Some(h), Some(w)) = (&have.elements, &want.elements) {
            if h != w {
                let (hs, ws): (BTreeSet<String>, BTreeSet<String>) = (
                    cidr_list(v6, h).into_iter().collect(),
                    cidr_list(v6, w).into_iter().collect(),
                );
                out.push(Drift::SetElements {
                    set: name.clone(),
                    now: cidr_list(v6, h),
                    added: hs.difference(&ws).cloned().collect(),
                    removed: ws.difference(&hs).cloned().collect(),
                });
            }
        }
    }
    for name in listed.sets.keys() {
        if !expected.sets.contains_key(name) && used.contains(name) {
            out.push(Drift::ExtraSet { set: name.clone() });
        }
    }
    for (name, want) in &expected.chains {
        let Some(have) = listed.chains.get(name) else {
            out.push(Drift::MissingChain {
                chain: name.clone(),
            });
            continue;
        };
        if let (Some(h), Some(w)) = (&have.base, &want.base) {
            let same_but_policy = (&h.kind, &h.hook, h.prio) == (&w.kind, &w.hook, w.prio);
            if h.policy != w.policy && same_but_policy {
                out.push(Drift::ChainBase {
                    chain: name.clone(),
                    now: format!("policy {}", h.policy),
                    expected: format!("policy {}", w.policy),
                });
                diff_rules(name, want, have, &mut out);
                continue;
            }
        }
        if have.base != want.base {
            let show = |b: &Option<BaseChain>| {
                b.as_ref()
                    .map_or_else(|| "a regular chain".to_owned(), ToString::to_string)
            };
            out.push(Drift::ChainBase {
                chain: name.clone(),
                now: show(&have.base),
                expected: show(&want.base),
            });
        }
        diff_rules(name, want, have, &mut out);
    }
    for name in listed.chains.keys() {
        if !expected.chains.contains_key(name) {
            out.push(Drift::ExtraChain {
                chain: name.clone(),
            });
        }
    }
    for (kind, name) in &listed.objects {
        out.push(Drift::ExtraObject {
            object: format!("{kind} {name}"),
        });
    }
    out
}

fn diff_rules(chain: &str, want: &ChainModel, have: &ChainModel, out: &mut Vec<Drift>) {
    let key = |r: &RuleModel| r.canonical_comment().unwrap_or_default();
    let mut unmatched: Vec<Option<&RuleModel>> = want.rules.iter().map(Some).collect();
    let mut order = Vec::new();
    for r in &have.rules {
        let k = key(r);
        let found = unmatched
            .iter_mut()
            .enumerate()
            .find(|(_, w)| w.is_some_and(|w| key(w) == k));
        match found {
            Some((i, slot)) => {
                let w = slot.take();
                order.push(i);
                if let Some(w) = w {
                    if w.terms != r.terms {
                        out.push(Drift::ChangedRule {
                            chain: chain.into(),
                            handle: r.handle,
                            tag: k,
                            now: terms_text(&r.terms),
                            expected: Some(terms_text(&w.terms)),
                            why: None,
                        });
                    }
                }
            }
            None => out.push(Drift::ExtraRule {
                chain: chain.into(),
                handle: r.handle,
                rule: r.describe(),
            }),
        }
    }
    for w in unmatched.into_iter().flatten() {
        out.push(Drift::MissingRule {
            chain: chain.into(),
            tag: key(w),
            rule: terms_text(&w.terms),
        });
    }
    if order.windows(2).any(|p| p[0] > p[1]) {
        out.push(Drift::RuleOrder {
            chain: chain.into(),
        });
    }
}

/// One way hostd's table differs from what hostd rendered (a hand edit).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Drift {
    /// The input chain has no `default:policy fp=...` rule.
    NoFingerprint,
    /// The fingerprint was written by a hostd that recorded no chain hashes
    /// (fingerprint format v0): it cannot be checked.
    OldFormat {
        /// The fingerprint found.
        recorded: String,
    },
    /// The whole table does not hash to the recorded fingerprint, and no
    /// part could be singled out.
    Fingerprint {
        /// Recorded in the table.
        recorded: String,
        /// Computed from the listing.
        computed: String,
    },
    /// A set used by a rule that hostd did not render.
    ExtraSet {
        /// Its name.
        set: String,
    },
    /// A set hostd rendered is missing.
    MissingSet {
        /// Its name.
        set: String,
    },
    /// A set's type or flags.
    SetType {
        /// Its name.
        set: String,
        /// Listed.
        now: String,
        /// Rendered.
        expected: String,
    },
    /// A set's elements (`added`/`removed` are known only with the spec).
    SetElements {
        /// Its name.
        set: String,
        /// What it holds (networks).
        now: Vec<String>,
        /// Networks hostd did not render.
        added: Vec<String>,
        /// Networks hostd rendered that are missing.
        removed: Vec<String>,
    },
    /// A chain hostd did not render.
    ExtraChain {
        /// Its name.
        chain: String,
    },
    /// A chain hostd rendered is missing.
    MissingChain {
        /// Its name.
        chain: String,
    },
    /// A base chain's type, hook, priority or policy.
    ChainBase {
        /// Its name.
        chain: String,
        /// Listed.
        now: String,
        /// Rendered.
        expected: String,
    },
    /// A chain's rules or policy no longer hash to what was recorded, and
    /// no single rule could be named without the spec.
    Chain {
        /// Its name.
        chain: String,
        /// Besides the differences reported on their own.
        more: bool,
    },
    /// A rule hostd did not render.
    ExtraRule {
        /// Its chain.
        chain: String,
        /// Kernel handle.
        handle: Option<u64>,
        /// The rule and its comment.
        rule: String,
    },
    /// A rule hostd rendered is missing.
    MissingRule {
        /// Its chain.
        chain: String,
        /// Its comment (hostd's tag).
        tag: String,
        /// The rule as rendered.
        rule: String,
    },
    /// A rule hostd rendered holds something else.
    ChangedRule {
        /// Its chain.
        chain: String,
        /// Kernel handle.
        handle: Option<u64>,
        /// Its comment (hostd's tag).
        tag: String,
        /// What it holds.
        now: String,
        /// What hostd rendered (known with the spec).
        expected: Option<String>,
        /// Why it cannot be hostd's (without the spec).
        why: Option<String>,
    },
    /// The rules are all there but in another order.
    RuleOrder {
        /// The chain.
        chain: String,
    },
    /// A map, named counter, flowtable... in hostd's table.
    ExtraObject {
        /// Kind and name.
        object: String,
    },
}

impl Drift {
    /// The chain concerned, if any.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Self::ExtraChain { chain }
            | Self::MissingChain { chain }
            | Self::ChainBase { chain, .. }
            | Self::Chain { chain, .. }
            | Self::ExtraRule { chain, .. }
            | Self::MissingRule { chain, .. }
            | Self::ChangedRule { chain, .. }
            | Self::RuleOrder { chain } => Some(chain),
            _ => None,
        }
    }
}

fn handle_text(h: Option<u64>) -> String {
    h.map(|h| format!(" (handle {h})")).unwrap_or_default()
}

fn list(v: &[String]) -> String {
    const MAX: usize = 8;
    let mut s = v.iter().take(MAX).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > MAX {
        let _ = write!(s, ", ... ({} in all)", v.len());
    }
    s
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFingerprint => write!(
                f,
                "chain input: the rule carrying hostd's fingerprint (default:policy {FINGERPRINT_KEY}...) is missing or changed"
            ),
            Self::OldFormat { recorded } => write!(
                f,
                "fingerprint {recorded} was written by an older hostd (no chain or set hashes): the table cannot be checked"
            ),
            Self::Fingerprint { recorded, computed } => write!(
                f,
                "the table hashes to {computed}, hostd recorded {recorded} (every chain matches its hash: the elements or the type of a set were changed by hand)"
            ),
            Self::ExtraSet { set } => write!(f, "set {set}: not rendered by hostd (added by hand)"),
            Self::MissingSet { set } => write!(f, "set {set}: missing (deleted by hand)"),
            Self::SetType { set, now, expected } => {
                write!(f, "set {set}: {now}, hostd rendered {expected}")
            }
            Self::SetElements {
                set,
                now,
                added,
                removed,
            } => {
                if added.is_empty() && removed.is_empty() {
                    write!(
                        f,
                        "set {set}: elements changed by hand (they no longer match the hash in its name); it holds {}",
                        list(now)
                    )
                } else {
                    write!(f, "set {set}: elements changed by hand")?;
                    if !added.is_empty() {
                        write!(f, "; added {}", list(added))?;
                    }
                    if !removed.is_empty() {
                        write!(f, "; removed {}", list(removed))?;
                    }
                    Ok(())
                }
            }
            Self::ExtraChain { chain } => {
                write!(f, "chain {chain}: not rendered by hostd (added by hand)")
            }
            Self::MissingChain { chain } => write!(f, "chain {chain}: missing (deleted by hand)"),
            Self::ChainBase {
                chain,
                now,
                expected,
            } => write!(f, "chain {chain}: {now}, hostd rendered {expected}"),
            Self::Chain { chain, more } => write!(
                f,
                "chain {chain}: {}differ from what hostd rendered (a rule deleted, changed or moved, or the policy changed)",
                if *more { "other rules also " } else { "its rules or policy " }
            ),
            Self::ExtraRule {
                chain,
                handle,
                rule,
            } => write!(
                f,
                "chain {chain}: rule{} {rule} was not rendered by hostd (added by hand)",
                handle_text(*handle)
            ),
            Self::MissingRule { chain, tag, rule } => write!(
                f,
                "chain {chain}: rule {tag} `{rule}` is missing (deleted by hand)"
            ),
            Self::ChangedRule {
                chain,
                handle,
                tag,
                now,
                expected,
                why,
            } => {
                write!(
                    f,
                    "chain {chain}: rule {tag}{} is `{now}`",
                    handle_text(*handle)
                )?;
                if let Some(e) = expected {
                    write!(f, ", hostd rendered `{e}`")?;
                }
                if let Some(w) = why {
                    write!(f, " ({w})")?;
                }
                Ok(())
            }
            Self::RuleOrder { chain } => {
                write!(f, "chain {chain}: rules moved out of hostd's order")
            }
            Self::ExtraObject { object } => {
                write!(f, "{object}: not rendered by hostd (added by hand)")
            }
        }
    }
}
