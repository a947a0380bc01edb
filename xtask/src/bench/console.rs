//! P5, console flood: the echo guest's `flood N` (N bytes of a known
//! pattern, then `flood done`) through [`Machine`]'s console, checked byte
//! for byte, against the same guest and flood with QEMU's serial port on
//! its stdio and stdout a plain file, which the bench reads as it grows.
//!
//! Judged: bytes lost (or garbled), which must be none. Reported: the time
//! from sending the command to seeing `flood done`, as throughput and as
//! the ratio ours ÷ raw, not judged. The guest writes its UART one byte at
//! a time (one MMIO exit and one `write` by QEMU per byte under TCG), so
//! the transport sets the pace: [`Machine`]'s console is a socketpair, and
//! a one-byte send on a Unix socket costs QEMU more than a one-byte write
//! to a file (each is a socket buffer of its own, and wakes the reader).
//! The file is the fastest QEMU can go, with no reader at all; a plain
//! blocking loop reading a socket instead is slower than qemu-test's drain
//! thread, as it is woken for nearly every byte.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu_test::{guest, Machine};

use super::rawqmp::Reaped;
use super::stats::ratio;
use super::table::{Check, Row};
use crate::bench::Options;
use crate::util;

/// The echo guest's QEMU.
pub(super) const QEMU: &str = "qemu-system-aarch64";
/// Arguments both sides use besides the console (and, on ours, QMP).
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

/// What one side saw.
struct Flood {
    /// From sending `flood N` to seeing `flood done`.
    time: Duration,
    /// Everything between the echoed command and `flood done`.
    body: Vec<u8>,
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

pub(super) fn p5(qemu: &Path, opts: &Options) -> Result<(Row, String), String> {
    let kernel = guest::ECHO_SHELL_AARCH64
        .path()
        .map_err(|e| format!("the echo guest: {e}"))?;
    let n = opts.flood_bytes;
    let raw = raw_flood(qemu, &kernel, n)?;
    let ours = our_flood(qemu, &kernel, n)?;
    let expected = pattern(n);
    let (raw_lost, ours_lost) = (lost(&raw.body, &expected), lost(&ours.body, &expected));
    if raw_lost != 0 {
        return Err(format!(
            "the raw baseline itself lost {raw_lost} of {n} bytes: the guest or QEMU is broken"
        ));
    }
    let mbps = |f: &Flood| n as f64 / 1e6 / f.time.as_secs_f64();
    let row = Row {
        id: "P5",
        what: format!(
            "console `flood` of {}: bytes lost; time (ratio)",
            megabytes(n)
        ),
        raw: format!("{:.2} MB/s", mbps(&raw)),
        ours: format!("{:.2} MB/s, {ours_lost} lost", mbps(&ours)),
        ratio: Some(ratio(ours.time, raw.time)),
        instructions: None,
        target: "0 lost",
        checks: vec![Check::at_most("lost", ours_lost as f64, 0.0)],
        host: None,
        note: format!(
            "time {} vs {}; ratio = time ours ÷ raw, reported, not judged; \
             ours: socketpair console, every byte kept in memory and in a log file; \
             raw: QEMU's serial on stdio into a plain file, no reader (QEMU's own pace)",
            util::human(ours.time),
            util::human(raw.time)
        ),
    };
    let detail = format!(
        "P5 raw:  {} bytes in {} ({:.2} MB/s), 0 lost\nP5 ours: {} bytes in {} ({:.2} MB/s), {ours_lost} lost\n",
        raw.body.len(),
        util::human(raw.time),
        mbps(&raw),
        ours.body.len(),
        util::human(ours.time),
        mbps(&ours),
    );
    Ok((row, detail))
}

fn megabytes(n: usize) -> String {
    // `Display` of an `f64` prints `10` for 10.0.
    format!("{} MB", n as f64 / 1e6)
}

/// Ours: [`Machine`] with its console drained into memory and a log file,
/// the flood awaited with [`Console::wait_for`](qemu_test::Console::wait_for).
fn our_flood(qemu: &Path, kernel: &Path, n: usize) -> Result<Flood, String> {
    let dir = tempfile::Builder::new()
        .prefix("qemu-test-bench-p5-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let mut vm = Machine::builder(qemu.to_string_lossy())
        .args(["-cpu", "max", "-nodefaults", "-kernel"])
        .arg(kernel.to_string_lossy())
        .console_log(dir.path().join("console.log"))
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
    let echo = format!("{command}\r\n");
    let body = m
        .before
        .strip_prefix(echo.as_bytes())
        .ok_or("the guest did not echo the flood command")?
        .to_vec();
    Ok(Flood { time, body })
}

/// Raw: QEMU's serial port on its stdio, stdout a plain file that the
/// bench reads as it grows: no reader QEMU waits for or wakes up, so this
/// is the pace of the guest and QEMU alone.
fn raw_flood(qemu: &Path, kernel: &Path, n: usize) -> Result<Flood, String> {
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
    let login = b"login: ";
    let after_login = serial.until(&mut qemu, 0, login)? + login.len();
    let command = format!("flood {n}");
    let start = Instant::now();
    input
        .write_all(format!("{command}\r").as_bytes())
        .map_err(|e| format!("sending `{command}`: {e}"))?;
    let done = serial.until(&mut qemu, after_login, DONE)?;
    let time = start.elapsed();
    let echo = format!("{command}\r\n");
    let body = serial.data[after_login..done]
        .strip_prefix(echo.as_bytes())
        .ok_or("the guest did not echo the flood command")?
        .to_vec();
    Ok(Flood { time, body })
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

    /// Reads until `marker` appears at or after `from`; its offset.
    fn until(&mut self, qemu: &mut Reaped, from: usize, marker: &[u8]) -> Result<usize, String> {
        let mut scan = from;
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            if let Some(at) = self.data[scan..]
                .windows(marker.len())
                .position(|w| w == marker)
            {
                return Ok(scan + at);
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
}
