use qemu_test::prelude::*;

#[qemu_test(machine = "virt")]
fn boots(_machine: &mut Machine) {}

fn main() {}
