//! `Shell` over the console against the real Linux guest
//! (`guest::LINUX_X86_64`, built on first use; skipped on a host that
//! cannot build it, a failure under `QEMU_TEST_REQUIRE=1`): status and
//! output round trips, byte-exact megabytes, marker look-alikes, commands
//! that hang, file copies.
//!
//! The guest's agent would serve `vm.shell()` over the data channel, so
//! every test here asks for the console transport
//! (`vm.shell().console_only()`): it is what guests without the agent
//! get, and its typed scripts, capture files and interrupts are what these
//! tests check. `linux_agent.rs` checks the same contract over the agent.
//!
//! Every test starts from the booted snapshot `linux-shell` (made once per
//! run, or found from an earlier one; see `linux_snapshot.rs`), so each
//! resumes at the shell instead of booting for about 4 s on TCG.

use qemu_test::prelude::*;
use qemu_test::shell::Shell;
use qemu_test::ShellError;

/// The whole byte range, repeated: 256 << 12 = 1 MiB. Built in the guest
/// with `printf` octal escapes, so the host knows every byte.
fn megabyte() -> Vec<u8> {
    (0..1usize << 20).map(|i| (i % 256) as u8).collect()
}

/// The shell's one capture file is there and empty. (This command prints
/// to stderr, so its own capture stays empty too.)
fn assert_one_empty_capture_file(sh: &Shell) -> TestResult {
    let listing = sh.run("wc -c /tmp/.qt-* >&2")?.stderr;
    let fields: Vec<&str> = listing.split_whitespace().collect();
    assert!(
        matches!(fields[..], ["0", file] if file.starts_with("/tmp/.qt-")),
        "{listing:?}"
    );
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn succeed_and_fail(vm: &mut Vm) -> TestResult {
    let sh = vm.shell().console_only();
    assert_eq!(sh.succeed("echo hello")?, "hello\n");
    assert_eq!(sh.succeed("true")?, "");
    assert_eq!(sh.fail("false")?, "");
    assert_eq!(sh.fail("echo out; exit 7")?, "out\n");
    match sh.succeed("echo to-stdout; echo to-stderr >&2; exit 3") {
        Err(ShellError::Failed {
            status: 3,
            stdout,
            stderr,
            ..
        }) => {
            assert_eq!(stdout, "to-stdout\n");
            assert!(stderr.contains("to-stderr"), "{stderr:?}");
        }
        other => panic!("expected Failed with status 3, got {other:?}"),
    }
    assert!(matches!(sh.fail("true"), Err(ShellError::Succeeded { .. })));
    // Each command has its own subshell: `exit` does not end the shell,
    // `cd` does not carry over; stdin is /dev/null, not the console.
    assert_eq!(sh.run("exit 42")?.status, 42);
    sh.succeed("cd /proc")?;
    assert_eq!(sh.succeed("pwd")?, "/root\n");
    assert_eq!(sh.succeed("cat; echo eof")?, "eof\n");
    // Multi-line commands, quotes, tabs, dollar signs.
    assert_eq!(
        sh.succeed("for i in 1 2 3\ndo\n\techo \"$i'\"\ndone")?,
        "1'\n2'\n3'\n"
    );
    assert_eq!(
        sh.succeed("printf '%s\\n' '$HOME' \"$HOME\"")?,
        "$HOME\n/root\n"
    );
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "180s")]
fn every_exit_status_round_trips(vm: &mut Vm) -> TestResult {
    let sh = vm.shell().console_only();
    for status in 0..=255 {
        let out = sh.run(&format!("exit {status}"))?;
        assert_eq!(out.status, status, "exit {status}");
    }
    // Killed by a signal: 128 + N, like any shell.
    assert_eq!(sh.run("sh -c 'kill -TERM $$'")?.status, 128 + 15);
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "180s")]
fn megabyte_of_binary_output_is_exact(vm: &mut Vm) -> TestResult {
    let sh = vm
        .shell()
        .console_only()
        .with_timeout(Duration::from_secs(120));
    sh.succeed(
        "printf \"$(printf '\\\\%03o' $(seq 0 255))\" >/tmp/b && \
         for i in $(seq 12); do cat /tmp/b /tmp/b >/tmp/c && mv /tmp/c /tmp/b; done && wc -c </tmp/b",
    )
    .map(|size| assert_eq!(size, "1048576\n"))?;
    let started = std::time::Instant::now();
    let out = sh.run("cat /tmp/b")?;
    eprintln!("1 MiB of output in {:.2?}", started.elapsed());
    assert_eq!(out.status, 0);
    assert!(
        out.stdout_bytes() == megabyte().as_slice(),
        "1 MiB differs ({} bytes came back)",
        out.stdout_bytes().len()
    );
    // The megabyte does not stay in the guest's /tmp: the shell's one
    // capture file is emptied after each command.
    assert_one_empty_capture_file(&sh)?;
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn output_that_looks_like_markers(vm: &mut Vm) -> TestResult {
    let sh = vm.shell().console_only();
    // The nonce of the next command cannot be guessed, but everything
    // around it can: prefixes, whole markers of other nonces, on both
    // streams, with and without newlines.
    let tricky = "@qt-@qt-0123456789abcdef-end@\n@qt-0123456789abcdef-status-0-0@\n@qt-\n-ready@";
    let cmd = format!("printf '%s' '{tricky}'; printf '%s' '{tricky}' >&2");
    let out = sh.run(&cmd)?;
    assert_eq!(out.status, 0);
    assert_eq!(out.stdout, tricky);
    assert!(out.stderr.contains("-status-0-0@"), "{:?}", out.stderr);
    // Output without a final newline, and control bytes.
    assert_eq!(sh.succeed("printf 'no newline'")?, "no newline");
    assert_eq!(
        sh.run("printf 'a\\r\\nb\\003\\033[0m'")?.stdout_bytes(),
        b"a\r\nb\x03\x1b[0m"
    );
    // Kernel messages while a command runs go to `stderr` at worst.
    let out = sh.run("echo 'qemu-test: hello from the kernel' >/dev/kmsg; dmesg -n 7; echo '<3>qemu-test: an error' >/dev/kmsg; seq 1000")?;
    let expected: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    assert_eq!(out.stdout, expected);
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn hanging_command_is_interrupted(vm: &mut Vm) -> TestResult {
    let sh = vm.shell().console_only();
    sh.sync()?;
    let started = std::time::Instant::now();
    let err = sh
        .with_timeout(Duration::from_secs(3))
        .run("echo started; sleep 1000")
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            ShellError::Timeout {
                recovered: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(8),
        "interrupt and resync took {took:?}"
    );
    assert_eq!(sh.succeed("echo next")?, "next\n");
    assert_eq!(sh.succeed("pidof sleep || echo none")?, "none\n");

    // A command that ignores Ctrl-C: Ctrl-\ ends it.
    let err = sh
        .with_timeout(Duration::from_secs(2))
        .run("trap '' INT; sleep 1000")
        .unwrap_err();
    assert!(
        matches!(
            err,
            ShellError::Timeout {
                recovered: true,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(sh.succeed("echo alive")?, "alive\n");

    // wait_until_*: a condition that becomes true, one that never does.
    sh.succeed("(sleep 2; touch /tmp/flag) >/dev/null 2>&1 &")?;
    sh.wait_until_succeeds("test -e /tmp/flag", Duration::from_secs(20))?;
    sh.wait_until_fails("rm /tmp/flag", Duration::from_secs(5))?;
    let err = sh
        .wait_until_succeeds("false", Duration::from_secs(2))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ShellError::WaitUntil {
                last_status: Some(1),
                ..
            }
        ),
        "{err}"
    );
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "180s")]
fn files_copy_both_ways(vm: &mut Vm) -> TestResult {
    let sh = vm
        .shell()
        .console_only()
        .with_timeout(Duration::from_secs(120));
    sh.sync()?; // boot first, so the copies below are timed alone
    let dir = tempfile::tempdir()?;
    // 256 KiB of noise (gzip cannot shrink it): several chunks.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data)?;
    let started = std::time::Instant::now();
    sh.copy_to_guest(&src, "/tmp/copied file.bin")?;
    eprintln!(
        "256 KiB (incompressible) to the guest in {:.2?}",
        started.elapsed()
    );
    assert_eq!(sh.succeed("wc -c <'/tmp/copied file.bin'")?, "262144\n");
    let back = dir.path().join("back.bin");
    let started = std::time::Instant::now();
    sh.copy_from_guest("/tmp/copied file.bin", &back)?;
    eprintln!("256 KiB from the guest in {:.2?}", started.elapsed());
    assert!(std::fs::read(&back)? == data);
    // Empty files, and errors.
    std::fs::write(&src, b"")?;
    sh.copy_to_guest(&src, "/tmp/empty")?;
    assert_eq!(sh.succeed("wc -c </tmp/empty")?, "0\n");
    assert!(matches!(
        sh.copy_from_guest("/nonexistent", &back),
        Err(ShellError::Copy { .. })
    ));
    assert!(matches!(
        sh.copy_to_guest(&src, "/nonexistent/dir/file"),
        Err(ShellError::Copy { .. })
    ));
    assert!(matches!(
        sh.copy_to_guest(dir.path().join("missing"), "/tmp/x"),
        Err(ShellError::HostIo { .. })
    ));
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn shells_share_the_console(vm: &mut Vm) -> TestResult {
    // Several handles, even from other threads, take turns.
    let sh = vm.shell().console_only();
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let sh: Shell = sh.clone();
            std::thread::spawn(move || -> Result<(), ShellError> {
                for i in 0..5 {
                    assert_eq!(sh.succeed(&format!("echo {t}-{i}"))?, format!("{t}-{i}\n"));
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread panicked")?;
    }
    // A new Shell on the same console resynchronizes by itself.
    assert_eq!(vm.shell().console_only().succeed("echo again")?, "again\n");
    // Input typed by hand on the console does not confuse the next command.
    vm.console().send("echo half-typed")?;
    assert_eq!(sh.succeed("echo clean")?, "clean\n");
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn killed_shell_is_respawned_and_found_again(vm: &mut Vm) -> TestResult {
    let sh = vm.shell().console_only();
    let pid = sh.succeed("echo $$")?;
    // The login shell itself dies: busybox init starts a new one (with
    // echo back on); the command never ends, the resync finds the new shell.
    let err = sh
        .with_timeout(Duration::from_secs(5))
        .run("kill -KILL $$")
        .unwrap_err();
    assert!(
        matches!(
            err,
            ShellError::Timeout {
                recovered: true,
                ..
            }
        ),
        "{err}"
    );
    assert_ne!(sh.succeed("echo $$")?, pid);
    assert_eq!(sh.succeed("echo still works")?, "still works\n");
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn kernel_panic_fails_fast(vm: &mut Vm) -> TestResult {
    let sh = vm.shell().console_only();
    sh.sync()?;
    // The Shell's own fast failure is what is tested here, not the
    // runner's crash watch (tests/guest_crash.rs).
    vm.expect_guest_crash();
    let started = std::time::Instant::now();
    let err = sh.run("echo c >/proc/sysrq-trigger").unwrap_err();
    assert!(
        matches!(
            err,
            ShellError::Console(qemu_test::ConsoleError::Failure { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Kernel panic"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    Ok(())
}

qemu_test::main!();

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn an_unwritable_tmp_is_named_in_the_error(vm: &mut Vm) -> TestResult {
    // The error names /tmp; returns the console text it carries.
    let garbled = |vm: &mut Vm, command: &str| match vm.shell().console_only().run(command) {
        Err(ShellError::Garbled { reason, raw, .. }) => {
            assert!(reason.contains("/tmp"), "{reason}");
            raw
        }
        other => panic!("{command}: expected Garbled naming /tmp, got {other:?}"),
    };
    // After umounting /tmp: the command reported as not run was not run,
    // and the shell works again.
    let recovered = |vm: &mut Vm| -> TestResult {
        vm.console().send("umount /tmp\r")?;
        let sh = vm.shell().console_only();
        assert_eq!(
            sh.succeed("ls /not-run 2>&1 || echo absent")?,
            "ls: /not-run: No such file or directory\nabsent\n"
        );
        assert_eq!(sh.succeed("true")?, "");
        Ok(())
    };
    // The mount hides the capture file of its own command...
    garbled(vm, "mount -t tmpfs -o ro tmpfs /tmp");
    // ...and the shell cannot create the next one, so it runs nothing.
    garbled(vm, "touch /not-run");
    recovered(vm)?;
    // A capture file that exists but can no longer be written (its file
    // system remounted read-only) is reported the same way, and the
    // command is not run either.
    vm.console().send("mount -t tmpfs tmpfs /tmp\r")?;
    let sh = vm.shell().console_only();
    assert_eq!(sh.succeed("echo on a fresh /tmp")?, "on a fresh /tmp\n");
    vm.console().send("mount -o remount,ro /tmp\r")?;
    let raw = garbled(vm, "touch /not-run");
    assert!(raw.contains("Read-only file system"), "{raw}");
    recovered(vm)
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn short_text_and_everything_else_round_trip(vm: &mut Vm) -> TestResult {
    let sh = vm.shell().console_only();
    // Up to 1 KiB of text comes as it is; one byte more, a NUL or a
    // non-ASCII byte come base64-encoded: all exact.
    for n in [1, 1023, 1024, 1025, 1100] {
        assert_eq!(sh.succeed(&format!("printf '%0{n}d' 0"))?, "0".repeat(n));
    }
    assert_eq!(
        sh.succeed("printf 'tab\\there \\n\\n end'")?,
        "tab\there \n\n end"
    );
    assert_eq!(sh.run("printf 'a\\000b'")?.stdout_bytes(), b"a\0b");
    assert_eq!(sh.succeed("printf 'h\\303\\251'")?, "h\u{e9}");
    // A terminal that expands tabs (its stderr shows it) changes short
    // text on its way: the shell sends it again, base64-encoded.
    sh.succeed("stty tab3 <&2")?;
    let out = sh.run("printf 'a\\tb'; printf 'c\\td\\n' >&2");
    sh.succeed("stty tab0 <&2")?;
    let out = out?;
    assert_eq!((out.status, out.stdout.as_str()), (0, "a\tb"));
    assert!(out.stderr.contains("c       d"), "{:?}", out.stderr);
    // Short text leaves the capture file empty too.
    assert_one_empty_capture_file(&sh)?;
    Ok(())
}
