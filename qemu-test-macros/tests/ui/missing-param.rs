use qemu_test::prelude::*;

#[qemu_test(machine = "virt")]
fn boots() {}

fn main() {}
