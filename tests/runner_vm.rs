//! The runner seen from inside a test: `#[qemu_test]` bodies on the real
//! echo guest (and an x86 VM), checking what the runner promises a body:
//! a launched VM, its artifact dir, the test's deadline on every wait, and
//! a clean teardown whatever state the body leaves the VM in.
//!
//! Every test here passes; `runner_nextest.rs` also runs this binary
//! under `cargo nextest` to check partitioning.

use std::time::Instant;

use qemu_test::prelude::*;

mod echo {
    use super::*;

    #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
    fn console_exchange(vm: &mut Vm) -> TestResult {
        vm.console().wait_for("login:")?;
        vm.console()
            .exec_and_wait("hello runner", "you said: hello runner")?;
        Ok(())
    }

    #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
    fn qmp_query(vm: &mut Vm) -> TestResult {
        vm.console().wait_for("login:")?;
        let status = vm.command("query-status", json!({}))?;
        assert_eq!(status["status"], "running");
        let cpus = vm.command("query-cpus-fast", json!({}))?;
        assert_eq!(cpus.as_array().map(Vec::len), Some(1));
        Ok(())
    }

    #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
    fn guest_reset_event(vm: &mut Vm) -> TestResult {
        vm.console().wait_for("login:")?;
        vm.console().send_line("reset")?;
        vm.event_wait(
            "RESET",
            Duration::from_secs(10),
            Some(json!({"data": {"guest": true}})),
        )?;
        // The guest boots again.
        vm.console().wait_for("login:")?;
        Ok(())
    }

    /// A guest that powers itself off leaves nothing for the teardown.
    #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
    fn guest_powers_off(vm: &mut Vm) -> TestResult {
        vm.console().wait_for("login:")?;
        vm.console().send_line("poweroff")?;
        vm.event_wait("SHUTDOWN", Duration::from_secs(10), None)?;
        Ok(())
    }

    /// Two vCPUs: the scheduler reserves two slots.
    #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, smp = 2, memory = "64M", timeout = "30s")]
    fn two_vcpus(vm: &mut Vm) -> TestResult {
        vm.console().wait_for("login:")?;
        let cpus = vm.command("query-cpus-fast", json!({}))?;
        assert_eq!(cpus.as_array().map(Vec::len), Some(2));
        Ok(())
    }

    /// Starts from a booted snapshot, made by the first test that needs it
    /// in the artifact root's store (`snapshots/`).
    #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, snapshot = "echo-login", timeout = "30s")]
    fn from_a_snapshot(vm: &mut Vm) -> TestResult {
        vm.console()
            .exec_and_wait("restored", "you said: restored")?;
        Ok(())
    }
}

mod runner {
    use super::*;

    /// The artifact dir exists during the body and already holds the logs
    /// and the command line.
    #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
    fn artifacts_during_the_body(vm: &mut Vm) -> TestResult {
        vm.console().wait_for("login:")?;
        let dir = vm.artifacts().to_path_buf();
        assert!(
            dir.ends_with("runner_vm/runner::artifacts_during_the_body"),
            "{}",
            dir.display()
        );
        assert_eq!(vm.test_name(), "runner::artifacts_during_the_body");
        for file in [
            "qemu.log",
            "console.log",
            "qmp.jsonl",
            "cmdline.txt",
            "repro.sh",
        ] {
            assert!(
                dir.join(file).is_file(),
                "{file} missing in {}",
                dir.display()
            );
        }
        let cmdline = std::fs::read_to_string(dir.join("cmdline.txt"))?;
        assert!(cmdline.contains("-machine virt"), "{cmdline}");
        assert!(cmdline.contains("-cpu max"), "{cmdline}");
        Ok(())
    }

    /// A wait longer than the test's timeout is cut at the deadline, and
    /// the test fails with the timeout.
    #[qemu_test(
        machine = "virt",
        console,
        kernel = guest::ECHO_SHELL_AARCH64,
        timeout = "3s",
        should_fail = "timed out after 3 s"
    )]
    fn the_deadline_caps_every_wait(vm: &mut Vm) -> TestResult {
        let started = Instant::now();
        let waited = vm
            .console()
            .with_timeout(Duration::from_secs(600))
            .wait_for("this never comes");
        assert!(waited.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "waited {:?}",
            started.elapsed()
        );
        waited?;
        Ok(())
    }

    /// The body may shut the VM down itself.
    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "30s")]
    fn body_shuts_down(vm: &mut Vm) -> TestResult {
        vm.shutdown()?;
        assert!(!vm.is_running());
        Ok(())
    }

    #[qemu_test(no_vm)]
    fn without_a_vm() {
        assert!(std::thread::current()
            .name()
            .unwrap_or("")
            .ends_with("without_a_vm"));
    }
}

qemu_test::main!();
