//! [`NetNs`]: a uniquely named network namespace that is removed when dropped,
//! also while a test unwinds from a panic. Commands run in it through
//! `ip netns exec`, closures on a thread that entered it with `setns(2)`.

use std::{
    fs::File,
    io::Write as _,
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex, Once,
    },
};

use anyhow::{bail, Context as _};

static SEQ: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// Prefix of every namespace the lab creates: `lab<pid>-`.
pub const PREFIX: &str = "lab";

/// A network namespace owned by the test that created it.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    role: String,
    children: Mutex<Vec<Child>>,
}

impl NetNs {
    /// Creates `lab<pid>-<seq><role>`; `role` ("sw1", "srv1") makes logs
    /// readable. Loopback is brought up. Namespaces left by dead lab processes
    /// are removed on the first call in each process.
    pub fn new(role: &str) -> anyhow::Result<Self> {
        SWEEP.call_once(sweep_stale);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{seq}{role}", std::process::id());
        run_checked(Command::new("ip").args(["netns", "add", &name]))
            .with_context(|| format!("creating namespace {name}"))?;
        let ns = Self {
            name,
            role: role.to_owned(),
            children: Mutex::new(Vec::new()),
        };
        ns.try_ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The role it was created for ("sw1", "srv1").
    pub fn role(&self) -> &str {
        &self.role
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `argv` in the namespace; returns stdout. Errors carry the command,
    /// exit status and stderr.
    pub fn try_run(&self, argv: &[&str]) -> anyhow::Result<String> {
        let (program, args) = argv.split_first().context("empty command")?;
        let out = run_checked(self.command(program).args(args))
            .with_context(|| format!("in namespace {} ({})", self.name, self.role))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Like [`NetNs::try_run`] but panics with context: for tests.
    #[track_caller]
    pub fn run(&self, argv: &[&str]) -> String {
        match self.try_run(argv) {
            Ok(s) => s,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Runs `ip -n NS <args>` (no fork of `ip netns exec`).
    pub fn try_ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = run_checked(Command::new("ip").args(["-n", &self.name]).args(args))
            .with_context(|| format!("in namespace {} ({})", self.name, self.role))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip -n NS <args>`, panicking with context.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        match self.try_ip(args) {
            Ok(s) => s,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Feeds `lines` to one `ip -n NS -batch -` (one process for many
    /// changes: process creation is what costs under emulation).
    pub fn ip_batch(&self, lines: &[String]) -> anyhow::Result<()> {
        batch(&["ip", "-n", &self.name, "-batch", "-"], lines)
            .with_context(|| format!("ip batch in namespace {} ({})", self.name, self.role))
    }

    /// Feeds `lines` to one `bridge -n NS -batch -`.
    pub fn bridge_batch(&self, lines: &[String]) -> anyhow::Result<()> {
        batch(&["bridge", "-n", &self.name, "-batch", "-"], lines)
            .with_context(|| format!("bridge batch in namespace {} ({})", self.name, self.role))
    }

    /// Sets a sysctl inside the namespace (`net.ipv6.conf.all.disable_ipv6`).
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.try_run(&["sysctl", "-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Starts `argv` in the background inside the namespace; it is killed
    /// when the namespace is dropped. Returns its pid.
    pub fn spawn(&self, argv: &[&str]) -> anyhow::Result<u32> {
        let (program, args) = argv.split_first().context("empty command")?;
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {argv:?} in {}", self.name))?;
        let pid = child.id();
        self.children
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(child);
        Ok(pid)
    }

    /// Runs `f` on a thread that entered this namespace (`setns(2)`), for
    /// in-process netlink or sockets. A panic in `f` propagates.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns({path}): {e}"));
                f()
            });
            match handle.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Ok(mut children) = self.children.lock() {
            for c in children.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Kill anything else still running in the namespace (e.g. daemons
        // that forked), then delete it.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Removes namespaces named `lab<pid>-*` whose process is gone (left by a
/// test killed with SIGKILL or a VM timeout).
fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(namespace = %name, "removing stale lab namespace");
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// Runs a command; a non-zero exit becomes an error with stderr.
pub fn run_checked(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn batch(argv: &[&str], lines: &[String]) -> anyhow::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {argv:?}"))?;
    {
        let mut stdin = child.stdin.take().context("stdin")?;
        for l in lines {
            writeln!(stdin, "{l}")?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{argv:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
