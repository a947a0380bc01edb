//! Progress of an asset's fetch on stderr, each line prefixed with
//! `qemu-test: asset <file>:`. On a terminal the download is a bar redrawn
//! in place (at most ten times a second); otherwise each step is a line
//! (the download, the check, the decompression, where it went).

// Without the `assets` feature only `say` is used (nothing is downloaded).
#![cfg_attr(not(feature = "assets"), allow(dead_code))]

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) use crate::guest::linux::size;

/// One bar at a time: concurrent fetches in one process print lines.
static BAR: Mutex<()> = Mutex::new(());

/// How often the bar is redrawn.
const REDRAW: Duration = Duration::from_millis(100);

/// The progress of one asset's fetch.
#[derive(Debug)]
pub(crate) struct Progress {
    label: String,
    tty: bool,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    /// Progress lines for the asset whose file is `name`.
    pub(crate) fn new(name: &str) -> Progress {
        Progress {
            label: format!("qemu-test: asset {name}"),
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            drawn: None,
        }
    }

    /// One line about the fetch.
    pub(crate) fn say(&self, what: impl std::fmt::Display) {
        let _bar = BAR.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!("{}: {what}", self.label);
    }

    /// The download has `done` of `total` bytes: the bar, on a terminal.
    pub(crate) fn bytes(&mut self, done: u64, total: Option<u64>) {
        if !self.tty {
            return;
        }
        let due = self.drawn.is_none_or(|at| at.elapsed() >= REDRAW);
        if !due {
            return;
        }
        // Another fetch draws its bar: this one waits for its lines.
        let Ok(_bar) = BAR.try_lock() else {
            return;
        };
        self.drawn = Some(Instant::now());
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let line = bar_line(done, total, rate);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}: {line}", self.label);
        let _ = err.flush();
    }

    /// Ends the bar (on a terminal), so that the next line starts clean.
    pub(crate) fn end_bar(&mut self) {
        if self.tty && self.drawn.take().is_some() {
            let _bar = BAR.lock().unwrap_or_else(|e| e.into_inner());
            eprint!("\r\x1b[2K");
        }
    }

    /// The time since the fetch started, for the last line.
    pub(crate) fn elapsed(&self) -> String {
        format!("{:.1} s", self.started.elapsed().as_secs_f64())
    }
}

/// `[#########...........]  45%  12.3 MB of 27.0 MB  5.1 MB/s`, or without
/// a total: `12.3 MB  5.1 MB/s`.
fn bar_line(done: u64, total: Option<u64>, rate: f64) -> String {
    const WIDTH: u64 = 30;
    let speed = format!("{}/s", size(rate as u64));
    match total.filter(|t| *t > 0) {
        Some(total) => {
            let done = done.min(total);
            let filled = (done * WIDTH / total) as usize;
            format!(
                "[{}{}] {:>3}%  {} of {}  {speed}",
                "#".repeat(filled),
                ".".repeat(WIDTH as usize - filled),
                done * 100 / total,
                size(done),
                size(total)
            )
        }
        None => format!("{}  {speed}", size(done)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_show_the_share_done() {
        assert_eq!(
            bar_line(5_000_000, Some(20_000_000), 2_500_000.0),
            "[#######.......................]  25%  5.0 MB of 20.0 MB  2.5 MB/s"
        );
        assert_eq!(
            bar_line(20_000_000, Some(20_000_000), 1e6),
            format!("[{}] 100%  20.0 MB of 20.0 MB  1.0 MB/s", "#".repeat(30))
        );
        assert_eq!(bar_line(1_500, None, 500.0), "1 kB  500 bytes/s");
    }
}
