//! `cargo run --release -p collector --bin collector-bench`
//!
//! 1. Flow samples per second on one core through decode + subnet
//!    attribution + store update, replaying realistic datagrams (7 flow
//!    samples of 128-byte Ethernet headers per datagram, 80% IPv4 / 20%
//!    IPv6, some 802.1Q-tagged), with 1k and 100k subnets; the store is
//!    drained and every subnet series updated once per simulated second.
//! 2. The same datagrams through the real socket path (loopback UDP,
//!    recvmmsg, one receive thread) with every datagram accounted for:
//!    received + kernel drops = sent.
//! 3. Memory per series (computed and measured).
//! 4. Latency of a query over a 13-month series.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket},
    sync::Arc,
    time::{Duration, Instant},
};

use collector::{
    accounting::Shard,
    config::{Config, SeriesConfig},
    rrd::{Cf, RraDef, Value},
    sflow::encode::*,
    store::Store,
    subnets::SubnetTable,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` subnets: 80% IPv4 /24s under 10.0.0.0/8, 20% IPv6 /64s.
fn subnets(n: usize) -> Vec<IpNet> {
    (0..n)
        .map(|i| {
            if i % 5 == 4 {
                IpNet::V6(
                    Ipv6Net::new(
                        Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 0),
                        64,
                    )
                    .expect("prefix"),
                )
            } else {
                IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | ((i as u32) << 8)), 24)
                        .expect("prefix"),
                )
            }
        })
        .collect()
}

fn host_in(net: &IpNet, r: &mut Rng) -> IpAddr {
    match net {
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(
            u32::from(n.network()) | (r.next() as u32 & 0xff),
        )),
        IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(
            u128::from(n.network()) | (r.next() as u128 & 0xffff_ffff),
        )),
    }
}

/// Datagrams of 7 flow samples each, addresses from `nets` of one family.
fn corpus(nets: &[IpNet], count: usize) -> Vec<Vec<u8>> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let v4: Vec<&IpNet> = nets.iter().filter(|n| matches!(n, IpNet::V4(_))).collect();
    let v6: Vec<&IpNet> = nets.iter().filter(|n| matches!(n, IpNet::V6(_))).collect();
    (0..count)
        .map(|d| {
            let samples = (0..7u32)
                .map(|i| {
                    let pool = if r.next().is_multiple_of(5) && !v6.is_empty() {
                        &v6
                    } else {
                        &v4
                    };
                    let a = host_in(pool[(r.next() % pool.len() as u64) as usize], &mut r);
                    let b = host_in(pool[(r.next() % pool.len() as u64) as usize], &mut r);
                    let vlans: &[u16] = if i % 3 == 0 { &[100] } else { &[] };
                    let mut h = frame(
                        vlans,
                        a,
                        b,
                        if i % 2 == 0 { 6 } else { 17 },
                        40000,
                        443,
                        1400,
                    );
                    h.resize(128, 0);
                    SampleSpec::Flow {
                        expanded: false,
                        sequence: d as u32 * 7 + i,
                        source_index: 1 + i % 4,
                        sampling_rate: 1024,
                        sample_pool: 0,
                        drops: 0,
                        input: 1,
                        output: 2,
                        records: vec![
                            FlowRec::RawHeader {
                                protocol: 1,
                                frame_length: 1454,
                                stripped: 4,
                                header: h,
                            },
                            FlowRec::ExtendedSwitch {
                                src_vlan: 100,
                                dst_vlan: 100,
                            },
                        ],
                    }
                })
                .collect();
            datagram(&DatagramSpec {
                agent: Some("192.0.2.1".parse().expect("ip")),
                sub_agent_id: 0,
                sequence: d as u32 + 1,
                uptime_ms: d as u32,
                samples,
            })
        })
        .collect()
}

/// CPU time of this thread: rates per CPU-second are per-core figures even
/// when other processes compete for the cores.
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime writes into the timespec we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn bench_cfg() -> SeriesConfig {
    // One small archive: the cost measured is the update, not the memory.
    SeriesConfig {
        archives: vec![RraDef {
            cf: Cf::Average,
            steps: 1,
            rows: 60,
            xff: 0.5,
        }],
        ..SeriesConfig::default()
    }
}

fn decode_bench(n_subnets: usize) {
    let nets = subnets(n_subnets);
    let table = Arc::new(SubnetTable::new(nets.iter().copied()).expect("table"));
    let dgs = corpus(&nets, 20_000);
    let avg_len = dgs.iter().map(Vec::len).sum::<usize>() / dgs.len();
    let mut shard = Shard::new(table.clone());
    let mut store = Store::new(&bench_cfg(), &nets, 1_000);
    let from: IpAddr = "192.0.2.1".parse().expect("ip");
    // Warm up.
    for d in &dgs {
        shard.datagram(from, d, 0);
    }
    store.apply(shard.drain());
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let (mut samples, mut flushes, mut now) = (0u64, 0u32, 1_001u64);
    let mut flush_time = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(5) {
        for d in &dgs {
            shard.datagram(from, d, now);
        }
        samples += dgs.len() as u64 * 7;
        // One store update per simulated second of 1M samples/s.
        if samples / 1_000_000 > flushes as u64 {
            let t = Instant::now();
            store.apply(shard.drain());
            store.flush_subnets(now);
            flush_time += t.elapsed();
            flushes += 1;
            now += 1;
        }
    }
    let el = start.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_secs_f64();
    let st = &shard.stats;
    assert_eq!(
        st.flow_samples,
        st.flow_samples_attributed + st.flow_samples_unattributed + st.flow_samples_no_ip,
        "every sample accounted"
    );
    assert_eq!(st.flow_samples_unattributed + st.flow_samples_no_ip, 0);
    println!(
        "decode+attribute+store, {n_subnets:>6} subnets: {:>5.2} M flow samples per CPU-second ({:.0} ns/sample; wall clock {:.2} M/s with the core {:.0}% ours); {avg_len} B datagrams, 7 samples each; {flushes} store updates of all {n_subnets} series took {:.1} ms on average",
        samples as f64 / cpu / 1e6,
        cpu * 1e9 / samples as f64,
        samples as f64 / el / 1e6,
        100.0 * cpu / el,
        flush_time.as_secs_f64() * 1e3 / flushes.max(1) as f64
    );
}

fn socket_bench() {
    let nets = subnets(1_000);
    let dgs = corpus(&nets, 5_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut cfg = Config::default();
        cfg.sflow.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        cfg.sflow.workers = 1;
        cfg.sflow.recv_buffer_bytes = 32 << 20;
        cfg.subnets = nets.clone();
        cfg.series = bench_cfg();
        cfg.series.flush_interval = 1;
        cfg.api.listen = "127.0.0.1:0".parse().expect("addr");
        let c = collector::Collector::start(cfg, collector::system_clock()).await.expect("collector");
        let to = c.sflow_addrs[0];
        let sent = 400_000usize;
        let sender = std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let t = Instant::now();
            for i in 0..sent {
                s.send_to(&dgs[i % dgs.len()], to).expect("send");
            }
            t.elapsed()
        });
        let send_time = sender.join().expect("sender");
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut got, mut drops) = (0, 0);
        while Instant::now() < deadline {
            let (s, _, k) = c.shared().stats();
            (got, drops) = (s.datagrams, k);
            if got + drops >= sent as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (s, _, _) = c.shared().stats();
        println!(
            "loopback UDP, 1 receive thread: sent {sent} datagrams ({} flow samples) in {:.2} s = {:.2} M samples/s offered; received {got}, kernel drops {drops}, unaccounted {}; samples accounted {}",
            sent * 7,
            send_time.as_secs_f64(),
            (sent * 7) as f64 / send_time.as_secs_f64() / 1e6,
            sent as i64 - got as i64 - drops as i64,
            s.flow_samples_attributed
        );
        c.shutdown().await.expect("shutdown");
    });
}

fn memory_bench() {
    let cfg = SeriesConfig::default();
    let sub = collector::store::subnet_def(&cfg).memory_bytes();
    let ifc = collector::store::iface_def(&cfg).memory_bytes();
    let nets = subnets(1_000);
    let before = rss_bytes();
    let store = Store::new(&cfg, &nets, 1_000);
    let after = rss_bytes();
    println!(
        "memory per series, default archives (1 min x 1 day, 5 min x 1 week, 1 h x 13 months = 12,960 rows): subnet (4 data sources) {} B, interface (8) {} B; measured RSS for 1,000 subnet series {:.1} MB ({} B each)",
        sub,
        ifc,
        (after - before) as f64 / 1e6,
        (after - before) / nets.len()
    );
    drop(store);
}

fn query_bench() {
    let cfg = SeriesConfig::default();
    let nets = subnets(1);
    let start = 1_700_000_000 - 1_700_000_000 % 3600;
    let mut store = Store::new(&cfg, &nets, start);
    // 13 months of minute updates.
    let minutes = 396 * 1440;
    let t = Instant::now();
    let mut total = 0u64;
    for m in 1..=minutes {
        total += 1_000_000 + (m % 1440) * 1_000;
        store.subnets[0]
            .rrd
            .update(
                start + m * 60,
                &[total, total / 2, total / 1000, total / 2000].map(Value::from),
            )
            .expect("update");
    }
    let fill = t.elapsed();
    let end = start + minutes * 60;
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let r = store
            .report(end - 395 * 86_400, end, 3600, 95.0, None)
            .expect("report");
        lat.push(t.elapsed());
        assert_eq!(r.subnets[0].rows, 395 * 24);
    }
    lat.sort();
    let mut fl = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let f = store.subnets[0]
            .rrd
            .fetch(Cf::Average, end - 395 * 86_400, end, 3600)
            .expect("fetch");
        let j = serde_json::to_vec(&f.rows).expect("json");
        fl.push(t.elapsed());
        assert!(j.len() > 1000);
    }
    fl.sort();
    println!(
        "query over a 13-month series ({} updates in {:.2} s): report (totals + 95th percentile over 9,480 hourly rows) median {:.0} us, p99 {:.0} us; fetch + JSON of the rows median {:.0} us",
        minutes,
        fill.as_secs_f64(),
        lat[100].as_secs_f64() * 1e6,
        lat[198].as_secs_f64() * 1e6,
        fl[100].as_secs_f64() * 1e6
    );
}

fn main() {
    println!(
        "collector-bench ({} CPUs)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    decode_bench(1_000);
    decode_bench(100_000);
    socket_bench();
    memory_bench();
    query_bench();
}
