//! Makes cargo rebuild the eBPF object when bpf-linker changes (the aya
//! template does the same): the linker is not tracked by cargo otherwise.
use std::env;

fn main() {
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("bpf") {
        return;
    }
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(e) => println!("cargo:warning=bpf-linker not found on PATH: {e}; run scripts/setup.sh"),
    }
}
