//! `bench-daemon`: benchmarks of `hostd daemon` (docs/daemon.md), as root,
//! on a kernel with bonds and VLANs (`cargo xtask runner
//! target/release/bench-daemon` boots the VM when this one lacks them).
//!
//! In a private network namespace with a private dbus-daemon, the real
//! `hostd` binary (next to this one, or `HOSTD_BIN`) runs as the daemon and
//! holds the 1000-VLAN trunk example (hostd/examples/trunk.yaml). Measured:
//!
//! 1. idle CPU and RSS of the daemon process (from /proc, over
//!    `BENCH_IDLE_SECS`, default 60);
//! 2. event-to-repair latency: `ip link set bond0 down`, until bond0 is up
//!    again (polled with `ip`), and the daemon's own figure (first event to
//!    repair done), `BENCH_REPAIRS` times (default 10);
//! 3. a burst of 4000 link events (alias changes of a foreign link in one
//!    `ip -batch`): the number of plans (reconciles) it caused and the time
//!    until the last one finished.
//!
//! Prints a Markdown table. `BENCH_DOC=bridge` replaces the trunk by a
//! bridge over veths (for kernels without bonds/VLANs; repairs target br0).

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

const TRUNK: &str = include_str!("../../../examples/trunk.yaml");

/// `BENCH_DOC=bridge`: for kernels without bonds and VLANs (this machine's),
/// a bridge over the two veth NICs with an address; repairs target br0.
const BRIDGE: &str = "interfaces:
  - { name: eth0, type: ethernet, state: up }
  - { name: eth1, type: ethernet, state: up }
  - name: br0
    type: linux-bridge
    state: up
    bridge: { options: { stp: { enabled: false } }, port: [{ name: eth0 }, { name: eth1 }] }
    ipv4: { address: [{ ip: 10.1.0.1, prefix-length: 24 }] }
";

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn hostd_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HOSTD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("hostd");
    if !p.exists() {
        bail!(
            "{} missing: build hostd (same profile) or set HOSTD_BIN",
            p.display()
        );
    }
    Ok(p)
}

fn run(cmd: &mut Command) -> Result<Output> {
    let o = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !o.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(o)
}

struct Env {
    ns: String,
    peer: String,
    dir: PathBuf,
    bus: Option<Child>,
    daemon: Option<Child>,
    address: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in [self.daemon.take(), self.bus.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in [&self.ns, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Env {
    fn ip(&self, line: &str) -> Result<String> {
        let mut args = vec!["-n", &self.ns];
        args.extend(line.split(' '));
        Ok(String::from_utf8_lossy(&run(Command::new("ip").args(&args))?.stdout).into_owned())
    }

    fn hostd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns])
            .arg(hostd_bin().unwrap_or_default())
            .arg("--state-file")
            .arg(self.dir.join("owned.json"))
            .arg("--resolv-conf")
            .arg(self.dir.join("resolv.conf"))
            .args(["--bus-address", &self.address])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn status(&self) -> Result<Value> {
        let o = run(&mut self.hostd(&["-o", "json", "status"]))?;
        Ok(serde_json::from_slice(&o.stdout)?)
    }

    fn stat(&self, k: &str) -> Result<u64> {
        Ok(self.status()?["daemon"]["stats"][k].as_u64().unwrap_or(0))
    }
}

fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let t = Instant::now();
    while !f() {
        if t.elapsed() > limit {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// utime+stime (clock ticks) and VmRSS (KiB) of a process.
fn proc_usage(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3; utime 14 and stime 15 (1-based).
    let ticks = f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((ticks, rss))
}

fn main() -> Result<()> {
    let idle_secs = env_u64("BENCH_IDLE_SECS", 60);
    let repairs_n = env_u64("BENCH_REPAIRS", 10);
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("bench-daemon-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut env = Env {
        ns: format!("benchd{id}"),
        peer: format!("benchp{id}"),
        dir: dir.clone(),
        bus: None,
        daemon: None,
        address: String::new(),
    };
    for n in [&env.ns, &env.peer] {
        run(Command::new("ip").args(["netns", "add", n]))?;
    }
    env.ip("link set lo up")?;
    for (nic, peer) in [("eth0", "p0"), ("eth1", "p1"), ("fx0", "fx1")] {
        env.ip(&format!(
            "link add {nic} type veth peer name {peer} netns {}",
            env.peer
        ))?;
        run(Command::new("ip").args(["-n", &env.peer, "link", "set", peer, "up"]))?;
    }
    env.ip("link set fx0 up")?;
    // The bus.
    let sock = dir.join("bus");
    let conf = dir.join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_type="method_call"/>
<allow send_requested_reply="true" send_type="method_return"/><allow send_requested_reply="true" send_type="error"/>
<allow send_type="signal"/><allow receive_type="method_call"/><allow receive_type="method_return"/>
<allow receive_type="error"/><allow receive_type="signal"/></policy></busconfig>"#,
            sock.display()
        ),
    )?;
    env.bus = Some(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("dbus-daemon")?,
    );
    wait("the bus", Duration::from_secs(30), || sock.exists())?;
    env.address = format!("unix:path={}", sock.display());
    // The daemon (the real binary; `ip netns exec` execs it, so the child
    // pid is the daemon's).
    let state = dir.join("state").display().to_string();
    let log = std::fs::File::create(dir.join("daemon.log"))?;
    env.daemon = Some(
        env.hostd(&[
            "daemon",
            "--state-dir",
            &state,
            "--telemetry-no-pin",
            "--fight-threshold",
            "1000",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?,
    );
    let pid = env.daemon.as_ref().map(Child::id).unwrap_or(0);
    wait("the daemon", Duration::from_secs(120), || {
        env.status()
            .is_ok_and(|s| s["daemon"]["health"].as_str() != Some("starting"))
    })?;
    let bridge = std::env::var("BENCH_DOC").is_ok_and(|d| d == "bridge");
    let (doc_name, doc_text, link) = if bridge {
        ("bridge over 2 veths", BRIDGE, "br0")
    } else {
        ("1000-VLAN trunk example", TRUNK, "bond0")
    };
    let trunk = dir.join("doc.yaml");
    std::fs::write(&trunk, doc_text)?;
    let t = Instant::now();
    let o = env
        .hostd(&["apply", trunk.to_str().unwrap_or_default()])
        .output()?;
    // 10: applied with changes.
    if o.status.code() != Some(10) {
        bail!("hostd apply: {}", String::from_utf8_lossy(&o.stderr));
    }
    let apply_s = t.elapsed().as_secs_f64();
    // Let the reconciles caused by the apply's own events finish.
    let mut rc = env.stat("reconciles")?;
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let now = env.stat("reconciles")?;
        if now == rc {
            break;
        }
        rc = now;
    }

    // 1. Idle.
    let (t0, _) = proc_usage(pid)?;
    let w = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let (t1, rss) = proc_usage(pid)?;
    let idle_reconciles = env.stat("reconciles")? - rc;
    let hz = u64::try_from(nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100))
        .unwrap_or(100) as f64;
    let idle_cpu = (t1 - t0) as f64 / hz / w.elapsed().as_secs_f64() * 100.0;
    let links = env.ip("-o link show")?.lines().count();

    // 2. Event to repair.
    let mut ext = Vec::new();
    let mut int = Vec::new();
    for _ in 0..repairs_n {
        let before = env.stat("repairs")?;
        let t = Instant::now();
        env.ip(&format!("link set {link} down"))?;
        wait("the link up again", Duration::from_secs(120), || {
            env.ip(&format!("link show {link}"))
                .is_ok_and(|s| s.contains(",UP"))
        })?;
        ext.push(t.elapsed().as_secs_f64() * 1000.0);
        wait("the repair counted", Duration::from_secs(60), || {
            env.stat("repairs").is_ok_and(|n| n > before)
        })?;
        int.push(env.stat("last_repair_latency_us")? as f64 / 1000.0);
        // Longer than the back-off's quiet time: each drift is a new one.
        std::thread::sleep(Duration::from_millis(3500));
    }
    ext.sort_by(f64::total_cmp);
    int.sort_by(f64::total_cmp);

    // 3. Bursts of 4000 link events: alias changes of a managed link (no
    // drift, but each event concerns the document), then of a foreign one.
    let mut bursts = Vec::new();
    for (link, what) in [("eth0", "managed"), ("fx0", "foreign")] {
        let (ev0, rc0) = (env.stat("events")?, env.stat("reconciles")?);
        let batch = dir.join("burst.ip");
        std::fs::write(
            &batch,
            (0..4000)
                .map(|i| format!("link set dev {link} alias burst{i}\n"))
                .collect::<String>(),
        )?;
        let t = Instant::now();
        run(Command::new("ip")
            .args(["-n", &env.ns, "-batch"])
            .arg(&batch))?;
        let burst_gen = t.elapsed().as_secs_f64();
        let mut last_change = t;
        let mut last_rc = rc0;
        let events = loop {
            let s = env.status()?;
            let rc = s["daemon"]["stats"]["reconciles"].as_u64().unwrap_or(0);
            let events = s["daemon"]["stats"]["events"].as_u64().unwrap_or(0);
            if rc != last_rc {
                last_rc = rc;
                last_change = Instant::now();
            }
            if events >= ev0 + 4000 && last_change.elapsed() > Duration::from_secs(3) {
                break events;
            }
            if t.elapsed() > Duration::from_secs(600) {
                bail!("burst did not settle");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        bursts.push((
            what,
            burst_gen,
            events - ev0,
            last_rc - rc0,
            (last_change - t).as_secs_f64(),
        ));
    }
    let overruns = env.stat("overruns")?;

    let uname = String::from_utf8_lossy(&run(Command::new("uname").arg("-r"))?.stdout)
        .trim()
        .to_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let date = String::from_utf8_lossy(
        &run(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?.stdout,
    )
    .trim()
    .to_owned();
    let pct = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!(
        "### hostd daemon, {date}, kernel {uname}, {} CPU(s) ({cpu})\n",
        nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)?.unwrap_or(0)
    );
    println!("| measure | value |\n|---|---|");
    println!("| {doc_name} applied through the daemon | {apply_s:.2} s ({links} links in the namespace) |");
    println!("| idle CPU over {idle_secs} s, holding it | {idle_cpu:.3} % of one core ({idle_reconciles} reconciles in the window) |");
    println!("| RSS, holding it | {:.1} MiB |", rss as f64 / 1024.0);
    println!("| event to repair, `ip link set {link} down` to {link} up (polled with `ip`), {repairs_n} runs | median {:.0} ms, max {:.0} ms |", pct(&ext, 0.5), pct(&ext, 1.0));
    println!("| event to repair, daemon's own measure (first event to repair verified) | median {:.0} ms, max {:.0} ms |", pct(&int, 0.5), pct(&int, 1.0));
    for (what, gen, n, plans, settle) in bursts {
        println!("| burst of 4000 link events on a {what} link (`ip -batch`, {gen:.2} s to send) | {n} events received, {plans} plan(s), last one done {settle:.2} s after the burst began |");
    }
    println!("| overruns of the event socket | {overruns} |");
    Ok(())
}
