//! A test's machine from its plan: the arguments its VM gets and where its
//! logs go. Used for the test's own VM and for the VM that makes its booted
//! snapshot.

use std::path::Path;

use crate::error::GuestError;
use crate::guest::Load;
use crate::machine::Machine;
use crate::runner::resolve::Plan;
use crate::spec::VmSpec;

/// The arguments a spec's VM gets: the spec's own, the crash reporting
/// ([`crash_reporting`]), and `-snapshot` when it starts from a booted
/// snapshot (its disks must be as they were when the state was saved, so no
/// test may write to them).
pub(crate) fn vm_args(spec: &VmSpec, accel: &str) -> std::io::Result<Vec<String>> {
    let own = spec.qemu_args(Some(accel))?;
    // First: the test's own arguments stay last, as it wrote them.
    let mut args = crash_reporting(spec, &own);
    args.extend(own);
    if spec.snapshot.is_some() {
        args.push("-snapshot".into());
    }
    Ok(args)
}

/// On a machine with PCI: a `pvpanic-pci` device, so that QEMU reports a
/// guest kernel panic (`GUEST_PANICKED`) even without a console (in a guest
/// with the `pvpanic-pci` driver), and `-action panic=pause`,
/// which keeps the crashed VM for a screenshot or a person instead of
/// QEMU's default of shutting it down. Not added when the test's own
/// arguments deal with either.
fn crash_reporting(spec: &VmSpec, args: &[String]) -> Vec<String> {
    let own = args.iter().any(|a| a.contains("pvpanic") || a == "-action");
    if !has_pci(spec) || own {
        return Vec::new();
    }
    ["-device", "pvpanic-pci", "-action", "panic=pause"]
        .map(String::from)
        .to_vec()
}

/// Whether the spec's machine has PCI: `q35`, `pc`, Arm `virt`, and their
/// versions.
fn has_pci(spec: &VmSpec) -> bool {
    let Some(machine) = spec.effective_machine() else {
        return false;
    };
    let machine = machine.split(',').next().unwrap_or(machine);
    let family = |base: &str| machine == base || machine.starts_with(&format!("{base}-"));
    match spec.effective_arch() {
        Some("x86_64" | "i386") => family("q35") || family("pc"),
        Some("aarch64" | "arm") => family("virt"),
        _ => false,
    }
}

/// Whether the spec's VM gets a data channel: a built-in Linux guest
/// (whose initramfs runs the agent), on a machine with PCI.
fn has_agent(spec: &VmSpec) -> bool {
    let linux = spec
        .builtin_guest()
        .is_some_and(|g| matches!(g.load, Load::Linux(_)));
    linux && has_pci(spec)
}

/// A machine for `plan`, not launched, with `args` and its logs
/// (`qemu.log`, `console.log`, `qmp.jsonl`, `agent.log`) in `log_dir`,
/// where the files it has its own copy of are made too (a disk image's
/// overlay, the UEFI variable store: [`VmSpec::machine_files`]); their
/// arguments come first, so that a declared disk is the first of its
/// interface. A built-in Linux guest's machine gets a data channel for its
/// agent.
pub(crate) fn build_machine(
    plan: &Plan,
    args: Vec<String>,
    log_dir: &Path,
) -> Result<Machine, GuestError> {
    let spec = &plan.spec;
    let mut all = spec.machine_files(log_dir)?;
    all.extend(args);
    let mut machine = Machine::builder(plan.binary.to_string_lossy())
        .name("qemu")
        .log_dir(log_dir)
        .console_log(log_dir.join("console.log"))
        .qmp_log(log_dir.join("qmp.jsonl"))
        .agent_log(log_dir.join("agent.log"))
        .args(all)
        .build();
    if let Some(machine_type) = spec.effective_machine() {
        machine.set_machine(machine_type);
    }
    if let Some(console) = &spec.console {
        machine.set_console(console.device.as_deref(), console.index);
    }
    machine.set_qmp_monitor(spec.qmp);
    if spec.snapshot.is_some() {
        // The snapshot is saved without NICs: restores hot-plug them.
        machine.set_hotplug_ports(spec.hotplug_devices());
    }
    machine.set_data_channel(has_agent(spec));
    Ok(machine)
}
