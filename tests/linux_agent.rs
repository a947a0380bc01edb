//! `Shell` over the guest agent (`qemu-test-agent` on the data channel of
//! `guest::LINUX_X86_64`, which the runner gives the built-in Linux
//! guests): every behaviour of the Shell contract — status, stdout and
//! stderr byte-exact and separate, large output, copies checked by hash,
//! deadlines and recovery, stdin at EOF — and the fallback to the console
//! when no agent answers. `linux_shell.rs` covers the console transport.
//!
//! Most tests start from the booted snapshot `linux-shell` (shared with
//! `linux_shell.rs`), so the agent is found on a restored guest; one
//! boots, to find it on a booting guest.

use std::time::Instant;

use qemu_test::prelude::*;
use qemu_test::shell::{Shell, Transport};
use qemu_test::ShellError;
use sha2::{Digest, Sha256};

/// The shell of `vm`, which must use the agent.
fn agent_shell(vm: &Vm) -> Result<Shell, ShellError> {
    let sh = vm.shell();
    assert_eq!(sh.transport()?, Transport::Agent, "the guest agent answers");
    Ok(sh)
}

/// `n` bytes of noise from a seed (xorshift), the same on every run.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn status_and_separate_streams(vm: &mut Vm) -> TestResult {
    let sh = agent_shell(vm)?;
    assert_eq!(sh.succeed("echo hello")?, "hello\n");
    assert_eq!(sh.succeed("true")?, "");
    assert_eq!(sh.fail("echo out; exit 7")?, "out\n");
    let out = sh.run("echo to-stdout; echo to-stderr >&2; exit 3")?;
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (3, "to-stdout\n", "to-stderr\n"),
        "stderr is the command's own, exactly"
    );
    match sh.succeed("echo oops >&2; exit 4") {
        Err(ShellError::Failed {
            status: 4, stderr, ..
        }) => assert_eq!(stderr, "oops\n"),
        other => panic!("expected Failed with status 4, got {other:?}"),
    }
    for status in [0, 1, 2, 126, 127, 128, 200, 255] {
        assert_eq!(sh.run(&format!("exit {status}"))?.status, status);
    }
    // Killed by a signal: 128 + N, like any shell.
    assert_eq!(sh.run("kill -TERM $$")?.status, 128 + 15);
    assert_eq!(sh.run("kill -KILL $$")?.status, 128 + 9);
    // A fresh `sh -c` in /root each time, stdin at EOF.
    sh.succeed("cd /proc; X=1")?;
    assert_eq!(sh.succeed("pwd; echo \"[$X]\"")?, "/root\n[]\n");
    assert_eq!(sh.succeed("cat; echo eof")?, "eof\n");
    assert_eq!(sh.succeed("read -r line; echo $?")?, "1\n");
    assert_eq!(sh.succeed("tty || true")?, "not a tty\n");
    assert_eq!(
        sh.succeed("echo $PATH $HOME $TERM")?,
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /root vt100\n"
    );
    // No terminal in between: control characters and long lines are
    // plain bytes.
    let long = "x".repeat(100_000);
    assert_eq!(
        sh.succeed(&format!("printf '%s' {long} | wc -c"))?,
        "100000\n"
    );
    assert_eq!(sh.run("printf '\\003\\r\\n'")?.stdout_bytes(), b"\x03\r\n");
    assert!(matches!(
        sh.run("echo a\0b"),
        Err(ShellError::InvalidCommand { .. })
    ));
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "180s")]
fn binary_output_is_exact(vm: &mut Vm) -> TestResult {
    let sh = agent_shell(vm)?.with_timeout(Duration::from_secs(120));
    // Every byte value, NULs included, on both streams.
    let all: Vec<u8> = (0..=255u8).collect();
    let script = "printf \"$(printf '\\\\%03o' $(seq 0 255))\"";
    let out = sh.run(&format!("{script}; {script} >&2"))?;
    assert_eq!(out.stdout_bytes(), &all[..]);
    assert_eq!(out.stderr_bytes(), &all[..]);
    assert_eq!(sh.run("printf 'a\\000b'")?.stdout_bytes(), b"a\0b");
    // 10 MB of noise through stdout, checked by hash.
    let data = noise(10_000_000, 7);
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("noise");
    std::fs::write(&src, &data)?;
    sh.copy_to_guest(&src, "/tmp/noise")?;
    let started = Instant::now();
    let out = sh.run("cat /tmp/noise")?;
    eprintln!("10 MB of stdout in {:.2?}", started.elapsed());
    assert_eq!(out.stdout_bytes().len(), data.len());
    assert!(out.stdout_bytes() == &data[..], "10 MB of stdout differ");
    // Output as it comes, and what a background process writes later
    // does not hold the command.
    let started = Instant::now();
    let out = sh.run("echo first; (sleep 5; echo late) & echo second")?;
    assert_eq!(out.stdout, "first\nsecond\n");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "240s")]
fn big_copies_both_ways(vm: &mut Vm) -> TestResult {
    let sh = agent_shell(vm)?.with_timeout(Duration::from_secs(120));
    let dir = tempfile::tempdir()?;
    // (The guest's 128 MiB leave about 60 MB for files.)
    let data = noise(32_000_000, 42);
    let src = dir.path().join("big.bin");
    std::fs::write(&src, &data)?;
    let started = Instant::now();
    sh.copy_to_guest(&src, "/tmp/big file.bin")?;
    eprintln!("32 MB to the guest in {:.2?}", started.elapsed());
    let sum = sh.succeed("sha256sum '/tmp/big file.bin'")?;
    assert_eq!(
        sum.split_whitespace().next(),
        Some(sha256_hex(&data).as_str())
    );
    let back = dir.path().join("back.bin");
    let started = Instant::now();
    sh.copy_from_guest("/tmp/big file.bin", &back)?;
    eprintln!("32 MB from the guest in {:.2?}", started.elapsed());
    assert_eq!(sha256_hex(&std::fs::read(&back)?), sha256_hex(&data));
    sh.succeed("rm '/tmp/big file.bin'")?;
    // In memory, empty files, a new file's mode, an existing one's kept.
    sh.write_file("/tmp/small", b"a\0b\xff")?;
    assert_eq!(sh.read_file("/tmp/small")?, b"a\0b\xff");
    sh.write_file("/tmp/empty", b"")?;
    assert_eq!(
        sh.succeed("stat -c '%s %a' /tmp/empty /tmp/small")?,
        "0 644\n4 644\n"
    );
    sh.succeed("chmod 755 /tmp/small")?;
    sh.write_file("/tmp/small", b"x")?;
    assert_eq!(sh.succeed("stat -c '%s %a' /tmp/small")?, "1 755\n");
    assert!(sh.read_file("/tmp/empty")?.is_empty());
    // Errors in the guest, and on the host.
    let err = sh.copy_from_guest("/nonexistent", &back).unwrap_err();
    assert!(matches!(err, ShellError::Copy { .. }), "{err}");
    assert!(err.to_string().contains("No such file"), "{err}");
    assert_eq!(
        sha256_hex(&std::fs::read(&back)?),
        sha256_hex(&data),
        "kept"
    );
    let err = sh.copy_to_guest(&src, "/nonexistent/dir/file").unwrap_err();
    assert!(matches!(err, ShellError::Copy { .. }), "{err}");
    let err = sh.read_file("/root").unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
    assert!(matches!(
        sh.copy_to_guest(dir.path().join("missing"), "/tmp/x"),
        Err(ShellError::HostIo { .. })
    ));
    assert_eq!(sh.succeed("echo still fine")?, "still fine\n");
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn deadlines_kill_and_recover(vm: &mut Vm) -> TestResult {
    let sh = agent_shell(vm)?;
    let started = Instant::now();
    let err = sh
        .with_timeout(Duration::from_secs(2))
        .run("echo started; trap '' INT TERM HUP; sleep 1000 & sleep 1000")
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
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The whole process group is gone, and the next command runs at once.
    assert_eq!(sh.succeed("pidof sleep || echo none")?, "none\n");
    // A command that floods its output past the limit is killed too.
    let err = sh
        .with_output_limit(1 << 20)
        .run("cat /dev/zero")
        .unwrap_err();
    assert!(matches!(err, ShellError::OutputLimit { .. }), "{err}");
    assert_eq!(sh.succeed("pidof cat || echo none")?, "none\n");
    // A copy of an endless file is cancelled at its deadline.
    let dir = tempfile::tempdir()?;
    let err = sh
        .with_timeout(Duration::from_secs(2))
        .copy_from_guest("/dev/zero", dir.path().join("zero"))
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
    assert!(!dir.path().join("zero").exists(), "no partial file");
    // wait_until_*: a condition that becomes true, one that never does.
    sh.succeed("(sleep 2; touch /tmp/flag) >/dev/null 2>&1 &")?;
    sh.wait_until_succeeds("test -e /tmp/flag", Duration::from_secs(20))?;
    sh.wait_until_fails("rm /tmp/flag", Duration::from_secs(5))?;
    let err = sh
        .wait_until_succeeds("sleep 1; false", Duration::from_secs(3))
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
    assert_eq!(sh.succeed("echo alive")?, "alive\n");
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn a_killed_agent_is_respawned(vm: &mut Vm) -> TestResult {
    let sh = agent_shell(vm)?;
    // The agent dies under a running command: the command is lost (its
    // request fails), init starts a new agent and the next one uses it.
    let err = sh
        .with_timeout(Duration::from_secs(10))
        .run("kill -KILL $PPID; sleep 5")
        .unwrap_err();
    assert!(
        matches!(err, ShellError::Agent { .. } | ShellError::Timeout { .. }),
        "{err}"
    );
    sh.wait_until_succeeds("true", Duration::from_secs(20))?;
    assert_eq!(sh.succeed("echo back")?, "back\n");
    // A stuck agent (stopped): the request times out, the shell kills the
    // agent through the console, and a new one serves the next command.
    let console = sh.console_only();
    console.succeed("kill -STOP $(pidof qemu-test-agent)")?;
    let err = sh
        .with_timeout(Duration::from_secs(2))
        .run("echo lost")
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
    assert_eq!(sh.succeed("echo revived")?, "revived\n");
    assert_eq!(sh.transport()?, Transport::Agent);
    // Several handles and threads take turns on the one channel.
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let sh = vm.shell();
            std::thread::spawn(move || -> Result<(), ShellError> {
                for i in 0..10 {
                    assert_eq!(sh.succeed(&format!("echo {t}-{i}"))?, format!("{t}-{i}\n"));
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread panicked")?;
    }
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn kernel_panic_fails_fast(vm: &mut Vm) -> TestResult {
    let sh = agent_shell(vm)?;
    vm.expect_guest_crash();
    let started = Instant::now();
    let err = sh.run("echo c >/proc/sysrq-trigger").unwrap_err();
    assert!(
        matches!(
            err,
            ShellError::Console(qemu_test::ConsoleError::Failure { .. })
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, timeout = "120s")]
fn the_agent_is_found_while_the_guest_boots(vm: &mut Vm) -> TestResult {
    // The first operation is issued at once, long before the guest is up.
    let sh = vm.shell();
    assert_eq!(sh.succeed("echo booted")?, "booted\n");
    assert_eq!(sh.transport()?, Transport::Agent);
    // The console stays the guest's own: the command is not typed there.
    assert!(!vm.console().output().contains("echo booted"));
    // A console-only handle still works beside it.
    let console = sh.console_only();
    assert_eq!(console.transport()?, Transport::Console);
    assert_eq!(console.succeed("echo typed")?, "typed\n");
    Ok(())
}

#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn without_an_answering_agent_the_console_serves(vm: &mut Vm) -> TestResult {
    // The agent is stopped (through the console, which never asks the
    // agent): nothing answers on the data channel.
    let console = vm.shell().console_only();
    console.succeed("kill -STOP $(pidof qemu-test-agent)")?;
    let sh = vm.shell();
    let started = Instant::now();
    assert_eq!(sh.transport()?, Transport::Console);
    eprintln!("no agent: found out in {:.2?}", started.elapsed());
    assert_eq!(sh.succeed("echo over the console")?, "over the console\n");
    let out = sh.run("echo err >&2")?;
    assert!(out.stderr.contains("err"), "{out:?}");
    // Decided once per launch: the next shell does not wait again.
    let started = Instant::now();
    assert_eq!(vm.shell().transport()?, Transport::Console);
    assert!(started.elapsed() < Duration::from_secs(1));
    // The agent comes back: sync() looks again.
    console.succeed("kill -CONT $(pidof qemu-test-agent)")?;
    sh.sync()?;
    assert_eq!(sh.transport()?, Transport::Agent);
    assert_eq!(sh.run("echo err >&2")?.stderr, "err\n");
    Ok(())
}

/// A snapshot whose setup used the agent: the restored machine's data
/// channel is a new socketpair, which the guest never notices.
fn configure_over_the_agent(vm: &mut Vm) -> TestResult {
    let sh = agent_shell(vm)?;
    sh.write_file("/root/state", b"written over the agent\n")?;
    sh.succeed("echo $PPID >/root/agent-pid")?;
    Ok(())
}

#[qemu_test(
    console,
    kernel = guest::LINUX_X86_64,
    snapshot = "linux-agent-configured",
    setup = configure_over_the_agent,
    timeout = "120s"
)]
fn a_restored_guest_answers_over_the_agent(vm: &mut Vm) -> TestResult {
    let started = Instant::now();
    let sh = agent_shell(vm)?;
    eprintln!(
        "the agent answered {:.2?} after the restore",
        started.elapsed()
    );
    assert_eq!(sh.read_file("/root/state")?, b"written over the agent\n");
    // The same agent process as before the snapshot, on a new socketpair.
    assert_eq!(
        sh.succeed("echo $PPID")?,
        sh.succeed("cat /root/agent-pid")?
    );
    let data = noise(5_000_000, 3);
    sh.write_file("/tmp/after-restore", &data)?;
    assert!(sh.read_file("/tmp/after-restore")? == data);
    Ok(())
}

#[qemu_test(
    console,
    kernel = guest::LINUX_AARCH64,
    timeout = "120s",
    ignore = "needs `cargo xtask guests --aarch64` (not built by CI)"
)]
fn aarch64_agent_serves_the_shell(vm: &mut Vm) -> TestResult {
    let sh = vm.shell().with_timeout(Duration::from_secs(90));
    assert_eq!(sh.succeed("uname -m")?, "aarch64\n");
    assert_eq!(sh.transport()?, Transport::Agent);
    let out = sh.run("printf 'a\\000b'; echo err >&2; exit 5")?;
    assert_eq!(
        (out.status, out.stdout_bytes(), out.stderr_bytes()),
        (5, &b"a\0b"[..], &b"err\n"[..])
    );
    let data = noise(5_000_000, 5);
    sh.write_file("/tmp/data", &data)?;
    let sum = sh.succeed("sha256sum /tmp/data")?;
    assert_eq!(
        sum.split_whitespace().next(),
        Some(sha256_hex(&data).as_str())
    );
    assert!(sh.read_file("/tmp/data")? == data);
    let err = sh
        .with_timeout(Duration::from_secs(2))
        .run("sleep 100")
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
    Ok(())
}

qemu_test::main!();
