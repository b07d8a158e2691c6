//! eBPF programs hostd attaches to the interfaces it manages (TC ingress and
//! egress, through TCX where the kernel has it and clsact otherwise).
//!
//! `count` adds every packet and its length to a per-CPU counter slot chosen by
//! direction. It never drops or alters traffic: it returns `TC_ACT_UNSPEC`
//! (`TCX_NEXT` under TCX), so the next program or the default action decides.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        macros::{classifier, map},
        maps::PerCpuArray,
        programs::TcContext,
    };
    use telemetry_common::{Counters, DIR_EGRESS, DIR_INGRESS};

    /// "Continue with the next program / default action" in both clsact and TCX.
    const TC_ACT_UNSPEC: i32 = -1;

    /// Indexed by `DIR_INGRESS` / `DIR_EGRESS`.
    #[map]
    static DIR_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(2, 0);

    #[inline(always)]
    fn count(ctx: &TcContext, dir: u32) -> i32 {
        if let Some(c) = DIR_COUNTERS.get_ptr_mut(dir) {
            // SAFETY: the pointer comes from the map lookup and is valid for
            // this CPU for the duration of the program; per-CPU values need no
            // atomics.
            unsafe {
                (*c).packets += 1;
                (*c).bytes += u64::from(ctx.len());
            }
        }
        TC_ACT_UNSPEC
    }

    #[classifier]
    pub fn count_ingress(ctx: TcContext) -> i32 {
        count(&ctx, DIR_INGRESS)
    }

    #[classifier]
    pub fn count_egress(ctx: TcContext) -> i32 {
        count(&ctx, DIR_EGRESS)
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// Host builds (clippy, `cargo test --workspace`) compile this file as an
/// ordinary binary that does nothing; the real object is built for
/// `bpfel-unknown-none` by hostd-telemetry's build script.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
