use qemu_test::prelude::*;

#[qemu_test(machine = "virt")]
async fn boots(vm: &mut Vm) {}

fn main() {}
