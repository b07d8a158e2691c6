//! Does the kernel hold what a document says? Checked from iproute2's JSON
//! (`ip -d -j link`, `ip -j addr`, `ip -j route show table N`, `bridge -j
//! vlan`), independently of hostd's own netlink decoder and planner: the
//! differential test's oracle.

use std::collections::{BTreeMap, BTreeSet};

use hostd_core::{
    bond::BondOptions,
    model::VidFlags,
    plan::intent::{bridge_target, port_vlan_set},
    route::MAIN_TABLE,
    schema::{IfState, Interface, InterfaceType, NetworkState, Route, RouteState, VlanProtocol},
};
use ipnet::IpNet;
use serde_json::Value;

use crate::NetNs;

/// What the kernel holds, read once.
pub struct KernelView {
    links: BTreeMap<String, Value>,
    addrs: BTreeMap<String, Vec<Value>>,
    vlans: BTreeMap<String, Vec<Value>>,
}

impl KernelView {
    /// Reads `ns`.
    pub fn read(ns: &NetNs) -> Self {
        let j = |s: String| -> Value { serde_json::from_str(&s).unwrap_or(Value::Null) };
        let by_name = |v: Value| -> BTreeMap<String, Value> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| Some((l.get("ifname")?.as_str()?.to_owned(), l.clone())))
                .collect()
        };
        let links = by_name(j(ns.ip(&["-d", "-j", "link", "show"])));
        let addrs = by_name(j(ns.ip(&["-j", "addr", "show"])))
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.get("addr_info")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        let vlans = by_name(j(ns.run(&["bridge", "-j", "vlan", "show"])))
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.get("vlans")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        Self {
            links,
            addrs,
            vlans,
        }
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    Some(cur)
}

/// Every way the kernel differs from `d` (empty: it holds the document).
/// `ns` is read for routes (per table).
pub fn check(d: &NetworkState, ns: &NetNs) -> Vec<String> {
    let k = KernelView::read(ns);
    let mut out = Vec::new();
    let by_name: BTreeMap<&str, &Interface> =
        d.interfaces.iter().map(|i| (i.name.as_str(), i)).collect();
    // Controllers the document gives.
    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
    for w in d.interfaces.iter().filter(|w| w.state != IfState::Absent) {
        if let Some(b) = &w.link_aggregation {
            for p in &b.port {
                claimed.insert(p.as_str(), w.name.as_str());
            }
        }
        if let Some(b) = &w.bridge {
            for p in &b.port {
                claimed.insert(p.name.as_str(), w.name.as_str());
            }
        }
    }
    for w in &d.interfaces {
        let n = w.name.as_str();
        let l = k.links.get(n);
        if w.state == IfState::Absent {
            if w.kind.is_virtual() {
                if l.is_some() {
                    out.push(format!("{n}: exists, declared absent"));
                }
            } else if let Some(l) = l {
                if flags(l).contains("UP") {
                    out.push(format!("{n}: up, declared absent"));
                }
                if l.get("master").is_some() {
                    out.push(format!("{n}: still has a controller, declared absent"));
                }
                if !static_addrs(&k, n, None).is_empty() {
                    out.push(format!("{n}: still has addresses, declared absent"));
                }
            }
            continue;
        }
        let Some(l) = l else {
            out.push(format!("{n}: missing"));
            continue;
        };
        let kind = s(l, &["linkinfo", "info_kind"]).and_then(Value::as_str);
        let want_kind = match w.kind {
            InterfaceType::Bond => Some("bond"),
            InterfaceType::Vlan => Some("vlan"),
            InterfaceType::LinuxBridge => Some("bridge"),
            _ => None,
        };
        if want_kind.is_some() && kind != want_kind {
            out.push(format!("{n}: kind {kind:?}, declared {want_kind:?}"));
        }
        let up = flags(l).contains("UP");
        if up != (w.state == IfState::Up) {
            out.push(format!("{n}: up={up}, declared {:?}", w.state));
        }
        // MTU: declared, or a VLAN's base's declared one; bond ports follow.
        let mtu = l.get("mtu").and_then(Value::as_u64).unwrap_or(0) as u32;
        let want_mtu = match claimed.get(n) {
            Some(c)
                if by_name
                    .get(c)
                    .is_some_and(|c| c.kind == InterfaceType::Bond) =>
            {
                by_name.get(c).and_then(|c| c.mtu).map(|m| m.get())
            }
            _ => hostd_core::plan::intent::target_mtu(&by_name, w),
        };
        if let Some(m) = want_mtu {
            if m != mtu {
                out.push(format!("{n}: mtu {mtu}, declared {m}"));
            }
        }
        let master = l.get("master").and_then(Value::as_str);
        if master != claimed.get(n).copied() {
            out.push(format!(
                "{n}: controller {master:?}, declared {:?}",
                claimed.get(n)
            ));
        }
        if let Some(b) = &w.link_aggregation {
            let data = s(l, &["linkinfo", "info_data"])
                .cloned()
                .unwrap_or_default();
            let mode = data.get("mode").and_then(Value::as_str);
            if mode != Some(b.mode.as_str()) {
                out.push(format!(
                    "{n}: bond mode {mode:?}, declared {}",
                    b.mode.as_str()
                ));
            }
            out.extend(bond_option_mismatches(n, &b.options, &data));
        }
        if let Some(v) = &w.vlan {
            let data = s(l, &["linkinfo", "info_data"])
                .cloned()
                .unwrap_or_default();
            let id = data.get("id").and_then(Value::as_u64);
            if id != Some(u64::from(v.id.get())) {
                out.push(format!("{n}: vlan id {id:?}, declared {}", v.id));
            }
            let proto = data
                .get("protocol")
                .and_then(Value::as_str)
                .map(str::to_lowercase);
            let want = match v.protocol {
                VlanProtocol::Dot1Q => "802.1q",
                VlanProtocol::Dot1Ad => "802.1ad",
            };
            if proto.as_deref() != Some(want) {
                out.push(format!("{n}: vlan protocol {proto:?}, declared {want}"));
            }
            let base = l.get("link").and_then(Value::as_str);
            if base != Some(v.base_iface.as_str()) {
                out.push(format!(
                    "{n}: vlan base {base:?}, declared {}",
                    v.base_iface
                ));
            }
        }
        if let Some(b) = &w.bridge {
            let data = s(l, &["linkinfo", "info_data"])
                .cloned()
                .unwrap_or_default();
            let o = bridge_target(b);
            let num = |k: &str| data.get(k).and_then(Value::as_u64);
            if let Some(stp) = &o.stp {
                if (num("stp_state").unwrap_or(0) != 0) != stp.enabled {
                    out.push(format!(
                        "{n}: stp_state {:?}, declared {}",
                        num("stp_state"),
                        stp.enabled
                    ));
                }
                for (key, v) in [
                    (
                        "forward_delay",
                        stp.forward_delay.map(|x| u64::from(x) * 100),
                    ),
                    ("hello_time", stp.hello_time.map(|x| u64::from(x) * 100)),
                    ("max_age", stp.max_age.map(|x| u64::from(x) * 100)),
                    ("priority", stp.priority.map(u64::from)),
                ] {
                    if v.is_some() && num(key) != v {
                        out.push(format!("{n}: {key} {:?}, declared {v:?}", num(key)));
                    }
                }
            }
            if let Some(f) = o.vlan_filtering {
                if (num("vlan_filtering").unwrap_or(0) != 0) != f {
                    out.push(format!(
                        "{n}: vlan_filtering {:?}, declared {f}",
                        num("vlan_filtering")
                    ));
                }
            }
            if let Some(a) = o.mac_ageing_time {
                if num("ageing_time") != Some(u64::from(a) * 100) {
                    out.push(format!(
                        "{n}: ageing_time {:?}, declared {a} s",
                        num("ageing_time")
                    ));
                }
            }
            if let Some(m) = o.multicast_snooping {
                if (num("mcast_snooping").unwrap_or(0) != 0) != m {
                    out.push(format!(
                        "{n}: mcast_snooping {:?}, declared {m}",
                        num("mcast_snooping")
                    ));
                }
            }
            let own = b.vlan.as_ref().map(|v| (&w.name, v));
            for (pname, pv) in b
                .port
                .iter()
                .filter_map(|p| p.vlan.as_ref().map(|v| (&p.name, v)))
                .chain(own)
            {
                let want = port_vlan_set(pv);
                let have: BTreeMap<u16, VidFlags> = k
                    .vlans
                    .get(pname.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        let vid = e.get("vlan").and_then(Value::as_u64)? as u16;
                        let end = e.get("vlanEnd").and_then(Value::as_u64).map(|x| x as u16);
                        let fl: BTreeSet<&str> = e
                            .get("flags")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        Some((
                            vid,
                            end.unwrap_or(vid),
                            VidFlags {
                                pvid: fl.contains("PVID"),
                                untagged: fl.contains("Egress Untagged"),
                            },
                        ))
                    })
                    .flat_map(|(a, b, f)| (a..=b).map(move |v| (v, f)))
                    .collect();
                if have != want {
                    out.push(format!(
                        "{}: bridge VLANs {:?}, declared {:?}",
                        pname,
                        summarize(&have),
                        summarize(&want)
                    ));
                }
            }
        }
        for (v4, cfg) in [(true, &w.ipv4), (false, &w.ipv6)] {
            let Some(cfg) = cfg else { continue };
            let want: BTreeSet<IpNet> = cfg
                .address
                .iter()
                .filter_map(|a| IpNet::new(a.ip, a.prefix_length).ok())
                .collect();
            let have = static_addrs(&k, n, Some(v4));
            if have != want {
                out.push(format!("{n}: addresses {have:?}, declared {want:?}"));
            }
        }
    }
    out.extend(route_mismatches(d, ns));
    out
}

fn summarize(set: &BTreeMap<u16, VidFlags>) -> String {
    let mut parts = Vec::new();
    let mut it = set.iter().peekable();
    while let Some((&v, f)) = it.next() {
        let mut end = v;
        while let Some((&n, g)) = it.peek() {
            if n == end + 1 && *g == f {
                end = n;
                it.next();
            } else {
                break;
            }
        }
        let mut p = if end == v {
            v.to_string()
        } else {
            format!("{v}-{end}")
        };
        if f.pvid {
            p.push_str(" pvid");
        }
        if f.untagged {
            p.push_str(" untagged");
        }
        parts.push(p);
    }
    parts.join(", ")
}

fn flags(l: &Value) -> BTreeSet<String> {
    l.get("flags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

/// Static (no lifetime), global addresses of `n` (of one family when
/// `v4` is given).
fn static_addrs(k: &KernelView, n: &str, v4: Option<bool>) -> BTreeSet<IpNet> {
    k.addrs
        .get(n)
        .into_iter()
        .flatten()
        .filter(|a| a.get("scope").and_then(Value::as_str) != Some("link"))
        .filter(|a| a.get("dynamic").and_then(Value::as_bool) != Some(true))
        .filter(|a| {
            v4.is_none_or(|v4| (a.get("family").and_then(Value::as_str) == Some("inet")) == v4)
        })
        .filter_map(|a| {
            let ip: std::net::IpAddr = a.get("local")?.as_str()?.parse().ok()?;
            let p = a.get("prefixlen")?.as_u64()? as u8;
            IpNet::new(ip, p).ok()
        })
        .collect()
}

/// iproute2's key for each bond option, and how it prints the value.
fn bond_option_mismatches(n: &str, o: &BondOptions, data: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let want = serde_json::to_value(o).unwrap_or_default();
    let Some(want) = want.as_object() else {
        return out;
    };
    for (name, v) in want {
        let (key, have): (&str, Option<Value>) = match name.as_str() {
            "num_grat_arp" => ("num_peer_notif", data.get("num_peer_notif").cloned()),
            "lacp_rate" => ("ad_lacp_rate", data.get("ad_lacp_rate").cloned()),
            "peer_notif_delay" => ("peer_notify_delay", data.get("peer_notify_delay").cloned()),
            "missed_max" => ("arp_missed_max", data.get("arp_missed_max").cloned()),
            "lacp_active" => (
                "ad_lacp_active",
                data.get("ad_lacp_active")
                    .and_then(Value::as_str)
                    .map(|s| Value::Bool(s == "on")),
            ),
            "arp_validate" => (
                "arp_validate",
                Some(
                    data.get("arp_validate")
                        .filter(|v| !v.is_null())
                        .cloned()
                        .unwrap_or(Value::String("none".into())),
                ),
            ),
            "arp_ip_target" => (
                "arp_ip_target",
                Some(
                    data.get("arp_ip_target")
                        .cloned()
                        .unwrap_or(Value::Array(vec![])),
                ),
            ),
            "use_carrier" | "all_slaves_active" | "tlb_dynamic_lb" => (
                name.as_str(),
                data.get(name.as_str())
                    .and_then(Value::as_u64)
                    .map(|x| Value::Bool(x != 0)),
            ),
            other => (other, data.get(other).cloned()),
        };
        if have.as_ref() != Some(v) {
            out.push(format!(
                "{n}: bond option {name} (iproute2 {key}) is {have:?}, declared {v}"
            ));
        }
    }
    out
}

fn route_mismatches(d: &NetworkState, ns: &NetNs) -> Vec<String> {
    let mut out = Vec::new();
    let mut tables: BTreeMap<(u32, bool), Vec<Value>> = BTreeMap::new();
    for r in &d.routes.config {
        let k = r.key();
        let v4 = matches!(r.destination, IpNet::V4(_));
        let list = tables.entry((k.table, v4)).or_insert_with(|| {
            let fam = if v4 { "-4" } else { "-6" };
            serde_json::from_str::<Value>(&ns.ip(&[
                fam,
                "-j",
                "route",
                "show",
                "table",
                &k.table.to_string(),
            ]))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
        });
        let found = list.iter().find(|e| route_key_matches(r, e));
        match (r.state, found) {
            // A route with this key that hostd did not install may stay
            // only if it is someone else's (not proto static).
            (RouteState::Absent, Some(e))
                if e.get("protocol").and_then(Value::as_str) == Some("static") =>
            {
                out.push(format!("route {}: present, declared absent", r.key()));
            }
            (RouteState::Present, None) => out.push(format!("route {r}: missing")),
            (RouteState::Present, Some(e)) => {
                if let Some(m) = route_hops_mismatch(r, e) {
                    out.push(format!("route {r}: {m}"));
                }
            }
            _ => {}
        }
    }
    out
}

fn route_key_matches(r: &Route, e: &Value) -> bool {
    let k = r.key();
    let dst = e.get("dst").and_then(Value::as_str).unwrap_or("");
    let dst_ok = if k.destination.prefix_len() == 0 {
        dst == "default"
    } else {
        dst.parse::<IpNet>().ok() == Some(k.destination)
            || (dst.parse::<std::net::IpAddr>().ok() == Some(k.destination.addr())
                && k.destination.prefix_len() == k.destination.max_prefix_len())
    };
    let metric = e.get("metric").and_then(Value::as_u64).unwrap_or(0) as u32;
    let _ = MAIN_TABLE;
    dst_ok && metric == k.metric && e.get("type").is_none_or(|t| t == "unicast")
}

fn route_hops_mismatch(r: &Route, e: &Value) -> Option<String> {
    let n = r.normalized();
    let hop = |gw: Option<&Value>, dev: Option<&Value>, w: Option<&Value>| {
        (
            gw.and_then(Value::as_str)
                .and_then(|s| s.parse::<std::net::IpAddr>().ok()),
            dev.and_then(Value::as_str).map(str::to_owned),
            w.and_then(Value::as_u64).unwrap_or(1) as u16,
        )
    };
    let have: Vec<_> = match e.get("nexthops").and_then(Value::as_array) {
        Some(hops) => hops
            .iter()
            .map(|h| hop(h.get("gateway"), h.get("dev"), h.get("weight")))
            .collect(),
        None => vec![hop(e.get("gateway"), e.get("dev"), None)],
    };
    let want: Vec<_> = n
        .next_hops()
        .into_iter()
        .map(|h| {
            (
                h.next_hop_address,
                h.next_hop_interface.map(|i| i.to_string()),
                h.weight.unwrap_or(1),
            )
        })
        .collect();
    let matches = want.len() == have.len()
        && want.iter().all(|(gw, dev, w)| {
            have.iter()
                .any(|(g, d, x)| g == gw && x == w && (dev.is_none() || d == dev))
        });
    (!matches).then(|| format!("next hops {have:?}, declared {want:?}"))
}
