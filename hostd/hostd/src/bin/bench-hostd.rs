//! Benchmark: apply one bond + N VLANs + N bridges from empty with hostd,
//! with `ip -batch` (the same kernel operations: the kernel's own speed) and
//! with ifupdown2 (the equivalent /etc/network/interfaces), each in a fresh
//! network namespace; then hostd's no-op re-apply and its peak memory.
//!
//! ```text
//! bench-hostd [N...] [--ifupdown2-cap SECS] [--no-ifupdown2]
//! ```
//!
//! Default N: 100 500 1000 4000. Needs root, bonding and 802.1Q: on a host
//! kernel without them, run it in the lab VM (`cargo xtask runner
//! target/release/bench-hostd`; binaries named `bench-*` boot the VM). The
//! `hostd` binary is taken from the same directory as this one.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

struct Ns(String);

impl Ns {
    fn new(tag: &str) -> anyhow::Result<Self> {
        let name = format!("hostdbench{}{tag}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self(name);
        // No IPv6: addrconf on thousands of links is background noise.
        run(Command::new("ip").args([
            "netns",
            "exec",
            &ns.0,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]))?;
        ns.ip_batch("link set lo up\nlink add eth0 type veth peer name p0\nlink add eth1 type veth peer name p1\nlink set p0 up\nlink set p1 up\n")?;
        Ok(ns)
    }

    fn ip_batch(&self, text: &str) -> anyhow::Result<Duration> {
        let path = std::env::temp_dir().join(format!("{}.ipbatch", self.0));
        std::fs::write(&path, text)?;
        let t = Instant::now();
        run(Command::new("ip")
            .args(["-n", &self.0, "-batch"])
            .arg(&path))?;
        let d = t.elapsed();
        let _ = std::fs::remove_file(&path);
        Ok(d)
    }

    fn count_links(&self) -> anyhow::Result<usize> {
        let out = Command::new("ip")
            .args(["-n", &self.0, "-o", "link", "show"])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().count())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        // Deleting thousands of links is asynchronous: wait until the
        // namespace is gone from the kernel's point of view.
        for _ in 0..600 {
            if !Path::new(&format!("/run/netns/{}", self.0)).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until the kernel is idle enough that a link dump in `ns` answers
/// quickly three times in a row (namespace teardown and link-watch work of a
/// previous run hold the rtnl lock and would be billed to the next run).
fn settle(ns: &Ns) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut base = Duration::MAX;
    let mut quick = 0;
    while start.elapsed() < Duration::from_secs(600) {
        let t = Instant::now();
        run(Command::new("ip").args(["-n", &ns.0, "link", "show", "lo"]))?;
        let d = t.elapsed();
        base = base.min(d);
        if d <= base * 2 {
            quick += 1;
            if quick >= 3 && start.elapsed() > Duration::from_millis(500) {
                break;
            }
        } else {
            quick = 0;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(start.elapsed())
}

fn run(c: &mut Command) -> anyhow::Result<()> {
    let out = c.output().with_context(|| format!("spawning {c:?}"))?;
    if !out.status.success() {
        bail!(
            "{c:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn desired_yaml(n: u16) -> String {
    let mut s = String::from(
        "interfaces:\n  - { name: eth0, type: ethernet }\n  - { name: eth1, type: ethernet }\n  - name: bond0\n    type: bond\n    link-aggregation: { mode: active-backup, port: [eth0, eth1], options: { miimon: 100 } }\n",
    );
    for i in 0..n {
        let id = i + 2;
        let _ = writeln!(
            s,
            "  - {{ name: bond0.{id}, type: vlan, vlan: {{ base-iface: bond0, id: {id} }} }}"
        );
        let _ = writeln!(s, "  - {{ name: br{id}, type: linux-bridge, bridge: {{ port: [{{ name: bond0.{id} }}] }} }}");
    }
    s
}

fn ip_batch_text(n: u16) -> String {
    let mut s = String::from(
        "link add bond0 type bond mode active-backup miimon 100\nlink set eth0 down\nlink set eth0 master bond0\nlink set eth1 down\nlink set eth1 master bond0\n",
    );
    for i in 0..n {
        let id = i + 2;
        let _ = writeln!(s, "link add link bond0 name bond0.{id} type vlan id {id}");
    }
    for i in 0..n {
        let id = i + 2;
        let _ = writeln!(s, "link add br{id} type bridge");
    }
    for i in 0..n {
        let id = i + 2;
        let _ = writeln!(s, "link set bond0.{id} master br{id}");
    }
    s.push_str("link set eth0 up\nlink set eth1 up\nlink set bond0 up\n");
    for i in 0..n {
        let id = i + 2;
        let _ = writeln!(s, "link set bond0.{id} up\nlink set br{id} up");
    }
    s
}

fn ifupdown2_text(n: u16) -> String {
    let mut s = String::from(
        "auto eth0\niface eth0\n\nauto eth1\niface eth1\n\nauto bond0\niface bond0\n    bond-slaves eth0 eth1\n    bond-mode active-backup\n    bond-miimon 100\n\n",
    );
    for i in 0..n {
        let id = i + 2;
        let _ = writeln!(s, "auto bond0.{id}\niface bond0.{id}\n\nauto br{id}\niface br{id}\n    bridge-ports bond0.{id}\n    bridge-stp off\n    bridge-fd 0\n    bridge-waitport 0\n");
    }
    s
}

/// Runs `hostd apply` in `ns`; returns wall time and the child's peak RSS.
fn hostd_apply(
    hostd: &Path,
    ns: &Ns,
    file: &Path,
    state: &Path,
) -> anyhow::Result<(Duration, u64, i32)> {
    let t = Instant::now();
    // nsenter only joins the network namespace (hostd needs no /sys);
    // `ip netns exec` would also build a mount namespace, which costs
    // seconds in the emulated VM and is not hostd's work.
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.0))
        .arg(hostd)
        .arg("apply")
        .arg(file)
        .env("HOSTD_STATE_FILE", state)
        .env("HOSTD_RESOLV_CONF", state.with_extension("resolv"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and ru are valid pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let d = t.elapsed();
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        255
    };
    // nsenter execs hostd in the same process: ru_maxrss is hostd's (KiB).
    Ok((d, ru.ru_maxrss as u64, code))
}

fn main() -> anyhow::Result<()> {
    let mut ns_list: Vec<u16> = Vec::new();
    let mut cap = Duration::from_secs(600);
    let mut with_ifupdown2 = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ifupdown2-cap" => {
                cap = Duration::from_secs(args.next().context("--ifupdown2-cap SECS")?.parse()?)
            }
            "--no-ifupdown2" => with_ifupdown2 = false,
            n => ns_list.push(n.parse().with_context(|| format!("N {n:?}"))?),
        }
    }
    if ns_list.is_empty() {
        ns_list = vec![100, 500, 1000, 4000];
    }
    if ns_list.iter().any(|&n| n == 0 || n > 4000) {
        bail!("N must be within 1..=4000");
    }
    let me = std::env::current_exe()?;
    let hostd: PathBuf = me.with_file_name("hostd");
    if !hostd.exists() {
        bail!(
            "{} not found: build the hostd binary in the same profile",
            hostd.display()
        );
    }
    let work = std::env::temp_dir().join(format!("hostd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let uname = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())?;
    println!(
        "# hostd apply benchmark: 1 bond + N VLANs + N bridges, from empty (kernel {uname})\n"
    );
    println!("| N | links created | ip -batch (s) | hostd apply (s) | hostd / ip | ifupdown2 (s) | ifupdown2 / hostd | hostd no-op re-apply, best of 3 (s) | hostd peak RSS (MiB) |");
    println!("|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for &n in &ns_list {
        // ip -batch
        let ipb = {
            let ns = Ns::new("ip")?;
            settle(&ns)?;
            let d = ns.ip_batch(&ip_batch_text(n))?;
            let links = ns.count_links()?;
            if links != 2 * usize::from(n) + 6 {
                bail!("ip -batch made {links} links");
            }
            d
        };
        // hostd
        let file = work.join(format!("desired-{n}.yaml"));
        std::fs::write(&file, desired_yaml(n))?;
        let state = work.join(format!("owned-{n}.json"));
        let _ = std::fs::remove_file(&state);
        let (hd, noop, rss, links) = {
            let ns = Ns::new("hd")?;
            settle(&ns)?;
            let (d, rss1, code) = hostd_apply(&hostd, &ns, &file, &state)?;
            if code != 10 {
                bail!("hostd apply exited {code}");
            }
            let links = ns.count_links()?;
            // The kernel finishes some work of a large apply in the
            // background (link watch, addrconf) and holds the rtnl lock for
            // it: the best of three re-applies is hostd's own no-op time.
            let mut noop = Duration::MAX;
            let mut rss = rss1;
            for _ in 0..3 {
                settle(&ns)?;
                let (t, rss2, code) = hostd_apply(&hostd, &ns, &file, &state)?;
                if code != 0 {
                    bail!("hostd re-apply exited {code} (expected no change)");
                }
                noop = noop.min(t);
                rss = rss.max(rss2);
            }
            (d, noop, rss, links)
        };
        if links != 2 * usize::from(n) + 6 {
            bail!("hostd made {links} links");
        }
        // ifupdown2
        let ifu = if with_ifupdown2 {
            let ns = Ns::new("ifu")?;
            let ifile = work.join(format!("interfaces-{n}"));
            std::fs::write(&ifile, ifupdown2_text(n))?;
            settle(&ns)?;
            let t = Instant::now();
            // ifupdown2 locks /run/network; give it a private one (the VM
            // shares the host's /run read-only).
            let script = format!(
                "mount -t tmpfs tmpfs /run && mkdir -p /run/network && exec ifup -a -i {}",
                ifile.display()
            );
            let mut child = Command::new("ip")
                .args(["netns", "exec", &ns.0, "unshare", "-m", "sh", "-c", &script])
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(
                    work.join("ifupdown2.err"),
                )?))
                .spawn()?;
            let mut capped = false;
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if t.elapsed() > cap {
                    let _ = child.kill();
                    let _ = child.wait();
                    capped = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let d = t.elapsed();
            let made = ns.count_links()?.saturating_sub(5);
            if !capped && made < 2 * usize::from(n) + 1 {
                let err = std::fs::read_to_string(work.join("ifupdown2.err")).unwrap_or_default();
                eprintln!(
                    "ifupdown2 made {made} of {} links; its stderr ends with:",
                    2 * n + 1
                );
                for l in err
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    eprintln!("  {l}");
                }
            }
            Some((d, capped, made))
        } else {
            None
        };
        let (ifu_s, ratio) = match ifu {
            Some((d, true, made)) => (
                format!(">{:.1} (capped; {made} links made)", d.as_secs_f64()),
                format!(">{:.0}x", d.as_secs_f64() / hd.as_secs_f64()),
            ),
            Some((d, false, made)) => (
                format!("{:.2} ({made} links)", d.as_secs_f64()),
                format!("{:.0}x", d.as_secs_f64() / hd.as_secs_f64()),
            ),
            None => ("not run".into(), "-".into()),
        };
        println!(
            "| {n} | {} | {:.3} | {:.3} | {:.2} | {ifu_s} | {ratio} | {:.3} | {:.1} |",
            2 * usize::from(n) + 1,
            ipb.as_secs_f64(),
            hd.as_secs_f64(),
            hd.as_secs_f64() / ipb.as_secs_f64(),
            noop.as_secs_f64(),
            rss as f64 / 1024.0,
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
