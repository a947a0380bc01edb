//! `cargo xtask demo`: set the host up, run the quick-start example suite
//! (`cargo run -p qemu-test-examples --example quickstart`) on real VMs, and
//! explain what happened and where the artifacts are.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{setup, util};

const PACKAGE: &str = "qemu-test-examples";
const EXAMPLE: &str = "quickstart";

/// Whether the workspace declares the quick-start example, from `cargo
/// metadata`.
fn example_declared(meta: &serde_json::Value) -> bool {
    let Some(packages) = meta["packages"].as_array() else {
        return false;
    };
    packages
        .iter()
        .filter(|p| p["name"] == PACKAGE)
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .any(|t| {
            t["name"] == EXAMPLE
                && t["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k == "example"))
        })
}

/// Test directories (`<root>/<binary>/<test>/`) changed since `since`.
fn fresh_test_dirs(root: &Path, since: SystemTime) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(binaries) = std::fs::read_dir(root) else {
        return found;
    };
    for binary in binaries.flatten().filter(|e| e.path().is_dir()) {
        let Ok(tests) = std::fs::read_dir(binary.path()) else {
            continue;
        };
        for test in tests.flatten().filter(|e| e.path().is_dir()) {
            let modified = test.metadata().and_then(|m| m.modified()).ok();
            if modified.is_some_and(|m| m >= since) {
                found.push(test.path());
            }
        }
    }
    found.sort();
    found
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Runs the demo; see the module docs.
pub fn demo() -> Result<(), String> {
    setup::setup(setup::Options::default())?;
    let meta = util::cargo_metadata()?;
    if !example_declared(&meta) {
        return Err(format!(
            "the quick-start example is not in this checkout yet: expected an example target `{EXAMPLE}` \
             in package `{PACKAGE}` (examples/Cargo.toml, source examples/{EXAMPLE}.rs). \
             Nothing to demo; `cargo xtask test` runs the framework's own VM tests."
        ));
    }
    let target = meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(util::target_dir);
    let artifacts = util::artifacts_root(&target);
    // Keep every test's artifacts so there is something to look at.
    let keep_set = std::env::var_os("QEMU_TEST_KEEP").is_some();
    let since = SystemTime::now();
    // The example's own `main` is the runner (`qemu_test::main!()`), so
    // `cargo run` runs it whatever its `[[example]]` entry says (`cargo
    // test --example` would need `harness = false` there).
    let mut cmd = util::cargo();
    cmd.args(["run", "-p", PACKAGE, "--example", EXAMPLE]);
    if !keep_set {
        cmd.env("QEMU_TEST_KEEP", "always");
    }
    println!("\n==> running the quick-start suite (examples/{EXAMPLE}.rs) on real QEMU VMs\n");
    let result = util::run(&mut cmd);

    println!("\n==> what just happened");
    println!(
        "cargo built examples/{EXAMPLE}.rs, a suite of `#[qemu_test]` functions whose `main` \
         (`qemu_test::main!()`) is qemu-test's runner. For each test the runner started a real \
         QEMU, connected its QMP monitor and serial console, ran the test body against the \
         booted VM, then shut QEMU down. libtest's flags work after `--`, e.g. \
         `cargo run -p {PACKAGE} --example {EXAMPLE} -- --list`. In your own crate the same file \
         is a `[[test]]` with `harness = false`, run by `cargo test`."
    );
    println!();
    if keep_set {
        println!(
            "Artifacts root: {} (QEMU_TEST_KEEP is set by you, so its rules apply).",
            artifacts.display()
        );
    } else {
        println!(
            "Artifacts root: {} (kept for every test because the demo set QEMU_TEST_KEEP=always; \
             normally only failed tests keep theirs).",
            artifacts.display()
        );
    }
    // `<root>/<package>/<binary>/<test>/`.
    let dirs = fresh_test_dirs(&artifacts.join(PACKAGE), since);
    if dirs.is_empty() {
        println!("No artifact directories were written by this run.");
    } else {
        println!("Written by this run (one directory per test):");
        for dir in dirs.iter().take(12) {
            let shown = dir.strip_prefix(util::workspace_root()).unwrap_or(dir);
            println!("  {}/  {}", shown.display(), file_names(dir).join("  "));
        }
        if dirs.len() > 12 {
            println!("  … and {} more", dirs.len() - 12);
        }
        println!(
            "Each holds QEMU's output, the console log, the QMP transcript, the test's timeline \
             (timeline.jsonl: each step with its time) and a script to relaunch the VM by hand."
        );
    }
    let index = artifacts.join("index.html");
    if index.is_file() {
        println!(
            "The run's report, every test with its result and a failure's evidence on one page: {}",
            index.display()
        );
    }
    println!("\nNext: read examples/{EXAMPLE}.rs, then `cargo xtask test` runs the framework's own suite.");
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_example_target() {
        let meta = json!({"packages": [
            {"name": "qemu-test", "targets": [{"name": "quickstart", "kind": ["example"]}]},
            {"name": PACKAGE, "targets": [{"name": "qemu_test_examples", "kind": ["lib"]}]},
        ]});
        assert!(!example_declared(&meta), "wrong package");
        let meta = json!({"packages": [
            {"name": PACKAGE, "targets": [{"name": "quickstart", "kind": ["example"]}]},
        ]});
        assert!(example_declared(&meta));
    }
}
