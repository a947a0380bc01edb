use qemu_test::prelude::*;

#[qemu_test(arch = "x86_64", firmware = "bios")]
fn boots(vm: &mut Vm) {
    let _ = vm;
}

fn main() {}
