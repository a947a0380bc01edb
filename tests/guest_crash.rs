//! A guest kernel crash fails its test at once, not at its deadline, with
//! the panic and its call trace in the message; a test that expects the
//! crash waits for it and passes. Drives `crash-fixture`.

use std::process::Command;
use std::time::{Duration, Instant};

const FIXTURE: &str = env!("CARGO_BIN_EXE_crash-fixture");

/// Runs one fixture test; `None` when it was skipped (no Linux guest
/// here, and not `QEMU_TEST_REQUIRE=1`, under which it fails instead).
/// The artifact root goes with the output.
fn run(test: &str) -> Option<(std::process::Output, Duration, tempfile::TempDir)> {
    let artifacts = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(FIXTURE)
        .args(["--exact", test])
        .env("QEMU_TEST_ARTIFACTS", artifacts.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains(&format!("note: skipping {test}:")) {
        eprintln!("{stderr}");
        return None;
    }
    Some((out, started.elapsed(), artifacts))
}

#[test]
fn an_unexpected_kernel_panic_fails_the_test_at_once() {
    let Some((out, took, artifacts)) = run("unexpected_panic") else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(101), "{stdout}");
    for part in [
        "the guest crashed: Kernel panic - not syncing: sysrq triggered crash",
        "--- the crash on the console ---",
        "Call Trace:",
    ] {
        assert!(stdout.contains(part), "missing {part:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("timed out"), "{stdout}");
    let dir = artifacts
        .path()
        .join("qemu-test-suite/crash-fixture/unexpected_panic");
    // The guest's pvpanic driver told QEMU, which paused the VM.
    let qmp = std::fs::read_to_string(dir.join("qmp.jsonl")).unwrap();
    assert!(qmp.contains("GUEST_PANICKED"), "{qmp}");
    // The deadline is 300 s: the failure came from the crash watch.
    assert!(took < Duration::from_secs(120), "{took:?}\n{stdout}");
    // The VM has a display: its picture was taken before the kill.
    let shot = dir.join("screen.png");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}\n{stdout}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn an_expected_crash_is_waited_for() {
    let Some((out, _, _)) = run("expected_panic") else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
