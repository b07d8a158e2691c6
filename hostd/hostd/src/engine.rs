//! Plan, apply, verify, roll back: the pipeline behind `hostd apply` and
//! `hostd teardown`.
//!
//! 0. take the ownership record's lock (one hostd at a time);
//! 1. observe the host and load the ownership record;
//! 2. plan (pure); a dry run stops here;
//! 3. record intent: links about to be created are written to the ownership
//!    record first (identified by the lowest ifindex they can get), so a
//!    crash mid-apply leaves nothing unowned;
//! 4. execute the plan over netlink, keeping every operation the kernel
//!    acknowledged;
//! 5. verify: observe again and re-plan; an empty plan means done. A
//!    difference that persists is applied as a corrective plan (bounded:
//!    [`CORRECTIVE_ROUNDS`]); otherwise retried a bounded number of times;
//! 6. on a failed step or a failed verification, roll back exactly the
//!    acknowledged operations and what the kernel did because of them
//!    ([`hostd_core::plan::plan_rollback`]: links created are deleted,
//!    deleted ones recreated with their ifindex and MAC, modified ones
//!    restored; nothing another process did meanwhile is touched), verify the
//!    rollback the same way, and report;
//! 7. then the firewall step, when the document has a `firewall` section
//!    (teardown: always removes hostd's table): one nft transaction
//!    ([`crate::firewall`]). If it fails, the network changes are rolled back
//!    too, and hostd's table is put back as it was: apply is all or nothing.
//!
//! The firewall is read (`nft -j -t list ruleset`) before anything is
//! touched, so `plan` shows what would happen to it ([`StatePlan`]).
//!
//! A document with OVS entries (`ovs-bridge`, `ovs-interface`) also plans
//! the OVS rows (`hostd_core::ovs::plan_ovs`, against OVSDB read at
//! [`Config::ovs_db_socket`]) and runs in stages
//! (`hostd_core::ovs::doc::stage`): kernel removals on OVS netdevs, the OVS
//! `remove` step, the kernel operations that do not depend on OVS (a Linux
//! bond OVS takes as a port), the other OVS steps (each waited for until
//! ovs-vswitchd applied it), then the kernel operations on OVS netdevs
//! (addresses, a VLAN on an internal port) and every address, route and DNS
//! operation. Verification re-plans both sides; a failure rolls back every
//! stage done, in reverse order, each exactly (kernel: the acknowledged
//! operations against the observation taken before that stage; OVS: the
//! rows its steps touched). A document without OVS entries never reads
//! OVSDB. See docs/ovs.md.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hostd_core::{
    model::Observed,
    plan::{plan_rollback, plan_teardown, plan_validated, Op, Plan, PlanError},
    NetworkState, Ownership,
};

use hostd_core::{
    firewall::{render, Current, Ruleset},
    validate::ValidationErrors,
};

pub use crate::state_plan::{FirewallAction, FirewallNow, FirewallPlan, StatePlan};
use crate::{
    apply::{execute, ExecOptions, StepFailure},
    firewall::{Applied, Nft},
    netlink::{NlError, Rtnl},
    observe::observe,
    resolved::{self, DnsTarget, Resolved},
    store::{self, StoreError},
};

/// Where hostd keeps its files, and how patient verification is.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ownership record.
    pub state_file: PathBuf,
    /// resolv.conf that `dns-resolver` writes (when systemd-resolved does
    /// not run, or [`DnsBackend::File`]).
    pub resolv_conf: PathBuf,
    /// Where `dns-resolver` goes.
    pub dns_backend: DnsBackend,
    /// Verification attempts (each observes and re-plans).
    pub verify_attempts: u32,
    /// Delay before the second attempt; doubles up to 1 s.
    pub verify_delay: Duration,
    /// How the firewall step runs `nft`.
    pub nft: Nft,
    /// ovsdb-server's socket, read only for documents with OVS entries
    /// (and by `teardown` when it exists).
    pub ovs_db_socket: PathBuf,
    /// How the OVS steps wait for ovs-vswitchd and verify.
    pub ovs: crate::ovs::ApplyOptions,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_file: PathBuf::from(store::DEFAULT_STATE_FILE),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            dns_backend: DnsBackend::Auto,
            verify_attempts: 20,
            verify_delay: Duration::from_millis(50),
            nft: Nft::default(),
            ovs_db_socket: PathBuf::from(crate::ovs::DEFAULT_DB_SOCKET),
            ovs: crate::ovs::ApplyOptions::default(),
        }
    }
}

/// Where `dns-resolver` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsBackend {
    /// systemd-resolved (per link, over D-Bus) when `org.freedesktop.resolve1`
    /// has an owner on the system bus, else the resolv.conf file.
    #[default]
    Auto,
    /// Always the resolv.conf file (`--resolv-conf` given explicitly).
    File,
}

/// Options of one apply.
#[derive(Default)]
pub struct ApplyOptions<'a> {
    /// Plan only.
    pub dry_run: bool,
    /// Test hook (cargo feature `fault-injection`): a failure at a step;
    /// `StopBefore(ops + 1)` fails the firewall step.
    #[cfg(feature = "fault-injection")]
    pub fault: Option<crate::apply::Fault>,
    /// Progress callback (done, total).
    pub progress: Option<&'a mut dyn FnMut(usize, usize)>,
}

/// Corrective rounds verification may apply: a difference the plan can fix
/// that is still there on the next observation is planned and applied again
/// (the kernel did something by itself the plan did not foresee, or another
/// process undid a change).
pub const CORRECTIVE_ROUNDS: u32 = 3;

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The plan: network operations, then the firewall step.
    pub plan: StatePlan,
    /// Whether it was executed (false for dry runs and empty plans).
    pub executed: bool,
    /// What the firewall step did, when it ran.
    pub firewall: Option<Applied>,
    /// Time spent executing and verifying.
    pub elapsed: Duration,
    /// Verification attempts used.
    pub verify_attempts: u32,
    /// Corrective plans verification applied (see [`CORRECTIVE_ROUNDS`]).
    pub corrections: Vec<Plan>,
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
    /// systemd-resolved could not be asked (detection or reading a link's
    /// DNS); nothing was touched.
    #[error("observing the host: {0}")]
    Resolved(#[source] resolved::Error),
    /// The ownership record could not be read or written, or another hostd
    /// holds its lock.
    #[error("ownership record: {0}")]
    Store(#[from] StoreError),
    /// The state names something this host does not have (telemetry
    /// interfaces that are neither declared nor NICs); nothing was touched.
    #[error("{0}")]
    Conflict(ValidationErrors),
    /// The document has OVS entries and OVSDB could not be read; nothing
    /// was touched.
    #[error("OVSDB: {0}")]
    Ovs(String),
    /// The OVS part cannot be planned (a name held by a row hostd did not
    /// create); nothing was touched.
    #[error("{0}")]
    OvsPlan(#[from] hostd_core::ovs::OvsPlanError),
    /// hostd's nftables table could not be read before anything was
    /// touched (`nft` missing or failing).
    #[error("reading the firewall: {0}")]
    Firewall(#[source] crate::firewall::Error),
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

fn observe_now(nl: &mut Rtnl, dns: &DnsTarget) -> Result<Observed, Error> {
    match dns {
        DnsTarget::File(path) => observe(nl, Some(path)).map_err(Error::Observe),
        DnsTarget::Resolved { bus, iface } => {
            let mut obs = observe(nl, None).map_err(Error::Observe)?;
            obs.dns = match obs.link(iface.as_str()) {
                Some(l) => Some(bus.link_dns(l.index).map_err(Error::Resolved)?),
                None => None,
            };
            Ok(obs)
        }
    }
}

/// Where `desired`'s `dns-resolver` goes: systemd-resolved on the carrier
/// link ([`resolved::carrier`]) when it runs and the backend allows it,
/// else the file. Without a `dns-resolver` section nothing is asked.
fn dns_target(cfg: &Config, desired: Option<&NetworkState>) -> Result<DnsTarget, Error> {
    let file = DnsTarget::File(cfg.resolv_conf.clone());
    let Some(desired) = desired.filter(|d| d.dns_resolver.is_some()) else {
        return Ok(file);
    };
    if cfg.dns_backend == DnsBackend::File {
        return Ok(file);
    }
    match Resolved::detect().map_err(Error::Resolved)? {
        Some(bus) => {
            let iface = resolved::carrier(desired).map_err(PlanError::from)?;
            tracing::info!(%iface, "systemd-resolved runs: dns-resolver is set on this link");
            Ok(DnsTarget::Resolved { bus, iface })
        }
        None => Ok(file),
    }
}

fn observe_dns(nl: &mut Rtnl, dns: &DnsTarget) -> Result<Observed, String> {
    observe_now(nl, dns).map_err(|e| e.to_string())
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
    observe_now(&mut nl, &dns_target(cfg, None)?)
}

/// The OVS rows, when ovsdb-server answers at [`Config::ovs_db_socket`]
/// (`hostd show`); `None` when its socket does not exist.
pub fn show_ovs(cfg: &Config) -> Result<Option<hostd_core::ovs::OvsObserved>, Error> {
    if !cfg.ovs_db_socket.exists() {
        return Ok(None);
    }
    let s = crate::ovs::session::Session::connect(&cfg.ovs_db_socket, cfg.ovs.step_timeout)
        .map_err(Error::Ovs)?;
    s.observe().map(Some).map_err(Error::Ovs)
}

/// The OVS part of a run: the session, the rows before, the plan, and the
/// kernel plan cut around its steps.
struct OvsRun {
    session: crate::ovs::session::Session,
    /// `None`: teardown.
    desired: Option<hostd_core::ovs::OvsState>,
    plan: hostd_core::ovs::OvsPlan,
    staged: hostd_core::ovs::doc::Staged,
    stages: crate::state_plan::OvsStages,
}

/// Names of the OVS internal interfaces OVSDB holds (netdevs of the system
/// and netdev datapaths).
fn observed_internal(o: &hostd_core::ovs::OvsObserved) -> std::collections::BTreeSet<String> {
    o.interfaces
        .iter()
        .filter(|r| r.columns.get("type") == Some(&hostd_core::ovs::Col::Str("internal".into())))
        .map(|r| r.name.clone())
        .collect()
}

/// Reads OVSDB, plans the OVS part, and cuts the kernel plan `network`
/// (planned against `before`) around it. `desired` None: teardown.
fn prepare_ovs(
    cfg: &Config,
    session: crate::ovs::session::Session,
    desired: Option<&NetworkState>,
    before: &Observed,
    network: &Plan,
) -> Result<(OvsRun, Plan), Error> {
    use hostd_core::ovs::doc;
    let ovs_before = session.observe().map_err(Error::Ovs)?;
    let part = desired.and_then(doc::ovs_part);
    let plan = match &part {
        Some(p) => hostd_core::ovs::plan_ovs(&p.state, &ovs_before)?,
        None => hostd_core::ovs::plan_ovs_teardown(&ovs_before)?,
    };
    let mut netdevs = observed_internal(&ovs_before);
    if let Some(p) = &part {
        netdevs.extend(doc::netdevs(&p.state).into_keys());
    }
    let predicted = match desired {
        Some(d) => doc::predict(before, d),
        None => before.clone(),
    };
    let dep = doc::dependents(&netdevs, &predicted, desired);
    let staged = doc::stage(network, &predicted, &dep);
    let (ops, stages) = crate::state_plan::OvsStages::new(&staged, &plan);
    let _ = cfg;
    Ok((
        OvsRun {
            session,
            desired: part.map(|p| p.state),
            plan,
            staged,
            stages,
        },
        ops,
    ))
}

/// Reads what hostd's nftables table holds now.
pub fn firewall_now(nft: &Nft) -> Result<FirewallNow, Error> {
    read_firewall(nft).map(|cur| FirewallNow::from_current(&cur))
}

fn read_firewall(nft: &Nft) -> Result<Current, Error> {
    crate::firewall::read_current(nft).map_err(Error::Firewall)
}

/// Everything `apply` needs, read and decided before anything is touched.
struct Prepared {
    dns: DnsTarget,
    own: Ownership,
    before: Observed,
    network: Plan,
    ovs: Option<OvsRun>,
    firewall: Option<(FirewallPlan, Option<Ruleset>, Current)>,
}

fn prepare(cfg: &Config, nl: &mut Rtnl, desired: &NetworkState) -> Result<Prepared, Error> {
    // Validation first: nothing is read from the host for a bad state.
    let t = Instant::now();
    hostd_core::validate::validate(desired).map_err(PlanError::from)?;
    tracing::debug!(ms = t.elapsed().as_secs_f64() * 1e3, "validated");
    let dns = dns_target(cfg, Some(desired))?;
    let own = store::load(&cfg.state_file)?;
    let t = Instant::now();
    let before = observe_now(nl, &dns)?;
    tracing::debug!(
        ms = t.elapsed().as_secs_f64() * 1e3,
        links = before.links.len(),
        "observed"
    );
    hostd_core::validate::check_telemetry_interfaces(desired, &before).map_err(Error::Conflict)?;
    let t = Instant::now();
    let mut network = plan_validated(desired, &before, &own)?;
    tracing::debug!(
        ms = t.elapsed().as_secs_f64() * 1e3,
        ops = network.ops.len(),
        "planned"
    );
    // OVS only for a document with OVS entries: otherwise OVSDB is never
    // read (a host without Open vSwitch).
    let ovs = if hostd_core::ovs::doc::has_ovs(desired) {
        let session =
            crate::ovs::session::Session::connect(&cfg.ovs_db_socket, cfg.ovs.step_timeout)
                .map_err(|e| {
                    Error::Ovs(format!(
                        "the document has OVS entries, but ovsdb-server does not answer: {e}"
                    ))
                })?;
        let (run, ops) = prepare_ovs(cfg, session, Some(desired), &before, &network)?;
        network = ops;
        Some(run)
    } else {
        None
    };
    let firewall = match &desired.firewall {
        Some(spec) => {
            let cur = read_firewall(&cfg.nft)?;
            // Rendered once: for the plan here, for the step in `run`.
            let rs = render(spec);
            let plan = FirewallPlan::for_ruleset(
                rs.as_ref(),
                spec.rules.len(),
                &FirewallNow::from_current(&cur),
            );
            Some((plan, rs, cur))
        }
        None => None,
    };
    Ok(Prepared {
        dns,
        own,
        before,
        network,
        ovs,
        firewall,
    })
}

/// Plans `desired` against the host without touching it (`hostd plan`).
pub fn plan_only(cfg: &Config, desired: &NetworkState) -> Result<StatePlan, Error> {
    let mut nl = Rtnl::open().map_err(Error::Observe)?;
    let p = prepare(cfg, &mut nl, desired)?;
    let mut sp = StatePlan::new(p.network, p.firewall.map(|(f, _, _)| f));
    sp.ovs = p.ovs.map(|o| o.stages);
    Ok(sp)
}

/// Plans, applies, verifies; rolls back on failure. The firewall step runs
/// after the network is applied and verified; if it fails, the network is
/// rolled back too. Holds the ownership record's lock throughout.
#[tracing::instrument(skip_all, fields(interfaces = desired.interfaces.len()))]
pub fn apply(
    cfg: &Config,
    desired: &NetworkState,
    opts: ApplyOptions<'_>,
) -> Result<Report, Error> {
    let _lock = store::lock(&cfg.state_file)?;
    let mut nl = Rtnl::open().map_err(Error::Observe)?;
    let Prepared {
        dns,
        own,
        before,
        network,
        ovs,
        firewall,
    } = prepare(cfg, &mut nl, desired)?;
    let fw = firewall.map(|(plan, ruleset, current)| FirewallStep {
        plan,
        ruleset,
        current,
    });
    run(
        cfg,
        &mut nl,
        &dns,
        &before,
        network,
        ovs,
        fw,
        &own,
        |p, now| own.after_apply(desired, p, now),
        opts,
        |now| plan_validated(desired, now, &own),
    )
}

/// Removes what hostd created and unconfigures the NICs it managed; removes
/// hostd's nftables table (and no other).
#[tracing::instrument(skip_all)]
pub fn teardown(cfg: &Config, opts: ApplyOptions<'_>) -> Result<Report, Error> {
    let _lock = store::lock(&cfg.state_file)?;
    let own = store::load(&cfg.state_file)?;
    let mut nl = Rtnl::open().map_err(Error::Observe)?;
    let dns = dns_target(cfg, None)?;
    let before = observe_now(&mut nl, &dns)?;
    let mut p = plan_teardown(&before, &own)?;
    // OVS: the rows hostd created, when ovsdb-server runs (its socket
    // exists and answers); otherwise nothing OVS is read or touched.
    let ovs = match ovs_for_teardown(cfg) {
        Some(session) => {
            let (run, ops) = prepare_ovs(cfg, session, None, &before, &p)?;
            if run.plan.is_empty() {
                None
            } else {
                p = ops;
                Some(run)
            }
        }
        None => None,
    };
    // Without an `nft` binary hostd cannot have made a table: nothing to remove.
    let fw = match read_firewall(&cfg.nft) {
        Ok(current) => Some(FirewallStep {
            plan: FirewallPlan::removal(&FirewallNow::from_current(&current)),
            ruleset: None,
            current,
        }),
        Err(Error::Firewall(crate::firewall::Error::Spawn { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            tracing::warn!("no nft binary: no firewall table to remove");
            None
        }
        Err(e) => return Err(e),
    };
    run(
        cfg,
        &mut nl,
        &dns,
        &before,
        p,
        ovs,
        fw,
        &own,
        // Links hostd created that teardown did not delete (none expected)
        // stay owned.
        |_, now| Ownership {
            created: own
                .created
                .iter()
                .filter(|(n, o)| now.link(n.as_str()).is_some_and(|l| o.matches(l)))
                .map(|(n, o)| (n.clone(), *o))
                .collect(),
            ..Ownership::default()
        },
        opts,
        |now| plan_teardown(now, &own),
    )
}

/// A session for teardown when ovsdb-server's socket exists and answers.
fn ovs_for_teardown(cfg: &Config) -> Option<crate::ovs::session::Session> {
    if !cfg.ovs_db_socket.exists() {
        return None;
    }
    match crate::ovs::session::Session::connect(&cfg.ovs_db_socket, cfg.ovs.step_timeout) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "ovsdb-server does not answer: OVS left alone");
            None
        }
    }
}

/// The firewall part of a run: its plan, the ruleset to install (`None`:
/// remove hostd's table), and the table as read for the plan.
struct FirewallStep {
    plan: FirewallPlan,
    ruleset: Option<Ruleset>,
    current: Current,
}

impl FirewallStep {
    /// Runs the step from what the plan already rendered and read.
    fn execute(&self, nft: &Nft) -> Result<Applied, crate::firewall::Error> {
        crate::firewall::apply_rendered(
            nft,
            self.ruleset.as_ref(),
            Some(self.current.clone()),
            crate::firewall::ApplyOptions::default(),
        )
    }
}

/// Puts hostd's table back as it was before a failed firewall step, if the
/// step changed it (a transaction is atomic, so usually it did not).
fn restore_firewall(nft: &Nft, was: &FirewallNow, saved: Option<&str>) -> Result<(), String> {
    let now = firewall_now(nft).map_err(|e| e.to_string())?;
    if now == *was {
        return Ok(());
    }
    match (was.present, saved) {
        (false, _) => crate::firewall::disable(nft).map_err(|e| e.to_string()),
        (true, Some(text)) => {
            let script = format!(
                "table {f} {t} {{}}\ndelete table {f} {t}\n{text}",
                f = hostd_core::firewall::FAMILY,
                t = hostd_core::firewall::TABLE
            );
            nft.transaction(&script, "restore transaction")
                .map_err(|e| e.to_string())
        }
        (true, None) => Err("hostd's table changed and its previous content was not saved".into()),
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "internal: the two entry points differ only in these"
)]
fn run(
    cfg: &Config,
    nl: &mut Rtnl,
    dns: &DnsTarget,
    before: &Observed,
    p: Plan,
    ovs: Option<OvsRun>,
    fw: Option<FirewallStep>,
    own: &Ownership,
    next_own: impl Fn(&Plan, &Observed) -> Ownership,
    opts: ApplyOptions<'_>,
    replan: impl Fn(&Observed) -> Result<Plan, PlanError>,
) -> Result<Report, Error> {
    let started = Instant::now();
    let fw_changes = fw.as_ref().is_some_and(|f| f.plan.action.changes());
    let stages = ovs.as_ref().map(|o| o.stages.clone());
    let ovs_steps = stages.as_ref().map_or(0, |s| s.len());
    let whole = |p: Plan| {
        let mut sp = StatePlan::new(p, fw.as_ref().map(|f| f.plan.clone()));
        sp.ovs = stages.clone();
        sp
    };
    #[cfg(feature = "fault-injection")]
    let fault = opts.fault;
    #[cfg(not(feature = "fault-injection"))]
    let fault: Option<()> = None;
    let ApplyOptions {
        dry_run, progress, ..
    } = opts;
    if dry_run || (p.is_empty() && ovs_steps == 0 && !fw_changes) {
        if !dry_run {
            let next = next_own(&p, before);
            if next != *own {
                store::save(&cfg.state_file, &next)?;
            }
        }
        return Ok(Report {
            plan: whole(p),
            executed: false,
            firewall: None,
            elapsed: started.elapsed(),
            verify_attempts: 0,
            corrections: Vec::new(),
        });
    }
    // Intent: whatever this plan creates is owned before it exists.
    let mut intent = own.with_pending(&p, before);
    let mut attempts = 0;
    let mut corrections = Vec::new();
    let mut now = before.clone();
    // What was done, stage by stage: what a rollback undoes, in reverse.
    let mut done: Vec<Done> = Vec::new();
    if !p.is_empty() || ovs_steps > 0 {
        store::save(&cfg.state_file, &intent)?;
        tracing::info!(ops = p.ops.len(), ovs_steps, "applying");
        let executed = match &ovs {
            None => {
                let out = execute(
                    nl,
                    before,
                    &p,
                    ExecOptions {
                        dns,
                        #[cfg(feature = "fault-injection")]
                        fault,
                        progress,
                    },
                );
                done.push(Done::Kernel {
                    before: before.clone(),
                    sent: out.acked,
                });
                match out.failure {
                    Some(f) => Err(describe(&f)),
                    None => Ok(()),
                }
            }
            Some(o) => run_stages(nl, cfg, dns, before, o, fault, progress, &mut done),
        };
        // Then OVS verified: either failure undoes everything done.
        let verified = executed.and_then(|()| match &ovs {
            Some(o) => match o
                .session
                .verify(o.desired.as_ref(), cfg.ovs.verify_attempts)
            {
                Ok(rest) if rest.is_empty() => Ok(()),
                Ok(rest) => Err(format!("OVS verification failed, still to do:\n{rest}")),
                Err(e) => Err(format!("OVS verification could not plan: {e}")),
            },
            None => Ok(()),
        });
        if let Err(cause) = verified {
            return Err(undo_all(
                nl,
                cfg,
                dns,
                ovs.as_ref(),
                own,
                &intent,
                &done,
                cause,
            ));
        }
        // With OVS stages, the corrections are their own stage, rolled
        // back against the observation taken just before them.
        let verify_before = ovs
            .as_ref()
            .map(|_| observe_dns(nl, dns).unwrap_or_else(|_| before.clone()));
        let mut more = Vec::new();
        let verified = verify(nl, cfg, dns, &replan, &mut more, Some(&mut intent));
        match (&mut done[..], verify_before) {
            // One stage: its corrections are rolled back with it, against
            // the same observation, as before OVS existed.
            ([Done::Kernel { sent, .. }], None) => sent.extend(more),
            (_, vb) => done.push(Done::Kernel {
                before: vb.unwrap_or_else(|| before.clone()),
                sent: more,
            }),
        }
        match verified {
            Ok(v) => {
                tracing::info!(
                    ops = p.ops.len(),
                    ovs_steps,
                    attempts = v.attempts,
                    corrections = v.corrections.len(),
                    "applied and verified"
                );
                attempts = v.attempts;
                corrections = v.corrections;
                now = v.now;
            }
            Err(cause) => {
                return Err(undo_all(
                    nl,
                    cfg,
                    dns,
                    ovs.as_ref(),
                    own,
                    &intent,
                    &done,
                    cause,
                ))
            }
        }
    }
    let mut fw_applied = None;
    if let Some(step) = fw.as_ref().filter(|_| fw_changes) {
        let n = p.ops.len() + ovs_steps + 1;
        // Saved before the transaction, to put a replaced table back.
        let saved = if step.current.present && step.plan.action == FirewallAction::Replace {
            cfg.nft
                .list_table()
                .map_err(
                    |e| tracing::warn!(error = %e, "cannot save hostd's table before replacing it"),
                )
                .ok()
        } else {
            None
        };
        #[cfg(feature = "fault-injection")]
        let injected = fault == Some(crate::apply::Fault::StopBefore(n));
        #[cfg(not(feature = "fault-injection"))]
        let injected = false;
        let result = if injected {
            Err(format!(
                "step {n} ({}): injected failure (fault injection)",
                step.plan
            ))
        } else {
            step.execute(&cfg.nft)
                .map_err(|e| format!("step {n} ({}): {e}", step.plan))
        };
        match result {
            Ok(a) => {
                tracing::info!(action = ?step.plan.action, "firewall step done");
                fw_applied = Some(a);
            }
            Err(cause) => {
                tracing::warn!(%cause, "firewall step failed");
                let fw_back = restore_firewall(
                    &cfg.nft,
                    &FirewallNow::from_current(&step.current),
                    saved.as_deref(),
                );
                let net_back = undo(nl, cfg, dns, ovs.as_ref(), &done);
                let back = match (net_back, fw_back) {
                    (Ok(n), Ok(())) => Ok(n),
                    (net, fwb) => {
                        let mut what = Vec::new();
                        if let Err(e) = net {
                            what.push(e);
                        }
                        if let Err(e) = fwb {
                            what.push(format!("firewall not restored: {e}"));
                        }
                        Err(what.join("; "))
                    }
                };
                return Err(rollback_outcome(cfg, own, &intent, cause, back));
            }
        }
    }
    // The whole of what was applied: the plan and its corrections.
    let mut applied = p.clone();
    for c in &corrections {
        applied.ops.extend(c.ops.iter().cloned());
    }
    store::save(&cfg.state_file, &next_own(&applied, &now))?;
    Ok(Report {
        plan: whole(p),
        executed: true,
        firewall: fw_applied,
        elapsed: started.elapsed(),
        verify_attempts: attempts,
        corrections,
    })
}

/// One stage done: what its rollback needs.
enum Done {
    /// Kernel operations acknowledged, and the observation taken before
    /// them (the state their rollback restores).
    Kernel { before: Observed, sent: Vec<Op> },
    /// OVS steps of `plan` run (`executed`, the failed one included), and
    /// the rows before them.
    Ovs {
        before: hostd_core::ovs::OvsObserved,
        plan: hostd_core::ovs::OvsPlan,
        executed: usize,
    },
}

#[cfg(feature = "fault-injection")]
type FaultOpt = Option<crate::apply::Fault>;
#[cfg(not(feature = "fault-injection"))]
type FaultOpt = Option<()>;

/// Runs the stages of a document with OVS entries (see the module docs).
/// Steps are numbered across the stages as `hostd plan` prints them; the
/// fault hook counts the same way.
#[allow(clippy::too_many_arguments, reason = "internal")]
fn run_stages(
    nl: &mut Rtnl,
    cfg: &Config,
    dns: &DnsTarget,
    before: &Observed,
    o: &OvsRun,
    fault: FaultOpt,
    mut progress: Option<&mut dyn FnMut(usize, usize)>,
    done: &mut Vec<Done>,
) -> Result<(), String> {
    enum Stage<'a> {
        Kernel(&'a Plan),
        Ovs(Vec<hostd_core::ovs::OvsStep>),
    }
    let stages = [
        Stage::Kernel(&o.staged.pre),
        Stage::Ovs(o.stages.remove.iter().cloned().collect()),
        Stage::Kernel(&o.staged.main),
        Stage::Ovs(o.stages.steps.clone()),
        Stage::Kernel(&o.staged.post),
    ];
    let total =
        o.staged.pre.ops.len() + o.staged.main.ops.len() + o.staged.post.ops.len() + o.stages.len();
    let mut offset = 0usize;
    let _ = &fault;
    for stage in stages {
        match stage {
            Stage::Kernel(p) if p.is_empty() => {}
            Stage::Kernel(p) => {
                let obs = if done.is_empty() {
                    before.clone()
                } else {
                    observe_dns(nl, dns)?
                };
                #[cfg(feature = "fault-injection")]
                let f = fault.and_then(|f| {
                    use crate::apply::Fault;
                    let shift =
                        |n: usize| (n > offset && n <= offset + p.ops.len()).then(|| n - offset);
                    match f {
                        Fault::StopBefore(n) => shift(n).map(Fault::StopBefore),
                        Fault::Refuse(n) => shift(n).map(Fault::Refuse),
                    }
                });
                let off = offset;
                let mut prog = |d: usize, _t: usize| {
                    if let Some(pr) = progress.as_mut() {
                        pr(off + d, total)
                    }
                };
                let out = execute(
                    nl,
                    &obs,
                    p,
                    ExecOptions {
                        dns,
                        #[cfg(feature = "fault-injection")]
                        fault: f,
                        progress: Some(&mut prog),
                    },
                );
                done.push(Done::Kernel {
                    before: obs,
                    sent: out.acked,
                });
                if let Some(f) = out.failure {
                    return Err(format!(
                        "step {} ({}) failed: {}",
                        f.step + offset,
                        f.op,
                        f.error
                    ));
                }
                offset += p.ops.len();
            }
            Stage::Ovs(steps) if steps.is_empty() => {}
            Stage::Ovs(steps) => {
                let ob = o.session.observe()?;
                #[cfg(feature = "fault-injection")]
                let fail_before = match fault {
                    Some(crate::apply::Fault::StopBefore(n))
                        if n > offset && n <= offset + steps.len() =>
                    {
                        Some(n - offset - 1)
                    }
                    _ => None,
                };
                #[cfg(not(feature = "fault-injection"))]
                let fail_before = None;
                let n = steps.len();
                let plan = hostd_core::ovs::OvsPlan { steps };
                let r = o.session.run_steps(&plan.steps, &cfg.ovs, fail_before);
                let executed = match &r {
                    Ok(()) => n,
                    Err(e) => e.executed,
                };
                done.push(Done::Ovs {
                    before: ob,
                    plan,
                    executed,
                });
                if let Err(e) = r {
                    return Err(format!("step {} failed: {}", offset + e.executed, e.cause));
                }
                offset += n;
                if let Some(pr) = progress.as_mut() {
                    pr(offset, total);
                }
            }
        }
    }
    Ok(())
}

/// Rolls back every stage in `done`, last first; returns the operations
/// the rollbacks ran (kernel operations, plus one per OVS row restored).
fn undo(
    nl: &mut Rtnl,
    cfg: &Config,
    dns: &DnsTarget,
    ovs: Option<&OvsRun>,
    done: &[Done],
) -> Result<usize, String> {
    let mut n = 0;
    let mut errs = Vec::new();
    for d in done.iter().rev() {
        match d {
            Done::Kernel { sent, .. } if sent.is_empty() => {}
            Done::Kernel { before, sent } => match rollback(nl, cfg, dns, before, sent) {
                Ok(k) => n += k,
                Err(e) => errs.push(e),
            },
            Done::Ovs { executed: 0, .. } => {}
            Done::Ovs {
                before,
                plan,
                executed,
            } => match ovs {
                Some(o) => match o.session.rollback(before, plan, *executed, &cfg.ovs) {
                    Ok(()) => n += plan.touched_by(*executed).0.len(),
                    Err(e) => errs.push(format!("OVS rollback: {e}")),
                },
                None => errs.push("OVS rollback: no OVSDB session".into()),
            },
        }
    }
    if errs.is_empty() {
        Ok(n)
    } else {
        Err(errs.join("; "))
    }
}

/// Rolls everything done back after a failed step or verification and
/// builds the error to report.
#[allow(clippy::too_many_arguments, reason = "internal")]
fn undo_all(
    nl: &mut Rtnl,
    cfg: &Config,
    dns: &DnsTarget,
    ovs: Option<&OvsRun>,
    own: &Ownership,
    intent: &Ownership,
    done: &[Done],
    cause: String,
) -> Error {
    tracing::warn!(%cause, "rolling back");
    let back = undo(nl, cfg, dns, ovs, done);
    rollback_outcome(cfg, own, intent, cause, back)
}

/// The error reporting `cause` and how the rollback went; records ownership
/// accordingly (as before on success, everything that might still exist on
/// failure).
fn rollback_outcome(
    cfg: &Config,
    own: &Ownership,
    intent: &Ownership,
    cause: String,
    back: Result<usize, String>,
) -> Error {
    match back {
        Ok(n) => match store::save(&cfg.state_file, own) {
            Ok(()) => Error::RolledBack {
                cause,
                rollback_ops: n,
            },
            Err(e) => Error::Store(e),
        },
        Err(rollback) => {
            let _ = store::save(&cfg.state_file, intent);
            Error::RollbackFailed { cause, rollback }
        }
    }
}

fn describe(f: &StepFailure) -> String {
    f.to_string()
}

/// What verification found.
struct Verified {
    attempts: u32,
    corrections: Vec<Plan>,
    now: Observed,
}

/// Observes and re-plans until nothing is left to do, a bounded number of
/// times. A difference that is still there, unchanged, on the next
/// observation is applied as a corrective plan (at most
/// [`CORRECTIVE_ROUNDS`]); its acknowledged operations join `sent` and the
/// links it creates join the pending ownership record. Returns the attempts
/// used, or what still differs.
fn verify(
    nl: &mut Rtnl,
    cfg: &Config,
    dns: &DnsTarget,
    replan: &impl Fn(&Observed) -> Result<Plan, PlanError>,
    sent: &mut Vec<Op>,
    mut intent: Option<&mut Ownership>,
) -> Result<Verified, String> {
    let mut delay = cfg.verify_delay;
    let mut last_text = String::new();
    let mut last: Option<Plan> = None;
    let mut corrections: Vec<Plan> = Vec::new();
    for attempt in 1..=cfg.verify_attempts.max(1) {
        let now =
            observe_dns(nl, dns).map_err(|e| format!("verification could not observe: {e}"))?;
        match replan(&now) {
            Ok(p) if p.is_empty() => {
                return Ok(Verified {
                    attempts: attempt,
                    corrections,
                    now,
                })
            }
            Ok(p) => {
                last_text = format!(
                    "verification failed after {attempt} attempts ({} corrective plans applied): {} differences remain: {}",
                    corrections.len(),
                    p.ops.len(),
                    p.ops
                        .iter()
                        .take(5)
                        .map(|o| o.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                let persists = last.as_ref() == Some(&p);
                if persists && (corrections.len() as u32) < CORRECTIVE_ROUNDS {
                    tracing::info!(
                        attempt,
                        ops = p.ops.len(),
                        plan = %p,
                        "verify: applying a corrective plan"
                    );
                    if let Some(own) = intent.as_deref_mut() {
                        *own = own.with_pending(&p, &now);
                        store::save(&cfg.state_file, own).map_err(|e| e.to_string())?;
                    }
                    let out = execute(
                        nl,
                        &now,
                        &p,
                        ExecOptions {
                            dns,
                            #[cfg(feature = "fault-injection")]
                            fault: None,
                            progress: None,
                        },
                    );
                    sent.extend(out.acked);
                    corrections.push(p);
                    if let Some(f) = out.failure {
                        return Err(format!("a corrective plan failed: {f}"));
                    }
                    // Observed again only after the delay: a change undone
                    // at once by another process must not pass for settled.
                    last = None;
                } else {
                    tracing::debug!(
                        attempt,
                        remaining = p.ops.len(),
                        "verify: not converged yet"
                    );
                    last = Some(p);
                }
            }
            Err(e) => last_text = format!("verification could not plan: {e}"),
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    Err(last_text)
}

/// Rolls back exactly the operations `sent` (and what the kernel did
/// because of them); returns the number of operations the rollback ran.
pub fn rollback(
    nl: &mut Rtnl,
    cfg: &Config,
    dns: &DnsTarget,
    before: &Observed,
    sent: &[Op],
) -> Result<usize, String> {
    let now = observe_dns(nl, dns).map_err(|e| format!("observing for rollback: {e}"))?;
    let p = plan_rollback(before, &now, sent).map_err(|e| format!("planning the rollback: {e}"))?;
    let n = p.ops.len();
    tracing::info!(ops = n, plan = %p, "rollback plan");
    let out = execute(
        nl,
        &now,
        &p,
        ExecOptions {
            dns,
            #[cfg(feature = "fault-injection")]
            fault: None,
            progress: None,
        },
    );
    if let Some(f) = out.failure {
        return Err(format!("rollback {f}; the rollback plan was:\n{p}"));
    }
    let mut more = Vec::new();
    verify(
        nl,
        cfg,
        dns,
        &|now: &Observed| plan_rollback(before, now, sent),
        &mut more,
        None,
    )
    .map_err(|e| format!("rollback {e}"))?;
    Ok(n + more.len())
}
