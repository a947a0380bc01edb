//! The guest serial console: draining, logging, pattern waits, input.
//!
//! One drain thread per console reads everything the guest prints into an
//! in-memory buffer and the console log file as it arrives, so QEMU never
//! blocks on a full pipe and nothing is lost (bytes are kept as bytes;
//! invalid UTF-8 survives); see `drain.rs`. Waits search the output after
//! a cursor: each successful wait moves the cursor past its match, so the
//! next wait only sees newer output.
//!
//! ```no_run
//! # fn demo(vm: &qemu_test::Vm) -> qemu_test::TestResult {
//! use qemu_test::Pattern;
//! use std::time::Duration;
//!
//! let console = vm.console();
//! console.wait_for("login:")?;
//! console.exec_and_wait("hello", "you said: hello")?;
//! let m = console.wait_for_any(&[Pattern::text("$ "), Pattern::text("guest panic").fails()])?;
//! assert_eq!(m.index, 0);
//! console.with_timeout(Duration::from_secs(2)).wait_for("$ ")?;
//! # Ok(()) }
//! ```
//!
//! With the `regex` feature, a [`Pattern`] can also be a regular
//! expression over the output bytes (`Pattern::regex`,
//! `Console::wait_for_regex`). Text patterns need no feature.

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::deadline::DeadlineCap;
use crate::error::ConsoleError;
use crate::timeline::{self, Timeline};

mod crash;
mod drain;
mod pattern;
mod share;

pub use crash::Crash;
pub(crate) use crash::CrashHook;
use crash::CrashWatch;
pub use pattern::{Match, Pattern};

/// The default timeout of console waits.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many lines of output an error shows.
const TAIL_LINES: usize = 20;

#[derive(Debug, Default)]
struct Buffer {
    data: Vec<u8>,
    /// Waits search after this offset.
    cursor: usize,
    /// The drain thread saw EOF or an error.
    closed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    buf: Mutex<Buffer>,
    cond: Condvar,
    writer: Mutex<Option<Input>>,
    configured: bool,
    crash: Mutex<CrashWatch>,
    /// A [`Shell`](crate::Shell) got an answer on this console.
    shell_answered: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle to a machine's serial console. Cheap to clone; all clones
/// share the output and the cursor.
///
/// A machine launched without a console hands out a detached `Console`
/// whose operations fail with [`ConsoleError::NotConfigured`].
#[derive(Debug, Clone)]
pub struct Console {
    inner: Arc<Inner>,
    timeout: Duration,
    cap: DeadlineCap,
    /// Where this handle's waits are recorded (nowhere by default).
    timeline: Timeline,
}

/// How a console reaches QEMU.
#[derive(Debug)]
pub(crate) enum Ends {
    /// A socket both ways (a socketpair end; QEMU's is `-chardev
    /// socket,fd=N`).
    Socket(UnixStream),
    /// Pipes to QEMU's stdio (`-chardev stdio`): its stdout's read end and
    /// its stdin's write end. QEMU writes a pipe several times faster
    /// than a socket, byte by byte.
    Pipes { output: File, input: File },
}

/// Where [`Console::send`] writes.
#[derive(Debug)]
enum Input {
    Socket(UnixStream),
    Pipe(File),
}

impl Write for Input {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Input::Socket(s) => s.write(buf),
            Input::Pipe(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The drain thread of a console; joined when the machine shuts down.
#[derive(Debug)]
pub(crate) struct Drain {
    handle: Option<JoinHandle<()>>,
    /// Closed to tell the thread to stop.
    stop: Option<File>,
}

impl Drain {
    /// Stops draining, after reading what is there (after QEMU is gone,
    /// all its output).
    pub(crate) fn finish(mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Console {
    /// A console with nothing attached.
    pub(crate) fn detached() -> Self {
        Console {
            inner: Arc::new(Inner::default()),
            timeout: DEFAULT_TIMEOUT,
            cap: DeadlineCap::default(),
            timeline: Timeline::default(),
        }
    }

    /// Starts draining `ends` into memory and `log` (if any).
    pub(crate) fn attach(
        ends: Ends,
        log: Option<File>,
        cap: DeadlineCap,
    ) -> std::io::Result<(Self, Drain)> {
        let inner = Arc::new(Inner {
            configured: true,
            ..Inner::default()
        });
        let (source, input) = match ends {
            Ends::Socket(stream) => (
                drain::Source::Socket(stream.try_clone()?),
                Input::Socket(stream),
            ),
            Ends::Pipes { output, input } => {
                crate::os::set_nonblocking(&output)?;
                (drain::Source::Pipe(output), Input::Pipe(input))
            }
        };
        *inner.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(input);
        let (stop_read, stop) = crate::os::pipe()?;
        let handle = {
            let inner = Arc::clone(&inner);
            thread::Builder::new()
                .name("qemu-test-console".into())
                .spawn(move || drain::run(source, stop_read, log, &inner))?
        };
        Ok((
            Console {
                inner,
                timeout: DEFAULT_TIMEOUT,
                cap,
                timeline: Timeline::default(),
            },
            Drain {
                handle: Some(handle),
                stop: Some(stop),
            },
        ))
    }

    /// A handle whose waits default to `timeout` instead of 30 s.
    pub fn with_timeout(&self, timeout: Duration) -> Console {
        Console {
            timeout,
            ..self.clone()
        }
    }

    /// A handle whose waits are recorded in `timeline`.
    pub(crate) fn timed(&self, timeline: Timeline) -> Console {
        Console {
            timeline,
            ..self.clone()
        }
    }

    /// A handle whose waits are not recorded (a [`Shell`](crate::Shell)
    /// records its commands instead of the waits inside them).
    pub(crate) fn untimed(&self) -> Console {
        self.timed(Timeline::default())
    }

    /// Where this handle's waits are recorded.
    pub(crate) fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The default timeout of this handle's waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn check(&self) -> Result<(), ConsoleError> {
        if self.inner.configured {
            Ok(())
        } else {
            Err(ConsoleError::NotConfigured)
        }
    }

    /// Waits until `text` appears after the cursor; moves the cursor past it.
    pub fn wait_for(&self, text: &str) -> Result<Match, ConsoleError> {
        self.wait_for_any(&[Pattern::text(text)])
    }

    /// Waits until the regular expression matches after the cursor.
    ///
    /// Needs the `regex` feature.
    #[cfg(feature = "regex")]
    #[cfg_attr(docsrs, doc(cfg(feature = "regex")))]
    pub fn wait_for_regex(&self, re: &str) -> Result<Match, ConsoleError> {
        self.wait_for_any(&[Pattern::regex(re)?])
    }

    /// Waits until one of `patterns` appears; the earliest match wins. A
    /// [failure pattern](Pattern::fails) that matches first fails the wait.
    pub fn wait_for_any(&self, patterns: &[Pattern]) -> Result<Match, ConsoleError> {
        let started = Instant::now();
        let result = self.wait_untimed(patterns);
        self.timeline.step("console", started, || {
            let wanted: Vec<String> = patterns.iter().map(ToString::to_string).collect();
            let outcome = match &result {
                Ok(m) => (
                    "matched",
                    timeline::excerpt(&String::from_utf8_lossy(&m.matched), 80),
                ),
                Err(e) => ("error", error_kind(e).to_string()),
            };
            timeline::detail([
                ("wait", wanted.join(" or ").into()),
                (outcome.0, outcome.1.into()),
            ])
        });
        result
    }

    /// [`wait_for_any`](Self::wait_for_any), not recorded.
    fn wait_untimed(&self, patterns: &[Pattern]) -> Result<Match, ConsoleError> {
        self.check()?;
        let (deadline, timeout) = self.cap.after(self.timeout);
        let expected = || {
            let ok: Vec<String> = patterns
                .iter()
                .filter(|p| !p.failure)
                .map(ToString::to_string)
                .collect();
            ok.join(" or ")
        };
        let mut buf = self.inner.lock();
        // Per pattern: offset up to which it has been searched in vain.
        let mut searched = vec![buf.cursor; patterns.len()];
        let mut last_regex_scan = (buf.data.len(), Instant::now());
        let mut first = true;
        loop {
            let len = buf.data.len();
            let regex_due = first || regex_scan_due(&buf, last_regex_scan);
            let best = earliest_match(patterns, &buf, &mut searched, regex_due);
            if regex_due {
                last_regex_scan = (len, Instant::now());
            }
            first = false;
            if let Some((start, end, index)) = best {
                let before = buf.data[buf.cursor..start].to_vec();
                let matched = buf.data[start..end].to_vec();
                buf.cursor = end;
                if patterns[index].failure {
                    return Err(ConsoleError::Failure {
                        pattern: patterns[index].to_string(),
                        expected: expected(),
                        tail: tail(&buf.data),
                    });
                }
                return Ok(Match {
                    index,
                    matched,
                    before,
                });
            }
            if buf.closed {
                return Err(ConsoleError::Closed {
                    pattern: expected(),
                    tail: tail(&buf.data),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConsoleError::Timeout {
                    pattern: expected(),
                    timeout,
                    tail: tail(&buf.data),
                });
            }
            // Regexes are rescanned at most every 20 ms, so a flood of
            // output does not turn into quadratic work.
            let nap = if patterns.iter().any(|p| p.overlap().is_none()) {
                left.min(Duration::from_millis(20))
            } else {
                left
            };
            buf = self
                .inner
                .cond
                .wait_timeout(buf, nap)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The first guest kernel crash (a panic, Oops or BUG line) the
    /// console has shown, if any. The runner fails a test as soon as one
    /// appears, unless the test expects it.
    pub fn crash(&self) -> Option<Crash> {
        self.inner
            .crash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .crash()
            .cloned()
    }

    /// Calls `hook` once with the first crash: at once if there was one,
    /// else from the drain thread when it appears.
    pub(crate) fn on_crash(&self, hook: CrashHook) {
        let now = self
            .inner
            .crash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .on_crash(hook);
        if let Some((crash, hook)) = now {
            hook(crash);
        }
    }

    /// Notes that a shell answered on this console, or the guest agent
    /// beside it.
    pub(crate) fn mark_shell_answered(&self) {
        self.inner.shell_answered.store(true, Ordering::Relaxed);
    }

    /// Whether a [`Shell`](crate::Shell) ever got an answer on this
    /// console, or through the guest agent beside it (the runner then asks
    /// it for the kernel log on failure).
    pub(crate) fn shell_answered(&self) -> bool {
        self.inner.shell_answered.load(Ordering::Relaxed)
    }

    /// Sends bytes to the guest as they are.
    pub fn send(&self, bytes: impl AsRef<[u8]>) -> Result<(), ConsoleError> {
        self.check()?;
        let mut writer = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let stream = writer.as_mut().ok_or(ConsoleError::NotConfigured)?;
        stream
            .write_all(bytes.as_ref())
            .map_err(ConsoleError::Write)
    }

    /// Sends `line` followed by a carriage return (the Enter key on a
    /// serial terminal).
    pub fn send_line(&self, line: &str) -> Result<(), ConsoleError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\r');
        self.send(bytes)
    }

    /// Sends `line`, then waits for `pattern`.
    pub fn exec_and_wait(&self, line: &str, pattern: &str) -> Result<Match, ConsoleError> {
        self.send_line(line)?;
        self.wait_for(pattern)
    }

    /// Everything the guest printed so far, lossily decoded.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.inner.lock().data).into_owned()
    }

    /// Everything the guest printed so far, byte-exact.
    pub fn output_bytes(&self) -> Vec<u8> {
        self.inner.lock().data.clone()
    }

    /// The last `n` lines the guest printed, lossily decoded.
    pub fn tail(&self, n: usize) -> String {
        tail_n(&self.inner.lock().data, n)
    }

    /// Moves the cursor to the end of the output: later waits only see
    /// output printed from now on.
    pub fn skip_to_end(&self) {
        let mut buf = self.inner.lock();
        buf.cursor = buf.data.len();
    }

    /// Whether the machine has this console (a detached one's operations
    /// fail with [`ConsoleError::NotConfigured`]).
    pub fn is_configured(&self) -> bool {
        self.inner.configured
    }

    /// Whether the guest side is closed (QEMU exited).
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }
}

/// How a console wait failed, in a word (for the timeline).
fn error_kind(e: &ConsoleError) -> &'static str {
    match e {
        ConsoleError::Timeout { .. } => "timeout",
        ConsoleError::Failure { .. } => "failure pattern",
        ConsoleError::Closed { .. } => "closed",
        _ => "error",
    }
}

/// The earliest match after the cursor among `patterns` as (start, end,
/// pattern index). `searched[i]` is where pattern `i` last searched in
/// vain: text patterns only look again at what is new (with their length
/// as overlap); regexes look at everything, only when `regex_due`.
fn earliest_match(
    patterns: &[Pattern],
    buf: &Buffer,
    searched: &mut [usize],
    regex_due: bool,
) -> Option<(usize, usize, usize)> {
    let len = buf.data.len();
    let mut best: Option<(usize, usize, usize)> = None;
    for (i, p) in patterns.iter().enumerate() {
        let from = match p.overlap() {
            Some(back) => searched[i].saturating_sub(back).max(buf.cursor),
            None if regex_due => buf.cursor,
            None => continue,
        };
        if let Some((s, e)) = p.find(&buf.data, from) {
            if best.is_none_or(|(bs, _, _)| s < bs) {
                best = Some((s, e, i));
            }
        }
        searched[i] = len;
    }
    best
}

fn regex_scan_due(buf: &Buffer, (len_then, when): (usize, Instant)) -> bool {
    buf.closed || (buf.data.len() > len_then && when.elapsed() >= Duration::from_millis(20))
}

fn tail(data: &[u8]) -> String {
    tail_n(data, TAIL_LINES)
}

fn tail_n(data: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    if out.len() > 4096 {
        let cut = out.len() - 4096;
        let cut = (cut..out.len())
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(out.len());
        out = format!("…{}", &out[cut..]);
    }
    if out.is_empty() {
        out.push_str("(the guest printed nothing)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_patterns_find_first_match() {
        let p = Pattern::text("ab");
        assert_eq!(p.find(b"xxabyab", 0), Some((2, 4)));
        assert_eq!(p.find(b"xxabyab", 3), Some((5, 7)));
        assert_eq!(p.find(b"xxa", 0), None);
    }

    #[cfg(feature = "regex")]
    #[test]
    fn regex_patterns_work_on_bytes() {
        let p = Pattern::regex(r"you said: (\w+)").unwrap();
        assert_eq!(p.find(b"\xff\x00you said: hi\r\n", 0), Some((2, 14)));
        assert!(Pattern::regex("(").is_err());
    }

    #[test]
    fn tail_shows_last_lines() {
        let data: Vec<u8> = (0..30)
            .map(|i| format!("line {i}\n"))
            .collect::<String>()
            .into_bytes();
        let t = tail_n(&data, 3);
        assert_eq!(t, "line 27\nline 28\nline 29");
        assert_eq!(tail_n(b"", 3), "(the guest printed nothing)");
    }

    #[test]
    fn detached_console_reports_not_configured() {
        let c = Console::detached();
        assert!(matches!(c.wait_for("x"), Err(ConsoleError::NotConfigured)));
        assert!(matches!(c.send_line("x"), Err(ConsoleError::NotConfigured)));
    }

    #[test]
    fn waits_over_a_socketpair() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        let (console, drain) =
            Console::attach(Ends::Socket(host), None, DeadlineCap::default()).unwrap();
        guest.write_all(b"boot\r\nlogin: ").unwrap();
        let m = console.wait_for("login:").unwrap();
        assert_eq!(m.before, b"boot\r\n");
        // The cursor moved: the same text does not match twice.
        let c = console.with_timeout(Duration::from_millis(50));
        assert!(matches!(
            c.wait_for("login:"),
            Err(ConsoleError::Timeout { .. })
        ));
        guest.write_all(b"oops: guest panic\n").unwrap();
        let err = console
            .wait_for_any(&[Pattern::text("$ "), Pattern::text("panic").fails()])
            .unwrap_err();
        assert!(matches!(err, ConsoleError::Failure { .. }), "{err}");
        drop(guest);
        assert!(matches!(
            console.wait_for("never"),
            Err(ConsoleError::Closed { .. })
        ));
        drain.finish();
    }

    #[test]
    fn pipes_both_ways_and_a_flood_kept_whole() {
        let (output, mut guest_out) = crate::os::pipe().unwrap();
        let (mut guest_in, input) = crate::os::pipe().unwrap();
        let ends = Ends::Pipes { output, input };
        let (console, drain) = Console::attach(ends, None, DeadlineCap::default()).unwrap();
        console.send_line("hello").unwrap();
        let mut typed = [0u8; 6];
        std::io::Read::read_exact(&mut guest_in, &mut typed).unwrap();
        assert_eq!(&typed, b"hello\r");
        // A flood, written a byte at a time as QEMU does, arrives whole.
        let flood: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let writer = {
            let flood = flood.clone();
            std::thread::spawn(move || {
                for b in flood.chunks(1) {
                    guest_out.write_all(b).unwrap();
                }
                guest_out.write_all(b"\r\ndone\r\n").unwrap();
            })
        };
        let m = console.wait_for("\r\ndone\r\n").unwrap();
        assert_eq!(m.before, flood);
        writer.join().unwrap();
        // The writer is gone: end of file, the console is closed.
        let c = console.with_timeout(Duration::from_secs(10));
        assert!(matches!(
            c.wait_for("never"),
            Err(ConsoleError::Closed { .. })
        ));
        drain.finish();
    }

    #[test]
    fn finish_stops_a_drain_whose_source_stays_open() {
        let (output, mut guest_out) = crate::os::pipe().unwrap();
        let (_guest_in, input) = crate::os::pipe().unwrap();
        let (console, drain) =
            Console::attach(Ends::Pipes { output, input }, None, DeadlineCap::default()).unwrap();
        guest_out.write_all(b"last words").unwrap();
        // The writer is still open (say, a child of QEMU inherited it):
        // finish() still ends the drain, after taking what was there.
        drain.finish();
        assert!(console.is_closed());
        assert_eq!(console.output(), "last words");
    }
}
