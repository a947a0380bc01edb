//! Mistakes a user makes with a crate of their own fail loudly, with the
//! fix in the message, under a real `cargo test` (not only in the
//! expansion): a `#[qemu_test]` in a test target built with libtest's
//! harness (no `harness = false`), which libtest would otherwise pass as
//! "running 0 tests".

use qemu_test_suite::{scratch_cargo, scratch_cargo_env, scratch_crate};

/// One file of `#[qemu_test]`s, as the quick start has it.
const TESTS: &str = r#"
use qemu_test::prelude::*;

#[qemu_test(no_vm)]
fn adds() {
    assert_eq!(1 + 1, 2);
}

mod more {
    use super::*;

    #[qemu_test(no_vm)]
    fn subtracts() {
        assert_eq!(2 - 1, 1);
    }
}

qemu_test::main!();
"#;

/// [`TESTS`] with a `main` of its own, as a user may write it.
fn by_hand() -> String {
    TESTS.replace(
        "qemu_test::main!();",
        "fn main() -> std::process::ExitCode {\n    qemu_test::runner::run_registered()\n}",
    )
}

#[test]
fn a_qemu_test_in_a_libtest_target_fails_and_names_the_fix() {
    let dir = scratch_crate(
        r#"[package]
name = "misuse-check"
version = "0.1.0"
edition = "2021"
publish = false

[dev-dependencies]
qemu-test = { path = {qemu_test} }

# The mistake: no `harness = false`.
[[test]]
name = "forgot"

[[test]]
name = "right"
harness = false

[[test]]
name = "by-hand"
harness = false
"#,
        &[
            ("tests/forgot.rs", TESTS),
            ("tests/right.rs", TESTS),
            ("tests/by-hand.rs", &by_hand()),
        ],
    );

    let out = scratch_cargo(dir.path(), &["test", "--test", "forgot"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // One failing test per #[qemu_test], each with the fix.
    for guard in [
        "__qemu_test_adds::needs_harness_false",
        "more::__qemu_test_subtracts::needs_harness_false",
    ] {
        assert!(
            stdout.contains(&format!("test {guard} ... FAILED")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(
            "`adds` is a #[qemu_test], but the test target `forgot` is built with libtest's harness"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("    [[test]]\n    name = \"forgot\"\n    harness = false\n"),
        "{stdout}"
    );

    // With `harness = false` cargo does not pass `--test`: no `cfg(test)`,
    // no guard, and the runner runs the tests.
    let out = scratch_cargo(dir.path(), &["test", "--test", "right"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for test in ["adds", "more::subtracts"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("test {test} ")) && l.ends_with("... ok")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("2 passed; 0 failed"), "{stdout}");
    assert!(!stdout.contains("needs_harness_false"), "{stdout}");

    // A `main` of one's own names the binary from the run (the package
    // from cargo's CARGO_PKG_NAME, the binary from the executable): its
    // JUnit report is the package's and the binary's like any other.
    let junit = tempfile::tempdir().unwrap();
    let dir_arg = junit.path().to_str().unwrap();
    let out = scratch_cargo_env(
        dir.path(),
        &["test", "--test", "by-hand", "--test", "right"],
        &[("QEMU_TEST_JUNIT", dir_arg)],
    );
    assert!(out.status.success(), "{out:?}");
    let mut files: Vec<_> = std::fs::read_dir(junit.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    // (cargo names a test executable after its crate: `by_hand`.)
    assert_eq!(
        files,
        ["misuse-check.by_hand.xml", "misuse-check.right.xml"]
    );
}
