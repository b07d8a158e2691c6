//! The event source: an rtnetlink socket subscribed to the multicast groups
//! of links (including AF_BRIDGE port VLAN changes, which arrive as link
//! messages), IPv4/IPv6 addresses, IPv4/IPv6 routes and bridge VLAN objects.
//! Each message becomes an [`Event`]; a lost-messages condition (`ENOBUFS`,
//! the receive buffer overflowed) becomes [`Event::Overrun`], after which
//! the loop re-reads everything anyway.

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{link::LinkAttribute, RouteNetlinkMessage};
use netlink_sys::{
    protocols::NETLINK_ROUTE, AsyncSocket as _, AsyncSocketExt as _, SocketAddr, TokioSocket,
};
use tokio::sync::mpsc;

// Multicast groups (linux/rtnetlink.h, enum rtnetlink_groups).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
/// RTM_NEWVLAN/RTM_DELVLAN (bridge VLAN objects, kernel >= 5.0).
const RTNLGRP_BRVLAN: u32 = 33;

/// Receive buffer asked for (root may exceed rmem_max with SO_RCVBUFFORCE,
/// which `set_rx_buf_sz` does not; bursts beyond it end in an overrun and a
/// full re-read, which is correct, only slower).
const RCVBUF: usize = 4 << 20;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A link appeared or changed.
    Link {
        /// Index.
        index: u32,
        /// Name, when the message carried one.
        name: Option<String>,
    },
    /// A link was deleted.
    LinkGone {
        /// Index.
        index: u32,
        /// Name, when the message carried one.
        name: Option<String>,
    },
    /// An address was added or removed.
    Address,
    /// A route was added or removed.
    Route,
    /// A bridge VLAN changed.
    BridgeVlan,
    /// Some other message of the groups.
    Other,
    /// OVSDB's configuration rows changed (bridges, ports, interfaces:
    /// `ovs_watch`).
    Ovs,
    /// Messages were lost: re-read everything.
    Overrun,
}

impl Event {
    /// The link name it concerns, if any.
    pub fn link_name(&self) -> Option<&str> {
        match self {
            Self::Link { name, .. } | Self::LinkGone { name, .. } => name.as_deref(),
            _ => None,
        }
    }
}

/// Opens the subscription (in the calling thread's network namespace).
pub fn subscribe() -> std::io::Result<TokioSocket> {
    let mut sock = TokioSocket::new(NETLINK_ROUTE)?;
    let s = sock.socket_mut();
    let groups = [
        RTNLGRP_LINK,
        RTNLGRP_IPV4_IFADDR,
        RTNLGRP_IPV4_ROUTE,
        RTNLGRP_IPV6_IFADDR,
        RTNLGRP_IPV6_ROUTE,
    ]
    .iter()
    .fold(0u32, |m, g| m | (1 << (g - 1)));
    s.bind(&SocketAddr::new(0, groups))?;
    if let Err(e) = s.add_membership(RTNLGRP_BRVLAN) {
        tracing::warn!(error = %e, "no bridge VLAN notifications (RTNLGRP_BRVLAN); link events still cover bridge ports");
    }
    if let Err(e) = s.set_rx_buf_sz(RCVBUF) {
        tracing::warn!(error = %e, "could not enlarge the netlink receive buffer");
    }
    force_rcvbuf(s, RCVBUF);
    Ok(sock)
}

/// SO_RCVBUFFORCE (root only): the burst of a 4000-VLAN apply must fit.
fn force_rcvbuf(s: &netlink_sys::Socket, size: usize) {
    use std::os::fd::AsRawFd as _;
    let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and
    // its size, as the call expects.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::addr_of!(v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "SO_RCVBUFFORCE refused");
    }
}

/// Decodes one datagram into events (undecodable messages become
/// [`Event::Other`]: they still mean "something changed").
pub fn decode(buf: &[u8], out: &mut Vec<Event>) {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            out.push(Event::Other);
            return;
        }
        let raw = &buf[off..off + len];
        off += (len + 3) & !3;
        let ev = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) {
            Ok(m) => match m.payload {
                NetlinkPayload::InnerMessage(inner) => classify(inner),
                NetlinkPayload::Overrun(_) => Event::Overrun,
                _ => Event::Other,
            },
            Err(_) => Event::Other,
        };
        out.push(ev);
    }
}

fn classify(m: RouteNetlinkMessage) -> Event {
    let name_of = |attrs: &[LinkAttribute]| {
        attrs.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
    };
    match m {
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::SetLink(l) => Event::Link {
            index: l.header.index,
            name: name_of(&l.attributes),
        },
        RouteNetlinkMessage::DelLink(l) => Event::LinkGone {
            index: l.header.index,
            name: name_of(&l.attributes),
        },
        RouteNetlinkMessage::NewAddress(_) | RouteNetlinkMessage::DelAddress(_) => Event::Address,
        RouteNetlinkMessage::NewRoute(_) | RouteNetlinkMessage::DelRoute(_) => Event::Route,
        _ => Event::BridgeVlan,
    }
}

/// Reads the socket forever, forwarding decoded events. Returns when the
/// receiver is gone or the socket fails for good.
pub async fn pump(sock: TokioSocket, tx: mpsc::Sender<Vec<Event>>) {
    let mut batch = Vec::new();
    loop {
        batch.clear();
        match sock.recv_from_full().await {
            Ok((buf, _)) => decode(&buf, &mut batch),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                tracing::warn!(
                    "netlink receive buffer overflowed: events lost, re-reading everything"
                );
                batch.push(Event::Overrun);
            }
            Err(e) => {
                tracing::error!(error = %e, "netlink event socket failed");
                return;
            }
        }
        if batch.is_empty() {
            continue;
        }
        if tx.send(std::mem::take(&mut batch)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::link::LinkMessage;

    fn link_msg(name: &str, index: u32, del: bool) -> Vec<u8> {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.attributes.push(LinkAttribute::IfName(name.into()));
        let inner = if del {
            RouteNetlinkMessage::DelLink(l)
        } else {
            RouteNetlinkMessage::NewLink(l)
        };
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(inner),
        );
        m.finalize();
        let mut out = vec![0u8; m.buffer_len()];
        m.serialize(&mut out);
        out
    }

    #[test]
    fn decodes_several_messages_of_one_datagram() {
        let mut buf = link_msg("bond0", 7, false);
        buf.extend(link_msg("vlan100", 9, true));
        let mut ev = Vec::new();
        decode(&buf, &mut ev);
        assert_eq!(
            ev,
            vec![
                Event::Link {
                    index: 7,
                    name: Some("bond0".into())
                },
                Event::LinkGone {
                    index: 9,
                    name: Some("vlan100".into())
                },
            ]
        );
        // A truncated tail is one "something changed", not a crash.
        let mut ev = Vec::new();
        decode(&buf[..buf.len() - 3], &mut ev);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1], Event::Other);
    }
}
