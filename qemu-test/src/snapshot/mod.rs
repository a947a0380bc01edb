//! Booted snapshots: boot a VM once, save its whole state (devices and
//! RAM), and start every test from a copy of that state.
//!
//! A [`SnapshotStore`] is a directory of saved states, each filed under a
//! [`SnapshotKey`]: the snapshot's name plus everything that affects the VM
//! (QEMU binary, arguments, machine type, console, the files the arguments
//! name, what the setup does). A changed key is a different snapshot; the
//! old one (and its lock file) is removed when the new one is made.
//! Creation runs under an exclusive file lock, so concurrent test processes
//! (nextest runs one per test) build a snapshot once; users of a snapshot
//! hold a shared lock while QEMU loads it, so it is never removed under
//! them.
//!
//! Where the machine allows it, a `Machine` keeps the guest RAM in a file
//! `ram` beside the state instead of in it: mapped shared while the
//! snapshot is made, private (copy on write) by every restore, so restoring
//! reads no RAM and the file never changes (see the README's "Booted
//! snapshots" for which machines).
//!
//! The `#[qemu_test(snapshot = "name")]` attribute uses this through the
//! runner (the store is `target/qemu-test/snapshots/`); with a
//! [`Machine`](crate::Machine) it is
//! [`Machine::launch_snapshot`](crate::Machine::launch_snapshot):
//!
//! ```no_run
//! use qemu_test::snapshot::SnapshotStore;
//! use qemu_test::{guest, Machine};
//!
//! let store = SnapshotStore::new("target/qemu-test/snapshots");
//! let mut vm = Machine::builder("qemu-system-aarch64")
//!     .args(["-cpu", "max", "-bios", &guest::ECHO_SHELL_AARCH64.path()?.to_string_lossy()])
//!     .build();
//! vm.set_machine("virt").set_console(None, 0);
//! // What the setup does is part of the key: change "v1" when it changes.
//! let key = vm.snapshot_key("echo-login")?.with("setup", "wait for login: v1");
//! vm.launch_snapshot(&store, &key, |vm| {
//!     vm.console().wait_for("login:")?;
//!     Ok(())
//! })?;
//! // Resumed at the prompt: no boot banner, the guest answers at once.
//! vm.console().exec_and_wait("hi", "you said: hi")?;
//! vm.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Files the arguments name are identified by path, size, modification time
//! and inode (as cargo fingerprints sources), not by hashing their contents:
//! a debug build hashes a 10 MB kernel in about a second, per test.

mod key;
mod launch;
mod store;

pub(crate) use key::file_identity;
pub use key::SnapshotKey;
pub use store::{Snapshot, SnapshotStore};
