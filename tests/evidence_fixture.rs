//! Failing tests whose evidence tests/evidence.rs checks: screenshots of
//! a display, and (without one) none.
//!
//! The VMs are x86 PCs without a guest: SeaBIOS prints on its debug port
//! (the console) and, with `-vga std`, on the screen, then finds nothing to
//! boot.

use qemu_test::prelude::*;

/// SeaBIOS's last words on the console.
const NO_BOOT: &str = "No bootable device.";

mod screen {
    use super::*;

    /// Fails with a display: the runner keeps `screen.png`.
    #[qemu_test(arch = "x86_64", machine = "pc", console = "isa-debugcon,iobase=0x402", args = ["-nodefaults", "-vga", "std"], timeout = "30s")]
    fn fails_with_display(vm: &mut Vm) -> TestResult {
        vm.console().wait_for(NO_BOOT)?;
        Err("the BIOS found nothing to boot".into())
    }

    /// Times out with a display: the watchdog takes the picture before it
    /// kills the VM.
    #[qemu_test(arch = "x86_64", machine = "pc", console = "isa-debugcon,iobase=0x402", args = ["-nodefaults", "-vga", "std"], timeout = "6s")]
    fn times_out_with_display(vm: &mut Vm) -> TestResult {
        vm.console().wait_for(NO_BOOT)?;
        vm.console()
            .with_timeout(Duration::from_secs(600))
            .wait_for("this never appears")?;
        Ok(())
    }

    /// Fails without a display: no picture, and no complaint about it.
    #[qemu_test(arch = "x86_64", machine = "pc", console = "isa-debugcon,iobase=0x402", args = ["-nodefaults"], timeout = "30s")]
    fn fails_without_display(vm: &mut Vm) -> TestResult {
        vm.console().wait_for(NO_BOOT)?;
        Err("the BIOS found nothing to boot".into())
    }

    /// `Vm::screendump` in a passing test: PNG, PPM, and the error without
    /// a display (a sibling without `-vga std`).
    #[qemu_test(arch = "x86_64", machine = "pc", console = "isa-debugcon,iobase=0x402", args = ["-nodefaults", "-vga", "std"], timeout = "30s", siblings = 1)]
    fn screendump_api(vm: &mut Vm) -> TestResult {
        vm.console().wait_for(NO_BOOT)?;
        let png = vm.artifacts().join("bios.png");
        vm.screendump(&png)?;
        let bytes = std::fs::read(&png)?;
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let ppm = vm.artifacts().join("bios.ppm");
        vm.screendump(&ppm)?;
        assert!(std::fs::read(&ppm)?.starts_with(b"P6"), "not a PPM");
        // Kept for tests/evidence.rs to decode: the test passes, so its
        // artifact dir goes.
        if let Some(copy) = std::env::var_os("EVIDENCE_COPY_PNG") {
            std::fs::copy(&png, copy)?;
        }
        let mut blind = vm.sibling("blind")?;
        blind.add_args(["-vga", "none"]);
        blind.launch()?;
        match blind.screendump(vm.artifacts().join("blind.png")) {
            Err(qemu_test::Error::NoDisplay) => Ok(()),
            other => Err(format!("expected Error::NoDisplay, got {other:?}").into()),
        }
    }
}

mod linux {
    use super::*;

    /// Runs shell commands (one writes to the kernel log, below the
    /// console's log level), then fails: the runner keeps `dmesg.txt` and
    /// the timeline shows each command.
    #[qemu_test(console, kernel = guest::LINUX_X86_64, timeout = "120s")]
    fn fails_after_commands(vm: &mut Vm) -> TestResult {
        vm.shell().succeed("echo hello")?;
        vm.shell()
            .succeed("echo '<6>qemu-test-evidence-marker' > /dev/kmsg")?;
        vm.shell().fail("false")?;
        Err("failing on purpose, after three commands".into())
    }
}

/// For a person: tests/debugging.rs runs these on a terminal.
mod debug {
    use super::*;

    /// Fails with its Linux guest running (`QEMU_TEST_ON_FAILURE=pause`
    /// hands its console over).
    #[qemu_test(console, kernel = guest::LINUX_X86_64, timeout = "120s")]
    fn fails_with_a_shell(vm: &mut Vm) -> TestResult {
        vm.shell().succeed("echo ready-for-a-person")?;
        vm.console().send_line("echo ready-for-a-person")?;
        Err("failing for a person to look around".into())
    }

    /// Passes once its VM runs (`QEMU_TEST_GDB` starts it halted).
    #[qemu_test(arch = "x86_64", machine = "pc", console = "isa-debugcon,iobase=0x402", args = ["-nodefaults"], timeout = "20s")]
    fn boots_after_gdb(vm: &mut Vm) -> TestResult {
        vm.console().wait_for(NO_BOOT)?;
        Ok(())
    }
}

qemu_test::main!();
