//! The QMP wire protocol and a synchronous client.
//!
//! [`QmpClient`] owns one connection to QEMU's monitor. Incoming messages
//! are parsed and routed, replies to their callers and events into a
//! queue, by whoever reads: a caller waiting for its reply reads the
//! socket itself when it can, and one reader thread reads whenever no
//! caller does (see `read.rs`). Every wait has a real deadline. Every
//! message both ways can be recorded in a transcript (`qmp.jsonl`).
//!
//! A command is sent without an `id` when no other command is in flight
//! (the usual case: each caller is synchronous), because QEMU answers such
//! a command sooner; its reply is the one reply without an `id`. Commands
//! sent while another is in flight (the client is `Sync`) carry an `id`
//! and are matched by it. Replies that fit no waiting command are counted
//! ([`QmpClient::stray_replies`]), never handed to the wrong caller.
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
mod read;
mod wait;
mod wire;

pub(crate) use wait::EventCache;
pub use wait::Wait;
pub use wire::MAX_MESSAGE_SIZE;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
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
use crate::timeline::{self, Timeline};
pub(crate) use log::{Dir, Transcript};
use read::{NoReply, ReadSide};

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

/// Told about every event of one name as it is routed (before any caller
/// reads it; it stays queued). Runs under the client's lock: it must not
/// call the client.
pub(crate) type EventHook = Box<dyn Fn(&Value) + Send>;

/// The hooks of [`QmpClient::on_event`], by event name.
#[derive(Default)]
struct Hooks(Vec<(String, EventHook)>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_tuple("Hooks").field(&names).finish()
    }
}

/// What the reader thread shares with callers.
#[derive(Debug, Default)]
struct State {
    hooks: Hooks,
    greeting: Option<Value>,
    /// Ids of commands whose callers are waiting.
    waiting: HashSet<String>,
    /// Replies that arrived for waiting ids.
    replies: HashMap<String, Value>,
    /// The command sent without an `id`, if any.
    bare: Bare,
    events: VecDeque<Value>,
    dropped_events: u64,
    /// Replies nobody waited for (unknown id, or no id and no command
    /// without one in flight).
    stray_replies: u64,
    /// Set once the connection is over; the reason, if it failed.
    closed: Option<Option<QmpError>>,
    /// Threads waiting on [`Shared::cond`].
    waiters: usize,
    /// Whether the reader thread is standing aside (see [`read`]).
    reader_parked: bool,
}

/// The slot of the one command that may be in flight without an `id`.
///
/// QEMU answers a command that carries an `id` measurably slower (tens of
/// microseconds in 7.2) than one without, and a synchronous caller almost
/// always has a single command in flight. So a command goes out bare when
/// the slot is free and no other command is waiting; otherwise it gets an
/// id. A reply without an `id` then belongs to the bare command, and to
/// nothing else: there is never more than one bare command in flight, and
/// a bare command abandoned by its caller keeps the slot until its late
/// reply arrives, so that reply cannot be taken for the next one's.
/// (QEMU also answers without an `id` a command it cannot parse at all.
/// The client sends only JSON it wrote itself, which QEMU parses unless it
/// breaks QEMU's size or nesting limits; only such a command, sent while a
/// bare one is in flight, could have its error taken for the bare one's.)
#[derive(Debug, Default)]
enum Bare {
    /// No bare command in flight: the next command may go bare.
    #[default]
    Free,
    /// A bare command's caller waits for its reply.
    Waiting,
    /// Its reply, for the caller to take.
    Replied(Value),
    /// Its caller gave up (timeout or failed send); its reply, when it
    /// comes, is stray and frees the slot.
    Abandoned,
}

/// How a command in flight is told apart from the others.
#[derive(Debug)]
enum Ticket {
    /// It was sent without an `id`; see [`Bare`].
    Bare,
    /// It carries this `id`.
    Id(String),
}

/// The state and the two ways of waiting for it to change.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Callers waiting for a reply, an event, the greeting or the framer.
    cond: Condvar,
    /// The reader thread standing aside while a caller reads (see
    /// [`read`]).
    park: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits on [`cond`](Self::cond) until notified or `deadline` (`None`:
    /// no deadline); `Err`, still holding the lock, once it has passed.
    /// A waiter needs a reader, so a parked reader thread is woken first.
    fn wait<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'a, State>, MutexGuard<'a, State>> {
        let left = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(state),
            },
        };
        if state.reader_parked {
            self.park.notify_one();
        }
        state.waiters += 1;
        let mut state = match left {
            Some(left) => {
                self.cond
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => self.cond.wait(state).unwrap_or_else(|e| e.into_inner()),
        };
        state.waiters -= 1;
        Ok(state)
    }

    /// Releases `state` and wakes everyone waiting on
    /// [`cond`](Self::cond), if anyone is (a lone caller reading its own
    /// reply so makes no system call). Once the connection is over, the
    /// reader thread too.
    fn notify(&self, state: MutexGuard<'_, State>) {
        let (waiters, closed) = (state.waiters > 0, state.closed.is_some());
        drop(state);
        if waiters {
            self.cond.notify_all();
        }
        if closed {
            self.park.notify_all();
        }
    }
}

/// The write half of the connection, with buffers kept from one command
/// to the next.
#[derive(Debug)]
struct Writer {
    stream: Stream,
    /// The command being sent.
    command: Vec<u8>,
    /// Its transcript line.
    line: Vec<u8>,
}

/// A synchronous QMP client: callers read their own replies, one reader
/// thread the rest.
#[derive(Debug)]
pub struct QmpClient {
    writer: Mutex<Writer>,
    shared: Arc<Shared>,
    read: Arc<ReadSide>,
    reader: Option<JoinHandle<()>>,
    next_id: AtomicU64,
    timeout: Duration,
    cap: DeadlineCap,
    transcript: Option<Arc<Transcript>>,
    /// Where each command is recorded (nowhere by default).
    timeline: Timeline,
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
        let read = Arc::new(ReadSide::new(read_half));
        let reader = {
            let shared = Arc::clone(&shared);
            let read = Arc::clone(&read);
            let transcript = transcript.clone();
            thread::Builder::new()
                .name("qemu-test-qmp".into())
                .spawn(move || read.run(&shared, transcript.as_deref()))
                .map_err(io_err("starting the QMP reader thread"))?
        };
        let mut client = QmpClient {
            writer: Mutex::new(Writer {
                stream,
                command: Vec::with_capacity(256),
                line: Vec::with_capacity(256),
            }),
            shared,
            read,
            reader: Some(reader),
            next_id: AtomicU64::new(1),
            timeout,
            cap,
            transcript,
            timeline: Timeline::default(),
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
            state = self
                .shared
                .wait(state, Some(deadline))
                .map_err(|_| QmpError::Timeout {
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

    /// Records each command from now on in `timeline`.
    pub(crate) fn set_timeline(&mut self, timeline: Timeline) {
        self.timeline = timeline;
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
        let started = Instant::now();
        let reply = self.exchange(cmd, args, timeout, capped);
        // The name and the outcome: the transcript has the messages.
        self.timeline.step("qmp", started, || {
            let outcome = match &reply {
                Ok(reply) => match reply.get("error") {
                    None => return timeline::detail([("command", cmd.into())]),
                    Some(error) => error.get("class").cloned().unwrap_or(Value::Null),
                },
                Err(e) => e.to_string().into(),
            };
            timeline::detail([("command", cmd.into()), ("error", outcome)])
        });
        reply
    }

    /// Sends `cmd` and waits for its reply (see [`qmp_raw`](Self::qmp_raw)).
    fn exchange(
        &self,
        cmd: &str,
        args: Value,
        timeout: Duration,
        capped: bool,
    ) -> Result<Value, QmpError> {
        let args = match args {
            Value::Null => None,
            Value::Object(ref m) if m.is_empty() => None,
            args @ Value::Object(_) => Some(args),
            other => {
                return Err(QmpError::Io {
                    context: format!("sending `{cmd}`"),
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("QMP arguments must be a JSON object, got {other}"),
                    ),
                })
            }
        };
        let (deadline, timeout) = if capped {
            self.cap.after(timeout)
        } else {
            DeadlineCap::default().after(timeout)
        };
        let ticket = {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.closed {
                return Err(closed_error(reason));
            }
            if matches!(state.bare, Bare::Free) && state.waiting.is_empty() {
                state.bare = Bare::Waiting;
                Ticket::Bare
            } else {
                let id = format!("qt-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
                state.waiting.insert(id.clone());
                Ticket::Id(id)
            }
        };
        let id = match &ticket {
            Ticket::Bare => None,
            Ticket::Id(id) => Some(id.as_str()),
        };
        if let Err(e) = self.send(cmd, args.as_ref(), id) {
            self.shared.lock().give_up(&ticket);
            return Err(e);
        }
        self.read
            .await_reply(&self.shared, &ticket, deadline, self.transcript.as_deref())
            .map_err(|e| match e {
                NoReply::Closed(e) => e,
                NoReply::TimedOut => QmpError::Timeout {
                    command: cmd.into(),
                    timeout,
                },
            })
    }

    /// Sends one command, with `id` if given, and logs it. The line is
    /// time-stamped before the send but written after it, while QEMU works
    /// on the command; the transcript is held across both, so the reply's
    /// line cannot come first.
    fn send(&self, cmd: &str, args: Option<&Value>, id: Option<&str>) -> Result<(), QmpError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Writer {
            stream,
            command,
            line,
        } = &mut *writer;
        command.clear();
        wire::encode_command(command, cmd, args, id).map_err(|e| QmpError::Io {
            context: format!("sending `{cmd}`"),
            source: e.into(),
        })?;
        let sent = match &self.transcript {
            Some(t) => {
                line.clear();
                log::entry(line, Dir::Send, command);
                command.push(b'\n');
                t.append_after(line, || stream.write_all(command))
            }
            None => {
                command.push(b'\n');
                stream.write_all(command)
            }
        };
        sent.map_err(|source| QmpError::Io {
            context: format!("sending `{cmd}`"),
            source,
        })
    }

    /// Sends `fd` to QEMU with `SCM_RIGHTS` (with a single space as the
    /// payload, which QEMU's JSON parser ignores). A following `getfd` or
    /// `add-fd` command picks it up. Only over a Unix socket.
    pub fn send_fd_scm(&self, fd: BorrowedFd<'_>) -> Result<(), QmpError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Stream::Unix(sock) = &writer.stream else {
            return Err(QmpError::Io {
                context: "passing a file descriptor".into(),
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "fd passing needs a Unix-socket QMP monitor",
                ),
            });
        };
        crate::os::send_fd(sock, b" ", fd).map_err(|source| QmpError::Io {
            context: "passing a file descriptor with SCM_RIGHTS".into(),
            source,
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
    pub fn pull_event(&self, wait: Wait) -> Result<Option<Value>, QmpError> {
        let deadline = wait.deadline(&self.cap);
        let mut state = self.shared.lock();
        let mut looked = false;
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
            let expired = match deadline {
                None => wait.is_no_wait(),
                Some(d) => Instant::now() >= d,
            };
            if expired {
                if looked {
                    return Ok(None);
                }
                // Before giving up, take in what has arrived unread.
                drop(state);
                self.read_available();
                looked = true;
                state = self.shared.lock();
                continue;
            }
            state = self.shared.wait(state, deadline).unwrap_or_else(|s| s);
        }
    }

    /// Takes all queued events; if none are queued, first waits for one as
    /// `wait` says.
    pub fn get_events(&self, wait: Wait) -> Result<Vec<Value>, QmpError> {
        if wait.is_no_wait() {
            self.read_available();
        }
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

    /// Routes whatever QEMU sent that nobody has read yet (the reader
    /// thread may be standing aside), without waiting.
    fn read_available(&self) {
        self.read
            .read_available(&self.shared, self.transcript.as_deref());
    }

    /// Calls `hook` with every `name` event as it arrives (and with those
    /// already queued), without taking it from the queue.
    pub(crate) fn on_event(&self, name: &str, hook: EventHook) {
        let mut state = self.shared.lock();
        for event in state.events.iter().filter(|e| e["event"] == name) {
            hook(event);
        }
        state.hooks.0.push((name.to_string(), hook));
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

    /// How many replies arrived that no caller was waiting for: late
    /// replies to commands that timed out, and replies a broken peer made
    /// up (an unknown `id`, or none while no command without one was in
    /// flight).
    pub fn stray_replies(&self) -> u64 {
        self.shared.lock().stray_replies
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
            .stream
            .shutdown();
        // The reader thread checks `closed` under the lock before it
        // stands aside, so it cannot miss this.
        let mut state = self.shared.lock();
        if state.closed.is_none() {
            state.closed = Some(None);
        }
        self.shared.notify(state);
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

impl State {
    /// Takes the reply to `ticket`'s command if it has arrived.
    fn take_reply(&mut self, ticket: &Ticket) -> Option<Value> {
        match ticket {
            Ticket::Bare => match std::mem::take(&mut self.bare) {
                Bare::Replied(reply) => Some(reply),
                other => {
                    self.bare = other;
                    None
                }
            },
            Ticket::Id(id) => {
                let reply = self.replies.remove(id)?;
                self.waiting.remove(id);
                Some(reply)
            }
        }
    }

    /// Stops waiting for `ticket`'s command. A reply that arrived in the
    /// meantime counts as stray; a bare command still in flight keeps its
    /// slot until its reply arrives.
    fn give_up(&mut self, ticket: &Ticket) {
        match ticket {
            Ticket::Bare => {
                self.bare = match self.bare {
                    Bare::Replied(_) => {
                        self.stray_replies += 1;
                        Bare::Free
                    }
                    _ => Bare::Abandoned,
                }
            }
            Ticket::Id(id) => {
                self.waiting.remove(id);
                if self.replies.remove(id).is_some() {
                    self.stray_replies += 1;
                }
            }
        }
    }

    /// Files one incoming message: the greeting, an event, or a reply.
    fn route(&mut self, msg: Value) {
        if self.greeting.is_none() {
            self.greeting = Some(msg);
        } else if let Some(name) = msg.get("event") {
            for (_, hook) in self.hooks.0.iter().filter(|(n, _)| name == n.as_str()) {
                hook(&msg);
            }
            if self.events.len() >= MAX_QUEUED_EVENTS {
                self.events.pop_front();
                self.dropped_events += 1;
            }
            self.events.push_back(msg);
        } else {
            match msg.get("id") {
                None => match self.bare {
                    Bare::Waiting => self.bare = Bare::Replied(msg),
                    // The late reply of an abandoned bare command.
                    Bare::Abandoned => {
                        self.bare = Bare::Free;
                        self.stray_replies += 1;
                    }
                    // Nobody sent a bare command: a broken peer's.
                    Bare::Free | Bare::Replied(_) => self.stray_replies += 1,
                },
                Some(id) => match id.as_str() {
                    Some(id) if self.waiting.contains(id) => {
                        self.replies.insert(id.to_string(), msg);
                    }
                    // A late reply, or a broken peer's.
                    _ => self.stray_replies += 1,
                },
            }
        }
    }
}
