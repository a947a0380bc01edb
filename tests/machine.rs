//! `Machine` against a real `qemu-system-x86_64 -S` (no guest code runs):
//! process lifetime, QMP, events, fd passing, monitor addresses.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use qemu_test::machine::MonitorAddr;
use qemu_test::{event_match, Error, EventError, Machine, QmpError};
use qemu_test_suite::{mode, pid_alive, signal};
use serde_json::{json, Value};

const X86: &str = "qemu-system-x86_64";

fn stopped_vm() -> Machine {
    Machine::builder(X86)
        .args(["-S", "-nodefaults", "-machine", "pc"])
        .qmp_timeout(Duration::from_secs(20))
        .build()
}

#[test]
fn launch_query_shutdown() {
    let mut vm = stopped_vm();
    assert_eq!(vm.pid(), None);
    vm.launch().unwrap();
    let pid = vm.pid().unwrap();
    assert!(vm.is_running());
    let temp = vm.temp_dir().unwrap().to_path_buf();
    let sock = vm.sock_dir().unwrap().to_path_buf();
    assert_eq!(mode(&temp), 0o700);
    assert_eq!(mode(&sock), 0o700);
    assert!(temp.starts_with(std::env::temp_dir()));
    let status = vm.command("query-status", json!({})).unwrap();
    assert_eq!(status["status"], "prelaunch");
    assert_eq!(status["running"], false);
    let whole = vm.qmp("query-status", Value::Null).unwrap();
    assert_eq!(whole["return"]["status"], "prelaunch");
    assert!(vm.command_line().iter().any(|a| a == "-S"));
    assert_eq!(vm.args(), ["-S", "-nodefaults", "-machine", "pc"]);
    vm.shutdown().unwrap();
    assert_eq!(vm.exit_code(), Some(0));
    assert!(!vm.is_running());
    assert!(!pid_alive(pid));
    assert!(
        !temp.exists() && !sock.exists(),
        "temp and sock dirs are removed"
    );
    // The seed's SHUTDOWN event is kept for after the shutdown.
    let ev = vm
        .event_wait(
            "SHUTDOWN",
            Duration::ZERO,
            Some(json!({"data": {"reason": "host-qmp-quit"}})),
        )
        .unwrap();
    assert_eq!(ev["data"]["guest"], false);
    // A second shutdown is a no-op, and the machine can be launched again.
    vm.shutdown().unwrap();
    vm.launch().unwrap();
    assert_eq!(
        vm.command("query-status", json!({})).unwrap()["status"],
        "prelaunch"
    );
    vm.shutdown().unwrap();
}

#[test]
fn the_temp_and_socket_dirs_are_made_on_first_use() {
    let base = tempfile::tempdir().unwrap();
    let listing = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let mut vm = Machine::builder(X86)
        .args(["-S", "-nodefaults", "-machine", "pc"])
        .base_temp_dir(base.path())
        .build();
    vm.launch().unwrap();
    // Socketpairs for QMP, QEMU's output in memory: no dir until asked for.
    assert!(listing().is_empty(), "{:?}", listing());
    assert_eq!(vm.log_dir(), None);
    let sock = vm.sock_dir().unwrap().to_path_buf();
    assert_eq!(vm.sock_dir(), Some(sock.as_path()), "made once");
    assert!(sock.starts_with(base.path()) && sock.is_dir());
    assert_eq!(mode(&sock), 0o700);
    let temp = vm.temp_dir().unwrap().to_path_buf();
    assert_eq!(vm.temp_dir(), Some(temp.as_path()), "made once");
    assert!(temp
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("qemu-machine-"));
    assert_eq!(listing().len(), 2);
    // QEMU's output is kept all the same.
    vm.shutdown().unwrap();
    assert!(listing().is_empty(), "{:?}", listing());
    // A relaunch starts without them again.
    vm.launch().unwrap();
    assert!(listing().is_empty(), "{:?}", listing());
    vm.shutdown().unwrap();
}

#[test]
fn qemu_output_without_a_log_dir_is_kept_in_memory() {
    let mut vm = Machine::builder(X86)
        .args(["-S", "-nodefaults", "-machine", "pc", "-d", "help"])
        .build();
    vm.set_qmp_monitor(false);
    vm.launch().unwrap();
    vm.wait(None).unwrap();
    // `-d help` lists the log items on stdout, and QEMU exits.
    assert!(vm.log().contains("guest_errors"), "{}", vm.log());
    assert_eq!(vm.log_dir(), None);
}

#[test]
fn qmp_errors_are_typed() {
    let mut vm = stopped_vm();
    match vm.command("no-such-command", json!({})) {
        Err(Error::State(msg)) => assert!(msg.contains("launch"), "{msg}"),
        other => panic!("expected a state error, got {other:?}"),
    }
    vm.launch().unwrap();
    match vm.command("no-such-command", json!({})) {
        Err(Error::Qmp {
            command,
            class,
            desc,
        }) => {
            assert_eq!(command, "no-such-command");
            assert_eq!(class, "CommandNotFound");
            assert!(desc.contains("no-such-command"), "{desc}");
        }
        other => panic!("expected Error::Qmp, got {other:?}"),
    }
    match vm.command("human-monitor-command", json!({"no-such-arg": 1})) {
        Err(Error::Qmp { class, .. }) => assert_eq!(class, "GenericError"),
        other => panic!("expected Error::Qmp, got {other:?}"),
    }
    // Arguments must be an object.
    assert!(vm.command("query-status", json!([1])).is_err());
    // conv_keys turns Rust-style names into QMP names.
    let hmp = vm
        .command(
            "human-monitor-command",
            qemu_test::qmp::conv_keys(json!({"command_line": "info version"})),
        )
        .unwrap();
    assert!(
        hmp.as_str().unwrap().contains("7.") || hmp.as_str().unwrap().contains('.'),
        "{hmp}"
    );
    vm.shutdown().unwrap();
}

#[test]
fn launch_failure_carries_qemu_output() {
    let mut vm = Machine::builder(X86)
        .args(["-S", "-no-such-option"])
        .build();
    let err = vm.launch().unwrap_err();
    match &err {
        Error::Launch {
            exit_code,
            command,
            output,
            ..
        } => {
            assert_eq!(*exit_code, Some(1));
            assert!(command.iter().any(|a| a == "-no-such-option"));
            assert!(
                output.contains("-no-such-option: invalid option"),
                "{output}"
            );
        }
        other => panic!("expected Error::Launch, got {other:?}"),
    }
    let text = format!("{err:?}");
    assert!(
        text.contains("invalid option") && text.contains("caused by"),
        "{text}"
    );
    assert!(!vm.is_running());
    assert_eq!(vm.pid(), None);
}

/// `is_running` finds that QEMU exited without reaping it: its pid stays
/// reserved (a zombie) until the machine reaps it, so the kill that drop
/// and `kill` send by pid can never reach a process that reused the pid.
#[test]
fn is_running_leaves_an_exited_qemu_for_the_machine_to_reap() {
    let mut vm = stopped_vm();
    vm.launch().unwrap();
    let pid = vm.pid().unwrap();
    // Quit behind the machine's back: QEMU exits by itself, as far as the
    // machine knows.
    let _ = vm.qmp("quit", Value::Null);
    qemu_test_suite::wait_for("QEMU to exit", Duration::from_secs(20), || !vm.is_running());
    assert!(!vm.is_running());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(
        stat.rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z'),
        "not a zombie: {stat}"
    );
    drop(vm);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "dropping the machine reaped QEMU"
    );
}

#[test]
fn missing_binary_is_a_launch_error() {
    let mut vm = Machine::new("/nonexistent/qemu-system-none");
    match vm.launch() {
        Err(Error::Launch {
            exit_code: None,
            cause,
            ..
        }) => {
            assert!(
                cause
                    .to_string()
                    .contains("starting /nonexistent/qemu-system-none"),
                "{cause}"
            )
        }
        other => panic!("expected a launch error, got {other:?}"),
    }
}

#[test]
fn shutdown_of_a_qemu_that_ignores_quit_kills_it() {
    let mut vm = stopped_vm();
    vm.launch().unwrap();
    let pid = vm.pid().unwrap();
    // A stopped process cannot answer `quit`.
    signal(pid, rustix::process::Signal::STOP);
    let err = vm.shutdown_timeout(Duration::from_millis(500)).unwrap_err();
    assert!(matches!(err, Error::AbnormalShutdown { .. }), "{err:?}");
    assert_eq!(vm.exit_code(), Some(-9));
    assert!(!pid_alive(pid));
}

#[test]
fn kill_and_drop_leave_no_process() {
    let mut vm = stopped_vm();
    vm.launch().unwrap();
    let pid = vm.pid().unwrap();
    vm.kill();
    assert_eq!(vm.exit_code(), Some(-9));
    assert!(!pid_alive(pid));

    let mut vm = stopped_vm();
    vm.launch().unwrap();
    let pid = vm.pid().unwrap();
    let temp = vm.temp_dir().unwrap().to_path_buf();
    drop(vm);
    assert!(!pid_alive(pid));
    assert!(!temp.exists());
}

#[test]
fn wait_for_a_guest_that_never_powers_off_is_abnormal() {
    let mut vm = stopped_vm();
    vm.launch().unwrap();
    let err = vm.wait(Duration::from_millis(300)).unwrap_err();
    match err {
        Error::AbnormalShutdown { cause, .. } => {
            assert!(matches!(*cause, Error::WaitTimeout { .. }), "{cause:?}")
        }
        other => panic!("{other:?}"),
    }
}

/// B1 (issue 16): without QMP, `wait` used to send SIGTERM at once and
/// return after a few ms; it must wait the whole timeout and never signal.
#[test]
fn wait_without_qmp_never_signals() {
    let mut vm = Machine::builder(X86)
        .args(["-S", "-machine", "none"])
        .build();
    vm.set_qmp_monitor(false);
    vm.launch().unwrap();
    let started = std::time::Instant::now();
    let err = vm.wait(Duration::from_secs(3)).unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    match err {
        Error::AbnormalShutdown { cause, log } => {
            assert!(matches!(*cause, Error::WaitTimeout { .. }), "{cause:?}");
            assert!(!log.contains("terminating on signal"), "{log}");
        }
        other => panic!("{other:?}"),
    }
    // Killed after the timeout: by our SIGKILL, not a SIGTERM.
    assert_eq!(vm.exit_code(), Some(-9));
}

/// B1: a QEMU that exits by itself (an empty `-cpu`) reports its own exit
/// code to `wait`, not one of a signal racing it; `None` is the default
/// timeout.
#[test]
fn wait_reports_qemus_own_exit_code() {
    let mut vm = Machine::builder(X86)
        .args(["-S", "-machine", "none", "-cpu", ""])
        .build();
    vm.set_qmp_monitor(false);
    vm.launch().unwrap();
    vm.wait(None).unwrap();
    assert_eq!(vm.exit_code(), Some(1));
    assert!(
        vm.log().contains("-cpu option cannot be empty"),
        "{}",
        vm.log()
    );
}

#[test]
fn commands_from_several_threads_each_get_their_own_reply() {
    const THREADS: usize = 4;
    const CALLS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let mut vm = Machine::builder(X86)
        .args(["-S", "-nodefaults"])
        .name("vm")
        .log_dir(dir.path())
        .qmp_timeout(Duration::from_secs(20))
        .build();
    vm.launch().unwrap();
    let qmp = vm.qmp_client().unwrap();
    std::thread::scope(|scope| {
        let callers: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    for i in 0..CALLS {
                        // Replies that name their command: an HMP error
                        // message and a QMP error description.
                        let word = format!("no-such-command-{t}-{i}");
                        let out = qmp
                            .command("human-monitor-command", json!({"command-line": word}))
                            .unwrap();
                        assert!(out.as_str().unwrap().contains(&word), "{out} for {word}");
                        let path = format!("/no-such-path-{t}-{i}");
                        match qmp.command("qom-list", json!({ "path": path })) {
                            Err(Error::Qmp { desc, .. }) => {
                                assert!(desc.contains(&path), "{desc} for {path}")
                            }
                            other => panic!("{other:?} for {path}"),
                        }
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
    });
    assert_eq!(qmp.stray_replies(), 0);
    vm.shutdown().unwrap();
    // Every command is in the transcript, with or without an id.
    let transcript = std::fs::read_to_string(dir.path().join("vm-qmp.jsonl")).unwrap();
    let sent: Vec<Value> = transcript
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["dir"] == "send")
        .map(|l| l["msg"].clone())
        .collect();
    // qmp_capabilities, the commands, quit.
    assert_eq!(sent.len(), 2 + THREADS * CALLS * 2);
    assert!(sent[0].get("id").is_none(), "a lone command goes bare");
}

#[test]
fn events_reach_a_waiting_thread_while_others_keep_the_monitor_busy() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const RESETS: usize = 3;
    let mut vm = stopped_vm();
    vm.launch().unwrap();
    let qmp = vm.qmp_client().unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let done = &done;
        let busy = scope.spawn(move || {
            let mut calls = 0;
            while !done.load(Ordering::Relaxed) {
                let status = qmp.command("query-status", json!({})).unwrap();
                assert_eq!(status["status"], "prelaunch");
                calls += 1;
            }
            calls
        });
        let waiter = scope.spawn(move || {
            let mut resets = 0;
            while resets < RESETS {
                match qmp.pull_event(qemu_test::Wait::For(Duration::from_secs(20))) {
                    Ok(Some(event)) if event["event"] == "RESET" => resets += 1,
                    Ok(Some(_)) => {}
                    other => panic!("no RESET event: {other:?}"),
                }
            }
        });
        for _ in 0..RESETS {
            qmp.command("system_reset", json!({})).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        waiter.join().unwrap();
        done.store(true, Ordering::Relaxed);
        assert!(busy.join().unwrap() > 0);
    });
    assert_eq!(qmp.stray_replies(), 0);
    vm.shutdown().unwrap();
}

#[test]
fn qemu_killed_mid_command_fails_the_command_promptly() {
    let mut vm = stopped_vm();
    vm.launch().unwrap();
    let pid = vm.pid().unwrap();
    signal(pid, rustix::process::Signal::KILL);
    let err = vm.command("query-status", json!({})).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol(QmpError::Closed { .. }) | Error::Protocol(QmpError::Io { .. })
        ),
        "{err:?}"
    );
    let _ = vm.shutdown();
    assert_eq!(vm.exit_code(), Some(-9));
}

#[test]
fn without_qmp_shutdown_uses_sigterm() {
    let mut vm = stopped_vm();
    vm.set_qmp_monitor(false);
    vm.launch().unwrap();
    assert!(!vm.command_line().iter().any(|a| a.contains("id=mon")));
    assert!(matches!(
        vm.command("query-status", json!({})),
        Err(Error::State(_))
    ));
    vm.shutdown_timeout(Duration::from_secs(10)).unwrap();
    // QEMU re-raises the signal after cleaning up.
    assert_eq!(vm.exit_code(), Some(-15));
    // (QEMU prints "terminating on signal 15" only if its handler was
    // installed by then; without QMP there is no telling when it is.)
}

#[test]
fn monitor_on_a_unix_path_and_on_tcp() {
    let base = tempfile::Builder::new()
        .prefix("with,comma-")
        .tempdir()
        .unwrap();
    let mut vm = Machine::builder(X86)
        .args(["-S", "-nodefaults"])
        .sock_dir(base.path())
        .monitor(MonitorAddr::Unix("qmp,x.sock".into()))
        .build();
    vm.launch().unwrap();
    let sock = vm.sock_dir().unwrap().join("qmp,x.sock");
    assert!(sock.exists());
    assert!(
        vm.command_line().iter().any(|a| a.contains("qmp,,x.sock")),
        "{:?}",
        vm.command_line()
    );
    assert_eq!(
        vm.command("query-status", json!({})).unwrap()["status"],
        "prelaunch"
    );
    vm.shutdown().unwrap();
    assert!(!sock.exists());

    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut vm = Machine::builder(X86)
        .args(["-S", "-nodefaults"])
        .monitor(MonitorAddr::Tcp(addr))
        .build();
    vm.launch().unwrap();
    assert_eq!(
        vm.command("query-status", json!({})).unwrap()["status"],
        "prelaunch"
    );
    // fd passing needs a Unix socket.
    let f = File::open("/dev/null").unwrap();
    assert!(vm.send_fd_scm(&f).is_err());
    vm.shutdown().unwrap();
}

#[test]
fn fd_passing_add_fd_and_scm_rights() {
    let dir = tempfile::tempdir().unwrap();
    let file = File::create(dir.path().join("disk.raw")).unwrap();
    let mut vm = stopped_vm();
    vm.add_fd(&file, 3, "my disk, really").unwrap();
    vm.add_monitor_null();
    vm.launch().unwrap();
    let fdsets = vm.command("query-fdsets", json!({})).unwrap();
    let set = fdsets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fdset-id"] == 3)
        .expect("fd set 3 exists");
    assert_eq!(set["fds"][0]["opaque"], "my disk, really");

    // Without a passed fd, getfd fails; with one, it succeeds.
    assert!(vm.command("getfd", json!({"fdname": "f1"})).is_err());
    vm.send_fd_scm(&file).unwrap();
    vm.command("getfd", json!({"fdname": "f1"})).unwrap();
    vm.command("closefd", json!({"fdname": "f1"})).unwrap();
    assert!(vm.command("closefd", json!({"fdname": "f1"})).is_err());
    vm.send_file_scm(dir.path().join("disk.raw")).unwrap();
    vm.command("add-fd", json!({"fdset-id": 7})).unwrap();
    let fdsets = vm.command("query-fdsets", json!({})).unwrap();
    assert!(fdsets
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["fdset-id"] == 7));
    assert!(file.as_raw_fd() >= 0);
    vm.shutdown().unwrap();
}

#[test]
fn events_are_cached_like_the_seed() {
    let mut vm = stopped_vm();
    vm.launch().unwrap();
    assert_eq!(vm.get_qmp_event(false).unwrap(), None);
    vm.command("cont", json!({})).unwrap();
    vm.command("stop", json!({})).unwrap();
    vm.command("cont", json!({})).unwrap();
    // Waiting for STOP caches the RESUME before it.
    let stop = vm
        .event_wait("STOP", Duration::from_secs(10), None)
        .unwrap();
    assert_eq!(stop["event"], "STOP");
    // The second RESUME: matched by pattern among cached and new events.
    let resume = vm
        .events_wait(
            &[("NOPE", None), ("RESUME", Some(json!({"event": "RESUME"})))],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(resume["event"], "RESUME");
    let rest = vm.get_qmp_events(Duration::from_secs(5)).unwrap();
    let names: Vec<&str> = rest.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["RESUME"], "one RESUME remains, cached");
    assert!(rest
        .iter()
        .all(|e| event_match(e, &json!({"timestamp": null}))));
    vm.command("stop", json!({})).unwrap();
    vm.clear_events();
    vm.command("cont", json!({})).unwrap();
    assert_eq!(
        vm.get_qmp_event(Duration::from_secs(5)).unwrap().unwrap()["event"],
        "RESUME"
    );
    match vm.event_wait("NEVER", Duration::from_millis(200), None) {
        Err(Error::Event(EventError::Timeout { wanted, .. })) => assert_eq!(wanted, "NEVER"),
        other => panic!("{other:?}"),
    }
    vm.shutdown().unwrap();
}

#[test]
fn transcript_and_log_files_in_the_log_dir() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut vm = Machine::builder(X86)
        .args(["-S", "-nodefaults"])
        .name("vm1")
        .log_dir(&logs)
        .build();
    vm.launch().unwrap();
    vm.command("query-status", json!({})).unwrap();
    // The reply is on disk soon, not only once the machine is gone.
    let logged = |what: &str| {
        std::fs::read_to_string(logs.join("vm1-qmp.jsonl"))
            .unwrap()
            .contains(what)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !logged("prelaunch") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(logged("prelaunch"), "the query-status reply is logged");
    vm.shutdown().unwrap();
    let transcript = std::fs::read_to_string(logs.join("vm1-qmp.jsonl")).unwrap();
    let lines: Vec<Value> = transcript
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines[0]["msg"]["QMP"].is_object(),
        "greeting first: {}",
        lines[0]
    );
    assert!(lines.iter().all(|l| l["time"].as_f64().unwrap() > 1.0e9));
    let sent: Vec<&str> = lines
        .iter()
        .filter(|l| l["dir"] == "send")
        .filter_map(|l| l["msg"]["execute"].as_str())
        .collect();
    assert_eq!(sent, ["qmp_capabilities", "query-status", "quit"]);
    assert!(lines
        .iter()
        .any(|l| l["dir"] == "recv" && l["msg"]["event"] == "SHUTDOWN"));
    assert!(logs.join("vm1.log").exists());
    assert_eq!(mode(&logs), 0o700);
}

#[test]
fn arguments_reach_qemu_verbatim_and_wrappers_work() {
    let weird = "a,, b $(touch /tmp/qemu-test-pwned) 'q' \"dq\" ü `x`";
    let mut vm = Machine::builder(X86)
        .wrapper(["env", "QEMU_TEST_WRAPPED=1"])
        .args(["-S", "-nodefaults", "-name", weird])
        .build();
    vm.launch().unwrap();
    let name = vm.command("query-name", json!({})).unwrap();
    assert_eq!(
        name["name"],
        "a, b $(touch /tmp/qemu-test-pwned) 'q' \"dq\" ü `x`"
    );
    assert!(!std::path::Path::new("/tmp/qemu-test-pwned").exists());
    let environ = std::fs::read(format!("/proc/{}/environ", vm.pid().unwrap())).unwrap();
    assert!(environ
        .split(|b| *b == 0)
        .any(|v| v == b"QEMU_TEST_WRAPPED=1"));
    assert_eq!(vm.command_line()[..2], ["env", "QEMU_TEST_WRAPPED=1"]);
    vm.shutdown().unwrap();
}

#[test]
fn deadline_caps_every_wait() {
    let mut vm = stopped_vm();
    vm.launch().unwrap();
    vm.set_deadline(Some(std::time::Instant::now() + Duration::from_millis(300)));
    match vm.event_wait("NEVER", Duration::from_secs(60), None) {
        Err(Error::Event(EventError::Timeout { timeout, .. })) => {
            assert!(timeout <= Duration::from_millis(300))
        }
        other => panic!("{other:?}"),
    }
    vm.set_deadline(None);
    vm.command("query-status", json!({})).unwrap();
    vm.shutdown().unwrap();
}

#[test]
fn console_is_detached_without_set_console() {
    let mut vm = stopped_vm();
    vm.launch().unwrap();
    let err = vm.console().wait_for("x").unwrap_err();
    assert!(err.to_string().contains("no console"), "{err}");
    vm.shutdown().unwrap();
    let _ = std::io::stdout().flush();
}
