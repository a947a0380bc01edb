// `kernel` and `initrd` take a string literal, a path to a `static Guest`, or
// any expression that converts into an image.
use qemu_test::prelude::*;
use std::path::PathBuf;

fn built_kernel() -> PathBuf {
    PathBuf::from("/tmp/bzImage")
}

static MY_GUEST: &qemu_test::guest::Guest = &guest::ECHO_SHELL_AARCH64;

#[qemu_test(kernel = "/boot/vmlinuz", initrd = "/boot/initrd.img")]
fn literal(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(kernel = guest::ECHO_SHELL_AARCH64)]
fn builtin_guest(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(kernel = qemu_test::guest::ECHO_SHELL_AARCH64)]
fn builtin_guest_full_path(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(kernel = built_kernel(), initrd = format!("{}/initrd", "/tmp"))]
fn expressions(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(kernel = *MY_GUEST)]
fn deref_expression(vm: &mut Vm) {
    let _ = vm;
}

fn main() {}
