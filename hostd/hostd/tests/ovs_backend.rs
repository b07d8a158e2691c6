//! The OVS backend against a real private ovsdb-server + ovs-vswitchd
//! (`--enable-dummy=override`: the system datapath and NICs are dummies, so
//! no kernel module is needed), started per test and killed on drop.
//! Foreign rows are made with ovs-vsctl, as an operator or OpenStack would.

use std::{sync::Arc, time::Duration};

use hostd::ovs::{exec::describe_diff, status::bond_status, ApplyError, ApplyOptions, Ovs};
use hostd_core::ovs::{OvsObserved, OvsState, Table};
use hostd_ovsdb::sandbox::Sandbox;

fn example() -> OvsState {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cloudstack-ovs.yaml");
    // The example is a whole document (kernel parts too): its OVS entries.
    let d = hostd_core::NetworkState::parse(&std::fs::read_to_string(&p).expect("example"))
        .expect("parses");
    hostd_core::ovs::doc::ovs_part(&d)
        .expect("OVS entries")
        .state
}

fn state(yaml: &str) -> OvsState {
    OvsState::parse(yaml).expect("state")
}

async fn connect(sb: &Sandbox) -> Ovs {
    Ovs::connect(sb.db_socket()).await.expect("connect")
}

fn assert_same(a: &OvsObserved, b: &OvsObserved, what: &str) {
    let d = describe_diff(a, b);
    assert!(d.is_empty(), "{what}:\n{}", d.join("\n"));
}

/// hostd's rows exactly, foreign rows exactly, by name.
fn row(o: &OvsObserved, t: Table, name: &str) -> hostd_core::ovs::OvsRow {
    o.config_view()
        .get(t, name)
        .cloned()
        .unwrap_or_else(|| panic!("{t} {name} missing"))
}

#[tokio::test]
async fn cloudstack_layout_applies_converges_and_reapplies_nothing() {
    let sb = Sandbox::start(true).expect("sandbox");
    let ovs = connect(&sb).await;
    let desired = example();
    let r = ovs
        .apply(&desired, &ApplyOptions::default())
        .await
        .expect("apply");
    eprintln!(
        "plan:\n{}apply: plan {:?}, execute {:?}, verify {:?}",
        r.plan, r.observe_plan, r.execute, r.verify
    );
    assert_eq!(r.plan.steps.len(), 2);
    // What ovs-vsctl sees.
    assert_eq!(
        sb.vsctl(&["list-br"]).expect("list-br"),
        "cloudbr0\ncloudbr1\ncloudbr100\n"
    );
    assert_eq!(
        sb.vsctl(&["br-to-parent", "cloudbr100"])
            .expect("parent")
            .trim(),
        "cloudbr0"
    );
    assert_eq!(
        sb.vsctl(&["br-to-vlan", "cloudbr100"])
            .expect("vlan")
            .trim(),
        "100"
    );
    assert_eq!(
        sb.vsctl(&["get", "port", "mgmt0", "tag"])
            .expect("tag")
            .trim(),
        "200"
    );
    assert_eq!(
        sb.vsctl(&["get", "port", "bond0", "bond_mode"])
            .expect("mode")
            .trim(),
        "balance-tcp"
    );
    assert_eq!(
        sb.vsctl(&["get", "port", "bond0", "other_config:lacp-time"])
            .expect("t")
            .trim(),
        "fast"
    );
    let mut ifaces: Vec<String> = sb
        .vsctl(&["list-ifaces", "cloudbr0"])
        .expect("ifaces")
        .lines()
        .map(str::to_owned)
        .collect();
    ifaces.sort();
    // (ovs-vsctl does not list the bridge's own local interface.)
    assert_eq!(ifaces, ["eth0", "eth1", "mgmt0", "trunk0"]);
    // Every interface got an OpenFlow port from ovs-vswitchd.
    let o = ovs.observe();
    for i in &o.interfaces {
        assert!(
            matches!(i.status.get("ofport"), Some(hostd_core::ovs::Col::Int(p)) if *p > 0),
            "{} has no ofport: {:?}",
            i.name,
            i.status
        );
    }
    // Idempotent: nothing planned, nothing done.
    assert!(ovs.plan(&desired).expect("plan").is_empty());
    let again = ovs
        .apply(&desired, &ApplyOptions::default())
        .await
        .expect("re-apply");
    assert!(again.plan.is_empty());
    // A second connection (a restarted hostd) observes the same and plans nothing.
    let ovs2 = connect(&sb).await;
    assert!(ovs2.plan(&desired).expect("plan").is_empty());
    // Bond status (no LACP partner on dummy NICs: not negotiated, and said so).
    let bonds = bond_status(&sb.vswitchd_ctl(), Some(&ovs.client))
        .await
        .expect("status");
    let b = bonds.iter().find(|b| b.name == "bond0").expect("bond0");
    assert_eq!(b.mode.as_deref(), Some("balance-tcp"));
    assert_eq!(b.members.len(), 2);
    let problems = b.problems();
    assert!(
        problems.iter().any(|p| p.contains("member eth0"))
            && problems.iter().any(|p| p.contains("member eth1")),
        "{problems:?}"
    );
    // `hostd status` reads the same and diagnoses it.
    let ctl = sb.vswitchd_ctl();
    let read = tokio::task::spawn_blocking(move || {
        hostd::status::cli::read_ovs_bonds(Some(&ctl), std::path::Path::new("/nonexistent"))
    })
    .await
    .expect("join")
    .expect("read")
    .expect("ovs-vswitchd runs");
    let st = hostd_core::status::HostStatus {
        ovs_bonds: read,
        ..Default::default()
    };
    let findings = hostd_core::status::diagnose(&st, None);
    assert!(
        findings
            .iter()
            .any(|f| f.object == "ovs:bond0/eth0" && f.code.as_str() == "lacp-no-partner"),
        "{findings:?}"
    );
    let text = hostd_core::status::render::text(&st, &findings);
    assert!(text.contains("ovs bond bond0: balance-tcp"), "{text}");
    // Teardown removes exactly hostd's rows.
    ovs.teardown(&ApplyOptions::default())
        .await
        .expect("teardown");
    assert_eq!(sb.vsctl(&["list-br"]).expect("list-br"), "");
}

#[tokio::test]
async fn rollback_at_every_step_restores_ovsdb_and_foreign_rows_stay() {
    let sb = Sandbox::start(true).expect("sandbox");
    let ovs = connect(&sb).await;
    // A first state of hostd's: cloudbr0 with a plain port and a trunk port,
    // cloudbr9 that the next state drops.
    let s0 = state(
        "interfaces:
  - { name: cloudbr0, type: ovs-bridge, bridge: { options: { stp: true }, port: [{ name: eth0 }, { name: vt0, vlan: { mode: trunk, trunk-tags: [{ id: 5 }] } }] } }
  - { name: cloudbr9, type: ovs-bridge, bridge: { port: [{ name: eth9 }] } }
  - { name: vt0, type: ovs-interface }
",
    );
    ovs.apply(&s0, &ApplyOptions::default()).await.expect("s0");
    // Foreign rows: OpenStack's br-int, libvirt's vnet0 on hostd's cloudbr0.
    sb.vsctl(&[
        "add-br",
        "br-int",
        "--",
        "set",
        "bridge",
        "br-int",
        "fail_mode=secure",
        "external_ids:openstack=neutron",
    ])
    .expect("br-int");
    sb.vsctl(&[
        "add-port",
        "br-int",
        "tap1",
        "tag=1",
        "--",
        "set",
        "interface",
        "tap1",
        "type=internal",
        "external_ids:iface-id=vm-1",
    ])
    .expect("tap1");
    sb.vsctl(&[
        "add-port",
        "cloudbr0",
        "vnet0",
        "tag=100",
        "--",
        "set",
        "interface",
        "vnet0",
        "type=internal",
        "external_ids:vm-id=i-2-10-VM",
    ])
    .expect("vnet0");
    ovs.client
        .wait_until("foreign rows in the cache", Duration::from_secs(10), |c| {
            c.by_name("Interface", "vnet0").is_some() && c.by_name("Interface", "tap1").is_some()
        })
        .await
        .expect("cache");
    let before = ovs.observe();
    let target = example();
    let plan = ovs.plan(&target).expect("plan");
    eprintln!("plan:\n{plan}");
    assert!(plan.steps.len() >= 3, "remove + two bridges");
    for k in 0..=plan.steps.len() {
        let opts = ApplyOptions {
            fail_after_steps: Some(k),
            ..Default::default()
        };
        match ovs.apply(&target, &opts).await {
            Err(ApplyError::Step {
                rolled_back: Ok(()),
                ..
            }) => {}
            other => panic!("failure after {k} steps: expected a verified rollback, got {other:?}"),
        }
        assert_same(
            &before,
            &ovs.observe(),
            &format!("OVSDB after rollback at step {k}"),
        );
    }
    // Then for real; foreign rows untouched throughout.
    ovs.apply(&target, &ApplyOptions::default())
        .await
        .expect("apply");
    let after = ovs.observe();
    for (t, n) in [
        (Table::Bridge, "br-int"),
        (Table::Port, "br-int"),
        (Table::Port, "tap1"),
        (Table::Interface, "tap1"),
        (Table::Port, "vnet0"),
        (Table::Interface, "vnet0"),
    ] {
        assert_eq!(row(&before, t, n), row(&after, t, n), "{t} {n} changed");
    }
    assert!(row(&after, Table::Bridge, "cloudbr0")
        .refs
        .contains(&"vnet0".to_owned()));
    // Teardown leaves cloudbr0 (it holds libvirt's vnet0): refused, nothing done.
    let e = ovs
        .teardown(&ApplyOptions::default())
        .await
        .expect_err("foreign port");
    assert!(e.to_string().contains("vnet0"), "{e}");
    assert_same(&after, &ovs.observe(), "after a refused teardown");
    // hostd refuses to take over a foreign bridge named in the document.
    let mut grab = example();
    grab.interfaces
        .extend(state("interfaces:\n  - { name: br-int, type: ovs-bridge }\n").interfaces);
    let e = ovs
        .apply(&grab, &ApplyOptions::default())
        .await
        .expect_err("not owned");
    assert!(e.to_string().contains("does not take over"), "{e}");
}

#[tokio::test]
async fn failing_interface_rolls_back() {
    let sb = Sandbox::start(true).expect("sandbox");
    let ovs = connect(&sb).await;
    let s0 = state(
        "interfaces:\n  - { name: br0, type: ovs-bridge, bridge: { port: [{ name: eth0 }] } }\n",
    );
    ovs.apply(&s0, &ApplyOptions::default()).await.expect("s0");
    let before = ovs.observe();
    // The second step adds an interface of a type ovs-vswitchd cannot create.
    let bad = state(
        "interfaces:
  - { name: br0, type: ovs-bridge, bridge: { options: { stp: true }, port: [{ name: eth0 }] } }
  - { name: br1, type: ovs-bridge, bridge: { port: [{ name: px }] } }
  - { name: px, type: ovs-interface, patch: { peer: px-peer } }
",
    );
    let plan = ovs.plan(&bad).expect("plan");
    eprintln!("{plan}");
    // ovs-vswitchd sets the patch port's error ("No usable peer") either in
    // the pass that acknowledges next_cfg (then the step fails and is rolled
    // back) or in a later status pass (then it is reported right after).
    match ovs.apply(&bad, &ApplyOptions::default()).await {
        Err(
            e @ ApplyError::Step {
                rolled_back: Ok(()),
                ..
            },
        ) => {
            eprintln!("failed at the step: {e}");
            assert!(e.to_string().contains("No usable peer"), "{e}");
            assert_same(&before, &ovs.observe(), "after the failed step");
        }
        Ok(_) => {
            ovs.client
                .wait_until("px's error", Duration::from_secs(15), |_| true)
                .await
                .expect("cache");
            let mut fails = Vec::new();
            for _ in 0..30 {
                fails = ovs.client.interface_failures(["px"]);
                if !fails.is_empty() {
                    break;
                }
                let _ = ovs
                    .client
                    .wait_until("an update", Duration::from_millis(500), |_| false)
                    .await;
            }
            assert!(
                fails.iter().any(|f| f
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("No usable peer"))),
                "{fails:?}"
            );
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn vswitchd_restarted_during_apply() {
    let mut sb = Sandbox::start(true).expect("sandbox");
    let ovs = Arc::new(connect(&sb).await);
    sb.kill_vswitchd();
    let o2 = ovs.clone();
    let apply = tokio::spawn(async move { o2.apply(&example(), &ApplyOptions::default()).await });
    // Wait until the first step is committed and waiting for ovs-vswitchd.
    ovs.client
        .wait_until("a step waiting for cur_cfg", Duration::from_secs(30), |c| {
            c.rows("Open_vSwitch")
                .any(|(_, r)| r.int("next_cfg").unwrap_or(0) > r.int("cur_cfg").unwrap_or(0))
        })
        .await
        .expect("step committed");
    sb.start_vswitchd().expect("restart");
    let r = apply
        .await
        .expect("join")
        .expect("apply completes after the restart");
    assert_eq!(r.plan.steps.len(), 2);
    assert!(ovs.plan(&example()).expect("plan").is_empty());
    let fails = ovs.client.interface_failures([
        "cloudbr0",
        "eth0",
        "eth1",
        "mgmt0",
        "cloudbr100",
        "cloudbr1",
        "lbond0",
        "trunk0",
    ]);
    assert!(fails.is_empty(), "{fails:?}");
}

#[tokio::test]
async fn lacp_between_hostd_bonds_reported_in_status() {
    let sb = Sandbox::start(true).expect("sandbox");
    let ovs = connect(&sb).await;
    // Two bridges (a host and a "switch"), each with an LACP bond over a pair
    // of patch ports joined to the other's.
    let s = state(
        "interfaces:
  - name: host0
    type: ovs-bridge
    bridge: { port: [{ name: hbond, link-aggregation: { mode: balance-tcp, lacp: active, lacp-time: fast, port: [{ name: h1 }, { name: h2 }] } }] }
  - name: sw0
    type: ovs-bridge
    bridge: { port: [{ name: sbond, link-aggregation: { mode: balance-slb, lacp: passive, port: [{ name: s1 }, { name: s2 }] } }] }
  - { name: h1, type: ovs-interface, patch: { peer: s1 } }
  - { name: h2, type: ovs-interface, patch: { peer: s2 } }
  - { name: s1, type: ovs-interface, patch: { peer: h1 } }
  - { name: s2, type: ovs-interface, patch: { peer: h2 } }
",
    );
    ovs.apply(&s, &ApplyOptions::default())
        .await
        .expect("apply");
    ovs.client
        .wait_until(
            "lacp_current on all members",
            Duration::from_secs(60),
            |c| {
                ["h1", "h2", "s1", "s2"].iter().all(|n| {
                    c.by_name("Interface", n)
                        .and_then(|(_, r)| r.bool("lacp_current"))
                        == Some(true)
                })
            },
        )
        .await
        .expect("LACP negotiated");
    // Members are enabled a moment after LACP settles: wait (bounded) for a
    // healthy status on both bonds.
    let start = std::time::Instant::now();
    let bonds = loop {
        let bonds = bond_status(&sb.vswitchd_ctl(), Some(&ovs.client))
            .await
            .expect("status");
        if bonds.len() == 2 && bonds.iter().all(|b| b.problems().is_empty()) {
            break bonds;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "bonds not healthy: {bonds:#?}"
        );
        let _ = ovs
            .client
            .wait_until("an update", Duration::from_millis(200), |_| false)
            .await;
    };
    eprintln!("healthy after {:?}", start.elapsed());
    for name in ["hbond", "sbond"] {
        let b = bonds.iter().find(|b| b.name == name).expect(name);
        assert_eq!(b.lacp_status.as_deref(), Some("negotiated"), "{b:?}");
        assert!(b.problems().is_empty(), "{:?}", b.problems());
        let mut f = Vec::new();
        hostd_core::status::diagnose::ovs_bond_findings(b, &mut f);
        assert!(f.is_empty(), "{f:?}");
        for m in &b.members {
            assert_eq!(m.lacp_current, Some(true), "{m:?}");
            assert!(
                m.lacp
                    .as_ref()
                    .is_some_and(|l| l.state.contains(&"current".to_owned())),
                "{m:?}"
            );
            assert!(m.stats.as_ref().is_some_and(|s| s.rx_pdus > 0), "{m:?}");
        }
    }
    let h = bonds.iter().find(|b| b.name == "hbond").expect("hbond");
    let s = bonds.iter().find(|b| b.name == "sbond").expect("sbond");
    // Each side's partner is the other side's system.
    assert_eq!(
        h.members[0]
            .lacp
            .as_ref()
            .and_then(|l| l.partner_sys_id.clone()),
        s.lacp.as_ref().and_then(|l| l.sys_id.clone())
    );

    // The daemon's status source reports the same bonds: announced as
    // `LacpChanged` with `"kind": "ovs"` on the first read, in `Status()`,
    // and not again while only their LACP counters move.
    use hostd::daemon::status::{
        HostStatusSource, OvsStatus, Refresh, StatusChange, StatusConfig, StatusSource,
    };
    let source = |ovs: Option<OvsStatus>| {
        HostStatusSource::new(&StatusConfig {
            lldp: false,
            announce: false,
            ovs,
            ..StatusConfig::default()
        })
    };
    let src = Arc::new(source(Some(OvsStatus {
        rundir: sb.dir().to_owned(),
        ctl: Some(sb.vswitchd_ctl()),
    })));
    let refresh = |src: Arc<HostStatusSource>| async move {
        tokio::task::spawn_blocking(move || {
            src.refresh(&Refresh {
                links: true,
                ..Refresh::default()
            })
        })
        .await
        .expect("refresh")
    };
    let first = refresh(src.clone()).await;
    let mut announced: Vec<String> = first
        .iter()
        .filter_map(|c| match c {
            StatusChange::Lacp(v) if v["kind"] == "ovs" => {
                assert_eq!(v["status"]["lacp_status"], "negotiated", "{v}");
                v["bond"].as_str().map(str::to_owned)
            }
            _ => None,
        })
        .collect();
    announced.sort();
    assert_eq!(announced, ["hbond", "sbond"], "{first:?}");
    let snap = src.snapshot();
    let names: Vec<&str> = snap["status"]["ovs-bonds"]
        .as_array()
        .expect("ovs-bonds in Status()")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, ["hbond", "sbond"], "{snap}");
    // The first PDUs still carry settling bits (a partner's "expired"),
    // which are announced. Settled: no announcement for 4 s (sbond sends
    // hbond a PDU a second, hbond asked for the fast rate), while the
    // counters move (bounded).
    let ovs_changes = |c: &[StatusChange]| {
        c.iter()
            .filter(|c| matches!(c, StatusChange::Lacp(v) if v["kind"] == "ovs"))
            .count()
    };
    let rx = |snap: &serde_json::Value| {
        snap["status"]["ovs-bonds"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == "hbond"))
            .and_then(|b| b["members"][0]["stats"]["rx_pdus"].as_u64())
            .expect("hbond rx_pdus")
    };
    let settle = std::time::Instant::now();
    let mut quiet_since = (std::time::Instant::now(), rx(&src.snapshot()));
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let c = refresh(src.clone()).await;
        if ovs_changes(&c) > 0 {
            quiet_since = (std::time::Instant::now(), rx(&src.snapshot()));
        } else if quiet_since.0.elapsed() >= Duration::from_secs(4) {
            break;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(40),
            "OVS bond status never settled: {}",
            src.snapshot()["status"]["ovs-bonds"]
        );
    }
    assert!(
        rx(&src.snapshot()) > quiet_since.1,
        "the LACP counters did not move while nothing was announced: {}",
        src.snapshot()["status"]["ovs-bonds"]
    );
    // A control socket that does not answer is a note, not an error; no
    // ovs-vswitchd in the run directory (no pid file) is no OVS bonds.
    let dead = Arc::new(source(Some(OvsStatus {
        rundir: sb.dir().to_owned(),
        ctl: Some(sb.dir().join("nobody.ctl")),
    })));
    refresh(dead.clone()).await;
    let notes = dead.snapshot()["status"]["notes"].to_string();
    assert!(notes.contains("Open vSwitch bonds not read"), "{notes}");
    let empty_dir = tempfile_dir();
    let none = Arc::new(source(Some(OvsStatus {
        rundir: empty_dir.clone(),
        ctl: None,
    })));
    refresh(none.clone()).await;
    let snap = none.snapshot();
    assert!(snap["status"]["ovs-bonds"].is_null(), "{snap}");
    assert!(
        !snap["status"]["notes"].to_string().contains("Open vSwitch"),
        "{snap}"
    );
    let _ = std::fs::remove_dir_all(empty_dir);
}

/// An empty directory of its own.
fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hostd-ovs-status-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The daemon's OVSDB event source: one event on connection, one per
/// configuration change, none for a column hostd does not manage, and a
/// socket that does not exist yet is waited for, not an error.
#[tokio::test]
async fn daemon_ovs_watch_sends_configuration_changes_only() {
    use hostd::daemon::{events::Event, ovs_watch};
    let sb = Sandbox::start(false).expect("sandbox");
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    // Started on a socket that does not exist yet: it waits for it.
    let missing = sb.dir().join("later.sock");
    async fn next(
        rx: &mut tokio::sync::mpsc::Receiver<Vec<Event>>,
        secs: u64,
    ) -> Result<Option<Vec<Event>>, tokio::time::error::Elapsed> {
        tokio::time::timeout(Duration::from_secs(secs), rx.recv()).await
    }
    let waiting = tokio::spawn(ovs_watch::run(missing.clone(), tx.clone()));
    let watch = tokio::spawn(ovs_watch::run(sb.db_socket(), tx));
    assert_eq!(
        next(&mut rx, 30).await.expect("connection event"),
        Some(vec![Event::Ovs])
    );
    // The initial rows may come as one more update: let them settle.
    while next(&mut rx, 1).await.is_ok() {}
    sb.vsctl(&["--no-wait", "add-br", "w0"]).expect("add-br");
    assert_eq!(
        next(&mut rx, 30).await.expect("event for add-br"),
        Some(vec![Event::Ovs])
    );
    while next(&mut rx, 1).await.is_ok() {}
    // A column hostd does not manage: no event.
    sb.vsctl(&["--no-wait", "set", "Open_vSwitch", ".", "other_config:x=1"])
        .expect("set");
    assert!(
        next(&mut rx, 2).await.is_err(),
        "event for an unmanaged column"
    );
    sb.vsctl(&["--no-wait", "set", "Bridge", "w0", "external_ids:k=v"])
        .expect("set");
    assert!(next(&mut rx, 30).await.is_ok(), "no event for external_ids");
    waiting.abort();
    watch.abort();
}
