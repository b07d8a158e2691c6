//! Reading what LLDP neighbours a namespace hears: a receive-only lldpd runs
//! in it (Debian's lldpd, its own control socket) and `lldpcli -f json show
//! neighbors` is parsed. [`LldpListener::start_agent`] starts one that also
//! transmits (a server's agent, configured by hostd). Switches announce themselves with lldpd when their
//! spec says `lldp: true` (see [`crate::rack`]).

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::netns::NetNs;

/// One neighbour heard on a local interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub local_interface: String,
    pub system_name: String,
    pub port_id: String,
}

/// An lldpd in a namespace (receive-only unless started as an agent);
/// stopped when the namespace goes.
pub struct LldpListener<'a> {
    ns: &'a NetNs,
    socket: String,
}

impl<'a> LldpListener<'a> {
    /// Starts lldpd in receive-only mode on `interfaces` of `ns`.
    pub fn start(ns: &'a NetNs, interfaces: &[&str]) -> anyhow::Result<Self> {
        let socket = format!("/run/{}-lldp-rx.socket", ns.name());
        Self::spawn(ns, socket, &["-r", "-I", &interfaces.join(",")])
    }

    /// Starts lldpd receiving and transmitting on `interfaces` of `ns` (a
    /// server's agent, which hostd configures through [`Self::socket`]).
    pub fn start_agent(ns: &'a NetNs, interfaces: &[&str]) -> anyhow::Result<Self> {
        let socket = format!("/run/{}-lldp-agent.socket", ns.name());
        Self::spawn(ns, socket, &["-I", &interfaces.join(",")])
    }

    /// lldpd's control socket (`lldpcli -u`).
    pub fn socket(&self) -> &str {
        &self.socket
    }

    fn spawn(ns: &'a NetNs, socket: String, args: &[&str]) -> anyhow::Result<Self> {
        let mut argv = vec!["lldpd", "-d", "-u", &socket];
        argv.extend_from_slice(args);
        ns.spawn(&argv)?;
        crate::wait::try_wait_until(crate::wait::scaled(Duration::from_secs(10)), || {
            std::path::Path::new(&socket).exists()
        })
        .map_err(|w| {
            anyhow::anyhow!("lldpd control socket {socket} did not appear within {w:?}")
        })?;
        Ok(Self { ns, socket })
    }

    /// The neighbours heard so far.
    pub fn neighbors(&self) -> anyhow::Result<Vec<Neighbor>> {
        let out = self.ns.try_run(&[
            "lldpcli",
            "-u",
            &self.socket,
            "-f",
            "json",
            "show",
            "neighbors",
        ])?;
        parse_neighbors(&out)
    }

    /// Waits until every one of `interfaces` has heard a neighbour.
    pub fn wait_for(
        &self,
        interfaces: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Vec<Neighbor>> {
        let mut last = Vec::new();
        let r = crate::wait::try_wait_until(timeout, || {
            if let Ok(n) = self.neighbors() {
                last = n;
            }
            interfaces
                .iter()
                .all(|i| last.iter().any(|n| n.local_interface == *i))
        });
        r.map_err(|w| {
            anyhow::anyhow!(
                "LLDP neighbours on {interfaces:?} not all heard within {w:?}; heard {last:?}"
            )
        })?;
        Ok(last)
    }
}

/// Parses `lldpcli -f json show neighbors`. lldpcli prints one interface as
/// an object and several as an array of one-key objects; both are handled.
pub fn parse_neighbors(json: &str) -> anyhow::Result<Vec<Neighbor>> {
    let v: Value = serde_json::from_str(json).context("lldpcli json")?;
    let mut out = Vec::new();
    let ifaces = &v["lldp"]["interface"];
    let mut entries: Vec<(&String, &Value)> = Vec::new();
    match ifaces {
        Value::Object(m) => entries.extend(m.iter()),
        Value::Array(a) => {
            for o in a {
                if let Value::Object(m) = o {
                    entries.extend(m.iter());
                }
            }
        }
        _ => {}
    }
    for (local, info) in entries {
        let system_name = match &info["chassis"] {
            Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let port_id = info["port"]["id"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        out.push(Neighbor {
            local_interface: local.clone(),
            system_name,
            port_id,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_and_many() {
        let one = r#"{"lldp":{"interface":{"eth0":{"via":"LLDP","chassis":{"sw1":{"id":{"type":"mac","value":"x"}}},
            "port":{"id":{"type":"ifname","value":"Ethernet1"}}}}}}"#;
        assert_eq!(
            parse_neighbors(one).unwrap(),
            vec![Neighbor {
                local_interface: "eth0".into(),
                system_name: "sw1".into(),
                port_id: "Ethernet1".into()
            }]
        );
        let many = r#"{"lldp":{"interface":[{"eth0":{"chassis":{"sw1":{}},"port":{"id":{"value":"Ethernet1"}}}},
            {"eth1":{"chassis":{"sw2":{}},"port":{"id":{"value":"Ethernet1"}}}}]}}"#;
        let n = parse_neighbors(many).unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].system_name, "sw2");
        assert_eq!(parse_neighbors(r#"{"lldp":{}}"#).unwrap(), vec![]);
    }
}
