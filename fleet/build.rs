//! Compiles proto/fleet.proto (needs `protoc`: Debian's protobuf-compiler,
//! installed by scripts/setup.sh).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/fleet.proto");
    tonic_prost_build::configure().compile_protos(&["proto/fleet.proto"], &["proto"])?;
    Ok(())
}
