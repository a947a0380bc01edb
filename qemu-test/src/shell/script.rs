//! The text a `Shell` types: probes, and the script that frames a command
//! (see the [module docs](super) for what it does and why).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::error::ShellError;

/// The longest line the typed script may have: Linux's canonical-mode line
/// buffer holds 4095 characters plus the newline.
const MAX_LINE: usize = 4095;

/// The capture file of the shell process that runs the script.
const CAPTURE: &str = "/tmp/.qt-$$";

/// The most stdout a command may print to have it sent as it is (if it is
/// text) instead of base64: the shell reads it with its `read` builtin, a
/// byte per system call.
const RAW_MAX: usize = 1024;

/// A line that turns echo off and prints `@qt-N-ready@`; with `cleanup`,
/// also removes the capture files an interrupted command left. Starts with
/// Ctrl-U, which discards anything typed on the line so far. (During boot
/// the start of a probe may be lost, so boot-time probes only hold commands
/// whose every suffix is harmless.)
pub(super) fn probe(nonce: &str, cleanup: bool) -> String {
    let cleanup = if cleanup { "rm -f /tmp/.qt-*; " } else { "" };
    let ready = print_marker(nonce, "ready");
    format!("\x15stty -echo 2>/dev/null; {cleanup}{ready}\r")
}

/// A line that only prints `@qt-N-ready@` (a shell builtin), after Ctrl-U.
pub(super) fn quick_probe(nonce: &str) -> String {
    format!("\x15{}\r", print_marker(nonce, "ready"))
}

/// A `printf` of the line `@qt-N-WHICH@`, typed in two halves: the typed
/// text never contains the marker it prints.
pub(super) fn print_marker(nonce: &str, which: &str) -> String {
    format!("printf '%s%s\\n' '@qt-{nonce}' '-{which}@'")
}

/// A `printf` of `@qt-N-status-STATUS-` (`status` is a shell word), typed
/// in two halves like [`print_marker`]'s.
pub(super) fn print_status(nonce: &str, status: &str) -> String {
    format!("printf '%s-status-%s-' '@qt-{nonce}' {status}")
}

/// The script typed for `command` (see the module docs).
pub(super) fn script(command: &str, nonce: &str) -> Result<String, ShellError> {
    let invalid = |reason: String| {
        let mut shown: String = command.chars().take(200).collect();
        if shown.len() < command.len() {
            shown.push('…');
        }
        ShellError::InvalidCommand {
            command: shown,
            reason,
        }
    };
    if let Some(c) = command
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(format!(
            "it contains the control character {c:?}, which the terminal would interpret"
        )));
    }
    // This shell's capture file (`$__qt_f`): emptied by a redirection
    // after use, not removed (see the module docs).
    let (file, encoded) = ("$__qt_f", encoded("$__qt_f"));
    // Ctrl-U first: discards anything typed on the line before. `true >F`
    // checks that the capture file can be written before the command runs
    // (its error goes to the console, i.e. into `stderr`); if it cannot,
    // the size field stays empty, which `parse` reports. `read` stops at a
    // NUL or after `RAW_MAX + 1` bytes with status 0; 1 means it reached
    // the end of the file, so `__qt_o` holds all of it, and if that is
    // text it is sent as it is (a shell without `read -n`/`-d`, like dash,
    // fails with 2: base64 then).
    let (start, status, end) = (
        print_marker(nonce, "start"),
        print_status(nonce, "\"$__qt_s\""),
        print_marker(nonce, "end"),
    );
    let script = format!(
        "\x15__qt_f={CAPTURE}; {start}; if true >{file}; then ( {command}\n) </dev/null >{file}; __qt_s=$?; \
         {status}; \
         if [ -s {file} ]; then IFS= read -r -n {raw_read} -d '' __qt_o <{file} 2>/dev/null; \
         case $?:$__qt_o in 1:*[![:print:][:blank:]'\n']*|[!1]*|1[!:]*) {encoded};; \
         *) printf 'r%s:%s' \"${{#__qt_o}}\" \"$__qt_o\";; esac; true 2>/dev/null >{file}; \
         elif [ -e {file} ]; then echo 0; else echo; fi; \
         else {no_file}; echo; fi; {end}\r",
        no_file = print_status(nonce, "2"),
        raw_read = RAW_MAX + 1,
    );
    if let Some(line) = script.split(['\n', '\r']).find(|l| l.len() > MAX_LINE) {
        return Err(invalid(format!(
            "a line of it is {} bytes with the framing; the terminal takes at most {MAX_LINE}",
            line.len()
        )));
    }
    Ok(script)
}

/// The part of a script that sends the capture file `file` as base64: its
/// size, then its contents.
pub(super) fn encoded(file: &str) -> String {
    format!("wc -c <{file}; base64 <{file}")
}

/// The script typed when stdout sent as it is did not arrive intact: the
/// shell still holds it in `__qt_o` and sends it again as base64, framed
/// like a command that exited with `status`.
pub(super) fn resend_script(nonce: &str, status: i32) -> String {
    let (file, encoded) = (CAPTURE, encoded(CAPTURE));
    let (start, status, end) = (
        print_marker(nonce, "start"),
        print_status(nonce, &status.to_string()),
        print_marker(nonce, "end"),
    );
    format!(
        "\x15{start}; {status}; \
         if printf '%s' \"$__qt_o\" >{file}; then {encoded}; true 2>/dev/null >{file}; else echo; fi; {end}\r"
    )
}

/// A path quoted for the shell.
pub(super) fn quote(path: &str) -> Result<String, ShellError> {
    shlex::try_quote(path)
        .map(|q| q.into_owned())
        .map_err(|e| ShellError::InvalidCommand {
            command: path.to_string(),
            reason: format!("cannot quote the path: {e}"),
        })
}

/// 16 hex digits, different for every call in every process.
pub(super) fn nonce() -> String {
    use std::hash::{BuildHasher, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = RandomState::new().hash_one((n, Instant::now(), std::process::id()));
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_never_contain_their_markers() {
        let s = script("echo hi", "abc").unwrap();
        for marker in ["@qt-abc-start@", "@qt-abc-status-", "@qt-abc-end@"] {
            assert!(!s.contains(marker), "{s}");
        }
        assert!(s.contains("( echo hi\n) </dev/null"), "{s}");
        assert!(!probe("abc", true).contains("@qt-abc-ready@"));
    }

    #[test]
    fn untypeable_commands_are_rejected() {
        assert!(matches!(
            script("echo \x03", "n"),
            Err(ShellError::InvalidCommand { .. })
        ));
        assert!(matches!(
            script("a\rb", "n"),
            Err(ShellError::InvalidCommand { .. })
        ));
        assert!(script("echo a\n\techo b", "n").is_ok());
        let long = format!("echo {}", "x".repeat(5000));
        let err = script(&long, "n").unwrap_err();
        assert!(err.to_string().contains("4095"), "{err}");
        assert!(script(
            &format!("echo {}\necho {}", "x".repeat(3000), "y".repeat(3000)),
            "n"
        )
        .is_ok());
    }

    #[test]
    fn nonces_differ() {
        let a: std::collections::HashSet<String> = (0..1000).map(|_| nonce()).collect();
        assert_eq!(a.len(), 1000);
    }

    #[test]
    fn the_resend_script_never_contains_its_markers() {
        let s = resend_script("abc", 4);
        for marker in ["@qt-abc-start@", "@qt-abc-status-", "@qt-abc-end@"] {
            assert!(!s.contains(marker), "{s}");
        }
        assert!(s.contains("'@qt-abc' 4;"), "{s}");
    }
}
