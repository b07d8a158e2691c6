//! The planner against its kernel model, on generated documents: for every
//! generated document and transition, the model accepts every step of the
//! plan, the result re-plans to nothing (convergence, idempotence), a
//! rollback after a random prefix of a plan brings the model back to where it
//! was, and a teardown leaves nothing of hostd's. No root, no kernel:
//! thousands of cases in seconds. It checks the planner against its own
//! assumptions only; `kernel_hostd`'s differential test checks those
//! assumptions against the real kernel.
//!
//! `PLANNER_MODEL_CASES` (default 2000) and `PLANNER_MODEL_SEED` (default: a
//! new one each run, printed) choose the cases; a failure prints its seed,
//! and failing seeds are kept in `tests/regressions/planner-model-seeds.txt`,
//! which every run replays first.

use std::collections::BTreeMap;

use hostd_core::{
    model::{expand_vlans, Link, LinkKind, Observed},
    plan::{plan, plan_rollback, plan_teardown, Op},
    sim::simulate,
    NetworkState, Ownership,
};
use lab::gen::{self, Generator};
use rand::Rng;

const NICS: &[&str] = &["eth0", "eth1", "eth2", "eth3", "eth4", "eth5"];

/// The host the lab gives the differential test: NICs down, no addresses,
/// loopback, and foreign state (a veth with an address and a route, a
/// bridge) hostd must leave alone.
pub fn lab_host() -> Observed {
    let mut links = vec![link("lo", 1, LinkKind::Loopback)];
    for (i, n) in NICS.iter().enumerate() {
        let mut l = link(n, 2 + i as u32, LinkKind::Veth);
        l.mac = Some(hostd_core::types::MacAddr([2, 0, 0, 0, 0, i as u8]));
        links.push(l);
    }
    let mut keep = link("keep0", 20, LinkKind::Veth);
    keep.up = true;
    keep.addresses = vec!["203.0.113.1/24".parse().expect("addr")];
    links.push(keep);
    let mut kbr = link("keepbr", 21, LinkKind::Bridge);
    kbr.bridge = Some(hostd_core::sim::default_bridge());
    links.push(kbr);
    Observed {
        links,
        routes: vec![serde_norway::from_str(
            "{ destination: 203.0.114.0/24, next-hop-address: 203.0.113.254, next-hop-interface: keep0, metric: 0, table-id: 254, protocol: boot }",
        )
        .expect("route")],
        dns: None,
    }
}

fn link(name: &str, index: u32, kind: LinkKind) -> Link {
    serde_json::from_value(serde_json::json!({"name": name, "index": index, "kind": kind}))
        .expect("link")
}

/// What a plan may change, per link and route, for comparing two model
/// states.
fn essence(o: &Observed) -> (BTreeMap<String, String>, Vec<String>) {
    let links = o
        .links
        .iter()
        .map(|l| {
            (
                l.name.to_string(),
                format!(
                    "{:?} up={} mtu={} ctrl={:?} addrs={:?} vlans={:?} bond={:?} vlan={:?} bridge={:?}",
                    l.kind,
                    l.up,
                    l.mtu,
                    l.controller,
                    l.addresses,
                    expand_vlans(&l.vlans),
                    l.bond.as_ref().map(|b| (b.mode, b.options.clone())),
                    l.vlan,
                    l.bridge
                ),
            )
        })
        .collect();
    let mut routes: Vec<String> = o.routes.iter().map(|r| r.to_string()).collect();
    routes.sort();
    (links, routes)
}

fn converges(
    what: &str,
    d: &NetworkState,
    before: &Observed,
    own: &Ownership,
) -> Result<(Observed, Ownership), String> {
    let p = plan(d, before, own).map_err(|e| format!("{what}: planning: {e}"))?;
    let after = simulate(before, &p.ops)
        .map_err(|e| format!("{what}: the model refuses the plan: {e}\n{p}"))?;
    let own2 = own.after_apply(d, &p, &after);
    let again = plan(d, &after, &own2).map_err(|e| format!("{what}: re-planning: {e}"))?;
    if !again.is_empty() {
        return Err(format!(
            "{what}: does not converge; plan:\n{p}second plan:\n{again}"
        ));
    }
    Ok((after, own2))
}

fn one_case(seed: u64) -> Result<(), String> {
    let mut r = gen::rng(seed);
    let g = Generator::new(NICS);
    let host = lab_host();
    let a = g.document(&mut r);
    let (obs_a, own_a) = converges("apply A", &a, &host, &Ownership::default())?;
    let b = g.next(&mut r, &a);
    let pb = plan(&b, &obs_a, &own_a).map_err(|e| format!("planning B: {e}"))?;
    let (obs_b, own_b) = converges("apply B", &b, &obs_a, &own_a)?;
    // A rollback after a random prefix of B's plan brings back A's state.
    if !pb.ops.is_empty() {
        let k = r.random_range(0..pb.ops.len());
        let sent: Vec<Op> = pb.ops[..k].to_vec();
        let mid = simulate(&obs_a, &sent).map_err(|e| format!("prefix: {e}"))?;
        let rb = plan_rollback(&obs_a, &mid, &sent)
            .map_err(|e| format!("rollback after {k} steps: {e}"))?;
        let back = simulate(&mid, &rb.ops)
            .map_err(|e| format!("rollback after {k} steps: the model refuses it: {e}\n{rb}"))?;
        let (want, got) = (essence(&obs_a), essence(&back));
        if want != got {
            let mut diffs = Vec::new();
            for (n, w) in &want.0 {
                match got.0.get(n) {
                    Some(g) if g == w => {}
                    Some(g) => diffs.push(format!("{n}:\n  want {w}\n  got  {g}")),
                    None => diffs.push(format!("{n}: missing")),
                }
            }
            for n in got.0.keys().filter(|n| !want.0.contains_key(*n)) {
                diffs.push(format!("{n}: left behind"));
            }
            if want.1 != got.1 {
                diffs.push(format!("routes: want {:?} got {:?}", want.1, got.1));
            }
            return Err(format!(
                "rollback after {k} of {} steps is not exact:\n{}\nsent:\n{}\nrollback:\n{rb}",
                pb.ops.len(),
                diffs.join("\n"),
                hostd_core::Plan { ops: sent.clone() }
            ));
        }
        let again = plan_rollback(&obs_a, &back, &sent).map_err(|e| e.to_string())?;
        if !again.is_empty() {
            return Err(format!("rollback does not converge:\n{again}"));
        }
    }
    // Teardown leaves nothing of hostd's.
    let t = plan_teardown(&obs_b, &own_b).map_err(|e| format!("teardown: {e}"))?;
    let gone = simulate(&obs_b, &t.ops).map_err(|e| format!("teardown refused: {e}\n{t}"))?;
    if let Some(l) = gone.links.iter().find(|l| own_b.owns_created(l)) {
        return Err(format!("teardown left {}", l.name));
    }
    let again = plan_teardown(&gone, &own_b).map_err(|e| e.to_string())?;
    if !again.is_empty() {
        return Err(format!("teardown does not converge:\n{again}"));
    }
    // Foreign state untouched.
    for n in ["keep0", "keepbr"] {
        if essence(&gone).0.get(n) != essence(&host).0.get(n) {
            return Err(format!("foreign {n} changed"));
        }
    }
    Ok(())
}

fn regression_seeds() -> Vec<u64> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/regressions/planner-model-seeds.txt"
    );
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('#').next())
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn generated_documents_converge_in_the_model() {
    let cases: u64 = std::env::var("PLANNER_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let base: u64 = std::env::var("PLANNER_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("planner model: base seed {base} (PLANNER_MODEL_SEED={base} repeats this run), {cases} cases");
    let mut failures = Vec::new();
    let seeds = regression_seeds()
        .into_iter()
        .chain((0..cases).map(|i| base.wrapping_add(i)));
    let mut ran = 0;
    for seed in seeds {
        ran += 1;
        if let Err(e) = one_case(seed) {
            failures.push(format!("== seed {seed}: {e}"));
            if failures.len() >= 5 {
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed (add each seed to tests/regressions/planner-model-seeds.txt):\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("planner model: {ran} cases passed");
}
