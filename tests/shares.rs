//! Host directories in the guest (virtio-9p, on the generic-kernel Linux
//! guest) and host-built programs run there: read-write and read-only
//! shares, a 50 MB file through a share, a dynamically linked Rust program
//! of this package, cold and from a booted snapshot.

use std::path::Path;

use qemu_test::prelude::*;

/// The read-write share's host dir, made by the runner if missing.
const RW: &str = "../target/qemu-test-shares/rw";

fn sha256_of(path: &Path) -> TestResult<String> {
    let out = std::process::Command::new("sha256sum").arg(path).output()?;
    Ok(String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// What the guest writes in a read-write share is on the host at once,
/// and the other way round; a read-only share refuses writes.
#[qemu_test(
    kernel = guest::LINUX_X86_64_GENERIC,
    console,
    shares = ["../target/qemu-test-shares/rw:/mnt/rw", "data:/mnt/data:ro"],
    timeout = "180s"
)]
fn read_write_and_read_only_shares(vm: &mut Vm) -> TestResult {
    let sh = vm.shell();
    let rw = Path::new(RW);
    let name = format!("from-guest-{}", std::process::id());
    sh.succeed(&format!("echo written in the guest >/mnt/rw/{name}"))?;
    assert_eq!(
        std::fs::read_to_string(rw.join(&name))?,
        "written in the guest\n"
    );
    std::fs::write(rw.join("from-host"), "written on the host\n")?;
    assert_eq!(
        sh.succeed("cat /mnt/rw/from-host")?,
        "written on the host\n"
    );
    std::fs::remove_file(rw.join(&name))?;
    assert_eq!(
        sh.succeed(&format!(
            "test -e /mnt/rw/{name} && echo there || echo gone"
        ))?,
        "gone\n"
    );
    // The read-only one: the guest reads, cannot write.
    assert_eq!(
        sh.succeed("wc -c </mnt/data/disk.img")?.trim(),
        std::fs::metadata("data/disk.img")?.len().to_string()
    );
    let refused = sh.run("echo x >/mnt/data/new")?;
    assert_ne!(refused.status, 0);
    assert!(
        refused.stderr.contains("Read-only file system"),
        "{refused:?}"
    );
    Ok(())
}

/// 50 MB into the guest's memory through a share, intact.
#[qemu_test(
    kernel = guest::LINUX_X86_64_GENERIC,
    console,
    memory = "256M",
    shares = ["../target/qemu-test-shares/big:/mnt/big"],
    timeout = "180s"
)]
fn fifty_megabytes_through_a_share(vm: &mut Vm) -> TestResult {
    let file = Path::new("../target/qemu-test-shares/big/blob");
    let data: Vec<u8> = (0..50u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(file, &data)?;
    let sh = vm.shell().with_timeout(Duration::from_secs(120));
    sh.succeed("cp /mnt/big/blob /tmp/blob")?;
    let guest = sh.succeed("sha256sum /tmp/blob")?;
    assert_eq!(
        guest.split_whitespace().next(),
        Some(sha256_of(file)?.as_str())
    );
    Ok(())
}

/// A dynamically linked Rust program this package built, run in the guest
/// with one call: the harness brings it and its libraries along.
#[qemu_test(kernel = guest::LINUX_X86_64_GENERIC, console, timeout = "180s")]
fn a_host_program_runs_in_the_guest(vm: &mut Vm) -> TestResult {
    let program = env!("CARGO_BIN_EXE_guest-program");
    let ldd = std::process::Command::new("ldd").arg(program).output()?;
    assert!(
        String::from_utf8_lossy(&ldd.stdout).contains("libc.so.6"),
        "dynamically linked"
    );
    let path = vm.install(program)?;
    let out = vm.shell().succeed(&format!("{path} hello guest"))?;
    let release = vm.shell().succeed("uname -r")?;
    assert_eq!(out, format!("echoed \"hello guest\" on {release}"));
    Ok(())
}

/// The same from a booted snapshot: the shares are hot-plugged and mounted
/// after the restore (a mounted share cannot be saved).
#[qemu_test(
    kernel = guest::LINUX_X86_64_GENERIC,
    console,
    snapshot = "generic-shell",
    shares = ["../target/qemu-test-shares/rw:/mnt/rw", "data:/mnt/data:ro"],
    timeout = "180s"
)]
fn shares_and_programs_from_a_snapshot(vm: &mut Vm) -> TestResult {
    let sh = vm.shell();
    let name = format!("from-restored-{}", std::process::id());
    sh.succeed(&format!("echo restored >/mnt/rw/{name}"))?;
    assert_eq!(
        std::fs::read_to_string(Path::new(RW).join(&name))?,
        "restored\n"
    );
    std::fs::remove_file(Path::new(RW).join(&name))?;
    sh.succeed("test -s /mnt/data/disk.img")?;
    let path = vm.install(env!("CARGO_BIN_EXE_guest-program"))?;
    assert!(sh
        .succeed(&format!("{path} from a snapshot"))?
        .starts_with("echoed \"from a snapshot\""));
    let cmdline = std::fs::read_to_string(vm.artifacts().join("cmdline.txt"))?;
    assert!(
        !cmdline.contains("virtio-9p-pci"),
        "hot-plugged, not booted with: {cmdline}"
    );
    Ok(())
}

qemu_test::main!();
