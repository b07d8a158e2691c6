//! A private Open vSwitch for tests and the benchmark (feature `sandbox`):
//! `ovsdb-server` on a database created with `ovsdb-tool create` from the
//! installed schema, serving `punix:DIR/db.sock`, and optionally
//! `ovs-vswitchd --enable-dummy=override --disable-system` (no kernel module:
//! bridges use `datapath_type=dummy`, system interfaces become dummy
//! devices). Everything lives in a fresh directory; processes are killed and
//! the directory removed on drop. The product never starts OVS.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The installed schema (Debian package openvswitch-common).
pub const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// A running private ovsdb-server (+ ovs-vswitchd).
pub struct Sandbox {
    dir: PathBuf,
    ovsdb: Option<Child>,
    vswitchd: Option<Child>,
    /// `Some(ns)`: ovs-vswitchd runs in network namespace `ns` with the
    /// kernel (system) datapath (the lab VM); `None`: dummy datapath.
    system_netns: Option<String>,
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    while !f() {
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    Ok(())
}

impl Sandbox {
    /// Starts ovsdb-server, initialises the `Open_vSwitch` row, and, if
    /// `vswitchd`, ovs-vswitchd.
    pub fn start(vswitchd: bool) -> Result<Self, String> {
        Self::start_with(vswitchd, None)
    }

    /// Starts ovsdb-server here and ovs-vswitchd inside network namespace
    /// `netns` (`ip netns exec`) with the kernel datapath (module
    /// `openvswitch`): its internal ports are netdevs of that namespace and
    /// its system ports that namespace's NICs.
    pub fn start_system(netns: &str) -> Result<Self, String> {
        Self::start_with(true, Some(netns.to_owned()))
    }

    fn start_with(vswitchd: bool, system_netns: Option<String>) -> Result<Self, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hostd-ovs-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut sb = Self {
            dir,
            ovsdb: None,
            vswitchd: None,
            system_netns,
        };
        let db = sb.dir.join("conf.db");
        let st = Command::new("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg(SCHEMA)
            .status()
            .map_err(|e| format!("ovsdb-tool (Debian package openvswitch-switch): {e}"))?;
        if !st.success() {
            return Err(format!("ovsdb-tool create failed: {st}"));
        }
        let child = sb
            .command("ovsdb-server")
            .arg(&db)
            .arg(format!("--remote=punix:{}", sb.db_socket().display()))
            .arg(format!(
                "--unixctl={}",
                sb.dir.join("ovsdb-server.ctl").display()
            ))
            .arg(format!(
                "--log-file={}",
                sb.dir.join("ovsdb-server.log").display()
            ))
            .arg("--no-chdir")
            .spawn()
            .map_err(|e| format!("ovsdb-server: {e}"))?;
        sb.ovsdb = Some(child);
        let sock = sb.db_socket();
        wait_for("ovsdb-server's socket", Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        })?;
        let out = sb.vsctl(&["--no-wait", "init"])?;
        let _ = out;
        if vswitchd {
            sb.start_vswitchd()?;
        }
        Ok(sb)
    }

    fn command(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("OVS_RUNDIR", &self.dir)
            .env("OVS_LOGDIR", &self.dir)
            .env("OVS_DBDIR", &self.dir)
            .env("OVS_SYSCONFDIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// The directory holding the database, sockets and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// ovsdb-server's unix socket.
    pub fn db_socket(&self) -> PathBuf {
        self.dir.join("db.sock")
    }

    /// ovs-vswitchd's control socket.
    pub fn vswitchd_ctl(&self) -> PathBuf {
        self.dir.join("ovs-vswitchd.ctl")
    }

    /// Starts ovs-vswitchd (dummy datapath, or the kernel one in the
    /// namespace of [`Sandbox::start_system`]) and waits for its control
    /// socket.
    pub fn start_vswitchd(&mut self) -> Result<(), String> {
        let ctl = self.vswitchd_ctl();
        let _ = std::fs::remove_file(&ctl);
        let mut cmd = match &self.system_netns {
            Some(ns) => {
                let mut c = self.command("ip");
                c.args(["netns", "exec", ns, "ovs-vswitchd"]);
                c.arg(format!("unix:{}", self.db_socket().display()));
                c
            }
            None => {
                let mut c = self.command("ovs-vswitchd");
                c.arg(format!("unix:{}", self.db_socket().display()))
                    .arg("--enable-dummy=override")
                    .arg("--disable-system");
                c
            }
        };
        let child = cmd
            .arg(format!("--unixctl={}", ctl.display()))
            .arg(format!(
                "--log-file={}",
                self.dir.join("ovs-vswitchd.log").display()
            ))
            .arg("--no-chdir")
            .spawn()
            .map_err(|e| format!("ovs-vswitchd: {e}"))?;
        self.vswitchd = Some(child);
        wait_for(
            "ovs-vswitchd's control socket",
            Duration::from_secs(60),
            || std::os::unix::net::UnixStream::connect(&ctl).is_ok(),
        )
    }

    /// Kills ovs-vswitchd (SIGKILL) and reaps it.
    pub fn kill_vswitchd(&mut self) {
        if let Some(mut c) = self.vswitchd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `ovs-appctl -t CTL ARGS` against ovs-vswitchd (tests only).
    pub fn appctl(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command("ovs-appctl")
            .arg("-t")
            .arg(self.vswitchd_ctl())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("ovs-appctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ovs-appctl {}: {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `ovs-vsctl --db=unix:SOCK ARGS` (tests and the benchmark only:
    /// the product never shells out to it) and returns its stdout.
    pub fn vsctl(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command("ovs-vsctl")
            .arg(format!("--db=unix:{}", self.db_socket().display()))
            .arg("--timeout=60")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("ovs-vsctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ovs-vsctl {}: {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill_vswitchd();
        if let Some(mut c) = self.ovsdb.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("HOSTD_KEEP_OVS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
