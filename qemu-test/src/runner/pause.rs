//! `QEMU_TEST_ON_FAILURE=pause`: keep a failed test's VM running for a
//! human.
//!
//! In this mode every VM gets a second QMP monitor, a server socket in its
//! artifact dir (see [`super::artifacts::pause_monitor_args`]). When a test
//! fails with its VM still running, the runner prints how to reach it and
//! waits for Enter on the controlling terminal, then tears it down. Without
//! a terminal (CI, nextest without `--no-capture`... ) it does not wait.
//! One test pauses at a time.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

use crate::runner::Vm;

/// Prints how to attach to `vm` and waits for Enter on `/dev/tty`.
pub(crate) fn pause(test: &str, reason: &str, vm: &mut Vm, socket: &Path, dir: &Path) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    if !vm.is_running() {
        return;
    }
    let Ok(tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        eprintln!("note: QEMU_TEST_ON_FAILURE=pause, but there is no terminal to wait on: not pausing {test}");
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pid = vm.pid().map_or_else(|| "?".to_string(), |p| p.to_string());
    let socket = socket.display();
    let reason = reason.lines().next().unwrap_or("");
    let text = format!(
        "\n=== {test} failed; its VM (QEMU pid {pid}) is still running ===\n\
         reason:    {reason}\n\
         QMP:       socat - UNIX-CONNECT:{socket}\n\
         \x20          then {{\"execute\": \"qmp_capabilities\"}} and e.g. {{\"execute\": \"query-status\"}}\n\
         console:   tail -f {dir}/console.log   (output only; the runner holds the input)\n\
         gdb:       on QMP, {{\"execute\": \"human-monitor-command\", \"arguments\": {{\"command-line\": \"gdbserver tcp::1234\"}}}}\n\
         \x20          then gdb -ex 'target remote :1234'\n\
         artifacts: {dir}\n\
         Press Enter to tear the VM down and go on... ",
        dir = dir.display(),
    );
    let mut writer = &tty;
    let _ = writer.write_all(text.as_bytes());
    let _ = writer.flush();
    let mut line = String::new();
    let _ = BufReader::new(&tty).read_line(&mut line);
}
