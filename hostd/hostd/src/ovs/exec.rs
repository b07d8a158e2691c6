//! Executing an OVS plan: each step is one OVSDB transaction that also
//! increments `next_cfg`; hostd then waits for ovs-vswitchd's `cur_cfg` and
//! checks the interfaces the step added (`error`, `ofport -1`). After the
//! last step it re-observes and re-plans (verify). A failed step or a failed
//! verification rolls back the rows the executed steps touched, to the
//! pre-apply observation, and verifies that too.
//!
//! Every update and reference change is guarded: the row must still carry
//! hostd's tag (`external_ids includes {hostd-owner=hostd}`) and match
//! exactly one row, or the step fails (someone changed OVSDB meanwhile).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use hostd_core::ovs::{
    plan_ovs, plan_ovs_rollback, plan_ovs_teardown, Col, OvsObserved, OvsOp, OvsPlan, OvsPlanError,
    OvsRow, OvsState, OvsStep, Table, OWNER_KEY, OWNER_VALUE,
};
use hostd_ovsdb::{
    client::uuid_set, wire, Atom, Condition, Error as DbError, Mutation, Op, Uuid, DB,
};
use serde_json::{json, Map, Value};
use tracing::{info, instrument, warn};

use super::Ovs;

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Bound on each step's wait for ovs-vswitchd (`cur_cfg`).
    pub step_timeout: Duration,
    /// Verification attempts after the last step (re-observe, re-plan).
    pub verify_attempts: u32,
    /// Fault injection for tests: fail right after this many steps
    /// committed (0 = before the first), as if the next step had failed.
    pub fail_after_steps: Option<usize>,
    /// Plan only.
    pub dry_run: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(60),
            verify_attempts: 5,
            fail_after_steps: None,
            dry_run: false,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub plan: OvsPlan,
    pub observe_plan: Duration,
    pub execute: Duration,
    pub verify: Duration,
}

/// A failed apply; `rolled_back` says whether the touched rows are back.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Plan(#[from] OvsPlanError),
    #[error("OVS step {step} ({title}) failed: {source}; rollback: {}", rollback_text(.rolled_back))]
    Step {
        step: usize,
        title: String,
        #[source]
        source: StepError,
        rolled_back: Result<(), String>,
    },
    #[error("OVS verification failed, still to do:\n{remaining}rollback: {}", rollback_text(.rolled_back))]
    Verify {
        remaining: OvsPlan,
        rolled_back: Result<(), String>,
    },
}

fn rollback_text(r: &Result<(), String>) -> String {
    match r {
        Ok(()) => "done, verified".into(),
        Err(e) => format!("FAILED: {e}"),
    }
}

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Interfaces(String),
    #[error("{table} {name} is gone or no longer hostd's (expected one row, matched {count})")]
    Guard {
        table: &'static str,
        name: String,
        count: u64,
    },
    #[error("{0} is not in OVSDB")]
    Missing(String),
    #[error("injected failure after {0} step(s)")]
    Injected(usize),
}

impl StepError {
    /// Whether re-observing and trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StepError::Db(e) => e.is_retryable(),
            StepError::Guard { .. } | StepError::Missing(_) => true,
            _ => false,
        }
    }
}

fn col_json(c: &Col) -> Value {
    match c {
        Col::Null => wire::empty(),
        Col::Bool(b) => json!(b),
        Col::Int(i) => json!(i),
        Col::Str(s) => json!(s),
        Col::Ints(v) => wire::set(v.iter().map(|i| Atom::Int(*i))),
        Col::Map(m) => wire::str_map(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    }
}

fn row_json(r: &OvsRow, cols: &BTreeMap<String, Col>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(r.name));
    m.insert(
        "external_ids".into(),
        wire::str_map(r.external_ids.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    );
    for (k, v) in cols {
        m.insert(k.clone(), col_json(v));
    }
    m
}

fn owned(name: &str) -> Vec<Condition> {
    vec![
        Condition::name(name),
        Condition {
            column: "external_ids".into(),
            function: "includes",
            value: wire::str_map([(OWNER_KEY, OWNER_VALUE)]),
        },
    ]
}

/// A step's operations, and which results must count exactly one row.
struct Txn {
    ops: Vec<Op>,
    guards: Vec<(usize, &'static str, String)>,
    added_ifaces: Vec<String>,
}

impl Txn {
    fn guarded(&mut self, table: &'static str, name: &str, op: Op) {
        self.guards.push((self.ops.len(), table, name.to_owned()));
        self.ops.push(op);
    }
}

/// Translates a step into OVSDB operations; references to existing rows are
/// resolved through `cache` (names -> UUIDs).
fn step_ops(ovs: &Ovs, step: &OvsStep, comment: String) -> Result<Txn, StepError> {
    let mut t = Txn {
        ops: vec![Op::Comment(comment)],
        guards: Vec::new(),
        added_ifaces: Vec::new(),
    };
    let uuid_of = |table: &str, name: &str| -> Result<Uuid, StepError> {
        ovs.client
            .with_cache(|c| c.by_name(table, name).map(|(u, _)| u.clone()))
            .ok_or_else(|| StepError::Missing(format!("{table} {name}")))
    };
    // Port references added to / removed from each bridge, as one mutate each.
    let mut port_adds: BTreeMap<&str, Vec<Atom>> = BTreeMap::new();
    let mut port_dels: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    let mut n = 0usize;
    let mut fresh = |prefix: &str| {
        n += 1;
        format!("{prefix}{n}")
    };
    let update = |table: &'static str, name: &str, set: &BTreeMap<String, Col>| Op::Update {
        table: table.into(),
        conditions: owned(name),
        row: set.iter().map(|(k, v)| (k.clone(), col_json(v))).collect(),
    };
    for op in &step.ops {
        match op {
            OvsOp::AddBridge { row } => {
                let id = fresh("b");
                t.ops.push(Op::Insert {
                    table: "Bridge".into(),
                    row: row_json(row, &row.columns),
                    uuid_name: Some(id.clone()),
                });
                t.ops.push(Op::Mutate {
                    table: "Open_vSwitch".into(),
                    conditions: vec![],
                    mutations: vec![Mutation::insert("bridges", wire::set([Atom::Named(id)]))],
                });
            }
            OvsOp::SetBridge { name, set, .. } => {
                t.guarded("Bridge", name, update("Bridge", name, set))
            }
            OvsOp::DelBridge { name } => {
                let u = uuid_of("Bridge", name)?;
                t.ops.push(Op::Mutate {
                    table: "Open_vSwitch".into(),
                    conditions: vec![],
                    mutations: vec![Mutation::delete("bridges", uuid_set([&u]))],
                });
            }
            OvsOp::AddPort {
                bridge,
                row,
                interfaces,
            } => {
                let mut irefs = Vec::new();
                for i in interfaces {
                    let id = fresh("i");
                    t.ops.push(Op::Insert {
                        table: "Interface".into(),
                        row: row_json(i, &i.columns),
                        uuid_name: Some(id.clone()),
                    });
                    irefs.push(Atom::Named(id));
                    t.added_ifaces.push(i.name.clone());
                }
                let id = fresh("p");
                let mut prow = row_json(row, &row.columns);
                prow.insert("interfaces".into(), wire::set(irefs));
                t.ops.push(Op::Insert {
                    table: "Port".into(),
                    row: prow,
                    uuid_name: Some(id.clone()),
                });
                port_adds.entry(bridge).or_default().push(Atom::Named(id));
            }
            OvsOp::SetPort { name, set, .. } => t.guarded("Port", name, update("Port", name, set)),
            OvsOp::DelPort { bridge, name, .. } => {
                port_dels
                    .entry(bridge)
                    .or_default()
                    .push(uuid_of("Port", name)?);
            }
            OvsOp::AddInterface { port, row } => {
                let id = fresh("i");
                t.ops.push(Op::Insert {
                    table: "Interface".into(),
                    row: row_json(row, &row.columns),
                    uuid_name: Some(id.clone()),
                });
                t.added_ifaces.push(row.name.clone());
                t.guarded(
                    "Port",
                    port,
                    Op::Mutate {
                        table: "Port".into(),
                        conditions: owned(port),
                        mutations: vec![Mutation::insert(
                            "interfaces",
                            wire::set([Atom::Named(id)]),
                        )],
                    },
                );
            }
            OvsOp::SetInterface { name, set, .. } => {
                t.guarded("Interface", name, update("Interface", name, set))
            }
            OvsOp::DelInterface { port, name } => {
                let u = uuid_of("Interface", name)?;
                t.guarded(
                    "Port",
                    port,
                    Op::Mutate {
                        table: "Port".into(),
                        conditions: owned(port),
                        mutations: vec![Mutation::delete("interfaces", uuid_set([&u]))],
                    },
                );
            }
        }
    }
    // Removals before additions: a port may leave one bridge of hostd's and
    // join another in the same step.
    for (bridge, uuids) in port_dels {
        t.guarded(
            "Bridge",
            bridge,
            Op::Mutate {
                table: "Bridge".into(),
                conditions: owned(bridge),
                mutations: vec![Mutation::delete("ports", uuid_set(&uuids))],
            },
        );
    }
    for (bridge, refs) in port_adds {
        t.guarded(
            "Bridge",
            bridge,
            Op::Mutate {
                table: "Bridge".into(),
                conditions: owned(bridge),
                mutations: vec![Mutation::insert("ports", wire::set(refs))],
            },
        );
    }
    Ok(t)
}

/// Runs one step: one transaction with `next_cfg += 1`; waits for
/// ovs-vswitchd unless `wait` is false; checks the added interfaces.
#[instrument(skip_all, fields(step = %step.title))]
pub(crate) async fn run_step(
    ovs: &Ovs,
    step: &OvsStep,
    label: String,
    timeout: Duration,
    wait: bool,
    deferred: &BTreeSet<String>,
) -> Result<(), StepError> {
    let txn = step_ops(ovs, step, label)?;
    for op in &step.ops {
        info!(%op, "ovs");
    }
    let result = if wait {
        ovs.client.transact_applied(&txn.ops, timeout).await?.0
    } else {
        let mut ops = txn.ops.clone();
        ops.push(Op::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            mutations: vec![Mutation::add("next_cfg", 1)],
        });
        ovs.client.transact(DB, &ops).await?
    };
    for (i, table, name) in &txn.guards {
        let count = result.count(*i).unwrap_or(0);
        if count != 1 {
            // The transaction was applied; this is reported (and rolled
            // back by the caller) rather than silently accepted.
            return Err(StepError::Guard {
                table,
                name: name.clone(),
                count,
            });
        }
    }
    if wait {
        check_interfaces(
            ovs,
            txn.added_ifaces
                .iter()
                .filter(|i| !deferred.contains(*i))
                .map(String::as_str),
        )?;
    }
    Ok(())
}

pub(crate) fn check_interfaces<'a>(
    ovs: &Ovs,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), StepError> {
    let fails = ovs.client.interface_failures(names);
    if fails.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = fails.iter().map(ToString::to_string).collect();
    Err(StepError::Interfaces(format!(
        "ovs-vswitchd could not add: {}",
        text.join("; ")
    )))
}

/// The check of the patch interfaces deferred to the end (see
/// [`deferred_patches`]). ovs-vswitchd writes "No usable peer" on a patch
/// port whose peer did not exist when it was added, and may leave it there
/// after the peer arrives (its status refresh comes on its own schedule):
/// while the only failures are such patch ports and their peers are now
/// rows, it asks ovs-vswitchd to reconfigure once more and waits a bounded
/// time for the errors to clear, so a missing peer still fails the apply.
pub(crate) async fn check_deferred_patches(
    ovs: &Ovs,
    deferred: &[BTreeSet<String>],
    timeout: Duration,
) -> Result<(), StepError> {
    let names: Vec<&str> = deferred.iter().flatten().map(String::as_str).collect();
    if names.is_empty() {
        return Ok(());
    }
    let stale_only = |ovs: &Ovs| {
        let fails = ovs.client.interface_failures(names.iter().copied());
        !fails.is_empty()
            && ovs.client.with_cache(|c| {
                fails.iter().all(|f| {
                    let peer_is_a_row = c
                        .by_name("Interface", &f.name)
                        .and_then(|(_, r)| r.str_map("options").get("peer").cloned())
                        .is_some_and(|p| c.by_name("Interface", &p).is_some());
                    peer_is_a_row
                        && f.error
                            .as_deref()
                            .is_some_and(|e| e.contains("No usable peer"))
                })
            })
    };
    // Check first, then decide: the cache may show an error only after a
    // first look (monitor updates arrive on their own), so a stale error
    // is recognised whenever the check fails, not only before it.
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        if check_interfaces(ovs, names.clone()).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline || !stale_only(ovs) {
            return check_interfaces(ovs, names);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = ovs.client.transact_applied(&[], left).await;
        let waiting = names.clone();
        let _ = ovs
            .client
            .wait_until("patch peers resolved", pause.min(left), move |c| {
                waiting.iter().all(|n| {
                    c.by_name("Interface", n)
                        .is_some_and(|(_, r)| r.str("error").is_none())
                })
            })
            .await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Patch interfaces whose peer a later step adds: ovs-vswitchd reports
/// "No usable peer" until then, so their check waits for the last step.
/// Returns, per step, the names to defer.
pub(crate) fn deferred_patches(plan: &OvsPlan) -> Vec<BTreeSet<String>> {
    let mut added: BTreeMap<&str, (usize, Option<&str>)> = BTreeMap::new();
    for (i, s) in plan.steps.iter().enumerate() {
        for op in &s.ops {
            let rows: Vec<&OvsRow> = match op {
                OvsOp::AddPort { interfaces, .. } => interfaces.iter().collect(),
                OvsOp::AddInterface { row, .. } => vec![row],
                _ => continue,
            };
            for r in rows {
                let peer = match (r.columns.get("type"), r.columns.get("options")) {
                    (Some(Col::Str(t)), Some(Col::Map(o))) if t == "patch" => {
                        o.get("peer").map(String::as_str)
                    }
                    _ => None,
                };
                added.insert(r.name.as_str(), (i, peer));
            }
        }
    }
    let mut out = vec![BTreeSet::new(); plan.steps.len()];
    for (name, (i, peer)) in &added {
        if let Some((j, _)) = peer.and_then(|p| added.get(p)) {
            if j > i {
                out[*i].insert((*name).to_owned());
            }
        }
    }
    out
}

fn replan(desired: Option<&OvsState>, o: &OvsObserved) -> Result<OvsPlan, OvsPlanError> {
    match desired {
        Some(d) => plan_ovs(d, o),
        None => plan_ovs_teardown(o),
    }
}

/// Restores the rows the first `executed` steps of `plan` touched to
/// `before`, and verifies.
pub(crate) async fn rollback(
    ovs: &Ovs,
    before: &OvsObserved,
    plan: &OvsPlan,
    executed: usize,
    opts: &ApplyOptions,
) -> Result<(), String> {
    let touched = plan.touched_by(executed);
    for attempt in 0..opts.verify_attempts.max(1) {
        let now = ovs.observe();
        let rb = plan_ovs_rollback(before, &now, &touched).map_err(|e| e.to_string())?;
        if rb.is_empty() {
            info!(attempt, "ovs rollback verified");
            return Ok(());
        }
        warn!(steps = rb.steps.len(), "ovs rollback:\n{rb}");
        for (i, s) in rb.steps.iter().enumerate() {
            // The database is what must be restored; ovs-vswitchd may be the
            // reason for the failure, so its acknowledgement is awaited but
            // not required.
            let label = format!(
                "hostd rollback step {}/{}: {}",
                i + 1,
                rb.steps.len(),
                s.title
            );
            let none = BTreeSet::new();
            if let Err(e) = run_step(ovs, s, label, opts.step_timeout, false, &none).await {
                warn!(error = %e, "ovs rollback step failed");
            }
        }
        let next = ovs.client.root().and_then(|(_, r)| r.int("next_cfg"));
        if let Some(n) = next {
            if let Err(e) = ovs.client.wait_cur_cfg(n, opts.step_timeout).await {
                warn!(error = %e, "ovs-vswitchd did not acknowledge the rollback");
            }
        }
    }
    let rest = plan_ovs_rollback(before, &ovs.observe(), &touched).map_err(|e| e.to_string())?;
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!("rows still differ after rollback:\n{rest}"))
    }
}

/// Plan, execute, verify; roll back on failure. `desired` None = teardown.
pub async fn apply(
    ovs: &Ovs,
    desired: Option<&OvsState>,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let t0 = Instant::now();
    let before = ovs.observe();
    let plan = replan(desired, &before)?;
    let observe_plan = t0.elapsed();
    let mut report = ApplyReport {
        plan: plan.clone(),
        observe_plan,
        execute: Duration::ZERO,
        verify: Duration::ZERO,
    };
    if opts.dry_run || plan.is_empty() {
        return Ok(report);
    }
    let t1 = Instant::now();
    let n = plan.steps.len();
    let deferred = deferred_patches(&plan);
    for (i, step) in plan.steps.iter().enumerate() {
        let r = if opts.fail_after_steps == Some(i) {
            Err(StepError::Injected(i))
        } else {
            let label = format!("hostd step {}/{n}: {}", i + 1, step.title);
            run_step(ovs, step, label, opts.step_timeout, true, &deferred[i]).await
        };
        if let Err(source) = r {
            warn!(step = i + 1, error = %source, "ovs step failed; rolling back");
            // A step that failed may still have committed (a timeout waiting
            // for ovs-vswitchd, a failed interface): include it.
            let rolled_back = rollback(ovs, &before, &plan, i + 1, opts).await;
            return Err(ApplyError::Step {
                step: i + 1,
                title: step.title.clone(),
                source,
                rolled_back,
            });
        }
    }
    let late = check_deferred_patches(ovs, &deferred, opts.step_timeout).await;
    let late = match (opts.fail_after_steps == Some(n), late) {
        (true, _) => Err(StepError::Injected(n)),
        (false, r) => r,
    };
    if let Err(source) = late {
        let rolled_back = rollback(ovs, &before, &plan, n, opts).await;
        return Err(ApplyError::Step {
            step: n,
            title: "after the last step (patch peers)".into(),
            source,
            rolled_back,
        });
    }
    report.execute = t1.elapsed();
    let t2 = Instant::now();
    let mut remaining = OvsPlan::default();
    for attempt in 0..opts.verify_attempts.max(1) {
        remaining = replan(desired, &ovs.observe())?;
        if remaining.is_empty() {
            break;
        }
        warn!(attempt, "ovs verify: not converged yet:\n{remaining}");
        let _ = ovs
            .client
            .wait_until(
                "an OVSDB update",
                Duration::from_millis(200 << attempt),
                |_| false,
            )
            .await;
    }
    if !remaining.is_empty() {
        let rolled_back = rollback(ovs, &before, &plan, n, opts).await;
        return Err(ApplyError::Verify {
            remaining,
            rolled_back,
        });
    }
    report.verify = t2.elapsed();
    info!(steps = n, ops = plan.op_count(), "ovs apply done");
    Ok(report)
}

/// The rows that differ between two observations, for diagnostics.
pub fn describe_diff(a: &OvsObserved, b: &OvsObserved) -> Vec<String> {
    let (a, b) = (a.config_view(), b.config_view());
    let mut out = Vec::new();
    for t in [Table::Bridge, Table::Port, Table::Interface] {
        for r in a.rows(t) {
            match b.get(t, &r.name) {
                None => out.push(format!("{t} {} only before", r.name)),
                Some(o) if o != r => out.push(format!("{t} {} differs: {r:?} vs {o:?}", r.name)),
                _ => {}
            }
        }
        for r in b.rows(t) {
            if a.get(t, &r.name).is_none() {
                out.push(format!("{t} {} only after", r.name));
            }
        }
    }
    out
}
