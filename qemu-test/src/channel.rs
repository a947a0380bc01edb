//! The host end of a machine's data channel: a virtio-serial port that
//! carries bytes as they are between the test and an agent in the guest,
//! next to the serial console (which stays for what the guest prints).
//!
//! A machine gets one with [`Machine::set_data_channel`]: each launch then
//! adds a `virtio-serial-pci` device with a port named [`PORT_NAME`] on a
//! socketpair the machine owns (like the console's), and
//! [`Machine::data_channel`] hands out this handle for that launch. The
//! runner does it for the built-in Linux guests, whose agent
//! (`qemu-test-agent`) serves [`Shell`](crate::Shell) commands and file
//! copies over it; the Shell speaks the agent's protocol (`shell::agent`).
//! This module only moves bytes, with deadlines, and keeps what the
//! protocol needs to remember between operations of one launch.
//!
//! Nothing reads the channel in the background: the guest side is
//! flow-controlled (a guest write waits until the host reads; QEMU and its
//! other devices go on), and its user reads whenever it waits for an
//! answer.
//!
//! [`Machine::set_data_channel`]: crate::Machine::set_data_channel
//! [`Machine::data_channel`]: crate::Machine::data_channel

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::deadline::DeadlineCap;
use crate::os;

/// The name of the port in the guest
/// (`/sys/class/virtio-ports/vport*/name`).
pub const PORT_NAME: &str = "org.qemu-test.data";

/// A handle to the data channel of one launch of a machine. Cheap to
/// clone; all clones share the connection, and their users take turns
/// (one request and its answer at a time).
///
/// A machine without a data channel, or not running, hands out a detached
/// one ([`is_attached`](Self::is_attached) is false).
#[derive(Debug, Clone, Default)]
pub struct DataChannel {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    link: Mutex<Link>,
    log: Mutex<Option<File>>,
    started: Instant,
    cap: DeadlineCap,
}

/// Whether an agent answers on the channel (learned once per launch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Presence {
    /// Not asked yet.
    #[default]
    Unknown,
    /// An agent answered.
    Present,
    /// None answered while the guest's console shell did.
    Absent,
}

/// The connection and what its protocol remembers between operations.
#[derive(Debug)]
pub(crate) struct Link {
    stream: UnixStream,
    /// What was read: `buf[start..end]` is not consumed yet; the rest is
    /// room for the next read (`buf` is always initialized in full).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub(crate) presence: Presence,
    /// The byte stream is at a frame boundary both ways (false after an
    /// operation was cut short; the next one resynchronizes).
    pub(crate) synced: bool,
    /// Bytes of a frame whose write was cut short: the peer waits for
    /// them before it reads another frame.
    pub(crate) owed: usize,
    /// The last request id used.
    pub(crate) last_id: u32,
    /// A request that was stopped but did not report its end: the agent
    /// may still be busy with it.
    pub(crate) unfinished: Option<u32>,
    /// The peer closed its end (QEMU exited).
    pub(crate) closed: bool,
}

/// What [`Link::fill`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filled {
    /// New bytes are in `pending`.
    Data,
    /// The deadline passed first.
    Timeout,
    /// The peer closed its end.
    Closed,
}

/// The room a read gets at least.
const READ_ROOM: usize = 256 << 10;

impl DataChannel {
    /// A channel with nothing attached.
    pub(crate) fn detached() -> DataChannel {
        DataChannel::default()
    }

    /// Takes over our end of the socketpair; `log` gets a line per
    /// operation ([`note`](Self::note)).
    pub(crate) fn attach(
        stream: UnixStream,
        log: Option<File>,
        cap: DeadlineCap,
    ) -> io::Result<DataChannel> {
        stream.set_nonblocking(true)?;
        Ok(DataChannel {
            inner: Some(Arc::new(Inner {
                link: Mutex::new(Link {
                    stream,
                    buf: vec![0; READ_ROOM],
                    start: 0,
                    end: 0,
                    presence: Presence::Unknown,
                    synced: false,
                    owed: 0,
                    last_id: 0,
                    unfinished: None,
                    closed: false,
                }),
                log: Mutex::new(log),
                started: Instant::now(),
                cap,
            })),
        })
    }

    /// Whether this launch has a data channel.
    pub fn is_attached(&self) -> bool {
        self.inner.is_some()
    }

    /// The connection, for one operation at a time; `None` if detached.
    pub(crate) fn lock(&self) -> Option<MutexGuard<'_, Link>> {
        let inner = self.inner.as_ref()?;
        Some(inner.link.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `deadline`, or the machine's deadline if that comes first.
    pub(crate) fn capped(&self, deadline: Instant) -> Instant {
        match self.inner.as_ref().and_then(|i| i.cap.get()) {
            Some(cap) if cap < deadline => cap,
            _ => deadline,
        }
    }

    /// Appends `line` to the channel's log, after the seconds since launch.
    pub(crate) fn note(&self, line: &str) {
        let Some(inner) = &self.inner else { return };
        let mut log = inner.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = log.as_mut() {
            let at = inner.started.elapsed().as_secs_f64();
            if writeln!(file, "{at:9.3} {line}").is_err() {
                *log = None;
            }
        }
    }
}

impl Link {
    /// Forgets what is known of the agent: the next operation
    /// resynchronizes, and looks for an agent again if none answered.
    pub(crate) fn forget_agent(&mut self) {
        self.synced = false;
        if self.presence == Presence::Absent {
            self.presence = Presence::Unknown;
        }
    }

    /// A fresh request id (never 0, which HELLO uses).
    pub(crate) fn next_id(&mut self) -> u32 {
        self.last_id = self.last_id.wrapping_add(1).max(1);
        self.last_id
    }

    /// Waits until `deadline` for bytes and appends them to `pending`.
    pub(crate) fn fill(&mut self, deadline: Instant) -> io::Result<Filled> {
        if self.closed {
            return Ok(Filled::Closed);
        }
        loop {
            match self.read_now()? {
                Some(filled) => return Ok(filled),
                None => {
                    let ready = os::wait_io(&self.stream, false, deadline)?;
                    if !ready.readable {
                        return Ok(Filled::Timeout);
                    }
                }
            }
        }
    }

    /// The bytes read and not consumed yet.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks the first `n` pending bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Reads what is there without waiting (`None` if nothing).
    pub(crate) fn read_now(&mut self) -> io::Result<Option<Filled>> {
        self.make_room();
        let result = loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) => {
                self.closed = true;
                Ok(Some(Filled::Closed))
            }
            Ok(n) => {
                self.end += n;
                Ok(Some(Filled::Data))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes at least [`READ_ROOM`] bytes of room after the pending ones.
    fn make_room(&mut self) {
        if self.buf.len() - self.end >= READ_ROOM {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        (self.start, self.end) = (0, self.end - self.start);
        if self.buf.len() - self.end < READ_ROOM {
            self.buf.resize(self.end + READ_ROOM, 0);
        }
    }

    /// Writes all of `bytes` until `deadline`, reading whatever arrives
    /// meanwhile (so the peer never waits on us while we wait on it).
    /// Before the first byte, `stop` may look at what arrived and end the
    /// write ([`WriteEnd::Stopped`]).
    pub(crate) fn write(
        &mut self,
        bytes: &[u8],
        deadline: Instant,
        stop: &mut dyn FnMut(&Link) -> bool,
    ) -> io::Result<WriteEnd> {
        let mut done = 0;
        while done < bytes.len() {
            if self.closed {
                return Ok(WriteEnd::Closed(done));
            }
            match self.stream.write(&bytes[done..]) {
                Ok(n) => {
                    done += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    self.closed = true;
                    return Ok(WriteEnd::Closed(done));
                }
                Err(e) => return Err(e),
            }
            let ready = os::wait_io(&self.stream, true, deadline)?;
            if ready.readable && self.read_now()?.is_some() && done == 0 && stop(self) {
                return Ok(WriteEnd::Stopped);
            }
            if !ready.readable && !ready.writable {
                return Ok(WriteEnd::Timeout(done));
            }
        }
        Ok(WriteEnd::Done)
    }
}

/// How [`Link::write`] ended (with the bytes written, if not all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteEnd {
    /// Everything was written.
    Done,
    /// `stop` asked to stop; nothing was written.
    Stopped,
    /// The deadline passed.
    Timeout(usize),
    /// The peer closed its end.
    Closed(usize),
}
