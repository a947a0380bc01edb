use qemu_test::prelude::*;

#[qemu_test(arch = "x86_64", disk = "a.img", disk = "b.img")]
fn boots(vm: &mut Vm) {
    let _ = vm;
}

fn main() {}
