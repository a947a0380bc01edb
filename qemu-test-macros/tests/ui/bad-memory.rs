use qemu_test::prelude::*;

#[qemu_test(memory = "256 MiB")]
fn boots(vm: &mut Vm) {}

fn main() {}
