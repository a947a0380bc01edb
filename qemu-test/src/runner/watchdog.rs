//! Running a body (a test's, or a snapshot's setup) under a deadline.
//!
//! The body runs on a thread of its own (named after the test, like
//! libtest's); the calling thread is the watchdog. At the deadline it calls
//! `on_timeout`, which kills the VM's QEMU through a pidfd ([`killer`]:
//! never by name, never a recycled pid) and so ends any wait the body is
//! in; a body that still does not return within [`GRACE`] is abandoned and
//! the test fails as timed out all the same. (A body that relaunches its
//! machine starts a QEMU the watchdog does not know; the deadline still
//! caps all of that machine's waits.)

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::machine::{CrashListener, GuestCrash, Machine};
use crate::runner::outcome::{BodyError, BodyResult};

/// How long a body may take to return once its VM was killed at the
/// deadline.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// After a crash sign, how long the console may go on (the call trace
/// follows the panic line) before the VM is killed.
const SETTLE: Duration = Duration::from_millis(500);

/// How a body ended.
#[derive(Debug)]
pub(crate) enum BodyEnd {
    /// It returned `Ok`.
    Passed,
    /// It returned an error or panicked, before the deadline.
    Failed(BodyError),
    /// It skipped itself ([`Skip`](crate::Skip)): the reason.
    Skipped(String),
    /// The deadline passed.
    TimedOut {
        timeout: Duration,
        /// What the body said, if it returned an error.
        said: Option<BodyError>,
        /// It did not return within [`GRACE`] after the kill.
        abandoned: bool,
    },
    /// The guest crashed (and the body did not expect it): the VM was
    /// killed so that the test ends now, not at its deadline.
    Crashed {
        crash: GuestCrash,
        /// What the body said, if it returned an error.
        said: Option<BodyError>,
        /// It did not return within [`GRACE`] after the kill.
        abandoned: bool,
    },
}

impl BodyEnd {
    /// How it ended, in a word (for the timeline).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            BodyEnd::Passed => "passed",
            BodyEnd::Failed(_) => "failed",
            BodyEnd::Skipped(_) => "skipped",
            BodyEnd::TimedOut { .. } => "timed out",
            BodyEnd::Crashed { .. } => "guest crashed",
        }
    }
}

/// What reaches the watchdog: the body's result, or a crash sign.
enum Event<T> {
    Done(T, BodyResult),
    Crash(GuestCrash),
}

/// Watches one body: its deadline, and its guest's crash signs.
pub(crate) struct Watchdog<T> {
    name: String,
    deadline: (Instant, Duration),
    tx: Sender<Event<T>>,
    rx: Receiver<Event<T>>,
    /// Set while the body expects its guest to crash.
    expected: Arc<AtomicBool>,
}

impl<T: Send + 'static> Watchdog<T> {
    /// A watchdog for a body on a thread named `name`, with `deadline`
    /// (`timeout` after the test started).
    pub(crate) fn new(name: &str, deadline: (Instant, Duration)) -> Watchdog<T> {
        let (tx, rx) = mpsc::channel();
        Watchdog {
            name: name.to_string(),
            deadline,
            tx,
            rx,
            expected: Arc::default(),
        }
    }

    /// Hands crash signs to this watchdog (see [`Machine::watch_crashes`]).
    pub(crate) fn crash_listener(&self) -> CrashListener {
        let tx = self.tx.clone();
        CrashListener::new(move |crash| {
            let _ = tx.send(Event::Crash(crash));
        })
    }

    /// The flag a body sets when it expects its guest to crash.
    pub(crate) fn crash_expected(&self) -> Arc<AtomicBool> {
        self.expected.clone()
    }

    /// Runs `body` on `value` on its own thread until the deadline or a
    /// crash sign the body does not expect; then calls `kill` (which kills
    /// the VMs) and waits [`GRACE`] more. Returns `value` back (even after
    /// a panic; `None` if the body had to be abandoned) and how the body
    /// ended; the error is for a thread that could not be started.
    pub(crate) fn run(
        self,
        value: T,
        body: impl FnOnce(&mut T) -> BodyResult + Send + 'static,
        kill: impl FnOnce(),
    ) -> Result<(Option<T>, BodyEnd), String> {
        let tx = self.tx.clone();
        let spawned = thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                let mut value = value;
                let result = catch_unwind(AssertUnwindSafe(|| body(&mut value)));
                let result = result.unwrap_or_else(|payload| {
                    BodyResult::Failed(BodyError::panic(payload.as_ref()))
                });
                let _ = tx.send(Event::Done(value, result));
            });
        if let Err(e) = spawned {
            return Err(format!("cannot start the test's thread: {e}"));
        }
        let (deadline, timeout) = self.deadline;
        loop {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Event::Done(value, result)) => {
                    return Ok(ended(value, result, deadline, timeout))
                }
                Ok(Event::Crash(_)) if self.expected.load(Ordering::SeqCst) => {}
                Ok(Event::Crash(crash)) => return Ok(self.after_crash(crash, kill)),
                Err(RecvTimeoutError::Timeout) => return Ok(self.after_deadline(timeout, kill)),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the test's thread ended without a result".into())
                }
            }
        }
    }

    /// The deadline passed: kill, then give the body [`GRACE`].
    fn after_deadline(self, timeout: Duration, kill: impl FnOnce()) -> (Option<T>, BodyEnd) {
        kill();
        let (value, said, abandoned) = self.grace();
        let end = BodyEnd::TimedOut {
            timeout,
            said,
            abandoned,
        };
        (value, end)
    }

    /// The guest crashed: let the console show the call trace (even if the
    /// body returns meanwhile), kill, then give the body [`GRACE`].
    fn after_crash(self, mut crash: GuestCrash, kill: impl FnOnce()) -> (Option<T>, BodyEnd) {
        let settled = Instant::now() + SETTLE;
        let mut done = None;
        loop {
            let left = settled.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::Done(value, result)) => done = Some((value, result)),
                // A second sign of the same crash: the console's line says
                // more than pvpanic's event, whichever came first.
                Ok(Event::Crash(second)) => {
                    if matches!(crash, GuestCrash::Panicked(_)) {
                        crash = second;
                    }
                }
                Err(_) => break,
            }
        }
        kill();
        if let Some((value, result)) = done {
            let said = match result {
                BodyResult::Failed(said) => Some(said),
                _ => None,
            };
            let end = BodyEnd::Crashed {
                crash,
                said,
                abandoned: false,
            };
            return (Some(value), end);
        }
        let (value, said, abandoned) = self.grace();
        let end = BodyEnd::Crashed {
            crash,
            said,
            abandoned,
        };
        (value, end)
    }

    /// Waits [`GRACE`] for the body after its VM was killed.
    fn grace(self) -> (Option<T>, Option<BodyError>, bool) {
        let until = Instant::now() + GRACE;
        loop {
            match self
                .rx
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(Event::Done(value, BodyResult::Failed(said))) => {
                    return (Some(value), Some(said), false)
                }
                Ok(Event::Done(value, _)) => return (Some(value), None, false),
                Ok(Event::Crash(_)) => {}
                Err(_) => return (None, None, true),
            }
        }
    }
}

/// How a body that returned ended: a failure that comes just as the
/// deadline passes is the deadline's doing.
fn ended<T>(
    value: T,
    result: BodyResult,
    deadline: Instant,
    timeout: Duration,
) -> (Option<T>, BodyEnd) {
    let end = match result {
        BodyResult::Passed => BodyEnd::Passed,
        BodyResult::Skipped(reason) => BodyEnd::Skipped(reason),
        BodyResult::Failed(said) if Instant::now() + Duration::from_millis(50) >= deadline => {
            BodyEnd::TimedOut {
                timeout,
                said: Some(said),
                abandoned: false,
            }
        }
        BodyResult::Failed(said) => BodyEnd::Failed(said),
    };
    (Some(value), end)
}

/// Runs `body` on `value` under `deadline` with no crash watch: a body
/// without a VM, or a snapshot's setup (see [`Watchdog::run`]).
pub(crate) fn run_body<T: Send + 'static>(
    name: &str,
    deadline: (Instant, Duration),
    value: T,
    body: impl FnOnce(&mut T) -> BodyResult + Send + 'static,
    on_timeout: impl FnOnce(),
) -> Result<(Option<T>, BodyEnd), String> {
    Watchdog::new(name, deadline).run(value, body, on_timeout)
}

/// `timeout` from now; an absurdly long timeout means "a century".
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86400))
}

/// What the watchdog calls at the deadline: kills the machine's QEMU, the
/// one running then (through a pidfd: never a recycled pid).
pub(crate) fn killer(machine: &Machine) -> impl FnOnce() + Send + 'static {
    let switch = machine.kill_switch();
    move || switch.kill()
}

/// `5 s`, `1.5 s`.
pub(crate) fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn after(timeout: Duration) -> (Instant, Duration) {
        (Instant::now() + timeout, timeout)
    }

    #[test]
    fn bodies_run_on_named_threads_and_panics_are_caught() {
        let body = |name: &mut Option<String>| {
            *name = thread::current().name().map(str::to_string);
            BodyResult::Passed
        };
        let (name, end) =
            run_body("my::test", after(Duration::from_secs(5)), None, body, || ()).unwrap();
        assert_eq!(name.flatten().as_deref(), Some("my::test"));
        assert!(matches!(end, BodyEnd::Passed));
        let (value, end) = run_body(
            "p",
            after(Duration::from_secs(5)),
            7,
            |_| panic!("kaboom"),
            || (),
        )
        .unwrap();
        assert_eq!(value, Some(7), "the value survives the panic");
        match end {
            BodyEnd::Failed(e) => {
                assert_eq!(e.message, "test panicked: kaboom");
                assert!(e.panicked);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stuck_bodies_time_out() {
        let killed = Arc::new(Mutex::new(false));
        let k = killed.clone();
        let (tx, rx) = mpsc::channel::<()>();
        let started = Instant::now();
        let (_, end) = run_body(
            "stuck",
            after(Duration::from_millis(200)),
            (),
            move |()| {
                // Returns once "the VM is killed".
                let _ = rx.recv();
                BodyResult::Failed(BodyError::new("console closed"))
            },
            move || {
                *k.lock().unwrap() = true;
                drop(tx);
            },
        )
        .unwrap();
        assert!(*killed.lock().unwrap());
        assert!(started.elapsed() < GRACE);
        match end {
            BodyEnd::TimedOut {
                said, abandoned, ..
            } => {
                assert_eq!(said.map(|s| s.message).as_deref(), Some("console closed"));
                assert!(!abandoned);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(seconds(Duration::from_secs(60)), "60 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    }
}
