use qemu_test::prelude::*;

#[qemu_test(smp = "2,sockets=two")]
fn boots(_vm: &mut Vm) {}

fn main() {}
