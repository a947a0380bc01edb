//! A `qemu_test::main!()` binary whose tests start from booted snapshots,
//! for `tests/snapshots.rs` to run (several at once, twice, in two
//! processes) and check. A `[[bin]]` with `test = false`: some tests fail
//! on purpose. All use the echo guest (boots in ~0.1 s).

use qemu_test::prelude::*;

/// Saved at the login prompt (the guest's ready marker; no setup).
mod echo {
    use super::*;

    /// The console of a restored test starts at the restore: no banner,
    /// and the guest answers at once.
    fn resumes_at_the_prompt(vm: &mut Vm) -> TestResult {
        let printed = vm.console().output();
        assert!(
            !printed.contains("echo shell"),
            "the boot banner is from before the snapshot: {printed:?}"
        );
        vm.console().exec_and_wait("hi", "you said: hi")?;
        std::fs::write(vm.artifacts().join("body-ran"), "yes")?;
        Ok(())
    }

    #[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, snapshot = "echo-login", timeout = "30s")]
    fn first(vm: &mut Vm) -> TestResult {
        resumes_at_the_prompt(vm)
    }

    #[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, snapshot = "echo-login", timeout = "30s")]
    fn second(vm: &mut Vm) -> TestResult {
        resumes_at_the_prompt(vm)
    }

    #[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, snapshot = "echo-login", timeout = "30s")]
    fn third(vm: &mut Vm) -> TestResult {
        resumes_at_the_prompt(vm)
    }

    /// The guest's state is each test's own: this one reboots its copy.
    #[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, snapshot = "echo-login", timeout = "30s")]
    fn resets_its_copy(vm: &mut Vm) -> TestResult {
        vm.console().send_line("reset")?;
        vm.event_wait("RESET", Duration::from_secs(10), None)?;
        vm.console().wait_for("echo shell")?;
        Ok(())
    }
}

/// Saved after a setup function ran.
mod setup {
    use super::*;

    fn said_hello(vm: &mut Vm) -> TestResult {
        vm.console().wait_for("login:")?;
        vm.console()
            .exec_and_wait("hello from setup", "you said: hello from setup")?;
        Ok(())
    }

    #[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, snapshot = "echo-hello", setup = said_hello, timeout = "30s")]
    fn after_setup(vm: &mut Vm) -> TestResult {
        assert!(!vm.console().output().contains("setup"));
        vm.console().exec_and_wait("again", "you said: again")?;
        Ok(())
    }
}

/// Setups that fail.
mod broken {
    use super::*;

    fn fails(vm: &mut Vm) -> TestResult {
        vm.console().wait_for("login:")?;
        Err("deliberate setup failure".into())
    }

    #[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, snapshot = "broken", setup = fails, timeout = "30s")]
    fn one(_vm: &mut Vm) {}

    #[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, snapshot = "broken", setup = fails, timeout = "30s")]
    fn two(_vm: &mut Vm) {}

    fn hangs(vm: &mut Vm) -> TestResult {
        vm.console().wait_for("this never appears")?;
        Ok(())
    }

    #[qemu_test(kernel = guest::ECHO_SHELL_AARCH64, console, snapshot = "hangs", setup = hangs, timeout = "2s")]
    fn setup_times_out(_vm: &mut Vm) {}

    /// Not a built-in guest, no setup: nothing says when to save.
    #[qemu_test(arch = "x86_64", args = ["-S"], snapshot = "unready", timeout = "10s")]
    fn no_readiness(_vm: &mut Vm) {}
}

qemu_test::main!();
