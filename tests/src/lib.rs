//! Shared helpers for the framework's own integration tests (`tests/*.rs`).

use std::path::Path;
use std::process::Command;

/// Whether process `pid` still exists (and is not a zombie we own).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state is the field after the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some(Some('Z')) | Some(Some('X')))
        }
        Err(_) => false,
    }
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

/// A `qemu-system-x86_64 -S -nodefaults` machine: QMP only, no guest code
/// runs; the cheapest real QEMU.
pub fn stopped_x86() -> qemu_test::Machine {
    qemu_test::Machine::builder("qemu-system-x86_64")
        .args(["-S", "-nodefaults"])
        .build()
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a real pid");
    rustix::process::kill_process(pid, signal).expect("signalling a process of ours");
}

/// `cmd` (a `qemu_test::main!()` binary) with the artifact root `root`, no
/// inherited `QEMU_TEST_*` settings (but the guest cache), and `envs`.
pub fn isolated(mut cmd: Command, envs: &[(&str, &str)], root: &Path) -> Command {
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("QEMU_TEST_") && n != "QEMU_TEST_CACHE_DIR")
        {
            cmd.env_remove(name);
        }
    }
    cmd.env("QEMU_TEST_ARTIFACTS", root)
        .env_remove("RUST_BACKTRACE")
        .envs(envs.iter().copied());
    cmd
}
