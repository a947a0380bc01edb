//! `cargo xtask guests`, Linux part: finds or builds the Linux test guests
//! (`qemu_test::guest::LINUX_X86_64`, and on request `LINUX_AARCH64`) with
//! the library's own builder, [`qemu_test::guest::LinuxBuilder`]: the same
//! code a test runs when it uses a guest for the first time, into the same
//! per-user cache (`$QEMU_TEST_CACHE_DIR`, else `~/.cache/qemu-test`).
//!
//! Here the build's files are also checked against the SHA-256 their
//! manifest records (a damaged build is made again), and with
//! `QEMU_TEST_GUESTS_DIR` set the guest is copied there too (tests then
//! take it from that directory: `<dir>/linux-<arch>/`).
//!
//! The aarch64 guest is built only when asked (`--aarch64`): its first
//! build fetches the arm64 package lists (about 9 MB) and a 21 MB kernel
//! package, which `cargo xtask test` (CI) does not spend; its test is
//! `ignore`d for the same reason. `--update` fetches the package lists
//! again first (they are otherwise kept until the host's apt sources
//! change).

use std::time::Instant;

use qemu_test::guest::{self, BuildOutcome, Guest};

use crate::util;

/// Which Linux guests `cargo xtask guests` builds, and how.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Also build the aarch64 guest (`--aarch64`).
    pub aarch64: bool,
    /// Fetch the package lists again first (`--update`).
    pub update: bool,
}

/// Finds or builds the x86_64 Linux guest, and the aarch64 one when asked.
pub fn build(opts: Options) -> Result<(), String> {
    build_one(&guest::LINUX_X86_64, opts)?;
    if opts.aarch64 {
        build_one(&guest::LINUX_AARCH64, opts)?;
    }
    Ok(())
}

fn build_one(guest: &Guest, opts: Options) -> Result<(), String> {
    let linux = guest
        .linux()
        .ok_or_else(|| format!("{} is not a Linux guest", guest.name))?;
    let started = Instant::now();
    let built = linux
        .builder()
        .update_package_lists(opts.update)
        .verify(true)
        .build()
        .map_err(|e| e.to_string())?;
    let outcome = match built.outcome {
        BuildOutcome::Built => "built",
        BuildOutcome::Found => "up to date",
        BuildOutcome::Kept => "kept (package lists unavailable)",
        _ => "done",
    };
    let mut files = built.files;
    if let Some(dir) = guest::guests_dir() {
        files = files
            .copy_to(&dir)
            .map_err(|e| format!("cannot copy {} to {}: {e}", linux.name, dir.display()))?;
    }
    println!(
        "guests: {}: {outcome} in {} ({}, kernel {})",
        linux.name,
        util::human(started.elapsed()),
        files.dir.display(),
        files.kernel_release().unwrap_or("?")
    );
    Ok(())
}
