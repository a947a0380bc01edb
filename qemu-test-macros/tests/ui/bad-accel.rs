use qemu_test::prelude::*;

#[qemu_test(accel = "hvf")]
fn boots(_vm: &mut Vm) {}

fn main() {}
