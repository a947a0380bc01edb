use qemu_test::prelude::*;

#[qemu_test(no_vm, machine = "virt")]
fn parses() {}

fn main() {}
