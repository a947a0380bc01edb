use qemu_test::prelude::*;

#[qemu_test(machine = "virt")]
fn boots(machine: &mut Machine) {}

fn main() {}
