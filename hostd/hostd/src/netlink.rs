//! A small synchronous rtnetlink client on `netlink-sys`, speaking the
//! message types of `netlink-packet-route`.
//!
//! Why not `rtnetlink`'s `Handle`: its connection task writes one request
//! per wake-up and waits for the socket to become readable in between, so
//! requests go out in lock-step. [`Rtnl::batch`] packs many requests into
//! one `sendmsg` (the kernel processes them in order, acking each) and
//! reads the acks afterwards: the pipelining `ip -batch` does not do.

use std::{io, os::fd::AsRawFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Largest request chunk per `sendmsg`.
const CHUNK_BYTES: usize = 48 * 1024;
/// Most requests per chunk (their acks must fit the receive buffer).
const CHUNK_MSGS: usize = 256;

/// A netlink failure.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    /// Socket-level failure.
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel's answer did not decode.
    #[error("netlink decode: {0}")]
    Decode(String),
    /// The kernel refused a request.
    #[error("{}{}", io::Error::from_raw_os_error(*.errno), .message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kernel {
        /// errno (positive).
        errno: i32,
        /// Extended ack message, when the kernel gave one.
        message: Option<String>,
    },
    /// A dump kept being interrupted by concurrent changes.
    #[error("dump interrupted {0} times by concurrent changes")]
    DumpInterrupted(u32),
}

/// Outcome of one request of a batch.
pub type Ack = Result<(), NlError>;

/// An rtnetlink socket.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens a NETLINK_ROUTE socket in the calling thread's namespace.
    pub fn open() -> Result<Self, NlError> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Small acks, with the kernel's error strings.
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_netlink_get_strict_chk(false);
        // Room for the acks of a whole chunk (root may exceed rmem_max).
        let size: libc::c_int = 8 << 20;
        // SAFETY: setsockopt with a valid fd, option and int-sized value.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(Self {
            sock,
            seq: 1,
            buf: vec![0u8; 1 << 20],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends a dump request and returns every message of the answer.
    /// Retries when the kernel flags the dump as interrupted.
    pub fn dump(&mut self, req: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        for _ in 0..8 {
            let seq = self.next_seq();
            let mut msg = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::InnerMessage(req.clone()),
            );
            msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            msg.header.sequence_number = seq;
            msg.finalize();
            let mut out = vec![0u8; msg.buffer_len()];
            msg.serialize(&mut out);
            self.sock.send(&out, 0)?;
            let mut result = Vec::new();
            let mut interrupted = false;
            'recv: loop {
                let n = self.recv()?;
                let mut off = 0;
                while off + 16 <= n {
                    let len = u32::from_ne_bytes([
                        self.buf[off],
                        self.buf[off + 1],
                        self.buf[off + 2],
                        self.buf[off + 3],
                    ]) as usize;
                    if len < 16 || off + len > n {
                        return Err(NlError::Decode(format!("bad message length {len}")));
                    }
                    let raw = &self.buf[off..off + len];
                    off += (len + 3) & !3;
                    let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw)
                        .map_err(|e| NlError::Decode(e.to_string()))?;
                    if m.header.sequence_number != seq {
                        continue;
                    }
                    if m.header.flags & NLM_F_DUMP_INTR != 0 {
                        interrupted = true;
                    }
                    match m.payload {
                        NetlinkPayload::Done(_) => break 'recv,
                        NetlinkPayload::Error(e) => {
                            if let Some(code) = e.code {
                                return Err(NlError::Kernel {
                                    errno: -code.get(),
                                    message: None,
                                });
                            }
                            break 'recv;
                        }
                        NetlinkPayload::InnerMessage(inner) => result.push(inner),
                        _ => {}
                    }
                }
            }
            if !interrupted {
                return Ok(result);
            }
        }
        Err(NlError::DumpInterrupted(8))
    }

    fn recv(&mut self) -> Result<usize, NlError> {
        loop {
            match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends `reqs` (message, extra flags) pipelined: many per `sendmsg`,
    /// acks read per chunk. The kernel handles them in order; a failed one
    /// does not stop the ones after it. Returns one ack per request.
    pub fn batch(&mut self, reqs: &[(RouteNetlinkMessage, u16)]) -> Result<Vec<Ack>, NlError> {
        let mut acks: Vec<Ack> = Vec::with_capacity(reqs.len());
        let mut i = 0;
        while i < reqs.len() {
            let mut out: Vec<u8> = Vec::with_capacity(CHUNK_BYTES);
            let first_seq = self.seq.wrapping_add(1);
            let mut seqs = Vec::new();
            while i < reqs.len() && seqs.len() < CHUNK_MSGS && out.len() < CHUNK_BYTES {
                let (req, flags) = &reqs[i];
                let seq = self.next_seq();
                let mut msg = NetlinkMessage::new(
                    NetlinkHeader::default(),
                    NetlinkPayload::InnerMessage(req.clone()),
                );
                msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
                msg.header.sequence_number = seq;
                msg.finalize();
                let start = out.len();
                out.resize(start + msg.buffer_len(), 0);
                msg.serialize(&mut out[start..]);
                seqs.push(seq);
                i += 1;
            }
            self.sock.send(&out, 0)?;
            let mut got: Vec<Option<Ack>> = (0..seqs.len()).map(|_| None).collect();
            let mut pending = seqs.len();
            while pending > 0 {
                let n = self.recv()?;
                let mut off = 0;
                while off + 16 <= n {
                    let b = &self.buf;
                    let len =
                        u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
                    if len < 16 || off + len > n {
                        return Err(NlError::Decode(format!("bad message length {len}")));
                    }
                    let raw = &b[off..off + len];
                    off += (len + 3) & !3;
                    let seq = u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]);
                    let ty = u16::from_ne_bytes([raw[4], raw[5]]);
                    let idx = seq.wrapping_sub(first_seq) as usize;
                    if ty != 2 || idx >= got.len() || got[idx].is_some() {
                        continue; // not an ack of this chunk
                    }
                    let errno = if raw.len() >= 20 {
                        i32::from_ne_bytes([raw[16], raw[17], raw[18], raw[19]])
                    } else {
                        0
                    };
                    got[idx] = Some(if errno == 0 {
                        Ok(())
                    } else {
                        Err(NlError::Kernel {
                            errno: -errno,
                            message: ext_ack_message(raw),
                        })
                    });
                    pending -= 1;
                }
            }
            acks.extend(got.into_iter().map(|a| a.unwrap_or(Ok(()))));
        }
        Ok(acks)
    }
}

impl Rtnl {
    /// The ifindex of each link in `names` (RTM_GETLINK by name, pipelined,
    /// without statistics): one result per name, an error for a name no link
    /// has.
    pub fn link_indexes(&mut self, names: &[String]) -> Result<Vec<Result<u32, NlError>>, NlError> {
        use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
        let mut out: Vec<Option<Result<u32, NlError>>> = (0..names.len()).map(|_| None).collect();
        for (chunk_no, chunk) in names.chunks(CHUNK_MSGS).enumerate() {
            let mut bytes: Vec<u8> = Vec::new();
            let first_seq = self.seq.wrapping_add(1);
            for name in chunk {
                let mut m = LinkMessage::default();
                m.attributes.push(LinkAttribute::IfName(name.clone()));
                m.attributes
                    .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
                let seq = self.next_seq();
                let mut msg = NetlinkMessage::new(
                    NetlinkHeader::default(),
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(m)),
                );
                msg.header.flags = NLM_F_REQUEST;
                msg.header.sequence_number = seq;
                msg.finalize();
                let start = bytes.len();
                bytes.resize(start + msg.buffer_len(), 0);
                msg.serialize(&mut bytes[start..]);
            }
            self.sock.send(&bytes, 0)?;
            let base = chunk_no * CHUNK_MSGS;
            let mut pending = chunk.len();
            while pending > 0 {
                let n = self.recv()?;
                let mut off = 0;
                while off + 16 <= n {
                    let b = &self.buf;
                    let len =
                        u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
                    if len < 16 || off + len > n {
                        return Err(NlError::Decode(format!("bad message length {len}")));
                    }
                    let raw = &b[off..off + len];
                    off += (len + 3) & !3;
                    let ty = u16::from_ne_bytes([raw[4], raw[5]]);
                    let seq = u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]);
                    let idx = seq.wrapping_sub(first_seq) as usize;
                    if idx >= chunk.len() || out[base + idx].is_some() {
                        continue;
                    }
                    let r = match ty {
                        // RTM_NEWLINK: ifi_index follows the 16-byte header.
                        16 if raw.len() >= 24 => {
                            Ok(i32::from_ne_bytes([raw[20], raw[21], raw[22], raw[23]]) as u32)
                        }
                        2 if raw.len() >= 20 => {
                            let errno = i32::from_ne_bytes([raw[16], raw[17], raw[18], raw[19]]);
                            Err(NlError::Kernel {
                                errno: -errno,
                                message: ext_ack_message(raw),
                            })
                        }
                        _ => continue,
                    };
                    out[base + idx] = Some(r);
                    pending -= 1;
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or(Err(NlError::Decode("no answer".into()))))
            .collect())
    }
}

/// NLMSGERR_ATTR_MSG of an extended ack (capped: the echoed request is only
/// its 16-byte header).
fn ext_ack_message(raw: &[u8]) -> Option<String> {
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLM_F_CAPPED: u16 = 0x100;
    let flags = u16::from_ne_bytes([raw[6], raw[7]]);
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let mut off = if flags & NLM_F_CAPPED != 0 {
        16 + 4 + 16
    } else {
        let inner = u32::from_ne_bytes(raw.get(20..24)?.try_into().ok()?) as usize;
        16 + 4 + ((inner + 3) & !3)
    };
    while off + 4 <= raw.len() {
        let alen = u16::from_ne_bytes([raw[off], raw[off + 1]]) as usize;
        let atype = u16::from_ne_bytes([raw[off + 2], raw[off + 3]]);
        if alen < 4 || off + alen > raw.len() {
            return None;
        }
        if atype == 1 {
            let s = &raw[off + 4..off + alen];
            let s = s.split(|c| *c == 0).next().unwrap_or(s);
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        off += (alen + 3) & !3;
    }
    None
}
