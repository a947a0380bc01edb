//! Builds the program examples/host_program.rs runs in the guest: a plain
//! Rust binary (dynamically linked against the host's glibc, like any
//! `cargo build` output), compiled with the same rustc as the examples.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "program/wordfreq.rs";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition=2021", "-O", "--crate-name", "wordfreq", "-o"])
        .arg(out.join("wordfreq"))
        .arg(source)
        .status()
        .expect("running rustc");
    assert!(status.success(), "rustc could not build {source}");
}
