//! 20 Linux-guest tests, twice: booted cold (`cold::`) and started from a
//! booted snapshot (`snapshot::`). `cargo xtask bench` (P4) runs each half
//! and compares the wall times. Not run by `cargo test` (`test = false`).

use qemu_test::prelude::*;

/// What each test does: one command in the guest, checked.
fn body(vm: &mut Vm) -> TestResult {
    assert_eq!(vm.shell().succeed("echo $((6 * 7))")?, "42\n");
    Ok(())
}

macro_rules! linux_tests {
    ($($name:ident)*) => {
        mod cold {
            use super::*;
            $(
                #[qemu_test(console, kernel = guest::LINUX_X86_64, timeout = "120s")]
                fn $name(vm: &mut Vm) -> TestResult {
                    body(vm)
                }
            )*
        }
        mod snapshot {
            use super::*;
            $(
                #[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "bench-shell", timeout = "120s")]
                fn $name(vm: &mut Vm) -> TestResult {
                    body(vm)
                }
            )*
        }
    };
}

linux_tests!(t01 t02 t03 t04 t05 t06 t07 t08 t09 t10 t11 t12 t13 t14 t15 t16 t17 t18 t19 t20);

qemu_test::main!();
