//! UDP receive: per listen address, `workers` sockets bound to the same
//! port with SO_REUSEPORT (the kernel spreads agents over them by flow
//! hash, so one agent always lands on the same socket and its sequence
//! numbers stay in order), each served by one thread calling `recvmmsg` for
//! up to `batch` datagrams at a time and accounting them into its own
//! [`Shard`] (one lock per batch, never contended on the hot path).
//!
//! Kernel receive-buffer drops are read per socket from the SO_RXQ_OVFL
//! control message (the socket's cumulative drop count) and published in
//! [`Ingest::kernel_drops`]. Threads poll a stop flag every 200 ms.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    accounting::{Shard, ShardLimits},
    config::SflowConfig,
    subnets::SubnetTable,
};

/// Seconds since the Unix epoch, replaceable in tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Largest datagram accepted; longer ones are truncated by the kernel and
/// counted as `datagram.oversize`.
const MAX_DATAGRAM: usize = 65_536;

/// Running receive threads.
pub struct Ingest {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Bound addresses (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    /// Cumulative kernel drops per socket.
    pub kernel_drops: Vec<Arc<AtomicU64>>,
    /// The shard of each socket.
    pub shards: Vec<Arc<Mutex<Shard>>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("addrs", &self.addrs)
            .field("sockets", &self.threads.len())
            .finish()
    }
}

/// Binds one socket of the group.
fn bind(addr: SocketAddr, rcvbuf: usize) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // SO_RCVBUFFORCE passes net.core.rmem_max when we have CAP_NET_ADMIN.
    if setsockopt_int(
        &s,
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        rcvbuf as libc::c_int,
    )
    .is_err()
    {
        s.set_recv_buffer_size(rcvbuf)?;
    }
    setsockopt_int(&s, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    s.bind(&addr.into())?;
    Ok(s)
}

fn setsockopt_int(
    s: &Socket,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid fd and a pointer to a c_int of the given length.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            &v as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Ingest {
    /// Binds every socket and starts the threads. Sources accepted: those in
    /// `allow`; with `allow` empty, loopback sources only unless
    /// `cfg.allow_any`. Every shard shares `limits` (one agent count).
    pub fn start(
        cfg: &SflowConfig,
        subnets: Arc<SubnetTable>,
        allow: Arc<SubnetTable>,
        limits: ShardLimits,
        clock: Clock,
    ) -> io::Result<Self> {
        let workers = if cfg.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.workers
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut out = Ingest {
            stop: stop.clone(),
            threads: Vec::new(),
            addrs: Vec::new(),
            kernel_drops: Vec::new(),
            shards: Vec::new(),
        };
        for listen in &cfg.listen {
            let mut addr = *listen;
            for w in 0..workers {
                let sock = bind(addr, cfg.recv_buffer_bytes)
                    .map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
                if w == 0 {
                    addr = sock
                        .local_addr()?
                        .as_socket()
                        .ok_or_else(|| io::Error::other("not an inet socket"))?;
                    out.addrs.push(addr);
                }
                let shard = Arc::new(Mutex::new(Shard::with_limits(
                    subnets.clone(),
                    limits.clone(),
                )));
                let drops = Arc::new(AtomicU64::new(0));
                out.shards.push(shard.clone());
                out.kernel_drops.push(drops.clone());
                let (stop, clock, batch) = (stop.clone(), clock.clone(), cfg.batch);
                let allow = Allow {
                    list: allow.clone(),
                    any: cfg.allow_any,
                };
                let t = std::thread::Builder::new()
                    .name(format!("sflow-rx-{w}"))
                    .spawn(move || worker(sock, batch, shard, drops, allow, clock, stop))?;
                out.threads.push(t);
            }
        }
        tracing::info!(addrs = ?out.addrs, sockets = out.threads.len(), "sFlow ingest started");
        Ok(out)
    }

    /// Stops and joins the threads; datagrams already received are accounted.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    pub fn kernel_drops(&self) -> u64 {
        self.kernel_drops
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sockaddr_ip(ss: &libc::sockaddr_storage) -> Option<IpAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let v6 = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

const CMSG_LEN: usize = 64;

/// Which sources a worker accepts.
struct Allow {
    list: Arc<SubnetTable>,
    any: bool,
}

impl Allow {
    fn accepts(&self, from: IpAddr) -> bool {
        if self.list.is_empty() {
            self.any || from.is_loopback()
        } else {
            self.list.lookup(from).is_some()
        }
    }
}

fn worker(
    sock: Socket,
    batch: usize,
    shard: Arc<Mutex<Shard>>,
    drops: Arc<AtomicU64>,
    allow: Allow,
    clock: Clock,
    stop: Arc<AtomicBool>,
) {
    let fd = sock.as_raw_fd();
    let mut bufs = vec![0u8; batch * MAX_DATAGRAM];
    let mut cmsgs = vec![[0u8; CMSG_LEN]; batch];
    // SAFETY: plain C structs, all-zero is a valid value.
    let mut addrs: Vec<libc::sockaddr_storage> = (0..batch).map(|_| unsafe { zeroed() }).collect();
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(batch);
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(batch);
    for chunk in bufs.chunks_mut(MAX_DATAGRAM) {
        iovs.push(libc::iovec {
            iov_base: chunk.as_mut_ptr() as *mut libc::c_void,
            iov_len: MAX_DATAGRAM,
        });
    }
    for i in 0..batch {
        // SAFETY: zeroed mmsghdr is valid; pointers below point into vectors
        // that outlive the loop and are never reallocated.
        let mut m: libc::mmsghdr = unsafe { zeroed() };
        m.msg_hdr.msg_iov = &mut iovs[i];
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_name = &mut addrs[i] as *mut _ as *mut libc::c_void;
        m.msg_hdr.msg_control = cmsgs[i].as_mut_ptr() as *mut libc::c_void;
        msgs.push(m);
    }
    while !stop.load(Ordering::Relaxed) {
        for m in msgs.iter_mut() {
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_controllen = CMSG_LEN as _;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        // SAFETY: msgs holds `batch` initialised headers whose buffers are live.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => continue,
                _ => {
                    tracing::warn!(error = %e, "recvmmsg");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
        }
        let now = clock();
        let Ok(mut sh) = shard.lock() else { return };
        for i in 0..n as usize {
            let m = &msgs[i];
            read_rxq_ovfl(&m.msg_hdr, &drops);
            let len = m.msg_len as usize;
            let Some(from) = sockaddr_ip(&addrs[i]) else {
                continue;
            };
            if !allow.accepts(from) {
                sh.not_allowed(len);
                continue;
            }
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                sh.stats.datagrams += 1;
                sh.stats.datagrams_rejected += 1;
                *sh.stats
                    .errors
                    .entry("datagram.oversize".into())
                    .or_default() += 1;
                continue;
            }
            let buf = &bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len];
            sh.datagram(from, buf, now);
        }
    }
}

fn read_rxq_ovfl(h: &libc::msghdr, drops: &AtomicU64) {
    // SAFETY: walking the control buffer the kernel filled, with the libc
    // CMSG macros, bounded by msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const u32);
                drops.fetch_max(v as u64, Ordering::Relaxed);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default posture (empty allow-list, no `allow_any`) accepts only
    /// loopback sources; a list accepts only its prefixes.
    #[test]
    fn allow_posture() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let empty = Arc::new(SubnetTable::new([]).unwrap());
        let default = Allow {
            list: empty.clone(),
            any: false,
        };
        assert!(default.accepts(ip("127.0.0.1")) && default.accepts(ip("::1")));
        assert!(!default.accepts(ip("192.0.2.1")) && !default.accepts(ip("2001:db8::1")));
        let any = Allow {
            list: empty,
            any: true,
        };
        assert!(any.accepts(ip("192.0.2.1")));
        let list = Allow {
            list: Arc::new(SubnetTable::new(["192.0.2.0/24".parse().unwrap()]).unwrap()),
            any: true,
        };
        assert!(list.accepts(ip("192.0.2.9")));
        assert!(!list.accepts(ip("127.0.0.1")) && !list.accepts(ip("198.51.100.1")));
    }

    /// A socket nobody reads, with a tiny buffer, flooded: the kernel drops.
    /// A datagram queued after the drops carries the socket's drop count in
    /// its SO_RXQ_OVFL control message, which `read_rxq_ovfl` publishes.
    #[test]
    fn kernel_drops_from_rxq_ovfl() {
        let rx = bind("127.0.0.1:0".parse().unwrap(), 4096).unwrap();
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..500 {
            tx.send_to(&[0u8; 1000], to).unwrap();
        }
        // Drain what was queued before the drops, then queue one more.
        let mut sink = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
        rx.set_nonblocking(true).unwrap();
        while rx.recv(&mut sink).is_ok() {}
        rx.set_nonblocking(false).unwrap();
        tx.send_to(&[0u8; 1000], to).unwrap();
        let mut buf = [0u8; 2048];
        let mut ctl = [0u8; CMSG_LEN];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: a zeroed msghdr pointing at live buffers.
        let mut h: libc::msghdr = unsafe { zeroed() };
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        h.msg_control = ctl.as_mut_ptr() as *mut libc::c_void;
        h.msg_controllen = CMSG_LEN as _;
        // SAFETY: valid fd and msghdr.
        let n = unsafe { libc::recvmsg(rx.as_raw_fd(), &mut h, 0) };
        assert_eq!(n, 1000);
        let drops = AtomicU64::new(0);
        read_rxq_ovfl(&h, &drops);
        let d = drops.load(Ordering::Relaxed);
        assert!(d > 0 && d < 500, "drops {d}");
    }
}
