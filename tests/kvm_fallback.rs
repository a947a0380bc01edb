//! `accel = "auto"` where KVM is there but broken: the test runs on TCG,
//! and the reason is noted in its `qemu.log` (after QEMU's own output, as
//! `[qemu-test] accel = auto: using TCG because KVM is not usable: …`), in
//! `cmdline.txt` and `repro.sh`, and once on stderr. Drives
//! `security-fixture`'s `accel::auto` (which records `query-kvm`).
//!
//! Each run gets a fresh `$TMPDIR`, so the runner's KVM probe cache
//! (`$TMPDIR/qemu-test-<uid>/runner/kvm-probe-*`) starts empty.
//!
//! Two ways to a broken KVM:
//! - a stand-in `qemu-system-x86_64` (`src/bin/broken_kvm_qemu.rs`, found
//!   through `QEMU_TEST_QEMU_DIR`) that fails `-accel kvm` the way QEMU
//!   does and runs the real QEMU otherwise: the fallback on any host with
//!   a usable `/dev/kvm`; without one the note says that instead;
//! - this host's own KVM, whatever it is: the test checks that the choice
//!   and the note agree with what QEMU reports (`query-kvm`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use qemu_test_suite::isolated;
use serde_json::Value;

const FIXTURE: &str = env!("CARGO_BIN_EXE_security-fixture");
const BROKEN_KVM_QEMU: &str = env!("CARGO_BIN_EXE_broken_kvm_qemu");
/// How the runner words the fallback.
const NOTE: &str = "accel = auto: using TCG because KVM is not usable: ";

/// Whether the probe gets past its preconditions here.
fn dev_kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The real `qemu-system-x86_64`, where the framework looks for it.
fn real_qemu() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::var_os("QEMU_TEST_QEMU_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::split_paths(&path));
    dirs.map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
        .expect("qemu-system-x86_64 in QEMU_TEST_QEMU_DIR or PATH")
}

/// One run of `accel::auto`, keeping its artifacts.
struct Run {
    out: Output,
    dir: PathBuf,
    _root: tempfile::TempDir,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", self.show()))
    }

    fn show(&self) -> String {
        format!(
            "status {}\nstdout:\n{}\nstderr:\n{}",
            self.out.status,
            String::from_utf8_lossy(&self.out.stdout),
            self.stderr()
        )
    }

    /// What `query-kvm` said in the test.
    fn kvm_enabled(&self) -> bool {
        let kvm: Value = serde_json::from_str(&self.file("query-kvm.json")).unwrap();
        kvm["enabled"].as_bool().expect("query-kvm has `enabled`")
    }

    /// The fallback's reason from `qemu.log`, if there is one.
    fn logged_reason(&self) -> Option<String> {
        let log = self.file("qemu.log");
        let reasons: Vec<&str> = log
            .lines()
            .filter_map(|l| l.strip_prefix("[qemu-test] ")?.strip_prefix(NOTE))
            .collect();
        assert!(reasons.len() <= 1, "{log}");
        reasons.first().map(|r| r.to_string())
    }

    /// How often stderr shows the note (`note: accel = auto: …`).
    fn stderr_notes(&self) -> usize {
        self.stderr().matches(&format!("note: {NOTE}")).count()
    }
}

fn run(tmpdir: &Path, envs: &[(&str, &Path)]) -> Run {
    let root = tempfile::tempdir().unwrap();
    let mut cmd = isolated(
        Command::new(FIXTURE),
        &[("QEMU_TEST_KEEP", "always")],
        root.path(),
    );
    cmd.args(["--exact", "accel::auto"])
        .env("TMPDIR", tmpdir)
        .stdin(Stdio::null());
    for (name, value) in envs {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    let run = Run {
        out,
        dir: root
            .path()
            .join("qemu-test-suite/security-fixture/accel::auto"),
        _root: root,
    };
    assert_eq!(run.out.status.code(), Some(0), "{}", run.show());
    run
}

/// The note, the accelerator on the command line and QEMU's own answer
/// agree: TCG.
fn assert_fell_back(run: &Run) -> String {
    assert!(!run.kvm_enabled(), "{}", run.show());
    let reason = run
        .logged_reason()
        .unwrap_or_else(|| panic!("no fallback note in qemu.log:\n{}", run.file("qemu.log")));
    let cmdline = run.file("cmdline.txt");
    assert!(cmdline.contains(" -accel tcg "), "{cmdline}");
    assert!(
        cmdline.contains(&format!("# {NOTE}{reason}\n")),
        "{cmdline}"
    );
    assert!(
        run.file("repro.sh")
            .contains(&format!("# note: {NOTE}{reason}\n")),
        "{}",
        run.file("repro.sh")
    );
    reason
}

#[test]
fn a_kvm_that_fails_to_start_means_tcg_and_a_note() {
    let tmpdir = tempfile::tempdir().unwrap();
    let qemu_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(BROKEN_KVM_QEMU, qemu_dir.path().join("qemu-system-x86_64"))
        .unwrap();
    let real = real_qemu();
    let envs = [
        ("QEMU_TEST_QEMU_DIR", qemu_dir.path()),
        ("BROKEN_KVM_REAL_QEMU", real.as_path()),
    ];
    let first = run(tmpdir.path(), &envs);
    let reason = assert_fell_back(&first);
    if !dev_kvm_usable() {
        // No probe: KVM is simply not there, which is no news.
        assert!(reason.starts_with("cannot open /dev/kvm: "), "{reason}");
        assert_eq!(first.stderr_notes(), 0, "{}", first.show());
        return;
    }
    // The probe VM ran, failed with QEMU's words, and the user is told.
    assert_eq!(
        reason,
        "QEMU did not start with -accel kvm: qemu-system-x86_64: -accel kvm: \
         failed to initialize kvm: Input/output error (broken_kvm_qemu)"
    );
    assert_eq!(first.stderr_notes(), 1, "{}", first.show());

    // The next test process takes the verdict from the probe cache.
    let second = run(tmpdir.path(), &envs);
    assert_eq!(
        assert_fell_back(&second),
        format!("{reason} (cached probe result)")
    );
    assert_eq!(second.stderr_notes(), 1, "{}", second.show());
}

#[test]
fn this_hosts_kvm_is_used_or_the_fallback_says_why() {
    let tmpdir = tempfile::tempdir().unwrap();
    let run = run(tmpdir.path(), &[]);
    if run.kvm_enabled() {
        assert_eq!(run.logged_reason(), None, "{}", run.file("qemu.log"));
        assert!(run.file("cmdline.txt").contains(" -accel kvm "));
        assert_eq!(run.stderr_notes(), 0);
        return;
    }
    let reason = assert_fell_back(&run);
    if dev_kvm_usable() && std::env::consts::ARCH == "x86_64" {
        // KVM is there, so a probe VM decided (on this project's build
        // machine: SeaBIOS does not finish under KVM).
        assert!(!reason.starts_with("cannot open /dev/kvm"), "{reason}");
        assert_eq!(run.stderr_notes(), 1, "{}", run.show());
    } else {
        assert_eq!(run.stderr_notes(), 0, "{}", run.show());
    }
}
