//! The agent's side of the channel, over an [`AgentHost`] that applies
//! desired states and produces reports.
//!
//! [`Agent::run`]:
//! 1. identity: the key, certificate and trust bundle from the state
//!    directory; without a certificate, a new key is generated here (it
//!    never leaves the host: files are 0600) and enrolled with the
//!    bootstrap token (CSR; the controller signs);
//! 2. the failover loop ([`crate::failover`]): one `Stream` stream at a
//!    time to the current controller; reports from the [`ReportQueue`]
//!    (resent from the controller's `Welcome.acked_seq`), heartbeats,
//!    renewal at `renew_fraction` of the certificate's lifetime (a new key
//!    and CSR over the open stream; the new certificate is used from the
//!    next handshake, the stream stays), fail-back checks;
//! 3. desired states: applied through the host, commit-confirmed when the
//!    controller asks for it; confirmed only after `ConfirmPath` succeeds
//!    on a *new* connection (the new network path), retried until the
//!    deadline; otherwise the host's own deadline reverts it and the
//!    generation is remembered as reverted (not applied again).

use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use crate::{
    failover::{Failover, FailoverPolicy},
    pki::{self, CertInfo},
    proto::{
        agent_message::Body as Up, controller_message::Body as Down,
        enrolment_client::EnrolmentClient, fleet_client::FleetClient, AgentMessage,
        ConfirmPathRequest, Desired, EnrolRequest, Heartbeat, Hello, RenewRequest, ReportKind,
    },
    queue::ReportQueue,
    tls::{self, AgentTls},
    unix_ms,
};

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the agent runs on: hostd's daemon, or a simulated host.
pub trait AgentHost: Send + Sync + 'static {
    /// Applies a desired state; with `confirm_within_s > 0`, pending until
    /// [`AgentHost::confirm`] (the host reverts by itself at its deadline).
    /// Ok: the result (plan, operations) as JSON.
    fn apply(&self, desired: &Desired) -> BoxFuture<'_, Result<Value, String>>;
    /// Confirms the pending apply of `generation`.
    fn confirm(&self, generation: u64) -> BoxFuture<'_, Result<(), String>>;
    /// Reverts the pending apply now (the controller refused to confirm).
    fn rollback(&self, generation: u64) -> BoxFuture<'_, Result<(), String>>;
    /// Starts the host's own reporting (inventory, status, drift) into
    /// `reporter`; called once, after the identity is ready.
    fn start(&self, reporter: Reporter);
}

/// Settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The agent id (a DNS label; the certificate's name).
    pub id: String,
    /// Where the key, certificate, trust bundle and generations live
    /// (`None`: memory only, for the load generator).
    pub state_dir: Option<PathBuf>,
    /// Controllers, `host:port`, in order of preference.
    pub controllers: Vec<String>,
    /// The name in the controllers' certificates.
    pub server_name: String,
    /// One-time bootstrap token, to enrol when there is no certificate.
    pub bootstrap_token: Option<String>,
    /// The trust bundle to start with when the state directory has none.
    pub bootstrap_bundle: Option<String>,
    /// Reports queued at most.
    pub queue_cap: usize,
    /// Renew at this fraction of the certificate's lifetime.
    pub renew_fraction: f64,
    /// Failover settings.
    pub failover: FailoverPolicy,
    /// TCP + TLS + HTTP/2 set-up limit.
    pub connect_timeout: Duration,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Bounds the extra connections (enrolment, confirmation) of the
    /// agents sharing it: the load generator runs 10,000 agents in one
    /// process under one file descriptor limit.
    pub connect_permits: Option<Arc<tokio::sync::Semaphore>>,
}

impl AgentConfig {
    /// Defaults for `id` and `controllers`.
    pub fn new(id: &str, controllers: Vec<String>) -> Self {
        Self {
            id: id.to_owned(),
            state_dir: None,
            controllers,
            server_name: crate::DEFAULT_SERVER_NAME.to_owned(),
            bootstrap_token: None,
            bootstrap_bundle: None,
            queue_cap: 1024,
            renew_fraction: 2.0 / 3.0,
            failover: FailoverPolicy::default(),
            connect_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(15),
            connect_permits: None,
        }
    }
}

/// Agent errors that stop it.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Bad settings.
    #[error("{0}")]
    Config(String),
    /// The state directory.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Keys and certificates.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// TLS set-up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Enrolment was refused (a bad token is final).
    #[error("enrolment refused by {controller}: {message}")]
    Enrol {
        /// Which controller.
        controller: String,
        /// Its answer.
        message: String,
    },
}

/// Counters (read by the load generator and the daemon's status).
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Streams established.
    pub connects: AtomicU64,
    /// Attempts that failed (connect or stream).
    pub failures: AtomicU64,
    /// Moves back to the preferred controller.
    pub failbacks: AtomicU64,
    /// Certificates renewed.
    pub renewals: AtomicU64,
    /// Trust bundles installed.
    pub bundles: AtomicU64,
    /// Desired states applied.
    pub applies: AtomicU64,
    /// Confirmed over the new path.
    pub confirmed: AtomicU64,
    /// Reverted (not confirmed in time, or refused).
    pub reverted: AtomicU64,
    /// The highest generation confirmed.
    pub confirmed_generation: AtomicU64,
    /// Index of the controller in use (+1; 0: none).
    pub controller: AtomicU64,
}

/// What the agent remembers across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Persisted {
    confirmed_generation: u64,
    reverted_generation: u64,
}

/// A handle to queue reports.
#[derive(Clone)]
pub struct Reporter {
    queue: Arc<Mutex<ReportQueue>>,
    notify: Arc<Notify>,
}

impl Reporter {
    /// Queues a report; returns its seq.
    pub fn push(&self, kind: ReportKind, json: String) -> u64 {
        let seq = lock(&self.queue).push(kind, json, unix_ms());
        self.notify.notify_one();
        seq
    }
    /// `(last seq, acked seq, dropped, queued)`.
    pub fn counts(&self) -> (u64, u64, u64, usize) {
        let q = lock(&self.queue);
        (q.last_seq(), q.acked(), q.dropped(), q.len())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Shared {
    cfg: AgentConfig,
    host: Arc<dyn AgentHost>,
    tls: AgentTls,
    reporter: Reporter,
    persisted: Mutex<Persisted>,
    /// The key waiting for its renewed certificate.
    renewing: Mutex<Option<rcgen::KeyPair>>,
    /// notAfter-based renewal time of the certificate in use (Unix s).
    renew_at: AtomicU64,
    /// One apply at a time.
    apply_lock: tokio::sync::Mutex<()>,
    stats: Arc<AgentStats>,
}

/// A running agent.
pub struct Agent {
    shared: Arc<Shared>,
}

const KEY: &str = "agent-key.pem";
const CERT: &str = "agent-cert.pem";
const BUNDLE: &str = "trust-bundle.pem";
const STATE: &str = "agent-state.json";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a file atomically (temp, fsync, rename, fsync dir), with `mode`.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn read_opt(path: &Path) -> Result<Option<String>, AgentError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

impl Agent {
    /// Prepares an agent: reads the state directory and sets up TLS (no
    /// network yet).
    pub fn new(cfg: AgentConfig, host: Arc<dyn AgentHost>) -> Result<Self, AgentError> {
        pki::check_agent_id(&cfg.id)?;
        if cfg.controllers.is_empty() {
            return Err(AgentError::Config("no controller given".into()));
        }
        let dir = cfg.state_dir.clone();
        let file = |n: &str| dir.as_ref().map(|d| d.join(n));
        let bundle = match file(BUNDLE) {
            Some(p) => read_opt(&p)?,
            None => None,
        }
        .or_else(|| cfg.bootstrap_bundle.clone())
        .ok_or_else(|| {
            AgentError::Config(
                "no trust bundle: give the controller's CA (bootstrap bundle) for the first start"
                    .into(),
            )
        })?;
        let tls = AgentTls::new(&bundle)?;
        let mut renew_at = 0;
        if let (Some(kp), Some(cp)) = (file(KEY), file(CERT)) {
            if let (Some(k), Some(c)) = (read_opt(&kp)?, read_opt(&cp)?) {
                tls.cert.set(tls::certified_key(&c, &k)?);
                renew_at = CertInfo::from_pem(&c)?.renew_at(cfg.renew_fraction).max(0) as u64;
            }
        }
        let persisted = match file(STATE) {
            Some(p) => read_opt(&p)?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
            None => Persisted::default(),
        };
        let epoch = unix_ms() ^ u64::from(std::process::id()) << 40;
        let reporter = Reporter {
            queue: Arc::new(Mutex::new(ReportQueue::new(cfg.queue_cap, epoch))),
            notify: Arc::new(Notify::new()),
        };
        let stats = Arc::new(AgentStats::default());
        stats
            .confirmed_generation
            .store(persisted.confirmed_generation, Ordering::Relaxed);
        Ok(Self {
            shared: Arc::new(Shared {
                cfg,
                host,
                tls,
                reporter,
                persisted: Mutex::new(persisted),
                renewing: Mutex::new(None),
                renew_at: AtomicU64::new(renew_at),
                apply_lock: tokio::sync::Mutex::new(()),
                stats,
            }),
        })
    }

    /// The counters.
    pub fn stats(&self) -> Arc<AgentStats> {
        self.shared.stats.clone()
    }

    /// The report handle.
    pub fn reporter(&self) -> Reporter {
        self.shared.reporter.clone()
    }

    /// Installs a key and certificate (the load generator enrols in bulk).
    pub fn set_identity(&self, cert_pem: &str, key_pem: &str) -> Result<(), AgentError> {
        self.shared.install(cert_pem, key_pem)
    }

    /// Enrols if needed; then keeps a stream to a controller until
    /// `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let s = self.shared;
        tokio::pin!(shutdown);
        if !s.tls.cert.is_set() {
            tokio::select! {
                r = s.enrol() => r?,
                () = &mut shutdown => return Ok(()),
            }
        }
        s.host.start(s.reporter.clone());
        let mut fo = Failover::new(s.cfg.controllers.len(), s.cfg.failover.clone());
        loop {
            let idx = fo.current();
            let end = tokio::select! {
                r = s.clone().session(idx, &mut fo) => r,
                () = &mut shutdown => return Ok(()),
            };
            s.stats.controller.store(0, Ordering::Relaxed);
            match end {
                Ok(()) => {
                    s.stats.failbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(controller = %s.cfg.controllers[fo.current()], "failing back to the preferred controller");
                }
                Err(e) => {
                    s.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let wait = fo.failed(rand::random::<f64>());
                    tracing::warn!(controller = %s.cfg.controllers[idx], error = %e, next = %s.cfg.controllers[fo.current()], wait_ms = wait.as_millis() as u64, "controller lost");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut shutdown => return Ok(()),
                    }
                }
            }
        }
    }
}

impl Shared {
    fn file(&self, name: &str) -> Option<PathBuf> {
        self.cfg.state_dir.as_ref().map(|d| d.join(name))
    }

    fn install(&self, cert_pem: &str, key_pem: &str) -> Result<(), AgentError> {
        let ck = tls::certified_key(cert_pem, key_pem)?;
        let info = CertInfo::from_pem(cert_pem)?;
        if info.common_name != self.cfg.id {
            return Err(AgentError::Config(format!(
                "the certificate names {:?}, not this agent {:?}",
                info.common_name, self.cfg.id
            )));
        }
        // Key first: a crash between the two leaves a key without its
        // certificate, and the old certificate no longer matches: the
        // agent then re-enrols (a token is needed) rather than run with a
        // mismatched pair. Both are 0600.
        if let (Some(k), Some(c)) = (self.file(KEY), self.file(CERT)) {
            write_atomic(&k, key_pem.as_bytes(), 0o600)?;
            write_atomic(&c, cert_pem.as_bytes(), 0o600)?;
        }
        self.tls.cert.set(ck);
        self.renew_at.store(
            info.renew_at(self.cfg.renew_fraction).max(0) as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }

    fn install_bundle(&self, pem: &str) -> Result<(), AgentError> {
        self.tls.trust.set(pem)?;
        if let Some(p) = self.file(BUNDLE) {
            write_atomic(&p, pem.as_bytes(), 0o644)?;
        }
        self.stats.bundles.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn persist(&self, f: impl FnOnce(&mut Persisted)) {
        let p = {
            let mut g = lock(&self.persisted);
            f(&mut g);
            g.clone()
        };
        self.stats
            .confirmed_generation
            .store(p.confirmed_generation, Ordering::Relaxed);
        if let Some(path) = self.file(STATE) {
            let text = serde_json::to_vec_pretty(&p).unwrap_or_default();
            if let Err(e) = write_atomic(&path, &text, 0o644) {
                tracing::error!(error = %e, "saving the agent's generations");
            }
        }
    }

    /// Enrolment: a new key (here, never sent), a CSR and the token, to
    /// each controller in turn until one answers.
    async fn enrol(&self) -> Result<(), AgentError> {
        let token = self.cfg.bootstrap_token.clone().ok_or_else(|| {
            AgentError::Config("no certificate and no bootstrap token to enrol with".into())
        })?;
        let key = pki::new_key()?;
        let csr = pki::csr_pem(&key, &self.cfg.id)?;
        let mut fo = Failover::new(self.cfg.controllers.len(), self.cfg.failover.clone());
        loop {
            let addr = &self.cfg.controllers[fo.current()];
            let _permit = match &self.cfg.connect_permits {
                Some(p) => p.clone().acquire_owned().await.ok(),
                None => None,
            };
            let r = async {
                let ch = tls::connect(
                    &self.tls,
                    addr,
                    &self.cfg.server_name,
                    self.cfg.connect_timeout,
                )
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                EnrolmentClient::new(ch)
                    .enrol(EnrolRequest {
                        agent_id: self.cfg.id.clone(),
                        token: token.clone(),
                        csr_pem: csr.clone(),
                    })
                    .await
            }
            .await;
            match r {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if !resp.trust_bundle_pem.is_empty() {
                        self.install_bundle(&resp.trust_bundle_pem)?;
                    }
                    self.install(&resp.cert_pem, &key.serialize_pem())?;
                    tracing::info!(controller = %addr, "enrolled");
                    return Ok(());
                }
                Err(st) if st.code() == tonic::Code::PermissionDenied => {
                    return Err(AgentError::Enrol {
                        controller: addr.clone(),
                        message: st.message().to_owned(),
                    });
                }
                Err(st) => {
                    let wait = fo.failed(rand::random::<f64>());
                    tracing::warn!(controller = %addr, error = %st.message(), "enrolment failed; next controller");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One stream to controller `idx`. Ok(()) = fail back (fo moved);
    /// Err = lost.
    async fn session(self: Arc<Self>, idx: usize, fo: &mut Failover) -> Result<(), String> {
        let addr = self.cfg.controllers[idx].clone();
        let ch = tls::connect(
            &self.tls,
            &addr,
            &self.cfg.server_name,
            self.cfg.connect_timeout,
        )
        .await
        .map_err(|e| format!("connect: {e}"))?;
        let (tx, rx) = mpsc::channel::<AgentMessage>(64);
        let hello = {
            let p = lock(&self.persisted).clone();
            Hello {
                agent_id: self.cfg.id.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                confirmed_generation: p.confirmed_generation,
                reports_dropped: self.reporter.counts().2,
                reverted_generation: p.reverted_generation,
            }
        };
        let _ = tx
            .send(AgentMessage {
                body: Some(Up::Hello(hello)),
            })
            .await;
        let mut inbound = FleetClient::new(ch)
            .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|e| format!("stream: {}", e.message()))?
            .into_inner();
        let epoch = lock(&self.reporter.queue).epoch();
        let mut sent_upto = match inbound.message().await {
            Ok(Some(m)) => match m.body {
                Some(Down::Welcome(w)) => {
                    let mut q = lock(&self.reporter.queue);
                    q.ack(w.acked_epoch, w.acked_seq);
                    if w.acked_epoch == epoch {
                        w.acked_seq.max(q.acked())
                    } else {
                        q.acked()
                    }
                }
                _ => return Err("the controller did not welcome".into()),
            },
            Ok(None) => return Err("stream closed before welcome".into()),
            Err(e) => return Err(format!("welcome: {}", e.message())),
        };
        fo.connected();
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        self.stats
            .controller
            .store(idx as u64 + 1, Ordering::Relaxed);
        tracing::info!(controller = %addr, "connected");
        let mut heartbeat = tokio::time::interval(self.cfg.heartbeat);
        heartbeat.tick().await;
        let mut failback = tokio::time::interval(fo.policy().failback_check);
        failback.tick().await;
        let mut renew_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            // Send what is queued and not yet sent on this stream.
            let pending = lock(&self.reporter.queue).after(sent_upto);
            for r in pending {
                let seq = r.seq;
                tx.send(AgentMessage {
                    body: Some(Up::Report(r)),
                })
                .await
                .map_err(|_| "stream closed".to_string())?;
                sent_upto = seq;
            }
            tokio::select! {
                m = inbound.message() => {
                    let m = m.map_err(|e| format!("stream: {}", e.message()))?
                        .ok_or_else(|| "the controller closed the stream".to_string())?;
                    self.clone().handle(m, &tx).await?;
                }
                () = self.reporter.notify.notified() => {}
                _ = heartbeat.tick() => {
                    tx.send(AgentMessage { body: Some(Up::Heartbeat(Heartbeat { unix_ms: unix_ms() })) })
                        .await
                        .map_err(|_| "stream closed".to_string())?;
                }
                _ = renew_check.tick() => {
                    let at = self.renew_at.load(Ordering::Relaxed);
                    if at != 0 && unix_ms() / 1000 >= at {
                        self.start_renewal(&tx).await?;
                    }
                }
                _ = failback.tick(), if fo.wants_failback() => {
                    let pref = &self.cfg.controllers[0];
                    let answered = tls::connect(&self.tls, pref, &self.cfg.server_name, self.cfg.connect_timeout)
                        .await
                        .is_ok();
                    if fo.preferred_checked(answered, unix_ms()) {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn start_renewal(&self, tx: &mpsc::Sender<AgentMessage>) -> Result<(), String> {
        // One renewal at a time: the timer is pushed back until it answers.
        self.renew_at
            .store(unix_ms() / 1000 + 30, Ordering::Relaxed);
        let key = pki::new_key().map_err(|e| e.to_string())?;
        let csr = pki::csr_pem(&key, &self.cfg.id).map_err(|e| e.to_string())?;
        *lock(&self.renewing) = Some(key);
        tracing::info!("renewing the certificate");
        tx.send(AgentMessage {
            body: Some(Up::Renew(RenewRequest { csr_pem: csr })),
        })
        .await
        .map_err(|_| "stream closed".to_string())
    }

    async fn handle(
        self: Arc<Self>,
        m: crate::proto::ControllerMessage,
        tx: &mpsc::Sender<AgentMessage>,
    ) -> Result<(), String> {
        match m.body {
            Some(Down::Ack(a)) => lock(&self.reporter.queue).ack(a.epoch, a.seq),
            Some(Down::Desired(d)) => {
                let s = self.clone();
                tokio::spawn(async move { s.apply(d).await });
            }
            Some(Down::Certificate(c)) => {
                let key = lock(&self.renewing).take();
                match key {
                    Some(k) => match self.install(&c.cert_pem, &k.serialize_pem()) {
                        Ok(()) => {
                            self.stats.renewals.fetch_add(1, Ordering::Relaxed);
                            tracing::info!("certificate renewed");
                        }
                        Err(e) => tracing::error!(error = %e, "renewed certificate refused"),
                    },
                    None => tracing::warn!("a certificate nobody asked for: ignored"),
                }
            }
            Some(Down::TrustBundle(b)) => {
                if let Err(e) = self.install_bundle(&b.pem) {
                    tracing::error!(error = %e, "trust bundle refused");
                } else {
                    tracing::info!("trust bundle installed");
                }
            }
            Some(Down::RenewNow(_)) => self.start_renewal(tx).await?,
            Some(Down::Welcome(_)) | None => {}
        }
        Ok(())
    }

    fn report_apply(&self, generation: u64, outcome: &str, details: Value) {
        self.reporter.push(
            ReportKind::Apply,
            json!({ "generation": generation, "outcome": outcome, "details": details }).to_string(),
        );
    }

    async fn apply(self: Arc<Self>, d: Desired) {
        let _one = self.apply_lock.lock().await;
        let g = d.generation;
        {
            let p = lock(&self.persisted);
            if g <= p.confirmed_generation || g == p.reverted_generation {
                return;
            }
        }
        self.stats.applies.fetch_add(1, Ordering::Relaxed);
        let result = self.host.apply(&d).await;
        let details = match result {
            Ok(v) => v,
            Err(e) => {
                self.persist(|p| p.reverted_generation = g);
                self.report_apply(g, "failed", json!({ "error": e }));
                return;
            }
        };
        if d.confirm_within_s == 0 {
            self.persist(|p| p.confirmed_generation = g);
            self.stats.confirmed.fetch_add(1, Ordering::Relaxed);
            self.report_apply(g, "applied", details);
            return;
        }
        self.report_apply(g, "pending", details);
        // Confirm over a new connection: each attempt is a fresh TCP + TLS
        // connection, routed by the state just applied.
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(u64::from(d.confirm_within_s))
                .saturating_sub(Duration::from_millis(500));
        let mut wait = Duration::from_millis(200);
        let mut last_err = String::new();
        while tokio::time::Instant::now() < deadline {
            let current = self.stats.controller.load(Ordering::Relaxed);
            let mut order: Vec<usize> = (0..self.cfg.controllers.len()).collect();
            if current > 0 {
                order.retain(|i| *i as u64 != current - 1);
                order.insert(0, current as usize - 1);
            }
            for i in order {
                let addr = &self.cfg.controllers[i];
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                let attempt = async {
                    let _permit = match &self.cfg.connect_permits {
                        Some(p) => p.clone().acquire_owned().await.ok(),
                        None => None,
                    };
                    let ch = tls::connect(
                        &self.tls,
                        addr,
                        &self.cfg.server_name,
                        self.cfg.connect_timeout.min(left),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    FleetClient::new(ch)
                        .confirm_path(ConfirmPathRequest { generation: g })
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|e| e.message().to_owned())
                };
                match tokio::time::timeout(left, attempt).await {
                    Ok(Ok(r)) if r.confirm => {
                        match self.host.confirm(g).await {
                            Ok(()) => {
                                self.persist(|p| p.confirmed_generation = g);
                                self.stats.confirmed.fetch_add(1, Ordering::Relaxed);
                                self.report_apply(g, "confirmed", json!({ "controller": addr }));
                            }
                            Err(e) => {
                                self.persist(|p| p.reverted_generation = g);
                                self.stats.reverted.fetch_add(1, Ordering::Relaxed);
                                self.report_apply(g, "reverted", json!({ "error": e }));
                            }
                        }
                        return;
                    }
                    Ok(Ok(r)) => {
                        let _ = self.host.rollback(g).await;
                        self.persist(|p| p.reverted_generation = g);
                        self.stats.reverted.fetch_add(1, Ordering::Relaxed);
                        self.report_apply(g, "reverted", json!({ "refused": r.reason }));
                        return;
                    }
                    Ok(Err(e)) => last_err = e,
                    Err(_) => last_err = "timed out".into(),
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        // Not confirmed: the host reverts at its deadline.
        self.persist(|p| p.reverted_generation = g);
        self.stats.reverted.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(generation = g, error = %last_err, "not confirmed over the new path: the host reverts");
        self.report_apply(
            g,
            "reverted",
            json!({ "reason": "no controller answered over the new network path before the deadline", "last_error": last_err }),
        );
    }
}
