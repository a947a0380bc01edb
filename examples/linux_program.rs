//! Testing your own program inside a real Linux guest.
//!
//! The program here is `lc`, a tiny C line counter (the source is below);
//! yours would be whatever you ship: a daemon, a CLI, a kernel-facing tool.
//! Each test compiles it as a static binary (`gcc -static`, so it needs
//! nothing from the guest), starts the Linux guest, copies the binary in
//! over the serial console, runs it and checks its output and exit status.
//!
//! Run it:
//!
//! ```text
//! cargo run -p qemu-test-examples --example linux_program
//! ```
//!
//! The first run builds the Linux guest into the per-user cache (a few
//! seconds to half a minute, once). On a host that cannot build it the
//! tests are skipped (they fail under `QEMU_TEST_REQUIRE=1`); without `gcc` (and glibc's static `libc.a`,
//! Debian's `libc6-dev`) they fail with the compiler's message.
//!
//! What to copy into your own suite:
//!
//! - `kernel = guest::LINUX_X86_64` and `console` give a booted guest with a
//!   root shell on the console; `vm.shell()` runs commands there.
//! - `snapshot = "linux-shell"` boots that guest once, saves it at the
//!   shell, and starts every test from a copy (each test's memory and disks
//!   are its own): restoring takes a fraction of a second where booting on
//!   TCG takes about 4 s. Add `setup = your_fn` to save it after your own
//!   preparation (say, installing the binary once) instead.
//! - `succeed` returns stdout and fails the test on a non-zero status;
//!   `run` returns status, stdout and stderr for the error paths.
//! - `copy_to_guest` / `copy_from_guest` move files (up to a few MB: about
//!   60 KiB/s in, 190 KiB/s out on TCG; compressible files go in faster).
//! - Files a test writes into `vm.artifacts()` are kept when it fails, next
//!   to the console log (here: the compiled binary).

use std::path::PathBuf;
use std::process::Command;

use qemu_test::prelude::*;
use qemu_test::Shell;

/// The program under test: counts the lines of each file given, like
/// `wc -l`; exit status 1 if a file cannot be read, 2 without arguments.
const SOURCE: &str = r#"
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: lc FILE...\n");
        return 2;
    }
    int status = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "r");
        if (!f) {
            perror(argv[i]);
            status = 1;
            continue;
        }
        long lines = 0;
        int c;
        while ((c = getc(f)) != EOF)
            lines += c == '\n';
        fclose(f);
        printf("%ld %s\n", lines, argv[i]);
    }
    return status;
}
"#;

/// Compiles `lc` into the test's artifact directory.
fn build(vm: &Vm) -> TestResult<PathBuf> {
    let source = vm.artifacts().join("lc.c");
    let binary = vm.artifacts().join("lc");
    std::fs::write(&source, SOURCE)?;
    let out = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()?;
    if !out.status.success() {
        return Err(format!("gcc failed:\n{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(binary)
}

/// Builds `lc` and installs it in the guest as `/usr/local/bin/lc`.
fn install(vm: &Vm) -> TestResult<Shell> {
    let binary = build(vm)?;
    let sh = vm.shell();
    sh.succeed("mkdir -p /usr/local/bin")?;
    sh.with_timeout(Duration::from_secs(60))
        .copy_to_guest(&binary, "/usr/local/bin/lc")?;
    sh.succeed("chmod 755 /usr/local/bin/lc")?;
    Ok(sh)
}

/// The happy path: lines counted, one output line per file.
#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn counts_lines(vm: &mut Vm) -> TestResult {
    let sh = install(vm)?;
    sh.succeed("printf 'one\\ntwo\\nthree\\n' >/tmp/three; : >/tmp/empty")?;
    assert_eq!(
        sh.succeed("lc /tmp/three /tmp/empty")?,
        "3 /tmp/three\n0 /tmp/empty\n"
    );
    // A bigger input, made in the guest.
    sh.succeed("seq 100000 >/tmp/big")?;
    assert_eq!(sh.succeed("lc /tmp/big")?, "100000 /tmp/big\n");
    Ok(())
}

/// The error paths: exit statuses and messages on stderr.
#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn reports_errors(vm: &mut Vm) -> TestResult {
    let sh = install(vm)?;
    let usage = sh.run("lc")?;
    assert_eq!(usage.status, 2);
    assert!(
        usage.stderr.contains("usage: lc FILE..."),
        "{:?}",
        usage.stderr
    );

    let missing = sh.run("lc /etc/passwd /nonexistent")?;
    assert_eq!(missing.status, 1);
    assert_eq!(
        missing.stdout, "1 /etc/passwd\n",
        "the readable file is still counted"
    );
    assert!(
        missing
            .stderr
            .contains("/nonexistent: No such file or directory"),
        "{:?}",
        missing.stderr
    );
    Ok(())
}

/// Output files come back to the host for checking there.
#[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "linux-shell", timeout = "120s")]
fn report_file_comes_back(vm: &mut Vm) -> TestResult {
    let sh = install(vm)?;
    sh.succeed("lc /etc/inittab /etc/profile >/tmp/report")?;
    let report = vm.artifacts().join("report.txt");
    sh.copy_from_guest("/tmp/report", &report)?;
    let text = std::fs::read_to_string(&report)?;
    let files: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, f)| f))
        .collect();
    assert_eq!(files, ["/etc/inittab", "/etc/profile"]);
    Ok(())
}

qemu_test::main!();
