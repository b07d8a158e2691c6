//! The planner's own cost, without the kernel: one bond + N VLANs + N
//! bridges (the benchmark's document), planned from empty, then planned
//! again against the result (the no-op re-apply's planning part).
//!
//! `cargo run --release -p hostd-core --example plan_bench -- 1000 4000`

use std::time::Instant;

use hostd_core::{model::Observed, ownership::Ownership, plan::plan, sim::simulate, NetworkState};

fn document(n: usize) -> NetworkState {
    NetworkState::parse(&document_text(n)).expect("document")
}

fn document_text(n: usize) -> String {
    let mut y = String::from(
        "interfaces:
  - { name: eth0, type: ethernet }
  - { name: eth1, type: ethernet }
  - { name: bond0, type: bond, mtu: 9000, link-aggregation: { mode: 802.3ad, port: [eth0, eth1], options: { miimon: 100 } } }
",
    );
    for i in 0..n {
        let id = if n <= 3900 { 100 + i } else { 1 + i };
        y.push_str(&format!(
            "  - {{ name: bond0.{id}, type: vlan, vlan: {{ base-iface: bond0, id: {id} }} }}\n  - {{ name: br{id}, type: linux-bridge, bridge: {{ port: [{{ name: bond0.{id} }}] }} }}\n"
        ));
    }
    y
}

fn host() -> Observed {
    serde_json::from_value(serde_json::json!({"links": [
        {"name": "lo", "index": 1, "kind": "loopback", "mtu": 65536, "up": true},
        {"name": "eth0", "index": 2, "kind": "veth", "mac": "02:00:00:00:00:01"},
        {"name": "eth1", "index": 3, "kind": "veth", "mac": "02:00:00:00:00:02"},
    ]}))
    .expect("host")
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000, 4000]
    } else {
        sizes
    };
    println!("| N | links | plan from empty | ops | no-op plan | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let d = document(n);
        let h = host();
        let own = Ownership::default();
        let t = Instant::now();
        let p = plan(&d, &h, &own).expect("plan");
        let full = t.elapsed();
        let after = simulate(&h, &p.ops).expect("simulate");
        let own2 = own.after_apply(&d, &p, &after);
        // Best of 5 for the no-op.
        let mut best = std::time::Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let again = plan(&d, &after, &own2).expect("re-plan");
            best = best.min(t.elapsed());
            assert!(again.is_empty(), "converges");
        }
        // The other pure parts of a no-op re-apply: parsing the document,
        // validating it, the ownership record after the apply.
        let text = document_text(n);
        let t = Instant::now();
        let parsed = NetworkState::parse(&text).expect("document");
        let parse = t.elapsed();
        let t = Instant::now();
        hostd_core::validate::validate(&parsed).expect("valid");
        let validate = t.elapsed();
        let again = plan(&d, &after, &own2).expect("re-plan");
        let mut after_apply = std::time::Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let own3 = own2.after_apply(&d, &again, &after);
            after_apply = after_apply.min(t.elapsed());
            assert_eq!(own3, own2);
        }
        eprintln!(
            "N={n}: parse {:.1} ms, validate {:.1} ms, ownership after apply {:.1} ms",
            parse.as_secs_f64() * 1e3,
            validate.as_secs_f64() * 1e3,
            after_apply.as_secs_f64() * 1e3
        );
        println!(
            "| {n} | {} | {:.1} ms | {} | {:.1} ms | {:.2} |",
            after.links.len(),
            full.as_secs_f64() * 1e3,
            p.ops.len(),
            best.as_secs_f64() * 1e3,
            best.as_secs_f64() / full.as_secs_f64()
        );
    }
}
