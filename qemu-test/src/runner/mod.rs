//! The test runner: registration, scheduling, per-test artifact
//! directories, reports.
//!
//! `qemu_test::main!()` expands to a `main` calling [`run_suite`] with the
//! binary's package and target names, which runs every `#[qemu_test]` of
//! the binary through libtest-mimic.
//! One file per stage, in the order a test meets them:
//!
//! | module | concern |
//! | --- | --- |
//! | `registry` | what `#[qemu_test]` expands to ([`registry::TestDef`]) |
//! | `env` | the `QEMU_TEST_*` variables, parsed once |
//! | `harness` | libtest-mimic glue: cases → trials → run → reports |
//! | `case` | a registered test ready to run, and what all tests share |
//! | `resolve` | spec → QEMU binary, accelerator, or why it cannot run (missing here: skip; a wrong name: error) |
//! | `requirements` | a test's `requires`, checked against this host |
//! | `path` | finding programs on `QEMU_TEST_QEMU_DIR` and `PATH` |
//! | `catalog` | what a QEMU binary has (machines, CPUs, devices), cached; near matches for a typo |
//! | `accel` | the KVM probe (does KVM really run a guest here?) |
//! | `booted` | `snapshot = "name"`: find or make the booted snapshot a test starts from |
//! | `scheduler` | the host budget (vCPUs, memory), shared across processes with slot files |
//! | `artifacts` | artifact dirs, `cmdline.txt`, `repro.sh` |
//! | `launch` | a test's machine: its arguments and logs |
//! | `share` | a test's host shares and host programs: attached, mounted, installed |
//! | `network` | a test's networks and port forwards: made, attached, the guest side set up |
//! | `trial` | one test: admit, launch, body, judge, tear down, collect |
//! | `watchdog` | a body on its own thread under the test's deadline |
//! | `vm` | [`Vm`], what a test body receives |
//! | `sibling` | more machines in one test, configured like its own ([`Sibling`]) |
//! | `evidence` | what a failing test keeps besides its logs: `screen.png` |
//! | `pause` | `QEMU_TEST_ON_FAILURE=pause`: the VM, its console and a gdbstub for a person |
//! | `gdb` | `QEMU_TEST_GDB`: a test's VM halted until gdb lets it run |
//! | `terminal` | the person at the terminal, for pause and gdb |
//! | `outcome` | the typed result every report reads: [`Skip`], outcomes, failures |
//! | `report` | the skip summary and the JUnit XML report |
//! | `state` | the runner's host-wide state dir |
//! | `cache_arg` | `--qemu-test-cache list\|prune\|prune-all`: the caches instead of tests |
//! | `assets_arg` | `--qemu-test-assets list\|fetch`: the declared assets the selected tests need, as JSON |
//!
//! The configuration (all environment variables):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `QEMU_TEST_QEMU_DIR` | where to look for `qemu-system-*` before `PATH` |
//! | `QEMU_TEST_ACCEL` | `kvm`, `tcg` or `auto`: overrides every test's `accel` |
//! | `QEMU_TEST_KEEP` | keep artifact dirs: `failed` (default), `always`, `never` |
//! | `QEMU_TEST_ARTIFACTS` | root of the artifact dirs (default `<target>/qemu-test`) |
//! | `QEMU_TEST_REQUIRE` | `1`: every skip fails instead (a missing binary, accelerator or guest image; a `Skip` from the body) |
//! | `QEMU_TEST_JUNIT` | a directory: each test binary writes its JUnit XML report there (`<package>.<binary>.xml`); not under nextest |
//! | `QEMU_TEST_JOBS` | vCPUs running at once, host-wide (default: the number of cores) |
//! | `QEMU_TEST_ON_FAILURE` | `pause`: keep a failed test's VM running until Enter, its console on a socket |
//! | `QEMU_TEST_TIMEOUT_FACTOR` | scales every test's deadline (a slow host: `3`) |
//! | `QEMU_TEST_GDB` | `1` or a test's name: its VM starts halted, waiting for gdb (needs a terminal) |
//! | `QEMU_TEST_VMLINUX` | a vmlinux with debug symbols, for the printed `gdb` command |
//! | `QEMU_TEST_OFFLINE` | `1`: download no declared asset; tests whose assets are not in the cache are skipped |

mod accel;
mod artifacts;
mod assets_arg;
mod booted;
mod cache_arg;
mod case;
mod catalog;
mod env;
mod evidence;
mod gdb;
mod harness;
mod launch;
mod network;
pub(crate) mod outcome;
mod path;
mod pause;
pub mod registry;
mod report;
mod requirements;
mod resolve;
mod scheduler;
mod share;
mod sibling;
mod state;
mod terminal;
mod trial;
mod vm;
mod watchdog;

pub use outcome::Skip;
pub use sibling::Sibling;
pub use vm::Vm;

/// Runs every `#[qemu_test]` registered in this binary, with libtest's
/// command line (`std::env::args`), as the test binary `binary` of the
/// package `package`; what `qemu_test::main!()` calls, with the names cargo
/// gives the crate it expands in.
///
/// The two names place the binary's artifact dirs
/// (`<root>/<package>/<binary>/<test>/`) and its JUnit report
/// (`<package>.<binary>.xml`), so that no two test binaries of a
/// workspace share either.
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
///     // What `qemu_test::main!()` expands to, near enough.
///     qemu_test::runner::run_suite(env!("CARGO_PKG_NAME"), env!("CARGO_CRATE_NAME"))
/// }
/// ```
pub fn run_suite(package: &str, binary: &str) -> std::process::ExitCode {
    // `--qemu-test-cache COMMAND` lists or prunes the caches instead.
    let command_line: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = cache_arg::intercept(&command_line) {
        return code;
    }
    // `--qemu-test-assets list|fetch` lists or fetches the tests' assets.
    if let Some(code) = assets_arg::intercept(&registry::TESTS, &command_line) {
        return code;
    }
    let id = harness::Identity {
        package: package.to_string(),
        binary: binary.to_string(),
    };
    harness::run(&registry::TESTS, id, libtest_mimic::Arguments::from_args())
}

/// Like [`run_suite`], with the names found at run time: the package from
/// `CARGO_PKG_NAME` (which `cargo test` and `cargo nextest run` set for
/// the test processes they start; `unknown-package` without it), the
/// binary from the executable's file name (less the hash cargo appends).
/// Prefer [`run_suite`] or `qemu_test::main!()`, which know both when the
/// binary is built.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     qemu_test::runner::run_registered()
/// }
/// ```
pub fn run_registered() -> std::process::ExitCode {
    let package = std::env::var("CARGO_PKG_NAME")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "unknown-package".to_string());
    run_suite(&package, &artifacts::binary_name())
}
