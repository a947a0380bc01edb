//! Quick start: a VM test suite to copy.
//!
//! To use it in your own crate:
//!
//! 1. add `qemu-test` as a dev-dependency (a path or git dependency: the
//!    crates.io crate of that name is an unrelated project);
//! 2. copy this file to `tests/vm.rs`;
//! 3. add to `Cargo.toml`:
//!    ```toml
//!    [[test]]
//!    name = "vm"
//!    harness = false
//!    ```
//! 4. `cargo test --test vm` (or `cargo nextest run --test vm`).
//!
//! Here, run it with `cargo run -p qemu-test-examples --example quickstart`
//! (libtest's flags go after `--`, e.g. `-- --list` or `-- console`).
//!
//! Every test boots the built-in echo guest (a 2 KiB bare-metal program for
//! `qemu-system-aarch64 -M virt`, embedded in the crate): it prints
//! `login:`, answers each line with `you said: <line>`, and understands
//! `poweroff`, `reset`, `panic` and `flood N`. It boots in about 0.1 s.

use qemu_test::prelude::*;

/// The guest boots and shows its prompt on the serial console.
#[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
fn boots_to_login(vm: &mut Vm) -> TestResult {
    vm.console().wait_for("login:")?;
    Ok(())
}

/// A conversation over the serial console.
#[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
fn console_exchange(vm: &mut Vm) -> TestResult {
    let console = vm.console();
    console.wait_for("login:")?;
    console.exec_and_wait("hello", "you said: hello")?;
    // Wait for either of several patterns; a `.fails()` one fails fast.
    console.send_line("flood 100")?;
    console.wait_for_any(&[
        Pattern::text("flood done"),
        Pattern::text("guest panic").fails(),
    ])?;
    Ok(())
}

/// QMP: QEMU's machine protocol, for state the guest cannot show.
#[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
fn qmp_query(vm: &mut Vm) -> TestResult {
    vm.console().wait_for("login:")?;
    let status = vm.command("query-status", json!({}))?;
    assert_eq!(status["status"], "running");
    let target = vm.command("query-target", json!({}))?;
    assert_eq!(target["arch"], "aarch64");
    Ok(())
}

/// Events: a reset asked for over QMP, then one the guest asks for.
#[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
fn reset_event(vm: &mut Vm) -> TestResult {
    vm.console().wait_for("login:")?;

    vm.command("system_reset", json!({}))?;
    vm.event_wait(
        "RESET",
        Duration::from_secs(10),
        Some(json!({"data": {"guest": false}})),
    )?;
    vm.console().wait_for("login:")?;

    vm.console().send_line("reset")?;
    vm.event_wait(
        "RESET",
        Duration::from_secs(10),
        Some(json!({"data": {"guest": true}})),
    )?;
    vm.console().wait_for("login:")?;
    Ok(())
}

/// A test may also check logic without a VM.
#[qemu_test(no_vm)]
fn plain_logic() {
    assert_eq!("you said: hi".strip_prefix("you said: "), Some("hi"));
}

qemu_test::main!();
