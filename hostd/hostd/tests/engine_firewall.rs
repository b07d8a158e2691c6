//! The engine's firewall step when `nft` is missing or failing, in a fresh
//! network namespace of the test thread (root): teardown without an nft
//! binary has no table to remove; a failing nft stops plan and teardown
//! before anything is touched.

use hostd::engine::{self, ApplyOptions, Config, Error};
use hostd::firewall::Nft;
use hostd_core::NetworkState;

/// Runs `f` on a thread inside a new, empty network namespace.
fn in_fresh_netns<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET)");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn config(tag: &str, nft: &str) -> Config {
    let dir = std::env::temp_dir().join(format!("hostd-engine-fw-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    Config {
        state_file: dir.join("owned.json"),
        resolv_conf: dir.join("resolv.conf"),
        nft: Nft::with_program(nft),
        ..Config::default()
    }
}

#[test]
fn teardown_without_nft_binary_has_nothing_to_remove() {
    let cfg = config("missing", "/nonexistent/nft");
    let r = in_fresh_netns(|| engine::teardown(&cfg, ApplyOptions::default())).expect("teardown");
    assert!(r.plan.is_empty(), "{}", r.plan);
    assert!(r.plan.firewall.is_none());
}

#[test]
fn failing_nft_stops_before_anything_is_touched() {
    let cfg = config("false", "/bin/false");
    let e =
        in_fresh_netns(|| engine::teardown(&cfg, ApplyOptions::default())).expect_err("nft fails");
    assert!(matches!(e, Error::Firewall(_)), "{e}");
    let d = NetworkState::parse(
        "firewall:\n  management: { controllers: [192.0.2.1], channel_port: 7443 }\n",
    )
    .expect("state");
    let e = in_fresh_netns(|| engine::plan_only(&cfg, &d)).expect_err("nft fails");
    assert!(
        e.to_string()
            .starts_with("reading the firewall: nft list ruleset failed"),
        "{e}"
    );
    // No firewall section: nft is never run.
    let r = in_fresh_netns(|| engine::plan_only(&cfg, &NetworkState::default())).expect("plan");
    assert!(r.is_empty() && r.firewall.is_none());
}
