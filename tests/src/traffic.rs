//! Traffic between lab namespaces: ping with loss measurement, and a
//! background pinger that measures loss across an event (a cable pull).

use std::{
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};

use crate::netns::NetNs;

/// What a ping run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
}

impl PingStats {
    pub fn lost(&self) -> u32 {
        self.transmitted.saturating_sub(self.received)
    }
    /// Loss as a fraction 0.0..=1.0.
    pub fn loss(&self) -> f64 {
        if self.transmitted == 0 {
            return 0.0;
        }
        f64::from(self.lost()) / f64::from(self.transmitted)
    }
}

/// Parses the summary line of iputils ping:
/// `5 packets transmitted, 4 received, 20% packet loss, time 4005ms`.
pub fn parse_ping_summary(output: &str) -> anyhow::Result<PingStats> {
    let line = output
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .with_context(|| format!("no ping summary in {output:?}"))?;
    let mut fields = line.split(',').map(str::trim);
    let num = |f: Option<&str>, what: &str| -> anyhow::Result<u32> {
        let f = f.with_context(|| format!("missing {what} in {line:?}"))?;
        f.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("bad {what} in {line:?}"))
    };
    let transmitted = num(fields.next(), "transmitted")?;
    let received = num(fields.next(), "received")?;
    Ok(PingStats {
        transmitted,
        received,
    })
}

/// Sends `count` echo requests from `ns` to `dst` (`interval` apart; each
/// waits at most 1 s for its reply) and returns what came back. `dst` may be
/// IPv4 or IPv6; `iface` binds the source interface.
pub fn ping(
    ns: &NetNs,
    dst: &str,
    count: u32,
    interval: Duration,
    iface: Option<&str>,
) -> anyhow::Result<PingStats> {
    let interval = format!("{:.3}", interval.as_secs_f64());
    let count = count.to_string();
    let mut argv = vec!["ping", "-n", "-q", "-c", &count, "-i", &interval, "-W", "1"];
    if let Some(i) = iface {
        argv.extend(["-I", i]);
    }
    argv.push(dst);
    // ping exits 1 when replies are missing: parse its summary either way.
    let out = ns
        .command(argv[0])
        .args(&argv[1..])
        .output()
        .context("spawning ping")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(2) {
        bail!(
            "ping {dst} in {}: {}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_ping_summary(&text)
}

/// True when one ping from `ns` to `dst` gets an answer within 1 s.
pub fn reachable(ns: &NetNs, dst: &str) -> bool {
    matches!(ping(ns, dst, 1, Duration::from_millis(200), None), Ok(s) if s.received == 1)
}

/// A ping running in the background, e.g. across a cable pull. Stop it to
/// read how many requests were sent and answered.
pub struct Pinger {
    child: Option<Child>,
    interval: Duration,
}

impl Pinger {
    /// Starts pinging `dst` from `ns` every `interval` until stopped.
    pub fn start(ns: &NetNs, dst: &str, interval: Duration) -> anyhow::Result<Self> {
        let i = format!("{:.3}", interval.as_secs_f64());
        let child = ns
            .command("ping")
            .args(["-n", "-q", "-i", &i, "-W", "1", dst])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning background ping")?;
        Ok(Self {
            child: Some(child),
            interval,
        })
    }

    /// Stops (SIGINT, so ping prints its summary) and returns the counts and
    /// the estimated outage (lost requests x interval).
    pub fn stop(mut self) -> anyhow::Result<(PingStats, Duration)> {
        let child = self.child.take().context("pinger already stopped")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        // `ip netns exec` execs ping, so the pid is ping's own.
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
        let out = child.wait_with_output()?;
        let stats = parse_ping_summary(&String::from_utf8_lossy(&out.stdout))?;
        Ok((stats, self.interval * stats.lost()))
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads an interface's (rx_packets, tx_packets) from sysfs inside `ns`.
pub fn packet_counters(ns: &NetNs, ifname: &str) -> anyhow::Result<(u64, u64)> {
    let read = |what: &str| -> anyhow::Result<u64> {
        let p = format!("/sys/class/net/{ifname}/statistics/{what}");
        ns.try_run(&["cat", &p])?
            .trim()
            .parse()
            .with_context(|| format!("parsing {p}"))
    };
    Ok((read("rx_packets")?, read("tx_packets")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iputils_summary() {
        let out =
            "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\n--- 10.0.0.2 ping statistics ---\n\
                   5 packets transmitted, 4 received, 20% packet loss, time 4005ms\n";
        let s = parse_ping_summary(out).unwrap();
        assert_eq!(
            s,
            PingStats {
                transmitted: 5,
                received: 4
            }
        );
        assert_eq!(s.lost(), 1);
        assert!((s.loss() - 0.2).abs() < 1e-9);
    }

    #[test]
    fn parses_summary_with_errors() {
        let out = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2030ms";
        assert_eq!(
            parse_ping_summary(out).unwrap(),
            PingStats {
                transmitted: 3,
                received: 0
            }
        );
    }

    #[test]
    fn missing_summary_is_an_error() {
        assert!(parse_ping_summary("ping: connect: Network is unreachable").is_err());
    }
}
