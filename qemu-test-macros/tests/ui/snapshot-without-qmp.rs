use qemu_test::prelude::*;

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "booted", qmp = false)]
fn boots(_vm: &mut Vm) {}

fn main() {}
