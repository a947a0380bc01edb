use qemu_test::prelude::*;

#[qemu_test(machine = "virt")]
async fn boots(_vm: &mut Vm) {}

fn main() {}
