//! An async client for OVSDB (RFC 7047), the database of Open vSwitch, and
//! for ovs-vswitchd's unixctl control socket.
//!
//! No maintained crate does this (checked 2026-12: `ovsdb` 0.0.6 is marked
//! work in progress and has no monitor; `ovsdb-client` 0.0.1 has no
//! transact; nmstate's client is private to nmstate), so it is written here.
//! It is small: JSON-RPC over a unix (or TCP) socket.
//!
//! - [`framing`]: splits the delimiter-less stream of concatenated JSON
//!   values, across arbitrary read boundaries.
//! - [`datum`]: atoms, sets, maps, rows.
//! - [`ops`]: transaction operations (insert with uuid-name, select, update,
//!   mutate, delete, wait, comment) and their results.
//! - [`client`]: the connection: requests matched to replies by id while
//!   `update` notifications interleave; server `echo` answered; op-level
//!   error detection; a `monitor` cache; `next_cfg`/`cur_cfg` waits
//!   ([`Client::transact_applied`]) and interface failure checks.
//! - [`unixctl`]: ovs-vswitchd's control socket (`bond/show`, `lacp/show`, ...).
//! - `sandbox` (feature `sandbox`): a private ovsdb-server + ovs-vswitchd for
//!   tests and the benchmark.

pub mod client;
pub mod datum;
pub mod framing;
pub mod ops;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod unixctl;

pub use client::{Cache, Client, Error, InterfaceFailure};
pub use datum::{wire, Atom, Row, Uuid};
pub use ops::{Condition, Mutation, Op, TxnResult, Until};
pub use unixctl::{Unixctl, UnixctlError};

/// The database ovs-vswitchd uses.
pub const DB: &str = "Open_vSwitch";

/// The configuration columns hostd manages, table by table (with `$extra`
/// columns appended): one list for the engine's cache and the daemon's
/// drift watch.
macro_rules! columns {
    (bridge $(, $extra:literal)*) => {
        &[
            "name",
            "ports",
            "datapath_type",
            "fail_mode",
            "stp_enable",
            "rstp_enable",
            "mcast_snooping_enable",
            "external_ids",
            "other_config",
            $($extra),*
        ]
    };
    (port $(, $extra:literal)*) => {
        &[
            "name",
            "interfaces",
            "tag",
            "trunks",
            "vlan_mode",
            "bond_mode",
            "lacp",
            "bond_updelay",
            "bond_downdelay",
            "other_config",
            "fake_bridge",
            "external_ids",
            $($extra),*
        ]
    };
    (interface $(, $extra:literal)*) => {
        &["name", "type", "options", "mtu_request", "external_ids", $($extra),*]
    };
}

/// The columns hostd monitors (and needs for `next_cfg` waits and
/// interface checks); pass to [`Client::monitor_cache`].
pub const HOSTD_TABLES: &[(&str, &[&str])] = &[
    ("Open_vSwitch", &["bridges", "cur_cfg", "next_cfg"]),
    ("Bridge", columns!(bridge)),
    ("Port", columns!(port, "bond_active_slave")),
    (
        "Interface",
        columns!(
            interface,
            "ofport",
            "error",
            "lacp_current",
            "link_state",
            "admin_state",
            "mac_in_use"
        ),
    ),
];

/// The configuration columns only (no column ovs-vswitchd rewrites): a
/// change in one of them is drift (the daemon's OVSDB watch).
pub const CONFIG_TABLES: &[(&str, &[&str])] = &[
    ("Open_vSwitch", &["bridges"]),
    ("Bridge", columns!(bridge)),
    ("Port", columns!(port)),
    ("Interface", columns!(interface)),
];
