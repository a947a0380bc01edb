//! P6, memory: how much the test process grows per running VM.
//!
//! The bench process's resident set (`VmRSS` in `/proc/self/status`) is
//! read before and after launching `--vms` echo-guest [`Machine`]s, each
//! with its console drained into memory and a log file, its QMP transcript
//! written, booted to the prompt and answering a command; the growth
//! divided by the number of machines is the row. QEMU runs in processes of
//! its own, so its memory is not counted; its resident set is shown for
//! scale. One machine is launched and shut down first, so that one-time
//! costs (lazily built tables, the allocator's first arenas) are not
//! charged to the machines measured.

use std::path::Path;

use qemu_test::{guest, Machine};
use serde_json::json;

use super::table::{Check, Row};
use crate::bench::Options;

/// The largest growth per machine that meets the target, in MB.
const LIMIT_MB: f64 = 3.0;

pub(super) fn p6(qemu: &Path, opts: &Options) -> Result<(Row, String), String> {
    let kernel = guest::ECHO_SHELL_AARCH64
        .path()
        .map_err(|e| format!("the echo guest: {e}"))?;
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-p6-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let launch = |i: usize| -> Result<Machine, String> {
        let mut vm = Machine::builder(qemu.to_string_lossy())
            .args(["-cpu", "max", "-nodefaults", "-kernel"])
            .arg(kernel.to_string_lossy())
            .name(format!("vm{i}"))
            .log_dir(dir.path())
            .console_log(dir.path().join(format!("vm{i}-console.log")))
            .build();
        vm.set_machine("virt");
        vm.set_console(None, 0);
        vm.launch().map_err(|e| format!("launch: {e}"))?;
        vm.console()
            .exec_and_wait("hello", "you said: hello")
            .map_err(|e| format!("the echo guest did not answer: {e}"))?;
        vm.command("query-status", json!({}))
            .map_err(|e| format!("query-status: {e}"))?;
        Ok(vm)
    };
    launch(0)?
        .shutdown()
        .map_err(|e| format!("shutdown: {e}"))?;

    let before = rss_kib("self")?;
    let mut vms = Vec::new();
    for i in 1..=opts.vms {
        vms.push(launch(i)?);
    }
    let during = rss_kib("self")?;
    let mut qemu_kib = 0;
    for vm in &vms {
        let pid = vm.pid().ok_or("a running machine without a pid")?;
        qemu_kib += rss_kib(&pid.to_string())?;
    }
    for vm in &mut vms {
        vm.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    }
    drop(vms);
    let after = rss_kib("self")?;

    let n = opts.vms as f64;
    let per_vm = during.saturating_sub(before) as f64 / 1024.0 / n;
    let qemu_per_vm = qemu_kib as f64 / 1024.0 / n;
    let row = Row {
        id: "P6",
        what: "test-process RSS per running VM, beyond QEMU's own".into(),
        raw: format!("QEMU itself: {qemu_per_vm:.1} MB (not counted)"),
        ours: format!("{per_vm:.2} MB"),
        ratio: None,
        instructions: None,
        target: "≤ 3 MB",
        checks: vec![Check::at_most("RSS", per_vm, LIMIT_MB)],
        host: None,
        note: format!(
            "{} echo-guest machines at once, console drained and logged, QMP transcript on; \
             VmRSS {} → {} MB",
            opts.vms,
            mb(before),
            mb(during)
        ),
    };
    let detail = format!(
        "P6: VmRSS before {} MB · with {} machines {} MB · after their shutdown {} MB · QEMU's own {:.1} MB per machine\n",
        mb(before),
        opts.vms,
        mb(during),
        mb(after),
        qemu_per_vm
    );
    Ok((row, detail))
}

fn mb(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// `VmRSS` of process `pid` (or `self`), in KiB.
fn rss_kib(pid: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_rss() {
        let kib = rss_kib("self").unwrap();
        assert!(kib > 100, "{kib} KiB");
        assert!(rss_kib("0").is_err());
    }
}
