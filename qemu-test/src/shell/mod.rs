//! Commands in a Linux guest, with exit status and output, and file
//! copies: what the NixOS test driver's `succeed` does. A `Shell` has two
//! transports:
//!
//! - the guest agent over the machine's [data channel](crate::channel),
//!   when the guest runs one (the built-in Linux guests do, and the
//!   runner gives their machines the channel): bytes travel as they are,
//!   at the speed of a virtio device (hundreds of MB/s);
//! - the serial console, for every guest with a POSIX shell on it (typed
//!   scripts, base64; tens to hundreds of KB/s).
//!
//! The first operation of each launch (and after a restore) finds out
//! which one to use: it pings the agent; if none answers while the
//! console's shell does, it uses the console for the rest of the launch.
//! [`Shell::transport`] tells which one it is;
//! [`Shell::console_only`] (or [`Shell::new`] on a console alone) forces
//! the console.
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
//! # Over the agent
//!
//! The agent (`qemu-test-agent`, a small static C program in the guest's
//! initramfs) runs each command as `/bin/sh -c COMMAND` in its own session
//! and process group, with stdin from `/dev/null`, in `/root`, with the
//! login shell's `PATH`, `HOME` and `TERM`: like the console's subshell,
//! `cd` and variables do not carry over to the next command. stdout and
//! stderr are captured separately and byte-exact ([`Output::stderr`] is
//! the command's stderr only; kernel messages stay on the console). A
//! background process that keeps stdout open does not hold the command:
//! what it writes after the command exited is dropped. Copies are written
//! and read by the agent itself, streamed in 256 KiB frames, with the
//! size checked; the host file is never held in memory.
//!
//! A command that overruns its deadline gets SIGKILL on its whole process
//! group (processes that started a session of their own escape it); the
//! result is [`ShellError::Timeout`], and the next command works at once.
//! A command that prints more than the output limit (256 MiB by default,
//! [`Shell::with_output_limit`]) is killed the same way
//! ([`ShellError::OutputLimit`]). A command is at most 128 KiB (Linux's
//! limit for one argument) and cannot contain a NUL byte; it is otherwise
//! free of the console's limits. Each request is logged with its status
//! and sizes in the channel's log (`agent.log` in a test's artifacts).
//!
//! # Over the console
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
//! meanwhile (kernel messages), with `\r\n` turned into `\n`. If the capture file cannot be written (a
//! read-only or full `/tmp`) the command is not run and the error says so.
//! The guest needs a writable `/tmp` and `base64`, `wc`, `printf` and
//! `stty` (busybox has them all). Each shell process keeps one empty
//! capture file in `/tmp` and the variables `__qt_f`, `__qt_s`, `__qt_o`.
//!
//! # Deadlines
//!
//! (Over the console; over the agent, see above.) Each operation has a
//! deadline: the shell's timeout (by default the
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
//! fails at once ([`ConsoleError::Failure`](crate::error::ConsoleError::Failure)).
//!
//! # Limits (of the console)
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

use crate::channel::DataChannel;
use crate::console::Console;
use crate::error::ShellError;
use crate::timeline::{self, Timeline};

mod agent;
mod console;
mod copy;
mod frame;
mod login;
mod over_agent;
mod parse;
mod script;

/// The most output (stdout and stderr together) a command may print over
/// the agent unless [`Shell::with_output_limit`] says otherwise.
pub const DEFAULT_OUTPUT_LIMIT: usize = 256 << 20;

/// A command's result.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Output {
    /// The exit status (0-255; 128+N when killed by signal N).
    pub status: i32,
    /// What the command wrote on stdout, lossily decoded as UTF-8 (see
    /// [`stdout_bytes`](Output::stdout_bytes) for the exact bytes).
    pub stdout: String,
    /// Over the agent: what the command wrote on stderr, lossily decoded
    /// ([`stderr_bytes`](Output::stderr_bytes) has the exact bytes). Over
    /// the console: what the console showed while the command ran,
    /// besides stdout: its stderr, and any kernel messages printed
    /// meanwhile; line ends are `\n`.
    pub stderr: String,
    raw: Vec<u8>,
    raw_stderr: Vec<u8>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `raw` and `raw_stderr` are `stdout`'s and `stderr`'s bytes: shown once.
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish_non_exhaustive()
    }
}

impl Output {
    fn new(status: i32, stdout: Vec<u8>, stderr: Vec<u8>) -> Output {
        Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            raw: stdout,
            raw_stderr: stderr,
        }
    }

    fn with_stderr(self, stderr: Vec<u8>) -> Output {
        Output::new(self.status, self.raw, stderr)
    }

    /// Whether the status is 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// stdout, byte-exact.
    pub fn stdout_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// stderr as [`Output::stderr`] describes it, byte for byte (over the
    /// agent, exactly what the command wrote).
    pub fn stderr_bytes(&self) -> &[u8] {
        &self.raw_stderr
    }
}

/// How a [`Shell`]'s operations reach the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// The guest agent, over the machine's data channel.
    Agent,
    /// The guest's shell on the serial console.
    Console,
}

/// Runs commands in the guest; see the [module docs](self). Get one with
/// `vm.shell()`, [`Shell::with_data_channel`] or [`Shell::new`].
///
/// Clones (and [`with_timeout`](Shell::with_timeout) handles) share the
/// console and the synchronization state, and their operations take
/// turns.
#[derive(Debug, Clone)]
pub struct Shell {
    console: Console,
    channel: DataChannel,
    console_only: bool,
    timeout: Duration,
    output_limit: usize,
    state: Arc<Mutex<State>>,
    /// Where each command is recorded (the console's timeline; the waits
    /// inside a command are not).
    timeline: Timeline,
}

#[derive(Debug, Default)]
struct State {
    /// Echo is off and the console's shell answered a probe.
    synced: bool,
}

impl Shell {
    /// A shell on `console` alone (the console transport). Nothing is sent
    /// until the first operation. The timeout of each operation is the
    /// console's (30 s unless the console handle says otherwise).
    pub fn new(console: Console) -> Shell {
        Shell::with_data_channel(console, DataChannel::detached())
    }

    /// A shell that uses the guest agent on `channel` when one answers,
    /// and `console` otherwise (what `vm.shell()` is):
    ///
    /// ```no_run
    /// # fn demo(vm: &qemu_test::Machine) -> Result<(), qemu_test::ShellError> {
    /// let shell = qemu_test::Shell::with_data_channel(vm.console(), vm.data_channel());
    /// assert_eq!(shell.succeed("echo hi")?, "hi\n");
    /// # Ok(()) }
    /// ```
    pub fn with_data_channel(console: Console, channel: DataChannel) -> Shell {
        let timeout = console.timeout();
        Shell {
            timeline: console.timeline().clone(),
            console: console.untimed(),
            channel,
            console_only: false,
            timeout,
            output_limit: DEFAULT_OUTPUT_LIMIT,
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

    /// A handle whose commands may print at most `bytes` (stdout and
    /// stderr together) over the agent; the console transport is too slow
    /// to need one.
    pub fn with_output_limit(&self, bytes: usize) -> Shell {
        Shell {
            output_limit: bytes,
            ..self.clone()
        }
    }

    /// A handle that always uses the console, never the agent: for a
    /// test of the console path, or a guest whose agent is not to be
    /// trusted.
    ///
    /// ```no_run
    /// # fn demo(vm: &qemu_test::Vm) -> Result<(), qemu_test::ShellError> {
    /// let shell = vm.shell().console_only();
    /// assert_eq!(shell.transport()?, qemu_test::shell::Transport::Console);
    /// # Ok(()) }
    /// ```
    pub fn console_only(&self) -> Shell {
        Shell {
            console_only: true,
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

    /// The transport this handle's operations use, found out first if
    /// needed (within the timeout), as the first operation would.
    pub fn transport(&self) -> Result<Transport, ShellError> {
        let deadline = Instant::now() + self.timeout;
        match self.route(deadline)? {
            over_agent::Route::Agent(_) => Ok(Transport::Agent),
            over_agent::Route::Console => Ok(Transport::Console),
        }
    }

    /// Waits until the shell answers (at most the timeout): useful to time
    /// the boot, or after the guest rebooted. Other operations do this
    /// themselves the first time. Over the agent, resynchronizes with it;
    /// a launch that found no agent looks for one again.
    pub fn sync(&self) -> Result<(), ShellError> {
        let deadline = Instant::now() + self.timeout;
        if !self.console_only {
            if let Some(mut link) = self.channel.lock() {
                link.forget_agent();
            }
        }
        match self.route(deadline)? {
            over_agent::Route::Agent(mut session) => self.sync_agent(&mut session, deadline),
            over_agent::Route::Console => {
                let mut state = self.lock();
                state.synced = false;
                self.sync_locked(&mut state, deadline)
            }
        }
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

    /// Runs `command` until `deadline` on the transport it takes.
    fn run_untimed(&self, command: &str, deadline: Instant) -> Result<Output, ShellError> {
        match self.route(deadline)? {
            over_agent::Route::Agent(mut session) => {
                self.run_on_agent(&mut session, command, deadline)
            }
            over_agent::Route::Console => self.run_on_console(command, deadline),
        }
    }
}
