//! hostd's eBPF telemetry: per-interface, per-VLAN and per-subnet counters
//! that are exact, sampled packet headers, and an sFlow v5 agent.
//!
//! - [`loader`]: [`Telemetry`] loads the TC programs from `ebpf/telemetry-ebpf`
//!   (built for `bpfel-unknown-none` by this crate's `build.rs` with
//!   aya-build and embedded with `include_bytes_aligned!`), attaches them to
//!   both directions of an interface (TCX on kernels >= 6.6, a clsact qdisc
//!   with direct-action filters before), configures sampling and subnets, and
//!   reads the per-CPU counters. Interfaces resolve in the network namespace
//!   of the calling thread. Dropping it detaches everything.
//! - [`sflow`]: sFlow v5 datagrams as values and their XDR encoding (pure).
//! - [`agent`]: [`Agent`] drains the sample ring buffer into flow samples,
//!   turns counters into counter samples, and sends datagrams over UDP.
//!
//! The map layouts shared with the programs are in `telemetry-common`.

pub mod agent;
pub mod loader;
pub mod sflow;

pub use agent::{Agent, AgentConfig, AgentError, Sent};
pub use aya::programs::TcAttachType;
pub use ipnet::IpNet;
pub use loader::{
    tcx_programs, unpin, AttachMode, LoadOptions, Telemetry, TelemetryError, DEFAULT_PIN_DIR,
};
pub use telemetry_common::{
    programs, DirCounters, IfVlanCounters, IfVlanKey, SubnetCounters, NO_VLAN,
};
