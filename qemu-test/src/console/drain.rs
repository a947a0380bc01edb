//! The drain thread: everything the guest prints, into memory and the
//! console log, for as long as QEMU lives.
//!
//! QEMU writes the console a byte at a time (one `write` per byte the
//! guest's UART sends), and a reader waiting on the pipe is woken by each:
//! QEMU pays for that wake-up, which made a flood several times slower
//! than into a plain file. So while output streams (more than
//! [`STREAMING`] bytes within [`WINDOW`]) the thread naps [`NAP`] between
//! reads and then takes what gathered meanwhile in one read; QEMU's
//! writes in between wake nobody. A trickle (a prompt, a line of output)
//! is read as it comes, so waits see it at once. The pipe holds 64 KiB, a
//! good many naps' worth even at full speed, and the nap never stops the
//! draining: QEMU blocks on a full pipe, and a console QEMU cannot write
//! to stops the whole machine.
//!
//! The thread ends at end of file (QEMU and everything that inherited the
//! console are gone) or when told to stop, after reading what is left.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::Inner;

/// Output of more than this many bytes within [`WINDOW`] is a stream.
pub(super) const STREAMING: usize = 512;
/// See [`STREAMING`].
pub(super) const WINDOW: Duration = Duration::from_millis(1);
/// How long the thread waits between reads while output streams.
pub(super) const NAP: Duration = Duration::from_millis(1);

/// What the thread reads: QEMU's end of the console.
#[derive(Debug)]
pub(crate) enum Source {
    /// A socket both ways (a socketpair end).
    Socket(UnixStream),
    /// The read end of QEMU's stdout, non-blocking.
    Pipe(File),
}

impl Source {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Source::Socket(s) => s.as_fd(),
            Source::Pipe(f) => f.as_fd(),
        }
    }

    /// Reads what is there without waiting (`WouldBlock` if nothing).
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Socket(s) => crate::os::recv_now(&*s, buf),
            Source::Pipe(f) => f.read(buf),
        }
    }
}

/// How much output came lately: whether it streams.
struct Rate {
    since: Instant,
    bytes: usize,
}

impl Rate {
    /// Counts `n` new bytes; whether output streams.
    fn streaming(&mut self, n: usize) -> bool {
        let now = Instant::now();
        if now.duration_since(self.since) > WINDOW {
            self.since = now;
            self.bytes = 0;
        }
        self.bytes += n;
        self.bytes > STREAMING
    }
}

/// Drains `source` into `inner` and `log` until end of file, an error, or
/// `stop` becoming readable (its write end closed).
pub(super) fn run(mut source: Source, stop: File, mut log: Option<File>, inner: &Inner) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut rate = Rate {
        since: Instant::now(),
        bytes: 0,
    };
    while let Ok(ready) = crate::os::poll_readable(&[source.fd(), stop.as_fd()], None) {
        let (read, ended) = read_available(&mut source, &mut chunk, &mut log, inner);
        if ended || ready.contains(&1) {
            break;
        }
        if rate.streaming(read) {
            std::thread::sleep(NAP);
        }
    }
    inner.lock().closed = true;
    inner.cond.notify_all();
}

/// Reads until nothing is left for now; how many bytes, and whether the
/// source ended.
fn read_available(
    source: &mut Source,
    chunk: &mut [u8],
    log: &mut Option<File>,
    inner: &Inner,
) -> (usize, bool) {
    let mut total = 0;
    loop {
        match source.read_now(chunk) {
            Ok(0) => return (total, true),
            Ok(n) => {
                deliver(&chunk[..n], log, inner);
                total += n;
                if n < chunk.len() {
                    return (total, false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (total, false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (total, true),
        }
    }
}

/// Keeps `bytes`: the log, memory (waking waiters), the crash watch.
fn deliver(bytes: &[u8], log: &mut Option<File>, inner: &Inner) {
    if let Some(f) = log.as_mut() {
        if f.write_all(bytes).is_err() {
            *log = None;
        }
    }
    let offset = {
        let mut buf = inner.lock();
        let offset = buf.data.len();
        buf.data.extend_from_slice(bytes);
        offset
    };
    inner.cond.notify_all();
    let crashed = inner
        .crash
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .feed(bytes, offset);
    if let Some((crash, hooks)) = crashed {
        for hook in hooks {
            hook(crash.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickle_is_not_a_stream() {
        let mut rate = Rate {
            since: Instant::now(),
            bytes: 0,
        };
        assert!(!rate.streaming(100));
        assert!(!rate.streaming(STREAMING - 100));
        assert!(rate.streaming(1), "more than STREAMING within WINDOW");
        std::thread::sleep(WINDOW * 2);
        assert!(!rate.streaming(10), "a new window");
    }
}
