//! Benchmark: apply from empty one 802.3ad bond + N VLANs + N bridges (each
//! VLAN in its own bridge, the Oracle VM / CloudStack layout), for several
//! N, with three tools on the same kernel in the same run:
//!
//! - `ip -batch`: the same kernel operations issued by iproute2 in one
//!   process, the kernel's own speed and our limit;
//! - `hostd apply` (binary from `HOSTD_BIN`), plus its no-op re-apply and
//!   its peak RSS;
//! - ifupdown2 (`ifup -a -i FILE`) on the equivalent interfaces file,
//!   configured fairly (`bridge-waitport 0`, `bridge-stp off`,
//!   `bridge-fd 0`), capped in time (a capped run is reported as a lower
//!   bound).
//!
//! Each run gets a fresh namespace with eth0/eth1 (veth to a sink
//! namespace); the result is checked (link count) so no tool is timed for
//! less than the full work. Links are deleted before the namespace is, so a
//! deferred namespace teardown never stalls the next measurement.
//!
//! Usage: `bench-apply [--sizes 100,500,1000,4000] [--tools ip,hostd,ifupdown2]
//! [--cap SECONDS] [--out FILE]`. Needs root and a kernel with bonding and
//! 802.1Q (`cargo xtask bench-apply` runs it in the VM).

use std::{
    fmt::Write as _,
    io::Write as _,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use lab::{
    kernel::{self, Feature},
    NetNs,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    IpBatch,
    Hostd,
    Ifupdown2,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::IpBatch => "ip -batch",
            Tool::Hostd => "hostd apply",
            Tool::Ifupdown2 => "ifupdown2 ifup -a",
        }
    }
}

struct Args {
    sizes: Vec<u32>,
    tools: Vec<Tool>,
    cap: Duration,
    out: Option<PathBuf>,
    hostd: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        sizes: vec![100, 500, 1000, 4000],
        tools: vec![Tool::IpBatch, Tool::Hostd, Tool::Ifupdown2],
        cap: Duration::from_secs(600),
        out: None,
        hostd: std::env::var_os("HOSTD_BIN").map(PathBuf::from),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--sizes" => {
                a.sizes = val()?
                    .split(',')
                    .map(|s| {
                        s.parse::<u32>()
                            .with_context(|| format!("--sizes: {s:?} is not a number"))
                    })
                    .collect::<Result<_, _>>()?;
                if let Some(bad) = a.sizes.iter().find(|&&n| n == 0 || n > 4000) {
                    bail!("--sizes: {bad} outside 1..=4000 (VLAN ids 2..=4001)");
                }
            }
            "--tools" => {
                a.tools = val()?
                    .split(',')
                    .map(|t| match t {
                        "ip" => Ok(Tool::IpBatch),
                        "hostd" => Ok(Tool::Hostd),
                        "ifupdown2" => Ok(Tool::Ifupdown2),
                        other => bail!("--tools: unknown tool {other:?} (ip, hostd, ifupdown2)"),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--cap" => {
                let v = val()?;
                a.cap = Duration::from_secs(
                    v.parse()
                        .with_context(|| format!("--cap: {v:?} is not seconds"))?,
                );
            }
            "--out" => a.out = Some(PathBuf::from(val()?)),
            "--hostd" => a.hostd = Some(PathBuf::from(val()?)),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if a.tools.contains(&Tool::Hostd) && a.hostd.is_none() {
        bail!("hostd is benchmarked but neither --hostd nor HOSTD_BIN names its binary");
    }
    Ok(a)
}

/// VLAN ids used: 2..=N+1.
fn vids(n: u32) -> impl Iterator<Item = u32> {
    2..n + 2
}

fn ip_batch_script(n: u32) -> Vec<String> {
    let mut l = vec![
        "link add bond0 type bond mode 802.3ad miimon 100".to_owned(),
        "link set eth0 down".into(),
        "link set eth0 master bond0".into(),
        "link set eth1 down".into(),
        "link set eth1 master bond0".into(),
        "link set eth0 up".into(),
        "link set eth1 up".into(),
        "link set bond0 up".into(),
    ];
    for v in vids(n) {
        l.push(format!(
            "link add link bond0 name bond0.{v} type vlan id {v}"
        ));
        l.push(format!("link add br{v} type bridge stp_state 0"));
        l.push(format!("link set bond0.{v} master br{v}"));
        l.push(format!("link set bond0.{v} up"));
        l.push(format!("link set br{v} up"));
    }
    l
}

fn hostd_yaml(n: u32) -> String {
    let mut y = String::from(
        "interfaces:\n  - { name: eth0, type: ethernet, state: up }\n  - { name: eth1, type: ethernet, state: up }\n  \
         - name: bond0\n    type: bond\n    state: up\n    link-aggregation:\n      mode: 802.3ad\n      \
         port: [eth0, eth1]\n      options: { miimon: 100 }\n",
    );
    for v in vids(n) {
        let _ = writeln!(y, "  - {{ name: bond0.{v}, type: vlan, state: up, vlan: {{ base-iface: bond0, id: {v} }} }}");
        let _ = writeln!(
            y,
            "  - {{ name: br{v}, type: linux-bridge, state: up, bridge: {{ options: {{ stp: {{ enabled: false }} }}, port: [{{ name: bond0.{v} }}] }} }}"
        );
    }
    y
}

fn ifupdown2_interfaces(n: u32) -> String {
    let mut s = String::from(
        "auto eth0\niface eth0\n\nauto eth1\niface eth1\n\nauto bond0\niface bond0\n    bond-slaves eth0 eth1\n    \
         bond-mode 802.3ad\n    bond-miimon 100\n\n",
    );
    for v in vids(n) {
        let _ = write!(
            s,
            "auto bond0.{v}\niface bond0.{v}\n\nauto br{v}\niface br{v}\n    bridge-ports bond0.{v}\n    bridge-stp off\n    \
             bridge-fd 0\n    bridge-waitport 0\n    bridge-vlan-aware no\n\n"
        );
    }
    s
}

/// A fresh namespace with eth0 and eth1 (veth ends whose peers are in `sink`).
fn fresh_server(sink: &NetNs) -> anyhow::Result<NetNs> {
    let ns = NetNs::new("bench")?;
    ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
    ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
    // Peer names unique in the sink: "<seq><role>-<i>", e.g. "7bench-0".
    let tag = ns.name().rsplit('-').next().unwrap_or("bench").to_owned();
    for (i, nic) in ["eth0", "eth1"].iter().enumerate() {
        let peer = format!("{tag}-{i}");
        ns.try_ip(&[
            "link",
            "add",
            nic,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            sink.name(),
        ])?;
    }
    Ok(ns)
}

/// Deletes every bridge, VLAN and bond in `ns` in one batch (synchronously),
/// so dropping the namespace afterwards costs little.
fn clear(ns: &NetNs) -> anyhow::Result<()> {
    let out = ns.try_ip(&["-o", "link", "show"])?;
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
        .filter(|n| n.starts_with("br") || n.starts_with("bond0"))
        .collect();
    // VLANs first, then bridges, then the bond.
    names.sort_by_key(|n| {
        (
            if n.contains('.') {
                0
            } else if n.starts_with("br") {
                1
            } else {
                2
            },
            n.clone(),
        )
    });
    let lines: Vec<String> = names.iter().map(|n| format!("link del {n}")).collect();
    ns.ip_batch(&lines)
}

fn count_links(ns: &NetNs, n: u32) -> anyhow::Result<(usize, usize, bool)> {
    let out = ns.try_ip(&["-o", "link", "show"])?;
    let vlans = out.lines().filter(|l| l.contains(": bond0.")).count();
    let bridges = out
        .lines()
        .filter(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|x| x.trim().starts_with("br"))
        })
        .count();
    let up = vids(n).all(|v| {
        out.lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|x| x.trim() == format!("br{v}"))
            })
            .is_some_and(|l| l.contains(",UP"))
    });
    Ok((vlans, bridges, up))
}

struct Run {
    secs: f64,
    capped: bool,
    max_rss_kib: Option<i64>,
    code: i32,
}

/// hostd's exit codes (docs/hostd.md): 0 no change, 10 changed.
const HOSTD_NO_CHANGE: i32 = 0;
const HOSTD_CHANGED: i32 = 10;

/// Runs `argv` inside `ns` with `input` on stdin, killed at `cap`; returns
/// wall time and the child's peak RSS.
/// `ok` lists the exit codes that mean success (hostd: 10 changed, 0 none).
fn timed(
    ns: &NetNs,
    argv: &[&str],
    input: Option<&str>,
    cap: Duration,
    ok: &[i32],
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let mut child = ns
        .command(argv[0])
        .args(&argv[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {argv:?}"))?;
    if let Some(text) = input {
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(text.as_bytes())?;
    }
    let pid = i32::try_from(child.id())?;
    loop {
        // wait4 gives the child's rusage (peak RSS) together with its status.
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child; status and usage are valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            let secs = start.elapsed().as_secs_f64();
            if !(libc::WIFEXITED(status) && ok.contains(&libc::WEXITSTATUS(status))) {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read as _;
                    let _ = e.read_to_string(&mut err);
                }
                bail!("{argv:?} failed (wait status {status}): {}", err.trim());
            }
            return Ok(Run {
                secs,
                capped: false,
                max_rss_kib: Some(usage.ru_maxrss),
                code: libc::WEXITSTATUS(status),
            });
        }
        if r < 0 {
            bail!("wait4: {}", std::io::Error::last_os_error());
        }
        if start.elapsed() >= cap {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Run {
                secs: start.elapsed().as_secs_f64(),
                capped: true,
                max_rss_kib: None,
                code: -1,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    kernel::require(&[Feature::Bonding, Feature::Vlan8021q, Feature::Bridge]);
    let tmp = std::env::temp_dir().join(format!("bench-apply-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let sink = NetNs::new("sink")?;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "| N | ip -batch (s) | hostd apply (s) | hostd / ip | hostd no-op re-apply (s) | hostd peak RSS (MiB) | ifupdown2 (s) | ifupdown2 / hostd |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|");
    println!("kernel {}", kernel::release());
    for &n in &args.sizes {
        let mut results: Vec<(Tool, Run)> = Vec::new();
        let mut noop: Option<Run> = None;
        for &tool in &args.tools {
            let ns = fresh_server(&sink)?;
            let run = match tool {
                Tool::IpBatch => {
                    let script = ip_batch_script(n).join("\n") + "\n";
                    timed(&ns, &["ip", "-batch", "-"], Some(&script), args.cap, &[0])?
                }
                Tool::Hostd => {
                    let file = tmp.join(format!("hostd-{n}.yaml"));
                    std::fs::write(&file, hostd_yaml(n))?;
                    let bin = args
                        .hostd
                        .as_ref()
                        .context("hostd binary")?
                        .display()
                        .to_string();
                    let state = tmp.join(format!("hostd-owned-{n}.json"));
                    let _ = std::fs::remove_file(&state);
                    let state = state.display().to_string();
                    let f = file.display().to_string();
                    let argv = [
                        "env",
                        &format!("HOSTD_STATE_FILE={state}"),
                        &bin,
                        "apply",
                        &f,
                    ];
                    let r = timed(&ns, &argv, None, args.cap, &[HOSTD_CHANGED])?;
                    if !r.capped {
                        let again = timed(&ns, &argv, None, args.cap, &[HOSTD_NO_CHANGE])?;
                        if again.code != HOSTD_NO_CHANGE {
                            bail!(
                                "hostd re-apply at N={n} was not a no-op (exit {})",
                                again.code
                            );
                        }
                        noop = Some(again);
                    }
                    r
                }
                Tool::Ifupdown2 => {
                    let file = tmp.join(format!("interfaces-{n}"));
                    std::fs::write(&file, ifupdown2_interfaces(n))?;
                    // ifupdown2 keeps its state and lock in /run/network:
                    // start clean (the directory must exist for its lock).
                    let _ = std::fs::remove_dir_all("/run/network");
                    std::fs::create_dir_all("/run/network")?;
                    let f = file.display().to_string();
                    timed(&ns, &["ifup", "-a", "-i", &f], None, args.cap, &[0])?
                }
            };
            if !run.capped {
                let (vlans, bridges, up) = count_links(&ns, n)?;
                if vlans != n as usize || bridges != n as usize || !up {
                    bail!(
                        "{} at N={n} left {vlans} VLANs and {bridges} bridges (all up: {up}); expected {n} of each",
                        tool.name()
                    );
                }
            }
            println!(
                "N={n:5} {:18} {:9.3} s{}",
                tool.name(),
                run.secs,
                if run.capped {
                    " (capped: lower bound)"
                } else {
                    ""
                }
            );
            clear(&ns)?;
            drop(ns);
            results.push((tool, run));
        }
        let get = |t: Tool| results.iter().find(|(x, _)| *x == t).map(|(_, r)| r);
        let fmt = |r: Option<&Run>| match r {
            Some(r) if r.capped => format!(">{:.1}", r.secs),
            Some(r) => format!("{:.3}", r.secs),
            None => "-".into(),
        };
        let ratio = |a: Option<&Run>, b: Option<&Run>| match (a, b) {
            (Some(a), Some(b)) => {
                format!("{}{:.2}x", if a.capped { ">" } else { "" }, a.secs / b.secs)
            }
            _ => "-".into(),
        };
        let (ip, hd, ifu) = (get(Tool::IpBatch), get(Tool::Hostd), get(Tool::Ifupdown2));
        let _ = writeln!(
            report,
            "| {n} | {} | {} | {} | {} | {} | {} | {} |",
            fmt(ip),
            fmt(hd),
            ratio(hd, ip),
            fmt(noop.as_ref()),
            hd.and_then(|r| r.max_rss_kib)
                .map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            fmt(ifu),
            ratio(ifu, hd),
        );
    }
    println!("\n{report}");
    if let Some(out) = args.out {
        std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
