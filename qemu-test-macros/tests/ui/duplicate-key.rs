use qemu_test::prelude::*;

#[qemu_test(machine = "virt", cpu = "max", machine = "q35")]
fn boots(_vm: &mut Vm) {}

fn main() {}
