//! Ending QEMU: a graceful shutdown (QMP `quit`, or SIGTERM without QMP)
//! with a timeout and a kill after it, an immediate kill, waiting for QEMU
//! to exit on its own, and the cleanup after each (events kept, the console
//! drained, the log saved, the temp dirs removed). Dropping a running
//! machine kills it.

use std::time::Duration;

use serde_json::Value;

use super::{Machine, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_WAIT_TIMEOUT};
use crate::error::{Error, QmpError, Result};
use crate::os::{self, Signal};
use crate::qmp::Wait;

impl Machine {
    /// Shuts QEMU down gracefully (QMP `quit`, or SIGTERM without QMP) and
    /// waits up to 30 s; see [`shutdown_timeout`](Self::shutdown_timeout).
    pub fn shutdown(&mut self) -> Result<()> {
        self.shutdown_timeout(DEFAULT_SHUTDOWN_TIMEOUT)
    }

    /// Shuts QEMU down gracefully and waits up to `timeout` for it to exit.
    /// If it does not, it is killed and the result is
    /// [`Error::AbnormalShutdown`]. Does nothing if not launched. Temp and
    /// socket dirs are removed either way. The deadline set with
    /// [`set_deadline`](Self::set_deadline) does not shorten `timeout`.
    pub fn shutdown_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.end(Ending::Ask, timeout)
    }

    /// Kills QEMU (SIGKILL to its process group) and reaps it.
    pub fn kill(&mut self) {
        if self.run.is_some() {
            self.user_killed = true;
            self.hard_kill();
            self.post_shutdown();
        }
    }

    /// Waits for QEMU to exit on its own (e.g. the guest powers off, or QEMU
    /// fails at start-up), without asking it to and without signalling it,
    /// for up to `timeout` (`None`: [`DEFAULT_WAIT_TIMEOUT`], 30 s, the
    /// seed's default); then cleans up like [`shutdown`](Self::shutdown).
    /// If it does not exit in time it is killed and the result is
    /// [`Error::AbnormalShutdown`] (as the seed's `wait()`).
    ///
    /// ```no_run
    /// // QEMU rejects the empty CPU model and exits with status 1.
    /// let mut vm = qemu_test::Machine::builder("qemu-system-x86_64")
    ///     .args(["-S", "-machine", "none", "-cpu", ""])
    ///     .build();
    /// vm.set_qmp_monitor(false);
    /// vm.launch()?;
    /// vm.wait(None)?;
    /// assert_eq!(vm.exit_code(), Some(1));
    /// assert!(vm.log().contains("-cpu option cannot be empty"));
    /// # Ok::<(), qemu_test::Error>(())
    /// ```
    pub fn wait(&mut self, timeout: impl Into<Option<Duration>>) -> Result<()> {
        let timeout = timeout.into().unwrap_or(DEFAULT_WAIT_TIMEOUT);
        self.end(Ending::Await, timeout)
    }

    /// Ends QEMU as `ending` says, waiting up to `timeout` for it to exit;
    /// kills it after that.
    fn end(&mut self, ending: Ending, timeout: Duration) -> Result<()> {
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        let graceful = (|| -> Result<()> {
            match (ending, &run.qmp) {
                // `wait` never asks, with or without QMP.
                (Ending::Await, _) => {}
                // Asked already (a `quit` through `qmp()`).
                (Ending::Ask, _) if self.quit_issued => {}
                (Ending::Ask, Some(q)) => {
                    self.quit_issued = true;
                    match q.qmp_uncapped("quit", Value::Null, timeout) {
                        // QEMU may exit before its reply reaches us.
                        Ok(_) | Err(QmpError::Closed { .. }) | Err(QmpError::Io { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                (Ending::Ask, None) => {
                    // Our own signal: QEMU dying of it is no surprise.
                    self.quit_issued = true;
                    self.user_killed = true;
                    os::kill_group(run.child.id(), Signal::Term)
                        .map_err(|e| Error::io("sending SIGTERM to QEMU", e))?
                }
            }
            match os::wait_timeout(&mut run.child, Some(timeout))
                .map_err(|e| Error::io("waiting for QEMU", e))?
            {
                Some(_) => Ok(()),
                None => Err(Error::WaitTimeout {
                    pid: run.child.id(),
                    timeout,
                }),
            }
        })();
        match graceful {
            Ok(()) => {
                self.post_shutdown();
                Ok(())
            }
            Err(cause) => {
                self.hard_kill();
                self.post_shutdown();
                Err(Error::AbnormalShutdown {
                    log: self.log(),
                    cause: Box::new(cause),
                })
            }
        }
    }

    fn hard_kill(&mut self) {
        if let Some(run) = self.run.as_mut() {
            // Never by pid once reaped: the pid may be someone else's.
            if os::child_state(run.child.id()) != os::ChildState::Reaped {
                let _ = os::kill_group(run.child.id(), Signal::Kill);
                let _ = os::kill_one(run.child.id(), Signal::Kill);
            }
            let _ = run.child.wait();
        }
    }

    fn post_shutdown(&mut self) {
        self.kill_switch.disarm();
        self.remote.set(None);
        let Some(mut run) = self.run.take() else {
            return;
        };
        if let Ok(Some(status)) = run.child.try_wait() {
            self.exit_code = os::exit_code(status);
        }
        if let Some(q) = run.qmp.take() {
            // Keep what QEMU said last (e.g. SHUTDOWN) for event_wait().
            if let Ok(events) = q.get_events(Wait::No) {
                self.events.extend(events);
            }
        }
        if let Some(d) = run.drain.take() {
            d.finish();
        }
        self.channel_handle = crate::channel::DataChannel::detached();
        let mut log = run.qemu_log.read();
        if let Some(code) = self.exit_code.filter(|c| *c < 0 && !self.user_killed) {
            log.push_str(&format!("\n(qemu-test: QEMU received signal {})\n", -code));
        }
        self.iolog = Some(log);
        // Dropping `run` removes the temp and socket dirs.
    }
}

/// How a shutdown begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Ask QEMU to quit (QMP `quit`, or SIGTERM without a monitor).
    Ask,
    /// Only wait for QEMU to exit by itself.
    Await,
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.run.is_some() {
            self.user_killed = true;
            self.hard_kill();
            self.post_shutdown();
        }
    }
}
