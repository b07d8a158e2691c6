//! `hostd`: thin binary over the library.
fn main() {
    println!("hostd {}", env!("CARGO_PKG_VERSION"));
}
