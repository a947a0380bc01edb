use qemu_test::prelude::*;

#[qemu_test(smp = 2.5)]
fn boots(_vm: &mut Vm) {}

fn main() {}
