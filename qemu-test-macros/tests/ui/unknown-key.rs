use qemu_test::prelude::*;

#[qemu_test(machin = "virt")]
fn boots(_vm: &mut Vm) {}

fn main() {}
