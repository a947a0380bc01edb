use qemu_test::prelude::*;

#[qemu_test(binary = "/opt/qemu/bin/qemu-system-aarch64", arch = "aarch64")]
fn boots(_vm: &mut Vm) {}

fn main() {}
