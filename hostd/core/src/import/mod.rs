//! Importers: a host's existing network configuration turned into a hostd
//! desired-state document (`hostd import --from eni|ifcfg|netplan PATH`).
//!
//! - [`eni`]: Debian `/etc/network/interfaces` (ifupdown and ifupdown2's
//!   `bond-*`, `bridge-*`, `vlan-*` keywords, `source`/`source-directory`).
//! - [`ifcfg`]: RHEL `ifcfg-*` (and `route-*`/`route6-*`) files.
//! - [`netplan`]: netplan YAML, files merged in netplan's order.
//!
//! The importers do no I/O: the caller passes a [`Files`] that reads the
//! files and lists directories (the CLI reads the file system, the tests an
//! in-memory [`MemFiles`]). Whatever a source says that a hostd document
//! cannot express is an [`ImportError`] naming the file, the line (or YAML
//! key) and the value; nothing is dropped silently. Settings that leave no
//! kernel state (ifupdown's boot-time wait knobs, NetworkManager's
//! bookkeeping keys, netplan's `renderer`) are left out with a [`Import::notes`]
//! line each. Every imported document passes [`crate::validate::validate`].

pub mod eni;
pub mod ifcfg;
pub mod netplan;

use std::{collections::BTreeMap, fmt, net::IpAddr};

use ipnet::IpNet;

use crate::{
    bond::{BondMode, BondOptions},
    schema::{
        DnsConfig, DnsResolver, Interface, InterfaceType, IpAddress, IpConfig, NetworkState, Route,
        Routes,
    },
    types::IfName,
};

/// The source formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Debian `/etc/network/interfaces`.
    Eni,
    /// RHEL `ifcfg-*`.
    Ifcfg,
    /// netplan YAML.
    Netplan,
}

/// Read access to the source files, given by the caller.
pub trait Files {
    /// The text of the file at `path`.
    fn read(&self, path: &str) -> Result<String, String>;
    /// True when `path` is a directory.
    fn is_dir(&self, path: &str) -> bool;
    /// The names (not paths) of the entries of directory `dir`, in any order.
    fn list(&self, dir: &str) -> Result<Vec<String>, String>;
}

/// Files held in memory, by absolute path (tests, and callers that have the
/// texts already). Directories are implied by the paths.
#[derive(Debug, Clone, Default)]
pub struct MemFiles(pub BTreeMap<String, String>);

impl MemFiles {
    /// From `(path, text)` pairs.
    pub fn new<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            files
                .into_iter()
                .map(|(p, t)| (p.to_owned(), t.to_owned()))
                .collect(),
        )
    }
}

impl Files for MemFiles {
    fn read(&self, path: &str) -> Result<String, String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| "No such file or directory".to_owned())
    }

    fn is_dir(&self, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.0.keys().any(|k| k.starts_with(&prefix))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, String> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut names: Vec<String> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .collect();
        names.dedup();
        if names.is_empty() {
            return Err("No such file or directory".into());
        }
        Ok(names)
    }
}

/// `dir/name`.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{}/{}", dir.trim_end_matches('/'), name)
    }
}

/// The directory part of `path` (`.` when none).
pub(crate) fn dirname(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    }
}

/// One thing a source says that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The file.
    pub file: String,
    /// Where in it: `line N` or a YAML key path.
    pub at: String,
    /// The keyword or key.
    pub key: String,
    /// Its value as written.
    pub value: String,
    /// Why it cannot be imported.
    pub reason: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.file.is_empty() {
            return f.write_str(&self.reason);
        }
        write!(f, "{}", self.file)?;
        if !self.at.is_empty() {
            write!(f, ":{}", self.at)?;
        }
        if !self.key.is_empty() && self.key != self.at {
            write!(f, ": {}", self.key)?;
        }
        write!(f, " {:?}: {}", self.value, self.reason)
    }
}

/// Everything that could not be imported (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ImportErrors(pub Vec<ImportError>);

impl fmt::Display for ImportErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} thing(s) cannot be imported:", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// An imported document.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// The desired state (valid).
    pub state: NetworkState,
    /// Settings left out because they leave no kernel state, one line each.
    pub notes: Vec<String>,
}

/// Where a value came from (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loc {
    pub file: String,
    pub at: String,
}

impl Loc {
    pub fn line(file: &str, line: usize) -> Self {
        Self {
            file: file.to_owned(),
            at: format!("line {line}"),
        }
    }

    pub fn key(file: &str, key: &str) -> Self {
        Self {
            file: file.to_owned(),
            at: key.to_owned(),
        }
    }

    pub fn err(&self, key: &str, value: &str, reason: impl Into<String>) -> ImportError {
        ImportError {
            file: self.file.clone(),
            at: self.at.clone(),
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn note(&self, key: &str, value: &str, reason: &str) -> String {
        format!(
            "{}:{}: {key} {value:?} left out: {reason}",
            self.file, self.at
        )
    }
}

/// Collects interfaces, routes and DNS; [`Builder::finish`] validates.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    ifaces: Vec<(Interface, Loc)>,
    routes: Vec<Route>,
    dns: DnsConfig,
    pub errors: Vec<ImportError>,
    pub notes: Vec<String>,
}

impl Builder {
    /// An interface name, or an error.
    pub fn name(&mut self, loc: &Loc, key: &str, name: &str) -> Option<IfName> {
        match IfName::new(name) {
            Ok(n) => Some(n),
            Err(e) => {
                self.errors.push(loc.err(key, name, e));
                None
            }
        }
    }

    /// The interface `name`, created with `kind` if new. A second kind for
    /// the same name is an error (None).
    pub fn iface(
        &mut self,
        name: &IfName,
        kind: InterfaceType,
        loc: &Loc,
    ) -> Option<&mut Interface> {
        match self.ifaces.iter().position(|(i, _)| i.name == *name) {
            Some(p) if self.ifaces[p].0.kind == kind => Some(&mut self.ifaces[p].0),
            Some(p) => {
                let first = self.ifaces[p].1.clone();
                let had = self.ifaces[p].0.kind;
                self.errors.push(loc.err(
                    "",
                    name.as_str(),
                    format!(
                        "is a {} here but a {} at {}:{}",
                        kind.as_str(),
                        had.as_str(),
                        first.file,
                        first.at
                    ),
                ));
                None
            }
            None => {
                self.ifaces
                    .push((Interface::new(name.clone(), kind), loc.clone()));
                self.ifaces.last_mut().map(|(i, _)| i)
            }
        }
    }

    /// True when `name` is declared.
    pub fn has(&self, name: &str) -> bool {
        self.ifaces.iter().any(|(i, _)| i.name.as_str() == name)
    }

    /// Adds a static address to `name`'s family list.
    pub fn address(&mut self, name: &IfName, addr: IpAddress) {
        if let Some((i, _)) = self.ifaces.iter_mut().find(|(i, _)| i.name == *name) {
            let cfg = if addr.ip.is_ipv4() {
                i.ipv4.get_or_insert_with(IpConfig::default)
            } else {
                i.ipv6.get_or_insert_with(IpConfig::default)
            };
            if !cfg.address.contains(&addr) {
                cfg.address.push(addr);
            }
        }
    }

    /// Marks `name`'s family as static (the exact list, maybe empty).
    pub fn static_family(&mut self, name: &IfName, v6: bool) {
        if let Some((i, _)) = self.ifaces.iter_mut().find(|(i, _)| i.name == *name) {
            if v6 {
                i.ipv6.get_or_insert_with(IpConfig::default);
            } else {
                i.ipv4.get_or_insert_with(IpConfig::default);
            }
        }
    }

    /// Adds a route; one with the same destination, table and metric as one
    /// already added is an error.
    pub fn route(&mut self, loc: &Loc, key: &str, value: &str, r: Route) {
        let same = |a: &Route| {
            a.destination == r.destination && a.table_id == r.table_id && a.metric == r.metric
        };
        if let Some(old) = self.routes.iter().find(|a| same(a)) {
            if *old != r {
                self.errors.push(loc.err(
                    key,
                    value,
                    format!(
                        "a second route to {} (table {}, metric {}): hostd identifies routes by destination, table and metric",
                        r.destination,
                        r.table_id.unwrap_or(254),
                        r.metric.map_or("default".to_owned(), |m| m.to_string())
                    ),
                ));
            }
            return;
        }
        self.routes.push(r);
    }

    /// Adds name servers and search domains (deduplicated, in order).
    pub fn dns(&mut self, servers: &[IpAddr], search: &[String]) {
        for s in servers {
            if !self.dns.server.contains(s) {
                self.dns.server.push(*s);
            }
        }
        for s in search {
            if !self.dns.search.contains(s) {
                self.dns.search.push(s.clone());
            }
        }
    }

    /// The document, validated; or every error found.
    pub fn finish(self) -> Result<Import, ImportErrors> {
        if !self.errors.is_empty() {
            return Err(ImportErrors(self.errors));
        }
        let rank = |k: InterfaceType| match k {
            InterfaceType::Ethernet => 0,
            InterfaceType::Bond => 1,
            InterfaceType::Vlan => 2,
            _ => 3,
        };
        let mut ifaces = self.ifaces;
        let mut notes = self.notes;
        ifaces.sort_by_key(|(i, _)| rank(i.kind));
        // A forward delay outside STP's 2..=30 s (`bridge_fd 0`, common on
        // hypervisors) does nothing with STP off; hostd refuses it, so it is
        // left out there (with STP on it stays, and validation names it).
        for (i, loc) in &mut ifaces {
            let name = i.name.to_string();
            if let Some(stp) = i.bridge.as_mut().and_then(|b| b.options.stp.as_mut()) {
                if let Some(fd) = stp
                    .forward_delay
                    .filter(|fd| !stp.enabled && !(2..=30).contains(fd))
                {
                    stp.forward_delay = None;
                    notes.push(loc.note(
                        &format!("{name}: forward delay"),
                        &fd.to_string(),
                        "outside STP's 2..=30 s, and without effect with STP off",
                    ));
                }
            }
        }
        let state = NetworkState {
            interfaces: ifaces.into_iter().map(|(i, _)| i).collect(),
            routes: Routes {
                config: self.routes,
            },
            dns_resolver: (self.dns != DnsConfig::default())
                .then_some(DnsResolver { config: self.dns }),
            firewall: None,
            telemetry: None,
        };
        if state.interfaces.is_empty() {
            return Err(ImportErrors(vec![ImportError {
                file: String::new(),
                at: String::new(),
                key: String::new(),
                value: String::new(),
                reason: "no interface to import (only loopback, or nothing brought up at boot)"
                    .into(),
            }]));
        }
        if let Err(v) = crate::validate::validate(&state) {
            return Err(ImportErrors(
                v.0.iter()
                    .map(|e| ImportError {
                        file: "(imported document)".into(),
                        at: String::new(),
                        key: String::new(),
                        value: String::new(),
                        reason: format!("fails hostd's validation: {e}"),
                    })
                    .collect(),
            ));
        }
        Ok(Import { state, notes })
    }
}

/// A yes/no value (`yes`, `on`, `true`, `1` and their opposites).
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" | "1" | "y" => Some(true),
        "no" | "off" | "false" | "0" | "n" => Some(false),
        _ => None,
    }
}

/// A bond mode by kernel name or number.
pub(crate) fn parse_bond_mode(v: &str) -> Result<BondMode, String> {
    if let Ok(n) = v.parse::<u8>() {
        return BondMode::from_number(n).ok_or_else(|| format!("no bond mode number {n}"));
    }
    BondMode::ALL
        .into_iter()
        .find(|m| m.as_str() == v)
        .ok_or_else(|| {
            format!(
                "unknown bond mode (one of {})",
                BondMode::ALL.map(BondMode::as_str).join(", ")
            )
        })
}

/// Sets the kernel bond option `name` (as in /sys/class/net/BOND/bonding/)
/// from its text, as the kernel's sysfs files take it: numbers, names, or an
/// enum's number; `arp_ip_target` a list separated by commas or blanks.
pub(crate) fn set_bond_option(
    opts: &mut BondOptions,
    name: &str,
    value: &str,
) -> Result<(), String> {
    use crate::bond::{
        AdSelect, ArpAllTargets, ArpValidate, FailOverMac, LacpRate, PrimaryReselect,
        XmitHashPolicy,
    };
    use serde_json::Value;
    if crate::bond::BondOptionDef::by_name(name).is_none() {
        return Err(format!("hostd has no bond option {name}"));
    }
    // The kernel takes an enum's number too (`lacp_rate 1`); the schema takes names.
    let n = value.parse::<u32>().ok();
    let enum_name = n.and_then(|n| match name {
        "lacp_rate" => LacpRate::from_number(n).map(LacpRate::as_str),
        "xmit_hash_policy" => XmitHashPolicy::from_number(n).map(XmitHashPolicy::as_str),
        "ad_select" => AdSelect::from_number(n).map(AdSelect::as_str),
        "primary_reselect" => PrimaryReselect::from_number(n).map(PrimaryReselect::as_str),
        "arp_validate" => ArpValidate::from_number(n).map(ArpValidate::as_str),
        "arp_all_targets" => ArpAllTargets::from_number(n).map(ArpAllTargets::as_str),
        "fail_over_mac" => FailOverMac::from_number(n).map(FailOverMac::as_str),
        _ => None,
    });
    let mut candidates: Vec<Value> = Vec::new();
    if name == "arp_ip_target" {
        candidates.push(Value::Array(
            value
                .split([',', ' ', '\t'])
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ));
    } else {
        if let Some(e) = enum_name {
            candidates.push(Value::String(e.to_owned()));
        }
        if let Some(n) = n {
            candidates.push(Value::from(n));
        }
        if let Some(b) = parse_bool(value) {
            candidates.push(Value::Bool(b));
        }
        candidates.push(Value::String(value.to_owned()));
    }
    let mut last = String::new();
    for c in candidates {
        let mut obj = serde_json::Map::new();
        obj.insert(name.to_owned(), c);
        match serde_json::from_value::<BondOptions>(Value::Object(obj)) {
            Ok(o) => {
                opts.merge(&o);
                return Ok(());
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("not a valid {name}: {last}"))
}

/// An address with an optional `/prefix`; without one, `netmask` (dotted
/// or a length) gives the prefix.
pub(crate) fn parse_address(v: &str, netmask: Option<&str>) -> Result<IpAddress, String> {
    if let Ok(net) = v.parse::<IpNet>() {
        return Ok(IpAddress {
            ip: net.addr(),
            prefix_length: net.prefix_len(),
        });
    }
    let ip: IpAddr = v
        .parse()
        .map_err(|_| "not an IP address (with an optional /prefix)".to_owned())?;
    let Some(mask) = netmask else {
        return Err("an address without a prefix length or netmask".into());
    };
    let prefix_length = parse_netmask(mask, ip.is_ipv6())?;
    Ok(IpAddress { ip, prefix_length })
}

/// A netmask, dotted (`255.255.255.0`) or a prefix length.
pub(crate) fn parse_netmask(mask: &str, v6: bool) -> Result<u8, String> {
    let max = if v6 { 128 } else { 32 };
    if let Ok(n) = mask.parse::<u8>() {
        if n <= max {
            return Ok(n);
        }
        return Err(format!("prefix length {n} is more than {max}"));
    }
    let m: std::net::Ipv4Addr = mask.parse().map_err(|_| format!("not a netmask: {mask}"))?;
    let bits = u32::from(m);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(format!("not a contiguous netmask: {mask}"));
    }
    Ok(bits.leading_ones() as u8)
}

/// The default route of `gw`'s family through `dev`.
pub(crate) fn default_route(gw: IpAddr, dev: Option<&IfName>, metric: Option<u32>) -> Route {
    let destination: IpNet = if gw.is_ipv4() {
        IpNet::V4(ipnet::Ipv4Net::default())
    } else {
        IpNet::V6(ipnet::Ipv6Net::default())
    };
    route(destination, Some(gw), dev, metric, None)
}

/// A route.
pub(crate) fn route(
    destination: IpNet,
    via: Option<IpAddr>,
    dev: Option<&IfName>,
    metric: Option<u32>,
    table: Option<u32>,
) -> Route {
    Route {
        destination: destination.trunc(),
        next_hop_address: via,
        next_hop_interface: dev.cloned(),
        multipath: Vec::new(),
        metric,
        table_id: table,
        state: crate::schema::RouteState::Present,
        protocol: None,
    }
}

/// Matches `name` against a shell glob of `*`, `?` and `[...]` classes
/// (`source /etc/network/interfaces.d/*`). Hand-written: the patterns are
/// one path component, and the glob crates read the file system themselves.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    fn rec(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| rec(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && rec(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(1).position(|c| *c == ']').map(|e| e + 1) else {
                    return n.first() == Some(&'[') && rec(&p[1..], &n[1..]);
                };
                let Some(c) = n.first() else { return false };
                let class = &p[1..end];
                let (neg, class) = match class.first() {
                    Some('!') | Some('^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= *c && *c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == *c;
                        i += 1;
                    }
                }
                hit != neg && rec(&p[end + 1..], &n[1..])
            }
            Some(ch) => n.first() == Some(ch) && rec(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // A leading dot is matched only explicitly, as in the shell.
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    rec(&p, &n)
}

#[cfg(test)]
mod tests;
