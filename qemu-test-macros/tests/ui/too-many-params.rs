use qemu_test::prelude::*;

#[qemu_test(machine = "virt")]
fn boots(_vm: &mut Vm, _retries: u32) {}

fn main() {}
