use qemu_test::prelude::*;

#[qemu_test(args = "-no-reboot -d guest_errors")]
fn boots(_vm: &mut Vm) {}

fn main() {}
