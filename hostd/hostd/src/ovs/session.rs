//! A blocking facade over the async OVS backend, for the engine: `hostd
//! plan/apply/teardown` run the OVS steps between kernel stages
//! (`hostd_core::ovs::doc::stage`). The session owns a current-thread tokio
//! runtime; the client's reader task runs only inside its calls, so every
//! observation first makes a round trip (`echo`) that lets the reader take
//! in what ovsdb-server sent meanwhile.

use std::{path::Path, time::Duration};

use hostd_core::ovs::{OvsObserved, OvsPlan, OvsPlanError, OvsState, OvsStep};

use super::{
    exec::{self, ApplyOptions, StepError},
    Ovs,
};

/// A connection to OVSDB usable from synchronous code.
pub struct Session {
    rt: tokio::runtime::Runtime,
    ovs: Ovs,
}

/// A step that failed, and how many steps (it included: it may have
/// committed) must be rolled back.
#[derive(Debug)]
pub struct StepFailed {
    /// Steps to roll back (the failed one included).
    pub executed: usize,
    /// What failed, with the step's number and title.
    pub cause: String,
}

impl Session {
    /// Connects to ovsdb-server's unix socket and loads the cache.
    pub fn connect(db_socket: &Path, timeout: Duration) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the OVSDB client's runtime: {e}"))?;
        let ovs = rt
            .block_on(async { tokio::time::timeout(timeout, Ovs::connect(db_socket)).await })
            .map_err(|_| format!("{}: no answer within {timeout:?}", db_socket.display()))?
            .map_err(|e| format!("{}: {e}", db_socket.display()))?;
        Ok(Self { rt, ovs })
    }

    /// The rows as ovsdb-server holds them now.
    pub fn observe(&self) -> Result<OvsObserved, String> {
        self.rt
            .block_on(self.ovs.client.echo(serde_json::json!(["hostd"])))
            .map_err(|e| format!("OVSDB: {e}"))?;
        Ok(self.ovs.observe())
    }

    /// Runs `steps` (of `plan`, numbered from `first` in messages), each one
    /// transaction waiting for ovs-vswitchd; checks patch ports whose peer a
    /// later step adds after the last one. `fail_before`: fault injection,
    /// fail as if the 0-based step had failed.
    pub fn run_steps(
        &self,
        steps: &[OvsStep],
        opts: &ApplyOptions,
        fail_before: Option<usize>,
    ) -> Result<(), StepFailed> {
        let plan = OvsPlan {
            steps: steps.to_vec(),
        };
        let deferred = exec::deferred_patches(&plan);
        let n = steps.len();
        self.rt.block_on(async {
            for (i, step) in steps.iter().enumerate() {
                let r = if fail_before == Some(i) {
                    Err(StepError::Injected(i))
                } else {
                    let label = format!("hostd step {}/{n}: {}", i + 1, step.title);
                    exec::run_step(
                        &self.ovs,
                        step,
                        label,
                        opts.step_timeout,
                        true,
                        &deferred[i],
                    )
                    .await
                };
                if let Err(e) = r {
                    return Err(StepFailed {
                        executed: i + 1,
                        cause: format!("OVS step {} ({}): {e}", i + 1, step.title),
                    });
                }
            }
            // The same bounded wait for stale "No usable peer" errors as
            // `exec::apply` (a patch port added before its peer).
            let late = exec::check_deferred_patches(&self.ovs, &deferred, opts.step_timeout).await;
            late.map_err(|e| StepFailed {
                executed: n,
                cause: format!("OVS, after the last step (patch peers): {e}"),
            })
        })
    }

    /// Restores the rows the first `executed` steps of `plan` touched to
    /// `before`, and verifies.
    pub fn rollback(
        &self,
        before: &OvsObserved,
        plan: &OvsPlan,
        executed: usize,
        opts: &ApplyOptions,
    ) -> Result<(), String> {
        self.rt
            .block_on(exec::rollback(&self.ovs, before, plan, executed, opts))
    }

    /// Re-plans until nothing is left (bounded): verification. `None`:
    /// teardown. Returns what is still to do.
    pub fn verify(
        &self,
        desired: Option<&OvsState>,
        attempts: u32,
    ) -> Result<OvsPlan, OvsPlanError> {
        let mut remaining = OvsPlan::default();
        for attempt in 0..attempts.max(1) {
            let now = self.observe().unwrap_or_else(|_| self.ovs.observe());
            remaining = match desired {
                Some(d) => hostd_core::ovs::plan_ovs(d, &now)?,
                None => hostd_core::ovs::plan_ovs_teardown(&now)?,
            };
            if remaining.is_empty() {
                break;
            }
            tracing::warn!(attempt, "ovs verify: not converged yet:\n{remaining}");
            let _ = self.rt.block_on(self.ovs.client.wait_until(
                "an OVSDB update",
                Duration::from_millis(200 << attempt.min(4)),
                |_| false,
            ));
        }
        Ok(remaining)
    }
}
