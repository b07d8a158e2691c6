//! `fleet-bench`: one `controller serve` process and N simulated agents
//! (this process) speaking the real protocol over real TLS on loopback.
//! Measures enrolment and handshake rates, steady-state CPU and RSS of the
//! controller, the time to push a desired state to all and get every
//! confirmation (each over a new connection), and the reconnect storm
//! after the controller is killed and restarted (docs/fleet.md).
//!
//! `cargo build --release -p controller && target/release/fleet-bench --agents 10000`

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Parser;
use controller::admin;
use fleet::{
    agent::{Agent, AgentConfig, AgentStats},
    failover::FailoverPolicy,
    sim::{SimConfig, SimHost},
};
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Listen port of the controller (loopback).
    #[arg(long, default_value_t = 17443)]
    port: u16,
    /// A synthetic report per agent this often (s).
    #[arg(long, default_value_t = 30)]
    report_every_s: u64,
    /// Steady-state window (s).
    #[arg(long, default_value_t = 30)]
    steady_s: u64,
    /// Commit-confirmed window of the push (s).
    #[arg(long, default_value_t = 120)]
    confirm_within_s: u32,
    /// Work directory (default: a temporary one, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Controller worker threads.
    #[arg(long, default_value_t = 2)]
    controller_threads: usize,
}

fn controller_bin() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.with_file_name("controller");
    if !p.exists() {
        bail!("{} not found: build the controller binary too", p.display());
    }
    Ok(p)
}

/// (utime+stime ticks, RSS kB) of a process.
fn proc_usage(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn start_controller(dir: &Path, port: u16, threads: usize) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("controller.log"))?;
    let c = Command::new(controller_bin()?)
        .args(["--state-dir"])
        .arg(dir)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--threads",
            &threads.to_string(),
            "--cert-validity-s",
            "86400",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let sock = dir.join("admin.sock");
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "the controller did not start (see {})",
                dir.join("controller.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(c)
}

async fn call(dir: &Path, req: Value) -> anyhow::Result<Value> {
    Ok(admin::call(&dir.join("admin.sock"), &req).await?)
}

async fn wait(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    while !f() {
        if t0.elapsed() > limit {
            bail!("timed out after {limit:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(t0.elapsed())
}

fn count(stats: &[Arc<AgentStats>], f: impl Fn(&AgentStats) -> bool) -> usize {
    stats.iter().filter(|s| f(s)).count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Both ends hold one descriptor per agent (and one more while it
    // confirms): raise the soft limit to the hard one.
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
    let n = args.agents;
    let tmp = args.dir.is_none();
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("fleet-bench-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let bundle = controller::server::init(&dir, Duration::from_secs(86400 * 365))?;
    let mut ctl = start_controller(&dir, args.port, args.controller_threads)?;
    let pid = ctl.id();
    let hz = ticks_per_s();
    let mut out = serde_json::Map::new();
    out.insert("agents".into(), json!(n));
    out.insert(
        "cpus".into(),
        json!(std::thread::available_parallelism()
            .map(|x| x.get())
            .unwrap_or(0)),
    );

    // 1. Enrolment: tokens (admin), then every agent enrols over TLS
    // without a client certificate (CSR + token; the controller signs).
    let ids: Vec<String> = (0..n).map(|i| format!("sim{i:05}")).collect();
    let tokens = call(
        &dir,
        json!({ "op": "tokens", "agents": ids, "ttl_s": 3600 }),
    )
    .await?;
    let tokens: Vec<String> = serde_json::from_value(tokens)?;
    let permits = Arc::new(tokio::sync::Semaphore::new(2000));
    let addr = format!("127.0.0.1:{}", args.port);
    let mut agents = Vec::with_capacity(n);
    let mut stats = Vec::with_capacity(n);
    let mut reporters = Vec::with_capacity(n);
    for (i, id) in ids.iter().enumerate() {
        let mut c = AgentConfig::new(id, vec![addr.clone()]);
        c.bootstrap_bundle = Some(bundle.clone());
        c.bootstrap_token = Some(tokens[i].clone());
        c.connect_permits = Some(permits.clone());
        c.heartbeat = Duration::from_secs(30);
        c.connect_timeout = Duration::from_secs(30);
        c.failover = FailoverPolicy {
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            jitter: 0.5,
            failback_after: Duration::from_secs(60),
            failback_check: Duration::from_secs(10),
        };
        let host = SimHost::new(SimConfig {
            report_every: Some(Duration::from_secs(args.report_every_s)),
            report_bytes: 200,
            inventory: Some(json!({ "nics": [] })),
            on_apply: None,
            on_revert: None,
        });
        let a = Agent::new(c, Arc::new(host))?;
        stats.push(a.stats());
        reporters.push(a.reporter());
        agents.push(a);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for a in agents {
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let _ = a
                .run(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        });
    }
    // All connected = enrolled, then a mutual-TLS stream each.
    let all_connected = wait("every agent connected", Duration::from_secs(900), || {
        count(&stats, |s| s.connects.load(Ordering::Relaxed) >= 1) == n
    })
    .await?;
    let cs = call(&dir, json!({ "op": "stats" })).await?;
    let handshakes = cs["handshakes"].as_u64().unwrap_or(0);
    out.insert(
        "enrol_and_connect_s".into(),
        json!(all_connected.as_secs_f64()),
    );
    out.insert(
        "handshakes_per_s".into(),
        json!(handshakes as f64 / all_connected.as_secs_f64()),
    );
    out.insert("handshakes".into(), json!(handshakes));
    eprintln!(
        "{n} agents enrolled and connected in {:.1} s ({handshakes} TLS handshakes)",
        all_connected.as_secs_f64()
    );

    // 2. Steady state: reports and heartbeats only.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (c0, _) = proc_usage(pid);
    let r0 = cs["reports_received"].as_u64().unwrap_or(0);
    let s0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.steady_s)).await;
    let (c1, rss1) = proc_usage(pid);
    let cs1 = call(&dir, json!({ "op": "stats" })).await?;
    let el = s0.elapsed().as_secs_f64();
    out.insert(
        "steady_cpu_percent".into(),
        json!(100.0 * (c1 - c0) as f64 / hz / el),
    );
    out.insert("steady_rss_mib".into(), json!(rss1 as f64 / 1024.0));
    out.insert(
        "steady_reports_per_s".into(),
        json!(
            (cs1["reports_received"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(r0)) as f64
                / el
        ),
    );
    eprintln!(
        "steady: {:.1} % CPU, {:.0} MiB RSS",
        100.0 * (c1 - c0) as f64 / hz / el,
        rss1 as f64 / 1024.0
    );

    // 3. Push a desired state to all; each agent applies it pending and
    // confirms over a new connection.
    let doc = "interfaces: []\n# bench generation\n";
    let (p0, _) = proc_usage(pid);
    let t = Instant::now();
    let set = call(&dir, json!({ "op": "desired", "agents": ["*"], "document": doc, "confirm_within_s": args.confirm_within_s })).await?;
    let set_s = t.elapsed().as_secs_f64();
    let mut peak_rss = 0;
    let confirmed = wait("every agent confirmed", Duration::from_secs(600), || {
        peak_rss = peak_rss.max(proc_usage(pid).1);
        count(&stats, |s| {
            s.confirmed_generation.load(Ordering::Relaxed) >= 1
        }) == n
    })
    .await?;
    let (p1, rss_push) = proc_usage(pid);
    out.insert("push_set_s".into(), json!(set_s));
    out.insert(
        "push_all_confirmed_s".into(),
        json!(confirmed.as_secs_f64()),
    );
    out.insert(
        "push_cpu_percent".into(),
        json!(100.0 * (p1 - p0) as f64 / hz / confirmed.as_secs_f64()),
    );
    out.insert(
        "push_peak_rss_mib".into(),
        json!(peak_rss.max(rss_push) as f64 / 1024.0),
    );
    out.insert("push_set".into(), set["set"].clone());
    eprintln!(
        "push: {} set in {set_s:.1} s, all confirmed after {:.1} s",
        set["set"],
        confirmed.as_secs_f64()
    );
    // The controller's view agrees.
    let cs2 = call(&dir, json!({ "op": "stats" })).await?;
    out.insert(
        "controller_confirmations".into(),
        cs2["confirmations"].clone(),
    );

    // 4. Reconnect storm: kill -9, restart, every agent back.
    let before: Vec<u64> = stats
        .iter()
        .map(|s| s.connects.load(Ordering::Relaxed))
        .collect();
    ctl.kill().context("killing the controller")?;
    let _ = ctl.wait();
    let t = Instant::now();
    let mut ctl = start_controller(&dir, args.port, args.controller_threads)?;
    let restart_s = t.elapsed().as_secs_f64();
    let back = wait("every agent reconnected", Duration::from_secs(600), || {
        stats
            .iter()
            .zip(&before)
            .filter(|(s, b)| s.connects.load(Ordering::Relaxed) > **b)
            .count()
            == n
    })
    .await?;
    let (_, rss_storm) = proc_usage(ctl.id());
    out.insert("storm_controller_start_s".into(), json!(restart_s));
    out.insert(
        "storm_all_reconnected_s".into(),
        json!(back.as_secs_f64() + restart_s),
    );
    out.insert("storm_rss_mib".into(), json!(rss_storm as f64 / 1024.0));
    eprintln!(
        "reconnect storm: all {n} back {:.1} s after the restart began",
        back.as_secs_f64() + restart_s
    );

    // Reports: none lost (each agent's acknowledged seqs are gap-free at
    // the controller; dropped ones would be counted).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cs3 = call(&dir, json!({ "op": "stats" })).await?;
    out.insert("reports_lost".into(), cs3["reports_lost"].clone());
    out.insert("reports_received".into(), cs3["reports_received"].clone());
    out.insert(
        "reports_dropped_by_agents".into(),
        json!(reporters.iter().map(|r| r.counts().2).sum::<u64>()),
    );
    let (_, own_rss) = proc_usage(std::process::id());
    out.insert("loadgen_rss_mib".into(), json!(own_rss as f64 / 1024.0));

    let _ = stop_tx.send(true);
    ctl.kill().ok();
    let _ = ctl.wait();
    println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
    if tmp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
