//! C1–C4, the data channel: [`Shell`] over the guest agent (the Linux
//! guest's `qemu-test-agent` on a virtio-serial port) against the same
//! device driven by hand, and the console Shell for contrast.
//!
//! The raw side is QEMU started by hand with the Linux guest and a second
//! port on the same kind of device (`virtio-serial-pci`, a
//! `virtserialport` on a socketpair chardev, as [`Machine`] makes it),
//! named `org.qemu-test.raw` so that the guest's agent leaves it alone.
//! Commands typed on its console move the bytes with busybox `dd`: into a
//! file in `/tmp` as the bench writes them to the port (host → guest), out
//! of it as the bench reads them (guest → host); the time runs from
//! typing the command to the last byte (or the command's end marker). The
//! raw round trip is a byte echoed by `cat` on the port.
//!
//! Ours is a [`Machine`] with a data channel and [`Shell`]:
//! `copy_to_guest` and `copy_from_guest` of 10 and 50 MB (random bytes,
//! checked), `succeed("true")`, and `succeed("cat <10 MB file>")`. The two
//! VMs run side by side and the measurements are interleaved. The serial
//! path is the same machine's console Shell (`console_only`), measured
//! with smaller sizes (its rates would take minutes at 10 MB): rates are
//! compared. Judged: each copy ≥ 10× the serial path's rate (issue 20),
//! and the rest as each row says.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu_test::shell::Transport;
use qemu_test::{guest, Machine, Shell};

use super::rawqmp::Reaped;
use super::stats::{ratio, Stats};
use super::table::{Check, Row};
use crate::util;

/// The guest's memory: 50 MB files in its `/tmp` (a tmpfs of half of it).
const MEMORY: &str = "512M";
/// The copy sizes (MB = 10^6 bytes).
const SIZES: [usize; 2] = [10_000_000, 50_000_000];
/// The serial path's sizes: copies to and from the guest, and output.
const SERIAL_TO: usize = 256 << 10;
const SERIAL_FROM: usize = 1 << 20;
/// Round trips measured per latency figure.
const ROUND_TRIPS: usize = 40;
/// How long one raw step may take.
const STEP: Duration = Duration::from_secs(300);
/// The raw port's name in the guest.
const RAW_PORT: &str = "org.qemu-test.raw";

/// What C1–C4 measured; times per size index of [`SIZES`].
#[derive(Default)]
struct Measured {
    raw_to: [Vec<Duration>; 2],
    raw_from: [Vec<Duration>; 2],
    raw_echo: Vec<Duration>,
    put: [Vec<Duration>; 2],
    get: [Vec<Duration>; 2],
    cat: Vec<Duration>,
    true_: Vec<Duration>,
    serial_to: Duration,
    serial_from: Duration,
    serial_out: Duration,
    serial_true: Vec<Duration>,
}

/// Runs C1–C4 `runs` times each (interleaved); without a Linux guest
/// with the agent, one row says why they did not run.
pub(super) fn rows(qemu: &Path, runs: usize) -> Result<(Vec<Row>, String), String> {
    let files =
        match guest::linux_x86_64() {
            Ok(files) if files.manifest["agent"].is_object() => files,
            Ok(_) => return Ok(skipped(
                "the Linux guest was built without the agent; rebuild it with `cargo xtask guests`",
            )),
            Err(e) => return Ok(skipped(&e.to_string())),
        };
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-channel-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let data = noise(SIZES[1]);
    let mut srcs = Vec::new();
    for size in SIZES {
        let src = dir.path().join(format!("data-{size}"));
        std::fs::write(&src, &data[..size])
            .map_err(|e| format!("writing {}: {e}", src.display()))?;
        srcs.push(src);
    }
    let mut raw = RawVm::start(qemu, &files)?;
    let mut ours = Ours::start(qemu, &files)?;
    let mut m = Measured::default();
    for _ in 0..runs {
        for (i, &size) in SIZES.iter().enumerate() {
            m.raw_to[i].push(raw.dd_in(&data[..size])?);
            m.put[i].push(ours.put(&srcs[i], size)?);
            m.raw_from[i].push(raw.dd_out(size)?);
            m.get[i].push(ours.get(size, &data[..size], dir.path())?);
        }
        m.cat.push(ours.cat(SIZES[0])?);
    }
    // Interleaved, so that the host's load hits both alike.
    for i in 0..ROUND_TRIPS {
        m.true_.push(ours.true_(false)?);
        if i % 2 == 0 {
            m.serial_true.push(ours.true_(true)?);
        }
    }
    m.raw_echo = raw.echo_round_trips(ROUND_TRIPS)?;
    ours.serial(&mut m, &data, dir.path())?;
    Ok((table(&m), details(&m)))
}

/// The one row C1–C4 leave when they cannot run.
fn skipped(why: &str) -> (Vec<Row>, String) {
    let row = Row {
        id: "C1–C4",
        what: "the data channel (copies, latency, output through the agent)".into(),
        raw: "—".into(),
        ours: "—".into(),
        ratio: None,
        target: "≥ 10× the serial path",
        instructions: None,
        checks: Vec::new(),
        host: None,
        note: format!("not run: {why}"),
    };
    (vec![row], format!("C1–C4 not run: {why}\n"))
}

/// `n` random bytes (xorshift): incompressible, the same every run.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// MB/s for `bytes` in `time`.
fn rate(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn mb(bytes: usize) -> String {
    format!("{} MB", bytes / 1_000_000)
}

/// The rows: C1 and C2 per size, C3, C4.
fn table(m: &Measured) -> Vec<Row> {
    let mut rows = Vec::new();
    let serial_to = rate(SERIAL_TO, m.serial_to);
    let serial_from = rate(SERIAL_FROM, m.serial_from);
    for (i, &size) in SIZES.iter().enumerate() {
        rows.push(copy_row(
            "C1",
            "copy_to_guest",
            size,
            &m.raw_to[i],
            &m.put[i],
            serial_to,
        ));
    }
    for (i, &size) in SIZES.iter().enumerate() {
        rows.push(copy_row(
            "C2",
            "copy_from_guest",
            size,
            &m.raw_from[i],
            &m.get[i],
            serial_from,
        ));
    }
    let (echo, ours, serial) = (
        Stats::of(&m.raw_echo),
        Stats::of(&m.true_),
        Stats::of(&m.serial_true),
    );
    rows.push(Row {
        id: "C3",
        what: "`succeed(\"true\")` over the agent (median)".into(),
        raw: format!("{} (a byte echoed over the port)", util::human(echo.median)),
        ours: util::human(ours.median),
        ratio: Some(ratio(ours.median, echo.median)),
        target: "≤ 0.5 of the serial Shell's",
        instructions: None,
        checks: vec![Check::at_most("time", ratio(ours.median, serial.median), 0.5)],
        host: None,
        note: format!(
            "{} round trips each; the serial Shell: {} ({:.1}× slower); a command costs a process start in the guest (`sh -c`), the device a fraction of a millisecond",
            ours.n,
            util::human(serial.median),
            ratio(serial.median, ours.median)
        ),
    });
    let (raw, cat) = (Stats::of(&m.raw_from[0]), Stats::of(&m.cat));
    let serial_out = rate(SERIAL_FROM, m.serial_out);
    let ours_rate = rate(SIZES[0], cat.median);
    rows.push(Row {
        id: "C4",
        what: "`succeed(\"cat <10 MB file>\")`: 10 MB of text on stdout (median)".into(),
        raw: format!("{} (dd to the port)", util::human(raw.median)),
        ours: format!("{} ({ours_rate:.0} MB/s)", util::human(cat.median)),
        ratio: Some(ratio(cat.median, raw.median)),
        target: "≥ 10× the serial path",
        instructions: None,
        checks: vec![Check::at_most("throughput", serial_out / ours_rate, 0.1)],
        host: None,
        note: format!(
            "the serial Shell's stdout: {:.2} MB/s (1 MiB), so {:.0}× slower",
            serial_out,
            ours_rate / serial_out
        ),
    });
    rows
}

/// A copy row: ours against the raw device, judged against the serial
/// path's rate.
fn copy_row(
    id: &'static str,
    what: &str,
    size: usize,
    raw: &[Duration],
    ours: &[Duration],
    serial_rate: f64,
) -> Row {
    let (raw, ours) = (Stats::of(raw), Stats::of(ours));
    let ours_rate = rate(size, ours.median);
    Row {
        id,
        what: format!("`{what}` of {} over the agent (median)", mb(size)),
        raw: format!("{} ({:.0} MB/s, dd)", util::human(raw.median), rate(size, raw.median)),
        ours: format!("{} ({ours_rate:.0} MB/s)", util::human(ours.median)),
        ratio: Some(ratio(ours.median, raw.median)),
        target: "≥ 10× the serial path",
        instructions: None,
        checks: vec![Check::at_most("throughput", serial_rate / ours_rate, 0.1)],
        host: None,
        note: format!(
            "{} runs each, interleaved (ours {}–{}); the serial Shell: {:.3} MB/s, so {:.0}× slower",
            ours.n,
            util::human(ours.min),
            util::human(ours.max),
            serial_rate,
            ours_rate / serial_rate
        ),
    }
}

fn details(m: &Measured) -> String {
    let mut out = String::new();
    for (i, &size) in SIZES.iter().enumerate() {
        out.push_str(&format!(
            "C1 {}: raw dd {}\nC1 {}: copy_to_guest {}\nC2 {}: raw dd {}\nC2 {}: copy_from_guest {}\n",
            mb(size),
            Stats::of(&m.raw_to[i]).line(),
            mb(size),
            Stats::of(&m.put[i]).line(),
            mb(size),
            Stats::of(&m.raw_from[i]).line(),
            mb(size),
            Stats::of(&m.get[i]).line(),
        ));
    }
    out.push_str(&format!(
        "C3 raw echo over the port: {}\nC3 succeed(\"true\") over the agent: {}\nC3 succeed(\"true\") over the console: {}\n\
         C4 10 MB of stdout over the agent: {}\n\
         serial path: copy_to_guest {} KiB in {}, copy_from_guest {} KiB in {}, {} KiB of stdout in {}\n",
        Stats::of(&m.raw_echo).line(),
        Stats::of(&m.true_).line(),
        Stats::of(&m.serial_true).line(),
        Stats::of(&m.cat).line(),
        SERIAL_TO >> 10,
        util::human(m.serial_to),
        SERIAL_FROM >> 10,
        util::human(m.serial_from),
        SERIAL_FROM >> 10,
        util::human(m.serial_out),
    ));
    out
}

/// Our side: a machine with a data channel, and its Shell.
struct Ours {
    _vm: Machine,
    shell: Shell,
}

impl Ours {
    fn start(qemu: &Path, files: &guest::LinuxFiles) -> Result<Ours, String> {
        let mut vm = Machine::builder(qemu.to_string_lossy())
            .args(files.args.iter().copied())
            .args(["-accel", "tcg", "-m", MEMORY, "-kernel"])
            .arg(files.kernel.to_string_lossy())
            .arg("-initrd")
            .arg(files.initrd.to_string_lossy())
            .args(["-append", files.append])
            .build();
        vm.set_machine("q35")
            .set_console(None, 0)
            .set_data_channel(true);
        vm.launch().map_err(|e| format!("launching ours: {e}"))?;
        let shell = Shell::with_data_channel(vm.console(), vm.data_channel())
            .with_timeout(STEP)
            .with_output_limit(1 << 30);
        match shell.transport() {
            Ok(Transport::Agent) => Ok(Ours { _vm: vm, shell }),
            Ok(other) => Err(format!("our Shell uses the {other:?}, not the agent")),
            Err(e) => Err(format!("our Shell: {e}")),
        }
    }

    /// `copy_to_guest` of `src` (`size` bytes).
    fn put(&mut self, src: &Path, size: usize) -> Result<Duration, String> {
        let start = Instant::now();
        self.shell
            .copy_to_guest(src, "/tmp/ours")
            .map_err(|e| format!("copy_to_guest: {e}"))?;
        let took = start.elapsed();
        let left = self
            .shell
            .succeed("wc -c </tmp/ours")
            .map_err(|e| e.to_string())?;
        if left.trim() != size.to_string() {
            return Err(format!("copy_to_guest left {left:?} bytes"));
        }
        Ok(took)
    }

    /// `copy_from_guest` of `/tmp/ours` (the last `put`), checked.
    fn get(&mut self, size: usize, expected: &[u8], dir: &Path) -> Result<Duration, String> {
        let back = dir.join("back");
        let start = Instant::now();
        self.shell
            .copy_from_guest("/tmp/ours", &back)
            .map_err(|e| format!("copy_from_guest: {e}"))?;
        let took = start.elapsed();
        let got = std::fs::read(&back).map_err(|e| e.to_string())?;
        if got.len() != size || got != expected {
            return Err(format!(
                "copy_from_guest brought {} different bytes",
                got.len()
            ));
        }
        Ok(took)
    }

    /// `succeed("cat …")` of a `size`-byte text file (made once): text,
    /// as `succeed` returns a `String` (binary output costs a lossy UTF-8
    /// conversion on top, about 16 ns a byte here).
    fn cat(&mut self, size: usize) -> Result<Duration, String> {
        let shell = &self.shell;
        if shell
            .run("test -e /tmp/out")
            .map_err(|e| e.to_string())?
            .status
            != 0
        {
            let mut text = String::with_capacity(size);
            let mut i = 0;
            while text.len() < size {
                text.push_str(&format!("line {i:08} of the text that C4 prints\n"));
                i += 1;
            }
            text.truncate(size);
            shell
                .write_file("/tmp/out", text.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let start = Instant::now();
        let out = shell.run("cat /tmp/out").map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if out.status != 0 || out.stdout_bytes().len() != size {
            return Err(format!(
                "cat brought {} bytes (exit status {})",
                out.stdout_bytes().len(),
                out.status
            ));
        }
        Ok(took)
    }

    /// One `succeed("true")`, over the agent or the console.
    fn true_(&mut self, console: bool) -> Result<Duration, String> {
        let shell = if console {
            self.shell.console_only()
        } else {
            self.shell.clone()
        };
        let start = Instant::now();
        shell.succeed("true").map_err(|e| e.to_string())?;
        Ok(start.elapsed())
    }

    /// The serial path, on the same machine's console.
    fn serial(&mut self, m: &mut Measured, data: &[u8], dir: &Path) -> Result<(), String> {
        let console = self.shell.console_only();
        let part = dir.join("serial");
        std::fs::write(&part, &data[..SERIAL_TO]).map_err(|e| e.to_string())?;
        let start = Instant::now();
        console
            .copy_to_guest(&part, "/tmp/serial-in")
            .map_err(|e| format!("serial copy_to_guest: {e}"))?;
        m.serial_to = start.elapsed();
        console
            .succeed(&format!("head -c {SERIAL_FROM} /tmp/ours >/tmp/serial-out"))
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        console
            .copy_from_guest("/tmp/serial-out", dir.join("serial-back"))
            .map_err(|e| format!("serial copy_from_guest: {e}"))?;
        m.serial_from = start.elapsed();
        let start = Instant::now();
        let out = console
            .run("cat /tmp/serial-out")
            .map_err(|e| e.to_string())?;
        m.serial_out = start.elapsed();
        if out.stdout_bytes() != &data[..SERIAL_FROM] {
            return Err("the serial path's stdout differs".into());
        }
        Ok(())
    }
}

/// The raw side: QEMU by hand, its console and the raw port on
/// socketpairs.
struct RawVm {
    qemu: Reaped,
    console: UnixStream,
    port: UnixStream,
    seen: Vec<u8>,
    device: String,
    runs: usize,
}

impl RawVm {
    fn start(qemu: &Path, files: &guest::LinuxFiles) -> Result<RawVm, String> {
        let (console, console_q) = UnixStream::pair().map_err(|e| e.to_string())?;
        let (port, port_q) = UnixStream::pair().map_err(|e| e.to_string())?;
        let fds = [
            std::os::fd::AsRawFd::as_raw_fd(&console_q),
            std::os::fd::AsRawFd::as_raw_fd(&port_q),
        ];
        let mut cmd = Command::new(qemu);
        cmd.args([
            "-display", "none", "-vga", "none", "-M", "q35", "-accel", "tcg",
        ])
        .args(["-m", MEMORY])
        .args(files.args.iter().copied())
        .arg("-kernel")
        .arg(&files.kernel)
        .arg("-initrd")
        .arg(&files.initrd)
        .args(["-append", files.append])
        .arg("-chardev")
        .arg(format!("socket,id=con,fd={}", fds[0]))
        .args([
            "-serial",
            "chardev:con",
            "-device",
            "virtio-serial-pci,id=vser",
        ])
        .arg("-chardev")
        .arg(format!("socket,id=raw,fd={}", fds[1]))
        .arg("-device")
        .arg(format!(
            "virtserialport,bus=vser.0,chardev=raw,name={RAW_PORT}"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        inherit(&mut cmd, fds);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", qemu.display()))?;
        drop((console_q, port_q));
        console
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        for timeout in [
            port.set_read_timeout(Some(STEP)),
            port.set_write_timeout(Some(STEP)),
        ] {
            timeout.map_err(|e| e.to_string())?;
        }
        let mut vm = RawVm {
            qemu: Reaped(child),
            console,
            port,
            seen: Vec::new(),
            device: String::new(),
            runs: 0,
        };
        vm.until(guest::LINUX_READY.as_bytes())?;
        vm.device = vm.find_port()?;
        Ok(vm)
    }

    /// The raw port's device node, found by its name in sysfs.
    fn find_port(&mut self) -> Result<String, String> {
        self.type_line(&format!(
            "for p in /sys/class/virtio-ports/*; do [ \"$(cat $p/name)\" = {RAW_PORT} ] && echo \"@port\"\"=/dev/${{p##*/}}@\"; done"
        ))?;
        self.until(b"@port=")?;
        let device = self.until(b"@")?;
        Ok(String::from_utf8_lossy(&device).into_owned())
    }

    fn type_line(&mut self, line: &str) -> Result<(), String> {
        self.console
            .write_all(format!("{line}\r").as_bytes())
            .map_err(|e| format!("typing on the raw console: {e}"))
    }

    /// Reads the console until `marker`; returns what came before it (and
    /// forgets it and the marker).
    fn until(&mut self, marker: &[u8]) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + STEP;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = self.seen.windows(marker.len()).position(|w| w == marker) {
                let before = self.seen[..at].to_vec();
                self.seen.drain(..at + marker.len());
                return Ok(before);
            }
            if Instant::now() > deadline {
                return Err(format!("the raw console showed no {marker:?}"));
            }
            if let Ok(Some(exit)) = self.qemu.0.try_wait() {
                return Err(format!("the raw QEMU exited ({exit})"));
            }
            match self.console.read(&mut buf) {
                Ok(0) => return Err("the raw console closed".into()),
                Ok(n) => self.seen.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("reading the raw console: {e}")),
            }
        }
    }

    /// dd from the port into `/tmp/raw` while the bench writes `data`.
    fn dd_in(&mut self, data: &[u8]) -> Result<Duration, String> {
        self.runs += 1;
        let marker = format!("@done{}", self.runs);
        let start = Instant::now();
        self.type_line(&format!(
            "dd if={} of=/tmp/raw bs=65536 count={} iflag=fullblock,count_bytes 2>/dev/null; echo \"@done\"\"{}\"",
            self.device,
            data.len(),
            self.runs
        ))?;
        self.port
            .write_all(data)
            .map_err(|e| format!("writing the raw port: {e}"))?;
        self.until(marker.as_bytes())?;
        Ok(start.elapsed())
    }

    /// dd from `/tmp/raw` to the port while the bench reads `size` bytes.
    fn dd_out(&mut self, size: usize) -> Result<Duration, String> {
        let start = Instant::now();
        self.type_line(&format!(
            "dd if=/tmp/raw of={} bs=65536 count={size} iflag=count_bytes 2>/dev/null",
            self.device
        ))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < size {
            let n = self
                .port
                .read(&mut buf)
                .map_err(|e| format!("reading the raw port: {e}"))?;
            if n == 0 {
                return Err("the raw port closed".into());
            }
            got += n;
        }
        Ok(start.elapsed())
    }

    /// One byte echoed by `cat` on the port, `n` times.
    fn echo_round_trips(&mut self, n: usize) -> Result<Vec<Duration>, String> {
        self.type_line(&format!(
            "(exec cat <>{} >&0 2>/dev/null &); echo \"@ec\"\"ho@\"",
            self.device
        ))?;
        self.until(b"@echo@")?;
        std::thread::sleep(Duration::from_millis(500));
        let mut times = Vec::new();
        let mut byte = [0u8; 1];
        for _ in 0..n {
            let start = Instant::now();
            self.port.write_all(b"x").map_err(|e| e.to_string())?;
            self.port
                .read_exact(&mut byte)
                .map_err(|e| format!("the raw echo: {e}"))?;
            times.push(start.elapsed());
        }
        Ok(times)
    }
}

/// Makes `fds` survive the exec of `cmd` (QEMU inherits them).
fn inherit(cmd: &mut Command, fds: [i32; 2]) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only makes fcntl system calls, which are
    // async-signal-safe, and does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds {
                let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            Ok(())
        });
    }
}
