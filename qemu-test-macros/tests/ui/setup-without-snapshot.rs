use qemu_test::prelude::*;

fn ready(_vm: &mut Vm) -> TestResult {
    Ok(())
}

#[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, setup = ready)]
fn boots(_vm: &mut Vm) {}

fn main() {}
