use qemu_test::prelude::*;

#[qemu_test(no_vm = true)]
fn parses() {}

fn main() {}
