use qemu_test::prelude::*;

#[qemu_test(machine = "virt")]
fn boots(vm: &mut Vm, retries: u32) {}

fn main() {}
