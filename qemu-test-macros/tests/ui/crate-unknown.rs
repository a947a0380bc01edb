// A `crate` path that leads nowhere is reported at the path as written.
use qemu_test::prelude::*;

#[qemu_test(crate = qtt, no_vm)]
fn plain() {}

fn main() {}
