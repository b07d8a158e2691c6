//! The `telemetry` section of the whole desired state: parsed with the rest,
//! validated with the rest, and its interfaces checked against the host.

use hostd_core::{
    model::Observed,
    schema::{from_yaml, NetworkState},
    validate::{check_telemetry_interfaces, validate},
};

const OBSERVED: &str = "
links:
  - { name: lo, index: 1, kind: loopback, mtu: 65536, up: true }
  - { name: eth0, index: 2, kind: veth, mac: '02:00:00:00:00:00', mtu: 1500, up: true }
  - { name: eth5, index: 3, kind: ethernet, mac: '02:00:00:00:00:05', mtu: 1500, up: true }
  - { name: br9, index: 4, kind: bridge, mac: '02:00:00:00:00:09', mtu: 1500, up: true }
";

fn observed() -> Observed {
    from_yaml(OBSERVED).expect("observed")
}

#[test]
fn telemetry_round_trips_with_the_rest_of_the_state() {
    let s = NetworkState::parse(
        "interfaces:\n  - { name: eth0, type: ethernet }\n\
         telemetry:\n  interfaces: [eth0, eth5]\n  sampling-rate: 1\n  counter-interval: 1\n\
         \x20 collectors: [{ address: 127.0.0.1, port: 16343 }]\n  subnets: [10.0.0.0/24]\n",
    )
    .expect("parses");
    validate(&s).expect("valid");
    let t = s.telemetry.as_ref().expect("telemetry kept");
    assert_eq!(t.sampling_rate, 1);
    assert_eq!(t.collectors[0].port, 16343);
    let back = NetworkState::parse(&serde_json::to_string(&s).expect("json")).expect("back");
    assert_eq!(back, s);
    // Undeclared eth5 is a NIC of the host: accepted.
    check_telemetry_interfaces(&s, &observed()).expect("eth0 declared, eth5 a NIC");
}

#[test]
fn undeclared_interfaces_must_be_nics_of_the_host() {
    let s = NetworkState::parse(
        "interfaces:\n  - { name: eth0, type: ethernet }\n\
         telemetry:\n  interfaces: [eth0, br9, eth7]\n",
    )
    .expect("parses");
    validate(&s).expect("valid without the host");
    let e = check_telemetry_interfaces(&s, &observed()).expect_err("br9, eth7");
    let text = e.to_string();
    assert_eq!(e.0.len(), 2, "{text}");
    assert!(
        text.contains("telemetry.interfaces[1]: not declared in interfaces, and the host's link of that name is a linux-bridge (only NICs may be named without being declared) (value: br9)"),
        "{text}"
    );
    assert!(
        text.contains("telemetry.interfaces[2]: not declared in interfaces and no such NIC on this host (value: eth7)"),
        "{text}"
    );
    // Declared in the document (to be created by this apply): accepted.
    let s = NetworkState::parse(
        "interfaces:\n  - { name: eth0, type: ethernet }\n  - { name: br1, type: linux-bridge, bridge: { port: [{ name: eth0 }] } }\n\
         telemetry:\n  interfaces: [br1]\n",
    )
    .expect("parses");
    validate(&s).expect("valid");
    check_telemetry_interfaces(&s, &observed()).expect("br1 declared");
}

#[test]
fn unknown_fields_and_bad_values_name_the_path() {
    let e = NetworkState::parse("telemetry:\n  interfaces: [eth0]\n  colectors: []\n")
        .expect_err("unknown field");
    assert!(e.to_string().contains("telemetry.colectors"), "{e}");
    let e = NetworkState::parse("telemetry:\n  interfaces: ['an-interface-name-too-long']\n")
        .expect_err("bad name");
    assert!(e.to_string().contains("telemetry.interfaces[0]"), "{e}");
    let s = NetworkState::parse("telemetry:\n  counter-interval: 0\n  sampling-rate: 99999999\n")
        .expect("parses");
    let text = validate(&s).expect_err("ranges").to_string();
    assert!(
        text.contains("telemetry.counter-interval: must be in 1..=3600 seconds (value: 0)"),
        "{text}"
    );
    assert!(
        text.contains("telemetry.sampling-rate: must be 0 (off) or 1..=16777216 (value: 99999999)"),
        "{text}"
    );
}

#[test]
fn firewall_errors_carry_the_value() {
    let s = NetworkState::parse(
        "firewall:\n  management: { controllers: [192.0.2.1], channel_port: 7443 }\n  rules:\n    - { action: accept, protocol: icmpv6, sources: [192.0.2.0/24] }\n",
    )
    .expect("parses");
    let e = validate(&s).expect_err("icmpv6 from an IPv4 source");
    assert_eq!(e.0.len(), 1, "{e}");
    assert!(e.0[0].path.starts_with("firewall.rules[0]"), "{e}");
    assert_ne!(e.0[0].value, "?", "{e}");
}
