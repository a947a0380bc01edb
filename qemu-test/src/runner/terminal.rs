//! The person at the terminal, for the modes that need one
//! (`QEMU_TEST_ON_FAILURE=pause`, `QEMU_TEST_GDB`): `/dev/tty`, the
//! process's controlling terminal, whatever libtest or nextest do with
//! stdout and stderr. Without one (CI, a process started without a
//! terminal) these modes say why on stderr and do not wait. One test at a
//! time has the person's attention ([`Terminal::turn`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The controlling terminal, open for reading and writing.
#[derive(Debug)]
pub(crate) struct Terminal(File);

impl Terminal {
    /// The controlling terminal, if the process has one.
    pub(crate) fn open() -> Option<Terminal> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()
            .map(Terminal)
    }

    /// Waits until no other test of this process has the terminal.
    pub(crate) fn turn() -> MutexGuard<'static, ()> {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shows `text`.
    pub(crate) fn say(&self, text: &str) {
        let mut out = &self.0;
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// Waits for Enter.
    pub(crate) fn wait_for_enter(&self) {
        let mut line = String::new();
        let _ = BufReader::new(&self.0).read_line(&mut line);
    }

    /// Whether Enter was pressed within `timeout` (the line is read).
    pub(crate) fn enter_within(&self, timeout: Duration) -> bool {
        match crate::os::wait_readable(&self.0, Some(Instant::now() + timeout)) {
            Ok(true) => {
                self.wait_for_enter();
                true
            }
            _ => false,
        }
    }
}
