//! P4: booted snapshots of the Linux guest against cold boots.
//!
//! - Time to the first successful `succeed("true")`: a QEMU started from
//!   the snapshot (`Machine::launch_snapshot`, snapshot already made) vs one
//!   that boots the guest, interleaved, medians compared (target: restore
//!   ≤ 5% of a cold boot).
//! - A 20-test Linux suite (`tests/linux_bench.rs`, built in debug like
//!   any user's tests) with and without `snapshot`: wall times of `cold::`
//!   and `snapshot::` runs with the snapshot already made (target ≥ 8×
//!   faster), plus a first run that has to make it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu_test::snapshot::SnapshotStore;
use qemu_test::{guest, Machine, Shell};

use crate::util;

/// What P4 measured.
pub struct P4 {
    /// Launch → first `succeed("true")`, from the snapshot.
    pub restore: Vec<Duration>,
    /// Launch → first `succeed("true")`, booting.
    pub cold: Vec<Duration>,
    /// The 20-test suite booting every VM.
    pub suite_cold: Duration,
    /// The suite from the snapshot, including making it.
    pub suite_first: Duration,
    /// The suite from the snapshot, already made.
    pub suite_warm: Duration,
}

/// The Linux guest's machine, not launched.
fn linux_machine(qemu: &Path, files: &guest::PrebuiltFiles) -> Machine {
    let mut vm = Machine::builder(qemu.to_string_lossy())
        .args(["-accel", "tcg", "-snapshot", "-kernel"])
        .arg(files.kernel.to_string_lossy())
        .arg("-initrd")
        .arg(files.initrd.to_string_lossy())
        .args(["-append", files.append])
        .build();
    vm.set_machine("q35").set_console(None, 0);
    vm
}

/// Launch (cold or from `store`) → the shell's first answer.
fn first_command(
    qemu: &Path,
    files: &guest::PrebuiltFiles,
    store: Option<&SnapshotStore>,
) -> Result<Duration, String> {
    let mut vm = linux_machine(qemu, files);
    let start = Instant::now();
    match store {
        Some(store) => {
            let key = vm.snapshot_key("p4").map_err(|e| format!("{e:?}"))?;
            vm.launch_snapshot(store, &key, |vm| {
                vm.console()
                    .with_timeout(Duration::from_secs(120))
                    .wait_for(guest::LINUX_READY)?;
                Ok(())
            })
            .map_err(|e| format!("P4: launching from the snapshot: {e:?}"))?;
        }
        None => vm.launch().map_err(|e| format!("P4: launching: {e:?}"))?,
    }
    let shell = Shell::new(vm.console()).with_timeout(Duration::from_secs(120));
    shell
        .succeed("true")
        .map_err(|e| format!("P4: the first command: {e:?}"))?;
    let took = start.elapsed();
    vm.kill();
    Ok(took)
}

/// One run of the suite binary's tests matching `filter`, with artifacts
/// (and snapshots) under `root`: its wall time.
fn suite(exe: &Path, filter: &str, root: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let out = Command::new(exe)
        .arg(filter)
        .env("QEMU_TEST_ARTIFACTS", root)
        .env("QEMU_TEST_ACCEL", "tcg")
        .env_remove("QEMU_TEST_KEEP")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "P4: the suite `{filter}` failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(took)
}

/// Builds the suite binary (debug, as users run tests) and returns it.
fn build_suite() -> Result<PathBuf, String> {
    util::run(util::cargo().args([
        "build",
        "--quiet",
        "-p",
        "qemu-test-suite",
        "--bin",
        "linux-bench",
    ]))?;
    Ok(util::target_dir().join("debug").join("linux-bench"))
}

/// Measures P4 with `runs` first-command samples per side.
pub fn measure(qemu: &Path, runs: usize) -> Result<P4, String> {
    let files = guest::linux_x86_64().map_err(|e| format!("P4 needs the Linux guest: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("a temp dir: {e}"))?;
    let store = SnapshotStore::new(dir.path().join("snapshots"));
    // Make the snapshot first (not measured).
    first_command(qemu, &files, Some(&store))?;
    let (mut restore, mut cold) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        cold.push(first_command(qemu, &files, None)?);
        restore.push(first_command(qemu, &files, Some(&store))?);
    }

    let exe = build_suite()?;
    let root = dir.path().join("suite");
    let suite_first = suite(&exe, "snapshot::", &root)?;
    let suite_warm = suite(&exe, "snapshot::", &root)?;
    let suite_cold = suite(&exe, "cold::", &root)?;
    Ok(P4 {
        restore,
        cold,
        suite_cold,
        suite_first,
        suite_warm,
    })
}
