//! The hostd agent's side of the fleet channel (docs/fleet.md): the
//! daemon is the [`fleet::agent::AgentHost`].
//!
//! - desired states from the controller are applied by the daemon's own
//!   commit-confirmed [`Daemon::apply`] (durable pending record, deadline
//!   timer): the agent confirms ([`Daemon::confirm`]) only after the
//!   controller answered over a new connection, so a state that cuts the
//!   agent off is reverted by the daemon's timer, channel or not;
//! - offline, the daemon keeps enforcing its last confirmed document
//!   (reconcile loop); reports wait in the agent's bounded queue;
//! - reports: inventory (NICs, MACs, LLDP neighbours in the intent
//!   compiler's shape) when it changes, status (LACP, LLDP and diagnosis:
//!   [`crate::status`], plus the daemon's own state) periodically and on
//!   LACP/LLDP changes, drift/repair/fight events as they happen, apply
//!   results with the plan (by the agent loop).
//!
//! Started by `hostd daemon --controller ADDR ...` ([`FleetArgs`]).

use std::{path::PathBuf, sync::Arc, time::Duration};

use clap::Args;
use fleet::{
    agent::{Agent, AgentConfig, AgentHost, BoxFuture, Reporter},
    proto::{Desired, ReportKind},
};
use hostd_core::status::{HostStatus, IdSubtype};
use serde_json::{json, Value};

use crate::daemon::{Daemon, Note};

/// `hostd daemon` options for the channel.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// A controller (`host:port`), in order of preference; repeat for the
    /// failover list. None: no channel.
    #[arg(long = "controller")]
    pub controllers: Vec<String>,
    /// This agent's id (default: the hostname's first label).
    #[arg(long)]
    pub agent_id: Option<String>,
    /// Where the agent's key (0600, generated here, never sent),
    /// certificate and trust bundle live.
    #[arg(long, default_value = "/var/lib/hostd/fleet")]
    pub fleet_state_dir: PathBuf,
    /// The controller's CA for the first start.
    #[arg(long)]
    pub trust_bundle: Option<PathBuf>,
    /// A file holding the one-time bootstrap token (read at enrolment).
    #[arg(long)]
    pub bootstrap_token_file: Option<PathBuf>,
    /// The name in the controllers' certificates.
    #[arg(long, default_value = fleet::DEFAULT_SERVER_NAME)]
    pub controller_name: String,
    /// Status report period.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub status_every: Duration,
    /// lldpd's control socket (default: lldpcli's): the daemon's
    /// `--lldpd-socket`, filled in by the daemon.
    #[arg(skip)]
    pub lldpd_socket: Option<PathBuf>,
    /// Fail back to the first controller after it answered this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub failback_after: Duration,
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The daemon as the agent's host.
pub struct DaemonHost {
    daemon: Daemon,
    status_every: Duration,
    lldpd_socket: Option<PathBuf>,
}

impl DaemonHost {
    /// Over a daemon.
    pub fn new(daemon: Daemon, args: &FleetArgs) -> Self {
        Self {
            daemon,
            status_every: args.status_every,
            lldpd_socket: args.lldpd_socket.clone(),
        }
    }
}

/// The inventory in `hostd_core::intent::Nic`'s shape: NICs with their
/// MACs (observed) and LLDP neighbours.
pub fn inventory(status: &HostStatus, macs: &std::collections::BTreeMap<String, String>) -> Value {
    let nics: Vec<Value> = status
        .nics
        .iter()
        .filter_map(|n| {
            let mac = macs.get(&n.name)?;
            let lldp = n.lldp.first().map(|l| {
                let port = if l.port_id.subtype == IdSubtype::Mac {
                    l.port_description
                        .clone()
                        .unwrap_or_else(|| l.port_id.value.clone())
                } else {
                    l.port_id.value.clone()
                };
                json!({
                    "system-name": l.system_name,
                    "chassis-id": l.chassis_id.value,
                    "port": port,
                })
            });
            let mut v = json!({ "name": n.name, "mac": mac });
            if let Some(l) = lldp {
                v["lldp"] = l;
            }
            Some(v)
        })
        .collect();
    json!({ "nics": nics })
}

fn read_status(
    lldpd_socket: Option<PathBuf>,
) -> Result<(HostStatus, std::collections::BTreeMap<String, String>), String> {
    let mut opts = crate::status::Options::default();
    if let Some(s) = lldpd_socket {
        opts.lldpcli = crate::status::lldpd::Lldpcli::with_socket(s);
    }
    let status = crate::status::read(&opts).map_err(|e| e.to_string())?;
    let obs = crate::engine::show(&crate::engine::Config::default()).map_err(|e| e.to_string())?;
    let macs = obs
        .links
        .iter()
        .filter_map(|l| l.mac.as_ref().map(|m| (l.name.to_string(), m.to_string())))
        .collect();
    Ok((status, macs))
}

impl AgentHost for DaemonHost {
    fn apply(&self, d: &Desired) -> BoxFuture<'_, Result<Value, String>> {
        let d = d.clone();
        Box::pin(async move {
            self.daemon
                .apply(&d.document, d.confirm_within_s, Vec::new(), None)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn confirm(&self, _generation: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.daemon
                .confirm()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn rollback(&self, _generation: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.daemon
                .rollback()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn start(&self, reporter: Reporter) {
        // Drift, repairs, fights: as they happen. LACP/LLDP changes
        // trigger a status report.
        let (kick_tx, mut kick_rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut notes = self.daemon.subscribe();
        let r = reporter.clone();
        tokio::spawn(async move {
            loop {
                match notes.recv().await {
                    Ok(Note::Drift { id, details }) => {
                        r.push(
                            ReportKind::Drift,
                            json!({ "event": "drift", "id": id, "details": details }).to_string(),
                        );
                    }
                    Ok(Note::Repaired { id, details }) => {
                        r.push(
                            ReportKind::Drift,
                            json!({ "event": "repaired", "id": id, "details": details })
                                .to_string(),
                        );
                    }
                    Ok(Note::Fight { id, details }) => {
                        r.push(
                            ReportKind::Drift,
                            json!({ "event": "fight", "id": id, "details": details }).to_string(),
                        );
                    }
                    Ok(Note::Lacp(_) | Note::Lldp(_)) => {
                        let _ = kick_tx.try_send(());
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        r.push(
                            ReportKind::Drift,
                            json!({ "event": "notes-lost", "count": n }).to_string(),
                        );
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        // Status and inventory: periodically and when kicked.
        let every = self.status_every;
        let sock = self.lldpd_socket.clone();
        let daemon = self.daemon.clone();
        tokio::spawn(async move {
            let mut last_inventory = Value::Null;
            let mut t = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = t.tick() => {}
                    Some(()) = kick_rx.recv() => {}
                }
                let s = sock.clone();
                match tokio::task::spawn_blocking(move || read_status(s)).await {
                    Ok(Ok((status, macs))) => {
                        let inv = inventory(&status, &macs);
                        if inv != last_inventory {
                            reporter.push(ReportKind::Inventory, inv.to_string());
                            last_inventory = inv;
                        }
                        reporter.push(
                            ReportKind::Status,
                            json!({ "status": status, "daemon": daemon.daemon_status() })
                                .to_string(),
                        );
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "fleet: reading status"),
                    Err(e) => tracing::error!(error = %e, "fleet: status task"),
                }
            }
        });
    }
}

/// Starts the agent beside `daemon` when controllers are given.
pub fn spawn(daemon: &Daemon, args: &FleetArgs) -> Result<(), String> {
    if args.controllers.is_empty() {
        return Ok(());
    }
    let id = args.agent_id.clone().unwrap_or_else(hostname);
    let mut c = AgentConfig::new(&id, args.controllers.clone());
    c.state_dir = Some(args.fleet_state_dir.clone());
    c.server_name = args.controller_name.clone();
    c.failover.failback_after = args.failback_after;
    if let Some(p) = &args.trust_bundle {
        c.bootstrap_bundle = Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("--trust-bundle {}: {e}", p.display()))?,
        );
    }
    if let Some(p) = &args.bootstrap_token_file {
        c.bootstrap_token = Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("--bootstrap-token-file {}: {e}", p.display()))?
                .trim()
                .to_owned(),
        );
    }
    let host = Arc::new(DaemonHost::new(daemon.clone(), args));
    let agent = Agent::new(c, host).map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = agent.run(std::future::pending()).await {
            tracing::error!(error = %e, "fleet agent stopped");
        }
    });
    Ok(())
}
