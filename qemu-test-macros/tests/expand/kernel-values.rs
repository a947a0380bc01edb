// `kernel` and `initrd` take a string literal, a path to a `static Guest`, or
// any expression that converts into an image.
#![allow(clippy::borrow_deref_ref)]
use qemu_test::guest::{Asset, Guest, Load};
use qemu_test::prelude::*;
use qemu_test::spec::{Disk, Firmware, Image};
use std::path::PathBuf;

/// A guest of this test's own (the path form of `kernel` borrows it).
static TINY: Guest = Guest {
    name: "tiny",
    arch: "aarch64",
    machine: "virt",
    cpu: None,
    load: Load::Kernel,
    ready: None,
    bytes: &[0; 4],
};

fn built_kernel() -> PathBuf {
    PathBuf::from("/tmp/bzImage")
}

static TINY_REF: &Guest = &TINY;

const TINY_CONST: Guest = Guest {
    name: "tiny-const",
    ..TINY_FIELDS
};
const TINY_FIELDS: Guest = Guest {
    name: "",
    arch: "aarch64",
    machine: "virt",
    cpu: None,
    load: Load::Bios,
    ready: None,
    bytes: &[],
};

#[qemu_test(kernel = "/boot/vmlinuz", initrd = "/boot/initrd.img")]
fn literal(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(kernel = TINY)]
fn static_guest(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(kernel = crate::TINY)]
fn static_guest_full_path(vm: &mut Vm) {
    let _ = vm;
}

// A `const` is borrowed too (and promoted to `'static`).
#[qemu_test(kernel = TINY_CONST)]
fn const_guest(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(kernel = built_kernel(), initrd = format!("{}/initrd", "/tmp"))]
fn expressions(vm: &mut Vm) {
    let _ = vm;
}

// A `&'static Guest` in a variable: a reference expression is passed as is
// (`&*` is the point here, however redundant clippy finds it: see the
// `allow` at the top).
#[qemu_test(kernel = &*TINY_REF)]
fn guest_reference(vm: &mut Vm) {
    let _ = vm;
}

// Path constants and statics of the user's own, of any path type: the path
// form borrows them (`&KERNEL` is a `&&str`).
const KERNEL: &str = "/boot/vmlinuz-test";
static INITRD: &str = "/boot/initrd-test.img";
static GUEST_REF: &Guest = &TINY;
static KERNEL_STRING: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| "/boot/vmlinuz-lazy".to_string());

#[qemu_test(kernel = KERNEL, initrd = INITRD)]
fn str_constants(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(kernel = GUEST_REF)]
fn guest_reference_static(vm: &mut Vm) {
    let _ = vm;
}

// A lazily made value is an expression: dereference it.
#[qemu_test(kernel = &*KERNEL_STRING)]
fn lazy_string(vm: &mut Vm) {
    let _ = vm;
}

// Declared assets: a `static` and a `const` by path, a lazily made one
// dereferenced; disks as one or an array (a `Disk` among them); firmware.
static KERNEL_ASSET: Asset = Asset::new(
    "https://example.org/vmlinuz.xz",
    "1111111111111111111111111111111111111111111111111111111111111111",
);
const DISK_ASSET: Asset = Asset::new(
    "https://example.org/disk.qcow2",
    "2222222222222222222222222222222222222222222222222222222222222222",
);
static LAZY_ASSET: std::sync::LazyLock<Asset> = std::sync::LazyLock::new(|| {
    Asset::from_url(
        format!("https://example.org/{}", "initrd.gz"),
        "3333333333333333333333333333333333333333333333333333333333333333",
    )
});

#[qemu_test(arch = "x86_64", machine = "q35", kernel = KERNEL_ASSET, initrd = &*LAZY_ASSET, disk = DISK_ASSET)]
fn assets(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(
    arch = "x86_64",
    firmware = "uefi",
    disk = [DISK_ASSET, "scratch.img", Disk::new(&DISK_ASSET).with_interface("ide")]
)]
fn disks_and_firmware(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(arch = "x86_64", firmware = Firmware::UefiFiles { code: "code.fd".into(), vars: (&DISK_ASSET).into() })]
fn own_firmware(vm: &mut Vm) {
    let _ = vm;
}

// A `harness = false` target: compiling is the test, and the asset forms
// register what they say.
fn main() {
    let spec = |name: &str| {
        let def = qemu_test::__private::TESTS
            .iter()
            .find(|t| t.name == name)
            .expect(name);
        (def.spec)()
    };
    let assets = spec("assets");
    assert_eq!(assets.kernel, Some(Image::Asset(KERNEL_ASSET.clone())));
    assert_eq!(assets.initrd, Some(Image::Asset((*LAZY_ASSET).clone())));
    assert_eq!(assets.assets(), [&KERNEL_ASSET, &*LAZY_ASSET, &DISK_ASSET]);
    let disks = spec("disks_and_firmware");
    assert_eq!(disks.firmware, Some(Firmware::Uefi));
    let interfaces: Vec<&str> = disks.disks.iter().map(|d| d.interface.as_str()).collect();
    assert_eq!(interfaces, ["virtio", "virtio", "ide"]);
    assert_eq!(disks.disks[1].image, Image::Path("scratch.img".into()));
    assert_eq!(disks.assets(), [&DISK_ASSET]);
    assert_eq!(spec("own_firmware").assets(), [&DISK_ASSET]);
    println!("asset values register what they say: ok");
}
