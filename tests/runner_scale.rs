//! How the runner's cost grows with the suite: 1000 no-VM tests with empty
//! bodies and 200 echo-guest tests, for `cargo xtask bench`'s scale rows
//! (`cargo xtask bench --only S`). Not run by `cargo test` (`test = false`).
//!
//! The names select nested subsets with one filter each, so that one binary
//! measures several sizes: `nv::x::a::` (250 tests), `nv::x::` (500), `nv::`
//! (1000); `vm::a::` (100), `vm::` (200).

use qemu_test::prelude::*;

/// Ten no-VM tests in module `$m`.
macro_rules! ten_no_vm {
    ($($m:ident)*) => {$(
        mod $m {
            #[qemu_test::qemu_test(no_vm)]
            fn t0() {}
            #[qemu_test::qemu_test(no_vm)]
            fn t1() {}
            #[qemu_test::qemu_test(no_vm)]
            fn t2() {}
            #[qemu_test::qemu_test(no_vm)]
            fn t3() {}
            #[qemu_test::qemu_test(no_vm)]
            fn t4() {}
            #[qemu_test::qemu_test(no_vm)]
            fn t5() {}
            #[qemu_test::qemu_test(no_vm)]
            fn t6() {}
            #[qemu_test::qemu_test(no_vm)]
            fn t7() {}
            #[qemu_test::qemu_test(no_vm)]
            fn t8() {}
            #[qemu_test::qemu_test(no_vm)]
            fn t9() {}
        }
    )*};
}

/// A hundred no-VM tests in module `$m`.
macro_rules! hundred_no_vm {
    ($($m:ident)*) => {$(
        mod $m {
            ten_no_vm!(d0 d1 d2 d3 d4 d5 d6 d7 d8 d9);
        }
    )*};
}

/// Ten echo-guest tests in module `$m`.
macro_rules! ten_vm {
    ($($m:ident)*) => {$(
        mod $m {
            use super::*;
            echo_vm!(t0 t1 t2 t3 t4 t5 t6 t7 t8 t9);
        }
    )*};
}

/// One echo-guest test per name: boot, one line through the console.
macro_rules! echo_vm {
    ($($t:ident)*) => {$(
        #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "60s")]
        fn $t(vm: &mut Vm) -> TestResult {
            vm.console().wait_for("login:")?;
            vm.console().exec_and_wait("hi", "you said: hi")?;
            Ok(())
        }
    )*};
}

mod nv {
    mod x {
        mod a {
            hundred_no_vm!(h0 h1);
            mod h2 {
                ten_no_vm!(d0 d1 d2 d3 d4);
            }
        }
        mod b {
            hundred_no_vm!(h0 h1);
            mod h2 {
                ten_no_vm!(d0 d1 d2 d3 d4);
            }
        }
    }
    hundred_no_vm!(y0 y1 y2 y3 y4);
}

mod vm {
    use super::*;

    mod a {
        use super::*;
        ten_vm!(d0 d1 d2 d3 d4 d5 d6 d7 d8 d9);
    }
    mod b {
        use super::*;
        ten_vm!(d0 d1 d2 d3 d4 d5 d6 d7 d8 d9);
    }
}

qemu_test::main!();
