//! A `qemu_test::main!()` binary for `tests/security.rs`: tests that report
//! what they saw (their dirs, their command line, the accelerator) into
//! their artifact dir or a rendezvous dir, for the driving test to check
//! from the outside. A `[[bin]]` with `test = false`: one of its tests
//! fails on purpose, and `dirs::report` needs a driver.
//!
//! The VMs are `qemu-system-x86_64 -S`: no guest code runs.

use qemu_test::prelude::*;

/// Command lines and quoting.
mod quoting {
    use super::*;

    /// The literal is `qemu_test_suite::WEIRD_NAME_ARG` (an attribute takes
    /// literals only); the body checks they agree, then records what QEMU
    /// was given and what it made of the name.
    #[qemu_test(
        arch = "x86_64",
        machine = "pc",
        accel = "tcg",
        args = [
            "-S",
            "-nodefaults",
            "-name",
            "sp ace 'sq' \"dq\" $(touch pwned-dollar) `touch pwned-backtick` >pwned-redirect ü ☃ \u{a0} {a,,b} *? ~ ! # ; & | \\ tab\there nl\nline ,,comma -x --y=z",
        ],
        timeout = "30s"
    )]
    fn weird_args(vm: &mut Vm) -> TestResult {
        if vm.args().last().map(String::as_str) != Some(qemu_test_suite::WEIRD_NAME_ARG) {
            return Err(format!(
                "the attribute's -name differs from WEIRD_NAME_ARG: {:?}",
                vm.args()
            )
            .into());
        }
        let name = vm.command("query-name", json!({}))?;
        let seen = json!({
            "args": vm.args(),
            "command_line": vm.command_line(),
            "query_name": name["name"],
        });
        std::fs::write(vm.artifacts().join("seen.json"), seen.to_string())?;
        Ok(())
    }

    /// A `-add-fd` the runner cannot reproduce becomes a note in
    /// `repro.sh` and `cmdline.txt`; its value has a newline followed by a
    /// command. (QEMU refuses the fd, so the launch fails: the artifacts
    /// are written all the same.)
    #[qemu_test(
        arch = "x86_64",
        machine = "pc",
        accel = "tcg",
        args = ["-S", "-nodefaults", "-add-fd", "fd=1023,set=1,opaque=x\ntouch pwned-note #"],
        timeout = "30s"
    )]
    fn add_fd_note(_vm: &mut Vm) {}
}

/// Where a test process keeps its files.
mod dirs {
    use super::*;

    /// Writes `<pid>.json` (this process's and its VM's dirs) into
    /// `$FIXTURE_RENDEZVOUS`, then keeps the VM running until the driver
    /// creates `release-<pid>` there, so that the driver can look at
    /// several test processes' VMs at once.
    #[qemu_test(arch = "x86_64", machine = "pc", accel = "tcg", args = ["-S", "-nodefaults"], timeout = "60s")]
    fn report(vm: &mut Vm) -> TestResult {
        let rendezvous = std::path::PathBuf::from(
            std::env::var_os("FIXTURE_RENDEZVOUS").ok_or("FIXTURE_RENDEZVOUS is not set")?,
        );
        let me = std::process::id();
        let report = json!({
            "process": me,
            "qemu_pid": vm.pid(),
            "tmpdir": std::env::temp_dir(),
            "temp_dir": vm.temp_dir(),
            "sock_dir": vm.sock_dir(),
            "log_dir": vm.log_dir(),
            "artifacts": vm.artifacts(),
        });
        // Written whole, then renamed: the driver never reads half a file.
        let partial = rendezvous.join(format!("{me}.partial"));
        std::fs::write(&partial, report.to_string())?;
        std::fs::rename(&partial, rendezvous.join(format!("{me}.json")))?;
        let release = rendezvous.join(format!("release-{me}"));
        let started = std::time::Instant::now();
        while !release.exists() {
            if started.elapsed() > Duration::from_secs(50) {
                return Err(format!("nobody created {}", release.display()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still the same, live VM.
        vm.command("query-status", json!({}))?;
        Ok(())
    }
}

/// The accelerator `auto` picked.
mod accel {
    use super::*;

    /// Records `query-kvm` in `query-kvm.json`.
    #[qemu_test(arch = "x86_64", machine = "pc", accel = "auto", args = ["-S", "-nodefaults"], timeout = "60s")]
    fn auto(vm: &mut Vm) -> TestResult {
        let kvm = vm.command("query-kvm", json!({}))?;
        std::fs::write(vm.artifacts().join("query-kvm.json"), kvm.to_string())?;
        Ok(())
    }
}

qemu_test::main!();
