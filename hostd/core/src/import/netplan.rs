//! netplan YAML (`network: {version: 2, ethernets, bonds, bridges, vlans}`).
//!
//! Files are merged as `netplan generate` reads them: every `*.yaml` in
//! `lib/netplan`, `etc/netplan` and `run/netplan` under a root (a file in
//! `run` shadows one of the same name in `etc`, which shadows `lib`), read
//! in the lexical order of their names; a later file's mapping keys are
//! merged into the earlier ones, its scalars override. A sequence (a list of
//! addresses, routes, ...) given differently in two files is an error naming
//! both: libnetplan appends some sequences and replaces others, and the
//! import would have to guess.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde_norway::{Mapping, Value};

use super::{
    parse_address, parse_bond_mode, route, set_bond_option, Builder, Files, Import, ImportError,
    ImportErrors, Loc,
};
use crate::{
    bond::{BondConfig, BondOptions},
    schema::{BridgeConfig, BridgePort, InterfaceType, StpOptions, VlanConfig},
    types::{IfName, MacAddr, Mtu, VlanId},
};

/// The YAML files of `path`, in netplan's order: a file, a directory of
/// `*.yaml`, or a root holding `{lib,etc,run}/netplan`.
pub fn sources(path: &str, files: &dyn Files) -> Vec<String> {
    if !files.is_dir(path) {
        return vec![path.to_owned()];
    }
    let tiers = ["lib/netplan", "etc/netplan", "run/netplan"];
    let dirs: Vec<String> = if tiers.iter().any(|t| files.is_dir(&super::join(path, t))) {
        tiers.iter().map(|t| super::join(path, t)).collect()
    } else {
        vec![path.to_owned()]
    };
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for d in dirs {
        for n in files.list(&d).unwrap_or_default() {
            let p = super::join(&d, &n);
            if n.ends_with(".yaml") && !files.is_dir(&p) {
                by_name.insert(n, p);
            }
        }
    }
    by_name.into_values().collect()
}

/// Imports `path` (see [`sources`]).
pub fn import(path: &str, files: &dyn Files) -> Result<Import, ImportErrors> {
    let mut b = Builder::default();
    let list = sources(path, files);
    if list.is_empty() {
        return Err(ImportErrors(vec![Loc::key(path, "").err(
            "",
            path,
            "no *.yaml file",
        )]));
    }
    let mut merged = Value::Null;
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    for p in &list {
        let text = match files.read(p) {
            Ok(t) => t,
            Err(e) => {
                b.errors
                    .push(Loc::key(p, "").err("", p, format!("cannot be read: {e}")));
                continue;
            }
        };
        match serde_norway::from_str::<Value>(&text) {
            Ok(Value::Null) => {}
            Ok(v) => merge(&mut merged, v, p, "", &mut origin, &mut b.errors),
            Err(e) => b
                .errors
                .push(Loc::key(p, "").err("", "", format!("not YAML: {e}"))),
        }
    }
    let joined = list.join(", ");
    let file_of = |key: &str| -> String {
        let f = first_file(&origin, key);
        if f.is_empty() {
            joined.clone()
        } else {
            f
        }
    };
    let mut cx = Cx {
        b: &mut b,
        file_of: &file_of,
    };
    convert(&mut cx, &merged);
    b.finish()
}

/// Merges `new` into `acc`, recording which file set each key.
fn merge(
    acc: &mut Value,
    new: Value,
    file: &str,
    path: &str,
    origin: &mut BTreeMap<String, String>,
    errors: &mut Vec<ImportError>,
) {
    match (acc, new) {
        (Value::Mapping(a), Value::Mapping(n)) => {
            for (k, v) in n {
                let ks = key_str(&k);
                let p = if path.is_empty() {
                    ks.clone()
                } else {
                    format!("{path}.{ks}")
                };
                match a.get_mut(&k) {
                    Some(slot) => merge(slot, v, file, &p, origin, errors),
                    None => {
                        a.insert(k, v);
                        origin.insert(p, file.to_owned());
                    }
                }
            }
        }
        (a @ Value::Sequence(_), n @ Value::Sequence(_)) => {
            if *a != n {
                let first = first_file(origin, path);
                errors.push(Loc::key(file, path).err("", &yaml(&n), format!("also set, differently, by {first}: which list wins (or whether they add up) is netplan version dependent; write it in one file")));
            }
        }
        (a, n) => {
            *a = n;
            origin.insert(path.to_owned(), file.to_owned());
        }
    }
}

/// The file that set `key`, or its closest ancestor.
fn first_file(origin: &BTreeMap<String, String>, key: &str) -> String {
    let mut k = key.to_owned();
    loop {
        if let Some(f) = origin.get(&k) {
            return f.clone();
        }
        if k.is_empty() {
            return String::new();
        }
        k.truncate(k.rfind('.').unwrap_or(0));
    }
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => yaml(other),
    }
}

fn yaml(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

struct Cx<'a> {
    b: &'a mut Builder,
    file_of: &'a dyn Fn(&str) -> String,
}

impl Cx<'_> {
    fn loc(&self, key: &str) -> Loc {
        Loc::key(&(self.file_of)(key), key)
    }

    fn err(&mut self, key: &str, v: &Value, why: impl Into<String>) {
        let e = self.loc(key).err("", &yaml(v), why);
        self.b.errors.push(e);
    }

    fn map<'v>(&mut self, key: &str, v: &'v Value) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            other => {
                self.err(key, other, "a mapping was expected");
                None
            }
        }
    }

    fn list<'v>(&mut self, key: &str, v: &'v Value) -> Vec<&'v Value> {
        match v {
            Value::Sequence(s) => s.iter().collect(),
            other => {
                self.err(key, other, "a list was expected");
                Vec::new()
            }
        }
    }

    fn name(&mut self, key: &str, v: &Value) -> Option<IfName> {
        let s = yaml(v);
        let loc = self.loc(key);
        self.b.name(&loc, key, &s)
    }
}

fn convert(cx: &mut Cx<'_>, root: &Value) {
    let Some(top) = cx.map("", root) else { return };
    for (k, v) in top {
        if key_str(k) != "network" {
            cx.err(&key_str(k), v, "only `network` is read");
        }
    }
    let Some(net) = top.get("network") else {
        cx.err("network", &Value::Null, "no `network` key");
        return;
    };
    let Some(net) = cx.map("network", net) else {
        return;
    };
    // Declare every id first (names for references).
    let sections = [
        ("ethernets", InterfaceType::Ethernet),
        ("bonds", InterfaceType::Bond),
        ("vlans", InterfaceType::Vlan),
        ("bridges", InterfaceType::LinuxBridge),
    ];
    let mut names: BTreeMap<String, IfName> = BTreeMap::new();
    for (k, v) in net {
        let ks = key_str(k);
        match ks.as_str() {
            "version" => {
                if v.as_u64() != Some(2) {
                    cx.err("network.version", v, "only version 2 exists");
                }
            }
            "renderer" => {
                let n =
                    cx.loc("network.renderer")
                        .note("renderer", &yaml(v), "hostd is the renderer");
                cx.b.notes.push(n);
            }
            "ethernets" | "bonds" | "vlans" | "bridges" => {}
            _ => cx.err(
                &format!("network.{ks}"),
                &Value::Null,
                "a section hostd cannot express (ethernets, bonds, bridges, vlans)",
            ),
        }
    }
    for (sec, kind) in sections {
        let Some(s) = net.get(sec) else { continue };
        let key = format!("network.{sec}");
        let Some(m) = cx.map(&key, s) else { continue };
        for (id, cfg) in m {
            let id = key_str(id);
            let ikey = format!("{key}.{id}");
            let name = if kind == InterfaceType::Ethernet {
                ethernet_name(cx, &ikey, &id, cfg)
            } else {
                cx.name(&ikey, &Value::String(id.clone()))
                    .map(|n| (n, None))
            };
            let Some((name, mac)) = name else { continue };
            let loc = cx.loc(&ikey);
            if let Some(i) = cx.b.iface(&name, kind, &loc) {
                i.mac_address = mac;
            }
            names.insert(id, name);
        }
    }
    for (sec, kind) in sections {
        let Some(Value::Mapping(m)) = net.get(sec) else {
            continue;
        };
        for (id, cfg) in m {
            let id = key_str(id);
            let Some(name) = names.get(&id).cloned() else {
                continue;
            };
            let ikey = format!("network.{sec}.{id}");
            device(cx, &ikey, &name, kind, cfg, &names);
        }
    }
}

/// An ethernet's kernel name: its id, `match: {name}` or `set-name`.
fn ethernet_name(
    cx: &mut Cx<'_>,
    key: &str,
    id: &str,
    cfg: &Value,
) -> Option<(IfName, Option<MacAddr>)> {
    let m = match cfg {
        Value::Mapping(m) => m,
        Value::Null => {
            return cx
                .name(key, &Value::String(id.to_owned()))
                .map(|n| (n, None))
        }
        other => {
            cx.err(key, other, "a mapping was expected");
            return None;
        }
    };
    let set_name = m.get("set-name");
    let Some(mt) = m.get("match") else {
        if let Some(s) = set_name {
            cx.err(&format!("{key}.set-name"), s, "set-name without match");
        }
        return cx
            .name(key, &Value::String(id.to_owned()))
            .map(|n| (n, None));
    };
    let mk = format!("{key}.match");
    let mt = cx.map(&mk, mt)?;
    let mut mac = None;
    let mut mname = None;
    for (k, v) in mt {
        match key_str(k).as_str() {
            "macaddress" => match yaml(v).parse::<MacAddr>() {
                Ok(m) => mac = Some(m),
                Err(e) => cx.err(&format!("{mk}.macaddress"), v, e),
            },
            "name" => {
                let s = yaml(v);
                if s.contains(['*', '?', '[']) {
                    cx.err(
                        &format!("{mk}.name"),
                        v,
                        "a name glob cannot be imported: hostd names each NIC",
                    );
                } else {
                    mname = Some(s);
                }
            }
            other => cx.err(
                &format!("{mk}.{other}"),
                v,
                "matching by this cannot be expressed (macaddress or name only)",
            ),
        }
    }
    match (set_name, mname, mac) {
        (Some(s), _, Some(mac)) => cx
            .name(&format!("{key}.set-name"), s)
            .map(|n| (n, Some(mac))),
        (Some(s), Some(n), None) if yaml(s) == n => {
            cx.name(&format!("{key}.set-name"), s).map(|n| (n, None))
        }
        (Some(s), _, None) => {
            cx.err(
                &format!("{key}.set-name"),
                s,
                "renaming needs match.macaddress (hostd renames a NIC found by MAC)",
            );
            None
        }
        (None, Some(n), mac) => cx.name(&mk, &Value::String(n)).map(|n| (n, mac)),
        (None, None, Some(_)) => {
            cx.err(
                &mk,
                &Value::Null,
                "match.macaddress without set-name: the kernel name is unknown",
            );
            None
        }
        (None, None, None) => cx
            .name(key, &Value::String(id.to_owned()))
            .map(|n| (n, None)),
    }
}

/// A duration in milliseconds: a number, or with `ms`/`s` (netplan's
/// networkd-style values).
fn millis(v: &Value) -> Option<u32> {
    if let Some(n) = v.as_u64() {
        return u32::try_from(n).ok();
    }
    let s = yaml(v);
    let s = s.trim();
    if let Some(x) = s.strip_suffix("ms") {
        return x.trim().parse().ok();
    }
    if let Some(x) = s.strip_suffix('s') {
        return x
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(|x| x.checked_mul(1000));
    }
    s.parse().ok()
}

/// Seconds (bridge timers): a number, or with `s`.
fn seconds(v: &Value) -> Option<u32> {
    if let Some(n) = v.as_u64() {
        return u32::try_from(n).ok();
    }
    let s = yaml(v);
    s.trim().strip_suffix('s').unwrap_or(s.trim()).parse().ok()
}

fn device(
    cx: &mut Cx<'_>,
    key: &str,
    name: &IfName,
    kind: InterfaceType,
    cfg: &Value,
    names: &BTreeMap<String, IfName>,
) {
    let m = match cfg {
        Value::Mapping(m) => m.clone(),
        Value::Null => Mapping::new(),
        other => {
            cx.err(key, other, "a mapping was expected");
            return;
        }
    };
    let loc = cx.loc(key);
    let refname = |cx: &mut Cx<'_>, k: &str, v: &Value| -> Option<IfName> {
        let s = yaml(v);
        match names.get(&s) {
            Some(n) => Some(n.clone()),
            None => {
                cx.err(
                    k,
                    v,
                    "not an interface defined in the netplan configuration",
                );
                None
            }
        }
    };
    let mut bond = BondConfig {
        mode: crate::bond::BondMode::BalanceRr,
        port: Vec::new(),
        options: BondOptions::default(),
    };
    let mut bridge = BridgeConfig::default();
    let mut vlan_id: Option<VlanId> = None;
    let mut vlan_link: Option<IfName> = None;
    for (k, v) in &m {
        let ks = key_str(k);
        let kk = format!("{key}.{ks}");
        match ks.as_str() {
            "match" | "set-name" if kind == InterfaceType::Ethernet => {}
            "addresses" => {
                for a in cx.list(&kk, v) {
                    match a {
                        Value::String(s) => match parse_address(s, None) {
                            Ok(addr) => cx.b.address(name, addr),
                            Err(e) => cx.err(&kk, a, e),
                        },
                        other => cx.err(&kk, other, "address options (lifetime, label) cannot be expressed"),
                    }
                }
            }
            "gateway4" | "gateway6" => match yaml(v).parse::<IpAddr>() {
                Ok(ip) if ip.is_ipv6() == (ks == "gateway6") => {
                    let l = cx.loc(&kk);
                    cx.b.route(&l, &kk, &yaml(v), super::default_route(ip, Some(name), None));
                }
                _ => cx.err(&kk, v, "not an address of the right family"),
            },
            "routes" => {
                for (i, r) in cx.list(&kk, v).into_iter().enumerate() {
                    route_entry(cx, &format!("{kk}[{i}]"), name, r);
                }
            }
            "nameservers" => {
                let Some(ns) = cx.map(&kk, v) else { continue };
                let mut servers = Vec::new();
                let mut search = Vec::new();
                for (nk, nv) in ns {
                    let nks = format!("{kk}.{}", key_str(nk));
                    match key_str(nk).as_str() {
                        "addresses" => {
                            for a in cx.list(&nks, nv) {
                                match yaml(a).parse::<IpAddr>() {
                                    Ok(ip) => servers.push(ip),
                                    Err(_) => cx.err(&nks, a, "not an IP address"),
                                }
                            }
                        }
                        "search" => {
                            for s in cx.list(&nks, nv) {
                                search.push(yaml(s));
                            }
                        }
                        _ => cx.err(&nks, nv, "unknown nameservers key"),
                    }
                }
                cx.b.dns(&servers, &search);
            }
            "mtu" => match v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| "not a number".to_owned()).and_then(Mtu::new) {
                Ok(mtu) => {
                    if let Some(i) = cx.b.iface(name, kind, &loc) {
                        i.mtu = Some(mtu);
                    }
                }
                Err(e) => cx.err(&kk, v, e),
            },
            "dhcp4" | "dhcp6" => {
                if v.as_bool() != Some(false) && yaml(v) != "no" && yaml(v) != "false" {
                    cx.err(&kk, v, "DHCP cannot be expressed in a hostd document (static addresses only)");
                }
            }
            "optional" | "critical" => {
                let n = cx.loc(&kk).note(&ks, &yaml(v), "boot-time waiting only; no kernel state");
                cx.b.notes.push(n);
            }
            "accept-ra" if v.as_bool() != Some(false) => {
                let n = cx.loc(&kk).note(&ks, &yaml(v), "the kernel's default; hostd leaves dynamic addresses alone");
                cx.b.notes.push(n);
            }
            "interfaces" if matches!(kind, InterfaceType::Bond | InterfaceType::LinuxBridge) => {
                for p in cx.list(&kk, v) {
                    let Some(n) = refname(cx, &kk, p) else { continue };
                    if kind == InterfaceType::Bond {
                        bond.port.push(n);
                    } else {
                        bridge.port.push(BridgePort { name: n, vlan: None });
                    }
                }
            }
            "parameters" if kind == InterfaceType::Bond => {
                let Some(pm) = cx.map(&kk, v) else { continue };
                for (pk, pv) in pm {
                    let pks = key_str(pk);
                    let pkk = format!("{kk}.{pks}");
                    let kernel = match pks.as_str() {
                        "mode" => {
                            match parse_bond_mode(&yaml(pv)) {
                                Ok(md) => bond.mode = md,
                                Err(e) => cx.err(&pkk, pv, e),
                            }
                            continue;
                        }
                        "lacp-rate" => "lacp_rate",
                        "mii-monitor-interval" => "miimon",
                        "min-links" => "min_links",
                        "transmit-hash-policy" => "xmit_hash_policy",
                        "ad-select" => "ad_select",
                        "all-members-active" | "all-slaves-active" => "all_slaves_active",
                        "arp-interval" => "arp_interval",
                        "arp-ip-targets" => "arp_ip_target",
                        "arp-validate" => "arp_validate",
                        "arp-all-targets" => "arp_all_targets",
                        "up-delay" => "updelay",
                        "down-delay" => "downdelay",
                        "fail-over-mac-policy" => "fail_over_mac",
                        "gratuitous-arp" | "gratuitious-arp" => "num_grat_arp",
                        "packets-per-member" | "packets-per-slave" => "packets_per_slave",
                        "primary-reselect-policy" => "primary_reselect",
                        "resend-igmp" => "resend_igmp",
                        "learn-packet-interval" => "lp_interval",
                        "primary" => "primary",
                        _ => {
                            cx.err(&pkk, pv, "a bond parameter hostd cannot express (or unknown)");
                            continue;
                        }
                    };
                    let text = match (kernel, pv) {
                        ("miimon" | "updelay" | "downdelay" | "arp_interval", v) => match millis(v) {
                            Some(ms) => ms.to_string(),
                            None => {
                                cx.err(&pkk, pv, "not a duration (milliseconds, or with ms/s)");
                                continue;
                            }
                        },
                        ("lp_interval", v) => match seconds(v) {
                            Some(s) => s.to_string(),
                            None => {
                                cx.err(&pkk, pv, "not a duration in seconds");
                                continue;
                            }
                        },
                        ("arp_ip_target", Value::Sequence(s)) => s.iter().map(yaml).collect::<Vec<_>>().join(","),
                        ("primary", v) => match refname(cx, &pkk, v) {
                            Some(n) => n.to_string(),
                            None => continue,
                        },
                        (_, v) => yaml(v),
                    };
                    if let Err(e) = set_bond_option(&mut bond.options, kernel, &text) {
                        cx.err(&pkk, pv, e);
                    }
                }
            }
            "parameters" if kind == InterfaceType::LinuxBridge => {
                let Some(pm) = cx.map(&kk, v) else { continue };
                let mut stp = StpOptions { enabled: true, ..StpOptions::default() };
                for (pk, pv) in pm {
                    let pks = key_str(pk);
                    let pkk = format!("{kk}.{pks}");
                    let ok = match pks.as_str() {
                        "stp" => pv.as_bool().map(|x| stp.enabled = x).is_some(),
                        "forward-delay" => seconds(pv).map(|x| stp.forward_delay = Some(x)).is_some(),
                        "hello-time" => seconds(pv).map(|x| stp.hello_time = Some(x)).is_some(),
                        "max-age" => seconds(pv).map(|x| stp.max_age = Some(x)).is_some(),
                        "priority" => pv.as_u64().and_then(|x| u16::try_from(x).ok()).map(|x| stp.priority = Some(x)).is_some(),
                        "ageing-time" | "aging-time" => seconds(pv).map(|x| bridge.options.mac_ageing_time = Some(x)).is_some(),
                        _ => {
                            cx.err(&pkk, pv, "a bridge parameter hostd cannot express (or unknown)");
                            continue;
                        }
                    };
                    if !ok {
                        cx.err(&pkk, pv, "a value hostd cannot express (whole seconds, a boolean, a number)");
                    }
                }
                bridge.options.stp = Some(stp);
            }
            "id" if kind == InterfaceType::Vlan => match v.as_u64().ok_or_else(|| "not a number".to_owned()).and_then(|n| VlanId::new(u32::try_from(n).unwrap_or(u32::MAX))) {
                Ok(i) => vlan_id = Some(i),
                Err(e) => cx.err(&kk, v, e),
            },
            "link" if kind == InterfaceType::Vlan => vlan_link = refname(cx, &kk, v),
            "macaddress" => cx.err(&kk, v, "setting a MAC address cannot be expressed (match.macaddress with set-name identifies a NIC)"),
            _ => cx.err(&kk, v, "a key hostd cannot express (or unknown)"),
        }
    }
    match kind {
        InterfaceType::Bond => {
            if let Some(i) = cx.b.iface(name, kind, &loc) {
                i.link_aggregation = Some(bond);
            }
        }
        InterfaceType::LinuxBridge => {
            // netplan (networkd) turns STP on unless `parameters.stp: false`.
            if bridge.options.stp.is_none() {
                bridge.options.stp = Some(StpOptions {
                    enabled: true,
                    ..StpOptions::default()
                });
            }
            if let Some(i) = cx.b.iface(name, kind, &loc) {
                i.bridge = Some(bridge);
            }
        }
        InterfaceType::Vlan => match (vlan_id, vlan_link) {
            (Some(id), Some(base)) => {
                if let Some(i) = cx.b.iface(name, kind, &loc) {
                    i.vlan = Some(VlanConfig {
                        base_iface: base,
                        id,
                        protocol: Default::default(),
                    });
                }
            }
            _ => cx.err(key, &Value::Null, "a VLAN needs both id and link"),
        },
        _ => {}
    }
}

fn route_entry(cx: &mut Cx<'_>, key: &str, dev: &IfName, r: &Value) {
    let Some(m) = cx.map(key, r) else { return };
    let mut to = None;
    let mut via = None;
    let mut metric = None;
    let mut table = None;
    for (k, v) in m {
        let ks = key_str(k);
        let kk = format!("{key}.{ks}");
        match ks.as_str() {
            "to" => {
                let s = yaml(v);
                let s = if s == "default" {
                    "0.0.0.0/0".to_owned()
                } else {
                    s
                };
                match s
                    .parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                {
                    Ok(n) => to = Some(n),
                    Err(_) => cx.err(&kk, v, "not a prefix"),
                }
            }
            "via" => match yaml(v).parse::<IpAddr>() {
                Ok(ip) => via = Some(ip),
                Err(_) => cx.err(&kk, v, "not an IP address"),
            },
            "metric" => match v.as_u64().and_then(|x| u32::try_from(x).ok()) {
                Some(x) => metric = Some(x),
                None => cx.err(&kk, v, "not a number"),
            },
            "table" => match v.as_u64().and_then(|x| u32::try_from(x).ok()) {
                Some(x) => table = Some(x),
                None => cx.err(&kk, v, "not a number"),
            },
            "on-link" if v.as_bool() == Some(false) => {}
            _ => cx.err(
                &kk,
                v,
                "a route key hostd cannot express (to, via, metric, table)",
            ),
        }
    }
    let Some(mut to) = to else {
        cx.err(key, &Value::Null, "a route without `to`");
        return;
    };
    // `to: default` follows the gateway's family.
    if to.prefix_len() == 0 && via.is_some_and(|v| v.is_ipv6()) {
        to = IpNet::V6(ipnet::Ipv6Net::default());
    }
    let l = cx.loc(key);
    cx.b.route(
        &l,
        key,
        &to.to_string(),
        route(to, via, Some(dev), metric, table),
    );
}
