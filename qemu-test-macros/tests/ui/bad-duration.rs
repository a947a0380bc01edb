use qemu_test::prelude::*;

#[qemu_test(timeout = "a minute")]
fn boots(_vm: &mut Vm) {}

fn main() {}
