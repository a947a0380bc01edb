//! The Linux guests: Debian's cloud kernel and a busybox initramfs whose
//! own files (`init`, `rootfs/`) live beside this module.

use std::fs;
use std::path::PathBuf;

use super::{Guest, Load};
use crate::error::SetupError;

/// A Linux guest for `qemu-system-x86_64 -M q35`: Debian's cloud kernel and
/// a busybox initramfs with a root shell on the first serial port.
///
/// Not embedded in the crate: `cargo xtask guests` builds it from Debian
/// packages into the [guests directory](guests_dir) (see
/// `guests/linux/README.md`), and a test that uses it before then is
/// skipped with that hint (a failure under `QEMU_TEST_REQUIRE=1`).
/// [`linux_x86_64`] finds its files.
///
/// # Command line
///
/// `-M q35 -kernel kernel -initrd initrd.gz -append "…" -nodefaults`, which
/// is what `kernel = guest::LINUX_X86_64` puts on the command line (a
/// test's own `append` is added after the guest's, e.g. `append =
/// "loglevel=7"` to see every kernel message; its `args` come after
/// `-nodefaults`). Each piece is there because it shortens a TCG boot
/// (measured, see `guests/linux/README.md`):
///
/// - `kernel` is the uncompressed `vmlinux` taken out of Debian's bzImage,
///   which QEMU starts at its PVH entry point: no real-mode setup through
///   the firmware, no in-guest decompression (0.7 s of CPU time).
/// - `-nodefaults`: no default NIC (the guest has no driver for it) and so
///   no iPXE option ROM for the firmware to run, no default CD-ROM (0.1 s).
/// - `quiet`: kernel messages below errors stay off the console.
/// - `cryptomgr.notests`: no crypto self-tests (0.5 s).
/// - `noreplace-smp`: with one vCPU the kernel would otherwise patch every
///   `lock` prefix out of its text, one page-table switch each (0.4 s).
/// - `no_timer_check noapictimer`: no IO-APIC timer check and no local
///   APIC timer calibration (the HPET drives the tick instead; 0.1 s).
///   With `smp = 2` or more this makes an idle guest cost about 4% of a
///   host core (periodic ticks), against 0.2% otherwise.
/// - `initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init`:
///   skips two tracing chores, a kallsyms lookup for each of the 37 000
///   ftrace call sites and the rewrite of every trace event's enum names
///   (0.2 s). Function tracing still works; trace event `format` files
///   show enum values as numbers.
///
/// QEMU's default 128 MiB of memory is enough; TCG or KVM.
///
/// # What it runs
///
/// `/init` mounts `/proc`, `/sys`, `/dev` (devtmpfs), `/dev/pts` and `/run`,
/// loads `virtio_pci`, `virtio_blk`, `button` and `evdev` (so virtio block
/// devices, hot-plugged ones included, appear as `/dev/vd*`), and starts
/// busybox init, which runs `acpid` and a root login shell (busybox `ash`)
/// on `ttyS0` as its controlling terminal (Ctrl-C interrupts the foreground
/// command), with terminal echo off (`stty echo` turns it back on for a
/// human). The shell prints [`LINUX_READY`] when it starts reading
/// commands: about 3 s after launch on TCG (QEMU 7.2, 2 host cores, little
/// other load; 2.7 s of QEMU's CPU time; longer on a busy host).
///
/// - [`Shell`](crate::shell::Shell) (`vm.shell()`) runs commands in it.
/// - QMP `system_powerdown` (the ACPI power button) makes it shut down
///   cleanly: processes get SIGTERM then SIGKILL, file systems are synced
///   and the machine powers off: QEMU emits `SHUTDOWN` with `guest: true`,
///   `reason: "guest-shutdown"`, about 2 s later. `poweroff` in the shell
///   does the same.
/// - The root file system is the initramfs itself (tmpfs, writable, lost at
///   power-off); busybox provides the usual tools (`ls`, `mount`, `mke2fs`,
///   `dd`, `sha256sum`, `base64`, `ip`, `wget`, ...).
///
/// # Example
///
/// ```no_run
/// use qemu_test::prelude::*;
///
/// #[qemu_test(console, kernel = guest::LINUX_X86_64)]
/// fn kernel_is_debians(vm: &mut Vm) -> TestResult {
///     let release = vm.shell().succeed("uname -r")?;
///     assert_eq!(release.trim(), guest::linux_x86_64()?.kernel_release().unwrap());
///     Ok(())
/// }
///
/// qemu_test::main!();
/// ```
pub static LINUX_X86_64: Guest = Guest {
    name: "linux-x86_64",
    arch: "x86_64",
    machine: "q35",
    cpu: None,
    load: Load::Prebuilt(Prebuilt {
        dir: "linux-x86_64",
        append: "console=ttyS0,115200 quiet cryptomgr.notests noreplace-smp \
                 no_timer_check noapictimer \
                 initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init",
        args: &["-nodefaults"],
    }),
    ready: Some(LINUX_READY),
    bytes: &[],
};

/// A Linux guest for `qemu-system-aarch64 -M virt`: Debian's arm64 cloud
/// kernel and the same busybox initramfs as [`LINUX_X86_64`], with a root
/// shell on the PL011 UART (`ttyAMA0`, the first serial port).
///
/// Built only on request, by `cargo xtask guests --aarch64`, from Debian's
/// arm64 packages (fetched through private arm64 package lists; the host's
/// apt and dpkg configuration are not changed). Until then tests that use
/// it are skipped with that hint (a failure under `QEMU_TEST_REQUIRE=1`).
/// [`linux_aarch64`] finds its files.
///
/// # Command line
///
/// `-M virt -cpu max,pauth=off,sve=off -kernel kernel -initrd initrd.gz
/// -append "console=ttyAMA0 quiet cryptomgr.notests
/// initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init"
/// -nodefaults` (see [`LINUX_X86_64`] for what the kernel options do).
///
/// The CPU, unless the test names one, is QEMU's `max` without pointer
/// authentication and SVE. With them TCG boots four times slower: it
/// emulates the pointer authentication the kernel uses in every function
/// (8.5 s of CPU time to the shell instead of 2.2 s), and SVE's large
/// registers add 0.3 s. A `cortex-a72` is as fast, but unlike `max` it
/// does not work under KVM on most arm64 hosts.
///
/// # What it runs
///
/// The same `/init` as [`LINUX_X86_64`] (modules `virtio_pci`,
/// `virtio_blk`, `evdev`), so [`Shell`](crate::shell::Shell) works the same
/// way; [`LINUX_READY`] comes about 2.2 s after launch on TCG (QEMU 7.2,
/// 2 host cores, little other load; longer on a busy host). `poweroff` in the shell powers the machine
/// off through PSCI (`SHUTDOWN` with `guest: true`). QMP
/// `system_powerdown` does nothing: `-M virt` booted with `-kernel` signals
/// it through a GPIO key whose driver (`gpio_keys`) the cloud kernel does
/// not build.
///
/// # Example
///
/// ```no_run
/// use qemu_test::prelude::*;
///
/// #[qemu_test(console, kernel = guest::LINUX_AARCH64)]
/// fn runs_on_arm(vm: &mut Vm) -> TestResult {
///     assert_eq!(vm.shell().succeed("uname -m")?, "aarch64\n");
///     Ok(())
/// }
///
/// qemu_test::main!();
/// ```
pub static LINUX_AARCH64: Guest = Guest {
    name: "linux-aarch64",
    arch: "aarch64",
    machine: "virt",
    cpu: Some("max,pauth=off,sve=off"),
    load: Load::Prebuilt(Prebuilt {
        dir: "linux-aarch64",
        append: "console=ttyAMA0 quiet cryptomgr.notests \
                 initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init",
        args: &["-nodefaults"],
    }),
    ready: Some(LINUX_READY),
    bytes: &[],
};

/// What the Linux guests' shell prints when it starts reading commands
/// (once per shell start).
pub const LINUX_READY: &str = "qemu-test-linux: ready";

/// The files of [`LINUX_X86_64`], or [`SetupError::Image`] telling how to
/// build them.
///
/// ```no_run
/// let linux = qemu_test::guest::linux_x86_64()?;
/// println!("kernel {} at {}", linux.kernel_release().unwrap_or("?"), linux.kernel.display());
/// # Ok::<(), qemu_test::SetupError>(())
/// ```
pub fn linux_x86_64() -> Result<PrebuiltFiles, SetupError> {
    prebuilt_files(&LINUX_X86_64)
}

/// The files of [`LINUX_AARCH64`], or [`SetupError::Image`] telling how to
/// build them (`cargo xtask guests --aarch64`).
///
/// ```no_run
/// let linux = qemu_test::guest::linux_aarch64()?;
/// println!("kernel {} at {}", linux.kernel_release().unwrap_or("?"), linux.kernel.display());
/// # Ok::<(), qemu_test::SetupError>(())
/// ```
pub fn linux_aarch64() -> Result<PrebuiltFiles, SetupError> {
    prebuilt_files(&LINUX_AARCH64)
}

fn prebuilt_files(guest: &Guest) -> Result<PrebuiltFiles, SetupError> {
    match &guest.load {
        Load::Prebuilt(prebuilt) => prebuilt.locate(),
        _ => unreachable!("{} is prebuilt", guest.name),
    }
}

/// A guest built outside the crate by `cargo xtask guests`: which
/// subdirectory of the [guests directory](guests_dir) holds it, the kernel
/// command line it needs and the QEMU arguments it adds.
///
/// ```
/// use qemu_test::guest::{Load, LINUX_X86_64};
///
/// let Load::Prebuilt(prebuilt) = LINUX_X86_64.load else { unreachable!() };
/// assert_eq!(prebuilt.dir, "linux-x86_64");
/// assert!(prebuilt.append.starts_with("console=ttyS0"));
/// assert_eq!(prebuilt.args, ["-nodefaults"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prebuilt {
    /// The subdirectory of the guests directory, e.g. `linux-x86_64`.
    pub dir: &'static str,
    /// The kernel command line the guest needs (`-append`).
    pub append: &'static str,
    /// QEMU arguments the guest adds before the test's own `args`.
    pub args: &'static [&'static str],
}

impl Prebuilt {
    /// The kernel's file name in the guest's directory: on x86_64 the
    /// uncompressed `vmlinux` ELF (booted through its PVH entry point), on
    /// aarch64 Debian's `Image`.
    pub const KERNEL: &'static str = "kernel";
    /// The initramfs's file name in the guest's directory.
    pub const INITRD: &'static str = "initrd.gz";
    /// The build manifest's file name in the guest's directory: package
    /// versions, kernel release, size and SHA-256 of each file.
    pub const MANIFEST: &'static str = "manifest.json";

    /// Finds the guest's files and checks them against the manifest (that
    /// they exist with the recorded sizes; hashes are checked by the build).
    pub fn locate(&self) -> Result<PrebuiltFiles, SetupError> {
        let dir = guests_dir()?.join(self.dir);
        let manifest_path = dir.join(Self::MANIFEST);
        // The aarch64 guest is opt-in (see [`LINUX_AARCH64`]).
        let flag = if self.dir.ends_with("aarch64") {
            " --aarch64"
        } else {
            ""
        };
        let missing = |path: PathBuf, what: &str| SetupError::Image {
            path,
            hint: format!(
                "{what}; build it with `cargo xtask guests{flag}` in a qemu-test checkout (from \
                 another workspace, point QEMU_TEST_GUESTS_DIR at that checkout's \
                 target/qemu-test/guests, or set it for both the build and the tests)"
            ),
        };
        let text = fs::read(&manifest_path)
            .map_err(|_| missing(manifest_path.clone(), "the Linux guest is not built"))?;
        let manifest: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|_| missing(manifest_path.clone(), "the guest's manifest is unreadable"))?;
        let check = |name: &str| -> Result<PathBuf, SetupError> {
            let path = dir.join(name);
            let size = fs::metadata(&path).map(|m| m.len()).ok();
            if size.is_none() || size != manifest["files"][name]["size"].as_u64() {
                return Err(missing(path, "the guest's files do not match its manifest"));
            }
            Ok(path)
        };
        Ok(PrebuiltFiles {
            kernel: check(Self::KERNEL)?,
            initrd: check(Self::INITRD)?,
            append: self.append,
            args: self.args,
            dir,
            manifest,
        })
    }
}

/// The files of a [`Prebuilt`] guest, as found by [`Prebuilt::locate`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PrebuiltFiles {
    /// The guest's directory.
    pub dir: PathBuf,
    /// The kernel (`-kernel`).
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`).
    pub initrd: PathBuf,
    /// The kernel command line the guest needs (`-append`).
    pub append: &'static str,
    /// QEMU arguments the guest adds (before the test's own).
    pub args: &'static [&'static str],
    /// The build manifest (`manifest.json`).
    pub manifest: serde_json::Value,
}

impl PrebuiltFiles {
    /// The kernel release (`uname -r` in the guest), from the manifest.
    pub fn kernel_release(&self) -> Option<&str> {
        self.manifest["kernel_release"].as_str()
    }

    /// The Debian version of `package`, from the manifest.
    pub fn package_version(&self, package: &str) -> Option<&str> {
        self.manifest["packages"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == package)?["version"]
            .as_str()
    }
}

/// The directory `cargo xtask guests` builds guests into:
/// `$QEMU_TEST_GUESTS_DIR` if set (a relative path is taken from the
/// workspace, the target directory's parent), else
/// `<target>/qemu-test/guests`, where `<target>` is the cargo target
/// directory this executable was built in (the nearest ancestor holding
/// `CACHEDIR.TAG`, or the parent of a `debug`/`release` directory).
pub fn guests_dir() -> Result<PathBuf, SetupError> {
    let target = target_dir();
    if let Some(dir) = std::env::var_os("QEMU_TEST_GUESTS_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        let base = target.as_deref().and_then(std::path::Path::parent);
        return Ok(match base {
            Some(base) if dir.is_relative() => base.join(dir),
            _ => dir,
        });
    }
    target.map(|t| t.join("qemu-test").join("guests")).ok_or_else(|| SetupError::Image {
        path: std::env::current_exe().unwrap_or_default(),
        hint: "cannot find the cargo target directory above this executable; set QEMU_TEST_GUESTS_DIR".into(),
    })
}

fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut child: Option<&std::path::Path> = None;
    for dir in exe.ancestors().skip(1) {
        let profile_dir = child
            .and_then(|c| c.file_name())
            .is_some_and(|n| n == "debug" || n == "release");
        if dir.join("CACHEDIR.TAG").is_file() || profile_dir {
            return Some(dir.to_path_buf());
        }
        child = Some(dir);
    }
    None
}
