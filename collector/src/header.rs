//! Decoding of the raw packet header carried by an sFlow sampled-header
//! record: Ethernet II, 802.1Q and QinQ (802.1ad) tags, IPv4, IPv6 (with
//! extension headers), TCP and UDP. The bytes are usually truncated (128 by
//! default on most agents), so parsing is lax: whatever complete headers are
//! present are returned. Built on `etherparse`'s `LaxSlicedPacket`.

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice, VlanSlice};

use crate::sflow::header_protocol;

/// L2-L4 facts of one sampled packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// Outer then inner VLAN id (QinQ), or just the first, or none.
    pub vlans: [Option<u16>; 2],
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, ...), after IPv6 extension headers.
    pub ip_proto: u8,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

/// Why a header yielded no IP addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("unsupported header protocol {0}")]
    Protocol(u32),
    #[error("header too short for the link layer")]
    Truncated,
    /// Valid, but not IP (ARP, LLDP, ...): nothing to attribute.
    #[error("not an IP packet")]
    NotIp,
}

impl HeaderError {
    /// Stable short name for statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            HeaderError::Protocol(_) => "header_protocol",
            HeaderError::Truncated => "header_truncated",
            HeaderError::NotIp => "header_not_ip",
        }
    }
}

/// Decodes a sampled header given its sFlow `header_protocol`.
pub fn decode(protocol: u32, bytes: &[u8]) -> Result<PacketInfo, HeaderError> {
    let p = match protocol {
        header_protocol::ETHERNET => {
            LaxSlicedPacket::from_ethernet(bytes).map_err(|_| HeaderError::Truncated)?
        }
        header_protocol::IPV4 | header_protocol::IPV6 => {
            LaxSlicedPacket::from_ip(bytes).map_err(|_| HeaderError::Truncated)?
        }
        other => return Err(HeaderError::Protocol(other)),
    };
    let vlans = match p.vlan() {
        None => [None, None],
        Some(VlanSlice::SingleVlan(s)) => [Some(s.vlan_identifier().value()), None],
        Some(VlanSlice::DoubleVlan(d)) => [
            Some(d.outer.vlan_identifier().value()),
            Some(d.inner.vlan_identifier().value()),
        ],
    };
    let (src, dst, ip_proto) = match &p.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                v4.payload().ip_number.0,
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                v6.payload().ip_number.0,
            )
        }
        _ => return Err(HeaderError::NotIp),
    };
    let (src_port, dst_port) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (Some(t.source_port()), Some(t.destination_port())),
        Some(TransportSlice::Udp(u)) => (Some(u.source_port()), Some(u.destination_port())),
        _ => (None, None),
    };
    Ok(PacketInfo {
        vlans,
        src,
        dst,
        ip_proto,
        src_port,
        dst_port,
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::sflow::encode::frame;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let f = frame(&[], v4(10, 0, 0, 1), v4(10, 0, 1, 2), 6, 40000, 443, 1000);
        let i = decode(1, &f).unwrap();
        assert_eq!(i.src, v4(10, 0, 0, 1));
        assert_eq!(i.dst, v4(10, 0, 1, 2));
        assert_eq!(i.ip_proto, 6);
        assert_eq!((i.src_port, i.dst_port), (Some(40000), Some(443)));
        assert_eq!(i.vlans, [None, None]);
    }

    #[test]
    fn dot1q_and_qinq() {
        let f = frame(
            &[100],
            v4(192, 0, 2, 1),
            v4(198, 51, 100, 7),
            17,
            53,
            5353,
            10,
        );
        let i = decode(1, &f).unwrap();
        assert_eq!(i.vlans, [Some(100), None]);
        assert_eq!(
            (i.ip_proto, i.src_port, i.dst_port),
            (17, Some(53), Some(5353))
        );
        let f = frame(
            &[200, 30],
            v4(192, 0, 2, 1),
            v4(198, 51, 100, 7),
            17,
            1,
            2,
            10,
        );
        // Byte-level: outer TPID 0x88a8 at offset 12, inner 0x8100 at 16.
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        assert_eq!(&f[16..18], &[0x81, 0x00]);
        let i = decode(1, &f).unwrap();
        assert_eq!(i.vlans, [Some(200), Some(30)]);
        assert_eq!(i.dst, v4(198, 51, 100, 7));
    }

    #[test]
    fn ipv6_udp_and_bare_ip_protocols() {
        let s: IpAddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().into();
        let d: IpAddr = "2001:db8:1::2".parse::<Ipv6Addr>().unwrap().into();
        let f = frame(&[], s, d, 17, 1000, 2000, 50);
        let i = decode(1, &f).unwrap();
        assert_eq!((i.src, i.dst, i.ip_proto), (s, d, 17));
        // The same packet given as a bare IPv6 header (protocol 12).
        let i = decode(12, &f[14..]).unwrap();
        assert_eq!((i.src, i.dst, i.dst_port), (s, d, Some(2000)));
        let f4 = frame(&[], v4(1, 2, 3, 4), v4(5, 6, 7, 8), 6, 1, 2, 0);
        let i = decode(11, &f4[14..]).unwrap();
        assert_eq!(i.dst, v4(5, 6, 7, 8));
    }

    #[test]
    fn ipv6_extension_header_is_skipped() {
        let s: IpAddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().into();
        let d: IpAddr = "2001:db8::2".parse::<Ipv6Addr>().unwrap().into();
        let mut f = frame(&[], s, d, 17, 7000, 8000, 10);
        // Insert a hop-by-hop header (next header UDP, PadN to 8 bytes).
        f[14 + 6] = 0;
        let plen = u16::from_be_bytes([f[18], f[19]]) + 8;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        let hbh = [17u8, 0, 1, 4, 0, 0, 0, 0];
        f.splice(54..54, hbh);
        let i = decode(1, &f).unwrap();
        assert_eq!(
            (i.ip_proto, i.src_port, i.dst_port),
            (17, Some(7000), Some(8000))
        );
    }

    #[test]
    fn truncated_transport_still_gives_addresses() {
        let f = frame(&[], v4(10, 0, 0, 1), v4(10, 0, 0, 2), 6, 1, 2, 1400);
        // Cut inside the TCP header: addresses known, ports not.
        let i = decode(1, &f[..14 + 20 + 6]).unwrap();
        assert_eq!(i.dst, v4(10, 0, 0, 2));
        assert_eq!(i.src_port, None);
    }

    #[test]
    fn errors() {
        assert_eq!(decode(2, &[0; 64]), Err(HeaderError::Protocol(2)));
        assert_eq!(decode(1, &[0; 5]), Err(HeaderError::Truncated));
        // ARP frame: valid Ethernet, not IP.
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0u8; 28]);
        assert_eq!(decode(1, &arp), Err(HeaderError::NotIp));
        // Ethernet header cut inside the IPv4 header.
        let f = frame(&[], v4(10, 0, 0, 1), v4(10, 0, 0, 2), 6, 1, 2, 0);
        assert!(decode(1, &f[..20]).is_err());
    }
}
