use qemu_test::prelude::*;

#[qemu_test(machine)]
fn boots(vm: &mut Vm) {}

fn main() {}
