//! Debian `/etc/network/interfaces` (ifupdown, ifupdown2).
//!
//! Read: `auto`/`allow-auto`/`allow-hotplug`, `iface NAME [inet|inet6
//! METHOD]` (static, manual; several stanzas of one name merged, as
//! ifupdown2 does), `source PATH-GLOB` and `source-directory DIR` (relative
//! paths are relative to the including file's directory), the address keys
//! (`address` with a prefix or `netmask`, `gateway`, `metric`, `mtu`,
//! `dns-nameservers`, `dns-search`, `dns-domain`), ifenslave/ifupdown2's
//! `bond-*`, bridge-utils/ifupdown2's `bridge-*` (also spelled `bridge_*`)
//! and `vlan-raw-device`/`vlan-id`/`vlan-protocol`. A `NAME.ID` bridge or
//! bond port without a stanza is a VLAN, as ifupdown2 creates it.
//!
//! Only what is brought up at boot is imported: `auto`/`allow-hotplug`
//! interfaces and, recursively, their lower devices (bond and bridge ports,
//! VLAN bases). Other stanzas are left out with a note.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    default_route, dirname, glob_match, join, parse_address, parse_bond_mode, parse_bool,
    parse_netmask, set_bond_option, Builder, Files, Import, ImportErrors, Loc,
};
use crate::{
    bond::{BondConfig, BondOptions},
    schema::{
        BridgeConfig, BridgePort, InterfaceType, PortVlan, PortVlanMode, StpOptions, TrunkTag,
        VlanConfig, VlanProtocol, VlanRange,
    },
    types::{IfName, Mtu, VlanId},
};

/// One option line of a stanza.
#[derive(Debug, Clone)]
struct Opt {
    key: String,
    value: String,
    loc: Loc,
    v6: bool,
}

/// All stanzas of one name, merged.
#[derive(Debug, Clone)]
struct Stanza {
    loc: Loc,
    /// (family is inet6, method, where)
    methods: Vec<(bool, String, Loc)>,
    opts: Vec<Opt>,
}

impl Stanza {
    fn get(&self, key: &str) -> Vec<&Opt> {
        self.opts.iter().filter(|o| o.key == key).collect()
    }

    fn first(&self, key: &str) -> Option<&Opt> {
        self.opts.iter().find(|o| o.key == key)
    }
}

#[derive(Debug, Default)]
struct Parsed {
    stanzas: BTreeMap<String, Stanza>,
    order: Vec<String>,
    auto: BTreeSet<String>,
}

/// Imports the interfaces file at `path` (and what it sources).
pub fn import(path: &str, files: &dyn Files) -> Result<Import, ImportErrors> {
    let mut b = Builder::default();
    let mut p = Parsed::default();
    let text = match files.read(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(ImportErrors(vec![Loc::key(path, "").err(
                "",
                path,
                format!("cannot be read: {e}"),
            )]))
        }
    };
    parse_file(path, &text, files, &mut p, &mut b, 0);
    convert(&p, &mut b);
    b.finish()
}

fn parse_file(
    path: &str,
    text: &str,
    files: &dyn Files,
    p: &mut Parsed,
    b: &mut Builder,
    depth: usize,
) {
    let mut current: Option<String> = None;
    // Inside a stanza already refused as a whole: its options add nothing.
    let mut refused = false;
    // Logical lines: a trailing backslash continues the line.
    let mut lines: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let (start, mut acc) = pending.take().unwrap_or((n, String::new()));
        let trimmed = raw.trim();
        if acc.is_empty() && (trimmed.starts_with('#') || trimmed.is_empty()) {
            continue;
        }
        if let Some(cont) = trimmed.strip_suffix('\\') {
            acc.push_str(cont);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(trimmed);
        lines.push((start, acc));
    }
    if let Some(l) = pending {
        lines.push(l);
    }
    for (n, line) in lines {
        let loc = Loc::line(path, n);
        let mut words = line.split_whitespace();
        let Some(kw) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        match kw {
            "auto" | "allow-auto" | "allow-hotplug" => {
                current = None;
                refused = false;
                for w in &rest {
                    p.auto.insert((*w).to_owned());
                }
            }
            "iface" => {
                let (Some(name), fam, method) = (rest.first(), rest.get(1), rest.get(2)) else {
                    b.errors
                        .push(loc.err("iface", &line, "an iface line without a name"));
                    current = None;
                    continue;
                };
                if rest.len() > 3 {
                    b.errors.push(loc.err(
                        "iface",
                        &rest[3..].join(" "),
                        "`inherits` and other iface extensions cannot be imported",
                    ));
                }
                let v6 = match fam.copied() {
                    None | Some("inet") => false,
                    Some("inet6") => true,
                    Some(f) => {
                        b.errors
                            .push(loc.err("iface", f, "address family other than inet/inet6"));
                        false
                    }
                };
                let method = match (fam, method) {
                    (None, _) => "manual".to_owned(),
                    (Some(_), Some(m)) => (*m).to_owned(),
                    (Some(_), None) => {
                        b.errors
                            .push(loc.err("iface", &line, "an iface line without a method"));
                        "manual".to_owned()
                    }
                };
                let name = (*name).to_owned();
                let st = p.stanzas.entry(name.clone()).or_insert_with(|| Stanza {
                    loc: loc.clone(),
                    methods: Vec::new(),
                    opts: Vec::new(),
                });
                if fam.is_some() {
                    st.methods.push((v6, method, loc.clone()));
                }
                if !p.order.contains(&name) {
                    p.order.push(name.clone());
                }
                current = Some(name);
                refused = false;
            }
            "source" | "source-directory" | "source-dir" => {
                current = None;
                let Some(target) = rest.first() else {
                    b.errors.push(loc.err(kw, "", "without a path"));
                    continue;
                };
                if depth > 16 {
                    b.errors.push(loc.err(
                        kw,
                        target,
                        "sources nested more than 16 deep (a loop?)",
                    ));
                    continue;
                }
                let target = if target.starts_with('/') {
                    (*target).to_owned()
                } else {
                    join(dirname(path), target)
                };
                let includes = if kw == "source" {
                    expand_glob(&target, files)
                } else {
                    // run-parts names: letters, digits, `_` and `-`.
                    files.list(&target).map(|mut names| {
                        names.retain(|n| {
                            !n.is_empty()
                                && n.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        });
                        names.sort();
                        names.into_iter().map(|n| join(&target, &n)).collect()
                    })
                };
                match includes {
                    Ok(list) => {
                        for f in list {
                            if files.is_dir(&f) {
                                continue;
                            }
                            match files.read(&f) {
                                Ok(t) => parse_file(&f, &t, files, p, b, depth + 1),
                                Err(e) => {
                                    b.errors
                                        .push(loc.err(kw, &f, format!("cannot be read: {e}")))
                                }
                            }
                        }
                    }
                    Err(e) => b.errors.push(loc.err(kw, &target, e)),
                }
            }
            "mapping" | "rename" | "template" => {
                current = None;
                refused = true;
                b.errors.push(loc.err(
                    kw,
                    &rest.join(" "),
                    "cannot be imported (hostd names interfaces itself; use mac-address for a NIC)",
                ));
            }
            "vlan" => {
                current = None;
                refused = true;
                b.errors.push(loc.err(
                    kw,
                    &rest.join(" "),
                    "ifupdown2 `vlan` stanzas (per-VLAN bridge attributes) cannot be imported",
                ));
            }
            k if k.starts_with("allow-") => {
                current = None;
                b.notes.push(loc.note(
                    k,
                    &rest.join(" "),
                    "an ifup class other than auto/hotplug: not brought up at boot",
                ));
            }
            _ => match &current {
                Some(name) => {
                    let v6 = p
                        .stanzas
                        .get(name)
                        .and_then(|s| s.methods.last())
                        .is_some_and(|m| m.0);
                    if let Some(st) = p.stanzas.get_mut(name) {
                        st.opts.push(Opt {
                            key: kw.to_ascii_lowercase().replace('_', "-"),
                            value: rest.join(" "),
                            loc,
                            v6,
                        });
                    }
                }
                None if refused => {}
                None => b.errors.push(loc.err(
                    kw,
                    &rest.join(" "),
                    "an option outside any iface stanza",
                )),
            },
        }
    }
}

/// `dir/pattern` expanded (sorted); a literal path is itself.
fn expand_glob(target: &str, files: &dyn Files) -> Result<Vec<String>, String> {
    let dir = dirname(target);
    let pat = &target[target.rfind('/').map_or(0, |i| i + 1)..];
    if dir.contains(['*', '?', '[']) {
        return Err("a wildcard in a directory part is not supported".into());
    }
    if !pat.contains(['*', '?', '[']) {
        return Ok(vec![target.to_owned()]);
    }
    // A pattern matching nothing is no error for ifupdown (an empty interfaces.d).
    let mut names: Vec<String> = files
        .list(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| glob_match(pat, n))
        .collect();
    names.sort();
    Ok(names.into_iter().map(|n| join(dir, &n)).collect())
}

fn words(v: &str) -> Vec<&str> {
    v.split_whitespace().collect()
}

/// The kind of `name` from its stanza (or its name for a stanza-less port).
fn kind_of(name: &str, st: Option<&Stanza>) -> InterfaceType {
    if let Some(st) = st {
        let has = |k: &str| st.first(k).is_some();
        if has("bond-slaves") || has("bond-ports") || has("bond-mode") {
            return InterfaceType::Bond;
        }
        if has("bridge-ports") || has("bridge-vlan-aware") {
            return InterfaceType::LinuxBridge;
        }
        if has("vlan-raw-device") || has("vlan-id") {
            return InterfaceType::Vlan;
        }
    }
    if vlan_from_name(name).is_some() {
        return InterfaceType::Vlan;
    }
    InterfaceType::Ethernet
}

/// `base.id` → (base, id).
fn vlan_from_name(name: &str) -> Option<(&str, u32)> {
    let (base, id) = name.rsplit_once('.')?;
    let id: u32 = id.parse().ok()?;
    (!base.is_empty()).then_some((base, id))
}

/// Names listed by `key` in a stanza (`none` is the empty list).
fn list_of(st: &Stanza, key: &str) -> Vec<(String, Loc)> {
    st.get(key)
        .into_iter()
        .flat_map(|o| {
            words(&o.value)
                .into_iter()
                .filter(|w| *w != "none")
                .map(|w| (w.to_owned(), o.loc.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn convert(p: &Parsed, b: &mut Builder) {
    // Lower devices of each interface, for the boot closure.
    let mut lowers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut masters: BTreeMap<String, Vec<(String, Loc)>> = BTreeMap::new();
    for (name, st) in &p.stanzas {
        let mut l: Vec<String> = list_of(st, "bond-slaves")
            .into_iter()
            .chain(list_of(st, "bond-ports"))
            .chain(list_of(st, "bridge-ports"))
            .map(|(n, _)| n)
            .collect();
        if let Some(o) = st.first("vlan-raw-device") {
            l.push(o.value.clone());
        } else if let Some((base, _)) = vlan_from_name(name) {
            l.push(base.to_owned());
        }
        lowers.entry(name.clone()).or_default().extend(l);
        // ifenslave's other direction: `bond-master bond0` on the port.
        if let Some(o) = st.first("bond-master") {
            masters
                .entry(o.value.clone())
                .or_default()
                .push((name.clone(), o.loc.clone()));
            lowers
                .entry(o.value.clone())
                .or_default()
                .push(name.clone());
        }
    }
    // Stanza-less dotted ports are VLANs over their base.
    let mut stack: Vec<String> = p
        .order
        .iter()
        .filter(|n| p.auto.contains(*n))
        .cloned()
        .collect();
    for a in &p.auto {
        if !p.stanzas.contains_key(a) && a != "lo" {
            stack.push(a.clone());
        }
    }
    let mut up: BTreeSet<String> = BTreeSet::new();
    while let Some(n) = stack.pop() {
        if n == "lo" || !up.insert(n.clone()) {
            continue;
        }
        if let Some(l) = lowers.get(&n) {
            stack.extend(l.iter().cloned());
        }
        if !p.stanzas.contains_key(&n) {
            if let Some((base, _)) = vlan_from_name(&n) {
                stack.push(base.to_owned());
            }
        }
    }
    for name in &p.order {
        if name == "lo" {
            if let Some(st) = p.stanzas.get(name) {
                for o in &st.opts {
                    b.errors.push(o.loc.err(
                        &o.key,
                        &o.value,
                        "options on the loopback cannot be imported (hostd does not manage lo)",
                    ));
                }
            }
            continue;
        }
        if !up.contains(name) {
            if let Some(st) = p.stanzas.get(name) {
                b.notes.push(st.loc.note("iface", name, "not brought up at boot (no auto/allow-hotplug, and no interface brought up uses it)"));
            }
        }
    }
    // Declare every interface brought up, stanzas first (in file order).
    let mut names: Vec<String> = p
        .order
        .iter()
        .filter(|n| up.contains(*n))
        .cloned()
        .collect();
    for n in &up {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    for name in &names {
        let st = p.stanzas.get(name);
        let loc = st.map_or_else(|| Loc::key("(implied)", name), |s| s.loc.clone());
        let Some(ifname) = b.name(&loc, "iface", name) else {
            continue;
        };
        let kind = kind_of(name, st);
        if b.iface(&ifname, kind, &loc).is_none() {
            continue;
        }
        if kind == InterfaceType::Vlan {
            vlan(b, &ifname, name, st, &loc);
        }
        if let Some(st) = st {
            stanza(
                b,
                &ifname,
                kind,
                st,
                masters.get(name).map(Vec::as_slice).unwrap_or(&[]),
                p,
            );
        }
    }
}

fn vlan(b: &mut Builder, ifname: &IfName, name: &str, st: Option<&Stanza>, loc: &Loc) {
    let raw = st.and_then(|s| s.first("vlan-raw-device"));
    let idopt = st.and_then(|s| s.first("vlan-id"));
    let from_name = vlan_from_name(name);
    let base = match (raw, from_name) {
        (Some(o), _) => Some((o.value.clone(), o.loc.clone())),
        (None, Some((base, _))) => Some((base.to_owned(), loc.clone())),
        (None, None) => None,
    };
    let id = match (idopt, from_name) {
        (Some(o), _) => o
            .value
            .parse::<u32>()
            .map_err(|_| (o.loc.clone(), o.value.clone()))
            .map(|i| (i, o.loc.clone())),
        (None, Some((_, id))) => Ok((id, loc.clone())),
        (None, None) => {
            // vlanNNN names (vlan-raw-device given): the id is the number.
            match name
                .strip_prefix("vlan")
                .and_then(|d| d.parse::<u32>().ok())
            {
                Some(i) => Ok((i, loc.clone())),
                None => Err((loc.clone(), name.to_owned())),
            }
        }
    };
    let Some((base, bloc)) = base else {
        b.errors.push(loc.err(
            "vlan-raw-device",
            name,
            "a VLAN without vlan-raw-device and not named BASE.ID",
        ));
        return;
    };
    let (id, iloc) = match id {
        Ok(x) => x,
        Err((l, v)) => {
            b.errors.push(l.err(
                "vlan-id",
                &v,
                "no VLAN id (vlan-id, or a name BASE.ID or vlanID)",
            ));
            return;
        }
    };
    let Some(base) = b.name(&bloc, "vlan-raw-device", &base) else {
        return;
    };
    let id = match VlanId::new(id) {
        Ok(i) => i,
        Err(e) => {
            b.errors.push(iloc.err("vlan-id", &id.to_string(), e));
            return;
        }
    };
    let mut protocol = VlanProtocol::Dot1Q;
    if let Some(o) = st.and_then(|s| s.first("vlan-protocol")) {
        match o.value.to_ascii_lowercase().as_str() {
            "802.1q" => {}
            "802.1ad" => protocol = VlanProtocol::Dot1Ad,
            _ => b.errors.push(
                o.loc
                    .err("vlan-protocol", &o.value, "one of 802.1q, 802.1ad"),
            ),
        }
    }
    if let Some(i) = b.iface(ifname, InterfaceType::Vlan, loc) {
        i.vlan = Some(VlanConfig {
            base_iface: base,
            id,
            protocol,
        });
    }
}

/// bond option keys whose ifupdown2 name is not the kernel's.
fn bond_alias(k: &str) -> String {
    match k {
        "ad-sys-priority" => "ad_actor_sys_prio".into(),
        "ad-sys-mac-addr" => "ad_actor_system".into(),
        "num-unsol-na" => "num_grat_arp".into(),
        "lacp-bypass-allow" => "lacp_bypass_allow".into(),
        other => other.replace('-', "_"),
    }
}

fn stanza(
    b: &mut Builder,
    ifname: &IfName,
    kind: InterfaceType,
    st: &Stanza,
    masters: &[(String, Loc)],
    p: &Parsed,
) {
    // Methods.
    for (v6, method, loc) in &st.methods {
        match (method.as_str(), *v6) {
            ("static", _) => b.static_family(ifname, *v6),
            ("manual", _) => {}
            ("auto", true) => b.notes.push(loc.note(
                "inet6",
                "auto",
                "SLAAC is the kernel's default; hostd leaves dynamic addresses alone",
            )),
            ("dhcp", _) => b.errors.push(loc.err(
                "iface",
                method,
                "DHCP cannot be expressed in a hostd document (static addresses only)",
            )),
            _ => b
                .errors
                .push(loc.err("iface", method, "method other than static or manual")),
        }
    }
    let mut bond = BondConfig {
        mode: crate::bond::BondMode::BalanceRr,
        port: Vec::new(),
        options: BondOptions::default(),
    };
    let mut bond_mode_set = false;
    let mut bridge = BridgeConfig::default();
    let mut stp = StpOptions::default();
    let mut stp_set = false;
    let mut bridge_ports: Vec<(String, Loc)> = Vec::new();
    let mut gateways: Vec<&Opt> = Vec::new();
    let mut metric: Option<u32> = None;
    for o in &st.opts {
        let k = o.key.as_str();
        let v = o.value.as_str();
        let bad = |b: &mut Builder, why: &str| b.errors.push(o.loc.err(k, v, why.to_owned()));
        match k {
            "address" => {
                let netmask = st
                    .opts
                    .iter()
                    .find(|x| x.key == "netmask" && x.v6 == o.v6)
                    .map(|x| x.value.as_str());
                for a in words(v) {
                    match parse_address(a, netmask) {
                        Ok(addr) => b.address(ifname, addr),
                        Err(e) => bad(b, &e),
                    }
                }
            }
            "netmask" => {
                if let Err(e) = parse_netmask(v, o.v6) {
                    bad(b, &e);
                }
            }
            "gateway" => gateways.push(o),
            "metric" => match v.parse() {
                Ok(m) => metric = Some(m),
                Err(_) => bad(b, "not a number"),
            },
            "mtu" => match v.parse::<u32>().map_err(|e| e.to_string()).and_then(Mtu::new) {
                Ok(m) => {
                    if let Some(i) = b.iface(ifname, kind, &st.loc) {
                        i.mtu = Some(m);
                    }
                }
                Err(e) => bad(b, &e),
            },
            "dns-nameservers" | "dns-nameserver" => {
                let mut servers = Vec::new();
                for w in words(v) {
                    match w.parse() {
                        Ok(ip) => servers.push(ip),
                        Err(_) => bad(b, "not an IP address"),
                    }
                }
                b.dns(&servers, &[]);
            }
            "dns-search" | "dns-domain" => {
                let s: Vec<String> = words(v).into_iter().map(str::to_owned).collect();
                b.dns(&[], &s);
            }
            "bond-slaves" | "bond-ports" => {
                for (n, l) in list_of(&Stanza { loc: o.loc.clone(), methods: vec![], opts: vec![o.clone()] }, k) {
                    if n.contains(['*', '?', '[']) || n.starts_with("regex") || n.starts_with("glob") {
                        b.errors.push(l.err(k, &n, "port globs and regexes cannot be imported: list the ports"));
                        continue;
                    }
                    if let Some(n) = b.name(&l, k, &n) {
                        bond.port.push(n);
                    }
                }
            }
            "bond-master" => {}
            "bond-mode" => match parse_bond_mode(v) {
                Ok(m) => {
                    bond.mode = m;
                    bond_mode_set = true;
                }
                Err(e) => bad(b, &e),
            },
            "bond-primary" => {
                if let Err(e) = set_bond_option(&mut bond.options, "primary", v) {
                    bad(b, &e);
                }
            }
            k if k.starts_with("bond-") => {
                let name = bond_alias(&k["bond-".len()..]);
                if let Err(e) = set_bond_option(&mut bond.options, &name, v) {
                    bad(b, &e);
                }
            }
            "bridge-ports" => {
                for w in words(v) {
                    if w == "none" {
                        continue;
                    }
                    if w.contains(['*', '?', '[']) || w == "regex" || w == "glob" {
                        bad(b, "port globs and regexes cannot be imported: list the ports");
                        continue;
                    }
                    bridge_ports.push((w.to_owned(), o.loc.clone()));
                }
            }
            "bridge-stp" => match parse_bool(v) {
                Some(on) => {
                    stp.enabled = on;
                    stp_set = true;
                }
                None => bad(b, "on or off"),
            },
            "bridge-fd" | "bridge-hello" | "bridge-maxage" => match v.parse::<f64>() {
                Ok(x) if x.fract() == 0.0 && x >= 0.0 => {
                    let x = x as u32;
                    match k {
                        "bridge-fd" => stp.forward_delay = Some(x),
                        "bridge-hello" => stp.hello_time = Some(x),
                        _ => stp.max_age = Some(x),
                    }
                    stp_set = true;
                }
                _ => bad(b, "whole seconds"),
            },
            "bridge-bridgeprio" => match v.parse() {
                Ok(x) => {
                    stp.priority = Some(x);
                    stp_set = true;
                }
                Err(_) => bad(b, "0..=65535"),
            },
            "bridge-ageing" => match v.parse() {
                Ok(x) => bridge.options.mac_ageing_time = Some(x),
                Err(_) => bad(b, "whole seconds"),
            },
            "bridge-mcsnoop" => match parse_bool(v) {
                Some(x) => bridge.options.multicast_snooping = Some(x),
                None => bad(b, "yes or no"),
            },
            "bridge-vlan-aware" => match parse_bool(v) {
                Some(x) => bridge.options.vlan_filtering = Some(x),
                None => bad(b, "yes or no"),
            },
            "bridge-vlan-protocol" => match v.to_ascii_lowercase().as_str() {
                "802.1q" => bridge.options.vlan_protocol = Some(VlanProtocol::Dot1Q),
                "802.1ad" => bridge.options.vlan_protocol = Some(VlanProtocol::Dot1Ad),
                _ => bad(b, "one of 802.1q, 802.1ad"),
            },
            // Port VLANs: read below, with the ports.
            "bridge-vids" | "bridge-pvid" | "bridge-access" => {}
            "bridge-maxwait" | "bridge-waitport" => b.notes.push(o.loc.note(k, v, "how long ifup waits at boot; no kernel state")),
            "vlan-raw-device" | "vlan-id" | "vlan-protocol" => {}
            "pre-up" | "up" | "post-up" | "down" | "pre-down" | "post-down" => bad(b, "commands cannot be expressed in a hostd document"),
            "hwaddress" => bad(b, "setting a MAC address cannot be expressed (hostd's mac-address identifies a NIC by its own MAC)"),
            _ => bad(b, "an option hostd cannot express (or unknown)"),
        }
    }
    // Classic ifenslave: `bond-master` on the ports, `bond-slaves none`.
    for (port, l) in masters {
        if let Some(n) = b.name(l, "bond-master", port) {
            if !bond.port.contains(&n) {
                bond.port.push(n);
            }
        }
    }
    // Gateways: one default route per family.
    let mut fams = BTreeSet::new();
    for g in gateways {
        match g.value.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                if !fams.insert(ip.is_ipv6()) {
                    b.errors.push(g.loc.err("gateway", &g.value, "a second gateway of the same family (hostd would need multipath; write it by hand)"));
                    continue;
                }
                let r = default_route(ip, Some(ifname), metric);
                b.route(&g.loc, "gateway", &g.value, r);
            }
            Err(_) => b
                .errors
                .push(g.loc.err("gateway", &g.value, "not an IP address")),
        }
    }
    match kind {
        InterfaceType::Bond => {
            if !bond_mode_set {
                // The kernel's default, as ifenslave leaves it.
                bond.mode = crate::bond::BondMode::BalanceRr;
            }
            if let Some(i) = b.iface(ifname, kind, &st.loc) {
                i.link_aggregation = Some(bond);
            }
        }
        InterfaceType::LinuxBridge => {
            if stp_set {
                bridge.options.stp = Some(stp);
            }
            let aware = bridge.options.vlan_filtering == Some(true);
            if !aware {
                for k in ["bridge-vids", "bridge-pvid", "bridge-access"] {
                    if let Some(o) = st.first(k) {
                        b.errors.push(o.loc.err(
                            k,
                            &o.value,
                            "port VLANs on a bridge without `bridge-vlan-aware yes`",
                        ));
                    }
                }
            }
            for (port, l) in bridge_ports {
                let Some(n) = b.name(&l, "bridge-ports", &port) else {
                    continue;
                };
                let vlan = if aware {
                    port_vlan(b, st, p.stanzas.get(&port))
                } else {
                    None
                };
                bridge.port.push(BridgePort { name: n, vlan });
            }
            if let Some(i) = b.iface(ifname, kind, &st.loc) {
                i.bridge = Some(bridge);
            }
        }
        _ => {
            // Port VLAN keys count only on a port of a VLAN-aware bridge.
            let aware_port = p.stanzas.values().any(|br| {
                br.first("bridge-vlan-aware")
                    .and_then(|o| parse_bool(&o.value))
                    .unwrap_or(false)
                    && list_of(br, "bridge-ports")
                        .iter()
                        .any(|(n, _)| n == ifname.as_str())
            });
            for o in &st.opts {
                let port_vlan_key = matches!(
                    o.key.as_str(),
                    "bridge-vids" | "bridge-pvid" | "bridge-access"
                );
                if o.key.starts_with("bond-") && o.key != "bond-master"
                    || port_vlan_key && !aware_port
                    || o.key.starts_with("bridge-")
                        && !port_vlan_key
                        && !matches!(o.key.as_str(), "bridge-maxwait" | "bridge-waitport")
                {
                    b.errors.push(o.loc.err(
                        &o.key,
                        &o.value,
                        format!("on a {} interface", kind.as_str()),
                    ));
                }
            }
        }
    }
}

/// A VLAN-aware bridge port's membership (ifupdown2): `bridge-access` on
/// the port; else `bridge-vids`/`bridge-pvid` on the port, defaulting to the
/// bridge's; the PVID defaults to 1.
fn port_vlan(b: &mut Builder, bridge: &Stanza, port: Option<&Stanza>) -> Option<PortVlan> {
    let get = |k: &str| port.and_then(|s| s.first(k)).or_else(|| bridge.first(k));
    let vid = |b: &mut Builder, o: &Opt, v: &str| match v
        .parse::<u32>()
        .map_err(|e| e.to_string())
        .and_then(VlanId::new)
    {
        Ok(i) => Some(i),
        Err(e) => {
            b.errors.push(o.loc.err(&o.key, v, e));
            None
        }
    };
    if let Some(o) = port.and_then(|s| s.first("bridge-access")) {
        let tag = vid(b, o, &o.value)?;
        return Some(PortVlan {
            mode: PortVlanMode::Access,
            tag: Some(tag),
            enable_native: false,
            trunk_tags: Vec::new(),
        });
    }
    let pvid = match get("bridge-pvid") {
        Some(o) => vid(b, o, &o.value)?,
        None => VlanId::new(1).ok()?,
    };
    let mut trunk_tags = Vec::new();
    if let Some(o) = get("bridge-vids") {
        for w in words(&o.value) {
            match w.split_once('-') {
                Some((lo, hi)) => {
                    let (Some(min), Some(max)) = (vid(b, o, lo), vid(b, o, hi)) else {
                        continue;
                    };
                    trunk_tags.push(TrunkTag {
                        id: None,
                        id_range: Some(VlanRange { min, max }),
                    });
                }
                None => {
                    if let Some(id) = vid(b, o, w) {
                        trunk_tags.push(TrunkTag {
                            id: Some(id),
                            id_range: None,
                        });
                    }
                }
            }
        }
    }
    Some(PortVlan {
        mode: PortVlanMode::Trunk,
        tag: Some(pvid),
        enable_native: true,
        trunk_tags,
    })
}
