//! Running one test: admit it, launch its VM, run the body under the
//! test's deadline, tear down, judge, and keep or remove the artifacts.
//!
//! The body runs on a thread of its own (named after the test, like
//! libtest's). The trial's thread is the watchdog: at the deadline it kills
//! QEMU through a pidfd (never by name, never a recycled pid), which ends
//! any wait the body is in; a body that still does not return within
//! [`GRACE`] is abandoned and the test fails as timed out all the same.
//! (A body that relaunches its machine starts a QEMU the watchdog does not
//! know; the deadline still caps all of that machine's waits.)

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use crate::console::Console;
use crate::machine::Machine;
use crate::runner::artifacts::{self, ArtifactDir};
use crate::runner::env::{Config, OnFailure};
use crate::runner::registry::{Body, ShouldFail, TestDef};
use crate::runner::resolve::{self, Plan, Unrunnable};
use crate::runner::scheduler::{scheduler, Need};
use crate::runner::{pause, snapshot, Vm};
use crate::spec::VmSpec;

/// How long a body may take to return once its VM was killed at the
/// deadline.
pub(crate) const GRACE: Duration = Duration::from_secs(5);
/// How many console lines a failure message shows.
const CONSOLE_TAIL: usize = 20;
/// How many lines of QEMU's own output a failure message shows.
const QEMU_TAIL: usize = 10;

/// What is shared by every trial of the process.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) config: &'static Config,
    /// The artifact root.
    pub(crate) root: PathBuf,
    /// The test binary's name.
    pub(crate) binary: String,
    /// The directory the tests run in (for `repro.sh`).
    pub(crate) cwd: PathBuf,
    /// Every test's result, for the JUnit report.
    pub(crate) records: Mutex<Vec<Record>>,
}

/// One registered test, ready to run.
#[derive(Debug)]
pub(crate) struct TestCase {
    pub(crate) def: &'static TestDef,
    /// `module::function`, without the crate.
    pub(crate) name: String,
    pub(crate) spec: VmSpec,
    /// The resolved VM, for a body that takes one.
    pub(crate) plan: Option<Result<Plan, Unrunnable>>,
}

/// How a test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Passed,
    Failed {
        /// The whole failure message.
        message: String,
        /// The artifact dir, if kept.
        artifacts: Option<PathBuf>,
    },
    Skipped {
        reason: String,
    },
}

/// A finished test, for reports.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) name: String,
    pub(crate) verdict: Verdict,
    /// From admission (after any wait for the host budget) to the end.
    pub(crate) duration: Duration,
}

/// How the body ended.
#[derive(Debug)]
pub(super) enum BodyEnd {
    /// It returned `Ok`.
    Passed,
    /// It returned `Err` or panicked (the message), before the deadline.
    Failed(String),
    /// The deadline passed; what the body said, if it returned.
    TimedOut {
        timeout: Duration,
        said: Option<String>,
        abandoned: bool,
    },
}

impl TestCase {
    /// Runs the test; what libtest-mimic's trial calls.
    pub(crate) fn run(
        &self,
        ctx: &Context,
    ) -> Result<libtest_mimic::Completion, libtest_mimic::Failed> {
        // Time spent waiting for the host budget is not the test's.
        let mut started = Instant::now();
        let verdict = match (&self.def.body, &self.plan) {
            (Body::Plain(body), _) => self.run_plain(*body),
            (Body::Vm(_), Some(Err(Unrunnable::Missing(reason)))) if !ctx.config.require => {
                Verdict::Skipped { reason: reason.clone() }
            }
            (Body::Vm(_), Some(Err(Unrunnable::Missing(reason)))) => Verdict::Failed {
                message: format!("{reason}\n(QEMU_TEST_REQUIRE=1: a test that cannot run here fails instead of being skipped)"),
                artifacts: None,
            },
            (Body::Vm(_), Some(Err(Unrunnable::Invalid(reason)))) => Verdict::Failed { message: reason.clone(), artifacts: None },
            (Body::Vm(body), Some(Ok(plan))) => self.run_vm(*body, plan, ctx, &mut started),
            (Body::Vm(_), None) => Verdict::Failed { message: "internal error: the test was not resolved".into(), artifacts: None },
        };
        ctx.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Record {
                name: self.name.clone(),
                verdict: verdict.clone(),
                duration: started.elapsed(),
            });
        match verdict {
            Verdict::Passed => Ok(libtest_mimic::Completion::Completed),
            Verdict::Skipped { reason } => Ok(libtest_mimic::Completion::ignored_with(reason)),
            Verdict::Failed { message, .. } => Err(message.into()),
        }
    }

    /// A body without a VM: same deadline and verdict rules.
    fn run_plain(&self, body: fn() -> Result<(), String>) -> Verdict {
        let timeout = self.spec.timeout;
        let end = match run_body(
            &self.name,
            (deadline_after(timeout), timeout),
            (),
            move |()| body(),
            || (),
        ) {
            Ok((_, end)) => end,
            Err(e) => {
                return Verdict::Failed {
                    message: e,
                    artifacts: None,
                }
            }
        };
        match judge(end, self.def.should_fail) {
            None => Verdict::Passed,
            Some(message) => Verdict::Failed {
                message,
                artifacts: None,
            },
        }
    }

    /// Runs a VM test; sets `admitted` when the scheduler lets it start.
    fn run_vm(
        &self,
        body: fn(&mut Vm) -> Result<(), String>,
        plan: &Plan,
        ctx: &Context,
        admitted: &mut Instant,
    ) -> Verdict {
        let spec = &plan.spec;
        let accel = resolve::choose_accel(plan);
        // A booted snapshot is found or made before the test asks for its
        // host budget (making it takes a budget of its own): tests waiting
        // for someone else's snapshot hold none.
        let snapshot = match &spec.snapshot {
            Some(name) => match snapshot::prepare(name, self, plan, &accel.value, ctx) {
                Ok(snapshot) => Some(snapshot),
                Err(message) => {
                    return Verdict::Failed {
                        message,
                        artifacts: None,
                    }
                }
            },
            None => None,
        };
        let _slots = scheduler(ctx.config.jobs).acquire(Need::for_vm(spec.smp, spec.memory_mib()));
        *admitted = Instant::now();
        // For cmdline.txt and repro.sh; the failure message only shows
        // `problems`.
        let mut notes = vec![format!("accelerator: {}", accel.value)];
        let mut problems = Vec::new();
        if let Some(note) = &accel.note {
            if accel.surprising {
                static ONCE: Once = Once::new();
                ONCE.call_once(|| eprintln!("note: {note}"));
            }
            notes.push(note.clone());
        }
        if let Some(snapshot) = &snapshot {
            notes.push(snapshot.note.clone());
        }
        let dir = match ArtifactDir::prepare(&ctx.root, &ctx.binary, &self.name) {
            Ok(dir) => dir,
            Err(e) => {
                return Verdict::Failed {
                    message: format!("cannot create the artifact dir: {e}"),
                    artifacts: None,
                }
            }
        };
        let fail_early = |message: String, dir: ArtifactDir| {
            let message = format!(
                "{message}\n{}",
                artifacts_line(Some(dir.path()), ctx.config.keep.keeps(false))
            );
            Verdict::Failed {
                message,
                artifacts: dir.finish(ctx.config.keep.keeps(false)),
            }
        };
        let mut args = match vm_args(spec, &accel.value) {
            Ok(args) => args,
            Err(e) => return fail_early(format!("cannot prepare the guest image: {e}"), dir),
        };
        let pause_socket =
            (ctx.config.on_failure == OnFailure::Pause).then(|| dir.socket("qmp-pause.sock"));
        if let Some(socket) = &pause_socket {
            let _ = std::fs::remove_file(socket);
            args.extend(artifacts::pause_monitor_args(socket));
        }
        let mut machine = build_machine(plan, args, dir.path());
        if let Some(snapshot) = &snapshot {
            machine.restore_snapshot(snapshot.snapshot.state());
        }

        // One deadline for everything, the launch included.
        let timeout = spec.timeout;
        let deadline = deadline_after(timeout);
        machine.set_deadline(Some(deadline));
        let launched = machine.launch();
        // QEMU has loaded the state (or failed to): the snapshot may go.
        drop(snapshot);
        if !machine.command_line().is_empty() {
            let command = machine.command_line().to_vec();
            let socket = dir.socket("qmp.sock");
            let repro = artifacts::for_humans(machine.repro_command(&socket));
            let written = dir
                .write_cmdline(&command, &notes)
                .and_then(|()| dir.write_repro(&self.name, &repro, &socket, &ctx.cwd, &notes));
            if let Err(e) = written {
                problems.push(format!("could not write cmdline.txt/repro.sh: {e}"));
            }
        }
        if let Err(e) = launched {
            let message = failure_message(
                &format!("{e:?}"),
                spec.console.is_some(),
                None,
                &dir,
                &problems,
            );
            append_notes(&dir, &notes);
            return fail_early(message, dir);
        }
        let console = machine.console();
        let kill = killer(&machine);
        // The machine's drop removes these; a body abandoned at the
        // deadline keeps the machine until the process exits, and drops
        // nothing then. (A socket dir the body makes later is left to the
        // next process's sweep: its lock dies with this process.)
        let machine_dirs: Vec<PathBuf> = [machine.temp_dir(), machine.made_sock_dir()]
            .into_iter()
            .flatten()
            .map(Path::to_path_buf)
            .collect();
        let vm = Vm::new(machine, dir.path().to_path_buf(), self.name.clone());

        let ran = run_body(&self.name, (deadline, timeout), vm, body, kill);
        let (vm, end) = match ran {
            Ok((vm, end)) => (vm, end),
            Err(e) => return fail_early(e, dir),
        };
        if vm.is_none() {
            // Abandoned: its QEMU was killed, nothing uses them any more.
            for dir in &machine_dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        let failure = judge(end, self.def.should_fail);

        let mut vm = vm;
        if let (Some(reason), Some(vm), Some(socket)) = (&failure, vm.as_mut(), &pause_socket) {
            pause::pause(&self.name, reason, vm, socket, dir.path());
        }
        if let Some(mut vm) = vm {
            if let Err(e) = vm.teardown() {
                problems.push(format!("teardown: {}", first_line(&format!("{e}"))));
            }
        }
        let message = failure.map(|reason| {
            failure_message(
                &reason,
                spec.console.is_some(),
                Some(&console),
                &dir,
                &problems,
            )
        });
        append_notes(&dir, &notes);
        match message {
            None => {
                dir.finish(ctx.config.keep.keeps(true));
                Verdict::Passed
            }
            Some(message) => fail_early(message, dir),
        }
    }
}

/// The arguments a spec's VM gets (`-snapshot` too when it starts from a
/// booted snapshot: its disks must be as they were when the state was
/// saved, so no test may write to them).
pub(super) fn vm_args(spec: &VmSpec, accel: &str) -> std::io::Result<Vec<String>> {
    let mut args = spec.qemu_args(Some(accel))?;
    if spec.snapshot.is_some() {
        args.push("-snapshot".into());
    }
    Ok(args)
}

/// A machine for `plan`, not launched, with `args` and its logs
/// (`qemu.log`, `console.log`, `qmp.jsonl`) in `log_dir`.
pub(super) fn build_machine(plan: &Plan, args: Vec<String>, log_dir: &Path) -> Machine {
    let spec = &plan.spec;
    let mut machine = Machine::builder(plan.binary.to_string_lossy())
        .name("qemu")
        .log_dir(log_dir)
        .console_log(log_dir.join("console.log"))
        .qmp_log(log_dir.join("qmp.jsonl"))
        .args(args)
        .build();
    if let Some(machine_type) = spec.effective_machine() {
        machine.set_machine(machine_type);
    }
    if let Some(console) = &spec.console {
        machine.set_console(console.device.as_deref(), console.index);
    }
    machine
}

/// What the watchdog calls at the deadline: kills the machine's QEMU
/// through a pidfd (never a recycled pid), from any thread.
pub(super) fn killer(machine: &Machine) -> impl FnOnce() + Send + 'static {
    let pid = machine.pid();
    let pidfd = pid.and_then(crate::os::pidfd);
    move || match (&pidfd, pid) {
        (Some(fd), _) => {
            let _ = crate::os::kill_pidfd(fd, crate::os::Signal::Kill);
        }
        (None, Some(pid)) => {
            let _ = crate::os::kill_one(pid, crate::os::Signal::Kill);
        }
        (None, None) => {}
    }
}

/// Runs `body` on `value` on a thread named `name`, waiting until
/// `deadline` (`timeout` after the test started); then calls `on_timeout`
/// (which kills the VM) and waits [`GRACE`] more. Returns `value` back
/// (even after a panic; `None` if the body had to be abandoned) and how the
/// body ended.
pub(super) fn run_body<T: Send + 'static>(
    name: &str,
    (deadline, timeout): (Instant, Duration),
    value: T,
    body: impl FnOnce(&mut T) -> Result<(), String> + Send + 'static,
    on_timeout: impl FnOnce(),
) -> Result<(Option<T>, BodyEnd), String> {
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut value = value;
            let result = catch_unwind(AssertUnwindSafe(|| body(&mut value)));
            let result = result.unwrap_or_else(|payload| Err(panic_message(payload.as_ref())));
            let _ = tx.send((value, result));
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start the test's thread: {e}"));
    }
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok((value, Ok(()))) => Ok((Some(value), BodyEnd::Passed)),
        // A wait cut short by the deadline is the deadline's doing.
        Ok((value, Err(said))) if Instant::now() + Duration::from_millis(50) >= deadline => Ok((
            Some(value),
            BodyEnd::TimedOut {
                timeout,
                said: Some(said),
                abandoned: false,
            },
        )),
        Ok((value, Err(said))) => Ok((Some(value), BodyEnd::Failed(said))),
        Err(RecvTimeoutError::Timeout) => {
            on_timeout();
            match rx.recv_timeout(GRACE) {
                Ok((value, result)) => Ok((
                    Some(value),
                    BodyEnd::TimedOut {
                        timeout,
                        said: result.err(),
                        abandoned: false,
                    },
                )),
                Err(_) => Ok((
                    None,
                    BodyEnd::TimedOut {
                        timeout,
                        said: None,
                        abandoned: true,
                    },
                )),
            }
        }
        Err(RecvTimeoutError::Disconnected) => {
            Err("the test's thread ended without a result".into())
        }
    }
}

/// `timeout` from now; an absurdly long timeout means "a century".
pub(super) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86400))
}

/// Wraps a panic like libtest-mimic does: `test panicked: <message>`.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    match text {
        Some(text) => format!("test panicked: {text}"),
        None => "test panicked".to_string(),
    }
}

/// The failure reason, if the test failed, given how the body ended and
/// what was expected (libtest's `should_panic` rules, for `Err` as well).
fn judge(end: BodyEnd, should_fail: ShouldFail) -> Option<String> {
    let failure = match end {
        BodyEnd::Passed => None,
        BodyEnd::Failed(reason) => Some(reason),
        BodyEnd::TimedOut {
            timeout,
            said,
            abandoned,
        } => {
            let mut reason = format!("timed out after {}", seconds(timeout));
            if let Some(said) = said {
                reason.push_str(&format!("\nthe body was stopped with: {said}"));
            }
            if abandoned {
                reason.push_str(&format!(
                    "\nthe body did not return within {} after its VM was killed; its thread was abandoned",
                    seconds(GRACE)
                ));
            }
            Some(reason)
        }
    };
    match (should_fail, failure) {
        (ShouldFail::No, failure) => failure,
        (ShouldFail::Yes, Some(_)) => None,
        (ShouldFail::WithMessage(expected), Some(reason)) if reason.contains(expected) => None,
        (ShouldFail::WithMessage(expected), Some(reason)) => Some(format!(
            "test failed, but not as expected\n      failure: {reason:?}\nexpected text: {expected:?}"
        )),
        (ShouldFail::Yes, None) => Some("test did not fail as expected (should_fail)".to_string()),
        (ShouldFail::WithMessage(expected), None) => {
            Some(format!("test did not fail as expected (should_fail = {expected:?})"))
        }
    }
}

/// `5 s`, `1.5 s`.
pub(super) fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The reason, the console's last lines, QEMU's last words, notes, and
/// where the artifacts are.
fn failure_message(
    reason: &str,
    has_console: bool,
    console: Option<&Console>,
    dir: &ArtifactDir,
    notes: &[String],
) -> String {
    let mut message = reason.trim_end().to_string();
    // A console error already ends with the console's tail.
    if has_console && !reason.contains("\n--- last console lines ---\n") {
        let tail = match console {
            Some(console) => console.tail(CONSOLE_TAIL),
            None => artifacts::tail_file(&dir.file("console.log"), CONSOLE_TAIL),
        };
        let tail = tail.trim_end();
        if tail.is_empty() {
            message.push_str("\n--- console: the guest printed nothing ---");
        } else {
            message.push_str(&format!(
                "\n--- last {CONSOLE_TAIL} console lines ---\n{tail}"
            ));
        }
    }
    let qemu = artifacts::tail_file(&dir.file("qemu.log"), QEMU_TAIL);
    if !qemu.trim().is_empty() && !reason.contains(qemu.trim()) {
        message.push_str(&format!(
            "\n--- QEMU output (qemu.log) ---\n{}",
            qemu.trim_end()
        ));
    }
    for note in notes {
        message.push_str(&format!("\nnote: {note}"));
    }
    message
}

/// Appends the runner's notes to `qemu.log` (QEMU has exited: its own
/// output is complete).
fn append_notes(dir: &ArtifactDir, notes: &[String]) {
    use std::io::Write;
    let Ok(mut log) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.file("qemu.log"))
    else {
        return;
    };
    for note in notes {
        let _ = writeln!(log, "[qemu-test] {note}");
    }
}

/// The last line of a failure message: where the artifacts are.
fn artifacts_line(dir: Option<&Path>, kept: bool) -> String {
    match (dir, kept) {
        (Some(dir), true) => format!("artifacts: {}", dir.display()),
        (Some(_), false) => "artifacts: removed (QEMU_TEST_KEEP=never)".to_string(),
        (None, _) => "artifacts: none".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn after(timeout: Duration) -> (Instant, Duration) {
        (Instant::now() + timeout, timeout)
    }

    #[test]
    fn should_fail_rules() {
        let err = || BodyEnd::Failed("boom: it broke".into());
        assert_eq!(judge(BodyEnd::Passed, ShouldFail::No), None);
        assert_eq!(
            judge(err(), ShouldFail::No).as_deref(),
            Some("boom: it broke")
        );
        assert_eq!(judge(err(), ShouldFail::Yes), None);
        assert_eq!(judge(err(), ShouldFail::WithMessage("boom")), None);
        assert!(judge(err(), ShouldFail::WithMessage("bang"))
            .unwrap()
            .contains("not as expected"));
        assert!(judge(BodyEnd::Passed, ShouldFail::Yes)
            .unwrap()
            .contains("did not fail"));
        assert!(judge(BodyEnd::Passed, ShouldFail::WithMessage("x"))
            .unwrap()
            .contains("did not fail"));
        let timeout = BodyEnd::TimedOut {
            timeout: Duration::from_secs(3),
            said: None,
            abandoned: false,
        };
        assert_eq!(
            judge(timeout, ShouldFail::No).as_deref(),
            Some("timed out after 3 s")
        );
    }

    #[test]
    fn bodies_run_on_named_threads_and_panics_are_caught() {
        let body = |name: &mut Option<String>| {
            *name = thread::current().name().map(str::to_string);
            Ok(())
        };
        let (name, end) =
            run_body("my::test", after(Duration::from_secs(5)), None, body, || ()).unwrap();
        assert_eq!(name.flatten().as_deref(), Some("my::test"));
        assert!(matches!(end, BodyEnd::Passed));
        let (value, end) = run_body(
            "p",
            after(Duration::from_secs(5)),
            7,
            |_| panic!("kaboom"),
            || (),
        )
        .unwrap();
        assert_eq!(value, Some(7), "the value survives the panic");
        match end {
            BodyEnd::Failed(msg) => assert_eq!(msg, "test panicked: kaboom"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stuck_bodies_time_out() {
        let killed = Arc::new(Mutex::new(false));
        let k = killed.clone();
        let (tx, rx) = mpsc::channel::<()>();
        let started = Instant::now();
        let (_, end) = run_body(
            "stuck",
            after(Duration::from_millis(200)),
            (),
            move |()| {
                // Returns once "the VM is killed".
                let _ = rx.recv();
                Err("console closed".into())
            },
            move || {
                *k.lock().unwrap() = true;
                drop(tx);
            },
        )
        .unwrap();
        assert!(*killed.lock().unwrap());
        assert!(started.elapsed() < GRACE);
        match end {
            BodyEnd::TimedOut {
                said, abandoned, ..
            } => {
                assert_eq!(said.as_deref(), Some("console closed"));
                assert!(!abandoned);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(seconds(Duration::from_secs(60)), "60 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    }
}
