//! The SNMP poller's I/O: clients over shared UDP sockets, GETBULK walks,
//! one deadline per target per poll, a bounded number of targets in flight.
//!
//! Crate choice: `async-snmp` (pinned `=0.18.1` in Cargo.toml because it is
//! pre-1.0 with breaking releases). It is tokio-native, has GETBULK walks
//! that degrade on tooBig, SNMPv3 USM (SHA-1/SHA-2 auth, AES priv, engine
//! discovery with a shared engine cache) and a shared-UDP transport that
//! correlates responses of many targets on one socket — exactly what a
//! poller of many targets needs. `snmp2` 0.5 (the alternative) has no walk
//! helper and no shared-socket transport.
//!
//! Sockets: one IPv4 and (when an IPv6 target exists) one IPv6 socket for
//! all targets. Each target runs its walks one after another, so at most
//! `snmp.max_in_flight` requests are in flight overall (a semaphore of
//! that many permits, one per running poll). A poll's deadline starts when
//! it gets its permit and covers all its walks; a poll past its deadline is
//! abandoned and recorded as failed, and its permit released — a slow or
//! dead target costs only its own deadline.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use async_snmp::{
    transport::{UdpHandle, UdpTransport},
    Auth, AuthProtocol, Client, EngineCache, Oid, PrivProtocol, Retry, UsmConfig,
};
use tokio::sync::{mpsc, watch, Semaphore};

use super::{
    config::{AuthProto, PrivProto, SnmpConfig, SnmpVersion, TargetConfig, REDACTED},
    decode::{self, oids, Column, SnmpValue, Varbind},
    schedule::{names_due, Schedule},
    series::{Limits, PollData, PollOutcome},
};
use crate::service::Shared;

type SnmpClient = Client<UdpHandle>;

fn conv(v: async_snmp::Value) -> SnmpValue {
    use async_snmp::Value as V;
    match v {
        V::Integer(i) => SnmpValue::Int(i as i64),
        V::Counter32(c) => SnmpValue::Counter32(c),
        V::Counter64(c) => SnmpValue::Counter64(c),
        V::Gauge32(g) | V::UInteger32(g) | V::TimeTicks(g) => SnmpValue::Unsigned(g),
        V::OctetString(b) => SnmpValue::Bytes(b.to_vec()),
        // hrStorageType: decode::storage reads the dotted text.
        V::ObjectIdentifier(o) => SnmpValue::Bytes(o.to_string().into_bytes()),
        _ => SnmpValue::Other,
    }
}

/// Credentials and protocol of one target, resolved once.
#[derive(Clone)]
struct Creds {
    auth: Auth,
    /// Strings never to show in an error message.
    secrets: Vec<String>,
}

fn creds(t: &TargetConfig) -> Result<Creds, String> {
    match t.version {
        SnmpVersion::V2c => {
            let c = t
                .community
                .as_ref()
                .ok_or("community missing (validate the configuration)")?;
            Ok(Creds {
                auth: Auth::v2c(c.expose()),
                secrets: vec![c.expose().to_string()],
            })
        }
        SnmpVersion::V3 => {
            let user = t.user.clone().unwrap_or_default();
            let a = t
                .auth_password
                .as_ref()
                .ok_or("auth_password missing (validate the configuration)")?;
            let ap = match t.auth_protocol {
                Some(AuthProto::Sha256) => AuthProtocol::Sha256,
                Some(AuthProto::Sha512) => AuthProtocol::Sha512,
                _ => AuthProtocol::Sha1,
            };
            let mut secrets = vec![a.expose().to_string()];
            let usm = UsmConfig::new(user);
            let usm = match (&t.priv_protocol, &t.priv_password) {
                (Some(pp), Some(p)) => {
                    secrets.push(p.expose().to_string());
                    let pp = match pp {
                        PrivProto::Aes => PrivProtocol::Aes128,
                        PrivProto::Aes256 => PrivProtocol::Aes256Blumenthal,
                    };
                    usm.auth_priv(ap, a.expose(), pp, p.expose())
                }
                _ => usm.auth(ap, a.expose()),
            }
            .map_err(|e| format!("v3 credentials: {e}"))?;
            Ok(Creds {
                auth: usm.into(),
                secrets,
            })
        }
    }
}

fn redact(msg: String, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(msg, |m, s| m.replace(s.as_str(), REDACTED))
}

struct Sockets {
    v4: Option<UdpTransport>,
    v6: Option<UdpTransport>,
}

impl Sockets {
    async fn for_host(&mut self, host: &str) -> Result<UdpTransport, String> {
        let v6 = host.parse::<std::net::Ipv6Addr>().is_ok();
        let (slot, bind) = if v6 {
            (&mut self.v6, "[::]:0")
        } else {
            (&mut self.v4, "0.0.0.0:0")
        };
        if slot.is_none() {
            *slot = Some(
                UdpTransport::bind(bind)
                    .await
                    .map_err(|e| format!("binding SNMP socket {bind}: {e}"))?,
            );
        }
        slot.clone().ok_or_else(|| "no socket".into())
    }
}

/// Builds a client on the shared socket.
async fn build(
    t: &TargetConfig,
    creds: &Creds,
    sock: &UdpTransport,
    engines: &Arc<EngineCache>,
) -> Result<SnmpClient, String> {
    let (host, port) = super::config::split_address(&t.address)
        .ok_or_else(|| format!("bad address {:?}", t.address))?;
    let retry = Retry::fixed(t.retries, Duration::ZERO).map_err(|e| format!("retries: {e}"))?;
    Client::builder((host, port), creds.auth.clone())
        .request_timeout(Duration::from_millis(t.timeout_ms))
        .retry(retry)
        .engine_cache(engines.clone())
        .build_with(sock)
        .await
        .map_err(|e| redact(e.to_string(), &creds.secrets))
}

async fn walk(c: &SnmpClient, base: &[u32], reps: u32) -> Result<Vec<Varbind>, String> {
    let vbs = c
        .bulk_walk(Oid::from_slice(base), reps)
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| format!("walking {}: {e}", Oid::from_slice(base)))?;
    Ok(vbs
        .into_iter()
        .map(|vb| (vb.oid.arcs().to_vec(), conv(vb.value)))
        .collect())
}

async fn columns<const N: usize>(
    c: &SnmpClient,
    bases: [&[u32]; N],
    reps: u32,
) -> Result<[Column; N], String> {
    let mut out: [Column; N] = std::array::from_fn(|_| Column::new());
    for (o, b) in out.iter_mut().zip(bases) {
        *o = decode::column(b, &walk(c, b, reps).await?);
    }
    Ok(out)
}

/// One poll: sysUpTime, interfaces (names when due), HOST-RESOURCES,
/// ENTITY-SENSOR temperatures.
///
/// SNMPv3: async-snmp (rightly) ignores the unauthenticated
/// usmStatsWrongDigests Report an agent sends for a wrong password, so that
/// case looks like a timeout. When the agent did answer engine discovery
/// (its engine is in `engines`) the error says so and names the likely
/// cause.
async fn poll_once(
    c: &SnmpClient,
    reps: u32,
    with_names: bool,
    engines: &EngineCache,
) -> Result<PollData, String> {
    let up = c
        .get(&Oid::from_slice(oids::SYS_UPTIME))
        .await
        .map_err(|e| {
            let v3_unauthenticated = c.version() == async_snmp::Version::V3
                && e.kind() == async_snmp::ErrorKind::Timeout
                && engines.get(&c.peer_addr()).is_some();
            if v3_unauthenticated {
                format!(
                    "sysUpTime: {e}: the agent answered SNMPv3 engine discovery but no \
                     authenticated reply came back: authentication failed (wrong user, \
                     auth_password or priv_password, or the user has no access)"
                )
            } else {
                format!("sysUpTime: {e}")
            }
        })?;
    let up: Vec<Varbind> = up
        .varbinds
        .into_iter()
        .map(|vb| (vb.oid.arcs().to_vec(), conv(vb.value)))
        .collect();
    let mut d = PollData {
        uptime: decode::uptime(&up),
        ..Default::default()
    };
    if with_names {
        d.if_names = Some(decode::if_names(&columns(c, oids::IF_NAMES, reps).await?));
    }
    let hc = columns(c, oids::IF_COUNTERS_HC, reps).await?;
    let errors = columns(c, oids::IF_ERRORS, reps).await?;
    let mut idx: Vec<u32> = errors.iter().flat_map(|c| c.keys().copied()).collect();
    idx.sort_unstable();
    idx.dedup();
    let c32 = if decode::lacking_hc(&hc, &idx) {
        columns(c, oids::IF_COUNTERS_32, reps).await?
    } else {
        std::array::from_fn(|_| Column::new())
    };
    d.interfaces = decode::interfaces(&hc, &c32, &errors);
    d.processors = decode::processors(&decode::column(
        oids::HR_PROCESSOR_LOAD,
        &walk(c, oids::HR_PROCESSOR_LOAD, reps).await?,
    ));
    let used = walk(c, oids::HR_STORAGE_USED, reps).await?;
    if !used.is_empty() {
        let mut s = columns(c, oids::STORAGE, reps).await?;
        s[4] = decode::column(oids::HR_STORAGE_USED, &used);
        d.storage = decode::storage(&s);
    }
    let types = decode::column(
        oids::ENT_SENSOR_TYPE,
        &walk(c, oids::ENT_SENSOR_TYPE, reps).await?,
    );
    if types
        .values()
        .any(|v| *v == SnmpValue::Int(decode::SENSOR_CELSIUS))
    {
        let mut s = columns(c, oids::SENSORS, reps).await?;
        s[0] = types;
        d.temperatures = decode::temperatures(&s);
        if with_names {
            let names = decode::column(
                oids::ENT_PHYSICAL_NAME,
                &walk(c, oids::ENT_PHYSICAL_NAME, reps).await?,
            );
            d.sensor_names = Some(
                d.temperatures
                    .iter()
                    .filter_map(|(i, _)| match names.get(i) {
                        Some(SnmpValue::Bytes(b)) => {
                            Some((*i, String::from_utf8_lossy(b).chars().take(256).collect()))
                        }
                        _ => None,
                    })
                    .collect::<BTreeMap<_, _>>(),
            );
        }
    }
    Ok(d)
}

/// Validates the `snmp:` section, reads its secret files and checks the
/// credentials with the client library; returns the loaded section.
pub fn check(cfg: &SnmpConfig) -> Result<SnmpConfig, super::config::SnmpConfigError> {
    let mut cfg = cfg.clone();
    cfg.validate_and_load()?;
    if let Some((i, e)) = cfg
        .targets
        .iter()
        .enumerate()
        .find_map(|(i, t)| creds(t).err().map(|e| (i, e)))
    {
        return Err(super::config::SnmpConfigError {
            field: format!("snmp.targets[{i}]"),
            message: e,
        });
    }
    Ok(cfg)
}

struct Done {
    target: usize,
    client: Option<SnmpClient>,
    outcome: PollOutcome,
}

/// Starts the poller if `snmp.targets` is not empty: registers the targets
/// in the store and polls until `stop` turns true. Fails (naming the field)
/// when a secret file cannot be read or a credential is invalid.
pub fn spawn(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, super::config::SnmpConfigError> {
    if shared.cfg.snmp.targets.is_empty() {
        return Ok(None);
    }
    let cfg = check(&shared.cfg.snmp)?;
    if let Ok(mut st) = shared.store.write() {
        st.snmp.configure(
            &shared.cfg.series,
            &cfg.targets,
            Limits {
                max_interfaces_per_target: cfg.max_interfaces_per_target,
                max_rows_per_table: cfg.max_rows_per_table,
                max_series: cfg.max_series,
            },
        );
    }
    Ok(Some(tokio::spawn(async move {
        let targets: Arc<Vec<TargetConfig>> = Arc::new(cfg.targets.clone());
        let creds: Vec<Result<Creds, String>> = targets.iter().map(creds).collect();
        let mut clients: Vec<Option<SnmpClient>> = vec![None; targets.len()];
        let mut sockets = Sockets { v4: None, v6: None };
        let engines = Arc::new(EngineCache::new());
        let sem = Arc::new(Semaphore::new(cfg.max_in_flight));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, mut rx) = mpsc::channel::<Done>(targets.len() + 1);
        let mut tasks = tokio::task::JoinSet::new();
        let t0 = Instant::now();
        let mut sched = Schedule::new(
            &targets
                .iter()
                .map(|t| (t.name.as_str(), t.interval))
                .collect::<Vec<_>>(),
            0,
        );
        tracing::info!(targets = targets.len(), "SNMP poller running");
        loop {
            let now = t0.elapsed().as_millis() as u64;
            for i in sched.take_due(now) {
                let t = targets[i].clone();
                let polls = sched.slots[i].polls;
                let cr = creds[i].clone();
                let client = clients[i].take();
                let sock = match &client {
                    Some(_) => None,
                    None => {
                        let (host, _) =
                            super::config::split_address(&t.address).unwrap_or_default();
                        Some(sockets.for_host(&host).await)
                    }
                };
                let (sem, tx, engines, peak) =
                    (sem.clone(), tx.clone(), engines.clone(), peak.clone());
                let max_in_flight = cfg.max_in_flight;
                let refresh = cfg.names_refresh_polls;
                tasks.spawn(async move {
                    let _permit = sem.clone().acquire_owned().await;
                    peak.fetch_max(
                        max_in_flight - sem.available_permits(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    let start = Instant::now();
                    let deadline = t.deadline();
                    let secrets = cr.as_ref().map(|c| c.secrets.clone()).unwrap_or_default();
                    let mut client = client;
                    let run = async {
                        let c = match &client {
                            Some(c) => c.clone(),
                            None => {
                                let cr = cr.as_ref().map_err(|e| e.clone())?;
                                let sock = sock.ok_or("no socket")??;
                                let c = build(&t, cr, &sock, &engines).await?;
                                client = Some(c.clone());
                                c
                            }
                        };
                        poll_once(&c, t.max_repetitions, names_due(polls, refresh), &engines).await
                    };
                    let result = match tokio::time::timeout(deadline, run).await {
                        Ok(r) => r.map_err(|e| redact(e, &secrets)),
                        Err(_) => Err(format!(
                            "poll deadline of {} ms exceeded",
                            deadline.as_millis()
                        )),
                    };
                    let outcome = PollOutcome {
                        target: i,
                        duration_ms: start.elapsed().as_millis() as u64,
                        result,
                    };
                    let _ = tx
                        .send(Done {
                            target: i,
                            client,
                            outcome,
                        })
                        .await;
                });
            }
            while tasks.try_join_next().is_some() {}
            let wake = t0 + Duration::from_millis(sched.next_wake().unwrap_or(now + 1000));
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                Some(done) = rx.recv() => {
                    sched.finished(done.target);
                    if done.client.is_some() {
                        clients[done.target] = done.client;
                    }
                    let t = (shared.clock)();
                    if let Ok(mut st) = shared.store.write() {
                        // Log changes of state, not every failed poll of a
                        // target that stays down.
                        let was_failing = st
                            .snmp
                            .targets
                            .get(done.target)
                            .is_some_and(|s| s.last_error.is_some());
                        let name = &targets[done.target].name;
                        match (&done.outcome.result, was_failing) {
                            (Err(e), false) => {
                                tracing::warn!(target_name = %name, error = %e, "SNMP poll failed")
                            }
                            (Err(e), true) => {
                                tracing::debug!(target_name = %name, error = %e, "SNMP poll failed again")
                            }
                            (Ok(_), true) => tracing::info!(target_name = %name, "SNMP target answers again"),
                            (Ok(_), false) => {}
                        }
                        st.snmp.apply(done.outcome, t);
                        st.snmp.peak_in_flight = peak.load(std::sync::atomic::Ordering::Relaxed);
                        st.snmp.sockets =
                            usize::from(sockets.v4.is_some()) + usize::from(sockets.v6.is_some());
                        if let Some(s) = st.snmp.targets.get_mut(done.target) {
                            s.overruns = sched.slots[done.target].overruns;
                        }
                    }
                }
                _ = stop.changed() => break,
            }
        }
        tasks.abort_all();
        tracing::info!("SNMP poller stopped");
    })))
}

/// Polls one target once on a socket of its own, within its deadline (the
/// tests' differential against `snmpbulkwalk`; the collector uses
/// [`spawn`]). `target` must have been validated and loaded.
pub async fn poll_target_once(target: &TargetConfig, with_names: bool) -> Result<PollData, String> {
    let cr = creds(target)?;
    let mut sockets = Sockets { v4: None, v6: None };
    let (host, _) = super::config::split_address(&target.address).unwrap_or_default();
    let sock = sockets.for_host(&host).await?;
    let engines = Arc::new(EngineCache::new());
    let run = async {
        let c = build(target, &cr, &sock, &engines).await?;
        poll_once(&c, target.max_repetitions, with_names, &engines).await
    };
    match tokio::time::timeout(target.deadline(), run).await {
        Ok(r) => r.map_err(|e| redact(e, &cr.secrets)),
        Err(_) => Err(format!(
            "poll deadline of {} ms exceeded",
            target.deadline().as_millis()
        )),
    }
}
