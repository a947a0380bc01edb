use qemu_test::prelude::*;

#[qemu_test(accel = "hvf")]
fn boots(vm: &mut Vm) {}

fn main() {}
