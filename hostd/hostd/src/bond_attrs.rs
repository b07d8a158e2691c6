//! Bond options on the wire: `IFLA_INFO_DATA` of a bond, encoded and
//! decoded from hostd-core's option table ([`hostd_core::bond::BOND_OPTIONS`]),
//! so an option is spelled in one place only. Values travel as raw attribute
//! payloads by their wire type; only the nested `arp_ip_target` list uses
//! netlink-packet-route's own type.

use std::collections::HashMap;

use hostd_core::{
    bond::{BondOptionDef, BondOptions, OptValue, Wire, IFLA_BOND_MODE},
    model::BondState,
    schema::BondMode,
    types::{IfName, MacAddr},
};
use netlink_packet_core::{DefaultNla, Nla};
use netlink_packet_route::link::InfoBond;

/// Encodes a mode change and options; `ifindex` resolves `primary`.
pub fn encode(
    mode: Option<BondMode>,
    o: &BondOptions,
    ifindex: impl Fn(&str) -> Option<u32>,
) -> Result<Vec<InfoBond>, String> {
    let mut v = Vec::new();
    if let Some(m) = mode {
        v.push(InfoBond::Other(DefaultNla::new(
            IFLA_BOND_MODE,
            vec![m.number()],
        )));
    }
    for (attr, wire, value) in o.to_attrs() {
        let bytes = match (wire, value) {
            (Wire::U8, OptValue::Num(n)) => vec![u8::try_from(n).map_err(|_| range(attr, n))?],
            (Wire::U16, OptValue::Num(n)) => u16::try_from(n)
                .map_err(|_| range(attr, n))?
                .to_ne_bytes()
                .to_vec(),
            (Wire::U32, OptValue::Num(n)) => n.to_ne_bytes().to_vec(),
            (Wire::Mac, OptValue::Mac(m)) => m.0.to_vec(),
            (Wire::IfIndex, OptValue::Link(name)) => ifindex(name.as_str())
                .ok_or_else(|| format!("no link named {name}"))?
                .to_ne_bytes()
                .to_vec(),
            (Wire::Ipv4List, OptValue::Ipv4(list)) => {
                v.push(InfoBond::ArpIpTarget(list));
                continue;
            }
            (w, val) => return Err(format!("bond attribute {attr}: {val:?} is not a {w:?}")),
        };
        v.push(InfoBond::Other(DefaultNla::new(attr, bytes)));
    }
    Ok(v)
}

fn range(attr: u16, n: u32) -> String {
    format!("bond attribute {attr}: {n} does not fit its type")
}

/// Decodes a bond's `IFLA_INFO_DATA`; `names` resolves `primary`.
pub fn decode(infos: &[InfoBond], names: &HashMap<u32, IfName>) -> BondState {
    let mut mode = BondMode::BalanceRr;
    // The kernel leaves out an empty target list: none is an empty list
    // (which is also how one clears it).
    let mut o = BondOptions {
        arp_ip_target: Some(Vec::new()),
        ..Default::default()
    };
    for info in infos {
        let attr = info.kind();
        if let InfoBond::ArpIpTarget(list) = info {
            o.set_attr(attr, &OptValue::Ipv4(list.clone()));
            continue;
        }
        let mut raw = vec![0u8; info.value_len()];
        info.emit_value(&mut raw);
        if attr == IFLA_BOND_MODE {
            if let Some(m) = raw.first().and_then(|n| BondMode::from_number(*n)) {
                mode = m;
            }
            continue;
        }
        let Some(d) = BondOptionDef::by_attr(attr) else {
            continue;
        };
        let value = match d.wire {
            Wire::U8 => raw.first().map(|b| OptValue::Num(u32::from(*b))),
            Wire::U16 => raw
                .get(..2)
                .map(|b| OptValue::Num(u32::from(u16::from_ne_bytes([b[0], b[1]])))),
            Wire::U32 => raw
                .get(..4)
                .map(|b| OptValue::Num(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))),
            Wire::Mac => raw
                .get(..6)
                .and_then(|b| <[u8; 6]>::try_from(b).ok())
                .map(|m| OptValue::Mac(MacAddr(m))),
            Wire::IfIndex => raw
                .get(..4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .and_then(|i| names.get(&i).cloned())
                .map(OptValue::Link),
            Wire::Ipv4List => None,
        };
        if let Some(v) = value {
            o.set_attr(attr, &v);
        }
    }
    BondState { mode, options: o }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostd_core::bond::{LacpRate, XmitHashPolicy};
    use netlink_packet_core::{Emitable, NlaBuffer, Parseable};

    /// Every option survives encode -> bytes -> netlink-packet-route's
    /// parser -> decode.
    #[test]
    fn round_trip_through_the_wire() {
        let o = BondOptions {
            miimon: Some(100),
            updelay: Some(200),
            lacp_rate: Some(LacpRate::Fast),
            xmit_hash_policy: Some(XmitHashPolicy::Layer34),
            ad_actor_sys_prio: Some(100),
            ad_actor_system: Some(MacAddr([2, 0, 0, 0, 0, 9])),
            arp_ip_target: Some(vec!["192.0.2.1".parse().unwrap()]),
            primary: Some(IfName::new("eth0").unwrap()),
            all_slaves_active: Some(true),
            num_grat_arp: Some(3),
            ..Default::default()
        };
        let enc = encode(Some(BondMode::Lacp), &o, |n| (n == "eth0").then_some(7)).unwrap();
        let mut parsed = Vec::new();
        for nla in &enc {
            let mut buf = vec![0u8; nla.buffer_len()];
            nla.emit(&mut buf);
            parsed.push(InfoBond::parse(&NlaBuffer::new(&buf[..])).unwrap());
        }
        let names = HashMap::from([(7, IfName::new("eth0").unwrap())]);
        let back = decode(&parsed, &names);
        assert_eq!(back.mode, BondMode::Lacp);
        assert_eq!(back.options, o);
    }
}
