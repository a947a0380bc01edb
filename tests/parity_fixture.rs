//! Tests whose reports tests/parity_report.rs reads: a run-time skip and a
//! deadline under `QEMU_TEST_TIMEOUT_FACTOR`.

use qemu_test::prelude::*;

/// Skips itself at run time, as upstream's `self.skipTest(...)`.
#[qemu_test(arch = "x86_64", machine = "none", args = ["-S"])]
fn skips_at_run_time(vm: &mut Vm) -> TestResult {
    let vnc = vm.command("query-vnc", json!({}));
    if vnc.is_err() {
        return Err(Skip::new("VNC support not available").into());
    }
    Err(Skip::new("this QEMU has VNC, but the test skips anyway").into())
}

/// Outlives a one-second deadline.
#[qemu_test(no_vm, timeout = "1s")]
fn sleeps_past_its_deadline() {
    std::thread::sleep(std::time::Duration::from_secs(4));
}

/// A matrix: one test per machine type.
#[qemu_test(arch = "x86_64", machine = ["q35", "pc"], args = ["-S"])]
fn per_machine(vm: &mut Vm) -> TestResult {
    vm.command("query-status", json!({}))?;
    Ok(())
}

qemu_test::main!();
