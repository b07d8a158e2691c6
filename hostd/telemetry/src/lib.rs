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
pub mod subnet_table;

pub use agent::{Agent, AgentConfig, AgentError, Sent};
pub use aya::programs::TcAttachType;
pub use ipnet::IpNet;
pub use loader::{
    tcx_programs, unpin, AttachMode, LoadOptions, Telemetry, TelemetryError, TestSkb,
    DEFAULT_PIN_DIR,
};
pub use subnet_table::SubnetLookup;
pub use telemetry_common::{
    programs, DirCounters, IfVlanCounters, IfVlanKey, SubnetCounters, NO_VLAN,
};

#[cfg(test)]
mod layout {
    //! The map values are read as bytes on both sides: no implicit padding,
    //! sizes as the programs see them.
    use std::mem::size_of;

    use telemetry_common::{
        BucketV4, BucketV6, Config, SampleRecord, SubnetTableMeta, MAX_HEADER_BYTES,
        MAX_PREFIX_LENGTHS,
    };

    use super::*;

    #[test]
    fn shared_types_have_no_padding() {
        assert_eq!(size_of::<Config>(), 4 * 4);
        assert_eq!(size_of::<IfVlanKey>(), 4 + 4);
        assert_eq!(size_of::<DirCounters>(), 6 * 8);
        assert_eq!(size_of::<IfVlanCounters>(), 2 * 6 * 8);
        assert_eq!(size_of::<SubnetCounters>(), 4 * 8);
        assert_eq!(
            size_of::<SubnetTableMeta>(),
            2 * 8 + 4 * 4 + 3 * MAX_PREFIX_LENGTHS * 4 + MAX_PREFIX_LENGTHS * 16
        );
        assert_eq!(size_of::<BucketV4>(), 2 * 12 + 8);
        assert_eq!(size_of::<BucketV6>(), 2 * 24 + 8);
        assert_eq!(
            size_of::<SampleRecord>(),
            5 * 4 + 2 * 2 + 5 * 4 + MAX_HEADER_BYTES
        );
    }

    #[test]
    fn skips_average_the_sampling_rate() {
        use telemetry_common::next_skip;
        assert_eq!(
            (next_skip(1, 0), next_skip(1, u32::MAX)),
            (1, 1),
            "1:1 samples every packet"
        );
        assert_eq!((next_skip(1000, 0), next_skip(1000, u32::MAX)), (1, 1999));
        // Mean over a uniform sweep of r is N.
        let n = 100_000u64;
        let sum: u64 = (0..n)
            .map(|i| next_skip(1000, ((i << 32) / n) as u32))
            .sum();
        let mean = sum as f64 / n as f64;
        assert!((mean - 1000.0).abs() < 0.01, "mean skip {mean}");
    }
}
