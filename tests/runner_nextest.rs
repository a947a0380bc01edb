//! A `qemu_test::main!()` binary under `cargo nextest`, which lists it with
//! `--list --format terse` (and `--ignored`) and runs each test in its own
//! process with `--exact NAME --nocapture`: the whole suite passes,
//! `--partition count:1/2` and `count:2/2` add up to it, and the host
//! budget holds across the test processes. Skips: one known when listing
//! shows as SKIP, one found while running passes with its reason in the
//! output, and no process writes a JUnit file of its own. And a suite
//! archived here runs from its archive in another directory, in two
//! `--partition hash` halves, with everything it writes in that run's
//! dirs and nothing pointing back here.
//!
//! Needs `cargo-nextest`; without it these tests pass with a note, unless
//! `QEMU_TEST_REQUIRE=1`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    // One HTML page for the binary, gathered from its test processes.
    assert_eq!(reported(root.path()), all, "{text}");
    let (one, _) = nextest(&["--partition", "count:1/2"], &envs);
    let (two, _) = nextest(&["--partition", "count:2/2"], &envs);
    assert!(!one.is_empty() && !two.is_empty(), "{one:?} {two:?}");
    assert!(one.is_disjoint(&two), "{one:?} {two:?}");
    assert_eq!(one.union(&two).cloned().collect::<BTreeSet<_>>(), all);
    // A new run's page holds that run's tests only.
    assert_eq!(reported(root.path()), two);
}

/// The tests the suite's HTML page under `root` lists.
fn reported(root: &Path) -> BTreeSet<String> {
    let page = root.join(format!("report/qemu-test-suite.{SUITE}.html"));
    let page = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    let page = qemu_test_suite::parse_html(&page);
    page.find("table")[0]
        .find("tr")
        .iter()
        .skip(1)
        .map(|tr| tr.find("td")[0].all_text().trim().to_string())
        .collect()
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

/// `cargo nextest ARGS` in `dir` with no inherited `QEMU_TEST_*` (CI's
/// `QEMU_TEST_REQUIRE=1` would fail the skips) or nextest settings, then
/// `envs`; its output, stdout and stderr together.
fn nextest_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (Output, String) {
    let mut cmd = cargo();
    cmd.current_dir(dir).arg("nextest").args(args);
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("QEMU_TEST_") || n.starts_with("NEXTEST"))
        {
            cmd.env_remove(name);
        }
    }
    let out = cmd.envs(envs.iter().copied()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// The tests of `binary` nextest's output shows with `status` (`PASS`,
/// `SKIP`, ...).
fn with_status(text: &str, status: &str, binary: &str) -> BTreeSet<String> {
    let prefix = format!("qemu-test-suite::{binary} ");
    text.lines()
        .filter(|l| l.trim_start().starts_with(&format!("{status} ")))
        .filter_map(|l| l.split_once(&prefix).map(|(_, n)| n.trim().to_string()))
        .collect()
}

#[test]
fn skips_show_as_skip_or_say_why_and_no_process_writes_junit() {
    if !have_nextest() {
        return;
    }
    let junit = tempfile::tempdir().unwrap();
    let ours = junit.path().join("ours");
    let store = junit.path().join("store");
    let config = junit.path().join("nextest.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndir = {:?}\n\n[profile.ci.junit]\npath = \"junit.xml\"\nstore-success-output = true\n",
            store.to_str().unwrap()
        ),
    )
    .unwrap();
    let (out, text) = nextest_in(
        &workspace(),
        &[
            "run",
            "--config-file",
            config.to_str().unwrap(),
            "--profile",
            "ci",
            "--color",
            "never",
            "--success-output",
            "final",
            "-p",
            "qemu-test-suite",
            "--test",
            "runner_skips",
        ],
        &[("QEMU_TEST_JUNIT", ours.to_str().unwrap())],
    );
    assert!(out.status.success(), "{text}");
    // Known when listing (no such QEMU): nextest never runs it.
    assert!(text.contains("2 tests run: 2 passed, 1 skipped"), "{text}");
    let passed = with_status(&text, "PASS", "runner_skips");
    assert!(!passed.contains("skips::missing_binary"), "{text}");
    // Found while running: a pass to nextest, with the reason in its output.
    assert!(passed.contains("skips::at_run_time"), "{text}");
    assert!(
        text.contains("skips::at_run_time: the fixture skips itself at run time"),
        "{text}"
    );
    // No test process wrote a JUnit file (each would overwrite the last);
    // each says to use nextest's, which has the run-time skip's reason.
    assert!(!ours.exists(), "{text}");
    assert!(
        text.contains("is not used under nextest, which runs each test in a process of its own"),
        "{text}"
    );
    let xml = std::fs::read_to_string(store.join("ci/junit.xml")).unwrap();
    assert!(
        xml.contains("the fixture skips itself at run time"),
        "{xml}"
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn an_archive_runs_elsewhere_in_hash_partitions() {
    if !have_nextest() {
        return;
    }
    // Built here; run from another directory with another target dir, as
    // on another CI host.
    let elsewhere = tempfile::tempdir().unwrap();
    let archive = elsewhere.path().join("suite.tar.zst");
    let (out, text) = nextest_in(
        &workspace(),
        &[
            "archive",
            "-p",
            "qemu-test-suite",
            "--test",
            SUITE,
            "--archive-file",
            archive.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{text}");
    // That host's checkout of the workspace, as much of it as nextest
    // reads: the manifests, its config, the package dir the tests run in.
    let checkout = elsewhere.path().join("checkout");
    std::fs::create_dir_all(checkout.join(".config")).unwrap();
    std::fs::create_dir_all(checkout.join("tests")).unwrap();
    for file in ["Cargo.toml", "tests/Cargo.toml", ".config/nextest.toml"] {
        std::fs::copy(workspace().join(file), checkout.join(file)).unwrap();
    }

    let mut ran = Vec::new();
    for k in 1..=2 {
        let extract = elsewhere.path().join(format!("host-{k}"));
        std::fs::create_dir(&extract).unwrap();
        let partition = format!("hash:{k}/2");
        let (out, text) = nextest_in(
            elsewhere.path(),
            &[
                "run",
                "--archive-file",
                archive.to_str().unwrap(),
                "--workspace-remap",
                checkout.to_str().unwrap(),
                "--extract-to",
                extract.to_str().unwrap(),
                "--partition",
                &partition,
                "--color",
                "never",
                "-E",
                "test(/^echo::/)",
            ],
            &[("QEMU_TEST_KEEP", "always")],
        );
        assert!(out.status.success(), "{text}");
        ran.push((extract, with_status(&text, "PASS", SUITE), text));
    }
    let all: BTreeSet<String> = listed()
        .into_iter()
        .filter(|t| t.starts_with("echo::"))
        .collect();
    let (one, two) = (&ran[0].1, &ran[1].1);
    assert!(one.is_disjoint(two), "{one:?} {two:?}");
    assert_eq!(one.union(two).cloned().collect::<BTreeSet<_>>(), all);

    let here = [workspace(), qemu_test_suite::target_dir()];
    for (extract, passed, text) in &ran {
        // Artifacts (and the snapshot store) in that host's extracted
        // target dir, one dir per test that ran there.
        let root = extract.join("target/qemu-test");
        let binary_dir = root.join("qemu-test-suite").join(SUITE);
        for test in passed {
            assert!(
                binary_dir.join(test).join("cmdline.txt").is_file(),
                "{test}: {text}"
            );
        }
        if passed.contains("echo::from_a_snapshot") {
            let store = root.join("snapshots");
            assert!(
                std::fs::read_dir(&store).unwrap().next().is_some(),
                "{text}"
            );
        }
        // Nothing written there names this host's workspace or target dir.
        for file in files_under(&root) {
            let Ok(content) = std::fs::read_to_string(&file) else {
                continue; // a saved VM state or RAM file: not text
            };
            for path in &here {
                let path = path.to_str().unwrap();
                assert!(
                    !content.contains(path),
                    "{} names {path}:\n{content}",
                    file.display()
                );
            }
        }
        // repro.sh starts from that host's checkout.
        let test = passed.iter().next().expect("a test ran");
        let repro = std::fs::read_to_string(binary_dir.join(test).join("repro.sh")).unwrap();
        assert!(
            repro.contains(&format!("cd {}", checkout.join("tests").display())),
            "{repro}"
        );
    }
}
