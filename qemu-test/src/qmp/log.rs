//! The QMP transcript: every message both ways, time-stamped, one JSON
//! object per line (`qmp.jsonl`).
//!
//! Each line is `{"time": <unix seconds>, "dir": "send"|"recv", "msg": ...}`;
//! bytes that were not a QMP message are logged as `"raw"` instead of
//! `"msg"`. A message is logged as the very bytes that crossed the wire
//! (they are valid JSON: the client produced or parsed them), so logging
//! costs no second serialization.
//!
//! Lines are written off the caller's path: appending one only copies it
//! into the transcript's buffer, and one writer thread per process writes
//! each buffer [`COALESCE`] after its first pending line, whole lines in
//! one `write`. A write to a file on a journaling file system costs a few
//! microseconds, several percent of a QMP round trip, and batching many
//! lines costs little more than one. Lines so reach the file within
//! milliseconds, and all of them when the transcript is dropped (with its
//! client, at shutdown); a process killed outright loses at most the last
//! few milliseconds, never half a line.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

/// How long the writer waits after a transcript's first pending line
/// before it writes, gathering the lines that follow.
pub(crate) const COALESCE: Duration = Duration::from_millis(10);

/// Direction of a logged message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dir {
    Send,
    Recv,
}

/// An append-only transcript file.
#[derive(Debug)]
pub(crate) struct Transcript {
    shared: Arc<Shared>,
}

/// What the transcript shares with the writer thread.
#[derive(Debug)]
struct Shared {
    /// Held while writing, so that buffers taken one after the other are
    /// written in that order.
    file: Mutex<File>,
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    lines: Vec<u8>,
    /// Whether the writer thread has this transcript in its queue.
    queued: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transcript {
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Transcript {
            shared: Arc::new(Shared {
                file: Mutex::new(file),
                pending: Mutex::new(Pending::default()),
            }),
        })
    }

    /// Logs bytes that were not a QMP message (or an out-of-band action).
    pub(crate) fn raw(&self, dir: Dir, what: &str) {
        let mut line = Vec::new();
        raw_entry(&mut line, dir, what);
        self.append_after(&line, || ());
    }

    /// Appends `lines` (made by [`entry`] or [`raw_entry`]), running
    /// `first` beforehand while holding the transcript: whatever `first`
    /// sets in motion cannot log anything ahead of `lines`. Incoming
    /// messages are handed over this way, so waiters are woken first yet a
    /// command sent in answer still comes after them.
    pub(crate) fn append_after<R>(&self, lines: &[u8], first: impl FnOnce() -> R) -> R {
        let mut pending = lock(&self.shared.pending);
        let out = first();
        pending.lines.extend_from_slice(lines);
        if !pending.queued {
            pending.queued = true;
            drop(pending);
            if !Writer::queue(&self.shared) {
                // No writer thread: write now.
                self.shared.flush();
            }
        }
        out
    }
}

impl Drop for Transcript {
    fn drop(&mut self) {
        self.shared.flush();
    }
}

impl Shared {
    /// Writes every pending line, in one `write`. A failing transcript
    /// must not fail the test: the messages themselves went through.
    fn flush(&self) {
        let mut file = lock(&self.file);
        let lines = {
            let mut pending = lock(&self.pending);
            pending.queued = false;
            std::mem::take(&mut pending.lines)
        };
        if !lines.is_empty() {
            let _ = file.write_all(&lines);
        }
    }
}

/// The process's transcript writer thread and its queue.
struct Writer {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    transcripts: VecDeque<Arc<Shared>>,
    /// Whether the thread waits on `wake` (else it will look at the queue
    /// without being told).
    idle: bool,
}

impl Writer {
    /// Puts `shared` in the writer's queue; false if there is no writer
    /// thread (it could not be started).
    fn queue(shared: &Arc<Shared>) -> bool {
        static WRITER: OnceLock<Option<Arc<Writer>>> = OnceLock::new();
        let Some(writer) = WRITER.get_or_init(Writer::start) else {
            return false;
        };
        let mut queue = lock(&writer.queue);
        queue.transcripts.push_back(Arc::clone(shared));
        if queue.idle {
            queue.idle = false;
            writer.wake.notify_one();
        }
        true
    }

    fn start() -> Option<Arc<Writer>> {
        let writer = Arc::new(Writer {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let run = Arc::clone(&writer);
        std::thread::Builder::new()
            .name("qemu-test-log".into())
            .spawn(move || run.run())
            .ok()?;
        Some(writer)
    }

    /// Writes what is queued every [`COALESCE`] while lines come, and
    /// waits to be told once a whole period brought none: during a burst
    /// of commands nobody wakes the thread but its own timer.
    fn run(&self) {
        loop {
            let mut queue = lock(&self.queue);
            while queue.transcripts.is_empty() {
                queue.idle = true;
                queue = self.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            drop(queue);
            loop {
                std::thread::sleep(COALESCE);
                let due: Vec<Arc<Shared>> = lock(&self.queue).transcripts.drain(..).collect();
                if due.is_empty() {
                    break;
                }
                for shared in due {
                    shared.flush();
                }
            }
        }
    }
}

/// Appends the transcript line for one QMP message (`json`, the text of
/// an object), time-stamped now, to `out`.
pub(crate) fn entry(out: &mut Vec<u8>, dir: Dir, json: &[u8]) {
    prefix(out, dir);
    out.extend_from_slice(b"\"msg\":");
    out.extend_from_slice(json);
    out.extend_from_slice(b"}\n");
}

/// Appends the transcript line for something that was not a QMP message,
/// time-stamped now, to `out`.
pub(crate) fn raw_entry(out: &mut Vec<u8>, dir: Dir, what: &str) {
    prefix(out, dir);
    out.extend_from_slice(b"\"raw\":");
    // A string always serializes.
    let _ = serde_json::to_writer(&mut *out, what);
    out.extend_from_slice(b"}\n");
}

/// How every transcript line starts (a constant, so that its unbalanced
/// brace is no function's).
const LINE_START: &[u8] = b"{\"time\":";

/// `{"time":<now>,"dir":"<dir>",` (the line up to its last field). Written
/// digit by digit: a line is written for every message on the caller's
/// path, and `format!` of a float costs several times the rest.
fn prefix(out: &mut Vec<u8>, dir: Dir) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    out.extend_from_slice(LINE_START);
    push_decimal(out, now.as_secs(), 1);
    out.push(b'.');
    push_decimal(out, u64::from(now.subsec_micros()), 6);
    out.extend_from_slice(match dir {
        Dir::Send => b",\"dir\":\"send\",",
        Dir::Recv => b",\"dir\":\"recv\",",
    });
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_decimal(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    while n > 0 || digits.len() - at < width {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn lines_are_json_objects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let t = Transcript::create(&path).unwrap();
        let mut lines = Vec::new();
        entry(&mut lines, Dir::Send, br#"{"execute":"query-status"}"#);
        entry(&mut lines, Dir::Recv, br#"{"return": {"running": false}}"#);
        t.append_after(&lines, || ());
        t.raw(Dir::Recv, "bad \"bytes\"\n");
        // Written soon by the writer thread, and at the latest when dropped.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap().lines().count() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "not written within 5 s"
            );
            std::thread::sleep(COALESCE);
        }
        let written_early = std::fs::read_to_string(&path).unwrap();
        t.raw(Dir::Send, "after");
        drop(t);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&written_early) && text.ends_with("\"after\"}\n"));
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["dir"], "send");
        assert_eq!(lines[0]["msg"]["execute"], "query-status");
        assert_eq!(lines[1]["dir"], "recv");
        assert_eq!(lines[1]["msg"]["return"]["running"], false);
        assert_eq!(lines[2]["raw"], "bad \"bytes\"\n");
        assert!(lines.iter().all(|l| l["time"].as_f64().unwrap() > 1.0e9));
    }

    #[test]
    fn decimals_are_padded() {
        let mut out = Vec::new();
        for (n, width) in [
            (0, 1),
            (7, 6),
            (123_456, 6),
            (1_796_494_270, 1),
            (u64::MAX, 1),
        ] {
            push_decimal(&mut out, n, width);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("0 000007 123456 1796494270 {} ", u64::MAX)
        );
    }
}
