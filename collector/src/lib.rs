//! The sFlow v5 collector: switches (and our hosts) push sFlow datagrams; we
//! account their samples per configured subnet and per interface into
//! round-robin series that the controller queries over HTTP.
//!
//! Pure parts (no I/O, tested without root):
//! - [`sflow`]: zero-copy sFlow v5 datagram decoder (+ an encoder for tests);
//! - [`header`]: the sampled packet header, L2-L4 (etherparse);
//! - [`subnets`]: longest-prefix match over IPv4/IPv6 subnets;
//! - [`accounting`]: samples -> scaled per-subnet and per-interface counters;
//! - [`rrd`]: the round-robin database (rrdtool semantics, checked against it).
//!
//! Edges: [`ingest`] (UDP sockets, recvmmsg), [`store`] (series registry and
//! snapshots), [`api`] (HTTP+JSON, Prometheus), [`graph`] (PNG/SVG graphs
//! and the HTML page), [`config`], [`remote_write`] (Prometheus
//! remote-write to a TSDB), and [`run`], which
//! ties them together until a shutdown future resolves.

pub mod accounting;
pub mod api;
pub mod config;
pub mod graph;
pub mod header;
pub mod ingest;
pub mod remote_write;
pub mod rrd;
pub mod service;
pub mod sflow;
pub mod snmp;
pub mod store;
pub mod subnets;

pub use service::{run, system_clock, Collector};
