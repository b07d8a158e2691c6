//! The planner's driver: runs the phase planners in order over the merged
//! view of the intent and the kernel model, applying each operation to the
//! model as it is emitted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::{
    model::{Link, Observed},
    sim::Kernel,
};

use super::{
    addresses, bridge_vlans, dns,
    intent::{Intent, LinkIntent},
    links, mtu, ports, routes, state, Op, Plan, PlanError,
};

/// The state of one planning run.
pub(super) struct Work<'a> {
    /// What must be true.
    pub intent: &'a Intent,
    /// The kernel model, as it will be after the operations so far.
    pub k: Kernel,
    /// The operations so far.
    pub ops: Vec<Op>,
    /// Intents by the name the link must have.
    by_name: BTreeMap<&'a str, &'a LinkIntent>,
    /// Depth of each link: 0 for NICs, one more than its deepest lower
    /// device (a VLAN's base, a controller's ports).
    depth: BTreeMap<String, usize>,
    /// Links the plan deletes (and recreates when the intent wants them).
    pub doomed: BTreeSet<String>,
    /// The host when the plan starts, by ifindex.
    start_by_index: HashMap<u32, &'a Link>,
    /// The deletion phase has run.
    pub deletions_done: bool,
    /// Routes when the plan started.
    start_routes: Vec<crate::schema::Route>,
    /// ifindex of each link when the plan started, by name.
    start_names: HashMap<String, u32>,
}

impl<'a> Work<'a> {
    fn new(intent: &'a Intent, start: &'a Observed) -> Self {
        let by_name = intent.links.iter().map(|l| (l.name.as_str(), l)).collect();
        Self {
            intent,
            k: Kernel::new(start),
            ops: Vec::new(),
            by_name,
            depth: depths(intent, start),
            doomed: BTreeSet::new(),
            start_by_index: start.links.iter().map(|l| (l.index, l)).collect(),
            deletions_done: false,
            start_routes: start.routes.clone(),
            start_names: start
                .links
                .iter()
                .map(|l| (l.name.to_string(), l.index))
                .collect(),
        }
    }

    /// The intent for the link named `name`.
    pub fn intent(&self, name: &str) -> Option<&'a LinkIntent> {
        self.by_name.get(name).copied()
    }

    /// Depth of `name` (0 when unknown).
    pub fn depth(&self, name: &str) -> usize {
        self.depth.get(name).copied().unwrap_or(0)
    }

    /// The link `l` as it was when the plan started (same ifindex).
    pub fn at_start(&self, l: &Link) -> Option<&'a Link> {
        self.start_by_index.get(&l.index).copied()
    }

    /// The routes when the plan started.
    pub fn start_routes(&self) -> Vec<crate::schema::Route> {
        self.start_routes.clone()
    }

    /// `r` (observed when the plan started) with its links' names as they are
    /// now (renames followed by ifindex); `None` when one of them is gone.
    pub fn renamed_route(&self, r: &crate::schema::Route) -> Option<crate::schema::Route> {
        let map = |n: &crate::types::IfName| -> Option<crate::types::IfName> {
            let idx = self.start_names.get(n.as_str())?;
            self.k
                .links()
                .find(|l| l.index == *idx)
                .map(|l| l.name.clone())
        };
        let mut out = r.clone();
        if let Some(n) = &r.next_hop_interface {
            out.next_hop_interface = Some(map(n)?);
        }
        for nh in out.multipath.iter_mut() {
            if let Some(n) = &nh.next_hop_interface {
                nh.next_hop_interface = Some(map(n)?);
            }
        }
        Some(out)
    }

    /// Emits `op`, applying it to the kernel model; refused when the model
    /// says the kernel would refuse it.
    pub fn push(&mut self, op: Op) -> Result<(), PlanError> {
        if let Err(reason) = self.k.apply(&op) {
            return Err(PlanError::Refused {
                step: self.ops.len() + 1,
                op: op.to_string(),
                reason,
            });
        }
        self.ops.push(op);
        Ok(())
    }

    /// True when the kernel model would accept `op` now.
    pub fn accepts(&self, op: &Op) -> Result<(), String> {
        let mut k = self.k.clone();
        k.apply(op)
    }

    /// Intents of links that exist now, with the link (before the deletion
    /// phase, without the links it deletes).
    pub fn existing(&self) -> Vec<(&'a LinkIntent, Link)> {
        let deleted = self.deletions_done;
        self.intent
            .links
            .iter()
            .filter(|li| deleted || !self.doomed.contains(li.name.as_str()))
            .filter_map(|li| self.k.link(li.name.as_str()).map(|l| (li, l.clone())))
            .collect()
    }
}

/// Runs every phase.
pub(super) fn run(intent: &Intent, observed: &Observed) -> Result<Plan, PlanError> {
    let mut w = Work::new(intent, observed);
    links::renames(&mut w)?;
    links::check_kinds(&w)?;
    w.doomed = links::doomed(&w)?;
    routes::deletions(&mut w)?;
    addresses::deletions(&mut w)?;
    ports::releases(&mut w)?;
    links::deletions(&mut w)?;
    links::changes(&mut w)?;
    links::creations(&mut w)?;
    ports::enslavements(&mut w)?;
    bridge_vlans::plan(&mut w)?;
    mtu::plan(&mut w)?;
    state::plan(&mut w)?;
    addresses::additions(&mut w)?;
    routes::additions(&mut w)?;
    dns::plan(&mut w)?;
    Ok(Plan { ops: w.ops })
}

fn depths(intent: &Intent, start: &Observed) -> BTreeMap<String, usize> {
    // Borrowed names and hash maps: this runs over every link of the host
    // on every plan, including the no-op re-apply.
    let mut lowers: HashMap<&str, Vec<&str>> = HashMap::new();
    for l in &start.links {
        let e = lowers.entry(l.name.as_str()).or_default();
        if let Some(v) = &l.vlan {
            e.push(v.base_iface.as_str());
        }
        if let Some(c) = &l.controller {
            lowers.entry(c.as_str()).or_default().push(l.name.as_str());
        }
    }
    for li in &intent.links {
        let e = lowers.entry(li.name.as_str()).or_default();
        if let Some(v) = &li.vlan {
            e.push(v.base_iface.as_str());
        }
        if let Some(Some(c)) = &li.controller {
            lowers
                .entry(c.name.as_str())
                .or_default()
                .push(li.name.as_str());
        }
    }
    fn go<'n>(
        n: &'n str,
        lowers: &HashMap<&'n str, Vec<&'n str>>,
        memo: &mut HashMap<&'n str, usize>,
        guard: usize,
    ) -> usize {
        if let Some(d) = memo.get(n) {
            return *d;
        }
        if guard > 64 {
            return 0; // a cycle (validation refuses those); do not recurse forever
        }
        let d = lowers
            .get(n)
            .map(|ls| {
                ls.iter()
                    .map(|l| go(l, lowers, memo, guard + 1) + 1)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        memo.insert(n, d);
        d
    }
    let mut memo: HashMap<&str, usize> = HashMap::new();
    for n in lowers.keys() {
        go(n, &lowers, &mut memo, 0);
    }
    memo.into_iter().map(|(n, d)| (n.to_owned(), d)).collect()
}
