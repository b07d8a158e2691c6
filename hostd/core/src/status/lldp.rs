//! The parser of `lldpcli -f json0 show neighbors details` (lldpd 1.0.16).
//!
//! `json0` keeps one shape whatever the number of interfaces or neighbours
//! (every element is an array of objects, every leaf `{"value": ...}`),
//! unlike `-f json`, which folds single elements. Shape, as lldpd 1.0.16
//! prints it (`src/client/display.c`):
//!
//! ```text
//! {"lldp": [{"interface": [{"name": "eth0", "via": "LLDP", "rid": "1", "age": "...",
//!    "chassis": [{"id": [{"type": "mac", "value": "..."}], "name": [{"value": "sw1"}],
//!                 "descr": [...], "mgmt-ip": [{"value": "10.0.0.7"}, ...], ...}],
//!    "port": [{"id": [{"type": "ifname", "value": "Ethernet48"}], "descr": [...],
//!              "ttl": [{"value": "120"}], "mfs": [{"value": "9236"}],
//!              "aggregation": [{"value": "1000001"}], ...}],
//!    "vlan": [{"vlan-id": "10", "pvid": true, "value": "vlan10"}, ...]}]}]}
//! ```
//!
//! With no neighbour at all lldpcli prints `{"lldp": [{}]}`. An entry that
//! lacks a chassis or port id is reported in [`Parsed::problems`] and
//! skipped; its neighbours are kept.
//!
//! `lldpcli -f json0 watch` prints one object per change, followed by an
//! empty line: `{"lldp-added": [...]}`, `{"lldp-updated": [...]}` or
//! `{"lldp-deleted": [...]}`, the array shaped as the `lldp` array above
//! ([`WatchStream`], [`parse_watch_event`]).

use serde_json::Value;

use super::{IdSubtype, LldpId, LldpNeighbor, LldpVlan};

/// Neighbours, each with the local interface it was heard on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// (local interface, neighbour), in lldpcli's order.
    pub neighbors: Vec<(String, LldpNeighbor)>,
    /// Entries or values that did not parse.
    pub problems: Vec<String>,
}

impl Parsed {
    /// The neighbours heard on `iface`.
    pub fn on(&self, iface: &str) -> Vec<&LldpNeighbor> {
        self.neighbors
            .iter()
            .filter(|(i, _)| i == iface)
            .map(|(_, n)| n)
            .collect()
    }
}

/// The output is not lldpcli's json0.
#[derive(Debug, thiserror::Error)]
pub enum LldpError {
    /// Not JSON.
    #[error("lldpcli output is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON without the `lldp` array of json0.
    #[error("lldpcli output has no \"lldp\" array (is it -f json0?): {0}")]
    Shape(String),
}

/// Parses `lldpcli -f json0 show neighbors details`.
pub fn parse(json: &str) -> Result<Parsed, LldpError> {
    let v: Value = serde_json::from_str(json)?;
    let Some(top) = v.get("lldp").and_then(Value::as_array) else {
        return Err(LldpError::Shape(shown(&v)));
    };
    Ok(parse_blocks(top))
}

fn shown(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 80 {
        let mut cut = 80;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchKind {
    /// `lldp-added`: a new neighbour.
    Added,
    /// `lldp-updated`: a neighbour's information changed.
    Updated,
    /// `lldp-deleted`: a neighbour went away (expired, or its port went down).
    Deleted,
}

impl WatchKind {
    /// lldpcli's key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "lldp-added",
            Self::Updated => "lldp-updated",
            Self::Deleted => "lldp-deleted",
        }
    }
}

/// One event of `lldpcli -f json0 watch`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// Added, updated or deleted.
    pub kind: WatchKind,
    /// The neighbours it carries (usually one), as they were when the
    /// event was sent.
    pub neighbors: Parsed,
}

impl WatchEvent {
    /// The local interfaces it concerns.
    pub fn interfaces(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .neighbors
            .neighbors
            .iter()
            .map(|(i, _)| i.as_str())
            .collect();
        v.dedup();
        v
    }
}

/// Parses one object of `lldpcli -f json0 watch`.
pub fn parse_watch_event(json: &str) -> Result<WatchEvent, LldpError> {
    let v: Value = serde_json::from_str(json)?;
    for kind in [WatchKind::Added, WatchKind::Updated, WatchKind::Deleted] {
        if let Some(top) = v.get(kind.as_str()).and_then(Value::as_array) {
            return Ok(WatchEvent {
                kind,
                neighbors: parse_blocks(top),
            });
        }
    }
    Err(LldpError::Shape(shown(&v)))
}

/// Longest watch object accepted (a neighbour is a few KiB; lldpd caps
/// what it keeps per neighbour): a stream that exceeds it is not lldpcli's.
pub const WATCH_OBJECT_MAX: usize = 1 << 20;

/// Splits the output of `lldpcli -f json0 watch` into its objects: lldpcli
/// prints each pretty-printed, opening with `{` and closing with `}` alone
/// on a line at column 0 (nested braces are indented), then an empty line.
#[derive(Debug, Default)]
pub struct WatchStream {
    buf: String,
}

impl WatchStream {
    /// A stream with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line (without its newline). Returns the event when `line`
    /// closes an object; an object that does not parse, or grows past
    /// [`WATCH_OBJECT_MAX`], is an error and is dropped (the stream goes
    /// on with the next object).
    pub fn push_line(&mut self, line: &str) -> Option<Result<WatchEvent, LldpError>> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if self.buf.is_empty() && line.trim().is_empty() {
            return None;
        }
        if self.buf.len() + line.len() > WATCH_OBJECT_MAX {
            self.buf.clear();
            return Some(Err(LldpError::Shape(format!(
                "a watch object longer than {WATCH_OBJECT_MAX} bytes"
            ))));
        }
        self.buf.push_str(line);
        self.buf.push('\n');
        if line != "}" {
            return None;
        }
        let text = std::mem::take(&mut self.buf);
        Some(parse_watch_event(&text))
    }

    /// True when part of an object is buffered.
    pub fn pending(&self) -> bool {
        !self.buf.is_empty()
    }
}

fn parse_blocks(top: &[Value]) -> Parsed {
    let mut out = Parsed::default();
    for block in top {
        let Some(ifaces) = block.get("interface").and_then(Value::as_array) else {
            continue;
        };
        for (i, entry) in ifaces.iter().enumerate() {
            let Some(local) = entry.get("name").and_then(Value::as_str) else {
                out.problems
                    .push(format!("lldp.interface[{i}]: no interface name"));
                continue;
            };
            match neighbor(entry, &mut out.problems, local) {
                Ok(n) => out.neighbors.push((local.to_owned(), n)),
                Err(why) => out
                    .problems
                    .push(format!("lldp.interface[{i}] ({local}): {why}")),
            }
        }
    }
    out
}

/// `x[0]`: json0's one-element arrays.
fn first<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).and_then(Value::as_array).and_then(|a| a.first())
}

/// `x[0].value` as a string.
fn value_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    first(v, key)
        .and_then(|x| x.get("value"))
        .and_then(Value::as_str)
}

fn id_of(v: &Value) -> Option<LldpId> {
    let id = first(v, "id")?;
    Some(LldpId {
        subtype: IdSubtype::from_lldpd(id.get("type").and_then(Value::as_str).unwrap_or("")),
        value: id.get("value").and_then(Value::as_str)?.to_owned(),
    })
}

fn number<T: std::str::FromStr>(
    v: &Value,
    key: &str,
    local: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    let s = value_of(v, key)?;
    match s.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            problems.push(format!("{local}: {key} {s:?} is not a number"));
            None
        }
    }
}

fn neighbor(
    entry: &Value,
    problems: &mut Vec<String>,
    local: &str,
) -> Result<LldpNeighbor, String> {
    let chassis = first(entry, "chassis").ok_or("no chassis")?;
    let port = first(entry, "port").ok_or("no port")?;
    let chassis_id = id_of(chassis).ok_or("no chassis id")?;
    let port_id = id_of(port).ok_or("no port id")?;
    let mut management_addresses = Vec::new();
    for a in chassis
        .get("mgmt-ip")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(s) = a.get("value").and_then(Value::as_str) else {
            continue;
        };
        match s.parse() {
            Ok(ip) => management_addresses.push(ip),
            Err(_) => problems.push(format!("{local}: management address {s:?} is not an IP")),
        }
    }
    let mut vlans = Vec::new();
    for v in entry
        .get("vlan")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let id = v
            .get("vlan-id")
            .and_then(|x| match x {
                Value::String(s) => s.parse::<u16>().ok(),
                Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                _ => None,
            })
            .filter(|id| (1..=4094).contains(id));
        let Some(id) = id else {
            problems.push(format!("{local}: VLAN entry {v} has no valid vlan-id"));
            continue;
        };
        let pvid = match v.get("pvid") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "yes",
            _ => false,
        };
        let name = v
            .get("value")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        vlans.push(LldpVlan { id, pvid, name });
    }
    // 1.0.16 prints the TTL under the port; some versions as
    // `"ttl": [{"ttl": "120"}]` under the interface.
    let ttl = number(port, "ttl", local, problems).or_else(|| {
        first(entry, "ttl")
            .and_then(|t| t.get("ttl"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    });
    Ok(LldpNeighbor {
        via: entry
            .get("via")
            .and_then(Value::as_str)
            .unwrap_or("LLDP")
            .to_owned(),
        chassis_id,
        system_name: value_of(chassis, "name").map(str::to_owned),
        system_description: value_of(chassis, "descr").map(str::to_owned),
        port_id,
        port_description: value_of(port, "descr").map(str::to_owned),
        vlans,
        management_addresses,
        ttl,
        max_frame_size: number(port, "mfs", local, problems),
        aggregation_port_id: number(port, "aggregation", local, problems),
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures-status/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn parse_ok(name: &str) -> Parsed {
        let p = parse(&fixture(name)).unwrap();
        assert_eq!(p.problems, Vec::<String>::new(), "{name}");
        p
    }

    #[test]
    fn lab_switch_neighbours() {
        let p = parse_ok("json0-lab-switch.json");
        assert_eq!(p.neighbors.len(), 2);
        let (local, n) = &p.neighbors[0];
        assert_eq!(local, "eth0");
        assert_eq!(n.via, "LLDP");
        assert_eq!(
            n.chassis_id,
            LldpId {
                subtype: IdSubtype::Mac,
                value: "7e:87:ea:d0:9a:9f".into()
            }
        );
        assert_eq!(n.system_name.as_deref(), Some("sw1"));
        assert_eq!(n.system_description.as_deref(), Some("lab switch sw1"));
        assert_eq!(
            n.port_id,
            LldpId {
                subtype: IdSubtype::Local,
                value: "Ethernet1".into()
            }
        );
        assert_eq!(n.port_description.as_deref(), Some("to srv eth0"));
        assert_eq!(n.ttl, Some(4));
        assert_eq!(
            n.management_addresses,
            vec!["10.9.9.9".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(n.max_frame_size, None);
        assert!(n.vlans.is_empty());
        assert_eq!(p.on("eth1")[0].port_id.value, "Ethernet2");
        assert!(p.on("eth2").is_empty());
    }

    #[test]
    fn rich_neighbour_with_vlans_mfs_and_two_addresses() {
        let p = parse_ok("json0-injected-rich.json");
        let n = p.on("eth0")[0];
        assert_eq!(n.chassis_id.subtype, IdSubtype::Mac);
        assert_eq!(n.system_name.as_deref(), Some("leaf7.dc1"));
        assert!(n
            .system_description
            .as_deref()
            .unwrap()
            .starts_with("Arista Networks EOS"));
        assert_eq!(n.port_id.subtype, IdSubtype::Ifname);
        assert_eq!(n.port_id.value, "Ethernet48");
        assert_eq!(n.port_description.as_deref(), Some("srv42 eth0"));
        assert_eq!(n.ttl, Some(120));
        assert_eq!(n.max_frame_size, Some(9236));
        assert_eq!(n.aggregation_port_id, Some(1_000_001));
        assert_eq!(
            n.management_addresses,
            vec![
                "10.0.0.7".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
        assert_eq!(
            n.vlans,
            vec![
                LldpVlan {
                    id: 100,
                    pvid: false,
                    name: Some("wan".into())
                },
                LldpVlan {
                    id: 200,
                    pvid: false,
                    name: Some("san".into())
                },
                LldpVlan {
                    id: 10,
                    pvid: true,
                    name: None
                },
            ]
        );
        assert_eq!(n.pvid(), Some(10));
        let m = p.on("eth1")[0];
        assert_eq!(
            m.chassis_id,
            LldpId {
                subtype: IdSubtype::Local,
                value: "tor-b".into()
            }
        );
        assert_eq!(m.port_id.subtype, IdSubtype::Mac);
        assert_eq!(m.max_frame_size, Some(1518));
        assert_eq!(m.ttl, Some(90));
        assert_eq!(m.system_description, None);
        assert_eq!(m.port_description, None);
    }

    #[test]
    fn bond_members_hear_the_lag_and_its_bridge_vlans() {
        // Captured in the VM (6.1): a VLAN-filtering bridge with Po1 (PVID
        // 10, tagged 100 and 200); lldpd announces them on both members.
        let p = parse_ok("json0-bond-members-vlans.json");
        for nic in ["eth0", "eth1"] {
            let n = p.on(nic)[0];
            assert_eq!(n.system_name.as_deref(), Some("sw1"));
            assert_eq!(n.pvid(), Some(10));
            let ids: Vec<u16> = n.vlans.iter().map(|v| v.id).collect();
            assert_eq!(ids, [10, 100, 200]);
            assert_eq!(n.vlans[1].name.as_deref(), Some("vlan100"));
            assert_eq!(n.aggregation_port_id, Some(5));
        }
        // And the switch hears the server's announcements (hostname, port
        // description as configured through lldpcli).
        let s = parse_ok("json0-switch-side.json");
        let n = s.on("Ethernet1")[0];
        assert_eq!(n.system_name.as_deref(), Some("srv1"));
        assert_eq!(n.port_description.as_deref(), Some("srv1 eth0 (bond0)"));
        assert_eq!(n.port_id.subtype, IdSubtype::Mac);
    }

    #[test]
    fn no_neighbours_and_one_port() {
        assert_eq!(parse_ok("json0-no-neighbors.json").neighbors, vec![]);
        let one = parse_ok("json0-one-port.json");
        assert_eq!(one.neighbors.len(), 1);
        assert_eq!(one.neighbors[0].0, "eth0");
    }

    #[test]
    fn bad_entries_are_skipped_and_reported() {
        let mut v: Value = serde_json::from_str(&fixture("json0-injected-rich.json")).unwrap();
        let ifaces = v["lldp"][0]["interface"].as_array_mut().unwrap();
        ifaces[0]["chassis"][0]
            .as_object_mut()
            .unwrap()
            .remove("id");
        ifaces[1]["port"][0]["mfs"][0]["value"] = Value::String("big".into());
        let p = parse(&v.to_string()).unwrap();
        assert_eq!(p.neighbors.len(), 1);
        assert_eq!(p.neighbors[0].0, "eth1");
        assert_eq!(p.neighbors[0].1.max_frame_size, None);
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(p
            .problems
            .iter()
            .any(|x| x.contains("(eth0): no chassis id")));
        assert!(p.problems.iter().any(|x| x.contains("mfs \"big\"")));
    }

    #[test]
    fn watch_stream_of_a_neighbour_going_and_coming_back() {
        // Captured: the neighbour's port down (deleted), up (added), then
        // its lldpd's first full announcement (updated).
        let mut w = WatchStream::new();
        let mut events = Vec::new();
        for line in fixture("json0-watch.txt").lines() {
            if let Some(e) = w.push_line(line) {
                events.push(e.unwrap());
            }
        }
        assert!(!w.pending());
        let kinds: Vec<WatchKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [WatchKind::Deleted, WatchKind::Added, WatchKind::Updated]
        );
        for e in &events {
            assert_eq!(e.neighbors.problems, Vec::<String>::new());
            assert_eq!(e.interfaces(), ["e0"]);
            let n = &e.neighbors.neighbors[0].1;
            assert_eq!(n.system_name.as_deref(), Some("sw1"));
            assert_eq!(
                n.port_id,
                LldpId {
                    subtype: IdSubtype::Local,
                    value: "Ethernet1".into()
                }
            );
        }
    }

    #[test]
    fn watch_stream_survives_a_bad_object() {
        let mut w = WatchStream::new();
        assert!(w.push_line("").is_none());
        assert!(w.push_line("{").is_none());
        assert!(w.push_line("  \"lldp-frobbed\": []").is_none());
        let e = w.push_line("}").unwrap().unwrap_err();
        assert!(e.to_string().contains("lldp-frobbed"), "{e}");
        assert!(w.push_line("{").is_none());
        assert!(w.push_line("  \"lldp-deleted\": [{}]").is_none());
        let ok = w.push_line("}").unwrap().unwrap();
        assert_eq!(ok.kind, WatchKind::Deleted);
        assert!(ok.interfaces().is_empty());
        // Unbounded garbage is cut, not buffered forever.
        let long = "x".repeat(WATCH_OBJECT_MAX / 2 + 1);
        assert!(w.push_line(&long).is_none());
        assert!(w.push_line(&long).unwrap().is_err());
        assert!(!w.pending());
    }

    #[test]
    fn not_json0() {
        assert!(matches!(parse("nope"), Err(LldpError::Json(_))));
        // -f json folds arrays: refused, not misread.
        let e = parse(r#"{"lldp": {"interface": {}}}"#).unwrap_err();
        assert!(e.to_string().contains("json0"), "{e}");
    }
}
