//! The command line's side of the daemon: `hostd daemon` and `hostd boot`,
//! and `hostd plan|apply|show|status|confirm|rollback` as a D-Bus client
//! when `org.hostnet.Hostd1` has an owner on the bus (the system bus, or
//! `--bus-address` / `HOSTD_BUS_ADDRESS`). Without a daemon, plan, show and
//! apply (without `--confirm-within`) run directly as before; confirm,
//! rollback and status need the daemon.

use std::{io::Write as _, path::PathBuf, time::Duration};

use serde_json::Value;
use zbus::Connection;

use super::{dbus, Bus, DaemonConfig};
use crate::cli::{exit, Cli, Command, Output};

/// `hostd daemon` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Where the confirmed and pending documents are kept.
    #[arg(long, env = "HOSTD_STATE_DIR", default_value = super::store::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Members of this group may apply, confirm and roll back over D-Bus
    /// (root always may).
    #[arg(long)]
    pub admin_group: Option<String>,
    /// Boot: never resume a pending apply; apply the last confirmed document.
    #[arg(long)]
    pub boot: bool,
    /// Do not serve D-Bus (reconcile only; benchmarks).
    #[arg(long)]
    pub no_dbus: bool,
    /// Coalescing: quiet time after the last event.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub quiet: Duration,
    /// Coalescing: longest delay after the first event.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub max_delay: Duration,
    /// Back-off after the second repair (doubles up to --backoff-max).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub backoff_initial: Duration,
    /// Longest back-off between repairs.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub backoff_max: Duration,
    /// This many repairs within --fight-window is a fight with another manager.
    #[arg(long, default_value_t = 5)]
    pub fight_threshold: usize,
    /// See --fight-threshold.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub fight_window: Duration,
    /// Reconcile this often without events ("0s": never).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub resync: Duration,
    /// Where the supervised telemetry agent pins its maps.
    #[arg(long, default_value = hostd_telemetry::DEFAULT_PIN_DIR)]
    pub telemetry_pin_dir: PathBuf,
    /// Do not pin the telemetry maps.
    #[arg(long)]
    pub telemetry_no_pin: bool,
    /// lldpd's control socket [default: lldpcli's, /run/lldpd.socket].
    #[arg(long, env = "HOSTD_LLDPD_SOCKET")]
    pub lldpd_socket: Option<PathBuf>,
    /// Neither read LLDP neighbours from lldpd nor configure it.
    #[arg(long)]
    pub no_lldp: bool,
    /// Read LLDP neighbours, but do not configure what lldpd announces.
    #[arg(long)]
    pub no_lldp_announce: bool,
    /// The system name lldpd announces [default: the host name].
    #[arg(long)]
    pub lldp_system_name: Option<String>,
    /// The intended cabling (YAML/JSON, `nics: {eth0: {switch: S, port:
    /// P}}`, as `hostd status --intent`), for documents without
    /// `daemon.cabling`.
    #[arg(long)]
    pub cabling: Option<PathBuf>,
    /// Status: quiet time after the last link event before reading.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub status_quiet: Duration,
    /// Status: longest delay after the first link event.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    pub status_max_delay: Duration,
    /// Status: poll the bonds this often ("0s": never; every second for a
    /// while after any change, whatever this says).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub status_poll: Duration,
    /// Status: where ovs-vswitchd keeps its pid file and control socket;
    /// its bonds are reported (and announced) while it runs there.
    #[arg(long, env = "OVS_RUNDIR", default_value = "/run/openvswitch")]
    pub ovs_rundir: PathBuf,
    /// Status: ovs-vswitchd's control socket, when not the one in
    /// `--ovs-rundir`.
    #[arg(long)]
    pub ovs_ctl: Option<PathBuf>,
    /// Status: do not ask ovs-vswitchd (kernel bonds and NICs only).
    #[arg(long)]
    pub no_ovs_status: bool,
    /// The fleet channel (docs/fleet.md).
    #[command(flatten)]
    pub fleet: crate::fleet::FleetArgs,
}

impl DaemonArgs {
    fn status(&self) -> Result<super::status::StatusConfig, String> {
        let cabling = match &self.cabling {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("--cabling {}: {e}", p.display()))?;
                Some(
                    hostd_core::status::Intent::parse(&text)
                        .map_err(|e| format!("--cabling {}: {e}", p.display()))?,
                )
            }
            None => None,
        };
        Ok(super::status::StatusConfig {
            lldp: !self.no_lldp,
            announce: !self.no_lldp && !self.no_lldp_announce,
            lldpcli: crate::status::lldpd::Lldpcli {
                socket: self.lldpd_socket.clone(),
                ..crate::status::lldpd::Lldpcli::default()
            },
            system_name: self.lldp_system_name.clone(),
            cabling,
            quiet: self.status_quiet,
            max_delay: self.status_max_delay,
            poll: (!self.status_poll.is_zero()).then_some(self.status_poll),
            ovs: (!self.no_ovs_status).then(|| super::status::OvsStatus {
                rundir: self.ovs_rundir.clone(),
                ctl: self.ovs_ctl.clone(),
            }),
        })
    }

    fn config(
        &self,
        engine: crate::engine::Config,
        bus: Option<&str>,
    ) -> Result<DaemonConfig, String> {
        Ok(DaemonConfig {
            engine,
            state_dir: self.state_dir.clone(),
            bus: match (self.no_dbus, bus) {
                (true, _) => Bus::Disabled,
                (false, Some(a)) => Bus::Address(a.to_owned()),
                (false, None) => Bus::System,
            },
            admin_group: self.admin_group.clone(),
            boot: self.boot,
            quiet: self.quiet,
            max_delay: self.max_delay,
            limits: super::coalesce::RepairLimits {
                initial: self.backoff_initial,
                max: self.backoff_max,
                fight_threshold: self.fight_threshold.max(1),
                window: self.fight_window,
            },
            resync: (!self.resync.is_zero()).then_some(self.resync),
            telemetry_pin_dir: (!self.telemetry_no_pin).then(|| self.telemetry_pin_dir.clone()),
            status: self.status()?,
        })
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM"),
                _ = i.recv() => tracing::info!("SIGINT"),
            }
        }
        _ => {
            tracing::error!("cannot handle SIGTERM/SIGINT; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// `hostd daemon`.
pub fn daemon(engine: crate::engine::Config, bus: Option<&str>, args: &DaemonArgs) -> i32 {
    let cfg = match args.config(engine, bus) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hostd daemon: {e}");
            return exit::INVALID;
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hostd daemon: {e}");
            return exit::INTERNAL;
        }
    };
    // One --lldpd-socket for the daemon's status and the fleet agent.
    let mut fleet = args.fleet.clone();
    fleet.lldpd_socket = args.lldpd_socket.clone();
    let fleet = &fleet;
    match rt.block_on(async move {
        let daemon = super::Daemon::new(cfg)?;
        crate::fleet::spawn(&daemon, fleet).map_err(super::DaemonError::Invalid)?;
        super::run_daemon(daemon, shutdown_signal()).await
    }) {
        Ok(()) => exit::NO_CHANGE,
        Err(e) => {
            eprintln!("hostd daemon: {e}");
            code_of(&e)
        }
    }
}

/// `hostd boot`: apply the last confirmed document (never a pending one).
pub fn boot(engine: crate::engine::Config, args: &DaemonArgs) -> i32 {
    let cfg = match args.config(engine, None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hostd boot: {e}");
            return exit::INVALID;
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hostd boot: {e}");
            return exit::INTERNAL;
        }
    };
    match rt.block_on(super::boot(cfg)) {
        Ok(Some(id)) => {
            eprintln!(
                "hostd boot: applied confirmed document {}",
                super::doc::short(&id)
            );
            exit::NO_CHANGE
        }
        Ok(None) => {
            eprintln!("hostd boot: no confirmed document");
            exit::NO_CHANGE
        }
        Err(e) => {
            eprintln!("hostd boot: {e}");
            code_of(&e)
        }
    }
}

fn code_of(e: &super::DaemonError) -> i32 {
    use super::DaemonError as E;
    match e {
        E::Invalid(_) => exit::INVALID,
        E::Conflict(_) => exit::CONFLICT,
        E::RolledBack(_) => exit::ROLLED_BACK,
        E::RollbackFailed(_) => exit::ROLLBACK_FAILED,
        E::Host(_) => exit::HOST,
        E::Store(_) => exit::STORE,
        E::Firewall(_) => exit::FIREWALL,
        E::NoPending(_) => exit::NOTHING_PENDING,
        E::Busy(_) => exit::BUSY,
        E::Denied(_) => exit::DENIED,
        E::Internal(_) => exit::INTERNAL,
    }
}

/// Exit code for a D-Bus error name.
fn code_of_name(name: &str) -> i32 {
    match name.rsplit('.').next().unwrap_or("") {
        "Invalid" | "InvalidArgs" => exit::INVALID,
        "Conflict" => exit::CONFLICT,
        "RolledBack" => exit::ROLLED_BACK,
        "RollbackFailed" => exit::ROLLBACK_FAILED,
        "Host" => exit::HOST,
        "Store" => exit::STORE,
        "Firewall" => exit::FIREWALL,
        "NoPending" => exit::NOTHING_PENDING,
        "Busy" => exit::BUSY,
        "AccessDenied" => exit::DENIED,
        _ => exit::DAEMON,
    }
}

/// Reads a document file for the direct path: the `daemon:` section, which
/// only the daemon uses, is removed.
pub fn load_desired(
    path: &std::path::Path,
) -> Result<hostd_core::NetworkState, crate::engine::Error> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::engine::Error::Read {
        path: path.to_owned(),
        source,
    })?;
    match super::doc::Document::parse(&text) {
        Ok(d) => Ok(d.state),
        Err(super::doc::DocError::Schema(e)) => Err(e.into()),
        // Let the engine report syntax errors the way it always has.
        Err(super::doc::DocError::Syntax(_)) => Ok(hostd_core::NetworkState::parse(&text)?),
    }
}

/// Connects when the daemon runs: `None` when the bus cannot be reached or
/// nobody owns the name.
async fn connect(address: Option<&str>) -> Option<Connection> {
    let conn = match address {
        Some(a) => zbus::connection::Builder::address(a)
            .ok()?
            .build()
            .await
            .ok()?,
        None => Connection::system().await.ok()?,
    };
    let dbus = zbus::fdo::DBusProxy::new(&conn).await.ok()?;
    let name = zbus::names::BusName::try_from(dbus::NAME).ok()?;
    dbus.name_has_owner(name).await.ok()?.then_some(conn)
}

async fn call<B>(conn: &Connection, method: &str, body: &B) -> Result<Value, (i32, String)>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let proxy = zbus::Proxy::new(conn, dbus::NAME, dbus::PATH, dbus::INTERFACE)
        .await
        .map_err(|e| (exit::DAEMON, e.to_string()))?;
    let reply: Result<String, zbus::Error> = proxy.call(method, body).await;
    match reply {
        Ok(s) => serde_json::from_str(&s).map_err(|e| (exit::DAEMON, format!("bad reply: {e}"))),
        Err(zbus::Error::MethodError(name, desc, _)) => Err((
            code_of_name(name.as_str()),
            desc.unwrap_or_else(|| name.to_string()),
        )),
        Err(e) => Err((exit::DAEMON, e.to_string())),
    }
}

fn print(out: Output, v: &Value, text: Option<&str>) {
    let s = match (out, text) {
        (Output::Text, Some(t)) => t.to_owned(),
        (Output::Json, _) => serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
        _ => serde_norway::to_string(v).unwrap_or_default(),
    };
    let _ = std::io::stdout().write_all(s.as_bytes());
}

fn read(file: &std::path::Path) -> Result<String, i32> {
    std::fs::read_to_string(file).map_err(|e| {
        eprintln!("hostd: reading {}: {e}", file.display());
        exit::HOST
    })
}

/// Runs a command through the daemon when it runs. `None`: no daemon, run
/// directly.
pub fn try_run(cli: &Cli) -> Option<i32> {
    let needs_daemon = matches!(
        &cli.command,
        Command::Confirm | Command::Rollback | Command::State
    ) || matches!(
        &cli.command,
        Command::Apply {
            confirm_within: Some(_),
            ..
        }
    ) || matches!(&cli.command, Command::Apply { probe, .. } if !probe.is_empty());
    let wants = needs_daemon
        || matches!(
            &cli.command,
            Command::Show | Command::Plan { .. } | Command::Apply { .. }
        );
    if !wants {
        return None;
    }
    let rt = runtime().ok()?;
    rt.block_on(async {
        let Some(conn) = connect(cli.bus_address.as_deref()).await else {
            if needs_daemon {
                eprintln!(
                    "hostd: this needs the daemon ({} on {}), which is not running",
                    dbus::NAME,
                    cli.bus_address.as_deref().unwrap_or("the system bus")
                );
                return Some(exit::DAEMON);
            }
            return None;
        };
        Some(match through(&conn, cli).await {
            Ok(code) => code,
            Err((code, msg)) => {
                eprintln!("hostd: {msg}");
                code
            }
        })
    })
}

async fn through(conn: &Connection, cli: &Cli) -> Result<i32, (i32, String)> {
    let out = cli.output;
    match &cli.command {
        Command::Show => {
            let v = call(conn, "Show", &()).await?;
            print(out, &v, None);
            Ok(exit::NO_CHANGE)
        }
        Command::State => {
            let v = call(conn, "Status", &()).await?;
            print(out, &v, None);
            Ok(exit::NO_CHANGE)
        }
        Command::Plan { file }
        | Command::Apply {
            file,
            dry_run: true,
            ..
        } => {
            let doc = read(file).map_err(|c| (c, String::new()))?;
            let v = call(conn, "Plan", &(doc.as_str(),)).await?;
            print(out, &v["plan"], v["text"].as_str());
            Ok(if v["empty"] == true {
                exit::NO_CHANGE
            } else {
                exit::CHANGED
            })
        }
        Command::Apply {
            file,
            confirm_within,
            probe,
            probe_timeout,
            ..
        } => {
            let doc = read(file).map_err(|c| (c, String::new()))?;
            let secs = confirm_within
                .map(|d| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX))
                .unwrap_or(0);
            let v = if probe.is_empty() {
                call(conn, "Apply", &(doc.as_str(), secs)).await?
            } else {
                let limit =
                    probe_timeout.map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
                call(
                    conn,
                    "ApplyWithProbes",
                    &(doc.as_str(), secs, probe.clone(), limit),
                )
                .await?
            };
            print(out, &v["plan"], v["text"].as_str());
            let ops = v["operations"].as_u64().unwrap_or(0);
            if v["executed"] == true {
                eprintln!(
                    "hostd: applied {ops} operations through the daemon in {:.3} s",
                    v["elapsed_s"].as_f64().unwrap_or(0.0)
                );
            }
            if secs > 0 {
                eprintln!(
                    "hostd: document {} pending: run `hostd confirm` within {secs} s or it is reverted",
                    super::doc::short(v["id"].as_str().unwrap_or(""))
                );
            }
            Ok(if ops == 0 {
                exit::NO_CHANGE
            } else {
                exit::CHANGED
            })
        }
        Command::Confirm => {
            let v = call(conn, "Confirm", &()).await?;
            eprintln!(
                "hostd: confirmed {}",
                super::doc::short(v["id"].as_str().unwrap_or(""))
            );
            Ok(exit::NO_CHANGE)
        }
        Command::Rollback => {
            let v = call(conn, "Rollback", &()).await?;
            print(out, &v, v["text"].as_str());
            eprintln!(
                "hostd: reverted to {}",
                super::doc::short(v["id"].as_str().unwrap_or(""))
            );
            Ok(exit::CHANGED)
        }
        _ => Err((exit::INTERNAL, "not a daemon command".into())),
    }
}
