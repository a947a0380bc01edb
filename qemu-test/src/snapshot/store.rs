//! The store: a directory of saved states, each filed under its key's id,
//! made once under an exclusive lock and used under shared ones.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::SnapshotKey;
use crate::error::{BoxError, SnapshotError};
use crate::os::{self, LockMode};

/// The saved state's file name inside a snapshot's directory.
const STATE_FILE: &str = "state";
/// The key, as JSON, beside the state (for humans).
const KEY_FILE: &str = "key.json";
/// The logs of the boot that made the snapshot.
const LOGS_DIR: &str = "create";

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
            self.remove_if_unused(&id);
        }
    }

    /// Removes the snapshot filed under `id` (a key's [`id`](SnapshotKey::id))
    /// with its lock file, unless someone holds its lock; whether it is gone.
    pub(crate) fn remove_if_unused(&self, id: &str) -> bool {
        let lock_path = self.dir.join(format!("{id}.lock"));
        let Ok(lock) = os::open_lock(&lock_path) else {
            return false;
        };
        if !os::try_flock_current(&lock, &lock_path, LockMode::Exclusive) {
            return false;
        }
        // The lock file last, while still held: a process that waited on it
        // sees it is gone and starts over.
        let removed = match fs::remove_dir_all(self.dir.join(id)) {
            Ok(()) => true,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        let _ = fs::remove_file(&lock_path);
        removed
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
    use serde_json::Value;
    use std::os::unix::fs::MetadataExt;
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
