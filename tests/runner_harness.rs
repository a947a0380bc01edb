//! The runner from the outside: the `runner-fixture` binary (a
//! `qemu_test::main!()` suite with every kind of outcome, see
//! `runner_fixture.rs`) run with libtest's flags and the `QEMU_TEST_*`
//! variables, checking its output, exit code, artifact dirs, `repro.sh`,
//! JUnit report, timeouts and skips. Real QEMU throughout.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use qemu_test_suite::{isolated, pid_alive, wait_for, Qmp};
use serde_json::Value;
use tempfile::TempDir;

const FIXTURE: &str = env!("CARGO_BIN_EXE_runner-fixture");

/// One run of the fixture.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// `QEMU_TEST_ARTIFACTS`.
    root: TempDir,
}

impl Run {
    /// The artifact dir of `test`.
    fn dir(&self, test: &str) -> PathBuf {
        artifact_dir(self.root.path(), test)
    }

    /// The failure section libtest prints for `test`.
    fn failure(&self, test: &str) -> &str {
        qemu_test_suite::failure_section(&self.stdout, test)
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// `<root>/<package>/<binary>/<test>`.
fn artifact_dir(root: &Path, test: &str) -> PathBuf {
    root.join("qemu-test-suite/runner-fixture").join(test)
}

/// The fixture with `args`, a fresh artifact root, no inherited
/// `QEMU_TEST_*` settings, and `envs`.
fn command(args: &[&str], envs: &[(&str, &str)], root: &Path) -> Command {
    let mut cmd = Command::new(FIXTURE);
    cmd.args(args);
    isolated(cmd, envs, root)
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let root = tempfile::tempdir().unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = command(args, envs, root.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        root,
    }
}

#[test]
fn list_shows_libtest_names_and_ignored_tests() {
    let all = run(&["--list"], &[]);
    all.assert_code(0);
    // Exactly what libtest would print for the functions: no prefix.
    for line in [
        "basic::passes: test",
        "basic::ignored: test",
        "console::fails_after_boot: test",
        "plain::no_vm: test",
        "skip::missing_binary: test",
        "mistakes::machine_typo: test",
    ] {
        assert!(
            all.stdout.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            all.stdout
        );
    }
    assert_eq!(all.stdout.lines().count(), 18, "{}", all.stdout);
    // Sorted by name, like libtest.
    let names: Vec<&str> = all.stdout.lines().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    // What nextest asks: the ignored ones, terse.
    let ignored = run(&["--list", "--format", "terse", "--ignored"], &[]);
    ignored.assert_code(0);
    for line in ["basic::ignored: test", "skip::missing_binary: test"] {
        assert!(
            ignored.stdout.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            ignored.stdout
        );
    }
    // A mistake is not a skip: it is listed to run (and fail).
    for test in ["basic::passes", "mistakes::machine_typo"] {
        assert!(!ignored.stdout.contains(test), "{}", ignored.stdout);
    }
    // Why a test is listed as ignored, on stderr (stdout is the list):
    // the missing binary, and KVM if this host has none that works.
    for r in [&all, &ignored] {
        let notes: Vec<&str> = r.stderr.lines().collect();
        assert!(
            notes.contains(
                &"note: skip::missing_binary is listed as ignored: \
                  qemu-system-nonexistent not found in QEMU_TEST_QEMU_DIR or PATH"
            ),
            "{}",
            r.stderr
        );
        let kvm =
            "note: skip::needs_kvm is listed as ignored: accelerator kvm is not usable here: ";
        assert!(
            notes.len() == 1 || (notes.len() == 2 && notes.iter().any(|n| n.starts_with(kvm))),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn a_passing_test_leaves_no_artifacts() {
    let r = run(&["--exact", "basic::passes"], &[]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("test basic::passes ... ok"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 passed; 0 failed"), "{}", r.stdout);
    assert!(!r.dir("basic::passes").exists());
    assert!(
        !r.root.path().join("qemu-test-suite").exists(),
        "no empty per-package or per-binary dir either"
    );
}

#[test]
fn keep_always_keeps_every_artifact() {
    let r = run(
        &["--exact", "basic::passes"],
        &[("QEMU_TEST_KEEP", "always")],
    );
    r.assert_code(0);
    let dir = r.dir("basic::passes");
    for file in [
        "qemu.log",
        "qmp.jsonl",
        "cmdline.txt",
        "repro.sh",
        "body-ran",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("body-ran")).unwrap(),
        "basic::passes"
    );
    let cmdline = std::fs::read_to_string(dir.join("cmdline.txt")).unwrap();
    let command_line = cmdline.lines().find(|l| !l.starts_with('#')).unwrap();
    let words = shlex_words(command_line);
    assert!(words[0].ends_with("qemu-system-x86_64"), "{cmdline}");
    assert!(
        words.windows(2).any(|w| w == ["-machine", "pc"]),
        "{cmdline}"
    );
    assert!(words.windows(2).any(|w| w[0] == "-accel"), "{cmdline}");
    // The QMP transcript has the body's command, time-stamped.
    let transcript = std::fs::read_to_string(dir.join("qmp.jsonl")).unwrap();
    let messages: Vec<Value> = transcript
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m["msg"]["execute"] == "query-status" && m["time"].is_number()),
        "{transcript}"
    );
    // The runner's notes are appended to QEMU's log.
    let log = std::fs::read_to_string(dir.join("qemu.log")).unwrap();
    assert!(log.contains("[qemu-test] accelerator: "), "{log}");
}

/// Splits a shell-quoted line (the test has no shlex dependency of its own:
/// `sh` itself is the judge).
fn shlex_words(line: &str) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("for w in {line}; do printf '%s\\0' \"$w\"; done"))
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

#[test]
fn failures_name_the_reason_and_keep_the_artifacts_and_junit_has_them() {
    let junit = tempfile::tempdir().unwrap();
    let junit_dir = junit.path().join("reports");
    let r = run(
        &["basic::", "--test-threads", "2"],
        &[("QEMU_TEST_JUNIT", junit_dir.to_str().unwrap())],
    );
    r.assert_code(101);
    assert!(
        r.stdout.contains("4 passed; 4 failed; 1 ignored"),
        "{}",
        r.stdout
    );
    for ok in [
        "basic::passes",
        "basic::should_fail_err",
        "basic::should_fail_panic",
        "basic::shuts_down_itself",
    ] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.contains(ok) && l.ends_with("... ok")),
            "{ok} did not pass:\n{}",
            r.stdout
        );
        assert!(!r.dir(ok).exists(), "{ok}'s artifacts were not removed");
    }

    let err = r.failure("basic::returns_err");
    assert!(
        err.contains("deliberate failure: the answer was 41"),
        "{err}"
    );
    let dir = r.dir("basic::returns_err");
    assert!(
        err.ends_with(&format!("artifacts: {}", dir.display())),
        "{err}"
    );
    for file in ["qemu.log", "qmp.jsonl", "cmdline.txt", "repro.sh"] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }

    let panic = r.failure("basic::panics");
    assert!(
        panic.starts_with("test panicked: deliberate panic"),
        "{panic}"
    );
    assert!(r.dir("basic::panics").is_dir());

    let wrong = r.failure("basic::should_fail_wrong_message");
    assert!(
        wrong.contains("not as expected") && wrong.contains("bang") && wrong.contains("boom"),
        "{wrong}"
    );
    let no_fail = r.failure("basic::should_fail_but_passes");
    assert!(
        no_fail.starts_with("test did not fail as expected"),
        "{no_fail}"
    );

    // Which VM, in the failure report (the name has no machine in it).
    assert!(
        err.contains("\nvm: machine pc, arch x86_64, accel "),
        "{err}"
    );

    // The JUnit report: one file for the binary, named after its package
    // and itself, with every test that ran or was ignored.
    let files: Vec<_> = std::fs::read_dir(&junit_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, ["qemu-test-suite.runner-fixture.xml"]);
    let xml = std::fs::read_to_string(junit_dir.join(&files[0])).unwrap();
    let suite = qemu_test_suite::JunitSuite::parse(&xml);
    assert_eq!(suite.name, "qemu-test-suite::runner-fixture");
    assert_eq!(
        (suite.tests, suite.failures, suite.skipped),
        (9, 4, 1),
        "{xml}"
    );
    let case = suite.case("basic::returns_err");
    assert_eq!(case.classname, "qemu-test-suite::runner-fixture");
    let (message, kind, text) = case.failure.clone().expect("a failure");
    assert!(message.contains("deliberate failure"), "{message}");
    assert_eq!(kind, "error");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert_eq!(
        case.property("artifacts"),
        Some(&*dir.display().to_string())
    );
    assert_eq!(case.property("machine"), Some("pc"));
    assert_eq!(case.property("arch"), Some("x86_64"));
    assert!(case.property("accel").is_some(), "{case:?}");
    assert!(case
        .property("qemu")
        .unwrap()
        .ends_with("qemu-system-x86_64"));
    let panic = suite.case("basic::panics");
    assert_eq!(panic.failure.as_ref().unwrap().1, "panic");
    let passed = suite.case("basic::passes");
    assert!(passed.failure.is_none() && passed.skipped.is_none());
    assert_eq!(passed.property("machine"), Some("pc"));
    assert_eq!(passed.property("artifacts"), None);
    assert_eq!(
        suite.case("basic::ignored").skipped.as_deref(),
        Some("not today")
    );
}

#[test]
fn each_binary_writes_its_own_junit_file() {
    let junit = tempfile::tempdir().unwrap();
    let envs = [("QEMU_TEST_JUNIT", junit.path().to_str().unwrap())];
    run(&["--exact", "plain::no_vm"], &envs).assert_code(0);
    // Another binary of the package, into the same directory.
    let root = tempfile::tempdir().unwrap();
    let snapshot_fixture = env!("CARGO_BIN_EXE_snapshot-fixture");
    let out = isolated(Command::new(snapshot_fixture), &envs, root.path())
        .args(["--exact", "no::such::test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut files: Vec<_> = std::fs::read_dir(junit.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "qemu-test-suite.runner-fixture.xml",
            "qemu-test-suite.snapshot-fixture.xml"
        ]
    );
    let fixture = std::fs::read_to_string(junit.path().join(&files[0])).unwrap();
    let suite = qemu_test_suite::JunitSuite::parse(&fixture);
    assert_eq!(suite.tests, 1);
    assert_eq!(suite.case("plain::no_vm").properties, []);

    // The old meaning (a file) is refused rather than made a directory.
    let file = junit.path().join("junit.xml");
    let r = run(&["--list"], &[("QEMU_TEST_JUNIT", file.to_str().unwrap())]);
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("expected a directory (each test binary writes its own"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_failure_shows_the_last_console_lines() {
    let junit = tempfile::tempdir().unwrap();
    let r = run(
        &["--exact", "console::fails_after_boot"],
        &[("QEMU_TEST_JUNIT", junit.path().to_str().unwrap())],
    );
    r.assert_code(101);
    // In the JUnit report too: the console's tail as the case's output.
    let xml = std::fs::read_to_string(junit.path().join("qemu-test-suite.runner-fixture.xml"));
    let suite = qemu_test_suite::JunitSuite::parse(&xml.unwrap());
    let case = suite.case("console::fails_after_boot");
    let out = case.system_out.as_deref().unwrap_or_default();
    // The console's tail, then the artifacts as CI attachments.
    let (console, attachments) = out.split_once("[[ATTACHMENT|").expect(out);
    assert!(
        console.trim_end().ends_with("No bootable device."),
        "{case:?}"
    );
    assert!(attachments.contains("/console.log]]"), "{case:?}");
    assert!(case.property("artifacts").is_some(), "{case:?}");
    let msg = r.failure("console::fails_after_boot");
    let (_, tail) = msg
        .split_once("--- last 20 console lines ---\n")
        .unwrap_or_else(|| panic!("{msg}"));
    let tail_lines: Vec<&str> = tail
        .lines()
        .take_while(|l| !l.starts_with("vm: "))
        .collect();
    assert_eq!(tail_lines.len(), 20, "{msg}");
    assert_eq!(tail_lines.last(), Some(&"No bootable device."), "{msg}");
    let console_log =
        std::fs::read_to_string(r.dir("console::fails_after_boot").join("console.log")).unwrap();
    assert!(console_log.starts_with("SeaBIOS"), "{console_log}");
}

#[test]
fn the_deadline_cuts_a_long_wait() {
    let started = Instant::now();
    let r = run(&["--exact", "timeout::waits_too_long"], &[]);
    r.assert_code(101);
    let msg = r.failure("timeout::waits_too_long");
    assert!(
        msg.starts_with("timed out after 2 s\nthe body was stopped with: "),
        "{msg}"
    );
    assert!(msg.contains("NEVER_HAPPENS"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_stuck_body_has_its_vm_killed_at_the_deadline() {
    let root = tempfile::tempdir().unwrap();
    // Its own temp dir, to see what the abandoned body's machine leaves.
    let tmpdir = tempfile::tempdir().unwrap();
    let envs = [
        ("TMPDIR", tmpdir.path().to_str().unwrap()),
        ("QEMU_TEST_ACCEL", "tcg"),
    ];
    let mut child = command(&["--exact", "timeout::stuck"], &envs, root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = artifact_dir(root.path(), "timeout::stuck").join("qemu.pid");
    wait_for("the body to start", Duration::from_secs(20), || {
        pid_file.is_file()
    });
    let seen = Instant::now();
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(pid));
    // Killed at the deadline (2 s after launch), while the test process
    // is still waiting for the body: the watchdog did it, not the exit.
    wait_for("QEMU to be killed", Duration::from_secs(4), || {
        !pid_alive(pid)
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the fixture is in its grace period"
    );
    let killed_after = seen.elapsed();
    let out = wait_with_output(&mut child, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(101));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "timed out after 2 s\nthe body did not return within 5 s after its VM was killed"
        ),
        "{stdout}"
    );
    assert!(killed_after < Duration::from_secs(3), "{killed_after:?}");
    assert!(
        artifact_dir(root.path(), "timeout::stuck")
            .join("qemu.log")
            .is_file(),
        "artifacts kept"
    );
    // The machine's temp and socket dirs are gone all the same; only the
    // runner's state dir stays.
    let left: Vec<String> = std::fs::read_dir(tmpdir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let uid = rustix::process::getuid().as_raw();
    assert_eq!(left, [format!("qemu-test-{uid}")]);
}

fn wait_with_output(child: &mut Child, limit: Duration) -> Output {
    wait_for("the fixture to exit", limit, || {
        child.try_wait().unwrap().is_some()
    });
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status: child.wait().unwrap(),
        stdout,
        stderr,
    }
}

#[test]
fn repro_sh_relaunches_the_vm() {
    let r = run(
        &["--exact", "basic::passes"],
        &[("QEMU_TEST_KEEP", "always")],
    );
    r.assert_code(0);
    let dir = r.dir("basic::passes");
    let repro = dir.join("repro.sh");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&repro).unwrap().permissions().mode() & 0o111,
        0o111,
        "executable"
    );
    let socket = dir.join("qmp.sock");
    let mut qemu = Command::new("timeout")
        .arg("30")
        .arg(&repro)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("repro.sh's QMP socket", Duration::from_secs(20), || {
        socket.exists() || qemu.try_wait().unwrap().is_some()
    });
    let mut qmp = Qmp::connect(&socket);
    // The same VM: stopped (-S), same machine type.
    let replies: std::io::Result<Vec<_>> = ["query-status", "query-target", "quit"]
        .into_iter()
        .map(|cmd| qmp.try_execute(cmd))
        .collect();
    let out = wait_with_output(&mut qemu, Duration::from_secs(20));
    // QEMU's output says what became of it when QMP failed.
    let replies = replies.unwrap_or_else(|e| panic!("QMP: {e}\n{out:?}"));
    assert_eq!(replies[0]["return"]["status"], "prelaunch");
    assert_eq!(replies[1]["return"]["arch"], "x86_64");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn missing_binaries_are_skipped_with_the_reason() {
    let r = run(&["skip::missing"], &[]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("0 passed; 0 failed; 1 ignored"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("skipping skip::missing_binary: qemu-system-nonexistent not found in QEMU_TEST_QEMU_DIR or PATH"),
        "{}",
        r.stderr
    );

    // Run anyway (--include-ignored): still ignored, with the reason.
    let r = run(
        &["--include-ignored", "--exact", "skip::missing_binary"],
        &[],
    );
    r.assert_code(0);
    assert!(
        r.stdout
            .contains("ignored (qemu-system-nonexistent not found in QEMU_TEST_QEMU_DIR or PATH)"),
        "{}",
        r.stdout
    );
}

#[test]
fn require_turns_skips_into_failures() {
    let r = run(&["skip::missing"], &[("QEMU_TEST_REQUIRE", "1")]);
    r.assert_code(101);
    assert!(r.stdout.contains("0 passed; 1 failed"), "{}", r.stdout);
    let msg = r.failure("skip::missing_binary");
    assert!(
        msg.starts_with("qemu-system-nonexistent not found in QEMU_TEST_QEMU_DIR or PATH"),
        "{msg}"
    );
    assert!(msg.contains("QEMU_TEST_REQUIRE=1"), "{msg}");
}

#[test]
fn names_the_qemu_lacks_are_mistakes_with_near_matches() {
    let junit = tempfile::tempdir().unwrap();
    // Not skips, even without QEMU_TEST_REQUIRE: failures that say what
    // was meant.
    let r = run(
        &["mistakes::"],
        &[("QEMU_TEST_JUNIT", junit.path().to_str().unwrap())],
    );
    r.assert_code(101);
    assert!(
        r.stdout.contains("0 passed; 3 failed; 0 ignored"),
        "{}",
        r.stdout
    );
    for (test, start, near) in [
        (
            "mistakes::machine_typo",
            "machine type `q53` is not one ",
            "`q35`",
        ),
        (
            "mistakes::cpu_typo",
            "CPU model `Haswel` is not one ",
            "`Haswell`",
        ),
        (
            "mistakes::device_typo",
            "device type `virtio-rng-pcii` is not one ",
            "`virtio-rng-pci`",
        ),
    ] {
        let msg = r.failure(test);
        assert!(msg.starts_with(start), "{msg}");
        assert!(msg.contains(&format!("did you mean {near}?")), "{msg}");
        assert!(msg.contains("help` lists them all)"), "{msg}");
        assert!(!r.dir(test).exists(), "no VM, no artifacts");
    }
    let xml = std::fs::read_to_string(junit.path().join("qemu-test-suite.runner-fixture.xml"));
    let suite = qemu_test_suite::JunitSuite::parse(&xml.unwrap());
    let case = suite.case("mistakes::cpu_typo");
    assert_eq!(case.failure.as_ref().unwrap().1, "invalid");
    assert_eq!(case.property("machine"), Some("pc"));
}

#[test]
fn the_qemu_dir_is_searched_before_path() {
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
        .expect("qemu-system-x86_64 in PATH");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(real, dir.path().join("qemu-system-nonexistent")).unwrap();
    let r = run(
        &["--exact", "skip::missing_binary"],
        &[("QEMU_TEST_QEMU_DIR", dir.path().to_str().unwrap())],
    );
    r.assert_code(0);
    assert!(r.stdout.contains("1 passed"), "{}", r.stdout);
}

#[test]
fn an_explicit_kvm_test_runs_or_is_skipped_with_the_probe_result() {
    let r = run(&["--exact", "skip::needs_kvm"], &[]);
    r.assert_code(0);
    if r.stdout.contains("1 ignored") {
        assert!(
            r.stderr.contains("accelerator kvm is not usable here: "),
            "{}",
            r.stderr
        );
    } else {
        assert!(r.stdout.contains("1 passed"), "{}", r.stdout);
    }
    // QEMU_TEST_ACCEL overrides the test's own choice.
    let r = run(
        &["--exact", "skip::needs_kvm", "--include-ignored"],
        &[("QEMU_TEST_ACCEL", "tcg"), ("QEMU_TEST_KEEP", "always")],
    );
    assert!(r.code == Some(101) || r.code == Some(0), "{}", r.stdout);
    let cmdline = std::fs::read_to_string(r.dir("skip::needs_kvm").join("cmdline.txt")).unwrap();
    assert!(cmdline.contains("-accel tcg"), "{cmdline}");
}

#[test]
fn filters_exact_and_skip_work() {
    let r = run(
        &[
            "basic::should_fail",
            "--skip",
            "wrong",
            "--skip",
            "but_passes",
        ],
        &[],
    );
    r.assert_code(0);
    assert!(
        r.stdout
            .contains("2 passed; 0 failed; 0 ignored; 0 measured; 16 filtered out"),
        "{}",
        r.stdout
    );
    let r = run(&["--exact", "plain::no_vm"], &[]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("test plain::no_vm ... ok"),
        "{}",
        r.stdout
    );
    // The name is libtest's: no machine type in it to match.
    let r = run(&["--exact", "[pc] basic::passes"], &[]);
    r.assert_code(0);
    assert!(r.stdout.contains("0 passed"), "{}", r.stdout);
}

#[test]
fn keep_never_removes_even_failures() {
    let r = run(
        &["--exact", "basic::returns_err"],
        &[("QEMU_TEST_KEEP", "never")],
    );
    r.assert_code(101);
    assert!(r
        .failure("basic::returns_err")
        .ends_with("artifacts: removed (QEMU_TEST_KEEP=never)"));
    assert!(!r.dir("basic::returns_err").exists());
}

#[test]
fn a_stale_artifact_dir_is_cleaned_first() {
    let root = tempfile::tempdir().unwrap();
    let dir = artifact_dir(root.path(), "basic::returns_err");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("stale.txt"), "from an earlier run").unwrap();
    let out = command(&["--exact", "basic::returns_err"], &[], root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101));
    assert!(dir.join("qemu.log").is_file());
    assert!(!dir.join("stale.txt").exists());
}

#[test]
fn a_malformed_variable_is_an_error() {
    let r = run(&["--list"], &[("QEMU_TEST_KEEP", "sometimes")]);
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("invalid QEMU_TEST_KEEP=\"sometimes\": expected failed, always or never"),
        "{}",
        r.stderr
    );
}

#[test]
fn pause_without_a_terminal_does_not_wait() {
    let root = tempfile::tempdir().unwrap();
    // A new session has no controlling terminal: /dev/tty cannot open.
    let mut setsid = Command::new("setsid");
    setsid.args(["--wait", FIXTURE, "--exact", "basic::returns_err"]);
    let mut cmd = isolated(setsid, &[("QEMU_TEST_ON_FAILURE", "pause")], root.path());
    let started = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(101));
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no terminal to wait on: not pausing basic::returns_err"),
        "{stderr}"
    );
    // The extra monitor was there, and repro.sh leaves it out.
    let dir = artifact_dir(root.path(), "basic::returns_err");
    let cmdline = std::fs::read_to_string(dir.join("cmdline.txt")).unwrap();
    assert!(cmdline.contains("id=qemu-test-pause"), "{cmdline}");
    assert!(!std::fs::read_to_string(dir.join("repro.sh"))
        .unwrap()
        .contains("qemu-test-pause"));
}

#[test]
fn pause_keeps_the_vm_reachable_until_enter() {
    // `script` gives the fixture a terminal: its pty.
    let root = tempfile::tempdir().unwrap();
    let line = format!("{FIXTURE} --exact basic::returns_err");
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &line, "/dev/null"]);
    let mut script = isolated(script, &[("QEMU_TEST_ON_FAILURE", "pause")], root.path());
    let mut child = script
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let socket = artifact_dir(root.path(), "basic::returns_err").join("qmp-pause.sock");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let started = Instant::now();
    while !seen.contains("Press Enter") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no prompt: {seen}"
        );
        let mut line = Vec::new();
        let n = stdout.read_until(b' ', &mut line).unwrap();
        assert!(n > 0, "the fixture ended before pausing: {seen}");
        seen.push_str(&String::from_utf8_lossy(&line));
    }
    assert!(seen.contains("basic::returns_err failed; its VM"), "{seen}");
    // The printed command, as the shell hands it to socat: the `:` of
    // the test's name escaped for socat's address syntax.
    let qmp = seen.lines().find(|l| l.starts_with("QMP:")).expect(&seen);
    let escaped = socket.display().to_string().replace(':', "\\:");
    assert_eq!(
        shlex::split(qmp.trim_start_matches("QMP:")).unwrap(),
        ["socat", "-", &format!("UNIX-CONNECT:{escaped}")],
        "{seen}"
    );
    // While paused, the VM is alive and answers on the extra monitor.
    let mut qmp = Qmp::connect(&socket);
    assert_eq!(qmp.execute("query-status")["return"]["status"], "prelaunch");
    drop(qmp);
    child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    wait_for(
        "the fixture to go on after Enter",
        Duration::from_secs(20),
        || child.try_wait().unwrap().is_some(),
    );
    assert_eq!(child.wait().unwrap().code(), Some(101));
}
