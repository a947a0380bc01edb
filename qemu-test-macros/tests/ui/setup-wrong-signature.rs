use qemu_test::prelude::*;

fn ready() -> TestResult {
    Ok(())
}

#[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, snapshot = "booted", setup = ready)]
fn boots(_vm: &mut Vm) {}

fn main() {}
