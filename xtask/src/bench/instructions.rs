//! Instruction counts of P1's and P2's operations under callgrind: unlike
//! wall time on a shared host, they repeat from run to run.
//!
//! A probe (`xtask bench-probe KIND N`, see `probe.rs`) repeats one kind
//! of operation N times in a process of its own, run under `valgrind
//! --tool=callgrind --trace-children=yes`, so the QEMUs it starts are
//! counted too, each process in a file of its own. The probe runs twice,
//! with `warm` and with `warm + count` operations; the difference divided
//! by `count` is one operation's instructions, with start-up, warm-up and
//! the QEMUs' start and exit (P2) left out. Counted: user-space
//! instructions of the probe process (the client: raw or qemu-test) and of
//! every QEMU; not the kernel's work (system calls, fork, page faults),
//! which the CPU-time ratio covers.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::setup::{self, Tool};
use crate::util;

/// The tool.
pub(super) const VALGRIND: Tool = Tool {
    program: "valgrind",
    package: "valgrind",
};

/// One operation's instructions.
#[derive(Debug, Clone, Copy)]
pub(super) struct PerOp {
    /// The probe process: the client.
    pub(super) client: f64,
    /// The client and every QEMU it started.
    pub(super) total: f64,
}

/// Makes sure valgrind is there (installing it as root, as `setup` does);
/// why not, if it is not.
pub(super) fn available() -> Result<(), String> {
    if setup::missing(&[VALGRIND]).is_empty() {
        return Ok(());
    }
    setup::install(&[VALGRIND.program.to_string()], &[VALGRIND.package])
        .map_err(|e| format!("no instruction counts without valgrind: {e}"))?;
    if setup::missing(&[VALGRIND]).is_empty() {
        Ok(())
    } else {
        Err("no instruction counts: valgrind is still missing after installing it".into())
    }
}

/// One `kind` operation's instructions: the probe run with `warm` and with
/// `warm + count` operations, the difference divided by `count`.
pub(super) fn per_op(kind: &str, warm: usize, count: usize) -> Result<PerOp, String> {
    let few = run(kind, warm)?;
    let many = run(kind, warm + count)?;
    let per = |a: u64, b: u64| (b as f64 - a as f64) / count as f64;
    Ok(PerOp {
        client: per(few.client, many.client),
        total: per(few.total(), many.total()),
    })
}

/// What one probe run executed.
struct Run {
    client: u64,
    qemu: u64,
}

impl Run {
    fn total(&self) -> u64 {
        self.client + self.qemu
    }
}

fn run(kind: &str, n: usize) -> Result<Run, String> {
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-callgrind-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("finding xtask itself: {e}"))?;
    let out = dir.path().join("callgrind.%p");
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--trace-children=yes"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args(["bench-probe", kind, &n.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| format!("running {}: {e}", util::display(&cmd)))?;
    let pid = child.id();
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for valgrind: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{}` failed ({}):\n{}",
            util::display(&cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut run = Run { client: 0, qemu: 0 };
    let entries = std::fs::read_dir(dir.path()).map_err(|e| format!("reading {e}"))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(file_pid) = name.strip_prefix("callgrind.") else {
            continue;
        };
        let count = totals(&entry.path())?;
        if file_pid == pid.to_string() {
            run.client += count;
        } else {
            run.qemu += count;
        }
    }
    if run.client == 0 {
        return Err(format!("callgrind wrote no counts for the probe `{kind}`"));
    }
    Ok(run)
}

/// The `totals:` (or `summary:`) line of a callgrind output file.
fn totals(path: &Path) -> Result<u64, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no totals in {}", path.display()))
}
