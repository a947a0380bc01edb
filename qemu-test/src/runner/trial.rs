//! Running one test, in named steps: find its booted snapshot (if any) →
//! reserve its host budget → prepare its artifact dir → launch its VM →
//! run the body under the deadline ([`watchdog`](super::watchdog)) → judge
//! → tear down → collect the evidence and keep or remove the artifacts.
//! The result is an [`Outcome`], recorded for the reports and handed to
//! libtest-mimic.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::console::Console;
use crate::error::GuestError;
use crate::machine::Machine;
use crate::qemu_opts::target_arch;
use crate::runner::artifacts::{self, ArtifactDir};
use crate::runner::booted::{self, Prepared};
use crate::runner::case::{Context, TestCase};
use crate::runner::env::OnFailure;
use crate::runner::evidence::Evidence;
use crate::runner::launch::{build_machine, vm_args};
use crate::runner::network::{self, Devices};
use crate::runner::outcome::Unrunnable;
use crate::runner::outcome::{
    ArtifactsFate, BodyError, BodyResult, ConsoleEvidence, Failure, FailureKind, Outcome, Record,
    CONSOLE_TAIL, QEMU_TAIL,
};
use crate::runner::registry::{Body, ShouldFail};
use crate::runner::resolve::{self, AccelChoice, Plan};
use crate::runner::scheduler::{scheduler, Need};
use crate::runner::sibling::{SiblingTemplate, Siblings};
use crate::runner::watchdog::{
    deadline_after, killer, run_body, seconds, BodyEnd, Watchdog, GRACE,
};
use crate::runner::{gdb, pause, Vm};
use crate::timeline::{self, Timeline};

/// A verdict before the evidence (console, QEMU's output, artifacts) is
/// gathered.
#[derive(Debug)]
enum Verdict {
    Passed,
    Skipped(String),
    Failed(FailureKind, BodyError),
}

impl TestCase {
    /// Runs the test; what libtest-mimic's trial calls.
    pub(crate) fn run(
        &self,
        ctx: &Context,
    ) -> Result<libtest_mimic::Completion, libtest_mimic::Failed> {
        // Time spent waiting for the host budget is not the test's.
        let mut started = Instant::now();
        let accel = match &self.plan {
            Some(Ok(plan)) => Some(resolve::choose_accel(plan)),
            _ => None,
        };
        let vm = self.vm_facts(ctx, accel.as_ref());
        let outcome = self.outcome(ctx, accel.as_ref(), &mut started);
        let outcome = required(outcome, ctx.config.require).with_vm(vm.as_ref());
        ctx.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Record {
                name: self.name.clone(),
                outcome: outcome.clone(),
                vm,
                duration: started.elapsed(),
            });
        match outcome {
            Outcome::Passed => Ok(libtest_mimic::Completion::Completed),
            Outcome::Skipped(reason) => Ok(libtest_mimic::Completion::ignored_with(reason)),
            Outcome::Failed(failure) => Err(failure.to_string().into()),
        }
    }

    /// The outcome, before `QEMU_TEST_REQUIRE` has its say.
    fn outcome(
        &self,
        ctx: &Context,
        accel: Option<&AccelChoice>,
        admitted: &mut Instant,
    ) -> Outcome {
        match self.unrunnable() {
            Some(Unrunnable::Missing(reason)) => return Outcome::Skipped(reason.clone()),
            Some(Unrunnable::Invalid(reason)) => {
                return failed(Failure::new(FailureKind::Invalid, reason.clone()))
            }
            None => {}
        }
        match (&self.def.body, &self.plan, accel) {
            (Body::Plain(body), _, _) => self.run_plain(*body),
            // A Linux guest is found, or built on first use, before the
            // test's deadline starts and before it asks for its host budget.
            (Body::Vm(body), Some(Ok(plan)), Some(accel)) => match plan.spec.prepare_images() {
                Ok(()) => VmTrial::run(self, *body, (plan, accel), ctx, admitted),
                Err(e) => guest_outcome(e),
            },
            (Body::Vm(_), _, _) => failed(Failure::new(
                FailureKind::Runner,
                "internal error: the test was not resolved",
            )),
        }
    }

    /// A body without a VM: same deadline and verdict rules.
    fn run_plain(&self, body: fn() -> BodyResult) -> Outcome {
        let timeout = self.spec.timeout;
        let deadline = (deadline_after(timeout), timeout);
        match run_body(&self.name, deadline, (), move |()| body(), || ()) {
            Ok((_, end)) => match judge(end, self.def.should_fail) {
                Verdict::Passed => Outcome::Passed,
                Verdict::Skipped(reason) => Outcome::Skipped(reason),
                Verdict::Failed(kind, error) => failed(Failure::new(kind, error.message)),
            },
            Err(e) => failed(Failure::new(FailureKind::Runner, e)),
        }
    }
}

/// One VM test on its way: what the steps after admission share.
struct VmTrial<'a> {
    case: &'a TestCase,
    ctx: &'a Context,
    plan: &'a Plan,
    dir: ArtifactDir,
    /// For `cmdline.txt`, `repro.sh` and `qemu.log` (the accelerator, the
    /// snapshot); the failure message does not show them.
    notes: Vec<String>,
    /// What went wrong on the way (writing `repro.sh`, teardown): shown in
    /// the failure message.
    problems: Vec<String>,
    /// Where the pause-mode monitor listens (`QEMU_TEST_ON_FAILURE=pause`).
    pause_socket: Option<PathBuf>,
    /// The test's steps, for `timeline.jsonl`.
    timeline: Timeline,
    /// The test's networks (stopped after its VMs) and program dir.
    devices: Devices,
    /// `QEMU_TEST_GDB` asks to debug this test.
    gdb: Option<gdb::Session>,
}

impl<'a> VmTrial<'a> {
    /// Runs the VM test; sets `admitted` when the scheduler lets it start.
    fn run(
        case: &'a TestCase,
        body: fn(&mut Vm) -> BodyResult,
        (plan, accel): (&'a Plan, &AccelChoice),
        ctx: &'a Context,
        admitted: &mut Instant,
    ) -> Outcome {
        let spec = &plan.spec;
        let timeline = Timeline::start();
        // A booted snapshot is found or made before the test asks for its
        // host budget (making it takes a budget of its own): tests waiting
        // for someone else's snapshot hold none.
        let snapshot = match booted_snapshot(case, (plan, accel), ctx, &timeline) {
            Ok(snapshot) => snapshot,
            Err(reason) => return failed(Failure::new(FailureKind::Snapshot, reason)),
        };
        // The test's own VM and every sibling it declares, all or nothing.
        let need = Need::for_vm(spec.smp.cpus(), spec.memory_mib()).times(1 + spec.siblings);
        let started = Instant::now();
        let _slots = scheduler(ctx.config.jobs).acquire(need);
        timeline.step("queue", started, serde_json::Map::new);
        *admitted = Instant::now();
        let (dir, devices) = match dir_and_devices(case, ctx) {
            Ok(made) => made,
            Err(outcome) => return outcome,
        };
        let mut trial = VmTrial {
            case,
            ctx,
            plan,
            dir,
            notes: notes(accel, snapshot.as_ref()),
            problems: Vec::new(),
            pause_socket: None,
            timeline,
            devices,
            gdb: None,
        };
        let timeout = trial.gdb_or_timeout();
        let deadline = deadline_after(timeout);
        let (machine, siblings) = match trial.build(accel, snapshot.as_ref(), deadline) {
            Ok(built) => built,
            Err(error) => return trial.launch_failed(error),
        };
        let launched = match spec.launch {
            true => trial
                .launch(machine, snapshot, &siblings)
                .and_then(|machine| trial.configure_guests(machine, &siblings)),
            // The body launches it (`launch = false`).
            false => Ok(machine),
        };
        let machine = match launched {
            Ok(machine) => machine,
            Err(error) => {
                drop(siblings);
                return trial.launch_failed(error);
            }
        };
        let console = machine.console();
        let evidence = Evidence::new(trial.dir.path(), machine.remote(), trial.timeline.clone());
        let ran = trial.run_body(machine, siblings, body, (deadline, timeout), &evidence);
        let (vm, end) = match ran {
            Ok(ran) => ran,
            Err(reason) => {
                let error = BodyError::new(reason);
                return trial.collect(Verdict::Failed(FailureKind::Runner, error), None);
            }
        };
        let verdict = with_crash_report(judge(end, case.def.should_fail), &console);
        // Before the evidence is gathered: reading the kernel log goes
        // through the console too.
        let tail = matches!(verdict, Verdict::Failed(..)).then(|| console.tail(CONSOLE_TAIL));
        if let Some(vm) = vm {
            trial.tear_down(vm, &verdict, &evidence);
        }
        // After the VMs: the captures are complete.
        network::stop(&trial.devices.networks);
        trial.problems.extend(evidence.problems());
        trial.collect(verdict, tail)
    }

    /// Starts the gdb session `QEMU_TEST_GDB` asks for, if any; returns
    /// the test's timeout: none under gdb (a person at a breakpoint makes
    /// any deadline meaningless).
    fn gdb_or_timeout(&mut self) -> Duration {
        self.gdb = gdb::Session::wanted(self.ctx.config, &self.case.name, self.dir.path());
        match self.gdb {
            Some(_) => Duration::MAX,
            None => self.plan.spec.timeout,
        }
    }

    /// The outcome of a test whose VM did not launch.
    fn launch_failed(self, error: BodyError) -> Outcome {
        network::stop(&self.devices.networks);
        let verdict = Verdict::Failed(FailureKind::Launch, error);
        let verdict = expected(verdict, self.case.def.should_fail);
        self.collect(verdict, None)
    }

    /// Builds the test's machine (set to restore the snapshot, if any)
    /// under the test's deadline, and what its siblings are made from.
    fn build(
        &mut self,
        accel: &AccelChoice,
        snapshot: Option<&Prepared>,
        deadline: Instant,
    ) -> Result<(Machine, Siblings), BodyError> {
        let mut args = vm_args(&self.plan.spec, &accel.value)
            .map_err(|e| BodyError::new(format!("cannot prepare the guest image: {e}")))?;
        let template = SiblingTemplate {
            plan: self.plan.clone(),
            args: args.clone(),
            deadline,
            dir: self.dir.path().to_path_buf(),
            test: self.case.name.clone(),
            cwd: self.ctx.cwd.clone(),
            timeline: self.timeline.clone(),
            devices: self.devices.clone(),
        };
        let siblings = Siblings::new(template, self.plan.spec.siblings);
        if let Some(gdb) = &self.gdb {
            args.extend(gdb.args());
        }
        if self.ctx.config.on_failure == OnFailure::Pause {
            let socket = self.dir.socket("qmp-pause.sock");
            let _ = std::fs::remove_file(&socket);
            args.extend(artifacts::pause_monitor_args(&socket));
            self.pause_socket = Some(socket);
        }
        let mut machine = build_machine(self.plan, args, self.dir.path())
            .map_err(|e| BodyError::new(format!("cannot prepare the machine's own files: {e}")))?;
        self.devices
            .attach(
                &mut machine,
                &self.plan.spec,
                crate::spec::MAIN,
                &self.ctx.cwd,
            )
            .map_err(|e| BodyError::new(format!("cannot give the VM its NICs and shares: {e}")))?;
        machine.set_timeline(self.timeline.clone());
        if let Some(snapshot) = snapshot {
            machine.restore_snapshot(snapshot.snapshot.state());
        }
        // One deadline for everything, the launch included.
        machine.set_deadline(Some(deadline));
        Ok((machine, siblings))
    }

    /// Launches the test's machine and its named siblings, then writes
    /// `cmdline.txt` and `repro.sh`. The error is QEMU's launch error.
    fn launch(
        &mut self,
        mut machine: Machine,
        snapshot: Option<Prepared>,
        siblings: &Siblings,
    ) -> Result<Machine, BodyError> {
        let launched = machine.launch();
        self.write_repro(&machine);
        if let Err(e) = launched {
            return Err(BodyError::from_error(&e));
        }
        let state = snapshot.as_ref().map(|s| s.snapshot.state());
        for name in &self.plan.spec.sibling_names {
            let mut sibling = siblings
                .get(name)
                .map_err(|e| BodyError::new(e.to_string()))?;
            if let Some(state) = state {
                sibling.restore_snapshot(state);
            }
            let launched = sibling.launch();
            if let Err(e) = launched {
                let mut error = BodyError::from_error(&e);
                error.message = format!("sibling {name:?}: {}", error.message);
                return Err(error);
            }
            siblings.keep(sibling);
        }
        // QEMU has loaded the state (or failed to): the snapshot may go.
        drop(snapshot);
        if let Some(gdb) = &self.gdb {
            let arch = (self.plan.spec.effective_arch()).or_else(|| target_arch(&self.plan.binary));
            let vmlinux = self.ctx.config.vmlinux.as_deref();
            gdb.attend(
                &self.case.name,
                &mut machine,
                (arch, vmlinux),
                &self.timeline,
            )
            .map_err(|e| BodyError::from_error(&e))?;
        }
        Ok(machine)
    }

    /// Sets up the guest side of the networks in the test's VM and its
    /// launched siblings (each waits for its own shell: their boots
    /// overlap).
    fn configure_guests(
        &self,
        machine: Machine,
        siblings: &Siblings,
    ) -> Result<Machine, BodyError> {
        let spec = &self.plan.spec;
        if !self.devices.configures_guest {
            return Ok(machine);
        }
        let started = Instant::now();
        let shell = crate::shell::Shell::new(machine.console());
        let configured = self
            .devices
            .configure(&shell, spec, crate::spec::MAIN)
            .and_then(|()| {
                siblings.each_launched(|sibling| {
                    let name = sibling.name().to_string();
                    self.devices
                        .configure(&sibling.shell(), spec, &name)
                        .map_err(|e| format!("sibling {name:?}: {e}").into())
                })
            });
        self.timeline.step("network", started, serde_json::Map::new);
        match configured {
            Ok(()) => Ok(machine),
            Err(e) => Err(BodyError::new(format!(
                "cannot set up the guests' networks: {e}"
            ))),
        }
    }

    /// `cmdline.txt` and `repro.sh`, if QEMU got as far as a command line.
    fn write_repro(&mut self, machine: &Machine) {
        if machine.command_line().is_empty() {
            return;
        }
        let written = artifacts::write_launch_files(
            self.dir.path(),
            &self.case.name,
            machine,
            &self.ctx.cwd,
            &self.notes,
        );
        if let Err(e) = written {
            self.problems
                .push(format!("could not write cmdline.txt/repro.sh: {e}"));
        }
    }

    /// Runs the body on the launched machine under the deadline; the VM
    /// back (`None` if the body was abandoned) and how the body ended.
    fn run_body(
        &self,
        machine: Machine,
        siblings: Siblings,
        body: fn(&mut Vm) -> BodyResult,
        deadline: (Instant, Duration),
        evidence: &Evidence,
    ) -> Result<(Option<Vm>, BodyEnd), String> {
        let kill_main = killer(&machine);
        let sibling_kills = siblings.kill_switches();
        let evidence = evidence.clone();
        let kill = move || {
            // The picture before the VM goes (deadline or crash).
            evidence.screenshot();
            kill_main();
            for switch in sibling_kills
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                switch.kill();
            }
        };
        // The machine's drop removes these; a body abandoned at the
        // deadline keeps the machine until the process exits, and drops
        // nothing then. (A socket dir the body makes later is left to the
        // next process's sweep: its lock dies with this process.)
        let machine_dirs: Vec<PathBuf> = [machine.made_temp_dir(), machine.made_sock_dir()]
            .into_iter()
            .flatten()
            .map(Path::to_path_buf)
            .collect();
        let watchdog = Watchdog::new(&self.case.name, deadline);
        let mut machine = machine;
        machine.watch_crashes(watchdog.crash_listener());
        let vm = Vm::new(
            machine,
            self.dir.path().to_path_buf(),
            self.case.name.clone(),
            siblings,
            watchdog.crash_expected(),
            self.devices.clone(),
        );
        let started = Instant::now();
        let (vm, end) = watchdog.run(vm, body, kill)?;
        self.timeline.step("body", started, || {
            timeline::detail([("end", end.name().into())])
        });
        if vm.is_none() {
            // Abandoned: its QEMU was killed, nothing uses them any more.
            for dir in &machine_dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        Ok((vm, end))
    }

    /// Pauses for a human if asked to and the test failed, then shuts the
    /// VM down.
    fn tear_down(&mut self, mut vm: Vm, verdict: &Verdict, evidence: &Evidence) {
        if !self.plan.spec.launch {
            // The body launched it (or did not): its last command line.
            self.write_repro(&vm);
        }
        let failed = matches!(verdict, Verdict::Failed(..));
        if failed && vm.is_running() {
            evidence.screenshot();
        }
        if let (Verdict::Failed(_, error), Some(socket)) = (verdict, &self.pause_socket) {
            pause::pause(
                &self.case.name,
                &error.message,
                &mut vm,
                socket,
                self.dir.path(),
            );
        }
        // After a person had the console: they see it as the test left it.
        if failed && vm.is_running() {
            evidence.dmesg(&mut vm);
        }
        let started = Instant::now();
        if let Err(e) = vm.teardown() {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("");
            self.problems.push(format!("teardown: {first}"));
        }
        self.timeline
            .step("teardown", started, serde_json::Map::new);
    }

    /// The outcome with its evidence: the console's last lines (`tail`,
    /// else from the console log), QEMU's last
    /// words, the problems on the way; the artifact dir kept or removed.
    fn collect(mut self, verdict: Verdict, tail: Option<String>) -> Outcome {
        let keep = self.ctx.config.keep;
        self.write_timeline(&verdict);
        let (kind, error) = match verdict {
            Verdict::Passed => {
                append_notes(&self.dir, &self.notes);
                self.dir.finish(keep.keeps(true));
                return Outcome::Passed;
            }
            Verdict::Skipped(reason) => {
                append_notes(&self.dir, &self.notes);
                self.dir.finish(keep.keeps(true));
                return Outcome::Skipped(reason);
            }
            Verdict::Failed(kind, error) => (kind, error),
        };
        let tail = || match &tail {
            Some(tail) => tail.clone(),
            None => artifacts::tail_file(&self.dir.file("console.log"), CONSOLE_TAIL),
        };
        let console = match (self.plan.spec.console.is_some(), error.shows_console) {
            (false, _) => ConsoleEvidence::None,
            (true, true) => ConsoleEvidence::InReason { tail: tail() },
            (true, false) => ConsoleEvidence::Tail(tail()),
        };
        let qemu_output = artifacts::tail_file(&self.dir.file("qemu.log"), QEMU_TAIL);
        let qemu_output =
            (!error.shows_qemu_output && !qemu_output.trim().is_empty()).then_some(qemu_output);
        // After QEMU's own last words were read: the notes are not its.
        append_notes(&self.dir, &self.notes);
        let kept = self.dir.finish(keep.keeps(false));
        failed(Failure {
            kind,
            reason: error.message,
            console,
            qemu_output,
            notes: self.problems,
            // Filled in by `TestCase::run`, which knows it for every test.
            vm: None,
            artifacts: kept.map_or(ArtifactsFate::Removed, ArtifactsFate::Kept),
        })
    }
}

impl VmTrial<'_> {
    /// Marks the verdict and writes `timeline.jsonl`, if the artifact dir
    /// is to be kept.
    fn write_timeline(&mut self, verdict: &Verdict) {
        let (result, passed) = match verdict {
            Verdict::Passed => ("passed", true),
            Verdict::Skipped(_) => ("skipped", true),
            Verdict::Failed(kind, _) => (kind.name(), false),
        };
        self.timeline
            .mark("verdict", || timeline::detail([("result", result.into())]));
        if !self.ctx.config.keep.keeps(passed) {
            return;
        }
        let path = self.dir.file("timeline.jsonl");
        if let Err(e) = self.timeline.write(&path, &self.case.name) {
            self.problems
                .push(format!("could not write timeline.jsonl: {e}"));
        }
    }
}

/// The test's artifact dir, its networks (capturing into it) and its
/// program dir (in it).
fn dir_and_devices(case: &TestCase, ctx: &Context) -> Result<(ArtifactDir, Devices), Outcome> {
    let dir = ArtifactDir::prepare(&ctx.binary_dir(), &case.name).map_err(|e| {
        let reason = format!("cannot create the artifact dir: {e}");
        failed(Failure::new(FailureKind::Runner, reason))
    })?;
    let spec = &case.spec;
    let devices = network::create(spec, dir.path())
        .map_err(|e| format!("cannot set up the test's networks: {e}"))
        .and_then(|networks| {
            let programs = crate::runner::share::program_dir(spec, dir.path())
                .map_err(|e| format!("cannot make the test's program dir: {e}"))?;
            Ok(Devices {
                networks,
                programs,
                configures_guest: network::configures_guest(spec),
            })
        });
    match devices {
        Ok(devices) => Ok((dir, devices)),
        Err(reason) => {
            dir.finish(ctx.config.keep.keeps(false));
            Err(failed(Failure::new(FailureKind::Launch, reason)))
        }
    }
}

/// The booted snapshot the test starts from, if any, found or made
/// (recorded in `timeline`); the error says why there is none.
fn booted_snapshot(
    case: &TestCase,
    (plan, accel): (&Plan, &AccelChoice),
    ctx: &Context,
    timeline: &Timeline,
) -> Result<Option<Prepared>, String> {
    let Some(name) = &plan.spec.snapshot else {
        return Ok(None);
    };
    let started = Instant::now();
    let prepared = booted::prepare(name, case, plan, &accel.value, ctx)?;
    timeline.step("snapshot", started, || {
        timeline::detail([("name", name.as_str().into())])
    });
    Ok(Some(prepared))
}

/// The notes for `cmdline.txt` and `repro.sh`: the accelerator and why,
/// and the snapshot the test starts from.
fn notes(accel: &AccelChoice, snapshot: Option<&Prepared>) -> Vec<String> {
    let mut notes = vec![format!("accelerator: {}", accel.value)];
    if let Some(note) = &accel.note {
        if accel.surprising {
            static ONCE: Once = Once::new();
            ONCE.call_once(|| eprintln!("note: {note}"));
        }
        notes.push(note.clone());
    }
    if let Some(snapshot) = snapshot {
        notes.push(snapshot.note.clone());
    }
    notes
}

fn failed(failure: Failure) -> Outcome {
    Outcome::Failed(Box::new(failure))
}

/// A guest or asset that could not be had: this host cannot have it
/// (no way to build it, offline, no firmware: a skip), or its settings or
/// declaration are wrong, or its build or download failed (a failure,
/// with the cause).
fn guest_outcome(error: GuestError) -> Outcome {
    if error.is_unavailable() {
        Outcome::Skipped(error.to_string())
    } else if error.is_config() {
        failed(Failure::new(FailureKind::Invalid, error.to_string()))
    } else {
        failed(Failure::new(FailureKind::Launch, error.to_string()))
    }
}

/// Under `QEMU_TEST_REQUIRE=1` a test that could not run, or skipped
/// itself, fails instead.
fn required(outcome: Outcome, require: bool) -> Outcome {
    match outcome {
        Outcome::Skipped(reason) if require => failed(Failure::new(
            FailureKind::Required,
            format!(
                "{reason}\n(QEMU_TEST_REQUIRE=1: a test that cannot run here fails instead of being skipped)"
            ),
        )),
        other => other,
    }
}

/// The verdict, given how the body ended and what was expected.
fn judge(end: BodyEnd, should_fail: ShouldFail) -> Verdict {
    expected(body_verdict(end), should_fail)
}

/// What the body's end means before `should_fail` has its say.
fn body_verdict(end: BodyEnd) -> Verdict {
    let (kind, error) = match end {
        BodyEnd::Passed => return Verdict::Passed,
        BodyEnd::Skipped(reason) => return Verdict::Skipped(reason),
        BodyEnd::Failed(error) if error.panicked => (FailureKind::Panic, error),
        BodyEnd::Failed(error) => (FailureKind::Error, error),
        BodyEnd::Crashed {
            crash,
            said,
            abandoned,
        } => {
            let mut reason = format!("the guest crashed: {crash}");
            let mut error = BodyError::new("");
            if let Some(said) = said {
                // Its first line: its console tail would repeat the crash.
                let first = said.message.lines().next().unwrap_or_default();
                reason.push_str(&format!("\nthe body was stopped with: {first}"));
                error = said;
                error.shows_console = false;
            }
            if abandoned {
                reason.push_str(&format!(
                    "\nthe body did not return within {} after its VM was killed; its thread was abandoned",
                    seconds(GRACE)
                ));
            }
            error.message = reason;
            (FailureKind::GuestCrash, error)
        }
        BodyEnd::TimedOut {
            timeout,
            said,
            abandoned,
        } => {
            let mut reason = format!("timed out after {}", seconds(timeout));
            let mut error = BodyError::new("");
            if let Some(said) = said {
                reason.push_str(&format!("\nthe body was stopped with: {}", said.message));
                error = said;
            }
            if abandoned {
                reason.push_str(&format!(
                    "\nthe body did not return within {} after its VM was killed; its thread was abandoned",
                    seconds(GRACE)
                ));
            }
            error.message = reason;
            (FailureKind::Timeout, error)
        }
    };
    Verdict::Failed(kind, error)
}

/// How many console lines from the crash line a crash's report shows (the
/// call trace).
const CRASH_LINES: usize = 60;

/// A guest crash's failure with what the console showed from the crash
/// line on (the call trace), instead of the console's last lines.
fn with_crash_report(verdict: Verdict, console: &Console) -> Verdict {
    let Verdict::Failed(FailureKind::GuestCrash, mut error) = verdict else {
        return verdict;
    };
    let Some(crash) = console.crash() else {
        return Verdict::Failed(FailureKind::GuestCrash, error);
    };
    let output = console.output_bytes();
    let from = output.get(crash.offset..).unwrap_or_default();
    let text = String::from_utf8_lossy(from);
    let excerpt: Vec<&str> = text.lines().take(CRASH_LINES).collect();
    error.message.push_str(&format!(
        "\n--- the crash on the console ---\n{}",
        excerpt.join("\n").trim_end()
    ));
    error.shows_console = true;
    Verdict::Failed(FailureKind::GuestCrash, error)
}

/// A verdict judged against `should_fail` (libtest's `should_panic` rules,
/// for any failure: an `Err`, a panic, a timeout, or QEMU failing to
/// launch). A skip stays a skip.
fn expected(verdict: Verdict, should_fail: ShouldFail) -> Verdict {
    let (kind, error) = match verdict {
        Verdict::Passed => return expected_failure_missing(should_fail),
        Verdict::Skipped(reason) => return Verdict::Skipped(reason),
        Verdict::Failed(kind, error) => (kind, error),
    };
    match should_fail {
        ShouldFail::No => Verdict::Failed(kind, error),
        ShouldFail::Yes => Verdict::Passed,
        ShouldFail::WithMessage(expected) if error.message.contains(expected) => Verdict::Passed,
        ShouldFail::WithMessage(expected) => Verdict::Failed(
            FailureKind::Expectation,
            BodyError::new(format!(
                "test failed, but not as expected\n      failure: {:?}\nexpected text: {expected:?}",
                error.message
            )),
        ),
    }
}

/// A body that passed, judged against `should_fail`.
fn expected_failure_missing(should_fail: ShouldFail) -> Verdict {
    let reason = match should_fail {
        ShouldFail::No => return Verdict::Passed,
        ShouldFail::Yes => "test did not fail as expected (should_fail)".to_string(),
        ShouldFail::WithMessage(expected) => {
            format!("test did not fail as expected (should_fail = {expected:?})")
        }
    };
    Verdict::Failed(FailureKind::Expectation, BodyError::new(reason))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(verdict: Verdict) -> Option<String> {
        match verdict {
            Verdict::Failed(_, error) => Some(error.message),
            _ => None,
        }
    }

    #[test]
    fn should_fail_rules() {
        let err = || BodyEnd::Failed(BodyError::new("boom: it broke"));
        assert!(matches!(
            judge(BodyEnd::Passed, ShouldFail::No),
            Verdict::Passed
        ));
        assert_eq!(
            reason(judge(err(), ShouldFail::No)).as_deref(),
            Some("boom: it broke")
        );
        assert!(matches!(judge(err(), ShouldFail::Yes), Verdict::Passed));
        assert!(matches!(
            judge(err(), ShouldFail::WithMessage("boom")),
            Verdict::Passed
        ));
        assert!(reason(judge(err(), ShouldFail::WithMessage("bang")))
            .unwrap()
            .contains("not as expected"));
        assert!(reason(judge(BodyEnd::Passed, ShouldFail::Yes))
            .unwrap()
            .contains("did not fail"));
        assert!(reason(judge(BodyEnd::Passed, ShouldFail::WithMessage("x")))
            .unwrap()
            .contains("did not fail"));
        let timeout = BodyEnd::TimedOut {
            timeout: Duration::from_secs(3),
            said: None,
            abandoned: false,
        };
        match judge(timeout, ShouldFail::No) {
            Verdict::Failed(FailureKind::Timeout, error) => {
                assert_eq!(error.message, "timed out after 3 s")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge(BodyEnd::Skipped("no VNC".into()), ShouldFail::Yes),
            Verdict::Skipped(_)
        ));
    }

    #[test]
    fn skips_fail_under_require() {
        assert!(matches!(
            required(Outcome::Skipped("no KVM".into()), false),
            Outcome::Skipped(_)
        ));
        match required(Outcome::Skipped("no KVM".into()), true) {
            Outcome::Failed(f) => {
                assert_eq!(f.kind, FailureKind::Required);
                assert!(f.reason.starts_with("no KVM\n(QEMU_TEST_REQUIRE=1"));
            }
            other => panic!("{other:?}"),
        }
    }
}
