// The example from the design document, with a body that only uses the VM.
use qemu_test::prelude::*;

#[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64)]
fn guest_echoes(vm: &mut Vm) -> TestResult {
    let _ = vm.artifacts();
    Ok(())
}

// A `harness = false` target: compiling is the test.
fn main() {}
