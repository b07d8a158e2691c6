//! Built-in probes that confirm a commit-confirmed apply automatically:
//! `tcp:HOST:PORT` (a TCP connection is accepted) and `ping:ADDR` (an ICMP
//! echo is answered; the `ping` binary of iputils, which already does raw
//! sockets and capability handling well). Each probe is retried every
//! second until it succeeds or the timeout passes.

use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

use tokio::time::{sleep, timeout, Instant};

/// One probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection to `host:port` succeeds.
    Tcp(String),
    /// `ping -c 1` of the address gets an answer.
    Ping(IpAddr),
}

impl FromStr for Probe {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("tcp:") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| "tcp probe needs HOST:PORT".to_owned())?;
            port.parse::<u16>()
                .map_err(|_| format!("tcp probe: bad port {port:?}"))?;
            if host.is_empty() {
                return Err("tcp probe: empty host".into());
            }
            Ok(Self::Tcp(rest.to_owned()))
        } else if let Some(rest) = s.strip_prefix("ping:") {
            rest.parse()
                .map(Self::Ping)
                .map_err(|_| format!("ping probe: {rest:?} is not an IP address"))
        } else {
            Err("a probe is tcp:HOST:PORT or ping:ADDRESS".into())
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp:{a}"),
            Self::Ping(a) => write!(f, "ping:{a}"),
        }
    }
}

impl Probe {
    /// One attempt, at most `limit` long.
    async fn once(&self, limit: Duration) -> Result<(), String> {
        match self {
            Self::Tcp(addr) => match timeout(limit, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".into()),
            },
            Self::Ping(addr) => {
                let secs = limit.as_secs().max(1).to_string();
                let out = tokio::process::Command::new("ping")
                    .args(["-n", "-q", "-c", "1", "-W", &secs, &addr.to_string()])
                    .kill_on_drop(true)
                    .output();
                match timeout(limit + Duration::from_secs(1), out).await {
                    Ok(Ok(o)) if o.status.success() => Ok(()),
                    Ok(Ok(o)) => Err(format!("no answer ({})", o.status)),
                    Ok(Err(e)) => Err(format!("running ping: {e}")),
                    Err(_) => Err("timed out".into()),
                }
            }
        }
    }
}

/// Runs every probe until all succeeded (Ok) or `limit` passed (Err naming
/// the probes that never answered and their last error).
pub async fn run_all(probes: &[Probe], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut left: Vec<(Probe, String)> = probes
        .iter()
        .map(|p| (p.clone(), "not tried".to_owned()))
        .collect();
    while !left.is_empty() {
        let mut still = Vec::new();
        for (p, _) in left {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = remaining
                .min(Duration::from_secs(2))
                .max(Duration::from_millis(100));
            match p.once(attempt).await {
                Ok(()) => tracing::info!(probe = %p, "probe answered"),
                Err(e) => still.push((p, e)),
            }
        }
        left = still;
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let what: Vec<String> = left.iter().map(|(p, e)| format!("{p}: {e}")).collect();
            return Err(what.join("; "));
        }
        sleep(Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in [
            "tcp:10.0.0.1:22",
            "tcp:[fd00::1]:22",
            "ping:10.0.0.1",
            "ping:fd00::1",
        ] {
            let p: Probe = s.parse().expect(s);
            assert_eq!(p.to_string(), s);
        }
        for s in ["tcp:10.0.0.1", "tcp::22", "ping:gw", "udp:1"] {
            assert!(s.parse::<Probe>().is_err(), "{s}");
        }
    }

    #[tokio::test]
    async fn tcp_probe_against_a_real_listener() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let ok = Probe::Tcp(addr.to_string());
        run_all(&[ok], Duration::from_secs(2))
            .await
            .expect("listener answers");
        drop(l);
        let gone = Probe::Tcp(addr.to_string());
        let e = run_all(&[gone], Duration::from_millis(300))
            .await
            .expect_err("nobody listens");
        assert!(e.contains(&addr.to_string()), "{e}");
    }
}
