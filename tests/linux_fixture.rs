//! A `qemu_test::main!()` binary with a Linux guest test, driven by
//! `linux_builder.rs` with its own cache dir and settings: whatever builds
//! the guest (first use, another process, the user's files) must give a
//! guest that boots the kernel its manifest names, with its modules loaded.
//! `finds_the_guest` only finds (or builds) it, without a VM.

use qemu_test::prelude::*;

#[qemu_test(console, kernel = guest::LINUX_X86_64, timeout = "90s")]
fn boots_the_guest(vm: &mut Vm) -> TestResult {
    let sh = vm.shell();
    let files = guest::linux_x86_64()?;
    let release = files.kernel_release().ok_or("no kernel release")?;
    assert_eq!(sh.succeed("uname -r")?.trim(), release);
    let loaded = sh.succeed("cut -d' ' -f1 /proc/modules")?;
    let wanted = files.manifest["modules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for module in wanted.iter().filter_map(|m| m.as_str()) {
        assert!(
            loaded.lines().any(|l| l == module),
            "{module} not loaded:\n{loaded}"
        );
    }
    println!(
        "fixture: booted {release} ({} modules) from {}",
        wanted.len(),
        files.dir.display()
    );
    Ok(())
}

#[qemu_test(no_vm, timeout = "300s")]
fn finds_the_guest() -> TestResult {
    let files = guest::linux_x86_64()?;
    println!("fixture: found {}", files.dir.display());
    Ok(())
}

qemu_test::main!();
