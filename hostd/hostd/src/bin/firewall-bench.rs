//! Benchmark: time to apply hostd's firewall with 10, 1,000 and 10,000 CIDR
//! exceptions, through the same code path hostd uses (`firewall::apply_with`).
//!
//! `cargo run --release -p hostd --bin firewall-bench [-- --runs N]`
//!
//! Needs root. Re-executes itself inside a fresh, private network namespace
//! (`unshare --net`), so the host's own nftables ruleset is never touched;
//! the namespace disappears with the process.
//!
//! Scenarios, each timed `--runs` times (median, min, max):
//! - `cold`: hostd's table absent, apply a ruleset with N CIDRs;
//! - `forced re-send`: table present and current, `--force` sends it again;
//! - `rule change`: a port of another rule changes, the N-CIDR set is kept;
//! - `one CIDR added`: one CIDR added to the N, by the whole-set path (a new
//!   set loaded, the rules switched to it) and in place (element deletions
//!   and additions on the live set), runs alternating;
//! - `floor`: the pieces every apply pays (nft listing, table read, an nft
//!   process doing nothing).
//!
//! `apply` is the whole call (read the table, one transaction, read back and
//! verify); `txn` is the nft transaction alone.

use std::{
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use hostd::firewall::{self as fw, Applied, ApplyOptions, Nft};
use hostd_core::firewall::FirewallSpec;

const INNER: &str = "HOSTD_FIREWALL_BENCH_IN_NETNS";

fn main() -> anyhow::Result<()> {
    let mut runs = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .context("--runs N")?
                    .parse()
                    .context("--runs N")?
            }
            other => bail!("unknown argument {other:?} (usage: firewall-bench [--runs N])"),
        }
    }
    if std::env::var_os(INNER).is_none() {
        let exe = std::env::current_exe().context("current_exe")?;
        let status = Command::new("unshare")
            .arg("--net")
            .arg("--")
            .arg(exe)
            .args(["--runs", &runs.to_string()])
            .env(INNER, "1")
            .status()
            .context("running unshare --net (root needed)")?;
        std::process::exit(status.code().unwrap_or(1));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let nft = Nft::default();
    println!(
        "| CIDRs | set elements | scenario | apply median | apply min | apply max | txn median |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|");
    for n in [10usize, 1_000, 10_000] {
        bench_size(&nft, n, runs)?;
    }
    Ok(())
}

/// `n` distinct CIDRs that aggregation cannot merge: random /32s, /28s and
/// /24s of 10.0.0.0/8 on a deterministic generator, each kept apart.
fn cidrs(n: usize, salt: u64) -> Vec<String> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ salt;
    let mut out = std::collections::BTreeMap::new();
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Slots of 512 addresses: a CIDR at the start of a slot never touches
        // its neighbour's.
        let slot = (x % 32_768) as u32;
        let base = 0x0a00_0000u32 + slot * 512;
        let len = [32, 28, 24][(x >> 20) as usize % 3];
        out.entry(slot)
            .or_insert_with(|| format!("{}/{len}", Ipv4Addr::from(base)));
    }
    out.into_values().collect()
}

fn spec(list: &[String], port: u16) -> anyhow::Result<FirewallSpec> {
    let yaml = format!(
        "management: {{ controllers: [192.0.2.10], channel_port: 7443 }}
rules:
  - {{ action: accept, protocol: tcp, ports: [22, 443], sources: [{}], comment: exceptions }}
  - {{ action: accept, protocol: tcp, ports: [{port}] }}
",
        list.join(", ")
    );
    FirewallSpec::from_yaml(&yaml).map_err(|e| anyhow::anyhow!("{e}"))
}

fn median(samples: &[(Duration, Duration)]) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|s| s.0.as_secs_f64()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn txn(a: &Applied) -> Duration {
    match a {
        Applied::Changed { transaction, .. } => *transaction,
        _ => Duration::ZERO,
    }
}

fn bench_size(nft: &Nft, n: usize, runs: usize) -> anyhow::Result<()> {
    let list = cidrs(n, n as u64);
    let base = spec(&list, 8000)?;
    let elements = hostd_core::firewall::render(&base).map_or(0, |r| {
        r.sets
            .iter()
            .filter(|s| s.name.starts_with("r0_"))
            .map(|s| s.elements.len())
            .sum()
    });
    let report = |scenario: &str, samples: Vec<(Duration, Duration)>| {
        let mut apply: Vec<Duration> = samples.iter().map(|s| s.0).collect();
        let mut t: Vec<Duration> = samples.iter().map(|s| s.1).collect();
        apply.sort();
        t.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        println!(
            "| {n} | {elements} | {scenario} | {} | {} | {} | {} |",
            ms(apply[apply.len() / 2]),
            ms(apply[0]),
            ms(apply[apply.len() - 1]),
            ms(t[t.len() / 2])
        );
    };
    let timed_how = |spec: &FirewallSpec,
                     force: bool,
                     whole_sets: bool|
     -> anyhow::Result<(Duration, Duration, &'static str)> {
        let start = Instant::now();
        let a = fw::apply_with(
            nft,
            spec,
            ApplyOptions {
                force_replace: force,
                whole_sets,
            },
        )?;
        let took = start.elapsed();
        let Applied::Changed { how, .. } = a else {
            bail!("expected a change, got {a:?}");
        };
        Ok((took, txn(&a), how))
    };
    let timed = |spec: &FirewallSpec, force: bool| -> anyhow::Result<(Duration, Duration)> {
        timed_how(spec, force, false).map(|(a, t, _)| (a, t))
    };

    let mut cold = Vec::new();
    for _ in 0..runs {
        fw::disable(nft)?;
        cold.push(timed(&base, false)?);
    }
    report("cold (table absent)", cold);

    let mut replace = Vec::new();
    for _ in 0..runs {
        replace.push(timed(&base, true)?);
    }
    report("forced re-send (--force)", replace);

    let mut rule = Vec::new();
    for i in 0..runs {
        let s = spec(&list, 8001 + (i % 2) as u16)?;
        rule.push(timed(&s, false)?);
    }
    report("rule change, set kept", rule);

    // One more CIDR than the base list, a different one each run (outside
    // the generator's range): each run replaces the previous run's extra
    // CIDR. Runs alternate between the whole-set path (`whole_sets`: a new
    // set loaded, the rules switched to it by nft, the old set deleted) and
    // the in-place change (elements deleted and added in one netlink batch),
    // so both see the same machine load.
    let mut whole = Vec::new();
    let mut in_place = Vec::new();
    for i in 0..runs * 2 {
        let mut l = list.clone();
        l.push(format!("198.18.{}.0/24", i % 250));
        let old_path = i % 2 == 0;
        let (a, t, how) = timed_how(&spec(&l, 8000)?, false, old_path)?;
        let expected = if old_path { "update" } else { "elements" };
        if how != expected {
            bail!("one CIDR added: expected the {expected} path, took {how}");
        }
        if old_path {
            whole.push((a, t));
        } else {
            in_place.push((a, t));
        }
    }
    let ratio = median(&in_place) / median(&whole);
    report("one CIDR added, whole-set path (before)", whole);
    report(
        &format!("one CIDR added, in place ({ratio:.2}x the whole-set path)"),
        in_place,
    );

    // Where the floor goes: the pieces of an apply, timed alone.
    let mut list_terse = Vec::new();
    let mut read = Vec::new();
    let mut noop = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        nft.list_terse()?;
        let t = start.elapsed();
        list_terse.push((t, t));
        let start = Instant::now();
        fw::read_current(nft)?;
        let t = start.elapsed();
        read.push((t, t));
        let start = Instant::now();
        nft.transaction("add table inet hostd\n", "bench no-op")?;
        let t = start.elapsed();
        noop.push((t, t));
    }
    report("floor: nft -j -t list ruleset alone", list_terse);
    report("floor: read table (listing + netlink dump)", read);
    report("floor: nft -f no-op transaction", noop);
    fw::disable(nft)?;

    // Breakdown: loading the N-CIDR set alone, over netlink and through nft.
    let rs = hostd_core::firewall::render(&base).context("enabled")?;
    let set = rs
        .sets
        .iter()
        .find(|s| s.name.starts_with("r0_"))
        .context("rule set")?;
    let mut via_netlink = Vec::new();
    let mut via_nft = Vec::new();
    for _ in 0..runs {
        fw::disable(nft)?;
        let start = Instant::now();
        fw::netlink::load_sets(&[set])?;
        let t = start.elapsed();
        via_netlink.push((t, t));
        fw::disable(nft)?;
        let elems: Vec<String> = set.elements.iter().map(ToString::to_string).collect();
        let script = format!(
            "add table inet hostd\nadd set inet hostd {} {{ type ipv4_addr; flags interval; elements = {{ {} }} }}\n",
            set.name,
            elems.join(", ")
        );
        let start = Instant::now();
        nft.transaction(&script, "bench set load")?;
        let t = start.elapsed();
        via_nft.push((t, t));
    }
    report("set load only, netlink", via_netlink);
    report("set load only, nft -f", via_nft);
    fw::disable(nft)?;
    Ok(())
}
