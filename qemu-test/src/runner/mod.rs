//! Test registration, scheduling, per-test artifact directories, reports.
//!
//! (Being written: see issue 3.)

pub mod registry;

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use crate::machine::Machine;

/// What a test body receives: a launched [`Machine`] plus its artifact
/// directory. Derefs to the machine.
#[derive(Debug)]
pub struct Vm {
    machine: Machine,
    artifacts: PathBuf,
}

impl Vm {
    /// The test's artifact directory.
    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }
}

impl Deref for Vm {
    type Target = Machine;
    fn deref(&self) -> &Machine {
        &self.machine
    }
}

impl DerefMut for Vm {
    fn deref_mut(&mut self) -> &mut Machine {
        &mut self.machine
    }
}

/// Runs every registered test; what `qemu_test::main!()` calls.
pub fn run_registered() -> std::process::ExitCode {
    unimplemented!("runner: issue 3")
}
