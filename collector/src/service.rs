//! The running collector: ingest threads, the flusher (drains shards into
//! the store every `series.flush_interval`, snapshots every
//! `store.snapshot_interval`) and the HTTP API, with a clean shutdown that
//! stops ingest, flushes, and writes a final snapshot.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    accounting::{AgentKey, AgentStats, ShardLimits, Stats},
    config::Config,
    ingest::{Clock, Ingest},
    store::{write_atomic, RestoreReport, Store},
    subnets::SubnetTable,
};

/// Outcome of the last snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotStatus {
    pub last_success: Option<u64>,
    pub last_error: Option<String>,
    pub bytes: usize,
    pub count: u64,
}

/// State shared by the flusher and the API.
pub struct Shared {
    pub cfg: Config,
    pub store: RwLock<Store>,
    pub ingest: Mutex<Ingest>,
    pub started_at: u64,
    pub clock: Clock,
    pub snapshots: Mutex<SnapshotStatus>,
    pub restored: Option<RestoreReport>,
    /// Agents tracked by all shards (against `limits.max_agents`).
    pub agent_count: Arc<std::sync::atomic::AtomicUsize>,
    /// Prometheus remote-write, when configured.
    pub remote_write: Option<Arc<crate::remote_write::RemoteWrite>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Drains every shard into the store and pushes the subnet totals into
    /// the series at the clock's now.
    pub fn flush(&self) {
        let now = (self.clock)();
        let shards: Vec<_> = self
            .ingest
            .lock()
            .map(|i| i.shards.clone())
            .unwrap_or_default();
        let idle = self.cfg.limits.agent_idle_expiry;
        let drained: Vec<_> = shards
            .iter()
            .filter_map(|s| {
                s.lock().ok().map(|mut s| {
                    if idle > 0 {
                        let n = s.expire(now.saturating_sub(idle));
                        if n > 0 {
                            tracing::info!(
                                agents = n,
                                idle_s = idle,
                                "idle sFlow agents forgotten"
                            );
                        }
                    }
                    s.drain()
                })
            })
            .collect();
        if let Ok(mut st) = self.store.write() {
            for d in drained {
                st.apply(d);
            }
            st.flush_subnets(now);
            if let Some(rw) = &self.remote_write {
                rw.collect(&st);
            }
        }
    }

    /// Ingest statistics summed over shards, and per-agent statistics.
    pub fn stats(&self) -> (Stats, BTreeMap<AgentKey, AgentStats>, u64) {
        let mut total = Stats::default();
        let mut agents: BTreeMap<AgentKey, AgentStats> = BTreeMap::new();
        let (shards, kdrops) = match self.ingest.lock() {
            Ok(i) => (i.shards.clone(), i.kernel_drops()),
            Err(_) => (Vec::new(), 0),
        };
        for s in shards {
            if let Ok(s) = s.lock() {
                total.merge(&s.stats);
                for (k, a) in s.agents() {
                    let e = agents.entry(*k).or_default();
                    e.datagrams += a.datagrams;
                    e.samples += a.samples;
                    e.lost += a.lost;
                    e.restarts += a.restarts;
                    e.out_of_order += a.out_of_order;
                    e.duplicates += a.duplicates;
                }
            }
        }
        (total, agents, kdrops)
    }

    /// Writes a snapshot if a path is configured.
    pub fn snapshot(&self) -> anyhow::Result<()> {
        let Some(path) = self.cfg.store.path.clone() else {
            return Ok(());
        };
        let now = (self.clock)();
        let st = self
            .store
            .read()
            .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
        // Ingest goes on into the shards meanwhile; only the next flush waits.
        let r = write_atomic(&path, |w| st.write_snapshot(w, now))
            .with_context(|| format!("writing snapshot {}", path.display()));
        drop(st);
        if let Ok(mut s) = self.snapshots.lock() {
            match &r {
                Ok(bytes) => {
                    s.last_success = Some(now);
                    s.last_error = None;
                    s.bytes = *bytes;
                    s.count += 1;
                }
                Err(e) => s.last_error = Some(format!("{e:#}")),
            }
        }
        r.map(drop)
    }
}

/// A started collector.
pub struct Collector {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    /// Bound sFlow addresses (port 0 resolved).
    pub sflow_addrs: Vec<SocketAddr>,
    pub api_addr: SocketAddr,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("sflow", &self.sflow_addrs)
            .field("api", &self.api_addr)
            .finish()
    }
}

/// Wall-clock seconds.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

impl Collector {
    /// Restores the snapshot (if any), binds sockets and the API, and starts
    /// the background tasks. Must run inside a tokio runtime.
    pub async fn start(cfg: Config, clock: Clock) -> anyhow::Result<Self> {
        cfg.validate()?;
        // SNMP (issue 13): secret files readable, credentials valid.
        crate::snmp::poller::check(&cfg.snmp)?;
        let now = clock();
        let subnets = Arc::new(SubnetTable::new(cfg.subnets.iter().copied())?);
        let allow = Arc::new(SubnetTable::new(cfg.sflow.allow.iter().copied())?);
        let (store, restored) = match &cfg.store.path {
            Some(p) if p.exists() => {
                let bytes = std::fs::read(p)
                    .with_context(|| format!("reading snapshot {}", p.display()))?;
                match Store::restore(&cfg.series, subnets.nets(), &bytes, now) {
                    Ok((s, rep)) => {
                        tracing::info!(?rep, path = %p.display(), "snapshot restored");
                        (s, Some(rep))
                    }
                    Err(e) => {
                        // Keep the unreadable file for inspection; start empty.
                        let aside = p.with_extension("corrupt");
                        let _ = std::fs::rename(p, &aside);
                        tracing::error!(error = %e, moved_to = %aside.display(), "snapshot unreadable, starting empty");
                        (Store::new(&cfg.series, subnets.nets(), now), None)
                    }
                }
            }
            _ => (Store::new(&cfg.series, subnets.nets(), now), None),
        };
        let mut store = store;
        store.max_interfaces_per_agent = cfg.limits.max_interfaces_per_agent;
        let remote_write = match &cfg.remote_write {
            Some(rw) => Some(crate::remote_write::RemoteWrite::new(rw, &store)?),
            None => None,
        };
        if cfg.sflow.allow.is_empty()
            && !cfg.sflow.allow_any
            && cfg.sflow.listen.iter().any(|a| !a.ip().is_loopback())
        {
            tracing::warn!(
                "sflow.allow is empty: only datagrams from loopback sources are accepted; \
                 list the agents' prefixes in sflow.allow (or set sflow.allow_any)"
            );
        }
        let limits = ShardLimits::new(&cfg);
        let agent_count = limits.agents.clone();
        let ingest = Ingest::start(&cfg.sflow, subnets.clone(), allow, limits, clock.clone())?;
        let sflow_addrs = ingest.addrs.clone();
        let listener = tokio::net::TcpListener::bind(cfg.api.listen)
            .await
            .with_context(|| format!("binding API on {}", cfg.api.listen))?;
        let api_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            store: RwLock::new(store),
            ingest: Mutex::new(ingest),
            started_at: now,
            clock,
            snapshots: Mutex::new(SnapshotStatus::default()),
            restored,
            agent_count,
            remote_write,
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();

        let app = crate::api::router(shared.clone());
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "API server");
            }
        }));

        if let Some(rw) = &shared.remote_write {
            tasks.push(tokio::spawn(rw.clone().run(stop_rx.clone())));
        }

        let sh = shared.clone();
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut flush = tokio::time::interval(Duration::from_secs(sh.cfg.series.flush_interval));
            let mut snap = tokio::time::interval(Duration::from_secs(sh.cfg.store.snapshot_interval));
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            snap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            flush.tick().await;
            snap.tick().await;
            loop {
                tokio::select! {
                    _ = flush.tick() => {
                        let s = sh.clone();
                        let _ = tokio::task::spawn_blocking(move || s.flush()).await;
                    }
                    _ = snap.tick() => {
                        let s = sh.clone();
                        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.snapshot()).await {
                            tracing::error!(error = %format!("{e:#}"), "snapshot");
                        }
                    }
                    _ = rx.changed() => break,
                }
            }
        }));
        // SNMP poller (issue 13): its own task, none without snmp.targets.
        tasks.extend(crate::snmp::poller::spawn(shared.clone(), stop_rx.clone())?);
        tracing::info!(api = %api_addr, sflow = ?sflow_addrs, subnets = cfg.subnets.len(), "collector running");
        Ok(Self {
            shared,
            tasks,
            stop_tx,
            sflow_addrs,
            api_addr,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Drains and flushes now (tests; the flusher does this periodically).
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// Clean shutdown: stop receiving, account what was received, flush,
    /// snapshot, stop the API, send what remote-write has queued.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop_tx.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let sh = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            if let Ok(mut i) = sh.ingest.lock() {
                i.stop();
            }
            sh.flush();
            sh.snapshot()
        })
        .await??;
        if let (Some(rw), Some(c)) = (&self.shared.remote_write, &self.shared.cfg.remote_write) {
            rw.drain(Duration::from_secs(c.timeout)).await;
        }
        tracing::info!("collector stopped");
        Ok(())
    }
}

/// Runs the collector until `shutdown` resolves, then stops it cleanly.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let c = Collector::start(cfg, system_clock()).await?;
    shutdown.await;
    c.shutdown().await
}
