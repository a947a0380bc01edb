use qemu_test::prelude::*;

#[qemu_test(no_vm, requires = device("virtio-9p-pci"))]
fn needs() {}

fn main() {}
