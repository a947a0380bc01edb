//! P8: three Linux VMs on one private network, from start to a ping
//! between every pair, cold and from a booted snapshot, each against one
//! VM reaching its first command in the same run; and a file into the
//! guest through a 9p share against over the serial console.
//!
//! Both sides run the `net-bench` fixture binary (tests/net_bench.rs) for
//! one test each, so process start, guest lookup, launch and teardown are
//! on both sides alike: the ratio is what the two more VMs, the network
//! and the guest-side setup cost. Runs are interleaved.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::stats::{ratio, Stats};
use super::table::{Check, Row};
use super::Options;
use crate::util;

/// The file copied through the share (and, cut short, over the console).
const SHARE_BYTES: usize = 50 << 20;
/// What the console copy moves: at about 60 KiB/s, 50 MB would take a
/// quarter of an hour; its rate is compared.
const SERIAL_BYTES: usize = 2 << 20;

/// Builds the fixture (debug, as users run tests).
fn build() -> Result<PathBuf, String> {
    util::run(util::cargo().args([
        "build",
        "--quiet",
        "-p",
        "qemu-test-suite",
        "--bin",
        "net-bench",
    ]))?;
    Ok(util::target_dir().join("debug").join("net-bench"))
}

/// One run of the fixture's test `name`: its wall time and stdout.
fn run(
    exe: &Path,
    name: &str,
    root: &Path,
    env: &[(&str, &Path)],
) -> Result<(Duration, String), String> {
    let tests = util::workspace_root().join("tests");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", name])
        .current_dir(&tests)
        .env("QEMU_TEST_ARTIFACTS", root)
        .env("QEMU_TEST_ACCEL", "tcg")
        .env_remove("QEMU_TEST_KEEP")
        .stdin(Stdio::null());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !stdout.contains("1 passed") {
        return Err(format!("P8: the fixture's test `{name}` failed:\n{stdout}"));
    }
    Ok((took, stdout))
}

/// Incompressible bytes (so that the console copy's gzip gains nothing).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `qemu-test-bench NAME BYTES SECONDS` from the fixture's output.
fn reported(stdout: &str, name: &str) -> Result<Copy, String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("qemu-test-bench "))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == name).then_some(())?;
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .next()
        .ok_or_else(|| format!("P8: the fixture did not report `{name}`:\n{stdout}"))
}

/// The rows and the detail lines.
pub(super) fn p8(opts: &Options) -> Result<(Vec<Row>, String), String> {
    let exe = build()?;
    let dir = tempfile::tempdir().map_err(|e| format!("a temp dir: {e}"))?;
    let root = dir.path();
    // The snapshots first, not measured.
    run(&exe, "three::snapshot", root, &[])?;
    run(&exe, "one::snapshot", root, &[])?;
    let mut t = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let names = [
        "one::cold",
        "three::cold",
        "one::snapshot",
        "three::snapshot",
    ];
    for _ in 0..opts.snapshot_runs.max(1) {
        for (samples, name) in t.iter_mut().zip(names) {
            samples.push(run(&exe, name, root, &[])?.0);
        }
    }
    let [one_cold, three_cold, one_snap, three_snap] = t.map(|s| Stats::of(&s));
    let (share, serial) = copies(&exe, root)?;
    let rows = vec![
        row(
            "three VMs on one network, start → every pair pings, booted",
            &three_cold,
            &one_cold,
            "cold",
        ),
        row(
            "three VMs from one booted snapshot, start → every pair pings",
            &three_snap,
            &one_snap,
            "restored",
        ),
        copy_row(share, serial),
    ];
    let detail = format!(
        "P8 one VM, cold → first command:        {}\nP8 three VMs, cold → all pairs ping:    {}\nP8 one VM, restored → first command:    {}\nP8 three VMs, restored → all pairs ping: {}\nP8 share: {} bytes in {:.3} s; serial: {} bytes in {:.3} s\n",
        one_cold.line(),
        three_cold.line(),
        one_snap.line(),
        three_snap.line(),
        share.0,
        share.1,
        serial.0,
        serial.1
    );
    Ok((rows, detail))
}

fn row(what: &str, three: &Stats, one: &Stats, how: &str) -> Row {
    Row {
        id: "P8",
        what: what.into(),
        raw: format!("{} (one VM, first command, {how})", util::human(one.median)),
        ours: format!("{} (three VMs)", util::human(three.median)),
        ratio: Some(ratio(three.median, one.median)),
        target: "report",
        instructions: None,
        checks: Vec::new(),
        host: None,
        note: format!(
            "medians of {} runs each, interleaved, of the net-bench fixture's test (process start to exit); 2 host cores for 3 single-vCPU TCG guests",
            three.n
        ),
    }
}

/// Bytes copied, and the seconds it took.
type Copy = (u64, f64);

/// The share and console copies.
fn copies(exe: &Path, root: &Path) -> Result<(Copy, Copy), String> {
    let dir = util::workspace_root()
        .join("target")
        .join("qemu-test-bench-share");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let big = dir.join("blob");
    let data = noise(SHARE_BYTES);
    std::fs::write(&big, &data).map_err(|e| format!("writing {}: {e}", big.display()))?;
    let small = root.join("serial-blob");
    std::fs::write(&small, &data[..SERIAL_BYTES])
        .map_err(|e| format!("writing {}: {e}", small.display()))?;
    let env = [
        ("QEMU_TEST_BENCH_FILE", big.as_path()),
        ("QEMU_TEST_BENCH_SERIAL_FILE", small.as_path()),
    ];
    let (_, out) = run(exe, "copy::share", root, &env)?;
    let share = reported(&out, "share")?;
    let (_, out) = run(exe, "copy::serial", root, &env)?;
    let serial = reported(&out, "serial")?;
    let _ = std::fs::remove_file(&big);
    Ok((share, serial))
}

fn copy_row(share: Copy, serial: Copy) -> Row {
    let rate = |(bytes, secs): Copy| bytes as f64 / secs.max(1e-9);
    let (share_rate, serial_rate) = (rate(share), rate(serial));
    let mib = |r: f64| r / f64::from(1u32 << 20);
    Row {
        id: "P8",
        what: "50 MB into the guest: a 9p share vs the serial console (`copy_to_guest`)".into(),
        raw: format!("{:.3} MiB/s (serial)", mib(serial_rate)),
        ours: format!("{:.1} MiB/s (share)", mib(share_rate)),
        ratio: Some(serial_rate / share_rate),
        target: "≤ 0.05 (≥ 20× faster)",
        instructions: None,
        checks: vec![Check::at_most("time", serial_rate / share_rate, 0.05)],
        host: None,
        note: format!(
            "{:.0}× faster; share: `cp` of {} MiB from the share to the guest's tmpfs in {:.2} s; serial: {} MiB of the same incompressible data in {:.1} s (50 MB would take {:.0} s)",
            share_rate / serial_rate,
            share.0 >> 20,
            share.1,
            serial.0 >> 20,
            serial.1,
            (50u64 << 20) as f64 / serial_rate
        ),
    }
}
