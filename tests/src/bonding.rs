//! Reading a bond's LACP state as the kernel reports it in
//! `/proc/net/bonding/<bond>` (per namespace), for assertions in tests and
//! for the demo's report.

use anyhow::Context as _;

use crate::netns::NetNs;

/// One port of a bond.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BondPort {
    pub name: String,
    pub mii_up: bool,
    pub aggregator_id: Option<u32>,
    /// The partner's system MAC (802.3ad), all zeros before negotiation.
    pub partner_mac: Option<String>,
}

/// What `/proc/net/bonding/<bond>` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BondStatus {
    pub mode: String,
    /// 802.3ad: the active aggregator's id.
    pub active_aggregator: Option<u32>,
    /// 802.3ad: the partner MAC of the active aggregator.
    pub partner_mac: Option<String>,
    /// active-backup: the currently active port.
    pub active_port: Option<String>,
    pub ports: Vec<BondPort>,
}

impl BondStatus {
    /// Reads and parses the bond's status inside `ns`.
    pub fn read(ns: &NetNs, bond: &str) -> anyhow::Result<Self> {
        let text = ns.try_run(&["cat", &format!("/proc/net/bonding/{bond}")])?;
        Ok(Self::parse(&text))
    }

    /// Parses the text of `/proc/net/bonding/<bond>`.
    pub fn parse(text: &str) -> Self {
        let mut s = Self::default();
        let mut port: Option<BondPort> = None;
        let mut in_active_agg = false;
        let mut in_partner = false;
        for line in text.lines() {
            let line = line.trim();
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k {
                "Bonding Mode" => s.mode = v.to_owned(),
                "Currently Active Slave" => s.active_port = Some(v.to_owned()),
                "Active Aggregator Info" => in_active_agg = true,
                "Slave Interface" => {
                    in_active_agg = false;
                    if let Some(p) = port.take() {
                        s.ports.push(p);
                    }
                    port = Some(BondPort {
                        name: v.to_owned(),
                        ..Default::default()
                    });
                }
                "MII Status" => {
                    if let Some(p) = port.as_mut() {
                        p.mii_up = v == "up";
                    }
                }
                "Aggregator ID" => {
                    let id = v.parse().ok();
                    match port.as_mut() {
                        Some(p) => p.aggregator_id = id,
                        None if in_active_agg => s.active_aggregator = id,
                        None => {}
                    }
                }
                "Partner Mac Address" if in_active_agg && port.is_none() => {
                    s.partner_mac = Some(v.to_owned())
                }
                "details partner lacp pdu" => in_partner = true,
                "details actor lacp pdu" => in_partner = false,
                "system mac address" if in_partner => {
                    if let Some(p) = port.as_mut() {
                        p.partner_mac = Some(v.to_owned());
                    }
                }
                _ => {}
            }
        }
        if let Some(p) = port.take() {
            s.ports.push(p);
        }
        s
    }

    /// True when every port is up and in the active aggregator, and the
    /// partner is `partner_mac` (case-insensitive).
    pub fn lacp_negotiated_with(&self, partner_mac: &str) -> bool {
        let Some(agg) = self.active_aggregator else {
            return false;
        };
        !self.ports.is_empty()
            && self
                .ports
                .iter()
                .all(|p| p.mii_up && p.aggregator_id == Some(agg))
            && self
                .partner_mac
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(partner_mac))
    }

    /// A one-line summary for reports.
    pub fn summary(&self) -> String {
        let ports: Vec<String> = self
            .ports
            .iter()
            .map(|p| {
                format!(
                    "{}({}{})",
                    p.name,
                    if p.mii_up { "up" } else { "down" },
                    p.aggregator_id
                        .map(|a| format!(", agg {a}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        format!(
            "mode {}; active aggregator {}; partner {}; ports {}",
            self.mode,
            self.active_aggregator.map_or("-".into(), |a| a.to_string()),
            self.partner_mac.as_deref().unwrap_or("-"),
            ports.join(" ")
        )
    }
}

/// Waits until `bond` in `ns` has negotiated LACP with `partner_mac` on all
/// its ports; panics with the last status seen on timeout.
#[track_caller]
pub fn wait_lacp(
    ns: &NetNs,
    bond: &str,
    partner_mac: &str,
    timeout: std::time::Duration,
) -> BondStatus {
    let mut last = BondStatus::default();
    let ok = crate::wait::try_wait_until(timeout, || {
        if let Ok(s) = BondStatus::read(ns, bond).context("reading bond") {
            last = s;
        }
        last.lacp_negotiated_with(partner_mac)
    });
    if ok.is_err() {
        panic!(
            "{bond} in {} did not negotiate LACP with {partner_mac} within {timeout:?}; last: {}",
            ns.name(),
            last.summary()
        );
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Ethernet Channel Bonding Driver: v6.1.0-56-amd64

Bonding Mode: IEEE 802.3ad Dynamic link aggregation
Transmit Hash Policy: layer2 (0)
MII Status: up
MII Polling Interval (ms): 100

802.3ad info
LACP active: on
LACP rate: fast
Aggregator selection policy (ad_select): stable
System priority: 65535
System MAC address: 02:aa:bb:cc:dd:01
Active Aggregator Info:
	Aggregator ID: 1
	Number of ports: 2
	Actor Key: 15
	Partner Key: 15
	Partner Mac Address: 02:11:22:33:44:55

Slave Interface: eth0
MII Status: up
Speed: 10000 Mbps
Aggregator ID: 1
details actor lacp pdu:
    system priority: 65535
    system mac address: 02:aa:bb:cc:dd:01
details partner lacp pdu:
    system priority: 65535
    system mac address: 02:11:22:33:44:55

Slave Interface: eth1
MII Status: up
Aggregator ID: 1
details partner lacp pdu:
    system mac address: 02:11:22:33:44:55
";

    #[test]
    fn parses_negotiated_bond() {
        let s = BondStatus::parse(SAMPLE);
        assert_eq!(s.active_aggregator, Some(1));
        assert_eq!(s.partner_mac.as_deref(), Some("02:11:22:33:44:55"));
        assert_eq!(s.ports.len(), 2);
        assert_eq!(s.ports[0].partner_mac.as_deref(), Some("02:11:22:33:44:55"));
        assert!(s.lacp_negotiated_with("02:11:22:33:44:55"));
        assert!(!s.lacp_negotiated_with("02:00:00:00:00:00"));
    }

    #[test]
    fn port_in_other_aggregator_is_not_negotiated() {
        let text = SAMPLE.replacen(
            "Aggregator ID: 1\ndetails partner",
            "Aggregator ID: 2\ndetails partner",
            1,
        );
        let s = BondStatus::parse(&text);
        assert_eq!(s.ports[1].aggregator_id, Some(2));
        assert!(!s.lacp_negotiated_with("02:11:22:33:44:55"));
    }
}
