//! Launch/shutdown cycles leak no fds, threads, dirs or children. Alone
//! in its own test binary, because it counts process-wide resources.

use std::path::Path;
use std::sync::Mutex;

use qemu_test::Machine;
use serde_json::json;

/// The counts are process-wide: one cycle test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Counts {
    fds: usize,
    threads: usize,
    children: usize,
    machine_dirs: usize,
}

/// A stopped x86 machine whose temp and socket dirs go into `base`, so
/// that other processes' machines do not change the count.
fn stopped_x86_in(base: &Path) -> Machine {
    Machine::builder("qemu-system-x86_64")
        .args(["-S", "-nodefaults"])
        .base_temp_dir(base)
        .build()
}

fn counts(base: &Path) -> Counts {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let me = std::process::id().to_string();
    let children = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.split_whitespace().nth(1) == Some(me.as_str()))
                })
                .unwrap_or(false)
        })
        .count();
    let machine_dirs = std::fs::read_dir(base)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("qemu-machine-") || name.starts_with("qemu-sock-")
        })
        .count();
    Counts {
        fds,
        threads,
        children,
        machine_dirs,
    }
}

fn cycles(n: usize) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let base = tempfile::tempdir().unwrap();
    // Warm up: the spawner thread and lazy statics exist from then on.
    let mut vm = stopped_x86_in(base.path());
    vm.launch().unwrap();
    vm.shutdown().unwrap();
    let before = counts(base.path());
    for i in 0..n {
        let mut vm = stopped_x86_in(base.path());
        vm.launch().unwrap();
        vm.command("query-status", json!({})).unwrap();
        if i % 2 == 0 {
            vm.shutdown().unwrap();
        } else {
            drop(vm);
        }
    }
    let after = counts(base.path());
    assert_eq!(after.fds, before.fds, "open fds");
    assert_eq!(after.threads, before.threads, "threads");
    assert_eq!(after.children, before.children, "child processes");
    assert_eq!(
        (before.machine_dirs, after.machine_dirs),
        (0, 0),
        "temp/sock dirs left in {}",
        base.path().display()
    );
}

#[test]
fn two_hundred_cycles_leak_nothing() {
    cycles(200);
}

#[test]
#[ignore = "long: 1000 launch/shutdown cycles; run with --ignored"]
fn a_thousand_cycles_leak_nothing() {
    cycles(1000);
}
