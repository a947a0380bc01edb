use qemu_test::prelude::*;

#[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, snapshot = "booted", setup = "ready")]
fn boots(_vm: &mut Vm) {}

fn main() {}
