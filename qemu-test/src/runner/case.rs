//! A registered test, ready to run ([`TestCase`]: its definition, name,
//! spec and resolved VM), and what every test of the process shares
//! ([`Context`]). The harness makes them; a trial runs them.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::qemu_opts::target_arch;
use crate::runner::env::Config;
use crate::runner::outcome::Unrunnable;
use crate::runner::outcome::{Record, VmFacts};
use crate::runner::registry::{Body, TestDef};
use crate::runner::resolve::{AccelChoice, Plan};
use crate::spec::{Accel, VmSpec};

/// What is shared by every trial of the process.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) config: &'static Config,
    /// The artifact root.
    pub(crate) root: PathBuf,
    /// The package of the test binary.
    pub(crate) package: String,
    /// The test binary's name.
    pub(crate) binary: String,
    /// The directory the tests run in (for `repro.sh`).
    pub(crate) cwd: PathBuf,
    /// Every test's result, for the reports.
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
    /// Why a body without a VM cannot run here (a requirement not met).
    pub(crate) unmet: Option<Unrunnable>,
}

impl Context {
    /// Where this binary's artifact dirs go: `<root>/<package>/<binary>/`.
    pub(crate) fn binary_dir(&self) -> PathBuf {
        crate::runner::artifacts::binary_dir(&self.root, &self.package, &self.binary)
    }
}

impl TestCase {
    /// Why the test cannot run here, if it cannot (known when the tests
    /// are listed).
    pub(crate) fn unrunnable(&self) -> Option<&Unrunnable> {
        match &self.plan {
            Some(Err(why)) => Some(why),
            _ => self.unmet.as_ref(),
        }
    }

    /// Which VM the test runs in, for the reports: the binary found (else
    /// its name), the architecture, the machine type, and the accelerator
    /// chosen (else the one asked for). `None` for a test without a VM.
    pub(crate) fn vm_facts(&self, ctx: &Context, accel: Option<&AccelChoice>) -> Option<VmFacts> {
        if matches!(self.def.body, Body::Plain(_)) {
            return None;
        }
        let binary = match &self.plan {
            Some(Ok(plan)) => Some(plan.binary.clone()),
            _ => self.spec.qemu_binary_name().map(PathBuf::from),
        };
        let arch = self
            .spec
            .effective_arch()
            .or_else(|| binary.as_deref().and_then(target_arch))
            .map(str::to_string);
        let accel = match accel {
            Some(choice) => choice.value.clone(),
            None => accel_name(ctx.config.accel.as_ref().unwrap_or(&self.spec.accel)),
        };
        Some(VmFacts {
            binary: binary.map(|b| b.display().to_string()),
            arch,
            machine: self.spec.effective_machine().map(str::to_string),
            accel: Some(accel),
        })
    }
}

/// An accelerator as the attribute spells it.
fn accel_name(accel: &Accel) -> String {
    match accel {
        Accel::Auto => "auto".into(),
        Accel::Kvm => "kvm".into(),
        Accel::Tcg => "tcg".into(),
        Accel::Other(other) => other.clone(),
    }
}
