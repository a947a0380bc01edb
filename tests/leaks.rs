//! Launch/shutdown cycles leak no fds, threads, dirs or children. Alone
//! in its own test binary, because it counts process-wide resources.

use std::sync::Mutex;

use qemu_test_suite::stopped_x86;
use serde_json::json;

/// The counts are process-wide: one cycle test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Counts {
    fds: usize,
    threads: usize,
    children: usize,
    machine_dirs: usize,
}

fn counts() -> Counts {
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
    let machine_dirs = std::fs::read_dir(std::env::temp_dir())
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
    // Warm up: the spawner thread and lazy statics exist from then on.
    let mut vm = stopped_x86();
    vm.launch().unwrap();
    vm.shutdown().unwrap();
    let before = counts();
    for i in 0..n {
        let mut vm = stopped_x86();
        vm.launch().unwrap();
        vm.command("query-status", json!({})).unwrap();
        if i % 2 == 0 {
            vm.shutdown().unwrap();
        } else {
            drop(vm);
        }
    }
    let after = counts();
    assert_eq!(after.fds, before.fds, "open fds");
    assert_eq!(after.threads, before.threads, "threads");
    assert_eq!(after.children, before.children, "child processes");
    // Other test binaries may run VMs at the same time; ours are all gone
    // if the count did not grow.
    assert!(
        after.machine_dirs <= before.machine_dirs,
        "temp/sock dirs: {} -> {}",
        before.machine_dirs,
        after.machine_dirs
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
