//! A person debugging a test: `QEMU_TEST_ON_FAILURE=pause` hands the
//! failed test's console over on a socket (the recent output first, then
//! both ways), and `QEMU_TEST_GDB` starts a test's VM halted until gdb (or
//! Enter) lets it run. Both need a terminal: the fixture runs under
//! `script` (util-linux), which gives it one; without one they say so and
//! go on. Drives `evidence-fixture` on real QEMU.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use qemu_test_suite::isolated;

const FIXTURE: &str = env!("CARGO_BIN_EXE_evidence-fixture");

/// The fixture running on a terminal of its own: what it prints there,
/// line by line, and its keyboard.
struct OnTerminal {
    child: Child,
    keys: ChildStdin,
    lines: Receiver<String>,
    seen: Vec<String>,
    _root: tempfile::TempDir,
}

impl OnTerminal {
    fn start(test: &str, envs: &[(&str, &str)]) -> OnTerminal {
        let root = tempfile::tempdir().unwrap();
        let fixture = shlex::try_join([FIXTURE, "--exact", test]).unwrap();
        let mut cmd = Command::new("script");
        cmd.args(["-qfec", &fixture, "/dev/null"]);
        let mut child = isolated(cmd, envs, root.path())
            .env(
                "QEMU_TEST_GUESTS_DIR",
                std::env::var_os("QEMU_TEST_GUESTS_DIR").unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs the fixture on a terminal");
        let keys = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
                let _ = tx.send(String::from_utf8_lossy(&line).trim_end().to_string());
            }
        });
        OnTerminal {
            child,
            keys,
            lines,
            seen: Vec::new(),
            _root: root,
        }
    }

    /// The first line that contains `text`, waiting up to `limit`.
    fn line_with(&mut self, text: &str, limit: Duration) -> String {
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    // A skipped test (no Linux guest here) pauses for nobody.
                    if line.contains(text) || line.starts_with("note: skipping") {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {text:?} in:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn press_enter(&mut self) {
        self.keys.write_all(b"\r").unwrap();
    }

    /// Its exit code, and everything it printed.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.try_iter());
        (status.code(), self.seen.join("\n"))
    }
}

/// The last word of a printed command line, as the shell would read it.
fn last_word(line: &str) -> String {
    shlex::split(line)
        .and_then(|words| words.last().cloned())
        .expect("a command line")
}

/// Whether the fixture's test was skipped (no Linux guest here).
fn skipped(text: &str) -> bool {
    let skipped = text.contains("note: skipping");
    if skipped {
        eprintln!("{text}");
    }
    skipped
}

#[test]
fn a_paused_failure_hands_the_console_over() {
    let mut run = OnTerminal::start(
        "debug::fails_with_a_shell",
        &[("QEMU_TEST_ON_FAILURE", "pause")],
    );
    let line = run.line_with("console:   socat", Duration::from_secs(120));
    if skipped(&line) {
        return;
    }
    // socat's address syntax: the `:` of the test's name are escaped.
    let address = last_word(&line);
    let socket = PathBuf::from(
        address
            .strip_prefix("UNIX-CONNECT:")
            .unwrap()
            .replace('\\', ""),
    );
    let mut console =
        UnixStream::connect(&socket).unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
    console
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The recent output first, then the guest answers what we type.
    read_until(&mut console, "ready-for-a-person");
    console.write_all(b"echo handover-$((6*7))\r").unwrap();
    read_until(&mut console, "handover-42");
    drop(console);
    run.press_enter();
    let (code, text) = run.finish();
    assert_eq!(code, Some(101), "{text}");
    assert!(text.contains("Press Enter to tear the VM down"), "{text}");
    assert!(
        !socket.exists(),
        "the console socket is left: {}",
        socket.display()
    );
    // The QMP line escapes its socket for socat too.
    let qmp = text
        .lines()
        .find(|l| l.starts_with("QMP:       socat - "))
        .expect(&text);
    assert!(
        last_word(qmp).ends_with("debug\\:\\:fails_with_a_shell/qmp-pause.sock"),
        "{qmp}"
    );
}

/// Reads from `stream` until `text` came; panics after its read timeout.
fn read_until(stream: &mut UnixStream, text: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(text) {
        let n = stream.read(&mut buf).unwrap_or_else(|e| {
            panic!("{e} before {text:?} in:\n{}", String::from_utf8_lossy(&got))
        });
        assert!(
            n > 0,
            "closed before {text:?}:\n{}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn gdb_mode_waits_for_gdb_then_the_test_goes_on() {
    let mut run = OnTerminal::start(
        "debug::boots_after_gdb",
        &[("QEMU_TEST_GDB", "debug::boots_after_gdb")],
    );
    let line = run.line_with("target remote", Duration::from_secs(60));
    let words = shlex::split(line.trim_start_matches("gdb:").trim()).unwrap();
    assert_eq!(&words[..2], ["gdb", "-q"], "{line}");
    let have_gdb = Command::new("gdb").arg("--version").output().is_ok();
    if have_gdb {
        // The printed command, in batch mode: the halted CPU's reset
        // vector, then `detach`, which lets the VM run.
        let out = Command::new("gdb")
            .args(&words[1..])
            .args(["-batch", "-ex", "info registers rip", "-ex", "detach"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("0xfff0"),
            "{said}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("note: no gdb here: letting the VM run with Enter instead");
        run.press_enter();
    }
    run.line_with("the VM runs; the test goes on", Duration::from_secs(30));
    let (code, text) = run.finish();
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn without_a_terminal_gdb_mode_says_so_and_runs_the_test() {
    use std::os::unix::process::CommandExt;
    let root = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(FIXTURE);
    cmd.args(["--exact", "debug::boots_after_gdb"]);
    // A session of its own: no controlling terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let out = isolated(cmd, &[("QEMU_TEST_GDB", "1")], root.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("note: QEMU_TEST_GDB: there is no terminal to wait on, so debug::boots_after_gdb runs as usual"), "{stderr}");
}
