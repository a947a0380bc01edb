//! The Shell's second transport: requests to the guest agent
//! (`qemu-test-agent`) over the machine's data channel, in the frames of
//! [`frame`](super::frame). One request at a time; every wait ends at its
//! deadline (already capped by the machine's), and fails at once if the
//! guest kernel panics or QEMU exits.
//!
//! The stream is resynchronized before the first request of a launch (a
//! restore included) and after any request cut short: a PING carrying a
//! random nonce, and everything before its PONG is dropped. A request that
//! overruns is stopped with KILL (SIGKILL to a command's process group; a
//! copy is cancelled), and its end awaited for a few seconds, so the next
//! request works at once.

use std::io::{self, Read, Write};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::frame::{self, Kind, HEADER, MAX_SEND};
use super::script::nonce;
use crate::channel::{DataChannel, Filled, Link, WriteEnd};
use crate::console::Console;
use crate::error::{ConsoleError, ShellError};

/// How long a stopped request gets to report its end.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How long a resynchronization waits for the agent's PONG.
const RESYNC_WAIT: Duration = Duration::from_secs(5);

/// How long a wait on the channel lasts before it looks at the console
/// for a kernel panic.
const PANIC_CHECK: Duration = Duration::from_millis(200);

/// What the console shows when the guest kernel panics.
const PANIC: &str = "Kernel panic - not syncing";

/// Why a request did not complete.
#[derive(Debug)]
pub(super) enum Fail {
    /// The deadline passed.
    Timeout,
    /// The channel closed: QEMU exited.
    Closed,
    /// The guest kernel panicked.
    Panic(ConsoleError),
    /// The agent broke the protocol, or refused the request.
    Protocol(String),
    /// The agent restarted (it said HELLO) while a request ran.
    Restarted,
    /// Reading or writing the data channel failed.
    Io(io::Error),
    /// Reading or writing the host file of a copy failed.
    Host(io::Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Io(e)
    }
}

/// A frame from the agent, its payload copied out.
pub(super) struct Frame {
    pub(super) kind: Kind,
    pub(super) id: u32,
    pub(super) payload: Vec<u8>,
}

/// An agent session: the channel, held for one operation.
pub(super) struct Session<'a> {
    pub(super) link: MutexGuard<'a, Link>,
    pub(super) channel: &'a DataChannel,
    console: &'a Console,
    /// The console had shown a crash before this operation.
    crashed_before: bool,
}

/// A PING sent, and the PONG that answers it.
pub(super) struct Ping {
    expected: Vec<u8>,
}

/// What the PONG says after the nonce: the agent's version, the largest
/// payload it takes, and the id of the request it still runs (0: none).
const PONG_TAIL: usize = 12;

impl<'a> Session<'a> {
    pub(super) fn new(
        link: MutexGuard<'a, Link>,
        channel: &'a DataChannel,
        console: &'a Console,
    ) -> Session<'a> {
        let crashed_before = console.crash().is_some();
        Session {
            link,
            channel,
            console,
            crashed_before,
        }
    }

    /// The last console lines (for errors).
    pub(super) fn tail(&self) -> String {
        self.console.tail(20)
    }

    /// Sends a PING with a fresh nonce (first paying what a cut-short
    /// frame still owes the agent).
    pub(super) fn ping(&mut self, deadline: Instant) -> Result<Ping, Fail> {
        self.pay_owed(deadline)?;
        let id = self.link.next_id();
        let payload = format!("{}{}", nonce(), nonce()).into_bytes();
        self.send(&frame::frame(Kind::Ping, id, &payload), deadline)?;
        let mut expected = frame::header(Kind::Pong, id, payload.len() + PONG_TAIL).to_vec();
        expected.extend_from_slice(&payload);
        Ok(Ping { expected })
    }

    /// Sends the rest of a frame whose write was cut short: the agent
    /// waits for it before it reads another frame. Zeros do: the request
    /// it belongs to was stopped, so what they say is dropped (and a
    /// request whose text holds a NUL is refused).
    fn pay_owed(&mut self, deadline: Instant) -> Result<(), Fail> {
        let owed = std::mem::take(&mut self.link.owed);
        if owed > 0 {
            self.send(&vec![0; owed], deadline)?;
        }
        Ok(())
    }

    /// Waits for `ping`'s PONG, dropping everything before it; `None` at
    /// the deadline, else (the stream is then in step) the id of the
    /// request the agent still runs (0: none).
    pub(super) fn await_pong(
        &mut self,
        ping: &Ping,
        deadline: Instant,
    ) -> Result<Option<u32>, Fail> {
        let whole = ping.expected.len() + PONG_TAIL;
        loop {
            let pending = self.link.pending();
            if let Some(at) = memchr::memmem::find(pending, &ping.expected) {
                if pending.len() >= at + whole {
                    let version = frame::u32_at(pending, at + ping.expected.len());
                    let busy = frame::u32_at(pending, at + ping.expected.len() + 8);
                    self.link.consume(at + whole);
                    self.link.synced = true;
                    if version != frame::VERSION {
                        return Err(Fail::Protocol(format!(
                            "the agent speaks protocol version {version}, this qemu-test speaks {}: \
                             rebuild the guest with this qemu-test's agent",
                            frame::VERSION
                        )));
                    }
                    return Ok(Some(busy));
                }
            } else {
                // Keep only what could be the start of the PONG.
                let keep = pending.len().min(whole - 1);
                let drop = pending.len() - keep;
                self.link.consume(drop);
            }
            match self.fill(deadline) {
                Ok(()) => {}
                Err(Fail::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes sure the agent is in step and idle before a request:
    /// resynchronizes after anything went wrong (or if it said something
    /// unasked, such as a HELLO after a restart), and stops a request left
    /// unfinished. Fails if the agent does not answer within
    /// [`RESYNC_WAIT`] (or `deadline`).
    pub(super) fn ensure_synced(&mut self, deadline: Instant) -> Result<(), Fail> {
        if self.link.synced && self.link.unfinished.is_none() {
            self.link.read_now()?;
            if self.link.pending().is_empty() {
                return Ok(());
            }
        }
        let deadline = deadline.min(Instant::now() + RESYNC_WAIT);
        let ping = self.ping(deadline)?;
        let Some(busy) = self.await_pong(&ping, deadline)? else {
            return Err(Fail::Protocol(format!(
                "does not answer (no PONG within {RESYNC_WAIT:?})"
            )));
        };
        self.link.unfinished = None;
        if busy != 0 && !self.stop(busy, &mut |_| {}) {
            return Err(Fail::Protocol(format!(
                "is still busy with an earlier request (#{busy}) that does not end when killed"
            )));
        }
        Ok(())
    }

    /// Reads more bytes, waiting until `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), Fail> {
        let deadline = self.channel.capped(deadline);
        loop {
            let slice = deadline.min(Instant::now() + PANIC_CHECK);
            match self.link.fill(slice)? {
                Filled::Data => return Ok(()),
                Filled::Closed => return Err(Fail::Closed),
                Filled::Timeout => {}
            }
            self.check_panic()?;
            if Instant::now() >= deadline {
                return Err(Fail::Timeout);
            }
        }
    }

    /// Fails if the guest kernel panicked during this operation.
    fn check_panic(&self) -> Result<(), Fail> {
        if self.crashed_before {
            return Ok(());
        }
        match self.console.crash() {
            Some(crash) if crash.line.contains(PANIC) => Err(Fail::Panic(ConsoleError::Failure {
                pattern: PANIC.into(),
                expected: "the guest agent's answer".into(),
                tail: self.console.tail(20),
            })),
            _ => Ok(()),
        }
    }

    /// The next frame, waiting until `deadline`.
    pub(super) fn recv(&mut self, deadline: Instant) -> Result<Frame, Fail> {
        loop {
            match frame::parse(self.link.pending()) {
                Ok(Some(f)) => {
                    let payload = self.link.pending()[f.payload.clone()].to_vec();
                    self.link.consume(f.payload.end);
                    return Ok(Frame {
                        kind: f.kind,
                        id: f.id,
                        payload,
                    });
                }
                Ok(None) => self.fill(deadline)?,
                Err(e) => {
                    self.link.synced = false;
                    return Err(Fail::Protocol(format!("sent garbled data ({e})")));
                }
            }
        }
    }

    /// Writes `bytes` (whole frames), reading what arrives meanwhile. A
    /// write cut short leaves the stream out of step (the rest is owed).
    pub(super) fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), Fail> {
        self.send_until(bytes, deadline, &mut |_| false).map(|_| ())
    }

    /// Like [`send`](Self::send); before the first byte goes, `stop` may
    /// look at what arrived and cancel the write (false then).
    fn send_until(
        &mut self,
        bytes: &[u8],
        deadline: Instant,
        stop: &mut dyn FnMut(&Link) -> bool,
    ) -> Result<bool, Fail> {
        let deadline = self.channel.capped(deadline);
        let (written, fail) = match self.link.write(bytes, deadline, stop)? {
            WriteEnd::Done => return Ok(true),
            WriteEnd::Stopped => return Ok(false),
            WriteEnd::Timeout(n) => (n, Fail::Timeout),
            WriteEnd::Closed(n) => (n, Fail::Closed),
        };
        if written > 0 {
            self.link.owed = bytes.len() - written;
            self.link.synced = false;
        }
        Err(fail)
    }

    /// Stops request `id` (KILL) and waits a little for its last frame
    /// (EXIT or END), passing the frames before it to `sink`. True if the
    /// request ended; else the stream is left to be resynchronized.
    pub(super) fn stop(&mut self, id: u32, sink: &mut dyn FnMut(Frame)) -> bool {
        let grace = self.channel.capped(Instant::now() + STOP_GRACE);
        let kill = frame::frame(Kind::Kill, id, &9u32.to_le_bytes());
        let sent = self.pay_owed(grace).and_then(|()| self.send(&kill, grace));
        if sent.is_ok() {
            loop {
                match self.recv_for(id, grace) {
                    Ok(f) if matches!(f.kind, Kind::Exit | Kind::End | Kind::Error) => {
                        sink(f);
                        return true;
                    }
                    Ok(f) => sink(f),
                    // Restarted: nothing runs any more.
                    Err(Fail::Restarted) => return true,
                    Err(_) => break,
                }
            }
        }
        self.link.synced = false;
        self.link.unfinished = Some(id);
        false
    }

    /// The next frame for request `id`, dropping others (late frames of
    /// an earlier request); a HELLO means the agent restarted and `id` is
    /// lost.
    pub(super) fn recv_for(&mut self, id: u32, deadline: Instant) -> Result<Frame, Fail> {
        loop {
            let f = self.recv(deadline)?;
            match f.kind {
                Kind::Hello => {
                    self.link.synced = false;
                    return Err(Fail::Restarted);
                }
                _ if f.id == id => return Ok(f),
                _ => {}
            }
        }
    }

    /// Writes `len` bytes from `source` to the guest file `path` as
    /// request `id` (PUT, DATA frames, END) and returns the agent's last
    /// frame: END, or ERROR. Stops sending early if the agent ends the
    /// request (an error in the guest).
    pub(super) fn put(
        &mut self,
        id: u32,
        path: &str,
        source: &mut dyn Read,
        len: u64,
        deadline: Instant,
    ) -> Result<Frame, Fail> {
        let mut request = 0u32.to_le_bytes().to_vec();
        request.extend_from_slice(path.as_bytes());
        self.send(&frame::frame(Kind::Put, id, &request), deadline)?;
        let mut chunk = vec![0u8; HEADER + MAX_SEND];
        let mut left = len;
        while left > 0 {
            let n = left.min(MAX_SEND as u64) as usize;
            chunk[..HEADER].copy_from_slice(&frame::header(Kind::Data, id, n));
            // A host file that ends early: the frame is announced only
            // once its bytes are here.
            source
                .read_exact(&mut chunk[HEADER..HEADER + n])
                .map_err(Fail::Host)?;
            let mut stop = |link: &Link| answered(link.pending(), id);
            if answered(self.link.pending(), id)
                || !self.send_until(&chunk[..HEADER + n], deadline, &mut stop)?
            {
                return self.recv_for(id, deadline);
            }
            left -= n as u64;
        }
        self.send(&frame::frame(Kind::End, id, &[]), deadline)?;
        self.recv_for(id, deadline)
    }

    /// Reads the guest file `path` as request `id` into `sink`; returns
    /// the agent's last frame: END, or ERROR.
    pub(super) fn get(
        &mut self,
        id: u32,
        path: &str,
        sink: &mut dyn Write,
        deadline: Instant,
    ) -> Result<Frame, Fail> {
        self.send(&frame::frame(Kind::Get, id, path.as_bytes()), deadline)?;
        loop {
            let f = self.recv_for(id, deadline)?;
            if f.kind != Kind::Data {
                return Ok(f);
            }
            sink.write_all(&f.payload).map_err(Fail::Host)?;
        }
    }
}

/// Whether an END or ERROR for request `id` is among the complete frames
/// in `pending` (the agent gave up on a PUT).
fn answered(mut pending: &[u8], id: u32) -> bool {
    while let Ok(Some(f)) = frame::parse(pending) {
        if f.id == id && matches!(f.kind, Kind::End | Kind::Error) {
            return true;
        }
        pending = &pending[f.payload.end..];
    }
    false
}
/// An END frame's result: the guest's errno (0: done) and byte count.
pub(super) fn end_result(payload: &[u8]) -> Result<(u32, u64), Fail> {
    if payload.len() != 12 {
        return Err(Fail::Protocol(format!(
            "sent an END of {} bytes",
            payload.len()
        )));
    }
    Ok((frame::u32_at(payload, 0), frame::u64_at(payload, 4)))
}

/// The exit status the shell would report for a raw wait status: the
/// code, or 128 + the signal.
pub(super) fn exit_status(wait_status: u32) -> i32 {
    let signal = wait_status & 0x7f;
    if signal == 0 {
        ((wait_status >> 8) & 0xff) as i32
    } else {
        128 + signal as i32
    }
}

/// An error text from the guest's errno.
pub(super) fn errno_text(errno: u32) -> String {
    io::Error::from_raw_os_error(errno as i32).to_string()
}

/// Maps a failure of an operation on `what` to the Shell's error.
pub(super) fn shell_error(fail: Fail, what: &str, tail: String) -> ShellError {
    match fail {
        Fail::Timeout => ShellError::Agent {
            what: what.to_string(),
            reason: "the deadline passed".into(),
            tail,
        },
        Fail::Closed => ShellError::Agent {
            what: what.to_string(),
            reason: "the data channel closed: QEMU exited".into(),
            tail,
        },
        Fail::Panic(e) => ShellError::Console(e),
        Fail::Protocol(reason) => ShellError::Agent {
            what: what.to_string(),
            reason: format!("the guest agent {reason}"),
            tail,
        },
        Fail::Restarted => ShellError::Agent {
            what: what.to_string(),
            reason: "the guest agent restarted (it said HELLO) while the request ran, which may \
                     or may not have been carried out"
                .into(),
            tail,
        },
        Fail::Io(e) => ShellError::Agent {
            what: what.to_string(),
            reason: format!("reading or writing the data channel failed: {e}"),
            tail,
        },
        Fail::Host(e) => ShellError::Agent {
            what: what.to_string(),
            reason: format!("reading or writing the host file failed: {e}"),
            tail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_become_shell_statuses() {
        assert_eq!(exit_status(0), 0);
        assert_eq!(exit_status(3 << 8), 3);
        assert_eq!(exit_status(255 << 8), 255);
        assert_eq!(exit_status(9), 137);
        assert_eq!(
            exit_status(15 | 0x80),
            143,
            "a core dump flag is not the signal"
        );
    }
}
