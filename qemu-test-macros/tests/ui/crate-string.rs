// `crate` takes a path, as `crate = qt`; tokio's and serde's string form is
// refused with the path to write instead.
use qemu_test::prelude::*;

#[qemu_test(crate = "qemu-test", machine = "virt", kernel = guest::ECHO_SHELL_AARCH64)]
fn boots(_vm: &mut Vm) {}

fn main() {}
