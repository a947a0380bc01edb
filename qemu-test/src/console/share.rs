//! Handing a console over to a person: a Unix socket through which a
//! terminal program (`socat -,raw,echo=0 UNIX-CONNECT:<socket>`) sees what
//! the guest printed lately, then everything it prints, and types into the
//! guest. The drain thread keeps reading the guest's output into the
//! console's buffer meanwhile: nothing is lost, and the console log stays
//! complete.
//!
//! One person at a time: a second connection waits until the first one
//! ends. Dropping the [`Handover`] disconnects whoever is connected and
//! stops listening.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::Console;

/// How often the handover threads look whether they should stop.
const TICK: Duration = Duration::from_millis(100);

/// A console served on a socket; stops when dropped.
#[derive(Debug)]
pub(crate) struct Handover {
    stop: Arc<AtomicBool>,
    /// The person connected now, to disconnect when stopping.
    client: Arc<Mutex<Option<UnixStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Console {
    /// Serves this console on `listener` (see the [module docs](self)):
    /// each newcomer first gets the last `replay` bytes the guest printed.
    pub(crate) fn hand_over(
        &self,
        listener: UnixListener,
        replay: usize,
    ) -> std::io::Result<Handover> {
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::new(Mutex::new(None));
        let thread = {
            let (console, stop, client) = (self.clone(), stop.clone(), client.clone());
            thread::Builder::new()
                .name("qemu-test-handover".into())
                .spawn(move || serve(&console, &listener, replay, &stop, &client))?
        };
        Ok(Handover {
            stop,
            client,
            thread: Some(thread),
        })
    }

    /// Waits up to `timeout` for output past `offset`; returns it (empty
    /// if none came) and whether the console is closed.
    pub(crate) fn output_after(&self, offset: usize, timeout: Duration) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + timeout;
        let mut buf = self.inner.lock();
        loop {
            if buf.data.len() > offset || buf.closed {
                let new = buf.data.get(offset..).unwrap_or_default().to_vec();
                return (new, buf.closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (Vec::new(), false);
            }
            buf = self
                .inner
                .cond
                .wait_timeout(buf, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Where a replay of about the last `replay` bytes starts: at the
    /// start of a line, unless there is none in them.
    fn replay_start(&self, replay: usize) -> usize {
        let buf = self.inner.lock();
        let from = buf.data.len().saturating_sub(replay);
        if from == 0 {
            return 0;
        }
        match memchr::memchr(b'\n', &buf.data[from..]) {
            Some(at) => from + at + 1,
            None => from,
        }
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(client) = &*self.client.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts one person after another until told to stop.
fn serve(
    console: &Console,
    listener: &UnixListener,
    replay: usize,
    stop: &AtomicBool,
    client: &Mutex<Option<UnixStream>>,
) {
    while !stop.load(Ordering::SeqCst) {
        match crate::os::wait_readable(listener, Some(Instant::now() + TICK)) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => return,
        }
        let Ok((stream, _)) = listener.accept() else {
            continue;
        };
        let Ok(held) = stream.try_clone() else {
            continue;
        };
        *client.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
        // Dropped just now? Then this person is not disconnected by it.
        if !stop.load(Ordering::SeqCst) {
            attend(console, stream, replay, stop);
        }
        client.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Serves one person: the replay, then output out and keystrokes in,
/// until they leave, the console closes, or the handover stops.
fn attend(console: &Console, mut stream: UnixStream, replay: usize, stop: &AtomicBool) {
    let Ok(keys) = stream.try_clone() else {
        return;
    };
    let typing = {
        let console = console.clone();
        thread::spawn(move || forward_keys(keys, &console))
    };
    let mut offset = console.replay_start(replay);
    while !stop.load(Ordering::SeqCst) && !typing.is_finished() {
        let (new, closed) = console.output_after(offset, TICK);
        offset += new.len();
        if stream.write_all(&new).is_err() || closed {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = typing.join();
}

/// Copies what the person types to the guest until they leave.
fn forward_keys(mut keys: UnixStream, console: &Console) {
    let mut buf = [0u8; 4096];
    loop {
        match keys.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if console.send(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
