//! Cross-field checks of a [`FirewallSpec`], each naming the field path and
//! the value. Leaf values (ports, CIDRs, names) are already valid by type.

use std::fmt;

use super::spec::{Cidr, FirewallSpec, Protocol, Rule};

/// One invalid field: `firewall.rules[2].ports[0]: 70000 is not a port (1..=65535)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path from the top of the desired state (`firewall.rules[2].ports`).
    pub path: String,
    /// What is wrong, quoting the value.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Which address families a rule can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Families {
    pub v4: bool,
    pub v6: bool,
}

fn families_of(cidrs: &[Cidr]) -> Families {
    if cidrs.is_empty() {
        return Families { v4: true, v6: true };
    }
    Families {
        v4: cidrs.iter().any(|c| c.is_v4()),
        v6: cidrs.iter().any(|c| !c.is_v4()),
    }
}

/// Families a valid rule matches: the intersection of what its protocol,
/// sources and destinations allow.
pub(crate) fn rule_families(rule: &Rule) -> Families {
    let s = families_of(&rule.sources);
    let d = families_of(&rule.destinations);
    let (pv4, pv6) = match rule.protocol {
        Protocol::Icmp => (true, false),
        Protocol::Icmpv6 => (false, true),
        _ => (true, true),
    };
    Families {
        v4: s.v4 && d.v4 && pv4,
        v6: s.v6 && d.v6 && pv6,
    }
}

/// All problems of `spec`, with paths under `prefix` (normally `"firewall"`).
pub fn check(spec: &FirewallSpec, prefix: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut err = |path: String, message: String| errs.push(FieldError { path, message });

    if spec.enabled {
        match &spec.management {
            None => err(
                format!("{prefix}.management"),
                "is required when the firewall is enabled (the controllers' addresses and hostd's channel port), \
                 so that no rule change can cut this server off"
                    .into(),
            ),
            Some(m) if m.controllers.is_empty() => err(
                format!("{prefix}.management.controllers"),
                "is empty: list at least one controller address when the firewall is enabled".into(),
            ),
            Some(_) => {}
        }
    }

    for (i, rule) in spec.rules.iter().enumerate() {
        let p = format!("{prefix}.rules[{i}]");
        if !rule.ports.is_empty() && !matches!(rule.protocol, Protocol::Tcp | Protocol::Udp) {
            err(
                format!("{p}.ports"),
                format!(
                    "ports need protocol tcp or udp, but protocol is {} (ports: {})",
                    rule.protocol.as_str(),
                    rule.ports
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        for (field, list) in [
            ("sources", &rule.sources),
            ("destinations", &rule.destinations),
        ] {
            for (j, c) in list.iter().enumerate() {
                match rule.protocol {
                    Protocol::Icmp if !c.is_v4() => err(
                        format!("{p}.{field}[{j}]"),
                        format!("{c} is IPv6 but protocol icmp is IPv4-only (use icmpv6)"),
                    ),
                    Protocol::Icmpv6 if c.is_v4() => err(
                        format!("{p}.{field}[{j}]"),
                        format!("{c} is IPv4 but protocol icmpv6 is IPv6-only (use icmp)"),
                    ),
                    _ => {}
                }
            }
        }
        let s = families_of(&rule.sources);
        let d = families_of(&rule.destinations);
        if !((s.v4 && d.v4) || (s.v6 && d.v6)) {
            err(
                format!("{p}.destinations"),
                "share no address family with sources (all sources are one of IPv4/IPv6, all destinations the other): \
                 the rule could never match"
                    .into(),
            );
        }
    }
    errs
}
