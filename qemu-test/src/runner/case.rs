//! A registered test, ready to run ([`TestCase`]: its definition, name,
//! spec and resolved VM), and what every test of the process shares
//! ([`Context`]). The harness makes them; a trial runs them.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::runner::env::Config;
use crate::runner::outcome::Record;
use crate::runner::registry::TestDef;
use crate::runner::resolve::{Plan, Unrunnable};
use crate::spec::VmSpec;

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
}
