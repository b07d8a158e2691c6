//! Changing a CIDR list in place: the element additions and deletions that
//! turn the live sets of hostd's table into the ones a new ruleset wants,
//! when nothing else of the ruleset changes ([`plan_element_update`]).
//!
//! A set is created with a name ending in the hash of its content
//! (`r0_src4_1a2b3c4d`). When only lists change, the new ruleset *adopts*
//! the live set of the same role (`r0_src4`): its rules keep referencing the
//! live name, and the set gets the difference as element deletions and
//! additions. The elements are diffed as the kernel stores them (interval
//! start keys and end markers, see
//! [`NamedSet::interval_elements`](super::NamedSet::interval_elements)), so a
//! /24 widened to the /23 containing it is one end marker deleted and one
//! added, and the final content is exactly what a fresh load of the new list
//! holds. The carrier rule (the fingerprint, which covers each set's content
//! hash) is replaced in the same transaction: the hostd side sends the
//! deletions, the additions and the carrier as one nfnetlink batch, which
//! the kernel commits whole or not at all, so packets see the old list or
//! the new one, never a mix and never a missing element.
//!
//! When the plan is refused ([`WholeSets`]), hostd takes the whole-set path:
//! new sets under new names, and one nft transaction that switches the rules
//! to them.

use std::collections::BTreeSet;

use super::{
    model::set_name_hash,
    render::{Current, IntervalElement, Ruleset},
};

/// Element changes of one live set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDelta {
    /// The live set (its name is kept).
    pub set: String,
    /// `ipv6_addr` set.
    pub v6: bool,
    /// Elements to delete, as the kernel stores them.
    pub delete: Vec<IntervalElement>,
    /// Elements to add, in key order.
    pub add: Vec<IntervalElement>,
}

/// What [`plan_element_update`] found: one transaction of element changes
/// plus the carrier rule's new comment.
#[derive(Debug, Clone)]
pub struct ElementUpdate {
    /// The ruleset asked for, with each set renamed to the live set it
    /// updates, fingerprinted again: what the table holds after the update.
    pub ruleset: Ruleset,
    /// One entry per set whose elements change.
    pub deltas: Vec<SetDelta>,
    /// Kernel handle of the carrier rule (the input chain's last rule,
    /// statement `counter`), replaced in the same transaction.
    pub carrier_handle: u64,
    /// The carrier rule's new comment (`default:policy fp=...`).
    pub carrier_comment: String,
}

impl ElementUpdate {
    /// Elements deleted plus elements added.
    pub fn changes(&self) -> usize {
        self.deltas
            .iter()
            .map(|d| d.delete.len() + d.add.len())
            .sum()
    }
}

/// Why the lists cannot be changed in place: the whole-set path is taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WholeSets {
    /// The table is absent, unreadable or was edited by hand: it is not what
    /// the recorded fingerprint says, so the live elements are not a base to
    /// diff from (the table is rewritten).
    #[error("hostd's table is absent or not as hostd recorded it")]
    NotAsRecorded,
    /// The rules change too: the rules and the sets must switch in one
    /// transaction, which only nft can compile (whole-set path, one nft
    /// transaction).
    #[error("rules change too (whole-set path: one nft transaction switches rules and sets)")]
    RulesChange,
    /// No live set of this role that the rules use and whose elements were
    /// read.
    #[error("no live set to update for {set}")]
    NoLiveSet {
        /// The set of the new ruleset.
        set: String,
    },
    /// The carrier rule is not the plain `counter` rule hostd writes, or its
    /// handle is unknown: hostd replaces it only when it knows its encoding.
    #[error("the fingerprint rule is not the one hostd writes")]
    Carrier,
}

/// The role of a set hostd names: its name without the content hash
/// (`r0_src4`).
fn role(name: &str) -> Option<&str> {
    set_name_hash(name)?;
    name.rsplit_once('_').map(|(r, _)| r)
}

fn key(e: &IntervalElement) -> (&[u8], bool) {
    (e.key.as_slice(), e.end)
}

/// The deletions and additions turning `live` (as dumped) into `want` (as
/// [`NamedSet::interval_elements`](super::NamedSet::interval_elements)
/// gives them). Elements are compared by key
/// and end flag: the "open" flag is nft's display hint, which the kernel
/// does not return.
pub fn interval_delta(
    live: &[IntervalElement],
    want: &[IntervalElement],
) -> (Vec<IntervalElement>, Vec<IntervalElement>) {
    let have: BTreeSet<(&[u8], bool)> = live.iter().map(key).collect();
    let need: BTreeSet<(&[u8], bool)> = want.iter().map(key).collect();
    let mut delete: Vec<IntervalElement> = live
        .iter()
        .filter(|e| !need.contains(&key(e)))
        .cloned()
        .collect();
    // At a key holding both an end marker and a start (adjacent prefixes),
    // the end marker goes first: the kernel's interval tree does not find
    // it once the start at the same key is deactivated (ENOENT, measured on
    // 6.18).
    delete.sort_by(|a, b| (a.key.as_slice(), !a.end).cmp(&(b.key.as_slice(), !b.end)));
    delete.dedup();
    let add = want
        .iter()
        .filter(|e| !have.contains(&key(e)))
        .cloned()
        .collect();
    (delete, add)
}

/// Plans changing the lists of the table `cur` describes in place so that
/// it holds `rs`, from the raw elements of its sets as the kernel returned
/// them ([`Current::live_elements`]).
///
/// The whole-set path is taken ([`WholeSets`]) when:
/// - the table is not as recorded (absent, hand edits, no fingerprint): the
///   live elements are no base for a diff;
/// - anything but the lists changes (a rule, a chain, a set's family): the
///   sets and the rules must switch in one transaction and hostd only
///   compiles rules through nft, whose `add element` on a live interval set
///   re-reads and re-checks the whole set in userspace (measured: 0.4-0.6 s
///   for 10,000 intervals with nft 1.0.6);
/// - a set's live elements were not read;
/// - the carrier rule is not hostd's plain `counter` rule.
///
/// An `Ok` with no deltas and the fingerprint `cur` records means the table
/// already holds `rs`.
pub fn plan_element_update(rs: &Ruleset, cur: &Current) -> Result<ElementUpdate, WholeSets> {
    let live = &cur.live_elements;
    if !cur.present || !cur.drift.is_empty() || cur.fingerprint.is_none() {
        return Err(WholeSets::NotAsRecorded);
    }
    let recorded = cur.listed.recorded().ok_or(WholeSets::NotAsRecorded)?;
    let used = cur.listed.referenced_sets();
    let mut renamed = rs.clone();
    let mut renames: Vec<(String, String)> = Vec::new();
    let mut deltas = Vec::new();
    for set in &mut renamed.sets {
        let kind = if set.v6 { "ipv6_addr" } else { "ipv4_addr" };
        let target = role(&set.name).and_then(|r| {
            used.iter().find(|n| {
                role(n) == Some(r)
                    && live.contains_key(*n)
                    && cur
                        .listed
                        .sets
                        .get(*n)
                        .is_some_and(|s| s.kind == kind && s.flags == ["interval"])
            })
        });
        let Some(target) = target else {
            return Err(WholeSets::NoLiveSet {
                set: set.name.clone(),
            });
        };
        let have = live.get(target).map(Vec::as_slice).unwrap_or_default();
        let (delete, add) = interval_delta(have, &set.interval_elements());
        if !delete.is_empty() || !add.is_empty() {
            deltas.push(SetDelta {
                set: target.clone(),
                v6: set.v6,
                delete,
                add,
            });
        }
        if set.name != *target {
            renames.push((set.name.clone(), target.clone()));
            set.name.clone_from(target);
        }
    }
    for chain in &mut renamed.chains {
        for rule in &mut chain.rules {
            rule.statement = rename_refs(&rule.statement, &renames);
        }
    }
    renamed.seal();
    if renamed.model().fingerprint().chains != recorded.chains {
        return Err(WholeSets::RulesChange);
    }
    let carrier_handle = cur
        .listed
        .chains
        .get("input")
        .and_then(|c| c.rules.last())
        .and_then(|r| r.handle)
        .ok_or(WholeSets::Carrier)?;
    let last = renamed
        .chains
        .first()
        .and_then(|c| c.rules.last())
        .ok_or(WholeSets::Carrier)?;
    if last.statement != "counter" {
        return Err(WholeSets::Carrier);
    }
    let carrier_comment = last.nft_comment();
    Ok(ElementUpdate {
        ruleset: renamed,
        deltas,
        carrier_handle,
        carrier_comment,
    })
}

/// `rs` with each set whose name a live set of `cur` already has, but with
/// other elements, given a free name; `None` when there is none.
///
/// Set names end in the hash of the content a set was *created* with, and
/// an in-place change keeps the name while the content changes: a list that
/// comes back to an earlier content renders to a name a live set may hold
/// with other elements. The whole-set path must not reuse that set, so the
/// new set gets the next free hash (`..._1a2b3c4e` for `..._1a2b3c4d`).
pub fn fresh_names(rs: &Ruleset, cur: &Current) -> Option<Ruleset> {
    let want = rs.model();
    let mut taken: BTreeSet<String> = cur.sets.clone();
    taken.extend(rs.sets.iter().map(|s| s.name.clone()));
    let mut renames = Vec::new();
    for set in &rs.sets {
        let (Some(have), Some(w)) = (cur.listed.sets.get(&set.name), want.sets.get(&set.name))
        else {
            continue;
        };
        if have.elements == w.elements && have.odd_element.is_none() {
            continue;
        }
        let (Some(role), Some((_, hash))) = (role(&set.name), set_name_hash(&set.name)) else {
            continue;
        };
        let mut h = u32::from_str_radix(hash, 16).unwrap_or_default();
        let name = loop {
            h = h.wrapping_add(1);
            let n = format!("{role}_{h:08x}");
            if !taken.contains(&n) {
                break n;
            }
        };
        taken.insert(name.clone());
        renames.push((set.name.clone(), name));
    }
    if renames.is_empty() {
        return None;
    }
    let mut out = rs.clone();
    for set in &mut out.sets {
        if let Some((_, to)) = renames.iter().find(|(from, _)| *from == set.name) {
            set.name.clone_from(to);
        }
    }
    for chain in &mut out.chains {
        for rule in &mut chain.rules {
            rule.statement = rename_refs(&rule.statement, &renames);
        }
    }
    out.seal();
    Some(out)
}

/// `rs` with each set renamed to the set of the same role the rules of
/// `cur` use (the names the table holds it under); other sets as they are.
pub fn on_live_names(rs: &Ruleset, cur: &Current) -> Ruleset {
    let used = cur.listed.referenced_sets();
    let renames: Vec<(String, String)> = rs
        .sets
        .iter()
        .filter_map(|s| {
            let r = role(&s.name)?;
            let live = used.iter().find(|n| role(n) == Some(r))?;
            (*live != s.name).then(|| (s.name.clone(), live.clone()))
        })
        .collect();
    let mut out = rs.clone();
    for set in &mut out.sets {
        if let Some((_, to)) = renames.iter().find(|(from, _)| *from == set.name) {
            set.name.clone_from(to);
        }
    }
    for chain in &mut out.chains {
        for rule in &mut chain.rules {
            rule.statement = rename_refs(&rule.statement, &renames);
        }
    }
    out.seal();
    out
}

/// `statement` with each `@from` word replaced by `@to`.
fn rename_refs(statement: &str, renames: &[(String, String)]) -> String {
    if renames.is_empty() {
        return statement.to_owned();
    }
    statement
        .split(' ')
        .map(|w| {
            w.strip_prefix('@')
                .and_then(|n| renames.iter().find(|(from, _)| from == n))
                .map_or_else(|| w.to_owned(), |(_, to)| format!("@{to}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::firewall::{render, FirewallSpec, Model};

    fn spec(sources: &str, port: u16) -> Ruleset {
        let yaml = format!(
            "management: {{ controllers: [192.0.2.10], channel_port: 7443 }}
rules:
  - {{ action: accept, protocol: tcp, ports: [22], sources: [{sources}] }}
  - {{ action: accept, protocol: tcp, ports: [{port}] }}
"
        );
        render(&FirewallSpec::from_yaml(&yaml).expect("spec")).expect("enabled")
    }

    /// The state a table holding `rs` lists as (handles given, elements
    /// read), and the raw elements of its sets.
    fn live(rs: &Ruleset) -> (Current, BTreeMap<String, Vec<IntervalElement>>) {
        let (mut cur, raw) = listed(rs);
        cur.live_elements.clone_from(&raw);
        (cur, raw)
    }

    fn with(cur: &Current, raw: &BTreeMap<String, Vec<IntervalElement>>) -> Current {
        let mut c = cur.clone();
        c.live_elements.clone_from(raw);
        c
    }

    fn listed(rs: &Ruleset) -> (Current, BTreeMap<String, Vec<IntervalElement>>) {
        let mut m: Model = rs.model();
        for (i, r) in m
            .chains
            .values_mut()
            .flat_map(|c| c.rules.iter_mut())
            .enumerate()
        {
            r.handle = Some(i as u64 + 2);
        }
        let raw = rs
            .sets
            .iter()
            .map(|s| (s.name.clone(), s.interval_elements()))
            .collect();
        (Current::from_model(m), raw)
    }

    fn net(s: &str) -> Vec<u8> {
        let a: std::net::Ipv4Addr = s.parse().expect("addr");
        a.octets().to_vec()
    }

    #[test]
    fn widening_a_24_to_its_23_moves_one_end_marker() {
        let old = spec("10.0.0.0/24, 192.0.2.7", 80);
        let new = spec("10.0.0.0/23, 192.0.2.7", 80);
        let (cur, raw) = live(&old);
        assert!(cur.drift.is_empty(), "{:?}", cur.drift);
        let plan = plan_element_update(&new, &cur).expect("in place");
        assert_eq!(plan.deltas.len(), 1);
        let d = &plan.deltas[0];
        assert!(d.set.starts_with("r0_src4_"));
        assert_eq!(
            d.delete,
            [IntervalElement {
                key: net("10.0.1.0"),
                end: true,
                open: false
            }]
        );
        assert_eq!(
            d.add,
            [IntervalElement {
                key: net("10.0.2.0"),
                end: true,
                open: false
            }]
        );
        // The rules keep the live set's name; the fingerprint covers the new
        // content and not the names: it is the one rendered.
        let old_name = &old
            .sets
            .iter()
            .find(|s| s.name.starts_with("r0_"))
            .expect("set")
            .name;
        assert_eq!(&d.set, old_name);
        assert!(plan.ruleset.chains[0]
            .rules
            .iter()
            .any(|r| r.statement.contains(&format!("@{old_name} "))));
        assert_ne!(plan.ruleset.fingerprint, old.fingerprint);
        assert_eq!(plan.ruleset.fingerprint, new.fingerprint);
        assert!(plan.carrier_comment.contains(&plan.ruleset.fingerprint));
        assert_eq!(
            plan.carrier_handle,
            cur.listed.chains["input"]
                .rules
                .last()
                .and_then(|r| r.handle)
                .expect("h")
        );

        // Applied, the table lists as the plan's ruleset and checks clean;
        // the same spec again is then a plan with nothing to change.
        let mut after = raw.clone();
        let els = after.get_mut(&d.set).expect("set");
        els.retain(|e| !d.delete.contains(e));
        els.extend(d.add.iter().cloned());
        els.sort_by(|a, b| (&a.key, a.end).cmp(&(&b.key, b.end)));
        let (cur2, _) = live(&plan.ruleset);
        assert!(cur2.drift.is_empty(), "{:?}", cur2.drift);
        let again = plan_element_update(&new, &with(&cur2, &after)).expect("in place");
        assert!(again.deltas.is_empty());
        assert_eq!(Some(again.ruleset.fingerprint), cur2.fingerprint);
    }

    #[test]
    fn rule_changes_and_hand_edits_take_the_whole_set_path() {
        let old = spec("10.0.0.0/24", 80);
        let (cur, raw) = live(&old);
        assert_eq!(
            plan_element_update(&spec("10.0.0.0/23", 81), &cur).map(|_| ()),
            Err(WholeSets::RulesChange)
        );
        // A v6 list where there was none: a new rule.
        assert_eq!(
            plan_element_update(&spec("10.0.0.0/24, \"2001:db8::/64\"", 80), &cur).map(|_| ()),
            Err(WholeSets::NoLiveSet {
                set: spec("10.0.0.0/24, \"2001:db8::/64\"", 80).sets[2]
                    .name
                    .clone()
            })
        );
        let mut edited = cur.clone();
        edited.drift.push(crate::firewall::Drift::NoFingerprint);
        assert_eq!(
            plan_element_update(&spec("10.0.0.0/23", 80), &edited).map(|_| ()),
            Err(WholeSets::NotAsRecorded)
        );
        let mut unread = raw.clone();
        unread.clear();
        assert!(matches!(
            plan_element_update(&spec("10.0.0.0/23", 80), &with(&cur, &unread)),
            Err(WholeSets::NoLiveSet { .. })
        ));
    }

    #[test]
    fn delta_is_exactly_the_new_load() {
        // Random lists: applying the delta to the old elements gives the
        // elements a fresh load of the new list sends.
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..200 {
            let mut lists = Vec::new();
            for _ in 0..2 {
                let n = 1 + rnd(12);
                let l: Vec<String> = (0..n)
                    .map(|_| {
                        format!(
                            "10.0.{}.{}/{}",
                            rnd(4),
                            rnd(4) * 64,
                            [24, 26, 23, 32][rnd(4) as usize]
                        )
                    })
                    .map(|c| {
                        let net: ipnet::Ipv4Net = c.parse().expect("net");
                        net.trunc().to_string()
                    })
                    .collect();
                lists.push(l.join(", "));
            }
            let old = spec(&lists[0], 80);
            let new = spec(&lists[1], 80);
            let (cur, raw) = live(&old);
            let plan = plan_element_update(&new, &cur).expect("in place");
            let target = &old
                .sets
                .iter()
                .find(|s| s.name.starts_with("r0_"))
                .expect("r0")
                .name;
            let mut els = raw[target].clone();
            if let Some(d) = plan.deltas.first() {
                els.retain(|e| !d.delete.iter().any(|x| (&x.key, x.end) == (&e.key, e.end)));
                els.extend(d.add.iter().cloned());
            }
            els.sort_by(|a, b| (&a.key, a.end).cmp(&(&b.key, b.end)));
            let mut want = new
                .sets
                .iter()
                .find(|s| s.name.starts_with("r0_"))
                .expect("r0")
                .interval_elements();
            want.sort_by(|a, b| (&a.key, a.end).cmp(&(&b.key, b.end)));
            let strip =
                |v: Vec<IntervalElement>| v.into_iter().map(|e| (e.key, e.end)).collect::<Vec<_>>();
            assert_eq!(strip(els), strip(want), "{} -> {}", lists[0], lists[1]);
        }
    }
}
