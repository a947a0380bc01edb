use qemu_test::prelude::*;

mod fake {
    pub struct Vm;
}

#[qemu_test(machine = "virt")]
fn boots(_vm: &mut fake::Vm) {}

fn main() {}
