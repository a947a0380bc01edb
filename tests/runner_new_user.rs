//! qemu-test as a new user meets it: a fresh crate outside the workspace
//! that depends on `qemu-test` by path, with the quick-start example as its
//! one `harness = false` test file, passes `cargo test`.
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

#[test]
fn a_fresh_crate_with_the_quickstart_passes_cargo_test() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"[package]
name = "my-vm-tests"
version = "0.1.0"
edition = "2021"
publish = false

[dev-dependencies]
qemu-test = {{ path = {path:?} }}

[[test]]
name = "vm"
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
    std::fs::copy(
        root.join("examples/quickstart.rs"),
        dir.path().join("tests/vm.rs"),
    )
    .unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();

    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--offline", "--test", "vm"])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("QEMU_TEST_JUNIT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("test console_exchange ... ok"), "{stdout}");
    assert!(
        stdout.contains("test result: ok. 5 passed; 0 failed"),
        "{stdout}"
    );
}
