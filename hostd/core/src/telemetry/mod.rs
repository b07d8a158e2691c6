//! The telemetry section of hostd's desired state: which interfaces carry the
//! eBPF counters, how packets are sampled, which subnets are counted, and
//! where sFlow v5 datagrams go.
//!
//! ```yaml
//! telemetry:
//!   interfaces: [bond0, eth0]
//!   sampling-rate: 1000        # 1 in N packets; 0 turns sampling off
//!   header-bytes: 128          # bytes of each sampled packet (1..=256)
//!   counter-interval: 20       # seconds between counter samples
//!   agent-address: 192.0.2.10  # optional; default: source address towards the first collector
//!   sub-agent-id: 0
//!   collectors:
//!     - address: 192.0.2.1     # port defaults to 6343
//!   subnets: [10.0.0.0/24, "2001:db8::/64"]
//! ```
//!
//! Parsing refuses unknown fields and bad interface names (with the field
//! path, through the schema's parser); [`TelemetrySpec::validate`] checks
//! ranges, duplicates and subnets, and returns every problem with its path
//! and value. Pure: nothing here touches the host.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    types::IfName,
    validate::{Invalid, ValidationErrors},
};

/// Default sampling: 1 in 1000 packets (hsflowd's default for 1 Gbit/s).
pub const DEFAULT_SAMPLING_RATE: u32 = 1000;
/// Default bytes of header per sample.
pub const DEFAULT_HEADER_BYTES: u32 = 128;
/// Largest header the eBPF programs copy.
pub const MAX_HEADER_BYTES: u32 = 256;
/// Default seconds between counter samples (hsflowd's default).
pub const DEFAULT_COUNTER_INTERVAL: u32 = 20;
/// The sFlow collector port (IANA).
pub const SFLOW_PORT: u16 = 6343;
/// Most subnets the programs can count (size of the LPM tries).
pub const MAX_SUBNETS: usize = 65536;
/// sFlow's sampling rate is 1 in N with N < 2^24 in practice; refuse more.
pub const MAX_SAMPLING_RATE: u32 = 1 << 24;

/// The `telemetry` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TelemetrySpec {
    /// Interfaces the TC programs are attached to (both directions).
    #[serde(default)]
    pub interfaces: Vec<IfName>,
    /// Sample 1 in N packets; 0 turns sampling off.
    #[serde(default = "default_sampling_rate")]
    pub sampling_rate: u32,
    /// Bytes copied from the start of each sampled packet.
    #[serde(default = "default_header_bytes")]
    pub header_bytes: u32,
    /// Seconds between counter samples.
    #[serde(default = "default_counter_interval")]
    pub counter_interval: u32,
    /// Agent address in datagrams; default: the source address the kernel
    /// picks towards the first collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_address: Option<IpAddr>,
    #[serde(default)]
    pub sub_agent_id: u32,
    #[serde(default)]
    pub collectors: Vec<CollectorSpec>,
    /// Subnets counted exactly (packets and bytes to and from each).
    #[serde(default)]
    pub subnets: Vec<IpNet>,
}

/// One sFlow collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CollectorSpec {
    pub address: IpAddr,
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_sampling_rate() -> u32 {
    DEFAULT_SAMPLING_RATE
}
fn default_header_bytes() -> u32 {
    DEFAULT_HEADER_BYTES
}
fn default_counter_interval() -> u32 {
    DEFAULT_COUNTER_INTERVAL
}
fn default_port() -> u16 {
    SFLOW_PORT
}

impl Default for TelemetrySpec {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            sampling_rate: DEFAULT_SAMPLING_RATE,
            header_bytes: DEFAULT_HEADER_BYTES,
            counter_interval: DEFAULT_COUNTER_INTERVAL,
            agent_address: None,
            sub_agent_id: 0,
            collectors: Vec::new(),
            subnets: Vec::new(),
        }
    }
}

impl TelemetrySpec {
    /// Checks everything parsing cannot; every problem is reported with its
    /// field path (under `telemetry.`) and value.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = Vec::new();
        let mut push = |path: String, value: String, reason: &str| {
            errs.push(Invalid {
                path,
                value,
                reason: reason.to_owned(),
            });
        };
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, name) in self.interfaces.iter().enumerate() {
            if let Some(first) = seen.insert(name.as_str(), i) {
                push(
                    format!("telemetry.interfaces[{i}]"),
                    name.as_str().to_owned(),
                    &format!("duplicate interface (first at telemetry.interfaces[{first}])"),
                );
            }
        }
        if self.sampling_rate > MAX_SAMPLING_RATE {
            push(
                "telemetry.sampling-rate".into(),
                self.sampling_rate.to_string(),
                &format!("must be 0 (off) or 1..={MAX_SAMPLING_RATE}"),
            );
        }
        if self.header_bytes == 0 || self.header_bytes > MAX_HEADER_BYTES {
            push(
                "telemetry.header-bytes".into(),
                self.header_bytes.to_string(),
                &format!("must be in 1..={MAX_HEADER_BYTES}"),
            );
        }
        if self.counter_interval == 0 || self.counter_interval > 3600 {
            push(
                "telemetry.counter-interval".into(),
                self.counter_interval.to_string(),
                "must be in 1..=3600 seconds",
            );
        }
        if let Some(a) = self.agent_address {
            if a.is_unspecified() || a.is_multicast() {
                push(
                    "telemetry.agent-address".into(),
                    a.to_string(),
                    "must be a unicast address",
                );
            }
        }
        let mut collectors: BTreeMap<(IpAddr, u16), usize> = BTreeMap::new();
        for (i, c) in self.collectors.iter().enumerate() {
            if c.address.is_unspecified() || c.address.is_multicast() {
                push(
                    format!("telemetry.collectors[{i}].address"),
                    c.address.to_string(),
                    "must be a unicast address",
                );
            }
            if c.port == 0 {
                push(
                    format!("telemetry.collectors[{i}].port"),
                    "0".into(),
                    "must be in 1..=65535",
                );
            }
            if let Some(first) = collectors.insert((c.address, c.port), i) {
                push(
                    format!("telemetry.collectors[{i}]"),
                    format!("{}:{}", c.address, c.port),
                    &format!("duplicate collector (first at telemetry.collectors[{first}])"),
                );
            }
        }
        if self.sampling_rate != 0 && !self.collectors.is_empty() && self.interfaces.is_empty() {
            push(
                "telemetry.interfaces".into(),
                "[]".into(),
                "sampling to collectors needs at least one interface",
            );
        }
        if self.subnets.len() > MAX_SUBNETS {
            push(
                "telemetry.subnets".into(),
                format!("{} subnets", self.subnets.len()),
                &format!("at most {MAX_SUBNETS} subnets can be counted"),
            );
        }
        let mut subnets: BTreeMap<IpNet, usize> = BTreeMap::new();
        for (i, n) in self.subnets.iter().enumerate() {
            if n.trunc() != *n {
                push(
                    format!("telemetry.subnets[{i}]"),
                    n.to_string(),
                    &format!("has host bits set (did you mean {}?)", n.trunc()),
                );
            }
            if let Some(first) = subnets.insert(n.trunc(), i) {
                push(
                    format!("telemetry.subnets[{i}]"),
                    n.to_string(),
                    &format!("duplicate subnet (first at telemetry.subnets[{first}])"),
                );
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errs))
        }
    }

    /// The collectors as socket addresses.
    pub fn collector_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.collectors
            .iter()
            .map(|c| std::net::SocketAddr::new(c.address, c.port))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<TelemetrySpec, crate::schema::ParseError> {
        crate::schema::from_yaml(yaml)
    }

    #[test]
    fn defaults_fill_a_minimal_section() {
        let s = parse("interfaces: [eth0]\ncollectors: [{address: 192.0.2.1}]\n").expect("parses");
        assert_eq!(s.sampling_rate, 1000);
        assert_eq!(s.header_bytes, 128);
        assert_eq!(s.counter_interval, 20);
        assert_eq!(s.collectors[0].port, 6343);
        assert_eq!(
            s.collector_addrs(),
            vec!["192.0.2.1:6343".parse().expect("addr")]
        );
        s.validate().expect("valid");
    }

    #[test]
    fn full_section_round_trips() {
        let s = parse(
            "interfaces: [bond0, eth0]\nsampling-rate: 512\nheader-bytes: 256\ncounter-interval: 5\n\
             agent-address: 2001:db8::10\nsub-agent-id: 7\n\
             collectors: [{address: 192.0.2.1, port: 9999}, {address: '2001:db8::1'}]\n\
             subnets: [10.0.0.0/24, '2001:db8::/64']\n",
        )
        .expect("parses");
        s.validate().expect("valid");
        let back: TelemetrySpec =
            serde_json::from_value(serde_json::to_value(&s).expect("json")).expect("back");
        assert_eq!(back, s);
    }

    #[test]
    fn unknown_fields_and_bad_names_are_refused_with_path() {
        let e = parse("interfaces: [eth0]\nsampling: 10\n").expect_err("unknown field");
        assert!(e.to_string().contains("sampling"), "{e}");
        let e = parse("interfaces: [eth0, 'this-name-is-too-long']\n").expect_err("bad name");
        assert!(e.to_string().contains("interfaces[1]"), "{e}");
        let e = parse("subnets: [10.0.0.0/33]\n").expect_err("bad prefix");
        assert!(e.to_string().contains("subnets"), "{e}");
    }

    #[test]
    fn validation_names_every_bad_field_and_value() {
        let s = TelemetrySpec {
            interfaces: vec![
                IfName::new("eth0").expect("name"),
                IfName::new("eth0").expect("name"),
            ],
            sampling_rate: 1 << 25,
            header_bytes: 0,
            counter_interval: 0,
            agent_address: Some("0.0.0.0".parse().expect("ip")),
            sub_agent_id: 0,
            collectors: vec![
                CollectorSpec {
                    address: "192.0.2.1".parse().expect("ip"),
                    port: 6343,
                },
                CollectorSpec {
                    address: "192.0.2.1".parse().expect("ip"),
                    port: 6343,
                },
                CollectorSpec {
                    address: "224.0.0.1".parse().expect("ip"),
                    port: 0,
                },
            ],
            subnets: vec![
                "10.0.0.1/24".parse().expect("net"),
                "10.0.0.0/24".parse().expect("net"),
            ],
        };
        let e = s.validate().expect_err("invalid");
        let found: Vec<(String, String)> =
            e.0.iter()
                .map(|i| (i.path.clone(), i.value.clone()))
                .collect();
        for (path, value) in [
            ("telemetry.interfaces[1]", "eth0"),
            ("telemetry.sampling-rate", "33554432"),
            ("telemetry.header-bytes", "0"),
            ("telemetry.counter-interval", "0"),
            ("telemetry.agent-address", "0.0.0.0"),
            ("telemetry.collectors[1]", "192.0.2.1:6343"),
            ("telemetry.collectors[2].address", "224.0.0.1"),
            ("telemetry.collectors[2].port", "0"),
            ("telemetry.subnets[0]", "10.0.0.1/24"),
            ("telemetry.subnets[1]", "10.0.0.0/24"),
        ] {
            assert!(
                found.contains(&(path.to_owned(), value.to_owned())),
                "missing {path}={value} in {found:?}"
            );
        }
        assert_eq!(found.len(), 10, "{found:?}");
        assert!(
            e.to_string()
                .contains("telemetry.subnets[0]: has host bits set (did you mean 10.0.0.0/24?)"),
            "{e}"
        );
    }

    #[test]
    fn sampling_without_interfaces_is_refused() {
        let s = TelemetrySpec {
            collectors: vec![CollectorSpec {
                address: "192.0.2.1".parse().expect("ip"),
                port: 6343,
            }],
            ..Default::default()
        };
        let e = s.validate().expect_err("needs interfaces");
        assert_eq!(e.0[0].path, "telemetry.interfaces");
        let off = TelemetrySpec {
            sampling_rate: 0,
            ..s
        };
        off.validate().expect("sampling off: no interface needed");
    }
}
