//! Builds the eBPF object from `ebpf/telemetry-ebpf` for `bpfel-unknown-none`
//! with aya-build, into OUT_DIR, where `include_bytes_aligned!` embeds it.
//!
//! The eBPF target needs `-Z build-std=core`. The machines here have only the
//! stable toolchain, so we build it with the toolchain that runs this script
//! and `RUSTC_BOOTSTRAP=1` (aya-build honours it); `rust-src` must be
//! installed (`scripts/setup.sh` does it).
use std::path::Path;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = Path::new(&manifest_dir).join("../../ebpf/telemetry-ebpf");
    let ebpf_dir = ebpf_dir
        .canonicalize()
        .with_context(|| format!("eBPF crate not found at {}", ebpf_dir.display()))?;
    let ebpf_dir = ebpf_dir
        .to_str()
        .context("non-UTF-8 path to the eBPF crate")?;
    // The toolchain rustup picked for this build (stable unless overridden).
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".to_owned());
    // SAFETY (edition 2021: set_var is safe): build scripts are single-threaded here.
    std::env::set_var("RUSTC_BOOTSTRAP", "1");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "telemetry-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
