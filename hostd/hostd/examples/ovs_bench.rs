//! OVS benchmark: one bridge + an LACP bond + N tagged internal ports from
//! an empty database, on a private ovsdb-server + ovs-vswitchd (dummy
//! datapath), each run in a fresh sandbox:
//!
//! 1. hostd: observe, plan, one transaction per step, wait for cur_cfg,
//!    verify (`Ovs::apply`); then the no-op re-apply;
//!    1b. the same through the whole pipeline (`engine::apply` of a main
//!    document, as `hostd apply` runs it, in a fresh network namespace:
//!    netlink observation, kernel plan with the OVS stages, both verified);
//! 2. one `ovs-vsctl` invocation doing the same (one transaction, waits for
//!    ovs-vswitchd as it does by default);
//! 3. one `ovs-vsctl` call per port (what ifupdown2 / os-net-config do).
//!
//! Run: `cargo run --release -p hostd --example ovs_bench [-- PORTS [PER_PORT_CALLS]]`
//! (defaults 1000 and PORTS; as root, with openvswitch-switch installed).
//! PER_PORT_CALLS < PORTS times that many calls and extrapolates linearly,
//! which flatters ovs-vsctl (each call gets slower as the bridge grows).

use std::time::{Duration, Instant};

use hostd::ovs::{ApplyOptions, Ovs};
use hostd_core::ovs::OvsState;
use hostd_ovsdb::sandbox::Sandbox;

fn desired(ports: usize) -> OvsState {
    let mut y = String::from(
        "interfaces:\n  - name: benchbr\n    type: ovs-bridge\n    bridge:\n      options: { datapath: dummy }\n      port:\n        - name: bond0\n          link-aggregation: { mode: balance-tcp, lacp: active, port: [{ name: eth0 }, { name: eth1 }] }\n",
    );
    for i in 0..ports {
        y.push_str(&format!(
            "        - {{ name: p{i}, vlan: {{ mode: access, tag: {} }} }}\n",
            i % 4094 + 1
        ));
    }
    for i in 0..ports {
        y.push_str(&format!("  - {{ name: p{i}, type: ovs-interface }}\n"));
    }
    OvsState::parse(&y).expect("bench state")
}

/// The same entries as a main document (`hostd apply FILE`).
fn document(ports: usize) -> hostd_core::NetworkState {
    let d = desired(ports);
    let y = serde_norway::to_string(&d).expect("yaml");
    hostd_core::NetworkState::parse(&y).expect("bench document")
}

/// `engine::apply` of `doc` twice (apply, then the no-op), on a thread in a
/// fresh network namespace; returns both times.
fn engine_run(sb: &Sandbox, doc: &hostd_core::NetworkState) -> (Duration, Duration, usize) {
    use hostd::engine::{self, ApplyOptions, Config};
    let dir = std::env::temp_dir().join(format!("ovs-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = Config {
        state_file: dir.join("owned.json"),
        resolv_conf: dir.join("resolv.conf"),
        dns_backend: hostd::engine::DnsBackend::File,
        ovs_db_socket: sb.db_socket(),
        ..Config::default()
    };
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            let t = Instant::now();
            let r = engine::apply(&cfg, doc, ApplyOptions::default()).expect("engine apply");
            let apply = t.elapsed();
            let t = Instant::now();
            let again = engine::apply(&cfg, doc, ApplyOptions::default()).expect("engine re-apply");
            assert!(again.plan.is_empty(), "{}", again.plan);
            (apply, t.elapsed(), r.plan.ovs_steps())
        })
        .join()
        .expect("netns thread")
    });
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn vsctl_base() -> Vec<String> {
    [
        "add-br",
        "benchbr",
        "--",
        "set",
        "bridge",
        "benchbr",
        "datapath_type=dummy",
        "--",
        "add-bond",
        "benchbr",
        "bond0",
        "eth0",
        "eth1",
        "bond_mode=balance-tcp",
        "lacp=active",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn port_args(i: usize) -> Vec<String> {
    vec![
        "add-port".into(),
        "benchbr".into(),
        format!("p{i}"),
        format!("tag={}", i % 4094 + 1),
        "--".into(),
        "set".into(),
        "interface".into(),
        format!("p{i}"),
        "type=internal".into(),
    ]
}

fn run_vsctl(sb: &Sandbox, args: &[String]) {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.vsctl(&a).expect("ovs-vsctl");
}

/// A fresh ovs-vswitchd is slow to answer its first configurations: before
/// each measurement, `ovs-vsctl init` (next_cfg += 1, wait for cur_cfg)
/// until one round trip is quick, so every contender starts from a settled
/// daemon.
fn settle(sb: &Sandbox) {
    for _ in 0..50 {
        let t = Instant::now();
        sb.vsctl(&["init"]).expect("ovs-vsctl init");
        if t.elapsed() < Duration::from_millis(50) {
            return;
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let ports: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let per_port_calls: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(ports)
        .min(ports);
    let d = desired(ports);

    // 1. hostd.
    let sb = Sandbox::start(true).expect("sandbox");
    let ovs = Ovs::connect(sb.db_socket()).await.expect("connect");
    settle(&sb);
    let t = Instant::now();
    let r = ovs
        .apply(&d, &ApplyOptions::default())
        .await
        .expect("apply");
    let hostd_apply = t.elapsed();
    assert!(ovs.plan(&d).expect("plan").is_empty());
    let t = Instant::now();
    let noop = ovs
        .apply(&d, &ApplyOptions::default())
        .await
        .expect("re-apply");
    let hostd_noop = t.elapsed();
    assert!(noop.plan.is_empty());
    println!(
        "hostd apply ({} steps, {} ops): {} (observe+plan {:?}, execute incl. cur_cfg wait {:?}, verify {:?})",
        r.plan.steps.len(),
        r.plan.op_count(),
        secs(hostd_apply),
        r.observe_plan,
        r.execute,
        r.verify
    );
    println!("hostd no-op re-apply: {}", secs(hostd_noop));
    drop(ovs);
    drop(sb);

    // 1b. The whole pipeline (`hostd apply` of a main document).
    let sb = Sandbox::start(true).expect("sandbox");
    settle(&sb);
    let (engine_apply, engine_noop, steps) = engine_run(&sb, &document(ports));
    println!(
        "hostd apply, whole pipeline (engine, {steps} OVS steps): {}; no-op re-apply: {}",
        secs(engine_apply),
        secs(engine_noop)
    );
    drop(sb);

    // 2. One ovs-vsctl transaction.
    let sb = Sandbox::start(true).expect("sandbox");
    settle(&sb);
    let mut all = vsctl_base();
    for i in 0..ports {
        all.push("--".into());
        all.extend(port_args(i));
    }
    let t = Instant::now();
    run_vsctl(&sb, &all);
    let one_txn = t.elapsed();
    println!("ovs-vsctl, one transaction: {}", secs(one_txn));
    drop(sb);

    // 3. One ovs-vsctl call per port.
    let sb = Sandbox::start(true).expect("sandbox");
    settle(&sb);
    let t = Instant::now();
    run_vsctl(&sb, &vsctl_base());
    for i in 0..per_port_calls {
        run_vsctl(&sb, &port_args(i));
    }
    let mut per_port = t.elapsed();
    if per_port_calls < ports {
        per_port = per_port.mul_f64(ports as f64 / per_port_calls.max(1) as f64);
        println!(
            "ovs-vsctl, one call per port: {} (extrapolated from {per_port_calls} calls)",
            secs(per_port)
        );
    } else {
        println!("ovs-vsctl, one call per port: {}", secs(per_port));
    }
    drop(sb);

    println!(
        "ratio hostd / one ovs-vsctl transaction: {:.2} (goal <= 1.5); per-port calls / hostd: {:.0}x (goal >= 50x)",
        hostd_apply.as_secs_f64() / one_txn.as_secs_f64(),
        per_port.as_secs_f64() / hostd_apply.as_secs_f64()
    );
    println!(
        "ratio whole pipeline / one ovs-vsctl transaction: {:.2}; per-port calls / whole pipeline: {:.0}x",
        engine_apply.as_secs_f64() / one_txn.as_secs_f64(),
        per_port.as_secs_f64() / engine_apply.as_secs_f64()
    );
}
