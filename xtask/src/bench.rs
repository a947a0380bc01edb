//! `cargo xtask bench`: qemu-test's overhead, measured as ratios against a
//! raw baseline taken in the same run, written as a markdown table to
//! `<target>/qemu-test/bench.md`.
//!
//! | id | what | baseline |
//! | --- | --- | --- |
//! | P1 | launch → `qmp_capabilities` → `query-status` → `quit` → exit, through a default [`Machine`] and one with a log dir | QEMU with `-qmp stdio`, the same exchange over plain pipes |
//! | P2 | one `query-status` round trip through [`Machine::command`], default and with a log dir (QMP transcript on disk) | a blocking client (`write_all` + `read_line`) on a Unix socket to a QEMU of its own |
//! | P3 | suite throughput: the 100 echo-guest tests of `tests/runner_bench.rs` run by the runner, wall time | Σ(test time from the JUnit report) / cores |
//! | P4 | Linux guest: launch → first `succeed("true")` restored from a snapshot (judged: ≤ 1.1× the raw restore); the same against a cold boot, and a 20-test suite with `snapshot` (reported) | QEMU started by hand with `-incoming` from the same state and RAM file, to the same command's answer on the console; the same booted cold; the same suite without `snapshot` |
//! | P5 | console `flood` of 10 MB through [`Machine`]'s console: bytes lost (judged) and time (ratio, not judged) | the same guest and flood, QEMU's serial port on stdio into a plain file (no reader) |
//! | P6 | RSS of the test process per running echo-guest [`Machine`] (console drained, QMP connected), QEMU's own not counted | — (QEMU's RSS shown for scale) |
//! | P7 | cold build (`cargo test --no-run`, empty target dir, offline, dev profile) of a one-test crate depending on `qemu-test` | the same for a crate with one `libtest-mimic` test using `serde_json` |
//! | P8 | three Linux VMs on one private network, start → every pair pings, cold and from a booted snapshot; 50 MB into the guest through a 9p share | one VM reaching its first command, cold and restored, in the same run; the serial console (`copy_to_guest`) |
//! | C1, C2 | Linux guest: `copy_to_guest` / `copy_from_guest` of 10 and 50 MB through the agent on the data channel (judged: ≥ 10× the console Shell's rate) | the same virtio-serial device driven by hand (`dd` on a second port of a QEMU started by hand) |
//! | C3 | `succeed("true")` through the agent (judged against the console Shell) | a byte echoed over that port by `cat` |
//! | C4 | 10 MB of stdout through the agent (`succeed("cat …")`; judged: ≥ 10× the console Shell's rate) | `dd` of 10 MB to that port |
//! | S | scale: `--list` of 1200 tests; the runner's cost per no-VM test at 250, 500 and 1000 tests, and its overhead per echo-guest test at 100 and 200 (judged: < 1 ms per test, linear) | a run selecting no test; the tests' own times from the JUnit report |
//!
//! Both sides of a timed comparison run the same QEMU binary and guest,
//! differing only in what qemu-test brings (for P5 that includes the
//! console transport, which is qemu-test's choice), and repeated
//! measurements are interleaved (raw, ours, raw, ours, …, in alternating
//! order) so that drift in the machine's load hits both alike (for P7:
//! whole cold builds, see [`build_cost`]). P1 and P2 are judged to 3 %:
//! every process of theirs kept to one CPU, paired ratios with a 95 %
//! interval, CPU time, and instruction counts under callgrind
//! (`compare.rs`, `instructions.rs`; `--no-instructions` skips the counts,
//! valgrind is installed as root when missing). P3 has no raw side (the
//! ideal is computed), P6 none at all (a size against a limit).
//!
//! Every row says what the host did meanwhile (`host.rs`): other
//! processes' share of the CPUs, steal time and the load average, flagged
//! **loaded** when wall times say little. A benchmark that cannot run
//! gets a row saying why, and the others still run. Timings of a debug
//! build mean little, so a debug `xtask` re-runs itself with `cargo run
//! --release` first. Benchmarks never fail the build on a missed target:
//! they report it, and CI does not run them. The whole run takes several
//! minutes (P5 and P7 about one and a half each); `--only` picks rows.

use std::path::Path;
use std::time::SystemTime;

use crate::{setup, util};

mod build_cost;
mod channel;
mod compare;
mod console;
mod host;
mod instructions;
mod launch;
mod memory;
mod net;
pub mod probe;
mod rawqmp;
mod roundtrip;
mod scale;
mod snapshot;
mod stats;
mod suite;
mod table;

use host::{HostLoad, Snapshot};
use table::Row;

/// QEMU arguments both sides use, after `-display none -vga none` (which
/// [`Machine`] adds itself): a stopped, device-less x86 machine.
const QEMU_ARGS: &[&str] = &["-S", "-nodefaults"];
const QEMU: &str = "qemu-system-x86_64";

/// `cargo xtask bench` flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// P1: measured launches per side.
    pub runs: usize,
    /// P1: unmeasured launches per side first.
    pub warmups: usize,
    /// P2: measured round trips per side.
    pub calls: usize,
    /// P1, P2: count instructions under callgrind too.
    pub instructions: bool,
    /// P1: launches per side counted under callgrind.
    pub instruction_launches: usize,
    /// P2: round trips per side counted under callgrind.
    pub instruction_calls: usize,
    /// P4: measured boots and restores per side.
    pub snapshot_runs: usize,
    /// P3: runs of the 100-test suite; P4: runs of the 20-test suite per
    /// side (the rows show medians).
    pub suite_runs: usize,
    /// P5: bytes the guest floods the console with.
    pub flood_bytes: usize,
    /// P5: floods per side.
    pub flood_runs: usize,
    /// P5: timed shell commands per console in the Linux guest.
    pub shell_commands: usize,
    /// P6: machines running at once.
    pub vms: usize,
    /// P7: cold builds per side.
    pub build_runs: usize,
    /// C1–C4: measurements per side.
    pub channel_runs: usize,
    /// Only these benchmarks (`P1` … `P7`, `C`); all when empty.
    pub only: Vec<String>,
    /// Run as built, even if that is a debug build.
    pub no_rebuild: bool,
}

/// The benchmarks' ids, in table order (`C` is the data channel's C1–C4).
pub const IDS: [&str; 10] = ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "C", "S"];

impl Options {
    /// Whether benchmark `id` is to run.
    fn selects(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o.eq_ignore_ascii_case(id))
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runs: 100,
            warmups: 4,
            calls: 5000,
            instructions: true,
            instruction_launches: 4,
            instruction_calls: 500,
            snapshot_runs: 5,
            suite_runs: 3,
            flood_bytes: 10_000_000,
            flood_runs: 2,
            shell_commands: 30,
            vms: 8,
            build_runs: 2,
            channel_runs: 3,
            only: Vec::new(),
            no_rebuild: false,
        }
    }
}

fn host_line() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cpus} CPUs, Linux {}, load average {} at start",
        kernel.trim(),
        load.join(" ")
    )
}

/// Runs the benchmarks; see the module docs.
pub fn bench(opts: Options) -> Result<(), String> {
    if cfg!(debug_assertions) && !opts.no_rebuild {
        println!("bench: this xtask is a debug build; re-running it with --release");
        let mut cmd = util::cargo();
        cmd.args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "bench",
        ]);
        cmd.args([
            "--runs",
            &opts.runs.to_string(),
            "--warmups",
            &opts.warmups.to_string(),
            "--calls",
            &opts.calls.to_string(),
            "--snapshot-runs",
            &opts.snapshot_runs.to_string(),
            "--suite-runs",
            &opts.suite_runs.to_string(),
            "--flood-bytes",
            &opts.flood_bytes.to_string(),
            "--flood-runs",
            &opts.flood_runs.to_string(),
            "--vms",
            &opts.vms.to_string(),
            "--build-runs",
            &opts.build_runs.to_string(),
            "--channel-runs",
            &opts.channel_runs.to_string(),
        ]);
        if !opts.instructions {
            cmd.arg("--no-instructions");
        }
        if !opts.only.is_empty() {
            cmd.args(["--only", &opts.only.join(",")]);
        }
        return util::run(&mut cmd);
    }
    if [
        opts.runs,
        opts.calls,
        opts.suite_runs,
        opts.flood_bytes,
        opts.vms,
        opts.build_runs,
        opts.channel_runs,
    ]
    .contains(&0)
    {
        return Err(
            "--runs, --calls, --suite-runs, --flood-bytes, --vms, --build-runs and --channel-runs must be at least 1"
                .into(),
        );
    }
    setup::setup(setup::Options::default())?;
    let qemu = util::find_qemu(QEMU).ok_or_else(|| format!("{QEMU} not found"))?;
    let version = util::version_line(&qemu).unwrap_or_default();
    let aarch64 =
        util::find_qemu(console::QEMU).ok_or_else(|| format!("{} not found", console::QEMU))?;
    let started = SystemTime::now();
    let header = format!(
        "- date: {}\n- host: {}\n- QEMU: {} ({})\n- xtask build: {}\n- P1, P2: QEMU arguments, both sides: `-display none -vga none {}` plus the monitor\n- P3, P5, P6: {} with the echo guest (`-M virt -cpu max -nodefaults -kernel …`, TCG)\n- P7: {}\n",
        humantime::format_rfc3339_seconds(started),
        host_line(),
        qemu.display(),
        version,
        if cfg!(debug_assertions) { "debug (timings overstate qemu-test's cost)" } else { "release" },
        QEMU_ARGS.join(" "),
        aarch64.display(),
        util::version_line(Path::new("rustc")).unwrap_or_else(|| "rustc".into()),
    );
    print!("\n{header}");

    type Bench<'a> = Box<dyn Fn() -> Result<(Vec<Row>, String), String> + 'a>;
    let one = |(row, detail): (Row, String)| (vec![row], detail);
    let benches: [(&str, String, Bench); 10] = [
        (
            "P1",
            format!(
                "{} launches per side after {} warm-ups",
                opts.runs, opts.warmups
            ),
            Box::new(|| launch::p1(&qemu, &opts)),
        ),
        (
            "P2",
            format!("{} QMP round trips per side", opts.calls),
            Box::new(|| roundtrip::p2(&qemu, &opts)),
        ),
        (
            "P3",
            format!("the 100-test suite, {} run(s)", opts.suite_runs),
            Box::new(|| suite::p3(&opts).map(one)),
        ),
        (
            "P4",
            format!(
                "Linux guest, {} boots and restores each, then a 20-test suite {} time(s) per side",
                opts.snapshot_runs, opts.suite_runs
            ),
            Box::new(|| snapshot::p4(&qemu, &opts)),
        ),
        (
            "P5",
            format!("a console flood of {} bytes per side", opts.flood_bytes),
            Box::new(|| console::p5(&aarch64, &opts)),
        ),
        (
            "P6",
            format!("{} echo-guest machines at once", opts.vms),
            Box::new(|| memory::p6(&aarch64, &opts).map(one)),
        ),
        (
            "P7",
            format!("{} cold builds per side", opts.build_runs),
            Box::new(|| build_cost::p7(&opts).map(one)),
        ),
        (
            "P8",
            format!(
                "three VMs on a network vs one, {} runs per side, cold and restored; a share vs the console",
                opts.snapshot_runs
            ),
            Box::new(|| net::p8(&opts)),
        ),
        (
            "C",
            format!(
                "the data channel: Linux guest, {} runs per side and size",
                opts.channel_runs
            ),
            Box::new(|| channel::rows(&qemu, opts.channel_runs)),
        ),
        (
            "S",
            format!(
                "scale: 1000 no-VM and 200 echo-guest tests, {} run(s) per no-VM size",
                opts.suite_runs.max(3)
            ),
            Box::new(|| scale::rows(opts.suite_runs)),
        ),
    ];
    let mut rows = Vec::new();
    let mut details = String::new();
    for (id, what, run) in &benches {
        if !opts.selects(id) {
            continue;
        }
        println!("\n{id}: {what}…");
        let start = Snapshot::now();
        let (mut new_rows, detail) = match run() {
            Ok(done) => done,
            // One benchmark that cannot run does not cost the others.
            Err(e) => {
                let mut row = Row::new(id, what.clone());
                row.note = format!("could not run: {}", e.replace('\n', " "));
                (vec![row], format!("{id}: could not run: {e}\n"))
            }
        };
        let load = HostLoad::between(&start, &Snapshot::now());
        for row in &mut new_rows {
            row.host = Some(load);
        }
        print!("{detail}");
        println!("{id} host meanwhile: {}", load.cell());
        rows.extend(new_rows);
        details.push_str(&detail);
    }

    let table = table::render(&rows);
    println!("\n{table}");
    let dir = util::artifacts_root(&util::target_dir());
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("bench.md");
    let doc = format!(
        "# qemu-test benchmarks\n\nRatios are qemu-test ÷ raw baseline, measured in the same run (`cargo xtask bench`). \
         The host column: other processes' share of all CPUs and steal time while the row ran, and the load average; \
         **loaded** above {:.0} % others or {:.0} % steal, when wall times say little and CPU time and instructions weigh more.\n\n{header}\n{table}\n```text\n{details}```\n",
        host::LOADED_OTHERS * 100.0,
        host::LOADED_STEAL * 100.0
    );
    std::fs::write(&path, doc).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("bench: written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_selects_case_insensitively() {
        let mut opts = Options::default();
        assert!(IDS.iter().all(|id| opts.selects(id)));
        opts.only = vec!["p5".into(), "P6".into()];
        assert!(opts.selects("P5") && opts.selects("P6") && !opts.selects("P1"));
    }
}
