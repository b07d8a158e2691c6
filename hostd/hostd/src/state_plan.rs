//! The plan of a whole desired state: the network operations
//! ([`hostd_core::Plan`]) followed by the firewall step, as one value that
//! `hostd plan` prints and `hostd apply` executes.
//!
//! Pure: deciding the firewall step needs only the spec and what hostd's
//! nftables table holds now ([`FirewallNow`], read by the caller). The JSON
//! form keeps the network plan's shape (`{"ops": [...]}`) and adds a
//! `firewall` key when the document has a `firewall` section (or for
//! `teardown`).

use std::fmt;

use hostd_core::{
    firewall::{render, Current, FirewallSpec, Ruleset},
    ovs::{OvsPlan, OvsStep},
    plan::Op,
    Plan,
};
use serde::{Deserialize, Serialize};

/// What hostd's table (`table inet hostd`) holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallNow {
    /// The table exists.
    pub present: bool,
    /// The fingerprint recorded in its rules (absent for a table hostd did
    /// not write whole, e.g. edited by hand).
    pub fingerprint: Option<String>,
}

impl FirewallNow {
    /// Presence and fingerprint of what [`parse_current`] read.
    ///
    /// [`parse_current`]: hostd_core::firewall::parse_current
    pub fn from_current(cur: &Current) -> Self {
        Self {
            present: cur.present,
            fingerprint: cur.fingerprint.clone(),
        }
    }

    /// Reads presence and fingerprint from `nft -j -t list ruleset`.
    pub fn from_listing(json: &str) -> Result<Self, hostd_core::firewall::ListingError> {
        Ok(Self::from_current(&hostd_core::firewall::parse_current(
            &[json],
        )?))
    }
}

/// What happens to hostd's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirewallAction {
    /// The table is absent and will be created.
    Create,
    /// The table holds another ruleset and will be replaced in one
    /// transaction.
    Replace,
    /// The table will be removed (`enabled: false`, or teardown).
    Remove,
    /// The table already holds this ruleset: nothing is sent.
    Unchanged,
    /// The firewall is disabled and hostd's table is already absent.
    Absent,
}

impl FirewallAction {
    /// True when the kernel would be changed.
    pub fn changes(self) -> bool {
        matches!(self, Self::Create | Self::Replace | Self::Remove)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Replace => "replace",
            Self::Remove => "remove",
            Self::Unchanged => "unchanged",
            Self::Absent => "absent",
        }
    }
}

/// The firewall step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FirewallPlan {
    /// What happens to `table inet hostd`.
    pub action: FirewallAction,
    /// Rules of the spec (`firewall.rules`).
    pub rules: usize,
    /// nftables rules rendered (defaults, management, user rules per family).
    pub nft_rules: usize,
    /// Named CIDR sets rendered.
    pub sets: usize,
    /// CIDRs in those sets.
    pub cidrs: usize,
    /// Fingerprint of the ruleset wanted (none when removing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Fingerprint of the table now (none when absent or unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_fingerprint: Option<String>,
}

impl FirewallPlan {
    /// The step that makes the kernel hold `spec` (validated by the caller).
    pub fn for_spec(spec: &FirewallSpec, now: &FirewallNow) -> Self {
        Self::for_ruleset(render(spec).as_ref(), spec.rules.len(), now)
    }

    /// The step for a spec of `rules` rules already rendered to `rs` (`None`:
    /// disabled).
    pub fn for_ruleset(rs: Option<&Ruleset>, rules: usize, now: &FirewallNow) -> Self {
        let Some(rs) = rs else {
            return Self::removal(now);
        };
        let action = if !now.present {
            FirewallAction::Create
        } else if now.fingerprint.as_deref() == Some(rs.fingerprint.as_str()) {
            FirewallAction::Unchanged
        } else {
            FirewallAction::Replace
        };
        Self {
            action,
            rules,
            nft_rules: rs.chains.iter().map(|c| c.rules.len()).sum(),
            sets: rs.sets.len(),
            cidrs: rs.element_count(),
            fingerprint: Some(rs.fingerprint.clone()),
            current_fingerprint: now.fingerprint.clone(),
        }
    }

    /// The step that removes hostd's table (disabled firewall, teardown).
    pub fn removal(now: &FirewallNow) -> Self {
        Self {
            action: if now.present {
                FirewallAction::Remove
            } else {
                FirewallAction::Absent
            },
            rules: 0,
            nft_rules: 0,
            sets: 0,
            cidrs: 0,
            fingerprint: None,
            current_fingerprint: now.fingerprint.clone(),
        }
    }
}

impl fmt::Display for FirewallPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fp = |x: &Option<String>| x.clone().unwrap_or_else(|| "none".into());
        match self.action {
            FirewallAction::Remove => write!(
                f,
                "firewall: remove table inet hostd (fingerprint {}; no other table touched)",
                fp(&self.current_fingerprint)
            ),
            FirewallAction::Absent => {
                write!(f, "firewall: table inet hostd absent, nothing to remove")
            }
            a => {
                write!(
                    f,
                    "firewall: {} table inet hostd ({} rules -> {} nft rules, {} sets, {} CIDRs, fingerprint {}",
                    a.as_str(),
                    self.rules,
                    self.nft_rules,
                    self.sets,
                    self.cidrs,
                    fp(&self.fingerprint)
                )?;
                if a == FirewallAction::Replace {
                    write!(f, ", was {}", fp(&self.current_fingerprint))?;
                }
                write!(f, ")")
            }
        }
    }
}

/// The OVS steps of a plan, and where they sit between the kernel
/// operations (`hostd_core::ovs::doc::stage`): `ops[..before_remove]`, the
/// `remove` step, `ops[before_remove..before_remove + before_steps]`, the
/// other steps, the rest of `ops`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OvsStages {
    /// Kernel operations before the `remove` step.
    pub before_remove: usize,
    /// The OVSDB transaction removing ports and bridges, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<OvsStep>,
    /// Kernel operations after `remove`, before `steps`.
    pub before_steps: usize,
    /// The other OVSDB transactions (one per bridge), each waited for
    /// until ovs-vswitchd applied it.
    #[serde(default)]
    pub steps: Vec<OvsStep>,
}

impl OvsStages {
    /// Builds the stages from a staged kernel plan and the OVS plan; returns
    /// the kernel operations in execution order too.
    pub fn new(staged: &hostd_core::ovs::doc::Staged, ovs: &OvsPlan) -> (Plan, Self) {
        let mut steps = ovs.steps.clone();
        let remove = match steps.first() {
            Some(s) if s.title == "remove" => Some(steps.remove(0)),
            _ => None,
        };
        let mut ops = staged.pre.ops.clone();
        ops.extend(staged.main.ops.iter().cloned());
        ops.extend(staged.post.ops.iter().cloned());
        (
            Plan { ops },
            Self {
                before_remove: staged.pre.ops.len(),
                remove,
                before_steps: staged.main.ops.len(),
                steps,
            },
        )
    }

    /// Number of OVS steps.
    pub fn len(&self) -> usize {
        usize::from(self.remove.is_some()) + self.steps.len()
    }

    /// True when there is no OVS step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole plan: network operations (kernel, with the OVS steps between
/// them when the document has OVS entries), then the firewall step.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatePlan {
    /// The kernel operations, in execution order (as [`Plan::ops`]).
    pub ops: Vec<Op>,
    /// The OVS steps; `None` when the document has no OVS entries (OVSDB
    /// is neither read nor touched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ovs: Option<OvsStages>,
    /// The firewall step; `None` when the document has no `firewall`
    /// section (the firewall is left alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallPlan>,
}

impl StatePlan {
    /// Joins a network plan and a firewall step.
    pub fn new(network: Plan, firewall: Option<FirewallPlan>) -> Self {
        Self {
            ops: network.ops,
            ovs: None,
            firewall,
        }
    }

    /// Steps OVS runs.
    pub fn ovs_steps(&self) -> usize {
        self.ovs.as_ref().map_or(0, OvsStages::len)
    }

    /// True when nothing would change, network, OVS or firewall.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.ovs_steps() == 0 && !self.firewall_changes()
    }

    /// True when the firewall step changes the kernel.
    pub fn firewall_changes(&self) -> bool {
        self.firewall.as_ref().is_some_and(|f| f.action.changes())
    }

    /// Steps the plan executes: network operations, plus one for a
    /// firewall change (the step `HOSTD_FAIL_AT_STEP` counts).
    pub fn steps(&self) -> usize {
        self.ops.len() + self.ovs_steps() + usize::from(self.firewall_changes())
    }
}

fn write_ovs_step(f: &mut fmt::Formatter<'_>, n: usize, s: &OvsStep) -> fmt::Result {
    writeln!(f, "{n:>4}. ovs: {} (one transaction)", s.title)?;
    for op in &s.ops {
        writeln!(f, "        {op}")?;
    }
    Ok(())
}

impl fmt::Display for StatePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            writeln!(f, "no changes")?;
        }
        let mut n = 0;
        let mut ops = self.ops.iter();
        let mut kernel = |f: &mut fmt::Formatter<'_>, count: usize, n: &mut usize| {
            for op in ops.by_ref().take(count) {
                *n += 1;
                writeln!(f, "{n:>4}. {op}")?;
            }
            Ok::<(), fmt::Error>(())
        };
        if let Some(o) = &self.ovs {
            kernel(f, o.before_remove, &mut n)?;
            if let Some(s) = &o.remove {
                n += 1;
                write_ovs_step(f, n, s)?;
            }
            kernel(f, o.before_steps, &mut n)?;
            for s in &o.steps {
                n += 1;
                write_ovs_step(f, n, s)?;
            }
        }
        kernel(f, usize::MAX, &mut n)?;
        match &self.firewall {
            Some(fw) if fw.action.changes() => writeln!(f, "{:>4}. {fw}", n + 1),
            Some(fw) => writeln!(f, "      {fw}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> FirewallSpec {
        FirewallSpec::from_yaml(yaml).expect("spec")
    }

    const SPEC: &str = "management: { controllers: [192.0.2.200/32], channel_port: 7443 }\n\
        rules:\n  - { action: accept, protocol: tcp, ports: [80], sources: [198.51.100.0/24, 203.0.113.0/24] }\n\
        \x20 - { action: drop, protocol: tcp, ports: [23] }\n";

    #[test]
    fn create_unchanged_replace_remove() {
        let s = spec(SPEC);
        let fp = render(&s).expect("enabled").fingerprint;
        let absent = FirewallNow::default();
        let p = FirewallPlan::for_spec(&s, &absent);
        assert_eq!(p.action, FirewallAction::Create);
        assert_eq!((p.rules, p.cidrs), (2, 2 + 1));
        assert!(p.nft_rules > 2 && p.sets >= 1, "{p:?}");
        let same = FirewallNow {
            present: true,
            fingerprint: Some(fp.clone()),
        };
        assert_eq!(
            FirewallPlan::for_spec(&s, &same).action,
            FirewallAction::Unchanged
        );
        let other = FirewallNow {
            present: true,
            fingerprint: Some("0000000000000000".into()),
        };
        let p = FirewallPlan::for_spec(&s, &other);
        assert_eq!(p.action, FirewallAction::Replace);
        assert!(p.to_string().ends_with(", was 0000000000000000)"), "{p}");
        // A table edited by hand has no fingerprint: replaced.
        let edited = FirewallNow {
            present: true,
            fingerprint: None,
        };
        assert_eq!(
            FirewallPlan::for_spec(&s, &edited).action,
            FirewallAction::Replace
        );
        let off = spec("enabled: false\n");
        assert_eq!(
            FirewallPlan::for_spec(&off, &same).action,
            FirewallAction::Remove
        );
        assert_eq!(
            FirewallPlan::for_spec(&off, &absent).action,
            FirewallAction::Absent
        );
    }

    #[test]
    fn text_numbers_the_firewall_step_after_the_network_ops() {
        let s = spec(SPEC);
        let fw = FirewallPlan::for_spec(&s, &FirewallNow::default());
        let p = StatePlan::new(Plan::default(), Some(fw.clone()));
        assert!(!p.is_empty());
        assert_eq!(p.steps(), 1);
        let t = p.to_string();
        assert!(
            t.starts_with("   1. firewall: create table inet hostd (2 rules -> "),
            "{t}"
        );
        assert!(t.contains(", 3 CIDRs, fingerprint "), "{t}");
        // Unchanged: the plan is empty, the line is still shown, unnumbered.
        let now = FirewallNow {
            present: true,
            fingerprint: fw.fingerprint.clone(),
        };
        let p = StatePlan::new(Plan::default(), Some(FirewallPlan::for_spec(&s, &now)));
        assert!(p.is_empty());
        assert_eq!(p.steps(), 0);
        let t = p.to_string();
        assert!(
            t.starts_with("no changes\n      firewall: unchanged table inet hostd (2 rules"),
            "{t}"
        );
        // No section: exactly the network plan's text.
        let p = StatePlan::new(Plan::default(), None);
        assert_eq!(p.to_string(), Plan::default().to_string());
    }

    #[test]
    fn json_keeps_the_network_plan_shape() {
        let s = spec(SPEC);
        let p = StatePlan::new(
            Plan::default(),
            Some(FirewallPlan::for_spec(&s, &FirewallNow::default())),
        );
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["firewall"]["action"], "create");
        assert_eq!(v["firewall"]["rules"], 2);
        assert_eq!(v["firewall"]["cidrs"], 3);
        assert!(v["ops"].as_array().is_some_and(Vec::is_empty));
        let back: StatePlan = serde_json::from_value(v.clone()).expect("back");
        assert_eq!(back, p);
        // The network plan alone still reads it.
        let net: Plan = serde_json::from_value(v).expect("as a Plan");
        assert!(net.is_empty());
        let none = serde_json::to_value(StatePlan::default()).expect("json");
        assert!(none.get("firewall").is_none());
    }

    #[test]
    fn presence_and_fingerprint_from_nft_listing() {
        let absent = r#"{"nftables": [{"metainfo": {"json_schema_version": 1}},
            {"table": {"family": "inet", "name": "operator", "handle": 1}}]}"#;
        assert_eq!(
            FirewallNow::from_listing(absent).expect("parses"),
            FirewallNow::default()
        );
        let empty_ours =
            r#"{"nftables": [{"table": {"family": "inet", "name": "hostd", "handle": 2}}]}"#;
        assert_eq!(
            FirewallNow::from_listing(empty_ours).expect("parses"),
            FirewallNow {
                present: true,
                fingerprint: None
            }
        );
        assert!(FirewallNow::from_listing("not json").is_err());
    }
}
