//! The VM runner: boots Debian's kernel with virtme-ng under TCG emulation
//! (KVM does not work on these machines) with the host filesystem shared
//! read-only, runs one command in it, and returns its exit status.
//!
//! Privileged lab test binaries (`kernel_*`) and the demo go through
//! [`runner`]: natively when this kernel has every feature the binary needs
//! (see `needs`: the whole lab's for most), otherwise in the VM. A hung VM is
//! killed by `timeout` and fails the run with exit status 124.
//!
//! The runner owns the VM's output: vng runs in a session of its own with no
//! controlling terminal (`setsid`), its stdout and stderr are pipes, and the
//! runner forwards them line by line to its own stdout and stderr. Left to
//! itself, vng reopens the terminal (or the file) it finds: redirected to a
//! file (`./run.sh demo > log 2>&1`), that truncated the log and left NUL
//! bytes where the set-up and the build had been written.
//!
//! `LAB_ONLY` (`cargo xtask test --only`) makes the runner skip every binary
//! it does not name: each skip is printed loudly and recorded in
//! `LAB_NOT_RUN_FILE` for `cargo xtask test`'s summary, and `CI=true`
//! refuses it.

use std::{
    io::{BufRead as _, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use lab::kernel::{self, Feature};
use nix::{
    sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal},
    unistd::Pid,
};

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

    // A session of its own (setsid): no controlling terminal for vng to
    // reopen, and one process group (the session's) to signal.
    let mut c = Command::new("setsid");
    c.arg("timeout");
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
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "vm: booting {} (TCG, {} CPUs, {}) for: {}",
        opts.kernel.display(),
        opts.cpus,
        opts.memory,
        cmd.join(" ")
    );
    let mut child = c.spawn().context("starting setsid/timeout/vng")?;
    let group = i32::try_from(child.id()).context("pid")?;
    forward_signals_to(group);
    let out = child
        .stdout
        .take()
        .map(|o| thread::spawn(move || forward_lines(o, std::io::stdout())));
    let err = child
        .stderr
        .take()
        .map(|e| thread::spawn(move || forward_lines(e, std::io::stderr())));
    let status = child.wait().context("waiting for timeout/vng");
    // The pipes close when every process of the session has exited; one
    // left behind (a qemu that outlived vng) must not hang the runner.
    let deadline = Instant::now() + Duration::from_secs(10);
    while [&out, &err]
        .iter()
        .any(|t| t.as_ref().is_some_and(|t| !t.is_finished()))
    {
        if Instant::now() > deadline {
            eprintln!("vm: processes of the VM's session still hold its output: killing them");
            let _ = signal::kill(Pid::from_raw(-group), Signal::SIGKILL);
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    for t in [out, err].into_iter().flatten() {
        let _ = t.join();
    }
    VM_GROUP.store(0, Ordering::SeqCst);
    let status = status?;
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("vm: interrupted; the VM was stopped");
        return Ok(130);
    }
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

/// Copies `from` to `to` line by line (bytes, not necessarily UTF-8),
/// flushing each line; a serial console's `\r\n` becomes `\n`. Write errors
/// (our own output closed) stop the copy but not the reading, so the VM is
/// never blocked on a full pipe.
fn forward_lines(from: impl Read, mut to: impl Write) {
    let mut r = BufReader::new(from);
    let mut line = Vec::with_capacity(256);
    let mut writable = true;
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
            line.push(b'\n');
        }
        if writable {
            writable = to.write_all(&line).and_then(|()| to.flush()).is_ok();
        }
    }
}

/// Process group of the running VM (0: none).
static VM_GROUP: AtomicI32 = AtomicI32::new(0);
/// The runner was asked to stop while a VM ran.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn stop_vm(_: nix::libc::c_int) {
    // Async-signal-safe: an atomic load and kill(2).
    let group = VM_GROUP.load(Ordering::SeqCst);
    if group > 0 {
        INTERRUPTED.store(true, Ordering::SeqCst);
        let _ = signal::kill(Pid::from_raw(-group), Signal::SIGTERM);
    }
}

/// Ctrl-C, SIGTERM or SIGHUP to the runner stop the VM: the VM's session has
/// no terminal, so it would not see them, and would run on until
/// `LAB_VM_TIMEOUT`. `timeout` passes the SIGTERM on to vng (and kills it 20 s
/// later if needed); the runner then exits with 130.
fn forward_signals_to(group: i32) {
    VM_GROUP.store(group, Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(stop_vm),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: `stop_vm` only touches atomics and calls kill(2), both
        // async-signal-safe; the previous handlers (the defaults) are not
        // needed again: the runner exits after the VM.
        if let Err(e) = unsafe { signal::sigaction(sig, &action) } {
            eprintln!("vm: cannot forward {sig} to the VM: {e}");
        }
    }
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

/// `CI=true` (or `1`): a CI run, where every test must run.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Appends `name` to `LAB_NOT_RUN_FILE` (set by `cargo xtask test`).
fn record_not_run(name: &str) {
    let Some(path) = std::env::var_os("LAB_NOT_RUN_FILE") else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{name}"));
    if let Err(e) = written {
        eprintln!(
            "runner: cannot record {name} in {}: {e}",
            Path::new(&path).display()
        );
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
    if let Some(only) = std::env::var("LAB_ONLY").ok().filter(|o| !o.is_empty()) {
        if is_ci() {
            bail!("LAB_ONLY={only} is refused when CI=true: a CI run runs every test binary");
        }
        if !only.split(',').any(|o| !o.is_empty() && name.contains(o)) {
            eprintln!(
                "runner: NOT RUN: {name} (LAB_ONLY={only} does not name it; it exits 0 without running any test)"
            );
            record_not_run(&name);
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
