//! The lab: racks of network namespaces on a real kernel, described as data.
//!
//! Every integration test, demo and benchmark builds its world here:
//!
//! - [`spec`]: the rack as data ([`RackSpec`]): switches (a VLAN-aware Linux
//!   bridge each, LAGs as 802.3ad bonds, optional lldpd), switch pairs that
//!   present one LACP system to servers (standing for MLAG), servers whose NICs
//!   (`eth0`, `eth1`, ...) are cabled to named switch ports.
//! - [`rack`]: builds a [`Rack`] from a spec and tears it down on drop.
//! - [`netns`]: [`NetNs`], a uniquely named namespace removed on drop (also
//!   after a panic), commands in it, and closures run on a thread inside it.
//! - [`traffic`]: ping with loss measurement, a background pinger for
//!   failover loss.
//! - [`gen`]: a seeded generator of valid hostd documents and transitions
//!   (the differential test).
//! - [`conformance`]: does the kernel hold what a document says (from
//!   iproute2's JSON, not hostd's decoder).
//! - [`snapshot`]: a namespace's whole netlink state for exact comparisons,
//!   with every ignored key listed with its reason.
//! - [`wait`]: waiting on a condition with a timeout, never a fixed sleep.
//! - [`kernel`]: probes for the kernel features tests need (bonding, 802.1Q,
//!   bridge VLAN filtering, OVS datapath); a test that needs a missing one
//!   fails with [`kernel::require`], naming it.
//!
//! Nothing here touches the host's own namespace: links are created inside
//! lab namespaces (`ip -n NS link add ... peer ... netns OTHER`).

pub mod bonding;
pub mod conformance;
pub mod gen;
pub mod kernel;
pub mod lldp;
pub mod netns;
pub mod rack;
pub mod snapshot;
pub mod spec;
pub mod traffic;
pub mod wait;

pub use netns::NetNs;
pub use rack::Rack;
pub use spec::RackSpec;
pub use wait::wait_until;
