//! Link flags for the Lua module.
//!
//! Broker `dlclose`s C modules when a Lua state closes. Rust's thread-local
//! destructors (and any thread still finishing) may run code from this image
//! after that, so the image is pinned with `-z nodelete` (rust-lang/rust#91979).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
