// `kernel` and `initrd` take a string literal, a path to a `static Guest`, or
// any expression that converts into an image.
#![allow(clippy::borrow_deref_ref)]
use qemu_test::guest::{Guest, Load};
use qemu_test::prelude::*;
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

// A `harness = false` target: compiling is the test.
fn main() {}
