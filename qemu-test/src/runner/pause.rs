//! `QEMU_TEST_ON_FAILURE=pause`: keep a failed test's VM running for a
//! person.
//!
//! In this mode every VM gets a second QMP monitor, a server socket in its
//! artifact dir (see [`super::artifacts::pause_monitor_args`]). When a test
//! fails with its VM still running, the runner hands the guest's console
//! over on a socket in the artifact dir (see [`Console::hand_over`]: the
//! recent output first, then both ways), prints how to reach both and how
//! to attach gdb, and waits for Enter on the terminal, then tears the VM
//! down. Without a terminal (CI, nextest without `--no-capture`... ) it
//! says so and does not wait. One test pauses at a time.
//!
//! [`Console::hand_over`]: crate::console::Console

use std::os::unix::net::UnixListener;
use std::path::Path;

use serde_json::json;

use crate::runner::artifacts::{plain_socket_in, socket_in};
use crate::runner::terminal::Terminal;
use crate::runner::Vm;

/// How much of the guest's recent output a person connecting to the
/// console sees first.
const REPLAY: usize = 8 * 1024;

/// Prints how to reach `vm` (its second monitor listens on `socket`),
/// hands its console over, and waits for Enter on the terminal.
pub(crate) fn pause(test: &str, reason: &str, vm: &mut Vm, socket: &Path, dir: &Path) {
    if !vm.is_running() {
        return;
    }
    let Some(terminal) = Terminal::open() else {
        eprintln!("note: QEMU_TEST_ON_FAILURE=pause, but there is no terminal to wait on: not pausing {test}");
        return;
    };
    let _turn = Terminal::turn();
    let console_socket = socket_in(dir, "console.sock");
    let _ = std::fs::remove_file(&console_socket);
    let handover = UnixListener::bind(&console_socket)
        .and_then(|listener| vm.console().hand_over(listener, REPLAY));
    let console = match &handover {
        Ok(_) => format!(
            "{}\n\x20          (Ctrl-] leaves; if what you type does not show, type `stty echo`)",
            socat(&["-,raw,echo=0,escape=0x1d"], &console_socket)
        ),
        Err(e) => format!(
            "tail -f {}   (output only: the console could not be handed over: {e})",
            dir.join("console.log").display()
        ),
    };
    let pid = vm.pid().map_or_else(|| "?".to_string(), |p| p.to_string());
    let gdb_socket = plain_socket_in(dir, "gdb.sock");
    let gdbserver = json!({
        "execute": "human-monitor-command",
        "arguments": {"command-line": format!(
            "gdbserver unix:{},server=on,wait=off",
            crate::qemu_opts::escape_opt(&gdb_socket.to_string_lossy())
        )},
    });
    let gdb = crate::runner::gdb::command(None, &gdb_socket, None);
    let reason = reason.lines().next().unwrap_or("");
    terminal.say(&format!(
        "\n=== {test} failed; its VM (QEMU pid {pid}) is still running ===\n\
         reason:    {reason}\n\
         console:   {console}\n\
         QMP:       {qmp}\n\
         \x20          then {{\"execute\": \"qmp_capabilities\"}} and e.g. {{\"execute\": \"query-status\"}}\n\
         gdb:       on QMP, {gdbserver}\n\
         \x20          then {gdb}\n\
         artifacts: {dir}\n\
         Press Enter to tear the VM down and go on... ",
        qmp = socat(&["-"], socket),
        dir = dir.display(),
    ));
    terminal.wait_for_enter();
    drop(handover);
    let _ = std::fs::remove_file(&console_socket);
    let _ = std::fs::remove_file(&gdb_socket);
}

/// `socat <first...> UNIX-CONNECT:<socket>`, quoted for a shell, with the
/// characters socat's address syntax gives a meaning (`:` and `,` in a
/// test's name...) escaped.
fn socat(first: &[&str], socket: &Path) -> String {
    let mut address = String::from("UNIX-CONNECT:");
    for c in socket.to_string_lossy().chars() {
        if matches!(
            c,
            '\\' | ':' | ',' | '!' | '"' | '\'' | '(' | ')' | '[' | ']' | '{' | '}'
        ) {
            address.push('\\');
        }
        address.push(c);
    }
    let mut args: Vec<String> = vec!["socat".into()];
    args.extend(first.iter().map(|a| a.to_string()));
    args.push(address);
    crate::machine::shell_join(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socat_addresses_escape_what_socat_would_split() {
        let line = socat(&["-"], Path::new("/a/m::t,x/qmp-pause.sock"));
        // What the shell hands socat.
        assert_eq!(
            shlex::split(&line).unwrap(),
            ["socat", "-", "UNIX-CONNECT:/a/m\\:\\:t\\,x/qmp-pause.sock"]
        );
    }
}
