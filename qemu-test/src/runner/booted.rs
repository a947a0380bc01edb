//! `#[qemu_test(snapshot = "name")]`: finding, or making, the booted
//! snapshot a test starts from.
//!
//! The store is `<artifact root>/snapshots/` (by default
//! `target/qemu-test/snapshots/`). The key is the test machine's own
//! [`snapshot_key`](crate::Machine::snapshot_key) (binary, arguments with
//! the accelerator, machine type, console, the files they name) plus what
//! gets the VM ready: the `setup` function's path and the test binary's
//! identity (a rebuilt binary may have a changed setup, so it remakes the
//! snapshot), or the built-in guest's ready marker. Making a snapshot boots
//! the VM with the test's timeout as its deadline, runs the setup on its
//! own thread under the same watchdog as a test body, saves the state and
//! shuts the VM down; its logs stay in the snapshot's `create/` directory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{BoxError, SnapshotError};
use crate::runner::case::{Context, TestCase};
use crate::runner::launch::{build_machine, vm_args};
use crate::runner::outcome::{BodyError, BodyResult};
use crate::runner::registry::Setup;
use crate::runner::resolve::Plan;
use crate::runner::scheduler::{scheduler, Need};
use crate::runner::sibling::{SiblingTemplate, Siblings};
use crate::runner::watchdog::{deadline_after, killer, run_body, seconds, BodyEnd};
use crate::runner::Vm;
use crate::snapshot::{file_identity, Snapshot, SnapshotKey, SnapshotStore};
use crate::spec::VmSpec;

/// How long saving the state may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// A snapshot ready to restore, and a line about it for the test's notes.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) snapshot: Snapshot,
    pub(crate) note: String,
}

/// Per key id: a lock that serializes this process's tests on one snapshot
/// (the store's file lock does that across processes), and the failure if
/// making it failed, so that the other tests using it fail at once instead
/// of booting again.
static KEYS: Mutex<Option<HashMap<String, KeyState>>> = Mutex::new(None);

/// One key's in-process lock, holding the failure if making it failed.
type KeyState = Arc<Mutex<Option<String>>>;

/// The in-process lock and failure record of key `id`.
fn key_state(id: &str) -> KeyState {
    KEYS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .entry(id.to_string())
        .or_default()
        .clone()
}

/// What gets the VM ready before it is saved.
#[derive(Clone, Copy)]
enum Readiness {
    Setup(Setup),
    Marker(&'static str),
}

/// Finds or makes the snapshot `name` for the test `case`; the error is the
/// reason the test fails.
pub(crate) fn prepare(
    name: &str,
    case: &TestCase,
    plan: &Plan,
    accel: &str,
    ctx: &Context,
) -> Result<Prepared, String> {
    let spec = &plan.spec;
    let readiness = readiness(name, case, spec)?;
    let args = vm_args(spec, accel).map_err(|e| format!("cannot prepare the guest image: {e}"))?;
    let store = SnapshotStore::new(ctx.root.join("snapshots"));
    let key =
        key(name, plan, &args, readiness, ctx).map_err(|e| BodyError::from_error(&e).message)?;
    let state = key_state(&key.id());
    let mut failed = state.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(failure) = failed.as_ref() {
        return Err(format!(
            "snapshot {name:?} could not be made earlier in this run, so this test cannot start from it:\n{failure}"
        ));
    }
    let maker = Maker {
        name,
        case,
        plan,
        args: &args,
        readiness,
        ctx,
    };
    match store.get_or_create(&key, |state, logs| maker.make(state, logs)) {
        Ok(snapshot) => {
            let how = if snapshot.created() {
                "made by this test"
            } else {
                "found"
            };
            let note = format!(
                "started from snapshot {name:?} ({how}): {}",
                snapshot.dir().display()
            );
            Ok(Prepared { snapshot, note })
        }
        Err(e) => {
            let message = BodyError::from_error(&e).message;
            let message = match &e {
                SnapshotError::Create { .. } => format!(
                    "{message}\n(the snapshot's boot: qemu.log, console.log, qmp.jsonl in that directory)"
                ),
                _ => message,
            };
            *failed = Some(format!("(in test {}) {message}", case.name));
            Err(message)
        }
    }
}

/// What gets the snapshot's VM ready: the test's `setup`, else the
/// built-in guest's ready marker on the console.
fn readiness(name: &str, case: &TestCase, spec: &VmSpec) -> Result<Readiness, String> {
    match (case.def.setup, spec.builtin_guest().and_then(|g| g.ready)) {
        (Some(setup), _) => Ok(Readiness::Setup(setup)),
        (None, Some(marker)) if spec.console.is_some() => Ok(Readiness::Marker(marker)),
        (None, Some(_)) => Err(format!(
            "snapshot = {name:?}: the snapshot is saved once the guest prints its ready marker on the console, \
             but the test has no console; add `console` (or a `setup = path::to::fn`)"
        )),
        (None, None) => Err(format!(
            "snapshot = {name:?} needs `setup = path::to::fn` (a fn(&mut Vm) -> TestResult that gets \
             the VM ready to be saved, e.g. waits for its shell): the kernel is not a built-in guest \
             with a known ready marker"
        )),
    }
}

/// Makes one snapshot: boots the VM, gets it ready, saves it.
struct Maker<'a> {
    name: &'a str,
    case: &'a TestCase,
    plan: &'a Plan,
    args: &'a [String],
    readiness: Readiness,
    ctx: &'a Context,
}

impl Maker<'_> {
    /// Boots under the test's timeout (with a host budget of its own), gets
    /// the VM ready on the watchdog's terms, saves it to `state` and shuts
    /// it down; the boot's logs go to `logs`. QEMU is killed on any failure.
    fn make(&self, state: &Path, logs: &Path) -> Result<(), BoxError> {
        let spec = &self.plan.spec;
        let _slots = scheduler(self.ctx.config.jobs)
            .acquire(Need::for_vm(spec.smp.cpus(), spec.memory_mib()));
        let mut machine = build_machine(self.plan, self.args.to_vec(), logs)?;
        machine.map_ram_for_saving(state);
        let timeout = spec.timeout;
        let deadline = deadline_after(timeout);
        machine.set_deadline(Some(deadline));
        machine.launch()?;
        let kill = killer(&machine);
        // A setup starts no siblings (they would not be in the snapshot).
        let template = SiblingTemplate {
            plan: self.plan.clone(),
            args: self.args.to_vec(),
            deadline,
            dir: logs.to_path_buf(),
            test: self.case.name.clone(),
            cwd: self.ctx.cwd.clone(),
            timeline: Default::default(),
            devices: Default::default(),
        };
        let vm = Vm::new(
            machine,
            logs.to_path_buf(),
            format!("snapshot {}", self.name),
            Siblings::new(template, 0),
            Default::default(),
            Default::default(),
        );
        let thread = format!("{}/snapshot-{}", self.case.name, self.name);
        let (vm, end) = match self.readiness {
            Readiness::Setup(setup) => run_body(&thread, (deadline, timeout), vm, setup.run, kill),
            Readiness::Marker(marker) => {
                let wait =
                    move |vm: &mut Vm| match vm.console().with_timeout(timeout).wait_for(marker) {
                        Ok(_) => BodyResult::Passed,
                        Err(e) => BodyResult::Failed(BodyError::from_error(&e)),
                    };
                run_body(&thread, (deadline, timeout), vm, wait, kill)
            }
        }?;
        let mut vm = vm.ok_or("the setup's thread had to be abandoned")?;
        if let Some(failure) = setup_failure(end, timeout) {
            vm.kill();
            return Err(failure.into());
        }
        vm.set_deadline(None);
        let saved: Result<(), BoxError> = vm
            .save_state(state, SAVE_TIMEOUT)
            .map_err(Into::into)
            .and_then(|()| vm.teardown().map_err(Into::into));
        if saved.is_err() {
            vm.kill();
        }
        saved
    }
}

/// Why getting the VM ready failed, if it did.
fn setup_failure(end: BodyEnd, timeout: Duration) -> Option<String> {
    match end {
        BodyEnd::Passed => None,
        BodyEnd::Failed(said) => Some(format!("the setup failed: {}", said.message)),
        BodyEnd::Skipped(reason) => Some(format!(
            "the setup skipped (a setup cannot skip its tests): {reason}"
        )),
        BodyEnd::Crashed { crash, .. } => Some(format!("the guest crashed in the setup: {crash}")),
        BodyEnd::TimedOut { said, .. } => Some(format!(
            "the setup did not finish within the test's timeout ({}){}",
            seconds(timeout),
            said.map(|s| format!(": {}", s.message)).unwrap_or_default()
        )),
    }
}

/// The snapshot's key: the test machine's, plus what gets it ready.
fn key(
    name: &str,
    plan: &Plan,
    args: &[String],
    readiness: Readiness,
    ctx: &Context,
) -> Result<SnapshotKey, SnapshotError> {
    // Where the logs go is not part of the key.
    let machine = build_machine(plan, args.to_vec(), &ctx.root).map_err(|e| SnapshotError::Io {
        context: format!("cannot describe the snapshot's machine: {e}"),
        source: std::io::Error::other(e.to_string()),
    })?;
    let key = machine.snapshot_key(name)?;
    Ok(match readiness {
        Readiness::Marker(marker) => key.with("ready", marker),
        Readiness::Setup(setup) => {
            let exe = std::env::current_exe().unwrap_or_default();
            key.with("setup", setup.path)
                .with("test-binary", file_identity(&exe))
        }
    })
}
