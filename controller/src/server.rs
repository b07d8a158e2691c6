//! The controller: the channel's services, agents in memory with a group
//! commit to the [`Store`], the admin operations, the fabric service.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use fleet::{
    proto::{
        agent_message::Body as Up,
        controller_message::Body as Down,
        enrolment_server::{Enrolment, EnrolmentServer},
        fleet_server::{Fleet, FleetServer},
        Ack, AgentMessage, Certificate, ConfirmPathRequest, ConfirmPathResponse, ControllerMessage,
        Desired, EnrolRequest, EnrolResponse, RenewNow, Report, ReportKind, TrustBundle, Welcome,
    },
    tls::{self, AgentVerifier, PeerIdentity},
    unix_ms,
};
use hostd_core::intent::SwitchIntent;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    ca::{CaError, Cas},
    fabric::{self, FabricConfig, SwitchAction},
    store::{AgentRecord, DesiredRecord, Store, StoreError, TokenRecord},
};

/// Settings of `controller serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The store.
    pub state_dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// This controller's name (in records and `Welcome`).
    pub name: String,
    /// Names (DNS or IP) in the server certificate; agents verify the
    /// first by default (`hostnet-controller`).
    pub server_names: Vec<String>,
    /// Lifetime of agent certificates.
    pub cert_validity: Duration,
    /// Group commit period.
    pub flush_every: Duration,
    /// Test hook: issue certificates already expired (the
    /// wrong-certificate tests make one with it). Never set by `serve`
    /// unless asked on the command line.
    pub not_before_offset_s: i64,
}

impl Config {
    /// Defaults for a store and a listen address.
    pub fn new(state_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            state_dir,
            listen,
            name: "controller".into(),
            server_names: vec![fleet::DEFAULT_SERVER_NAME.into()],
            cert_validity: Duration::from_secs(24 * 3600),
            flush_every: Duration::from_millis(100),
            not_before_offset_s: 0,
        }
    }
}

/// Controller errors.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Files.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// CAs.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// TLS.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// PKI.
    #[error(transparent)]
    Pki(#[from] fleet::pki::PkiError),
    /// Bad request.
    #[error("{0}")]
    Invalid(String),
    /// Unknown agent.
    #[error("no agent {0:?}")]
    NoAgent(String),
    /// Socket.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// TLS handshakes completed.
    pub handshakes: AtomicU64,
    /// TLS handshakes refused or failed.
    pub handshake_failures: AtomicU64,
    /// Streams opened.
    pub streams: AtomicU64,
    /// Streams open now.
    pub open_streams: AtomicU64,
    /// Reports received (new ones).
    pub reports: AtomicU64,
    /// Enrolments.
    pub enrolments: AtomicU64,
    /// Certificates renewed.
    pub renewals: AtomicU64,
    /// ConfirmPath answered yes.
    pub confirmations: AtomicU64,
    /// Desired states sent.
    pub pushes: AtomicU64,
    /// Group commits and records written.
    pub flushes: AtomicU64,
    /// Records written.
    pub records_written: AtomicU64,
}

type Tx = mpsc::Sender<Result<ControllerMessage, Status>>;

struct Entry {
    rec: AgentRecord,
    stream: Option<(u64, Tx)>,
    /// Changed since the last completed flush.
    unflushed: bool,
    /// Bumped on every change (a flush clears `unflushed` only if no
    /// change came in while it wrote).
    version: u64,
    /// Report position made durable (acked to the agent).
    durable: (u64, u64),
}

struct Inner {
    cfg: Config,
    store: Store,
    cas: Mutex<Cas>,
    verifier: Arc<AgentVerifier>,
    agents: Mutex<HashMap<String, Entry>>,
    dirty: Mutex<HashSet<String>>,
    conn_ids: AtomicU64,
    stats: Stats,
    fabric: Mutex<FabricState>,
    /// Completed group commits (the flusher's ticks).
    flushed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct FabricState {
    cfg: FabricConfig,
    /// Compiled switch sides, by server agent.
    sides: BTreeMap<String, SwitchIntent>,
}

/// The controller; cheap to clone.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn msg(body: Down) -> ControllerMessage {
    ControllerMessage { body: Some(body) }
}

fn push_capped(v: &mut Vec<Value>, x: Value, cap: usize) {
    v.push(x);
    if v.len() > cap {
        let n = v.len() - cap;
        v.drain(..n);
    }
}

/// `controller init`: a store with a first CA.
pub fn init(state_dir: &std::path::Path, ca_validity: Duration) -> Result<String, CtlError> {
    let store = Store::open(state_dir)?;
    if store.read("ca/active")?.is_none() {
        Cas::add(&store, ca_validity)?;
    }
    Ok(Cas::load(&store)?.bundle())
}

impl Controller {
    /// Opens the store (which `init` prepared).
    pub fn open(cfg: Config) -> Result<Self, CtlError> {
        let store = Store::open(&cfg.state_dir)?;
        let cas = Cas::load(&store)?;
        let verifier = Arc::new(AgentVerifier::new(&cas.bundle())?);
        let revoked: Vec<String> = store
            .read("revoked.json")?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        verifier.set_revoked(revoked);
        let fabric_cfg: FabricConfig = match store.read("fabric.yaml")? {
            Some(t) => serde_norway::from_str(&t)
                .map_err(|e| CtlError::Invalid(format!("fabric.yaml: {e}")))?,
            None => FabricConfig::default(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                cas: Mutex::new(cas),
                verifier,
                agents: Mutex::new(HashMap::new()),
                dirty: Mutex::new(HashSet::new()),
                conn_ids: AtomicU64::new(1),
                stats: Stats::default(),
                fabric: Mutex::new(FabricState {
                    cfg: fabric_cfg,
                    sides: BTreeMap::new(),
                }),
                flushed: tokio::sync::watch::channel(0).0,
            }),
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The trust bundle agents start with.
    pub fn bundle(&self) -> String {
        lock(&self.inner.cas).bundle()
    }

    /// Serves the channel until `shutdown`; flushes on the way out.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), CtlError> {
        let (cert, key) = {
            let cas = lock(&self.inner.cas);
            cas.signer.issue_server(
                &self.inner.cfg.server_names,
                Duration::from_secs(365 * 24 * 3600),
            )?
        };
        let sc = tls::server_config(&cert, &key, self.inner.verifier.clone())?;
        let acceptor = tokio_rustls::TlsAcceptor::from(sc);
        let listener = tokio::net::TcpListener::bind(self.inner.cfg.listen).await?;
        tracing::info!(listen = %self.inner.cfg.listen, "serving the fleet channel");
        let (ctx, crx) = mpsc::channel::<Result<tls::TlsConn, std::io::Error>>(1024);
        let me = self.clone();
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let ctx = ctx.clone();
                let me = me.clone();
                tokio::spawn(async move {
                    match tls::accept(&acceptor, tcp, Duration::from_secs(10)).await {
                        Ok(c) => {
                            me.inner.stats.handshakes.fetch_add(1, Ordering::Relaxed);
                            let _ = ctx.send(Ok(c)).await;
                        }
                        Err(e) => {
                            me.inner
                                .stats
                                .handshake_failures
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(error = %e, "handshake refused");
                        }
                    }
                });
            }
        });
        let flusher = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut t = tokio::time::interval(me.inner.cfg.flush_every);
                loop {
                    t.tick().await;
                    me.flush().await;
                    me.inner.flushed.send_modify(|n| *n += 1);
                }
            })
        };
        let svc_f = FleetServer::new(self.clone())
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20);
        let svc_e = EnrolmentServer::new(self.clone());
        let r = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(svc_f)
            .add_service(svc_e)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::ReceiverStream::new(crx),
                shutdown,
            )
            .await;
        accept_loop.abort();
        flusher.abort();
        self.flush().await;
        r.map_err(|e| CtlError::Invalid(format!("serving: {e}")))
    }

    /// Waits until what is marked now is on disk (the second group
    /// commit from now has completed).
    async fn durable(&self) {
        let mut rx = self.inner.flushed.subscribe();
        let target = *rx.borrow() + 2;
        let _ = rx.wait_for(|n| *n >= target).await;
    }

    fn mark(&self, id: &str) {
        lock(&self.inner.dirty).insert(id.to_owned());
    }

    /// Writes every changed record (group commit), then acknowledges the
    /// reports now durable.
    pub async fn flush(&self) {
        let ids: Vec<String> = lock(&self.inner.dirty).drain().collect();
        if ids.is_empty() {
            return;
        }
        let recs: Vec<(u64, AgentRecord)> = {
            let mut a = lock(&self.inner.agents);
            ids.iter()
                .filter_map(|id| a.get_mut(id).map(|e| (e.version, e.rec.clone())))
                .collect()
        };
        let store = self.inner.store.clone();
        let n = recs.len() as u64;
        let positions: Vec<(String, u64, u64, u64)> = recs
            .iter()
            .map(|(v, r)| (r.id.clone(), *v, r.reports.epoch, r.reports.last_seq))
            .collect();
        let recs: Vec<AgentRecord> = recs.into_iter().map(|(_, r)| r).collect();
        let res = tokio::task::spawn_blocking(move || store.flush(&recs)).await;
        match res {
            Ok(Ok(())) => {
                self.inner.stats.flushes.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .stats
                    .records_written
                    .fetch_add(n, Ordering::Relaxed);
                let mut a = lock(&self.inner.agents);
                for (id, version, epoch, seq) in positions {
                    if let Some(e) = a.get_mut(&id) {
                        if e.version == version {
                            e.unflushed = false;
                        }
                        if e.durable != (epoch, seq) && seq > 0 {
                            e.durable = (epoch, seq);
                            if let Some((_, tx)) = &e.stream {
                                let _ = tx.try_send(Ok(msg(Down::Ack(Ack { epoch, seq }))));
                            }
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "writing agent records; retried");
                let mut d = lock(&self.inner.dirty);
                d.extend(ids);
            }
            Err(e) => tracing::error!(error = %e, "flush task"),
        }
    }

    /// Loads an agent into memory. The record is re-read from the store
    /// (another controller of the list may have changed it) unless this
    /// controller owns it now: it holds the agent's stream, or changes
    /// not yet written.
    fn load(&self, id: &str) -> Result<bool, StoreError> {
        let owned = lock(&self.inner.agents)
            .get(id)
            .is_some_and(|e| e.unflushed || e.stream.is_some());
        if owned {
            return Ok(true);
        }
        let rec = self.inner.store.agent(id)?;
        let mut a = lock(&self.inner.agents);
        match rec {
            Some(rec) => {
                let durable = (rec.reports.epoch, rec.reports.last_seq);
                match a.get_mut(id) {
                    Some(e) => {
                        e.rec = rec;
                        e.durable = durable;
                    }
                    None => {
                        a.insert(
                            id.to_owned(),
                            Entry {
                                rec,
                                stream: None,
                                unflushed: false,
                                version: 0,
                                durable,
                            },
                        );
                    }
                }
                Ok(true)
            }
            None => Ok(a.contains_key(id)),
        }
    }

    fn with_agent<R>(&self, id: &str, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let r = {
            let mut a = lock(&self.inner.agents);
            let e = a.get_mut(id)?;
            let r = f(e);
            e.unflushed = true;
            e.version += 1;
            r
        };
        self.mark(id);
        Some(r)
    }

    // ---- admin operations -------------------------------------------

    /// A one-time bootstrap token for `agent`, valid `ttl`.
    pub fn token(&self, agent: &str, ttl: Duration) -> Result<String, CtlError> {
        fleet::pki::check_agent_id(agent)?;
        let token: String = (0..32)
            .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
            .collect();
        let rec = TokenRecord {
            sha256: sha256_hex(&token),
            expires: unix_ms() / 1000 + ttl.as_secs(),
            used_by_key: None,
        };
        self.inner.store.write(
            &format!("tokens/{agent}.json"),
            &serde_json::to_vec(&rec).unwrap_or_default(),
            0o600,
        )?;
        Ok(token)
    }

    /// Bootstrap tokens for many agents at once (one sync for all).
    pub fn tokens(&self, agents: &[String], ttl: Duration) -> Result<Vec<String>, CtlError> {
        let mut out = Vec::with_capacity(agents.len());
        for agent in agents {
            fleet::pki::check_agent_id(agent)?;
            let token: String = (0..32)
                .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
                .collect();
            let rec = TokenRecord {
                sha256: sha256_hex(&token),
                expires: unix_ms() / 1000 + ttl.as_secs(),
                used_by_key: None,
            };
            crate::store::write_file(
                &self.inner.store.path(&format!("tokens/{agent}.json")),
                &serde_json::to_vec(&rec).unwrap_or_default(),
                0o600,
                false,
            )?;
            out.push(token);
        }
        crate::store::sync_dir(&self.inner.store.path("tokens"))?;
        Ok(out)
    }

    /// Sets the desired document of `agents` (`["*"]`: every enrolled
    /// agent known to this controller) and pushes it to those connected.
    /// Returns the generations.
    pub fn set_desired(
        &self,
        agents: &[String],
        document: &str,
        confirm_within_s: u32,
        source: &str,
    ) -> Result<Vec<(String, u64)>, CtlError> {
        let ids: Vec<String> = if agents.iter().any(|a| a == "*") {
            let mut ids: Vec<String> = lock(&self.inner.agents).keys().cloned().collect();
            for r in self.inner.store.agents()? {
                if !ids.contains(&r.id) {
                    ids.push(r.id);
                }
            }
            ids
        } else {
            agents.to_vec()
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if !self.load(&id)? {
                return Err(CtlError::NoAgent(id));
            }
            let r = self.with_agent(&id, |e| {
                if e.rec.desired.as_ref().is_some_and(|d| {
                    d.document == document && d.confirm_within_s == confirm_within_s
                }) {
                    return (e.rec.desired.as_ref().map_or(0, |d| d.generation), None);
                }
                let generation = e
                    .rec
                    .desired
                    .as_ref()
                    .map_or(0, |d| d.generation)
                    .max(e.rec.confirmed_generation)
                    .max(e.rec.reverted_generation)
                    + 1;
                e.rec.desired = Some(DesiredRecord {
                    generation,
                    document: document.to_owned(),
                    confirm_within_s,
                    set_at_ms: unix_ms(),
                    source: source.to_owned(),
                });
                let tx = e.stream.as_ref().map(|(_, tx)| tx.clone());
                (generation, tx)
            });
            if let Some((generation, tx)) = r {
                if let Some(tx) = tx {
                    self.inner.stats.pushes.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.try_send(Ok(msg(Down::Desired(Desired {
                        generation,
                        document: document.to_owned(),
                        confirm_within_s,
                    }))));
                }
                out.push((id, generation));
            }
        }
        Ok(out)
    }

    fn summary(e: &Entry) -> Value {
        let r = &e.rec;
        let desired = r.desired.as_ref().map(|d| d.generation).unwrap_or(0);
        let state = match &r.desired {
            None => "no desired state",
            Some(d) if d.generation <= r.confirmed_generation => "confirmed",
            Some(d) if d.generation == r.reverted_generation => "reverted",
            Some(_) => "pending",
        };
        json!({
            "id": r.id,
            "connected": e.stream.is_some(),
            "controller": r.controller,
            "last_seen_ms": r.last_seen_ms,
            "desired_generation": desired,
            "confirmed_generation": r.confirmed_generation,
            "reverted_generation": r.reverted_generation,
            "state": state,
            "cert_serial": r.cert_serial,
            "cert_not_after": r.cert_not_after,
            "reports": r.reports,
            "drift_count": r.drift_count,
            "fabric_ok": r.fabric.as_ref().and_then(|f| f.get("ok")).cloned(),
        })
    }

    /// `fleet list`: every agent (memory and store).
    pub fn list(&self) -> Result<Value, CtlError> {
        for r in self.inner.store.agents()? {
            let _ = self.load(&r.id)?;
        }
        let a = lock(&self.inner.agents);
        let mut v: Vec<Value> = a.values().map(Self::summary).collect();
        v.sort_by(|x, y| x["id"].as_str().cmp(&y["id"].as_str()));
        Ok(Value::Array(v))
    }

    /// `fleet show AGENT`: the whole record.
    pub fn show(&self, id: &str) -> Result<Value, CtlError> {
        if !self.load(id)? {
            return Err(CtlError::NoAgent(id.to_owned()));
        }
        let a = lock(&self.inner.agents);
        let e = a.get(id).ok_or_else(|| CtlError::NoAgent(id.to_owned()))?;
        let mut v = serde_json::to_value(&e.rec).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("summary".into(), Self::summary(e));
        }
        Ok(v)
    }

    /// Counters and fleet totals.
    pub fn stats_json(&self) -> Value {
        let s = &self.inner.stats;
        let a = lock(&self.inner.agents);
        let mut by_gen: BTreeMap<u64, u64> = BTreeMap::new();
        let mut connected = 0;
        let (mut lost, mut received, mut dropped) = (0, 0, 0);
        for e in a.values() {
            *by_gen.entry(e.rec.confirmed_generation).or_default() += 1;
            if e.stream.is_some() {
                connected += 1;
            }
            lost += e.rec.reports.lost;
            received += e.rec.reports.received;
            dropped += e.rec.reports.dropped_by_agent;
        }
        let g = |x: &AtomicU64| x.load(Ordering::Relaxed);
        json!({
            "agents": a.len(),
            "connected": connected,
            "confirmed_by_generation": by_gen,
            "reports_received": received,
            "reports_lost": lost,
            "reports_dropped_by_agents": dropped,
            "handshakes": g(&s.handshakes),
            "handshake_failures": g(&s.handshake_failures),
            "streams": g(&s.streams),
            "open_streams": g(&s.open_streams),
            "enrolments": g(&s.enrolments),
            "renewals": g(&s.renewals),
            "confirmations": g(&s.confirmations),
            "pushes": g(&s.pushes),
            "flushes": g(&s.flushes),
            "records_written": g(&s.records_written),
        })
    }

    /// Revokes `agent`'s certificates (current and previous) and closes
    /// its stream.
    pub fn revoke(&self, agent: &str) -> Result<Value, CtlError> {
        if !self.load(agent)? {
            return Err(CtlError::NoAgent(agent.to_owned()));
        }
        let serials = self
            .with_agent(agent, |e| {
                e.stream = None;
                let mut s = e.rec.previous_serials.clone();
                s.push(e.rec.cert_serial.clone());
                s
            })
            .unwrap_or_default();
        let mut all: Vec<String> = self
            .inner
            .store
            .read("revoked.json")?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        all.extend(serials.iter().cloned());
        all.sort();
        all.dedup();
        self.inner.store.write(
            "revoked.json",
            &serde_json::to_vec(&all).unwrap_or_default(),
            0o644,
        )?;
        self.inner.verifier.set_revoked(all);
        Ok(json!({ "revoked": serials }))
    }

    /// Asks connected agents (all, or these) to renew now.
    pub fn renew_now(&self, agents: &[String]) -> usize {
        let a = lock(&self.inner.agents);
        let mut n = 0;
        for (id, e) in a.iter() {
            if agents.is_empty() || agents.contains(id) {
                if let Some((_, tx)) = &e.stream {
                    if tx.try_send(Ok(msg(Down::RenewNow(RenewNow {})))).is_ok() {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    fn broadcast_bundle(&self) -> usize {
        let pem = self.bundle();
        let a = lock(&self.inner.agents);
        let mut n = 0;
        for e in a.values() {
            if let Some((_, tx)) = &e.stream {
                if tx
                    .try_send(Ok(msg(Down::TrustBundle(TrustBundle { pem: pem.clone() }))))
                    .is_ok()
                {
                    n += 1;
                }
            }
        }
        n
    }

    /// CA rotation, step 1: a new CA signs from now on; the bundle (old +
    /// new) goes to every connected agent, which then renews.
    pub fn ca_rotate(&self, validity: Duration) -> Result<Value, CtlError> {
        let n = Cas::add(&self.inner.store, validity)?;
        let cas = Cas::load(&self.inner.store)?;
        self.inner.verifier.set_bundle(&cas.bundle())?;
        *lock(&self.inner.cas) = cas;
        let sent = self.broadcast_bundle();
        let renewing = self.renew_now(&[]);
        Ok(json!({ "active": n, "bundle_sent": sent, "renew_requested": renewing }))
    }

    /// CA rotation, step 2: only the active CA stays trusted (restart the
    /// controller afterwards so its own certificate is the new CA's).
    pub fn ca_retire(&self) -> Result<Value, CtlError> {
        let old = Cas::retire_old(&self.inner.store)?;
        let cas = Cas::load(&self.inner.store)?;
        self.inner.verifier.set_bundle(&cas.bundle())?;
        *lock(&self.inner.cas) = cas;
        let sent = self.broadcast_bundle();
        Ok(json!({ "retired": old, "bundle_sent": sent }))
    }

    /// Sets `fabric.yaml`.
    pub fn set_fabric(&self, text: &str) -> Result<(), CtlError> {
        let cfg: FabricConfig = serde_norway::from_str(text)
            .map_err(|e| CtlError::Invalid(format!("fabric.yaml: {e}")))?;
        self.inner
            .store
            .write("fabric.yaml", text.as_bytes(), 0o644)?;
        lock(&self.inner.fabric).cfg = cfg;
        Ok(())
    }

    /// Sets `agent`'s connection intent and compiles it if its inventory
    /// is known.
    pub fn set_intent(&self, agent: &str, text: &str) -> Result<Value, CtlError> {
        hostd_core::intent::Intent::parse(text)
            .map_err(|e| CtlError::Invalid(format!("intent: {e}")))?;
        self.inner
            .store
            .write(&format!("intents/{agent}.yaml"), text.as_bytes(), 0o644)?;
        self.run_fabric(agent)
    }

    /// The fabric service for one server: compile, give the server its
    /// state, reconfigure the switches.
    pub fn run_fabric(&self, agent: &str) -> Result<Value, CtlError> {
        let Some(intent) = self.inner.store.read(&format!("intents/{agent}.yaml"))? else {
            return Ok(json!({ "ok": false, "reason": "no intent" }));
        };
        if !self.load(agent)? {
            return Err(CtlError::NoAgent(agent.to_owned()));
        }
        let inventory = lock(&self.inner.agents)
            .get(agent)
            .and_then(|e| e.rec.inventory.clone());
        let Some(inventory) = inventory else {
            return Ok(json!({ "ok": false, "reason": "no inventory reported yet" }));
        };
        let (res, confirm, actions) = {
            let mut f = lock(&self.inner.fabric);
            let res = fabric::compile_server(&f.cfg, &intent, &inventory);
            match &res.switch_side {
                Some(s) => {
                    f.sides.insert(agent.to_owned(), s.clone());
                }
                None => {
                    f.sides.remove(agent);
                }
            }
            let actions = if res.switch_side.is_some() {
                fabric::switch_actions(&f.cfg, &f.sides)
            } else {
                Vec::new()
            };
            (res, f.cfg.confirm_within, actions)
        };
        let report = res.report.clone();
        self.with_agent(agent, |e| e.rec.fabric = Some(report.clone()));
        if let Some(doc) = &res.document {
            self.set_desired(&[agent.to_owned()], doc, confirm, "fabric")?;
        } else {
            tracing::warn!(agent, errors = %report, "fabric: the intent does not compile with the reported cabling");
        }
        let mut switches = Vec::new();
        for (b, r) in actions {
            match r {
                Ok(SwitchAction::AgentDocument {
                    agent: sw,
                    document,
                }) => {
                    match self.set_desired(std::slice::from_ref(&sw), &document, confirm, "fabric") {
                        Ok(g) => switches.push(json!({ "switches": b.hostnames, "agent": sw, "generation": g.first().map(|x| x.1) })),
                        Err(e) => switches.push(json!({ "switches": b.hostnames, "error": e.to_string() })),
                    }
                }
                Ok(SwitchAction::Done) => {
                    switches.push(json!({ "switches": b.hostnames, "done": true }))
                }
                Err(e) => switches.push(json!({ "switches": b.hostnames, "error": e })),
            }
        }
        Ok(json!({ "server": report, "switches": switches }))
    }

    fn on_report(&self, agent: &str, r: Report) {
        let Ok(kind) = ReportKind::try_from(r.kind) else {
            return;
        };
        let mut fabric_due = false;
        let new = self.with_agent(agent, |e| {
            let c = &mut e.rec.reports;
            if r.epoch != c.epoch {
                c.epoch = r.epoch;
                c.last_seq = 0;
            }
            if r.seq <= c.last_seq {
                c.duplicates += 1;
                return false;
            }
            c.lost += r.seq - c.last_seq - 1;
            c.last_seq = r.seq;
            c.received += 1;
            e.rec.last_seen_ms = unix_ms();
            let v: Value = serde_json::from_str(&r.json).unwrap_or(Value::String(r.json.clone()));
            match kind {
                ReportKind::Inventory => {
                    fabric_due = e.rec.inventory.as_ref() != Some(&v);
                    e.rec.inventory = Some(v);
                }
                ReportKind::Status => e.rec.status = Some(v),
                ReportKind::Apply => {
                    let g = v.get("generation").and_then(Value::as_u64).unwrap_or(0);
                    match v.get("outcome").and_then(Value::as_str) {
                        Some("confirmed" | "applied") => {
                            e.rec.confirmed_generation = e.rec.confirmed_generation.max(g);
                        }
                        Some("reverted" | "failed") => e.rec.reverted_generation = g,
                        _ => {}
                    }
                    push_capped(&mut e.rec.applies, v, 8);
                }
                ReportKind::Drift => {
                    e.rec.drift_count += 1;
                    push_capped(&mut e.rec.drifts, v, 8);
                }
                ReportKind::Synthetic | ReportKind::Unspecified => {}
            }
            true
        });
        if new == Some(true) {
            self.inner.stats.reports.fetch_add(1, Ordering::Relaxed);
        }
        if fabric_due {
            let me = self.clone();
            let agent = agent.to_owned();
            tokio::spawn(async move {
                match tokio::task::spawn_blocking(move || me.run_fabric(&agent)).await {
                    Ok(Ok(v)) => tracing::info!(result = %v, "fabric"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "fabric"),
                    Err(e) => tracing::error!(error = %e, "fabric task"),
                }
            });
        }
    }

    fn renew(&self, agent: &str, csr: &str) -> Result<String, CtlError> {
        let pem = lock(&self.inner.cas).signer.sign_agent(
            csr,
            agent,
            self.inner.cfg.cert_validity,
            self.inner.cfg.not_before_offset_s,
        )?;
        let info = fleet::pki::CertInfo::from_pem(&pem)?;
        self.with_agent(agent, |e| {
            let old = std::mem::replace(&mut e.rec.cert_serial, info.serial.clone());
            if !old.is_empty() {
                push_capped_s(&mut e.rec.previous_serials, old, 4);
            }
            e.rec.cert_not_after = info.not_after;
            e.rec.certs_issued += 1;
        });
        Ok(pem)
    }
}

fn push_capped_s(v: &mut Vec<String>, x: String, cap: usize) {
    v.push(x);
    if v.len() > cap {
        let n = v.len() - cap;
        v.drain(..n);
    }
}

fn peer(req: &Request<impl Sized>) -> Option<PeerIdentity> {
    req.extensions().get::<PeerIdentity>().cloned()
}

fn agent_of(req: &Request<impl Sized>) -> Result<String, Status> {
    peer(req)
        .and_then(|p| p.agent)
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))
}

#[tonic::async_trait]
impl Enrolment for Controller {
    async fn enrol(&self, req: Request<EnrolRequest>) -> Result<Response<EnrolResponse>, Status> {
        let r = req.into_inner();
        fleet::pki::check_agent_id(&r.agent_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let rel = format!("tokens/{}.json", r.agent_id);
        let tok: Option<TokenRecord> = self
            .inner
            .store
            .read(&rel)
            .map_err(|e| Status::internal(e.to_string()))?
            .and_then(|s| serde_json::from_str(&s).ok());
        let key = fleet::pki::csr_public_key(&r.csr_pem)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key: String = Sha256::digest(&key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let ok = tok.as_ref().is_some_and(|t| {
            t.sha256 == sha256_hex(&r.token)
                && t.expires >= unix_ms() / 1000
                && t.used_by_key.as_ref().is_none_or(|k| *k == key)
        });
        if !ok {
            tracing::warn!(agent = %r.agent_id, "enrolment refused: bad or expired token");
            return Err(Status::permission_denied(format!(
                "agent {}: no valid bootstrap token",
                r.agent_id
            )));
        }
        // One-time: bound to this key (durably) before the certificate is
        // issued. The same key retrying (its answer was lost: a timeout
        // under load) is answered again, and its earlier certificate
        // revoked below; any other key is refused. Deleting the token
        // instead left such an agent unable to ever enrol (found by
        // fleet-bench at 10,000 agents on a loaded machine).
        if let Some(mut t) = tok.filter(|t| t.used_by_key.is_none()) {
            t.used_by_key = Some(key);
            self.inner
                .store
                .write(&rel, &serde_json::to_vec(&t).unwrap_or_default(), 0o600)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        self.load(&r.agent_id)
            .map_err(|e| Status::internal(e.to_string()))?;
        let existed = {
            let mut a = lock(&self.inner.agents);
            let existed = a.contains_key(&r.agent_id);
            a.entry(r.agent_id.clone()).or_insert_with(|| Entry {
                rec: AgentRecord {
                    id: r.agent_id.clone(),
                    enrolled_ms: unix_ms(),
                    ..AgentRecord::default()
                },
                stream: None,
                unflushed: true,
                version: 1,
                durable: (0, 0),
            });
            existed
        };
        if existed {
            // Re-enrolment: the old certificates are revoked.
            self.revoke(&r.agent_id)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let cert = self
            .renew(&r.agent_id, &r.csr_pem)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.durable().await;
        self.inner.stats.enrolments.fetch_add(1, Ordering::Relaxed);
        tracing::info!(agent = %r.agent_id, "enrolled");
        Ok(Response::new(EnrolResponse {
            cert_pem: cert,
            trust_bundle_pem: self.bundle(),
        }))
    }
}

type OutStream = tokio_stream::wrappers::ReceiverStream<Result<ControllerMessage, Status>>;

#[tonic::async_trait]
impl Fleet for Controller {
    type StreamStream = OutStream;

    async fn stream(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        let agent = agent_of(&req)?;
        let mut inbound = req.into_inner();
        let hello = match inbound.message().await? {
            Some(AgentMessage {
                body: Some(Up::Hello(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        if hello.agent_id != agent {
            return Err(Status::permission_denied(format!(
                "the certificate names {agent}, Hello names {}",
                hello.agent_id
            )));
        }
        if !self
            .load(&agent)
            .map_err(|e| Status::internal(e.to_string()))?
        {
            return Err(Status::permission_denied(format!(
                "agent {agent} is not enrolled"
            )));
        }
        let (tx, rx) = mpsc::channel(64);
        let conn = self.inner.conn_ids.fetch_add(1, Ordering::Relaxed);
        let name = self.inner.cfg.name.clone();
        let (welcome, push) = self
            .with_agent(&agent, |e| {
                e.stream = Some((conn, tx.clone()));
                let r = &mut e.rec;
                r.last_seen_ms = unix_ms();
                r.controller = name.clone();
                r.confirmed_generation = r.confirmed_generation.max(hello.confirmed_generation);
                if hello.reverted_generation > 0 {
                    r.reverted_generation = hello.reverted_generation;
                }
                r.reports.dropped_by_agent = hello.reports_dropped;
                let w = Welcome {
                    controller: name.clone(),
                    acked_epoch: e.durable.0,
                    acked_seq: e.durable.1,
                };
                let push = r.desired.as_ref().and_then(|d| {
                    (d.generation > r.confirmed_generation && d.generation != r.reverted_generation)
                        .then(|| Desired {
                            generation: d.generation,
                            document: d.document.clone(),
                            confirm_within_s: d.confirm_within_s,
                        })
                });
                (w, push)
            })
            .ok_or_else(|| Status::internal("agent vanished"))?;
        let _ = tx.send(Ok(msg(Down::Welcome(welcome)))).await;
        if let Some(d) = push {
            self.inner.stats.pushes.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(Ok(msg(Down::Desired(d)))).await;
        }
        self.inner.stats.streams.fetch_add(1, Ordering::Relaxed);
        self.inner
            .stats
            .open_streams
            .fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let m = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) | Err(_) => break,
                };
                match m.body {
                    Some(Up::Report(r)) => me.on_report(&agent, r),
                    Some(Up::Renew(r)) => match me.renew(&agent, &r.csr_pem) {
                        Ok(pem) => {
                            me.inner.stats.renewals.fetch_add(1, Ordering::Relaxed);
                            let _ = tx
                                .send(Ok(msg(Down::Certificate(Certificate { cert_pem: pem }))))
                                .await;
                        }
                        Err(e) => tracing::warn!(agent = %agent, error = %e, "renewal refused"),
                    },
                    Some(Up::Heartbeat(_)) => {
                        if let Some(e) = lock(&me.inner.agents).get_mut(&agent) {
                            e.rec.last_seen_ms = unix_ms();
                        }
                    }
                    Some(Up::Hello(_)) | None => {}
                }
            }
            me.inner.stats.open_streams.fetch_sub(1, Ordering::Relaxed);
            if let Some(e) = lock(&me.inner.agents).get_mut(&agent) {
                if e.stream.as_ref().is_some_and(|(c, _)| *c == conn) {
                    e.stream = None;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn confirm_path(
        &self,
        req: Request<ConfirmPathRequest>,
    ) -> Result<Response<ConfirmPathResponse>, Status> {
        let agent = agent_of(&req)?;
        let g = req.into_inner().generation;
        if !self
            .load(&agent)
            .map_err(|e| Status::internal(e.to_string()))?
        {
            return Err(Status::permission_denied(format!(
                "agent {agent} is not enrolled"
            )));
        }
        let r = self
            .with_agent(&agent, |e| match &e.rec.desired {
                Some(d) if d.generation == g => {
                    e.rec.confirmed_generation = e.rec.confirmed_generation.max(g);
                    ConfirmPathResponse {
                        confirm: true,
                        reason: String::new(),
                    }
                }
                d => ConfirmPathResponse {
                    confirm: false,
                    reason: format!(
                        "generation {g} is not the desired one ({})",
                        d.as_ref().map_or(0, |d| d.generation)
                    ),
                },
            })
            .ok_or_else(|| Status::internal("agent vanished"))?;
        if r.confirm {
            self.inner
                .stats
                .confirmations
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(Response::new(r))
    }
}
