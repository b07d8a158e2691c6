//! The InstanceArray firewall, pure part: the schema ([`FirewallSpec`]),
//! validation with field paths ([`FirewallSpec::validate`]), rendering of
//! the complete nftables table hostd owns ([`render()`], [`Ruleset`]),
//! decoding of its counters from `nft -j` output ([`parse_listing`]), and
//! the comparison of a listing with what hostd rendered: the fingerprint
//! and the hand-edit checks ([`Model`], [`Model::check`], [`diff`]).
//!
//! The side-effecting part (running `nft`) lives in the `hostd` crate,
//! `hostd/hostd/src/firewall/`. User documentation: `docs/firewall.md`.

mod counters;
mod delta;
mod model;
mod render;
mod spec;
mod validate;

pub use counters::{parse_current, parse_listing, RuleCounter, ShowRow, TableState};
pub use delta::{
    fresh_names, interval_delta, plan_element_update, ElementUpdate, SetDelta, WholeSets,
};
pub use model::{
    content_hash, diff, parse_statement, ranges_from_intervals, set_name_hash, terms_text,
    AddrRange, BaseChain, Carrier, ChainModel, Drift, ListingError, Model, RuleModel, SetModel,
    Term, FORMAT,
};
pub use render::{
    remove_script, render, Chain, Current, IntervalElement, NamedSet, NftRule, RuleTag, Ruleset,
    FAMILY, FINGERPRINT_KEY, TABLE,
};
pub use spec::{
    Action, Cidr, Comment, Direction, FirewallSpec, IfaceMatch, Management, OutboundPolicy, Port,
    PortRange, Protocol, Rule, COMMENT_MAX,
};
pub use validate::FieldError;

/// Why a firewall spec was refused. Nothing is applied when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The document does not deserialize (unknown field, bad port, invalid CIDR...).
    #[error("{path}: {message}")]
    Parse {
        /// Field path (`firewall.rules[2].ports[0]`).
        path: String,
        /// What is wrong, quoting the value.
        message: String,
    },
    /// Fields that are valid alone but not together.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
}

impl FirewallError {
    /// Every field error, one per line.
    pub fn fields(&self) -> Vec<FieldError> {
        match self {
            Self::Parse { path, message } => vec![FieldError {
                path: path.clone(),
                message: message.clone(),
            }],
            Self::Invalid(v) => v.clone(),
        }
    }
}

impl FirewallSpec {
    /// Checks what types alone cannot: management present when enabled, ports
    /// only with tcp/udp, ICMP versus address family, sources and
    /// destinations sharing a family. All problems are reported, with paths
    /// under `firewall`.
    pub fn validate(&self) -> Result<(), FirewallError> {
        self.validate_at("firewall")
    }

    /// [`FirewallSpec::validate`] with paths under `prefix`.
    pub fn validate_at(&self, prefix: &str) -> Result<(), FirewallError> {
        let errs = validate::check(self, prefix);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(FirewallError::Invalid(errs))
        }
    }

    /// Parses and validates either a whole desired-state document (the
    /// `firewall:` key is read, other keys are ignored here) or a document
    /// holding the firewall section alone.
    pub fn from_document(text: &str) -> Result<Self, FirewallError> {
        let doc: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| FirewallError::Parse {
                path: "(document)".to_owned(),
                message: e.to_string(),
            })?;
        match doc.get("firewall") {
            Some(section) => {
                let spec: Self =
                    serde_path_to_error::deserialize(section.clone()).map_err(|e| {
                        let inner = e.path().to_string();
                        let path = if inner == "." {
                            "firewall".to_owned()
                        } else {
                            format!("firewall.{inner}")
                        };
                        FirewallError::Parse {
                            path,
                            message: e.inner().to_string(),
                        }
                    })?;
                spec.validate()?;
                Ok(spec)
            }
            None => Self::from_yaml(text),
        }
    }

    /// Parses and validates a YAML (or JSON) document holding the firewall
    /// section itself (the value of `firewall:`); error paths start with
    /// `firewall`.
    pub fn from_yaml(text: &str) -> Result<Self, FirewallError> {
        let de = serde_norway::Deserializer::from_str(text);
        let spec: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.path().to_string();
            let path = if inner == "." {
                "firewall".to_owned()
            } else {
                format!("firewall.{inner}")
            };
            // serde_norway already prefixes its message with the path: keep one.
            let msg = e.inner().to_string();
            let message = match msg.split_once(": ") {
                Some((p, rest))
                    if p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c)) =>
                {
                    rest.to_owned()
                }
                _ => msg,
            };
            FirewallError::Parse { path, message }
        })?;
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_drift;
