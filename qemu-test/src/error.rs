//! The error types, one enum per failure domain.
//!
//! [`Error`] is what [`Machine`](crate::machine::Machine) methods return. It
//! wraps the domain errors ([`QmpError`], [`ConsoleError`], [`EventError`])
//! and adds the process-lifetime failures (`Launch`, `AbnormalShutdown`).
//! Messages are lowercase, say what was attempted, and leave the cause to
//! `source()`. `Debug` prints the message and its chain of causes, so a test
//! body returning `Err` reads well in libtest's output.
//!
//! ```
//! use qemu_test::Error;
//!
//! fn describe(err: &Error) -> String {
//!     match err {
//!         Error::Qmp { class, desc, .. } => format!("QEMU said {class}: {desc}"),
//!         other => other.to_string(),
//!     }
//! }
//! ```

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error a test body may return with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a `#[qemu_test]` body returns: `Ok(())` or any error.
pub type TestResult<T = ()> = std::result::Result<T, BoxError>;

/// Formats an error and its chain of causes, one per line.
pub(crate) fn fmt_chain(err: &dyn std::error::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{err}")?;
    let mut source = err.source();
    while let Some(cause) = source {
        write!(f, "\n  caused by: {cause}")?;
        source = cause.source();
    }
    Ok(())
}

macro_rules! debug_as_chain {
    ($($ty:ty),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_chain(self, f)
            }
        }
    )*};
}
debug_as_chain!(Error, QmpError, ConsoleError, EventError);

/// A failure of a [`Machine`](crate::machine::Machine) operation.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// QEMU could not be started, or exited, or its QMP handshake failed
    /// during `launch()`. Carries QEMU's own output (like upstream's
    /// `VMLaunchFailure`).
    #[error("failed to launch QEMU (exit code: {}): {command_line}\n--- QEMU output ---\n{output}", fmt_code(*.exit_code))]
    Launch {
        /// QEMU's exit code, if it exited (negative: killed by that signal).
        exit_code: Option<i32>,
        /// The full command line.
        command: Vec<String>,
        /// The command line, shell-quoted, for display.
        command_line: String,
        /// What QEMU printed on stdout and stderr.
        output: String,
        /// What went wrong on our side.
        #[source]
        cause: Box<Error>,
    },

    /// A graceful shutdown failed and QEMU was killed.
    #[error("could not shut QEMU down gracefully; it was killed\n--- QEMU output ---\n{log}")]
    AbnormalShutdown {
        /// What QEMU printed.
        log: String,
        /// Why the graceful shutdown failed.
        #[source]
        cause: Box<Error>,
    },

    /// QEMU answered a command with an error.
    #[error("QMP command `{command}` failed: {class}: {desc}")]
    Qmp {
        /// The command that failed.
        command: String,
        /// QEMU's error class, e.g. `GenericError`, `CommandNotFound`.
        class: String,
        /// QEMU's human-readable description.
        desc: String,
    },

    /// The QMP connection failed.
    #[error(transparent)]
    Protocol(#[from] QmpError),

    /// A console operation failed.
    #[error(transparent)]
    Console(#[from] ConsoleError),

    /// Waiting for an event failed.
    #[error(transparent)]
    Event(#[from] EventError),

    /// The operation needs a machine in another state.
    #[error("{0}")]
    State(&'static str),

    /// Saving or restoring the VM state (a migration) failed.
    #[error("saving or restoring the VM state failed: {0}")]
    Migration(String),

    /// Finding or making a booted snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),

    /// A sibling machine could not be started.
    #[error(transparent)]
    Sibling(#[from] SiblingError),

    /// A test network, a port forward or a share could not be set up or
    /// used.
    #[error(transparent)]
    Net(#[from] NetError),

    /// The guest did not crash within the time given to
    /// [`wait_for_guest_crash`](crate::Machine::wait_for_guest_crash).
    #[error("the guest did not crash within {timeout:?}")]
    NoCrash {
        /// The time waited.
        timeout: Duration,
    },

    /// A screenshot was asked of a machine without a display.
    #[error("the machine has no display to take a screenshot of: add one to its arguments (e.g. `-vga std` or `-device VGA`; the runner's VMs start with `-display none -vga none`)")]
    NoDisplay,

    /// QEMU did not exit within the time given to `wait()`.
    #[error("QEMU (pid {pid}) did not exit within {timeout:?}")]
    WaitTimeout {
        /// QEMU's process id.
        pid: u32,
        /// The time waited.
        timeout: Duration,
    },

    /// A system call or file operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// `: did you mean `virt`? (`qemu-system-aarch64 -machine help` lists
/// them all)`.
fn did_you_mean(near: &[String], binary: &str, option: &str) -> String {
    let list = format!("`{binary} {option} help` lists them all");
    match near {
        [] => format!(" ({list})"),
        [one] => format!(": did you mean `{one}`? ({list})"),
        many => {
            let quoted: Vec<String> = many.iter().map(|n| format!("`{n}`")).collect();
            format!(": did you mean one of {}? ({list})", quoted.join(", "))
        }
    }
}

fn fmt_code(code: Option<i32>) -> String {
    code.map_or_else(
        || "none, still running or not started".to_string(),
        |c| c.to_string(),
    )
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// A failure of the QMP connection or protocol.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum QmpError {
    /// Connecting to (or accepting from) QEMU's monitor failed.
    #[error("error connecting to the QMP monitor at {address}")]
    Connect {
        /// The address.
        address: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The greeting was missing or malformed.
    #[error("bad QMP greeting: {0}")]
    Greeting(String),
    /// `qmp_capabilities` failed.
    #[error("QMP capabilities negotiation failed: {0}")]
    Negotiate(String),
    /// No reply (or greeting) arrived before the deadline.
    #[error("no reply to QMP `{command}` within {timeout:?}")]
    Timeout {
        /// The command (or `greeting`).
        command: String,
        /// The time waited.
        timeout: Duration,
    },
    /// QEMU sent something that is not a QMP message.
    #[error("malformed QMP message: {reason}: {excerpt}")]
    Malformed {
        /// What was wrong.
        reason: String,
        /// The start of the offending bytes.
        excerpt: String,
    },
    /// A message was longer than the maximum.
    #[error("QMP message longer than the maximum of {max} bytes")]
    TooLong {
        /// The maximum message size.
        max: usize,
    },
    /// The connection is closed (QEMU exited or closed the socket).
    #[error("QMP connection closed{}", .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed {
        /// Why, if known.
        reason: Option<String>,
    },
    /// Reading or writing the socket failed.
    #[error("QMP I/O error while {context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A failure of a console operation.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The machine has no console.
    #[error("this machine has no console: add `console` to #[qemu_test] or call `set_console()` before launch")]
    NotConfigured,
    /// The pattern did not appear before the deadline.
    #[error("timed out after {timeout:?} waiting for {pattern} on the console\n--- last console lines ---\n{tail}")]
    Timeout {
        /// What was awaited.
        pattern: String,
        /// The time waited.
        timeout: Duration,
        /// The last lines the guest printed.
        tail: String,
    },
    /// A failure pattern appeared.
    #[error("console printed failure pattern {pattern} while waiting for {expected}\n--- last console lines ---\n{tail}")]
    Failure {
        /// The failure pattern that matched.
        pattern: String,
        /// What was awaited.
        expected: String,
        /// The last lines the guest printed.
        tail: String,
    },
    /// The console closed (QEMU exited) before the pattern appeared.
    #[error("console closed (QEMU exited?) while waiting for {pattern}\n--- last console lines ---\n{tail}")]
    Closed {
        /// What was awaited.
        pattern: String,
        /// The last lines the guest printed.
        tail: String,
    },
    /// A regular expression did not compile.
    #[cfg(feature = "regex")]
    #[cfg_attr(docsrs, doc(cfg(feature = "regex")))]
    #[error("invalid console regex")]
    Regex(#[from] regex::Error),
    /// Writing to the console failed.
    #[error("error writing to the console")]
    Write(#[source] io::Error),
}

/// A failure while waiting for QMP events.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// None of the awaited events arrived in time.
    #[error("timed out after {timeout:?} waiting for QMP event {wanted}")]
    Timeout {
        /// The awaited event names (and patterns).
        wanted: String,
        /// The time waited.
        timeout: Duration,
    },
    /// The connection failed while waiting.
    #[error("QMP connection failed while waiting for event {wanted}")]
    Connection {
        /// The awaited event names.
        wanted: String,
        /// The cause.
        #[source]
        source: QmpError,
    },
}

/// A failure to find or prepare what a test needs: what the host lacks
/// (no binary, no accelerator, no guest image) is reported as a skip, or as
/// a failure under `QEMU_TEST_REQUIRE=1`; a name the test got wrong
/// ([`UnknownName`](SetupError::UnknownName)) always fails it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The QEMU binary was not found.
    #[error("{binary} not found in QEMU_TEST_QEMU_DIR or PATH")]
    BinaryNotFound {
        /// The binary's name.
        binary: String,
    },
    /// The requested accelerator is not usable.
    #[error("accelerator {accel} is not usable here: {reason}")]
    Accel {
        /// The accelerator.
        accel: String,
        /// Why.
        reason: String,
    },
    /// The test names a machine type, CPU model or device type that its
    /// QEMU binary does not have: a typo, or the test needs another QEMU.
    #[error("{what} `{name}` is not one {binary} has{}", did_you_mean(.near, .binary, .option))]
    UnknownName {
        /// What kind of name: `machine type`, `CPU model`, `device type`.
        what: &'static str,
        /// The name as the test gives it.
        name: String,
        /// The QEMU binary.
        binary: String,
        /// The option that lists what it has: `-machine`, `-cpu`, `-device`.
        option: &'static str,
        /// The names it has that are nearest, nearest first.
        near: Vec<String>,
    },
    /// The test uses a feature of qemu-test that needs a part of QEMU its
    /// binary lacks (an older or a reduced build).
    #[error(
        "{feature} need{} QEMU's {what} `{name}`, which {binary} does not have \
         (`{binary} {option} help` lists what it has): use QEMU 7.2 or later, \
         built with it (CI tests Debian bookworm's 7.2)",
        if .feature.ends_with('s') { "" } else { "s" }
    )]
    QemuLacks {
        /// The attribute key or feature that needs it: `networks`, `forward`.
        feature: &'static str,
        /// What kind of name: `netdev backend`, `device type`.
        what: &'static str,
        /// The name QEMU lacks: `dgram`, `virtio-9p-pci`.
        name: &'static str,
        /// The QEMU binary.
        binary: String,
        /// The option that lists what it has: `-netdev`, `-device`.
        option: &'static str,
    },
}

/// Why a Linux guest ([`LINUX_X86_64`](crate::guest::LINUX_X86_64),
/// [`LINUX_AARCH64`](crate::guest::LINUX_AARCH64)) could not be found or
/// built. The runner skips a test whose guest is `Unavailable` (a failure
/// under `QEMU_TEST_REQUIRE=1`) and fails one on the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// This host cannot build the guest (no apt, or its package archive
    /// lacks the packages) and no build of it will do; the reason says what
    /// to install or set.
    #[error("the Linux guest {guest} cannot be had on this host: {reason}")]
    Unavailable {
        /// The guest, e.g. `linux-x86_64`.
        guest: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The files the builder was pointed at (environment or
    /// [`LinuxSource`](crate::guest::LinuxSource)) are wrong.
    #[error("the Linux guest {guest}: {reason}")]
    Config {
        /// The guest.
        guest: String,
        /// What is wrong.
        reason: String,
    },
    /// The build ran and failed: a download, a damaged package, a full
    /// disk.
    #[error("building the Linux guest {guest} failed: {cause}")]
    Build {
        /// The guest.
        guest: String,
        /// What failed.
        cause: String,
    },
    /// A declared asset, a disk image's overlay or the UEFI firmware a
    /// test needs could not be had.
    #[error(transparent)]
    Asset(#[from] AssetError),
}

impl GuestError {
    /// Whether this host lacks what is needed (a skip, a failure under
    /// `QEMU_TEST_REQUIRE=1`), rather than something being wrong.
    pub fn is_unavailable(&self) -> bool {
        match self {
            GuestError::Unavailable { .. } => true,
            GuestError::Asset(e) => e.is_unavailable(),
            _ => false,
        }
    }

    /// Whether the test's declaration or the user's settings are wrong
    /// (always a failure, never a skip).
    pub fn is_config(&self) -> bool {
        match self {
            GuestError::Config { .. } => true,
            GuestError::Asset(e) => e.is_config(),
            _ => false,
        }
    }
}

/// Why a guest asset could not be had: a file declared by URL and SHA-256
/// ([`Asset`](crate::guest::Asset)), a disk image's per-test overlay, or the
/// UEFI firmware a test asks for. `Offline` and `Unavailable` mean this host
/// cannot have it (the test is skipped; a failure under
/// `QEMU_TEST_REQUIRE=1`); the others are failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// The declaration is wrong: a SHA-256 that is not 64 hex digits, a URL
    /// that is not `http://` or `https://`.
    #[error("the asset {url}: {reason}")]
    Invalid {
        /// The asset's URL.
        url: String,
        /// What is wrong, and how to write it.
        reason: String,
    },
    /// The asset is not in the cache and this build of qemu-test cannot
    /// download it.
    #[error(
        "the asset {url} is not in the cache ({}), and downloading it needs qemu-test's `assets` \
         cargo feature: add `features = [\"assets\"]` to the qemu-test dependency in Cargo.toml",
        cache.display()
    )]
    FeatureOff {
        /// The asset's URL.
        url: String,
        /// Where it would be.
        cache: PathBuf,
    },
    /// The asset is not in the cache and cannot be downloaded now: offline
    /// mode (`QEMU_TEST_OFFLINE=1`), or the download failed for a reason of
    /// the network (which turns offline mode on for the rest of the
    /// process).
    #[error("the asset {url} is not in the cache and cannot be downloaded: {reason}")]
    Offline {
        /// The asset's URL.
        url: String,
        /// Why, and what to do.
        reason: String,
    },
    /// What was downloaded does not have the declared SHA-256. Nothing was
    /// cached.
    #[error(
        "the asset {url} does not have the declared SHA-256 (nothing was cached):\n  \
         expected {expected}\n       got {got} ({bytes} bytes downloaded)"
    )]
    Mismatch {
        /// The asset's URL.
        url: String,
        /// The declared SHA-256.
        expected: String,
        /// The SHA-256 of what the server sent.
        got: String,
        /// How many bytes it sent.
        bytes: u64,
    },
    /// The server refused the asset (an HTTP status other than 2xx, 5xx or
    /// 429, which are the network's and make it `Offline`).
    #[error("downloading the asset {url} failed: the server answered HTTP {status}")]
    Http {
        /// The asset's URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The download is not what its name says (`.xz`, `.gz`, `.zst`), or is
    /// damaged. Nothing was cached.
    #[error("the asset {url}: decompressing it ({format}) failed: {cause}")]
    Decompress {
        /// The asset's URL.
        url: String,
        /// `xz`, `gz` or `zst`.
        format: &'static str,
        /// What went wrong.
        cause: String,
    },
    /// The cache could not be read or written.
    #[error("the asset {url}: {cause}")]
    Cache {
        /// The asset's URL.
        url: String,
        /// What failed, with the paths.
        cause: String,
    },
    /// A disk image's per-test overlay could not be made (`qemu-img`).
    #[error("cannot make the overlay {} of the disk image {}: {cause}", overlay.display(), image.display())]
    Overlay {
        /// The disk image.
        image: PathBuf,
        /// The overlay.
        overlay: PathBuf,
        /// What failed.
        cause: String,
    },
    /// This host lacks what the test needs besides the asset itself: UEFI
    /// firmware for its architecture and machine type, `qemu-img` for a
    /// disk image's overlay.
    #[error("{what} is not available on this host: {reason}")]
    Unavailable {
        /// What is missing (`UEFI firmware for x86_64 (machine q35)`,
        /// `qemu-img`).
        what: String,
        /// What was looked for, and what to install.
        reason: String,
    },
}

impl AssetError {
    /// Whether this host cannot have the asset now (offline, no firmware,
    /// no `qemu-img`):
    /// a skip, unless `QEMU_TEST_REQUIRE=1`.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            AssetError::Offline { .. } | AssetError::Unavailable { .. }
        )
    }

    /// Whether the declaration or the build is wrong (a bad hash or URL,
    /// the `assets` feature missing).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            AssetError::Invalid { .. } | AssetError::FeatureOff { .. }
        )
    }
}

debug_as_chain!(ShellError);

/// A failure of a [`Shell`](crate::shell::Shell) operation: running a
/// command in the guest over the console, or copying a file.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ShellError {
    /// No shell answered on the console (the guest did not boot, or has no
    /// POSIX shell reading this console).
    #[error(
        "no shell answered on the console within {timeout:?}\n--- last console lines ---\n{tail}"
    )]
    NotReady {
        /// The time waited.
        timeout: Duration,
        /// The last lines the guest printed.
        tail: String,
    },
    /// The command (or copy) did not finish before its deadline. It was
    /// interrupted (over the console with Ctrl-C, over the agent with
    /// SIGKILL to its process group); `recovered` says whether the shell
    /// answers again.
    #[error(
        "command {command:?} did not finish within {timeout:?}; {}\n--- last console lines ---\n{tail}",
        if *.recovered { "it was interrupted and the shell answers again" } else { "the interrupt did not bring the shell back" }
    )]
    Timeout {
        /// The command.
        command: String,
        /// The time it was given.
        timeout: Duration,
        /// Whether the shell is usable again.
        recovered: bool,
        /// The last lines the guest printed.
        tail: String,
    },
    /// `succeed` ran a command that exited non-zero.
    #[error("command {command:?} failed with exit status {status}\n--- stdout ---\n{}\n--- stderr ---\n{}", excerpt(.stdout), excerpt(.stderr))]
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: i32,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr (and anything else the console showed
        /// meanwhile, such as kernel messages).
        stderr: String,
    },
    /// `fail` ran a command that exited with status 0.
    #[error("command {command:?} succeeded but was expected to fail\n--- stdout ---\n{}", excerpt(.stdout))]
    Succeeded {
        /// The command.
        command: String,
        /// What it printed on stdout.
        stdout: String,
    },
    /// `wait_until_succeeds` / `wait_until_fails` ran out of time.
    #[error(
        "command {command:?} did not {} within {timeout:?} ({attempts} attempts; last finished: {})\n--- last stdout ---\n{}",
        if *.wanted_success { "succeed" } else { "fail" },
        .last_status.map_or_else(|| "none, every attempt timed out".to_string(), |s| format!("exit status {s}")),
        excerpt(.last_stdout)
    )]
    WaitUntil {
        /// The command.
        command: String,
        /// Whether success (or failure) was awaited.
        wanted_success: bool,
        /// The time waited.
        timeout: Duration,
        /// How many times it ran.
        attempts: u32,
        /// The exit status of the last attempt that finished (`None`: every
        /// attempt timed out).
        last_status: Option<i32>,
        /// What that attempt printed on stdout.
        last_stdout: String,
    },
    /// The command cannot be typed into a terminal (control characters, or
    /// a line longer than the terminal's 4095-byte line buffer).
    #[error("cannot send command {command:?}: {reason}")]
    InvalidCommand {
        /// The command (possibly shortened).
        command: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The framed output of a command could not be decoded.
    #[error("garbled output from command {command:?}: {reason}\n--- raw output ---\n{}", excerpt(.raw))]
    Garbled {
        /// The command.
        command: String,
        /// What was wrong.
        reason: String,
        /// The raw console text between the command's markers.
        raw: String,
    },
    /// The guest refused the login ([`Shell::login`](crate::Shell::login)).
    #[error("the guest refused the login as {user:?} (wrong user or password)\n--- last console lines ---\n{tail}")]
    Login {
        /// The user.
        user: String,
        /// The last lines the guest printed.
        tail: String,
    },
    /// A file copy failed in the guest.
    #[error("copying {what} failed: {reason}")]
    Copy {
        /// What was copied (`host -> guest`).
        what: String,
        /// Why it failed (the guest's error output or a size mismatch).
        reason: String,
    },
    /// Reading or writing a host file failed.
    #[error("cannot {action} host file {path}")]
    HostIo {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The console failed (QEMU exited, the guest panicked, ...).
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// The guest agent, or the data channel to it, failed: QEMU exited,
    /// the agent stopped answering or broke its protocol. The channel's
    /// log (`agent.log` in a test's artifacts) lists each request.
    #[error("{what} over the guest agent failed: {reason}\n--- last console lines ---\n{tail}")]
    Agent {
        /// What was attempted.
        what: String,
        /// What went wrong.
        reason: String,
        /// The last lines the guest printed on the console.
        tail: String,
    },
    /// A command printed more than the shell's output limit (stdout and
    /// stderr together, over the agent); it was killed.
    #[error(
        "command {command:?} printed more than {limit} bytes, so it was killed; raise the limit \
         with Shell::with_output_limit, or write the output to a guest file and copy_from_guest it"
    )]
    OutputLimit {
        /// The command.
        command: String,
        /// The limit in bytes.
        limit: usize,
    },
}

/// The last 2 KiB of a (possibly huge) text, for error messages.
fn excerpt(text: &str) -> String {
    const MAX: usize = 2048;
    if text.len() <= MAX {
        return text.to_string();
    }
    let cut = (text.len() - MAX..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    format!("[… {} bytes before]{}", cut, &text[cut..])
}

/// Why [`Vm::sibling`](crate::Vm::sibling) could not start a sibling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiblingError {
    /// More siblings than the attribute declares.
    #[error(
        "cannot start sibling {name:?}: the test declares {declared} sibling(s) and started them all; \
         declare more with `siblings = N` in #[qemu_test] (their host budget is reserved with the \
         test's own, so a body never waits for room)"
    )]
    Undeclared {
        /// The name asked for.
        name: String,
        /// How many the test declares.
        declared: u32,
    },
    /// The name cannot be a directory name.
    #[error(
        "invalid sibling name {name:?}: use 1 to 64 ASCII letters, digits, `-` or `_` (it names \
         the sibling's artifact directory)"
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The test names its siblings, and not this one.
    #[error(
        "cannot start sibling {name:?}: the test names its siblings ({}) and not this one; add it \
         to `siblings = [...]` in #[qemu_test]",
        names.join(", ")
    )]
    NotNamed {
        /// The name asked for.
        name: String,
        /// The names the test declares.
        names: Vec<String>,
    },
    /// Its NICs could not be set up.
    #[error("cannot put sibling {name:?} on the test's networks")]
    Net {
        /// The sibling's name.
        name: String,
        /// The cause.
        #[source]
        source: NetError,
    },
    /// The name is taken.
    #[error("a sibling named {name:?} was already started in this test")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// Its own disk overlays or UEFI variable store could not be made.
    #[error("cannot make sibling {name:?}'s own disk overlays or UEFI variable store")]
    Files {
        /// The sibling's name.
        name: String,
        /// The cause.
        #[source]
        source: GuestError,
    },
    /// Its artifact directory could not be made.
    #[error("cannot create sibling {name:?}'s artifact directory {}", dir.display())]
    Io {
        /// The sibling's name.
        name: String,
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Why a test's network, port forward or share could not be set up or
/// used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A network's name cannot be used.
    #[error(
        "invalid network name {name:?}: use 1 to 15 ASCII lowercase letters, digits, `-` or `_`, \
         starting with a letter (it names the guest's interface)"
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// A name that is not one of the network's members.
    #[error("{member:?} is not on network {network:?} (its members: {})", members.join(", "))]
    UnknownMember {
        /// The network.
        network: String,
        /// The name asked for.
        member: String,
        /// Who is on it.
        members: Vec<String>,
    },
    /// A network the test does not declare.
    #[error(
        "the test has no network {name:?} (it declares: {}); declare it with \
         `networks = [\"{name}\"]` in #[qemu_test]",
        if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
    )]
    Undeclared {
        /// The name asked for.
        name: String,
        /// The networks the test declares.
        declared: Vec<String>,
    },
    /// More networks or members than the addressing has room for.
    #[error("{what}")]
    TooMany {
        /// What there is too much of.
        what: String,
    },
    /// The machine has no port-forward NIC.
    #[error(
        "the machine has no port-forward NIC: declare the guest ports with `forward = [8080]` in \
         #[qemu_test] (or add one with `Machine::add_forward_nic` before the launch)"
    )]
    NoForwardNic,
    /// QEMU's answer about the port forwards could not be read.
    #[error("cannot read the port forward to guest port {guest_port} from QEMU's `info usernet`:\n{usernet}")]
    Forward {
        /// The guest port.
        guest_port: u16,
        /// What QEMU printed.
        usernet: String,
    },
    /// A restored machine has fewer spare root ports than devices to
    /// hot-plug.
    #[error(
        "a restored machine hot-plugs its {needed} NICs and shares on spare PCIe root ports, and it \
         has {have}: call set_hotplug_ports({needed}) before the snapshot is made (they are part \
         of its key)"
    )]
    HotplugPorts {
        /// The devices to plug.
        needed: usize,
        /// The spare ports.
        have: usize,
    },
    /// A shared host directory is unusable.
    #[error("cannot share {}: {why}", path.display())]
    Share {
        /// The host directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A file or socket operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

debug_as_chain!(SnapshotError);

/// A failure to find, make or use a booted snapshot
/// ([`SnapshotStore`](crate::snapshot::SnapshotStore)).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The name cannot be used as part of a file name.
    #[error(
        "invalid snapshot name {name:?}: use 1 to 64 ASCII letters, digits, `-`, `_` or `.` \
         (not starting with `.`), e.g. \"booted\""
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// A file operation in the snapshot store failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Booting the VM, running the setup or saving the state failed.
    #[error("could not create snapshot {name:?} (its logs: {})", logs.display())]
    Create {
        /// The snapshot's name.
        name: String,
        /// Where the logs of the boot that was to be saved are.
        logs: PathBuf,
        /// What failed.
        #[source]
        cause: BoxError,
    },
}
