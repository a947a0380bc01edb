//! Telling when the guest crashes, from whatever shows it first: a kernel
//! panic, Oops or BUG line on the console, or QEMU's `GUEST_PANICKED` event
//! (a guest with a pvpanic device and its driver). The runner uses it to
//! fail a test as soon as its guest crashes instead of at its deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Machine;
use crate::console::Crash;
use crate::error::{Error, EventError, Result};

/// How long a crash QEMU reported waits for the console's panic line.
const CONSOLE_LAG: Duration = Duration::from_secs(1);

/// A sign that the guest crashed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GuestCrash {
    /// A crash line on the console.
    Console(Crash),
    /// QEMU's `GUEST_PANICKED` event (the whole event).
    Panicked(Value),
}

impl std::fmt::Display for GuestCrash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestCrash::Console(crash) => write!(f, "{crash}"),
            GuestCrash::Panicked(event) => write!(
                f,
                "QEMU reported GUEST_PANICKED (pvpanic): {}",
                event.get("data").unwrap_or(&Value::Null)
            ),
        }
    }
}

/// Who is told about crash signs. Cheap to clone.
#[derive(Clone)]
pub(crate) struct CrashListener(Arc<dyn Fn(GuestCrash) + Send + Sync>);

impl CrashListener {
    pub(crate) fn new(tell: impl Fn(GuestCrash) + Send + Sync + 'static) -> CrashListener {
        CrashListener(Arc::new(tell))
    }

    fn tell(&self, crash: GuestCrash) {
        (self.0)(crash)
    }
}

impl std::fmt::Debug for CrashListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CrashListener")
    }
}

impl Machine {
    /// Waits up to `timeout` (capped by the machine's deadline) for the
    /// guest to crash: a panic, Oops or BUG line on the console, or
    /// QEMU's `GUEST_PANICKED` event (a pvpanic device). Under the runner,
    /// call [`Vm::expect_guest_crash`](crate::Vm::expect_guest_crash) first,
    /// or the crash fails the test.
    ///
    /// ```no_run
    /// # fn demo(vm: &mut qemu_test::Vm) -> qemu_test::TestResult {
    /// vm.expect_guest_crash();
    /// vm.shell().run("echo c > /proc/sysrq-trigger").ok();
    /// let crash = vm.wait_for_guest_crash(std::time::Duration::from_secs(30))?;
    /// assert!(crash.to_string().contains("sysrq triggered crash"));
    /// # Ok(()) }
    /// ```
    pub fn wait_for_guest_crash(&mut self, timeout: Duration) -> Result<GuestCrash> {
        let (deadline, timeout) = self.cap.after(timeout);
        loop {
            if let Some(crash) = self.console().crash() {
                return Ok(GuestCrash::Console(crash));
            }
            let step = Duration::from_millis(50);
            if self.qmp_client().is_ok() {
                match self.event_wait("GUEST_PANICKED", step, None) {
                    Ok(event) => return Ok(self.console_crash_after(event, deadline)),
                    Err(Error::Event(EventError::Timeout { .. })) => {}
                    Err(e) => return Err(e),
                }
            } else {
                std::thread::sleep(step);
            }
            if Instant::now() >= deadline {
                return Err(Error::NoCrash { timeout });
            }
        }
    }

    /// The console's account of a crash QEMU reported: the kernel prints
    /// its panic line before it tells pvpanic, but the line may still be
    /// on its way to the console's reader. Waits up to [`CONSOLE_LAG`]
    /// (within `deadline`) for it; QEMU's event when it does not come.
    fn console_crash_after(&self, event: Value, deadline: Instant) -> GuestCrash {
        let until = deadline.min(Instant::now() + CONSOLE_LAG);
        loop {
            if let Some(crash) = self.console().crash() {
                return GuestCrash::Console(crash);
            }
            if Instant::now() >= until {
                return GuestCrash::Panicked(event);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Tells `listener` about every crash sign of the guest, from this and
    /// every later launch (the first crash line of each console; each
    /// `GUEST_PANICKED` event).
    pub(crate) fn watch_crashes(&mut self, listener: CrashListener) {
        self.crash_listener = Some(listener);
        self.attach_crash_listener();
    }

    /// Hooks the listener to the running console and QMP client, if any.
    pub(super) fn attach_crash_listener(&self) {
        let (Some(listener), Some(run)) = (&self.crash_listener, &self.run) else {
            return;
        };
        let to_listener = listener.clone();
        self.console_handle.on_crash(Box::new(move |crash| {
            to_listener.tell(GuestCrash::Console(crash))
        }));
        if let Some(qmp) = &run.qmp {
            let to_listener = listener.clone();
            qmp.on_event(
                "GUEST_PANICKED",
                Box::new(move |event| to_listener.tell(GuestCrash::Panicked(event.clone()))),
            );
        }
    }
}
