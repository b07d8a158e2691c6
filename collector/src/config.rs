//! Configuration: a YAML file, every field optional with the defaults below
//! (also in docs/collector.md). With no file the embedded default runs: sFlow
//! on UDP 6343 (IPv4 and IPv6) accepting loopback sources only (empty
//! `sflow.allow`), API on 127.0.0.1:6344 without tokens, no subnets
//! (interface series only), memory-only store, the `limits` below.

use std::{net::SocketAddr, path::PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::rrd::{Cf, RraDef};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sflow: SflowConfig,
    /// Subnets to account (IPv4 and IPv6 prefixes; most specific wins).
    pub subnets: Vec<IpNet>,
    pub series: SeriesConfig,
    pub store: StoreConfig,
    pub api: ApiConfig,
    pub limits: LimitsConfig,
    /// SNMP polling (issue 13): targets and limits, see crate::snmp.
    pub snmp: crate::snmp::config::SnmpConfig,
    /// Prometheus remote-write of the series (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_write: Option<crate::remote_write::RemoteWriteConfig>,
}

/// Memory guards against spoofed or runaway input (docs/collector.md,
/// "Bounded memory"). Every hit is counted in the statistics and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// (agent address, sub-agent id) pairs tracked over all sockets; the
    /// datagrams of further agents are counted and dropped.
    pub max_agents: usize,
    /// Flow-sample sources (data source kind and index) tracked per agent
    /// for the drops correction; samples of further sources are accounted
    /// at their plain sampling rate and counted.
    pub max_sources_per_agent: usize,
    /// Interface series per agent (the overall cap is
    /// `series.max_interfaces`); readings of further interfaces are counted
    /// and dropped.
    pub max_interfaces_per_agent: usize,
    /// Seconds without a datagram after which an agent is forgotten (its
    /// statistics and its slot under `max_agents`; its series stay in the
    /// store); 0: never. Agents send counter samples every 20-30 s.
    pub agent_idle_expiry: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_agents: 1024,
            max_sources_per_agent: 1024,
            max_interfaces_per_agent: 512,
            agent_idle_expiry: 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SflowConfig {
    /// UDP addresses to receive sFlow on. An IPv6 address is bound v6-only.
    pub listen: Vec<SocketAddr>,
    /// Sockets (and threads) per address, sharing the port with
    /// SO_REUSEPORT. 0: one per CPU.
    pub workers: usize,
    /// SO_RCVBUF per socket in bytes (the kernel doubles it; capped by
    /// net.core.rmem_max unless running as root, which uses SO_RCVBUFFORCE).
    pub recv_buffer_bytes: usize,
    /// Datagrams per recvmmsg call.
    pub batch: usize,
    /// Agents allowed to send (UDP source address or prefix). Empty: only
    /// loopback sources, unless `allow_any`.
    pub allow: Vec<IpNet>,
    /// With an empty `allow`: accept datagrams from any source (memory is
    /// then bounded by `limits` only). Ignored when `allow` is set.
    pub allow_any: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesConfig {
    /// Base step of every series, seconds.
    pub step: u64,
    /// Heartbeat of every data source, seconds.
    pub heartbeat: u64,
    /// Archives of every series.
    pub archives: Vec<RraDef>,
    /// Seconds between pushes of the accumulated counters into the series.
    pub flush_interval: u64,
    /// Upper bound on interface series (memory guard); readings for more
    /// interfaces are counted and dropped.
    pub max_interfaces: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Snapshot file. None: memory only (a restart loses everything).
    pub path: Option<PathBuf>,
    /// Seconds between snapshots (also taken on shutdown).
    pub snapshot_interval: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Accepted bearer tokens. Empty: no authentication, which is only
    /// allowed on a loopback address.
    pub tokens: Vec<String>,
    /// Percentile of the traffic report (95 for "95th percentile billing").
    pub percentile: f64,
}

impl Default for SflowConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "0.0.0.0:6343".parse().expect("literal"),
                "[::]:6343".parse().expect("literal"),
            ],
            workers: 0,
            recv_buffer_bytes: 8 << 20,
            batch: 64,
            allow: Vec::new(),
            allow_any: false,
        }
    }
}

impl Default for SeriesConfig {
    fn default() -> Self {
        Self {
            step: 60,
            heartbeat: 180,
            archives: vec![
                // 1 min x 1 day, 5 min x 1 week, 1 h x 13 months (396 days).
                RraDef {
                    cf: Cf::Average,
                    steps: 1,
                    rows: 1440,
                    xff: 0.5,
                },
                RraDef {
                    cf: Cf::Average,
                    steps: 5,
                    rows: 2016,
                    xff: 0.5,
                },
                RraDef {
                    cf: Cf::Average,
                    steps: 60,
                    rows: 9504,
                    xff: 0.5,
                },
            ],
            flush_interval: 10,
            max_interfaces: 4096,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: None,
            snapshot_interval: 300,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:6344".parse().expect("literal"),
            tokens: Vec::new(),
            percentile: 95.0,
        }
    }
}

/// A configuration error, naming the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: serde_norway::Error,
    },
    #[error(transparent)]
    Snmp(#[from] crate::snmp::config::SnmpConfigError),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl Config {
    /// Reads and validates a YAML file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates YAML (`origin` names it in errors).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut c: Config = serde_norway::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.into(),
            source,
        })?;
        c.validate()?;
        // SNMP: reads the secret files, checks the credentials.
        c.snmp.validate_and_load()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, message: String| Err(ConfigError::Invalid { field, message });
        if self.sflow.listen.is_empty() {
            return bad("sflow.listen", "at least one address".into());
        }
        if self.sflow.batch == 0 || self.sflow.batch > 1024 {
            return bad(
                "sflow.batch",
                format!("{} is not in 1..=1024", self.sflow.batch),
            );
        }
        if self.series.step == 0 {
            return bad("series.step", "must be at least 1".into());
        }
        if self.series.heartbeat < self.series.flush_interval {
            return bad(
                "series.heartbeat",
                format!(
                    "{} is shorter than series.flush_interval {}",
                    self.series.heartbeat, self.series.flush_interval
                ),
            );
        }
        if self.series.flush_interval == 0 {
            return bad("series.flush_interval", "must be at least 1".into());
        }
        for (field, v) in [
            ("limits.max_agents", self.limits.max_agents),
            (
                "limits.max_sources_per_agent",
                self.limits.max_sources_per_agent,
            ),
            (
                "limits.max_interfaces_per_agent",
                self.limits.max_interfaces_per_agent,
            ),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if self.store.snapshot_interval == 0 {
            return bad("store.snapshot_interval", "must be at least 1".into());
        }
        if let Err(e) = crate::store::subnet_def(&self.series).validate() {
            return bad("series.archives", e.to_string());
        }
        if let Err(e) = crate::subnets::SubnetTable::new(self.subnets.iter().copied()) {
            return bad("subnets", e.to_string());
        }
        if self.api.tokens.is_empty() && !self.api.listen.ip().is_loopback() {
            return bad(
                "api.tokens",
                format!(
                    "empty, but api.listen {} is not a loopback address",
                    self.api.listen
                ),
            );
        }
        if self.api.tokens.iter().any(|t| t.len() < 16) {
            return bad(
                "api.tokens",
                "every token must be at least 16 characters".into(),
            );
        }
        self.snmp.validate_limits()?;
        if !(self.api.percentile > 0.0 && self.api.percentile <= 100.0) {
            return bad(
                "api.percentile",
                format!("{} is not in (0, 100]", self.api.percentile),
            );
        }
        if let Some(rw) = &self.remote_write {
            rw.validate()?;
            if !self.series.archives.iter().any(|a| a.cf == Cf::Average) {
                return bad(
                    "series.archives",
                    "remote_write needs an AVERAGE archive (its finest is what is written)".into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips() {
        let c = Config::default();
        c.validate().unwrap();
        let y = serde_norway::to_string(&c).unwrap();
        assert_eq!(Config::from_yaml(&y, "x").unwrap(), c);
        assert_eq!(Config::from_yaml("{}", "x").unwrap(), c);
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../collector.example.yaml");
        let c = Config::from_yaml(text, "collector.example.yaml").unwrap();
        assert_eq!(c.subnets.len(), 3);
        assert_eq!(c.api.tokens.len(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::from_yaml("sflow: {listen: [], bogus: 1}", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.yaml") && e.contains("bogus"), "{e}");
        let e = Config::from_yaml("api: {listen: '0.0.0.0:80'}", "f")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "api.tokens: empty, but api.listen 0.0.0.0:80 is not a loopback address"
        );
        let e = Config::from_yaml("subnets: [10.0.0.0/8, 10.0.0.1/8]", "f")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "subnets: subnet 10.0.0.0/8 is listed more than once");
        let e = Config::from_yaml("limits: {max_agents: 0}", "f")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "limits.max_agents: must be at least 1");
        let e = Config::from_yaml("subnets: [10.0.0.0/33]", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f:"), "{e}");
        let e = Config::from_yaml(
            "series: {archives: [{cf: AVERAGE, steps: 1, rows: 10, xff: 1.5}]}",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("series.archives: invalid definition: rra[0]: xff 1.5"),
            "{e}"
        );
    }
}
