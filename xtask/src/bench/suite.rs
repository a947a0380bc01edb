//! P3, suite throughput: how close the runner's wall time for the 100
//! echo-guest tests of `tests/runner_bench.rs` comes to the ideal, the sum
//! of the tests' own times divided by the CPU slots.
//!
//! Each test's time comes from the run's JUnit report (`QEMU_TEST_JUNIT`):
//! from its admission by the scheduler to the end of its teardown, so time
//! spent waiting for a slot is not counted as the test's. The wall time is
//! the whole process, start-up and report included. The run gets its own
//! slot budget (a private `TMPDIR`, where the runner keeps its slot files),
//! so VM tests of other processes on the host do not hold its slots; the
//! budget is `QEMU_TEST_JOBS` = the number of cores.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::stats::median_f64;
use super::table::{Check, Row};
use super::Options;
use crate::util;

/// The suite: a `qemu_test::main!()` binary of the test crate.
const PACKAGE: &str = "qemu-test-suite";
const BINARY: &str = "runner-bench";
/// How many tests it has.
const TESTS: usize = 100;

/// One run of the suite.
struct Run {
    wall: Duration,
    /// Σ of the tests' own times.
    busy: Duration,
}

/// Builds the suite (release), runs it `opts.suite_runs` times.
pub(super) fn p3(opts: &Options) -> Result<(Row, String), String> {
    let mut build = util::cargo();
    build.args([
        "build",
        "--release",
        "--quiet",
        "--package",
        PACKAGE,
        "--bin",
        BINARY,
    ]);
    util::run(&mut build)?;
    let binary = util::target_dir().join("release").join(BINARY);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut runs = Vec::new();
    for _ in 0..opts.suite_runs {
        runs.push(run_once(&binary, cores)?);
    }
    let ideal = |r: &Run| r.busy / cores as u32;
    let ratios: Vec<f64> = runs
        .iter()
        .map(|r| r.wall.as_secs_f64() / ideal(r).as_secs_f64())
        .collect();
    let ratio = median_f64(&ratios);
    // The run whose ratio is the median (the upper one of an even count).
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| ratios[a].total_cmp(&ratios[b]));
    let shown = &runs[order[runs.len() / 2]];
    let row = Row {
        id: "P3",
        what: format!("suite throughput: {TESTS} echo-guest tests, wall ÷ (Σ test time ÷ cores)"),
        raw: format!("{} (Σ ÷ {cores})", util::human(ideal(shown))),
        ours: format!("{} wall", util::human(shown.wall)),
        ratio: Some(ratio),
        instructions: None,
        target: "≤ 1.15",
        checks: vec![Check::at_most("time", ratio, 1.15)],
        host: None,
        note: format!(
            "median of {} run(s); {cores} CPU slots, the run's own slot budget; \
             test times from the JUnit report (admission to end of teardown)",
            runs.len()
        ),
    };
    let mut detail = String::new();
    for (i, (r, x)) in runs.iter().zip(&ratios).enumerate() {
        detail.push_str(&format!(
            "P3 run {}: wall {} · Σ test time {} · Σ ÷ {cores} = {} · ratio {x:.3}\n",
            i + 1,
            util::human(r.wall),
            util::human(r.busy),
            util::human(ideal(r)),
        ));
    }
    Ok((row, detail))
}

fn run_once(binary: &Path, cores: usize) -> Result<Run, String> {
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-p3-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let junit_dir = dir.path().join("junit");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir.path())
        .env("QEMU_TEST_JUNIT", &junit_dir)
        .env("QEMU_TEST_ARTIFACTS", dir.path().join("artifacts"))
        .env("QEMU_TEST_JOBS", cores.to_string())
        .env("QEMU_TEST_REQUIRE", "1")
        .env("QEMU_TEST_KEEP", "failed")
        .env_remove("QEMU_TEST_ON_FAILURE")
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null());
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", binary.display()))?;
    let wall = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}{}",
            binary.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // One report per binary, `<package>.<binary>.xml`: the only one here.
    let junit = junit_dir.join("qemu-test-suite.runner-bench.xml");
    let xml =
        std::fs::read_to_string(&junit).map_err(|e| format!("reading {}: {e}", junit.display()))?;
    let doc = roxmltree::Document::parse(&xml)
        .map_err(|e| format!("parsing {}: {e}", junit.display()))?;
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    if cases.len() != TESTS {
        return Err(format!(
            "the JUnit report has {} test cases, expected {TESTS}",
            cases.len()
        ));
    }
    let mut busy = Duration::ZERO;
    for case in cases {
        let name = case.attribute("name").unwrap_or("?");
        if case
            .children()
            .any(|c| c.is_element() && !c.has_tag_name("properties"))
        {
            return Err(format!("{name} did not pass"));
        }
        let time = case
            .attribute("time")
            .and_then(|t| t.parse::<f64>().ok())
            .ok_or_else(|| format!("{name} has no time in the JUnit report"))?;
        busy += Duration::from_secs_f64(time);
    }
    Ok(Run { wall, busy })
}
