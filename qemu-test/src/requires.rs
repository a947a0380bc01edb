//! What a test needs from the host to be worth running: a device, a netdev
//! backend or a machine type of its QEMU, an accelerator, a host command, a
//! locked-memory limit, or anything a function of the test's own checks.
//!
//! A requirement that is not met **skips** the test with the reason (a
//! failure under `QEMU_TEST_REQUIRE=1`): it is how a test says "only where
//! available", like upstream's `require_netdev('user')` or
//! `skipUnless(...)`. The runner checks requirements before the VM is
//! launched, when the tests are listed, so `--list --ignored` (and so
//! nextest and JUnit) show the test as skipped. A machine type, CPU or
//! device named in the attribute itself (`machine = "..."`) is different:
//! its absence is a mistake in the test, and an error.
//!
//! ```no_run
//! use qemu_test::prelude::*;
//!
//! #[qemu_test(
//!     arch = "x86_64",
//!     machine = "q35",
//!     requires = [device("virtio-9p-pci"), netdev("user"), command("ncat"), memlock("64M")],
//! )]
//! fn shares_a_directory(vm: &mut Vm) -> TestResult {
//!     Ok(())
//! }
//!
//! fn has_vnc() -> Result<(), String> {
//!     Err("built without VNC".into())
//! }
//!
//! #[qemu_test(arch = "x86_64", requires = [check("VNC support", has_vnc)])]
//! fn vnc(vm: &mut Vm) -> TestResult {
//!     Ok(())
//! }
//! # fn main() {}
//! ```
//!
//! In the attribute the functions of this module are in scope without an
//! import.

use std::fmt;

/// One thing a test needs; see the [module docs](self). Two checks are
/// equal when they say they check the same thing.
#[derive(Clone)]
#[non_exhaustive]
pub enum Requirement {
    /// A `-device` type of the test's QEMU.
    Device(String),
    /// A `-netdev` backend of the test's QEMU.
    Netdev(String),
    /// A machine type of the test's QEMU.
    Machine(String),
    /// An accelerator that really works here (for `kvm`, the probe VM's
    /// verdict).
    Accel(String),
    /// A program on the host's `PATH`.
    Command(String),
    /// At least this many bytes of locked memory (`RLIMIT_MEMLOCK`'s soft
    /// limit).
    Memlock(u64),
    /// A function of the test's own: `Err(why)` when not met.
    Check {
        /// What it checks, for messages.
        what: &'static str,
        /// The check.
        check: fn() -> Result<(), String>,
    },
}

impl PartialEq for Requirement {
    fn eq(&self, other: &Requirement) -> bool {
        use Requirement::*;
        match (self, other) {
            (Device(a), Device(b))
            | (Netdev(a), Netdev(b))
            | (Machine(a), Machine(b))
            | (Accel(a), Accel(b))
            | (Command(a), Command(b)) => a == b,
            (Memlock(a), Memlock(b)) => a == b,
            (Check { what: a, .. }, Check { what: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for Requirement {}

impl fmt::Debug for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Device(name) => write!(f, "device {name}"),
            Requirement::Netdev(name) => write!(f, "netdev backend {name}"),
            Requirement::Machine(name) => write!(f, "machine type {name}"),
            Requirement::Accel(name) => write!(f, "accelerator {name}"),
            Requirement::Command(name) => write!(f, "command {name}"),
            Requirement::Memlock(bytes) => write!(f, "a locked-memory limit of {bytes} bytes"),
            Requirement::Check { what, .. } => write!(f, "{what}"),
        }
    }
}

/// The test's QEMU has `-device NAME` (`-device help` lists it).
pub fn device(name: &str) -> Requirement {
    Requirement::Device(name.to_string())
}

/// The test's QEMU has the `-netdev NAME` backend (`-netdev help`).
pub fn netdev(name: &str) -> Requirement {
    Requirement::Netdev(name.to_string())
}

/// The test's QEMU has machine type `NAME` (`-machine help`).
pub fn machine(name: &str) -> Requirement {
    Requirement::Machine(name.to_string())
}

/// The accelerator works here: `"kvm"` runs the KVM probe; `"tcg"` is
/// always there.
pub fn accel(name: &str) -> Requirement {
    Requirement::Accel(name.to_string())
}

/// `NAME` is a program on the host's `PATH` (`QEMU_TEST_QEMU_DIR` too).
pub fn command(name: &str) -> Requirement {
    Requirement::Command(name.to_string())
}

/// The soft `RLIMIT_MEMLOCK` is at least `size` (`"64M"`, `"2G"`, or a
/// number of MiB, as `-m` takes sizes); an unparseable size is a
/// requirement no host meets, and says so.
pub fn memlock(size: &str) -> Requirement {
    Requirement::Memlock(crate::qemu_opts::memory_bytes(size).unwrap_or(u64::MAX))
}

/// `check()` returns `Ok(())`; its `Err` says why not. Keep it cheap: it
/// runs when the tests are listed, in every test process.
pub fn check(what: &'static str, check: fn() -> Result<(), String>) -> Requirement {
    Requirement::Check { what, check }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_say_what_they_need() {
        assert_eq!(device("virtio-9p-pci").to_string(), "device virtio-9p-pci");
        assert_eq!(netdev("user").to_string(), "netdev backend user");
        assert_eq!(accel("kvm").to_string(), "accelerator kvm");
        assert_eq!(memlock("64M"), Requirement::Memlock(64 << 20));
        assert_eq!(memlock("lots"), Requirement::Memlock(u64::MAX));
        assert_eq!(check("VNC", || Ok(())).to_string(), "VNC");
    }
}
