//! How a test ended, as typed data that flows from the body to every
//! report: [`Outcome`] (passed, failed, skipped), [`Failure`] (what kind,
//! the reason, the evidence: console tail, QEMU's output, where the
//! artifacts are), [`VmFacts`] (which VM: machine, architecture,
//! accelerator) and the [`Record`] a report reads. Reports format these
//! fields; nothing formats a failure into text and parses it back.
//!
//! A body ends with a [`BodyResult`]: what [`IntoOutcome`] makes of its
//! return value. An error is kept as its message plus what the message
//! already shows (a console error carries the console's last lines, a
//! launch error QEMU's output), found by walking the error's chain of
//! causes through the crate's own error types, not by searching the text.
//! [`Skip`] returned as an error skips the test.
//!
//! [`IntoOutcome`]: super::registry::IntoOutcome

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{BoxError, ConsoleError, Error, ShellError};

/// Returned as a test's error, skips the test at run time: the result is
/// reported as skipped, with the reason, instead of passed or failed.
/// `QEMU_TEST_REQUIRE=1` makes it a failure, as it does every skip.
///
/// ```no_run
/// use qemu_test::prelude::*;
///
/// #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64)]
/// fn needs_vnc(vm: &mut Vm) -> TestResult {
///     let vnc = vm.command("query-vnc", json!({}));
///     if vnc.is_err() {
///         return Err(Skip::new("VNC support not available").into());
///     }
///     Ok(())
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    reason: String,
}

impl Skip {
    /// A skip with a reason saying what is missing.
    pub fn new(reason: impl Into<String>) -> Skip {
        Skip {
            reason: reason.into(),
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped: {}", self.reason)
    }
}

impl std::error::Error for Skip {}

/// What a test body's return value means to the runner (what
/// [`IntoOutcome`](super::registry::IntoOutcome) converts it to).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyResult {
    /// `Ok(())` or `()`.
    Passed,
    /// An error (or a panic).
    Failed(BodyError),
    /// [`Skip`] as the error.
    Skipped(String),
}

/// A body's error: its message and what the message already shows.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// The error and its causes, one per line.
    pub(crate) message: String,
    /// It is a panic's message.
    pub(crate) panicked: bool,
    /// The message ends with the console's last lines (a console or shell
    /// error).
    pub(crate) shows_console: bool,
    /// The message holds QEMU's own output (a launch or shutdown error).
    pub(crate) shows_qemu_output: bool,
}

impl BodyError {
    /// What the test runner shows: the error and its causes.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// An error with a plain message.
    pub(crate) fn new(message: impl Into<String>) -> BodyError {
        BodyError {
            message: message.into(),
            panicked: false,
            shows_console: false,
            shows_qemu_output: false,
        }
    }

    /// A panic, as libtest words it: `test panicked: <message>`.
    pub(crate) fn panic(payload: &(dyn Any + Send)) -> BodyError {
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        let message = match text {
            Some(text) => format!("test panicked: {text}"),
            None => "test panicked".to_string(),
        };
        BodyError {
            panicked: true,
            ..BodyError::new(message)
        }
    }

    /// An error of the crate or any other, with its chain of causes.
    pub(crate) fn from_error(err: &(dyn std::error::Error + 'static)) -> BodyError {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(&format!("\n  caused by: {cause}"));
            source = cause.source();
        }
        let chain = || std::iter::successors(Some(err), |e| e.source());
        BodyError {
            shows_console: chain().any(shows_console),
            shows_qemu_output: chain().any(shows_qemu_output),
            ..BodyError::new(message)
        }
    }

    /// What a failed `Result<(), E>` says: [`Skip`] skips; the crate's
    /// errors, boxed errors and strings are shown with `Display` and their
    /// causes; anything else with `Debug`, as libtest does.
    pub(crate) fn of<E: fmt::Debug + 'static>(err: E) -> BodyResult {
        let any: &dyn Any = &err;
        let error: Option<&(dyn std::error::Error + 'static)> =
            if let Some(boxed) = any.downcast_ref::<BoxError>() {
                Some(boxed.as_ref())
            } else if let Some(boxed) = any.downcast_ref::<Box<dyn std::error::Error>>() {
                Some(boxed.as_ref())
            } else if let Some(e) = any.downcast_ref::<Error>() {
                Some(e)
            } else if let Some(e) = any.downcast_ref::<ShellError>() {
                Some(e)
            } else if let Some(e) = any.downcast_ref::<ConsoleError>() {
                Some(e)
            } else if let Some(e) = any.downcast_ref::<Skip>() {
                Some(e)
            } else if let Some(e) = any.downcast_ref::<std::io::Error>() {
                Some(e)
            } else {
                None
            };
        if let Some(error) = error {
            if let Some(skip) = error.downcast_ref::<Skip>() {
                return BodyResult::Skipped(skip.reason.clone());
            }
            return BodyResult::Failed(BodyError::from_error(error));
        }
        let text = any
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| any.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| format!("{err:?}"));
        BodyResult::Failed(BodyError::new(text))
    }
}

/// Whether `err`'s own message ends with the console's last lines.
fn shows_console(err: &(dyn std::error::Error + 'static)) -> bool {
    let console = |e: &ConsoleError| {
        matches!(
            e,
            ConsoleError::Timeout { .. }
                | ConsoleError::Failure { .. }
                | ConsoleError::Closed { .. }
        )
    };
    if let Some(e) = err.downcast_ref::<ConsoleError>() {
        return console(e);
    }
    if let Some(Error::Console(e)) = err.downcast_ref::<Error>() {
        return console(e);
    }
    if let Some(e) = err.downcast_ref::<ShellError>() {
        return match e {
            ShellError::NotReady { .. } | ShellError::Timeout { .. } => true,
            ShellError::Console(e) => console(e),
            _ => false,
        };
    }
    false
}

/// Whether `err`'s own message holds QEMU's output.
fn shows_qemu_output(err: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        err.downcast_ref::<Error>(),
        Some(Error::Launch { .. } | Error::AbnormalShutdown { .. })
    )
}

/// Why a spec cannot run here.
#[derive(Debug, Clone)]
pub(crate) enum Unrunnable {
    /// Something the host lacks: skipped, or a failure under
    /// `QEMU_TEST_REQUIRE=1`.
    Missing(String),
    /// The test itself is wrong: always a failure.
    Invalid(String),
}

/// How a test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It passed (or failed as `should_fail` expected).
    Passed,
    /// It failed.
    Failed(Box<Failure>),
    /// It did not run, or skipped itself: the reason.
    Skipped(String),
}

impl Outcome {
    /// The failure, if it failed.
    pub(crate) fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Failed(failure) => Some(failure),
            _ => None,
        }
    }

    /// The outcome, its failure (if any) saying which VM it was.
    pub(crate) fn with_vm(self, vm: Option<&VmFacts>) -> Outcome {
        match self {
            Outcome::Failed(mut failure) => {
                failure.vm = vm.cloned();
                Outcome::Failed(failure)
            }
            other => other,
        }
    }
}

/// Which VM a test ran in, or was to run in: what a report says about it
/// besides the test's name (the failure message, JUnit's properties).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VmFacts {
    /// The QEMU binary: the path it was found at, else its name.
    pub(crate) binary: Option<String>,
    /// The target architecture (`aarch64`).
    pub(crate) arch: Option<String>,
    /// The machine type (`virt`).
    pub(crate) machine: Option<String>,
    /// The `-accel` value it ran with (`tcg`), or the one asked for
    /// (`auto`) when it did not run.
    pub(crate) accel: Option<String>,
}

impl VmFacts {
    /// The facts as `(name, value)` pairs, in a fixed order, known ones
    /// only: `machine`, `arch`, `accel`, `qemu`.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("machine", &self.machine),
            ("arch", &self.arch),
            ("accel", &self.accel),
            ("qemu", &self.binary),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
    }
}

/// `machine virt, arch aarch64, accel tcg, qemu /usr/bin/qemu-system-aarch64`.
impl fmt::Display for VmFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.pairs().into_iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} {value}")?;
        }
        Ok(())
    }
}

/// What kind of failure a test had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The body returned an error.
    Error,
    /// The body panicked.
    Panic,
    /// The test's deadline passed.
    Timeout,
    /// The guest crashed (a kernel panic, Oops or BUG) and the test did
    /// not expect it.
    GuestCrash,
    /// QEMU did not start.
    Launch,
    /// The test could not run here (or skipped itself) under
    /// `QEMU_TEST_REQUIRE=1`.
    Required,
    /// The test itself is wrong (it names no QEMU to run, ...).
    Invalid,
    /// It passed, or failed otherwise, though `should_fail` expected a
    /// failure (with a given text).
    Expectation,
    /// Its booted snapshot could not be found or made.
    Snapshot,
    /// The runner could not do its part (an artifact dir, a thread).
    Runner,
}

impl FailureKind {
    /// A short name, for reports (JUnit's failure `type`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Panic => "panic",
            FailureKind::Timeout => "timeout",
            FailureKind::GuestCrash => "guest_crash",
            FailureKind::Launch => "launch",
            FailureKind::Required => "required",
            FailureKind::Invalid => "invalid",
            FailureKind::Expectation => "should_fail",
            FailureKind::Snapshot => "snapshot",
            FailureKind::Runner => "runner",
        }
    }
}

/// What became of a failed test's artifact directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArtifactsFate {
    /// The test failed before it had one.
    NotMade,
    /// Kept here.
    Kept(PathBuf),
    /// Removed (`QEMU_TEST_KEEP=never`).
    Removed,
}

/// What the guest printed, as a failure shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConsoleEvidence {
    /// The test has no console.
    None,
    /// The reason already ends with the console's last lines; they are
    /// here too, for reports that show them apart.
    InReason {
        /// The console's last lines.
        tail: String,
    },
    /// The console's last lines (empty: the guest printed nothing).
    Tail(String),
}

/// A failed test: why, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    /// The reason: the body's error, the timeout, the launch error...
    pub(crate) reason: String,
    pub(crate) console: ConsoleEvidence,
    /// The end of QEMU's own output, unless the reason holds it already.
    pub(crate) qemu_output: Option<String>,
    /// What else went wrong on the way (teardown, writing `repro.sh`).
    pub(crate) notes: Vec<String>,
    /// Which VM (none for a test without one).
    pub(crate) vm: Option<VmFacts>,
    pub(crate) artifacts: ArtifactsFate,
}

impl Failure {
    /// A failure with only a reason, before any VM or artifact dir.
    pub(crate) fn new(kind: FailureKind, reason: impl Into<String>) -> Failure {
        Failure {
            kind,
            reason: reason.into(),
            console: ConsoleEvidence::None,
            qemu_output: None,
            notes: Vec::new(),
            vm: None,
            artifacts: ArtifactsFate::NotMade,
        }
    }

    /// The reason's first line.
    pub(crate) fn headline(&self) -> &str {
        self.reason.lines().next().unwrap_or("failed")
    }

    /// The kept artifact dir, if any.
    pub(crate) fn artifact_dir(&self) -> Option<&PathBuf> {
        match &self.artifacts {
            ArtifactsFate::Kept(dir) => Some(dir),
            _ => None,
        }
    }
}

/// How many console lines a failure message shows.
pub(crate) const CONSOLE_TAIL: usize = 20;
/// How many lines of QEMU's own output a failure message shows.
pub(crate) const QEMU_TAIL: usize = 10;

/// The whole failure message: the reason, the console's last lines, QEMU's
/// last words, notes, which VM, and where the artifacts are.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason.trim_end())?;
        if let ConsoleEvidence::Tail(tail) = &self.console {
            let tail = tail.trim_end();
            if tail.is_empty() {
                write!(f, "\n--- console: the guest printed nothing ---")?;
            } else {
                write!(f, "\n--- last {CONSOLE_TAIL} console lines ---\n{tail}")?;
            }
        }
        if let Some(output) = &self.qemu_output {
            write!(f, "\n--- QEMU output (qemu.log) ---\n{}", output.trim_end())?;
        }
        for note in &self.notes {
            write!(f, "\nnote: {note}")?;
        }
        if let Some(vm) = &self.vm {
            write!(f, "\nvm: {vm}")?;
        }
        match &self.artifacts {
            ArtifactsFate::NotMade => Ok(()),
            ArtifactsFate::Kept(dir) => write!(f, "\nartifacts: {}", dir.display()),
            ArtifactsFate::Removed => write!(f, "\nartifacts: removed (QEMU_TEST_KEEP=never)"),
        }
    }
}

/// A finished (or skipped) test, for reports.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// The test's name.
    pub(crate) name: String,
    pub(crate) outcome: Outcome,
    /// Which VM (none for a test without one).
    pub(crate) vm: Option<VmFacts>,
    /// From admission (after any wait for the host budget) to the end.
    pub(crate) duration: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_errors_read_as_display_with_their_causes() {
        let text = |r: BodyResult| match r {
            BodyResult::Failed(e) => e.message,
            other => panic!("{other:?}"),
        };
        assert_eq!(text(BodyError::of("two\nlines")), "two\nlines");
        assert_eq!(text(BodyError::of(String::from("s"))), "s");
        let boxed: BoxError = "boxed".into();
        assert_eq!(text(BodyError::of(boxed)), "boxed");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(text(BodyError::of(io)), "gone");
        let wrapped = Error::Io {
            context: "reading x".into(),
            source: std::io::Error::other("denied"),
        };
        assert_eq!(
            text(BodyError::of(wrapped)),
            "reading x\n  caused by: denied"
        );
        #[derive(Debug)]
        struct Mine(#[allow(dead_code)] u8);
        assert_eq!(text(BodyError::of(Mine(7))), "Mine(7)");
    }

    #[test]
    fn a_skip_skips_however_it_is_returned() {
        let skip = || Skip::new("no VNC");
        assert_eq!(BodyError::of(skip()), BodyResult::Skipped("no VNC".into()));
        let boxed: BoxError = skip().into();
        assert_eq!(BodyError::of(boxed), BodyResult::Skipped("no VNC".into()));
    }

    #[test]
    fn console_errors_are_known_to_show_the_console() {
        let timeout = ConsoleError::Timeout {
            pattern: "\"x\"".into(),
            timeout: Duration::from_secs(1),
            tail: "boot".into(),
        };
        match BodyError::of(Error::Console(timeout)) {
            BodyResult::Failed(e) => assert!(e.shows_console && !e.shows_qemu_output),
            other => panic!("{other:?}"),
        }
        match BodyError::of(Error::State("no")) {
            BodyResult::Failed(e) => assert!(!e.shows_console),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_render_every_part() {
        let mut failure = Failure::new(FailureKind::Error, "boom\n");
        assert_eq!(failure.to_string(), "boom");
        failure.console = ConsoleEvidence::Tail(String::new());
        failure.qemu_output = Some("qemu: bye\n".into());
        failure.notes.push("teardown: slow".into());
        failure.artifacts = ArtifactsFate::Kept("/a/t".into());
        failure.vm = Some(VmFacts {
            binary: Some("/usr/bin/qemu-system-aarch64".into()),
            arch: Some("aarch64".into()),
            machine: Some("virt".into()),
            accel: Some("tcg".into()),
        });
        assert_eq!(
            failure.to_string(),
            "boom\n--- console: the guest printed nothing ---\n--- QEMU output (qemu.log) ---\n\
             qemu: bye\nnote: teardown: slow\n\
             vm: machine virt, arch aarch64, accel tcg, qemu /usr/bin/qemu-system-aarch64\n\
             artifacts: /a/t"
        );
        failure.console = ConsoleEvidence::Tail("login:\n".into());
        failure.artifacts = ArtifactsFate::Removed;
        assert!(failure
            .to_string()
            .contains("--- last 20 console lines ---\nlogin:\n--- QEMU"));
        assert!(failure
            .to_string()
            .ends_with("artifacts: removed (QEMU_TEST_KEEP=never)"));
    }
}
