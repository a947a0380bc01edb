//! Process hygiene on real QEMU: no QEMU survives its test process, and
//! launch/shutdown cycles leak no fds, threads, dirs or children.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use qemu_test_suite::{pid_alive, stopped_x86};

fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

/// Runs `hold_vm` with `tmp` as its `$TMPDIR` until it has launched its VM:
/// the child and QEMU's pid.
fn hold_vm(tmp: &std::path::Path) -> (std::process::Child, u32) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hold_vm"))
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let pid: u32 = loop {
        let line = lines.next().expect("child printed QEMU's pid").unwrap();
        if let Some(pid) = line.strip_prefix("QEMU_PID ") {
            break pid.parse().unwrap();
        }
    };
    (child, pid)
}

/// The machine dirs (`qemu-machine-*`, `qemu-sock-*`) in `tmp`.
fn machine_dirs(tmp: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("qemu-machine-") || name.starts_with("qemu-sock-")
        })
        .collect();
    dirs.sort();
    dirs
}

fn qemu_of_killed_child(signal: rustix::process::Signal) {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, pid) = hold_vm(tmp.path());
    assert!(pid_alive(pid), "QEMU outlives the thread that launched it");
    qemu_test_suite::signal(child.id(), signal);
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(signal.as_raw()),
        "the test process was ended by {signal:?}"
    );
    assert!(
        wait_gone(pid, Duration::from_secs(10)),
        "QEMU {pid} survived its test process ({signal:?})"
    );

    // The killed process could not remove its dirs; the next process's
    // first launch does (their lock died with their owner).
    let left = machine_dirs(tmp.path());
    assert_eq!(left.len(), 2, "{left:?}");
    let (mut next, next_pid) = hold_vm(tmp.path());
    let now = machine_dirs(tmp.path());
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(left.iter().all(|d| !d.exists()), "{left:?} swept: {now:?}");
    next.kill().unwrap();
    next.wait().unwrap();
    assert!(wait_gone(next_pid, Duration::from_secs(10)));
}

#[test]
fn qemu_dies_with_a_sigkilled_test_process() {
    qemu_of_killed_child(rustix::process::Signal::KILL);
}

#[test]
fn qemu_dies_with_a_sigint_test_process() {
    qemu_of_killed_child(rustix::process::Signal::INT);
}

#[test]
fn a_panicking_owner_leaves_no_qemu() {
    let pid = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = pid.clone();
    let res = thread::spawn(move || {
        let mut vm = stopped_x86();
        vm.launch().unwrap();
        *seen.lock().unwrap() = vm.pid();
        panic!("test body panics with a running VM");
    })
    .join();
    assert!(res.is_err());
    let pid = pid.lock().unwrap().unwrap();
    assert!(
        !pid_alive(pid),
        "unwinding dropped the Machine, which killed QEMU"
    );
}
