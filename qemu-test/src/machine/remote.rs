//! A machine's QMP monitor, reachable from another thread while the body
//! owns the machine: the runner's watchdog takes a failing test's
//! screenshot through it before it kills the VM. Like the kill switch, it
//! follows the machine across relaunches.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::qmp::QmpClient;

/// The QMP client of the machine's current QEMU, if it runs with one.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Remote(Arc<Mutex<Option<Arc<QmpClient>>>>);

impl Remote {
    /// From now on, reaches `qmp` (`None`: QEMU is gone).
    pub(crate) fn set(&self, qmp: Option<Arc<QmpClient>>) {
        *self.lock() = qmp;
    }

    /// Saves the screen to `path` (see
    /// [`Machine::screendump`](super::Machine::screendump)), waiting at
    /// most `timeout` whatever the machine's deadline: the watchdog calls
    /// it when that deadline has passed.
    pub(crate) fn screendump(&self, path: &Path, timeout: Duration) -> Result<()> {
        let qmp = self.lock().clone();
        let qmp = qmp.ok_or(Error::State(
            "the machine is not running with a QMP monitor",
        ))?;
        super::screen::screendump(&qmp, path, Some(timeout))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<QmpClient>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
