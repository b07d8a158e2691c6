//! The netlink state of a namespace as iproute2 prints it (links with
//! details, addresses, routes of both families in every table, bridge
//! VLANs), for "the host is exactly as before" comparisons. Read with
//! iproute2, not with hostd's own decoder, so a mistake in hostd's model
//! cannot hide itself.
//!
//! Everything that is configuration is compared. [`IGNORED`] lists each key
//! left out, with the reason, and [`without_kernel_derived`] the values the
//! kernel derives by itself (IPv6 link-locals, a running STP's ageing
//! time), with the reason; nothing else is dropped.

use std::time::Duration;

use serde_json::Value;

use crate::{wait::scaled, NetNs};

/// Keys that are not configuration, and why they are left out.
pub const IGNORED: &[(&str, &str)] = &[
    // Clocks.
    ("hello_timer", "a running STP timer"),
    ("tcn_timer", "a running STP timer"),
    ("topology_change_timer", "a running STP timer"),
    ("gc_timer", "the bridge's FDB garbage-collection clock"),
    ("hold_timer", "a running STP port timer"),
    ("message_age_timer", "a running STP port timer"),
    ("forward_delay_timer", "a running STP port timer"),
    (
        "valid_life_time",
        "counts down for addresses with a lifetime",
    ),
    (
        "preferred_life_time",
        "counts down for addresses with a lifetime",
    ),
    // Carrier and protocol state, not configuration.
    (
        "operstate",
        "carrier state (depends on the peer and on LACP)",
    ),
    ("linkdown", "carrier state of a route's device"),
    (
        "tentative",
        "IPv6 DAD in progress: it ends by itself once the link has carrier, which may come after a snapshot (a bond's ports coming up)",
    ),
    (
        "state",
        "bond port active/backup, bridge port STP state: protocol state",
    ),
    (
        "mii_status",
        "bond port carrier as the MII monitor last saw it",
    ),
    ("link_failure_count", "a counter of carrier losses"),
    ("active_slave", "the active-backup bond's current choice"),
    (
        "ad_info",
        "LACP aggregator and partner: negotiated, not configured",
    ),
    ("ad_aggregator_id", "LACP: negotiated"),
    ("ad_actor_oper_port_state", "LACP: negotiated"),
    ("ad_actor_oper_port_state_str", "LACP: negotiated"),
    ("ad_partner_oper_port_state", "LACP: negotiated"),
    ("ad_partner_oper_port_state_str", "LACP: negotiated"),
    (
        "bridge_id",
        "STP: from the bridge's priority and MAC, elected",
    ),
    ("root_id", "STP: elected"),
    ("root_port", "STP: elected"),
    ("root_path_cost", "STP: elected"),
    ("designated_root", "STP: elected"),
    ("designated_bridge", "STP: elected"),
    ("designated_port", "STP: elected"),
    ("designated_cost", "STP: elected"),
    ("topology_change", "STP: protocol state"),
    ("topology_change_detected", "STP: protocol state"),
    ("topology_change_ack", "STP: protocol state"),
    ("config_pending", "STP: protocol state"),
    // Identifiers the kernel assigns by order of events.
    (
        "no",
        "a bridge port's number: assigned in the order ports join",
    ),
    // A NIC brought up for the first time gets its default qdisc for good
    // (a rollback can take it down, not detach the qdisc).
    (
        "qdisc",
        "attached by the kernel the first time a link comes up",
    ),
];

/// Flags that are carrier state, not configuration.
const IGNORED_FLAGS: &[&str] = &["LOWER_UP", "NO-CARRIER", "M-DOWN", "linkdown", "dead"];

/// The bridge port `id` (`0x8001`) is its STP port id, assigned in join
/// order like `no`; the VLAN `id` is configuration. Only the former goes.
fn is_port_id(key: &str, v: &Value, parent_is_slave_data: bool) -> bool {
    key == "id" && parent_is_slave_data && v.is_string()
}

fn strip(v: &mut Value, in_slave_data: bool) {
    match v {
        Value::Object(m) => {
            for (k, _) in IGNORED {
                m.remove(*k);
            }
            m.retain(|k, val| !is_port_id(k, val, in_slave_data));
            if let Some(Value::Array(flags)) = m.get_mut("flags") {
                flags.retain(|f| !f.as_str().is_some_and(|s| IGNORED_FLAGS.contains(&s)));
            }
            for (k, x) in m.iter_mut() {
                strip(x, k == "info_slave_data");
            }
            // Keys in one order (iproute2 prints a recreated link's keys in
            // another order; with serde_json's preserve_order that would
            // sort equal objects apart).
            let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            m.extend(entries);
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                strip(x, false);
            }
            // Order of dumps is the kernel's, by ifindex or by insertion:
            // compare as sets.
            a.sort_by_key(|x| x.to_string());
        }
        _ => {}
    }
}

/// The namespace's state, without the keys in [`IGNORED`].
pub fn snapshot(ns: &NetNs) -> Value {
    let j = |s: String| -> Value { serde_json::from_str(&s).unwrap_or(Value::Null) };
    let mut v = serde_json::json!({
        "link": j(ns.ip(&["-d", "-j", "link", "show"])),
        "addr": j(ns.ip(&["-j", "addr", "show"])),
        "route4": j(ns.ip(&["-4", "-j", "route", "show", "table", "all"])),
        "route6": j(ns.ip(&["-6", "-j", "route", "show", "table", "all"])),
        "vlan": j(ns.run(&["bridge", "-j", "vlan", "show"])),
    });
    strip(&mut v, false);
    // IPv6 local routes (table local, type local) are the kernel's for each
    // address, added when its DAD ends (see `tentative`); the addresses
    // themselves are compared.
    if let Some(r) = v.get_mut("route6").and_then(Value::as_array_mut) {
        r.retain(|x| !(x["table"] == "local" && x["type"] == "local"));
    }
    without_kernel_derived(&mut v);
    v
}

/// Leaves out what the kernel derives on its own at moments an apply does
/// not control, with its configuration still compared:
/// - IPv6 link-local addresses, their `fe80::/64` kernel routes and the
///   link's `ff00::/8` multicast route (table local): made
///   from `addr_gen_mode` (compared) the first time a link has carrier,
///   which a bridge may get for a moment in the middle of an apply and its
///   rollback (a port with carrier joins, then leaves), and kept after;
/// - `ageing_time` of a bridge running STP: during a topology change STP
///   replaces it by twice the forward delay, and netlink reports only the
///   value in force (the configured one is compared while STP is off).
pub fn without_kernel_derived(v: &mut Value) {
    if let Some(links) = v.get_mut("addr").and_then(Value::as_array_mut) {
        for l in links {
            if let Some(a) = l.get_mut("addr_info").and_then(Value::as_array_mut) {
                a.retain(|x| !(x["family"] == "inet6" && x["scope"] == "link"));
            }
        }
    }
    if let Some(r) = v.get_mut("route6").and_then(Value::as_array_mut) {
        r.retain(|x| {
            !(x["protocol"] == "kernel"
                && x["dst"]
                    .as_str()
                    .is_some_and(|d| d == "fe80::/64" || d == "ff00::/8"))
        });
    }
    if let Some(links) = v.get_mut("link").and_then(Value::as_array_mut) {
        for l in links {
            let Some(data) = l
                .get_mut("linkinfo")
                .and_then(|i| i.get_mut("info_data"))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            if data
                .get("stp_state")
                .and_then(Value::as_u64)
                .is_some_and(|s| s != 0)
            {
                data.remove("ageing_time");
            }
        }
    }
}

/// The differences between two snapshots (for failure messages): per
/// section (`link`, `addr`, `route4`, ...), the entries one has more often
/// than the other, each as one line of JSON (`-` only in the first, `+`
/// only in the second). Entries are whole objects compared as a multiset,
/// so a value moved between two links, or a route present twice instead of
/// once, shows as the entries it changed.
pub fn diff(a: &Value, b: &Value) -> String {
    use std::collections::BTreeMap;
    fn entries(v: &Value) -> BTreeMap<String, i64> {
        let mut m = BTreeMap::new();
        match v {
            Value::Array(xs) => {
                for x in xs {
                    *m.entry(x.to_string()).or_insert(0) += 1;
                }
            }
            other => {
                m.insert(other.to_string(), 1);
            }
        }
        m
    }
    let mut sections: Vec<&str> = Vec::new();
    for v in [a, b] {
        if let Value::Object(o) = v {
            for k in o.keys() {
                if !sections.contains(&k.as_str()) {
                    sections.push(k);
                }
            }
        }
    }
    let mut out = String::new();
    for sec in sections {
        let mut count = entries(&a[sec]);
        for (k, n) in entries(&b[sec]) {
            *count.entry(k).or_insert(0) -= n;
        }
        for (k, n) in count.iter().filter(|(_, n)| **n != 0) {
            let sign = if *n > 0 { '-' } else { '+' };
            let times = if n.abs() > 1 {
                format!(" (x{})", n.abs())
            } else {
                String::new()
            };
            out.push_str(&format!("{sign} {sec}{times}: {k}\n"));
            if out.len() > 6000 {
                out.push_str("...\n");
                return out;
            }
        }
    }
    if out.is_empty() && a != b {
        out.push_str("(no entry differs, but the snapshots do)\n");
    }
    out
}

/// Waits until IPv6 duplicate address detection has finished on every
/// address of `ns` that can finish it: the kernel then changes address flags
/// and adds local routes on its own, which a snapshot taken earlier would
/// blame on hostd. Not waited for: an address whose DAD failed (it stays
/// `tentative dadfailed` until removed) and the addresses of a link without
/// carrier (a link set down with `keep_addr_on_down` keeps its addresses
/// tentative until it comes up again). Panics naming what is still tentative.
pub fn wait_dad(ns: &NetNs) {
    let mut last = Vec::new();
    let waited = crate::wait::try_wait_until(scaled(Duration::from_secs(30)), || {
        last = dad_pending(ns);
        last.is_empty()
    });
    if let Err(waited) = waited {
        panic!("timed out after {waited:?} waiting for IPv6 DAD to finish on: {last:?}");
    }
}

/// `link address` of every address still doing DAD on a link with carrier.
fn dad_pending(ns: &NetNs) -> Vec<String> {
    let out = ns.ip(&["-j", "-6", "addr", "show", "tentative", "-dadfailed"]);
    let links: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let mut pending = Vec::new();
    for l in links.as_array().into_iter().flatten() {
        let flags = l["flags"].as_array().cloned().unwrap_or_default();
        let has = |f: &str| flags.iter().any(|x| x == f);
        if !(has("UP") && has("LOWER_UP")) {
            continue;
        }
        for a in l["addr_info"].as_array().into_iter().flatten() {
            pending.push(format!(
                "{} {}",
                l["ifname"].as_str().unwrap_or("?"),
                a["local"].as_str().unwrap_or("?")
            ));
        }
    }
    pending
}

/// Waits (bounded) until the snapshot equals `want`; returns the last
/// difference when it never does.
pub fn wait_equal(ns: &NetNs, want: &Value, timeout: Duration) -> Result<(), String> {
    let mut last = Value::Null;
    let ok = crate::wait::try_wait_until(scaled(timeout), || {
        last = snapshot(ns);
        &last == want
    });
    match ok {
        Ok(_) => Ok(()),
        Err(_) => Err(diff(want, &last)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::diff;

    #[test]
    fn diff_names_moved_values_and_multiplicity() {
        let a = json!({
            "link": [{"ifname": "a", "mtu": 1500}, {"ifname": "b", "mtu": 9000}],
            "route4": [{"dst": "10.0.0.0/24"}],
        });
        // The MTUs swapped: every pretty-printed line still exists in both.
        let b = json!({
            "link": [{"ifname": "a", "mtu": 9000}, {"ifname": "b", "mtu": 1500}],
            "route4": [{"dst": "10.0.0.0/24"}, {"dst": "10.0.0.0/24"}],
        });
        let d = diff(&a, &b);
        assert!(d.contains(r#"- link: {"ifname":"a","mtu":1500}"#), "{d}");
        assert!(d.contains(r#"+ link: {"ifname":"a","mtu":9000}"#), "{d}");
        assert!(d.contains(r#"+ route4: {"dst":"10.0.0.0/24"}"#), "{d}");
        assert!(!d.contains("x2"), "{d}");
        assert_eq!(diff(&a, &a), "");
    }

    #[test]
    fn kernel_derived_link_local_and_stp_ageing_are_left_out() {
        let mut v = json!({
            "addr": [{"ifname": "br0", "addr_info": [
                {"family": "inet6", "local": "fe80::1", "scope": "link"},
                {"family": "inet6", "local": "2001:db8::1", "scope": "global"},
            ]}],
            "route6": [
                {"dst": "fe80::/64", "dev": "br0", "protocol": "kernel"},
                {"dst": "ff00::/8", "dev": "br0", "protocol": "kernel", "table": "local", "type": "multicast"},
                {"dst": "2001:db8::/64", "dev": "br0", "protocol": "kernel"},
            ],
            "link": [
                {"ifname": "br0", "linkinfo": {"info_data": {"stp_state": 1, "ageing_time": 3800}}},
                {"ifname": "br1", "linkinfo": {"info_data": {"stp_state": 0, "ageing_time": 30000}}},
            ],
        });
        super::without_kernel_derived(&mut v);
        assert_eq!(v["addr"][0]["addr_info"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["route6"].as_array().map(Vec::len), Some(1));
        assert!(v["link"][0]["linkinfo"]["info_data"]
            .get("ageing_time")
            .is_none());
        assert_eq!(v["link"][1]["linkinfo"]["info_data"]["ageing_time"], 30000);
    }
}
