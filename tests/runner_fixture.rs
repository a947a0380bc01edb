//! A `qemu_test::main!()` binary with every kind of outcome, for
//! `tests/runner_harness.rs` to run under various flags and environments.
//! It is a `[[bin]]` with `test = false`: some of its tests fail on
//! purpose, so `cargo test` must not run it by itself.
//!
//! The VMs are `qemu-system-x86_64` (no guest image needed): `-S` ones run
//! no guest code; the `console` ones boot QEMU's own firmware, whose debug
//! port is the console.

use qemu_test::prelude::*;

/// Tests whose outcome is decided by the body alone.
mod basic {
    use super::*;

    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "30s")]
    fn passes(vm: &mut Vm) -> TestResult {
        let status = vm.command("query-status", json!({}))?;
        assert_eq!(status["status"], "prelaunch");
        std::fs::write(vm.artifacts().join("body-ran"), vm.test_name())?;
        Ok(())
    }

    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "30s")]
    fn returns_err(vm: &mut Vm) -> TestResult {
        vm.command("query-status", json!({}))?;
        Err("deliberate failure: the answer was 41".into())
    }

    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "30s")]
    fn panics(_vm: &mut Vm) {
        panic!("deliberate panic");
    }

    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "30s", should_fail)]
    fn should_fail_err(vm: &mut Vm) -> TestResult {
        vm.command("no-such-command", json!({}))?;
        Ok(())
    }

    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "30s", should_fail = "boom")]
    fn should_fail_panic(_vm: &mut Vm) {
        panic!("boom goes the guest");
    }

    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "30s", should_fail = "boom")]
    fn should_fail_wrong_message(_vm: &mut Vm) -> TestResult {
        Err("bang".into())
    }

    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "30s", should_fail)]
    fn should_fail_but_passes(_vm: &mut Vm) {}

    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], ignore = "not today")]
    fn ignored(_vm: &mut Vm) {
        panic!("ignored tests do not run");
    }

    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "30s")]
    fn shuts_down_itself(vm: &mut Vm) -> TestResult {
        vm.shutdown()?;
        Ok(())
    }
}

/// Real guest output: SeaBIOS's debug port as the console.
mod console {
    use super::*;

    #[qemu_test(arch = "x86_64", machine = "pc", console = "isa-debugcon,iobase=0x402", args = ["-nodefaults"], timeout = "30s")]
    fn fails_after_boot(vm: &mut Vm) -> TestResult {
        // The whole line: the failure message's tail ends with it.
        vm.console().wait_for("No bootable device.")?;
        Err("deliberate failure after the firmware finished".into())
    }
}

/// Deadlines.
mod timeout {
    use super::*;

    /// Waits longer than its timeout allows: the deadline cuts the wait.
    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "2s")]
    fn waits_too_long(vm: &mut Vm) -> TestResult {
        vm.event_wait("NEVER_HAPPENS", Duration::from_secs(600), None)?;
        Ok(())
    }

    /// Never returns: the watchdog kills the VM and abandons the body.
    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-nodefaults"], timeout = "2s")]
    fn stuck(vm: &mut Vm) {
        let pid = vm.pid().expect("launched");
        std::fs::write(vm.artifacts().join("qemu.pid"), pid.to_string()).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
}

/// Tests that cannot run here.
mod skip {
    use super::*;

    #[qemu_test(binary = "qemu-system-nonexistent", args = ["-S", "-nodefaults"], timeout = "30s")]
    fn missing_binary(vm: &mut Vm) -> TestResult {
        // Runs only when QEMU_TEST_QEMU_DIR provides the binary.
        vm.command("query-status", json!({}))?;
        Ok(())
    }

    #[qemu_test(arch = "x86_64", machine = "pc", accel = "kvm", args = ["-S", "-nodefaults"], timeout = "30s")]
    fn needs_kvm(vm: &mut Vm) -> TestResult {
        let kvm = vm.command("query-kvm", json!({}))?;
        assert_eq!(kvm["enabled"], true);
        Ok(())
    }
}

/// Names the QEMU does not have: mistakes, which fail (never skip), with
/// the near matches.
mod mistakes {
    use super::*;

    #[qemu_test(arch = "x86_64", machine = "q53", args = ["-S"])]
    fn machine_typo(_vm: &mut Vm) {}

    #[qemu_test(arch = "x86_64", machine = "pc", cpu = "Haswel", args = ["-S"])]
    fn cpu_typo(_vm: &mut Vm) {}

    #[qemu_test(arch = "x86_64", machine = "pc", args = ["-S", "-device", "virtio-rng-pcii"])]
    fn device_typo(_vm: &mut Vm) {}
}

/// A test without a VM.
mod plain {
    use super::*;

    #[qemu_test(no_vm)]
    fn no_vm() {
        assert_eq!("plain::no_vm".split("::").count(), 2);
    }
}

qemu_test::main!();
