//! `cargo xtask test`'s `package` step: the two crates work from their
//! packaged sources alone.
//!
//! 1. `cargo package -p qemu-test-macros -p qemu-test --no-verify` writes
//!    the `.crate` files (the build below is the verification, and more:
//!    it runs tests);
//! 2. they are unpacked into a temp dir outside the repository;
//! 3. a fresh user crate there depends on the unpacked `qemu-test` by path,
//!    with `[patch.crates-io]` for the `qemu-test-macros` it names by
//!    version, so nothing comes from the workspace;
//! 4. `cargo test` in it runs the quick-start example
//!    (`examples/quickstart.rs`, echo-guest VM tests) and a command in the
//!    Linux guest through `vm.shell()`.
//!
//! The user crate builds into the workspace's target dir, with the
//! workspace's `Cargo.lock` and profiles, so the dependencies the suite
//! already compiled are reused and only the two unpacked crates and the
//! tests are compiled (nothing is downloaded: `--offline`). The unpacked
//! crates sit at the same place relative to the user crate on every run, so
//! their artifacts replace the previous run's instead of piling up.
//!
//! [`check`] returns what it printed, so that `cargo xtask test` can run it
//! next to the suite and show its output afterwards.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util;

/// The crates packaged, in dependency order.
const CRATES: [&str; 2] = ["qemu-test-macros", "qemu-test"];

/// A Linux-guest test for the user crate: a shell command in the guest.
const LINUX_TEST: &str = r#"//! The Linux guest, from the packaged crate.
use qemu_test::prelude::*;

#[qemu_test(console, kernel = guest::LINUX_X86_64, timeout = "180s")]
fn shell_runs_in_the_linux_guest(vm: &mut Vm) -> TestResult {
    let sh = vm.shell();
    assert_eq!(sh.succeed("uname -s")?.trim(), "Linux");
    let out = sh.run("echo out; echo err >&2; exit 3")?;
    assert_eq!((out.status, out.stdout.as_str(), out.stderr.as_str()), (3, "out\n", "err\n"));
    Ok(())
}

qemu_test::main!();
"#;

/// What the check printed, and whether it passed.
pub struct Report {
    pub log: String,
    pub result: Result<(), String>,
}

/// Runs the check; `require` exports `QEMU_TEST_REQUIRE=1` to the tests.
pub fn check(require: bool) -> Report {
    let mut log = String::new();
    let result = run(require, &mut log);
    Report { log, result }
}

fn run(require: bool, log: &mut String) -> Result<(), String> {
    let target = util::target_dir();
    let versions = versions()?;
    package(log)?;
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-package-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let crates = dir.path().join("crates");
    std::fs::create_dir_all(&crates).map_err(|e| format!("creating {}: {e}", crates.display()))?;
    for (name, version) in &versions {
        let file = target
            .join("package")
            .join(format!("{name}-{version}.crate"));
        let size = std::fs::metadata(&file)
            .map_err(|e| format!("{}: {e}", file.display()))?
            .len();
        let _ = writeln!(log, "{}: {:.1} KiB", file.display(), size as f64 / 1024.0);
        unpack(&file, &crates)?;
    }
    let user = dir.path().join("user");
    write_user_crate(&user, &versions)?;
    test_user_crate(&user, &target, require, log)
}

/// The workspace's versions of [`CRATES`].
fn versions() -> Result<Vec<(&'static str, String)>, String> {
    let meta = util::cargo_metadata()?;
    CRATES
        .iter()
        .map(|&name| {
            meta["packages"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name)
                .and_then(|p| p["version"].as_str())
                .map(|v| (name, v.to_string()))
                .ok_or_else(|| format!("cargo metadata lists no package {name}"))
        })
        .collect()
}

/// `cargo package` for both crates.
fn package(log: &mut String) -> Result<(), String> {
    let mut cmd = util::cargo();
    cmd.args(["package", "--no-verify", "--allow-dirty", "--offline"]);
    for name in CRATES {
        cmd.args(["-p", name]);
    }
    output(&mut cmd, log).map(drop)
}

/// Unpacks a `.crate` (a gzip'd tar) into `into`.
fn unpack(file: &Path, into: &Path) -> Result<(), String> {
    let mut cmd = Command::new("tar");
    cmd.arg("-xzf").arg(file).arg("-C").arg(into);
    output(&mut cmd, &mut String::new()).map(drop)
}

/// The user crate: the quick start and [`LINUX_TEST`] against the unpacked
/// crates, with the workspace's lock file and profiles.
fn write_user_crate(dir: &Path, versions: &[(&str, String)]) -> Result<(), String> {
    let path = |name: &str| {
        let version = versions
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str());
        format!("../crates/{name}-{version}")
    };
    let root = util::workspace_root();
    let manifest = format!(
        r#"[package]
name = "packaged-user"
version = "0.1.0"
edition = "2021"
publish = false

# Its own workspace, wherever the temp dir is.
[workspace]

[dev-dependencies]
qemu-test = {{ path = "{qemu_test}" }}

# qemu-test names the macros crate by version, as from a registry.
[patch.crates-io]
qemu-test-macros = {{ path = "{macros}" }}

[[test]]
name = "echo"
harness = false

[[test]]
name = "linux"
harness = false
"#,
        qemu_test = path("qemu-test"),
        macros = path("qemu-test-macros"),
    );
    let manifest = manifest + &profiles(&root.join("Cargo.toml"))?;
    let write = |rel: &str, text: &str| {
        let file = dir.join(rel);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&file, text).map_err(|e| format!("writing {}: {e}", file.display()))
    };
    let read = |rel: &str| {
        let file = root.join(rel);
        std::fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))
    };
    write("Cargo.toml", &manifest)?;
    write("src/lib.rs", "")?;
    write("tests/echo.rs", &read("examples/quickstart.rs")?)?;
    write("tests/linux.rs", LINUX_TEST)?;
    write("Cargo.lock", &read("Cargo.lock")?)
}

/// The `[profile.*]` sections of a manifest (they come last in the
/// workspace's), so that the user crate reuses what the suite compiled.
fn profiles(manifest: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("reading {}: {e}", manifest.display()))?;
    Ok(text
        .find("\n[profile.")
        .map(|at| text[at..].to_string())
        .unwrap_or_default())
}

/// `cargo test` in the user crate; it must pass and run every test.
fn test_user_crate(
    dir: &Path,
    target: &PathBuf,
    require: bool,
    log: &mut String,
) -> Result<(), String> {
    let mut cmd = util::cargo();
    cmd.args(["test", "--offline", "--test", "echo", "--test", "linux"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("QEMU_TEST_JUNIT");
    if require {
        cmd.env("QEMU_TEST_REQUIRE", "1");
    }
    let stdout = output(&mut cmd, log)?;
    let summaries: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect();
    for line in &summaries {
        let _ = writeln!(log, "{line}");
    }
    // Two test binaries, each with tests that ran and passed.
    let all_passed = summaries.len() == 2
        && summaries
            .iter()
            .all(|s| s.starts_with("test result: ok.") && !s.contains(" 0 passed"));
    if !all_passed {
        return Err(format!(
            "the user crate's two test binaries did not both run tests and pass:\n{stdout}"
        ));
    }
    Ok(())
}

/// Runs `cmd`, appends what it printed to `log`, and returns its stdout;
/// a failure is an error that shows the output.
fn output(cmd: &mut Command, log: &mut String) -> Result<String, String> {
    let shown = util::display(cmd);
    let _ = writeln!(log, "$ {shown}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`{shown}` failed ({}):\n{stdout}{stderr}",
            out.status
        ))
    }
}
