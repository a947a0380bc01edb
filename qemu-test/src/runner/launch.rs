//! A test's machine from its plan: the arguments its VM gets and where its
//! logs go. Used for the test's own VM and for the VM that makes its booted
//! snapshot.

use std::path::Path;

use crate::machine::Machine;
use crate::runner::resolve::Plan;
use crate::spec::VmSpec;

/// The arguments a spec's VM gets (`-snapshot` too when it starts from a
/// booted snapshot: its disks must be as they were when the state was
/// saved, so no test may write to them).
pub(crate) fn vm_args(spec: &VmSpec, accel: &str) -> std::io::Result<Vec<String>> {
    let mut args = spec.qemu_args(Some(accel))?;
    if spec.snapshot.is_some() {
        args.push("-snapshot".into());
    }
    Ok(args)
}

/// A machine for `plan`, not launched, with `args` and its logs
/// (`qemu.log`, `console.log`, `qmp.jsonl`) in `log_dir`.
pub(crate) fn build_machine(plan: &Plan, args: Vec<String>, log_dir: &Path) -> Machine {
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
    machine.set_qmp_monitor(spec.qmp);
    machine
}
