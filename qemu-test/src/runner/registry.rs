//! Test registration: what `#[qemu_test]` expands to.
//!
//! Each attribute adds one [`TestDef`] to the [`TESTS`] distributed slice
//! (linkme); `qemu_test::main!()` hands them all to the runner.

use crate::runner::outcome::{BodyError, BodyResult};
use crate::runner::Vm;
use crate::spec::VmSpec;

/// Every registered test in this binary.
#[linkme::distributed_slice]
pub static TESTS: [TestDef];

/// One registered test.
#[derive(Debug)]
pub struct TestDef {
    /// The function's name.
    pub name: &'static str,
    /// Which test of a matrix this is (`arch = ["x86_64", "aarch64"]`):
    /// `x86_64`, `x86_64::q35`; the test's name ends with it.
    pub variant: Option<&'static str>,
    /// `module_path!()` at the function.
    pub module_path: &'static str,
    /// `file!()`.
    pub file: &'static str,
    /// `line!()`.
    pub line: u32,
    /// Builds the VM description.
    pub spec: fn() -> VmSpec,
    /// The test body.
    pub body: Body,
    /// `ignore` (with an optional reason).
    pub ignore: Option<&'static str>,
    /// `should_fail`.
    pub should_fail: ShouldFail,
    /// `setup = path`: what gets a `snapshot`'s VM ready to be saved.
    pub setup: Option<Setup>,
}

/// A snapshot's setup function (`#[qemu_test(snapshot = "...", setup = path)]`).
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// The function's path as written, with the test's module path
    /// (part of the snapshot key).
    pub path: &'static str,
    /// The function, its result converted like a body's.
    pub run: fn(&mut Vm) -> BodyResult,
}

/// A test body.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// A body that gets a launched VM.
    Vm(fn(&mut Vm) -> BodyResult),
    /// A body without a VM (`#[qemu_test(no_vm)]`).
    Plain(fn() -> BodyResult),
}

/// Whether a test is expected to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShouldFail {
    /// It must pass.
    No,
    /// It must fail (return `Err` or panic).
    Yes,
    /// It must fail with a message containing this text.
    WithMessage(&'static str),
}

/// Converts what a test body returns into what the runner judges: `()`
/// and `Ok(())` pass; `Err(e)` fails with `e` (shown with `Display` and its
/// causes for errors and strings, else `Debug`, like libtest), or skips the
/// test if `e` is a [`Skip`](crate::Skip).
pub trait IntoOutcome {
    /// The conversion.
    fn into_outcome(self) -> BodyResult;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> BodyResult {
        BodyResult::Passed
    }
}

impl<E: std::fmt::Debug + 'static> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> BodyResult {
        match self {
            Ok(()) => BodyResult::Passed,
            Err(e) => BodyError::of(e),
        }
    }
}
