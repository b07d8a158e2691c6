//! The channel end to end in one process, over real TLS on loopback:
//! controllers (each on its own runtime, so "killing" one closes every
//! socket it has) and agents on simulated hosts.
//!
//! Run: `cargo test -p controller --test channel` (no root, no VM).

#![allow(clippy::unwrap_used, reason = "test helpers panic with context")]

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use controller::server::{self, Config, Controller};
use fleet::{
    agent::{Agent, AgentConfig},
    failover::FailoverPolicy,
    pki,
    proto::{fleet_client::FleetClient, AgentMessage, Hello},
    sim::{SimConfig, SimHost},
    tls,
};
use serde_json::json;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fleet-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A controller on its own runtime.
struct Running {
    rt: Option<tokio::runtime::Runtime>,
    ctl: Controller,
    addr: SocketAddr,
}

impl Running {
    fn start(
        dir: &std::path::Path,
        name: &str,
        addr: SocketAddr,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut cfg = Config::new(dir.to_owned(), addr);
        cfg.name = name.into();
        cfg.flush_every = Duration::from_millis(20);
        tweak(&mut cfg);
        let ctl = Controller::open(cfg).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let c = ctl.clone();
        rt.spawn(async move { c.serve(std::future::pending()).await.unwrap() });
        // Listening?
        let t0 = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "controller {name} does not listen"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            rt: Some(rt),
            ctl,
            addr,
        }
    }
    fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy that can cut every connection (a network path lost).
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    gen: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let gen = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (c, g) = (cut.clone(), gen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = l.accept().await else {
                    continue;
                };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: connection reset
                }
                let mut rx = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut, gen }
    }
    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.gen.send_modify(|n| *n += 1);
        }
    }
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

fn agent_cfg(
    id: &str,
    controllers: Vec<String>,
    bundle: &str,
    token: &str,
    dir: Option<PathBuf>,
) -> AgentConfig {
    let mut c = AgentConfig::new(id, controllers);
    c.bootstrap_bundle = Some(bundle.to_owned());
    c.bootstrap_token = Some(token.to_owned());
    c.state_dir = dir;
    c.failover = FailoverPolicy {
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(800),
        jitter: 0.5,
        failback_after: Duration::from_secs(2),
        failback_check: Duration::from_millis(500),
    };
    c.connect_timeout = Duration::from_secs(2);
    c
}

fn spawn_agent(a: Agent) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        a.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    tx
}

fn show(ctl: &Controller, id: &str) -> serde_json::Value {
    ctl.show(id).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_stream_confirm_revert_refuse_failover_rotate() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
    let dir = tmpdir("main");
    let bundle = server::init(&dir, Duration::from_secs(86400)).unwrap();
    let a_addr = free_port();
    let b_addr = free_port();
    let mut a = Running::start(&dir, "ctl-a", a_addr, |_| {});

    // --- enrolment: a bad token is refused, a good one works once.
    let token = a.ctl.token("srv1", Duration::from_secs(600)).unwrap();
    let bad = Agent::new(
        agent_cfg(
            "srv1",
            vec![a.addr.to_string()],
            &bundle,
            "not-the-token",
            None,
        ),
        Arc::new(SimHost::default()),
    )
    .unwrap();
    let err = bad.run(std::future::pending()).await.unwrap_err();
    assert!(
        err.to_string().contains("no valid bootstrap token"),
        "{err}"
    );

    // The real agent: keys in its own directory (0600), two controllers.
    let agent_dir = dir.join("agent-srv1");
    let proxy = Arc::new(Proxy::start(a.addr).await);
    let p2 = proxy.clone();
    let p3 = proxy.clone();
    let host = SimHost::new(SimConfig {
        report_every: None,
        report_bytes: 0,
        inventory: Some(
            json!({ "nics": [{ "name": "eth0", "mac": "02:00:00:00:01:00",
            "lldp": { "system-name": "sw1", "port": "Ethernet1" } }] }),
        ),
        // A document naming "cut-management" cuts the agent off.
        on_apply: Some(Arc::new(move |doc: &str| {
            if doc.contains("cut-management") {
                p2.set_cut(true);
            }
        })),
        on_revert: Some(Arc::new(move |_doc: &str| p3.set_cut(false))),
    });
    let cfg = agent_cfg(
        "srv1",
        vec![proxy.addr.to_string(), b_addr.to_string()],
        &bundle,
        &token,
        Some(agent_dir.clone()),
    );
    let agent = Agent::new(cfg.clone(), Arc::new(host.clone())).unwrap();
    let stats = agent.stats();
    let reporter = agent.reporter();
    let stop = spawn_agent(agent);
    wait_for("srv1 connected", Duration::from_secs(20), || {
        show(&a.ctl, "srv1")["summary"]["connected"] == json!(true)
    })
    .await;
    let mode = std::fs::metadata(agent_dir.join("agent-key.pem")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    // The token is used: bound to srv1's key, another key is refused.
    let other = Agent::new(
        agent_cfg("srv1", vec![a.addr.to_string()], &bundle, &token, None),
        Arc::new(SimHost::default()),
    )
    .unwrap();
    let err = other.run(std::future::pending()).await.unwrap_err();
    assert!(
        err.to_string().contains("no valid bootstrap token"),
        "{err}"
    );

    // --- inventory arrives and is kept.
    wait_for("inventory", Duration::from_secs(10), || {
        show(&a.ctl, "srv1")["inventory"]["nics"][0]["name"] == json!("eth0")
    })
    .await;

    // --- a desired state, commit-confirmed, confirmed over a new connection.
    let g = a
        .ctl
        .set_desired(&["srv1".into()], "interfaces: []\n# v1\n", 10, "test")
        .unwrap()[0]
        .1;
    wait_for("confirmed v1", Duration::from_secs(20), || {
        host.confirmed().contains("v1")
    })
    .await;
    wait_for(
        "controller sees v1 confirmed",
        Duration::from_secs(10),
        || show(&a.ctl, "srv1")["confirmed_generation"] == json!(g),
    )
    .await;

    // --- a state that cuts the agent off: not confirmed, reverts by itself.
    let t0 = Instant::now();
    let g2 = a
        .ctl
        .set_desired(
            &["srv1".into()],
            "interfaces: []\n# cut-management\n",
            3,
            "test",
        )
        .unwrap()[0]
        .1;
    wait_for("reverted", Duration::from_secs(20), || host.reverts() == 1).await;
    let revert_s = t0.elapsed().as_secs_f64();
    assert!(host.confirmed().contains("v1"), "back to v1");
    wait_for(
        "controller sees the revert",
        Duration::from_secs(20),
        || {
            let v = show(&a.ctl, "srv1");
            v["reverted_generation"] == json!(g2) && v["summary"]["state"] == json!("reverted")
        },
    )
    .await;
    // Not pushed again: no second revert.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(host.reverts(), 1);
    eprintln!("cut-off desired state reverted after {revert_s:.1} s (window 3 s)");

    // --- wrong, expired, revoked certificates are refused.
    let other = pki::Ca::generate("other", Duration::from_secs(3600)).unwrap();
    let cas = controller::ca::Cas::load(&controller::store::Store::open(&dir).unwrap()).unwrap();
    let refused = |cert: String, key: String| {
        let bundle = bundle.clone();
        async move {
            let t = tls::AgentTls::new(&bundle).unwrap();
            t.cert.set(tls::certified_key(&cert, &key).unwrap());
            let r = async {
                let ch = tls::connect(
                    &t,
                    &a_addr.to_string(),
                    fleet::DEFAULT_SERVER_NAME,
                    Duration::from_secs(3),
                )
                .await
                .map_err(|e| e.to_string())?;
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                tx.send(AgentMessage {
                    body: Some(fleet::proto::agent_message::Body::Hello(Hello {
                        agent_id: "srv9".into(),
                        ..Hello::default()
                    })),
                })
                .await
                .unwrap();
                let mut s = FleetClient::new(ch)
                    .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner();
                s.message().await.map_err(|e| e.to_string())
            }
            .await;
            r.err().unwrap_or_else(|| "ACCEPTED".into())
        }
    };
    let k = pki::new_key().unwrap();
    let csr = pki::csr_pem(&k, "srv9").unwrap();
    let wrong = other
        .sign_agent(&csr, "srv9", Duration::from_secs(600), 0)
        .unwrap();
    let e = refused(wrong, k.serialize_pem()).await;
    assert_ne!(e, "ACCEPTED", "a certificate of another CA");
    let expired = cas
        .signer
        .sign_agent(&csr, "srv9", Duration::from_secs(600), -7200)
        .unwrap();
    let e2 = refused(expired, k.serialize_pem()).await;
    assert_ne!(e2, "ACCEPTED", "an expired certificate");
    // A valid certificate of an agent that never enrolled: refused by the service.
    let valid = cas
        .signer
        .sign_agent(&csr, "srv9", Duration::from_secs(600), 0)
        .unwrap();
    let e3 = refused(valid, k.serialize_pem()).await;
    assert!(e3.contains("not enrolled"), "{e3}");
    eprintln!("refused: other CA: {e}; expired: {e2}; not enrolled: {e3}");

    // --- rotation under load: renewal and a CA rotation while reports
    // stream; the stream stays and no report is lost.
    let connects_before = stats.connects.load(Ordering::Relaxed);
    let pump = {
        let r = reporter.clone();
        tokio::spawn(async move {
            for i in 0..3000u32 {
                r.push(
                    fleet::proto::ReportKind::Synthetic,
                    format!("{{\"i\":{i}}}"),
                );
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(a.ctl.renew_now(&[]), 1);
    wait_for("renewed", Duration::from_secs(10), || {
        stats.renewals.load(Ordering::Relaxed) == 1
    })
    .await;
    let rot = a.ctl.ca_rotate(Duration::from_secs(86400)).unwrap();
    assert_eq!(rot["bundle_sent"], json!(1));
    wait_for("renewed by the new CA", Duration::from_secs(10), || {
        stats.renewals.load(Ordering::Relaxed) == 2
    })
    .await;
    pump.await.unwrap();
    wait_for("all reports acknowledged", Duration::from_secs(20), || {
        let (last, acked, _, _) = reporter.counts();
        last == acked
    })
    .await;
    let v = show(&a.ctl, "srv1");
    assert_eq!(v["reports"]["lost"], json!(0), "{}", v["reports"]);
    assert_eq!(v["reports"]["dropped_by_agent"], json!(0));
    assert_eq!(reporter.counts().2, 0, "nothing dropped from the queue");
    assert_eq!(
        stats.connects.load(Ordering::Relaxed),
        connects_before,
        "the stream stayed up"
    );
    assert_eq!(
        stats.bundles.load(Ordering::Relaxed),
        2,
        "at enrolment and at the rotation"
    );
    // The new certificate is the new CA's and works on a new connection:
    // retire the old CA, reconnect through a failover below.
    a.ctl.ca_retire().unwrap();

    // --- failover: A dies; the agent moves to B (same store) within seconds.
    let mut b = Running::start(&dir, "ctl-b", b_addr, |_| {});
    a.kill();
    let t_fail = wait_for("failover to B", Duration::from_secs(20), || {
        stats.controller.load(Ordering::Relaxed) == 2
    })
    .await;
    eprintln!(
        "failover to the second controller: {:.2} s",
        t_fail.as_secs_f64()
    );
    assert!(t_fail < Duration::from_secs(10));
    wait_for("B sees srv1", Duration::from_secs(10), || {
        b.ctl
            .show("srv1")
            .map(|v| v["summary"]["connected"] == json!(true))
            .unwrap_or(false)
    })
    .await;
    // B knows the desired and confirmed generations (shared store).
    assert_eq!(show(&b.ctl, "srv1")["confirmed_generation"], json!(g));

    // --- fail-back: A returns; after 2 s of answering, the agent goes back.
    let a2 = Running::start(&dir, "ctl-a", a_addr, |_| {});
    let t_back = wait_for("fail-back to A", Duration::from_secs(20), || {
        stats.controller.load(Ordering::Relaxed) == 1
    })
    .await;
    eprintln!("fail-back after {:.2} s", t_back.as_secs_f64());
    assert!(
        t_back >= Duration::from_secs(2),
        "not before the fail-back delay"
    );
    assert!(stats.failbacks.load(Ordering::Relaxed) >= 1);

    // --- revoked: the agent's certificates stop working.
    a2.ctl.revoke("srv1").unwrap();
    b.ctl.revoke("srv1").unwrap();
    b.kill();
    let failures = stats.failures.load(Ordering::Relaxed);
    // Force a reconnect: kill A too, start it again.
    drop(a2);
    let a3 = Running::start(&dir, "ctl-a", a_addr, |_| {});
    wait_for("reconnects refused", Duration::from_secs(20), || {
        stats.failures.load(Ordering::Relaxed) >= failures + 3
    })
    .await;
    assert_eq!(
        a3.ctl.show("srv1").unwrap()["summary"]["connected"],
        json!(false)
    );
    let _ = stop.send(());
    std::fs::remove_dir_all(&dir).ok();
}
