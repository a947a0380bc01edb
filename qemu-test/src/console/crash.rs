//! Spotting a guest kernel crash in the console output as it arrives: a
//! Linux panic, Oops or BUG line (optionally after its `[  12.345678]`
//! time stamp). The drain thread feeds every chunk through a
//! [`CrashWatch`]; the first crash line is kept and announced once.

use std::fmt;

/// The start of a kernel line that means the guest crashed.
const CRASH_LINES: &[&str] = &[
    "Kernel panic - not syncing",
    "Oops: ",
    "BUG: ",
    "kernel BUG at ",
    "general protection fault",
];

/// A guest kernel crash seen on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// The first crash line, without its time stamp.
    pub line: String,
    /// Where that line starts in the console's whole output.
    pub offset: usize,
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.line)
    }
}

/// Who is told about a crash, once.
pub(crate) type CrashHook = Box<dyn FnOnce(Crash) + Send>;

/// The crash state of one console: the partial line being read, the first
/// crash, and who to tell.
#[derive(Default)]
pub(crate) struct CrashWatch {
    /// The current line so far (capped), and where it starts.
    line: Vec<u8>,
    line_start: usize,
    crash: Option<Crash>,
    hooks: Vec<CrashHook>,
}

impl fmt::Debug for CrashWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashWatch")
            .field("crash", &self.crash)
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

/// The longest line prefix kept: crash lines are recognized by their start.
const LINE_PREFIX: usize = 256;

impl CrashWatch {
    /// Reads `chunk`, which starts at `offset` in the whole output; returns
    /// the hooks to call if it holds the first crash line (called by the
    /// drain thread outside its locks).
    pub(crate) fn feed(&mut self, chunk: &[u8], offset: usize) -> Option<(Crash, Vec<CrashHook>)> {
        if self.crash.is_some() {
            return None;
        }
        for (i, &byte) in chunk.iter().enumerate() {
            if byte == b'\n' || byte == b'\r' {
                if let Some(line) = crash_line(&self.line) {
                    let crash = Crash {
                        line,
                        offset: self.line_start,
                    };
                    self.crash = Some(crash.clone());
                    return Some((crash, std::mem::take(&mut self.hooks)));
                }
                self.line.clear();
                self.line_start = offset + i + 1;
            } else if self.line.len() < LINE_PREFIX {
                self.line.push(byte);
            }
        }
        None
    }

    /// The first crash seen so far.
    pub(crate) fn crash(&self) -> Option<&Crash> {
        self.crash.as_ref()
    }

    /// Tells `hook` about the first crash: now if it was seen already
    /// (returned for the caller to call), else when it is.
    pub(crate) fn on_crash(&mut self, hook: CrashHook) -> Option<(Crash, CrashHook)> {
        match &self.crash {
            Some(crash) => Some((crash.clone(), hook)),
            None => {
                self.hooks.push(hook);
                None
            }
        }
    }
}

/// The line without its time stamp, if it is a crash line.
fn crash_line(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_start();
    let text = match text.strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .map_or(text, |(_, after)| after.trim_start()),
        None => text,
    };
    CRASH_LINES
        .iter()
        .any(|start| text.starts_with(start))
        .then(|| text.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn crash_lines_are_found_with_or_without_time_stamps() {
        for line in [
            "[   12.345678] Kernel panic - not syncing: sysrq triggered crash",
            "Kernel panic - not syncing: VFS: Unable to mount root fs",
            "[    3.1] BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "[ 1.0] Oops: 0002 [#1] PREEMPT SMP NOPTI",
            "kernel BUG at mm/slub.c:123!",
        ] {
            assert!(crash_line(line.as_bytes()).is_some(), "{line}");
        }
        for line in [
            "you said: BUG: nope",
            "[ 1.0] random: crng init done",
            "login:",
        ] {
            assert!(crash_line(line.as_bytes()).is_none(), "{line}");
        }
        assert_eq!(
            crash_line(b"[ 9.9] Kernel panic - not syncing: x\r").as_deref(),
            Some("Kernel panic - not syncing: x")
        );
    }

    #[test]
    fn the_first_crash_is_told_once_across_chunks() {
        let mut watch = CrashWatch::default();
        let (tx, rx) = mpsc::channel();
        assert!(watch
            .on_crash(Box::new(move |c| tx.send(c).unwrap()))
            .is_none());
        assert!(watch.feed(b"boot\r\n[  1.0] Kernel pa", 0).is_none());
        let (crash, hooks) = watch.feed(b"nic - not syncing: x\r\nmore\n", 22).unwrap();
        assert_eq!(crash.line, "Kernel panic - not syncing: x");
        assert_eq!(crash.offset, 6);
        for hook in hooks {
            hook(crash.clone());
        }
        assert_eq!(rx.recv().unwrap(), crash);
        assert!(watch.feed(b"BUG: again\n", 60).is_none(), "only the first");
        // A hook added afterwards hears about it at once.
        let (crash_now, _hook) = watch.on_crash(Box::new(|_| ())).unwrap();
        assert_eq!(crash_now, crash);
    }
}
