//! P2: one `query-status` round trip through [`Machine::command`] against
//! a blocking client (`write_all` + `read_line`) on a Unix socket to a
//! QEMU of its own; judged as `compare.rs` says.
//!
//! Calls go in blocks of [`BLOCK`], the sides' blocks interleaved (in
//! alternating order) and spread over [`INSTANCES`] QEMUs per side, so
//! that neither the host's drift nor one QEMU's luck (where its memory
//! landed, which CPU it runs on) favours a side. A pair is one block of
//! each side: their median call times, and their CPU time (this process
//! and the QEMU) per call. Two rows: a default [`Machine`] (no transcript:
//! it has no log dir), and one with a log dir as the runner sets it (the
//! QMP transcript on disk). A diagnostic in the same rounds: qemu-test's
//! `QmpClient` alone on a raw QEMU's socket.

use std::path::Path;
use std::time::{Duration, Instant};

use qemu_test::Machine;
use serde_json::json;

use super::compare::{self, Pairs, Sample};
use super::rawqmp::{check_status, ClientOnly, RawQmp, QUERY_STATUS};
use super::stats::{median_f64, ratio, Stats};
use super::table::Row;
use super::{host, instructions, Options, QEMU_ARGS};

/// Calls per block.
const BLOCK: usize = 10;
/// QEMUs per side.
const INSTANCES: usize = 2;
/// Unmeasured calls per QEMU first.
const WARMUP: usize = 200;

pub(super) fn launch_for_p2(builder: qemu_test::MachineBuilder) -> Result<Machine, String> {
    let mut vm = builder.args(QEMU_ARGS.iter().copied()).build();
    vm.launch().map_err(|e| format!("launch: {e}"))?;
    Ok(vm)
}

/// One timed `query-status` through [`Machine::command`].
pub(super) fn timed_command(vm: &mut Machine) -> Result<Duration, String> {
    let t = Instant::now();
    let status = vm
        .command("query-status", json!({}))
        .map_err(|e| format!("query-status: {e}"))?;
    let elapsed = t.elapsed();
    check_status(&status)?;
    Ok(elapsed)
}

/// One timed `query-status` over the raw socket.
pub(super) fn timed_raw(raw: &mut RawQmp, request: &[u8]) -> Result<Duration, String> {
    let t = Instant::now();
    let reply = raw.query_status(request)?;
    let elapsed = t.elapsed();
    check_status(&reply["return"])?;
    Ok(elapsed)
}

/// A client and its QEMU.
trait Side {
    /// One timed `query-status`.
    fn call(&mut self) -> Result<Duration, String>;
    /// The QEMU's pid.
    fn qemu(&self) -> u32;
    /// Ends the QEMU.
    fn stop(self: Box<Self>) -> Result<(), String>;
}

impl Side for RawQmp {
    fn call(&mut self) -> Result<Duration, String> {
        timed_raw(self, QUERY_STATUS)
    }
    fn qemu(&self) -> u32 {
        self.pid()
    }
    fn stop(self: Box<Self>) -> Result<(), String> {
        self.quit()
    }
}

impl Side for Machine {
    fn call(&mut self) -> Result<Duration, String> {
        timed_command(self)
    }
    fn qemu(&self) -> u32 {
        self.pid().unwrap_or(0)
    }
    fn stop(mut self: Box<Self>) -> Result<(), String> {
        self.shutdown().map_err(|e| format!("shutdown: {e}"))
    }
}

impl Side for ClientOnly {
    fn call(&mut self) -> Result<Duration, String> {
        self.timed_query_status()
    }
    fn qemu(&self) -> u32 {
        self.pid()
    }
    fn stop(self: Box<Self>) -> Result<(), String> {
        self.quit()
    }
}

/// A block of calls: the median call time, the CPU time per call, and
/// every call's time into `all`.
fn block(side: &mut dyn Side, all: &mut Vec<Duration>) -> Result<Sample, String> {
    let pid = side.qemu();
    let cpu_before = host::cpu_self() + host::cpu_of(pid);
    let mut times = [Duration::ZERO; BLOCK];
    for t in times.iter_mut() {
        *t = side.call()?;
    }
    let cpu = (host::cpu_self() + host::cpu_of(pid)).saturating_sub(cpu_before);
    all.extend_from_slice(&times);
    times.sort();
    Ok(Sample {
        wall: (times[BLOCK / 2 - 1] + times[BLOCK / 2]) / 2,
        cpu: cpu / BLOCK as u32,
    })
}

/// The kinds of side, in the order of [`Sides::kinds`].
const RAW: usize = 0;
const OURS: usize = 1;
const LOGGED: usize = 2;
const CLIENT: usize = 3;
const KINDS: usize = 4;

/// [`INSTANCES`] of each kind of side.
struct Sides {
    kinds: [Vec<Box<dyn Side>>; KINDS],
    _logs: tempfile::TempDir,
}

impl Sides {
    fn start(qemu: &Path) -> Result<Sides, String> {
        let logs = tempfile::Builder::new()
            .prefix("qemu-test-bench-p2-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let mut kinds: [Vec<Box<dyn Side>>; KINDS] = Default::default();
        for i in 0..INSTANCES {
            let machine = || Machine::builder(qemu.to_string_lossy());
            kinds[RAW].push(Box::new(RawQmp::start(qemu)?));
            kinds[OURS].push(Box::new(launch_for_p2(machine())?));
            kinds[LOGGED].push(Box::new(launch_for_p2(
                machine().log_dir(logs.path()).name(format!("vm{i}")),
            )?));
            kinds[CLIENT].push(Box::new(ClientOnly::start(qemu)?));
        }
        Ok(Sides { kinds, _logs: logs })
    }

    fn warm_up(&mut self) -> Result<(), String> {
        for _ in 0..WARMUP {
            for side in self.kinds.iter_mut().flatten() {
                side.call()?;
            }
        }
        Ok(())
    }

    /// Round `n`: a block of each kind, on instance `n % INSTANCES`, in an
    /// order that rotates from one round to the next.
    fn round(
        &mut self,
        n: usize,
        calls: &mut [Vec<Duration>; KINDS],
    ) -> Result<[Sample; KINDS], String> {
        let mut samples = [Sample::default(); KINDS];
        for k in 0..KINDS {
            let kind = (n + k) % KINDS;
            let side = &mut self.kinds[kind][n % INSTANCES];
            samples[kind] = block(side.as_mut(), &mut calls[kind])?;
        }
        Ok(samples)
    }

    fn stop(self) -> Result<(), String> {
        for side in self.kinds.into_iter().flatten() {
            side.stop()?;
        }
        Ok(())
    }
}

pub(super) fn p2(qemu: &Path, opts: &Options) -> Result<(Vec<Row>, String), String> {
    let rounds = opts.calls.div_ceil(BLOCK).max(2);
    let pinned = host::Pinned::last_cpu();
    let mut sides = Sides::start(qemu)?;
    sides.warm_up()?;
    let (mut plain, mut logged) = (Pairs::default(), Pairs::default());
    let mut client = Vec::new();
    let mut calls: [Vec<Duration>; KINDS] = Default::default();
    for n in 0..rounds {
        let round = sides.round(n, &mut calls)?;
        plain.push(round[RAW], round[OURS]);
        logged.push(round[RAW], round[LOGGED]);
        client.push(ratio(round[CLIENT].wall, round[RAW].wall));
    }
    sides.stop()?;
    let pinned = pinned.map(|p| p.cpu);
    let counted = if opts.instructions {
        instructions::available().and_then(|()| {
            let count = opts.instruction_calls;
            Ok((
                instructions::per_op("call-raw", WARMUP, count)?,
                instructions::per_op("call-ours", WARMUP, count)?,
                instructions::per_op("call-logged", WARMUP, count)?,
            ))
        })
    } else {
        Err("not asked for (--no-instructions)".into())
    };
    let what = "QMP round trip, `query-status` (median per call)";
    let how = format!(
        "{} calls per side in blocks of {BLOCK}, interleaved, on {INSTANCES} QEMUs per side, {}",
        rounds * BLOCK,
        pinned_note(pinned)
    );
    let (mut row, mut detail) = compare::row(
        "P2",
        what,
        &plain,
        &counted.clone().map(|(raw, ours, _)| (raw, ours)),
    );
    row.note = format!("{how}; a default `Machine` (no transcript); {}", row.note);
    let (mut with_logs, logs_detail) = compare::row(
        "P2",
        &format!("{what}, with a log dir"),
        &logged,
        &counted.map(|(raw, _, logged)| (raw, logged)),
    );
    with_logs.note = format!(
        "{how}; `Machine` with a log dir as the runner sets it (the QMP transcript written on disk by a background thread); {}",
        with_logs.note
    );
    detail.push_str(&logs_detail.replace("P2 ours", "P2 ours (log dir)"));
    let [raw_t, ours_t, logged_t, client_t] = &calls;
    detail.push_str(&format!(
        "P2 every call, raw:  {}\nP2 every call, ours: {}\nP2 every call, ours (log dir): {}\n\
         diagnostic (not in the table): qemu_test::qmp::QmpClient alone on a raw QEMU's socket, \
         median of paired ratios to raw {:.3} ({})\n",
        Stats::of(raw_t).line(),
        Stats::of(ours_t).line(),
        Stats::of(logged_t).line(),
        median_f64(&client),
        Stats::of(client_t).line(),
    ));
    Ok((vec![row, with_logs], detail))
}

/// Where the measured processes ran, for the notes.
pub(super) fn pinned_note(cpu: Option<usize>) -> String {
    match cpu {
        Some(cpu) => format!("all on CPU {cpu} (the bench and its QEMUs, both sides)"),
        None => "not pinned to a CPU (could not)".into(),
    }
}
