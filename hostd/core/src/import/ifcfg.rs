//! RHEL `ifcfg-*` files (initscripts / NetworkManager's ifcfg-rh), with
//! their `route-NAME` and `route6-NAME` files.
//!
//! Read: `DEVICE` (else the file's name), `TYPE` (Ethernet, Bond, Bridge,
//! Vlan), `BONDING_MASTER`, `BONDING_OPTS`, `MASTER`+`SLAVE`, `BRIDGE`,
//! `VLAN=yes` with `PHYSDEV`/`VLAN_ID` (or a `BASE.ID` name), `IPADDR[n]`
//! with `PREFIX[n]`/`NETMASK[n]`, `GATEWAY`, `IPV6ADDR`,
//! `IPV6ADDR_SECONDARIES`, `IPV6_DEFAULTGW`, `MTU`, `DNS1..`, `DOMAIN`,
//! `HWADDR` (the NIC's MAC: hostd's `mac-address`), `STP`, `DELAY`,
//! `BRIDGING_OPTS`, `ONBOOT`. Values are unquoted as the shell does.
//! Routes: both the `ADDRESSn=`/`NETMASKn=`/`GATEWAYn=` form and the
//! `ip route` argument form.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;

use super::{
    default_route, join, parse_address, parse_bond_mode, parse_bool, parse_netmask, route,
    set_bond_option, Builder, Files, Import, ImportErrors, Loc,
};
use crate::{
    bond::{BondConfig, BondMode, BondOptions},
    schema::{BridgeConfig, BridgePort, InterfaceType, StpOptions, VlanConfig},
    types::{IfName, MacAddr, Mtu, VlanId},
};

/// Keys that leave no kernel state (NetworkManager and initscripts
/// bookkeeping): left out with a note.
const NO_STATE: &[&str] = &[
    "NAME",
    "UUID",
    "NM_CONTROLLED",
    "USERCTL",
    "PEERDNS",
    "PEERROUTES",
    "IPV6INIT",
    "IPV6_AUTOCONF",
    "IPV6_DEFROUTE",
    "IPV6_PEERDNS",
    "IPV6_PEERROUTES",
    "IPV6_FAILURE_FATAL",
    "IPV4_FAILURE_FATAL",
    "IPV6_ADDR_GEN_MODE",
    "PROXY_METHOD",
    "BROWSER_ONLY",
    "NOZEROCONF",
    "HOTPLUG",
    "DEFROUTE",
    "ONBOOT",
    "BOOTPROTO",
    "TYPE",
    "DEVICE",
    "SLAVE",
    "MASTER",
    "BRIDGE",
    "VLAN",
    "PHYSDEV",
    "VLAN_ID",
    "BONDING_MASTER",
    "BONDING_OPTS",
    "IPV6_DHCP_CONFIG",
    "AUTOCONNECT_PRIORITY",
    "DHCP_HOSTNAME",
    "VLAN_NAME_TYPE",
];

/// Suffixes initscripts skips (editor and package manager copies).
const BACKUP_SUFFIXES: &[&str] = &[
    "~", ".bak", ".orig", ".rpmnew", ".rpmorig", ".rpmsave", ".old",
];

struct File {
    path: String,
    vars: BTreeMap<String, (String, usize)>,
}

impl File {
    fn get(&self, k: &str) -> Option<&str> {
        self.vars.get(k).map(|(v, _)| v.as_str())
    }

    fn loc(&self, k: &str) -> Loc {
        Loc::line(&self.path, self.vars.get(k).map_or(0, |(_, n)| *n))
    }

    fn yes(&self, k: &str) -> bool {
        self.get(k).and_then(parse_bool).unwrap_or(false)
    }
}

/// Imports `path`: a directory (every `ifcfg-*` in it, with the `route-*`
/// and `route6-*` files) or one `ifcfg-*` file.
pub fn import(path: &str, files: &dyn Files) -> Result<Import, ImportErrors> {
    let mut b = Builder::default();
    let (dir, names): (String, Vec<String>) = if files.is_dir(path) {
        match files.list(path) {
            Ok(mut n) => {
                n.sort();
                (path.to_owned(), n)
            }
            Err(e) => {
                return Err(ImportErrors(vec![Loc::key(path, "").err(
                    "",
                    path,
                    format!("cannot be listed: {e}"),
                )]))
            }
        }
    } else {
        let d = super::dirname(path).to_owned();
        let n = path.rsplit('/').next().unwrap_or(path).to_owned();
        // One ifcfg file: its route files too, when listed next to it.
        let mut names = vec![n.clone()];
        if let (Some(dev), Ok(all)) = (n.strip_prefix("ifcfg-"), files.list(&d)) {
            for r in [format!("route-{dev}"), format!("route6-{dev}")] {
                if all.contains(&r) {
                    names.push(r);
                }
            }
        }
        (d, names)
    };
    let mut parsed = Vec::new();
    let mut routes = Vec::new();
    for n in &names {
        let p = join(&dir, n);
        if BACKUP_SUFFIXES.iter().any(|s| n.ends_with(s)) {
            if n.starts_with("ifcfg-") || n.starts_with("route") {
                b.notes
                    .push(format!("{p}: skipped, as initscripts does (a backup copy)"));
            }
            continue;
        }
        let is_ifcfg = n.starts_with("ifcfg-");
        let is_route = n.starts_with("route-") || n.starts_with("route6-");
        if !is_ifcfg && !is_route {
            continue;
        }
        if n == "ifcfg-lo" {
            continue;
        }
        let text = match files.read(&p) {
            Ok(t) => t,
            Err(e) => {
                b.errors
                    .push(Loc::key(&p, "").err("", &p, format!("cannot be read: {e}")));
                continue;
            }
        };
        if is_ifcfg {
            let f = parse_vars(&p, &text, &mut b);
            parsed.push((n.trim_start_matches("ifcfg-").to_owned(), f));
        } else {
            routes.push((n.clone(), p, text));
        }
    }
    let mut declared: BTreeMap<String, IfName> = BTreeMap::new();
    for (fname, f) in &parsed {
        if let Some(n) = interface(&mut b, fname, f, &parsed) {
            declared.insert(fname.clone(), n);
        }
    }
    for (n, p, text) in routes {
        let (v6, dev) = match n.strip_prefix("route6-") {
            Some(d) => (true, d),
            None => (false, n.trim_start_matches("route-")),
        };
        let dev = parsed
            .iter()
            .find(|(f, _)| f == dev)
            .and_then(|(f, _)| declared.get(f).cloned())
            .or_else(|| IfName::new(dev).ok().filter(|d| b.has(d.as_str())));
        match dev {
            Some(dev) => route_file(&mut b, &p, &text, &dev, v6),
            None => b.errors.push(Loc::key(&p, "").err(
                "",
                &n,
                "a route file for an interface not imported",
            )),
        }
    }
    b.finish()
}

fn parse_vars(path: &str, text: &str, b: &mut Builder) -> File {
    let mut vars = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("export ").unwrap_or(t);
        let Some((k, v)) = t.split_once('=') else {
            b.errors
                .push(Loc::line(path, n).err("", t, "not a KEY=VALUE line"));
            continue;
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            b.errors
                .push(Loc::line(path, n).err(k, v, "not a shell variable name"));
            continue;
        }
        if v.contains('$') || v.contains('`') {
            b.errors
                .push(Loc::line(path, n).err(k, v, "shell expansions cannot be imported"));
            continue;
        }
        match shlex::split(v) {
            Some(words) => {
                vars.insert(k.to_owned(), (words.join(" "), n));
            }
            None => {
                b.errors
                    .push(Loc::line(path, n).err(k, v, "unbalanced quotes"));
            }
        }
    }
    // The errors are recorded; the rest is still read, for more of them.
    File {
        path: path.to_owned(),
        vars,
    }
}

fn interface(b: &mut Builder, fname: &str, f: &File, all: &[(String, File)]) -> Option<IfName> {
    let dev = f.get("DEVICE").unwrap_or(fname).to_owned();
    let dloc = f.loc("DEVICE");
    let name = b.name(&dloc, "DEVICE", &dev)?;
    let ty = f.get("TYPE").map(str::to_ascii_lowercase);
    let kind = if f.yes("VLAN") || ty.as_deref() == Some("vlan") {
        InterfaceType::Vlan
    } else if f.yes("BONDING_MASTER") || ty.as_deref() == Some("bond") {
        InterfaceType::Bond
    } else {
        match ty.as_deref() {
            None | Some("ethernet") => InterfaceType::Ethernet,
            Some("bridge") => InterfaceType::LinuxBridge,
            Some(t) => {
                b.errors.push(f.loc("TYPE").err(
                    "TYPE",
                    t,
                    "a type hostd cannot express (Ethernet, Bond, Bridge, Vlan)",
                ));
                return None;
            }
        }
    };
    // ONBOOT=no: not brought up at boot, unless it is a port of one that is.
    let used = all.iter().any(|(_, o)| {
        let refers = |k: &str| o.get(k) == Some(dev.as_str());
        o.get("ONBOOT").and_then(parse_bool) != Some(false)
            && (refers("MASTER") || refers("BRIDGE") || refers("PHYSDEV"))
    });
    if f.get("ONBOOT").and_then(parse_bool) == Some(false) && !used {
        b.notes.push(
            f.loc("ONBOOT")
                .note("ONBOOT", "no", "not brought up at boot"),
        );
        return None;
    }
    b.iface(&name, kind, &dloc)?;
    let mut ignored = Vec::new();
    let mut netmasks: BTreeMap<String, &str> = BTreeMap::new();
    for (k, (v, _)) in &f.vars {
        if let Some(i) = k
            .strip_prefix("PREFIX")
            .or_else(|| k.strip_prefix("NETMASK"))
        {
            if i.is_empty() || i.chars().all(|c| c.is_ascii_digit()) {
                netmasks.insert(i.to_owned(), v);
            }
        }
    }
    for (k, (v, n)) in &f.vars {
        let loc = Loc::line(&f.path, *n);
        let bad = |b: &mut Builder, why: &str| b.errors.push(loc.err(k, v, why.to_owned()));
        let k = k.as_str();
        match k {
            "BOOTPROTO" => match v.to_ascii_lowercase().as_str() {
                "" | "none" | "static" => {}
                _ => bad(b, "DHCP/BOOTP cannot be expressed in a hostd document (static addresses only)"),
            },
            "IPADDR" | "GATEWAY" | "MTU" | "HWADDR" | "DOMAIN" | "IPV6ADDR" | "IPV6ADDR_SECONDARIES" | "IPV6_DEFAULTGW" | "STP" | "DELAY" | "BRIDGING_OPTS" => {}
            k if k.starts_with("IPADDR") || k.starts_with("PREFIX") || k.starts_with("NETMASK") || k.starts_with("DNS") => {}
            "MACADDR" => bad(b, "setting a MAC address cannot be expressed (hostd's mac-address identifies a NIC by its own MAC; HWADDR does that)"),
            "ETHTOOL_OPTS" | "ZONE" | "LINKDELAY" | "ARPCHECK" | "SRIOV_NUM_VFS" => bad(b, "cannot be expressed in a hostd document"),
            "DEFROUTE" if parse_bool(v) == Some(false) && f.get("GATEWAY").is_some() => bad(b, "a GATEWAY that is not the default route cannot be expressed"),
            "IPV6_AUTOCONF" if parse_bool(v) == Some(true) => b.notes.push(loc.note(k, v, "SLAAC is the kernel's default; hostd leaves dynamic addresses alone")),
            k if NO_STATE.contains(&k) => {
                if !matches!(k, "TYPE" | "DEVICE" | "SLAVE" | "MASTER" | "BRIDGE" | "VLAN" | "PHYSDEV" | "VLAN_ID" | "BONDING_MASTER" | "BONDING_OPTS" | "BOOTPROTO" | "ONBOOT") {
                    ignored.push(k.to_owned());
                }
            }
            _ => bad(b, "a key hostd cannot express (or unknown)"),
        }
    }
    if !ignored.is_empty() {
        b.notes.push(format!(
            "{}: {} left out: no kernel state",
            f.path,
            ignored.join(", ")
        ));
    }
    // Addresses.
    let mut keys: Vec<&String> = f.vars.keys().filter(|k| k.starts_with("IPADDR")).collect();
    keys.sort();
    for k in keys {
        let idx = &k["IPADDR".len()..];
        if !idx.chars().all(|c| c.is_ascii_digit()) {
            b.errors
                .push(f.loc(k).err(k, f.get(k).unwrap_or(""), "unknown key"));
            continue;
        }
        let v = f.get(k).unwrap_or("");
        match parse_address(v, netmasks.get(idx).copied()) {
            Ok(a) => b.address(&name, a),
            Err(e) => b.errors.push(f.loc(k).err(k, v, e)),
        }
    }
    if let Some(v) = f.get("IPV6ADDR") {
        for (i, a) in std::iter::once(v)
            .chain(
                f.get("IPV6ADDR_SECONDARIES")
                    .unwrap_or("")
                    .split_whitespace(),
            )
            .enumerate()
        {
            let k = if i == 0 {
                "IPV6ADDR"
            } else {
                "IPV6ADDR_SECONDARIES"
            };
            let a = if a.contains('/') {
                a.to_owned()
            } else {
                format!("{a}/64")
            };
            match parse_address(&a, None) {
                Ok(a) => b.address(&name, a),
                Err(e) => b.errors.push(f.loc(k).err(k, v, e)),
            }
        }
    }
    if f.get("BOOTPROTO")
        .is_some_and(|p| matches!(p, "none" | "static"))
    {
        b.static_family(&name, false);
    }
    // Gateways.
    for (k, v6) in [("GATEWAY", false), ("IPV6_DEFAULTGW", true)] {
        if let Some(v) = f.get(k) {
            let (gw, dev) = v.split_once('%').map_or((v, None), |(a, d)| (a, Some(d)));
            match gw.parse::<IpAddr>() {
                Ok(ip) if ip.is_ipv6() == v6 => {
                    let dev = match dev {
                        Some(d) => b.name(&f.loc(k), k, d),
                        None => Some(name.clone()),
                    };
                    b.route(&f.loc(k), k, v, default_route(ip, dev.as_ref(), None));
                }
                _ => b
                    .errors
                    .push(f.loc(k).err(k, v, "not an address of the right family")),
            }
        }
    }
    // DNS.
    let mut servers = Vec::new();
    for (k, (v, _)) in &f.vars {
        if let Some(i) = k.strip_prefix("DNS") {
            if !i.chars().all(|c| c.is_ascii_digit()) {
                b.errors.push(f.loc(k).err(k, v, "unknown key"));
                continue;
            }
            match v.parse::<IpAddr>() {
                Ok(ip) => servers.push((i.parse::<u32>().unwrap_or(0), ip)),
                Err(_) => b.errors.push(f.loc(k).err(k, v, "not an IP address")),
            }
        }
    }
    servers.sort();
    let search: Vec<String> = f
        .get("DOMAIN")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    b.dns(
        &servers.into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
        &search,
    );
    if let Some(v) = f.get("MTU") {
        match v
            .parse::<u32>()
            .map_err(|e| e.to_string())
            .and_then(Mtu::new)
        {
            Ok(m) => {
                if let Some(i) = b.iface(&name, kind, &dloc) {
                    i.mtu = Some(m);
                }
            }
            Err(e) => b.errors.push(f.loc("MTU").err("MTU", v, e)),
        }
    }
    if let Some(v) = f.get("HWADDR") {
        if kind != InterfaceType::Ethernet {
            b.errors.push(
                f.loc("HWADDR")
                    .err("HWADDR", v, "on a non-ethernet interface"),
            );
        } else {
            match v.parse::<MacAddr>() {
                Ok(m) => {
                    if let Some(i) = b.iface(&name, kind, &dloc) {
                        i.mac_address = Some(m);
                    }
                }
                Err(e) => b.errors.push(f.loc("HWADDR").err("HWADDR", v, e)),
            }
        }
    }
    match kind {
        InterfaceType::Bond => bond(b, &name, &dev, f, all),
        InterfaceType::LinuxBridge => bridge(b, &name, &dev, f, all),
        InterfaceType::Vlan => vlan(b, &name, &dev, f),
        _ => {}
    }
    for k in ["BONDING_OPTS", "STP", "DELAY", "BRIDGING_OPTS"] {
        let wrong = match k {
            "BONDING_OPTS" => kind != InterfaceType::Bond,
            _ => kind != InterfaceType::LinuxBridge,
        };
        if wrong {
            if let Some(v) = f.get(k) {
                b.errors.push(
                    f.loc(k)
                        .err(k, v, format!("on a {} interface", kind.as_str())),
                );
            }
        }
    }
    if f.get("MASTER").is_some() && !f.yes("SLAVE") {
        b.errors.push(f.loc("MASTER").err(
            "MASTER",
            f.get("MASTER").unwrap_or(""),
            "MASTER without SLAVE=yes",
        ));
    }
    Some(name)
}

/// Ports of `dev`: the files whose `key` names it.
fn ports_of(b: &mut Builder, dev: &str, key: &str, all: &[(String, File)]) -> Vec<IfName> {
    all.iter()
        .filter(|(_, o)| o.get(key) == Some(dev))
        .filter_map(|(fname, o)| {
            let p = o.get("DEVICE").unwrap_or(fname).to_owned();
            b.name(&o.loc(key), key, &p)
        })
        .collect()
}

fn bond(b: &mut Builder, name: &IfName, dev: &str, f: &File, all: &[(String, File)]) {
    let mut cfg = BondConfig {
        mode: BondMode::BalanceRr,
        port: ports_of(b, dev, "MASTER", all),
        options: BondOptions::default(),
    };
    if let Some(opts) = f.get("BONDING_OPTS") {
        let loc = f.loc("BONDING_OPTS");
        for w in opts.split_whitespace() {
            let Some((k, v)) = w.split_once('=') else {
                b.errors
                    .push(loc.err("BONDING_OPTS", w, "not option=value"));
                continue;
            };
            let r = match k {
                "mode" => parse_bond_mode(v).map(|m| cfg.mode = m),
                "miimon" | "updelay" | "downdelay" | "use_carrier" | "arp_interval"
                | "arp_ip_target" | "arp_validate" | "arp_all_targets" | "primary"
                | "primary_reselect" | "fail_over_mac" | "xmit_hash_policy" | "resend_igmp"
                | "num_grat_arp" | "num_unsol_na" | "all_slaves_active" | "min_links"
                | "lp_interval" | "packets_per_slave" | "lacp_rate" | "ad_select"
                | "ad_actor_sys_prio" | "ad_user_port_key" | "ad_actor_system"
                | "tlb_dynamic_lb" | "peer_notif_delay" | "lacp_active" | "missed_max" => {
                    let k = if k == "num_unsol_na" {
                        "num_grat_arp"
                    } else {
                        k
                    };
                    set_bond_option(&mut cfg.options, k, v)
                }
                _ => Err(format!("hostd has no bond option {k}")),
            };
            if let Err(e) = r {
                b.errors.push(loc.err("BONDING_OPTS", w, e));
            }
        }
    }
    if let Some(i) = b.iface(name, InterfaceType::Bond, &f.loc("DEVICE")) {
        i.link_aggregation = Some(cfg);
    }
}

fn bridge(b: &mut Builder, name: &IfName, dev: &str, f: &File, all: &[(String, File)]) {
    let mut cfg = BridgeConfig {
        port: ports_of(b, dev, "BRIDGE", all)
            .into_iter()
            .map(|n| BridgePort {
                name: n,
                vlan: None,
            })
            .collect(),
        ..BridgeConfig::default()
    };
    let mut stp = StpOptions::default();
    let mut stp_set = false;
    if let Some(v) = f.get("STP") {
        match parse_bool(v) {
            Some(on) => {
                stp.enabled = on;
                stp_set = true;
            }
            None => b.errors.push(f.loc("STP").err("STP", v, "on or off")),
        }
    }
    if let Some(v) = f.get("DELAY") {
        match v.parse() {
            Ok(d) => {
                stp.forward_delay = Some(d);
                stp_set = true;
            }
            Err(_) => b
                .errors
                .push(f.loc("DELAY").err("DELAY", v, "whole seconds")),
        }
    }
    if let Some(opts) = f.get("BRIDGING_OPTS") {
        let loc = f.loc("BRIDGING_OPTS");
        for w in opts.split_whitespace() {
            let Some((k, v)) = w.split_once('=') else {
                b.errors
                    .push(loc.err("BRIDGING_OPTS", w, "not option=value"));
                continue;
            };
            // sysfs units: the timers are in centiseconds.
            let cs = |v: &str| {
                v.parse::<u32>()
                    .ok()
                    .filter(|x| x % 100 == 0)
                    .map(|x| x / 100)
            };
            let ok = match k {
                "priority" => v.parse().ok().map(|x| stp.priority = Some(x)).is_some(),
                "hello_time" => cs(v).map(|x| stp.hello_time = Some(x)).is_some(),
                "max_age" => cs(v).map(|x| stp.max_age = Some(x)).is_some(),
                "forward_delay" => cs(v).map(|x| stp.forward_delay = Some(x)).is_some(),
                "ageing_time" => cs(v)
                    .map(|x| cfg.options.mac_ageing_time = Some(x))
                    .is_some(),
                "multicast_snooping" => parse_bool(v)
                    .map(|x| cfg.options.multicast_snooping = Some(x))
                    .is_some(),
                "vlan_filtering" => parse_bool(v)
                    .map(|x| cfg.options.vlan_filtering = Some(x))
                    .is_some(),
                "stp_state" => parse_bool(v).map(|x| stp.enabled = x).is_some(),
                _ => {
                    b.errors.push(loc.err(
                        "BRIDGING_OPTS",
                        w,
                        format!("hostd has no bridge option {k}"),
                    ));
                    continue;
                }
            };
            if !ok {
                b.errors.push(loc.err(
                    "BRIDGING_OPTS",
                    w,
                    "a value hostd cannot express (timers: whole seconds, in centiseconds)",
                ));
            }
            if matches!(
                k,
                "priority" | "hello_time" | "max_age" | "forward_delay" | "stp_state"
            ) {
                stp_set = true;
            }
        }
    }
    if stp_set {
        cfg.options.stp = Some(stp);
    }
    if let Some(i) = b.iface(name, InterfaceType::LinuxBridge, &f.loc("DEVICE")) {
        i.bridge = Some(cfg);
    }
}

fn vlan(b: &mut Builder, name: &IfName, dev: &str, f: &File) {
    let from_name = dev
        .rsplit_once('.')
        .and_then(|(base, id)| Some((base, id.parse::<u32>().ok()?)));
    let base = f.get("PHYSDEV").or(from_name.map(|(b, _)| b));
    let id = match f.get("VLAN_ID") {
        Some(v) => v.parse::<u32>().ok(),
        None => from_name
            .map(|(_, i)| i)
            .or_else(|| dev.strip_prefix("vlan").and_then(|d| d.parse().ok())),
    };
    let Some(base) = base else {
        b.errors.push(f.loc("DEVICE").err(
            "PHYSDEV",
            dev,
            "a VLAN without PHYSDEV and not named BASE.ID",
        ));
        return;
    };
    let Some(base) = b.name(&f.loc("PHYSDEV"), "PHYSDEV", base) else {
        return;
    };
    let id = match id
        .ok_or_else(|| "no VLAN id (VLAN_ID, or a name BASE.ID or vlanID)".to_owned())
        .and_then(VlanId::new)
    {
        Ok(i) => i,
        Err(e) => {
            b.errors.push(
                f.loc("VLAN_ID")
                    .err("VLAN_ID", f.get("VLAN_ID").unwrap_or(dev), e),
            );
            return;
        }
    };
    if let Some(i) = b.iface(name, InterfaceType::Vlan, &f.loc("DEVICE")) {
        i.vlan = Some(VlanConfig {
            base_iface: base,
            id,
            protocol: Default::default(),
        });
    }
}

/// `route-DEV`: `ADDRESSn/NETMASKn/GATEWAYn/METRICn` or `ip route` lines.
fn route_file(b: &mut Builder, path: &str, text: &str, dev: &IfName, v6: bool) {
    let keyed = text
        .lines()
        .any(|l| l.trim_start().starts_with("ADDRESS0="));
    if keyed {
        let f = parse_vars(path, text, b);
        for i in 0.. {
            let k = format!("ADDRESS{i}");
            let Some(a) = f.get(&k) else { break };
            let mask = f.get(&format!("NETMASK{i}")).unwrap_or("255.255.255.255");
            let dst = parse_netmask(mask, false).and_then(|p| {
                format!("{a}/{p}")
                    .parse::<IpNet>()
                    .map_err(|e| e.to_string())
            });
            let gw = f
                .get(&format!("GATEWAY{i}"))
                .map(str::parse::<IpAddr>)
                .transpose();
            let metric = f
                .get(&format!("METRIC{i}"))
                .map(str::parse::<u32>)
                .transpose();
            match (dst, gw, metric) {
                (Ok(d), Ok(gw), Ok(m)) => {
                    b.route(&f.loc(&k), &k, a, route(d, gw, Some(dev), m, None))
                }
                _ => b.errors.push(f.loc(&k).err(
                    &k,
                    a,
                    "a route that does not parse (ADDRESSn, NETMASKn, GATEWAYn, METRICn)",
                )),
            }
        }
        return;
    }
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let loc = Loc::line(path, i + 1);
        let w: Vec<&str> = t.split_whitespace().collect();
        let dst = match w[0] {
            "default" => Ok(if v6 { "::/0" } else { "0.0.0.0/0" }
                .parse::<IpNet>()
                .map_err(|e| e.to_string())),
            d => Ok(d
                .parse::<IpNet>()
                .or_else(|_| d.parse::<IpAddr>().map(IpNet::from))
                .map_err(|e| e.to_string())),
        };
        let mut via = None;
        let mut rdev = Some(dev.clone());
        let mut metric = None;
        let mut table = None;
        let mut err: Option<String> = None;
        let mut j = 1;
        while j < w.len() {
            let val = w.get(j + 1).copied().unwrap_or("");
            match w[j] {
                "via" => {
                    via = val
                        .parse::<IpAddr>()
                        .map_err(|_| err = Some(format!("via {val}")))
                        .ok()
                }
                "dev" => rdev = IfName::new(val).map_err(|e| err = Some(e)).ok(),
                "metric" | "preference" => {
                    metric = val
                        .parse::<u32>()
                        .map_err(|_| err = Some(format!("metric {val}")))
                        .ok()
                }
                "table" => {
                    table = val
                        .parse::<u32>()
                        .map_err(|_| err = Some(format!("table {val} (numbers only)")))
                        .ok()
                }
                "proto" if val == "static" => {}
                other => {
                    err = Some(format!("`{other}` cannot be expressed in a hostd route"));
                    break;
                }
            }
            j += 2;
        }
        match (dst, err) {
            (Ok(Ok(d)), None) => b.route(
                &loc,
                "route",
                t,
                route(d, via, rdev.as_ref(), metric, table),
            ),
            (Ok(Err(e)), _) => b.errors.push(loc.err("route", t, e)),
            (_, Some(e)) => b.errors.push(loc.err("route", t, e)),
            (Err(()), _) => {}
        }
    }
}
