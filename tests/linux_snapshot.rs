//! Booted snapshots of the Linux guest (built on first use): every test
//! resumes at the shell, with its own copy of the guest's memory and disks.
//! Each pair of tests checks, in either order, that the other's writes are
//! not there.

use qemu_test::prelude::*;

/// What each test must see first, and write after.
fn memory_is_fresh(vm: &mut Vm) -> TestResult {
    // Resumed, not booted: the console starts after the ready marker.
    assert!(!vm.console().output().contains(guest::LINUX_READY));
    vm.shell().succeed("test ! -e /tmp/mark")?;
    vm.shell().succeed("echo $$ > /tmp/mark")?;
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn memory_is_each_tests_own_a(vm: &mut Vm) -> TestResult {
    memory_is_fresh(vm)
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn memory_is_each_tests_own_b(vm: &mut Vm) -> TestResult {
    memory_is_fresh(vm)
}

/// `tests/data/disk.img` starts with this line.
const DISK_START: &str = "qemu-test disk\n";

fn disk_is_fresh(vm: &mut Vm) -> TestResult {
    let shell = vm.shell();
    let head = "dd if=/dev/vda bs=15 count=1 2>/dev/null";
    assert_eq!(shell.succeed(head)?, DISK_START);
    shell.succeed("printf 'overwritten    ' | dd of=/dev/vda conv=fsync 2>/dev/null")?;
    shell.succeed("echo 3 > /proc/sys/vm/drop_caches")?;
    assert_eq!(shell.succeed(head)?, "overwritten    ");
    // The image itself is untouched (`-snapshot`).
    let image = std::fs::read("data/disk.img")?;
    assert!(image.starts_with(DISK_START.as_bytes()));
    Ok(())
}

#[qemu_test(
    console,
    kernel = guest::LINUX_X86_64,
    drive = "file=data/disk.img,format=raw,if=virtio",
    snapshot = "linux-disk",
    timeout = "120s"
)]
fn disk_writes_are_each_tests_own_a(vm: &mut Vm) -> TestResult {
    disk_is_fresh(vm)
}

#[qemu_test(
    console,
    kernel = guest::LINUX_X86_64,
    drive = "file=data/disk.img,format=raw,if=virtio",
    snapshot = "linux-disk",
    timeout = "120s"
)]
fn disk_writes_are_each_tests_own_b(vm: &mut Vm) -> TestResult {
    disk_is_fresh(vm)
}

/// The setup configures the guest; the tests find it configured.
fn configure(vm: &mut Vm) -> TestResult {
    vm.shell()
        .succeed("mkdir -p /srv && echo configured > /srv/state")?;
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-configured", setup = configure, timeout = "120s")]
fn setup_state_is_restored(vm: &mut Vm) -> TestResult {
    assert_eq!(vm.shell().succeed("cat /srv/state")?, "configured\n");
    // And the guest keeps running normally: its clock moves, QMP works.
    let first = vm.shell().succeed("cat /proc/uptime")?;
    vm.shell().succeed("sleep 1")?;
    assert_ne!(vm.shell().succeed("cat /proc/uptime")?, first);
    assert_eq!(vm.command("query-status", json!({}))?["status"], "running");
    Ok(())
}

qemu_test::main!();
