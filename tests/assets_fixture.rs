//! Tests that use declared assets and UEFI firmware, driven by
//! `tests/assets.rs`, which serves the assets from an HTTP server of its
//! own on the loopback and passes their URLs and hashes in the
//! environment (`ASSET_<NAME>_URL`, `ASSET_<NAME>_SHA`): a lazily made
//! `Asset`, used as `kernel = &*ECHO`.

use std::sync::LazyLock;

use qemu_test::guest::Asset;
use qemu_test::prelude::*;

/// The asset `name` as the driver declares it (a port nothing listens on
/// and a hash of zeros when run by hand).
fn asset(name: &str) -> Asset {
    let var = |what: &str| std::env::var(format!("ASSET_{name}_{what}")).ok();
    Asset::from_url(
        var("URL").unwrap_or_else(|| format!("http://127.0.0.1:9/{name}")),
        var("SHA").unwrap_or_else(|| "0".repeat(64)),
    )
}

/// The built-in echo-shell guest, served xz-compressed.
static ECHO: LazyLock<Asset> = LazyLock::new(|| asset("ECHO"));
/// The Linux guest's kernel (zst) and initramfs (gz).
static KERNEL: LazyLock<Asset> = LazyLock::new(|| asset("KERNEL"));
static INITRD: LazyLock<Asset> = LazyLock::new(|| asset("INITRD"));
/// A raw disk image that starts with a known line.
static DISK: LazyLock<Asset> = LazyLock::new(|| asset("DISK"));

/// The first line of the disk image.
const DISK_LINE: &str = "qemu-test disk asset v1";

#[qemu_test(arch = "aarch64", machine = "virt", cpu = "max", console, kernel = &*ECHO, timeout = "60s")]
fn echo_boots(vm: &mut Vm) -> TestResult {
    vm.console().wait_for("login:")?;
    vm.console().exec_and_wait("hello", "you said: hello")?;
    Ok(())
}

#[qemu_test(
    arch = "x86_64",
    machine = "q35",
    console,
    kernel = &*KERNEL,
    initrd = &*INITRD,
    append = "console=ttyS0,115200 quiet cryptomgr.notests noreplace-smp no_timer_check noapictimer",
    args = ["-nodefaults"],
    timeout = "240s"
)]
fn linux_boots(vm: &mut Vm) -> TestResult {
    let release = vm.shell().succeed("uname -r")?;
    let expected = std::env::var("ASSET_KERNEL_RELEASE").unwrap_or_default();
    assert_eq!(release.trim(), expected.trim());
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, disk = &*DISK, timeout = "240s")]
fn disk_overlay(vm: &mut Vm) -> TestResult {
    let shell = vm.shell();
    let first = shell.succeed(&format!("head -c {} /dev/vda", DISK_LINE.len()))?;
    assert_eq!(first, DISK_LINE);
    shell.succeed(
        "printf 'written by the guest' | dd of=/dev/vda conv=notrunc 2>/dev/null && sync",
    )?;
    let now = shell.succeed("head -c 21 /dev/vda")?;
    assert_eq!(now, "written by the guest ");
    Ok(())
}

/// A vendor GUID of this test's own, for the variable it sets.
const GUID: &str = "6a6b0a3e-1f3e-4b34-9c4b-5a1e4c1e0b5a";

/// Boots the host's UEFI firmware to its shell, sets a non-volatile
/// variable (written to the machine's own variable store) and reads it
/// back.
fn set_a_variable(vm: &mut Vm) -> TestResult {
    let console = vm.console();
    console.wait_for("startup.nsh")?;
    // Any key but Esc skips the countdown.
    console.send("\r")?;
    console.wait_for("Shell>")?;
    console.send(format!(
        "setvar QemuTestVar -guid {GUID} -nv -bs =4142434445\r"
    ))?;
    console.wait_for("Shell>")?;
    console.send(format!("dmpstore QemuTestVar -guid {GUID}\r"))?;
    console.wait_for("41 42 43 44 45")?;
    Ok(())
}

#[qemu_test(
    arch = "x86_64",
    machine = "q35",
    firmware = "uefi",
    console,
    // No NIC: the firmware would try PXE boots before its shell.
    args = ["-nodefaults"],
    timeout = "180s"
)]
fn uefi_shell_x86_64(vm: &mut Vm) -> TestResult {
    set_a_variable(vm)
}

#[qemu_test(
    arch = "aarch64",
    machine = "virt",
    cpu = "max,pauth=off,sve=off",
    memory = "256M",
    firmware = "uefi",
    console,
    args = ["-nodefaults"],
    timeout = "240s"
)]
fn uefi_shell_aarch64(vm: &mut Vm) -> TestResult {
    set_a_variable(vm)
}

qemu_test::main!();
