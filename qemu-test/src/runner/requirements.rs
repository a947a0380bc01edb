//! Checking a test's [`requires`](crate::requires) against this host: the
//! test's QEMU (through its [catalog](super::catalog) of devices, netdev
//! backends and machine types), the accelerator (the KVM probe), `PATH`,
//! the locked-memory limit, and the test's own checks. The first one not
//! met is why the test is skipped; checked when the tests are listed, so
//! that a skip shows in `--list --ignored` (nextest, JUnit) too.

use std::path::Path;

use crate::requires::Requirement;
use crate::runner::accel;
use crate::runner::catalog::{self, Catalog};
use crate::runner::env::Config;
use crate::runner::outcome::Unrunnable;
use crate::runner::path::find_binary;

/// Checks `requires` in order; `binary` is the test's QEMU (`None` for a
/// test without a VM, which then cannot require anything of one).
pub(crate) fn check(
    requires: &[Requirement],
    binary: Option<&Path>,
    config: &Config,
) -> Result<(), Unrunnable> {
    for requirement in requires {
        check_one(requirement, binary, config)?;
    }
    Ok(())
}

fn check_one(
    requirement: &Requirement,
    binary: Option<&Path>,
    config: &Config,
) -> Result<(), Unrunnable> {
    let unmet = |why: String| {
        Err(Unrunnable::Missing(format!(
            "requires {requirement}: {why}"
        )))
    };
    match requirement {
        Requirement::Device(name) => listed(requirement, binary, Catalog::Devices, name),
        Requirement::Netdev(name) => listed(requirement, binary, Catalog::Netdevs, name),
        Requirement::Machine(name) => listed(requirement, binary, Catalog::Machines, name),
        Requirement::Accel(name) => match (name.as_str(), binary) {
            ("kvm", Some(binary)) => match accel::kvm_usable(binary) {
                Ok(()) => Ok(()),
                Err(unusable) => unmet(unusable.reason),
            },
            ("kvm", None) => Err(needs_a_qemu(requirement)),
            _ => Ok(()),
        },
        Requirement::Command(name) => match find_binary(name, config.qemu_dir.as_deref()) {
            Some(_) => Ok(()),
            None => unmet(format!("{name} is not on PATH")),
        },
        Requirement::Memlock(bytes) => match crate::os::memlock_limit() {
            Some(limit) if limit >= *bytes => Ok(()),
            Some(limit) => unmet(format!(
                "RLIMIT_MEMLOCK is {limit} bytes (raise it with `ulimit -l`, or in /etc/security/limits.conf)"
            )),
            None => unmet("RLIMIT_MEMLOCK cannot be read".into()),
        },
        Requirement::Check { check, .. } => match check() {
            Ok(()) => Ok(()),
            Err(why) => unmet(why),
        },
    }
}

/// A requirement of a name the test's QEMU lists: met when the list has
/// it, and when QEMU gives no list (the launch then tells).
fn listed(
    requirement: &Requirement,
    binary: Option<&Path>,
    catalog: Catalog,
    name: &str,
) -> Result<(), Unrunnable> {
    let Some(binary) = binary else {
        return Err(needs_a_qemu(requirement));
    };
    match catalog::names(binary, catalog) {
        Some(names) if !names.iter().any(|n| n == name) => Err(Unrunnable::Missing(format!(
            "requires {requirement}, which {} does not have",
            binary.display()
        ))),
        _ => Ok(()),
    }
}

fn needs_a_qemu(requirement: &Requirement) -> Unrunnable {
    Unrunnable::Invalid(format!(
        "requires {requirement}, a requirement of the test's QEMU, but a `no_vm` test has none; \
         give the test a VM or drop the requirement"
    ))
}
