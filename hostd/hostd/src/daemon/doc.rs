//! A desired-state document as the daemon holds it: the engine's
//! [`NetworkState`] plus the daemon-side settings of its optional top-level
//! `daemon:` section (policy, confirmation probes), which is removed before
//! the rest goes to the engine. Its id is a content hash.

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

use hostd_core::{status::ExpectedPort, types::IfName, NetworkState};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::probe::Probe;

/// The top-level key the daemon takes out of a document.
pub const SECTION: &str = "daemon";

/// What the daemon does when a managed object drifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Re-apply the document (rate-limited, with back-off).
    #[default]
    Repair,
    /// Only report the drift (log, D-Bus `Drift` signal).
    Report,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Repair => "repair",
            Self::Report => "report",
        })
    }
}

/// The `daemon:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DaemonSection {
    /// Drift policy.
    #[serde(default)]
    pub policy: Policy,
    /// Probes that confirm a commit-confirmed apply automatically
    /// (`tcp:HOST:PORT`, `ping:ADDR`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirm_probes: Vec<String>,
    /// How long the probes may take, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_timeout: Option<u64>,
    /// The intended cabling, NIC -> switch hostname and port name: the
    /// status diagnosis checks each NIC's LLDP neighbour against it
    /// (docs/status.md). Overrides the daemon's `--cabling` file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cabling: BTreeMap<String, ExpectedPort>,
}

/// Why a document is refused.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// YAML/JSON syntax, or the `daemon` section.
    #[error("{0}")]
    Syntax(String),
    /// The engine's schema refused it.
    #[error("{0}")]
    Schema(#[from] hostd_core::schema::ParseError),
}

/// A parsed document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Content hash (sha256 of the normalised document, hex).
    pub id: String,
    /// The text as given (kept so the record shows what the operator wrote).
    pub text: String,
    /// What goes to the engine.
    pub state: NetworkState,
    /// Daemon-side settings.
    pub daemon: DaemonSection,
}

impl Document {
    /// Parses YAML or JSON; the `daemon` section is optional.
    pub fn parse(text: &str) -> Result<Self, DocError> {
        let json = text.trim_start().starts_with('{');
        let value: serde_json::Value = if json {
            serde_json::from_str(text).map_err(|e| DocError::Syntax(e.to_string()))?
        } else {
            serde_norway::from_str(text).map_err(|e| DocError::Syntax(e.to_string()))?
        };
        let (state, daemon) = match value {
            serde_json::Value::Object(mut map) if map.contains_key(SECTION) => {
                let section = map.remove(SECTION).unwrap_or_default();
                let daemon: DaemonSection = if section.is_null() {
                    DaemonSection::default()
                } else {
                    serde_json::from_value(section)
                        .map_err(|e| DocError::Syntax(format!("{SECTION}: {e}")))?
                };
                for nic in daemon.cabling.keys() {
                    IfName::new(nic)
                        .map_err(|e| DocError::Syntax(format!("{SECTION}.cabling.{nic}: {e}")))?;
                }
                for (i, p) in daemon.confirm_probes.iter().enumerate() {
                    p.parse::<Probe>().map_err(|e| {
                        DocError::Syntax(format!(
                            "{SECTION}.confirm-probes[{i}]: {e} (value: {p:?})"
                        ))
                    })?;
                }
                let rest =
                    serde_json::to_string(&map).map_err(|e| DocError::Syntax(e.to_string()))?;
                (NetworkState::parse(&rest)?, daemon)
            }
            // Without a daemon section the text goes to the engine as it is
            // (its errors then carry YAML line numbers).
            _ => (NetworkState::parse(text)?, DaemonSection::default()),
        };
        let id = content_id(&state, &daemon);
        Ok(Self {
            id,
            text: text.to_owned(),
            state,
            daemon,
        })
    }

    /// The drift policy.
    pub fn policy(&self) -> Policy {
        self.daemon.policy
    }

    /// The confirmation probes (validated at parse time).
    pub fn probes(&self) -> Vec<Probe> {
        self.daemon
            .confirm_probes
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Probe timeout.
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_secs(self.daemon.probe_timeout.unwrap_or(30))
    }

    /// The intended cabling from the `daemon:` section (`None` when it has
    /// none).
    pub fn cabling(&self) -> Option<hostd_core::status::Intent> {
        (!self.daemon.cabling.is_empty()).then(|| hostd_core::status::Intent {
            nics: self.daemon.cabling.clone(),
        })
    }

    /// The first 12 characters of the id, for logs.
    pub fn short_id(&self) -> &str {
        short(&self.id)
    }
}

/// The first 12 characters of an id.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn content_id(state: &NetworkState, daemon: &DaemonSection) -> String {
    let mut h = Sha256::new();
    // serde_json writes struct fields in declaration order: stable.
    h.update(serde_json::to_vec(state).unwrap_or_default());
    h.update(b"\0");
    h.update(serde_json::to_vec(daemon).unwrap_or_default());
    hex(&h.finalize())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "repair" => Ok(Self::Repair),
            "report" => Ok(Self::Report),
            _ => Err(format!("policy must be repair or report, not {s:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "interfaces:\n  - { name: eth0, type: ethernet, state: up }\n";

    #[test]
    fn without_section_the_policy_is_repair() {
        let d = Document::parse(BASE).expect("parse");
        assert_eq!(d.policy(), Policy::Repair);
        assert_eq!(d.state.interfaces.len(), 1);
        assert_eq!(d.id.len(), 64);
    }

    #[test]
    fn section_is_removed_before_the_engine_sees_it() {
        let text =
            format!("{BASE}daemon:\n  policy: report\n  confirm-probes: [\"tcp:10.0.0.1:22\"]\n");
        let d = Document::parse(&text).expect("parse");
        assert_eq!(d.policy(), Policy::Report);
        assert_eq!(d.probes().len(), 1);
        let plain = Document::parse(BASE).expect("parse");
        assert_eq!(d.state, plain.state);
        assert_ne!(d.id, plain.id, "the policy is part of the id");
    }

    #[test]
    fn id_ignores_formatting() {
        let a = Document::parse(BASE).expect("parse");
        let b = Document::parse(
            r#"{"interfaces": [{"type": "ethernet", "name": "eth0", "state": "up"}]}"#,
        )
        .expect("parse");
        assert_eq!(a.id, b.id);
    }

    #[test]
    fn bad_section_names_the_path_and_value() {
        let e =
            Document::parse(&format!("{BASE}daemon: {{ policy: fix }}\n")).expect_err("bad policy");
        assert!(e.to_string().starts_with("daemon:"), "{e}");
        let e = Document::parse(&format!(
            "{BASE}daemon: {{ confirm-probes: [\"udp:1\"] }}\n"
        ))
        .expect_err("bad probe");
        assert!(e.to_string().contains("daemon.confirm-probes[0]"), "{e}");
        assert!(e.to_string().contains("udp:1"), "{e}");
    }

    #[test]
    fn cabling_is_the_status_intent() {
        let d = Document::parse(&format!(
            "{BASE}daemon:\n  cabling:\n    eth0: {{ switch: leaf1a, port: Ethernet12 }}\n"
        ))
        .expect("parse");
        let i = d.cabling().expect("cabling");
        assert_eq!(i.nics["eth0"], ExpectedPort::new("leaf1a", "Ethernet12"));
        assert_eq!(Document::parse(BASE).expect("parse").cabling(), None);
        let e = Document::parse(&format!(
            "{BASE}daemon: {{ cabling: {{ eth0: {{ switch: a }} }} }}\n"
        ))
        .expect_err("no port");
        assert!(e.to_string().contains("port"), "{e}");
        let e = Document::parse(&format!(
            "{BASE}daemon: {{ cabling: {{ this-name-is-too-long0: {{ switch: a, port: b }} }} }}\n"
        ))
        .expect_err("bad NIC name");
        assert!(
            e.to_string()
                .starts_with("daemon.cabling.this-name-is-too-long0:"),
            "{e}"
        );
    }

    #[test]
    fn engine_errors_pass_through() {
        let e = Document::parse("interfaces:\n  - { name: eth0, type: bogus }\n")
            .expect_err("bad type");
        assert!(matches!(e, DocError::Schema(_)), "{e}");
    }
}
