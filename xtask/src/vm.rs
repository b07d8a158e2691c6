//! The VM runner: boots Debian's kernel with virtme-ng under TCG emulation
//! (KVM does not work on these machines) with the host filesystem shared
//! read-only, runs one command in it, and returns its exit status.
//!
//! Privileged lab test binaries (`kernel_*`) and the demo go through
//! [`runner`]: natively when this kernel has every feature the binary needs
//! (see `needs`: the whole lab's for most), otherwise in the VM. A hung VM is
//! killed by `timeout` and fails the run with exit status 124.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};
use lab::kernel::{self, Feature};

/// Environment variables passed into the guest (vng does not pass the
/// host environment).
const PASS_PREFIXES: &[&str] = &[
    "RUST_",
    "LAB_",
    "HOSTD_",
    "COLLECTOR_",
    "CARGO_",
    "TELEMETRY_",
];

/// How the VM is started.
#[derive(Debug, Clone)]
pub struct VmOptions {
    pub vng: PathBuf,
    pub kernel: PathBuf,
    pub memory: String,
    pub cpus: u32,
    pub timeout_secs: u64,
    pub rwdirs: Vec<PathBuf>,
}

impl VmOptions {
    /// Defaults, overridable by `LAB_VM_KERNEL`, `LAB_VM_MEMORY`,
    /// `LAB_VM_CPUS`, `LAB_VM_TIMEOUT` (seconds), `LAB_VNG`.
    pub fn from_env() -> anyhow::Result<Self> {
        let vng = match std::env::var_os("LAB_VNG") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from("/opt/hostnet/venv/bin/vng"),
        };
        if !vng.exists() {
            bail!(
                "virtme-ng not found at {} (run scripts/setup.sh)",
                vng.display()
            );
        }
        let kernel = match std::env::var_os("LAB_VM_KERNEL") {
            Some(k) => PathBuf::from(k),
            None => newest_debian_kernel()?,
        };
        let num = |k: &str, d: u64| -> anyhow::Result<u64> {
            std::env::var(k).map_or(Ok(d), |v| {
                v.parse()
                    .with_context(|| format!("{k}={v:?} is not a number"))
            })
        };
        let mut rwdirs = Vec::new();
        if let Ok(t) = std::env::var("LAB_VM_RWDIR") {
            rwdirs.push(PathBuf::from(t));
        }
        Ok(Self {
            vng,
            kernel,
            memory: std::env::var("LAB_VM_MEMORY").unwrap_or_else(|_| "4G".into()),
            cpus: u32::try_from(num("LAB_VM_CPUS", 2)?)?,
            timeout_secs: num("LAB_VM_TIMEOUT", 2400)?,
            rwdirs,
        })
    }
}

/// The newest `/boot/vmlinuz-*` whose modules are installed (vng loads
/// modules from /lib/modules/VERSION).
fn newest_debian_kernel() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(Vec<u64>, PathBuf)> = Vec::new();
    for e in std::fs::read_dir("/boot")
        .context("reading /boot")?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(version) = name.strip_prefix("vmlinuz-") else {
            continue;
        };
        if !Path::new("/lib/modules")
            .join(version)
            .join("modules.dep")
            .exists()
        {
            continue;
        }
        let key = version
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        found.push((key, e.path()));
    }
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .context("no kernel in /boot with modules in /lib/modules: install linux-image-amd64 (scripts/setup.sh)")
}

/// Runs `cmd` in the VM; returns its exit status (124: the VM timed out).
pub fn run_in_vm(cmd: &[String], opts: &VmOptions) -> anyhow::Result<i32> {
    let mut env: Vec<String> = std::env::vars()
        .filter(|(k, _)| PASS_PREFIXES.iter().any(|p| k.starts_with(p)))
        .filter(|(k, _)| !k.ends_with("_RUNNER"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.push("LAB_IN_VM=1".into());
    if std::env::var_os("LAB_TIME_SCALE").is_none() {
        // TCG emulation runs 10-20x slower than the host.
        env.push("LAB_TIME_SCALE=15".into());
    }
    env.push(format!(
        "PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        opts.vng
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    ));

    let mut c = Command::new("timeout");
    c.args(["--kill-after=20", &opts.timeout_secs.to_string()]);
    c.arg(&opts.vng);
    c.arg("--run").arg(&opts.kernel);
    c.args([
        "--disable-kvm",
        "--force-9p",
        "--memory",
        &opts.memory,
        "--cpus",
        &opts.cpus.to_string(),
    ]);
    for d in &opts.rwdirs {
        c.arg(format!("--rwdir={}", d.display()));
    }
    c.arg("--").arg("env").args(&env).args(cmd);
    // vng needs its venv on PATH (it runs virtme-run); stdin must not be closed.
    let path = std::env::var("PATH").unwrap_or_default();
    c.env(
        "PATH",
        format!(
            "{}:{path}",
            opts.vng
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    );
    c.stdin(Stdio::null());
    eprintln!(
        "vm: booting {} (TCG, {} CPUs, {}) for: {}",
        opts.kernel.display(),
        opts.cpus,
        opts.memory,
        cmd.join(" ")
    );
    let status = c.status().context("starting timeout/vng")?;
    let code = status.code().unwrap_or(255);
    if code == 124 || code == 137 {
        eprintln!(
            "vm: TIMED OUT after {} s and was killed (LAB_VM_TIMEOUT)",
            opts.timeout_secs
        );
        return Ok(124);
    }
    Ok(code)
}

/// The kernel features a privileged binary needs: it runs natively when the
/// running kernel has all of them, in the VM otherwise. Binaries not listed
/// need everything the lab can build.
fn needs(name: &str) -> &'static [Feature] {
    match name {
        // Network namespaces, veth and nf_tables only: the firewall lab has
        // no bonds, VLANs or bridges.
        "kernel_firewall" => &[Feature::Veth, Feature::Nftables],
        _ => Feature::ALL_NETWORKING,
    }
}

fn is_privileged(bin: &Path) -> bool {
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.starts_with("kernel_") || name.starts_with("bench-") || name == "lab-demo"
}

fn short_name(bin: &Path) -> String {
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Test binaries are `name-<16 hex>`.
    match name.rsplit_once('-') {
        Some((base, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            base.to_owned()
        }
        _ => name,
    }
}

fn run_native(bin: &Path, args: &[String]) -> anyhow::Result<i32> {
    let status = Command::new(bin)
        .args(args)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    Ok(status.code().unwrap_or(255))
}

/// Cargo target runner. Non-privileged binaries run as they are. Privileged
/// ones (`kernel_*`, `lab-demo`) run natively when `LAB_KERNEL=host` or when
/// this kernel has every lab feature (`auto`, the default), else in the VM
/// (`LAB_KERNEL=vm` forces it). Binaries named in `LAB_ALSO_NATIVE` run
/// natively first and then in the VM (to cover both TCX and clsact).
pub fn runner(bin: &Path, args: &[String]) -> anyhow::Result<i32> {
    let name = short_name(bin);
    if let Ok(only) = std::env::var("LAB_ONLY") {
        if !only.split(',').any(|o| name.contains(o)) {
            eprintln!("runner: {name} not selected by LAB_ONLY={only}; not run");
            return Ok(0);
        }
    }
    if !is_privileged(bin) {
        return run_native(bin, args);
    }
    let mode = std::env::var("LAB_KERNEL").unwrap_or_else(|_| "auto".into());
    let in_vm = match mode.as_str() {
        "host" => false,
        "vm" => true,
        "auto" => {
            let missing = kernel::missing(needs(&name));
            if missing.is_empty() {
                eprintln!(
                    "runner: kernel {} has every feature {name} needs: running it natively",
                    kernel::release()
                );
                false
            } else {
                let names: Vec<String> = missing.iter().map(|(f, _)| f.to_string()).collect();
                eprintln!(
                    "runner: kernel {} lacks {}: running {name} in a VM",
                    kernel::release(),
                    names.join(", ")
                );
                true
            }
        }
        other => bail!("LAB_KERNEL={other:?}: expected auto, host or vm"),
    };
    if !in_vm {
        return run_native(bin, args);
    }
    let also_native = std::env::var("LAB_ALSO_NATIVE").unwrap_or_default();
    if also_native.split(',').any(|n| !n.is_empty() && n == name) {
        eprintln!(
            "runner: {name}: first natively on kernel {}",
            kernel::release()
        );
        let code = run_native(bin, args)?;
        if code != 0 {
            return Ok(code);
        }
    }
    let opts = VmOptions::from_env()?;
    let mut cmd = vec![bin.display().to_string()];
    cmd.extend(args.iter().cloned());
    run_in_vm(&cmd, &opts)
}
