//! S: how the runner's cost grows with the suite, on
//! `tests/runner_scale.rs` (1000 no-VM tests with empty bodies, 200
//! echo-guest tests), built in debug as users run their tests.
//!
//! - `--list` of all 1200 tests: wall time (median).
//! - No-VM tests: runs that select 0, 250, 500 and 1000 of them (one filter
//!   each), interleaved; the runner's cost per test at each size is
//!   (wall(N) − wall(0)) ÷ N, since the tests themselves do nothing.
//!   Target: under 1 ms per test (from the medians), and linear (the cost
//!   per test at 1000 within 1.25× of that at 250, from each size's fastest
//!   run: on a shared host a run of a tenth of a second is often
//!   preempted).
//! - Echo-guest tests: runs of 100 and 200; the overhead per test is the
//!   slot time not spent in tests, (wall × slots − Σ test time) ÷ N, with
//!   each test's time from the JUnit report (admission to the end of its
//!   teardown, so a VM launch counts as the test's). The run gets its own
//!   slot budget (a private `TMPDIR`), as P3's does.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::stats::Stats;
use super::table::{Check, Row};
use crate::util;

const PACKAGE: &str = "qemu-test-suite";
const BINARY: &str = "runner-scale";
/// No-VM subsets: (filter, how many tests it selects).
const NO_VM: [(&str, usize); 4] = [
    ("nv::none::", 0),
    ("nv::x::a::", 250),
    ("nv::x::", 500),
    ("nv::", 1000),
];
/// Echo-guest subsets.
const VM: [(&str, usize); 2] = [("vm::a::", 100), ("vm::", 200)];
/// Within this factor, the cost per test is taken as not growing.
const LINEAR: f64 = 1.25;

/// The S rows: `--list`, no-VM tests, echo-guest tests.
pub(super) fn rows(runs: usize) -> Result<(Vec<Row>, String), String> {
    util::run(util::cargo().args(["build", "--quiet", "-p", PACKAGE, "--bin", BINARY]))?;
    let binary = util::target_dir().join("debug").join(BINARY);
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-scale-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let mut detail = String::new();
    let list = list_times(&binary, dir.path(), runs.max(3))?;
    detail.push_str(&format!("S --list (1200 tests): {}\n", list.line()));
    // A run of no-VM tests takes a tenth of a second: many are cheap.
    let no_vm = no_vm_times(&binary, dir.path(), (runs * 5).max(15))?;
    for ((filter, n), stats) in NO_VM.iter().zip(&no_vm) {
        detail.push_str(&format!(
            "S no-VM `{filter}` ({n} tests): {}\n",
            stats.line()
        ));
    }
    let mut vm = Vec::new();
    for (filter, n) in VM {
        let run = run_vm(&binary, dir.path(), filter, n)?;
        detail.push_str(&format!(
            "S echo-guest `{filter}` ({n} tests): wall {} · Σ test time {} · {} slots\n",
            util::human(run.wall),
            util::human(run.busy),
            run.slots
        ));
        vm.push(run);
    }
    Ok((
        vec![list_row(&list), no_vm_row(&no_vm), vm_row(&vm)],
        detail,
    ))
}

fn list_row(list: &Stats) -> Row {
    let mut row = Row::new(
        "S",
        "`--list` of a 1200-test binary (1000 no-VM, 200 echo-guest)",
    );
    row.ours = util::human(list.median);
    row.target = "— (reported)";
    row.note = format!(
        "median of {}; {:.1} µs per test listed",
        list.n,
        list.median.as_secs_f64() * 1e6 / 1200.0
    );
    row
}

/// Cost per test at each non-empty size, in ms, from each size's `pick`
/// (the median, or the minimum).
fn per_test_ms(no_vm: &[Stats], pick: fn(&Stats) -> Duration) -> Vec<f64> {
    let base = pick(&no_vm[0]).as_secs_f64();
    NO_VM
        .iter()
        .zip(no_vm)
        .skip(1)
        .map(|((_, n), s)| (pick(s).as_secs_f64() - base).max(0.0) * 1e3 / *n as f64)
        .collect()
}

fn no_vm_row(no_vm: &[Stats]) -> Row {
    let per = per_test_ms(no_vm, |s| s.median);
    // Growth from the minima: a run of 0.1 s on a shared host is often
    // preempted, and the fastest run of each size is the runner's own cost.
    let fastest = per_test_ms(no_vm, |s| s.min);
    let (small, large) = (per[0], per[per.len() - 1]);
    let growth = if fastest[0] > 0.0 {
        fastest[fastest.len() - 1] / fastest[0]
    } else {
        1.0
    };
    let mut row = Row::new("S", "1000 no-VM tests: the runner's cost per test");
    row.raw = format!("{small:.3} ms at 250");
    row.ours = format!("{large:.3} ms at 1000");
    row.ratio = Some(growth);
    row.target = "< 1 ms per test; linear (≤ 1.25× the cost at 250)";
    row.checks = vec![
        Check::at_most("ms per test", large, 1.0),
        Check::at_most("growth", growth, LINEAR),
    ];
    row.note = format!(
        "(wall(N) − wall(0)) ÷ N, {} runs per size, interleaved; per test at 250 / 500 / 1000 from the medians: {:.3} / {:.3} / {:.3} ms, from the fastest runs: {:.3} / {:.3} / {:.3} ms (the ratio and growth: fastest at 1000 ÷ fastest at 250); a run selecting none: {}",
        no_vm[0].n,
        per[0],
        per[1],
        per[2],
        fastest[0],
        fastest[1],
        fastest[2],
        util::human(no_vm[0].median)
    );
    row
}

fn vm_row(vm: &[VmRun]) -> Row {
    let per: Vec<f64> = vm.iter().map(VmRun::overhead_ms).collect();
    let growth = if per[0] > 0.0 { per[1] / per[0] } else { 1.0 };
    let mut row = Row::new("S", "200 echo-guest tests: the runner's overhead per test");
    row.raw = format!("{:.2} ms at 100", per[0]);
    row.ours = format!("{:.2} ms at 200", per[1]);
    row.ratio = Some(growth);
    row.target = "< 1 ms per test beyond the test; linear";
    row.checks = vec![
        Check::at_most("ms per test", per[1], 1.0),
        Check::at_most("growth", growth.max(0.0), LINEAR),
    ];
    row.note = format!(
        "(wall × slots − Σ test time) ÷ N: slot time spent outside tests (start-up, scheduling, report), one run per size; tests' own times (JUnit) average {:.0} ms at 200",
        vm[1].busy.as_secs_f64() * 1e3 / 200.0
    );
    row
}

/// The binary with `args`, in `dir`, its own slot budget; an error if it
/// fails.
fn command(binary: &Path, dir: &Path, args: &[&str]) -> Result<Command, String> {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .current_dir(dir)
        .env("QEMU_TEST_ARTIFACTS", dir.join("artifacts"))
        .env("QEMU_TEST_REQUIRE", "1")
        .env("QEMU_TEST_KEEP", "failed")
        .env_remove("QEMU_TEST_ON_FAILURE")
        .env_remove("QEMU_TEST_JUNIT")
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null());
    Ok(cmd)
}

/// Runs `cmd`; its wall time.
fn timed(mut cmd: Command) -> Result<Duration, String> {
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", util::display(&cmd)))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}):\n{}{}",
            util::display(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

fn list_times(binary: &Path, dir: &Path, runs: usize) -> Result<Stats, String> {
    let mut times = Vec::new();
    for _ in 0..runs {
        times.push(timed(command(binary, dir, &["--list"])?)?);
    }
    Ok(Stats::of(&times))
}

/// Medians per [`NO_VM`] size, the sizes interleaved in each round.
fn no_vm_times(binary: &Path, dir: &Path, runs: usize) -> Result<Vec<Stats>, String> {
    let mut times = vec![Vec::new(); NO_VM.len()];
    for _ in 0..runs {
        for (i, (filter, _)) in NO_VM.iter().enumerate() {
            times[i].push(timed(command(binary, dir, &[filter])?)?);
        }
    }
    Ok(times.iter().map(|t| Stats::of(t)).collect())
}

/// One run of echo-guest tests.
struct VmRun {
    n: usize,
    slots: usize,
    wall: Duration,
    busy: Duration,
}

impl VmRun {
    fn overhead_ms(&self) -> f64 {
        let slot_time = self.wall.as_secs_f64() * self.slots as f64;
        (slot_time - self.busy.as_secs_f64()) * 1e3 / self.n as f64
    }
}

fn run_vm(binary: &Path, dir: &Path, filter: &str, n: usize) -> Result<VmRun, String> {
    let slots = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let junit = dir.join(format!("junit-{n}"));
    let mut cmd = command(binary, dir, &[filter])?;
    cmd.env("QEMU_TEST_JUNIT", &junit)
        .env("QEMU_TEST_JOBS", slots.to_string());
    let wall = timed(cmd)?;
    let report = junit.join(format!("{PACKAGE}.{BINARY}.xml"));
    let xml = std::fs::read_to_string(&report)
        .map_err(|e| format!("reading {}: {e}", report.display()))?;
    let doc = roxmltree::Document::parse(&xml)
        .map_err(|e| format!("parsing {}: {e}", report.display()))?;
    let times: Vec<f64> = doc
        .descendants()
        .filter(|c| c.has_tag_name("testcase"))
        .filter_map(|c| c.attribute("time").and_then(|t| t.parse().ok()))
        .collect();
    if times.len() != n {
        return Err(format!(
            "{}: {} test cases with a time, expected {n}",
            report.display(),
            times.len()
        ));
    }
    Ok(VmRun {
        n,
        slots,
        wall,
        busy: Duration::from_secs_f64(times.iter().sum()),
    })
}
