//! Reading the QMP socket: whoever waits for a reply reads.
//!
//! The socket's incoming bytes go through one [`Framer`], and whoever holds
//! it reads: a caller waiting for its reply when it can take the framer,
//! the reader thread otherwise. A synchronous caller so reads its own reply
//! straight off the socket, as a plain blocking client would, instead of
//! being woken by the reader thread after the thread read the reply: on a
//! busy host that second wake-up was most of the client's overhead. The
//! reader thread reads whenever no caller does: events between commands,
//! the greeting, replies to callers that found the framer taken.
//!
//! Every read is non-blocking; waiting is `poll(2)`. The reader thread
//! polls without holding the framer, so a caller can always take it over;
//! a caller polls while holding it, until its deadline. Whoever reads
//! routes every message it reads into the shared [`State`] and wakes
//! whoever waits on the condition variable: event waiters, and callers
//! that found the framer taken (the holder lets go of it while holding the
//! state, so they find it free when they wake).
//!
//! When data wakes the reader thread while a caller holds the framer, the
//! thread stands aside for [`STAND_ASIDE`] instead of waking at each of
//! the caller's replies; anyone who starts waiting on the condition
//! variable wakes it at once ([`Shared::wait`]), so only messages nobody
//! waits for can sit in the socket that long, and a wait that gives up
//! (`Wait::No`, an expired deadline) first routes what has arrived unread
//! ([`ReadSide::read_available`]).

use std::io;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::log::{self, Dir, Transcript};
use super::wire::{Fill, Framer, MAX_MESSAGE_SIZE};
use super::{closed_error, Shared, State, Stream, Ticket};
use crate::error::QmpError;

/// How long the reader thread stands aside once it finds a caller reading
/// (unless someone needs it sooner: see [`Shared::wait`]).
const STAND_ASIDE: Duration = Duration::from_millis(50);

/// The read half of the connection.
#[derive(Debug)]
pub(super) struct ReadSide {
    stream: Stream,
    framer: Mutex<Intake>,
}

/// What the reader holds: the framer, and buffers kept from one batch to
/// the next.
#[derive(Debug)]
pub(super) struct Intake {
    framer: Framer,
    /// The messages of the batch, routed together.
    messages: Vec<Value>,
    /// Their transcript lines, written together.
    lines: Vec<u8>,
}

/// Why [`ReadSide::await_reply`] returned without a reply.
#[derive(Debug)]
pub(super) enum NoReply {
    /// The connection is over.
    Closed(QmpError),
    /// The deadline passed.
    TimedOut,
}

impl ReadSide {
    pub(super) fn new(stream: Stream) -> Self {
        ReadSide {
            stream,
            framer: Mutex::new(Intake {
                framer: Framer::new(MAX_MESSAGE_SIZE),
                messages: Vec::new(),
                lines: Vec::new(),
            }),
        }
    }

    /// The reader thread: reads whenever no caller does, until the
    /// connection is over.
    pub(super) fn run(&self, shared: &Shared, transcript: Option<&Transcript>) {
        loop {
            if shared.lock().closed.is_some() {
                return;
            }
            if let Err(e) = self.wait_readable(None) {
                let mut state = shared.lock();
                close(&mut state, Some(e));
                shared.notify(state);
                return;
            }
            let mut framer = match self.framer.try_lock() {
                Ok(framer) => framer,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    let mut state = shared.lock();
                    if state.closed.is_some() {
                        return;
                    }
                    if state.waiters > 0 {
                        // Someone waits for news: read as soon as the
                        // caller lets go.
                        drop(state);
                        self.framer.lock().unwrap_or_else(|e| e.into_inner())
                    } else {
                        // A caller is reading what woke us: stand aside
                        // for a while rather than wake at each of its
                        // replies.
                        state.reader_parked = true;
                        let (mut state, _) = shared
                            .park
                            .wait_timeout(state, STAND_ASIDE)
                            .unwrap_or_else(|e| e.into_inner());
                        state.reader_parked = false;
                        continue;
                    }
                }
            };
            self.batch(&mut framer, shared, transcript);
            let state = shared.lock();
            // Let go of the framer while holding the state: a caller that
            // found it taken is counted by now, or will find it free.
            drop(framer);
            let closed = state.closed.is_some();
            shared.notify(state);
            if closed {
                return;
            }
        }
    }

    /// Waits until the reply to `ticket`'s command arrives, reading the
    /// socket itself while it can; on failure the ticket is given up.
    pub(super) fn await_reply(
        &self,
        shared: &Shared,
        ticket: &Ticket,
        deadline: Instant,
        transcript: Option<&Transcript>,
    ) -> Result<Value, NoReply> {
        let mut framer: Option<MutexGuard<'_, Intake>> = None;
        let mut state = shared.lock();
        let outcome = loop {
            if let Some(reply) = state.take_reply(ticket) {
                break Ok(reply);
            }
            if let Some(reason) = &state.closed {
                break Err(NoReply::Closed(closed_error(reason)));
            }
            if Instant::now() >= deadline {
                break Err(NoReply::TimedOut);
            }
            if framer.is_none() {
                match self.framer.try_lock() {
                    Ok(guard) => framer = Some(guard),
                    Err(TryLockError::Poisoned(p)) => framer = Some(p.into_inner()),
                    Err(TryLockError::WouldBlock) => {
                        // Someone else reads: they route our reply, and
                        // wake us when they let go of the framer.
                        state = shared.wait(state, Some(deadline)).unwrap_or_else(|s| s);
                        continue;
                    }
                }
            }
            drop(state);
            let polled = match framer.as_mut() {
                Some(f) if f.framer.has_line() => Ok(true),
                Some(_) => self.wait_readable(Some(deadline)),
                None => Ok(false),
            };
            state = match (polled, framer.as_mut()) {
                (Ok(true), Some(f)) => {
                    self.batch(f, shared, transcript);
                    shared.lock()
                }
                (Ok(_), _) => shared.lock(),
                (Err(e), _) => {
                    let mut state = shared.lock();
                    close(&mut state, Some(e));
                    state
                }
            };
        };
        if outcome.is_err() {
            state.give_up(ticket);
        }
        // Let go of the framer while holding the state: a caller that
        // found it taken is counted by now, or will find it free.
        drop(framer);
        shared.notify(state);
        outcome
    }

    /// Routes everything that has arrived, without waiting; nothing if
    /// someone else is reading right now (they route it).
    pub(super) fn read_available(&self, shared: &Shared, transcript: Option<&Transcript>) {
        let mut framer = match self.framer.try_lock() {
            Ok(framer) => framer,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        while self.batch(&mut framer, shared, transcript) {}
    }

    /// Waits until the socket is readable (or closed), or `deadline`
    /// passes: `Ok(false)` then.
    fn wait_readable(&self, deadline: Option<Instant>) -> Result<bool, QmpError> {
        crate::os::wait_readable(&self.stream, deadline).map_err(|e| QmpError::Io {
            context: "waiting for the QMP socket".into(),
            source: e,
        })
    }

    /// Routes every message already buffered or, if none, reads once
    /// (without blocking) and routes the messages that completed. Ends the
    /// connection on end of file or a broken message. Whether messages
    /// were routed and the connection goes on (so more may be waiting).
    fn batch(&self, intake: &mut Intake, shared: &Shared, transcript: Option<&Transcript>) -> bool {
        let Intake {
            framer,
            messages,
            lines,
        } = intake;
        messages.clear();
        lines.clear();
        let mut end = None;
        let mut has_read = false;
        loop {
            match framer.next_message() {
                Ok(Some(m)) => {
                    if transcript.is_some() {
                        log::entry(lines, Dir::Recv, m.text);
                    }
                    messages.push(m.value);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    end = Some(Some(e));
                    break;
                }
            }
            if has_read || !messages.is_empty() {
                break;
            }
            has_read = true;
            match framer.fill(|buf| self.recv(buf)) {
                Ok(Fill::Read) => {}
                Ok(Fill::WouldBlock) => break,
                Ok(Fill::Eof) => {
                    end = Some(None);
                    break;
                }
                Err(e) => {
                    end = Some(Some(e));
                    break;
                }
            }
        }
        if messages.is_empty() && end.is_none() {
            return false;
        }
        let more = end.is_none();
        if let (Some(Some(e)), Some(_)) = (&end, transcript) {
            log::raw_entry(lines, Dir::Recv, &e.to_string());
        }
        let deliver = || {
            let mut state = shared.lock();
            for msg in messages.drain(..) {
                state.route(msg);
            }
            if let Some(reason) = end {
                close(&mut state, reason);
            }
            shared.notify(state);
        };
        match transcript {
            // Waiters are woken before the disk write.
            Some(t) => t.append_after(lines, deliver),
            None => deliver(),
        }
        more
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        crate::os::recv_now(&self.stream, buf)
    }
}

/// Marks the connection over, keeping the first reason.
fn close(state: &mut State, reason: Option<QmpError>) {
    if state.closed.is_none() {
        state.closed = Some(reason);
    }
}
