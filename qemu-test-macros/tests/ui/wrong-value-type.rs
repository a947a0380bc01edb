use qemu_test::prelude::*;

#[qemu_test(smp = "2")]
fn boots(vm: &mut Vm) {}

fn main() {}
