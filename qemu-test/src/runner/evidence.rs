//! What a failing test keeps besides its logs: a picture of its display
//! (`screen.png`), taken before the VM is killed or torn down, and the
//! guest kernel's whole log (`dmesg.txt`).
//!
//! The watchdog kills a test's VMs at the deadline and after a guest crash,
//! from its own thread while the body still owns the machine: the picture
//! is taken through the machine's [`Remote`] (its QMP client, shared) just
//! before the kill. A body that fails by itself leaves its VM running; the
//! picture is taken before the teardown. A VM without a display gives no
//! picture, and no complaint.
//!
//! The kernel log comes through the [`Shell`](crate::Shell) of a Linux
//! guest whose VM still runs after the failure (a shell answered on its
//! console before, or the console showed a Linux boot), within a few
//! seconds: a guest whose shell does not answer gives none. The console shows only the messages at the console's log level;
//! `dmesg` has them all.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, QmpError};
use crate::machine::Remote;
use crate::runner::Vm;
use crate::timeline::{self, Timeline};

/// The screenshot's file name in the artifact dir.
pub(crate) const SCREENSHOT: &str = "screen.png";

/// The kernel log's file name in the artifact dir.
pub(crate) const DMESG: &str = "dmesg.txt";

/// How long the guest's shell gets to answer and print its kernel log:
/// finding the shell (the agent, else the console) and one command, on a
/// TCG guest of a loaded host (5 s was seen to run out under load 7).
const DMESG_TIMEOUT: Duration = Duration::from_secs(15);

/// How long QEMU gets to write the screenshot.
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(3);

/// The evidence of one test's VM, shared by the watchdog and the trial.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Evidence {
    dir: PathBuf,
    remote: Remote,
    timeline: Timeline,
    /// Set once the screenshot was tried: one per test.
    tried: Arc<AtomicBool>,
    /// What went wrong on the way, for the failure's notes.
    problems: Arc<Mutex<Vec<String>>>,
}

impl Evidence {
    /// The evidence of the machine reached through `remote`, kept in `dir`;
    /// how long each piece took goes to `timeline`.
    pub(crate) fn new(dir: &Path, remote: Remote, timeline: Timeline) -> Evidence {
        Evidence {
            dir: dir.to_path_buf(),
            remote,
            timeline,
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
        let started = Instant::now();
        let taken = self.remote.screendump(&path, SCREENSHOT_TIMEOUT);
        let outcome = match taken {
            Ok(()) => "taken".to_string(),
            Err(Error::NoDisplay) => "no display".to_string(),
            // No VM any more: nothing to show.
            Err(Error::State(_) | Error::Protocol(QmpError::Closed { .. })) => "no VM".to_string(),
            Err(e) => {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or_default().to_string();
                self.problem(format!("no screenshot: {first}"));
                first
            }
        };
        self.timeline.step("screenshot", started, || {
            timeline::detail([("result", outcome.into())])
        });
    }

    /// Saves the guest kernel's log as `dmesg.txt`, if `vm` runs a Linux
    /// guest whose shell answers within [`DMESG_TIMEOUT`]. Lifts the test's
    /// deadline (the verdict is in; the teardown lifts it anyway).
    pub(crate) fn dmesg(&self, vm: &mut Vm) {
        let console = vm.console();
        let linux = console.shell_answered()
            || memchr::memmem::find(&console.output_bytes(), b"Linux version ").is_some();
        if !linux || !vm.is_running() {
            return;
        }
        vm.set_deadline(None);
        let started = Instant::now();
        let out = vm.shell().with_timeout(DMESG_TIMEOUT).run("dmesg");
        let result = match out {
            Ok(out) if out.success() => {
                match std::fs::write(self.dir.join(DMESG), out.stdout_bytes()) {
                    Ok(()) => "saved".to_string(),
                    Err(e) => {
                        self.problem(format!("could not write {DMESG}: {e}"));
                        format!("not saved: {e}")
                    }
                }
            }
            Ok(out) => format!("dmesg exited with status {}", out.status),
            Err(e) => timeline::excerpt(e.to_string().lines().next().unwrap_or_default(), 200),
        };
        self.timeline.step("dmesg", started, || {
            timeline::detail([("result", result.into())])
        });
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
