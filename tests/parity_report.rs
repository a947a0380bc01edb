//! How the runner reports what issue 16 added, read from `parity-fixture`'s
//! output: a run-time skip is a skip (not a pass) with its reason, a failure
//! under `QEMU_TEST_REQUIRE=1`; `QEMU_TEST_TIMEOUT_FACTOR` scales deadlines.

use std::process::{Command, Output};

const FIXTURE: &str = env!("CARGO_BIN_EXE_parity-fixture");

fn run(test: &str, envs: &[(&str, &str)]) -> (Output, String) {
    let artifacts = tempfile::tempdir().unwrap();
    let out = Command::new(FIXTURE)
        .args(["--exact", test])
        .env("QEMU_TEST_ARTIFACTS", artifacts.path())
        .env_remove("QEMU_TEST_REQUIRE")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn a_run_time_skip_is_reported_as_skipped_with_its_reason() {
    let (out, text) = run("skips_at_run_time", &[]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("0 passed; 0 failed; 1 ignored"), "{text}");
    assert!(text.contains("qemu-test: 1 skipped:"), "{text}");
    assert!(
        text.contains("skips_at_run_time: VNC support not available")
            || text.contains("skips_at_run_time: this QEMU has VNC"),
        "{text}"
    );
}

#[test]
fn require_turns_a_run_time_skip_into_a_failure() {
    let (out, text) = run("skips_at_run_time", &[("QEMU_TEST_REQUIRE", "1")]);
    assert_eq!(out.status.code(), Some(101), "{text}");
    assert!(text.contains("QEMU_TEST_REQUIRE=1"), "{text}");
}

#[test]
fn unmet_requirements_skip_at_list_time_with_the_reason() {
    let out = Command::new(FIXTURE)
        .args(["--list", "--ignored"])
        .env_remove("QEMU_TEST_REQUIRE")
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    let notes = String::from_utf8_lossy(&out.stderr);
    for name in ["requires_a_missing_device", "requires_its_own_check"] {
        assert!(list.lines().any(|l| l == format!("{name}: test")), "{list}");
    }
    assert!(!list.contains("requires_what_is_there"), "{list}");
    assert!(
        notes.contains("requires device qemu-test-no-such-device, which"),
        "{notes}"
    );
    assert!(
        notes.contains("requires a frobnicator: this host has no frobnicator"),
        "{notes}"
    );
    let (out, text) = run("requires_a_missing_device", &[]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("1 ignored"), "{text}");
    let (out, text) = run("requires_what_is_there", &[]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    let (out, text) = run("requires_its_own_check", &[("QEMU_TEST_REQUIRE", "1")]);
    assert_eq!(out.status.code(), Some(101), "{text}");
    let (out, text) = run("no_vm_requires_a_device", &[]);
    assert_eq!(out.status.code(), Some(101), "{text}");
    assert!(text.contains("a `no_vm` test has none"), "{text}");
}

#[test]
fn a_matrix_lists_one_test_per_value() {
    let out = Command::new(FIXTURE).arg("--list").output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for name in ["per_machine::q35", "per_machine::pc"] {
        assert!(
            list.lines().any(|l| l.ends_with(&format!("{name}: test"))),
            "{list}"
        );
    }
    let (out, text) = run("per_machine::pc", &[]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
fn the_timeout_factor_scales_deadlines() {
    let (out, text) = run(
        "sleeps_past_its_deadline",
        &[("QEMU_TEST_TIMEOUT_FACTOR", "2.5")],
    );
    assert_eq!(out.status.code(), Some(101), "{text}");
    assert!(text.contains("timed out after 2.5 s"), "{text}");
    let (out, text) = run(
        "sleeps_past_its_deadline",
        &[("QEMU_TEST_TIMEOUT_FACTOR", "fast")],
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("invalid QEMU_TEST_TIMEOUT_FACTOR=\"fast\""),
        "{text}"
    );
}
