use qemu_test::prelude::*;

#[qemu_test(machine)]
fn boots(_vm: &mut Vm) {}

fn main() {}
