//! Reads hostd's table back from `nft -j list table inet hostd` output: the
//! per-rule counters that `hostd firewall show` prints, mapped to spec rules
//! through the comment tags written by [`render`](super::render()).

use serde_json::Value;

use super::{
    model::{Drift, ListingError, Model},
    render::{Current, RuleTag, FAMILY, TABLE},
};

/// Counter of one nftables rule of hostd's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    /// `input` or `output`.
    pub chain: String,
    /// Kernel handle of the rule.
    pub handle: u64,
    /// Tag from the comment; `None` for a rule hostd did not write.
    pub tag: Option<RuleTag>,
    /// The user's comment (after the tag), or the whole comment for a foreign rule.
    pub comment: Option<String>,
    /// Packets matched.
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}

/// What the kernel holds in hostd's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// Rules with counters, in chain order.
    pub rules: Vec<RuleCounter>,
    /// Named sets: name and number of elements (interval elements count once).
    pub sets: Vec<(String, usize)>,
    /// Base chains: name and policy.
    pub chains: Vec<(String, String)>,
    /// Fingerprint of the applied ruleset (recorded in the input chain).
    pub fingerprint: Option<String>,
    /// Hand edits: how the table differs from what hostd recorded in it
    /// ([`Model::check`]); empty when it is as hostd wrote it.
    pub drift: Vec<Drift>,
    /// Sets no rule uses (no effect on packets; deleted by the next apply
    /// that changes the table).
    pub unused_sets: Vec<String>,
}

/// Parses `nft -j list table inet hostd` (or `list ruleset`: other tables
/// are ignored), and checks it for hand edits ([`TableState::inspect`]; set
/// elements are checked when the listing has them).
pub fn parse_listing(json: &str) -> Result<TableState, ListingError> {
    let mut st = parse_counters(json)?;
    st.inspect(&Model::from_listing(json)?);
    Ok(st)
}

fn parse_counters(json: &str) -> Result<TableState, ListingError> {
    let v: Value = serde_json::from_str(json).map_err(|e| ListingError(e.to_string()))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| ListingError("no top-level \"nftables\" array".into()))?;
    let ours = |o: &Value| {
        o.get("family").and_then(Value::as_str) == Some(FAMILY)
            && o.get("table").and_then(Value::as_str) == Some(TABLE)
    };
    let mut st = TableState::default();
    for item in items {
        if let Some(r) = item.get("rule").filter(|r| ours(r)) {
            let chain = r
                .get("chain")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let handle = r.get("handle").and_then(Value::as_u64).unwrap_or_default();
            let raw = r.get("comment").and_then(Value::as_str);
            let (tag, comment) = match raw.and_then(RuleTag::parse) {
                Some((t, c)) => (Some(t), c),
                None => (None, raw.map(str::to_owned)),
            };
            let (mut packets, mut bytes) = (0, 0);
            for e in r
                .get("expr")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(c) = e.get("counter") {
                    packets += c.get("packets").and_then(Value::as_u64).unwrap_or_default();
                    bytes += c.get("bytes").and_then(Value::as_u64).unwrap_or_default();
                }
            }
            st.rules.push(RuleCounter {
                chain,
                handle,
                tag,
                comment,
                packets,
                bytes,
            });
        } else if let Some(s) = item.get("set").filter(|s| ours(s)) {
            let name = s
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let n = s.get("elem").and_then(Value::as_array).map_or(0, Vec::len);
            st.sets.push((name, n));
        } else if let Some(c) = item.get("chain").filter(|c| ours(c)) {
            if c.get("hook").is_some() {
                let name = c
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let policy = c
                    .get("policy")
                    .and_then(Value::as_str)
                    .unwrap_or("accept")
                    .to_owned();
                st.chains.push((name, policy));
            }
        }
    }
    Ok(st)
}

/// One line of `hostd firewall show`: a spec rule (variants summed), a
/// default or the management exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowRow {
    /// `input` or `output`.
    pub chain: String,
    /// `rules[3]`, `default:established`, `mgmt`, or `foreign` for rules hostd did not write.
    pub what: String,
    /// The user's comment.
    pub comment: Option<String>,
    /// Packets matched (all nft rules of this row).
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}

impl TableState {
    /// Fills the fingerprint, the hand edits and the unused sets from `model`,
    /// the same table as a [`Model`] (with the set elements, when read).
    pub fn inspect(&mut self, model: &Model) {
        self.fingerprint = model.recorded().map(|c| c.fingerprint);
        self.drift = model.check();
        self.unused_sets = model.unused_sets();
    }

    /// Rows for `hostd firewall show`, one per spec rule / default / management
    /// exception and chain, in chain order.
    pub fn rows(&self) -> Vec<ShowRow> {
        let mut rows: Vec<ShowRow> = Vec::new();
        for r in &self.rules {
            let what = match &r.tag {
                Some(RuleTag::User { index, .. }) => format!("rules[{index}]"),
                Some(RuleTag::Management(_)) => "mgmt".to_owned(),
                Some(t @ RuleTag::Default(_)) => t.to_string(),
                None => "foreign".to_owned(),
            };
            match rows.last_mut() {
                Some(last) if last.chain == r.chain && last.what == what && what != "foreign" => {
                    last.packets += r.packets;
                    last.bytes += r.bytes;
                }
                _ => rows.push(ShowRow {
                    chain: r.chain.clone(),
                    what,
                    comment: r.comment.clone(),
                    packets: r.packets,
                    bytes: r.bytes,
                }),
            }
        }
        rows
    }
}

/// Reads hostd's table from `nft -j -t list ruleset` (terse: no set
/// elements, ~5 ms even with 10,000 CIDRs; other tables are ignored) or any
/// other `nft -j` listing, and checks it ([`Current::from_model`]). Set
/// elements are checked only when a listing has them; hostd reads them over
/// netlink instead (`hostd::firewall::read_current`).
pub fn parse_current(listings: &[&str]) -> Result<Current, ListingError> {
    let mut model = Model::default();
    for json in listings {
        model.add_listing(json)?;
    }
    Ok(Current::from_model(model))
}
