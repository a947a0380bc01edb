//! `--qemu-test-cache COMMAND`: a test binary lists or prunes the caches
//! ([`crate::cache`]) instead of running tests. It is taken off the command
//! line before libtest-mimic parses it, so libtest never sees it:
//!
//! ```text
//! cargo test --test vm -- --qemu-test-cache list
//! cargo test --test vm -- --qemu-test-cache prune       # stale entries
//! cargo test --test vm -- --qemu-test-cache prune-all   # everything not in use
//! ```

use std::ffi::OsString;
use std::process::ExitCode;

use crate::cache::{self, Caches};
use crate::runner::{artifacts, env};

const FLAG: &str = "--qemu-test-cache";

/// Runs the cache command if `args` (the whole command line) holds one;
/// `None` if it does not.
pub(crate) fn intercept(args: &[OsString]) -> Option<ExitCode> {
    let command = match command(args)? {
        Ok(command) => command,
        Err(e) => return Some(fail(&e)),
    };
    let caches = match Caches::new() {
        Ok(caches) => caches,
        Err(e) => return Some(fail(&format!("cannot open the cache dir: {e}"))),
    };
    // The snapshot store the runner uses: under the artifact root.
    let configured = env::config().ok().and_then(|c| c.artifacts.clone());
    let snapshots = artifacts::root(configured.as_deref()).join("snapshots");
    let caches = Caches::at(caches.root(), Some(snapshots));
    Some(match cache::command(&caches, &command) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    })
}

/// The command after `--qemu-test-cache` (or `--qemu-test-cache=...`).
fn command(args: &[OsString]) -> Option<Result<String, String>> {
    let mut args = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == FLAG {
            return Some(
                args.next()
                    .map(|c| c.into_owned())
                    .ok_or_else(|| format!("{FLAG} needs a command: list, prune or prune-all")),
            );
        }
        if let Some(command) = arg.strip_prefix(FLAG).and_then(|r| r.strip_prefix('=')) {
            return Some(Ok(command.to_string()));
        }
    }
    None
}

/// Prints `error: MESSAGE` and ends the run with a failure.
pub(super) fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_flag_is_found_in_both_spellings() {
        assert_eq!(command(&args(&["t", "--exact", "x"])), None);
        assert_eq!(
            command(&args(&["t", "--qemu-test-cache", "list"])),
            Some(Ok("list".into()))
        );
        assert_eq!(
            command(&args(&["t", "--qemu-test-cache=prune"])),
            Some(Ok("prune".into()))
        );
        assert!(matches!(
            command(&args(&["t", "--qemu-test-cache"])),
            Some(Err(e)) if e.contains("needs a command")
        ));
        // The program name is never the flag.
        assert_eq!(command(&args(&["--qemu-test-cache"])), None);
    }
}
