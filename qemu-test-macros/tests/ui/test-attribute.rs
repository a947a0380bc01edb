use qemu_test::prelude::*;

#[qemu_test(no_vm)]
#[test]
fn parses() {}

fn main() {}
