//! Guests qemu-test does not build: a distribution's image declared by URL
//! and SHA-256 (QEMU's functional tests' `Asset`), booted with the host's
//! UEFI firmware and a variable store of the test's own.
//!
//! Run it with `cargo run -p qemu-test-examples --example assets`. The
//! first run downloads the Alpine image (about 200 MB) into
//! `~/.cache/qemu-test/assets/`; later runs use it from there. Without a
//! network the Alpine test is skipped with the reason (a failure under
//! `QEMU_TEST_REQUIRE=1`). To fetch ahead of time, as a CI job that caches
//! the directory would:
//!
//! ```text
//! cargo run -p qemu-test-examples --example assets -- --qemu-test-assets list
//! cargo run -p qemu-test-examples --example assets -- --qemu-test-assets fetch
//! QEMU_TEST_OFFLINE=1 cargo run -p qemu-test-examples --example assets
//! ```
//!
//! Downloading needs qemu-test's `assets` feature (this crate's
//! Cargo.toml enables it): `qemu-test = { version = "0.1", features =
//! ["assets"] }`. UEFI needs Debian's `ovmf` and `qemu-efi-aarch64`, a disk
//! image's overlay `qemu-utils` (`cargo xtask setup` installs them).

use qemu_test::guest::Asset;
use qemu_test::prelude::*;

/// The image QEMU's own `tests/functional/test_aarch64_virt.py` boots.
static ALPINE: Asset = Asset::new(
    "https://dl-cdn.alpinelinux.org/alpine/v3.17/releases/aarch64/alpine-standard-3.17.2-aarch64.iso",
    "5a36304ecf039292082d92b48152a9ec21009d3a62f459de623e19c4bd9dc027",
);

/// Boots the image from UEFI. The image is attached through a qcow2
/// overlay in the test's artifact dir (`disk0.qcow2`), so the cached file
/// is never written; the firmware's variables go to `efivars.fd` there.
#[qemu_test(
    arch = "aarch64",
    machine = "virt",
    cpu = "max,pauth=off",
    memory = "1G",
    firmware = "uefi",
    disk = ALPINE,
    console,
    args = ["-nodefaults"],
    timeout = "6m"
)]
fn alpine_boots_from_uefi(vm: &mut Vm) -> TestResult {
    vm.console().wait_for("Welcome to Alpine Linux 3.17")?;
    vm.console().wait_for("login:")?;
    Ok(())
}

/// No asset at all: the host's OVMF boots to its shell, which sets a
/// non-volatile variable in this machine's own variable store.
#[qemu_test(
    arch = "x86_64",
    machine = "q35",
    firmware = "uefi",
    console,
    // No NIC: the firmware would try network boots before its shell.
    args = ["-nodefaults"],
    timeout = "3m"
)]
fn uefi_shell_keeps_a_variable(vm: &mut Vm) -> TestResult {
    let console = vm.console();
    console.wait_for("startup.nsh")?;
    // Any key but Esc skips the countdown.
    console.send("\r")?;
    console.wait_for("Shell>")?;
    console.send("setvar Example -guid 6a6b0a3e-1f3e-4b34-9c4b-5a1e4c1e0b5a -nv -bs =414243\r")?;
    console.wait_for("Shell>")?;
    console.send("dmpstore Example -guid 6a6b0a3e-1f3e-4b34-9c4b-5a1e4c1e0b5a\r")?;
    console.wait_for("41 42 43")?;
    Ok(())
}

qemu_test::main!();
