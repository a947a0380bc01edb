//! `QEMU_TEST_GDB`: debug a test's guest with gdb.
//!
//! `QEMU_TEST_GDB=<test name>` (or `1` for every test) starts the test's
//! VM halted (`-S`), with QEMU's gdbstub on a Unix socket of its own (in
//! the artifact dir, or the runner's private state dir when that path has
//! a `:`, which gdb would take for `host:port`; never a fixed TCP port:
//! tests run in parallel), and
//! prints the `gdb` command line that attaches to it: with `file
//! <vmlinux>` when `QEMU_TEST_VMLINUX` names a kernel with debug symbols
//! (a distribution kernel has none), and `gdb-multiarch` for a guest of
//! another architecture than the host's. The runner then waits, with no
//! deadline, until the VM runs (gdb's `continue`, or Enter on the
//! terminal), and the test goes on. A person at a breakpoint makes any
//! deadline meaningless, so the test runs without one.
//!
//! It needs a terminal: without one the runner says so and runs the test
//! as usual.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::machine::Machine;
use crate::qemu_opts::escape_opt;
use crate::runner::env::{Config, GdbTarget};
use crate::runner::terminal::Terminal;
use crate::timeline::Timeline;

/// A test's gdb session, before its VM is launched.
#[derive(Debug)]
pub(crate) struct Session {
    /// Where QEMU's gdbstub listens.
    pub(crate) socket: PathBuf,
    terminal: Terminal,
}

impl Session {
    /// The session of test `name`, if `QEMU_TEST_GDB` asks for one and
    /// there is a terminal; the stub's socket goes in `dir`.
    pub(crate) fn wanted(config: &Config, name: &str, dir: &Path) -> Option<Session> {
        let wanted = match &config.gdb {
            None => false,
            Some(GdbTarget::All) => true,
            Some(GdbTarget::Test(test)) => test == name,
        };
        if !wanted {
            return None;
        }
        let Some(terminal) = Terminal::open() else {
            eprintln!(
                "note: QEMU_TEST_GDB: there is no terminal to wait on, so {name} runs as usual \
                 (run it from a terminal, with nextest's --no-capture)"
            );
            return None;
        };
        let socket = crate::runner::artifacts::plain_socket_in(dir, "gdb.sock");
        let _ = std::fs::remove_file(&socket);
        Some(Session { socket, terminal })
    }

    /// QEMU's arguments: halted, the gdbstub on the socket.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "-S".into(),
            "-gdb".into(),
            format!(
                "unix:{},server=on,wait=off",
                escape_opt(&self.socket.to_string_lossy())
            ),
        ]
    }

    /// Prints how to attach and waits, without a deadline, until the VM
    /// runs: gdb's `continue` (QEMU's `RESUME` event), or Enter (then the
    /// runner resumes it). A VM that already runs (restored from a booted
    /// snapshot) is stopped first.
    pub(crate) fn attend(
        &self,
        test: &str,
        machine: &mut Machine,
        (arch, vmlinux): (Option<&str>, Option<&Path>),
        timeline: &Timeline,
    ) -> Result<(), crate::error::Error> {
        let _turn = Terminal::turn();
        let started = Instant::now();
        let (tx, rx) = mpsc::channel();
        let qmp = machine.qmp_client()?;
        qmp.on_event(
            "RESUME",
            Box::new(move |_| {
                let _ = tx.send(());
            }),
        );
        if qmp.command("query-status", json!({}))?["running"] == true {
            qmp.command("stop", json!({}))?;
            // The stop's own events are not the person's.
            while rx.try_recv().is_ok() {}
        }
        self.terminal
            .say(&instructions(test, &self.socket, arch, vmlinux));
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
            if self.terminal.enter_within(Duration::from_millis(100)) {
                qmp.command("cont", json!({}))?;
                break;
            }
        }
        self.terminal
            .say(&format!("=== {test}: the VM runs; the test goes on ===\n"));
        timeline.step("gdb", started, serde_json::Map::new);
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// What the person reads.
fn instructions(test: &str, socket: &Path, arch: Option<&str>, vmlinux: Option<&Path>) -> String {
    let gdb = command(arch, socket, vmlinux);
    let symbols = match vmlinux {
        Some(_) => String::new(),
        None => {
            "\n           (no symbols: set QEMU_TEST_VMLINUX to a vmlinux with debug info)".into()
        }
    };
    format!(
        "\n=== {test}: its VM is halted, waiting for gdb (QEMU_TEST_GDB) ===\n\
         gdb:       {gdb}{symbols}\n\
         then set breakpoints and `continue`; the test goes on when the VM runs\n\
         \x20          (it has no deadline while you debug).\n\
         Or press Enter to run it without gdb... ",
    )
}

/// The `gdb` command line, shell-quoted.
pub(crate) fn command(arch: Option<&str>, socket: &Path, vmlinux: Option<&Path>) -> String {
    let host = std::env::consts::ARCH;
    let gdb = match arch {
        Some(arch) if arch != host => "gdb-multiarch",
        _ => "gdb",
    };
    let mut args = vec![gdb.to_string(), "-q".into()];
    if let Some(vmlinux) = vmlinux {
        args.push(vmlinux.to_string_lossy().into_owned());
    }
    args.extend(["-ex".into(), format!("target remote {}", socket.display())]);
    crate::machine::shell_join(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_attaches_to_the_socket_with_symbols_when_given() {
        let socket = Path::new("/a/m::t/gdb.sock");
        let host = std::env::consts::ARCH;
        assert_eq!(
            command(Some(host), socket, None),
            "gdb -q -ex 'target remote /a/m::t/gdb.sock'"
        );
        let other = if host == "aarch64" {
            "x86_64"
        } else {
            "aarch64"
        };
        assert_eq!(
            command(Some(other), socket, Some(Path::new("/k/vmlinux"))),
            "gdb-multiarch -q /k/vmlinux -ex 'target remote /a/m::t/gdb.sock'"
        );
    }
}
