//! The test runner: registration, scheduling, per-test artifact
//! directories, reports.
//!
//! `qemu_test::main!()` expands to a `main` calling [`run_registered`],
//! which runs every `#[qemu_test]` of the binary through libtest-mimic.
//! One file per stage, in the order a test meets them:
//!
//! | module | concern |
//! | --- | --- |
//! | `registry` | what `#[qemu_test]` expands to ([`registry::TestDef`]) |
//! | `env` | the `QEMU_TEST_*` variables, parsed once |
//! | `harness` | libtest-mimic glue: cases → trials → run → reports |
//! | `case` | a registered test ready to run, and what all tests share |
//! | `resolve` | spec → QEMU binary, machine type, accelerator, or why it cannot run |
//! | `accel` | the KVM probe (does KVM really run a guest here?) |
//! | `booted` | `snapshot = "name"`: find or make the booted snapshot a test starts from |
//! | `scheduler` | the host budget (vCPUs, memory), shared across processes with slot files |
//! | `artifacts` | artifact dirs, `cmdline.txt`, `repro.sh` |
//! | `launch` | a test's machine: its arguments and logs |
//! | `trial` | one test: admit, launch, body, judge, tear down, collect |
//! | `watchdog` | a body on its own thread under the test's deadline |
//! | `vm` | [`Vm`], what a test body receives |
//! | `sibling` | more machines in one test, configured like its own ([`Sibling`]) |
//! | `pause` | `QEMU_TEST_ON_FAILURE=pause` |
//! | `outcome` | the typed result every report reads: [`Skip`], outcomes, failures |
//! | `report` | the skip summary and the JUnit XML report |
//! | `state` | the runner's host-wide state dir |
//!
//! The configuration (all environment variables):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `QEMU_TEST_QEMU_DIR` | where to look for `qemu-system-*` before `PATH` |
//! | `QEMU_TEST_ACCEL` | `kvm`, `tcg` or `auto`: overrides every test's `accel` |
//! | `QEMU_TEST_KEEP` | keep artifact dirs: `failed` (default), `always`, `never` |
//! | `QEMU_TEST_ARTIFACTS` | root of the artifact dirs (default `<target>/qemu-test`) |
//! | `QEMU_TEST_REQUIRE` | `1`: a missing binary, machine type or accelerator fails instead of skipping |
//! | `QEMU_TEST_JUNIT` | write a JUnit XML report there |
//! | `QEMU_TEST_JOBS` | vCPUs running at once, host-wide (default: the number of cores) |
//! | `QEMU_TEST_ON_FAILURE` | `pause`: keep a failed test's VM running until Enter |
//! | `QEMU_TEST_TIMEOUT_FACTOR` | scales every test's deadline (a slow host: `3`) |

mod accel;
mod artifacts;
mod booted;
mod case;
mod env;
mod harness;
mod launch;
pub(crate) mod outcome;
mod pause;
pub mod registry;
mod report;
mod resolve;
mod scheduler;
mod sibling;
mod state;
mod trial;
mod vm;
mod watchdog;

pub use outcome::Skip;
pub use sibling::Sibling;
pub use vm::Vm;

/// Runs every `#[qemu_test]` registered in this binary, with libtest's
/// command line (`std::env::args`); what `qemu_test::main!()` calls.
///
/// ```no_run
/// // tests/vm.rs, with `harness = false` in Cargo.toml:
/// use qemu_test::prelude::*;
///
/// #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64)]
/// fn boots(vm: &mut Vm) -> TestResult {
///     vm.console().wait_for("login:")?;
///     Ok(())
/// }
///
/// fn main() -> std::process::ExitCode {
///     // What `qemu_test::main!()` expands to.
///     qemu_test::runner::run_registered()
/// }
/// ```
pub fn run_registered() -> std::process::ExitCode {
    harness::run(&registry::TESTS, libtest_mimic::Arguments::from_args())
}
