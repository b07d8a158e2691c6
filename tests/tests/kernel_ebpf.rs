//! The eBPF counter program from `ebpf/`, built by the workspace, loads and
//! attaches (TCX on kernels >= 6.6, clsact on the VM's 6.1) and counts
//! packets and bytes exactly.

use std::time::Duration;

use hostd_telemetry::{AttachMode, Telemetry};
use lab::{
    spec::{NicSpec, PortRef, ServerSpec, SwitchSpec},
    traffic::ping,
    Rack, RackSpec,
};

/// An ICMP echo with iputils' default 56-byte payload, on the wire:
/// Ethernet 14 + IPv4 20 + ICMP 8 + 56.
const ECHO_FRAME: u64 = 98;

#[test]
fn counters_are_exact_on_this_kernel() {
    let spec = RackSpec {
        switches: vec![SwitchSpec {
            name: "sw1".into(),
            ports: vec![],
            lags: vec![],
            lldp: false,
        }],
        pairs: vec![],
        servers: (1..=2)
            .map(|i| ServerSpec {
                name: format!("srv{i}"),
                nics: vec![NicSpec {
                    name: "eth0".into(),
                    mac: None,
                    cable: PortRef::new("sw1", &format!("Ethernet{i}")),
                }],
                // No IPv6: no neighbour discovery or MLD frames in the counts.
                ipv6: false,
            })
            .collect(),
    };
    let rack = Rack::build(spec).expect("rack");
    let (srv1, srv2) = (rack.server("srv1"), rack.server("srv2"));
    let mac = |ns: &lab::NetNs| {
        ns.ip(&["-br", "link", "show", "eth0"])
            .split_whitespace()
            .nth(2)
            .expect("mac")
            .to_owned()
    };
    let (mac1, mac2) = (mac(srv1), mac(srv2));
    // Static neighbours: no ARP either, so every frame is an echo.
    srv1.ip_batch(&[
        "addr add 10.0.0.1/24 dev eth0".into(),
        "link set eth0 up".into(),
        format!("neigh replace 10.0.0.2 lladdr {mac2} dev eth0 nud permanent"),
    ])
    .expect("srv1");
    srv2.ip_batch(&[
        "addr add 10.0.0.2/24 dev eth0".into(),
        "link set eth0 up".into(),
        format!("neigh replace 10.0.0.1 lladdr {mac1} dev eth0 nud permanent"),
    ])
    .expect("srv2");
    lab::wait_until(
        "srv1 reaches srv2",
        lab::wait::scaled(Duration::from_secs(20)),
        || lab::traffic::reachable(srv1, "10.0.0.2"),
    );

    const N: u32 = 25;
    let (mode, ingress, egress) = srv1.enter(|| {
        let mut t = Telemetry::load().expect("load eBPF object");
        t.attach("eth0").expect("attach to eth0");
        let stats = ping(srv1, "10.0.0.2", N, Duration::from_millis(20), None).expect("ping");
        assert_eq!(stats.received, N, "all echoes answered: {stats:?}");
        let (i, e) = t.counters().expect("read counters");
        (t.mode(), i, e)
    });
    let release = lab::kernel::release();
    println!("kernel {release}: attached with {mode:?}; ingress {ingress:?}; egress {egress:?}");
    let expected_mode = if release.starts_with("6.1.") {
        AttachMode::Clsact
    } else {
        AttachMode::Tcx
    };
    if release.starts_with("6.1.") || release.starts_with("6.18") {
        assert_eq!(mode, expected_mode, "attach mode on {release}");
    }
    assert_eq!(
        egress.packets,
        u64::from(N),
        "one echo request out per ping"
    );
    assert_eq!(ingress.packets, u64::from(N), "one echo reply in per ping");
    assert_eq!(egress.bytes, u64::from(N) * ECHO_FRAME);
    assert_eq!(ingress.bytes, u64::from(N) * ECHO_FRAME);
}
