use qemu_test::prelude::*;

#[qemu_test(no_vm)]
fn parses(_vm: &mut Vm) {}

fn main() {}
