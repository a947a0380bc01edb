//! The QMP wire protocol and a synchronous client.
//!
//! [`QmpClient`] owns one connection to QEMU's monitor. One reader thread
//! parses every incoming message, hands command replies (matched by `id`)
//! to the waiting caller and queues events; callers wait on a condition
//! variable with a real deadline. Every message both ways can be recorded
//! in a transcript (`qmp.jsonl`).
//!
//! Most users reach QMP through [`Machine::qmp`](crate::Machine::qmp) and
//! [`Machine::command`](crate::Machine::command); the client is public for
//! talking to a QEMU started some other way.
//!
//! ```no_run
//! use qemu_test::qmp::QmpClient;
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//!
//! let stream = UnixStream::connect("/tmp/qmp.sock")?;
//! let qmp = QmpClient::connect(stream.into(), Duration::from_secs(5), None)?;
//! let status = qmp.command("query-status", serde_json::json!({}))?;
//! println!("running: {}", status["running"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod log;
mod wire;

pub use wire::MAX_MESSAGE_SIZE;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::deadline::DeadlineCap;
use crate::error::{Error, QmpError};
pub(crate) use log::{Dir, Transcript};
use wire::Frame;

/// The most events kept unread; older ones are dropped (and counted in
/// [`QmpClient::dropped_events`]) so a flood cannot exhaust memory.
pub const MAX_QUEUED_EVENTS: usize = 65_536;

/// A connected byte stream to a QMP monitor.
#[derive(Debug)]
pub enum Stream {
    /// A Unix socket (socketpair or path); supports fd passing.
    Unix(UnixStream),
    /// A TCP connection.
    Tcp(TcpStream),
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Self {
        Stream::Unix(s)
    }
}
impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Tcp(s)
    }
}

impl Stream {
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }
    fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

/// What the reader thread shares with callers.
#[derive(Debug, Default)]
struct State {
    greeting: Option<Value>,
    /// Ids of commands whose callers are waiting.
    waiting: HashSet<String>,
    /// Replies that arrived for waiting ids.
    replies: HashMap<String, Value>,
    events: VecDeque<Value>,
    dropped_events: u64,
    /// Replies nobody waited for (unknown or missing id).
    stray_replies: u64,
    /// Set once the connection is over; the reason, if it failed.
    closed: Option<Option<QmpError>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A synchronous QMP client with one reader thread.
#[derive(Debug)]
pub struct QmpClient {
    writer: Mutex<Stream>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    next_id: AtomicU64,
    timeout: Duration,
    cap: DeadlineCap,
    transcript: Option<Arc<Transcript>>,
}

impl QmpClient {
    /// Takes over a connected stream: starts the reader thread, waits for
    /// the greeting and negotiates capabilities, each within `timeout`.
    /// `transcript`, if given, is a file every message is appended to.
    pub fn connect(
        stream: Stream,
        timeout: Duration,
        transcript: Option<&Path>,
    ) -> Result<Self, QmpError> {
        let transcript = match transcript {
            Some(path) => Some(Arc::new(Transcript::create(path).map_err(|source| {
                QmpError::Io {
                    context: format!("creating the QMP transcript {}", path.display()),
                    source,
                }
            })?)),
            None => None,
        };
        Self::connect_with(stream, timeout, transcript, DeadlineCap::default())
    }

    pub(crate) fn connect_with(
        stream: Stream,
        timeout: Duration,
        transcript: Option<Arc<Transcript>>,
        cap: DeadlineCap,
    ) -> Result<Self, QmpError> {
        let io_err = |context: &str| {
            let context = context.to_string();
            move |source| QmpError::Io { context, source }
        };
        stream
            .set_write_timeout(Some(timeout))
            .map_err(io_err("setting the write timeout"))?;
        let read_half = stream
            .try_clone()
            .map_err(io_err("cloning the QMP socket"))?;
        let shared = Arc::new(Shared::default());
        let reader = {
            let shared = Arc::clone(&shared);
            let transcript = transcript.clone();
            thread::Builder::new()
                .name("qemu-test-qmp".into())
                .spawn(move || read_loop(read_half, &shared, transcript.as_deref()))
                .map_err(io_err("starting the QMP reader thread"))?
        };
        let mut client = QmpClient {
            writer: Mutex::new(stream),
            shared,
            reader: Some(reader),
            next_id: AtomicU64::new(1),
            timeout,
            cap,
            transcript,
        };
        client.handshake()?;
        Ok(client)
    }

    fn handshake(&mut self) -> Result<(), QmpError> {
        let (deadline, timeout) = self.cap.after(self.timeout);
        let mut state = self.shared.lock();
        loop {
            if let Some(greeting) = &state.greeting {
                if greeting.get("QMP").is_none() {
                    return Err(QmpError::Greeting(format!(
                        "expected {{\"QMP\": ...}}, got {greeting}"
                    )));
                }
                break;
            }
            if let Some(reason) = &state.closed {
                return Err(match reason {
                    Some(e) => QmpError::Greeting(e.to_string()),
                    None => QmpError::Greeting("connection closed before the greeting".into()),
                });
            }
            state = self.wait(state, deadline).ok_or(QmpError::Timeout {
                command: "greeting".into(),
                timeout,
            })?;
        }
        drop(state);
        match self.qmp_raw(
            "qmp_capabilities",
            Value::Object(Map::new()),
            self.timeout,
            true,
        ) {
            Ok(reply) if reply.get("return").is_some() => Ok(()),
            Ok(reply) => Err(QmpError::Negotiate(reply.to_string())),
            Err(e) => Err(QmpError::Negotiate(e.to_string())),
        }
    }

    /// The greeting QEMU sent (`{"QMP": {"version": ..., "capabilities": ...}}`).
    pub fn greeting(&self) -> Value {
        self.shared.lock().greeting.clone().unwrap_or(Value::Null)
    }

    /// The default timeout of commands.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `cmd` with `args` and returns QEMU's whole reply (with
    /// `return` or `error`). `args` may be `null` or `{}` for none.
    pub fn qmp(&self, cmd: &str, args: Value) -> Result<Value, QmpError> {
        self.qmp_raw(cmd, args, self.timeout, true)
    }

    /// Like [`qmp`](Self::qmp) with an explicit timeout.
    pub fn qmp_timeout(
        &self,
        cmd: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        self.qmp_raw(cmd, args, timeout, true)
    }

    /// Like [`qmp_timeout`](Self::qmp_timeout), ignoring the machine's
    /// deadline cap: teardown must get its own time even after a test ran
    /// out of its.
    pub(crate) fn qmp_uncapped(
        &self,
        cmd: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        self.qmp_raw(cmd, args, timeout, false)
    }

    /// Sends `cmd` and returns the `return` value, or `Error::Qmp` with
    /// QEMU's error class and description.
    pub fn command(&self, cmd: &str, args: Value) -> Result<Value, Error> {
        let reply = self.qmp(cmd, args)?;
        reply_to_result(cmd, reply)
    }

    fn qmp_raw(
        &self,
        cmd: &str,
        args: Value,
        timeout: Duration,
        capped: bool,
    ) -> Result<Value, QmpError> {
        let id = format!("qt-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut msg = Map::new();
        msg.insert("execute".into(), Value::String(cmd.into()));
        match args {
            Value::Null => {}
            Value::Object(ref m) if m.is_empty() => {}
            args @ Value::Object(_) => {
                msg.insert("arguments".into(), args);
            }
            other => {
                return Err(QmpError::Io {
                    context: format!("sending `{cmd}`"),
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("QMP arguments must be a JSON object, got {other}"),
                    ),
                })
            }
        }
        msg.insert("id".into(), Value::String(id.clone()));
        let msg = Value::Object(msg);

        let (deadline, timeout) = if capped {
            self.cap.after(timeout)
        } else {
            DeadlineCap::default().after(timeout)
        };
        {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.closed {
                return Err(closed_error(reason));
            }
            state.waiting.insert(id.clone());
        }
        if let Err(e) = self.send(&msg) {
            self.shared.lock().waiting.remove(&id);
            return Err(e);
        }
        let mut state = self.shared.lock();
        loop {
            if let Some(reply) = state.replies.remove(&id) {
                state.waiting.remove(&id);
                return Ok(reply);
            }
            if let Some(reason) = &state.closed {
                let err = closed_error(reason);
                state.waiting.remove(&id);
                return Err(err);
            }
            match self.wait(state, deadline) {
                Some(s) => state = s,
                None => {
                    self.shared.lock().waiting.remove(&id);
                    return Err(QmpError::Timeout {
                        command: cmd.into(),
                        timeout,
                    });
                }
            }
        }
    }

    fn send(&self, msg: &Value) -> Result<(), QmpError> {
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(b'\n');
        if let Some(t) = &self.transcript {
            t.message(Dir::Send, msg);
        }
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.write_all(&bytes).map_err(|source| QmpError::Io {
            context: format!("sending {}", msg.get("execute").unwrap_or(&Value::Null)),
            source,
        })
    }

    /// Waits on the condition variable until notified or the deadline
    /// passes; `None` once the deadline has passed.
    fn wait<'a>(
        &'a self,
        state: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> Option<MutexGuard<'a, State>> {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())?;
        let (state, _) = self
            .shared
            .cond
            .wait_timeout(state, left)
            .unwrap_or_else(|e| e.into_inner());
        Some(state)
    }

    /// Sends `fd` to QEMU with `SCM_RIGHTS` (with a single space as the
    /// payload, which QEMU's JSON parser ignores). A following `getfd` or
    /// `add-fd` command picks it up. Only over a Unix socket.
    pub fn send_fd_scm(&self, fd: BorrowedFd<'_>) -> Result<(), QmpError> {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Stream::Unix(sock) = &*writer else {
            return Err(QmpError::Io {
                context: "passing a file descriptor".into(),
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "fd passing needs a Unix-socket QMP monitor",
                ),
            });
        };
        let fds = [fd];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        sendmsg(
            sock,
            &[io::IoSlice::new(b" ")],
            &mut control,
            SendFlags::empty(),
        )
        .map_err(|e| QmpError::Io {
            context: "passing a file descriptor with SCM_RIGHTS".into(),
            source: e.into(),
        })?;
        if let Some(t) = &self.transcript {
            t.raw(
                Dir::Send,
                &format!("SCM_RIGHTS fd {}", std::os::fd::AsRawFd::as_raw_fd(&fd)),
            );
        }
        Ok(())
    }

    /// Takes the oldest queued event, waiting as `wait` says.
    pub fn pull_event(&self, wait: crate::events::Wait) -> Result<Option<Value>, QmpError> {
        let deadline = wait.deadline(&self.cap);
        let mut state = self.shared.lock();
        loop {
            if let Some(event) = state.events.pop_front() {
                return Ok(Some(event));
            }
            if let Some(reason) = &state.closed {
                return match reason {
                    None => Ok(None),
                    Some(_) => Err(closed_error(reason)),
                };
            }
            match deadline {
                Some(d) => match self.wait(state, d) {
                    Some(s) => state = s,
                    None => return Ok(None),
                },
                None if wait.is_no_wait() => return Ok(None),
                None => {
                    state = self
                        .shared
                        .cond
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner())
                }
            }
        }
    }

    /// Takes all queued events; if none are queued, first waits for one as
    /// `wait` says.
    pub fn get_events(&self, wait: crate::events::Wait) -> Result<Vec<Value>, QmpError> {
        let mut events: Vec<Value> = {
            let mut state = self.shared.lock();
            state.events.drain(..).collect()
        };
        if events.is_empty() && !wait.is_no_wait() {
            if let Some(event) = self.pull_event(wait)? {
                events.push(event);
                events.extend(self.shared.lock().events.drain(..));
            }
        }
        Ok(events)
    }

    /// Drops every queued event.
    pub fn clear_events(&self) {
        self.shared.lock().events.clear();
    }

    /// How many events were dropped because more than
    /// [`MAX_QUEUED_EVENTS`] were waiting unread.
    pub fn dropped_events(&self) -> u64 {
        self.shared.lock().dropped_events
    }

    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().closed.is_none()
    }

    pub(crate) fn cap(&self) -> &DeadlineCap {
        &self.cap
    }
}

impl Drop for QmpClient {
    fn drop(&mut self) {
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn closed_error(reason: &Option<QmpError>) -> QmpError {
    QmpError::Closed {
        reason: reason.as_ref().map(|e| e.to_string()),
    }
}

/// Turns a reply into the `return` value or an `Error::Qmp`.
pub(crate) fn reply_to_result(cmd: &str, reply: Value) -> Result<Value, Error> {
    if let Some(err) = reply.get("error") {
        let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Err(Error::Qmp {
            command: cmd.into(),
            class: field("class"),
            desc: field("desc"),
        });
    }
    match reply {
        Value::Object(mut m) => match m.remove("return") {
            Some(ret) => Ok(ret),
            None => Err(QmpError::Malformed {
                reason: "reply has neither `return` nor `error`".into(),
                excerpt: Value::Object(m).to_string(),
            }
            .into()),
        },
        other => Err(QmpError::Malformed {
            reason: "reply is not an object".into(),
            excerpt: other.to_string(),
        }
        .into()),
    }
}

/// Converts `_` to `-` in the top-level keys of `args`, like the seed's
/// `conv_keys` (so Rust-friendly names become QMP names).
///
/// ```
/// use qemu_test::qmp::conv_keys;
/// use serde_json::json;
///
/// assert_eq!(conv_keys(json!({"node_name": "a", "x": {"b_c": 1}})),
///            json!({"node-name": "a", "x": {"b_c": 1}}));
/// ```
pub fn conv_keys(args: Value) -> Value {
    match args {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.replace('_', "-"), v))
                .collect(),
        ),
        other => other,
    }
}

fn read_loop(stream: Stream, shared: &Shared, transcript: Option<&Transcript>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let outcome = loop {
        match wire::read_message(&mut reader, MAX_MESSAGE_SIZE) {
            Ok(Frame::Eof) => break None,
            Ok(Frame::Message(msg)) => {
                let msg = Value::Object(msg);
                if let Some(t) = transcript {
                    t.message(Dir::Recv, &msg);
                }
                route(shared, msg);
            }
            Err(e) => {
                if let Some(t) = transcript {
                    t.raw(Dir::Recv, &e.to_string());
                }
                break Some(e);
            }
        }
    };
    let mut state = shared.lock();
    state.closed = Some(outcome);
    drop(state);
    shared.cond.notify_all();
}

fn route(shared: &Shared, msg: Value) {
    let mut state = shared.lock();
    if state.greeting.is_none() {
        state.greeting = Some(msg);
    } else if msg.get("event").is_some() {
        if state.events.len() >= MAX_QUEUED_EVENTS {
            state.events.pop_front();
            state.dropped_events += 1;
        }
        state.events.push_back(msg);
    } else {
        let id = msg.get("id").and_then(Value::as_str).map(str::to_string);
        match id {
            Some(id) if state.waiting.contains(&id) => {
                state.replies.insert(id, msg);
            }
            // A reply nobody waits for: a late one, or a broken peer's.
            _ => state.stray_replies += 1,
        }
    }
    drop(state);
    shared.cond.notify_all();
}
