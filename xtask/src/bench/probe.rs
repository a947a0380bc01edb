//! Probes: one kind of operation repeated in a process of its own, for
//! counting what the process alone does (instructions under callgrind,
//! system calls under strace). `cargo xtask bench-probe KIND COUNT`.

use std::path::Path;

use super::launch::{p1_ours, p1_raw};
use super::rawqmp::{RawQmp, QUERY_STATUS};
use super::roundtrip::{launch_for_p2, timed_command, timed_raw};
use super::QEMU;
use crate::util;

/// The kinds of operation a probe repeats.
pub const KINDS: [&str; 5] = [
    "launch-raw",
    "launch-ours",
    "call-raw",
    "call-ours",
    "call-logged",
];

/// Runs `count` operations of `kind`.
pub fn probe(kind: &str, count: usize) -> Result<(), String> {
    let qemu = util::find_qemu(QEMU).ok_or_else(|| format!("{QEMU} not found"))?;
    let qemu: &Path = &qemu;
    match kind {
        "launch-raw" => (0..count).try_for_each(|_| p1_raw(qemu).map(drop)),
        "launch-ours" => (0..count).try_for_each(|_| p1_ours(qemu, None).map(drop)),
        "call-raw" => {
            let mut raw = RawQmp::start(qemu)?;
            (0..count).try_for_each(|_| timed_raw(&mut raw, QUERY_STATUS).map(drop))?;
            raw.quit()
        }
        "call-ours" | "call-logged" => {
            let logs = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
            let mut builder = qemu_test::Machine::builder(qemu.to_string_lossy());
            if kind == "call-logged" {
                builder = builder.log_dir(logs.path());
            }
            let mut vm = launch_for_p2(builder)?;
            (0..count).try_for_each(|_| timed_command(&mut vm).map(drop))?;
            vm.shutdown().map_err(|e| format!("shutdown: {e}"))
        }
        other => Err(format!(
            "unknown probe `{other}` (one of {})",
            KINDS.join(", ")
        )),
    }
}
