//! hostd's eBPF telemetry on a real kernel: the programs from `ebpf/`, built
//! by the workspace, load and attach (TCX on kernels >= 6.6, clsact on the
//! VM's 6.1), count packets and bytes exactly per interface, VLAN and subnet,
//! sample headers into the ring buffer, and the sFlow agent's datagrams
//! decode in tshark with the values that were sent. Detach leaves nothing
//! attached; a restart with pinned maps neither resets nor double counts.
//!
//! Exactness: IPv6 is off where interface counts are asserted (no ND, MLD or
//! RS frames) and neighbours are static (no ARP), so every frame on the wire
//! is one the test sent. VLAN-tagged frames are written with an AF_PACKET
//! socket (python3), which needs no 802.1Q module: the sender's egress sees
//! the tag in the frame, the receiver's ingress in skb metadata (the kernel
//! untags on receive), so both code paths run on every kernel.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc,
    time::Duration,
};

use hostd_telemetry::{
    programs, tcx_programs, Agent, AgentConfig, AttachMode, IfVlanKey, IpNet, LoadOptions,
    SubnetCounters, TcAttachType, Telemetry, TelemetryError, NO_VLAN,
};
use lab::{
    spec::{NicSpec, PortRef, ServerSpec, SwitchSpec},
    traffic::ping,
    NetNs, Rack, RackSpec,
};

/// An ICMP echo with iputils' default 56-byte payload, on the wire:
/// Ethernet 14 + IPv4 20 + ICMP 8 + 56.
const ECHO_FRAME: u64 = 98;
/// The same over IPv6: Ethernet 14 + IPv6 40 + ICMPv6 8 + 56.
const ECHO6_FRAME: u64 = 118;

const MAC_A: &str = "02:00:00:00:00:0a";
const MAC_B: &str = "02:00:00:00:00:0b";

fn net(s: &str) -> IpNet {
    s.parse().expect("subnet")
}

fn expected_mode() -> Option<AttachMode> {
    let release = lab::kernel::release();
    if release.starts_with("6.1.") {
        Some(AttachMode::Clsact)
    } else if release.starts_with("6.18") {
        Some(AttachMode::Tcx)
    } else {
        None
    }
}

/// Two namespaces joined by one veth pair, `eth0` in each, up, with fixed
/// MACs. `ipv6` off: no frame but the test's own.
fn veth_pair(ipv6: bool) -> (NetNs, NetNs) {
    let a = NetNs::new("ea").expect("namespace a");
    let b = NetNs::new("eb").expect("namespace b");
    if !ipv6 {
        for ns in [&a, &b] {
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
                .expect("sysctl");
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
                .expect("sysctl");
        }
    }
    a.ip(&[
        "link",
        "add",
        "eth0",
        "address",
        MAC_A,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "address",
        MAC_B,
        "netns",
        b.name(),
    ]);
    a.ip(&["link", "set", "eth0", "up"]);
    b.ip(&["link", "set", "eth0", "up"]);
    (a, b)
}

/// Writes raw Ethernet frames (hex) out of `ifname` in `ns` with an
/// AF_PACKET socket: bytes on the wire exactly as given.
fn send_raw(ns: &NetNs, ifname: &str, frames: &[Vec<u8>]) {
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let script = "import socket,sys\n\
                  s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
                  s.bind((sys.argv[1],0))\n\
                  for h in sys.argv[2:]:\n    assert s.send(bytes.fromhex(h))==len(h)//2\n";
    let hex: Vec<String> = frames
        .iter()
        .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let mut argv = vec![python, "-c", script, ifname];
    argv.extend(hex.iter().map(String::as_str));
    ns.run(&argv);
}

fn mac_bytes(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate() {
        m[i] = u8::from_str_radix(p, 16).expect("mac");
    }
    m
}

/// A frame of exactly `len` bytes: dst, src, optional 802.1Q tag, EtherType
/// 0x88b5 (local experimental: no host answers it), then a counter pattern.
fn frame(dst: [u8; 6], src: [u8; 6], vlan: Option<(u16, u8)>, len: usize, seed: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some((vid, prio)) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&((u16::from(prio) << 13) | vid).to_be_bytes());
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    let mut i = 0u8;
    while f.len() < len {
        f.push(seed.wrapping_add(i));
        i = i.wrapping_add(1);
    }
    f
}

/// Receives every datagram waiting on `sock` (until `quiet` passes with none).
fn drain(sock: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(quiet)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// Writes UDP payloads to `port` as a pcap (LINKTYPE_IPV4) for tshark.
fn write_pcap(path: &Path, payloads: &[Vec<u8>], port: u16) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&228u32.to_le_bytes()); // LINKTYPE_IPV4
    for (i, p) in payloads.iter().enumerate() {
        let total = 20 + 8 + p.len();
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let mut sum: u32 = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        let mut udp = Vec::new();
        udp.extend_from_slice(&40000u16.to_be_bytes());
        udp.extend_from_slice(&port.to_be_bytes());
        udp.extend_from_slice(&((8 + p.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&ip);
        out.extend_from_slice(&udp);
        out.extend_from_slice(p);
    }
    std::fs::write(path, out).expect("write pcap");
}

/// Runs tshark over `pcap` and returns, per packet, each requested field's
/// occurrences. Fails when tshark fails or flags any packet as malformed or
/// with an expert error.
fn tshark(pcap: &Path, fields: &[&str]) -> Vec<BTreeMap<String, Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(pcap).args([
        "-d",
        "udp.port==6343,sflow",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
    ]);
    cmd.args(["-E", "aggregator=|", "-E", "separator=\t"]);
    for f in ["_ws.malformed", "_ws.expert.severity"]
        .iter()
        .chain(fields)
    {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("running tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(
            cols[0].is_empty(),
            "tshark: packet {n} is malformed: {line}"
        );
        // Severity values: 0x00800000 warning, 0x00c00000 error (and up).
        for sev in cols
            .get(1)
            .map(|c| c.split('|'))
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
        {
            let v = u32::from_str_radix(sev.trim_start_matches("0x"), 16)
                .or_else(|_| sev.parse())
                .unwrap_or(0);
            assert!(
                v < 0x00c0_0000,
                "tshark: expert error in packet {n}: {line}"
            );
        }
        let mut row = BTreeMap::new();
        for (i, f) in fields.iter().enumerate() {
            let v = cols.get(i + 2).copied().unwrap_or("");
            let vals = if v.is_empty() {
                Vec::new()
            } else {
                v.split('|').map(str::to_owned).collect()
            };
            row.insert((*f).to_owned(), vals);
        }
        rows.push(row);
    }
    rows
}

/// All occurrences of `field` over all packets.
fn all(rows: &[BTreeMap<String, Vec<String>>], field: &str) -> Vec<String> {
    rows.iter()
        .flat_map(|r| r.get(field).cloned().unwrap_or_default())
        .collect()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kernel-ebpf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir.join(name)
}

/// Nothing of ours attached to `eth0` in the calling thread's namespace:
/// no TCX program (>= 6.6) and no tc filter (clsact).
fn assert_nothing_attached(ns: &NetNs) {
    for dir in ["ingress", "egress"] {
        let filters = ns.run(&["tc", "filter", "show", "dev", "eth0", dir]);
        assert!(
            !filters.contains("telemetry"),
            "tc filter left on eth0 {dir}: {filters}"
        );
    }
    if expected_mode() != Some(AttachMode::Clsact)
        && matches!(expected_mode(), Some(AttachMode::Tcx))
    {
        ns.enter(|| {
            for d in [TcAttachType::Ingress, TcAttachType::Egress] {
                let progs = tcx_programs("eth0", d).expect("TCX query");
                assert!(
                    progs.is_empty(),
                    "TCX programs left on eth0 {d:?}: {progs:?}"
                );
            }
        });
    }
}

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
    let subnets = [
        net("10.0.0.0/24"),
        net("10.0.0.2/32"),
        net("192.0.2.0/24"),
        net("2001:db8::/64"),
    ];
    let (mode, ingress, egress, per_key, per_subnet, ifindex) = srv1.enter(|| {
        let mut t = Telemetry::load().expect("load eBPF object");
        t.set_subnets(&subnets).expect("subnets");
        t.attach("eth0").expect("attach to eth0");
        let stats = ping(srv1, "10.0.0.2", N, Duration::from_millis(20), None).expect("ping");
        assert_eq!(stats.received, N, "all echoes answered: {stats:?}");
        let (i, e) = t.counters().expect("read counters");
        let keys = t.interface_vlan_counters().expect("per interface");
        let subs = t.subnet_counters().expect("per subnet");
        let ifindex = hostd_telemetry::loader::ifindex("eth0").expect("ifindex");
        (t.mode(), i, e, keys, subs, ifindex)
    });
    let release = lab::kernel::release();
    println!("kernel {release}: attached with {mode:?}; ingress {ingress:?}; egress {egress:?}");
    if let Some(m) = expected_mode() {
        assert_eq!(mode, m, "attach mode on {release}");
    }
    let n = u64::from(N);
    assert_eq!(egress.packets, n, "one echo request out per ping");
    assert_eq!(ingress.packets, n, "one echo reply in per ping");
    assert_eq!(egress.bytes, n * ECHO_FRAME);
    assert_eq!(ingress.bytes, n * ECHO_FRAME);
    assert_eq!(
        (egress.multicast, ingress.multicast, egress.broadcast),
        (0, 0, 0)
    );

    // Per interface and VLAN: one key, eth0 untagged.
    assert_eq!(
        per_key.keys().copied().collect::<Vec<_>>(),
        vec![IfVlanKey {
            ifindex,
            vlan: NO_VLAN
        }]
    );
    let c = per_key[&IfVlanKey {
        ifindex,
        vlan: NO_VLAN,
    }];
    assert_eq!(
        (c.rx.packets, c.rx.bytes, c.tx.packets, c.tx.bytes),
        (n, n * ECHO_FRAME, n, n * ECHO_FRAME)
    );
    assert_eq!(
        (c.rx.samples, c.tx.samples, c.rx.sample_drops),
        (0, 0, 0),
        "sampling is off by default"
    );

    // Per subnet: the longest prefix wins. Requests go 10.0.0.1 -> .2,
    // replies .2 -> .1.
    let b = n * ECHO_FRAME;
    let got: BTreeMap<IpNet, SubnetCounters> = per_subnet.into_iter().collect();
    let want = |to: u64, from: u64| SubnetCounters {
        to_packets: to,
        to_bytes: to * ECHO_FRAME,
        from_packets: from,
        from_bytes: from * ECHO_FRAME,
    };
    assert_eq!(
        got[&net("10.0.0.0/24")],
        want(n, n),
        "10.0.0.1: receives the replies, sends the requests"
    );
    assert_eq!(
        got[&net("10.0.0.2/32")],
        want(n, n),
        "10.0.0.2 (more specific than the /24)"
    );
    assert_eq!(got[&net("192.0.2.0/24")], want(0, 0));
    assert_eq!(got[&net("2001:db8::/64")], want(0, 0));
    assert_eq!(got[&net("10.0.0.2/32")].to_bytes, b);

    assert_nothing_attached(srv1);
}

#[test]
fn ipv6_subnet_counters_are_exact() {
    let (a, b) = veth_pair(true);
    a.ip(&["addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"]);
    b.ip(&["addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad"]);
    a.ip(&[
        "neigh",
        "replace",
        "2001:db8::2",
        "lladdr",
        MAC_B,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    b.ip(&[
        "neigh",
        "replace",
        "2001:db8::1",
        "lladdr",
        MAC_A,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    lab::wait_until(
        "a reaches b over IPv6",
        lab::wait::scaled(Duration::from_secs(20)),
        || lab::traffic::reachable(&a, "2001:db8::2"),
    );
    const N: u32 = 20;
    let subnets = [
        net("2001:db8::/64"),
        net("2001:db8::2/128"),
        net("2001:db8:1::/48"),
        net("10.0.0.0/8"),
    ];
    let got: BTreeMap<IpNet, SubnetCounters> = a.enter(|| {
        let mut t = Telemetry::load().expect("load");
        t.set_subnets(&subnets).expect("subnets");
        t.attach("eth0").expect("attach");
        let stats = ping(&a, "2001:db8::2", N, Duration::from_millis(20), None).expect("ping -6");
        assert_eq!(stats.received, N, "{stats:?}");
        t.subnet_counters().expect("subnets").into_iter().collect()
    });
    // Link-local ND/MLD/RS frames may pass too: they are in none of these
    // subnets, so the subnet counts stay exact.
    let n = u64::from(N);
    let want = |to: u64, from: u64| SubnetCounters {
        to_packets: to,
        to_bytes: to * ECHO6_FRAME,
        from_packets: from,
        from_bytes: from * ECHO6_FRAME,
    };
    assert_eq!(
        got[&net("2001:db8::/64")],
        want(n, n),
        "::1 sends requests and receives replies"
    );
    assert_eq!(
        got[&net("2001:db8::2/128")],
        want(n, n),
        "::2 receives requests and sends replies"
    );
    assert_eq!(got[&net("2001:db8:1::/48")], want(0, 0));
    assert_eq!(got[&net("10.0.0.0/8")], want(0, 0));
}

/// What one side saw: per-key counters, and the sFlow datagrams its agent sent.
struct Side {
    ifindex: u32,
    counters: BTreeMap<IfVlanKey, hostd_telemetry::IfVlanCounters>,
    datagrams: Vec<Vec<u8>>,
    agent: std::net::IpAddr,
}

/// Loads, attaches to eth0 with sampling 1:1 and an agent sending to a local
/// collector socket, waits for `go` and then for `frames` frames counted,
/// exports, and returns what it saw.
fn side(ns: &NetNs, frames: u64, ready: mpsc::Sender<()>, go: mpsc::Receiver<()>) -> Side {
    ns.enter(move || {
        let collector = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("collector socket");
        let addr: SocketAddr = collector.local_addr().expect("addr");
        let mut t = Telemetry::load().expect("load");
        t.set_sampling(1, 128).expect("sampling");
        t.attach("eth0").expect("attach");
        let mut agent = Agent::new(
            &mut t,
            AgentConfig {
                collectors: vec![addr],
                sub_agent_id: 7,
                sampling_rate: 1,
                ..Default::default()
            },
        )
        .expect("agent");
        ready.send(()).expect("ready");
        go.recv().expect("go");
        lab::wait_until(
            "every frame counted",
            lab::wait::scaled(Duration::from_secs(10)),
            || {
                t.counters()
                    .is_ok_and(|(rx, tx)| rx.packets + tx.packets >= frames)
            },
        );
        let flows = agent.export_samples(&t).expect("export samples");
        let counters = agent.export_counters(&t).expect("export counters");
        println!(
            "{}: exported {flows:?} flow samples, {counters:?} counter samples",
            ns.role()
        );
        let datagrams = drain(&collector, Duration::from_millis(500));
        Side {
            ifindex: hostd_telemetry::loader::ifindex("eth0").expect("ifindex"),
            counters: t.interface_vlan_counters().expect("counters"),
            datagrams,
            agent: agent.agent_address(),
        }
    })
}

#[test]
fn vlan_counters_and_sflow_samples_are_exact_and_decode_in_tshark() {
    let (a, b) = veth_pair(false);
    let (dst, src) = (mac_bytes(MAC_B), mac_bytes(MAC_A));
    let bcast = [0xff; 6];
    let mut frames = Vec::new();
    for i in 0..7 {
        frames.push(frame(dst, src, Some((100, 5)), 100, i));
    }
    for i in 0..5 {
        frames.push(frame(dst, src, Some((200, 0)), 200, 50 + i));
    }
    for i in 0..3 {
        frames.push(frame(dst, src, None, 80, 100 + i));
    }
    for i in 0..2 {
        frames.push(frame(bcast, src, None, 64, 200 + i));
    }
    // One frame longer than the sampled header: the header is cut at 128.
    frames.push(frame(dst, src, Some((100, 5)), 300, 7));

    let (ready_a, ready_a_rx) = mpsc::channel();
    let (ready_b, ready_b_rx) = mpsc::channel();
    let (go_a_tx, go_a) = mpsc::channel();
    let (go_b_tx, go_b) = mpsc::channel();
    let count = frames.len() as u64;
    let (sa, sb) = std::thread::scope(|s| {
        let ha = s.spawn(|| side(&a, count, ready_a, go_a));
        let hb = s.spawn(|| side(&b, count, ready_b, go_b));
        ready_a_rx.recv().expect("a ready");
        ready_b_rx.recv().expect("b ready");
        send_raw(&a, "eth0", &frames);
        go_a_tx.send(()).expect("go a");
        go_b_tx.send(()).expect("go b");
        (ha.join().expect("side a"), hb.join().expect("side b"))
    });

    // Expected per (VLAN) key, as (packets, bytes, multicast, broadcast).
    let expected: BTreeMap<u32, (u64, u64, u64, u64)> = [
        (100, (8, 7 * 100 + 300, 0, 0)),
        (200, (5, 5 * 200, 0, 0)),
        (NO_VLAN, (5, 3 * 80 + 2 * 64, 2, 2)),
    ]
    .into();
    for (name, side, tx) in [
        ("a (egress: tag in the frame)", &sa, true),
        ("b (ingress: tag in skb metadata)", &sb, false),
    ] {
        let got: BTreeMap<u32, (u64, u64, u64, u64)> = side
            .counters
            .iter()
            .map(|(k, c)| {
                assert_eq!(k.ifindex, side.ifindex, "{name}: only eth0 counted");
                let (d, other) = if tx { (&c.tx, &c.rx) } else { (&c.rx, &c.tx) };
                assert_eq!(other.packets, 0, "{name}: nothing in the other direction");
                assert_eq!(
                    (d.samples, d.sample_drops),
                    (d.packets, 0),
                    "{name}: 1:1 sampling, no drops"
                );
                (k.vlan, (d.packets, d.bytes, d.multicast, d.broadcast))
            })
            .collect();
        assert_eq!(got, expected, "{name}: per-VLAN counters");
    }

    // tshark decodes every datagram; flow samples carry what was sent.
    let fields = [
        "sflow_245.agent",
        "sflow_245.sub_agent_id",
        "sflow_245.sequence_number",
        "sflow.flow_sample.sequence_number",
        "sflow.flow_sample.sampling_rate",
        "sflow.flow_sample.sample_pool",
        "sflow.flow_sample.dropped_packets",
        "sflow.flow_sample.index",
        "sflow.flow_sample.input_interface",
        "sflow.flow_sample.output_interface_value",
        "sflow_245.header.frame_length",
        "sflow_245.header.sampled_header_length",
        "sflow_245.header",
        "sflow_245.vlan.in",
        "sflow_245.pri.in",
        "sflow.counters_sample.source_id_type",
        "sflow.counters_sample.source_id_index",
        "sflow_245.ifindex",
        "sflow_245.ifoutoct",
        "sflow_245.ifoutpkt",
        "sflow_245.ifoutbcast",
        "sflow_245.ifoutmcast",
        "sflow_245.ifinoct",
        "sflow_245.ifinpkt",
        "sflow_245.ifinbcast",
        "sflow_245.ifinmcast",
        "sflow_245.vlan_id",
        "sflow_245.octets",
        "sflow_245.ucastPkts",
        "sflow_245.broadcastPkts",
    ];
    for (name, side, tx) in [("a", &sa, true), ("b", &sb, false)] {
        assert!(!side.datagrams.is_empty(), "{name}: no datagrams received");
        let pcap = tmp(&format!("sflow-{name}.pcap"));
        write_pcap(&pcap, &side.datagrams, 6343);
        let rows = tshark(&pcap, &fields);
        assert_eq!(rows.len(), side.datagrams.len());
        let seqs: Vec<u32> = all(&rows, "sflow_245.sequence_number")
            .iter()
            .map(|s| s.parse().expect("seq"))
            .collect();
        assert_eq!(
            seqs,
            (1..=side.datagrams.len() as u32).collect::<Vec<_>>(),
            "{name}: datagram sequence"
        );
        assert!(
            all(&rows, "sflow_245.agent")
                .iter()
                .all(|a| *a == side.agent.to_string()),
            "{name}: agent address"
        );
        assert!(
            all(&rows, "sflow_245.sub_agent_id")
                .iter()
                .all(|a| a == "7"),
            "{name}: sub-agent id"
        );

        let n = frames.len();
        let flow_seq = all(&rows, "sflow.flow_sample.sequence_number");
        assert_eq!(
            flow_seq,
            (1..=n).map(|i| i.to_string()).collect::<Vec<_>>(),
            "{name}: one flow sample per frame"
        );
        for (f, want) in [
            ("sflow.flow_sample.sampling_rate", "1".to_owned()),
            ("sflow.flow_sample.sample_pool", n.to_string()),
            ("sflow.flow_sample.dropped_packets", "0".to_owned()),
            ("sflow.flow_sample.index", side.ifindex.to_string()),
            // tshark shows the input as a plain ifIndex, the output as
            // format and value.
            (
                "sflow.flow_sample.input_interface",
                if tx {
                    "0".to_owned()
                } else {
                    side.ifindex.to_string()
                },
            ),
            (
                "sflow.flow_sample.output_interface_value",
                if tx {
                    side.ifindex.to_string()
                } else {
                    "0".to_owned()
                },
            ),
        ] {
            let v = all(&rows, f);
            assert_eq!(v.len(), n, "{name}: {f}: {v:?}");
            assert!(
                v.iter().all(|x| *x == want),
                "{name}: {f} = {v:?}, want {want}"
            );
        }
        let lens: Vec<String> = all(&rows, "sflow_245.header.frame_length");
        assert_eq!(
            lens,
            frames
                .iter()
                .map(|f| f.len().to_string())
                .collect::<Vec<_>>(),
            "{name}: frame lengths"
        );
        let hlens: Vec<String> = all(&rows, "sflow_245.header.sampled_header_length");
        assert_eq!(
            hlens,
            frames
                .iter()
                .map(|f| f.len().min(128).to_string())
                .collect::<Vec<_>>(),
            "{name}"
        );
        // The sampled header is the frame as sent (b's kernel untagged it;
        // the agent put the tag back), cut at 128 bytes.
        let headers: Vec<String> = all(&rows, "sflow_245.header")
            .iter()
            .map(|h| h.replace(':', ""))
            .collect();
        let want_headers: Vec<String> = frames
            .iter()
            .map(|f| {
                f[..f.len().min(128)]
                    .iter()
                    .fold(String::new(), |mut s, b| {
                        let _ = write!(s, "{b:02x}");
                        s
                    })
            })
            .collect();
        assert_eq!(headers, want_headers, "{name}: sampled headers");
        let vlans = all(&rows, "sflow_245.vlan.in");
        let want_vlans: Vec<String> = frames
            .iter()
            .map(|f| {
                if f[12..14] == [0x81, 0x00] {
                    (u16::from_be_bytes([f[14], f[15]]) & 0xfff).to_string()
                } else {
                    "4294967295".to_owned()
                }
            })
            .collect();
        assert_eq!(vlans, want_vlans, "{name}: extended switch VLANs");
        let prios = all(&rows, "sflow_245.pri.in");
        assert!(
            prios
                .iter()
                .zip(&want_vlans)
                .all(|(p, v)| (v == "100") == (p == "5")),
            "{name}: priorities {prios:?}"
        );

        // Counter samples: eth0 generic counters, VLAN 100 and 200 counters.
        assert_eq!(
            all(&rows, "sflow_245.ifindex"),
            vec![side.ifindex.to_string()],
            "{name}: one interface"
        );
        let (oct, pkt, bc, mc) = if tx {
            (
                "sflow_245.ifoutoct",
                "sflow_245.ifoutpkt",
                "sflow_245.ifoutbcast",
                "sflow_245.ifoutmcast",
            )
        } else {
            (
                "sflow_245.ifinoct",
                "sflow_245.ifinpkt",
                "sflow_245.ifinbcast",
                "sflow_245.ifinmcast",
            )
        };
        let total: u64 = frames.iter().map(|f| f.len() as u64).sum();
        assert_eq!(all(&rows, oct), vec![total.to_string()], "{name}: octets");
        assert_eq!(
            all(&rows, pkt),
            vec![(n - 2).to_string()],
            "{name}: unicast packets"
        );
        assert_eq!(
            all(&rows, bc),
            vec!["2".to_owned()],
            "{name}: broadcast packets"
        );
        assert_eq!(
            all(&rows, mc),
            vec!["0".to_owned()],
            "{name}: multicast (not broadcast)"
        );
        assert_eq!(
            all(&rows, "sflow_245.vlan_id"),
            vec!["100".to_owned(), "200".to_owned()],
            "{name}: VLAN sources"
        );
        assert_eq!(
            all(&rows, "sflow_245.octets"),
            vec![(7 * 100 + 300).to_string(), (5 * 200).to_string()],
            "{name}"
        );
        assert_eq!(
            all(&rows, "sflow_245.ucastPkts"),
            vec!["8".to_owned(), "5".to_owned()],
            "{name}"
        );
        let types = all(&rows, "sflow.counters_sample.source_id_type");
        assert_eq!(
            types,
            vec!["0".to_owned(), "1".to_owned(), "1".to_owned()],
            "{name}: ifIndex then VLAN sources"
        );
    }
    assert_nothing_attached(&a);
    assert_nothing_attached(&b);
}

/// Mounts a private bpffs for the calling thread: the thread leaves the
/// host's mount namespace (`unshare(CLONE_NEWNS)`, mounts made private), so
/// nothing is mounted on the host and it all vanishes with the thread.
fn private_bpffs() -> PathBuf {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount namespace");
    // Children forked from this thread inherit its mount namespace.
    let ok = Command::new("mount")
        .args(["--make-rprivate", "/"])
        .status()
        .expect("mount");
    assert!(ok.success(), "mount --make-rprivate /");
    let dir = tmp("bpffs");
    std::fs::create_dir_all(&dir).expect("bpffs mount point");
    let ok = Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(&dir)
        .status()
        .expect("mount bpffs");
    assert!(ok.success(), "mount -t bpf");
    dir.join("hostd")
}

#[test]
fn restart_with_pinned_maps_keeps_counting_once() {
    let (a, b) = veth_pair(false);
    a.ip(&["addr", "add", "10.9.0.1/24", "dev", "eth0"]);
    b.ip(&["addr", "add", "10.9.0.2/24", "dev", "eth0"]);
    a.ip(&[
        "neigh",
        "replace",
        "10.9.0.2",
        "lladdr",
        MAC_B,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    b.ip(&[
        "neigh",
        "replace",
        "10.9.0.1",
        "lladdr",
        MAC_A,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    const N: u32 = 10;
    let n = u64::from(N);
    let subnets = [net("10.9.0.2/32")];
    let pings = |what: &str| {
        let s = ping(&a, "10.9.0.2", N, Duration::from_millis(20), None).expect("ping");
        assert_eq!(s.received, N, "{what}: {s:?}");
    };
    a.enter(|| {
        let pin_dir = private_bpffs();
        let opts = LoadOptions {
            pin_dir: Some(pin_dir.clone()),
            ..Default::default()
        };

        // First run.
        let mut t = Telemetry::load_with(&opts).expect("load");
        t.set_subnets(&subnets).expect("subnets");
        t.attach("eth0").expect("attach");
        pings("first run");
        assert_eq!(t.counters().expect("counters").1.packets, n);
        let mode = t.mode();
        // A clean stop detaches.
        drop(t);
        pings("stopped: not counted");

        // Restart: the pinned counters continue where they were, and the
        // pinned subnets are counted without being set again.
        let mut t = Telemetry::load_with(&opts).expect("reload");
        assert_eq!(
            t.subnets(),
            &subnets,
            "subnet slots come back from the pinned tries"
        );
        assert_eq!(
            t.counters().expect("counters").1.packets,
            n,
            "counters survive a restart"
        );
        t.attach("eth0").expect("re-attach");
        pings("second run");
        assert_eq!(t.counters().expect("counters").1.packets, 2 * n);
        let to = |t: &Telemetry| t.subnet_counters().expect("subnets")[0].1.to_packets;
        assert_eq!(to(&t), 2 * n, "10.9.0.2 counted across the restart");
        t.set_subnets(&subnets)
            .expect("same subnets keep their slot");
        assert_eq!(
            to(&t),
            2 * n,
            "setting the same subnets keeps their counters"
        );

        // A crash leaves the attachment behind (clsact filters outlive their
        // process; here the fds are leaked): the next start must not count
        // twice.
        std::mem::forget(t);
        let mut t = Telemetry::load_with(&opts).expect("load after crash");
        match (mode, t.attach("eth0")) {
            (AttachMode::Clsact, Ok(())) => {
                pings("after crash");
                let (rx, tx) = t.counters().expect("counters");
                assert_eq!(
                    tx.packets,
                    3 * n,
                    "stale filter replaced: each request counted once"
                );
                assert_eq!(rx.packets, 3 * n, "each reply counted once");
                let s = t.subnet_counters().expect("subnets");
                assert_eq!(
                    s[0].1.to_packets,
                    3 * n,
                    "10.9.0.2 received every request once"
                );
            }
            (AttachMode::Tcx, Err(TelemetryError::AlreadyAttached { .. })) => {
                // TCX links of a dead process are gone; one that is still
                // there (pinned, or leaked as here) is refused.
            }
            (m, r) => panic!("after a crash in {m:?} mode: {r:?}"),
        }
        drop(t);
        hostd_telemetry::unpin(&pin_dir).expect("unpin");
    });
    if expected_mode() == Some(AttachMode::Clsact) {
        assert_nothing_attached(&a);
    }
}

/// The collector (`collector/`) decodes our datagrams and accounts the
/// sampled packets (1:1 here) to the same subnets, with the same packet and
/// byte counts, as the eBPF subnet counters.
#[test]
fn collector_accounts_our_samples_to_the_right_subnets() {
    let (a, b) = veth_pair(false);
    a.ip(&["addr", "add", "10.8.1.1/16", "dev", "eth0"]);
    b.ip(&["addr", "add", "10.8.2.1/16", "dev", "eth0"]);
    a.ip(&[
        "neigh",
        "replace",
        "10.8.2.1",
        "lladdr",
        MAC_B,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    b.ip(&[
        "neigh",
        "replace",
        "10.8.1.1",
        "lladdr",
        MAC_A,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    const N: u32 = 15;
    let nets = vec![net("10.8.1.0/24"), net("10.8.2.0/24"), net("10.9.0.0/16")];
    let (datagrams, ebpf) = a.enter(|| {
        let collector = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("collector socket");
        let mut t = Telemetry::load().expect("load");
        t.set_sampling(1, 128).expect("sampling");
        t.set_subnets(&nets).expect("subnets");
        t.attach("eth0").expect("attach");
        let mut agent = Agent::new(
            &mut t,
            AgentConfig {
                collectors: vec![collector.local_addr().expect("addr")],
                sampling_rate: 1,
                ..Default::default()
            },
        )
        .expect("agent");
        let s = ping(&a, "10.8.2.1", N, Duration::from_millis(20), None).expect("ping");
        assert_eq!(s.received, N, "{s:?}");
        let sent = agent.export_samples(&t).expect("export");
        assert_eq!(
            sent.samples,
            2 * N as usize,
            "a request and a reply per ping"
        );
        let ebpf: BTreeMap<IpNet, SubnetCounters> =
            t.subnet_counters().expect("subnets").into_iter().collect();
        (drain(&collector, Duration::from_millis(500)), ebpf)
    });
    let table = collector::subnets::SubnetTable::new(nets.clone()).expect("subnet table");
    let mut shard = collector::accounting::Shard::new(std::sync::Arc::new(table));
    for d in &datagrams {
        shard.datagram(Ipv4Addr::LOCALHOST.into(), d, 0);
    }
    let drained = shard.drain();
    let got: BTreeMap<IpNet, collector::accounting::SubnetCounters> = drained
        .subnets
        .iter()
        .map(|(id, c)| (nets[*id as usize], *c))
        .collect();
    let n = u64::from(N);
    for net in &nets[..2] {
        let (c, e) = (got.get(net).copied().unwrap_or_default(), ebpf[net]);
        println!("{net}: collector {c:?}, eBPF {e:?}");
        assert_eq!(
            (c.in_pkts, c.in_bytes),
            (e.to_packets, e.to_bytes),
            "{net}: in = to the subnet"
        );
        assert_eq!(
            (c.out_pkts, c.out_bytes),
            (e.from_packets, e.from_bytes),
            "{net}: out = from the subnet"
        );
        assert_eq!(
            (e.to_packets, e.to_bytes),
            (n, n * ECHO_FRAME),
            "{net}: exact"
        );
    }
    assert!(
        got.get(&nets[2])
            .is_none_or(|c| c.in_pkts == 0 && c.out_pkts == 0),
        "10.9.0.0/16: nothing"
    );
}

/// The `hostd` binary: `HOSTD_BIN`, else `hostd` in this test binary's
/// target directory (`target/debug/deps/kernel_ebpf-*` ->
/// `target/debug/hostd`; `cargo xtask test` builds every target first).
fn hostd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HOSTD_BIN") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "HOSTD_BIN={}: no such file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("hostd"))
        .expect("target directory");
    assert!(
        p.exists(),
        "{} missing: build it (cargo build -p hostd --bin hostd) or set HOSTD_BIN",
        p.display()
    );
    p
}

/// A `hostd` process in a namespace (entered with nsenter, so it shares the
/// calling thread's mount namespace); killed on drop if still running.
struct HostdProcess {
    child: std::process::Child,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl HostdProcess {
    fn spawn(ns: &NetNs, args: &[&str]) -> Self {
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name()))
            .arg(hostd_bin())
            .args(args)
            .env("HOSTD_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn hostd");
        let pipe = child.stderr.take().expect("stderr pipe");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stderr: rx,
            log: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `what`.
    fn wait_for(&mut self, what: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "no {what:?} from hostd within {timeout:?} (exit: {status:?}); stderr:\n{}",
                        self.log.join("\n")
                    )
                }
            }
        }
    }

    fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hostd did not stop within {timeout:?} of SIGTERM; stderr:\n{}",
                self.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HostdProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Per-interface view of the datagrams received: the last generic counters
/// of `ifindex`, and its flow samples by direction and frame length.
#[derive(Debug, Default)]
struct Exported {
    counters: Option<collector::sflow::IfCounters>,
    counter_samples: usize,
    ingress: BTreeMap<u32, u64>,
    egress: BTreeMap<u32, u64>,
}

impl Exported {
    fn add(&mut self, datagram: &[u8], ifindex: u32) {
        use collector::sflow::{decode, CounterRecord, FlowRecord, Sample};
        let d = decode(datagram).expect("sFlow datagram decodes");
        assert_eq!(d.agent, Some("192.0.2.10".parse().expect("ip")));
        for s in d.samples() {
            match s.expect("sample decodes") {
                Sample::Counters(c) if c.source.kind == 0 && c.source.index == ifindex => {
                    for r in c.records() {
                        if let CounterRecord::Generic(g) = r.expect("counter record") {
                            assert_eq!(g.if_index, ifindex);
                            self.counters = Some(g);
                            self.counter_samples += 1;
                        }
                    }
                }
                Sample::Flow(f) => {
                    assert_eq!(f.source.index, ifindex, "flow sample of another source");
                    assert_eq!(f.sampling_rate, 1);
                    let len = f
                        .records()
                        .find_map(|r| match r.expect("flow record") {
                            FlowRecord::RawHeader { frame_length, .. } => Some(frame_length),
                            _ => None,
                        })
                        .expect("raw header record");
                    if f.input.value == ifindex {
                        assert_eq!(f.output.value, 0);
                        *self.ingress.entry(len).or_default() += 1;
                    } else {
                        assert_eq!(f.output.value, ifindex, "flow sample without our ifIndex");
                        *self.egress.entry(len).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
    }
}

/// `hostd telemetry run` (the real binary, in a namespace): counters exported
/// in sFlow are exact, every packet gives one flow sample at 1:1, `hostd
/// telemetry show` reads the same counters from the pinned maps, and SIGTERM
/// detaches everything.
#[test]
fn hostd_telemetry_run_exports_exact_sflow_and_detaches_on_sigterm() {
    let (a, b) = veth_pair(false);
    a.ip(&["link", "set", "lo", "up"]);
    a.ip(&["addr", "add", "10.0.0.1/24", "dev", "eth0"]);
    b.ip(&["addr", "add", "10.0.0.2/24", "dev", "eth0"]);
    for (ns, peer, mac) in [(&a, "10.0.0.2", MAC_B), (&b, "10.0.0.1", MAC_A)] {
        ns.ip(&[
            "neigh",
            "replace",
            peer,
            "lladdr",
            mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }
    // The collector listens on the agent's loopback: datagrams never cross eth0.
    let collector = a
        .enter(|| UdpSocket::bind("127.0.0.1:0"))
        .expect("collector socket");
    let port = collector.local_addr().expect("local addr").port();
    let ifindex: u32 = a
        .run(&["cat", "/sys/class/net/eth0/ifindex"])
        .trim()
        .parse()
        .expect("ifindex");
    // eth0 is not declared in `interfaces`: it must be a NIC of the host.
    let file = tmp("telemetry-run.yaml");
    std::fs::write(
        &file,
        format!(
            "telemetry:\n  interfaces: [eth0]\n  sampling-rate: 1\n  counter-interval: 1\n\
             \x20 agent-address: 192.0.2.10\n  collectors: [{{ address: 127.0.0.1, port: {port} }}]\n\
             \x20 subnets: [10.0.0.0/24, 10.0.0.1/32]\n"
        ),
    )
    .expect("write desired state");
    // Pins in a bpffs private to this thread (and the hostd it starts).
    let pins = private_bpffs();
    let pins_arg = pins.to_str().expect("utf-8 path");
    let file_arg = file.to_str().expect("utf-8 path");
    let mut hostd = HostdProcess::spawn(&a, &["telemetry", "run", file_arg, "--pin-dir", pins_arg]);
    let line = hostd.wait_for("hostd telemetry: running", Duration::from_secs(120));
    assert!(
        line.contains(&format!("eth0 (ifindex {ifindex})")),
        "{line}"
    );

    // Known traffic into a's eth0: raw frames and pings (static neighbours,
    // no IPv6: nothing else crosses the veth).
    const RAW: u64 = 20;
    const RAW_LEN: usize = 100;
    const PINGS: u32 = 5;
    let frames: Vec<Vec<u8>> = (0..RAW)
        .map(|i| frame(mac_bytes(MAC_A), mac_bytes(MAC_B), None, RAW_LEN, i as u8))
        .collect();
    send_raw(&b, "eth0", &frames);
    let s = ping(&b, "10.0.0.1", PINGS, Duration::from_millis(20), None).expect("ping");
    assert_eq!(s.received, PINGS, "{s:?}");
    let pings = u64::from(PINGS);
    let (rx_packets, rx_bytes) = (RAW + pings, RAW * RAW_LEN as u64 + pings * ECHO_FRAME);
    let (tx_packets, tx_bytes) = (pings, pings * ECHO_FRAME);

    // Counter samples every second: wait for one that includes the traffic.
    let mut seen = Exported::default();
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 65536];
    loop {
        if let Ok(n) = collector.recv(&mut buf) {
            seen.add(&buf[..n], ifindex);
        }
        let done = seen.counters.is_some_and(|c| {
            u64::from(c.in_ucast_pkts) >= rx_packets && u64::from(c.out_ucast_pkts) >= tx_packets
        });
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no counter sample with the traffic within 30 s: {seen:?}"
        );
    }
    for d in drain(&collector, Duration::from_millis(300)) {
        seen.add(&d, ifindex);
    }
    let c = seen.counters.expect("generic counters");
    assert_eq!(
        (
            u64::from(c.in_ucast_pkts),
            c.in_octets,
            u64::from(c.out_ucast_pkts),
            c.out_octets
        ),
        (rx_packets, rx_bytes, tx_packets, tx_bytes),
        "generic interface counters exact: {c:?}"
    );
    assert_eq!(
        (
            c.in_multicast_pkts,
            c.in_broadcast_pkts,
            c.out_multicast_pkts
        ),
        (0, 0, 0)
    );
    assert_eq!(c.if_type, 6, "ethernetCsmacd");
    // 1:1 sampling: one flow sample per packet, with its frame length.
    assert_eq!(
        seen.ingress,
        BTreeMap::from([(ECHO_FRAME as u32, pings), (RAW_LEN as u32, RAW)]),
        "ingress flow samples"
    );
    assert_eq!(
        seen.egress,
        BTreeMap::from([(ECHO_FRAME as u32, pings)]),
        "egress flow samples"
    );

    // `hostd telemetry show` reads the same counters from the pinned maps.
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", a.name()))
        .arg(hostd_bin())
        .args(["telemetry", "show", "--pin-dir", pins_arg, "-o", "json"])
        .output()
        .expect("hostd telemetry show");
    assert!(
        out.status.success(),
        "show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show JSON");
    let eth0: Vec<&serde_json::Value> = shown["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter(|i| i["ifindex"] == ifindex)
        .collect();
    assert_eq!(eth0.len(), 1, "one (eth0, untagged) key: {shown}");
    assert_eq!(eth0[0]["interface"], "eth0");
    assert_eq!(eth0[0]["vlan"], serde_json::Value::Null);
    assert_eq!(
        (
            &eth0[0]["rx"]["packets"],
            &eth0[0]["rx"]["bytes"],
            &eth0[0]["tx"]["packets"],
            &eth0[0]["tx"]["bytes"]
        ),
        (
            &rx_packets.into(),
            &rx_bytes.into(),
            &tx_packets.into(),
            &tx_bytes.into()
        ),
        "{shown}"
    );
    let subnet = |n: &str| {
        shown["subnets"]
            .as_array()
            .expect("subnets")
            .iter()
            .find(|s| s["subnet"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("subnet {n} in {shown}"))
    };
    // Longest prefix: requests to .1 and replies from .1 are the /32's; the
    // other ends (.2) fall in the /24.
    for (n, key) in [
        ("10.0.0.1/32", "to-packets"),
        ("10.0.0.1/32", "from-packets"),
        ("10.0.0.0/24", "to-packets"),
        ("10.0.0.0/24", "from-packets"),
    ] {
        assert_eq!(subnet(n)[key], pings, "{n} {key}: {shown}");
    }

    // SIGTERM: a clean stop, a final counter export, nothing left attached.
    let status = hostd.terminate(Duration::from_secs(30));
    hostd.wait_for("everything detached", Duration::from_secs(5));
    assert!(
        status.success(),
        "hostd exit {status}: {}",
        hostd.log.join("\n")
    );
    let before = seen.counter_samples;
    for d in drain(&collector, Duration::from_millis(300)) {
        seen.add(&d, ifindex);
    }
    assert!(
        seen.counter_samples > before,
        "final counter export on stop"
    );
    let last = seen.counters.expect("counters");
    assert_eq!(
        (
            u64::from(last.in_ucast_pkts),
            u64::from(last.out_ucast_pkts)
        ),
        (rx_packets, tx_packets),
        "final counters"
    );
    assert_nothing_attached(&a);
    hostd_telemetry::unpin(&pins).expect("unpin");
}

// ---------------------------------------------------------------------------
// Counters that match the wire: GSO/GRO skbs, QinQ, a full counter map.
// ---------------------------------------------------------------------------

/// L3/L4 of a test frame built by [`ip_frame`].
#[derive(Clone, Copy)]
enum Ip {
    /// IPv4 10.1.0.1 -> 10.2.0.2.
    V4,
    /// IPv6 2001:db8:1::1 -> 2001:db8:2::2.
    V6,
}

#[derive(Clone, Copy)]
enum L4 {
    /// TCP with 12 bytes of options (NOP, NOP, timestamps): 32 bytes, as
    /// Linux sends on an established connection.
    Tcp,
    /// UDP: 8 bytes.
    Udp,
}

const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

/// An Ethernet frame from MAC_A to MAC_B with `tags` (TPID, TCI; outermost
/// first), an IP header, an L4 header and `payload` bytes. Lengths in the
/// IP/UDP headers are those of the whole frame (as in a GSO skb);
/// checksums are not computed (nothing here checks them).
fn ip_frame(tags: &[(u16, u16)], ip: Ip, l4: L4, payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&mac_bytes(MAC_B));
    f.extend_from_slice(&mac_bytes(MAC_A));
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    let l4_len = match l4 {
        L4::Tcp => 32,
        L4::Udp => 8,
    };
    let proto = match l4 {
        L4::Tcp => 6u8,
        L4::Udp => 17,
    };
    match ip {
        Ip::V4 => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = (20 + l4_len + payload) as u16;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            f.extend_from_slice(&[10, 1, 0, 1, 10, 2, 0, 2]);
        }
        Ip::V6 => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&((l4_len + payload) as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            let mut src = [0u8; 16];
            src[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1]);
            src[15] = 1;
            let mut dst = [0u8; 16];
            dst[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 2]);
            dst[15] = 2;
            f.extend_from_slice(&src);
            f.extend_from_slice(&dst);
        }
    }
    match l4 {
        L4::Tcp => {
            f.extend_from_slice(&[0x9c, 0x40, 0x23, 0x29]); // ports 40000 -> 9001
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]); // seq, ack
            f.extend_from_slice(&[0x80, 0x10, 0x01, 0xf5, 0, 0, 0, 0]); // doff 8, ACK
            f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP TS
        }
        L4::Udp => {
            f.extend_from_slice(&[0x9c, 0x40, 0x23, 0x28]); // ports 40000 -> 9000
            f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        }
    }
    f.extend((0..payload).map(|i| i as u8));
    f
}

fn v4_subnets() -> [IpNet; 4] {
    [
        net("10.1.0.0/16"),
        net("10.2.0.0/16"),
        net("2001:db8:1::/48"),
        net("2001:db8:2::/48"),
    ]
}

/// Every flow sample in `datagrams`: (frame length, sample pool), decoded
/// with the collector's sFlow decoder.
fn flow_samples(datagrams: &[Vec<u8>]) -> Vec<(u32, u32)> {
    use collector::sflow::{decode, FlowRecord, Sample};
    let mut out = Vec::new();
    for d in datagrams {
        let dg = decode(d).expect("datagram decodes");
        for s in dg.samples() {
            if let Sample::Flow(f) = s.expect("sample decodes") {
                for r in f.records() {
                    if let FlowRecord::RawHeader { frame_length, .. } = r.expect("record") {
                        out.push((frame_length, f.sample_pool));
                    }
                }
            }
        }
    }
    out
}

/// GSO skbs injected with BPF_PROG_TEST_RUN, the skb's gso_segs and
/// gso_size set as the kernel sets them for TSO/GSO sends and GRO receives
/// (and gso_segs 0, as on SKB_GSO_DODGY skbs from a VM's tap): packets are
/// segments, bytes are the segments' wire bytes, every segment is one
/// chance to be sampled (1:1 here: one flow sample per segment, with the
/// segment's frame length), and sample_pool counts segments.
#[test]
fn gso_skbs_count_as_their_segments() {
    use hostd_telemetry::TestSkb;
    let (a, _b) = veth_pair(false);
    // (what, frame, gso_segs, gso_size, expected segments, frame lengths)
    struct Case {
        what: &'static str,
        frame: Vec<u8>,
        segs: u32,
        size: u32,
        want_segs: u64,
        full: u32,
        last: u32,
        vlan: u32,
    }
    // BPF_PROG_TEST_RUN takes at most a page of packet data: small segment
    // sizes keep the skbs under it (the programs read only headers).
    let tcp = ip_frame(&[], Ip::V4, L4::Tcp, 9 * 300 + 100);
    let cases = [
        Case {
            what: "TCP/IPv4 TSO, 10 segments of 300 (the last 100)",
            frame: tcp.clone(),
            segs: 10,
            size: 300,
            want_segs: 10,
            full: 66 + 300,
            last: 66 + 100,
            vlan: NO_VLAN,
        },
        Case {
            what: "the same with gso_segs not yet counted (SKB_GSO_DODGY)",
            frame: tcp,
            segs: 0,
            size: 300,
            want_segs: 10,
            full: 66 + 300,
            last: 66 + 100,
            vlan: NO_VLAN,
        },
        Case {
            what: "UDP/IPv6 GSO, 5 segments of 500",
            frame: ip_frame(&[], Ip::V6, L4::Udp, 5 * 500),
            segs: 5,
            size: 500,
            want_segs: 5,
            full: 62 + 500,
            last: 62 + 500,
            vlan: NO_VLAN,
        },
        Case {
            what: "QinQ (802.1ad 300, 802.1Q 10) TCP/IPv4, 3 segments of 500 (the last 1)",
            frame: ip_frame(
                &[(TPID_8021AD, 300), (TPID_8021Q, 10)],
                Ip::V4,
                L4::Tcp,
                2 * 500 + 1,
            ),
            segs: 3,
            size: 500,
            want_segs: 3,
            full: 74 + 500,
            last: 74 + 1,
            vlan: 300,
        },
        Case {
            what: "UDP/IPv4 GSO, 100 segments of 30 (more samples than draws per skb)",
            frame: ip_frame(&[], Ip::V4, L4::Udp, 100 * 30),
            segs: 100,
            size: 30,
            want_segs: 100,
            full: 72,
            last: 72,
            vlan: NO_VLAN,
        },
        Case {
            what: "not GSO: one 98-byte UDP/IPv4 frame",
            frame: ip_frame(&[], Ip::V4, L4::Udp, 56),
            segs: 0,
            size: 0,
            want_segs: 1,
            full: 98,
            last: 98,
            vlan: NO_VLAN,
        },
    ];
    let (per_key, subnets, datagrams, ifindex, mode) = a.enter(|| {
        let ifindex = hostd_telemetry::loader::ifindex("eth0").expect("ifindex");
        let collector = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("collector socket");
        let mut t = Telemetry::load().expect("load");
        t.set_subnets(&v4_subnets()).expect("subnets");
        t.set_sampling(1, 128).expect("sampling");
        let mut agent = Agent::new(
            &mut t,
            AgentConfig {
                collectors: vec![collector.local_addr().expect("addr")],
                sampling_rate: 1,
                ..Default::default()
            },
        )
        .expect("agent");
        for c in &cases {
            let skb = TestSkb {
                ifindex,
                gso_segs: c.segs,
                gso_size: c.size,
            };
            t.test_run_with(programs::INGRESS, &c.frame, &skb, 1)
                .unwrap_or_else(|e| panic!("{}: test run: {e:?}", c.what));
            let (rx, _) = t.counters().expect("counters");
            println!(
                "{}: rx now {} packets, {} bytes",
                c.what, rx.packets, rx.bytes
            );
        }
        let sent = agent.export_samples(&t).expect("export");
        println!("exported {sent:?}");
        let datagrams = drain(&collector, Duration::from_millis(300));
        (
            t.interface_vlan_counters().expect("counters"),
            t.subnet_counters().expect("subnets"),
            datagrams,
            ifindex,
            t.mode(),
        )
    });
    println!("kernel {}: {mode:?}", lab::kernel::release());

    // Per key: packets = segments, bytes = the segments' frames.
    let mut want: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for c in &cases {
        let e = want.entry(c.vlan).or_default();
        e.0 += c.want_segs;
        e.1 += (c.want_segs - 1) * u64::from(c.full) + u64::from(c.last);
    }
    let got: BTreeMap<u32, (u64, u64)> = per_key
        .iter()
        .map(|(k, c)| {
            assert_eq!(k.ifindex, ifindex);
            assert_eq!(
                (c.rx.samples, c.rx.sample_drops),
                (c.rx.packets, 0),
                "1:1: every segment sampled (VLAN {})",
                k.vlan
            );
            (k.vlan, (c.rx.packets, c.rx.bytes))
        })
        .collect();
    assert_eq!(got, want, "per (interface, VLAN): (packets, bytes)");
    // The bytes are what the frames of the segmented skb add up to: skb
    // length plus the headers of every segment after the first.
    for c in &cases {
        let hdr = u64::from(c.full - c.size);
        assert_eq!(
            (c.want_segs - 1) * u64::from(c.full) + u64::from(c.last),
            c.frame.len() as u64 + (c.want_segs - 1) * hdr,
            "{}: test arithmetic",
            c.what
        );
    }

    // Subnets: the IPv4 cases (QinQ included) from 10.1/16 to 10.2/16.
    let got: BTreeMap<IpNet, SubnetCounters> = subnets.into_iter().collect();
    let (mut p4, mut b4, mut p6, mut b6) = (0, 0, 0, 0);
    for c in &cases {
        let bytes = (c.want_segs - 1) * u64::from(c.full) + u64::from(c.last);
        if c.frame[12..14] == [0x86, 0xdd] {
            (p6, b6) = (p6 + c.want_segs, b6 + bytes);
        } else {
            (p4, b4) = (p4 + c.want_segs, b4 + bytes);
        }
    }
    let sc = |to: (u64, u64), from: (u64, u64)| SubnetCounters {
        to_packets: to.0,
        to_bytes: to.1,
        from_packets: from.0,
        from_bytes: from.1,
    };
    assert_eq!(got[&net("10.1.0.0/16")], sc((0, 0), (p4, b4)));
    assert_eq!(got[&net("10.2.0.0/16")], sc((p4, b4), (0, 0)));
    assert_eq!(got[&net("2001:db8:1::/48")], sc((0, 0), (p6, b6)));
    assert_eq!(got[&net("2001:db8:2::/48")], sc((p6, b6), (0, 0)));

    // sFlow: one flow sample per segment, with that segment's length.
    let samples = flow_samples(&datagrams);
    let mut want_lens: Vec<u32> = cases
        .iter()
        .flat_map(|c| {
            (0..c.want_segs).map(move |i| if i + 1 == c.want_segs { c.last } else { c.full })
        })
        .collect();
    let mut got_lens: Vec<u32> = samples.iter().map(|(l, _)| *l).collect();
    want_lens.sort_unstable();
    got_lens.sort_unstable();
    assert_eq!(got_lens, want_lens, "frame lengths of the flow samples");
    let total: u64 = cases.iter().map(|c| c.want_segs).sum();
    assert!(
        samples.iter().all(|(_, pool)| u64::from(*pool) == total),
        "sample_pool = segments seen ({total}): {:?}",
        samples
            .iter()
            .map(|(_, p)| p)
            .collect::<std::collections::BTreeSet<_>>()
    );
}

/// A snapshot of one side's counters.
#[derive(Debug, Clone, Default)]
struct Snap {
    keys: BTreeMap<IfVlanKey, hostd_telemetry::IfVlanCounters>,
    subnets: BTreeMap<IpNet, SubnetCounters>,
}

impl Snap {
    /// eth0's totals over VLANs: (rx, tx).
    fn totals(&self) -> (hostd_telemetry::DirCounters, hostd_telemetry::DirCounters) {
        let mut t = hostd_telemetry::IfVlanCounters::default();
        for c in self.keys.values() {
            t.add(c);
        }
        (t.rx, t.tx)
    }
}

/// Runs `body` while the programs count on eth0 of `a` and of `b` (each
/// loaded, attached and read on a thread of its namespace); `body` gets a
/// function reading both sides.
fn with_counters_on_both<R>(
    a: &NetNs,
    b: &NetNs,
    subnets: &[IpNet],
    body: impl FnOnce(&dyn Fn() -> (Snap, Snap)) -> R,
) -> R {
    std::thread::scope(|s| {
        let mut requests = Vec::new();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        for ns in [a, b] {
            let (req_tx, req_rx) = mpsc::channel::<mpsc::Sender<Snap>>();
            requests.push(req_tx);
            let ready = ready_tx.clone();
            s.spawn(move || {
                ns.enter(move || {
                    let mut t = Telemetry::load().expect("load");
                    t.set_subnets(subnets).expect("subnets");
                    t.attach("eth0").expect("attach");
                    ready.send(()).expect("ready");
                    while let Ok(reply) = req_rx.recv() {
                        let snap = Snap {
                            keys: t.interface_vlan_counters().expect("counters"),
                            subnets: t.subnet_counters().expect("subnets").into_iter().collect(),
                        };
                        let _ = reply.send(snap);
                    }
                })
            });
        }
        drop(ready_tx);
        for _ in 0..2 {
            ready_rx.recv().expect("telemetry ready");
        }
        let read = || {
            let mut snaps = requests.iter().map(|r| {
                let (tx, rx) = mpsc::channel();
                r.send(tx).expect("request");
                rx.recv().expect("snapshot")
            });
            let sa = snaps.next().expect("a");
            let sb = snaps.next().expect("b");
            (sa, sb)
        };
        let r = body(&read);
        drop(requests);
        r
    })
}

/// `eth0`'s own statistics in `ns`: (tx_packets, rx_packets). A veth counts
/// skbs, not segments.
fn veth_skbs(ns: &NetNs) -> (u64, u64) {
    let out = ns.ip(&["-j", "-s", "link", "show", "dev", "eth0"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    let s = &v[0]["stats64"];
    let n = |d: &str| s[d]["packets"].as_u64().expect("packets");
    (n("tx"), n("rx"))
}

/// `Tcp: OutSegs` of the namespace (segments, as TCP counts them: a TSO skb
/// of N segments is N).
fn tcp_out_segs(ns: &NetNs) -> u64 {
    let snmp = ns.run(&["cat", "/proc/net/snmp"]);
    let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    assert_eq!(tcp.len(), 2, "/proc/net/snmp Tcp lines: {snmp}");
    let names: Vec<&str> = tcp[0].split_whitespace().collect();
    let values: Vec<&str> = tcp[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == "OutSegs").expect("OutSegs");
    values[i].parse().expect("OutSegs value")
}

/// Two namespaces with 10.0.0.1 (a) and 10.0.0.2 (b) on a veth pair
/// (TSO/GSO on, as veth has by default), static neighbours, IPv6 off.
fn addressed_pair() -> (NetNs, NetNs) {
    let (a, b) = veth_pair(false);
    a.ip(&["addr", "add", "10.0.0.1/24", "dev", "eth0"]);
    b.ip(&["addr", "add", "10.0.0.2/24", "dev", "eth0"]);
    a.ip(&[
        "neigh",
        "replace",
        "10.0.0.2",
        "lladdr",
        MAC_B,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    b.ip(&[
        "neigh",
        "replace",
        "10.0.0.1",
        "lladdr",
        MAC_A,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let feats = a.run(&["ethtool", "-k", "eth0"]);
    for f in [
        "tcp-segmentation-offload: on",
        "generic-segmentation-offload: on",
    ] {
        assert!(feats.contains(f), "veth without {f}: {feats}");
    }
    (a, b)
}

/// Real GSO traffic over a veth pair (which passes GSO skbs unsegmented):
/// UDP sends with UDP_SEGMENT of a known segment count, and a TCP bulk
/// transfer with TSO. Each segment counts once at the sender's egress and
/// the receiver's ingress, checked against the receiving socket (UDP: one
/// datagram per segment) and the sender's TCP stack (`OutSegs` counts
/// segments); the veth's own counters, one per skb, show the skbs were GSO.
#[test]
fn udp_gso_and_tcp_tso_count_every_segment() {
    const SENDS: u64 = 5;
    const GSO: usize = 1000;
    const PAYLOAD: usize = 8 * GSO + 500; // 9 segments, the last of 500
    const SEGS: u64 = 9;
    const TCP_BYTES: usize = 4 << 20;
    let (a, b) = addressed_pair();
    let (a, b) = (&a, &b);
    let subnets = [net("10.0.0.1/32"), net("10.0.0.2/32")];
    with_counters_on_both(a, b, &subnets, |read| {
        // --- UDP GSO ---
        let skbs0 = veth_skbs(a);
        let received: Vec<usize> = std::thread::scope(|s| {
            let (ready_tx, ready_rx) = mpsc::channel();
            let rx = s.spawn(move || {
                b.enter(move || {
                    let sock = UdpSocket::bind("10.0.0.2:9000").expect("bind b");
                    sock.set_read_timeout(Some(lab::wait::scaled(Duration::from_secs(10))))
                        .expect("timeout");
                    ready_tx.send(()).expect("ready");
                    let mut sizes = Vec::new();
                    let mut buf = vec![0u8; 65536];
                    while sizes.len() < (SENDS * SEGS) as usize {
                        match sock.recv(&mut buf) {
                            Ok(n) => sizes.push(n),
                            Err(e) => panic!("b received {} datagrams, then {e}", sizes.len()),
                        }
                    }
                    sizes
                })
            });
            ready_rx.recv().expect("receiver ready");
            a.enter(|| {
                use std::os::fd::AsRawFd as _;
                let sock = UdpSocket::bind("10.0.0.1:0").expect("bind a");
                let size = GSO as libc::c_int;
                // SAFETY: a valid socket and a c_int option value of its size.
                let rc = unsafe {
                    libc::setsockopt(
                        sock.as_raw_fd(),
                        libc::SOL_UDP,
                        libc::UDP_SEGMENT,
                        std::ptr::from_ref(&size).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                assert_eq!(rc, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
                let payload = vec![0x5au8; PAYLOAD];
                for _ in 0..SENDS {
                    let n = sock.send_to(&payload, "10.0.0.2:9000").expect("send GSO");
                    assert_eq!(n, PAYLOAD);
                }
            });
            rx.join().expect("receiver")
        });
        let skbs1 = veth_skbs(a);
        let mut want_sizes = vec![GSO; (SENDS * (SEGS - 1)) as usize];
        want_sizes.extend(std::iter::repeat_n(500, SENDS as usize));
        let mut got_sizes = received.clone();
        got_sizes.sort_unstable();
        want_sizes.sort_unstable();
        assert_eq!(got_sizes, want_sizes, "datagrams b's socket received");
        let udp_bytes = SENDS * ((SEGS - 1) * (42 + GSO as u64) + 42 + 500);
        let want = (SENDS * SEGS, udp_bytes);
        lab::wait_until(
            "UDP segments counted",
            lab::wait::scaled(Duration::from_secs(10)),
            || {
                let (sa, sb) = read();
                sa.totals().1.packets >= want.0 && sb.totals().0.packets >= want.0
            },
        );
        let (sa, sb) = read();
        let (a_rx, a_tx) = sa.totals();
        let (b_rx, b_tx) = sb.totals();
        println!(
            "UDP GSO: a egress {a_tx:?}; b ingress {b_rx:?}; veth a tx skbs {}",
            skbs1.0 - skbs0.0
        );
        assert_eq!(
            (a_tx.packets, a_tx.bytes),
            want,
            "a egress: (segments, wire bytes)"
        );
        assert_eq!(
            (b_rx.packets, b_rx.bytes),
            want,
            "b ingress: (segments, wire bytes)"
        );
        assert_eq!((a_rx.packets, b_tx.packets), (0, 0), "nothing came back");
        assert_eq!(
            skbs1.0 - skbs0.0,
            SENDS,
            "the veth carried one skb per send: the sends were GSO"
        );
        let s1 = &sb.subnets[&net("10.0.0.1/32")];
        assert_eq!((s1.from_packets, s1.from_bytes), want, "b: from 10.0.0.1");

        // --- TCP bulk transfer with TSO ---
        let out0 = (tcp_out_segs(a), tcp_out_segs(b));
        let skbs0 = veth_skbs(a);
        let got = std::thread::scope(|s| {
            let (ready_tx, ready_rx) = mpsc::channel();
            let server = s.spawn(move || {
                b.enter(move || {
                    use std::io::Read as _;
                    let l = std::net::TcpListener::bind("10.0.0.2:9001").expect("listen");
                    ready_tx.send(()).expect("ready");
                    let (mut c, _) = l.accept().expect("accept");
                    let mut buf = vec![0u8; 1 << 16];
                    let mut n = 0usize;
                    loop {
                        match c.read(&mut buf).expect("read") {
                            0 => break,
                            k => n += k,
                        }
                    }
                    n
                })
            });
            ready_rx.recv().expect("server ready");
            a.enter(|| {
                use std::io::{Read as _, Write as _};
                let mut c = std::net::TcpStream::connect("10.0.0.2:9001").expect("connect");
                c.write_all(&vec![0xa5u8; TCP_BYTES]).expect("write");
                c.shutdown(std::net::Shutdown::Write).expect("shutdown");
                // Until b closes too.
                let mut rest = Vec::new();
                c.read_to_end(&mut rest).expect("read to EOF");
            });
            server.join().expect("server")
        });
        assert_eq!(got, TCP_BYTES, "b received every byte");
        // Every segment either side's TCP sent shows in the counters (the
        // last ACK may still be on its way: wait for it).
        let (base_a, base_b) = (sa.totals().1.packets, sb.totals().1.packets);
        let mut last = (0, 0, 0, 0);
        let settled =
            lab::wait::try_wait_until(lab::wait::scaled(Duration::from_secs(10)), &mut || {
                let (xa, xb) = read();
                let segs_a = tcp_out_segs(a) - out0.0;
                let segs_b = tcp_out_segs(b) - out0.1;
                last = (
                    xa.totals().1.packets - base_a,
                    segs_a,
                    xb.totals().1.packets - base_b,
                    segs_b,
                );
                last.0 == last.1 && last.2 == last.3
            });
        assert!(
            settled.is_ok(),
            "egress packets vs TCP OutSegs: a {} vs {}, b {} vs {}",
            last.0,
            last.1,
            last.2,
            last.3
        );
        let skbs1 = veth_skbs(a);
        let (xa, xb) = read();
        let a_tx = xa.totals().1.packets - base_a;
        let a_tx_bytes = xa.totals().1.bytes - sa.totals().1.bytes;
        let b_rx = xb.totals().0.packets - sb.totals().0.packets;
        let b_rx_bytes = xb.totals().0.bytes - sb.totals().0.bytes;
        let a_skbs = skbs1.0 - skbs0.0;
        println!(
            "TCP: a sent {a_tx} segments ({a_tx_bytes} bytes) in {a_skbs} skbs; b received {b_rx} ({b_rx_bytes} bytes); b sent {}",
            last.2
        );
        assert_eq!(
            (b_rx, b_rx_bytes),
            (a_tx, a_tx_bytes),
            "b ingress = a egress"
        );
        // Every segment carries Ethernet 14 + IPv4 20 + TCP 32 (timestamps);
        // the SYN 8 more (MSS, SACK-permitted, window scale).
        assert_eq!(
            a_tx_bytes,
            TCP_BYTES as u64 + 66 * a_tx + 8,
            "a egress wire bytes for {a_tx} segments"
        );
        assert!(
            a_skbs * 4 < a_tx,
            "TSO: {a_tx} segments went as {a_skbs} skbs (expected several segments per skb)"
        );
    });
}

/// QinQ frames (802.1ad outer + 802.1Q inner, and 802.1Q in 802.1Q),
/// single-tagged and untagged, IPv4 and IPv6: counted under the outer VLAN
/// and in their subnets at the sender's egress (both tags in the frame) and
/// the receiver's ingress (the kernel takes the outer tag into skb
/// metadata, the inner stays in the frame).
#[test]
fn qinq_frames_count_under_the_outer_vlan_and_in_their_subnets() {
    let (a, b) = veth_pair(false);
    let qinq = [(TPID_8021AD, (3 << 13) | 300), (TPID_8021Q, 10)];
    let qinq6 = [(TPID_8021AD, 300), (TPID_8021Q, 11)];
    let old_qinq = [(TPID_8021Q, 400), (TPID_8021Q, 5)];
    let mut frames = Vec::new();
    for _ in 0..4 {
        frames.push(ip_frame(&qinq, Ip::V4, L4::Udp, 50));
    }
    for _ in 0..3 {
        frames.push(ip_frame(&qinq6, Ip::V6, L4::Udp, 30));
    }
    for _ in 0..2 {
        frames.push(ip_frame(&[(TPID_8021Q, 20)], Ip::V4, L4::Udp, 54));
    }
    frames.push(ip_frame(&[], Ip::V4, L4::Udp, 58));
    for _ in 0..2 {
        frames.push(ip_frame(&old_qinq, Ip::V4, L4::Tcp, 26));
    }
    assert!(frames.iter().all(|f| f.len() == 100), "100-byte frames");
    let n = frames.len() as u64;
    let (sa, sb) = with_counters_on_both(&a, &b, &v4_subnets(), |read| {
        send_raw(&a, "eth0", &frames);
        lab::wait_until(
            "every frame counted",
            lab::wait::scaled(Duration::from_secs(10)),
            || {
                let (sa, sb) = read();
                sa.totals().1.packets >= n && sb.totals().0.packets >= n
            },
        );
        read()
    });
    let want: BTreeMap<u32, (u64, u64)> = [
        (300, (7, 700)),
        (20, (2, 200)),
        (400, (2, 200)),
        (NO_VLAN, (1, 100)),
    ]
    .into();
    for (name, snap, tx) in [
        ("a egress (tags in the frame)", &sa, true),
        ("b ingress (outer tag offloaded)", &sb, false),
    ] {
        let got: BTreeMap<u32, (u64, u64)> = snap
            .keys
            .iter()
            .map(|(k, c)| {
                let d = if tx { &c.tx } else { &c.rx };
                (k.vlan, (d.packets, d.bytes))
            })
            .collect();
        assert_eq!(got, want, "{name}: per outer VLAN (packets, bytes)");
        let sc = |to: u64, from: u64| SubnetCounters {
            to_packets: to,
            to_bytes: to * 100,
            from_packets: from,
            from_bytes: from * 100,
        };
        assert_eq!(snap.subnets[&net("10.1.0.0/16")], sc(0, 9), "{name}");
        assert_eq!(snap.subnets[&net("10.2.0.0/16")], sc(9, 0), "{name}");
        assert_eq!(snap.subnets[&net("2001:db8:1::/48")], sc(0, 3), "{name}");
        assert_eq!(snap.subnets[&net("2001:db8:2::/48")], sc(3, 0), "{name}");
    }
}

/// A counter map too small for the (interface, VLAN) pairs seen: the
/// packets of pairs without an entry are counted per interface (VLAN
/// unknown) and, with the overflow map full too, as lost; interface totals,
/// `hostd telemetry show` and sFlow's generic interface counters include
/// them.
#[test]
fn a_full_counter_map_counts_what_it_cannot_hold() {
    let (a, _b) = veth_pair(false);
    // A second interface in a, for the overflow map to overflow.
    a.ip(&[
        "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
    ]);
    a.ip(&["link", "set", "eth1", "up"]);
    a.ip(&["link", "set", "eth1p", "up"]);
    let (dst, src) = (mac_bytes(MAC_B), mac_bytes(MAC_A));
    // eth0: VLANs 1 and 2 take the two entries; 3, 4 and untagged do not fit.
    let mut eth0 = Vec::new();
    for (vlan, k) in [
        (Some(1), 3),
        (Some(2), 3),
        (Some(3), 3),
        (Some(4), 3),
        (None, 2),
    ] {
        for i in 0..k {
            eth0.push(frame(dst, src, vlan.map(|v| (v, 0)), 100, i));
        }
    }
    // eth1: no room in either map (the overflow map holds one interface).
    let eth1: Vec<Vec<u8>> = (0..4)
        .map(|i| frame(dst, src, Some((7, 0)), 80, i))
        .collect();

    let (out, show, samples) = a.enter(|| {
        let pin = private_bpffs();
        let collector = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("collector socket");
        let mut t = Telemetry::load_with(&LoadOptions {
            pin_dir: Some(pin.clone()),
            max_if_vlans: 2,
            max_interfaces: 1,
            ..LoadOptions::default()
        })
        .expect("load");
        t.attach("eth0").expect("attach eth0");
        t.attach("eth1").expect("attach eth1");
        let mut agent = Agent::new(
            &mut t,
            AgentConfig {
                collectors: vec![collector.local_addr().expect("addr")],
                ..Default::default()
            },
        )
        .expect("agent");
        send_raw(&a, "eth0", &eth0);
        send_raw(&a, "eth1", &eth1);
        lab::wait_until(
            "every frame counted",
            lab::wait::scaled(Duration::from_secs(10)),
            || {
                t.counters()
                    .is_ok_and(|(_, tx)| tx.packets >= (eth0.len() + eth1.len()) as u64)
            },
        );
        let out = (
            hostd_telemetry::loader::ifindex("eth0").expect("ifindex"),
            t.interface_vlan_counters().expect("per VLAN"),
            t.unattributed_counters().expect("unattributed"),
            t.lost_counters().expect("lost"),
            t.interface_counters().expect("per interface"),
        );
        // What `hostd telemetry show` reads from the pinned maps.
        let show = hostd::telemetry::show(&pin).expect("show");
        agent.export_counters(&t).expect("export counters");
        let datagrams = drain(&collector, Duration::from_millis(300));
        let _ = hostd_telemetry::unpin(&pin);
        (out, show, datagrams)
    });
    let (ifindex, per_vlan, unattributed, lost, per_if) = out;
    let got: BTreeMap<u32, (u64, u64)> = per_vlan
        .iter()
        .map(|(k, c)| (k.vlan, (c.tx.packets, c.tx.bytes)))
        .collect();
    assert_eq!(
        got,
        [(1, (3, 300)), (2, (3, 300))].into(),
        "two entries: the first two VLANs seen"
    );
    assert_eq!(
        unattributed
            .iter()
            .map(|(i, c)| (*i, c.tx.packets, c.tx.bytes))
            .collect::<Vec<_>>(),
        vec![(ifindex, 8, 800)],
        "eth0's packets without an entry: VLANs 3, 4 and untagged"
    );
    assert_eq!((lost.tx.packets, lost.tx.bytes), (4, 320), "eth1: lost");
    assert_eq!(per_if[&ifindex].tx.packets, 14, "eth0 total: every frame");
    assert_eq!(per_if[&ifindex].tx.bytes, 1400);
    assert_eq!(show.unattributed, unattributed, "hostd telemetry show");
    assert_eq!(show.lost, lost, "hostd telemetry show");
    let text = hostd::telemetry::show_text(&show, &BTreeMap::new());
    assert!(text.contains("map is full"), "{text}");

    // sFlow generic interface counters of eth0 count all 14 frames.
    use collector::sflow::{decode, CounterRecord, Sample};
    let mut generic = Vec::new();
    for d in &samples {
        for s in decode(d).expect("datagram").samples() {
            if let Sample::Counters(c) = s.expect("sample") {
                for r in c.records() {
                    if let CounterRecord::Generic(g) = r.expect("record") {
                        generic.push(g);
                    }
                }
            }
        }
    }
    let g = generic
        .iter()
        .find(|g| g.if_index == ifindex)
        .unwrap_or_else(|| panic!("no generic counters for eth0 in {generic:?}"));
    assert_eq!((g.out_ucast_pkts, g.out_octets), (14, 1400), "{g:?}");
}

/// An ICMP echo frame between two addresses of one family: 98 bytes over
/// IPv4, 118 over IPv6 (the programs check no checksum).
fn echo_frame(src: std::net::IpAddr, dst: std::net::IpAddr) -> Vec<u8> {
    use std::net::IpAddr;
    let mut p = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 84, 0, 0, 0x40, 0, 64, 1, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 64, 58, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    p.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    p.extend((0..56u8).map(|i| i.wrapping_mul(7)));
    p
}

/// Per-subnet counters are exact with nested prefixes, IPv4 and IPv6, in
/// the hash-table lookup, in the LPM-trie lookup (forced, and automatic past
/// eight prefix lengths) and across a change of the subnets (the tables
/// switch generation): every (source, destination) pair is run a distinct
/// number of times through the ingress program with BPF_PROG_TEST_RUN and
/// each subnet must count exactly the runs whose source or destination has
/// it as longest matching prefix (a reference computed here).
#[test]
fn subnet_counters_follow_the_longest_prefix_in_every_lookup() {
    use hostd_telemetry::SubnetLookup;
    use std::net::IpAddr;

    let nested = [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.0/24",
        "10.1.2.3/32",
        "192.0.2.0/24",
        "2001:db8::/32",
        "2001:db8:1::/48",
        "2001:db8:1:2::/64",
        "2001:db8:1:2::3/128",
    ];
    // Ten IPv4 lengths: past the hash tables' eight.
    let many: Vec<String> = (8..=17)
        .map(|l| format!("10.0.0.0/{l}"))
        .chain(["2001:db8:1::/48".to_owned()])
        .collect();
    let addrs: Vec<IpAddr> = [
        "10.1.2.3",
        "10.1.2.4",
        "10.1.3.1",
        "10.9.0.1",
        "10.0.0.1",
        "10.0.128.1",
        "192.0.2.77",
        "198.51.100.1",
        "2001:db8:1:2::3",
        "2001:db8:1:2::4",
        "2001:db8:1:3::1",
        "2001:db8:2::1",
        "2001:db9::1",
    ]
    .iter()
    .map(|a| a.parse().expect("addr"))
    .collect();
    // Every ordered pair of one family, run 1, 2, 3, ... times.
    let pairs: Vec<(IpAddr, IpAddr, u32)> = addrs
        .iter()
        .flat_map(|s| addrs.iter().map(move |d| (*s, *d)))
        .filter(|(s, d)| s.is_ipv4() == d.is_ipv4())
        .enumerate()
        .map(|(i, (s, d))| (s, d, 1 + (i % 7) as u32))
        .collect();
    let longest = |nets: &[IpNet], a: IpAddr| {
        nets.iter()
            .filter(|n| n.contains(&a))
            .max_by_key(|n| n.prefix_len())
            .copied()
    };

    let mut t = Telemetry::load_with(&LoadOptions {
        max_subnets: 64,
        ..Default::default()
    })
    .expect("load");
    /// (what, subnets, trie only, expected lookup of IPv4 and IPv6)
    type Phase = (&'static str, Vec<IpNet>, bool, (SubnetLookup, SubnetLookup));
    let phases: [Phase; 4] = [
        (
            "hash tables",
            nested.iter().map(|n| net(n)).collect(),
            false,
            (
                SubnetLookup::Hash { lengths: 4 },
                SubnetLookup::Hash { lengths: 4 },
            ),
        ),
        (
            "LPM tries (forced)",
            nested.iter().map(|n| net(n)).collect(),
            true,
            (SubnetLookup::Trie, SubnetLookup::Trie),
        ),
        (
            "changed subnets, hash tables again",
            nested[1..].iter().map(|n| net(n)).collect(),
            false,
            (
                SubnetLookup::Hash { lengths: 3 },
                SubnetLookup::Hash { lengths: 4 },
            ),
        ),
        (
            "ten IPv4 lengths: trie for IPv4, hash for IPv6",
            many.iter().map(|n| net(n)).collect(),
            false,
            (SubnetLookup::Trie, SubnetLookup::Hash { lengths: 1 }),
        ),
    ];
    for (what, nets, trie_only, lookup) in phases {
        t.set_trie_only(trie_only).expect("trie only");
        t.set_subnets(&nets).expect("subnets");
        assert_eq!(t.subnet_lookup(), lookup, "{what}: lookup");
        let before: BTreeMap<IpNet, SubnetCounters> =
            t.subnet_counters().expect("counters").into_iter().collect();
        let mut want: BTreeMap<IpNet, SubnetCounters> = BTreeMap::new();
        for (s, d, n) in &pairs {
            let frame = echo_frame(*s, *d);
            t.test_run(programs::INGRESS, &frame, *n)
                .unwrap_or_else(|e| panic!("{what}: test run {s} -> {d}: {e:?}"));
            let (n, len) = (u64::from(*n), frame.len() as u64);
            if let Some(net) = longest(&nets, *s) {
                let c = want.entry(net).or_default();
                c.from_packets += n;
                c.from_bytes += n * len;
            }
            if let Some(net) = longest(&nets, *d) {
                let c = want.entry(net).or_default();
                c.to_packets += n;
                c.to_bytes += n * len;
            }
        }
        let after = t.subnet_counters().expect("counters");
        assert_eq!(after.len(), nets.len(), "{what}: every subnet has a slot");
        for (net, c) in after {
            let b = before.get(&net).copied().unwrap_or_default();
            let got = SubnetCounters {
                to_packets: c.to_packets - b.to_packets,
                to_bytes: c.to_bytes - b.to_bytes,
                from_packets: c.from_packets - b.from_packets,
                from_bytes: c.from_bytes - b.from_bytes,
            };
            assert_eq!(
                got,
                want.get(&net).copied().unwrap_or_default(),
                "{what}: {net}"
            );
        }
    }
}
