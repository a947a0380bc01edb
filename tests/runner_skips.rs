//! Skips as nextest sees them, driven by `runner_nextest.rs`: one test
//! that cannot run here for a reason known when the tests are listed (its
//! QEMU is missing: listed as ignored, so nextest shows SKIP), one that
//! skips itself while running (a pass to nextest, which judges by exit
//! status: its reason is on stderr), and one that passes. A `[[test]]`
//! with `test = false`: `cargo test` does not run it by itself, as it
//! would fail under `QEMU_TEST_REQUIRE=1` (CI), where every skip fails.

use qemu_test::prelude::*;

mod skips {
    use super::*;

    #[qemu_test(binary = "qemu-system-nonexistent", args = ["-S"])]
    fn missing_binary(_vm: &mut Vm) {}

    #[qemu_test(no_vm)]
    fn at_run_time() -> TestResult {
        Err(Skip::new("the fixture skips itself at run time").into())
    }

    #[qemu_test(no_vm)]
    fn passes() {}
}

qemu_test::main!();
