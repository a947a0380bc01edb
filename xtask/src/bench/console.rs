//! P5, the console: a flood through [`Machine`]'s console against QEMU's
//! serial transports driven by hand, and the Linux guest's shell and
//! copies on the console.
//!
//! The flood is the echo guest's `flood N` (N bytes of a known pattern,
//! then `flood done`), timed from sending the command to seeing the end.
//! The guest writes its UART a byte at a time and QEMU makes one system
//! call per byte, so the transport sets the pace. Raw sides, each read by
//! a plain blocking loop: a FIFO pair (`-chardev pipe`), pipes on QEMU's
//! stdio (`-chardev stdio`), and a socketpair (`-chardev socket,fd=N`,
//! QEMU's slowest: one socket buffer per byte); also, for scale, QEMU's
//! stdout into a plain file that nobody reads (QEMU's own pace, not a
//! console: it takes no input). Ours: [`Machine`]'s console, every byte
//! kept in memory and in its log file, both checked against the pattern.
//!
//! Judged: no byte lost or garbled (in memory and in the log), and ours at
//! least [`SHARE`] of the fastest console transport's throughput (the
//! median of `--flood-runs` runs each, interleaved).
//!
//! The Linux rows time the guest's [`Shell`]: a small command, and
//! `copy_to_guest` / `copy_from_guest` of [`COPY_BYTES`], on [`Machine`]'s
//! console against the same on a socketpair console (what the console was
//! before), each on a machine of its own.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu_test::{guest, Machine, Shell};

use super::rawqmp::Reaped;
use super::stats::{median_f64, ratio, Stats};
use super::table::{Check, Row};
use crate::bench::Options;
use crate::util;

/// The echo guest's QEMU.
pub(super) const QEMU: &str = "qemu-system-aarch64";
/// Arguments every side uses besides the console (and, on ours, QMP).
const ARGS: &[&str] = &[
    "-display",
    "none",
    "-M",
    "virt",
    "-cpu",
    "max",
    "-nodefaults",
];
/// How long a side may take, login and flood together.
const TIMEOUT: Duration = Duration::from_secs(600);
/// What the guest prints when the flood is over.
const DONE: &[u8] = b"\r\nflood done\r\n";
/// The least share of the fastest console transport's throughput ours
/// must reach.
const SHARE: f64 = 0.95;
/// The size of the Linux rows' copies.
const COPY_BYTES: usize = 256 * 1024;

/// A way of carrying the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Fifo,
    Stdio,
    Socketpair,
    File,
    Ours,
}

impl Side {
    const ALL: [Side; 5] = [
        Side::Fifo,
        Side::Stdio,
        Side::Socketpair,
        Side::File,
        Side::Ours,
    ];

    fn name(self) -> &'static str {
        match self {
            Side::Fifo => "FIFO pair (`-chardev pipe`)",
            Side::Stdio => "pipes on stdio (`-chardev stdio`)",
            Side::Socketpair => "socketpair (`-chardev socket,fd=N`)",
            Side::File => "stdout into a file, no reader (not a console)",
            Side::Ours => "qemu-test",
        }
    }

    /// Whether the side is a console (takes input), and so a baseline.
    fn is_console(self) -> bool {
        matches!(self, Side::Fifo | Side::Stdio | Side::Socketpair)
    }
}

/// The bytes `flood n` prints (the guest's pattern).
fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz"[i % 36])
        .collect()
}

/// How many of the `n` pattern bytes `body` does not reproduce: the
/// difference in length plus the differing bytes where both have one.
fn lost(body: &[u8], expected: &[u8]) -> usize {
    let differing = body.iter().zip(expected).filter(|(a, b)| a != b).count();
    body.len().abs_diff(expected.len()) + differing
}

/// The flood's rows (judged) and the Linux guest's shell rows.
pub(super) fn p5(qemu: &Path, opts: &Options) -> Result<(Vec<Row>, String), String> {
    let kernel = guest::ECHO_SHELL_AARCH64
        .path()
        .map_err(|e| format!("the echo guest: {e}"))?;
    let n = opts.flood_bytes;
    let expected = pattern(n);
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); Side::ALL.len()];
    let mut ours_lost = 0;
    for run in 0..opts.flood_runs.max(1) {
        for k in 0..Side::ALL.len() {
            // A rotating order, so that no side always follows another.
            let i = (run + k) % Side::ALL.len();
            let side = Side::ALL[i];
            let flood = flood(side, qemu, &kernel, n)?;
            let missing = lost(&flood.body, &expected)
                + flood.log.as_deref().map_or(0, |l| lost(l, &expected));
            if side == Side::Ours {
                ours_lost += missing;
            } else if missing != 0 {
                return Err(format!(
                    "the raw {} lost {missing} of {n} bytes: the guest or QEMU is broken",
                    side.name()
                ));
            }
            times[i].push(flood.time);
        }
    }
    let mbps = |t: &[Duration]| n as f64 / 1e6 / median_secs(t);
    let rates: Vec<f64> = times.iter().map(|t| mbps(t)).collect();
    let (fastest, best) = Side::ALL
        .iter()
        .zip(&rates)
        .filter(|(s, _)| s.is_console())
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(s, r)| (*s, *r))
        .expect("three console transports");
    let ours = rates[Side::ALL.len() - 1];
    let slowest = rates[2];
    let mut row = Row::new(
        "P5",
        format!(
            "console `flood` of {}: throughput; bytes lost",
            megabytes(n)
        ),
    );
    row.raw = format!("{best:.2} MB/s ({})", fastest.name());
    row.ours = format!("{ours:.2} MB/s, {ours_lost} lost");
    row.ratio = Some(ours / best);
    row.target = "0 lost; ≥ 0.95 of the fastest";
    row.checks = vec![
        Check::at_most("lost", ours_lost as f64, 0.0),
        Check::at_least("throughput", ours / best, SHARE),
    ];
    row.note = format!(
        "ratio = ours ÷ the fastest console transport, medians of {} runs each, interleaved; \
         the socketpair, QEMU's slowest: {slowest:.2} MB/s (ours {:.1}× it); \
         no reader at all (stdout into a file): {:.2} MB/s; \
         ours: pipes on QEMU's stdio, drained into memory and a log file, both checked byte for byte",
        opts.flood_runs.max(1),
        ours / slowest,
        rates[3],
    );
    let mut detail = String::new();
    for ((side, t), r) in Side::ALL.iter().zip(&times).zip(&rates) {
        detail.push_str(&format!(
            "P5 {}: {r:.2} MB/s (median); {}\n",
            side.name(),
            Stats::of(t).line()
        ));
    }
    let (linux, linux_detail) = linux_rows(opts)?;
    detail.push_str(&linux_detail);
    let mut rows = vec![row];
    rows.extend(linux);
    Ok((rows, detail))
}

fn median_secs(t: &[Duration]) -> f64 {
    median_f64(&t.iter().map(Duration::as_secs_f64).collect::<Vec<_>>())
}

fn megabytes(n: usize) -> String {
    // `Display` of an `f64` prints `10` for 10.0.
    format!("{} MB", n as f64 / 1e6)
}

/// What one side saw.
struct Flood {
    /// From sending `flood N` to seeing `flood done`.
    time: Duration,
    /// Everything between the echoed command and `flood done`.
    body: Vec<u8>,
    /// The same from the console log (ours only).
    log: Option<Vec<u8>>,
}

fn flood(side: Side, qemu: &Path, kernel: &Path, n: usize) -> Result<Flood, String> {
    match side {
        Side::Ours => our_flood(qemu, kernel, n),
        Side::File => file_flood(qemu, kernel, n),
        raw => raw_flood(raw, qemu, kernel, n),
    }
}

/// The flood's body: what follows the echoed command in `seen`.
fn body(seen: &[u8], command: &str) -> Result<Vec<u8>, String> {
    let echo = format!("{command}\r\n");
    let start = seen
        .windows(echo.len())
        .position(|w| w == echo.as_bytes())
        .ok_or("the guest did not echo the flood command")?;
    let rest = &seen[start + echo.len()..];
    let end = rest
        .windows(DONE.len())
        .position(|w| w == DONE)
        .ok_or("no end of the flood")?;
    Ok(rest[..end].to_vec())
}

/// Ours: [`Machine`] with its console drained into memory and a log file,
/// the flood awaited with [`Console::wait_for`](qemu_test::Console::wait_for).
fn our_flood(qemu: &Path, kernel: &Path, n: usize) -> Result<Flood, String> {
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-p5-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let log = dir.path().join("console.log");
    let mut vm = Machine::builder(qemu.to_string_lossy())
        .args(["-cpu", "max", "-nodefaults", "-kernel"])
        .arg(kernel.to_string_lossy())
        .console_log(&log)
        .build();
    vm.set_machine("virt");
    vm.set_console(None, 0);
    vm.launch().map_err(|e| format!("launch: {e}"))?;
    let console = vm.console().with_timeout(TIMEOUT);
    console
        .wait_for("login: ")
        .map_err(|e| format!("waiting for the login prompt: {e}"))?;
    let command = format!("flood {n}");
    let start = Instant::now();
    console
        .send_line(&command)
        .map_err(|e| format!("sending `{command}`: {e}"))?;
    let m = console
        .wait_for(&String::from_utf8_lossy(DONE))
        .map_err(|e| format!("waiting for the end of the flood: {e}"))?;
    let time = start.elapsed();
    vm.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    let mut seen = m.before;
    seen.extend_from_slice(DONE);
    let logged = std::fs::read(&log).map_err(|e| format!("reading {}: {e}", log.display()))?;
    Ok(Flood {
        time,
        body: body(&seen, &command)?,
        log: Some(body(&logged, &command)?),
    })
}

/// QEMU with the console on `side`'s transport, and our ends of it.
struct RawQemu {
    _qemu: Reaped,
    output: Box<dyn Read>,
    input: Box<dyn Write>,
    _dir: tempfile::TempDir,
}

fn start_raw(side: Side, qemu: &Path, kernel: &Path) -> Result<RawQemu, String> {
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-p5-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let mut cmd = Command::new(qemu);
    cmd.args(ARGS)
        .arg("-kernel")
        .arg(kernel)
        .args(["-serial", "chardev:c"])
        .stderr(Stdio::null());
    let spawn = |cmd: &mut Command| {
        cmd.spawn()
            .map(Reaped)
            .map_err(|e| format!("starting {}: {e}", qemu.display()))
    };
    let (qemu, output, input): (Reaped, Box<dyn Read>, Box<dyn Write>) = match side {
        Side::Fifo => {
            let path = dir.path().join("console");
            for end in ["in", "out"] {
                mkfifo(&path.with_extension(end))?;
            }
            cmd.args(["-chardev", &format!("pipe,id=c,path={}", path.display())])
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let qemu = spawn(&mut cmd)?;
            // Both opened read-write, as QEMU does: neither open waits.
            let open = |end: &str| {
                let p = path.with_extension(end);
                File::options()
                    .read(true)
                    .write(true)
                    .open(&p)
                    .map_err(|e| format!("opening {}: {e}", p.display()))
            };
            (qemu, Box::new(open("out")?), Box::new(open("in")?))
        }
        Side::Stdio => {
            cmd.args(["-chardev", "stdio,id=c,signal=off"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            let mut qemu = spawn(&mut cmd)?;
            let output = qemu.0.stdout.take().ok_or("QEMU's stdout is not a pipe")?;
            let input = qemu.0.stdin.take().ok_or("QEMU's stdin is not a pipe")?;
            (qemu, Box::new(output), Box::new(input))
        }
        Side::Socketpair => {
            let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
            // An inheritable copy (dup drops close-on-exec), for QEMU only.
            let theirs: OwnedFd = rustix::io::dup(&theirs).map_err(|e| format!("dup: {e}"))?;
            cmd.args([
                "-chardev",
                &format!("socket,id=c,fd={}", theirs.as_raw_fd()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
            let qemu = spawn(&mut cmd)?;
            drop(theirs);
            let input = ours.try_clone().map_err(|e| format!("dup: {e}"))?;
            (qemu, Box::new(ours), Box::new(input))
        }
        Side::File | Side::Ours => unreachable!("not a raw console"),
    };
    Ok(RawQemu {
        _qemu: qemu,
        output,
        input,
        _dir: dir,
    })
}

fn mkfifo(path: &Path) -> Result<(), String> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .map_err(|e| format!("mkfifo {}: {e}", path.display()))
}

/// Raw: QEMU with its console on `side`, read by a plain blocking loop.
fn raw_flood(side: Side, qemu: &Path, kernel: &Path, n: usize) -> Result<Flood, String> {
    let mut raw = start_raw(side, qemu, kernel)?;
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    read_until(&mut raw.output, &mut seen, b"login: ", deadline)?;
    let command = format!("flood {n}");
    let start = Instant::now();
    raw.input
        .write_all(format!("{command}\r").as_bytes())
        .map_err(|e| format!("sending `{command}`: {e}"))?;
    read_until(&mut raw.output, &mut seen, DONE, deadline)?;
    let time = start.elapsed();
    Ok(Flood {
        time,
        body: body(&seen, &command)?,
        log: None,
    })
}

/// Reads into `seen` until `marker` appears in what was read since the
/// call began.
fn read_until(
    output: &mut dyn Read,
    seen: &mut Vec<u8>,
    marker: &[u8],
    deadline: Instant,
) -> Result<(), String> {
    let from = seen.len();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let scan = seen.len().saturating_sub(marker.len()).max(from);
        let got = output
            .read(&mut chunk)
            .map_err(|e| format!("reading the console: {e}"))?;
        if got == 0 {
            return Err("QEMU closed the console".into());
        }
        seen.extend_from_slice(&chunk[..got]);
        if seen[scan..].windows(marker.len()).any(|w| w == marker) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("no {:?} in time", String::from_utf8_lossy(marker)));
        }
    }
}

/// QEMU's serial port on its stdout, a plain file that the bench reads
/// as it grows: no reader QEMU waits for or wakes up, QEMU's own pace.
fn file_flood(qemu: &Path, kernel: &Path, n: usize) -> Result<Flood, String> {
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-p5-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let path = dir.path().join("serial.out");
    let out = File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    let child = Command::new(qemu)
        .args(ARGS)
        .arg("-kernel")
        .arg(kernel)
        .args(["-serial", "stdio"])
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", qemu.display()))?;
    let mut qemu = Reaped(child);
    let mut input = qemu.0.stdin.take().ok_or("QEMU's stdin is not a pipe")?;
    let mut serial = Tail {
        file: File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?,
        data: Vec::new(),
        deadline: Instant::now() + TIMEOUT,
    };
    serial.until(&mut qemu, 0, b"login: ")?;
    let command = format!("flood {n}");
    let start = Instant::now();
    input
        .write_all(format!("{command}\r").as_bytes())
        .map_err(|e| format!("sending `{command}`: {e}"))?;
    let from = serial.data.len();
    serial.until(&mut qemu, from, DONE)?;
    let time = start.elapsed();
    Ok(Flood {
        time,
        body: body(&serial.data, &command)?,
        log: None,
    })
}

/// A file QEMU writes to, read as it grows.
struct Tail {
    file: File,
    data: Vec<u8>,
    deadline: Instant,
}

impl Tail {
    /// How often the file is looked at when it did not grow.
    const POLL: Duration = Duration::from_millis(1);

    /// Reads until `marker` appears at or after `from`.
    fn until(&mut self, qemu: &mut Reaped, from: usize, marker: &[u8]) -> Result<(), String> {
        let mut scan = from;
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            if self.data[scan..].windows(marker.len()).any(|w| w == marker) {
                return Ok(());
            }
            // Only the new bytes, and a marker's length before them, can
            // hold a match next time.
            scan = self.data.len().saturating_sub(marker.len() - 1).max(from);
            let got = self
                .file
                .read(&mut chunk)
                .map_err(|e| format!("reading QEMU's serial output: {e}"))?;
            if got > 0 {
                self.data.extend_from_slice(&chunk[..got]);
                continue;
            }
            if let Ok(Some(exit)) = qemu.0.try_wait() {
                return Err(format!("QEMU exited ({exit}) before printing {marker:?}"));
            }
            if Instant::now() >= self.deadline {
                return Err(format!(
                    "no {:?} within {}",
                    String::from_utf8_lossy(marker),
                    util::human(TIMEOUT)
                ));
            }
            std::thread::sleep(Self::POLL);
        }
    }
}

/// What the Linux guest's shell did on one console.
#[derive(Default)]
struct ShellTimes {
    command: Vec<Duration>,
    to_guest: Vec<Duration>,
    from_guest: Vec<Duration>,
}

/// The Linux rows: the shell and copies on [`Machine`]'s console against a
/// socketpair console, both guests up at once and used in turn (so that
/// the host's load hits both alike); reported, not judged.
fn linux_rows(opts: &Options) -> Result<(Vec<Row>, String), String> {
    let files = guest::linux_x86_64().map_err(|e| format!("the Linux guest: {e}"))?;
    let qemu = util::find_qemu("qemu-system-x86_64").ok_or("qemu-system-x86_64 not found")?;
    let commands = opts.shell_commands.max(1);
    let copies = opts.flood_runs.max(1) + 1;
    let mut socketpair = LinuxShell::boot(&qemu, &files, true)?;
    let mut ours = LinuxShell::boot(&qemu, &files, false)?;
    let data: Vec<u8> = (0..COPY_BYTES as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for i in 0..commands {
        let (first, second) = if i % 2 == 0 {
            (&mut ours, &mut socketpair)
        } else {
            (&mut socketpair, &mut ours)
        };
        first.command()?;
        second.command()?;
    }
    for i in 0..copies {
        let (first, second) = if i % 2 == 0 {
            (&mut ours, &mut socketpair)
        } else {
            (&mut socketpair, &mut ours)
        };
        first.copies(&data)?;
        second.copies(&data)?;
    }
    let median = |t: &[Duration]| Stats::of(t).median;
    let (old, new) = (&socketpair.times, &ours.times);
    let kib = COPY_BYTES / 1024;
    let rate = |t: &[Duration]| format!("{:.0} KiB/s", kib as f64 / median(t).as_secs_f64());
    let rows = vec![
        shell_row(
            "Linux guest `Shell::succeed(\"true\")` on the console (median)",
            util::human(median(&old.command)),
            util::human(median(&new.command)),
            ratio(median(&new.command), median(&old.command)),
            format!(
                "{commands} commands each, in turn; min {} vs {}",
                util::human(Stats::of(&new.command).min),
                util::human(Stats::of(&old.command).min)
            ),
        ),
        shell_row(
            &format!("Linux guest `copy_to_guest` of {kib} KiB on the console"),
            rate(&old.to_guest),
            rate(&new.to_guest),
            ratio(median(&new.to_guest), median(&old.to_guest)),
            format!("medians of {copies} copies each, in turn (random bytes, checked)"),
        ),
        shell_row(
            &format!("Linux guest `copy_from_guest` of {kib} KiB on the console"),
            rate(&old.from_guest),
            rate(&new.from_guest),
            ratio(median(&new.from_guest), median(&old.from_guest)),
            format!("medians of {copies} copies each, in turn (the same bytes back, checked)"),
        ),
    ];
    let mut detail = String::new();
    for (name, t) in [("socketpair console", old), ("qemu-test's console", new)] {
        detail.push_str(&format!(
            "P5 Linux, {name}: command {}\nP5 Linux, {name}: copy_to_guest {}\nP5 Linux, {name}: copy_from_guest {}\n",
            Stats::of(&t.command).line(),
            Stats::of(&t.to_guest).line(),
            Stats::of(&t.from_guest).line(),
        ));
    }
    Ok((rows, detail))
}

fn shell_row(what: &str, raw: String, ours: String, time_ratio: f64, note: String) -> Row {
    let mut row = Row::new("P5", what);
    row.raw = format!("{raw} (socketpair console)");
    row.ours = ours;
    row.ratio = Some(time_ratio);
    row.target = "— (reported)";
    row.note = format!("ratio = time ours ÷ on a socketpair console; {note}");
    row
}

/// A booted Linux guest, its shell, and what was timed on it.
struct LinuxShell {
    vm: Machine,
    shell: Shell,
    times: ShellTimes,
    dir: tempfile::TempDir,
}

fn shell_err(e: qemu_test::ShellError) -> String {
    format!("P5: the Linux guest's shell: {e}")
}

impl LinuxShell {
    /// Boots the Linux guest with its console on pipes (ours) or on a
    /// socketpair (`socketpair`: a wrapper, `env`, takes QEMU's stdio, so
    /// the machine falls back to it), up to its first command.
    fn boot(
        qemu: &Path,
        files: &guest::LinuxFiles,
        socketpair: bool,
    ) -> Result<LinuxShell, String> {
        let mut builder = Machine::builder(qemu.to_string_lossy())
            .args(files.args.iter().copied())
            .args(["-accel", "tcg", "-kernel"])
            .arg(files.kernel.to_string_lossy())
            .arg("-initrd")
            .arg(files.initrd.to_string_lossy())
            .args(["-append", files.append]);
        if socketpair {
            builder = builder.wrapper(["env"]);
        }
        let mut vm = builder.build();
        vm.set_machine("q35").set_console(None, 0);
        vm.launch()
            .map_err(|e| format!("P5: launching the Linux guest: {e}"))?;
        let console = vm.console().with_timeout(Duration::from_secs(300));
        console
            .wait_for(guest::LINUX_READY)
            .map_err(|e| format!("P5: the Linux guest did not boot: {e}"))?;
        let shell = Shell::new(console).with_timeout(Duration::from_secs(300));
        shell.succeed("true").map_err(shell_err)?;
        Ok(LinuxShell {
            vm,
            shell,
            times: ShellTimes::default(),
            dir: tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?,
        })
    }

    fn command(&mut self) -> Result<(), String> {
        let t = Instant::now();
        self.shell.succeed("true").map_err(shell_err)?;
        self.times.command.push(t.elapsed());
        Ok(())
    }

    /// `data` to the guest and back, each timed, and checked.
    fn copies(&mut self, data: &[u8]) -> Result<(), String> {
        let (src, back) = (self.dir.path().join("data"), self.dir.path().join("back"));
        std::fs::write(&src, data).map_err(|e| format!("writing {}: {e}", src.display()))?;
        let t = Instant::now();
        self.shell
            .copy_to_guest(&src, "/tmp/data")
            .map_err(shell_err)?;
        self.times.to_guest.push(t.elapsed());
        let t = Instant::now();
        self.shell
            .copy_from_guest("/tmp/data", &back)
            .map_err(shell_err)?;
        self.times.from_guest.push(t.elapsed());
        let came_back =
            std::fs::read(&back).map_err(|e| format!("reading {}: {e}", back.display()))?;
        if came_back != data {
            return Err("P5: the copy came back different".into());
        }
        Ok(())
    }
}

impl Drop for LinuxShell {
    fn drop(&mut self) {
        self.vm.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_counts_missing_extra_and_garbled_bytes() {
        let expected = pattern(40);
        assert_eq!(&expected[34..38], b"yz01");
        assert_eq!(lost(&expected, &expected), 0);
        assert_eq!(lost(&expected[..30], &expected), 10);
        let mut garbled = expected.clone();
        garbled[3] = b'!';
        garbled.push(b'x');
        assert_eq!(lost(&garbled, &expected), 2);
    }

    #[test]
    fn the_body_is_between_the_echo_and_the_end() {
        let seen = b"login: flood 3\r\n012\r\nflood done\r\n";
        assert_eq!(body(seen, "flood 3").unwrap(), b"012");
        assert!(body(b"flood 3\r\n012", "flood 3").is_err());
    }
}
