//! `cargo xtask bench`: qemu-test's overhead, measured as ratios against a
//! raw baseline taken in the same run, written as a markdown table to
//! `<target>/qemu-test/bench.md`.
//!
//! | id | what | baseline |
//! | --- | --- | --- |
//! | P1 | launch → `qmp_capabilities` → `query-status` → `quit` → exit, through [`Machine`] | QEMU with `-qmp stdio`, the same exchange over plain pipes |
//! | P2 | one `query-status` round trip through [`Machine::command`] | a blocking client (`write_all` + `read_line`) on a Unix socket to a second QEMU |
//! | P3 | suite throughput: the 100 echo-guest tests of `tests/runner_bench.rs` run by the runner, wall time | Σ(test time from the JUnit report) / cores |
//! | P4 | Linux guest: launch → first `succeed("true")` restored from a snapshot; a 20-test suite with `snapshot` | the same booted cold; the same suite without `snapshot` |
//! | P5 | console `flood` of 10 MB through [`Machine`]'s console: bytes lost (judged) and time (ratio, not judged) | the same guest and flood, QEMU's serial port on stdio into a plain file (no reader) |
//! | P6 | RSS of the test process per running echo-guest [`Machine`] (console drained, QMP connected), QEMU's own not counted | — (QEMU's RSS shown for scale) |
//! | P7 | cold build (`cargo test --no-run`, empty target dir, offline, dev profile) of a one-test crate depending on `qemu-test` | the same for a crate with one `libtest-mimic` test using `serde_json` |
//! | C1, C2 | Linux guest: `copy_to_guest` / `copy_from_guest` of 10 and 50 MB through the agent on the data channel (judged: ≥ 10× the console Shell's rate) | the same virtio-serial device driven by hand (`dd` on a second port of a QEMU started by hand) |
//! | C3 | `succeed("true")` through the agent (judged against the console Shell) | a byte echoed over that port by `cat` |
//! | C4 | 10 MB of stdout through the agent (`succeed("cat …")`; judged: ≥ 10× the console Shell's rate) | `dd` of 10 MB to that port |
//!
//! Both sides of a timed comparison run the same QEMU binary and guest,
//! differing only in what qemu-test brings (for P5 that includes the
//! console transport, a socketpair, which is qemu-test's choice), and
//! repeated measurements are interleaved (raw, ours, raw, ours, …) so that
//! drift in the machine's load hits both alike (for P7: whole cold builds,
//! see [`build_cost`]). P3 has no raw side (the ideal is computed), P6 none
//! at all (a size against a limit). Timings of
//! a debug build mean little, so a debug `xtask` re-runs itself with
//! `cargo run --release` first. Benchmarks never fail the build on a
//! missed target: they report it. The whole run takes a few minutes (P5
//! about one and a half, P7 about a minute per pair of cold builds);
//! `--only` picks rows.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use qemu_test::Machine;
use serde_json::{json, Value};

use crate::{setup, util};

mod build_cost;
mod channel;
mod console;
mod memory;
mod suite;

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
    /// P4: measured boots and restores per side.
    pub snapshot_runs: usize,
    /// P3: runs of the 100-test suite; P4: runs of the 20-test suite per
    /// side (the rows show medians).
    pub suite_runs: usize,
    /// P5: bytes the guest floods the console with.
    pub flood_bytes: usize,
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
pub const IDS: [&str; 8] = ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "C"];

impl Options {
    /// Whether benchmark `id` is to run.
    fn selects(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o.eq_ignore_ascii_case(id))
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runs: 20,
            warmups: 2,
            calls: 2000,
            snapshot_runs: 5,
            suite_runs: 3,
            flood_bytes: 10_000_000,
            vms: 8,
            build_runs: 2,
            channel_runs: 3,
            only: Vec::new(),
            no_rebuild: false,
        }
    }
}

/// Order statistics of a set of samples.
#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    min: Duration,
    median: Duration,
    mean: Duration,
    p90: Duration,
    max: Duration,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        let mut s = samples.to_vec();
        s.sort();
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2
        };
        let mean = s.iter().sum::<Duration>() / n as u32;
        let p90 = s[((n * 9).div_ceil(10)).saturating_sub(1).min(n - 1)];
        Stats {
            n,
            min: s[0],
            median,
            mean,
            p90,
            max: s[n - 1],
        }
    }

    fn line(&self) -> String {
        format!(
            "n={} min {} · median {} · mean {} · p90 {} · max {}",
            self.n,
            util::human(self.min),
            util::human(self.median),
            util::human(self.mean),
            util::human(self.p90),
            util::human(self.max)
        )
    }
}

fn ratio(ours: Duration, raw: Duration) -> f64 {
    ours.as_secs_f64() / raw.as_secs_f64()
}

fn median_f64(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One row of the results table.
struct Row {
    id: &'static str,
    what: String,
    raw: String,
    ours: String,
    ratio: Option<f64>,
    target: &'static str,
    /// What is judged against `limit` when it is not the ratio (bytes
    /// lost, megabytes per VM).
    judged: Option<f64>,
    /// The largest judged value (the ratio, unless `judged`) that meets
    /// the target.
    limit: Option<f64>,
    note: String,
}

impl Row {
    fn verdict(&self) -> &'static str {
        match (self.judged.or(self.ratio), self.limit) {
            (Some(r), Some(limit)) if r <= limit => "met",
            (Some(_), Some(_)) => "**missed**",
            _ => "—",
        }
    }
}

/// Kills and reaps a raw QEMU on every path out of a benchmark.
struct Reaped(Child);

impl Reaped {
    /// Waits for QEMU to exit; an unsuccessful exit is an error.
    fn wait_success(&mut self) -> Result<(), String> {
        let exit = self
            .0
            .wait()
            .map_err(|e| format!("waiting for QEMU: {e}"))?;
        if exit.success() {
            Ok(())
        } else {
            Err(format!("raw QEMU exited with {exit}"))
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads one QMP message (a line of JSON).
fn read_message(reader: &mut impl BufRead, line: &mut String) -> Result<Value, String> {
    line.clear();
    let n = reader
        .read_line(line)
        .map_err(|e| format!("reading from QEMU: {e}"))?;
    if n == 0 {
        return Err("QEMU closed the QMP connection".into());
    }
    serde_json::from_str(line).map_err(|e| format!("bad QMP message {line:?}: {e}"))
}

/// Sends `request` and reads until its reply, skipping events. `Ok(None)`
/// if QEMU closed the connection instead (as it may after `quit`).
fn exchange(
    writer: &mut impl Write,
    reader: &mut impl BufRead,
    line: &mut String,
    request: &[u8],
) -> Result<Option<Value>, String> {
    writer
        .write_all(request)
        .map_err(|e| format!("writing to QEMU: {e}"))?;
    loop {
        match read_message(reader, line) {
            Ok(msg) if msg.get("return").is_some() => return Ok(Some(msg)),
            Ok(msg) if msg.get("error").is_some() => return Err(format!("QMP error: {msg}")),
            Ok(_event) => continue,
            Err(_) if request.starts_with(QUIT) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

const CAPABILITIES: &[u8] = b"{\"execute\":\"qmp_capabilities\"}\n";
const QUERY_STATUS: &[u8] = b"{\"execute\":\"query-status\"}\n";
/// The same with an `id`, as QEMU's Python library sends (and qemu-test
/// only when commands overlap): QEMU itself answers it measurably slower.
const QUERY_STATUS_ID: &[u8] = b"{\"execute\":\"query-status\",\"id\":\"qt-1\"}\n";
const QUIT: &[u8] = b"{\"execute\":\"quit\"}\n";

fn check_status(status: &Value) -> Result<(), String> {
    match status["status"].as_str() {
        Some("prelaunch") => Ok(()),
        _ => Err(format!("unexpected query-status result {status}")),
    }
}

/// P1 raw: QEMU with `-qmp stdio`, the handshake over plain pipes.
fn p1_raw(qemu: &Path) -> Result<Duration, String> {
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

/// P1 ours: the same through [`Machine`].
fn p1_ours(qemu: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let mut vm = Machine::builder(qemu.to_string_lossy())
        .args(QEMU_ARGS.iter().copied())
        .build();
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

fn p1(qemu: &Path, opts: &Options) -> Result<(Row, String), String> {
    let (mut raw, mut ours) = (Vec::new(), Vec::new());
    for i in 0..opts.warmups + opts.runs {
        let r = p1_raw(qemu)?;
        let o = p1_ours(qemu)?;
        if i >= opts.warmups {
            raw.push(r);
            ours.push(o);
        }
    }
    // Each pair ran back to back, so its ratio is the least affected by
    // drift in the machine's load.
    let paired: Vec<f64> = raw.iter().zip(&ours).map(|(r, o)| ratio(*o, *r)).collect();
    let paired = median_f64(&paired);
    let (raw, ours) = (Stats::of(&raw), Stats::of(&ours));
    let row = Row {
        id: "P1",
        what: "launch → capabilities → `query-status` → quit (median)".into(),
        raw: util::human(raw.median),
        ours: util::human(ours.median),
        ratio: Some(ratio(ours.median, raw.median)),
        target: "≤ 1.05",
        judged: None,
        limit: Some(1.05),
        note: format!(
            "{} runs per side, interleaved, after {} warm-ups; median of paired ratios {paired:.3}; min {} vs {}",
            opts.runs,
            opts.warmups,
            util::human(ours.min),
            util::human(raw.min),
        ),
    };
    let detail = format!("P1 raw:  {}\nP1 ours: {}\n", raw.line(), ours.line());
    Ok((row, detail))
}

/// A QEMU whose monitor is a plain blocking Unix-socket client of ours.
struct RawQmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    line: String,
    child: Reaped,
    _dir: tempfile::TempDir,
}

/// Starts a QEMU whose monitor connects to a Unix socket we listen on, and
/// returns our end of it, before the greeting is read.
fn start_socket_qemu(qemu: &Path) -> Result<(UnixStream, Reaped, tempfile::TempDir), String> {
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let path = dir.path().join("qmp.sock");
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("listening on {}: {e}", path.display()))?;
    let chardev = format!(
        "socket,id=mon,path={}",
        path.to_string_lossy().replace(',', ",,")
    );
    let child = Command::new(qemu)
        .args(["-display", "none", "-vga", "none"])
        .args(QEMU_ARGS)
        .args(["-chardev", &chardev, "-mon", "chardev=mon,mode=control"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", qemu.display()))?;
    let child = Reaped(child);
    // QEMU connects to us; don't wait forever if it never does.
    let mut fds = [rustix::event::PollFd::new(
        &listener,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    let ready = rustix::event::poll(&mut fds, Some(&timeout)).map_err(|e| format!("poll: {e}"))?;
    if ready == 0 {
        return Err("QEMU did not connect to the QMP socket within 30 s".into());
    }
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    Ok((stream, child, dir))
}

impl RawQmp {
    fn start(qemu: &Path) -> Result<RawQmp, String> {
        let (stream, child, dir) = start_socket_qemu(qemu)?;
        let writer = stream.try_clone().map_err(|e| format!("dup: {e}"))?;
        let mut raw = RawQmp {
            writer,
            reader: BufReader::new(stream),
            line: String::new(),
            child,
            _dir: dir,
        };
        let greeting = read_message(&mut raw.reader, &mut raw.line)?;
        if greeting.get("QMP").is_none() {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        exchange(
            &mut raw.writer,
            &mut raw.reader,
            &mut raw.line,
            CAPABILITIES,
        )?;
        Ok(raw)
    }

    /// Sends `request` (a `query-status`) and reads its reply.
    fn query_status(&mut self, request: &[u8]) -> Result<Value, String> {
        let reply = exchange(&mut self.writer, &mut self.reader, &mut self.line, request)?;
        Ok(reply.unwrap_or_default())
    }

    fn quit(mut self) -> Result<(), String> {
        exchange(&mut self.writer, &mut self.reader, &mut self.line, QUIT)?;
        self.child.wait_success()
    }
}

/// The raw client with one reader thread handing replies over a channel:
/// the least a client with qemu-test's design (a reader thread that also
/// routes events) can cost. Diagnostic only.
struct ThreadedRaw {
    writer: UnixStream,
    replies: std::sync::mpsc::Receiver<Value>,
    child: Reaped,
    _dir: tempfile::TempDir,
}

impl ThreadedRaw {
    fn start(qemu: &Path) -> Result<ThreadedRaw, String> {
        let RawQmp {
            writer,
            mut reader,
            mut line,
            child,
            _dir,
        } = RawQmp::start(qemu)?;
        let (tx, replies) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(msg) = read_message(&mut reader, &mut line) {
                if (msg.get("return").is_some() || msg.get("error").is_some())
                    && tx.send(msg).is_err()
                {
                    break;
                }
            }
        });
        Ok(ThreadedRaw {
            writer,
            replies,
            child,
            _dir,
        })
    }

    fn timed_query_status(&mut self) -> Result<Duration, String> {
        let t = Instant::now();
        self.writer
            .write_all(QUERY_STATUS)
            .map_err(|e| format!("writing to QEMU: {e}"))?;
        let reply = self
            .replies
            .recv()
            .map_err(|_| "QEMU closed the QMP connection".to_string())?;
        let elapsed = t.elapsed();
        check_status(&reply["return"])?;
        Ok(elapsed)
    }

    fn quit(mut self) -> Result<(), String> {
        self.writer
            .write_all(QUIT)
            .map_err(|e| format!("writing to QEMU: {e}"))?;
        self.child.wait_success()
    }
}

/// qemu-test's QMP client alone (no transcript) on a raw QEMU's socket:
/// separates the client's cost from the rest of [`Machine`]. Diagnostic.
struct ClientOnly {
    client: qemu_test::qmp::QmpClient,
    child: Reaped,
    _dir: tempfile::TempDir,
}

impl ClientOnly {
    fn start(qemu: &Path) -> Result<ClientOnly, String> {
        let (stream, child, dir) = start_socket_qemu(qemu)?;
        let client = qemu_test::qmp::QmpClient::connect(
            qemu_test::qmp::Stream::Unix(stream),
            Duration::from_secs(30),
            None,
        )
        .map_err(|e| format!("QMP client: {e}"))?;
        Ok(ClientOnly {
            client,
            child,
            _dir: dir,
        })
    }

    fn timed_query_status(&mut self) -> Result<Duration, String> {
        let t = Instant::now();
        let status = self
            .client
            .command("query-status", json!({}))
            .map_err(|e| format!("query-status: {e}"))?;
        let elapsed = t.elapsed();
        check_status(&status)?;
        Ok(elapsed)
    }

    fn quit(mut self) -> Result<(), String> {
        // QEMU may close the socket before its reply arrives.
        let _ = self.client.qmp("quit", json!({}));
        self.child.wait_success()
    }
}

fn launch_for_p2(builder: qemu_test::MachineBuilder) -> Result<Machine, String> {
    let mut vm = builder.args(QEMU_ARGS.iter().copied()).build();
    vm.launch().map_err(|e| format!("launch: {e}"))?;
    Ok(vm)
}

/// One timed `query-status` through [`Machine::command`].
fn timed_command(vm: &mut Machine) -> Result<Duration, String> {
    let t = Instant::now();
    let status = vm
        .command("query-status", json!({}))
        .map_err(|e| format!("query-status: {e}"))?;
    let elapsed = t.elapsed();
    check_status(&status)?;
    Ok(elapsed)
}

/// One timed `query-status` over the raw socket.
fn timed_raw(raw: &mut RawQmp, request: &[u8]) -> Result<Duration, String> {
    let t = Instant::now();
    let reply = raw.query_status(request)?;
    let elapsed = t.elapsed();
    check_status(&reply["return"])?;
    Ok(elapsed)
}

fn p2(qemu: &Path, opts: &Options) -> Result<(Row, String), String> {
    const BLOCKS: usize = 10;
    const WARMUP: usize = 200;
    let per_block = opts.calls.div_ceil(BLOCKS).max(1);
    let mut raw = RawQmp::start(qemu)?;
    // Diagnostic: the raw client sending an `id`, QEMU's own cost of one.
    let mut raw_id = RawQmp::start(qemu)?;
    let mut vm = launch_for_p2(Machine::builder(qemu.to_string_lossy()))?;
    // Not in the table: the same with the QMP transcript written to
    // /dev/null, to show how much of the difference is the transcript.
    let mut quiet = launch_for_p2(Machine::builder(qemu.to_string_lossy()).qmp_log("/dev/null"))?;
    // Nor is this: a raw client with a reader thread, to show the cost of
    // that design alone.
    let mut threaded = ThreadedRaw::start(qemu)?;
    let mut client_only = ClientOnly::start(qemu)?;
    for _ in 0..WARMUP {
        timed_raw(&mut raw, QUERY_STATUS)?;
        timed_raw(&mut raw_id, QUERY_STATUS_ID)?;
        timed_command(&mut vm)?;
        timed_command(&mut quiet)?;
        threaded.timed_query_status()?;
        client_only.timed_query_status()?;
    }
    let (mut client_t, mut raw_id_t) = (Vec::new(), Vec::new());
    let (mut raw_t, mut ours_t, mut quiet_t, mut threaded_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        for _ in 0..per_block {
            raw_t.push(timed_raw(&mut raw, QUERY_STATUS)?);
        }
        for _ in 0..per_block {
            raw_id_t.push(timed_raw(&mut raw_id, QUERY_STATUS_ID)?);
        }
        for _ in 0..per_block {
            ours_t.push(timed_command(&mut vm)?);
        }
        for _ in 0..per_block {
            quiet_t.push(timed_command(&mut quiet)?);
        }
        for _ in 0..per_block {
            threaded_t.push(threaded.timed_query_status()?);
        }
        for _ in 0..per_block {
            client_t.push(client_only.timed_query_status()?);
        }
    }
    raw.quit()?;
    raw_id.quit()?;
    threaded.quit()?;
    client_only.quit()?;
    vm.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    quiet.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    let (raw_s, ours_s) = (Stats::of(&raw_t), Stats::of(&ours_t));
    let (quiet_s, threaded_s) = (Stats::of(&quiet_t), Stats::of(&threaded_t));
    let (client_s, raw_id_s) = (Stats::of(&client_t), Stats::of(&raw_id_t));
    let row = Row {
        id: "P2",
        what: "QMP round trip, `query-status` (median per call)".into(),
        raw: util::human(raw_s.median),
        ours: util::human(ours_s.median),
        ratio: Some(ratio(ours_s.median, raw_s.median)),
        target: "≤ 1.1",
        judged: None,
        limit: Some(1.1),
        note: format!(
            "{} calls per side in {BLOCKS} interleaved blocks; mean {} vs {} ({:.3}×); \
             a raw client with a reader thread alone: {:.3}×",
            raw_s.n,
            util::human(ours_s.mean),
            util::human(raw_s.mean),
            ratio(ours_s.mean, raw_s.mean),
            ratio(threaded_s.median, raw_s.median)
        ),
    };
    let detail = format!(
        "P2 raw:  {}\nP2 ours: {}\n\
         diagnostics (not in the table):\n\
         P2 ours, QMP transcript to /dev/null: {} — {:.3}× raw\n\
         P2 raw client with a reader thread + channel: {} — {:.3}× raw\n\
         P2 qemu_test::qmp::QmpClient alone on a raw QEMU's socket: {} — {:.3}× raw\n\
         P2 raw client sending an `id` with each command (QEMU's own cost of an id, \
         which qemu-test leaves out unless commands overlap): {} — {:.3}× raw\n",
        raw_s.line(),
        ours_s.line(),
        quiet_s.line(),
        ratio(quiet_s.median, raw_s.median),
        threaded_s.line(),
        ratio(threaded_s.median, raw_s.median),
        client_s.line(),
        ratio(client_s.median, raw_s.median),
        raw_id_s.line(),
        ratio(raw_id_s.median, raw_s.median),
    );
    Ok((row, detail))
}

/// P4: two rows, restore vs cold boot to the first command, and the
/// 20-test suite with vs without `snapshot`.
fn p4(qemu: &Path, opts: &Options) -> Result<(Vec<Row>, String), String> {
    let m = crate::bench_snapshot::measure(qemu, opts.snapshot_runs, opts.suite_runs)?;
    let (suite_cold, suite_warm) = (Stats::of(&m.suite_cold), Stats::of(&m.suite_warm));
    let (restore, cold) = (Stats::of(&m.restore), Stats::of(&m.cold));
    let floor = Stats::of(&m.raw_restore);
    let subshell = Stats::of(&m.raw_subshell);
    let first = Row {
        id: "P4",
        what: "Linux guest: launch → first `succeed(\"true\")`, restored from a snapshot vs booted"
            .into(),
        raw: format!("{} (cold boot)", util::human(cold.median)),
        ours: format!("{} (restore)", util::human(restore.median)),
        ratio: Some(ratio(restore.median, cold.median)),
        target: "≤ 0.05",
        judged: None,
        limit: Some(0.05),
        note: format!(
            "medians of {} each, interleaved; the floor, raw QEMU restoring the same state and RAM file (the state on stdin) until a typed `echo` answers: {} ({:.3} of a cold boot); \
             the same `echo` after a subshell, `(true); echo`, the least a command with an exit status costs (a `Shell` runs every command in a subshell; its `fork`, exit and `wait` are translated afresh after each restore): {} ({:.3})",
            restore.n,
            util::human(floor.median),
            ratio(floor.median, cold.median),
            util::human(subshell.median),
            ratio(subshell.median, cold.median)
        ),
    };
    let suite = Row {
        id: "P4",
        what: "20-test Linux suite (debug build): with `snapshot` vs without".into(),
        raw: format!("{} (cold boots)", util::human(suite_cold.median)),
        ours: format!("{} (snapshot made)", util::human(suite_warm.median)),
        ratio: Some(ratio(suite_warm.median, suite_cold.median)),
        target: "≤ 0.125 (≥ 8× faster)",
        judged: None,
        limit: Some(0.125),
        note: format!(
            "{:.1}× faster; medians of {} runs each, interleaved (snapshot {}-{}, cold {}-{}); a first run that makes the snapshot: {} ({:.1}×)",
            ratio(suite_cold.median, suite_warm.median),
            suite_warm.n,
            util::human(suite_warm.min),
            util::human(suite_warm.max),
            util::human(suite_cold.min),
            util::human(suite_cold.max),
            util::human(m.suite_first),
            ratio(suite_cold.median, m.suite_first)
        ),
    };
    let detail = format!(
        "P4 cold boot → first command: {}\nP4 restore → first command:   {}\nP4 raw restore → typed echo:  {}\nP4 raw restore → typed (true); echo: {}\nP4 suite, cold:            {}\nP4 suite, snapshot made:   {}\nP4 suite, first run (makes the snapshot): {}\n",
        cold.line(),
        restore.line(),
        floor.line(),
        subshell.line(),
        suite_cold.line(),
        suite_warm.line(),
        util::human(m.suite_first)
    );
    Ok((vec![first, suite], detail))
}

fn table(rows: &[Row]) -> String {
    let mut t =
        String::from("| id | benchmark | raw | qemu-test | ratio | target | verdict | notes |\n");
    t.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for r in rows {
        let ratio = r
            .ratio
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.id,
            r.what,
            r.raw,
            r.ours,
            ratio,
            r.target,
            r.verdict(),
            r.note
        );
    }
    t
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
            "--vms",
            &opts.vms.to_string(),
            "--build-runs",
            &opts.build_runs.to_string(),
            "--channel-runs",
            &opts.channel_runs.to_string(),
        ]);
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
    let benches: [(&str, String, Bench); 8] = [
        (
            "P1",
            format!(
                "{} launches per side after {} warm-ups",
                opts.runs, opts.warmups
            ),
            Box::new(|| p1(&qemu, &opts).map(one)),
        ),
        (
            "P2",
            format!("{} QMP round trips per side", opts.calls),
            Box::new(|| p2(&qemu, &opts).map(one)),
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
            Box::new(|| p4(&qemu, &opts)),
        ),
        (
            "P5",
            format!("a console flood of {} bytes per side", opts.flood_bytes),
            Box::new(|| console::p5(&aarch64, &opts).map(one)),
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
            "C",
            format!(
                "the data channel: Linux guest, {} runs per side and size",
                opts.channel_runs
            ),
            Box::new(|| channel::rows(&qemu, opts.channel_runs)),
        ),
    ];
    let mut rows = Vec::new();
    let mut details = String::new();
    for (id, what, run) in &benches {
        if !opts.selects(id) {
            continue;
        }
        println!("\n{id}: {what}…");
        let (new_rows, detail) = run()?;
        print!("{detail}");
        rows.extend(new_rows);
        details.push_str(&detail);
    }

    let table = table(&rows);
    println!("\n{table}");
    let dir = util::artifacts_root(&util::target_dir());
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("bench.md");
    let doc = format!(
        "# qemu-test benchmarks\n\nRatios are qemu-test ÷ raw baseline, measured in the same run (`cargo xtask bench`).\n\n{header}\n{table}\n```text\n{details}```\n"
    );
    std::fs::write(&path, doc).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("bench: written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn order_statistics() {
        let s = Stats::of(&ms(&[5, 1, 3, 2, 4]));
        assert_eq!(
            (s.min, s.median, s.max),
            (
                Duration::from_millis(1),
                Duration::from_millis(3),
                Duration::from_millis(5)
            )
        );
        assert_eq!(s.mean, Duration::from_millis(3));
        let s = Stats::of(&ms(&[1, 2, 3, 4]));
        assert_eq!(s.median, Duration::from_micros(2500));
        let s = Stats::of(&ms(&(1..=10).collect::<Vec<_>>()));
        assert_eq!(s.p90, Duration::from_millis(9));
    }

    #[test]
    fn verdicts() {
        let mut row = Row {
            id: "P9",
            what: "x".into(),
            raw: "—".into(),
            ours: "—".into(),
            ratio: None,
            target: "≤ 1.1",
            judged: None,
            limit: None,
            note: String::new(),
        };
        assert_eq!(row.verdict(), "—");
        row.ratio = Some(1.1);
        row.limit = Some(1.1);
        assert_eq!(row.verdict(), "met");
        row.ratio = Some(1.11);
        assert_eq!(row.verdict(), "**missed**");
        // A judged value other than the ratio decides instead.
        row.judged = Some(0.0);
        row.limit = Some(0.0);
        assert_eq!(row.verdict(), "met");
        row.judged = Some(3.0);
        assert_eq!(row.verdict(), "**missed**");
    }

    #[test]
    fn only_selects_case_insensitively() {
        let mut opts = Options::default();
        assert!(IDS.iter().all(|id| opts.selects(id)));
        opts.only = vec!["p5".into(), "P6".into()];
        assert!(opts.selects("P5") && opts.selects("P6") && !opts.selects("P1"));
    }
}
