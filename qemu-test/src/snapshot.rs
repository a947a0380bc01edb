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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::os::LockMode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{BoxError, SnapshotError};
use crate::os;

/// The saved state's file name inside a snapshot's directory.
const STATE_FILE: &str = "state";
/// The key, as JSON, beside the state (for humans).
const KEY_FILE: &str = "key.json";
/// The logs of the boot that made the snapshot.
const LOGS_DIR: &str = "create";

/// What identifies a snapshot: a name and every input that affects the
/// saved state. Two keys with the same parts have the same [`id`](Self::id).
///
/// ```
/// use qemu_test::snapshot::SnapshotKey;
///
/// let key = SnapshotKey::new("booted")?.with("args", vec!["-m", "256M"]);
/// let other = SnapshotKey::new("booted")?.with("args", vec!["-m", "512M"]);
/// assert!(key.id().starts_with("booted-"));
/// assert_ne!(key.id(), other.id());
/// assert!(SnapshotKey::new("../evil").is_err());
/// # Ok::<(), qemu_test::SnapshotError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotKey {
    name: String,
    parts: BTreeMap<String, Value>,
}

impl SnapshotKey {
    /// A key with only a name: 1 to 64 ASCII letters, digits, `-`, `_` or
    /// `.`, not starting with `.` (it becomes part of a file name).
    pub fn new(name: &str) -> Result<SnapshotKey, SnapshotError> {
        let valid = (1..=64).contains(&name.len())
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(SnapshotError::InvalidName {
                name: name.to_string(),
            });
        }
        Ok(SnapshotKey {
            name: name.to_string(),
            parts: BTreeMap::new(),
        })
    }

    /// Adds (or replaces) one part of the key.
    ///
    /// ```
    /// # use qemu_test::snapshot::SnapshotKey;
    /// let key = SnapshotKey::new("booted")?.with("setup", "wait for the shell, v2");
    /// # Ok::<(), qemu_test::SnapshotError>(())
    /// ```
    pub fn with(mut self, part: &str, value: impl Into<Value>) -> SnapshotKey {
        self.parts.insert(part.to_string(), value.into());
        self
    }

    /// Adds a file's identity (path, size, modification time, inode) as a
    /// part, or `"missing"` if there is no such file.
    ///
    /// ```
    /// # use qemu_test::snapshot::SnapshotKey;
    /// let key = SnapshotKey::new("booted")?.with_file("kernel", "/boot/vmlinuz".as_ref());
    /// # Ok::<(), qemu_test::SnapshotError>(())
    /// ```
    pub fn with_file(self, part: &str, path: &Path) -> SnapshotKey {
        self.with(part, file_identity(path))
    }

    /// The snapshot's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>-<16 hex digits of the SHA-256 of the key>`: the snapshot's
    /// directory name in the store.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.to_json().to_string().as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{hex}", self.name)
    }

    /// The whole key as JSON (what `key.json` beside the state holds).
    pub fn to_json(&self) -> Value {
        json!({ "name": self.name, "parts": self.parts })
    }
}

/// A file's identity without reading it: path, size, mtime (ns), inode.
pub(crate) fn file_identity(path: &Path) -> Value {
    match fs::metadata(path) {
        Ok(meta) => json!({
            "path": path.to_string_lossy(),
            "size": meta.len(),
            "mtime_ns": i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            "inode": meta.ino(),
            "device": meta.dev(),
        }),
        Err(_) => json!({ "path": path.to_string_lossy(), "missing": true }),
    }
}

/// A directory of booted snapshots.
///
/// ```no_run
/// use qemu_test::snapshot::{SnapshotKey, SnapshotStore};
///
/// let store = SnapshotStore::new("target/qemu-test/snapshots");
/// let key = SnapshotKey::new("booted")?.with("args", vec!["-M", "virt"]);
/// let snapshot = store.get_or_create(&key, |state, _logs| {
///     // Boot a VM, get it ready, `Machine::save_state(state, ...)`.
///     # let _ = state;
///     Ok(())
/// })?;
/// println!("state in {}", snapshot.state().display());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// A store in `dir` (created, mode 0700, when first used).
    pub fn new(dir: impl Into<PathBuf>) -> SnapshotStore {
        SnapshotStore { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshot filed under `key`: the existing one, or one made now by
    /// `create(state, logs)`, which must write the saved state to `state`
    /// (e.g. with [`Machine::save_state`](crate::Machine::save_state)) and
    /// may leave logs in the directory `logs`.
    ///
    /// `create` runs under an exclusive lock on the key, so across threads
    /// and processes each snapshot is made once; callers that find it being
    /// made wait for it. The state only appears (atomically, by a rename)
    /// when `create` succeeds. After a success, snapshots of the same name
    /// under other keys are removed, unless in use. The returned
    /// [`Snapshot`] holds a shared lock: keep it until QEMU has loaded the
    /// state.
    pub fn get_or_create(
        &self,
        key: &SnapshotKey,
        create: impl FnOnce(&Path, &Path) -> Result<(), BoxError>,
    ) -> Result<Snapshot, SnapshotError> {
        crate::os::create_private_dir_all(&self.dir).map_err(io_error(format!(
            "creating the snapshot store {}",
            self.dir.display()
        )))?;
        let id = key.id();
        let dir = self.dir.join(&id);
        let state = dir.join(STATE_FILE);
        let lock_path = self.dir.join(format!("{id}.lock"));
        // Each (re)lock checks that the lock file is still the one at
        // `lock_path`: `prune` removes a stale key's lock file while it
        // holds it, and whoever was waiting on it starts over on a new one.
        loop {
            let lock = os::open_lock(&lock_path).map_err(io_error(format!(
                "opening the lock file {}",
                lock_path.display()
            )))?;
            let flock = |op| {
                os::flock_current(&lock, &lock_path, op)
                    .map_err(io_error(format!("locking {}", lock_path.display())))
            };
            if !flock(LockMode::Shared)? {
                continue;
            }
            let snapshot = |created, lock| Snapshot {
                id: id.clone(),
                dir: dir.clone(),
                state: state.clone(),
                created,
                _lock: lock,
            };
            if state.is_file() {
                return Ok(snapshot(false, lock));
            }
            // Not there: take the lock exclusively (flock drops the shared
            // lock first, so two callers upgrading at once cannot deadlock)
            // and look again, as someone else may have made it meanwhile.
            if !flock(LockMode::Exclusive)? {
                continue;
            }
            // The downgrade back to shared, too, drops the lock for a moment.
            if state.is_file() {
                if flock(LockMode::Shared)? {
                    return Ok(snapshot(false, lock));
                }
                continue;
            }
            self.create(key, &dir, &state, create)?;
            self.prune(key, &id);
            if flock(LockMode::Shared)? {
                return Ok(snapshot(true, lock));
            }
            // Pruned by a process making it under another key (an older or
            // newer test binary, say) right after it was made.
            return Err(SnapshotError::Io {
                context: format!(
                    "snapshot {} was removed as soon as it was made, by a process making it \
                     under another key (e.g. an older or newer test binary running at the \
                     same time)",
                    key.name()
                ),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
    }

    /// Makes the snapshot under the exclusive lock.
    fn create(
        &self,
        key: &SnapshotKey,
        dir: &Path,
        state: &Path,
        create: impl FnOnce(&Path, &Path) -> Result<(), BoxError>,
    ) -> Result<(), SnapshotError> {
        let logs = dir.join(LOGS_DIR);
        // A failed attempt may have left logs or a partial state.
        let _ = fs::remove_dir_all(dir);
        crate::os::create_private_dir_all(&logs)
            .map_err(io_error(format!("creating {}", logs.display())))?;
        let partial = dir.join(format!("{STATE_FILE}.partial"));
        let created = create(&partial, &logs).and_then(|()| {
            if partial.is_file() {
                Ok(())
            } else {
                Err(format!("no state was saved to {}", partial.display()).into())
            }
        });
        if let Err(cause) = created {
            // Only the logs stay: no partial state, no RAM file.
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_name() != LOGS_DIR {
                    let _ = fs::remove_file(entry.path());
                }
            }
            return Err(SnapshotError::Create {
                name: key.name().to_string(),
                logs,
                cause,
            });
        }
        let key_file = dir.join(KEY_FILE);
        let key_json = serde_json::to_string_pretty(&key.to_json()).unwrap_or_default();
        fs::write(&key_file, key_json + "\n")
            .map_err(io_error(format!("writing {}", key_file.display())))?;
        fs::rename(&partial, state).map_err(io_error(format!(
            "renaming the state to {}",
            state.display()
        )))
    }

    /// Removes the snapshots of `key`'s name filed under other keys, with
    /// their lock files, unless someone holds their lock.
    fn prune(&self, key: &SnapshotKey, keep: &str) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        // A stale key shows as its directory, its lock file or both.
        let stale: BTreeSet<String> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".lock").unwrap_or(&name);
                let same_name = id
                    .strip_prefix(key.name())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|hash| {
                        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())
                    });
                (same_name && id != keep).then(|| id.to_string())
            })
            .collect();
        for id in stale {
            let lock_path = self.dir.join(format!("{id}.lock"));
            let Ok(lock) = os::open_lock(&lock_path) else {
                continue;
            };
            if os::try_flock_current(&lock, &lock_path, LockMode::Exclusive) {
                // The lock file last, while still held: a process that
                // waited on it sees it is gone and starts over.
                let _ = fs::remove_dir_all(self.dir.join(&id));
                let _ = fs::remove_file(&lock_path);
            }
        }
    }
}

fn io_error(context: String) -> impl FnOnce(io::Error) -> SnapshotError {
    move |source| SnapshotError::Io { context, source }
}

/// A snapshot in a [`SnapshotStore`], held (shared lock) until dropped.
///
/// ```no_run
/// # use qemu_test::snapshot::{SnapshotKey, SnapshotStore};
/// # let store = SnapshotStore::new("snapshots");
/// # let key = SnapshotKey::new("booted")?;
/// let snapshot = store.get_or_create(&key, |_, _| unreachable!("exists"))?;
/// let mut vm = qemu_test::Machine::new("qemu-system-x86_64");
/// vm.restore_from(Some(snapshot.state().to_path_buf()));
/// vm.launch()?;
/// drop(snapshot); // QEMU has loaded it
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Snapshot {
    id: String,
    dir: PathBuf,
    state: PathBuf,
    created: bool,
    _lock: File,
}

impl Snapshot {
    /// The key's [`id`](SnapshotKey::id).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The snapshot's directory: `state`, `key.json`, `create/` (logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The saved state, for [`Machine::restore_from`](crate::Machine::restore_from).
    pub fn state(&self) -> &Path {
        &self.state
    }
    /// The logs of the boot that made it.
    pub fn logs(&self) -> PathBuf {
        self.dir.join(LOGS_DIR)
    }
    /// Whether this call made it (rather than finding it).
    pub fn created(&self) -> bool {
        self.created
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, SnapshotStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(dir.path().join("snaps"));
        (dir, store)
    }

    fn write_state(state: &Path, _logs: &Path) -> Result<(), BoxError> {
        fs::write(state, b"saved")?;
        Ok(())
    }

    #[test]
    fn names_are_file_name_safe() {
        for good in ["booted", "a", "linux-shell_2.0", &"x".repeat(64)] {
            assert!(SnapshotKey::new(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "..", "sp ace", "ünï", &"x".repeat(65)] {
            assert!(
                matches!(
                    SnapshotKey::new(bad),
                    Err(SnapshotError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_cover_every_part() {
        let base = SnapshotKey::new("s").unwrap();
        let a = base.clone().with("args", vec!["-m", "1G"]);
        assert_eq!(a.id(), base.clone().with("args", vec!["-m", "1G"]).id());
        assert_ne!(a.id(), base.clone().with("args", vec!["-m", "2G"]).id());
        assert_ne!(a.id(), a.clone().with("setup", "x").id());
        assert_ne!(
            a.id(),
            SnapshotKey::new("t")
                .unwrap()
                .with("args", vec!["-m", "1G"])
                .id()
        );
        assert_eq!(a.id().len(), "s-".len() + 16);
    }

    #[test]
    fn a_changed_file_changes_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kernel");
        fs::write(&file, "one").unwrap();
        let key = || SnapshotKey::new("k").unwrap().with_file("kernel", &file);
        let before = key().id();
        assert_eq!(before, key().id());
        fs::write(&file, "three").unwrap();
        assert_ne!(before, key().id(), "size changed");
        fs::remove_file(&file).unwrap();
        assert_eq!(key().to_json()["parts"]["kernel"]["missing"], true);
    }

    #[test]
    fn created_once_then_found() {
        let (_dir, store) = store();
        let key = SnapshotKey::new("booted").unwrap().with("v", 1);
        let first = store.get_or_create(&key, write_state).unwrap();
        assert!(first.created());
        assert_eq!(fs::read(first.state()).unwrap(), b"saved");
        assert!(first.logs().is_dir());
        let key_json: Value =
            serde_json::from_slice(&fs::read(first.dir().join(KEY_FILE)).unwrap()).unwrap();
        assert_eq!(key_json, key.to_json());
        drop(first);
        let second = store
            .get_or_create(&key, |_, _| panic!("must not be made twice"))
            .unwrap();
        assert!(!second.created());
        assert_eq!(second.id(), key.id());
        let mode = fs::metadata(store.dir()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_failed_creation_leaves_no_state_and_says_where_the_logs_are() {
        let (_dir, store) = store();
        let key = SnapshotKey::new("broken").unwrap();
        let err = store
            .get_or_create(&key, |state, logs| {
                fs::write(state, "half")?;
                fs::write(logs.join("qemu.log"), "oops")?;
                Err("setup failed: no shell".into())
            })
            .unwrap_err();
        match &err {
            SnapshotError::Create { name, logs, cause } => {
                assert_eq!(name, "broken");
                assert_eq!(fs::read_to_string(logs.join("qemu.log")).unwrap(), "oops");
                assert_eq!(cause.to_string(), "setup failed: no shell");
            }
            other => panic!("{other:?}"),
        }
        assert!(format!("{err:?}").contains("caused by: setup failed: no shell"));
        assert!(!store.dir().join(key.id()).join(STATE_FILE).exists());
        // A closure that "succeeds" without saving anything is a failure too.
        let err = store.get_or_create(&key, |_, _| Ok(())).unwrap_err();
        assert!(format!("{err:?}").contains("no state was saved"), "{err:?}");
        // And the next attempt may succeed.
        assert!(store.get_or_create(&key, write_state).unwrap().created());
    }

    fn lock_file(store: &SnapshotStore, key: &SnapshotKey) -> PathBuf {
        store.dir().join(format!("{}.lock", key.id()))
    }

    #[test]
    fn a_lock_file_removed_while_waited_on_is_made_again() {
        let (_dir, store) = store();
        let key = SnapshotKey::new("waited").unwrap();
        fs::create_dir_all(store.dir()).unwrap();
        let path = lock_file(&store, &key);
        // Held exclusively, as `prune` holds a stale key's lock.
        let pruner = os::open_lock(&path).unwrap();
        assert!(os::try_lock(&pruner, LockMode::Exclusive));
        let waiter = {
            let (store, key) = (store.clone(), key.clone());
            std::thread::spawn(move || store.get_or_create(&key, write_state).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!waiter.is_finished(), "waits for the lock");
        fs::remove_file(&path).unwrap();
        drop(pruner);
        let snapshot = waiter.join().unwrap();
        assert!(snapshot.created() && snapshot.state().is_file());
        // It holds the lock file that is there now, so a maker of another
        // key cannot remove the snapshot under it.
        let current = File::open(&path).expect("the lock file is made again");
        assert!(
            !os::try_lock(&current, LockMode::Exclusive),
            "the snapshot's holder locks the current lock file"
        );
        drop(snapshot);
        assert!(os::try_lock(&current, LockMode::Exclusive));
    }

    #[test]
    fn concurrent_callers_create_once() {
        let (_dir, store) = store();
        let key = SnapshotKey::new("shared").unwrap();
        let made = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, key, made) = (store.clone(), key.clone(), made.clone());
                std::thread::spawn(move || {
                    store
                        .get_or_create(&key, |state, logs| {
                            made.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            write_state(state, logs)
                        })
                        .unwrap()
                        .created()
                })
            })
            .collect();
        let created: usize = threads
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert_eq!(created, 1);
    }

    #[test]
    fn a_new_key_replaces_the_old_snapshot_unless_in_use() {
        let (_dir, store) = store();
        let v1 = SnapshotKey::new("s").unwrap().with("v", 1);
        let v2 = SnapshotKey::new("s").unwrap().with("v", 2);
        let v3 = SnapshotKey::new("s").unwrap().with("v", 3);
        let other = SnapshotKey::new("s2").unwrap();
        drop(store.get_or_create(&v1, write_state).unwrap());
        drop(store.get_or_create(&other, write_state).unwrap());
        let held = store.get_or_create(&v1, write_state).unwrap();
        drop(store.get_or_create(&v2, write_state).unwrap());
        assert!(held.state().is_file(), "in use: kept");
        assert!(
            lock_file(&store, &v1).is_file(),
            "in use: its lock file too"
        );
        drop(held);
        drop(store.get_or_create(&v3, write_state).unwrap());
        for stale in [&v1, &v2] {
            assert!(!store.dir().join(stale.id()).exists());
            assert!(!lock_file(&store, stale).exists(), "no lock files pile up");
        }
        assert!(store.dir().join(v3.id()).join(STATE_FILE).is_file());
        assert!(
            store.dir().join(other.id()).join(STATE_FILE).is_file(),
            "another name is left alone"
        );
    }
}
