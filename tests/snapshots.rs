//! Booted snapshots on real QEMU: the `snapshot-fixture` binary (tests that
//! start from snapshots, see `snapshot_fixture.rs`) run several at once,
//! twice, and in two processes, plus the Machine API
//! (`Machine::launch_snapshot`) directly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use qemu_test::snapshot::SnapshotStore;
use qemu_test::{guest, Machine};
use qemu_test_suite::isolated;

const FIXTURE: &str = env!("CARGO_BIN_EXE_snapshot-fixture");

struct Run {
    code: Option<i32>,
    stdout: String,
}

impl Run {
    fn assert_code(&self, code: i32) {
        assert_eq!(self.code, Some(code), "stdout:\n{}", self.stdout);
    }

    /// The failure section libtest prints for `test`.
    fn failure(&self, test: &str) -> &str {
        qemu_test_suite::failure_section(&self.stdout, test)
    }
}

fn fixture(args: &[&str], root: &Path) -> Command {
    let mut cmd = Command::new(FIXTURE);
    cmd.args(args).stdin(Stdio::null());
    isolated(cmd, &[("QEMU_TEST_KEEP", "always")], root)
}

fn run(args: &[&str], root: &Path) -> Run {
    let Output { status, stdout, .. } = fixture(args, root).output().unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
    }
}

/// The snapshot dirs of `name` in the store under `root`.
fn snapshot_dirs(root: &Path, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join("snapshots")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with('-') && rest.len() == 17)
        })
        .collect()
}

/// How each of `tests` got its snapshot, from its `qemu.log` notes:
/// `(made, found)`.
fn provenance(root: &Path, tests: &[&str]) -> (usize, usize) {
    let (mut made, mut found) = (0, 0);
    for test in tests {
        let dir = root.join("qemu-test-suite/snapshot-fixture").join(test);
        let log = std::fs::read_to_string(dir.join("qemu.log")).unwrap_or_default();
        match (log.contains("(made by this test)"), log.contains("(found)")) {
            (true, false) => made += 1,
            (false, true) => found += 1,
            _ => panic!("{test}: no snapshot note in its qemu.log:\n{log}"),
        }
        assert!(
            dir.join("body-ran").exists()
                || !test.starts_with("echo::")
                || test.ends_with("resets_its_copy")
        );
    }
    (made, found)
}

const ECHO_TESTS: [&str; 3] = ["echo::first", "echo::second", "echo::third"];

#[test]
fn tests_share_one_snapshot_made_once() {
    let root = tempfile::tempdir().unwrap();
    let first = run(&["echo::", "--test-threads", "4"], root.path());
    first.assert_code(0);
    assert!(first.stdout.contains("4 passed"), "{}", first.stdout);
    let dirs = snapshot_dirs(root.path(), "echo-login");
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let snapshot = &dirs[0];
    assert!(snapshot.join("state").is_file());
    // The guest RAM is in its own file (mapped by every restore, copy on
    // write), not in the state.
    let ram = snapshot.join("ram");
    assert_eq!(std::fs::metadata(&ram).unwrap().len(), 128 << 20);
    let ram_before = std::fs::read(&ram).unwrap();
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snapshot.join("key.json")).unwrap()).unwrap();
    assert_eq!(key["parts"]["ready"], "login:");
    assert!(
        key["parts"]["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "-snapshot"),
        "{key}"
    );
    // The boot that made it kept its logs; the tests' consoles start after it.
    let boot_console = std::fs::read_to_string(snapshot.join("create/console.log")).unwrap();
    assert!(
        boot_console.contains("qemu-test echo shell"),
        "{boot_console:?}"
    );
    let mut all = ECHO_TESTS.to_vec();
    all.push("echo::resets_its_copy");
    assert_eq!(provenance(root.path(), &all), (1, 3));
    for test in ECHO_TESTS {
        let console = std::fs::read_to_string(
            root.path()
                .join("qemu-test-suite/snapshot-fixture")
                .join(test)
                .join("console.log"),
        )
        .unwrap();
        assert!(console.starts_with("hi"), "{test}: {console:?}");
    }
    let cmdline = std::fs::read_to_string(
        root.path()
            .join("qemu-test-suite/snapshot-fixture/echo::first/cmdline.txt"),
    )
    .unwrap();
    assert!(cmdline.contains("-incoming"), "{cmdline}");
    assert!(
        cmdline.contains("memory-backend-file,id=mach-virt.ram,") && cmdline.contains(",share=off"),
        "{cmdline}"
    );

    // A second run finds it.
    let again = run(&["echo::", "--test-threads", "4"], root.path());
    again.assert_code(0);
    assert_eq!(provenance(root.path(), &all), (0, 4));
    assert_eq!(snapshot_dirs(root.path(), "echo-login"), dirs);
    assert!(
        std::fs::read(&ram).unwrap() == ram_before,
        "restores changed the RAM file"
    );
}

#[test]
fn two_processes_make_it_once() {
    let root = tempfile::tempdir().unwrap();
    let children: Vec<_> = ECHO_TESTS
        .iter()
        .map(|test| {
            fixture(&[test, "--exact"], root.path())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(provenance(root.path(), &ECHO_TESTS), (1, 2));
    assert_eq!(snapshot_dirs(root.path(), "echo-login").len(), 1);
}

#[test]
fn a_setup_function_runs_before_the_save() {
    let root = tempfile::tempdir().unwrap();
    let out = run(&["setup::after_setup", "--exact"], root.path());
    out.assert_code(0);
    let dirs = snapshot_dirs(root.path(), "echo-hello");
    assert_eq!(dirs.len(), 1);
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].join("key.json")).unwrap()).unwrap();
    assert!(
        key["parts"]["setup"]
            .as_str()
            .unwrap()
            .ends_with("setup::said_hello"),
        "{key}"
    );
    assert!(key["parts"]["test-binary"]["size"].is_u64(), "{key}");
    let boot_console = std::fs::read_to_string(dirs[0].join("create/console.log")).unwrap();
    assert!(boot_console.contains("you said: hello from setup"));
}

#[test]
fn a_failed_setup_fails_its_tests_once() {
    let root = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "broken::",
            "--skip",
            "times_out",
            "--skip",
            "no_readiness",
            "--test-threads",
            "2",
        ],
        root.path(),
    );
    out.assert_code(101);
    let failures = [out.failure("broken::one"), out.failure("broken::two")];
    // One test made it and failed; the other did not boot again.
    let made: Vec<&str> = failures
        .iter()
        .copied()
        .filter(|f| f.starts_with("could not create snapshot \"broken\""))
        .collect();
    let earlier: Vec<&str> = failures
        .iter()
        .copied()
        .filter(|f| f.starts_with("snapshot \"broken\" could not be made earlier in this run"))
        .collect();
    assert_eq!((made.len(), earlier.len()), (1, 1), "{failures:#?}");
    let made = made[0];
    assert!(made.contains("deliberate setup failure"), "{made}");
    assert!(
        earlier[0].contains("deliberate setup failure"),
        "{}",
        earlier[0]
    );
    // The logs of the failed boot are where the message says.
    let logs = made
        .lines()
        .find_map(|l| l.split("(its logs: ").nth(1))
        .map(|rest| PathBuf::from(rest.trim_end_matches(')')))
        .unwrap_or_else(|| panic!("no logs path in {made}"));
    let console = std::fs::read_to_string(logs.join("console.log")).unwrap();
    assert!(console.contains("login:"), "{console:?}");
    for dir in snapshot_dirs(root.path(), "broken") {
        assert!(!dir.join("state").exists());
    }
}

#[test]
fn a_setup_that_hangs_times_out() {
    let root = tempfile::tempdir().unwrap();
    let out = run(&["broken::setup_times_out", "--exact"], root.path());
    out.assert_code(101);
    let failure = out.failure("broken::setup_times_out");
    assert!(
        failure.contains("the setup did not finish within the test's timeout (2 s)"),
        "{failure}"
    );
}

#[test]
fn a_snapshot_needs_something_that_says_when_to_save() {
    let root = tempfile::tempdir().unwrap();
    let out = run(&["broken::no_readiness", "--exact"], root.path());
    out.assert_code(101);
    let failure = out.failure("broken::no_readiness");
    assert!(
        failure.contains("needs `setup = path::to::fn`"),
        "{failure}"
    );
}

/// An echo-guest machine configured for snapshots.
fn echo_machine(extra: &[&str]) -> Machine {
    let kernel = guest::ECHO_SHELL_AARCH64.path().unwrap();
    let mut vm = Machine::builder("qemu-system-aarch64")
        .args(["-cpu", "max", "-accel", "tcg", "-kernel"])
        .arg(kernel.to_string_lossy())
        .args(extra.iter().copied())
        .build();
    vm.set_machine("virt").set_console(None, 0);
    vm
}

#[test]
fn the_machine_api_makes_finds_and_replaces_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::new(dir.path().join("store"));
    let login = |vm: &mut Machine| -> qemu_test::TestResult {
        vm.console().wait_for("login:")?;
        Ok(())
    };

    let mut vm = echo_machine(&[]);
    let key = vm.snapshot_key("login").unwrap().with("setup", "login v1");
    let snapshot = vm.launch_snapshot(&store, &key, login).unwrap();
    assert!(snapshot.created());
    assert_eq!(snapshot.id(), key.id());
    drop(snapshot);
    vm.console().exec_and_wait("one", "you said: one").unwrap();
    assert!(!vm.console().output().contains("login:"));
    vm.shutdown().unwrap();

    // Found: the setup is not run again, the guest is at its prompt.
    let mut vm = echo_machine(&[]);
    let found = vm
        .launch_snapshot(&store, &key, |_| panic!("the snapshot exists"))
        .unwrap();
    assert!(!found.created());
    drop(found);
    vm.console().exec_and_wait("two", "you said: two").unwrap();
    // A state saved from a restored machine carries its RAM (the snapshot's
    // file stays the snapshot's): a plain machine loads it.
    let saved = dir.path().join("from-restored.state");
    vm.save_state(&saved, Duration::from_secs(60)).unwrap();
    vm.shutdown().unwrap();
    let mut plain = echo_machine(&[]);
    plain.set_qmp_monitor(true).restore_from(Some(saved));
    plain.launch().unwrap();
    plain
        .console()
        .exec_and_wait("plain", "you said: plain")
        .unwrap();
    plain.shutdown().unwrap();

    // Another configuration is another snapshot, and replaces the old one.
    let mut vm = echo_machine(&["-m", "256M"]);
    let key2 = vm.snapshot_key("login").unwrap().with("setup", "login v1");
    assert_ne!(key.id(), key2.id());
    assert!(vm.launch_snapshot(&store, &key2, login).unwrap().created());
    vm.console()
        .exec_and_wait("three", "you said: three")
        .unwrap();
    vm.shutdown().unwrap();
    assert!(
        !store.dir().join(key.id()).exists(),
        "the old key's snapshot is removed"
    );
    assert!(store.dir().join(key2.id()).join("state").is_file());
    let ram = store.dir().join(key2.id()).join("ram");
    assert_eq!(std::fs::metadata(ram).unwrap().len(), 256 << 20);
}

#[test]
fn memory_options_of_the_users_own_keep_the_ram_in_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::new(dir.path().join("store"));
    let own = [
        "-object",
        "memory-backend-ram,id=mine,size=128M",
        "-machine",
        "memory-backend=mine",
    ];
    for round in ["made", "found"] {
        let mut vm = echo_machine(&own);
        let key = vm.snapshot_key("own-memory").unwrap();
        vm.launch_snapshot(&store, &key, |vm| {
            vm.console().wait_for("login:")?;
            Ok(())
        })
        .unwrap();
        vm.console()
            .exec_and_wait(round, &format!("you said: {round}"))
            .unwrap();
        vm.shutdown().unwrap();
        assert!(!store.dir().join(key.id()).join("ram").exists());
    }
}

#[test]
fn a_failed_setup_through_the_machine_api_leaves_no_qemu_and_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::new(dir.path().join("store"));
    let mut vm = echo_machine(&[]);
    let key = vm.snapshot_key("bad").unwrap();
    let err = vm
        .launch_snapshot(&store, &key, |vm| {
            vm.console()
                .with_timeout(Duration::from_millis(300))
                .wait_for("no such text")?;
            Ok(())
        })
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("could not create snapshot \"bad\""), "{text}");
    assert!(!vm.is_running());
    assert!(!store.dir().join(key.id()).join("state").exists());
    assert!(!store.dir().join(key.id()).join("ram").exists());
    let logs = store.dir().join(key.id()).join("create");
    let console = std::fs::read_to_string(logs.join("console.log")).unwrap();
    assert!(console.contains("login:"), "{console:?}");
}
