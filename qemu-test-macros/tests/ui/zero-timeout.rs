use qemu_test::prelude::*;

#[qemu_test(timeout = "0s")]
fn boots(_vm: &mut Vm) {}

fn main() {}
