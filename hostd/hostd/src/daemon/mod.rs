//! `hostd daemon`: the per-server daemon (docs/daemon.md).
//!
//! One tokio process (current-thread runtime; the synchronous engine runs
//! on the blocking pool, one call at a time) holding:
//!
//! - [`store`]: the confirmed desired document and a pending
//!   commit-confirmed apply, on disk, crash-safe;
//! - [`doc`]: documents, their content id and the daemon-side `daemon:`
//!   section (drift policy, confirmation probes);
//! - [`events`] + [`coalesce`] + [`reconcile`]: rtnetlink multicast events,
//!   coalesced into reconciles that plan against the observation and, under
//!   the `repair` policy, re-apply, with back-off and fight detection;
//! - commit-confirmed applies ([`Daemon::apply`], [`Daemon::confirm`],
//!   [`Daemon::rollback`], the deadline timer, [`probe`]s);
//! - [`dbus`]: the `org.hostnet.Hostd1` interface, authorised from the
//!   caller's credentials;
//! - [`status`] + [`status_loop`] + [`lldp_watch`]: the LACP/LLDP status
//!   (`hostd::status`) kept current from link events, lldpd's watch stream
//!   and polls; its changes are D-Bus signals and the `Diagnosis` property;
//!   lldpd told to announce the host;
//! - [`telemetry`]: the eBPF agent, supervised;
//! - [`client`]: the CLI side, talking to a running daemon.

pub mod client;
pub mod coalesce;
pub mod dbus;
pub mod doc;
pub mod events;
pub mod lldp_watch;
pub mod ovs_watch;
pub mod probe;
pub mod reconcile;
pub mod signals;
pub mod status;
pub mod status_loop;
pub mod store;
pub mod telemetry;

use std::{
    future::Future,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use hostd_core::plan::PlanError;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};

use crate::engine::{self, ApplyOptions, Config};
use coalesce::RepairLimits;
use doc::{short, Document};
use status::{HostStatusSource, Refresh, StatusChange, StatusConfig, StatusSource};
use store::{DocRecord, PendingRecord, Store};

/// Which bus the daemon serves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// The system bus.
    System,
    /// A bus at this address (`unix:path=...`).
    Address(String),
    /// No D-Bus (benchmarks, tests of the reconcile loop alone).
    Disabled,
}

/// Daemon settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The engine's settings (ownership record, resolv.conf, ...).
    pub engine: Config,
    /// Where the desired and pending records live.
    pub state_dir: PathBuf,
    /// The bus.
    pub bus: Bus,
    /// Members of this group may change state over D-Bus (root always may).
    pub admin_group: Option<String>,
    /// Boot: drop a pending apply and apply the last confirmed document.
    pub boot: bool,
    /// Coalescing: quiet time after the last event.
    pub quiet: Duration,
    /// Coalescing: longest delay after the first event.
    pub max_delay: Duration,
    /// Repair back-off and fight detection.
    pub limits: RepairLimits,
    /// Reconcile this often even without events (None: never).
    pub resync: Option<Duration>,
    /// Where the supervised telemetry agent pins its maps (None: no pinning).
    pub telemetry_pin_dir: Option<PathBuf>,
    /// The LACP/LLDP status: lldpd, the cabling, coalescing and polling.
    pub status: StatusConfig,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            engine: Config::default(),
            state_dir: PathBuf::from(store::DEFAULT_STATE_DIR),
            bus: Bus::System,
            admin_group: None,
            boot: false,
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            limits: RepairLimits::default(),
            resync: Some(Duration::from_secs(600)),
            telemetry_pin_dir: Some(PathBuf::from(hostd_telemetry::DEFAULT_PIN_DIR)),
            status: StatusConfig::default(),
        }
    }
}

/// Errors of the daemon's operations; each maps to a D-Bus error name and
/// a CLI exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaemonError {
    /// The document does not parse or is invalid; nothing was touched.
    #[error("{0}")]
    Invalid(String),
    /// The document cannot be applied to this host; nothing was touched.
    #[error("{0}")]
    Conflict(String),
    /// Applying failed; the host was rolled back.
    #[error("{0}")]
    RolledBack(String),
    /// Applying failed and so did the rollback.
    #[error("{0}")]
    RollbackFailed(String),
    /// The host could not be observed.
    #[error("{0}")]
    Host(String),
    /// A record could not be read or written.
    #[error("{0}")]
    Store(String),
    /// The firewall could not be read.
    #[error("{0}")]
    Firewall(String),
    /// Confirm/rollback without a pending apply.
    #[error("{0}")]
    NoPending(String),
    /// Refused in the current state (an apply is pending, nothing to
    /// return to).
    #[error("{0}")]
    Busy(String),
    /// The caller may not do this.
    #[error("{0}")]
    Denied(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl From<engine::Error> for DaemonError {
    fn from(e: engine::Error) -> Self {
        use engine::Error as E;
        let m = e.to_string();
        match e {
            E::Parse(_) | E::Plan(PlanError::Invalid(_)) => Self::Invalid(m),
            E::Plan(_) | E::Conflict(_) => Self::Conflict(m),
            E::OvsPlan(hostd_core::ovs::OvsPlanError::Invalid(_)) => Self::Invalid(m),
            E::OvsPlan(_) => Self::Conflict(m),
            E::Ovs(_) => Self::Host(m),
            E::Firewall(_) => Self::Firewall(m),
            E::Read { .. } | E::Observe(_) | E::Resolved(_) => Self::Host(m),
            E::Store(_) => Self::Store(m),
            E::RolledBack { .. } => Self::RolledBack(m),
            E::RollbackFailed { .. } => Self::RollbackFailed(m),
        }
    }
}

impl From<store::StoreError> for DaemonError {
    fn from(e: store::StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<doc::DocError> for DaemonError {
    fn from(e: doc::DocError) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// What the daemon announces (D-Bus signals and property changes).
#[derive(Debug, Clone)]
pub enum Note {
    /// A managed object differs from the document.
    Drift {
        /// Document id.
        id: String,
        /// `{"ops": [...], "policy": ...}`.
        details: Value,
    },
    /// A drift was repaired.
    Repaired {
        /// Document id.
        id: String,
        /// `{"ops": [...], "ok": bool, "error": ...}`.
        details: Value,
    },
    /// Another manager keeps undoing repairs: repairs are suspended.
    Fight {
        /// Document id.
        id: String,
        /// `{"repairs": n, "window_s": s, "ops": [...]}`.
        details: Value,
    },
    /// LACP status changed.
    Lacp(Value),
    /// LLDP status changed.
    Lldp(Value),
    /// The status findings changed (the `Diagnosis` property).
    Diagnosis,
    /// ConfirmedId, PendingDeadline or Health changed.
    Properties,
}

/// Health as shown in the `Health` property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Nothing to do, or no document yet.
    Ok,
    /// Drift seen and not (yet) repaired: report policy, or back-off.
    Drift(String),
    /// Another manager fights the repairs.
    Fight(String),
    /// Something failed (planning, a repair, a revert).
    Error(String),
}

impl Health {
    /// The property's text: `ok`, or `drift: ...`, `fight: ...`, `error: ...`.
    pub fn text(&self) -> String {
        match self {
            Self::Ok => "ok".into(),
            Self::Drift(s) => format!("drift: {s}"),
            Self::Fight(s) => format!("fight: {s}"),
            Self::Error(s) => format!("error: {s}"),
        }
    }
}

/// Counters (exported in `Status()` under `daemon.stats`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Netlink events received.
    pub events: AtomicU64,
    /// Reconciles run (each one plan).
    pub reconciles: AtomicU64,
    /// Reconciles that found drift.
    pub drifts: AtomicU64,
    /// Repairs applied.
    pub repairs: AtomicU64,
    /// Overruns of the event socket.
    pub overruns: AtomicU64,
    /// Link events of links the document does not name (no reconcile).
    pub foreign_events: AtomicU64,
    /// Duration of the last reconcile, microseconds.
    pub last_reconcile_us: AtomicU64,
    /// Time from the first event of the last reconcile's batch to the end
    /// of its repair, microseconds (0 when it repaired nothing).
    pub last_repair_latency_us: AtomicU64,
}

/// A pending commit-confirmed apply, parsed.
#[derive(Debug, Clone)]
pub struct Pending {
    /// As recorded.
    pub record: PendingRecord,
    /// The document applied.
    pub new: Document,
    /// The document a revert applies.
    pub previous: Document,
}

#[derive(Debug, Default)]
struct State {
    confirmed: Option<Document>,
    pending: Option<Pending>,
    health: Option<Health>,
    fight: Option<Value>,
}

/// The daemon's shared core; cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: DaemonConfig,
    store: Store,
    /// One engine call at a time (the engine and the ownership record are
    /// not made for concurrent applies).
    engine: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    notes: broadcast::Sender<Note>,
    /// The target document changed (apply, confirm, revert): the reconcile
    /// loop resets its back-off and reconciles; telemetry follows it.
    target: watch::Sender<Option<Document>>,
    /// The pending deadline (Unix seconds) for the timer task.
    deadline: watch::Sender<Option<u64>>,
    status: Arc<dyn StatusSource>,
    stats: Stats,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The result of an apply, as returned over D-Bus (JSON).
pub fn apply_result(doc: &Document, report: &engine::Report, deadline: Option<u64>) -> Value {
    json!({
        "id": doc.id,
        "executed": report.executed,
        "operations": report.plan.ops.len(),
        "text": report.plan.to_string(),
        "plan": report.plan,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "pending_deadline": deadline.unwrap_or(0),
    })
}

impl Daemon {
    /// Loads the records from the state directory (a pending record is
    /// parsed, not acted on: [`Daemon::start`] does that).
    pub fn new(cfg: DaemonConfig) -> Result<Self, DaemonError> {
        let status = Arc::new(HostStatusSource::new(&cfg.status));
        Self::with_status(cfg, status)
    }

    /// As [`Daemon::new`], with another status source.
    pub fn with_status(
        cfg: DaemonConfig,
        status: Arc<dyn StatusSource>,
    ) -> Result<Self, DaemonError> {
        let store = Store::open(&cfg.state_dir)?;
        let dpath = store::desired_path(store.dir());
        let confirmed = match store.confirmed()? {
            Some(r) => Some(store::parse_doc(&dpath, &r.doc)?),
            None => None,
        };
        let pending = match store.pending()? {
            Some(record) => {
                let p = store.dir().join("pending.json");
                Some(Pending {
                    new: store::parse_doc(&p, &record.new)?,
                    previous: store::parse_doc(&p, &record.previous)?,
                    record,
                })
            }
            None => None,
        };
        let target = pending
            .as_ref()
            .map(|p| p.new.clone())
            .or_else(|| confirmed.clone());
        let deadline = pending.as_ref().map(|p| p.record.deadline);
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                engine: tokio::sync::Mutex::new(()),
                state: Mutex::new(State {
                    confirmed,
                    pending,
                    health: None,
                    fight: None,
                }),
                notes: broadcast::channel(256).0,
                target: watch::channel(target).0,
                deadline: watch::channel(deadline).0,
                status,
                stats: Stats::default(),
            }),
        })
    }

    /// Settings.
    pub fn config(&self) -> &DaemonConfig {
        &self.inner.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Announcements.
    pub fn subscribe(&self) -> broadcast::Receiver<Note> {
        self.inner.notes.subscribe()
    }

    /// The target document's changes.
    pub fn watch_target(&self) -> watch::Receiver<Option<Document>> {
        self.inner.target.subscribe()
    }

    pub(crate) fn note(&self, n: Note) {
        let _ = self.inner.notes.send(n);
    }

    /// The document reconciled now: the pending one, else the confirmed one.
    pub fn target(&self) -> Option<Document> {
        let s = lock(&self.inner.state);
        s.pending
            .as_ref()
            .map(|p| p.new.clone())
            .or_else(|| s.confirmed.clone())
    }

    /// The status source.
    pub fn status_source(&self) -> Arc<dyn StatusSource> {
        self.inner.status.clone()
    }

    /// The confirmed document.
    pub fn confirmed_document(&self) -> Option<Document> {
        lock(&self.inner.state).confirmed.clone()
    }

    /// The status findings (JSON array text): the `Diagnosis` property.
    pub fn diagnosis(&self) -> String {
        self.inner.status.diagnosis().to_string()
    }

    /// The confirmed document's id ("" when none).
    pub fn confirmed_id(&self) -> String {
        lock(&self.inner.state)
            .confirmed
            .as_ref()
            .map(|d| d.id.clone())
            .unwrap_or_default()
    }

    /// The pending deadline (Unix seconds; 0 when nothing is pending).
    pub fn pending_deadline(&self) -> u64 {
        lock(&self.inner.state)
            .pending
            .as_ref()
            .map_or(0, |p| p.record.deadline)
    }

    /// The health text.
    pub fn health(&self) -> String {
        let s = lock(&self.inner.state);
        s.health
            .as_ref()
            .map_or_else(|| "starting".into(), Health::text)
    }

    pub(crate) fn set_health(&self, h: Health) {
        let changed = {
            let mut s = lock(&self.inner.state);
            let changed = s.health.as_ref() != Some(&h);
            if changed {
                match &h {
                    Health::Ok | Health::Drift(_) | Health::Fight(_) => {
                        tracing::info!(health = %h.text(), "health")
                    }
                    Health::Error(_) => tracing::warn!(health = %h.text(), "health"),
                }
            }
            s.health = Some(h);
            changed
        };
        if changed {
            self.note(Note::Properties);
        }
    }

    pub(crate) fn set_fight(&self, v: Option<Value>) {
        lock(&self.inner.state).fight = v;
    }

    fn publish_target(&self) {
        let t = self.target();
        self.inner.target.send_replace(t);
        let d = lock(&self.inner.state)
            .pending
            .as_ref()
            .map(|p| p.record.deadline);
        self.inner.deadline.send_replace(d);
        self.note(Note::Properties);
    }

    /// Runs `f` with the engine, on the blocking pool, one at a time.
    pub(crate) async fn with_engine<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Config) -> R + Send + 'static,
    ) -> Result<R, DaemonError> {
        let _guard = self.inner.engine.lock().await;
        let cfg = self.inner.cfg.engine.clone();
        tokio::task::spawn_blocking(move || f(&cfg))
            .await
            .map_err(|e| DaemonError::Internal(format!("engine task: {e}")))
    }

    /// `Plan(doc)`: the plan as JSON (`id`, `empty`, `text`, `plan`).
    pub async fn plan(&self, text: &str) -> Result<Value, DaemonError> {
        let doc = Document::parse(text)?;
        let state = doc.state.clone();
        let p = self
            .with_engine(move |cfg| engine::plan_only(cfg, &state))
            .await??;
        Ok(json!({
            "id": doc.id,
            "empty": p.is_empty(),
            "text": p.to_string(),
            "plan": p,
        }))
    }

    /// `Show()`: the host's state in the schema (JSON).
    pub async fn show(&self) -> Result<Value, DaemonError> {
        let obs = self.with_engine(engine::show).await??;
        serde_json::to_value(obs.to_state()).map_err(|e| DaemonError::Internal(e.to_string()))
    }

    /// `Status()`: the LACP/LLDP status (links read now, LLDP as lldpd
    /// last reported), its findings, plus the daemon's own state. A change
    /// this read finds is announced as the loop's would be.
    pub async fn status(&self) -> Result<Value, DaemonError> {
        let src = self.inner.status.clone();
        let (changes, mut v) = tokio::task::spawn_blocking(move || {
            let c = src.refresh(&Refresh {
                links: true,
                ..Refresh::default()
            });
            (c, src.snapshot())
        })
        .await
        .map_err(|e| DaemonError::Internal(format!("status task: {e}")))?;
        self.announce_status(changes);
        if let Value::Object(m) = &mut v {
            m.insert("daemon".into(), self.daemon_status());
        }
        Ok(v)
    }

    /// The daemon part of `Status()`.
    pub fn daemon_status(&self) -> Value {
        let st = &self.inner.stats;
        let s = lock(&self.inner.state);
        json!({
            "health": s.health.as_ref().map_or_else(|| "starting".into(), Health::text),
            "confirmed_id": s.confirmed.as_ref().map(|d| d.id.clone()),
            "policy": s.pending.as_ref().map(|p| &p.new).or(s.confirmed.as_ref()).map(|d| d.policy().to_string()),
            "pending": s.pending.as_ref().map(|p| json!({
                "id": p.new.id,
                "previous_id": p.previous.id,
                "deadline": p.record.deadline,
                "created_at": p.record.created_at,
            })),
            "fight": s.fight,
            "stats": {
                "events": st.events.load(Ordering::Relaxed),
                "reconciles": st.reconciles.load(Ordering::Relaxed),
                "drifts": st.drifts.load(Ordering::Relaxed),
                "repairs": st.repairs.load(Ordering::Relaxed),
                "overruns": st.overruns.load(Ordering::Relaxed),
                "foreign_events": st.foreign_events.load(Ordering::Relaxed),
                "last_reconcile_us": st.last_reconcile_us.load(Ordering::Relaxed),
                "last_repair_latency_us": st.last_repair_latency_us.load(Ordering::Relaxed),
            },
        })
    }

    /// Announces status changes (D-Bus signals, the Diagnosis property).
    pub(crate) fn announce_status(&self, changes: Vec<StatusChange>) {
        for c in changes {
            match c {
                StatusChange::Lacp(v) => self.note(Note::Lacp(v)),
                StatusChange::Lldp(v) => self.note(Note::Lldp(v)),
                StatusChange::Diagnosis(_) => self.note(Note::Diagnosis),
            }
        }
    }

    /// [`Self::engine_apply`], then `then` (on success), both while the
    /// engine is held.
    async fn engine_apply_then(
        &self,
        doc: &Document,
        then: impl FnOnce(&Daemon) -> Result<(), DaemonError> + Send + 'static,
    ) -> Result<engine::Report, DaemonError> {
        let state = doc.state.clone();
        let d = self.clone();
        self.with_engine(move |cfg| {
            let report = engine::apply(cfg, &state, ApplyOptions::default())?;
            then(&d)?;
            Ok(report)
        })
        .await?
    }

    async fn engine_apply(&self, doc: &Document) -> Result<engine::Report, DaemonError> {
        let state = doc.state.clone();
        let r = self
            .with_engine(move |cfg| engine::apply(cfg, &state, ApplyOptions::default()))
            .await?;
        Ok(r?)
    }

    /// `Apply(doc, confirm_timeout_s)`. With a timeout: records the pending
    /// apply durably first, applies, and reverts unless confirmed (by
    /// `Confirm()` or the probes) within the timeout. Without: applies and
    /// records the document as confirmed.
    #[tracing::instrument(skip_all, fields(confirm_s = confirm_s))]
    pub async fn apply(
        &self,
        text: &str,
        confirm_s: u32,
        probes: Vec<probe::Probe>,
        probe_timeout: Option<Duration>,
    ) -> Result<Value, DaemonError> {
        let doc = Document::parse(text)?;
        let mut probes = probes;
        if probes.is_empty() {
            probes = doc.probes();
        }
        let probe_timeout = probe_timeout.unwrap_or_else(|| doc.probe_timeout());
        if confirm_s == 0 {
            if !probes.is_empty() {
                return Err(DaemonError::Invalid(
                    "confirmation probes need a confirmation timeout (--confirm-within)".into(),
                ));
            }
            if self.pending_deadline() != 0 {
                return Err(DaemonError::Busy(
                    "an apply is pending confirmation: confirm or roll it back first".into(),
                ));
            }
            tracing::info!(id = short(&doc.id), "applying");
            // Confirmed while the engine is still ours: a reconcile waiting
            // for it then sees the new document.
            let confirmed = doc.clone();
            let report = self
                .engine_apply_then(&doc, move |d| {
                    d.inner.store.set_confirmed(&DocRecord::from(&confirmed))?;
                    lock(&d.inner.state).confirmed = Some(confirmed);
                    Ok(())
                })
                .await?;
            tracing::info!(
                id = short(&doc.id),
                ops = report.plan.ops.len(),
                "applied and confirmed"
            );
            self.publish_target();
            return Ok(apply_result(&doc, &report, None));
        }
        let previous = {
            let s = lock(&self.inner.state);
            if s.pending.is_some() {
                return Err(DaemonError::Busy(
                    "an apply is pending confirmation: confirm or roll it back first".into(),
                ));
            }
            s.confirmed.clone().ok_or_else(|| {
                DaemonError::Busy(
                    "commit-confirmed needs a confirmed state to return to: apply a first document without --confirm-within".into(),
                )
            })?
        };
        let now = store::unix_now();
        let record = PendingRecord {
            previous: DocRecord::from(&previous),
            new: DocRecord::from(&doc),
            created_at: now,
            deadline: now + u64::from(confirm_s),
            boot_id: store::boot_id(),
        };
        // Durable before the first change.
        self.inner.store.set_pending(&record)?;
        let deadline = record.deadline;
        lock(&self.inner.state).pending = Some(Pending {
            record,
            new: doc.clone(),
            previous,
        });
        tracing::info!(id = short(&doc.id), deadline, "applying, to be confirmed");
        match self.engine_apply(&doc).await {
            Ok(report) => {
                self.publish_target();
                if !probes.is_empty() {
                    self.spawn_probes(doc.id.clone(), probes, probe_timeout);
                }
                Ok(apply_result(&doc, &report, Some(deadline)))
            }
            Err(e @ DaemonError::RollbackFailed(_)) => {
                // The host is in neither state: go back to the previous one.
                tracing::error!(error = %e, "apply and its rollback failed: reverting to the confirmed document");
                if let Err(r) = self.revert("the apply failed and its rollback too").await {
                    tracing::error!(error = %r, "revert failed; it is retried");
                }
                Err(e)
            }
            Err(e) => {
                // Nothing changed (refused before any step, or rolled back).
                lock(&self.inner.state).pending = None;
                self.inner.store.clear_pending()?;
                self.publish_target();
                Err(e)
            }
        }
    }

    fn spawn_probes(&self, id: String, probes: Vec<probe::Probe>, limit: Duration) {
        let d = self.clone();
        tokio::spawn(async move {
            let result = probe::run_all(&probes, limit).await;
            let still = lock(&d.inner.state)
                .pending
                .as_ref()
                .is_some_and(|p| p.new.id == id);
            if !still {
                return;
            }
            match result {
                Ok(()) => {
                    tracing::info!(id = short(&id), "probes answered: confirming");
                    if let Err(e) = d.confirm().await {
                        tracing::warn!(error = %e, "confirming after the probes");
                    }
                }
                Err(e) => {
                    tracing::warn!(id = short(&id), error = %e, "probes failed: reverting now");
                    if let Err(e) = d.revert(&format!("probes failed: {e}")).await {
                        tracing::error!(error = %e, "revert after failed probes");
                    }
                }
            }
        });
    }

    /// `Confirm()`: the pending document becomes the confirmed one.
    pub async fn confirm(&self) -> Result<Value, DaemonError> {
        let _guard = self.inner.engine.lock().await;
        let p = lock(&self.inner.state)
            .pending
            .clone()
            .ok_or_else(|| DaemonError::NoPending("nothing is pending confirmation".into()))?;
        // Confirmed first, then the pending record goes: a crash in between
        // leaves both, and start-up sees the pending document is the
        // confirmed one and drops it.
        self.inner.store.set_confirmed(&p.record.new)?;
        self.inner.store.clear_pending()?;
        {
            let mut s = lock(&self.inner.state);
            s.confirmed = Some(p.new.clone());
            s.pending = None;
        }
        tracing::info!(id = short(&p.new.id), "confirmed");
        self.publish_target();
        Ok(json!({ "id": p.new.id, "confirmed": true }))
    }

    /// `Rollback()`: reverts a pending apply now.
    pub async fn rollback(&self) -> Result<Value, DaemonError> {
        if self.pending_deadline() == 0 {
            return Err(DaemonError::NoPending(
                "nothing is pending: nothing to roll back".into(),
            ));
        }
        self.revert("rollback requested").await
    }

    /// Applies the previous confirmed document of the pending apply and
    /// drops the pending record. On failure the record stays (the timer
    /// retries).
    pub async fn revert(&self, why: &str) -> Result<Value, DaemonError> {
        let Some(p) = lock(&self.inner.state).pending.clone() else {
            return Err(DaemonError::NoPending("nothing is pending".into()));
        };
        tracing::warn!(
            from = short(&p.new.id),
            to = short(&p.previous.id),
            reason = why,
            "reverting"
        );
        // The pending record goes while the engine is still ours (see
        // `engine_apply_then`).
        let r = self
            .engine_apply_then(&p.previous, |d| {
                d.inner.store.clear_pending()?;
                lock(&d.inner.state).pending = None;
                Ok(())
            })
            .await;
        match r {
            Ok(report) => {
                tracing::info!(
                    id = short(&p.previous.id),
                    ops = report.plan.ops.len(),
                    "reverted"
                );
                self.publish_target();
                Ok(json!({
                    "id": p.previous.id,
                    "reverted_from": p.new.id,
                    "reason": why,
                    "operations": report.plan.ops.len(),
                    "text": report.plan.to_string(),
                }))
            }
            Err(e) => {
                self.set_health(Health::Error(format!(
                    "revert to {} failed: {e}",
                    short(&p.previous.id)
                )));
                Err(e)
            }
        }
    }

    /// Start-up: acts on a pending record (boot: always reverts; restart:
    /// reverts when expired, re-arms otherwise) and, at boot, applies the
    /// confirmed document.
    pub async fn start(&self) -> Result<(), DaemonError> {
        let (pending, confirmed) = {
            let s = lock(&self.inner.state);
            (s.pending.clone(), s.confirmed.clone())
        };
        if let Some(p) = pending {
            if confirmed.as_ref().is_some_and(|c| c.id == p.new.id) {
                // Crashed between writing the confirmation and removing the record.
                tracing::info!(
                    id = short(&p.new.id),
                    "pending apply was confirmed before a crash"
                );
                self.inner.store.clear_pending()?;
                lock(&self.inner.state).pending = None;
            } else if self.inner.cfg.boot || p.record.boot_id != store::boot_id() {
                tracing::warn!(
                    id = short(&p.new.id),
                    "boot: a pending apply is never resumed"
                );
                self.inner.store.clear_pending()?;
                lock(&self.inner.state).pending = None;
            } else if p.record.deadline <= store::unix_now() {
                tracing::warn!(
                    id = short(&p.new.id),
                    "pending apply expired while the daemon was down"
                );
                if let Err(e) = self
                    .revert("confirmation deadline passed while the daemon was down")
                    .await
                {
                    // The record stays; the deadline timer retries.
                    tracing::error!(error = %e, "revert at start-up failed");
                }
            } else {
                tracing::info!(
                    id = short(&p.new.id),
                    left_s = p.record.deadline - store::unix_now(),
                    "pending apply resumed: reverted unless confirmed in time"
                );
            }
        }
        if self.inner.cfg.boot {
            if let Some(c) = self.target() {
                tracing::info!(id = short(&c.id), "boot: applying the confirmed document");
                self.engine_apply(&c).await?;
            } else {
                tracing::info!("boot: no confirmed document");
            }
        }
        self.publish_target();
        Ok(())
    }

    /// The timer: reverts the pending apply at its deadline (retrying every
    /// 10 s when a revert fails).
    async fn deadline_timer(self) {
        let mut rx = self.inner.deadline.subscribe();
        loop {
            let d = *rx.borrow_and_update();
            match d {
                None => {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
                Some(deadline) => {
                    let left = deadline.saturating_sub(store::unix_now());
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(left)) => {
                            if self.pending_deadline() == deadline {
                                if let Err(e) = self.revert("not confirmed in time").await {
                                    tracing::error!(error = %e, "revert at the deadline failed; retrying in 10 s");
                                    tokio::time::sleep(Duration::from_secs(10)).await;
                                }
                            }
                        }
                        r = rx.changed() => if r.is_err() { return },
                    }
                }
            }
        }
    }
}

/// Runs the daemon until `shutdown` completes: start-up (pending record,
/// boot), the event source, the reconcile loop, the deadline timer, the
/// telemetry supervisor and the D-Bus service.
pub async fn run(cfg: DaemonConfig, shutdown: impl Future) -> Result<(), DaemonError> {
    let daemon = Daemon::new(cfg)?;
    run_daemon(daemon, shutdown).await
}

/// [`run`] with a daemon built by the caller (another status source).
pub async fn run_daemon(daemon: Daemon, shutdown: impl Future) -> Result<(), DaemonError> {
    // Subscribe before start-up applies anything, so no change is missed.
    let sock =
        events::subscribe().map_err(|e| DaemonError::Host(format!("netlink events: {e}")))?;
    let (ev_tx, mut pump_rx) = mpsc::channel::<Vec<events::Event>>(1024);
    let ovs_events = ev_tx.clone();
    let (rec_tx, ev_rx) = mpsc::channel(1024);
    // The status loop sees the link events first (it must not wait behind
    // a reconcile); the reconcile loop gets every batch.
    let inbox = Arc::new(status::Inbox::default());
    let forward = {
        let inbox = inbox.clone();
        tokio::spawn(async move {
            while let Some(batch) = pump_rx.recv().await {
                inbox.push(&batch);
                if rec_tx.send(batch).await.is_err() {
                    return;
                }
            }
        })
    };
    let _conn = match &daemon.config().bus {
        Bus::Disabled => None,
        bus => Some(dbus::serve(&daemon, bus).await?),
    };
    if let Err(e) = daemon.start().await {
        // Keep running: the API stays up to fix things (apply, rollback).
        tracing::error!(error = %e, "start-up");
        daemon.set_health(Health::Error(format!("start-up: {e}")));
    }
    let (link_tx, _) = broadcast::channel(1024);
    let mut tasks = vec![
        tokio::spawn(events::pump(sock, ev_tx)),
        tokio::spawn(ovs_watch::run(
            daemon.config().engine.ovs_db_socket.clone(),
            ovs_events,
        )),
        forward,
        tokio::spawn(reconcile::run(daemon.clone(), ev_rx, link_tx.clone())),
        tokio::spawn(daemon.clone().deadline_timer()),
        tokio::spawn(telemetry::supervise(daemon.clone(), link_tx)),
    ];
    tasks.extend(status_loop::spawn(&daemon, inbox));
    tracing::info!(
        confirmed = short(&daemon.confirmed_id()),
        pending_deadline = daemon.pending_deadline(),
        "daemon running"
    );
    shutdown.await;
    tracing::info!("shutting down");
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    // Let the telemetry agent detach (it watches the target channel closing).
    telemetry::stop_all().await;
    Ok(())
}

/// `hostd boot`: applies the last confirmed document (never a pending one)
/// and exits.
pub async fn boot(cfg: DaemonConfig) -> Result<Option<String>, DaemonError> {
    let d = Daemon::new(DaemonConfig { boot: true, ..cfg })?;
    d.start().await?;
    Ok(d.target().map(|t| t.id))
}
