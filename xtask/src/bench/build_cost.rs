//! P7, build cost: what depending on qemu-test adds to a user's cold build.
//!
//! Two crates are written to a temp dir outside the workspace, each with one
//! `harness = false` test:
//!
//! - ours: `qemu-test` as a path dependency on this workspace's crate, and
//!   one `#[qemu_test]` echo-guest test with `qemu_test::main!()`;
//! - raw: `libtest-mimic` and `serde_json`, the least a custom test harness
//!   that speaks QMP needs, and one `Trial` that parses a QMP reply.
//!
//! Each build is `cargo test --no-run --offline` into an empty target dir
//! of its own, with the default `dev` profile for both, the workspace's
//! `Cargo.lock` (so the same versions, and nothing is downloaded) and the
//! environment this command runs in, with `CARGO_INCREMENTAL=0`: a path
//! dependency is built incrementally (cargo treats it as the user's own
//! code), a crate from a registry never is, and incremental compilation
//! made qemu-test's own build about 30% slower. Both sides get it; their
//! one-test crates are too small for it to matter. Builds alternate (raw, ours, raw,
//! ours, …) and the table shows the medians of the wall times; the notes
//! add the CPU time of the build (cargo and every compiler, from
//! `/proc/self/stat`'s children times, which a busy host inflates less than
//! wall time) and the number of crates each build compiles, with the ones
//! only ours has.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::stats::{median_f64, ratio, Stats};
use super::table::{Check, Row};
use super::Options;
use crate::util;

/// The user crate's manifest; `{path}` is the workspace's `qemu-test`.
const OURS_MANIFEST: &str = r#"[package]
name = "p7-qemu-test-user"
version = "0.1.0"
edition = "2021"
publish = false

[dev-dependencies]
qemu-test = { path = "{path}" }

[[test]]
name = "vm"
harness = false
"#;

const OURS_TEST: &str = r#"use qemu_test::prelude::*;

#[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
fn boots_to_login(vm: &mut Vm) -> TestResult {
    vm.console().wait_for("login:")?;
    Ok(())
}

qemu_test::main!();
"#;

const RAW_MANIFEST: &str = r#"[package]
name = "p7-raw-user"
version = "0.1.0"
edition = "2021"
publish = false

[dev-dependencies]
libtest-mimic = "0.8"
serde_json = "1"

[[test]]
name = "vm"
harness = false
"#;

const RAW_TEST: &str = r##"use libtest_mimic::{Arguments, Trial};

fn main() {
    let args = Arguments::from_args();
    let trials = vec![Trial::test("boots_to_login", || {
        let reply: serde_json::Value =
            serde_json::from_str(r#"{"return": {"status": "running"}}"#).map_err(|e| e.to_string())?;
        assert_eq!(reply["return"]["status"], "running");
        Ok(())
    })];
    libtest_mimic::run(&args, trials).exit();
}
"##;

/// One cold build.
struct Build {
    wall: Duration,
    /// CPU time of cargo and the compilers, user + system.
    cpu: Duration,
    /// The packages compiled (the crate itself included), by name.
    crates: BTreeSet<String>,
}

/// Writes a crate with `manifest` and `tests/vm.rs` into `dir`.
fn write_crate(dir: &Path, manifest: &str, test: &str) -> Result<(), String> {
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    for sub in ["src", "tests"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| format!("creating {}: {e}", dir.join(sub).display()))?;
    }
    write(&dir.join("Cargo.toml"), manifest)?;
    write(&dir.join("src/lib.rs"), "")?;
    write(&dir.join("tests/vm.rs"), test)?;
    let lock = util::workspace_root().join("Cargo.lock");
    std::fs::copy(&lock, dir.join("Cargo.lock"))
        .map_err(|e| format!("copying {}: {e}", lock.display()))?;
    Ok(())
}

/// CPU time used so far by the children this process waited for.
fn children_cpu() -> Result<Duration, String> {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .map_err(|e| format!("reading /proc/self/stat: {e}"))?;
    // Fields after the command name: state is field 3, cutime 16, cstime 17.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> Result<u64, String> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("no field {n} in /proc/self/stat"))
    };
    let ticks = field(16)? + field(17)?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// The package name in a cargo package id: `registry+…#name@1.0.0`, or
/// `path+file:///…/name#0.1.0`.
fn package_name(id: &str) -> String {
    let (source, fragment) = id.rsplit_once('#').unwrap_or((id, ""));
    match fragment.split_once('@') {
        Some((name, _)) => name.to_string(),
        None => source.rsplit('/').next().unwrap_or(source).to_string(),
    }
}

/// A cold build of the crate in `dir`: an empty target dir, offline.
fn cold_build(dir: &Path) -> Result<Build, String> {
    let target = dir.join("target");
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .map_err(|e| format!("removing {}: {e}", target.display()))?;
    }
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args([
        "test",
        "--no-run",
        "--offline",
        "--quiet",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(dir)
    .env("CARGO_TARGET_DIR", &target)
    // As a registry dependency is built (see the module docs).
    .env("CARGO_INCREMENTAL", "0")
    .stdin(Stdio::null())
    .stderr(Stdio::piped());
    let cpu_before = children_cpu()?;
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", util::display(&cmd)))?;
    let wall = start.elapsed();
    let cpu = children_cpu()?.saturating_sub(cpu_before);
    if !out.status.success() {
        return Err(format!(
            "the cold build in {} failed ({}); a crate missing from cargo's cache \
             (`cargo fetch` in the workspace gets it):\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut crates = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" {
            if let Some(id) = message["package_id"].as_str() {
                crates.insert(package_name(id));
            }
        }
    }
    Ok(Build { wall, cpu, crates })
}

/// Runs P7; see the module docs.
pub(super) fn p7(opts: &Options) -> Result<(Row, String), String> {
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-p7-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let (ours_dir, raw_dir) = (dir.path().join("ours"), dir.path().join("raw"));
    let qemu_test = util::workspace_root().join("qemu-test");
    let path = qemu_test
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", qemu_test.display()))?;
    write_crate(&ours_dir, &OURS_MANIFEST.replace("{path}", path), OURS_TEST)?;
    write_crate(&raw_dir, RAW_MANIFEST, RAW_TEST)?;

    let (mut raw, mut ours) = (Vec::new(), Vec::new());
    for run in 1..=opts.build_runs {
        println!("P7: cold builds, run {run} of {}…", opts.build_runs);
        raw.push(cold_build(&raw_dir)?);
        ours.push(cold_build(&ours_dir)?);
    }
    let wall = |builds: &[Build]| Stats::of(&builds.iter().map(|b| b.wall).collect::<Vec<_>>());
    let cpu = |builds: &[Build]| {
        median_f64(
            &builds
                .iter()
                .map(|b| b.cpu.as_secs_f64())
                .collect::<Vec<_>>(),
        )
    };
    let (raw_wall, ours_wall) = (wall(&raw), wall(&ours));
    let (raw_cpu, ours_cpu) = (cpu(&raw), cpu(&ours));
    let (raw_crates, ours_crates) = (&raw[0].crates, &ours[0].crates);
    let only_ours: Vec<&str> = ours_crates
        .difference(raw_crates)
        .map(String::as_str)
        .collect();
    let row = Row {
        id: "P7",
        what: "cold build of a one-test crate (`cargo test --no-run`, dev profile, offline)".into(),
        raw: format!(
            "{} ({} crates, libtest-mimic + serde_json)",
            util::human(raw_wall.median),
            raw_crates.len()
        ),
        ours: format!(
            "{} ({} crates, qemu-test)",
            util::human(ours_wall.median),
            ours_crates.len()
        ),
        ratio: Some(ratio(ours_wall.median, raw_wall.median)),
        instructions: None,
        target: "≤ 2",
        checks: vec![Check::at_most(
            "time",
            ratio(ours_wall.median, raw_wall.median),
            2.0,
        )],
        host: None,
        note: format!(
            "medians of {} cold builds per side, interleaved; CPU time {ours_cpu:.1} s vs \
             {raw_cpu:.1} s ({:.2}×); {} cores",
            opts.build_runs,
            ours_cpu / raw_cpu.max(f64::EPSILON),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        ),
    };
    let detail = format!(
        "P7 raw:  {}\nP7 ours: {}\nP7 CPU time (cargo + compilers), raw: {}\nP7 CPU time, ours: {}\n\
         P7 crates only ours builds ({}): {}\n",
        raw_wall.line(),
        ours_wall.line(),
        seconds(&raw),
        seconds(&ours),
        only_ours.len(),
        only_ours.join(", "),
    );
    Ok((row, detail))
}

/// Each build's CPU time, in seconds.
fn seconds(builds: &[Build]) -> String {
    let each: Vec<String> = builds
        .iter()
        .map(|b| format!("{:.1} s", b.cpu.as_secs_f64()))
        .collect();
    each.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_from_ids() {
        assert_eq!(
            package_name(
                "registry+https://github.com/rust-lang/crates.io-index#serde_json@1.0.154"
            ),
            "serde_json"
        );
        assert_eq!(
            package_name("path+file:///tmp/qemu-test-p7-x/ours#p7-qemu-test-user@0.1.0"),
            "p7-qemu-test-user"
        );
        assert_eq!(
            package_name("path+file:///work/qemu-test/qemu-test#0.1.0"),
            "qemu-test"
        );
    }

    #[test]
    fn children_cpu_reads_proc() {
        assert!(children_cpu().is_ok());
    }
}
