//! Linux guests that crash, for tests/guest_crash.rs (which runs this
//! binary and reads what the runner reports).

use qemu_test::prelude::*;

/// Crashes the guest without expecting it, under a long deadline: the
/// runner fails it as soon as the panic shows, with the panic and its call
/// trace in the message, and keeps a picture of its display.
#[qemu_test(console, kernel = guest::LINUX_X86_64, args = ["-vga", "std"], timeout = "300s")]
fn unexpected_panic(vm: &mut Vm) -> TestResult {
    // The runner added a pvpanic-pci device (q35 has PCI); the guest's
    // driver is bound to it, so QEMU hears of the panic too.
    vm.shell()
        .succeed("ls /sys/bus/pci/drivers/pvpanic-pci | grep -q :")?;
    vm.console().send_line("echo c > /proc/sysrq-trigger")?;
    // Waits for something that never comes: only the crash ends the test.
    vm.console().wait_for("this never appears")?;
    Ok(())
}

/// Expects the crash and waits for it.
#[qemu_test(console, kernel = guest::LINUX_X86_64, timeout = "120s")]
fn expected_panic(vm: &mut Vm) -> TestResult {
    vm.shell().succeed("true")?;
    vm.expect_guest_crash();
    vm.console().send_line("echo c > /proc/sysrq-trigger")?;
    let crash = vm.wait_for_guest_crash(Duration::from_secs(60))?;
    assert!(
        crash
            .to_string()
            .contains("Kernel panic - not syncing: sysrq triggered crash"),
        "{crash}"
    );
    Ok(())
}

qemu_test::main!();
