//! `dns-resolver` through systemd-resolved, where it runs.
//!
//! systemd-resolved "runs" when the name `org.freedesktop.resolve1` has an
//! owner on the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, default
//! `/run/dbus/system_bus_socket`). hostd then sets the servers and search
//! domains per link, the way NetworkManager does: `SetLinkDNS` and
//! `SetLinkDomains` on the link that carries the desired default route
//! ([`carrier`]), and reads them back from the link object's `DNS` and
//! `Domains` properties, so verification, idempotence and rollback work as
//! for the rest of the plan. No file is written and nothing is reloaded.
//!
//! Where the name has no owner (no bus, or no resolved), and whenever
//! `--resolv-conf` is given explicitly, hostd writes the resolv.conf file.

use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use hostd_core::{
    schema::{DnsConfig, NetworkState, RouteState},
    types::IfName,
    validate::{Invalid, ValidationErrors},
};
use zbus::{
    blocking::{fdo::DBusProxy, Connection, Proxy},
    names::BusName,
    proxy::CacheProperties,
    zvariant::OwnedObjectPath,
};

/// systemd-resolved's bus name.
pub const BUS_NAME: &str = "org.freedesktop.resolve1";
const MANAGER_PATH: &str = "/org/freedesktop/resolve1";
const MANAGER_IFACE: &str = "org.freedesktop.resolve1.Manager";
const LINK_IFACE: &str = "org.freedesktop.resolve1.Link";
const NO_SUCH_LINK: &str = "org.freedesktop.resolve1.NoSuchLink";
/// resolved learns new links over rtnetlink, asynchronously: a link hostd
/// just created may not be known to it yet.
const LINK_WAIT: Duration = Duration::from_secs(3);

/// A D-Bus failure talking to systemd-resolved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call failed.
    #[error("systemd-resolved: {what}: {source}")]
    Bus {
        /// The call, with its arguments.
        what: String,
        /// Cause (boxed: zbus's error is large).
        #[source]
        source: Box<zbus::Error>,
    },
    /// resolved reported a server address hostd cannot decode.
    #[error("systemd-resolved: link {ifindex} has a DNS server of family {family} with {len} address bytes")]
    BadAddress {
        /// Link.
        ifindex: u32,
        /// Address family.
        family: i32,
        /// Address length.
        len: usize,
    },
}

fn bus(what: impl Into<String>) -> impl FnOnce(zbus::Error) -> Error {
    let what = what.into();
    move |source| Error::Bus {
        what,
        source: Box::new(source),
    }
}

/// A connection to the system bus where systemd-resolved owns its name.
#[derive(Clone)]
pub struct Resolved {
    conn: Connection,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolved")
    }
}

impl Resolved {
    /// Connects to the system bus and checks that `org.freedesktop.resolve1`
    /// has an owner. `None` when there is no bus or no owner (resolved does
    /// not run); a bus that answers with an error is an error.
    pub fn detect() -> Result<Option<Self>, Error> {
        let conn = match Connection::system() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "no system bus: systemd-resolved does not run");
                return Ok(None);
            }
        };
        let dbus = DBusProxy::new(&conn).map_err(bus("org.freedesktop.DBus proxy"))?;
        let name = BusName::try_from(BUS_NAME).map_err(|e| Error::Bus {
            what: format!("bus name {BUS_NAME}"),
            source: Box::new(e.into()),
        })?;
        let owned = dbus.name_has_owner(name).map_err(|e| Error::Bus {
            what: format!("NameHasOwner({BUS_NAME})"),
            source: Box::new(e.into()),
        })?;
        if owned {
            Ok(Some(Self { conn }))
        } else {
            tracing::debug!("{BUS_NAME} has no owner: systemd-resolved does not run");
            Ok(None)
        }
    }

    fn manager(&self) -> Result<Proxy<'static>, Error> {
        zbus::blocking::proxy::Builder::new(&self.conn)
            .destination(BUS_NAME)
            .and_then(|b| b.path(MANAGER_PATH))
            .and_then(|b| b.interface(MANAGER_IFACE))
            .map(|b| b.cache_properties(CacheProperties::No))
            .and_then(|b| b.build())
            .map_err(bus("Manager proxy"))
    }

    /// Runs `call` until resolved knows the link (or [`LINK_WAIT`] passed).
    fn on_link<T>(
        &self,
        what: &str,
        mut call: impl FnMut() -> zbus::Result<T>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        loop {
            match call() {
                Err(zbus::Error::MethodError(name, _, _))
                    if name.as_str() == NO_SUCH_LINK && started.elapsed() < LINK_WAIT =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                r => return r.map_err(bus(what)),
            }
        }
    }

    /// The servers and domains resolved holds for link `ifindex` (routing-only
    /// domains shown with their `~` prefix, as `resolvectl` does).
    pub fn link_dns(&self, ifindex: u32) -> Result<DnsConfig, Error> {
        let manager = self.manager()?;
        let what = format!("GetLink({ifindex})");
        let path: OwnedObjectPath =
            self.on_link(&what, || manager.call("GetLink", &(ifindex as i32)))?;
        let link = zbus::blocking::proxy::Builder::<Proxy<'_>>::new(&self.conn)
            .destination(BUS_NAME)
            .and_then(|b| b.path(path.clone()))
            .and_then(|b| b.interface(LINK_IFACE))
            .map(|b| b.cache_properties(CacheProperties::No))
            .and_then(|b| b.build())
            .map_err(bus(format!("Link proxy {}", path.as_str())))?;
        let servers: Vec<(i32, Vec<u8>)> = link
            .get_property("DNS")
            .map_err(bus(format!("{}: DNS", path.as_str())))?;
        let domains: Vec<(String, bool)> = link
            .get_property("Domains")
            .map_err(bus(format!("{}: Domains", path.as_str())))?;
        let mut c = DnsConfig::default();
        for (family, bytes) in servers {
            let bad = || Error::BadAddress {
                ifindex,
                family,
                len: bytes.len(),
            };
            // A length that does not fit the family fails the conversion.
            let ip = match family {
                libc::AF_INET => <[u8; 4]>::try_from(bytes.as_slice())
                    .map(IpAddr::from)
                    .map_err(|_| bad())?,
                libc::AF_INET6 => <[u8; 16]>::try_from(bytes.as_slice())
                    .map(IpAddr::from)
                    .map_err(|_| bad())?,
                _ => return Err(bad()),
            };
            c.server.push(ip);
        }
        c.search = domains
            .into_iter()
            .map(|(d, routing_only)| if routing_only { format!("~{d}") } else { d })
            .collect();
        Ok(c)
    }

    /// Replaces link `ifindex`'s servers and domains (`~d`: routing-only).
    pub fn set_link_dns(&self, ifindex: u32, c: &DnsConfig) -> Result<(), Error> {
        let manager = self.manager()?;
        let servers: Vec<(i32, Vec<u8>)> = c
            .server
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec()),
                IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec()),
            })
            .collect();
        let domains: Vec<(String, bool)> = c
            .search
            .iter()
            .map(|d| match d.strip_prefix('~') {
                Some(r) => (r.to_owned(), true),
                None => (d.clone(), false),
            })
            .collect();
        let i = ifindex as i32;
        self.on_link(&format!("SetLinkDNS({ifindex}, {:?})", c.server), || {
            manager.call::<_, _, ()>("SetLinkDNS", &(i, servers.clone()))
        })?;
        self.on_link(
            &format!("SetLinkDomains({ifindex}, {:?})", c.search),
            || manager.call::<_, _, ()>("SetLinkDomains", &(i, domains.clone())),
        )?;
        tracing::info!(ifindex, servers = ?c.server, domains = ?c.search, "systemd-resolved: link DNS set");
        Ok(())
    }
}

/// Where `dns-resolver` goes in one run.
#[derive(Debug, Clone)]
pub enum DnsTarget {
    /// The resolv.conf file.
    File(PathBuf),
    /// systemd-resolved, per link.
    Resolved {
        /// The bus.
        bus: Resolved,
        /// The link that carries the servers and domains.
        iface: IfName,
    },
}

/// The link that carries `dns-resolver` when systemd-resolved runs: the
/// next-hop interface of the first present default route (`0.0.0.0/0` or
/// `::/0`, in `routes.config` order, first next hop naming an interface);
/// without one, the first interface in document order that is not absent,
/// not loopback and has an address. No such link: an error naming
/// `dns-resolver` (nothing on the host changes).
pub fn carrier(desired: &NetworkState) -> Result<IfName, ValidationErrors> {
    use hostd_core::schema::{IfState, InterfaceType};
    for r in &desired.routes.config {
        if r.state == RouteState::Absent || r.destination.prefix_len() != 0 {
            continue;
        }
        if let Some(i) = r
            .next_hops()
            .into_iter()
            .find_map(|h| h.next_hop_interface.clone())
        {
            return Ok(i);
        }
    }
    for i in &desired.interfaces {
        let has_addr = [&i.ipv4, &i.ipv6]
            .into_iter()
            .flatten()
            .any(|c| !c.address.is_empty());
        if has_addr && i.state != IfState::Absent && i.kind != InterfaceType::Loopback {
            return Ok(i.name.clone());
        }
    }
    let value = desired
        .dns_resolver
        .as_ref()
        .map(|d| format!("servers {:?} search {:?}", d.config.server, d.config.search))
        .unwrap_or_default();
    Err(ValidationErrors(vec![Invalid {
        path: "dns-resolver".into(),
        value,
        reason: "systemd-resolved runs on this host and takes DNS per link, but no interface \
                 carries a default route (routes.config next-hop-interface) or an address; \
                 declare one, or give --resolv-conf to write a file instead"
            .into(),
    }]))
}
