use qemu_test::prelude::*;

#[qemu_test(memory = "256 MiB")]
fn boots(_vm: &mut Vm) {}

fn main() {}
