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

/// Needs a device no QEMU has: skipped before launch, and at list time.
#[qemu_test(arch = "x86_64", machine = "none", args = ["-S"], requires = [device("qemu-test-no-such-device")])]
fn requires_a_missing_device(_vm: &mut Vm) -> TestResult {
    Err("ran although its requirement is not met".into())
}

fn never() -> Result<(), String> {
    Err("this host has no frobnicator".into())
}

/// A test's own check decides.
#[qemu_test(no_vm, requires = [check("a frobnicator", never)])]
fn requires_its_own_check() {
    panic!("ran although its check failed");
}

/// Needs what this host has: runs.
#[qemu_test(
    arch = "x86_64",
    machine = "none",
    args = ["-S"],
    requires = [device("virtio-net-pci"), netdev("user"), machine("q35"), command("sh"), memlock("1K"), accel("tcg")]
)]
fn requires_what_is_there(vm: &mut Vm) -> TestResult {
    vm.command("query-status", json!({}))?;
    Ok(())
}

/// A test without a VM cannot need a device of its QEMU: a mistake.
#[qemu_test(no_vm, requires = [device("virtio-net-pci")])]
fn no_vm_requires_a_device() {}

/// A matrix: one test per machine type.
#[qemu_test(arch = "x86_64", machine = ["q35", "pc"], args = ["-S"])]
fn per_machine(vm: &mut Vm) -> TestResult {
    vm.command("query-status", json!({}))?;
    Ok(())
}

qemu_test::main!();
