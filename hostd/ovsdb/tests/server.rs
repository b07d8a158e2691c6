//! hostd-ovsdb against a real private ovsdb-server (and ovs-vswitchd with
//! the dummy datapath), started per test and killed on drop. Needs the
//! Debian package openvswitch-switch and root (ovs-vswitchd).

use std::time::{Duration, Instant};

use hostd_ovsdb::{
    sandbox::Sandbox, wire, Atom, Client, Condition, Error, Mutation, Op, Unixctl, Until, DB,
    HOSTD_TABLES,
};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

async fn client(sb: &Sandbox) -> Client {
    let c = Client::connect_unix(sb.db_socket()).await.expect("connect");
    c.monitor_cache(DB, HOSTD_TABLES).await.expect("monitor");
    c
}

/// One transaction creating bridge `br` (dummy datapath) with its local
/// internal port and `extra` (port name, interface type, options) ports.
/// (port name, interface type, one option).
type PortSpec<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

fn bridge_ops(br: &str, extra: &[PortSpec]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut ports = vec![];
    let mut all = vec![(br, "internal", None)];
    all.extend_from_slice(extra);
    for (i, (name, ty, opt)) in all.iter().enumerate() {
        let mut irow = obj(json!({"name": name, "type": ty}));
        if let Some((k, v)) = opt {
            irow.insert("options".into(), wire::str_map([(*k, *v)]));
        }
        ops.push(Op::Insert {
            table: "Interface".into(),
            row: irow,
            uuid_name: Some(format!("i{i}")),
        });
        ops.push(Op::Insert {
            table: "Port".into(),
            row: obj(json!({"name": name, "interfaces": wire::named(&format!("i{i}"))})),
            uuid_name: Some(format!("p{i}")),
        });
        ports.push(Atom::Named(format!("p{i}")));
    }
    ops.push(Op::Insert {
        table: "Bridge".into(),
        row: obj(json!({"name": br, "datapath_type": "dummy", "ports": wire::set(ports)})),
        uuid_name: Some("br".into()),
    });
    ops.push(Op::Mutate {
        table: "Open_vSwitch".into(),
        conditions: vec![],
        mutations: vec![Mutation::insert(
            "bridges",
            wire::set([Atom::Named("br".into())]),
        )],
    });
    ops
}

#[tokio::test]
async fn requests_pipeline_and_match_replies() {
    let sb = Sandbox::start(false).expect("sandbox");
    let c = client(&sb).await;
    assert_eq!(
        c.list_dbs().await.expect("list_dbs"),
        vec!["Open_vSwitch", "_Server"]
    );
    // 200 requests in flight at once: every reply reaches its own caller.
    let futs = (0..200).map(|i| {
        let c = &c;
        async move { (i, c.echo(json!([format!("ping {i}")])).await) }
    });
    for (i, r) in join_all(futs).await {
        assert_eq!(r.expect("echo"), json!([format!("ping {i}")]));
    }
}

/// Polls all futures concurrently in place (no `'static` bound, no extra crate).
async fn join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futs: Vec<_> = futs.map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, d) in futs.iter_mut().zip(done.iter_mut()) {
            if d.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *d = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().map(|d| d.expect("done")).collect()
}

#[tokio::test]
async fn transactions_cache_and_errors() {
    let sb = Sandbox::start(false).expect("sandbox");
    let c = client(&sb).await;
    let mut notes = c.subscribe();
    let r = c
        .transact(DB, &bridge_ops("br0", &[("p1", "internal", None)]))
        .await
        .expect("create br0");
    assert!(r.inserted(4).is_some(), "bridge uuid in the reply: {r:?}");
    // The monitor's update for our own transaction is in the cache by now or
    // very soon; it arrives interleaved with the reply on the same socket.
    c.wait_until("br0 in the cache", Duration::from_secs(10), |k| {
        k.by_name("Bridge", "br0").is_some() && k.len("Port") == 2 && k.len("Interface") == 2
    })
    .await
    .expect("cache");
    let n = tokio::time::timeout(Duration::from_secs(10), notes.recv())
        .await
        .expect("notification")
        .expect("open");
    assert_eq!(n["method"], "update");
    // Seen by another client as well (ovs-vsctl reads the same database).
    assert!(sb.vsctl(&["list-br"]).expect("vsctl").contains("br0"));

    // Update, mutate, select, comment.
    let ops = [
        Op::Comment("hostd test".into()),
        Op::Update {
            table: "Port".into(),
            conditions: vec![Condition::name("p1")],
            row: obj(json!({"tag": 100})),
        },
        Op::Mutate {
            table: "Port".into(),
            conditions: vec![Condition::name("p1")],
            mutations: vec![Mutation::insert(
                "external_ids",
                wire::str_map([("hostd-owner", "hostd")]),
            )],
        },
        Op::Select {
            table: "Port".into(),
            conditions: vec![Condition::name("p1")],
            columns: Some(vec!["tag".into(), "external_ids".into()]),
        },
    ];
    let r = c.transact(DB, &ops).await.expect("update");
    assert_eq!(r.count(1), Some(1));
    let rows = r.rows(3);
    assert_eq!(rows[0].int("tag"), Some(100));
    assert_eq!(rows[0].str_map("external_ids")["hostd-owner"], "hostd");

    // Op-level error inside a successful reply: an unknown column.
    let bad = [
        Op::Comment("x".into()),
        Op::Update {
            table: "Port".into(),
            conditions: vec![Condition::name("p1")],
            row: obj(json!({"no_such_column": 1})),
        },
    ];
    match c.transact(DB, &bad).await {
        Err(Error::Op {
            index: 1,
            op,
            error,
            ..
        }) => {
            assert_eq!(op, "update Port");
            assert!(!error.is_empty());
        }
        other => panic!("expected an op error at index 1, got {other:?}"),
    }
    // A failed `wait` (optimistic concurrency): retryable.
    let wait = [Op::Wait {
        table: "Port".into(),
        conditions: vec![Condition::name("p1")],
        columns: vec!["tag".into()],
        until: Until::Equal,
        rows: vec![obj(json!({"tag": 7}))],
        timeout_ms: Some(0),
    }];
    let e = c.transact(DB, &wait).await.expect_err("wait must fail");
    assert!(e.is_retryable(), "{e}");
    // A commit-time error (second bridge named br0 violates Bridge's name index).
    let e = c
        .transact(DB, &bridge_ops("br0", &[]))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(&e, Error::Commit { error, .. } if error.contains("constraint")),
        "{e:?}"
    );
    // Nothing of the failed transactions was applied.
    let r = c
        .transact(
            DB,
            &[Op::Select {
                table: "Bridge".into(),
                conditions: vec![],
                columns: Some(vec!["name".into()]),
            }],
        )
        .await
        .expect("select");
    assert_eq!(r.rows(0).len(), 1);
    // A JSON-RPC level error: unknown database.
    assert!(matches!(
        c.transact("nope", &[]).await,
        Err(Error::Rpc { .. })
    ));
    // Delete: Port rows are garbage-collected when no bridge refers to them.
    let del = [Op::Mutate {
        table: "Open_vSwitch".into(),
        conditions: vec![],
        mutations: vec![Mutation::delete(
            "bridges",
            hostd_ovsdb::client::uuid_set([
                &c.with_cache(|k| k.by_name("Bridge", "br0").expect("br0").0.clone())
            ]),
        )],
    }];
    c.transact(DB, &del).await.expect("delete");
    c.wait_until("empty", Duration::from_secs(10), |k| {
        k.is_empty("Bridge") && k.is_empty("Port") && k.is_empty("Interface")
    })
    .await
    .expect("gc");
    // Explicit delete of a root-table row.
    let ins = [Op::Insert {
        table: "Flow_Sample_Collector_Set".into(),
        row: obj(json!({"id": 1, "bridge": ["uuid", "00000000-0000-0000-0000-000000000000"]})),
        uuid_name: None,
    }];
    assert!(
        c.transact(DB, &ins).await.is_err(),
        "dangling reference refused"
    );
    let del = [Op::Delete {
        table: "Bridge".into(),
        conditions: vec![],
    }];
    assert_eq!(
        c.transact(DB, &del).await.expect("delete").count(0),
        Some(0)
    );
}

#[tokio::test]
async fn next_cfg_waits_for_vswitchd() {
    let mut sb = Sandbox::start(true).expect("sandbox");
    let c = client(&sb).await;
    let t0 = Instant::now();
    let (_, next) = c
        .transact_applied(
            &bridge_ops(
                "br0",
                &[("vif1", "internal", None), ("bogus", "no-such-type", None)],
            ),
            Duration::from_secs(30),
        )
        .await
        .expect("applied");
    eprintln!(
        "bridge applied by ovs-vswitchd in {:?} (next_cfg {next})",
        t0.elapsed()
    );
    let cur = c.root().expect("root").1.int("cur_cfg").expect("cur_cfg");
    assert!(cur >= next);
    // ofport is assigned in the same pass: the good ports have one, the bad
    // one is reported.
    let fails = c.interface_failures(["br0", "vif1", "bogus"]);
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert_eq!(fails[0].name, "bogus");
    assert!(
        fails[0].error.is_some() || fails[0].ofport == Some(-1),
        "{fails:?}"
    );
    c.with_cache(|k| {
        let (_, vif) = k.by_name("Interface", "vif1").expect("vif1");
        assert!(vif.int("ofport").unwrap_or(-1) > 0, "{vif:?}");
    });

    // Without ovs-vswitchd, cur_cfg never moves: a bounded, retryable timeout.
    sb.kill_vswitchd();
    let e = c
        .transact_applied(&[Op::Comment("nothing".into())], Duration::from_millis(500))
        .await
        .expect_err("no vswitchd");
    assert!(
        matches!(e, Error::Timeout { .. }) && e.is_retryable(),
        "{e}"
    );
    // ovs-vswitchd started again catches up with next_cfg.
    sb.start_vswitchd().expect("restart");
    let next = c.root().expect("root").1.int("next_cfg").expect("next_cfg");
    c.wait_cur_cfg(next, Duration::from_secs(30))
        .await
        .expect("caught up");
}

#[tokio::test]
async fn lacp_between_two_dummy_bonds_over_patch_ports() {
    let sb = Sandbox::start(true).expect("sandbox");
    let c = client(&sb).await;
    // Two bridges, each with a bond of two patch interfaces; a1<->b1, a2<->b2.
    for (br, bond, me, peer) in [("bra", "bonda", "a", "b"), ("brb", "bondb", "b", "a")] {
        let mut ops = bridge_ops(br, &[]);
        for i in 1..=2 {
            ops.insert(
                0,
                Op::Insert {
                    table: "Interface".into(),
                    row: obj(json!({"name": format!("{me}{i}"), "type": "patch",
                    "options": wire::str_map([("peer", format!("{peer}{i}").as_str())])})),
                    uuid_name: Some(format!("m{i}")),
                },
            );
        }
        ops.insert(
            2,
            Op::Insert {
                table: "Port".into(),
                row: obj(
                    json!({"name": bond, "bond_mode": "balance-tcp", "lacp": "active",
                "other_config": wire::str_map([("lacp-time", "fast")]),
                "interfaces": wire::set([Atom::Named("m1".into()), Atom::Named("m2".into())])}),
                ),
                uuid_name: Some("bond".into()),
            },
        );
        // Add the bond to the bridge's ports.
        let Some(Op::Insert { row, .. }) = ops.iter_mut().rev().nth(1) else {
            panic!("bridge op")
        };
        let mut ports = row["ports"].clone();
        ports[1]
            .as_array_mut()
            .expect("set")
            .push(json!(["named-uuid", "bond"]));
        row.insert("ports".into(), ports);
        c.transact_applied(&ops, Duration::from_secs(30))
            .await
            .expect(br);
    }
    let mut ctl = Unixctl::connect(sb.vswitchd_ctl()).await.expect("unixctl");
    // Wait (bounded) for both sides to negotiate.
    let start = Instant::now();
    let lacp = loop {
        let out = ctl.call("lacp/show", &["bonda"]).await.expect("lacp/show");
        if out.contains("status: active negotiated") && out.matches("current").count() >= 2 {
            break out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no LACP negotiation:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("lacp/show after {:?}:\n{lacp}", start.elapsed());
    assert!(lacp.contains("a1") && lacp.contains("a2"), "{lacp}");
    let stats = ctl
        .call("lacp/show-stats", &["bonda"])
        .await
        .expect("stats");
    assert!(stats.contains("RX PDUs"), "{stats}");
    let bond = ctl.call("bond/show", &["bonda"]).await.expect("bond/show");
    assert!(
        bond.contains("bond_mode: balance-tcp") && bond.contains("lacp_status: negotiated"),
        "{bond}"
    );
    // Interface.lacp_current follows, through the monitor.
    c.wait_until(
        "lacp_current on all members",
        Duration::from_secs(30),
        |k| {
            ["a1", "a2", "b1", "b2"].iter().all(|n| {
                k.by_name("Interface", n)
                    .and_then(|(_, r)| r.bool("lacp_current"))
                    == Some(true)
            })
        },
    )
    .await
    .expect("lacp_current");
    // A failing command is an error carrying OVS's text.
    let e = ctl
        .call("bond/show", &["nosuchbond"])
        .await
        .expect_err("unknown bond");
    assert!(e.to_string().contains("no such bond"), "{e}");
}

/// Framing and dispatch against a scripted server over an in-memory pipe:
/// a reply split across writes, a notification and a server `echo`
/// interleaved before it, two replies in one write.
#[tokio::test]
async fn interleaved_notifications_and_server_echo() {
    let (client_end, mut server) = tokio::io::duplex(64);
    let (r, w) = tokio::io::split(client_end);
    let c = Client::from_halves(r, w, "pipe".into());
    let mut notes = c.subscribe();
    let server_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        // Read the two requests (ids 1 and 2).
        let mut split = hostd_ovsdb::framing::JsonSplitter::default();
        while got.len() < 2 {
            let n = server.read(&mut buf).await.expect("read");
            split.push(&buf[..n]);
            while let Some(v) = split.next_value().expect("json") {
                got.push(v);
            }
        }
        let stream = format!(
            "{}{}{}{}",
            json!({"id": null, "method": "update", "params": ["m", {"T": {}}]}),
            json!({"id": "e1", "method": "echo", "params": ["hello"]}),
            json!({"id": 2, "result": {"second": true}, "error": null}),
            json!({"id": 1, "result": [{"first": "}{"}], "error": null}),
        );
        // Dribble it in 7-byte writes.
        for chunk in stream.as_bytes().chunks(7) {
            server.write_all(chunk).await.expect("write");
        }
        // The client's answer to our echo.
        let reply = loop {
            if let Some(v) = split.next_value().expect("json") {
                break v;
            }
            let n = server.read(&mut buf).await.expect("read");
            split.push(&buf[..n]);
        };
        (reply, server)
    });
    let (a, b) = tokio::join!(c.request("one", json!([])), c.request("two", json!([])));
    assert_eq!(a.expect("one"), json!([{"first": "}{"}]));
    assert_eq!(b.expect("two"), json!({"second": true}));
    let (echo_reply, server) = server_task.await.expect("server");
    assert_eq!(
        echo_reply,
        json!({"id": "e1", "result": ["hello"], "error": null})
    );
    let n = notes.recv().await.expect("notification");
    assert_eq!(n["method"], "update");
    // The server hangs up while a request is pending: it fails as Closed,
    // and so does the next one.
    let pending = c.request("three", json!([]));
    let hang_up = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(server);
    };
    let (r, ()) = tokio::join!(pending, hang_up);
    assert!(matches!(r, Err(Error::Closed(_))), "{r:?}");
    assert!(matches!(c.echo(json!([])).await, Err(Error::Closed(_))));
    assert!(c.closed().is_some());
}
