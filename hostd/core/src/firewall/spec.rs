//! The firewall section of hostd's desired state, as the controller sends it.
//!
//! Leaf values are validated newtypes that cannot be deserialized invalid
//! ([`Port`], [`PortRange`], [`Cidr`], [`IfaceMatch`], [`Comment`]); rules
//! that combine fields badly (ports on ICMP, an IPv6 source on an `icmp`
//! rule) are caught by [`FirewallSpec::validate`](super::FirewallSpec::validate),
//! which names the field path.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// The InstanceArray firewall: the same on every server of the array.
///
/// ```yaml
/// firewall:
///   enabled: true
///   management:
///     controllers: [192.0.2.10/32, 2001:db8:c::/64]
///     channel_port: 7443
///   rules:
///     - { action: accept, protocol: tcp, ports: [22, "8000-8080"], sources: [198.51.100.0/24], comment: ssh }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    /// `false`: hostd removes its own table and touches nothing else (hosts
    /// whose firewall is managed by hand). Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The protected management exception. Required when enabled: it is
    /// placed before every user rule, so no rule change can cut hostd off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management: Option<Management>,
    /// What happens to outbound packets no rule matched. Default `accept`
    /// (outbound filtering is opt-in).
    #[serde(default)]
    pub outbound_policy: OutboundPolicy,
    /// User rules, evaluated in order after the defaults and the management
    /// exception; the first match decides. Unmatched inbound packets are dropped.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

fn yes() -> bool {
    true
}

impl Default for FirewallSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            management: None,
            outbound_policy: OutboundPolicy::default(),
            rules: Vec::new(),
        }
    }
}

/// Who manages this server: always reachable, whatever the user rules say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// The controller's addresses (IPv4 and/or IPv6 CIDRs or single addresses).
    pub controllers: Vec<Cidr>,
    /// TCP port of hostd's own channel, accepted from the controllers.
    pub channel_port: Port,
    /// Further TCP ports the controllers may always reach (e.g. 22).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_tcp_ports: Vec<Port>,
}

/// Default verdict for outbound packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundPolicy {
    /// Outbound packets pass unless an outbound rule drops them.
    #[default]
    Accept,
    /// Outbound packets are dropped unless an outbound rule, the management
    /// exception or the defaults (established, loopback, ICMP) accept them.
    Drop,
}

/// One user rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What to do with a matching packet.
    pub action: Action,
    /// Inbound (default) or outbound.
    #[serde(default)]
    pub direction: Direction,
    /// Default `any`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Destination ports and ranges (`22`, `"8000-8080"`); only with tcp or udp.
    /// Empty: any port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    /// Source CIDRs (IPv4 and IPv6 may be mixed). Empty: any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Cidr>,
    /// Destination CIDRs. Empty: any destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Cidr>,
    /// Input interface (inbound) or output interface (outbound); a trailing
    /// `*` matches a prefix (`eth*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<IfaceMatch>,
    /// Shown by `hostd firewall show` and stored in the nftables rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<Comment>,
}

/// A rule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the packet through.
    Accept,
    /// Discard silently: the peer times out.
    Drop,
    /// Discard and tell the peer: TCP reset for TCP, ICMP port unreachable otherwise.
    Reject,
}

/// Which way the packet travels, seen from this server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Packets addressed to this server (nftables `input` hook).
    #[default]
    Inbound,
    /// Packets this server sends (nftables `output` hook).
    Outbound,
}

/// Layer-4 protocol a rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (IPv4 only).
    Icmp,
    /// ICMPv6 (IPv6 only).
    Icmpv6,
    /// Any protocol.
    #[default]
    Any,
}

impl Protocol {
    /// The spelling used in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Icmpv6 => "icmpv6",
            Self::Any => "any",
        }
    }
}

/// A TCP/UDP port, 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    /// `Err` names the value: `70000 is not a port (1..=65535)`.
    pub fn new(n: i64) -> Result<Self, String> {
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(Self(p)),
            _ => Err(format!("{n} is not a port (1..=65535)")),
        }
    }

    /// The port number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match PortRange::deserialize(d)? {
            PortRange { first, last } if first == last => Ok(first),
            r => Err(de::Error::custom(format!(
                "\"{r}\" is a range; a single port is expected here"
            ))),
        }
    }
}

/// A port or an inclusive range of ports: `22` or `"8000-8080"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    first: Port,
    last: Port,
}

impl PortRange {
    /// `first..=last`; `Err` for a reversed range.
    pub fn new(first: Port, last: Port) -> Result<Self, String> {
        if first > last {
            return Err(format!(
                "\"{}-{}\" is a reversed port range (first > last)",
                first.0, last.0
            ));
        }
        Ok(Self { first, last })
    }

    /// A single port.
    pub fn single(p: Port) -> Self {
        Self { first: p, last: p }
    }

    /// First port of the range.
    pub fn first(self) -> u16 {
        self.first.0
    }

    /// Last port of the range (inclusive).
    pub fn last(self) -> u16 {
        self.last.0
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first.0)
        } else {
            write!(f, "{}-{}", self.first.0, self.last.0)
        }
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let parse = |x: &str| -> Result<Port, String> {
            let x = x.trim();
            let n: i64 = x.parse().map_err(|_| {
                format!("\"{s}\" is not a port or a port range (e.g. 22, \"8000-8080\")")
            })?;
            Port::new(n)
        };
        match t.split_once('-') {
            // A leading '-' is a negative number, not a range.
            Some((a, b)) if !a.trim().is_empty() => Self::new(parse(a)?, parse(b)?),
            _ => Ok(Self::single(parse(t)?)),
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u16(self.first.0)
        } else {
            s.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (1..=65535) or a range \"first-last\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                Port::new(v).map(PortRange::single).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
                let n = i64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is not a port (1..=65535)")))?;
                self.visit_i64(n)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PortRange, E> {
                Err(E::custom(format!("{v} is not a port (1..=65535)")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An IPv4 or IPv6 network without host bits (`10.0.0.0/8`,
/// `2001:db8::/32`); a bare address means a single host (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    /// The network.
    pub fn net(self) -> IpNet {
        self.0
    }

    /// `true` for IPv4.
    pub fn is_v4(self) -> bool {
        matches!(self.0, IpNet::V4(_))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let net = if t.contains('/') {
            t.parse::<IpNet>().map_err(|_| {
                format!("\"{s}\" is not an IPv4 or IPv6 CIDR (e.g. 192.0.2.0/24, 2001:db8::/32)")
            })?
        } else {
            let ip = t
                .parse::<IpAddr>()
                .map_err(|_| format!("\"{s}\" is not an IPv4 or IPv6 address or CIDR (e.g. 192.0.2.0/24, 2001:db8::/32)"))?;
            IpNet::from(ip)
        };
        if net.trunc() != net {
            return Err(format!(
                "\"{s}\" has host bits set (did you mean {}?)",
                net.trunc()
            ));
        }
        Ok(Self(net))
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// An interface name (1..=15 bytes) to match, optionally ending in `*`
/// (prefix match, nftables `iifname "eth*"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct IfaceMatch(String);

impl IfaceMatch {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IfaceMatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let stem = s.strip_suffix('*').unwrap_or(s);
        let ok_char =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':');
        if s.is_empty() || s.len() > 15 || stem.is_empty() || !stem.chars().all(ok_char) {
            return Err(format!(
                "\"{s}\" is not an interface name (1..=15 characters of [A-Za-z0-9-_.@:], optionally ending in '*')"
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for IfaceMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A rule comment: at most 96 bytes of printable text without `"` or `\`
/// (it is stored in the nftables rule next to hostd's own tag).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Comment(String);

/// Longest comment accepted, in bytes.
pub const COMMENT_MAX: usize = 96;

impl Comment {
    /// The comment text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Comment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() > COMMENT_MAX {
            return Err(format!("\"{s}\" is longer than {COMMENT_MAX} bytes"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| c.is_control() || *c == '"' || *c == '\\')
        {
            return Err(format!("\"{}\" contains {c:?}: comments may not hold quotes, backslashes or control characters", s.escape_debug()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Comment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}
