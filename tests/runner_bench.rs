//! 100 echo-guest tests, for measuring the scheduler: how close the wall
//! time of a run comes to the sum of the tests' own times divided by the
//! cores. Not run by `cargo test` (`test = false`); `cargo xtask bench`
//! runs it for its row P3 (`cargo xtask bench --only P3` alone), or run it
//! by hand:
//!
//! ```sh
//! cargo build -p qemu-test-suite --bin runner-bench
//! QEMU_TEST_JUNIT=/tmp/bench target/debug/runner-bench   # writes /tmp/bench/qemu-test-suite.runner-bench.xml
//! ```
//!
//! and compare the run's wall time with Σ(testcase time) / cores from the
//! report (or run it under `cargo nextest run`, one process per test).

use qemu_test::prelude::*;

macro_rules! echo_tests {
    ($($name:ident)*) => {$(
        mod $name {
            use super::*;

            #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "60s")]
            fn echo(vm: &mut Vm) -> TestResult {
                vm.console().wait_for("login:")?;
                vm.console().exec_and_wait("hello", "you said: hello")?;
                assert_eq!(vm.command("query-status", json!({}))?["running"], true);
                Ok(())
            }
        }
    )*};
}

echo_tests!(
    t00 t01 t02 t03 t04 t05 t06 t07 t08 t09 t10 t11 t12 t13 t14 t15 t16 t17 t18 t19
    t20 t21 t22 t23 t24 t25 t26 t27 t28 t29 t30 t31 t32 t33 t34 t35 t36 t37 t38 t39
    t40 t41 t42 t43 t44 t45 t46 t47 t48 t49 t50 t51 t52 t53 t54 t55 t56 t57 t58 t59
    t60 t61 t62 t63 t64 t65 t66 t67 t68 t69 t70 t71 t72 t73 t74 t75 t76 t77 t78 t79
    t80 t81 t82 t83 t84 t85 t86 t87 t88 t89 t90 t91 t92 t93 t94 t95 t96 t97 t98 t99
);

qemu_test::main!();
