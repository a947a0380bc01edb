use qemu_test::prelude::*;

#[qemu_test(machin = "virt")]
fn boots(vm: &mut Vm) {}

fn main() {}
