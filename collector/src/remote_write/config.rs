//! The `remote_write:` section of the configuration (docs/collector.md,
//! "Remote-write"). Secrets are read from files named here, never written in
//! the configuration itself, so `collector --check` and logs show paths only.

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Labels the collector sets itself: configured `labels` may not use them.
pub const RESERVED_LABELS: [&str; 5] = ["__name__", "subnet", "agent", "ifindex", "direction"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteConfig {
    /// Receiver endpoint, e.g. `http://prometheus:9090/api/v1/write`
    /// (Prometheus with `--web.enable-remote-write-receiver`) or
    /// VictoriaMetrics' `http://vm:8428/api/v1/write`. Plain `http://` only.
    pub url: String,
    /// File holding a bearer token (`Authorization: Bearer ...`).
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic authentication (exclusive with `bearer_token_file`).
    pub basic_auth: Option<BasicAuthConfig>,
    /// Seconds one request (connect, send, response) may take.
    pub timeout: u64,
    /// Most samples in one request.
    pub batch_samples: usize,
    /// Most samples waiting to be sent (one batch more may be in flight);
    /// beyond it the oldest are dropped and counted.
    pub queue_max_samples: usize,
    /// Back-off after the first failed attempt, milliseconds; doubled per
    /// retry up to `max_backoff_ms`.
    pub min_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Labels added to every series, e.g. `{collector: eu-1}`: what keeps
    /// the series of several collectors apart in one TSDB.
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: String,
    /// File holding the password.
    pub password_file: PathBuf,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            bearer_token_file: None,
            basic_auth: None,
            timeout: 10,
            batch_samples: 2000,
            queue_max_samples: 1_000_000,
            min_backoff_ms: 100,
            max_backoff_ms: 5000,
            labels: BTreeMap::new(),
        }
    }
}

fn valid_label_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

impl RemoteWriteConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, message: String| Err(ConfigError::Invalid { field, message });
        match self.url.parse::<hyper::Uri>() {
            Err(e) => return bad("remote_write.url", format!("{:?}: {e}", self.url)),
            Ok(u) => {
                if u.scheme_str() != Some("http") {
                    return bad(
                        "remote_write.url",
                        format!(
                            "{:?}: only http:// is supported (put a TLS-terminating proxy in front for https)",
                            self.url
                        ),
                    );
                }
                if u.host().is_none_or(str::is_empty) {
                    return bad("remote_write.url", format!("{:?}: no host", self.url));
                }
            }
        }
        if self.bearer_token_file.is_some() && self.basic_auth.is_some() {
            return bad(
                "remote_write.basic_auth",
                "set either bearer_token_file or basic_auth, not both".into(),
            );
        }
        if let Some(b) = &self.basic_auth {
            if b.username.is_empty() || b.username.contains(':') {
                return bad(
                    "remote_write.basic_auth.username",
                    format!("{:?} must be non-empty and without ':'", b.username),
                );
            }
        }
        if self.timeout == 0 {
            return bad("remote_write.timeout", "must be at least 1".into());
        }
        if self.batch_samples == 0 || self.batch_samples > 100_000 {
            return bad(
                "remote_write.batch_samples",
                format!("{} is not in 1..=100000", self.batch_samples),
            );
        }
        if self.queue_max_samples < self.batch_samples {
            return bad(
                "remote_write.queue_max_samples",
                format!(
                    "{} is below remote_write.batch_samples {}",
                    self.queue_max_samples, self.batch_samples
                ),
            );
        }
        if self.min_backoff_ms == 0 {
            return bad("remote_write.min_backoff_ms", "must be at least 1".into());
        }
        if self.max_backoff_ms < self.min_backoff_ms {
            return bad(
                "remote_write.max_backoff_ms",
                format!(
                    "{} is below remote_write.min_backoff_ms {}",
                    self.max_backoff_ms, self.min_backoff_ms
                ),
            );
        }
        for (k, v) in &self.labels {
            if !valid_label_name(k) || k.starts_with("__") {
                return bad(
                    "remote_write.labels",
                    format!(
                        "{k:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)"
                    ),
                );
            }
            if RESERVED_LABELS.contains(&k.as_str()) {
                return bad(
                    "remote_write.labels",
                    format!("{k:?} is set by the collector itself"),
                );
            }
            if v.is_empty() {
                return bad(
                    "remote_write.labels",
                    format!("{k:?}: empty value (Prometheus drops empty labels)"),
                );
            }
        }
        Ok(())
    }
}
