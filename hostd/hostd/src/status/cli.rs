//! `hostd status`: LACP and LLDP status with a diagnosis.

use std::{io::Write as _, path::PathBuf};

use clap::Args;
use hostd_core::status::{diagnose, render, Intent};

use super::{lldpd::Lldpcli, Options, Reader};
use crate::cli::{exit, Output};

/// `hostd status` options.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The intended cabling, YAML or JSON: `nics: {eth0: {switch: sw1,
    /// port: Ethernet1}, ...}`. Without it only what the status itself
    /// shows is diagnosed.
    #[arg(long)]
    pub intent: Option<PathBuf>,
    /// lldpd's control socket [default: lldpcli's, /run/lldpd.socket].
    #[arg(long, env = "HOSTD_LLDPD_SOCKET")]
    pub lldpd_socket: Option<PathBuf>,
    /// Do not ask lldpd (bonds and NICs only).
    #[arg(long)]
    pub no_lldp: bool,
    /// Report only these NICs (repeatable).
    #[arg(long = "nic")]
    pub nics: Vec<String>,
    /// Print how long the read took (stderr).
    #[arg(long)]
    pub timing: bool,
    /// Where ovs-vswitchd keeps its pid file and control socket; its bonds
    /// are reported when it runs there.
    #[arg(long, env = "OVS_RUNDIR", default_value = "/run/openvswitch")]
    pub ovs_rundir: PathBuf,
    /// ovs-vswitchd's control socket, when not the one in `--ovs-rundir`
    /// (`ovs-vswitchd.PID.ctl`).
    #[arg(long)]
    pub ovs_ctl: Option<PathBuf>,
    /// Do not ask ovs-vswitchd (kernel bonds and NICs only).
    #[arg(long)]
    pub no_ovs: bool,
}

/// The Open vSwitch bonds, from the control socket `ctl`, or when
/// ovs-vswitchd runs in `rundir`: `Ok(None)` when it does not (no pid
/// file), an error when it runs but does not answer. Blocking (it runs its
/// own small runtime).
pub fn read_ovs_bonds(
    ctl: Option<&std::path::Path>,
    rundir: &std::path::Path,
) -> Result<Option<Vec<hostd_core::ovs::status::OvsBondStatus>>, String> {
    let ctl = match ctl {
        Some(c) => c.to_owned(),
        None if !rundir.join("ovs-vswitchd.pid").exists() => return Ok(None),
        None => hostd_ovsdb::unixctl::vswitchd_socket(rundir).map_err(|e| e.to_string())?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(crate::ovs::status::bond_status(&ctl, None))
        .map(Some)
        .map_err(|e| e.to_string())
}

fn load_intent(path: &PathBuf) -> Result<Intent, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Intent::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `hostd status`; returns the exit code (0 read, 3 bad intent file,
/// 7 the host could not be read).
pub fn run(args: &StatusArgs, output: Output) -> i32 {
    let intent = match args.intent.as_ref().map(load_intent).transpose() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("hostd status: intent: {e}");
            return exit::INVALID;
        }
    };
    let opts = Options {
        lldp: !args.no_lldp,
        lldpcli: Lldpcli {
            socket: args.lldpd_socket.clone(),
            ..Lldpcli::default()
        },
        procfs_dir: None,
        nics: (!args.nics.is_empty()).then(|| args.nics.iter().cloned().collect()),
    };
    let mut reader = match Reader::open(opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hostd status: {e}");
            return exit::HOST;
        }
    };
    let mut status = match reader.read() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hostd status: {e}");
            return exit::HOST;
        }
    };
    if !args.no_ovs {
        match read_ovs_bonds(args.ovs_ctl.as_deref(), &args.ovs_rundir) {
            Ok(Some(b)) => status.ovs_bonds = b,
            Ok(None) => {}
            Err(e) => status
                .notes
                .push(format!("Open vSwitch bonds not read: {e}")),
        }
    }
    status.sort();
    if args.timing {
        let t = reader.last;
        eprintln!(
            "hostd status: read in {:.2} ms (netlink {:.2} ms, procfs {:.2} ms, lldpcli {:.2} ms)",
            t.total().as_secs_f64() * 1e3,
            t.netlink.as_secs_f64() * 1e3,
            t.procfs.as_secs_f64() * 1e3,
            t.lldp.as_secs_f64() * 1e3
        );
    }
    let findings = diagnose(&status, intent.as_ref());
    let report = render::Report { status, findings };
    let text = match output {
        Output::Text => Ok(render::text(&report.status, &report.findings)),
        Output::Yaml => serde_norway::to_string(&report).map_err(|e| e.to_string()),
        Output::Json => serde_json::to_string_pretty(&report)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
    };
    match text {
        Ok(t) => {
            if let Err(e) = std::io::stdout().write_all(t.as_bytes()) {
                eprintln!("hostd status: {e}");
                return exit::INTERNAL;
            }
            exit::NO_CHANGE
        }
        Err(e) => {
            eprintln!("hostd status: {e}");
            exit::INTERNAL
        }
    }
}
