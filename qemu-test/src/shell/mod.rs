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
//! first synchronizes: it types a probe (a `printf` of a marker) until the
//! shell answers, so the first command may be issued while the guest still
//! boots, and turns the terminal's echo off. Every command is then typed as
//! one script that:
//!
//! - prints a start and an end marker around everything, each joined from
//!   two halves by `printf` and carrying a fresh random nonce: the echo of
//!   the typed text, prompts and earlier output never match, and a command
//!   that prints marker-like text cannot forge the nonce;
//! - runs the command in a subshell with stdin from `/dev/null` and stdout
//!   in a capture file in `/tmp`: `exit 3` returns status 3 without killing
//!   the shell, a command that reads stdin sees EOF instead of eating the
//!   next command, and `cd`, `export` and variables do not carry over to the
//!   next command (chain them in one: `cd /tmp && ls`);
//! - prints the exit status, then stdout with its size: short text (up to
//!   1 KiB of printable ASCII and whitespace) as it is, read by the shell's
//!   `read` builtin so that no extra process runs; anything else
//!   base64-encoded. The host checks the size, so stdout is byte-exact
//!   whatever it contains; short text that arrives changed (a kernel
//!   message printed in the middle, a terminal that expands tabs) is sent
//!   again as base64. Kernel messages that interleave with base64 are
//!   dropped.
//!
//! stderr is not captured: it goes to the console between the markers and
//! is returned as [`Output::stderr`], together with anything else printed
//! meanwhile (kernel messages). If the capture file cannot be written (a
//! read-only or full `/tmp`) the command is not run and the error says so.
//! The guest needs a writable `/tmp` and `base64`, `wc`, `printf` and
//! `stty` (busybox has them all). Each shell process keeps one empty
//! capture file in `/tmp` and the variables `__qt_f`, `__qt_s`, `__qt_o`.
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
//! respawns it). After a guest reboot, call [`Shell::sync`] (or make a new
//! `Shell`) so the first command is not typed while the guest boots. If the
//! console shows `Kernel panic - not syncing` while waiting, the operation
//! fails at once ([`ConsoleError::Failure`]).
//!
//! # Limits
//!
//! - Each line of the typed script must fit the terminal's 4095-byte line
//!   buffer (keep a command line under about 3900 bytes), and a command
//!   cannot contain control characters other than newline and tab
//!   ([`ShellError::InvalidCommand`]).
//! - Everything goes through the serial port: think megabytes, not
//!   gigabytes. stdout is held in the guest's `/tmp` until the command
//!   ends. [`copy_to_guest`](Shell::copy_to_guest) compresses on the host,
//!   types the result as base64 and needs `gunzip` in the guest; for disk
//!   images, give QEMU a drive instead.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::console::{Console, Pattern};
use crate::error::{ConsoleError, ShellError};
use crate::timeline::{self, Timeline};

mod copy;
mod parse;
mod script;

use parse::{parse, Parsed};
use script::{nonce, probe, quick_probe, resend_script, script};

/// What the console shows when the guest kernel panics.
const PANIC: &str = "Kernel panic - not syncing";

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
    /// Where each command is recorded (the console's timeline; the waits
    /// inside a command are not).
    timeline: Timeline,
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
            timeline: console.timeline().clone(),
            console: console.untimed(),
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

    /// Runs `command` until `deadline`, recorded in the timeline.
    fn run_until(&self, command: &str, deadline: Instant) -> Result<Output, ShellError> {
        let started = Instant::now();
        let result = self.run_untimed(command, deadline);
        self.timeline.step("shell", started, || {
            let outcome = match &result {
                Ok(out) => ("status", out.status.into()),
                Err(e) => {
                    let text = e.to_string();
                    let first = text.lines().next().unwrap_or_default();
                    ("error", timeline::excerpt(first, 200).into())
                }
            };
            timeline::detail([("command", timeline::excerpt(command, 200).into()), outcome])
        });
        result
    }

    fn run_untimed(&self, command: &str, deadline: Instant) -> Result<Output, ShellError> {
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
        let synced = self.sync_untimed(state, deadline);
        if synced.is_ok() {
            self.console.mark_shell_answered();
        }
        self.timeline
            .step("shell.ready", started, || match &synced {
                Ok(()) => serde_json::Map::new(),
                Err(e) => {
                    timeline::detail([("error", timeline::excerpt(&e.to_string(), 200).into())])
                }
            });
        synced
    }

    /// Waits for the shell to answer a probe (see [`sync`](Self::sync)).
    fn sync_untimed(&self, state: &mut State, deadline: Instant) -> Result<(), ShellError> {
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
