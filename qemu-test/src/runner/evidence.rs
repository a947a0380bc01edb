//! What a failing test keeps besides its logs: a picture of its display
//! (`screen.png`), taken before the VM is killed or torn down.
//!
//! The watchdog kills a test's VMs at the deadline and after a guest crash,
//! from its own thread while the body still owns the machine: the picture
//! is taken through the machine's [`Remote`] (its QMP client, shared) just
//! before the kill. A body that fails by itself leaves its VM running; the
//! picture is taken before the teardown. A VM without a display gives no
//! picture, and no complaint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, QmpError};
use crate::machine::Remote;

/// The screenshot's file name in the artifact dir.
pub(crate) const SCREENSHOT: &str = "screen.png";

/// How long QEMU gets to write the screenshot.
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(3);

/// The evidence of one test's VM, shared by the watchdog and the trial.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Evidence {
    dir: PathBuf,
    remote: Remote,
    /// Set once the screenshot was tried: one per test.
    tried: Arc<AtomicBool>,
    /// What went wrong on the way, for the failure's notes.
    problems: Arc<Mutex<Vec<String>>>,
}

impl Evidence {
    /// The evidence of the machine reached through `remote`, kept in `dir`.
    pub(crate) fn new(dir: &Path, remote: Remote) -> Evidence {
        Evidence {
            dir: dir.to_path_buf(),
            remote,
            tried: Arc::default(),
            problems: Arc::default(),
        }
    }

    /// Saves `screen.png` if the VM runs and has a display (once: later
    /// calls do nothing).
    pub(crate) fn screenshot(&self) {
        if self.tried.swap(true, Ordering::SeqCst) {
            return;
        }
        let path = self.dir.join(SCREENSHOT);
        match self.remote.screendump(&path, SCREENSHOT_TIMEOUT) {
            // No display, or no VM any more: nothing to show.
            Ok(())
            | Err(Error::NoDisplay | Error::State(_))
            | Err(Error::Protocol(QmpError::Closed { .. })) => {}
            Err(e) => {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or_default();
                self.problem(format!("no screenshot: {first}"));
            }
        }
    }

    /// What went wrong while gathering the evidence.
    pub(crate) fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn problem(&self, text: String) {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text);
    }
}
