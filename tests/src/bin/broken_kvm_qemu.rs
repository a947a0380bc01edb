//! Stands in for `qemu-system-x86_64` on a host whose KVM is broken, for
//! `tests/security.rs` (installed as `qemu-system-x86_64` in a directory
//! given as `QEMU_TEST_QEMU_DIR`). Real QEMU cannot be told to have a
//! broken KVM, and the framework has no hook to pretend one.
//!
//! With `-accel kvm` (or `-accel kvm,…`) it fails the way QEMU does when it
//! cannot initialize KVM: one line on stderr, exit status 1. Anything else
//! runs the real QEMU, `$BROKEN_KVM_REAL_QEMU`, with the same arguments
//! (`exec`, so the pid and the exit status are QEMU's).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let kvm = args.windows(2).any(|pair| {
        pair[0] == "-accel"
            && pair[1]
                .to_str()
                .is_some_and(|v| v == "kvm" || v.starts_with("kvm,"))
    });
    if kvm {
        eprintln!(
            "qemu-system-x86_64: -accel kvm: failed to initialize kvm: Input/output error (broken_kvm_qemu)"
        );
        return ExitCode::from(1);
    }
    let Some(real) = std::env::var_os("BROKEN_KVM_REAL_QEMU") else {
        eprintln!("broken_kvm_qemu: BROKEN_KVM_REAL_QEMU is not set");
        return ExitCode::from(127);
    };
    let err = Command::new(&real).args(&args).exec();
    eprintln!(
        "broken_kvm_qemu: cannot run {}: {err}",
        real.to_string_lossy()
    );
    ExitCode::from(127)
}
