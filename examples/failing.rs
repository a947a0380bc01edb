//! A deliberately failing VM test, to see what a failure looks like and
//! where its artifacts land.
//!
//! ```sh
//! cargo run -p qemu-test-examples --example failing
//! ```
//!
//! The run fails (exit code 101) and prints, for the test:
//!
//! - the reason: here a console wait that gave up;
//! - the last 20 lines the guest printed on its console;
//! - `artifacts: <target>/qemu-test/qemu-test-examples/failing/waits_for_a_prompt_that_never_comes`,
//!   a directory holding `qemu.log` (QEMU's output), `console.log` (the
//!   whole console), `qmp.jsonl` (every QMP message, time-stamped),
//!   `cmdline.txt` and `repro.sh`, which starts the same VM by hand with the
//!   console on your terminal and QMP on `qmp.sock` next to it.
//!
//! A passing test's directory is removed; `QEMU_TEST_KEEP=always` keeps
//! it, `QEMU_TEST_KEEP=never` removes even this one. With
//! `QEMU_TEST_ON_FAILURE=pause` the VM stays up after the failure until you
//! press Enter, and the runner prints how to reach it.

use qemu_test::prelude::*;

/// Expects a prompt the echo guest never prints.
#[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
fn waits_for_a_prompt_that_never_comes(vm: &mut Vm) -> TestResult {
    let console = vm.console();
    console.wait_for("login:")?;
    console.exec_and_wait("uname -a", "you said: uname -a")?;
    // The echo guest has no shell prompt `# `: this wait times out.
    console
        .with_timeout(Duration::from_secs(2))
        .wait_for("# ")?;
    Ok(())
}

qemu_test::main!();
