//! hostd's eBPF telemetry loader.
//!
//! The programs live in `ebpf/telemetry-ebpf` and are built for
//! `bpfel-unknown-none` by this crate's `build.rs` (aya-build); the object is
//! embedded here with `include_bytes_aligned!`. [`Telemetry::load`] loads it,
//! [`Telemetry::attach`] hooks both TC directions of an interface (TCX on
//! kernels >= 6.6, a clsact qdisc with direct-action filters before that), and
//! [`Telemetry::counters`] sums the per-CPU counters.
//!
//! Interfaces are resolved in the network namespace of the calling thread.

use aya::{
    maps::PerCpuArray,
    programs::{tc, SchedClassifier, TcAttachType},
    Ebpf,
};
use telemetry_common::{Counters, DIR_EGRESS, DIR_INGRESS};

/// The eBPF object built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/telemetry-ebpf"));

const PROG_INGRESS: &str = "count_ingress";
const PROG_EGRESS: &str = "count_egress";
const MAP_DIR_COUNTERS: &str = "DIR_COUNTERS";

/// Errors from loading, attaching or reading the telemetry programs.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("loading the eBPF object failed")]
    Load(#[source] aya::EbpfError),
    #[error("program {name} is missing from the eBPF object")]
    MissingProgram { name: &'static str },
    #[error("map {name} is missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("program {name} failed to load into the kernel")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("attaching {name} to {interface} ({direction}) failed")]
    Attach {
        name: &'static str,
        interface: String,
        direction: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name} could not be read")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// How the programs were attached: TCX links (kernel >= 6.6) or netlink
/// filters under a clsact qdisc (older kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Tcx,
    Clsact,
}

/// Loaded telemetry programs. Dropping it detaches everything it attached.
pub struct Telemetry {
    ebpf: Ebpf,
    mode: AttachMode,
}

impl Telemetry {
    /// Loads the embedded object and both classifier programs into the kernel.
    pub fn load() -> Result<Self, TelemetryError> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(TelemetryError::Load)?;
        for name in [PROG_INGRESS, PROG_EGRESS] {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| TelemetryError::Program { name, source })?;
        }
        // aya attaches with TCX from 6.6 on and with netlink (clsact) before.
        let tcx = aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
        let mode = if tcx {
            AttachMode::Tcx
        } else {
            AttachMode::Clsact
        };
        Ok(Self { ebpf, mode })
    }

    /// How [`Telemetry::attach`] hooks interfaces on this kernel.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// Attaches the counters to both directions of `interface`.
    #[tracing::instrument(skip(self))]
    pub fn attach(&mut self, interface: &str) -> Result<(), TelemetryError> {
        if self.mode == AttachMode::Clsact {
            // Adding clsact fails with EEXIST when it is there already: fine.
            if let Err(e) = tc::qdisc_add_clsact(interface) {
                tracing::debug!(error = %e, "clsact qdisc not added (probably present)");
            }
        }
        for (name, attach_type, direction) in [
            (PROG_INGRESS, TcAttachType::Ingress, "ingress"),
            (PROG_EGRESS, TcAttachType::Egress, "egress"),
        ] {
            classifier(&mut self.ebpf, name)?
                .attach(interface, attach_type)
                .map_err(|source| TelemetryError::Attach {
                    name,
                    interface: interface.to_owned(),
                    direction,
                    source,
                })?;
        }
        tracing::info!(interface, mode = ?self.mode, "telemetry attached");
        Ok(())
    }

    /// Sum over CPUs of the (ingress, egress) counters.
    pub fn counters(&self) -> Result<(Counters, Counters), TelemetryError> {
        let map = self
            .ebpf
            .map(MAP_DIR_COUNTERS)
            .ok_or(TelemetryError::MissingMap { name: MAP_DIR_COUNTERS })?;
        let array: PerCpuArray<_, Counters> =
            PerCpuArray::try_from(map).map_err(|source| TelemetryError::Map {
                name: MAP_DIR_COUNTERS,
                source,
            })?;
        let sum = |dir: u32| -> Result<Counters, TelemetryError> {
            let per_cpu = array.get(&dir, 0).map_err(|source| TelemetryError::Map {
                name: MAP_DIR_COUNTERS,
                source,
            })?;
            Ok(per_cpu.iter().fold(Counters::default(), |acc, c| Counters {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
            }))
        };
        Ok((sum(DIR_INGRESS)?, sum(DIR_EGRESS)?))
    }
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, TelemetryError> {
    ebpf.program_mut(name)
        .ok_or(TelemetryError::MissingProgram { name })?
        .try_into()
        .map_err(|source| TelemetryError::Program { name, source })
}
