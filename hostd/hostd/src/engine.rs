//! Plan, apply, verify, roll back: the pipeline behind `hostd apply` and
//! `hostd teardown`.
//!
//! 1. observe the host and load the ownership record;
//! 2. plan (pure); a dry run stops here;
//! 3. record intent: links about to be created are written to the ownership
//!    record first, so a crash mid-apply leaves nothing unowned;
//! 4. execute the plan over netlink;
//! 5. verify: observe again and re-plan; an empty plan means done. Retried a
//!    bounded number of times (the kernel settles some state asynchronously);
//! 6. on a failed step or a failed verification, roll back to the pre-apply
//!    observation (links created are deleted, deleted ones recreated,
//!    modified ones restored), verify the rollback the same way, and report.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hostd_core::{
    model::Observed,
    plan::{plan, plan_rollback, plan_teardown, Op, Plan, PlanError},
    NetworkState, Ownership,
};

use crate::{
    apply::{execute, ExecOptions, StepFailure},
    netlink::{NlError, Rtnl},
    observe::observe,
    store::{self, StoreError},
};

/// Where hostd keeps its files, and how patient verification is.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ownership record.
    pub state_file: PathBuf,
    /// resolv.conf that `dns-resolver` writes.
    pub resolv_conf: PathBuf,
    /// Verification attempts (each observes and re-plans).
    pub verify_attempts: u32,
    /// Delay before the second attempt; doubles up to 1 s.
    pub verify_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_file: PathBuf::from(store::DEFAULT_STATE_FILE),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            verify_attempts: 20,
            verify_delay: Duration::from_millis(50),
        }
    }
}

/// Options of one apply.
#[derive(Default)]
pub struct ApplyOptions<'a> {
    /// Plan only.
    pub dry_run: bool,
    /// Test hook: make this 1-based step fail (`HOSTD_FAIL_AT_STEP`).
    pub fail_at_step: Option<usize>,
    /// Progress callback (done, total).
    pub progress: Option<&'a mut dyn FnMut(usize, usize)>,
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The plan.
    pub plan: Plan,
    /// Whether it was executed (false for dry runs and empty plans).
    pub executed: bool,
    /// Time spent executing and verifying.
    pub elapsed: Duration,
    /// Verification attempts used.
    pub verify_attempts: u32,
}

/// Errors, one class per exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The desired state does not parse.
    #[error("{0}")]
    Parse(#[from] hostd_core::schema::ParseError),
    /// The desired state is invalid, or cannot be planned on this host.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// Reading the desired-state file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel could not be observed.
    #[error("observing the host: {0}")]
    Observe(#[source] NlError),
    /// The ownership record could not be read or written.
    #[error("ownership record: {0}")]
    Store(#[from] StoreError),
    /// A step or the verification failed; the host was rolled back and
    /// verified to be as before.
    #[error(
        "apply failed: {cause}; rolled back ({rollback_ops} operations), the host is as it was"
    )]
    RolledBack {
        /// What failed.
        cause: String,
        /// Operations the rollback ran.
        rollback_ops: usize,
    },
    /// The rollback itself failed: the host is in neither state.
    #[error("apply failed: {cause}; ROLLBACK FAILED: {rollback}")]
    RollbackFailed {
        /// What failed first.
        cause: String,
        /// Why the rollback failed.
        rollback: String,
    },
}

fn observe_now(nl: &mut Rtnl, cfg: &Config) -> Result<Observed, Error> {
    observe(nl, Some(&cfg.resolv_conf)).map_err(Error::Observe)
}

/// Reads and parses a desired-state file (YAML or JSON).
pub fn load_desired(path: &Path) -> Result<NetworkState, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(NetworkState::parse(&text)?)
}

/// Observes the host (`hostd show`).
pub fn show(cfg: &Config) -> Result<Observed, Error> {
    let mut nl = Rtnl::open().map_err(Error::Observe)?;
    observe_now(&mut nl, cfg)
}

/// Plans `desired` against the host without touching it (`hostd plan`).
pub fn plan_only(cfg: &Config, desired: &NetworkState) -> Result<Plan, Error> {
    hostd_core::validate::validate(desired).map_err(PlanError::from)?;
    let own = store::load(&cfg.state_file)?;
    let mut nl = Rtnl::open().map_err(Error::Observe)?;
    let observed = observe_now(&mut nl, cfg)?;
    Ok(plan(desired, &observed, &own)?)
}

/// Plans, applies, verifies; rolls back on failure.
#[tracing::instrument(skip_all, fields(interfaces = desired.interfaces.len()))]
pub fn apply(
    cfg: &Config,
    desired: &NetworkState,
    opts: ApplyOptions<'_>,
) -> Result<Report, Error> {
    // Validation first: nothing is read from the host for a bad state.
    hostd_core::validate::validate(desired).map_err(PlanError::from)?;
    let own = store::load(&cfg.state_file)?;
    let mut nl = Rtnl::open().map_err(Error::Observe)?;
    let before = observe_now(&mut nl, cfg)?;
    let p = plan(desired, &before, &own)?;
    let next_own = own.after_apply(desired, &p);
    run(cfg, &mut nl, &before, p, &own, next_own, opts, |now| {
        plan(desired, now, &own)
    })
}

/// Removes what hostd created and unconfigures the NICs it managed.
#[tracing::instrument(skip_all)]
pub fn teardown(cfg: &Config, opts: ApplyOptions<'_>) -> Result<Report, Error> {
    let own = store::load(&cfg.state_file)?;
    let mut nl = Rtnl::open().map_err(Error::Observe)?;
    let before = observe_now(&mut nl, cfg)?;
    let p = plan_teardown(&before, &own)?;
    let mut next_own = Ownership::default();
    // Links hostd created that teardown does not delete (none expected) stay owned.
    for n in &own.created {
        if before.link(n.as_str()).is_some()
            && !p
                .ops
                .iter()
                .any(|o| matches!(o, Op::DeleteLink { iface } if iface == n))
        {
            next_own.created.insert(n.clone());
        }
    }
    run(cfg, &mut nl, &before, p, &own, next_own, opts, |now| {
        plan_teardown(now, &own)
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "internal: the two entry points differ only in these"
)]
fn run(
    cfg: &Config,
    nl: &mut Rtnl,
    before: &Observed,
    p: Plan,
    own: &Ownership,
    next_own: Ownership,
    opts: ApplyOptions<'_>,
    replan: impl Fn(&Observed) -> Result<Plan, PlanError>,
) -> Result<Report, Error> {
    let started = Instant::now();
    if opts.dry_run || p.is_empty() {
        if !opts.dry_run && next_own != *own {
            store::save(&cfg.state_file, &next_own)?;
        }
        return Ok(Report {
            plan: p,
            executed: false,
            elapsed: started.elapsed(),
            verify_attempts: 0,
        });
    }
    // Intent: whatever this plan creates is owned before it exists.
    let mut intent = own.clone();
    for op in &p.ops {
        if let Op::CreateLink { iface, .. } = op {
            intent.created.insert(iface.clone());
        }
    }
    store::save(&cfg.state_file, &intent)?;
    tracing::info!(ops = p.ops.len(), "applying");
    let exec = execute(
        nl,
        before,
        &p,
        ExecOptions {
            dns_path: &cfg.resolv_conf,
            fail_at_step: opts.fail_at_step,
            progress: opts.progress,
        },
    );
    let cause = match exec {
        Err(f) => Some(describe(&f)),
        Ok(()) => match verify(nl, cfg, &replan) {
            Ok(attempts) => {
                store::save(&cfg.state_file, &next_own)?;
                tracing::info!(ops = p.ops.len(), attempts, "applied and verified");
                return Ok(Report {
                    plan: p,
                    executed: true,
                    elapsed: started.elapsed(),
                    verify_attempts: attempts,
                });
            }
            Err(e) => Some(e),
        },
    };
    let cause = cause.unwrap_or_default();
    tracing::warn!(%cause, "rolling back");
    match rollback(nl, cfg, before) {
        Ok(n) => {
            store::save(&cfg.state_file, own)?;
            Err(Error::RolledBack {
                cause,
                rollback_ops: n,
            })
        }
        Err(rollback) => {
            // Keep ownership of everything that might still exist.
            let _ = store::save(&cfg.state_file, &intent);
            Err(Error::RollbackFailed { cause, rollback })
        }
    }
}

fn describe(f: &StepFailure) -> String {
    f.to_string()
}

/// Observes and re-plans until nothing is left to do, a bounded number of
/// times. Returns the attempts used, or what still differs.
fn verify(
    nl: &mut Rtnl,
    cfg: &Config,
    replan: &impl Fn(&Observed) -> Result<Plan, PlanError>,
) -> Result<u32, String> {
    let mut delay = cfg.verify_delay;
    let mut last = String::new();
    for attempt in 1..=cfg.verify_attempts.max(1) {
        let now = observe(nl, Some(&cfg.resolv_conf))
            .map_err(|e| format!("verification could not observe: {e}"))?;
        match replan(&now) {
            Ok(p) if p.is_empty() => return Ok(attempt),
            Ok(p) => {
                last = format!(
                    "verification failed after {attempt} attempts: {} differences remain: {}",
                    p.ops.len(),
                    p.ops
                        .iter()
                        .take(5)
                        .map(|o| o.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                tracing::debug!(
                    attempt,
                    remaining = p.ops.len(),
                    "verify: not converged yet"
                );
            }
            Err(e) => last = format!("verification could not plan: {e}"),
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    Err(last)
}

/// Rolls the host back to `before`; returns the number of operations run.
pub fn rollback(nl: &mut Rtnl, cfg: &Config, before: &Observed) -> Result<usize, String> {
    let now =
        observe(nl, Some(&cfg.resolv_conf)).map_err(|e| format!("observing for rollback: {e}"))?;
    let p = plan_rollback(before, &now).map_err(|e| format!("planning the rollback: {e}"))?;
    let n = p.ops.len();
    tracing::info!(ops = n, "rollback plan");
    execute(
        nl,
        &now,
        &p,
        ExecOptions {
            dns_path: &cfg.resolv_conf,
            fail_at_step: None,
            progress: None,
        },
    )
    .map_err(|f| format!("rollback {f}"))?;
    verify(nl, cfg, &|now: &Observed| plan_rollback(before, now))
        .map_err(|e| format!("rollback {e}"))?;
    Ok(n)
}
