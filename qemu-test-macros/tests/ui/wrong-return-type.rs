use qemu_test::prelude::*;

#[qemu_test(machine = "virt")]
fn boots(_vm: &mut Vm) -> u32 {
    0
}

fn main() {}
