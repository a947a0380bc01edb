//! A handle that kills whatever QEMU a machine runs now, from any thread:
//! the runner's watchdog holds one per machine of a test, and it follows
//! the machine across relaunches (a body that launches or relaunches its
//! machine is still stopped at the deadline).

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use crate::os::{self, Signal};

/// Kills the machine's current QEMU (through a pidfd: never a recycled
/// pid); does nothing while it runs none. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct KillSwitch(Arc<Mutex<Option<Target>>>);

#[derive(Debug)]
struct Target {
    pid: u32,
    pidfd: Option<OwnedFd>,
}

impl KillSwitch {
    /// From now on, kills `pid`.
    pub(crate) fn arm(&self, pid: u32) {
        let target = Target {
            pid,
            pidfd: os::pidfd(pid),
        };
        *self.lock() = Some(target);
    }

    /// QEMU is gone: nothing to kill.
    pub(crate) fn disarm(&self) {
        *self.lock() = None;
    }

    /// Kills the current QEMU, if any (SIGKILL; the machine reaps it).
    pub(crate) fn kill(&self) {
        match &*self.lock() {
            Some(Target {
                pidfd: Some(fd), ..
            }) => {
                let _ = os::kill_pidfd(fd, Signal::Kill);
            }
            Some(Target { pid, pidfd: None }) => {
                let _ = os::kill_one(*pid, Signal::Kill);
            }
            None => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Target>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
