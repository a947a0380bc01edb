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
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::machine::Machine;
use crate::runner::outcome::{BodyError, BodyResult};

/// How long a body may take to return once its VM was killed at the
/// deadline.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

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
}

/// Runs `body` on `value` on a thread named `name`, waiting until
/// `deadline` (`timeout` after the test started); then calls `on_timeout`
/// (which kills the VM) and waits [`GRACE`] more. Returns `value` back
/// (even after a panic; `None` if the body had to be abandoned) and how the
/// body ended; the error is for a thread that could not be started.
pub(crate) fn run_body<T: Send + 'static>(
    name: &str,
    (deadline, timeout): (Instant, Duration),
    value: T,
    body: impl FnOnce(&mut T) -> BodyResult + Send + 'static,
    on_timeout: impl FnOnce(),
) -> Result<(Option<T>, BodyEnd), String> {
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut value = value;
            let result = catch_unwind(AssertUnwindSafe(|| body(&mut value)));
            let result = result
                .unwrap_or_else(|payload| BodyResult::Failed(BodyError::panic(payload.as_ref())));
            let _ = tx.send((value, result));
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start the test's thread: {e}"));
    }
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok((value, BodyResult::Passed)) => Ok((Some(value), BodyEnd::Passed)),
        Ok((value, BodyResult::Skipped(reason))) => Ok((Some(value), BodyEnd::Skipped(reason))),
        // A wait cut short by the deadline is the deadline's doing.
        Ok((value, BodyResult::Failed(said)))
            if Instant::now() + Duration::from_millis(50) >= deadline =>
        {
            let end = BodyEnd::TimedOut {
                timeout,
                said: Some(said),
                abandoned: false,
            };
            Ok((Some(value), end))
        }
        Ok((value, BodyResult::Failed(said))) => Ok((Some(value), BodyEnd::Failed(said))),
        Err(RecvTimeoutError::Timeout) => {
            on_timeout();
            let (value, said, abandoned) = match rx.recv_timeout(GRACE) {
                Ok((value, BodyResult::Failed(said))) => (Some(value), Some(said), false),
                Ok((value, _)) => (Some(value), None, false),
                Err(_) => (None, None, true),
            };
            let end = BodyEnd::TimedOut {
                timeout,
                said,
                abandoned,
            };
            Ok((value, end))
        }
        Err(RecvTimeoutError::Disconnected) => {
            Err("the test's thread ended without a result".into())
        }
    }
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
