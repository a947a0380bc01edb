//! P1: launch → `qmp_capabilities` → `query-status` → `quit` → exit,
//! through [`Machine`] against QEMU with `-qmp stdio` and the same
//! exchange over plain pipes; judged as `compare.rs` says.

use std::io::BufReader;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu_test::Machine;
use serde_json::json;

use super::compare::{self, Pairs, Sample};
use super::rawqmp::{
    check_status, exchange, read_message, Reaped, CAPABILITIES, QUERY_STATUS, QUIT,
};
use super::table::Row;
use super::{host, instructions, roundtrip, Options, QEMU_ARGS};

/// P1 raw: QEMU with `-qmp stdio`, the handshake over plain pipes.
pub(super) fn p1_raw(qemu: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let child = Command::new(qemu)
        .args(["-display", "none", "-vga", "none"])
        .args(QEMU_ARGS)
        .args(["-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", qemu.display()))?;
    let mut child = Reaped(child);
    let mut input = child.0.stdin.take().expect("piped");
    let mut output = BufReader::new(child.0.stdout.take().expect("piped"));
    let mut line = String::new();
    let greeting = read_message(&mut output, &mut line)?;
    if greeting.get("QMP").is_none() {
        return Err(format!("not a QMP greeting: {greeting}"));
    }
    exchange(&mut input, &mut output, &mut line, CAPABILITIES)?;
    let status = exchange(&mut input, &mut output, &mut line, QUERY_STATUS)?.unwrap_or_default();
    check_status(&status["return"])?;
    exchange(&mut input, &mut output, &mut line, QUIT)?;
    drop(input);
    let exit = child.wait_success();
    let elapsed = start.elapsed();
    exit?;
    Ok(elapsed)
}

/// P1 ours: the same through [`Machine`], with its logs in `log_dir` (as
/// the runner sets it: QEMU's output and the QMP transcript on disk) or,
/// by default, in memory.
pub(super) fn p1_ours(qemu: &Path, log_dir: Option<&Path>) -> Result<Duration, String> {
    let start = Instant::now();
    let mut builder = Machine::builder(qemu.to_string_lossy()).args(QEMU_ARGS.iter().copied());
    if let Some(dir) = log_dir {
        builder = builder.log_dir(dir).name("vm");
    }
    let mut vm = builder.build();
    vm.launch().map_err(|e| format!("launch: {e}"))?;
    let status = vm
        .command("query-status", json!({}))
        .map_err(|e| format!("query-status: {e}"))?;
    check_status(&status)?;
    vm.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    let elapsed = start.elapsed();
    if vm.exit_code() != Some(0) {
        return Err(format!("QEMU exited with {:?}", vm.exit_code()));
    }
    Ok(elapsed)
}

/// One launch of either side, timed, with the CPU time of this process
/// and of the QEMU it reaped.
fn measured(launch: impl FnOnce() -> Result<Duration, String>) -> Result<Sample, String> {
    let cpu_before = host::cpu_self() + host::cpu_children();
    let wall = launch()?;
    let cpu = (host::cpu_self() + host::cpu_children()).saturating_sub(cpu_before);
    Ok(Sample { wall, cpu })
}

pub(super) fn p1(qemu: &Path, opts: &Options) -> Result<(Vec<Row>, String), String> {
    let logs = tempfile::Builder::new()
        .prefix("qemu-test-bench-p1-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let (mut plain, mut logged) = (Pairs::default(), Pairs::default());
    let pinned = host::Pinned::last_cpu();
    for i in 0..opts.warmups + opts.runs {
        // The three in an order that rotates, so that none always follows
        // another.
        let mut samples = [Sample::default(); 3];
        for k in 0..3 {
            let side = (i + k) % 3;
            samples[side] = measured(|| match side {
                0 => p1_raw(qemu),
                1 => p1_ours(qemu, None),
                _ => p1_ours(qemu, Some(logs.path())),
            })?;
        }
        if i >= opts.warmups {
            plain.push(samples[0], samples[1]);
            logged.push(samples[0], samples[2]);
        }
    }
    let pinned = pinned.map(|p| p.cpu);
    let counted = if opts.instructions {
        instructions::available().and_then(|()| {
            let count = opts.instruction_launches;
            Ok((
                instructions::per_op("launch-raw", 1, count)?,
                instructions::per_op("launch-ours", 1, count)?,
            ))
        })
    } else {
        Err("not asked for (--no-instructions)".into())
    };
    let what = "launch → capabilities → `query-status` → quit → exit (median)";
    let (mut row, mut detail) = compare::row("P1", what, &plain, &counted);
    row.note = format!(
        "{} launches per side, interleaved, after {} warm-ups, {}; a default `Machine` (logs in memory); {}",
        opts.runs,
        opts.warmups,
        roundtrip::pinned_note(pinned),
        row.note
    );
    let (mut with_logs, logs_detail) = compare::row(
        "P1",
        &format!("{what}, with a log dir"),
        &logged,
        &Err("counted for the default machine only".into()),
    );
    with_logs.note = format!(
        "the same launches, `Machine` with a log dir as the runner sets it (QEMU's output and the QMP transcript on disk); {}",
        with_logs.note
    );
    detail.push_str(&logs_detail.replace("P1 ours", "P1 ours (log dir)"));
    Ok((vec![row, with_logs], detail))
}
