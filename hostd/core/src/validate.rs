//! Validation of a whole desired state before anything is touched.
//!
//! Parsing already refuses unknown fields and out-of-range values; this pass
//! checks what spans fields: duplicates, references, a port under two
//! controllers, cycles, MTU ordering, address overlaps, conflicting routes,
//! mode-dependent bond options. Every error names the field path and value.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    net::IpAddr,
};

use ipnet::IpNet;

use crate::{
    bond::OptValue,
    route::RouteKey,
    schema::{IfState, Interface, InterfaceType, NetworkState, PortVlanMode, RouteState},
};

/// One validation failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Field path, e.g. `interfaces[3].vlan.id`.
    pub path: String,
    /// The offending value, rendered.
    pub value: String,
    /// Why it is refused.
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (value: {})", self.path, self.reason, self.value)
    }
}

/// All validation failures of a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<Invalid>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} validation error(s):", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

struct Errs(Vec<Invalid>);

impl Errs {
    fn push(
        &mut self,
        path: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) {
        self.0.push(Invalid {
            path: path.into(),
            value: value.to_string(),
            reason: reason.into(),
        });
    }
}

/// Validates `state`; returns every problem found.
pub fn validate(state: &NetworkState) -> Result<(), ValidationErrors> {
    let mut e = Errs(Vec::new());
    let ifaces = &state.interfaces;

    // Names: unique, and an index by name.
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut macs: HashMap<[u8; 6], usize> = HashMap::new();
    for (i, iface) in ifaces.iter().enumerate() {
        if let Some(first) = by_name.insert(iface.name.as_str(), i) {
            e.push(
                format!("interfaces[{i}].name"),
                &iface.name,
                format!("duplicate interface name (first at interfaces[{first}])"),
            );
            by_name.insert(iface.name.as_str(), first);
        }
        if let Some(mac) = iface.mac_address {
            if iface.kind != InterfaceType::Ethernet {
                e.push(
                    format!("interfaces[{i}].mac-address"),
                    mac,
                    "only ethernet interfaces are matched by MAC",
                );
            } else if let Some(first) = macs.insert(mac.0, i) {
                e.push(
                    format!("interfaces[{i}].mac-address"),
                    mac,
                    format!("MAC address already used by interfaces[{first}]"),
                );
            }
        }
    }
    let get = |n: &str| by_name.get(n).map(|&i| &ifaces[i]);

    // Per-interface checks.
    let mut controller_of: BTreeMap<&str, (usize, String)> = BTreeMap::new();
    let mut vlan_keys: HashMap<(String, u16, &'static str), usize> = HashMap::new();
    for (i, iface) in ifaces.iter().enumerate() {
        let p = format!("interfaces[{i}]");
        if matches!(iface.kind, InterfaceType::Loopback | InterfaceType::Unknown) {
            e.push(
                format!("{p}.type"),
                iface.kind.as_str(),
                "hostd does not manage this interface type",
            );
            continue;
        }
        check_section(&mut e, &p, iface);
        if iface.state == IfState::Absent {
            continue;
        }
        // Bond.
        if let Some(bond) = &iface.link_aggregation {
            let bp = format!("{p}.link-aggregation");
            for (j, port) in bond.port.iter().enumerate() {
                let pp = format!("{bp}.port[{j}]");
                match get(port.as_str()) {
                    None => e.push(&pp, port, "port is not declared in interfaces"),
                    Some(pi) if pi.state == IfState::Absent => {
                        e.push(&pp, port, "port is declared absent")
                    }
                    Some(pi) if pi.kind != InterfaceType::Ethernet => e.push(
                        &pp,
                        port,
                        format!("a bond port must be ethernet, not {}", pi.kind.as_str()),
                    ),
                    Some(pi) => {
                        if let (Some(pm), Some(bm)) = (pi.mtu, iface.mtu) {
                            if pm != bm {
                                e.push(&pp, port, format!("bond ports follow their bond's MTU {bm}, but the port declares {pm}"));
                            }
                        }
                    }
                }
                if let Some((_, first)) = controller_of.insert(port.as_str(), (i, pp.clone())) {
                    e.push(
                        &pp,
                        port,
                        format!("port already belongs to a controller at {first}"),
                    );
                }
            }
            check_bond_options(&mut e, &bp, iface);
        }
        // VLAN.
        if let Some(vlan) = &iface.vlan {
            let vp = format!("{p}.vlan");
            match get(vlan.base_iface.as_str()) {
                None => e.push(
                    format!("{vp}.base-iface"),
                    &vlan.base_iface,
                    "base interface is not declared in interfaces",
                ),
                Some(b) if b.state == IfState::Absent => e.push(
                    format!("{vp}.base-iface"),
                    &vlan.base_iface,
                    "base interface is declared absent",
                ),
                Some(b) => {
                    if let (Some(vm), Some(bm)) = (iface.mtu, effective_mtu(ifaces, &by_name, b)) {
                        if vm.get() > bm {
                            e.push(
                                format!("{p}.mtu"),
                                vm,
                                format!("VLAN MTU exceeds its base {}'s MTU {bm}", b.name),
                            );
                        }
                    }
                }
            }
            let key = (
                vlan.base_iface.to_string(),
                vlan.id.get(),
                vlan.protocol.as_str(),
            );
            if let Some(first) = vlan_keys.insert(key, i) {
                e.push(
                    format!("{vp}.id"),
                    vlan.id,
                    format!(
                        "VLAN {} on {} already declared at interfaces[{first}]",
                        vlan.id, vlan.base_iface
                    ),
                );
            }
        }
        // Bridge.
        if let Some(br) = &iface.bridge {
            let bp = format!("{p}.bridge");
            if let Some(stp) = &br.options.stp {
                let sp = format!("{bp}.options.stp");
                for (name, v, lo, hi) in [
                    ("forward-delay", stp.forward_delay, 2, 30),
                    ("hello-time", stp.hello_time, 1, 10),
                    ("max-age", stp.max_age, 6, 40),
                ] {
                    if let Some(v) = v {
                        if !(lo..=hi).contains(&v) {
                            e.push(
                                format!("{sp}.{name}"),
                                v,
                                format!("must be within {lo}..={hi} seconds"),
                            );
                        }
                    }
                }
            }
            if let Some(v) = &br.vlan {
                if br.options.vlan_filtering == Some(false) {
                    e.push(
                        format!("{bp}.vlan"),
                        "set",
                        "the bridge's own VLANs need vlan-filtering, which is set to false",
                    );
                }
                check_port_vlan(&mut e, &format!("{bp}.vlan"), v);
            }
            if br.options.vlan_filtering == Some(false) {
                if let Some(j) = br.port.iter().position(|p| p.vlan.is_some()) {
                    e.push(
                        format!("{bp}.port[{j}].vlan"),
                        "set",
                        "port VLANs need vlan-filtering, which is set to false",
                    );
                }
            }
            for (j, port) in br.port.iter().enumerate() {
                let pp = format!("{bp}.port[{j}]");
                match get(port.name.as_str()) {
                    None => e.push(
                        format!("{pp}.name"),
                        &port.name,
                        "port is not declared in interfaces",
                    ),
                    Some(pi) if pi.state == IfState::Absent => {
                        e.push(format!("{pp}.name"), &port.name, "port is declared absent")
                    }
                    Some(pi) if pi.kind == InterfaceType::LinuxBridge => e.push(
                        format!("{pp}.name"),
                        &port.name,
                        "a bridge cannot be a port of another bridge",
                    ),
                    Some(pi) => {
                        if let (Some(bm), Some(pm)) =
                            (iface.mtu, effective_mtu(ifaces, &by_name, pi))
                        {
                            if bm.get() > pm {
                                e.push(
                                    format!("{p}.mtu"),
                                    bm,
                                    format!("bridge MTU exceeds its port {}'s MTU {pm}", pi.name),
                                );
                            }
                        }
                    }
                }
                if let Some((_, first)) =
                    controller_of.insert(port.name.as_str(), (i, format!("{pp}.name")))
                {
                    e.push(
                        format!("{pp}.name"),
                        &port.name,
                        format!("port already belongs to a controller at {first}"),
                    );
                }
                if let Some(v) = &port.vlan {
                    let vp = format!("{pp}.vlan");
                    check_port_vlan(&mut e, &vp, v);
                }
            }
        }
    }

    // A bond's primary must be one of its ports.
    for (i, iface) in ifaces.iter().enumerate() {
        if let Some(bond) = &iface.link_aggregation {
            if let Some(primary) = &bond.options.primary {
                if !bond.port.contains(primary) {
                    e.push(
                        format!("interfaces[{i}].link-aggregation.options.primary"),
                        primary,
                        "primary is not a port of this bond",
                    );
                }
            }
        }
    }

    check_cycles(&mut e, ifaces, &by_name);
    check_addresses(&mut e, ifaces);
    check_routes(&mut e, state, &by_name);
    if let Some(dns) = &state.dns_resolver {
        if dns.config.server.len() > 3 {
            e.push(
                "dns-resolver.config.server",
                dns.config.server.len(),
                "the resolver uses at most 3 name servers",
            );
        }
        for (i, s) in dns.config.search.iter().enumerate() {
            let ok = !s.is_empty()
                && s.len() <= 253
                && s.trim_end_matches('.').split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !ok {
                e.push(
                    format!("dns-resolver.config.search[{i}]"),
                    s,
                    "not a valid domain name",
                );
            }
        }
    }

    if let Some(fw) = &state.firewall {
        if let Err(err) = fw.validate() {
            let tree = serde_json::to_value(fw).unwrap_or(serde_json::Value::Null);
            for f in err.fields() {
                let value = value_at(&tree, "firewall", &f.path);
                e.push(f.path, value, f.message);
            }
        }
    }

    // The OVS entries (crate::ovs::doc), in the document's paths.
    e.0.extend(crate::ovs::doc::validate_document(state));

    if let Some(t) = &state.telemetry {
        if let Err(errs) = t.validate() {
            e.0.extend(errs.0);
        }
        for (i, name) in t.interfaces.iter().enumerate() {
            if let Some(&j) = by_name.get(name.as_str()) {
                if ifaces[j].state == IfState::Absent {
                    e.push(
                        format!("telemetry.interfaces[{i}]"),
                        name,
                        format!("interfaces[{j}] is absent: the programs cannot attach to it"),
                    );
                }
            }
        }
    }

    if e.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(e.0))
    }
}

/// The value at `path` (`firewall.rules[2].ports[0]`) in `tree`, the
/// serialized section whose own path is `root`, rendered compactly (cut at 80
/// characters); `?` when the path does not lead to a value.
fn value_at(tree: &serde_json::Value, root: &str, path: &str) -> String {
    let Some(rest) = path.strip_prefix(root) else {
        return "?".into();
    };
    let mut cur = tree;
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        let (key, idx) = match part.split_once('[') {
            Some((k, i)) => (
                k,
                i.split('[')
                    .map(|x| x.trim_end_matches(']'))
                    .collect::<Vec<_>>(),
            ),
            None => (part, Vec::new()),
        };
        if !key.is_empty() {
            match cur.get(key).or_else(|| cur.get(key.replace('-', "_"))) {
                Some(v) => cur = v,
                None => return "?".into(),
            }
        }
        for i in idx {
            match i.parse::<usize>().ok().and_then(|i| cur.get(i)) {
                Some(v) => cur = v,
                None => return "?".into(),
            }
        }
    }
    let s = match cur {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    if s.chars().count() > 80 {
        s.chars().take(77).collect::<String>() + "..."
    } else {
        s
    }
}

/// Telemetry interfaces the document does not declare must be NICs of this
/// host (`observed`): the programs attach to what exists, and hostd does not
/// create NICs. Checked by `plan`, `apply` and `telemetry run` once the host
/// has been observed; nothing is touched when it fails.
pub fn check_telemetry_interfaces(
    state: &NetworkState,
    observed: &crate::model::Observed,
) -> Result<(), ValidationErrors> {
    let mut e = Errs(Vec::new());
    if let Some(t) = &state.telemetry {
        for (i, name) in t.interfaces.iter().enumerate() {
            if state.interface(name.as_str()).is_some() {
                continue;
            }
            match observed.link(name.as_str()) {
                Some(l) if l.kind.interface_type() == InterfaceType::Ethernet => {}
                Some(l) => e.push(
                    format!("telemetry.interfaces[{i}]"),
                    name,
                    format!(
                        "not declared in interfaces, and the host's link of that name is a {} (only NICs may be named without being declared)",
                        l.kind.interface_type().as_str()
                    ),
                ),
                None => e.push(
                    format!("telemetry.interfaces[{i}]"),
                    name,
                    "not declared in interfaces and no such NIC on this host",
                ),
            }
        }
    }
    if e.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(e.0))
    }
}

/// MTU an interface will have: its own, or for a VLAN its base's.
fn effective_mtu(
    ifaces: &[Interface],
    by_name: &HashMap<&str, usize>,
    i: &Interface,
) -> Option<u32> {
    let mut cur = i;
    for _ in 0..8 {
        if let Some(m) = cur.mtu {
            return Some(m.get());
        }
        let base = cur.vlan.as_ref()?;
        cur = &ifaces[*by_name.get(base.base_iface.as_str())?];
    }
    None
}

fn check_section(e: &mut Errs, p: &str, iface: &Interface) {
    let kind = iface.kind;
    let wrong = |e: &mut Errs, field: &str| {
        e.push(
            format!("{p}.{field}"),
            "set",
            format!("not valid for an interface of type {}", kind.as_str()),
        );
    };
    if iface.link_aggregation.is_some() && kind != InterfaceType::Bond {
        wrong(e, "link-aggregation");
    }
    if iface.vlan.is_some() && kind != InterfaceType::Vlan {
        wrong(e, "vlan");
    }
    if iface.bridge.is_some() && kind != InterfaceType::LinuxBridge {
        wrong(e, "bridge");
    }
    if iface.patch.is_some() && kind != InterfaceType::OvsInterface {
        wrong(e, "patch");
    }
    if iface.state == IfState::Absent {
        return;
    }
    if kind == InterfaceType::Bond && iface.link_aggregation.is_none() {
        e.push(
            format!("{p}.link-aggregation"),
            "missing",
            "a bond needs link-aggregation with its mode",
        );
    }
    if kind == InterfaceType::Vlan && iface.vlan.is_none() {
        e.push(
            format!("{p}.vlan"),
            "missing",
            "a vlan needs vlan.base-iface and vlan.id",
        );
    }
}

fn check_bond_options(e: &mut Errs, bp: &str, iface: &Interface) {
    let Some(bond) = &iface.link_aggregation else {
        return;
    };
    let o = &bond.options;
    let mode = bond.mode;
    let op = format!("{bp}.options");
    // Mode dependencies and ranges come from the option table.
    for (d, v) in o.iter() {
        if !d.modes.contains(mode) {
            e.push(
                format!("{op}.{}", d.name),
                o.value_text(d),
                format!(
                    "not supported in bond mode {} (only in {})",
                    mode.as_str(),
                    d.modes
                        .list()
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if let (Some((lo, hi)), OptValue::Num(n)) = (d.range, &v) {
            if !(lo..=hi).contains(n) {
                e.push(
                    format!("{op}.{}", d.name),
                    n,
                    format!("must be within {lo}..={hi}"),
                );
            }
        }
    }
    if let Some(m) = o.ad_actor_system {
        if m.is_multicast() || m.is_zero() {
            e.push(
                format!("{op}.ad_actor_system"),
                m,
                "must be a unicast, non-zero MAC address",
            );
        }
    }
    if o.miimon.unwrap_or(0) > 0 && o.arp_interval.unwrap_or(0) > 0 {
        e.push(
            format!("{op}.arp_interval"),
            o.arp_interval.unwrap_or(0),
            "miimon and arp_interval are mutually exclusive",
        );
    }
    if o.arp_interval.unwrap_or(0) > 0 && o.arp_ip_target.as_ref().is_none_or(|t| t.is_empty()) {
        e.push(
            format!("{op}.arp_ip_target"),
            "[]",
            "arp_interval needs at least one arp_ip_target",
        );
    }
    if o.arp_ip_target.as_ref().is_some_and(|t| t.len() > 16) {
        e.push(
            format!("{op}.arp_ip_target"),
            o.arp_ip_target.as_ref().map(|t| t.len()).unwrap_or(0),
            "at most 16 targets",
        );
    }
    let miimon = o.miimon.unwrap_or(0);
    for (name, v) in [
        ("updelay", o.updelay),
        ("downdelay", o.downdelay),
        ("peer_notif_delay", o.peer_notif_delay),
    ] {
        if let Some(v) = v {
            if v > 0 && miimon == 0 {
                e.push(format!("{op}.{name}"), v, "needs miimon");
            } else if miimon > 0 && v % miimon != 0 {
                e.push(
                    format!("{op}.{name}"),
                    v,
                    format!("must be a multiple of miimon ({miimon})"),
                );
            }
        }
    }
}

fn check_cycles(e: &mut Errs, ifaces: &[Interface], by_name: &HashMap<&str, usize>) {
    // Edges upper -> lower: controller -> port, vlan -> base.
    let mut lowers: Vec<Vec<usize>> = vec![Vec::new(); ifaces.len()];
    for (i, iface) in ifaces.iter().enumerate() {
        if let Some(b) = &iface.link_aggregation {
            lowers[i].extend(
                b.port
                    .iter()
                    .filter_map(|p| by_name.get(p.as_str()).copied()),
            );
        }
        if let Some(b) = &iface.bridge {
            lowers[i].extend(
                b.port
                    .iter()
                    .filter_map(|p| by_name.get(p.name.as_str()).copied()),
            );
        }
        if let Some(v) = &iface.vlan {
            lowers[i].extend(by_name.get(v.base_iface.as_str()).copied());
        }
    }
    // 0 = unvisited, 1 = on stack, 2 = done.
    let mut mark = vec![0u8; ifaces.len()];
    let mut reported = BTreeSet::new();
    fn dfs(
        n: usize,
        lowers: &[Vec<usize>],
        mark: &mut [u8],
        stack: &mut Vec<usize>,
        cycles: &mut Vec<Vec<usize>>,
    ) {
        mark[n] = 1;
        stack.push(n);
        for &m in &lowers[n] {
            if mark[m] == 1 {
                let from = stack.iter().position(|&x| x == m).unwrap_or(0);
                cycles.push(stack[from..].to_vec());
            } else if mark[m] == 0 {
                dfs(m, lowers, mark, stack, cycles);
            }
        }
        stack.pop();
        mark[n] = 2;
    }
    let mut cycles = Vec::new();
    for i in 0..ifaces.len() {
        if mark[i] == 0 {
            dfs(i, &lowers, &mut mark, &mut Vec::new(), &mut cycles);
        }
    }
    for c in cycles {
        let first = *c.iter().min().unwrap_or(&0);
        if reported.insert(first) {
            let names: Vec<&str> = c.iter().map(|&i| ifaces[i].name.as_str()).collect();
            e.push(
                format!("interfaces[{first}]"),
                names.join(" -> "),
                "interfaces form a cycle",
            );
        }
    }
}

fn check_addresses(e: &mut Errs, ifaces: &[Interface]) {
    let mut all: Vec<(IpNet, String, &str)> = Vec::new();
    for (i, iface) in ifaces.iter().enumerate() {
        if iface.state == IfState::Absent {
            continue;
        }
        for (fam, cfg) in [("ipv4", &iface.ipv4), ("ipv6", &iface.ipv6)] {
            let Some(cfg) = cfg else { continue };
            for (j, a) in cfg.address.iter().enumerate() {
                let p = format!("interfaces[{i}].{fam}.address[{j}]");
                let value = format!("{}/{}", a.ip, a.prefix_length);
                let right_family = matches!(
                    (fam, a.ip),
                    ("ipv4", IpAddr::V4(_)) | ("ipv6", IpAddr::V6(_))
                );
                if !right_family {
                    e.push(format!("{p}.ip"), a.ip, format!("not an {fam} address"));
                    continue;
                }
                let net = match IpNet::new(a.ip, a.prefix_length) {
                    Ok(n) => n,
                    Err(_) => {
                        e.push(
                            format!("{p}.prefix-length"),
                            a.prefix_length,
                            "prefix length too long for the family",
                        );
                        continue;
                    }
                };
                let bad = match a.ip {
                    IpAddr::V4(v) => {
                        v.is_unspecified()
                            || v.is_multicast()
                            || v.is_broadcast()
                            || v.is_loopback()
                    }
                    IpAddr::V6(v) => v.is_unspecified() || v.is_multicast() || v.is_loopback(),
                };
                if bad {
                    e.push(&p, &value, "not a usable host address");
                    continue;
                }
                if let IpAddr::V6(v) = a.ip {
                    if (v.segments()[0] & 0xffc0) == 0xfe80 {
                        e.push(&p, &value, "link-local addresses are the kernel's");
                        continue;
                    }
                }
                if let IpNet::V4(n) = net {
                    if n.prefix_len() < 31 && (n.addr() == n.network() || n.addr() == n.broadcast())
                    {
                        e.push(&p, &value, "the network or broadcast address of its subnet");
                        continue;
                    }
                }
                for (other, op, oname) in &all {
                    if other.addr() == net.addr() {
                        e.push(&p, &value, format!("address already assigned at {op}"));
                    } else if *oname != iface.name.as_str()
                        && (other.contains(&net.addr()) || net.contains(&other.addr()))
                    {
                        e.push(
                            &p,
                            &value,
                            format!("subnet overlaps {other} on {oname} ({op})"),
                        );
                    }
                }
                all.push((net, p, iface.name.as_str()));
            }
        }
    }
}

fn check_routes(e: &mut Errs, state: &NetworkState, by_name: &HashMap<&str, usize>) {
    let mut keys: HashMap<RouteKey, usize> = HashMap::new();
    for (i, r) in state.routes.config.iter().enumerate() {
        let p = format!("routes.config[{i}]");
        if r.destination.trunc() != r.destination {
            e.push(
                format!("{p}.destination"),
                r.destination,
                format!("host bits set; did you mean {}?", r.destination.trunc()),
            );
        }
        if r.table_id == Some(0) || r.table_id == Some(255) || r.table_id == Some(253) {
            e.push(
                format!("{p}.table-id"),
                r.table_id.unwrap_or(0),
                "tables 0, 253 and 255 are the kernel's",
            );
        }
        if let Some(proto) = r.protocol {
            e.push(
                format!("{p}.protocol"),
                proto,
                "observed only: hostd installs its routes as proto static",
            );
        }
        let v4 = matches!(r.destination, IpNet::V4(_));
        if let Some(first) = keys.insert(r.key(), i) {
            e.push(
                &p,
                r.key(),
                format!(
                    "conflicts with routes.config[{first}] (same table, destination and metric)"
                ),
            );
        }
        if r.state == RouteState::Absent {
            continue;
        }
        let single = r.next_hop_address.is_some() || r.next_hop_interface.is_some();
        if single && !r.multipath.is_empty() {
            e.push(
                &p,
                r.destination,
                "give next-hop-address/next-hop-interface or multipath, not both",
            );
        }
        if !single && r.multipath.is_empty() {
            e.push(
                &p,
                r.destination,
                "needs a next-hop-address, a next-hop-interface or multipath",
            );
        }
        if r.multipath.len() == 1 {
            e.push(
                format!("{p}.multipath"),
                1,
                "multipath needs at least two next hops",
            );
        }
        #[allow(
            clippy::type_complexity,
            reason = "a local list of (path, gateway, device, weight)"
        )]
        let mut hops: Vec<(
            String,
            Option<IpAddr>,
            Option<&crate::types::IfName>,
            Option<u16>,
        )> = vec![(
            p.clone(),
            r.next_hop_address,
            r.next_hop_interface.as_ref(),
            None,
        )];
        for (j, nh) in r.multipath.iter().enumerate() {
            hops.push((
                format!("{p}.multipath[{j}]"),
                nh.next_hop_address,
                nh.next_hop_interface.as_ref(),
                nh.weight,
            ));
            if nh.next_hop_address.is_none() && nh.next_hop_interface.is_none() {
                e.push(
                    format!("{p}.multipath[{j}]"),
                    "{}",
                    "a next hop needs an address or an interface",
                );
            }
        }
        let mut seen_hops = BTreeSet::new();
        for (hp, gw, dev, weight) in hops {
            if let Some(gw) = gw {
                if gw.is_ipv4() != v4 {
                    e.push(
                        format!("{hp}.next-hop-address"),
                        gw,
                        "address family differs from the destination's",
                    );
                }
                if gw.is_unspecified() || gw.is_multicast() {
                    e.push(format!("{hp}.next-hop-address"), gw, "not a usable gateway");
                }
            }
            if let Some(dev) = dev {
                match by_name.get(dev.as_str()).map(|&k| &state.interfaces[k]) {
                    None => e.push(
                        format!("{hp}.next-hop-interface"),
                        dev,
                        "interface is not declared in interfaces",
                    ),
                    Some(i) if i.state == IfState::Absent => e.push(
                        format!("{hp}.next-hop-interface"),
                        dev,
                        "interface is declared absent",
                    ),
                    Some(_) => {}
                }
            }
            if let Some(w) = weight {
                if !(1..=256).contains(&w) {
                    e.push(format!("{hp}.weight"), w, "must be within 1..=256");
                }
            }
            if (gw.is_some() || dev.is_some())
                && !seen_hops.insert((gw, dev.map(|d| d.to_string())))
            {
                e.push(
                    hp,
                    gw.map(|g| g.to_string()).unwrap_or_default(),
                    "next hop listed twice",
                );
            }
        }
    }
}

/// Checks one VLAN membership (a bridge port's, or a bridge's own) at `vp`.
fn check_port_vlan(e: &mut Errs, vp: &str, v: &crate::schema::PortVlan) {
    match v.mode {
        PortVlanMode::Access => {
            if v.tag.is_none() {
                e.push(format!("{vp}.tag"), "none", "access mode needs a tag");
            }
            if !v.trunk_tags.is_empty() {
                e.push(
                    format!("{vp}.trunk-tags"),
                    v.trunk_tags.len(),
                    "access mode takes no trunk tags",
                );
            }
        }
        PortVlanMode::Trunk => {
            if v.trunk_tags.is_empty() {
                e.push(
                    format!("{vp}.trunk-tags"),
                    "[]",
                    "trunk mode needs trunk tags",
                );
            }
            if v.enable_native && v.tag.is_none() {
                e.push(
                    format!("{vp}.tag"),
                    "none",
                    "enable-native needs the native tag",
                );
            }
        }
    }
    let mut seen: BTreeSet<u16> = BTreeSet::new();
    for (k, t) in v.trunk_tags.iter().enumerate() {
        let tp = format!("{vp}.trunk-tags[{k}]");
        let (lo, hi) = match (t.id, t.id_range) {
            (Some(id), None) => (id.get(), id.get()),
            (None, Some(r)) => {
                if r.min > r.max {
                    e.push(
                        format!("{tp}.id-range"),
                        format!("{}-{}", r.min, r.max),
                        "min is above max",
                    );
                    continue;
                }
                (r.min.get(), r.max.get())
            }
            _ => {
                e.push(&tp, "entry", "give exactly one of id or id-range");
                continue;
            }
        };
        if let Some(dup) = (lo..=hi).find(|x| seen.contains(x)) {
            e.push(&tp, dup, "VLAN listed twice in trunk tags");
        }
        seen.extend(lo..=hi);
        if v.enable_native && v.tag.is_some_and(|t| (lo..=hi).contains(&t.get())) {
            e.push(
                &tp,
                v.tag.map(|t| t.get()).unwrap_or(0),
                "native VLAN also listed as tagged",
            );
        }
    }
}
