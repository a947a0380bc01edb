//! The guests embedded in the crate: tiny bare-metal programs (sources and
//! how to rebuild them in the repository's `guests/`), written to the cache
//! when a test first uses them.

use super::{Guest, Load};

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
    bytes: include_bytes!("images/echo-shell-aarch64.bin"),
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
    bytes: include_bytes!("images/serial-ports-x86_64.bin"),
};

/// Every embedded guest (for the cache listing: which images are current).
pub(crate) static EMBEDDED: &[&Guest] = &[&ECHO_SHELL_AARCH64, &SERIAL_PORTS_X86_64];
