//! A `qemu_test::main!()` binary under `cargo nextest`, which lists it with
//! `--list --format terse` (and `--ignored`) and runs each test in its own
//! process with `--exact NAME --nocapture`: the whole suite passes,
//! `--partition count:1/2` and `count:2/2` add up to it, and the host
//! budget holds across the test processes.
//!
//! Needs `cargo-nextest`; without it these tests pass with a note, unless
//! `QEMU_TEST_REQUIRE=1`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The suite nextest runs: every test in it passes.
const SUITE: &str = "runner_vm";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace());
    cmd
}

/// Whether `cargo nextest` is installed (else the test is skipped).
fn have_nextest() -> bool {
    let ok = cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let require = std::env::var("QEMU_TEST_REQUIRE").is_ok_and(|v| v == "1");
        assert!(
            !require,
            "cargo-nextest is not installed (QEMU_TEST_REQUIRE=1)"
        );
        eprintln!("note: cargo-nextest is not installed: skipping");
    }
    ok
}

/// `cargo nextest run` on the suite with `extra` arguments; returns the
/// names of the tests that passed, and nextest's whole output.
fn nextest(extra: &[&str], envs: &[(&str, &str)]) -> (BTreeSet<String>, String) {
    let out = cargo()
        .args([
            "nextest",
            "run",
            "--no-fail-fast",
            "--color",
            "never",
            "-p",
            "qemu-test-suite",
            "--test",
            SUITE,
        ])
        .args(extra)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let prefix = format!("qemu-test-suite::{SUITE} ");
    let passed = text
        .lines()
        .filter(|l| l.trim_start().starts_with("PASS "))
        .filter_map(|l| {
            l.split_once(&prefix)
                .map(|(_, name)| name.trim().to_string())
        })
        .collect();
    (passed, text)
}

/// The suite's tests as the binary itself lists them.
fn listed() -> BTreeSet<String> {
    let out = cargo()
        .args([
            "nextest",
            "list",
            "--color",
            "never",
            "-p",
            "qemu-test-suite",
            "--test",
            SUITE,
            "--message-format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let suites = list["rust-suites"].as_object().unwrap();
    let suite = suites
        .values()
        .find(|s| s["binary-name"] == SUITE)
        .expect("the suite is listed");
    suite["testcases"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn partitions_add_up_to_the_whole_suite() {
    if !have_nextest() {
        return;
    }
    let all = listed();
    // libtest's names, nothing more.
    assert!(all.contains("echo::console_exchange"), "{all:?}");
    assert!(all.contains("runner::without_a_vm"), "{all:?}");

    // Artifacts apart from other runs of the same suite.
    let root = tempfile::tempdir().unwrap();
    let envs = [("QEMU_TEST_ARTIFACTS", root.path().to_str().unwrap())];
    let (whole, text) = nextest(&[], &envs);
    assert_eq!(whole, all, "{text}");
    let (one, _) = nextest(&["--partition", "count:1/2"], &envs);
    let (two, _) = nextest(&["--partition", "count:2/2"], &envs);
    assert!(!one.is_empty() && !two.is_empty(), "{one:?} {two:?}");
    assert!(one.is_disjoint(&two), "{one:?} {two:?}");
    assert_eq!(one.union(&two).cloned().collect::<BTreeSet<_>>(), all);
}

#[test]
fn the_budget_holds_across_test_processes() {
    if !have_nextest() {
        return;
    }
    // Four test processes at once, one vCPU slot: the VMs must run one
    // after the other. Each VM's life is read from its QMP transcript
    // (first and last message), which the slot covers.
    let root = tempfile::tempdir().unwrap();
    let envs = [
        ("QEMU_TEST_JOBS", "1"),
        ("QEMU_TEST_KEEP", "always"),
        ("QEMU_TEST_ARTIFACTS", root.path().to_str().unwrap()),
    ];
    let (passed, text) = nextest(
        &["--test-threads", "4", "-E", "not test(the_deadline)"],
        &envs,
    );
    let mut lives = Vec::new();
    let binary_dir = root.path().join("qemu-test-suite").join(SUITE);
    for dir in std::fs::read_dir(binary_dir).unwrap() {
        let dir = dir.unwrap().path();
        let Ok(transcript) = std::fs::read_to_string(dir.join("qmp.jsonl")) else {
            continue;
        };
        let times: Vec<f64> = transcript
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|m| m["time"].as_f64())
            .collect();
        lives.push((
            times[0],
            *times.last().unwrap(),
            dir.file_name().unwrap().to_string_lossy().into_owned(),
        ));
    }
    assert!(lives.len() >= 6, "{lives:?}\n{passed:?}\n{text}");
    lives.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in lives.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "{} and {} ran at the same time: {lives:?}",
            pair[0].2,
            pair[1].2
        );
    }
}
