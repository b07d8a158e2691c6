//! LACP and LLDP status, read from the host: the sources behind
//! `hostd status` (and, later, the daemon's D-Bus properties).
//!
//! - [`netlink`]: bonds, members and NICs from one RTM_GETLINK dump;
//! - `/proc/net/bonding/BOND` (per network namespace: read through
//!   `/proc/thread-self/net`) for what netlink lacks on 6.1 kernels, parsed
//!   and merged by `hostd_core::status::{procfs, merge}`;
//! - [`lldpd`]: neighbours through `lldpcli -f json0`, and configuring
//!   lldpd to announce this host;
//! - [`cli`]: `hostd status [--intent FILE] [--lldpd-socket PATH] [--no-lldp]`.
//!
//! A [`Reader`] keeps its netlink socket: [`Reader::read_bonds`] (one link
//! dump plus one procfs read per bond) is cheap enough to poll, and
//! [`Reader::poll_bonds`] (dumps filtered by the kernel to the bonds and
//! their members) costs in proportion to the bonds, not to the host's
//! links; LLDP costs an `lldpcli` process and is read separately
//! ([`Reader::read`] does both). The model and the diagnosis are pure:
//! `hostd_core::status`.

pub mod cli;
pub mod lldpd;
pub mod netlink;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hostd_core::status::{lldp, merge, procfs, BondStatus, HostStatus, LldpSource};
use netlink_packet_route::{
    link::{InfoKind, LinkMessage},
    RouteNetlinkMessage,
};

use crate::netlink::{NlError, Rtnl};

/// A status read that could not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The link dump failed.
    #[error("reading links over netlink: {0}")]
    Netlink(#[from] NlError),
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Read LLDP neighbours from lldpd.
    pub lldp: bool,
    /// How to reach lldpd.
    pub lldpcli: lldpd::Lldpcli,
    /// Where the bonding status files are; `None`: this thread's network
    /// namespace (`/proc/thread-self/net/bonding`, else `/proc/net/bonding`).
    pub procfs_dir: Option<PathBuf>,
    /// Report only these NICs (`None`: every NIC).
    pub nics: Option<BTreeSet<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            lldp: true,
            lldpcli: lldpd::Lldpcli::default(),
            procfs_dir: None,
            nics: None,
        }
    }
}

/// The bonding directory of the calling thread's network namespace.
/// `/proc/net` follows the process's main thread: a thread that entered
/// another namespace with setns(2) must read `/proc/thread-self/net`.
pub fn default_procfs_dir() -> PathBuf {
    let own = Path::new("/proc/thread-self/net");
    if own.exists() {
        own.join("bonding")
    } else {
        PathBuf::from("/proc/net/bonding")
    }
}

/// How long the parts of one read took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// The link dump.
    pub netlink: Duration,
    /// Reading and parsing the procfs files.
    pub procfs: Duration,
    /// `lldpcli` (zero when not asked).
    pub lldp: Duration,
}

impl Timing {
    /// The whole read.
    pub fn total(&self) -> Duration {
        self.netlink + self.procfs + self.lldp
    }
}

/// A status source that keeps its netlink socket between reads. Opened in
/// the calling thread's network namespace; use it from threads in that
/// namespace (the socket stays in it, but `/proc/thread-self/net` follows
/// the reading thread).
pub struct Reader {
    nl: Rtnl,
    opts: Options,
    procfs_dir: PathBuf,
    /// How long the last read took.
    pub last: Timing,
}

impl Reader {
    /// Opens the netlink socket.
    pub fn open(opts: Options) -> Result<Self, StatusError> {
        let procfs_dir = opts.procfs_dir.clone().unwrap_or_else(default_procfs_dir);
        Ok(Self {
            nl: Rtnl::open()?,
            opts,
            procfs_dir,
            last: Timing::default(),
        })
    }

    /// Bonds, members and NICs: one link dump, one procfs read per bond.
    /// No LLDP (`lldp` stays [`LldpSource::NotRead`]).
    pub fn read_bonds(&mut self) -> Result<HostStatus, StatusError> {
        self.read_links().map(|(s, _)| s)
    }

    /// [`Reader::read_bonds`], with the ifindexes of what it reports on
    /// (which link events concern the status).
    pub fn read_links(&mut self) -> Result<(HostStatus, netlink::Indexes), StatusError> {
        let t0 = Instant::now();
        let links = self.links(LinkMessage::default())?;
        let decoded = netlink::decode(&links);
        let t1 = Instant::now();
        let mut status = HostStatus {
            ovs_bonds: Vec::new(),
            bonds: decoded.bonds,
            nics: decoded.nics,
            ..HostStatus::default()
        };
        self.fill_from_procfs(&mut status);
        if let Some(keep) = &self.opts.nics {
            status.nics.retain(|n| keep.contains(&n.name));
        }
        self.last = Timing {
            netlink: t1 - t0,
            procfs: t1.elapsed(),
            lldp: Duration::ZERO,
        };
        Ok((status, decoded.indexes))
    }

    /// The bonds and their members only, for polling: one dump of the
    /// links of kind bond and one of each bond's members, both filtered by
    /// the kernel, and one procfs read per bond. Problems go to `notes`.
    pub fn poll_bonds(&mut self) -> Result<(Vec<BondStatus>, Vec<String>), StatusError> {
        let t0 = Instant::now();
        let mut links = self.links(netlink::filtered_dump(Some(InfoKind::Bond), None))?;
        let bonds: Vec<u32> = links.iter().map(|l| l.header.index).collect();
        for b in bonds {
            links.extend(self.links(netlink::filtered_dump(None, Some(b)))?);
        }
        let decoded = netlink::decode(&links);
        let t1 = Instant::now();
        let mut status = HostStatus {
            ovs_bonds: Vec::new(),
            bonds: decoded.bonds,
            ..HostStatus::default()
        };
        self.fill_from_procfs(&mut status);
        self.last = Timing {
            netlink: t1 - t0,
            procfs: t1.elapsed(),
            lldp: Duration::ZERO,
        };
        Ok((status.bonds, status.notes))
    }

    fn links(&mut self, req: LinkMessage) -> Result<Vec<LinkMessage>, StatusError> {
        let msgs = self.nl.dump(RouteNetlinkMessage::GetLink(req))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect())
    }

    fn fill_from_procfs(&self, status: &mut HostStatus) {
        for b in &mut status.bonds {
            let path = self.procfs_dir.join(&b.name);
            match std::fs::read_to_string(&path) {
                Ok(text) => match procfs::parse(&b.name, &text) {
                    Ok(p) => {
                        status.notes.extend(
                            p.problems
                                .into_iter()
                                .map(|x| format!("{}: {x}", path.display())),
                        );
                        status.notes.extend(merge::fill_from_procfs(b, &p.bond));
                    }
                    Err(e) => status.notes.push(e.to_string()),
                },
                Err(e) => status.notes.push(format!(
                    "{}: {e} (members' partner details unknown)",
                    path.display()
                )),
            }
        }
    }

    /// Adds lldpd's neighbours to `status`'s NICs. A failure is recorded in
    /// `status.lldp`, not returned: the rest of the status stands.
    pub fn add_lldp(&mut self, status: &mut HostStatus) {
        let t = Instant::now();
        let r = self.opts.lldpcli.neighbors().map_err(|e| e.to_string());
        apply_lldp(status, &r);
        self.last.lldp = t.elapsed();
    }

    /// The whole status: bonds, NICs and (when asked) LLDP neighbours.
    pub fn read(&mut self) -> Result<HostStatus, StatusError> {
        let mut s = self.read_bonds()?;
        if self.opts.lldp {
            self.add_lldp(&mut s);
        }
        Ok(s)
    }
}

/// Puts the neighbours lldpd reported (or why it could not be asked) on
/// `status`'s NICs; a parse problem becomes a note.
pub fn apply_lldp(status: &mut HostStatus, lldp: &Result<lldp::Parsed, String>) {
    match lldp {
        Ok(parsed) => {
            for nic in &mut status.nics {
                nic.lldp = parsed.on(&nic.name).into_iter().cloned().collect();
            }
            status
                .notes
                .extend(parsed.problems.iter().map(|p| format!("lldpcli: {p}")));
            status.lldp = LldpSource::Read;
        }
        Err(reason) => {
            for nic in &mut status.nics {
                nic.lldp.clear();
            }
            status.lldp = LldpSource::Unavailable {
                reason: reason.clone(),
            };
        }
    }
}

/// One status read with `opts` (opens and closes a netlink socket).
pub fn read(opts: &Options) -> Result<HostStatus, StatusError> {
    Reader::open(opts.clone())?.read()
}
