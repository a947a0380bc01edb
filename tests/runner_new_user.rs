//! qemu-test as a new user meets it when the dependency has another name: a
//! fresh crate outside the workspace depends on `qemu-test` as `qt`
//! (`qt = { package = "qemu-test", path = ... }`) and passes `cargo test`.
//!
//! - `tests/vm.rs` names the crate in each attribute (`crate = qt`, and
//!   `crate = ::qt` in a nested module): an echo-guest VM test, a `no_vm`
//!   test and a `should_fail` one.
//! - `tests/aliased.rs` renames it back once, with `extern crate qt as
//!   qemu_test;`, and uses the attribute without the key.
//!
//! (The quick-start example in a fresh crate, built from the packaged
//! `.crate` sources rather than the workspace, is `cargo xtask test`'s
//! `package` step.)
//!
//! The crate is written to a temp dir; it borrows the workspace's
//! `Cargo.lock`, profiles and target dir so that nothing is downloaded and
//! the dependencies already built are reused.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The target dir this test runs from (`<target>/debug/deps/<exe>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The `[profile.*]` sections of the manifest at `path` (they come last in
/// the workspace's), as text.
fn profiles(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.find("\n[profile.")
        .map(|at| text[at..].to_string())
        .unwrap_or_default()
}

const VM_TESTS: &str = r#"
use qt::prelude::*;

#[qemu_test(crate = qt, machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
fn console_exchange(vm: &mut Vm) -> TestResult {
    vm.console().wait_for("login:")?;
    vm.console().exec_and_wait("hello", "you said: hello")?;
    let status = vm.command("query-status", json!({}))?;
    assert_eq!(status["status"], "running");
    Ok(())
}

#[qemu_test(crate = qt, no_vm)]
fn plain() {
    assert_eq!(1 + 1, 2);
}

mod nested {
    use qt::prelude::*;

    #[qemu_test(crate = ::qt, no_vm, should_fail = "boom")]
    fn fails_as_expected() -> TestResult {
        Err("boom".into())
    }
}

qt::main!();
"#;

const ALIASED_TESTS: &str = r#"
extern crate qt as qemu_test;

use qemu_test::prelude::*;

#[qemu_test(no_vm)]
fn without_the_key() {}

qemu_test::main!();
"#;

#[test]
fn a_fresh_crate_with_a_renamed_dependency_passes_cargo_test() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"[package]
name = "my-vm-tests"
version = "0.1.0"
edition = "2021"
publish = false

[dev-dependencies]
qt = {{ package = "qemu-test", path = {path:?} }}

[[test]]
name = "vm"
harness = false

[[test]]
name = "aliased"
harness = false
"#,
        path = root.join("qemu-test").to_str().unwrap(),
    );
    // The workspace's profiles too, so that the dependencies it already
    // built are reused rather than rebuilt with other settings.
    let manifest = manifest + &profiles(&root.join("Cargo.toml"));
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), "").unwrap();
    std::fs::create_dir_all(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/vm.rs"), VM_TESTS).unwrap();
    std::fs::write(dir.path().join("tests/aliased.rs"), ALIASED_TESTS).unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();

    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--offline", "--tests"])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("QEMU_TEST_JUNIT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for test in [
        "console_exchange",
        "plain",
        "nested::fails_as_expected",
        "without_the_key",
    ] {
        // libtest-mimic pads names (and may prefix a kind): compare words.
        let passed = stdout.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.first() == Some(&"test") && words.ends_with(&[test, "...", "ok"])
        });
        assert!(passed, "{test} did not pass:\n{stdout}");
    }
    assert!(
        stdout.contains("test result: ok. 3 passed; 0 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("test result: ok. 1 passed; 0 failed"),
        "{stdout}"
    );
}
