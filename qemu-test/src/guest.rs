//! The built-in test guests shipped inside the crate.
//!
//! Each guest is a [`Guest`]: a small binary embedded with `include_bytes!`
//! plus what QEMU needs to boot it (architecture, machine type, how it is
//! loaded). [`Guest::path`] writes the bytes once to a per-user cache file so
//! that QEMU can be pointed at it with `-kernel` or `-bios`.
//!
//! ```no_run
//! use qemu_test::guest;
//!
//! let path = guest::ECHO_SHELL_AARCH64.path()?;
//! assert!(path.exists());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::error::SetupError;

/// How QEMU loads a guest image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Load {
    /// `-kernel FILE`: a Linux kernel or a bare-metal image QEMU's loader
    /// places in RAM.
    Kernel,
    /// `-bios FILE`: firmware that starts at the reset vector.
    Bios,
    /// `-kernel` + `-initrd` + `-append`: a Linux guest built by `cargo
    /// xtask guests` into the [guests directory](guests_dir), not embedded
    /// in the crate (its [`Guest::bytes`] are empty).
    Prebuilt(Prebuilt),
}

/// A test guest embedded in the crate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Guest {
    /// A short unique name, used for the cache file name.
    pub name: &'static str,
    /// The QEMU target architecture (`qemu-system-<arch>`).
    pub arch: &'static str,
    /// The machine type the guest is built for (`-machine`).
    pub machine: &'static str,
    /// The CPU model to use when the test names none (`-cpu`), if the
    /// machine's default CPU cannot run the guest.
    pub cpu: Option<&'static str>,
    /// How QEMU loads it.
    pub load: Load,
    /// What the guest prints on the console once it is ready for input. A
    /// booted snapshot (`#[qemu_test(snapshot = "...")]`) without a `setup`
    /// function is saved as soon as this appears.
    pub ready: Option<&'static str>,
    /// The image itself.
    pub bytes: &'static [u8],
}

impl Guest {
    /// Writes the image to the cache directory (once per content) and
    /// returns its path.
    ///
    /// The cache directory is `$QEMU_TEST_CACHE_DIR` if set, else
    /// `$XDG_CACHE_HOME/qemu-test/guests`, else `$TMPDIR/qemu-test-<uid>/guests`.
    /// The file name carries a hash of the contents, so a changed guest never
    /// reuses a stale file.
    ///
    /// For a [`Load::Prebuilt`] guest nothing is written: this is its
    /// kernel's path in the guests directory (`NotFound` with the hint to
    /// run `cargo xtask guests` if it is not built).
    ///
    /// ```no_run
    /// let kernel = qemu_test::guest::ECHO_SHELL_AARCH64.path()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn path(&self) -> io::Result<PathBuf> {
        if let Load::Prebuilt(prebuilt) = &self.load {
            return prebuilt
                .locate()
                .map(|files| files.kernel)
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e));
        }
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = cache_dir()?;
        let path = dir.join(format!("{}-{:016x}.bin", self.name, fnv1a(self.bytes)));
        if let Ok(existing) = fs::read(&path) {
            if existing == self.bytes {
                return Ok(path);
            }
        }
        crate::os::write_atomically(&path, self.bytes)?;
        Ok(path)
    }
}

fn cache_dir() -> io::Result<PathBuf> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let dir = if let Some(dir) = std::env::var_os("QEMU_TEST_CACHE_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("qemu-test")
    } else {
        crate::os::user_temp_dir()?
    }
    .join("guests");
    crate::os::create_private_dir_all(&dir)?;
    Ok(DIR.get_or_init(|| dir).clone())
}

/// 64-bit FNV-1a: a content tag for cache file names (not a security hash;
/// the file's contents are compared before reuse).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A bare-metal AArch64 "echo shell" for `qemu-system-aarch64 -M virt`.
///
/// A 2 KiB raw image (source: `guests/echo-shell-aarch64/echo.S`, rebuilt
/// with `cargo xtask guests`) that talks on the virt machine's PL011 UART,
/// i.e. the first serial port (`-serial …` / `-serial chardev:ID`). It boots
/// in well under 0.1 s and sleeps in WFI while waiting for input, so an idle
/// guest costs no host CPU.
///
/// # Command line
///
/// `-M virt -cpu max -kernel FILE` (any 64-bit CPU works, e.g.
/// `-cpu cortex-a57`). **`-cpu` is required:** QEMU's default CPU for `virt`
/// is the 32-bit `cortex-a15`; with it the image only prints
/// `\r\nqemu-test echo shell: this is an AArch64 guest; use -cpu max or -cpu cortex-a57\r\n`
/// and powers off. Works with `-nodefaults`, `-display none`, any `-m` from
/// 16 MiB, `-smp N` (only CPU 0 runs), `gic-version=2|3` and
/// `virtualization=on` (PSCI then goes through `smc` instead of `hvc`).
///
/// # Output and input
///
/// At boot it prints exactly `"\r\nqemu-test echo shell\r\nlogin: "`. The
/// `login:` appears once per boot; no login is needed: the first line is
/// just the first command.
///
/// Input is read a line at a time:
///
/// - Every byte other than CR, LF, BS (0x08) and DEL (0x7f) is stored and
///   echoed back unchanged, like a terminal in cooked mode.
/// - BS or DEL erases the last stored byte and echoes `"\b \b"` (nothing if
///   the line is empty).
/// - The line holds at most 256 bytes; further bytes are dropped and not
///   echoed.
/// - CR or LF ends the line; a CR directly followed by LF counts once (as
///   does a LF right after boot, e.g. left over from `"reset\r\n"`). The end
///   of line is echoed as `"\r\n"`.
/// - An empty line just gets the prompt again. Any other line gets its
///   answer (below) and then the prompt `"$ "`.
///
/// So sending `"hello\n"` (or `"hello\r"`, or `"hello\r\n"`) right after boot
/// produces exactly `"hello\r\nyou said: hello\r\n$ "`.
///
/// # Answers
///
/// Commands are matched exactly (case-sensitive, no extra spaces).
///
/// | line | output after the echoed line | then |
/// |---|---|---|
/// | anything else | `you said: <line>\r\n` | prompt |
/// | `poweroff` | `powering off\r\n` | PSCI SYSTEM_OFF: QEMU emits `SHUTDOWN` (`guest: true`, `reason: "guest-shutdown"`) and exits with status 0 (stays, stopped, with `-no-shutdown`) |
/// | `reset` | `resetting\r\n` | PSCI SYSTEM_RESET: QEMU emits `RESET` (`guest: true`, `reason: "guest-reset"`) and the guest boots again (banner and `login: ` again) |
/// | `panic` | `guest panic\r\n` | halts for good with interrupts masked: no more output, input is no longer read (QEMU holds it), the VM stays `running`; no QMP event |
/// | `flood N` | `N` pattern bytes, then `\r\nflood done\r\n` | prompt |
/// | `bytes` | the 256 bytes `0x00..=0xff`, then `\r\nbytes done\r\n` | prompt |
///
/// `flood N` takes 1 to 18 decimal digits (`flood 0` is valid; anything
/// else, like `flood -1` or `flood 1e6`, is echoed as an ordinary line).
/// Byte `i` (from 0) of the flood is
/// `b"0123456789abcdefghijklmnopqrstuvwxyz"[i % 36]`, so it never contains
/// CR or LF. QEMU 7.2's PL011 passes each byte to the chardev separately,
/// so a flood runs at roughly 0.7 MB/s (10 MB ≈ 14 s); while the chardev
/// back end does not accept output the vCPU waits.
///
/// If the guest ever takes an exception (it should not) it prints
/// `\r\nguest exception: ESR=0x… ELR=0x…\r\n` and halts.
///
/// # Notes
///
/// - QEMU holds input the guest has not read yet; a reset discards at most
///   the one byte already in the UART, the rest is read by the new boot.
/// - A socket chardev with `server=on,wait=off` drops output while nobody is
///   connected: connect before the guest boots (or use `wait=on`), or the
///   banner is lost.
///
/// # Example
///
/// ```no_run
/// use std::io::{Read, Write};
/// use std::process::{Command, Stdio};
///
/// let guest = &qemu_test::guest::ECHO_SHELL_AARCH64;
/// let mut qemu = Command::new("qemu-system-aarch64")
///     .args(["-M", guest.machine, "-cpu", "max", "-display", "none", "-nodefaults"])
///     .args(["-serial", "stdio", "-kernel"])
///     .arg(guest.path()?)
///     .stdin(Stdio::piped())
///     .stdout(Stdio::piped())
///     .spawn()?;
/// qemu.stdin.take().unwrap().write_all(b"hello\rflood 40\rpoweroff\r")?;
/// let mut out = Vec::new();
/// qemu.stdout.take().unwrap().read_to_end(&mut out)?;
/// assert!(qemu.wait()?.success());
///
/// let flood: Vec<u8> = (0..40).map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz"[i % 36]).collect();
/// let mut expected = b"\r\nqemu-test echo shell\r\nlogin: ".to_vec();
/// expected.extend_from_slice(b"hello\r\nyou said: hello\r\n$ ");
/// expected.extend_from_slice(b"flood 40\r\n");
/// expected.extend_from_slice(&flood);
/// expected.extend_from_slice(b"\r\nflood done\r\n$ ");
/// expected.extend_from_slice(b"poweroff\r\npowering off\r\n");
/// assert_eq!(out, expected);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub static ECHO_SHELL_AARCH64: Guest = Guest {
    name: "echo-shell-aarch64",
    arch: "aarch64",
    machine: "virt",
    cpu: Some("max"),
    load: Load::Kernel,
    ready: Some("login:"),
    bytes: include_bytes!("../../guests/echo-shell-aarch64/echo-shell-aarch64.bin"),
};

/// A tiny x86 firmware that writes one line to each serial port, for
/// checking which port a console is attached to.
///
/// A 64 KiB BIOS image (source: `guests/serial-ports-x86_64/ports.S`,
/// rebuilt with `cargo xtask guests`) for `qemu-system-x86_64 -M q35 -bios
/// FILE` (`-M pc` works the same). It runs in 16-bit real mode straight from
/// the reset vector and prints its lines within about 0.05 s of QEMU
/// starting.
///
/// For each 16550 UART that exists it initialises the port (115200 8N1,
/// FIFOs on, no interrupts) and writes exactly one line:
///
/// | port | line |
/// |---|---|
/// | COM1 | `qemu-test serial port 0 (0x3f8)\r\n` |
/// | COM2 | `qemu-test serial port 1 (0x2f8)\r\n` |
/// | COM3 | `qemu-test serial port 2 (0x3e8)\r\n` |
/// | COM4 | `qemu-test serial port 3 (0x2e8)\r\n` |
///
/// in that order, then halts for good (`cli; hlt`; the VM stays `running`,
/// uses no host CPU and never powers off). It never reads input. Ports that
/// do not exist (checked with the UART scratch register) are skipped.
///
/// QEMU numbers the ports in order: the Nth `-serial` option is port N-1,
/// and a `-device isa-serial` without `index=` takes the next free one. So:
///
/// - `-nodefaults -serial null -serial stdio` shows only the COM2 line;
/// - `-nodefaults -chardev stdio,id=c -device isa-serial,chardev=c` shows
///   the COM1 line (a `-device isa-serial` also turns off QEMU's default
///   serial port, so this holds without `-nodefaults` too);
/// - `-serial null -chardev socket,id=console,… -device isa-serial,chardev=console`
///   shows the COM2 line on the socket.
///
/// # Example
///
/// ```no_run
/// use std::process::Command;
///
/// let guest = &qemu_test::guest::SERIAL_PORTS_X86_64;
/// let mut qemu = Command::new("qemu-system-x86_64")
///     .args(["-M", guest.machine, "-display", "none", "-vga", "none", "-nodefaults"])
///     .args(["-serial", "null", "-serial", "stdio", "-bios"])
///     .arg(guest.path()?)
///     .stdout(std::process::Stdio::piped())
///     .spawn()?;
/// // The guest halts after printing; read the line, then stop QEMU.
/// let mut line = String::new();
/// std::io::BufRead::read_line(&mut std::io::BufReader::new(qemu.stdout.take().unwrap()), &mut line)?;
/// assert_eq!(line, "qemu-test serial port 1 (0x2f8)\r\n");
/// qemu.kill()?;
/// qemu.wait()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub static SERIAL_PORTS_X86_64: Guest = Guest {
    name: "serial-ports-x86_64",
    arch: "x86_64",
    machine: "q35",
    cpu: None,
    load: Load::Bios,
    ready: None,
    bytes: include_bytes!("../../guests/serial-ports-x86_64/serial-ports-x86_64.bin"),
};

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
