//! The reconcile loop (a Talos-style controller: spec = the target
//! document, status = the kernel's observation).
//!
//! Events mark the state dirty ([`Coalescer`]); when due, one reconcile
//! plans the target against the observation. An empty plan is health `ok`.
//! Otherwise it is drift: announced (`Drift`), and under the `repair`
//! policy re-applied through the engine when [`Repairs`] allows (`Repaired`),
//! or left alone while backing off, or suspended after a fight
//! (`FightDetected`). The engine only ever changes what the document names
//! or what hostd created, so foreign objects are never touched.

use std::{collections::HashSet, sync::atomic::Ordering, time::Duration};

use serde_json::{json, Value};
use tokio::{
    sync::{broadcast, mpsc},
    time::{sleep_until, Instant},
};

use super::{
    coalesce::{Coalescer, Decision, Repairs},
    doc::{short, Document, Policy},
    events::Event,
    Daemon, Health, Note,
};
use crate::engine;

/// Runs until the event channel closes.
pub async fn run(
    d: Daemon,
    mut events: mpsc::Receiver<Vec<Event>>,
    links: broadcast::Sender<Event>,
) {
    let cfg = d.config().clone();
    let mut coalescer = Coalescer::new(cfg.quiet, cfg.max_delay);
    let mut repairs = Repairs::new(cfg.limits);
    let mut target_rx = d.watch_target();
    let mut retry_at: Option<Instant> = None;
    let mut first_event: Option<Instant> = None;
    let mut last_drift: Option<Vec<String>> = None;
    let mut next_resync = cfg.resync.map(|r| Instant::now() + r);
    let mut scope = Scope::of(target_rx.borrow().as_ref());
    // Reconcile once at start.
    coalescer.note(Instant::now());
    loop {
        let due = [coalescer.deadline(), retry_at, next_resync]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            batch = events.recv() => {
                let Some(batch) = batch else { return };
                let now = Instant::now();
                d.stats().events.fetch_add(batch.len() as u64, Ordering::Relaxed);
                let mut relevant = false;
                for ev in batch {
                    if ev == Event::Overrun {
                        d.stats().overruns.fetch_add(1, Ordering::Relaxed);
                    }
                    if scope.concerns(&ev) {
                        relevant = true;
                    } else {
                        d.stats().foreign_events.fetch_add(1, Ordering::Relaxed);
                    }
                    if matches!(ev, Event::Link { .. } | Event::LinkGone { .. } | Event::Overrun) {
                        let _ = links.send(ev);
                    }
                }
                if relevant {
                    first_event.get_or_insert(now);
                    coalescer.note(now);
                }
            }
            r = target_rx.changed() => {
                if r.is_err() { return }
                // A new document (or a confirm/revert): start afresh.
                scope = Scope::of(target_rx.borrow().as_ref());
                repairs.reset();
                d.set_fight(None);
                last_drift = None;
                retry_at = None;
                coalescer.note(Instant::now());
            }
            () = sleep_until(due.unwrap_or_else(far_future)), if due.is_some() => {
                let now = Instant::now();
                if next_resync.is_some_and(|t| now >= t) {
                    next_resync = cfg.resync.map(|r| now + r);
                    coalescer.note(now);
                    if !coalescer.due(now) { continue }
                }
                let retry_due = retry_at.is_some_and(|t| now >= t);
                if !retry_due && !coalescer.due(now) {
                    continue;
                }
                coalescer.take();
                let since = first_event.take();
                let target = target_rx.borrow().clone();
                let (retry, indexes) =
                    reconcile(&d, target, &mut repairs, &mut last_drift, since).await;
                retry_at = retry;
                if let Some(i) = indexes {
                    scope.indexes = i;
                }
            }
        }
    }
}

/// Identifies a drift by the operations repairing it.
fn drift_key(ops: &[String]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ops.hash(&mut h);
    h.finish()
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

fn op_lines(p: &crate::engine::StatePlan) -> Vec<String> {
    p.to_string().lines().map(str::to_owned).collect()
}

/// Which link events concern the target document: links it names (by name,
/// and by the ifindex they had at the last observation, so a rename or a
/// deletion is seen). Events of other links (a hypervisor's VM ports coming
/// and going, say) cannot change what the document manages and cause no
/// reconcile; address, route and bridge VLAN events always do.
#[derive(Debug, Default)]
struct Scope {
    /// None: no document, everything concerns the status.
    names: Option<HashSet<String>>,
    indexes: HashSet<u32>,
}

impl Scope {
    fn of(doc: Option<&Document>) -> Self {
        Self {
            names: doc.map(|d| {
                d.state
                    .interfaces
                    .iter()
                    .map(|i| i.name.as_str().to_owned())
                    .collect()
            }),
            indexes: HashSet::new(),
        }
    }

    fn concerns(&self, ev: &Event) -> bool {
        let Some(names) = &self.names else {
            return true;
        };
        match ev {
            Event::Link { index, name } | Event::LinkGone { index, name } => {
                self.indexes.contains(index)
                    || name.as_ref().is_none_or(|n| names.contains(n.as_str()))
            }
            _ => true,
        }
    }
}

/// One reconcile. Returns when to try again (back-off), if a repair waits,
/// and the ifindexes of the document's links as observed.
#[tracing::instrument(skip_all, fields(id))]
async fn reconcile(
    d: &Daemon,
    target: Option<Document>,
    repairs: &mut Repairs,
    last_drift: &mut Option<Vec<String>>,
    since: Option<Instant>,
) -> (Option<Instant>, Option<HashSet<u32>>) {
    let mut indexes = None;
    let retry = reconcile_inner(d, target, repairs, last_drift, since, &mut indexes).await;
    (retry, indexes)
}

async fn reconcile_inner(
    d: &Daemon,
    target: Option<Document>,
    repairs: &mut Repairs,
    last_drift: &mut Option<Vec<String>>,
    since: Option<Instant>,
    indexes: &mut Option<HashSet<u32>>,
) -> Option<Instant> {
    let started = Instant::now();
    d.stats().reconciles.fetch_add(1, Ordering::Relaxed);
    // One observation for the ifindexes of the document's links (event
    // scope); then the plan (the engine observes again, with its own DNS
    // and firewall reads).
    // The document is read again once the engine is ours: an apply that
    // held it has changed the target by then (with the one read before, a
    // reconcile queued behind an apply "repaired" the apply away).
    let _ = target;
    let dd = d.clone();
    let r = d
        .with_engine(move |cfg| {
            let target = dd.target();
            let obs = engine::show(cfg);
            let plan = target.as_ref().map(|t| engine::plan_only(cfg, &t.state));
            (obs, plan, target)
        })
        .await;
    let (obs, plan, target) = match r {
        Ok(x) => x,
        Err(e) => {
            d.set_health(Health::Error(e.to_string()));
            return None;
        }
    };
    match &obs {
        Ok(o) => {
            if let Some(t) = &target {
                *indexes = Some(
                    o.links
                        .iter()
                        .filter(|l| t.state.interface(l.name.as_str()).is_some())
                        .map(|l| l.index)
                        .collect(),
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "observing the document's links"),
    }
    let finish = |d: &Daemon| {
        d.stats()
            .last_reconcile_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    };
    let Some(target) = target else {
        d.set_health(Health::Ok);
        finish(d);
        return None;
    };
    tracing::Span::current().record("id", short(&target.id));
    let plan = match plan {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            d.set_health(Health::Error(format!("planning: {e}")));
            finish(d);
            return None;
        }
        None => return None,
    };
    if plan.is_empty() {
        if last_drift.take().is_some() || repairs.fighting() {
            tracing::info!("no drift");
        }
        repairs.converged(Instant::now());
        if !repairs.fighting() {
            d.set_fight(None);
        }
        d.set_health(Health::Ok);
        finish(d);
        return None;
    }
    d.stats().drifts.fetch_add(1, Ordering::Relaxed);
    let ops = op_lines(&plan);
    let n =
        plan.ops.len() + usize::from(plan.firewall.as_ref().is_some_and(|f| f.action.changes()));
    if last_drift.as_ref() != Some(&ops) {
        tracing::warn!(operations = n, plan = %plan, policy = %target.policy(), "drift");
        d.note(Note::Drift {
            id: target.id.clone(),
            details: json!({ "ops": ops, "policy": target.policy().to_string() }),
        });
        *last_drift = Some(ops.clone());
    }
    if target.policy() == Policy::Report {
        d.set_health(Health::Drift(format!("{n} difference(s), policy report")));
        finish(d);
        return None;
    }
    match repairs.decide(Instant::now()) {
        Decision::Suspended => {
            d.set_health(Health::Fight(format!(
                "repairs suspended, {n} difference(s) left"
            )));
            finish(d);
            None
        }
        Decision::Wait(t) => {
            d.set_health(Health::Drift(format!(
                "{n} difference(s), repair in {:.1} s (back-off)",
                t.saturating_duration_since(Instant::now()).as_secs_f64()
            )));
            finish(d);
            Some(t)
        }
        Decision::Repair => {
            let state = target.state.clone();
            let r = d
                .with_engine(move |cfg| engine::apply(cfg, &state, engine::ApplyOptions::default()))
                .await;
            let now = Instant::now();
            d.stats().repairs.fetch_add(1, Ordering::Relaxed);
            let details: Value = match &r {
                Ok(Ok(rep)) => {
                    tracing::info!(operations = rep.plan.ops.len(), "drift repaired");
                    json!({ "ok": true, "ops": op_lines(&rep.plan) })
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "repair failed");
                    json!({ "ok": false, "ops": ops, "error": e.to_string() })
                }
                Err(e) => json!({ "ok": false, "ops": ops, "error": e.to_string() }),
            };
            if let Some(s) = since {
                d.stats()
                    .last_repair_latency_us
                    .store(now.duration_since(s).as_micros() as u64, Ordering::Relaxed);
            }
            d.note(Note::Repaired {
                id: target.id.clone(),
                details: details.clone(),
            });
            *last_drift = None;
            if repairs.repaired(now, drift_key(&ops)) {
                let window = d.config().limits.window;
                let fight = json!({
                    "repairs": repairs.recent(),
                    "window_s": window.as_secs(),
                    "ops": ops,
                    "since": super::store::unix_now(),
                });
                tracing::error!(
                    repairs = repairs.recent(),
                    window_s = window.as_secs(),
                    plan = %plan,
                    "another manager keeps undoing hostd's repairs: repairs suspended until the drift goes away or a document is applied"
                );
                d.set_fight(Some(fight.clone()));
                d.note(Note::Fight {
                    id: target.id.clone(),
                    details: fight,
                });
                d.set_health(Health::Fight(format!(
                    "repairs suspended, {n} difference(s) left"
                )));
            } else if details["ok"] == true {
                d.set_health(Health::Ok);
            } else {
                d.set_health(Health::Error(format!(
                    "repair failed: {}",
                    details["error"].as_str().unwrap_or("")
                )));
            }
            finish(d);
            // Check again once the back-off allows, in case nothing else
            // wakes the loop (a failed repair leaves the drift in place).
            match repairs.decide(Instant::now()) {
                Decision::Wait(t) if details["ok"] != true => Some(t),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documents_links_and_all_addresses_and_routes_concern_it() {
        let doc =
            Document::parse("interfaces:\n  - { name: eth0, type: ethernet }\n").expect("doc");
        let mut s = Scope::of(Some(&doc));
        let link = |index, name: &str| Event::Link {
            index,
            name: Some(name.into()),
        };
        assert!(s.concerns(&link(2, "eth0")));
        assert!(!s.concerns(&link(9, "vnet7")), "a VM's port");
        assert!(s.concerns(&Event::Address) && s.concerns(&Event::Route));
        assert!(s.concerns(&Event::Overrun));
        assert!(s.concerns(&Event::Link {
            index: 9,
            name: None
        }));
        // eth0 renamed: the event carries the new name, the index tells.
        s.indexes.insert(2);
        assert!(s.concerns(&link(2, "renamed0")));
        assert!(s.concerns(&Event::LinkGone {
            index: 2,
            name: None
        }));
        // Without a document everything concerns the status.
        assert!(Scope::of(None).concerns(&link(9, "vnet7")));
    }
}
