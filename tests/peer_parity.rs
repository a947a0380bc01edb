//! What QEMU's own functional tests (Python `QemuSystemTest` on
//! `QEMUMachine`) do, written with the attribute: deadlines for tests that
//! drive machines by hand, run-time skips, expected launch failures.

use qemu_test::prelude::*;

/// B2: a `no_vm` test's deadline is its own `timeout` (before, the key was
/// refused with `no_vm` and a hidden 60 s applied).
#[qemu_test(no_vm, timeout = "1s", should_fail = "timed out after 1 s")]
fn no_vm_tests_have_their_own_deadline() {
    std::thread::sleep(Duration::from_secs(3));
}

qemu_test::main!();
