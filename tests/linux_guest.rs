//! The Linux guests themselves (`guest::LINUX_X86_64`, built on first use
//! into the per-user cache; skipped on a host that cannot build it, a
//! failure under `QEMU_TEST_REQUIRE=1`): boot time, the packaged kernel,
//! block device hotplug over QMP, and a clean shutdown from the ACPI power
//! button. How the guest is built (first use, concurrent processes, no
//! root, the user's own kernel) is `linux_builder.rs`'s.
//!
//! `guest::LINUX_AARCH64` costs a first build of its own (the arm64
//! package lists and kernel, about 30 MB), which CI does not spend, so its
//! one VM test is ignored by default: `cargo test -p qemu-test-suite
//! --test linux_guest -- --ignored` runs it.

use std::time::Instant;

use qemu_test::prelude::*;

#[qemu_test(console, kernel = guest::LINUX_X86_64, timeout = "120s")]
fn boots_to_a_shell_running_the_packaged_kernel(vm: &mut Vm) -> TestResult {
    let started = Instant::now();
    vm.console()
        .with_timeout(Duration::from_secs(60))
        .wait_for(guest::LINUX_READY)?;
    let ready = started.elapsed();
    let sh = vm.shell();
    sh.sync()?;
    eprintln!(
        "boot to shell: {ready:.2?} to the ready marker, {:.2?} to the first answer",
        started.elapsed()
    );

    let linux = guest::linux_x86_64()?;
    let release = linux
        .kernel_release()
        .expect("the manifest names the kernel release");
    assert_eq!(sh.succeed("uname -r")?.trim(), release);
    assert_eq!(sh.succeed("uname -m")?.trim(), "x86_64");
    // The modules /init loads, and the controlling terminal Ctrl-C needs.
    let modules = sh.succeed("cut -d' ' -f1 /proc/modules | sort")?;
    for module in [
        "button",
        "evdev",
        "virtio_blk",
        "virtio_console",
        "virtio_net",
        "virtio_pci",
    ] {
        assert!(
            modules.lines().any(|m| m == module),
            "{module} not loaded:\n{modules}"
        );
    }
    // Programs that talk to 127.0.0.1 work.
    assert!(sh.succeed("ip -o link show lo")?.contains("LOOPBACK,UP"));
    // The console's shell (vm.shell() may use the agent instead).
    let console = sh.console_only();
    assert_eq!(
        console.succeed("readlink /proc/$$/fd/0")?.trim(),
        "/dev/ttyS0"
    );
    console.succeed(": </dev/tty")?; // only opens with a controlling terminal
    assert!(sh.succeed("pidof acpid")?.trim().parse::<u32>().is_ok());
    assert!(sh
        .succeed("pidof qemu-test-agent")?
        .trim()
        .parse::<u32>()
        .is_ok());

    // A round trip's cost, for the record.
    let started = Instant::now();
    for _ in 0..20 {
        sh.succeed("true")?;
    }
    eprintln!("one command round trip: {:.2?}", started.elapsed() / 20);
    Ok(())
}

#[qemu_test(
    console,
    kernel = guest::LINUX_X86_64,
    args = ["-device", "pcie-root-port,id=rp1,chassis=1"],
    timeout = "120s"
)]
fn hotplugged_virtio_disk_appears_and_goes(vm: &mut Vm) -> TestResult {
    let sh = vm.shell();
    sh.sync()?;
    assert_eq!(
        sh.succeed("ls /sys/block | grep -c '^vd' || true")?.trim(),
        "0"
    );

    // A 1 MiB raw image with a recognizable first sector.
    let image = vm.artifacts().join("hotplug.img");
    let mut contents = vec![0u8; 1 << 20];
    contents[..16].copy_from_slice(b"qemu-test disk\n\0");
    std::fs::write(&image, &contents)?;

    vm.command(
        "blockdev-add",
        json!({"driver": "raw", "node-name": "disk1",
               "file": {"driver": "file", "filename": image.to_str().unwrap()}}),
    )?;
    vm.command(
        "device_add",
        json!({"driver": "virtio-blk-pci", "id": "vdisk1", "drive": "disk1", "bus": "rp1"}),
    )?;
    let started = Instant::now();
    sh.wait_until_succeeds("test -e /sys/block/vda", Duration::from_secs(30))?;
    eprintln!("hotplugged disk visible after {:.2?}", started.elapsed());
    assert_eq!(sh.succeed("cat /sys/block/vda/size")?.trim(), "2048");
    assert_eq!(sh.succeed("head -c 15 /dev/vda")?, "qemu-test disk\n");
    // Writes reach the image.
    sh.succeed("echo written-by-guest | dd of=/dev/vda bs=512 seek=1 conv=fsync 2>/dev/null")?;
    let on_disk = std::fs::read(&image)?;
    assert_eq!(&on_disk[512..529], b"written-by-guest\n");

    // Unplug: the guest lets go of the device, QEMU reports DEVICE_DELETED.
    vm.command("device_del", json!({"id": "vdisk1"}))?;
    vm.event_wait(
        "DEVICE_DELETED",
        Duration::from_secs(30),
        Some(json!({"data": {"device": "vdisk1"}})),
    )?;
    sh.wait_until_fails("test -e /sys/block/vda", Duration::from_secs(10))?;
    vm.command("blockdev-del", json!({"node-name": "disk1"}))?;
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, timeout = "120s")]
fn power_button_shuts_the_guest_down_cleanly(vm: &mut Vm) -> TestResult {
    let sh = vm.shell();
    sh.sync()?;
    vm.command("system_powerdown", json!({}))?;
    let started = Instant::now();
    let event = vm.event_wait("SHUTDOWN", Duration::from_secs(60), None)?;
    eprintln!("SHUTDOWN {:.2?} after system_powerdown", started.elapsed());
    assert_eq!(event["data"]["guest"], true);
    assert_eq!(event["data"]["reason"], "guest-shutdown");
    // busybox init's orderly shutdown, then the kernel's power-off.
    let console = vm.console().with_timeout(Duration::from_secs(10));
    console.wait_for("Sent SIGTERM to all processes")?;
    console.wait_for("reboot: Power down")?;
    vm.wait(Duration::from_secs(30))?;
    assert_eq!(vm.exit_code(), Some(0));
    Ok(())
}

/// What `kernel = guest::LINUX_X86_64` puts on QEMU's command line (no VM;
/// the guest is found, or built on first use, hence the long deadline).
#[qemu_test(no_vm, timeout = "600s")]
fn spec_uses_the_guests_files() -> TestResult {
    let spec = qemu_test::VmSpec::new()
        .with_kernel(&guest::LINUX_X86_64)
        .with_append("loglevel=7");
    assert_eq!(
        spec.qemu_binary_name().as_deref(),
        Some("qemu-system-x86_64")
    );
    assert_eq!(spec.effective_machine(), Some("q35"));
    spec.check_images()?;
    spec.prepare_images()?;
    let files = guest::linux_x86_64()?;
    let args = spec.qemu_args(Some("tcg"))?;
    let after = |flag: &str| {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).cloned()
    };
    assert_eq!(after("-kernel"), Some(files.kernel.display().to_string()));
    assert_eq!(after("-initrd"), Some(files.initrd.display().to_string()));
    assert_eq!(
        after("-append"),
        Some(format!("{} loglevel=7", files.append))
    );
    assert!(args.iter().any(|a| a == "-nodefaults"));
    if files.manifest["source"] != "files" {
        assert!(files.package_version("busybox-static").is_some());
    }
    assert_eq!(files.manifest["arch"], "x86_64");
    Ok(())
}

#[qemu_test(
    console,
    kernel = guest::LINUX_AARCH64,
    timeout = "120s",
    ignore = "builds the aarch64 guest on first use (arm64 package lists and kernel, about 30 MB; not in CI's budget)"
)]
fn aarch64_boots_to_a_shell_and_powers_off(vm: &mut Vm) -> TestResult {
    let started = Instant::now();
    vm.console()
        .with_timeout(Duration::from_secs(90))
        .wait_for(guest::LINUX_READY)?;
    eprintln!("aarch64 boot to shell: {:.2?}", started.elapsed());
    let sh = vm.shell();
    sh.sync()?;
    assert_eq!(sh.succeed("uname -m")?.trim(), "aarch64");
    let linux = guest::linux_aarch64()?;
    assert_eq!(
        sh.succeed("uname -r")?.trim(),
        linux
            .kernel_release()
            .expect("the manifest names the kernel release")
    );
    let modules = sh.succeed("cut -d' ' -f1 /proc/modules")?;
    assert!(modules.lines().any(|m| m == "virtio_blk"), "{modules}");
    assert!(modules.lines().any(|m| m == "virtio_console"), "{modules}");
    // The console's shell (vm.shell() uses the agent).
    assert_eq!(
        sh.console_only().succeed("readlink /proc/$$/fd/0")?.trim(),
        "/dev/ttyAMA0"
    );
    // PSCI SYSTEM_OFF after busybox init's orderly shutdown.
    vm.console().send_line("poweroff")?;
    let event = vm.event_wait("SHUTDOWN", Duration::from_secs(60), None)?;
    assert_eq!(event["data"]["guest"], true);
    vm.wait(Duration::from_secs(30))?;
    assert_eq!(vm.exit_code(), Some(0));
    Ok(())
}

/// What `kernel = guest::LINUX_AARCH64` brings (no VM, and no build: the
/// guest's own description).
#[qemu_test(no_vm)]
fn aarch64_spec_uses_its_machine_cpu_and_console() -> TestResult {
    let spec = qemu_test::VmSpec::new().with_kernel(&guest::LINUX_AARCH64);
    assert_eq!(
        spec.qemu_binary_name().as_deref(),
        Some("qemu-system-aarch64")
    );
    assert_eq!(spec.effective_machine(), Some("virt"));
    assert_eq!(guest::LINUX_AARCH64.cpu, Some("max,pauth=off,sve=off"));
    let guest::Load::Linux(linux) = guest::LINUX_AARCH64.load else {
        panic!("a Linux guest");
    };
    assert_eq!(linux.name, "linux-aarch64");
    assert!(linux.append.starts_with("console=ttyAMA0"));
    assert_eq!(linux.args, ["-nodefaults"]);
    Ok(())
}

qemu_test::main!();
