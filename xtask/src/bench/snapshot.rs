//! P4: booted snapshots of the Linux guest against cold boots.
//!
//! - Time to the first successful `succeed("true")` from the snapshot
//!   (`Machine::launch_snapshot`, snapshot already made) against the raw
//!   floor: QEMU started by hand from the same state and RAM file until the
//!   same command, typed on the console, answers (target: ≤ 1.1×). A cold
//!   boot to the same answer, interleaved, is reported beside it.
//! - A 20-test Linux suite (`tests/linux_bench.rs`, built in debug like
//!   any user's tests) with and without `snapshot`: wall times of `cold::`
//!   and `snapshot::` runs with the snapshot already made (reported;
//!   medians of `--suite-runs` runs each, interleaved), plus a first run
//!   that has to make it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu_test::snapshot::SnapshotStore;
use qemu_test::{guest, Machine, Shell};

use super::stats::{ratio, Stats};
use super::table::{Check, Row};
use super::Options;
use crate::util;

/// What P4 measured.
pub struct P4 {
    /// The floor: QEMU started by hand with the state on stdin (`fd:0`;
    /// the RAM file mapped as the snapshot keeps it) and the console on a
    /// Unix socket, until a typed `echo` answers. No framework; QMP only
    /// for what QEMU needs (capabilities, `cont`).
    pub raw_restore: Vec<Duration>,
    /// The same with the `echo` after a subshell, `(true); echo ...`: the
    /// least that any command run apart from the shell costs (a `Shell`
    /// runs each command in a subshell and reports its exit status): a
    /// `fork`, the child's exit and the shell's `wait`, which TCG
    /// translates afresh after every restore. (The `echo` inside the
    /// subshell would answer before the exit and the `wait`, about 25 ms
    /// sooner.)
    pub raw_subshell: Vec<Duration>,
    /// Launch → first `succeed("true")`, from the snapshot.
    pub restore: Vec<Duration>,
    /// Launch → first `succeed("true")`, booting.
    pub cold: Vec<Duration>,
    /// The 20-test suite booting every VM, once per suite run.
    pub suite_cold: Vec<Duration>,
    /// The suite from the snapshot, including making it (once).
    pub suite_first: Duration,
    /// The suite from the snapshot, already made, once per suite run
    /// (interleaved with the cold runs).
    pub suite_warm: Vec<Duration>,
}

/// The Linux guest's machine, not launched.
fn linux_machine(qemu: &Path, files: &guest::LinuxFiles) -> Machine {
    let mut vm = Machine::builder(qemu.to_string_lossy())
        .args(files.args.iter().copied())
        .args(["-accel", "tcg", "-snapshot", "-kernel"])
        .arg(files.kernel.to_string_lossy())
        .arg("-initrd")
        .arg(files.initrd.to_string_lossy())
        .args(["-append", files.append])
        .build();
    vm.set_machine("q35").set_console(None, 0);
    vm
}

/// Launch (cold or from `store`) → the shell's first answer.
fn first_command(
    qemu: &Path,
    files: &guest::LinuxFiles,
    store: Option<&SnapshotStore>,
) -> Result<Duration, String> {
    let mut vm = linux_machine(qemu, files);
    let start = Instant::now();
    match store {
        Some(store) => {
            let key = vm.snapshot_key("p4").map_err(|e| format!("{e:?}"))?;
            vm.launch_snapshot(store, &key, |vm| {
                vm.console()
                    .with_timeout(Duration::from_secs(120))
                    .wait_for(guest::LINUX_READY)?;
                Ok(())
            })
            .map_err(|e| format!("P4: launching from the snapshot: {e:?}"))?;
        }
        None => vm.launch().map_err(|e| format!("P4: launching: {e:?}"))?,
    }
    let shell = Shell::new(vm.console()).with_timeout(Duration::from_secs(120));
    shell
        .succeed("true")
        .map_err(|e| format!("P4: the first command: {e:?}"))?;
    let took = start.elapsed();
    vm.kill();
    Ok(took)
}

/// What the raw floor types: an `echo` (a shell builtin), alone or once a
/// subshell has ended. Its answer, `raw-42`, is not in the typed text.
const RAW_ECHO: &[u8] = b"\x15echo raw-$((20 + 22))\r";
const RAW_SUBSHELL_ECHO: &[u8] = b"\x15(true); echo raw-$((20 + 22))\r";

/// The raw floor of a restore: spawn → state loaded → `line` typed on the
/// console answers.
fn raw_restore(
    qemu: &Path,
    files: &guest::LinuxFiles,
    state: &Path,
    line: &[u8],
) -> Result<Duration, String> {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    let dir = tempfile::tempdir().map_err(|e| format!("a temp dir: {e}"))?;
    let socket = dir.path().join("console.sock");
    let log = dir.path().join("qemu.log");
    let qmp = dir.path().join("qmp.sock");
    // The guest RAM as the snapshot keeps it: in a file next to the state,
    // mapped copy-on-write, left out of the stream.
    let ram = state.with_file_name("ram");
    let ram_args: Vec<String> = match std::fs::metadata(&ram) {
        Ok(meta) => vec![
            "-object".into(),
            format!(
                "memory-backend-file,id=pc.ram,size={},mem-path={},share=off",
                meta.len(),
                ram.to_string_lossy().replace(',', ",,")
            ),
            "-machine".into(),
            "memory-backend=pc.ram".into(),
        ],
        Err(_) => Vec::new(),
    };
    let state =
        std::fs::File::open(state).map_err(|e| format!("opening {}: {e}", state.display()))?;
    let start = Instant::now();
    let child = Command::new(qemu)
        .args([
            "-display",
            "none",
            "-vga",
            "none",
            "-M",
            "q35",
            "-accel",
            "tcg",
            "-snapshot",
        ])
        .args(["-monitor", "none", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .arg("-kernel")
        .arg(&files.kernel)
        .arg("-initrd")
        .arg(&files.initrd)
        .args(["-append", files.append, "-chardev"])
        .arg(format!(
            "socket,id=s,path={},server=on,wait=off",
            socket.display()
        ))
        .args(["-serial", "chardev:s", "-incoming"])
        // `x-ignore-shared` must be set before the state is read.
        .arg(if ram_args.is_empty() { "fd:0" } else { "defer" })
        .args(&ram_args)
        .stdin(state)
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?,
        )
        .spawn()
        .map_err(|e| format!("starting {}: {e}", qemu.display()))?;
    let mut child = KillOnDrop(child);
    let connect = |path: &Path| loop {
        match UnixStream::connect(path) {
            Ok(stream) => break Ok(stream),
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => break Err(format!("connecting to {}: {e}", path.display())),
        }
    };
    let mut console = connect(&socket)?;
    // The state was saved stopped, so the restored VM stays paused until
    // `cont` (as `Machine` does it): once the state is loaded, over QMP.
    let monitor = connect(&qmp)?;
    for stream in [&console, &monitor] {
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
    }
    monitor
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut replies = std::io::BufReader::new(monitor.try_clone().map_err(|e| e.to_string())?);
    {
        use std::io::BufRead;
        let mut greeting = String::new();
        replies
            .read_line(&mut greeting)
            .map_err(|e| format!("QMP: {e}"))?;
    }
    let mut monitor = monitor;
    let mut execute =
        |cmd: &str, arguments: serde_json::Value| -> Result<serde_json::Value, String> {
            use std::io::BufRead;
            let message = serde_json::json!({"execute": cmd, "arguments": arguments});
            // One write (see tests/src/lib.rs's QMP client).
            monitor
                .write_all(format!("{message}\n").as_bytes())
                .map_err(|e| format!("QMP: {e}"))?;
            loop {
                let mut line = String::new();
                replies
                    .read_line(&mut line)
                    .map_err(|e| format!("QMP: {e}"))?;
                let message: serde_json::Value =
                    serde_json::from_str(&line).map_err(|e| format!("QMP: {e}: {line:?}"))?;
                if message.get("return").is_some() || message.get("error").is_some() {
                    return Ok(message);
                }
            }
        };
    let none = || serde_json::json!({});
    execute("qmp_capabilities", none())?;
    if !ram_args.is_empty() {
        execute(
            "migrate-set-capabilities",
            serde_json::json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]}),
        )?;
        execute("migrate-incoming", serde_json::json!({"uri": "fd:0"}))?;
    }
    loop {
        let status = execute("query-status", none())?;
        match status["return"]["status"].as_str() {
            Some("inmigrate") if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Some("paused" | "postmigrate" | "prelaunch") => break,
            Some("running") => break,
            other => {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("the raw restore is {other:?}; QEMU said: {log}"));
            }
        }
    }
    execute("cont", none())?;
    // Typed until answered: input that arrives before the guest runs
    // again overflows the UART's FIFO (Ctrl-U discards a garbled line).
    console
        .set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(6).any(|w| w == b"raw-42") {
        if start.elapsed() > Duration::from_secs(30) {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "the raw restore did not answer within 30 s; QEMU said: {log}"
            ));
        }
        console
            .write_all(line)
            .map_err(|e| format!("typing on the raw console: {e}"))?;
        match console.read(&mut buf) {
            Ok(0) => return Err("the raw restore's console closed".into()),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("reading the raw console: {e}")),
        }
    }
    let took = start.elapsed();
    let _ = child.0.kill();
    let _ = child.0.wait();
    Ok(took)
}

/// Kills and reaps a raw QEMU on every path out.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// One run of the suite binary's tests matching `filter`, with artifacts
/// (and snapshots) under `root`: its wall time.
fn suite(exe: &Path, filter: &str, root: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let out = Command::new(exe)
        .arg(filter)
        .env("QEMU_TEST_ARTIFACTS", root)
        .env("QEMU_TEST_ACCEL", "tcg")
        .env_remove("QEMU_TEST_KEEP")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "P4: the suite `{filter}` failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(took)
}

/// Builds the suite binary (debug, as users run tests) and returns it.
fn build_suite() -> Result<PathBuf, String> {
    util::run(util::cargo().args([
        "build",
        "--quiet",
        "-p",
        "qemu-test-suite",
        "--bin",
        "linux-bench",
    ]))?;
    Ok(util::target_dir().join("debug").join("linux-bench"))
}

/// Measures P4 with `runs` first-command samples per side and
/// `suite_runs` runs of the suite per side.
pub fn measure(qemu: &Path, runs: usize, suite_runs: usize) -> Result<P4, String> {
    let files = guest::linux_x86_64().map_err(|e| format!("P4 needs the Linux guest: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("a temp dir: {e}"))?;
    let store = SnapshotStore::new(dir.path().join("snapshots"));
    // Make the snapshot first (not measured).
    first_command(qemu, &files, Some(&store))?;
    let key = linux_machine(qemu, &files)
        .snapshot_key("p4")
        .map_err(|e| format!("{e:?}"))?;
    let state = store.dir().join(key.id()).join("state");
    let (mut restore, mut cold) = (Vec::new(), Vec::new());
    let (mut raw_restore, mut raw_subshell) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        cold.push(first_command(qemu, &files, None)?);
        restore.push(first_command(qemu, &files, Some(&store))?);
        raw_restore.push(self::raw_restore(qemu, &files, &state, RAW_ECHO)?);
        raw_subshell.push(self::raw_restore(qemu, &files, &state, RAW_SUBSHELL_ECHO)?);
    }

    let exe = build_suite()?;
    let root = dir.path().join("suite");
    let suite_first = suite(&exe, "snapshot::", &root)?;
    let (mut suite_warm, mut suite_cold) = (Vec::new(), Vec::new());
    for _ in 0..suite_runs.max(1) {
        suite_cold.push(suite(&exe, "cold::", &root)?);
        suite_warm.push(suite(&exe, "snapshot::", &root)?);
    }
    Ok(P4 {
        raw_restore,
        raw_subshell,
        restore,
        cold,
        suite_cold,
        suite_first,
        suite_warm,
    })
}

/// P4: two rows, restore vs cold boot to the first command, and the
/// 20-test suite with vs without `snapshot`.
pub(super) fn p4(qemu: &Path, opts: &Options) -> Result<(Vec<Row>, String), String> {
    let m = measure(qemu, opts.snapshot_runs, opts.suite_runs)?;
    let (suite_cold, suite_warm) = (Stats::of(&m.suite_cold), Stats::of(&m.suite_warm));
    let (restore, cold) = (Stats::of(&m.restore), Stats::of(&m.cold));
    let floor = Stats::of(&m.raw_restore);
    let subshell = Stats::of(&m.raw_subshell);
    let floor_row = Row {
        id: "P4",
        what: "Linux guest restored from a snapshot: launch → first `succeed(\"true\")` vs raw QEMU restoring the same state to the same answer".into(),
        raw: format!("{} (raw restore, `(true); echo`)", util::human(subshell.median)),
        ours: format!("{} (`launch_snapshot` + `Shell`)", util::human(restore.median)),
        ratio: Some(ratio(restore.median, subshell.median)),
        instructions: None,
        target: "≤ 1.1× the raw restore",
        checks: vec![Check::at_most("time", ratio(restore.median, subshell.median), 1.1)],
        host: None,
        note: format!(
            "medians of {} each, interleaved with the cold boots; the raw side: QEMU started by hand with `-incoming` from the same state and RAM file, `cont` over QMP, then `(true); echo` typed on the console until it answers (a `Shell` runs every command in a subshell and reports its status: the least a command costs after a restore, whose code TCG translates afresh); a bare `echo`: {} ({:.3}× ours)",
            restore.n,
            util::human(floor.median),
            ratio(floor.median, restore.median),
        ),
    };
    let first = Row {
        id: "P4",
        what: "Linux guest: launch → first `succeed(\"true\")`, restored from a snapshot vs booted"
            .into(),
        raw: format!("{} (cold boot)", util::human(cold.median)),
        ours: format!("{} (restore)", util::human(restore.median)),
        ratio: Some(ratio(restore.median, cold.median)),
        instructions: None,
        target: "— (reported)",
        checks: Vec::new(),
        host: None,
        note: format!(
            "medians of {} each, interleaved; the raw restore floor is {:.3} of a cold boot",
            restore.n,
            ratio(subshell.median, cold.median)
        ),
    };
    let suite = Row {
        id: "P4",
        what: "20-test Linux suite (debug build): with `snapshot` vs without".into(),
        raw: format!("{} (cold boots)", util::human(suite_cold.median)),
        ours: format!("{} (snapshot made)", util::human(suite_warm.median)),
        ratio: Some(ratio(suite_warm.median, suite_cold.median)),
        instructions: None,
        target: "— (reported; was ≥ 10× faster)",
        checks: Vec::new(),
        host: None,
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
    Ok((vec![floor_row, first, suite], detail))
}
