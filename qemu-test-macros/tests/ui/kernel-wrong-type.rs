use qemu_test::prelude::*;

const KERNEL_SIZE: u32 = 4096;

#[qemu_test(kernel = KERNEL_SIZE)]
fn boots(_vm: &mut Vm) {}

fn main() {}
