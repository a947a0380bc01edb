//! Progress of a Linux guest build on stderr: one line per phase, each
//! prefixed with `qemu-test: linux-<arch>:`, so a test run that stops for
//! a first-use build says what it is doing and where the result goes.

use std::time::Instant;

/// Prints the phases of one build (or nothing, when turned off).
#[derive(Debug)]
pub(crate) struct Progress {
    name: String,
    on: bool,
    started: Instant,
}

impl Progress {
    pub(crate) fn new(name: &str, on: bool) -> Progress {
        Progress {
            name: name.to_string(),
            on,
            started: Instant::now(),
        }
    }

    /// One line about the build.
    pub(crate) fn say(&self, what: impl std::fmt::Display) {
        if self.on {
            eprintln!("qemu-test: {}: {what}", self.name);
        }
    }

    /// The time since the build started, for the last line.
    pub(crate) fn elapsed(&self) -> String {
        format!("{:.1} s", self.started.elapsed().as_secs_f64())
    }
}

/// A size for humans: `26.9 MB`, `928 kB`.
pub(crate) fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{} kB", b / 1_000),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_for_humans() {
        assert_eq!(super::size(26_912_345), "26.9 MB");
        assert_eq!(super::size(928_188), "928 kB");
        assert_eq!(super::size(12), "12 bytes");
    }
}
