//! A simulated agent host: the load generator's and the protocol tests'
//! [`AgentHost`]. It keeps a confirmed and a pending document like hostd's
//! daemon (a pending one reverts by itself at its deadline) but touches no
//! kernel; hooks let a test react to applies and reverts (cut a proxy,
//! restore it).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{json, Value};

use crate::{
    agent::{AgentHost, BoxFuture, Reporter},
    proto::{Desired, ReportKind},
};

/// A hook called with the document.
pub type Hook = Arc<dyn Fn(&str) + Send + Sync>;

/// Settings.
#[derive(Clone, Default)]
pub struct SimConfig {
    /// A synthetic report this often (None: none).
    pub report_every: Option<Duration>,
    /// Size of a synthetic report's payload.
    pub report_bytes: usize,
    /// The inventory reported once at start (JSON).
    pub inventory: Option<Value>,
    /// Called after an apply.
    pub on_apply: Option<Hook>,
    /// Called after a revert (with the document reverted to).
    pub on_revert: Option<Hook>,
}

#[derive(Debug, Default, Clone)]
struct State {
    confirmed: String,
    pending: Option<(u64, String)>,
    reverts: u64,
}

/// The simulated host.
#[derive(Clone, Default)]
pub struct SimHost {
    cfg: SimConfig,
    state: Arc<Mutex<State>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SimHost {
    /// A host.
    pub fn new(cfg: SimConfig) -> Self {
        Self {
            cfg,
            state: Arc::new(Mutex::new(State::default())),
        }
    }
    /// The document in force (pending or confirmed).
    pub fn current(&self) -> String {
        let s = lock(&self.state);
        s.pending
            .as_ref()
            .map_or(s.confirmed.clone(), |p| p.1.clone())
    }
    /// The confirmed document.
    pub fn confirmed(&self) -> String {
        lock(&self.state).confirmed.clone()
    }
    /// Reverts done.
    pub fn reverts(&self) -> u64 {
        lock(&self.state).reverts
    }
    fn revert(&self, generation: u64) {
        let back = {
            let mut s = lock(&self.state);
            if s.pending.as_ref().is_none_or(|p| p.0 != generation) {
                return;
            }
            s.pending = None;
            s.reverts += 1;
            s.confirmed.clone()
        };
        if let Some(h) = &self.cfg.on_revert {
            h(&back);
        }
    }
}

impl AgentHost for SimHost {
    fn apply(&self, d: &Desired) -> BoxFuture<'_, Result<Value, String>> {
        let d = d.clone();
        Box::pin(async move {
            {
                let mut s = lock(&self.state);
                if s.pending.is_some() {
                    return Err("an apply is pending confirmation".into());
                }
                if d.confirm_within_s == 0 {
                    s.confirmed = d.document.clone();
                } else {
                    s.pending = Some((d.generation, d.document.clone()));
                }
            }
            if d.confirm_within_s > 0 {
                // The deadline, as hostd's daemon keeps it.
                let me = self.clone();
                let g = d.generation;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(u64::from(d.confirm_within_s))).await;
                    me.revert(g);
                });
            }
            if let Some(h) = &self.cfg.on_apply {
                h(&d.document);
            }
            Ok(json!({ "simulated": true, "operations": 1, "text": "simulated apply" }))
        })
    }

    fn confirm(&self, generation: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut s = lock(&self.state);
            match s.pending.take() {
                Some((g, doc)) if g == generation => {
                    s.confirmed = doc;
                    Ok(())
                }
                other => {
                    s.pending = other;
                    Err(format!("generation {generation} is not pending"))
                }
            }
        })
    }

    fn rollback(&self, generation: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.revert(generation);
            Ok(())
        })
    }

    fn start(&self, reporter: Reporter) {
        if let Some(inv) = &self.cfg.inventory {
            reporter.push(ReportKind::Inventory, inv.to_string());
        }
        if let Some(every) = self.cfg.report_every {
            let pad = "x".repeat(self.cfg.report_bytes);
            tokio::spawn(async move {
                // Spread the agents' reports over the period.
                let first = every.mul_f64(rand::random::<f64>());
                tokio::time::sleep(first).await;
                let mut t = tokio::time::interval(every);
                let mut n = 0u64;
                loop {
                    t.tick().await;
                    n += 1;
                    reporter.push(
                        ReportKind::Synthetic,
                        json!({ "n": n, "pad": pad }).to_string(),
                    );
                }
            });
        }
    }
}
