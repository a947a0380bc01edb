//! The Linux guests: Debian's cloud kernel and a busybox initramfs whose
//! own files (`init`, `rootfs/`) live beside this module, built on first use
//! into the per-user cache.
//!
//! | module | concern |
//! | --- | --- |
//! | `target` | the architectures: packages, modules, kernel image kind |
//! | `own_files` | the guest's own files, compiled in |
//! | `source` | where the kernel and busybox come from ([`LinuxSource`], the environment) |
//! | `apt` | Debian packages without root: private lists, resolve, download, unpack |
//! | `kernel` | bzImage → PVH `vmlinux` (LZ4 legacy, gzip), arm64 `Image`, checks |
//! | `modules` | the kernel modules to load and their dependencies |
//! | `initramfs` | the reproducible cpio archive |
//! | `build` | material → `kernel`, `initrd.gz`, `manifest.json` |
//! | `store` | one guest's dir in the cache: builds by key, locks, removal |
//! | `builder` | find or build ([`LinuxBuilder`]) |
//! | `progress` | the build's progress lines on stderr |

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::{Guest, Load};
use crate::error::GuestError;

mod apt;
mod build;
mod builder;
mod initramfs;
mod kernel;
mod modules;
mod own_files;
mod progress;
mod source;
mod store;
mod target;

pub(crate) use builder::current_key;
pub use builder::{BuildOutcome, LinuxBuild, LinuxBuilder};
pub(crate) use own_files::digest as own_digest;
pub(crate) use progress::size;
pub use source::LinuxSource;
pub(crate) use store::Store;

/// Bumped whenever the layout of a built guest changes, so older builds
/// are not used. 2: the kernel file is `kernel` (an uncompressed ELF on
/// x86_64).
pub(crate) const FORMAT: u64 = 2;
/// The kernel's file name in a build: on x86_64 the uncompressed `vmlinux`
/// ELF (booted through its PVH entry point), on aarch64 an `Image`.
pub(crate) const KERNEL: &str = "kernel";
/// The initramfs's file name in a build.
pub(crate) const INITRD: &str = "initrd.gz";
/// The manifest's file name in a build: its inputs (packages, versions,
/// SHA-256), the kernel release, the size and SHA-256 of each file.
pub(crate) const MANIFEST: &str = "manifest.json";

/// A Linux guest for `qemu-system-x86_64 -M q35`: Debian's cloud kernel and
/// a busybox initramfs with a root shell on the first serial port.
///
/// Not embedded in the crate: it is built on first use (a test that uses
/// it builds it before its deadline starts; the first time about half a
/// minute, with progress on stderr) into the per-user
/// [cache](super::cache_dir), from Debian's packages
/// (`linux-image-cloud-amd64`, `busybox-static`), fetched with apt through
/// private package lists: no root, nothing installed. Later uses find it
/// there, and processes that start together (nextest) build it once. On a
/// host without apt or without these packages (Ubuntu), point it at a
/// kernel and a static busybox with `QEMU_TEST_LINUX_KERNEL`,
/// `QEMU_TEST_BUSYBOX` and `QEMU_TEST_LINUX_MODULES` (see [`LinuxSource`]);
/// otherwise a test that uses it is skipped saying so (a failure under
/// `QEMU_TEST_REQUIRE=1`). `QEMU_TEST_GUESTS_DIR` names a directory of
/// guests built elsewhere (`cargo xtask guests` with it set), used instead.
/// [`linux_x86_64`] finds or builds its files.
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
/// - `loglevel=5`: kernel warnings and worse reach the console (and so
///   the test's console log); notices and info messages stay off it.
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
/// loads `virtio_pci`, `virtio_blk`, `button`, `evdev`, `virtio_net` and
/// `virtio_console` (so virtio block devices and NICs, hot-plugged ones
/// included, appear as `/dev/vd*` and `eth*`), brings the loopback
/// interface up, and starts busybox init, which runs `acpid`, the guest
/// agent (`/bin/qemu-test-agent`, which serves [`Shell`](crate::shell::Shell)
/// over the machine's [data channel](crate::channel) when it has one; the
/// runner gives it one) and a root login shell (busybox `ash`)
/// on `ttyS0` as its controlling terminal (Ctrl-C interrupts the foreground
/// command), with terminal echo off (`stty echo` turns it back on for a
/// human). The shell prints [`LINUX_READY`] when it starts reading
/// commands: about 3 s after launch on TCG (QEMU 7.2, 2 host cores, little
/// other load; 2.7 s of QEMU's CPU time; longer on a busy host).
///
/// - [`Shell`](crate::shell::Shell) (`vm.shell()`) runs commands in it,
///   through the agent (or the console's shell:
///   [`console_only`](crate::shell::Shell::console_only)).
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
    load: Load::Linux(LinuxGuest {
        name: "linux-x86_64",
        target: &target::X86_64,
        append: "console=ttyS0,115200 loglevel=5 cryptomgr.notests noreplace-smp \
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
/// Built on first use like [`LINUX_X86_64`], from Debian's arm64 packages
/// (through private arm64 package lists; on an x86_64 host its first build
/// fetches them, about 9 MB, and a 21 MB kernel package), or from the files
/// `QEMU_TEST_LINUX_KERNEL_AARCH64`, `QEMU_TEST_BUSYBOX_AARCH64` and
/// `QEMU_TEST_LINUX_MODULES_AARCH64` name (see [`LinuxSource`]).
/// [`linux_aarch64`] finds or builds its files.
///
/// # Command line
///
/// `-M virt -cpu max,pauth=off,sve=off -kernel kernel -initrd initrd.gz
/// -append "console=ttyAMA0 loglevel=5 cryptomgr.notests
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
/// `virtio_blk`, `evdev`, `virtio_net`, `virtio_console`) and agent, so
/// [`Shell`](crate::shell::Shell) works the same
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
    load: Load::Linux(LinuxGuest {
        name: "linux-aarch64",
        target: &target::AARCH64,
        append: "console=ttyAMA0 loglevel=5 cryptomgr.notests \
                 initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init",
        args: &["-nodefaults"],
    }),
    ready: Some(LINUX_READY),
    bytes: &[],
};

/// The Linux guest of [`LINUX_X86_64`] with Debian's generic kernel
/// (`linux-image-amd64`, the same version as the cloud one) instead of
/// its cloud kernel, for what the cloud kernel does not build: 9p over
/// virtio, i.e. host directories shared into the guest (`shares = [...]`
/// in `#[qemu_test]`, [`Machine::add_share`](crate::Machine::add_share))
/// and host programs run from a share
/// ([`Vm::install`](crate::Vm::install)).
///
/// Built on first use like [`LINUX_X86_64`] (a 71 MB kernel package the
/// first time; its xz-compressed kernel is unpacked to a PVH `vmlinux`
/// with the `xz` program of xz-utils), with the same `/init`, shell and
/// command line, and the modules `virtio_pci`, `virtio_blk`, `button`,
/// `evdev`, `virtio_net`, `virtio_console`, `9p` and `9pnet_virtio`. Its boot costs about
/// 0.3 s more CPU than the cloud kernel's on TCG (a bigger kernel). Its
/// own source settings are `QEMU_TEST_LINUX_KERNEL_X86_64_GENERIC`,
/// `QEMU_TEST_BUSYBOX_X86_64_GENERIC` and
/// `QEMU_TEST_LINUX_MODULES_X86_64_GENERIC` (see [`LinuxSource`]).
///
/// ```no_run
/// use qemu_test::prelude::*;
///
/// #[qemu_test(console, kernel = guest::LINUX_X86_64_GENERIC, shares = ["data:/mnt/data:ro"])]
/// fn reads_the_share(vm: &mut Vm) -> TestResult {
///     vm.shell().succeed("ls /mnt/data")?;
///     Ok(())
/// }
///
/// qemu_test::main!();
/// ```
pub static LINUX_X86_64_GENERIC: Guest = Guest {
    name: "linux-x86_64-generic",
    arch: "x86_64",
    machine: "q35",
    cpu: None,
    load: Load::Linux(LinuxGuest {
        name: "linux-x86_64-generic",
        target: &target::X86_64_GENERIC,
        append: "console=ttyS0,115200 loglevel=5 cryptomgr.notests noreplace-smp \
                 no_timer_check noapictimer \
                 initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init",
        args: &["-nodefaults"],
    }),
    ready: Some(LINUX_READY),
    bytes: &[],
};

/// What the Linux guests' shell prints when it starts reading commands
/// (once per shell start).
pub const LINUX_READY: &str = "qemu-test-linux: ready";

/// A Linux guest: its name (`linux-<arch>`), the kernel command line it
/// needs and the QEMU arguments it adds. Its files are found or built by
/// [`files`](Self::files).
///
/// ```
/// use qemu_test::guest::{Load, LINUX_X86_64};
///
/// let Load::Linux(linux) = LINUX_X86_64.load else { unreachable!() };
/// assert_eq!(linux.name, "linux-x86_64");
/// assert!(linux.append.starts_with("console=ttyS0"));
/// assert_eq!(linux.args, ["-nodefaults"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinuxGuest {
    /// Its name, and its directory in the cache: `linux-<arch>`.
    pub name: &'static str,
    /// The kernel command line the guest needs (`-append`).
    pub append: &'static str,
    /// QEMU arguments the guest adds before the test's own `args`.
    pub args: &'static [&'static str],
    pub(crate) target: &'static target::Target,
}

/// The processes' results of [`LinuxGuest::files`], by guest.
type Memo = Vec<(&'static str, Result<LinuxFiles, GuestError>)>;

impl LinuxGuest {
    /// The guest's files: from `QEMU_TEST_GUESTS_DIR` if set, else found in
    /// the cache or built there now ([`LinuxBuilder`] with its defaults).
    /// Asked once per process: later calls return the same answer.
    pub fn files(&self) -> Result<LinuxFiles, GuestError> {
        static MEMO: Mutex<Memo> = Mutex::new(Vec::new());
        // Held during a build: other threads wait for it.
        let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, known)) = memo.iter().find(|(name, _)| *name == self.name) {
            return known.clone();
        }
        let files = match guests_dir() {
            Some(dir) => self.prebuilt_in(&dir),
            None => self.builder().build().map(|built| built.files),
        };
        memo.push((self.name, files.clone()));
        files
    }

    /// Whether its kernel mounts 9p shares (host directories).
    pub fn has_9p(&self) -> bool {
        self.target.modules.contains(&"9pnet_virtio")
    }

    /// A [`LinuxBuilder`] for this guest, to choose its source, cache dir
    /// or progress output.
    pub fn builder(&self) -> LinuxBuilder {
        LinuxBuilder::new(*self)
    }

    /// Checks, without building anything, that the guest can be had here:
    /// `QEMU_TEST_GUESTS_DIR` holds it, or the files the environment names
    /// exist, or apt is there (whether its archive has the packages shows
    /// when building), or a build of the guest's own files is in the cache.
    /// What the runner asks when it lists the tests.
    pub fn check(&self) -> Result<(), GuestError> {
        if let Some(dir) = guests_dir() {
            return self.prebuilt_in(&dir).map(drop);
        }
        let error = |problem: Problem| problem.into_error(self.name);
        match LinuxSource::from_env(self.target).map_err(error)? {
            LinuxSource::Files {
                kernel, busybox, ..
            } => {
                for (what, path) in [("kernel", kernel), ("busybox", busybox)] {
                    if !path.is_file() {
                        let why = format!("the {what} {} does not exist", path.display());
                        return Err(error(Problem::Config(why)));
                    }
                }
                Ok(())
            }
            LinuxSource::Debian => self.check_debian().map_err(error),
        }
    }

    fn check_debian(&self) -> Result<(), Problem> {
        let missing = apt::missing_tools();
        if missing.is_empty() {
            return Ok(());
        }
        let own = own_files::digest(self.target);
        let root = super::cache_dir().ok();
        let store = root.map(|root| Store::new(&root, self.name));
        let built = store.into_iter().flat_map(|s| s.builds()).any(|b| {
            b.manifest
                .is_some_and(|m| m["sources_sha256"] == own.as_str())
        });
        if built {
            return Ok(());
        }
        Err(Problem::Unavailable(format!(
            "building it from Debian's packages needs {}, which this host does not have; {}",
            missing.join(", "),
            source::how_to_point_at_files(self.target)
        )))
    }

    /// The guest in a directory of guests built elsewhere
    /// (`QEMU_TEST_GUESTS_DIR`), made from the same own files.
    fn prebuilt_in(&self, guests: &Path) -> Result<LinuxFiles, GuestError> {
        let dir = guests.join(self.name);
        let unavailable = |what: String| GuestError::Unavailable {
            guest: self.name.to_string(),
            reason: format!(
                "{what}; put a build there (`cargo xtask guests` in a qemu-test checkout with \
                 QEMU_TEST_GUESTS_DIR={} set, or LinuxFiles::copy_to), or unset \
                 QEMU_TEST_GUESTS_DIR to have it built on first use in the cache",
                guests.display()
            ),
        };
        let files = LinuxFiles::locate(&dir, self).map_err(unavailable)?;
        let own = own_files::digest(self.target);
        if files.manifest["sources_sha256"] != own.as_str() {
            return Err(unavailable(format!(
                "{} was built from other own files than this qemu-test's (an older or newer \
                 version)",
                dir.display()
            )));
        }
        Ok(files)
    }
}

/// The files of [`LINUX_X86_64`], found or built on first use (see
/// [`LinuxGuest::files`]).
///
/// ```no_run
/// let linux = qemu_test::guest::linux_x86_64()?;
/// println!("kernel {} at {}", linux.kernel_release().unwrap_or("?"), linux.kernel.display());
/// # Ok::<(), qemu_test::GuestError>(())
/// ```
pub fn linux_x86_64() -> Result<LinuxFiles, GuestError> {
    linux(&LINUX_X86_64).files()
}

/// The files of [`LINUX_AARCH64`], found or built on first use (see
/// [`LinuxGuest::files`]).
///
/// ```no_run
/// let linux = qemu_test::guest::linux_aarch64()?;
/// println!("kernel {} at {}", linux.kernel_release().unwrap_or("?"), linux.kernel.display());
/// # Ok::<(), qemu_test::GuestError>(())
/// ```
pub fn linux_aarch64() -> Result<LinuxFiles, GuestError> {
    linux(&LINUX_AARCH64).files()
}

fn linux(guest: &'static Guest) -> &'static LinuxGuest {
    guest
        .linux()
        .unwrap_or_else(|| unreachable!("{} is a Linux guest", guest.name))
}

/// The files of a built [`LinuxGuest`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LinuxFiles {
    /// The build's directory.
    pub dir: PathBuf,
    /// The kernel (`-kernel`).
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`).
    pub initrd: PathBuf,
    /// The kernel command line the guest needs (`-append`).
    pub append: &'static str,
    /// QEMU arguments the guest adds (before the test's own).
    pub args: &'static [&'static str],
    /// The build manifest (`manifest.json`): its inputs, the kernel
    /// release, each file's size and SHA-256.
    pub manifest: Value,
}

impl LinuxFiles {
    /// The build of `guest` in `dir`, checked against its manifest (that it
    /// is for the guest's architecture and its files have the recorded
    /// sizes; the build checks the hashes).
    pub(crate) fn locate(dir: &Path, guest: &LinuxGuest) -> Result<LinuxFiles, String> {
        let manifest_path = dir.join(MANIFEST);
        let text = fs::read(&manifest_path)
            .map_err(|e| format!("{} is not there ({e})", manifest_path.display()))?;
        let manifest: Value = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is unreadable: {e}", manifest_path.display()))?;
        if manifest["arch"] != guest.target.arch {
            return Err(format!(
                "{} is for {}, not {}",
                dir.display(),
                manifest["arch"],
                guest.target.arch
            ));
        }
        let check = |name: &str| -> Result<PathBuf, String> {
            let path = dir.join(name);
            let size = fs::metadata(&path).map(|m| m.len()).ok();
            if size.is_none() || size != manifest["files"][name]["size"].as_u64() {
                return Err(format!("{} does not match its manifest", path.display()));
            }
            Ok(path)
        };
        Ok(LinuxFiles {
            kernel: check(KERNEL)?,
            initrd: check(INITRD)?,
            append: guest.append,
            args: guest.args,
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The kernel release (`uname -r` in the guest), from the manifest.
    pub fn kernel_release(&self) -> Option<&str> {
        self.manifest["kernel_release"].as_str()
    }

    /// The Debian version of `package`, from the manifest (a guest built
    /// from Debian's packages).
    pub fn package_version(&self, package: &str) -> Option<&str> {
        self.manifest["packages"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == package)?["version"]
            .as_str()
    }

    /// Whether the kernel and initramfs still have the SHA-256 the
    /// manifest records (reads both: tens of MB).
    pub fn verify(&self) -> bool {
        build::intact(&self.dir)
    }

    /// Copies the build into `guests/<name>/` (a directory of guests for
    /// `QEMU_TEST_GUESTS_DIR`), unless the same build is there already;
    /// returns the copy. The manifest is written last.
    pub fn copy_to(&self, guests: &Path) -> std::io::Result<LinuxFiles> {
        let name = self.dir_name();
        let dir = guests.join(&name);
        let existing = fs::read(dir.join(MANIFEST)).ok();
        let same = existing
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .is_some_and(|m| m == self.manifest);
        if !same || !build::intact(&dir) {
            fs::create_dir_all(&dir)?;
            let _ = fs::remove_file(dir.join(MANIFEST));
            for (from, file) in [(&self.kernel, KERNEL), (&self.initrd, INITRD)] {
                let tmp = dir.join(format!(".{file}.tmp"));
                fs::copy(from, &tmp)?;
                fs::rename(&tmp, dir.join(file))?;
            }
            let text = serde_json::to_string_pretty(&self.manifest)? + "\n";
            crate::os::write_atomically(&dir.join(MANIFEST), text.as_bytes())?;
        }
        Ok(LinuxFiles {
            dir: dir.clone(),
            kernel: dir.join(KERNEL),
            initrd: dir.join(INITRD),
            ..self.clone()
        })
    }

    /// `linux-<arch>`, from the manifest.
    fn dir_name(&self) -> String {
        format!(
            "linux-{}",
            self.manifest["arch"].as_str().unwrap_or("unknown")
        )
    }
}

/// The directory of guests built elsewhere that `QEMU_TEST_GUESTS_DIR`
/// names, if set: the Linux guests are then taken from
/// `<dir>/linux-<arch>/` (`kernel`, `initrd.gz`, `manifest.json`, as
/// [`LinuxFiles::copy_to`] and `cargo xtask guests` with the variable set
/// write them) and never built. A relative path is taken from the
/// workspace (the parent of the cargo target directory this executable
/// was built in).
pub fn guests_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("QEMU_TEST_GUESTS_DIR").filter(|d| !d.is_empty())?);
    if dir.is_absolute() {
        return Some(dir);
    }
    let base = target_dir().and_then(|t| t.parent().map(Path::to_path_buf));
    Some(match base {
        Some(base) => base.join(dir),
        None => dir,
    })
}

/// The cargo target directory this executable was built in: the nearest
/// ancestor holding `CACHEDIR.TAG`, or the parent of a `debug`/`release`
/// directory.
pub(crate) fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut child: Option<&Path> = None;
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

/// Why a step failed, before it is tied to a guest's name.
#[derive(Debug)]
pub(crate) enum Problem {
    /// This host cannot build it: a skip.
    Unavailable(String),
    /// The user's settings are wrong.
    Config(String),
    /// The build failed.
    Build(String),
}

impl From<String> for Problem {
    fn from(cause: String) -> Problem {
        Problem::Build(cause)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unavailable(why) | Problem::Config(why) | Problem::Build(why) => {
                f.write_str(why)
            }
        }
    }
}

impl Problem {
    pub(crate) fn into_error(self, guest: &str) -> GuestError {
        let guest = guest.to_string();
        match self {
            Problem::Unavailable(reason) => GuestError::Unavailable { guest, reason },
            Problem::Config(reason) => GuestError::Config { guest, reason },
            Problem::Build(cause) => GuestError::Build { guest, cause },
        }
    }
}

/// A file's identity without reading it: path, size, modification time,
/// inode (`null` parts if it is missing).
pub(crate) fn stamp(path: &Path) -> Value {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(path) {
        Ok(m) => json!([path, m.len(), m.mtime(), m.mtime_nsec(), m.ino(), m.dev()]),
        Err(_) => json!([path, null]),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
