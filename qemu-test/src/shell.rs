//! Commands in a Linux guest over the serial console, with exit status and
//! output, and no guest agent: what the NixOS test driver's `succeed` does,
//! over the one console a test already has.
//!
//! ```no_run
//! # fn demo(vm: &qemu_test::Vm) -> qemu_test::TestResult {
//! use std::time::Duration;
//!
//! let shell = vm.shell();
//! assert_eq!(shell.succeed("echo hello")?, "hello\n");
//! let out = shell.run("ls /nonexistent")?;
//! assert_ne!(out.status, 0);
//! shell.fail("false")?;
//! shell.wait_until_succeeds("test -e /sys/block/vda", Duration::from_secs(10))?;
//! shell.copy_to_guest("target/release/tool", "/tmp/tool")?;
//! # Ok(()) }
//! ```
//!
//! # How a command runs
//!
//! The shell must be a POSIX shell reading the console as its terminal
//! (the Linux guests' busybox `ash`; bash or dash work too). A `Shell`
//! first synchronizes: it types a probe (a `printf` of a marker), repeating
//! it until the shell answers (so the first command may be issued while the
//! guest still boots); unless the shell answered the first probe without
//! echoing it, it then types `stty -echo` and one more probe, answered after
//! any queued ones. Every
//! command is then typed as one script:
//!
//! ```text
//! __qt_f=/tmp/.qt-$$; printf '%s%s\n' '@qt-N' '-start@'; if true >$__qt_f; then ( COMMAND
//! ) </dev/null >$__qt_f; __qt_s=$?; printf '%s-status-%s-' '@qt-N' "$__qt_s"; if [ -s $__qt_f ]; then IFS= read -r -n 1025 -d '' __qt_o <$__qt_f 2>/dev/null; case $?:$__qt_o in 1:*[![:print:][:blank:]'
//! ']*|[!1]*|1[!:]*) wc -c <$__qt_f; base64 <$__qt_f;; *) printf 'r%s:%s' "${#__qt_o}" "$__qt_o";; esac; true 2>/dev/null >$__qt_f; elif [ -e $__qt_f ]; then echo 0; else echo; fi; else printf '%s-status-%s-' '@qt-N' 2; echo; fi; printf '%s%s\n' '@qt-N' '-end@'
//! ```
//!
//! where `N` is a fresh random nonce and `/tmp/.qt-$$` the capture file of
//! this shell process, after a Ctrl-U that discards anything typed on the
//! line before. So:
//!
//! - The markers only appear in the output once `printf` has joined their
//!   halves: the echo of the typed text (if echo is on), prompts and earlier
//!   output never match, and a command that prints marker-like text cannot
//!   forge the nonce.
//! - stdout is captured in a file and sent with its size, byte-exact
//!   whatever it contains (binary, `\r`, text that looks like a marker,
//!   megabytes of it):
//!   - Short text (at most 1 KiB of printable ASCII, spaces, tabs and
//!     newlines) is read by the shell's `read` builtin and sent as it is,
//!     after its length (`${#…}`). Nothing runs apart from the shell then.
//!     The host undoes the terminal's `\r\n` and checks the length. Text
//!     that does not arrive intact (a kernel message printed in the middle,
//!     a terminal that expands tabs, a shell that counts characters, not
//!     bytes, in a UTF-8 locale) is sent again from the shell's variable
//!     `__qt_o`, as base64: one more round trip, still exact.
//!   - Anything else (binary, longer, a NUL, or a shell whose `read` has no
//!     `-n`/`-d`, like dash) is sent base64-encoded and checked against
//!     `wc -c`. Kernel messages that interleave with it (`[   12.345678]
//!     ...` lines) are recognized and dropped.
//! - A command that prints nothing or short text costs no more than its
//!   own subshell: the script itself uses only shell builtins then. Right
//!   after a snapshot is restored every new code path is slow (TCG
//!   translates it afresh), and a `$(...)` or an extra process each cost
//!   tens of milliseconds there. So the capture file is not removed (that
//!   would take `rm`) but emptied by a redirection, and the next command of
//!   the same shell reuses it: one empty file per shell process stays in
//!   `/tmp`. The shell keeps the variables `__qt_f`, `__qt_s` and `__qt_o`.
//! - If the capture file cannot be written (a read-only or full `/tmp`),
//!   the command is not run and the error says so.
//! - stderr is not captured: it goes to the console between the markers and
//!   is returned as [`Output::stderr`], together with anything else printed
//!   meanwhile (kernel messages).
//! - Each command runs in its own subshell with stdin from `/dev/null`:
//!   `exit 3` returns status 3 without killing the shell, a command that
//!   reads stdin sees EOF instead of eating the next command, and `cd`,
//!   `export` and variables do not carry over to the next command (chain
//!   them in one command: `cd /tmp && ls`).
//! - The guest needs a writable `/tmp` and `base64`, `wc`, `printf` and
//!   `stty` (busybox has them all); `rm` too, to clean up after a timeout.
//!
//! # Deadlines
//!
//! Each operation has a deadline: the shell's timeout (by default the
//! console's, 30 s; [`Shell::with_timeout`] changes it), and every wait is
//! also capped by the machine's deadline (the test's timeout). When a
//! command overruns, the shell sends Ctrl-C (twice, then Ctrl-\, if that
//! is not enough), resynchronizes with a fresh probe, and returns
//! [`ShellError::Timeout`] saying whether the shell answers again; the next
//! command then works as usual. Ctrl-C needs job control, i.e. a shell with
//! the console as its controlling terminal (the Linux guests run it under
//! `cttyhack`).
//!
//! The same recovery finds a new shell if the old one died (busybox init
//! respawns it; echo, back on, is turned off again). After a guest reboot,
//! call [`Shell::sync`] (or make a new `Shell`) so the first command is not
//! typed while the guest boots.
//!
//! If the console shows `Kernel panic - not syncing` while waiting, the
//! operation fails at once ([`ConsoleError::Failure`]).
//!
//! # Limits and speed
//!
//! Measured with the Linux guest on TCG (QEMU 7.2, one VM on a 2-core
//! host; two VMs at once halve the rates):
//!
//! | what | cost |
//! | --- | --- |
//! | a command's round trip: `succeed("true")`, `succeed("echo hi")` | about 11-13 ms each |
//! | short text: 1000 bytes; binary: 3 bytes | about 23 ms; 27 ms |
//! | stdout (base64 over the serial port) | about 160 KiB/s: 1 MiB in 6.4 s |
//! | [`copy_from_guest`](Shell::copy_from_guest) (one `cat`) | about 190 KiB/s |
//! | [`copy_to_guest`](Shell::copy_to_guest) (typed as base64, 32 KiB per command) | about 58 KiB/s of gzip output: incompressible data at that rate, a static binary about twice as fast |
//!
//! - A command may span several lines, but each line of the typed script
//!   must fit the terminal's 4095-byte line buffer (so keep a command line
//!   under about 3900 bytes), and it cannot contain control characters
//!   other than newline and tab ([`ShellError::InvalidCommand`]).
//! - stdout is held in the guest's `/tmp` until the command ends, and on the
//!   host in memory and in the console log: think megabytes, not gigabytes.
//! - [`copy_to_guest`](Shell::copy_to_guest) compresses on the host and
//!   needs `gunzip` in the guest. The copies suit files up to a few MB
//!   (test programs, configurations, logs); for disk images, give QEMU a
//!   drive instead.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use regex::bytes::Regex;

use crate::console::{Console, Pattern};
use crate::error::{ConsoleError, ShellError};

/// What the console shows when the guest kernel panics.
const PANIC: &str = "Kernel panic - not syncing";

/// The longest line the typed script may have: Linux's canonical-mode line
/// buffer holds 4095 characters plus the newline.
const MAX_LINE: usize = 4095;

/// How much of a (compressed) file one `copy_to_guest` command carries.
const COPY_CHUNK: usize = 32 * 1024;

/// The capture file of the shell process that runs the script.
const CAPTURE: &str = "/tmp/.qt-$$";

/// The most stdout a command may print to have it sent as it is (if it is
/// text) instead of base64: the shell reads it with its `read` builtin, a
/// byte per system call.
const RAW_MAX: usize = 1024;

/// After a timeout: the keys sent, each followed by a probe, and how long
/// to wait for its answer. Ctrl-C twice (SIGINT; the second also flushes a
/// probe a stuck command left queued), then Ctrl-\ (SIGQUIT).
const INTERRUPTS: [(&[u8], Duration); 3] = [
    (b"\x03", Duration::from_secs(2)),
    (b"\x03", Duration::from_secs(2)),
    (b"\x1c", Duration::from_secs(5)),
];

/// A command's result.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Output {
    /// The exit status (0-255; 128+N when killed by signal N).
    pub status: i32,
    /// What the command wrote on stdout, lossily decoded as UTF-8 (see
    /// [`stdout_bytes`](Output::stdout_bytes) for the exact bytes).
    pub stdout: String,
    /// What the console showed while the command ran, besides stdout: its
    /// stderr, and any kernel messages printed meanwhile; line ends are
    /// `\n`.
    pub stderr: String,
    raw: Vec<u8>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `raw` is `stdout`'s bytes: shown once.
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish_non_exhaustive()
    }
}

impl Output {
    /// Whether the status is 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// stdout, byte-exact.
    pub fn stdout_bytes(&self) -> &[u8] {
        &self.raw
    }
}

/// Runs commands in the guest's shell on a console; see the [module
/// docs](self). Get one with `vm.shell()` or [`Shell::new`].
///
/// Clones (and [`with_timeout`](Shell::with_timeout) handles) share the
/// console and the synchronization state, and their operations take turns.
#[derive(Debug, Clone)]
pub struct Shell {
    console: Console,
    timeout: Duration,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Echo is off and the shell answered a probe.
    synced: bool,
}

impl Shell {
    /// A shell on `console`. Nothing is sent until the first operation. The
    /// timeout of each operation is the console's (30 s unless the console
    /// handle says otherwise).
    pub fn new(console: Console) -> Shell {
        let timeout = console.timeout();
        Shell {
            console,
            timeout,
            state: Arc::default(),
        }
    }

    /// A handle whose operations have `timeout` each.
    pub fn with_timeout(&self, timeout: Duration) -> Shell {
        Shell {
            timeout,
            ..self.clone()
        }
    }

    /// The timeout of this handle's operations.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The console the shell runs on.
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// Waits until the shell answers (at most the timeout): useful to time
    /// the boot, or after the guest rebooted. Other operations do this
    /// themselves the first time.
    pub fn sync(&self) -> Result<(), ShellError> {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.lock();
        state.synced = false;
        self.sync_locked(&mut state, deadline)
    }

    /// Runs `command` and returns its exit status and output, whatever the
    /// status.
    pub fn run(&self, command: &str) -> Result<Output, ShellError> {
        let deadline = Instant::now() + self.timeout;
        self.run_until(command, deadline)
    }

    /// Runs `command`, which must exit with status 0; returns its stdout.
    pub fn succeed(&self, command: &str) -> Result<String, ShellError> {
        let out = self.run(command)?;
        if out.status == 0 {
            Ok(out.stdout)
        } else {
            Err(ShellError::Failed {
                command: command.to_string(),
                status: out.status,
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }

    /// Runs `command`, which must exit with a non-zero status; returns its
    /// stdout.
    pub fn fail(&self, command: &str) -> Result<String, ShellError> {
        let out = self.run(command)?;
        if out.status != 0 {
            Ok(out.stdout)
        } else {
            Err(ShellError::Succeeded {
                command: command.to_string(),
                stdout: out.stdout,
            })
        }
    }

    /// Runs `command` until it exits with status 0 (pausing 0.1 s, growing
    /// to 1 s, between attempts) for at most `timeout`; returns its stdout.
    /// Each attempt gets the shell's timeout or what is left, if less.
    pub fn wait_until_succeeds(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<String, ShellError> {
        self.wait_until(command, timeout, true)
    }

    /// Runs `command` until it exits non-zero, like
    /// [`wait_until_succeeds`](Shell::wait_until_succeeds); returns its
    /// stdout.
    pub fn wait_until_fails(&self, command: &str, timeout: Duration) -> Result<String, ShellError> {
        self.wait_until(command, timeout, false)
    }

    /// Copies the host file `host` to `guest` (created or truncated; parent
    /// directories must exist). Also checks the size in the guest.
    pub fn copy_to_guest(&self, host: impl AsRef<Path>, guest: &str) -> Result<(), ShellError> {
        let host = host.as_ref();
        let data = std::fs::read(host).map_err(|source| ShellError::HostIo {
            action: "read",
            path: host.to_path_buf(),
            source,
        })?;
        self.write_file(guest, &data).map_err(|e| match e {
            ShellError::Copy { reason, .. } => ShellError::Copy {
                what: format!("{} -> guest:{guest}", host.display()),
                reason,
            },
            other => other,
        })
    }

    /// Copies the guest file `guest` to the host file `host`.
    pub fn copy_from_guest(&self, guest: &str, host: impl AsRef<Path>) -> Result<(), ShellError> {
        let host = host.as_ref();
        let data = self.read_file(guest).map_err(|e| match e {
            ShellError::Copy { reason, .. } => ShellError::Copy {
                what: format!("guest:{guest} -> {}", host.display()),
                reason,
            },
            other => other,
        })?;
        std::fs::write(host, data).map_err(|source| ShellError::HostIo {
            action: "write",
            path: host.to_path_buf(),
            source,
        })
    }

    /// Writes `data` to the guest file `path` (created or truncated):
    /// gzip-compressed on the host, typed as base64 into a temporary file
    /// in chunks of 32 KiB (one command each), unpacked with `gunzip`, and
    /// its size checked. The whole copy shares one deadline.
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<(), ShellError> {
        let deadline = Instant::now() + self.timeout;
        let quoted = quote(path)?;
        let copy_err = |reason: String| ShellError::Copy {
            what: format!("{} bytes -> guest:{path}", data.len()),
            reason,
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data)
            .and_then(|()| gz.try_finish())
            .map_err(|e| copy_err(format!("gzip: {e}")))?;
        let packed = gz.get_ref();
        let temp = format!("/tmp/.qt-upload-{}", nonce());
        for (i, chunk) in packed.chunks(COPY_CHUNK).enumerate() {
            let redirect = if i == 0 { ">" } else { ">>" };
            let encoded = base64::engine::general_purpose::STANDARD.encode(chunk);
            let lines: Vec<&str> = encoded
                .as_bytes()
                .chunks(76)
                .map(|l| std::str::from_utf8(l).expect("base64 is ASCII"))
                .collect();
            // A base64 line's length is a multiple of 4, so no line can be
            // the 5-letter delimiter.
            let command = format!(
                "base64 -d {redirect}{temp} <<'QTEOF'\n{}\nQTEOF",
                lines.join("\n")
            );
            let out = self.run_until(&command, deadline)?;
            if out.status != 0 {
                return Err(copy_err(format!(
                    "exit status {}: {}",
                    out.status,
                    out.stderr.trim()
                )));
            }
        }
        let unpack = format!("gunzip -c {temp} >{quoted}; __qt_u=$?; rm -f {temp}; [ $__qt_u = 0 ] && wc -c <{quoted}");
        let out = self.run_until(&unpack, deadline)?;
        if out.status != 0 {
            return Err(copy_err(format!(
                "exit status {}: {}",
                out.status,
                out.stderr.trim()
            )));
        }
        let size = out.stdout.trim();
        if size != data.len().to_string() {
            return Err(copy_err(format!("the guest file has {size} bytes")));
        }
        Ok(())
    }

    /// Reads the guest file `path` (one `cat`, byte-exact).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, ShellError> {
        let out = self.run(&format!("cat -- {}", quote(path)?))?;
        if out.status != 0 {
            return Err(ShellError::Copy {
                what: format!("guest:{path}"),
                reason: format!("exit status {}: {}", out.status, out.stderr.trim()),
            });
        }
        Ok(out.raw)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_until(
        &self,
        command: &str,
        timeout: Duration,
        wanted_success: bool,
    ) -> Result<String, ShellError> {
        let deadline = Instant::now() + timeout;
        let mut attempts = 0;
        let mut pause = Duration::from_millis(100);
        // The last attempt that finished: one cut short by the overall
        // deadline says less about the command than the one before it.
        let (mut last_status, mut last_stdout) = (None, String::new());
        loop {
            attempts += 1;
            let attempt_deadline = deadline.min(Instant::now() + self.timeout);
            match self.run_until(command, attempt_deadline) {
                Ok(out) if out.success() == wanted_success => return Ok(out.stdout),
                Ok(out) => (last_status, last_stdout) = (Some(out.status), out.stdout),
                Err(ShellError::Timeout {
                    recovered: true, ..
                }) => {}
                Err(e) => return Err(e),
            };
            // Another attempt only if it gets more than the pause before it.
            let left = deadline.saturating_duration_since(Instant::now());
            if left <= pause {
                return Err(ShellError::WaitUntil {
                    command: command.to_string(),
                    wanted_success,
                    timeout,
                    attempts,
                    last_status,
                    last_stdout,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn run_until(&self, command: &str, deadline: Instant) -> Result<Output, ShellError> {
        let nonce = nonce();
        let script = script(command, &nonce)?;
        let mut state = self.lock();
        if !state.synced {
            self.sync_locked(&mut state, deadline)?;
        }
        let started = Instant::now();
        match self.exchange(&mut state, command, &script, &nonce, started, deadline)? {
            Parsed::Done(out) => Ok(out),
            Parsed::Resend { status, stderr } => {
                let nonce = self::nonce();
                let script = resend_script(&nonce, status);
                match self.exchange(&mut state, command, &script, &nonce, started, deadline)? {
                    Parsed::Done(out) => Ok(Output {
                        stderr: stderr + &out.stderr,
                        ..out
                    }),
                    Parsed::Resend { .. } => Err(ShellError::Garbled {
                        command: command.to_string(),
                        reason: "stdout sent again did not come as base64".to_string(),
                        raw: self.console.tail(20),
                    }),
                }
            }
        }
    }

    /// Types `script` (framed by `nonce`'s markers) and parses what the
    /// console shows until its end marker; a timeout interrupts it.
    fn exchange(
        &self,
        state: &mut State,
        command: &str,
        script: &str,
        nonce: &str,
        started: Instant,
        deadline: Instant,
    ) -> Result<Parsed, ShellError> {
        let start_marker = format!("@qt-{nonce}-start@");
        let status_marker = format!("@qt-{nonce}-status-");
        let end_marker = format!("@qt-{nonce}-end@");
        self.console.skip_to_end();
        self.console.send(script.as_bytes())?;
        // Only the end marker is awaited: the start marker is looked up in
        // what came before it (a line typed by hand before the script may
        // have eaten the `printf` that prints it).
        let framed = match self.wait(&end_marker, deadline) {
            Ok(m) => m,
            Err(ConsoleError::Timeout { .. }) => {
                let recovered = self.interrupt(state);
                return Err(ShellError::Timeout {
                    command: command.to_string(),
                    timeout: deadline.saturating_duration_since(started),
                    recovered,
                    tail: self.console.tail(20),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let framed = match memchr::memmem::find(&framed, start_marker.as_bytes()) {
            Some(at) => {
                // With echo on, the typed script shows up before the start
                // marker: turn echo off again (after a respawned shell, or
                // `stty echo`) next time.
                if memchr::memmem::find(&framed[..at], b"'-start@'").is_some() {
                    state.synced = false;
                }
                &framed[at + start_marker.len()..]
            }
            None => &framed[..],
        };
        parse(command, framed, status_marker.as_bytes())
    }

    /// Waits for `marker` (or a kernel panic) until `deadline`; returns
    /// what came before it.
    fn wait(&self, marker: &str, deadline: Instant) -> Result<Vec<u8>, ConsoleError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let patterns = [Pattern::text(marker), Pattern::text(PANIC).fails()];
        self.console
            .with_timeout(left)
            .wait_for_any(&patterns)
            .map(|m| m.before)
    }

    /// Sends probes until the shell answers one; then, unless that was the
    /// only probe and the shell did not echo it, turns echo off with a last
    /// probe that is answered after any queued ones.
    fn sync_locked(&self, state: &mut State, deadline: Instant) -> Result<(), ShellError> {
        let started = Instant::now();
        let not_ready = |tail| ShellError::NotReady {
            timeout: deadline.saturating_duration_since(started),
            tail,
        };
        let nonce = nonce();
        let marker = format!("@qt-{nonce}-ready@");
        let mut interval = Duration::from_millis(500);
        let mut probes = 0;
        let answered = loop {
            // Shell builtins only: cheap even while TCG translates the
            // guest's code afresh (right after a snapshot is restored).
            self.console.send(quick_probe(&nonce))?;
            probes += 1;
            let wait_until = deadline.min(Instant::now() + interval);
            match self.wait(&marker, wait_until) {
                Ok(before) => break before,
                Err(ConsoleError::Timeout { .. }) if Instant::now() < deadline => {}
                Err(ConsoleError::Timeout { tail, .. }) => return Err(not_ready(tail)),
                Err(e) => return Err(e.into()),
            }
            interval = (interval * 2).min(Duration::from_secs(2));
        };
        // The typed probe shows up before its answer only if echo is on.
        let echoed = memchr::memmem::find(&answered, b"'-ready@'").is_some();
        if probes == 1 && !echoed {
            state.synced = true;
            return Ok(());
        }
        let nonce = self::nonce();
        self.console.send(probe(&nonce, false))?;
        match self.wait(&format!("@qt-{nonce}-ready@"), deadline) {
            Ok(_) => {}
            Err(ConsoleError::Timeout { tail, .. }) => return Err(not_ready(tail)),
            Err(e) => return Err(e.into()),
        }
        state.synced = true;
        Ok(())
    }

    /// After a timeout: Ctrl-C (then Ctrl-C again, then Ctrl-\), each
    /// followed by a probe; whether the shell answered one.
    fn interrupt(&self, state: &mut State) -> bool {
        state.synced = false;
        for (key, wait) in INTERRUPTS {
            let nonce = nonce();
            if self.console.send(key).is_err() || self.console.send(probe(&nonce, true)).is_err() {
                return false;
            }
            match self.wait(&format!("@qt-{nonce}-ready@"), Instant::now() + wait) {
                Ok(_) => {
                    state.synced = true;
                    return true;
                }
                Err(ConsoleError::Timeout { .. }) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

/// A line that turns echo off and prints `@qt-N-ready@`; with `cleanup`,
/// also removes the capture files an interrupted command left. Starts with
/// Ctrl-U, which discards anything typed on the line so far. (During boot
/// the start of a probe may be lost, so boot-time probes only hold commands
/// whose every suffix is harmless.)
fn probe(nonce: &str, cleanup: bool) -> String {
    let cleanup = if cleanup { "rm -f /tmp/.qt-*; " } else { "" };
    let ready = print_marker(nonce, "ready");
    format!("\x15stty -echo 2>/dev/null; {cleanup}{ready}\r")
}

/// A line that only prints `@qt-N-ready@` (a shell builtin), after Ctrl-U.
fn quick_probe(nonce: &str) -> String {
    format!("\x15{}\r", print_marker(nonce, "ready"))
}

/// A `printf` of the line `@qt-N-WHICH@`, typed in two halves: the typed
/// text never contains the marker it prints.
fn print_marker(nonce: &str, which: &str) -> String {
    format!("printf '%s%s\\n' '@qt-{nonce}' '-{which}@'")
}

/// A `printf` of `@qt-N-status-STATUS-` (`status` is a shell word), typed
/// in two halves like [`print_marker`]'s.
fn print_status(nonce: &str, status: &str) -> String {
    format!("printf '%s-status-%s-' '@qt-{nonce}' {status}")
}

/// The script typed for `command` (see the module docs).
fn script(command: &str, nonce: &str) -> Result<String, ShellError> {
    let invalid = |reason: String| {
        let mut shown: String = command.chars().take(200).collect();
        if shown.len() < command.len() {
            shown.push('…');
        }
        ShellError::InvalidCommand {
            command: shown,
            reason,
        }
    };
    if let Some(c) = command
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(format!(
            "it contains the control character {c:?}, which the terminal would interpret"
        )));
    }
    // This shell's capture file (`$__qt_f`): emptied by a redirection
    // after use, not removed (see the module docs).
    let (file, encoded) = ("$__qt_f", encoded("$__qt_f"));
    // Ctrl-U first: discards anything typed on the line before. `true >F`
    // checks that the capture file can be written before the command runs
    // (its error goes to the console, i.e. into `stderr`); if it cannot,
    // the size field stays empty, which `parse` reports. `read` stops at a
    // NUL or after `RAW_MAX + 1` bytes with status 0; 1 means it reached
    // the end of the file, so `__qt_o` holds all of it, and if that is
    // text it is sent as it is (a shell without `read -n`/`-d`, like dash,
    // fails with 2: base64 then).
    let (start, status, end) = (
        print_marker(nonce, "start"),
        print_status(nonce, "\"$__qt_s\""),
        print_marker(nonce, "end"),
    );
    let script = format!(
        "\x15__qt_f={CAPTURE}; {start}; if true >{file}; then ( {command}\n) </dev/null >{file}; __qt_s=$?; \
         {status}; \
         if [ -s {file} ]; then IFS= read -r -n {raw_read} -d '' __qt_o <{file} 2>/dev/null; \
         case $?:$__qt_o in 1:*[![:print:][:blank:]'\n']*|[!1]*|1[!:]*) {encoded};; \
         *) printf 'r%s:%s' \"${{#__qt_o}}\" \"$__qt_o\";; esac; true 2>/dev/null >{file}; \
         elif [ -e {file} ]; then echo 0; else echo; fi; \
         else {no_file}; echo; fi; {end}\r",
        no_file = print_status(nonce, "2"),
        raw_read = RAW_MAX + 1,
    );
    if let Some(line) = script.split(['\n', '\r']).find(|l| l.len() > MAX_LINE) {
        return Err(invalid(format!(
            "a line of it is {} bytes with the framing; the terminal takes at most {MAX_LINE}",
            line.len()
        )));
    }
    Ok(script)
}

/// The part of a script that sends the capture file `file` as base64: its
/// size, then its contents.
fn encoded(file: &str) -> String {
    format!("wc -c <{file}; base64 <{file}")
}

/// The script typed when stdout sent as it is did not arrive intact: the
/// shell still holds it in `__qt_o` and sends it again as base64, framed
/// like a command that exited with `status`.
fn resend_script(nonce: &str, status: i32) -> String {
    let (file, encoded) = (CAPTURE, encoded(CAPTURE));
    let (start, status, end) = (
        print_marker(nonce, "start"),
        print_status(nonce, &status.to_string()),
        print_marker(nonce, "end"),
    );
    format!(
        "\x15{start}; {status}; \
         if printf '%s' \"$__qt_o\" >{file}; then {encoded}; true 2>/dev/null >{file}; else echo; fi; {end}\r"
    )
}

/// The status field and a stdout sent as it is: `S-rLEN:` (a kernel
/// message may come between the two `printf`s).
static RAW_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([0-9]+)-(?:\[ *[0-9]+\.[0-9]+\][^\n]*\n)*r([0-9]+):").expect("valid regex")
});

/// Kernel messages (`[   12.345678] text`) that may interleave with the
/// base64 text.
static KERNEL_MESSAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[ *[0-9]+\.[0-9]+\][^\n]*\n?").expect("valid regex"));

/// What the console showed for one script.
#[derive(Debug)]
enum Parsed {
    /// The command's result.
    Done(Output),
    /// stdout was sent as it is and did not arrive intact (a kernel message
    /// came in between, or the terminal changed it): the shell must send it
    /// again, as base64.
    Resend {
        /// The command's exit status.
        status: i32,
        /// What the console showed before the status.
        stderr: String,
    },
}

/// Splits the framed console text (between the start and end markers) into
/// stderr, status and decoded stdout.
fn parse(command: &str, framed: &[u8], status_marker: &[u8]) -> Result<Parsed, ShellError> {
    let garbled = |reason: &str| ShellError::Garbled {
        command: command.to_string(),
        reason: reason.to_string(),
        raw: String::from_utf8_lossy(framed).into_owned(),
    };
    let at =
        memchr::memmem::find(framed, status_marker).ok_or_else(|| garbled("no status marker"))?;
    let stderr = String::from_utf8_lossy(&framed[..at]).replace("\r\n", "\n");
    let stderr = stderr.strip_prefix('\n').unwrap_or(&stderr).to_string();
    let after = &framed[at + status_marker.len()..];
    if let Some(header) = RAW_HEADER.captures(after) {
        let status: i32 = digits(&header[1]).ok_or_else(|| garbled("malformed exit status"))?;
        let size: usize = digits(&header[2]).ok_or_else(|| garbled("malformed output size"))?;
        // The terminal turns each `\n` into `\r\n`; the shell sends no
        // `\r` of its own this way, and a kernel message or a changed
        // terminal setting shows in the size.
        let raw: Vec<u8> = after[header.get(0).map_or(0, |m| m.end())..]
            .iter()
            .copied()
            .filter(|&b| b != b'\r')
            .collect();
        if raw.len() != size {
            return Ok(Parsed::Resend { status, stderr });
        }
        return Ok(Parsed::Done(Output {
            status,
            stdout: String::from_utf8_lossy(&raw).into_owned(),
            stderr,
            raw,
        }));
    }
    // `wc` prints the size after `printf` printed the status: a kernel
    // message may come in between.
    let rest = KERNEL_MESSAGE.replace_all(after, &b""[..]);
    let close = memchr::memchr(b'\n', &rest).ok_or_else(|| garbled("unterminated status line"))?;
    let fields =
        std::str::from_utf8(&rest[..close]).map_err(|_| garbled("status line is not text"))?;
    let (status, size) = fields
        .split_once('-')
        .ok_or_else(|| garbled("malformed status marker"))?;
    let status: i32 = status
        .trim()
        .parse()
        .map_err(|_| garbled("malformed exit status"))?;
    let size: usize = size
        .trim()
        .parse()
        .map_err(|_| garbled("no output size (can the guest write /tmp?)"))?;
    let text: Vec<u8> = rest[close + 1..]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| garbled("invalid base64 in stdout"))?;
    if raw.len() != size {
        return Err(garbled(&format!(
            "stdout decoded to {} bytes, the guest counted {size}",
            raw.len()
        )));
    }
    Ok(Parsed::Done(Output {
        status,
        stdout: String::from_utf8_lossy(&raw).into_owned(),
        stderr,
        raw,
    }))
}

/// A number from the ASCII digits a regex matched (`None` if too big).
fn digits<T: std::str::FromStr>(digits: &[u8]) -> Option<T> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A path quoted for the shell.
fn quote(path: &str) -> Result<String, ShellError> {
    shlex::try_quote(path)
        .map(|q| q.into_owned())
        .map_err(|e| ShellError::InvalidCommand {
            command: path.to_string(),
            reason: format!("cannot quote the path: {e}"),
        })
}

/// 16 hex digits, different for every call in every process.
fn nonce() -> String {
    use std::hash::{BuildHasher, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = RandomState::new().hash_one((n, Instant::now(), std::process::id()));
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse`, for text that must parse to an output.
    fn parsed(framed: &[u8]) -> Result<Output, ShellError> {
        match parse("c", framed, b"@qt-n-status-")? {
            Parsed::Done(out) => Ok(out),
            other => panic!("expected an output, got {other:?}"),
        }
    }

    fn framed(stderr: &str, status: i32, stdout: &[u8], noise: Option<(usize, &str)>) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(stdout);
        let mut body: String = b64
            .as_bytes()
            .chunks(76)
            .map(|l| format!("{}\r\n", std::str::from_utf8(l).unwrap()))
            .collect();
        if let Some((at, msg)) = noise {
            body.insert_str(at.min(body.len()), msg);
        }
        format!(
            "\r\n{stderr}@qt-n-status-{status}-{}\r\n{body}",
            stdout.len()
        )
        .into_bytes()
    }

    #[test]
    fn parses_status_stdout_and_stderr() {
        let out = parsed(&framed("oops\r\n", 3, b"hello\n", None)).unwrap();
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (3, "hello\n", "oops\n")
        );
        let empty = parsed(&framed("", 0, b"", None)).unwrap();
        assert_eq!((empty.status, empty.stdout_bytes()), (0, &b""[..]));
    }

    #[test]
    fn binary_output_is_exact_and_kernel_messages_are_dropped() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        let noisy = framed(
            "",
            0,
            &data,
            Some((
                1000,
                "[   12.345678] virtio_blk virtio2: [vda] 2048 512-byte logical blocks\r\n",
            )),
        );
        let out = parsed(&noisy).unwrap();
        assert_eq!(out.stdout_bytes(), &data[..]);
    }

    #[test]
    fn the_size_may_be_padded_or_follow_a_kernel_message() {
        // BSD-style `wc` pads; the kernel may print between `printf` and `wc`.
        let f = b"\r\n@qt-n-status-0-[    3.141592] random: crng init done\r\n      3\r\naGkK\r\n";
        let out = parsed(f).unwrap();
        assert_eq!((out.status, out.stdout.as_str()), (0, "hi\n"));
    }

    #[test]
    fn a_short_or_corrupt_stdout_is_garbled() {
        let mut f = framed("", 0, b"0123456789", None);
        f.extend_from_slice(b"QUJD\r\n");
        assert!(matches!(parsed(&f), Err(ShellError::Garbled { .. })));
        let f = b"\r\nsh: can't create /tmp/.qt-n: Read-only file system\r\n@qt-n-status-1-\r\n";
        let err = parsed(f).unwrap_err();
        assert!(err.to_string().contains("/tmp"), "{err}");
        assert!(matches!(
            parsed(b"nothing"),
            Err(ShellError::Garbled { .. })
        ));
    }

    #[test]
    fn short_text_comes_as_it_is() {
        // The terminal's `\r\n`s are undone; marker look-alikes, tabs and
        // a missing final newline are kept.
        let f = b"\r\noops\r\n@qt-n-status-0-r15:a\tb\r\n@qt-m-end@x";
        let out = parsed(f).unwrap();
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (0, "a\tb\n@qt-m-end@x", "oops\n")
        );
        // A kernel message between the status and the text.
        let f = b"@qt-n-status-3-[    3.141592] random: crng init done\r\nr3:hi\n";
        let out = parsed(f).unwrap();
        assert_eq!((out.status, out.stdout.as_str()), (3, "hi\n"));
    }

    #[test]
    fn short_text_that_did_not_arrive_intact_is_sent_again() {
        // A kernel message inside the text, or a terminal that expands
        // tabs: the size differs, the text is asked for again as base64.
        for f in [
            &b"oops\r\n@qt-n-status-4-r3:h[    3.141592] random: crng init done\r\ni\n"[..],
            b"@qt-n-status-0-r3:a       b",
        ] {
            match parse("c", f, b"@qt-n-status-").unwrap() {
                Parsed::Resend { status, stderr } => {
                    assert!([0, 4].contains(&status));
                    assert!(stderr.is_empty() || stderr == "oops\n", "{stderr:?}");
                }
                other => panic!("expected a resend, got {other:?}"),
            }
        }
        let s = resend_script("abc", 4);
        for marker in ["@qt-abc-start@", "@qt-abc-status-", "@qt-abc-end@"] {
            assert!(!s.contains(marker), "{s}");
        }
        assert!(s.contains("'@qt-abc' 4;"), "{s}");
    }

    #[test]
    fn scripts_never_contain_their_markers() {
        let s = script("echo hi", "abc").unwrap();
        for marker in ["@qt-abc-start@", "@qt-abc-status-", "@qt-abc-end@"] {
            assert!(!s.contains(marker), "{s}");
        }
        assert!(s.contains("( echo hi\n) </dev/null"), "{s}");
        assert!(!probe("abc", true).contains("@qt-abc-ready@"));
    }

    #[test]
    fn untypeable_commands_are_rejected() {
        assert!(matches!(
            script("echo \x03", "n"),
            Err(ShellError::InvalidCommand { .. })
        ));
        assert!(matches!(
            script("a\rb", "n"),
            Err(ShellError::InvalidCommand { .. })
        ));
        assert!(script("echo a\n\techo b", "n").is_ok());
        let long = format!("echo {}", "x".repeat(5000));
        let err = script(&long, "n").unwrap_err();
        assert!(err.to_string().contains("4095"), "{err}");
        assert!(script(
            &format!("echo {}\necho {}", "x".repeat(3000), "y".repeat(3000)),
            "n"
        )
        .is_ok());
    }

    #[test]
    fn nonces_differ() {
        let a: std::collections::HashSet<String> = (0..1000).map(|_| nonce()).collect();
        assert_eq!(a.len(), 1000);
    }
}
