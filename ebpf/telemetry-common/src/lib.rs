//! Types shared by the eBPF programs in `ebpf/telemetry-ebpf` and their
//! userspace loader in `hostd/telemetry`.
//!
//! Everything here is `#[repr(C)]`, `no_std`, and laid out identically on both
//! sides of the map boundary. The `user` feature derives `aya::Pod` so the
//! loader can read these values out of BPF maps.
#![no_std]

/// Index of the ingress slot in per-direction arrays.
pub const DIR_INGRESS: u32 = 0;
/// Index of the egress slot in per-direction arrays.
pub const DIR_EGRESS: u32 = 1;

/// Packet and byte counters for one direction, kept per CPU by the program and
/// summed by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
// SAFETY: `Counters` is `repr(C)`, `Copy`, made of plain integers with no padding.
unsafe impl aya::Pod for Counters {}
