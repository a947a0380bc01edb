use qemu_test::prelude::*;

#[qemu_test(machine = "virt")]
fn boots<T: Default>(_vm: &mut Vm) {}

fn main() {}
