//! The command line: `hostd show|plan|apply|teardown|firewall`, and
//! [`run`], which returns the process exit code.

use std::{io::Write as _, path::PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use hostd_core::plan::PlanError;

use crate::engine::{self, ApplyOptions, Config, DnsBackend, Error};

/// Exit codes (documented in docs/hostd.md).
pub mod exit {
    /// Success; nothing changed (or nothing would change).
    pub const NO_CHANGE: i32 = 0;
    /// Unexpected internal error.
    pub const INTERNAL: i32 = 1;
    /// Command-line usage error (clap's own code).
    pub const USAGE: i32 = 2;
    /// The desired state does not parse or is invalid; nothing was touched.
    pub const INVALID: i32 = 3;
    /// The desired state cannot be applied to this host (missing NIC, a
    /// link hostd may not replace); nothing was touched.
    pub const CONFLICT: i32 = 4;
    /// Applying failed; the host was rolled back and verified unchanged.
    pub const ROLLED_BACK: i32 = 5;
    /// Applying failed and the rollback failed too: the host needs a look.
    pub const ROLLBACK_FAILED: i32 = 6;
    /// The host could not be observed (netlink, permissions) or a file
    /// could not be read.
    pub const HOST: i32 = 7;
    /// The ownership record could not be read or written.
    pub const STORE: i32 = 8;
    /// A `firewall` subcommand failed, or hostd's nftables table could not
    /// be read before `plan`/`apply`/`teardown` (nothing was touched).
    pub const FIREWALL: i32 = 9;
    /// `hostd telemetry`: the eBPF programs or the sFlow agent could not
    /// start, failed, or the pinned counters could not be read.
    pub const TELEMETRY: i32 = 11;
    /// Success; changes were made (apply, teardown) or are pending (plan,
    /// apply --dry-run).
    pub const CHANGED: i32 = 10;
    /// The command needs the daemon, which is not running, or talking to
    /// it failed.
    pub const DAEMON: i32 = 12;
    /// The daemon refused: the caller may not change hostd's state.
    pub const DENIED: i32 = 13;
    /// `confirm`/`rollback`: nothing is pending.
    pub const NOTHING_PENDING: i32 = 14;
    /// The daemon refused in its current state (an apply is pending, or
    /// there is no confirmed state to return to).
    pub const BUSY: i32 = 15;
    /// Another hostd holds the ownership record's lock (an apply in
    /// progress, or the daemon); nothing was touched.
    pub const LOCKED: i32 = 16;
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable text (plans); YAML for `show`.
    Text,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// hostd: declarative host networking over netlink.
#[derive(Debug, Parser)]
#[command(name = "hostd", version, about)]
pub struct Cli {
    /// Output format.
    #[arg(long, short, value_enum, default_value = "text", global = true)]
    pub output: Output,
    /// Ownership record.
    #[arg(long, env = "HOSTD_STATE_FILE", default_value = crate::store::DEFAULT_STATE_FILE, global = true)]
    pub state_file: PathBuf,
    /// resolv.conf written for `dns-resolver` [default: /etc/resolv.conf].
    /// Where systemd-resolved runs, hostd sets DNS through it instead,
    /// unless this is given.
    #[arg(long, env = "HOSTD_RESOLV_CONF", global = true)]
    pub resolv_conf: Option<PathBuf>,
    /// ovsdb-server's socket: read for documents with OVS entries (and by
    /// `show` and `teardown` when it exists).
    #[arg(long, env = "HOSTD_OVSDB_SOCKET", default_value = crate::ovs::DEFAULT_DB_SOCKET, global = true)]
    pub ovsdb_socket: PathBuf,
    /// D-Bus address of the daemon's bus [default: the system bus].
    #[arg(long, env = "HOSTD_BUS_ADDRESS", global = true)]
    pub bus_address: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the host's current network state in the desired-state schema.
    Show,
    /// Print the operations `apply` would run.
    Plan {
        /// Desired state, YAML or JSON.
        file: PathBuf,
    },
    /// Plan, apply, verify; roll back on failure.
    Apply {
        /// Desired state, YAML or JSON.
        file: PathBuf,
        /// Plan and print only.
        #[arg(long)]
        dry_run: bool,
        /// Through the daemon: revert unless `hostd confirm` (or the
        /// probes) confirm within this time (e.g. 120s).
        #[arg(long, value_parser = humantime::parse_duration)]
        confirm_within: Option<std::time::Duration>,
        /// Confirm automatically when this answers (tcp:HOST:PORT,
        /// ping:ADDRESS; repeatable); revert at once when it does not.
        #[arg(long, requires = "confirm_within")]
        probe: Vec<String>,
        /// How long the probes may take [default: 30s].
        #[arg(long, value_parser = humantime::parse_duration)]
        probe_timeout: Option<std::time::Duration>,
    },
    /// Confirm the pending apply (daemon).
    Confirm,
    /// Revert the pending apply now (daemon).
    Rollback,
    /// The daemon's state: the confirmed document, a pending apply and its
    /// deadline, health, the last drift (daemon).
    State,
    /// Run the daemon: reconcile on kernel events, D-Bus API, commit-confirmed applies.
    Daemon(crate::daemon::client::DaemonArgs),
    /// Apply the last confirmed document (never a pending one) and exit.
    Boot(crate::daemon::client::DaemonArgs),
    /// Remove everything hostd created; leave the NICs it managed down and
    /// without addresses.
    Teardown {
        /// Plan and print only.
        #[arg(long)]
        dry_run: bool,
    },
    /// The InstanceArray firewall.
    #[command(subcommand)]
    Firewall(crate::firewall::cli::FirewallCmd),
    /// eBPF counters and the sFlow agent (`telemetry` section).
    #[command(subcommand)]
    Telemetry(crate::telemetry::TelemetryCmd),
    /// LACP and LLDP status with a diagnosis (docs/status.md).
    Status(crate::status::cli::StatusArgs),
    /// Turn an existing configuration (ifupdown, ifcfg, netplan) into a
    /// desired-state document (docs/import.md); YAML, or JSON with `-o json`.
    Import {
        /// The source format.
        #[arg(long, value_enum)]
        from: ImportFormat,
        /// A file or a directory: /etc/network/interfaces,
        /// /etc/sysconfig/network-scripts, / or /etc/netplan or one YAML file.
        path: PathBuf,
        /// Write the document here instead of stdout.
        #[arg(long)]
        output_file: Option<PathBuf>,
    },
}

/// `hostd import --from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// Debian /etc/network/interfaces (ifupdown, ifupdown2).
    Eni,
    /// RHEL ifcfg-* files.
    Ifcfg,
    /// netplan YAML.
    Netplan,
}

/// The file system, read for `hostd import` (the importers do no I/O).
struct FsFiles;

impl hostd_core::import::Files for FsFiles {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn is_dir(&self, path: &str) -> bool {
        std::path::Path::new(path).is_dir()
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, String> {
        let rd = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(|e| e.to_string())?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }
}

/// `hostd import`: reads, converts, validates, prints or writes.
fn import(
    out: Output,
    from: ImportFormat,
    path: &std::path::Path,
    to: Option<&std::path::Path>,
) -> i32 {
    use hostd_core::import;
    if !path.exists() {
        eprintln!(
            "hostd import: {}: no such file or directory",
            path.display()
        );
        return exit::HOST;
    }
    let p = path.to_string_lossy();
    let (name, r) = match from {
        ImportFormat::Eni => ("eni", import::eni::import(&p, &FsFiles)),
        ImportFormat::Ifcfg => ("ifcfg", import::ifcfg::import(&p, &FsFiles)),
        ImportFormat::Netplan => ("netplan", import::netplan::import(&p, &FsFiles)),
    };
    let imported = match r {
        Ok(i) => i,
        Err(e) => {
            eprintln!("hostd import: {e}");
            return exit::INVALID;
        }
    };
    for n in &imported.notes {
        eprintln!("hostd import: note: {n}");
    }
    let text = match out {
        Output::Json => serde_json::to_string_pretty(&imported.state)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        _ => serde_norway::to_string(&imported.state)
            .map(|s| format!("# hostd import --from {name} {}\n{s}", path.display()))
            .map_err(|e| e.to_string()),
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("hostd import: {e}");
            return exit::INTERNAL;
        }
    };
    // What is printed is what `hostd plan` reads: parsed back and validated.
    let back = hostd_core::NetworkState::parse(&text)
        .map_err(|e| e.to_string())
        .and_then(|s| {
            hostd_core::validate::validate(&s)
                .map(|_| s)
                .map_err(|e| e.to_string())
        });
    match back {
        Ok(s) if s == imported.state => {}
        Ok(_) => {
            eprintln!("hostd import: the printed document does not read back the same (a bug)");
            return exit::INTERNAL;
        }
        Err(e) => {
            eprintln!("hostd import: the printed document does not read back (a bug): {e}");
            return exit::INTERNAL;
        }
    }
    let written = match to {
        Some(f) => std::fs::write(f, &text).map_err(|e| format!("{}: {e}", f.display())),
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string()),
    };
    match written {
        Ok(()) => exit::NO_CHANGE,
        Err(e) => {
            eprintln!("hostd import: {e}");
            exit::HOST
        }
    }
}

fn print_plan(out: Output, p: &crate::state_plan::StatePlan) -> Result<(), String> {
    let text = match out {
        Output::Text => p.to_string(),
        Output::Json => serde_json::to_string_pretty(p).map_err(|e| e.to_string())? + "\n",
        Output::Yaml => serde_norway::to_string(p).map_err(|e| e.to_string())?,
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())
}

fn code_of(e: &Error) -> i32 {
    match e {
        Error::Parse(_) | Error::Plan(PlanError::Invalid(_)) => exit::INVALID,
        Error::Plan(_) | Error::Conflict(_) => exit::CONFLICT,
        Error::Firewall(_) => exit::FIREWALL,
        Error::Read { .. } | Error::Observe(_) | Error::Resolved(_) | Error::Ovs(_) => exit::HOST,
        Error::OvsPlan(hostd_core::ovs::OvsPlanError::Invalid(_)) => exit::INVALID,
        Error::OvsPlan(_) => exit::CONFLICT,
        Error::Store(crate::store::StoreError::Locked { .. }) => exit::LOCKED,
        Error::Store(_) => exit::STORE,
        Error::RolledBack { .. } => exit::ROLLED_BACK,
        Error::RollbackFailed { .. } => exit::ROLLBACK_FAILED,
    }
}

/// Test hooks: only `hostd-fault` (cargo feature `fault-injection`) sets
/// them; the `hostd` binary runs with none.
#[derive(Debug, Default, Clone)]
pub struct Hooks {
    /// A failure injected into `apply`/`teardown`.
    #[cfg(feature = "fault-injection")]
    pub fault: Option<crate::apply::Fault>,
}

/// Runs the command; returns the exit code. Errors go to stderr.
pub fn run(cli: Cli) -> i32 {
    run_with(cli, Hooks::default())
}

/// [`run`] with test hooks.
pub fn run_with(cli: Cli, hooks: Hooks) -> i32 {
    let defaults = Config::default();
    let cfg = Config {
        state_file: cli.state_file.clone(),
        dns_backend: match cli.resolv_conf {
            Some(_) => DnsBackend::File,
            None => DnsBackend::Auto,
        },
        resolv_conf: cli
            .resolv_conf
            .clone()
            .unwrap_or(defaults.resolv_conf.clone()),
        ovs_db_socket: cli.ovsdb_socket.clone(),
        ..defaults
    };
    #[cfg(not(feature = "fault-injection"))]
    let _ = &hooks;
    match &cli.command {
        Command::Daemon(a) => {
            return crate::daemon::client::daemon(cfg, cli.bus_address.as_deref(), a)
        }
        Command::Boot(a) => return crate::daemon::client::boot(cfg, a),
        _ => {}
    }
    if let Some(code) = crate::daemon::client::try_run(&cli) {
        return code;
    }
    let result: Result<i32, Error> = (|| match &cli.command {
        Command::Show => {
            let obs = engine::show(&cfg)?;
            let mut state = obs.to_state();
            // OVS rows, when ovsdb-server runs (docs/ovs.md).
            if let Some(o) = engine::show_ovs(&cfg)? {
                hostd_core::ovs::doc::merge_into_shown(&mut state, &o);
            }
            let text = match cli.output {
                Output::Json => serde_json::to_string_pretty(&state)
                    .map(|s| s + "\n")
                    .map_err(|e| e.to_string()),
                _ => serde_norway::to_string(&state).map_err(|e| e.to_string()),
            };
            match text {
                Ok(t) => {
                    print!("{t}");
                    Ok(exit::NO_CHANGE)
                }
                Err(e) => {
                    eprintln!("hostd: {e}");
                    Ok(exit::INTERNAL)
                }
            }
        }
        Command::Plan { file } => {
            let desired = crate::daemon::client::load_desired(file)?;
            let p = engine::plan_only(&cfg, &desired)?;
            if let Err(e) = print_plan(cli.output, &p) {
                eprintln!("hostd: {e}");
                return Ok(exit::INTERNAL);
            }
            Ok(if p.is_empty() {
                exit::NO_CHANGE
            } else {
                exit::CHANGED
            })
        }
        Command::Apply { file, dry_run, .. } => {
            let desired = crate::daemon::client::load_desired(file)?;
            let mut progress = progress_printer();
            let report = engine::apply(
                &cfg,
                &desired,
                ApplyOptions {
                    dry_run: *dry_run,
                    #[cfg(feature = "fault-injection")]
                    fault: hooks.fault,
                    progress: Some(&mut progress),
                },
            )?;
            finish(cli.output, &report)
        }
        Command::Teardown { dry_run } => {
            let mut progress = progress_printer();
            let report = engine::teardown(
                &cfg,
                ApplyOptions {
                    dry_run: *dry_run,
                    #[cfg(feature = "fault-injection")]
                    fault: hooks.fault,
                    progress: Some(&mut progress),
                },
            )?;
            finish(cli.output, &report)
        }
        Command::Telemetry(cmd) => telemetry(&cfg, cli.output, cmd),
        Command::Status(args) => Ok(crate::status::cli::run(args, cli.output)),
        Command::Import {
            from,
            path,
            output_file,
        } => Ok(import(cli.output, *from, path, output_file.as_deref())),
        // Handled above (daemon) or by the client (which returned).
        Command::Confirm
        | Command::Rollback
        | Command::State
        | Command::Daemon(_)
        | Command::Boot(_) => Ok(exit::DAEMON),
        Command::Firewall(cmd) => {
            let nft = crate::firewall::Nft::default();
            match crate::firewall::cli::run(cmd, &nft, &mut std::io::stdout()) {
                Ok(()) => Ok(exit::NO_CHANGE),
                Err(e) => {
                    eprintln!("hostd firewall: {e}");
                    Ok(exit::FIREWALL)
                }
            }
        }
    })();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hostd: {e}");
            code_of(&e)
        }
    }
}

fn finish(out: Output, report: &engine::Report) -> Result<i32, Error> {
    if let Err(e) = print_plan(out, &report.plan) {
        eprintln!("hostd: {e}");
        return Ok(exit::INTERNAL);
    }
    if report.executed {
        let ovs = match report.plan.ovs_steps() {
            0 => String::new(),
            n => format!(" and {n} OVS step(s)"),
        };
        eprintln!(
            "hostd: applied {} operations{ovs} and verified in {:.3} s ({} verification attempt(s))",
            report.plan.ops.len(),
            report.elapsed.as_secs_f64(),
            report.verify_attempts
        );
    }
    if let Some(a) = &report.firewall {
        eprintln!("hostd: {}", crate::firewall::cli::applied_text(a));
    }
    Ok(if report.plan.is_empty() {
        exit::NO_CHANGE
    } else {
        exit::CHANGED
    })
}

/// Prints progress to stderr on large applies (every 10%).
fn progress_printer() -> impl FnMut(usize, usize) {
    let mut last_decile = 0;
    move |done, total| {
        if total >= 200 {
            let decile = done * 10 / total.max(1);
            if decile > last_decile {
                last_decile = decile;
                eprintln!("hostd: {done}/{total} operations sent");
            }
        }
    }
}

/// `hostd telemetry run|show`.
fn telemetry(
    cfg: &Config,
    out: Output,
    cmd: &crate::telemetry::TelemetryCmd,
) -> Result<i32, Error> {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };

    use crate::telemetry::TelemetryCmd;

    match cmd {
        TelemetryCmd::Run {
            file,
            pin_dir,
            no_pin,
        } => {
            // SIGINT/SIGTERM are blocked here, before any thread exists, and
            // taken by one thread with sigwait(2): it sets the stop flag, the
            // agent returns, and everything is detached.
            let stop = Arc::new(AtomicBool::new(false));
            let mut signals = nix::sys::signal::SigSet::empty();
            signals.add(nix::sys::signal::Signal::SIGINT);
            signals.add(nix::sys::signal::Signal::SIGTERM);
            if let Err(e) = signals.thread_block() {
                eprintln!("hostd telemetry: blocking SIGINT/SIGTERM: {e}");
                return Ok(exit::INTERNAL);
            }
            let flag = stop.clone();
            std::thread::spawn(move || {
                if let Ok(sig) = signals.wait() {
                    tracing::info!(signal = %sig, "stopping");
                    flag.store(true, Ordering::Relaxed);
                }
            });
            let desired = engine::load_desired(file)?;
            hostd_core::validate::validate(&desired).map_err(PlanError::from)?;
            let Some(spec) = &desired.telemetry else {
                eprintln!(
                    "hostd: telemetry: no telemetry section in {} (nothing to run)",
                    file.display()
                );
                return Ok(exit::INVALID);
            };
            let observed = engine::show(cfg)?;
            hostd_core::validate::check_telemetry_interfaces(&desired, &observed)
                .map_err(Error::Conflict)?;
            let pin = (!*no_pin).then_some(pin_dir.as_path());
            let r = crate::telemetry::run(spec, pin, &stop, |s| {
                let ifaces: Vec<String> = s
                    .attached
                    .iter()
                    .map(|(n, i)| format!("{n} (ifindex {i})"))
                    .collect();
                let to: Vec<String> = s.collectors.iter().map(ToString::to_string).collect();
                eprintln!(
                    "hostd telemetry: running: attached ({:?}) to {}; sampling 1 in {}; sFlow to {}",
                    s.mode,
                    ifaces.join(", "),
                    spec.sampling_rate,
                    if to.is_empty() { "nobody".to_owned() } else { to.join(", ") }
                );
            });
            match r {
                Ok(()) => {
                    eprintln!("hostd telemetry: stopped; everything detached");
                    Ok(exit::NO_CHANGE)
                }
                Err(e) => {
                    eprintln!("hostd {e}");
                    Ok(exit::TELEMETRY)
                }
            }
        }
        TelemetryCmd::Show { pin_dir } => match crate::telemetry::show(pin_dir) {
            Ok(c) => {
                let names = crate::telemetry::interface_names();
                let text = match out {
                    Output::Json => crate::telemetry::show_json(&c, &names).to_string() + "\n",
                    Output::Yaml => {
                        serde_norway::to_string(&crate::telemetry::show_json(&c, &names))
                            .unwrap_or_default()
                    }
                    Output::Text => crate::telemetry::show_text(&c, &names),
                };
                print!("{text}");
                Ok(exit::NO_CHANGE)
            }
            Err(e) => {
                eprintln!("hostd {e}");
                Ok(exit::TELEMETRY)
            }
        },
    }
}
