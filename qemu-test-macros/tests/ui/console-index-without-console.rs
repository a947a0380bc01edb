use qemu_test::prelude::*;

#[qemu_test(machine = "pc", console_index = 1)]
fn boots(_vm: &mut Vm) {}

fn main() {}
