//! Builds a [`RackSpec`] into namespaces and veth cables, and tears it all
//! down on drop.
//!
//! Inside each switch namespace: `br0`, a bridge with STP off (VLAN filtering
//! on when any port or LAG has VLAN membership); each LAG an 802.3ad bond
//! (`miimon 100`, the switch's LACP system MAC, its own key), or a
//! `balance-xor` bond for a static LAG, enslaved to `br0`; each other
//! cabled port enslaved directly. Switch ports run MTU 9216, like a
//! data-centre switch. Server NICs start down, as on a fresh server.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::{bail, Context as _};

use crate::{
    netns::NetNs,
    spec::{derived_mac, LagMode, PortRef, RackSpec, VlanMembership},
};

/// MTU of every switch port and LAG (jumbo, as on data-centre switches).
pub const SWITCH_MTU: u32 = 9216;
/// The bridge that is the switch, in every switch namespace.
pub const SWITCH_BRIDGE: &str = "br0";

/// A built rack. Dropping it removes every namespace (and so every link and
/// process) it created.
#[derive(Debug)]
pub struct Rack {
    spec: RackSpec,
    /// Keyed by role: switch or pair name, server name.
    namespaces: BTreeMap<String, NetNs>,
}

impl Rack {
    /// Validates `spec` and builds it.
    pub fn build(spec: RackSpec) -> anyhow::Result<Self> {
        spec.validate().context("invalid rack spec")?;
        let mut rack = Self {
            spec,
            namespaces: BTreeMap::new(),
        };
        rack.create_namespaces()?;
        rack.cable()?;
        rack.configure_switches()?;
        rack.start_lldp()?;
        Ok(rack)
    }

    pub fn spec(&self) -> &RackSpec {
        &self.spec
    }

    /// The namespace of a server.
    #[track_caller]
    pub fn server(&self, name: &str) -> &NetNs {
        match self.spec.servers.iter().any(|s| s.name == name) {
            true => &self.namespaces[name],
            false => panic!("no server {name:?} in this rack"),
        }
    }

    /// The namespace a switch lives in (its pair's, when paired).
    #[track_caller]
    pub fn switch(&self, name: &str) -> &NetNs {
        if !self.spec.switches.iter().any(|s| s.name == name) {
            panic!("no switch {name:?} in this rack");
        }
        &self.namespaces[&self.spec.switch_namespace(name)]
    }

    /// The LACP system MAC the switch (or its pair) presents.
    pub fn switch_system_mac(&self, name: &str) -> String {
        self.spec.system_mac(name)
    }

    /// The switch port a server NIC is cabled to, and its kernel name.
    #[track_caller]
    pub fn cable_of(&self, server: &str, nic: &str) -> (PortRef, String) {
        let srv = self.spec.servers.iter().find(|s| s.name == server);
        let Some(n) = srv.and_then(|s| s.nics.iter().find(|n| n.name == nic)) else {
            panic!("no NIC {server}:{nic} in this rack");
        };
        (n.cable.clone(), self.spec.switch_port_ifname(&n.cable))
    }

    /// The control socket of the lldpd a switch runs (`lldp: true`), for
    /// `lldpcli -u` inside [`Rack::switch`]'s namespace.
    #[track_caller]
    pub fn switch_lldp_socket(&self, name: &str) -> String {
        format!("/run/{}-{name}-lldpd.socket", self.switch(name).name())
    }

    /// Pulls the cable of `server`'s `nic`: the switch port goes down, so the
    /// server sees carrier loss.
    pub fn pull_cable(&self, server: &str, nic: &str) {
        let (port, ifname) = self.cable_of(server, nic);
        tracing::info!(server, nic, switch = %port.switch, port = %port.port, "pulling cable");
        self.switch(&port.switch)
            .ip(&["link", "set", &ifname, "down"]);
    }

    /// Plugs the cable back in.
    pub fn restore_cable(&self, server: &str, nic: &str) {
        let (port, ifname) = self.cable_of(server, nic);
        tracing::info!(server, nic, switch = %port.switch, port = %port.port, "restoring cable");
        self.switch(&port.switch)
            .ip(&["link", "set", &ifname, "up"]);
    }

    /// A readable summary: namespaces, cables, LAGs and VLANs.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for sw in &self.spec.switches {
            let ns = self.switch(&sw.name);
            let _ = writeln!(
                s,
                "switch {} (namespace {}, LACP system {})",
                sw.name,
                ns.name(),
                self.switch_system_mac(&sw.name)
            );
            for lag in &sw.lags {
                let members: Vec<_> = lag
                    .members
                    .iter()
                    .map(|m| format!("{}:{}", m.switch, m.port))
                    .collect();
                let _ = writeln!(
                    s,
                    "  lag {} = [{}] {}{}",
                    lag.name,
                    members.join(", "),
                    vlans_text(&lag.vlans),
                    if lag.mode == LagMode::Static {
                        " (static, no LACP)"
                    } else {
                        ""
                    }
                );
            }
            for port in &sw.ports {
                let _ = writeln!(s, "  port {} {}", port.name, vlans_text(&port.vlans));
            }
        }
        for srv in &self.spec.servers {
            let _ = writeln!(
                s,
                "server {} (namespace {})",
                srv.name,
                self.server(&srv.name).name()
            );
            for nic in &srv.nics {
                let _ = writeln!(
                    s,
                    "  {} <-> {}:{}",
                    nic.name, nic.cable.switch, nic.cable.port
                );
            }
        }
        s
    }

    fn create_namespaces(&mut self) -> anyhow::Result<()> {
        let mut switch_roles: Vec<String> = self
            .spec
            .switches
            .iter()
            .map(|s| self.spec.switch_namespace(&s.name))
            .collect();
        switch_roles.dedup();
        for role in switch_roles {
            if self.namespaces.contains_key(&role) {
                continue;
            }
            let ns = NetNs::new(&role)?;
            // A switch originates no IPv6 (no ND, MLD or RS noise in counts).
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
            self.namespaces.insert(role, ns);
        }
        for srv in &self.spec.servers {
            let ns = NetNs::new(&srv.name)?;
            if !srv.ipv6 {
                ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
                ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
            }
            self.namespaces.insert(srv.name.clone(), ns);
        }
        Ok(())
    }

    fn cable(&self) -> anyhow::Result<()> {
        for srv in &self.spec.servers {
            let ns = &self.namespaces[&srv.name];
            let mut batch = Vec::new();
            for nic in &srv.nics {
                let mac = nic
                    .mac
                    .clone()
                    .unwrap_or_else(|| derived_mac(&[&srv.name, &nic.name]));
                let sw_ns = self.switch(&nic.cable.switch).name();
                let port = self.spec.switch_port_ifname(&nic.cable);
                let port_mac = derived_mac(&[&nic.cable.switch, &nic.cable.port]);
                batch.push(format!(
                    "link add {} address {mac} type veth peer name {port} address {port_mac} netns {sw_ns}",
                    nic.name
                ));
            }
            ns.ip_batch(&batch)
                .with_context(|| format!("cabling server {}", srv.name))?;
        }
        Ok(())
    }

    fn configure_switches(&self) -> anyhow::Result<()> {
        // Group switches by namespace: a pair is configured as one.
        let mut by_ns: BTreeMap<String, Vec<&crate::spec::SwitchSpec>> = BTreeMap::new();
        for sw in &self.spec.switches {
            by_ns
                .entry(self.spec.switch_namespace(&sw.name))
                .or_default()
                .push(sw);
        }
        for (role, switches) in by_ns {
            let ns = &self.namespaces[&role];
            let cabled: Vec<String> = self
                .spec
                .servers
                .iter()
                .flat_map(|s| &s.nics)
                .filter(|n| self.spec.switch_namespace(&n.cable.switch) == role)
                .map(|n| self.spec.switch_port_ifname(&n.cable))
                .collect();
            let lags: Vec<_> = switches.iter().flat_map(|s| &s.lags).collect();
            let ports: Vec<_> = switches
                .iter()
                .flat_map(|s| {
                    s.ports
                        .iter()
                        .map(move |p| (PortRef::new(&s.name, &p.name), &p.vlans))
                })
                .collect();
            let filtering = lags.iter().any(|l| !l.vlans.is_default())
                || ports.iter().any(|(_, v)| !v.is_default());
            let system_mac = self.spec.system_mac(&switches[0].name);

            // vlan_filtering is only named when needed: kernels without
            // CONFIG_BRIDGE_VLAN_FILTERING reject the attribute even as 0.
            let mut ip = vec![format!(
                "link add {SWITCH_BRIDGE} type bridge stp_state 0 mcast_snooping 0{}",
                if filtering { " vlan_filtering 1" } else { "" }
            )];
            for port in &cabled {
                ip.push(format!("link set {port} mtu {SWITCH_MTU}"));
            }
            let mut in_lag = Vec::new();
            for (k, lag) in lags.iter().enumerate() {
                // Each LACP LAG answers with its own key, as a switch's
                // port-channels do (key 15 for all would let a server
                // aggregate ports of two LAGs of one switch).
                ip.push(match lag.mode {
                    LagMode::Lacp => format!(
                        "link add {} type bond mode 802.3ad lacp_rate {} miimon 100 ad_actor_system {system_mac} ad_user_port_key {}",
                        lag.name,
                        lag.lacp_rate,
                        k + 1
                    ),
                    LagMode::Static => {
                        format!("link add {} type bond mode balance-xor miimon 100", lag.name)
                    }
                });
                ip.push(format!("link set {} mtu {SWITCH_MTU}", lag.name));
                for m in &lag.members {
                    let ifname = self.spec.switch_port_ifname(m);
                    ip.push(format!("link set {ifname} down"));
                    ip.push(format!("link set {ifname} master {}", lag.name));
                    in_lag.push(ifname);
                }
                ip.push(format!("link set {} master {SWITCH_BRIDGE}", lag.name));
            }
            for port in cabled.iter().filter(|p| !in_lag.contains(p)) {
                ip.push(format!("link set {port} master {SWITCH_BRIDGE}"));
            }
            for port in &cabled {
                ip.push(format!("link set {port} up"));
            }
            for lag in &lags {
                ip.push(format!("link set {} up", lag.name));
            }
            ip.push(format!("link set {SWITCH_BRIDGE} up"));
            ns.ip_batch(&ip)
                .with_context(|| format!("configuring switch namespace {role}"))?;

            let mut bridge = Vec::new();
            let memberships = lags.iter().map(|l| (l.name.clone(), &l.vlans)).chain(
                ports
                    .iter()
                    .map(|(r, v)| (self.spec.switch_port_ifname(r), *v)),
            );
            for (dev, vlans) in memberships {
                if vlans.is_default() {
                    continue;
                }
                bridge.push(format!("vlan del vid 1 dev {dev}"));
                for vid in &vlans.tagged {
                    bridge.push(format!("vlan add vid {vid} dev {dev}"));
                }
                if let Some(vid) = vlans.access {
                    bridge.push(format!("vlan add vid {vid} dev {dev} pvid untagged"));
                }
            }
            ns.bridge_batch(&bridge)
                .with_context(|| format!("switch VLANs in {role}"))?;
        }
        Ok(())
    }

    fn start_lldp(&self) -> anyhow::Result<()> {
        for sw in self.spec.switches.iter().filter(|s| s.lldp) {
            let ns = self.switch(&sw.name);
            let cabled: Vec<&PortRef> = self
                .spec
                .servers
                .iter()
                .flat_map(|s| &s.nics)
                .filter(|n| n.cable.switch == sw.name)
                .map(|n| &n.cable)
                .collect();
            if cabled.is_empty() {
                bail!("switch {} has lldp on but no cabled ports", sw.name);
            }
            let ifnames: Vec<String> = cabled
                .iter()
                .map(|p| self.spec.switch_port_ifname(p))
                .collect();
            let socket = self.switch_lldp_socket(&sw.name);
            // -d: foreground; -u: a private control socket per instance; -I:
            // only this switch's ports; -S: system description; -M 4: network
            // connectivity device. The hostname is set through lldpcli below.
            let descr = format!("lab switch {}", sw.name);
            // In its own UTS namespace with the switch's name as hostname:
            // lldpd announces its hostname, and `configure system hostname`
            // below can be undone by lldpd's own start-up configuration
            // client when it runs right after start (seen under load: a
            // switch announcing the VM's hostname for minutes).
            ns.spawn(&[
                "unshare",
                "--uts",
                "--",
                "sh",
                "-c",
                "hostname \"$0\" && exec \"$@\"",
                &sw.name,
                "lldpd",
                "-d",
                "-u",
                &socket,
                "-I",
                &ifnames.join(","),
                "-S",
                &descr,
                "-M",
                "4",
            ])?;
            crate::wait_until(
                &format!("lldpd control socket {socket}"),
                crate::wait::scaled(std::time::Duration::from_secs(10)),
                || std::path::Path::new(&socket).exists(),
            );
            let lldpcli = |args: &[&str]| -> anyhow::Result<()> {
                let mut argv = vec!["lldpcli", "-u", &socket];
                argv.extend_from_slice(args);
                ns.try_run(&argv).map(drop)
            };
            lldpcli(&["configure", "system", "hostname", &sw.name])?;
            // Port IDs are the switch's own port names ("Ethernet1"), also
            // inside a pair's namespace where the kernel name is prefixed.
            for (port, ifname) in cabled.iter().zip(&ifnames) {
                lldpcli(&[
                    "configure",
                    "ports",
                    ifname,
                    "lldp",
                    "portidsubtype",
                    "local",
                    &port.port,
                    "description",
                    &port.port,
                ])?;
            }
            lldpcli(&["configure", "lldp", "tx-interval", "1"])?;
        }
        Ok(())
    }
}

fn vlans_text(v: &VlanMembership) -> String {
    match (v.access, v.tagged.is_empty()) {
        (None, true) => "untagged default VLAN".to_owned(),
        (a, _) => {
            let mut s = String::new();
            if let Some(a) = a {
                let _ = write!(s, "access {a} ");
            }
            if !v.tagged.is_empty() {
                let _ = write!(s, "tagged {}", ranges_text(&v.tagged));
            }
            s.trim_end().to_owned()
        }
    }
}

/// VLAN ids as sorted ranges: `50-51,100,600-1099`.
fn ranges_text(ids: &[u16]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_ranges_are_compressed() {
        assert_eq!(
            ranges_text(&[100, 51, 50, 600, 601, 602, 7]),
            "7,50-51,100,600-602"
        );
        let trunk: Vec<u16> = (100..=1099).collect();
        assert_eq!(
            vlans_text(&VlanMembership {
                access: Some(10),
                tagged: trunk
            }),
            "access 10 tagged 100-1099"
        );
        assert_eq!(
            vlans_text(&VlanMembership::default()),
            "untagged default VLAN"
        );
    }
}
