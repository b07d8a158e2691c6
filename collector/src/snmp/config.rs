//! The `snmp:` configuration section: targets, credentials, limits.
//!
//! Secrets (v2c community, v3 passwords) are given inline or read from a
//! file (`*_file`, first line, trailing newline stripped). They are held in
//! [`Secret`], whose `Debug` and `Serialize` print `<redacted>`, so neither
//! `collector --check`, a log line nor the HTTP API can show them.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// A secret string: never printed, logged or served.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

pub const REDACTED: &str = "<redacted>";

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the SNMP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnmpConfig {
    pub targets: Vec<TargetConfig>,
    /// Upper bound on `targets` (validated).
    pub max_targets: usize,
    /// Interface series per target; further interfaces are counted and
    /// skipped.
    pub max_interfaces_per_target: usize,
    /// Rows per target of each other table (processors, storage, sensors).
    pub max_rows_per_table: usize,
    /// SNMP series overall (memory guard: each takes the archives' memory,
    /// an interface series 830 KB with the default archives).
    pub max_series: usize,
    /// Targets polled at the same time over all sockets (each target has at
    /// most one request in flight, so this bounds the requests in flight).
    pub max_in_flight: usize,
    /// Interface names (ifName, ifAlias, ifDescr) and sensor names are
    /// walked on the first poll and then every this many polls.
    pub names_refresh_polls: u64,
}

impl Default for SnmpConfig {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            max_targets: 1000,
            max_interfaces_per_target: 1024,
            max_rows_per_table: 256,
            max_series: 4096,
            max_in_flight: 64,
            names_refresh_polls: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnmpVersion {
    V2c,
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthProto {
    Sha,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivProto {
    Aes,
    Aes256,
}

/// One polled agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Series ids use it (`snmp/<name>/...`): letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// `host:port` (port 161 if omitted).
    pub address: String,
    pub version: SnmpVersion,
    /// v2c community, inline or from `community_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_file: Option<PathBuf>,
    /// v3 USM user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_protocol: Option<AuthProto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_password_file: Option<PathBuf>,
    /// v3 privacy; none: authNoPriv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priv_protocol: Option<PrivProto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priv_password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priv_password_file: Option<PathBuf>,
    /// Seconds between polls.
    #[serde(default = "d_interval")]
    pub interval: u64,
    /// Milliseconds to wait for one response before a retry.
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
    /// Retries per request.
    #[serde(default = "d_retries")]
    pub retries: u32,
    /// Whole-poll deadline in milliseconds (all walks of one poll); default
    /// 80% of the interval. A poll still running then is abandoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// GETBULK max-repetitions (10-25 suits most agents).
    #[serde(default = "d_reps")]
    pub max_repetitions: u32,
}

fn d_interval() -> u64 {
    60
}
fn d_timeout() -> u64 {
    2000
}
fn d_retries() -> u32 {
    1
}
fn d_reps() -> u32 {
    25
}

impl TargetConfig {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(
            self.deadline_ms
                .unwrap_or(self.interval.saturating_mul(800)),
        )
    }
}

/// A validation error naming the field (`snmp.targets[2].community`).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SnmpConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SnmpConfigError {
    SnmpConfigError {
        field: field.into(),
        message: message.into(),
    }
}

fn read_secret(field: &str, p: &std::path::Path) -> Result<Secret, SnmpConfigError> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| err(field, format!("reading {}: {e}", p.display())))?;
    let line = text.lines().next().unwrap_or("").trim_end();
    if line.is_empty() {
        return Err(err(field, format!("{} is empty", p.display())));
    }
    Ok(Secret::new(line))
}

/// Takes the inline secret or reads the file (exactly one of them).
fn secret(
    field: &str,
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, SnmpConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(err(
            field,
            format!("give either {field} or {field}_file, not both"),
        )),
        (Some(s), None) => Ok(Some(s.clone())),
        (None, Some(p)) => read_secret(&format!("{field}_file"), p).map(Some),
        (None, None) => Ok(None),
    }
}

impl SnmpConfig {
    /// Validates every field and reads the secret files into the targets
    /// (so the poller never reads files).
    pub fn validate_and_load(&mut self) -> Result<(), SnmpConfigError> {
        self.validate_limits()?;
        for (i, t) in self.targets.iter_mut().enumerate() {
            let f = |name: &str| format!("snmp.targets[{i}].{name}");
            match t.version {
                SnmpVersion::V2c => {
                    let c = secret(&f("community"), &t.community, &t.community_file)?
                        .ok_or_else(|| err(f("community"), "required for version v2c"))?;
                    if c.is_empty() {
                        return Err(err(f("community"), "must not be empty"));
                    }
                    t.community = Some(c);
                    t.community_file = None;
                    for (name, set) in [
                        ("user", t.user.is_some()),
                        ("auth_protocol", t.auth_protocol.is_some()),
                        ("priv_protocol", t.priv_protocol.is_some()),
                        (
                            "auth_password",
                            t.auth_password.is_some() || t.auth_password_file.is_some(),
                        ),
                        (
                            "priv_password",
                            t.priv_password.is_some() || t.priv_password_file.is_some(),
                        ),
                    ] {
                        if set {
                            return Err(err(f(name), "only for version v3"));
                        }
                    }
                }
                SnmpVersion::V3 => {
                    if t.community.is_some() || t.community_file.is_some() {
                        return Err(err(f("community"), "only for version v2c"));
                    }
                    match &t.user {
                        Some(u) if !u.is_empty() && u.len() <= 32 => {}
                        _ => return Err(err(f("user"), "required for v3, 1 to 32 characters")),
                    }
                    if t.auth_protocol.is_none() {
                        return Err(err(
                            f("auth_protocol"),
                            "required for v3 (sha, sha256 or sha512)",
                        ));
                    }
                    let a = secret(&f("auth_password"), &t.auth_password, &t.auth_password_file)?
                        .ok_or_else(|| err(f("auth_password"), "required for v3"))?;
                    if a.expose().len() < 8 {
                        return Err(err(f("auth_password"), "at least 8 characters"));
                    }
                    t.auth_password = Some(a);
                    t.auth_password_file = None;
                    let p = secret(&f("priv_password"), &t.priv_password, &t.priv_password_file)?;
                    match (&t.priv_protocol, p) {
                        (Some(_), Some(p)) if p.expose().len() >= 8 => {
                            t.priv_password = Some(p);
                        }
                        (Some(_), Some(_)) => {
                            return Err(err(f("priv_password"), "at least 8 characters"))
                        }
                        (Some(_), None) => {
                            return Err(err(f("priv_password"), "required with priv_protocol"))
                        }
                        (None, Some(_)) => {
                            return Err(err(
                                f("priv_protocol"),
                                "required with priv_password (aes or aes256)",
                            ))
                        }
                        (None, None) => {}
                    }
                    t.priv_password_file = None;
                }
            }
        }
        Ok(())
    }

    /// Checks everything but the secrets (no file access).
    pub fn validate_limits(&self) -> Result<(), SnmpConfigError> {
        for (field, v) in [
            ("snmp.max_targets", self.max_targets),
            (
                "snmp.max_interfaces_per_target",
                self.max_interfaces_per_target,
            ),
            ("snmp.max_rows_per_table", self.max_rows_per_table),
            ("snmp.max_series", self.max_series),
            ("snmp.max_in_flight", self.max_in_flight),
        ] {
            if v == 0 {
                return Err(err(field, "must be at least 1"));
            }
        }
        if self.names_refresh_polls == 0 {
            return Err(err("snmp.names_refresh_polls", "must be at least 1"));
        }
        if self.targets.len() > self.max_targets {
            return Err(err(
                "snmp.targets",
                format!(
                    "{} targets exceed snmp.max_targets {}",
                    self.targets.len(),
                    self.max_targets
                ),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let f = |name: &str| format!("snmp.targets[{i}].{name}");
            if t.name.is_empty()
                || t.name.len() > 64
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(err(
                    f("name"),
                    format!("{:?}: 1 to 64 letters, digits, '.', '_' or '-'", t.name),
                ));
            }
            if !names.insert(t.name.as_str()) {
                return Err(err(f("name"), format!("{:?} is used twice", t.name)));
            }
            if split_address(&t.address).is_none() {
                return Err(err(
                    f("address"),
                    format!("{:?} is not host, host:port or [v6]:port", t.address),
                ));
            }
            if t.interval == 0 || t.interval > 86_400 {
                return Err(err(
                    f("interval"),
                    format!("{} is not in 1..=86400 seconds", t.interval),
                ));
            }
            if t.timeout_ms == 0 {
                return Err(err(f("timeout_ms"), "must be at least 1"));
            }
            if t.retries > 10 {
                return Err(err(f("retries"), format!("{} is above 10", t.retries)));
            }
            if t.deadline() > Duration::from_secs(t.interval) || t.deadline().is_zero() {
                return Err(err(
                    f("deadline_ms"),
                    format!(
                        "{} ms is not in 1..={} (the interval)",
                        t.deadline().as_millis(),
                        t.interval * 1000
                    ),
                ));
            }
            if !(1..=100).contains(&t.max_repetitions) {
                return Err(err(
                    f("max_repetitions"),
                    format!("{} is not in 1..=100", t.max_repetitions),
                ));
            }
        }
        Ok(())
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` -> (host, port).
pub fn split_address(a: &str) -> Option<(String, u16)> {
    if a.is_empty() {
        return None;
    }
    if let Ok(ip) = a.parse::<std::net::IpAddr>() {
        return Some((ip.to_string(), 161));
    }
    if let Ok(sa) = a.parse::<std::net::SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    if let Some(v6) = a.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| (ip.to_string(), 161));
    }
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None => (a, 161),
    };
    if host.is_empty()
        || port == 0
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    {
        return None;
    }
    Some((host.to_string(), port))
}
