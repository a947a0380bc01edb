//! `Machine` and `Console` against the real echo guest on
//! `qemu-system-aarch64 -M virt`, and the serial-ports firmware on x86.

use std::time::Duration;

use qemu_test::{guest, ConsoleError, Machine, Pattern};
use serde_json::json;

fn echo_vm() -> Machine {
    let kernel = guest::ECHO_SHELL_AARCH64.path().unwrap();
    let mut vm = Machine::builder("qemu-system-aarch64")
        .args(["-cpu", "max", "-nodefaults", "-kernel"])
        .arg(kernel.to_str().unwrap())
        .build();
    vm.set_machine("virt");
    vm.set_console(None, 0);
    vm
}

fn flood_pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz"[i % 36])
        .collect()
}

#[test]
fn boots_echoes_and_answers_qmp() {
    let mut vm = echo_vm();
    vm.launch().unwrap();
    let console = vm.console();
    let m = console.wait_for("login: ").unwrap();
    assert_eq!(m.before, b"\r\nqemu-test echo shell\r\n");
    console
        .exec_and_wait("hello", "you said: hello\r\n$ ")
        .unwrap();
    assert_eq!(
        vm.command("query-status", json!({})).unwrap()["running"],
        true
    );
    // The cursor moved past the first answer: it does not match again.
    let m = console
        .with_timeout(Duration::from_millis(300))
        .wait_for_any(&[Pattern::regex(r"said: (\w+)").unwrap()]);
    assert!(matches!(m, Err(ConsoleError::Timeout { .. })), "{m:?}");
    vm.shutdown().unwrap();
    assert_eq!(vm.exit_code(), Some(0));
}

#[test]
fn poweroff_emits_shutdown_and_qemu_exits() {
    let mut vm = echo_vm();
    vm.launch().unwrap();
    vm.console().wait_for("login:").unwrap();
    vm.console().send_line("poweroff").unwrap();
    let ev = vm
        .event_wait(
            "SHUTDOWN",
            Duration::from_secs(10),
            Some(json!({"data": {"guest": true}})),
        )
        .unwrap();
    assert_eq!(ev["data"]["reason"], "guest-shutdown");
    vm.wait(Duration::from_secs(10)).unwrap();
    assert_eq!(vm.exit_code(), Some(0));
    // The console saw the whole exchange, then closed.
    assert!(
        vm.console()
            .output()
            .ends_with("poweroff\r\npowering off\r\n"),
        "{:?}",
        vm.console().output()
    );
}

#[test]
fn reset_emits_reset_and_reboots() {
    let mut vm = echo_vm();
    vm.launch().unwrap();
    let console = vm.console();
    console.wait_for("login:").unwrap();
    console.send_line("reset").unwrap();
    let ev = vm
        .event_wait(
            "RESET",
            Duration::from_secs(10),
            Some(json!({"data": {"guest": true}})),
        )
        .unwrap();
    assert_eq!(ev["data"]["reason"], "guest-reset");
    console.wait_for("qemu-test echo shell\r\nlogin: ").unwrap();
    console.exec_and_wait("again", "you said: again").unwrap();
    // A host-initiated reset too.
    vm.command("system_reset", json!({})).unwrap();
    vm.event_wait(
        "RESET",
        Duration::from_secs(10),
        Some(json!({"data": {"guest": false}})),
    )
    .unwrap();
    console.wait_for("login:").unwrap();
    vm.shutdown().unwrap();
}

#[test]
fn a_failure_pattern_fails_fast_and_a_hung_guest_still_shuts_down() {
    let mut vm = echo_vm();
    vm.launch().unwrap();
    let console = vm.console();
    console.wait_for("login:").unwrap();
    console.send_line("panic").unwrap();
    let err = console
        .with_timeout(Duration::from_secs(30))
        .wait_for_any(&[Pattern::text("$ "), Pattern::text("guest panic").fails()])
        .unwrap_err();
    match &err {
        ConsoleError::Failure { pattern, tail, .. } => {
            assert_eq!(pattern, "\"guest panic\"");
            assert!(tail.contains("guest panic"), "{tail}");
        }
        other => panic!("{other:?}"),
    }
    // The hung guest ignores input; a wait on it times out with the tail.
    console.send_line("hello").unwrap();
    match console
        .with_timeout(Duration::from_millis(300))
        .wait_for("you said")
    {
        Err(ConsoleError::Timeout { tail, .. }) => {
            assert!(tail.ends_with("guest panic"), "{tail:?}")
        }
        other => panic!("{other:?}"),
    }
    vm.shutdown().unwrap();
    assert_eq!(vm.exit_code(), Some(0));
}

#[test]
fn a_flood_arrives_byte_exact_in_memory_and_in_the_log() {
    const N: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let kernel = guest::ECHO_SHELL_AARCH64.path().unwrap();
    let mut vm = Machine::builder("qemu-system-aarch64")
        .args(["-cpu", "max", "-nodefaults", "-kernel"])
        .arg(kernel.to_str().unwrap())
        .console_log(&log)
        .build();
    vm.set_machine("virt");
    vm.set_console(None, 0);
    vm.launch().unwrap();
    let console = vm.console().with_timeout(Duration::from_secs(60));
    console.wait_for("login: ").unwrap();
    console.send_line(&format!("flood {N}")).unwrap();
    let m = console.wait_for("\r\nflood done\r\n").unwrap();
    let echo = format!("flood {N}\r\n");
    assert_eq!(&m.before[..echo.len()], echo.as_bytes());
    assert!(
        m.before[echo.len()..] == flood_pattern(N)[..],
        "flood bytes differ"
    );
    console.send_line("bytes").unwrap();
    let m = console.wait_for("\r\nbytes done\r\n").unwrap();
    let all: Vec<u8> = (0..=255u8).collect();
    assert!(
        m.before.ends_with(&all),
        "all 256 byte values, NUL and invalid UTF-8 included"
    );
    vm.shutdown().unwrap();
    let logged = std::fs::read(&log).unwrap();
    assert_eq!(
        logged,
        vm.console().output_bytes(),
        "the log holds exactly what the console saw"
    );
    assert!(logged.windows(256).any(|w| w == all.as_slice()));
}

/// The console is pipes on QEMU's stdio, unless QEMU's stdio is taken (a
/// wrapper, or arguments that use it): then a socketpair. Both carry input,
/// output and the end of QEMU alike.
#[test]
fn the_console_on_pipes_and_on_a_socketpair() {
    let kernel = guest::ECHO_SHELL_AARCH64.path().unwrap();
    let builder = || {
        Machine::builder("qemu-system-aarch64")
            .args(["-cpu", "max", "-nodefaults", "-kernel"])
            .arg(kernel.to_str().unwrap())
    };
    let machines = [
        (builder().build(), "stdio,id=console,signal=off"),
        (builder().wrapper(["env"]).build(), "socket,id=console,fd="),
        (
            builder().args(["-monitor", "stdio"]).build(),
            "socket,id=console,fd=",
        ),
    ];
    for (mut vm, chardev) in machines {
        vm.set_machine("virt");
        vm.set_console(None, 0);
        vm.launch().unwrap();
        assert!(
            vm.command_line().iter().any(|a| a.starts_with(chardev)),
            "{chardev}: {:?}",
            vm.command_line()
        );
        let console = vm.console().with_timeout(Duration::from_secs(60));
        console.wait_for("login: ").unwrap();
        console.send_line("flood 100000").unwrap();
        let m = console.wait_for("\r\nflood done\r\n").unwrap();
        assert!(m.before.ends_with(&flood_pattern(100_000)), "{chardev}");
        console.send_line("poweroff").unwrap();
        vm.wait(Duration::from_secs(30)).unwrap();
        // QEMU is gone: the console says so instead of waiting.
        let err = console.wait_for("never").unwrap_err();
        assert!(
            matches!(err, ConsoleError::Closed { .. }),
            "{chardev}: {err}"
        );
    }
}

#[test]
fn console_on_the_second_port_and_on_a_device() {
    let bios = guest::SERIAL_PORTS_X86_64.path().unwrap();
    let launch = |device: Option<&str>, index: u32| {
        let mut vm = Machine::builder("qemu-system-x86_64")
            .args(["-nodefaults", "-bios"])
            .arg(bios.to_str().unwrap())
            .build();
        vm.set_machine("q35");
        vm.set_console(device, index);
        vm.launch().unwrap();
        let line = vm
            .console()
            .wait_for_regex(r"qemu-test serial port \d \(0x[0-9a-f]+\)\r\n")
            .unwrap()
            .text();
        vm.shutdown().unwrap();
        line
    };
    assert_eq!(launch(None, 0), "qemu-test serial port 0 (0x3f8)\r\n");
    assert_eq!(launch(None, 1), "qemu-test serial port 1 (0x2f8)\r\n");
    assert_eq!(
        launch(Some("isa-serial"), 0),
        "qemu-test serial port 0 (0x3f8)\r\n"
    );
    assert_eq!(
        launch(Some("isa-serial"), 2),
        "qemu-test serial port 2 (0x3e8)\r\n"
    );
}

#[test]
fn console_waits_are_capped_by_the_machine_deadline() {
    let mut vm = echo_vm();
    vm.launch().unwrap();
    vm.console().wait_for("login:").unwrap();
    vm.set_deadline(Some(std::time::Instant::now() + Duration::from_millis(200)));
    match vm
        .console()
        .with_timeout(Duration::from_secs(60))
        .wait_for("never")
    {
        Err(ConsoleError::Timeout { timeout, .. }) => {
            assert!(timeout <= Duration::from_millis(200))
        }
        other => panic!("{other:?}"),
    }
    vm.shutdown().unwrap();
}

#[test]
fn a_ten_megabyte_flood_loses_nothing() {
    const N: usize = 10_000_000;
    let mut vm = echo_vm();
    vm.launch().unwrap();
    let console = vm.console().with_timeout(Duration::from_secs(120));
    console.wait_for("login: ").unwrap();
    console.send_line(&format!("flood {N}")).unwrap();
    // QMP stays responsive while the guest floods: the drain thread keeps
    // QEMU's chardev writable.
    assert_eq!(
        vm.command("query-status", json!({})).unwrap()["running"],
        true
    );
    let m = console.wait_for("\r\nflood done\r\n").unwrap();
    let echo = format!("flood {N}\r\n");
    let body = &m.before[echo.len()..];
    assert_eq!(body.len(), N, "bytes lost or added");
    assert!(body == flood_pattern(N).as_slice(), "flood bytes differ");
    vm.shutdown().unwrap();
}

#[test]
fn a_saved_state_resumes_at_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("echo, booted.state");
    let mut vm = echo_vm();
    vm.launch().unwrap();
    vm.console().wait_for("login: ").unwrap();
    vm.console()
        .exec_and_wait("before", "you said: before\r\n$ ")
        .unwrap();
    vm.save_state(&state, Duration::from_secs(60)).unwrap();
    assert_eq!(
        vm.command("query-status", json!({})).unwrap()["running"],
        false
    );
    vm.shutdown().unwrap();
    assert!(std::fs::metadata(&state).unwrap().len() > 0);

    // Two machines from the same state: each resumes where it was saved,
    // without booting again, and neither sees the other's input.
    for word in ["first", "second"] {
        let mut vm = echo_vm();
        vm.restore_from(Some(state.clone()));
        vm.launch().unwrap();
        assert_eq!(
            vm.command("query-status", json!({})).unwrap()["status"],
            "running"
        );
        vm.console()
            .exec_and_wait(word, &format!("you said: {word}\r\n$ "))
            .unwrap();
        let out = vm.console().output();
        assert!(
            !out.contains("login:") && !out.contains("before"),
            "restored, not rebooted: {out:?}"
        );
        vm.shutdown().unwrap();
    }

    // A missing state file is a launch error, not a hang.
    let mut vm = echo_vm();
    vm.restore_from(Some(dir.path().join("missing.state")));
    assert!(matches!(vm.launch(), Err(qemu_test::Error::Launch { .. })));
}
