//! Benchmark of the telemetry programs (run as root):
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/targets/ebpf cargo run --release -p hostd-telemetry --example bench
//! CARGO_TARGET_DIR=/work/targets/ebpf cargo run --release -p hostd-telemetry --example bench -- --skip-iperf
//! ```
//!
//! 1. ns per packet with `BPF_PROG_TEST_RUN` (the kernel's own average over
//!    `repeat` runs of one 98-byte IPv4 frame): the no-op program (the cost of
//!    running any TC program under test-run), counters only, counters with
//!    1k and 64k subnets (looked up in the hash tables, and in the LPM tries
//!    as before them), and each of those plus 1:1000 sampling. Each case is
//!    measured `ROUNDS` times; the median is reported. One frame replayed a
//!    million times keeps its lookups cache-hot, so:
//! 2. ns per packet over [`SPREAD_FRAMES`] different frames (IPv4 and
//!    IPv6), source and destination each in a random configured subnet
//!    (random host bits), each frame run once per call (`repeat` 1: the
//!    kernel's figure then includes one clock read, which the no-op row
//!    measured the same way removes), [`SPREAD_PASSES`] passes, median of
//!    `ROUNDS`.
//! 3. TCP throughput over a veth pair between two namespaces with iperf3,
//!    without and with the programs attached to the client's veth (both
//!    directions), alternating, median of `IPERF_ROUNDS` runs each.
//!
//! Namespaces are named `hostd-bench-<pid>-{a,b}` and deleted on exit.

use std::{
    net::Ipv4Addr,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};
use hostd_telemetry::{programs, IpNet, LoadOptions, Telemetry, TestSkb};

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 7;
const IPERF_ROUNDS: usize = 5;
const IPERF_SECONDS: &str = "5";

/// Ethernet + IPv4 + ICMP echo (56 bytes of payload), 10.1.2.3 -> 10.200.0.1.
fn packet() -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x00];
    let mut ip = vec![
        0x45, 0, 0, 84, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 1, 2, 3, 10, 200, 0, 1,
    ];
    let sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p.extend_from_slice(&ip);
    p.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    p.extend((0..56u8).map(|i| i.wrapping_mul(7)));
    p
}

/// `n` distinct IPv4 subnets, nested: 172.0.0.0/8 holding the others
/// (mostly /24, every tenth a /32), three prefix lengths; the single-frame
/// packet's destination 10.200.0.1 falls in 10.200.0.0/24.
fn subnets(n: usize) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = Vec::with_capacity(n);
    if n == 0 {
        return v;
    }
    v.push("10.200.0.0/24".parse().expect("net"));
    v.push("172.0.0.0/8".parse().expect("net"));
    for i in 0..(n as u32 - 2) {
        let base = (172u32 << 24) | (16 << 16) | (i << 8);
        let net = if i % 10 == 0 {
            ipnet::Ipv4Net::new(Ipv4Addr::from(base + 1), 32)
        } else {
            ipnet::Ipv4Net::new(Ipv4Addr::from(base), 24)
        };
        v.push(IpNet::V4(net.expect("prefix")));
    }
    v
}

/// `n` distinct IPv6 subnets, nested: 2001:db8::/32 holding the others
/// (mostly /64, every tenth a /128), three prefix lengths.
fn subnets_v6(n: usize) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = Vec::with_capacity(n);
    if n == 0 {
        return v;
    }
    v.push("2001:db8::/32".parse().expect("net"));
    for i in 0..(n as u128 - 1) {
        let base = (0x2001_0db8u128 << 96) | (i << 64);
        let net = if i % 10 == 0 {
            ipnet::Ipv6Net::new((base | 1).into(), 128)
        } else {
            ipnet::Ipv6Net::new(base.into(), 64)
        };
        v.push(IpNet::V6(net.expect("prefix")));
    }
    v
}

/// Frames of the spread benchmark.
const SPREAD_FRAMES: usize = 2048;
/// Passes over them per round.
const SPREAD_PASSES: usize = 16;

/// xorshift64: reproducible addresses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A random address inside a random subnet of `nets`.
    fn addr_in(&mut self, nets: &[IpNet]) -> std::net::IpAddr {
        let net = nets[(self.next() % nets.len() as u64) as usize];
        match net {
            IpNet::V4(n) => {
                let host = (self.next() as u32) & !u32::from(n.netmask());
                std::net::IpAddr::V4((u32::from(n.network()) | host).into())
            }
            IpNet::V6(n) => {
                let r = (u128::from(self.next()) << 64) | u128::from(self.next());
                let host = r & !u128::from(n.netmask());
                std::net::IpAddr::V6((u128::from(n.network()) | host).into())
            }
        }
    }
}

/// Ethernet + IP + ICMP echo (56 bytes of payload) between two addresses of
/// the same family (98 bytes over IPv4, 118 over IPv6; checksums are not
/// checked by the programs).
fn ip_frame(src: std::net::IpAddr, dst: std::net::IpAddr) -> Vec<u8> {
    use std::net::IpAddr;
    let mut p = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 84, 0, 0, 0x40, 0, 64, 1, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 64, 58, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
        }
        _ => unreachable!("addresses of one family"),
    }
    p.extend((0..56u8).map(|i| i.wrapping_mul(7)));
    p
}

/// Average kernel ns per packet over `frames`, each run once per call,
/// `SPREAD_PASSES` passes; median of `ROUNDS` rounds.
fn measure_spread(
    t: &mut Telemetry,
    name: &'static str,
    frames: &[Vec<u8>],
) -> anyhow::Result<f64> {
    for f in frames {
        t.test_run(name, f, 1)?;
    }
    let mut runs = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let mut total = 0u128;
        for _ in 0..SPREAD_PASSES {
            for f in frames {
                total += t.test_run(name, f, 1)?.as_nanos();
            }
        }
        runs.push(total as f64 / (SPREAD_PASSES * frames.len()) as f64);
    }
    Ok(median(runs))
}

/// The spread benchmark: rows (label, ns) and the no-op baseline of each
/// family first.
fn spread(t: &mut Telemetry) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let mut rows = Vec::new();
    t.set_sampling(0, 128)?;
    for (fam, gen) in [
        ("IPv4", subnets as fn(usize) -> Vec<IpNet>),
        ("IPv6", subnets_v6),
    ] {
        let mut base = None;
        for n in [1024usize, 65536] {
            let nets = gen(n);
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
            let frames: Vec<Vec<u8>> = (0..SPREAD_FRAMES)
                .map(|_| ip_frame(rng.addr_in(&nets), rng.addr_in(&nets)))
                .collect();
            t.set_subnets(&nets)?;
            let noop = match base {
                Some(b) => b,
                None => {
                    let b = measure_spread(t, programs::NOOP, &frames)?;
                    rows.push((format!("{fam}: no program (no-op TC program)"), b, b));
                    t.set_subnets(&[])?;
                    let c = measure_spread(t, programs::INGRESS, &frames)?;
                    rows.push((format!("{fam}: counters, no subnets"), c, b));
                    t.set_subnets(&nets)?;
                    base = Some(b);
                    b
                }
            };
            for trie in [true, false] {
                t.set_trie_only(trie)?;
                let ns = measure_spread(t, programs::INGRESS, &frames)?;
                let how = if trie {
                    "LPM trie (before)".to_owned()
                } else {
                    format!("hash tables {:?}", t.subnet_lookup())
                };
                rows.push((
                    format!("{fam}: counters, {}k subnets, {how}", n / 1024),
                    ns,
                    noop,
                ));
            }
            t.set_trie_only(false)?;
        }
    }
    t.set_subnets(&[])?;
    Ok(rows)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A TSO skb as TCP hands it to the device: Ethernet + IPv4 + TCP with
/// timestamps (66 bytes of headers) and `segs` x [`TSO_MSS`] bytes of
/// payload. The MSS is small because BPF_PROG_TEST_RUN takes at most a
/// page of packet data; the programs read only headers, so the cost is that
/// of a 1448-byte MSS skb.
fn tso_packet(segs: usize) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x00];
    let total = (20 + 32 + segs * TSO_MSS) as u16;
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 10, 1, 2, 3, 10, 200, 0, 1]);
    p.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x80, 0x10, 0x01, 0xf5, 0, 0, 0, 0]);
    p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    p.extend((0..segs * TSO_MSS).map(|i| i as u8));
    p
}

/// Segments of the TSO skb case (as many as a 64 KiB skb at MSS 1448).
const TSO_SEGS: usize = 45;
/// Payload per segment of the TSO skb case.
const TSO_MSS: usize = 64;

fn measure(t: &mut Telemetry, name: &'static str, pkt: &[u8]) -> anyhow::Result<f64> {
    measure_with(t, name, pkt, &TestSkb::default())
}

fn measure_with(
    t: &mut Telemetry,
    name: &'static str,
    pkt: &[u8],
    skb: &TestSkb,
) -> anyhow::Result<f64> {
    let mut runs = Vec::with_capacity(ROUNDS);
    // Warm-up (map entries created, caches warm).
    t.test_run_with(name, pkt, skb, 10_000)?;
    for _ in 0..ROUNDS {
        let d = t.test_run_with(name, pkt, skb, REPEAT)?;
        runs.push(d.as_nanos() as f64);
        t.drain_samples()?;
    }
    Ok(median(runs))
}

#[allow(clippy::type_complexity, reason = "two tables of rows")]
fn prog_test_run() -> anyhow::Result<(Vec<(String, f64)>, Vec<(String, f64, f64)>)> {
    let pkt = packet();
    let mut rows = Vec::new();
    // A ring big enough for one round's samples at 1:1000 (1000 x 288 B).
    let opts = LoadOptions {
        max_subnets: 65536,
        ring_bytes: 4 << 20,
        ..Default::default()
    };
    let mut t = Telemetry::load_with(&opts)?;
    rows.push((
        "no program (no-op TC program)".to_owned(),
        measure(&mut t, programs::NOOP, &pkt)?,
    ));
    for (label, n) in [
        ("", 0usize),
        (", 1k subnets", 1024),
        (", 64k subnets", 65536),
    ] {
        let nets = subnets(n);
        t.set_subnets(&nets)?;
        t.set_sampling(0, 128)?;
        if n != 0 {
            t.set_trie_only(true)?;
            rows.push((
                format!("counters{label}, LPM trie (before)"),
                measure(&mut t, programs::INGRESS, &pkt)?,
            ));
            t.set_trie_only(false)?;
        }
        rows.push((
            format!("counters{label}"),
            measure(&mut t, programs::INGRESS, &pkt)?,
        ));
        t.set_sampling(1000, 128)?;
        rows.push((
            format!("counters{label} + sampling 1:1000"),
            measure(&mut t, programs::INGRESS, &pkt)?,
        ));
        if n == 0 {
            // One TSO skb of 45 segments (counted as 45 packets): the
            // per-skb cost, and with 1:1000 sampling through its segments.
            let tso = tso_packet(TSO_SEGS);
            let skb = TestSkb {
                ifindex: 1,
                gso_segs: TSO_SEGS as u32,
                gso_size: TSO_MSS as u32,
            };
            t.set_sampling(0, 128)?;
            rows.push((
                format!("counters, one {TSO_SEGS}-segment TSO skb (per skb)"),
                measure_with(&mut t, programs::INGRESS, &tso, &skb)?,
            ));
            t.set_sampling(1000, 128)?;
            rows.push((
                format!("counters + sampling 1:1000, one {TSO_SEGS}-segment TSO skb (per skb)"),
                measure_with(&mut t, programs::INGRESS, &tso, &skb)?,
            ));
            // The random draw alone (a sample every million packets).
            t.set_sampling(1_000_000, 128)?;
            rows.push((
                "counters + sampling 1:1000000".to_owned(),
                measure(&mut t, programs::INGRESS, &pkt)?,
            ));
            t.set_sampling(1000, 128)?;
        }
        let (rx, _) = t.counters()?;
        if rx.samples == 0 {
            bail!("no sample taken at 1:1000: the sampling path was not exercised");
        }
        eprintln!(
            "  {} subnets configured ({} in the tries); samples so far {}",
            n,
            nets.len(),
            rx.samples
        );
    }
    let spread_rows = spread(&mut t)?;
    Ok((rows, spread_rows))
}

/// Two namespaces and a veth pair, deleted on drop.
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    fn new() -> anyhow::Result<Self> {
        let pid = std::process::id();
        let p = Self {
            a: format!("hostd-bench-{pid}-a"),
            b: format!("hostd-bench-{pid}-b"),
        };
        for ns in [&p.a, &p.b] {
            run(&["ip", "netns", "add", ns])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        run(&[
            "ip", "-n", &p.a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0",
            "netns", &p.b,
        ])?;
        run(&[
            "ip",
            "-n",
            &p.a,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            "veth0",
        ])?;
        run(&[
            "ip",
            "-n",
            &p.b,
            "addr",
            "add",
            "10.77.0.2/24",
            "dev",
            "veth0",
        ])?;
        run(&["ip", "-n", &p.a, "link", "set", "veth0", "up"])?;
        run(&["ip", "-n", &p.b, "link", "set", "veth0", "up"])?;
        Ok(p)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(argv: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| format!("{argv:?}"))?;
    if !out.status.success() {
        bail!("{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn iperf(p: &Pair) -> anyhow::Result<f64> {
    let out = run(&[
        "ip",
        "netns",
        "exec",
        &p.a,
        "iperf3",
        "-c",
        "10.77.0.2",
        "-t",
        IPERF_SECONDS,
        "-J",
    ])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("iperf3 JSON")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("bits_per_second")
}

fn throughput() -> anyhow::Result<(f64, f64, u64)> {
    let p = Pair::new()?;
    let mut server = Command::new("ip")
        .args(["netns", "exec", &p.b, "iperf3", "-s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("iperf3 server")?;
    std::thread::sleep(Duration::from_millis(500));
    let ns = std::fs::File::open(format!("/run/netns/{}", p.a))?;
    let result = std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<(f64, f64, u64)> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let mut t = Telemetry::load()?;
            t.set_sampling(1000, 128)?;
            t.set_subnets(&subnets(1024))?;
            let (mut without, mut with) = (Vec::new(), Vec::new());
            for _ in 0..IPERF_ROUNDS {
                without.push(iperf(&p)?);
                t.attach("veth0")?;
                with.push(iperf(&p)?);
                t.detach("veth0")?;
            }
            let (rx, tx) = t.counters()?;
            Ok((median(without), median(with), rx.packets + tx.packets))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("bench thread panicked"))?
    });
    let _ = server.kill();
    let _ = server.wait();
    result
}

fn main() -> anyhow::Result<()> {
    let skip_iperf = std::env::args().any(|a| a == "--skip-iperf");
    let uname = run(&["uname", "-r"])?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    println!(
        "kernel {}; {} x {cpu}",
        uname.trim(),
        std::thread::available_parallelism()?.get()
    );
    println!("BPF_PROG_TEST_RUN, 98-byte IPv4 frame, {REPEAT} runs x {ROUNDS} rounds (median of kernel averages):");
    let (rows, spread_rows) = prog_test_run()?;
    let base = rows[0].1;
    println!("| case | ns/packet | minus no-op |");
    println!("|---|---:|---:|");
    for (label, ns) in &rows {
        println!("| {label} | {ns:.1} | {:.1} |", ns - base);
    }
    println!(
        "BPF_PROG_TEST_RUN, {SPREAD_FRAMES} frames with addresses spread over the subnets, \
         each run once per call, {SPREAD_PASSES} passes x {ROUNDS} rounds (median):"
    );
    println!("| case | ns/packet | minus no-op |");
    println!("|---|---:|---:|");
    for (label, ns, base) in &spread_rows {
        println!("| {label} | {ns:.1} | {:.1} |", ns - base);
    }
    if !skip_iperf {
        let (without, with, packets) = throughput()?;
        println!(
            "iperf3 TCP over veth, {IPERF_SECONDS} s x {IPERF_ROUNDS} (median): without {:.2} Gbit/s, with programs \
             (1:1000 sampling, 1k subnets) {:.2} Gbit/s ({:+.1}%); {packets} packets counted",
            without / 1e9,
            with / 1e9,
            (with - without) / without * 100.0
        );
    }
    Ok(())
}
