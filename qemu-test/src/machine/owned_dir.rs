//! The machine's temp and socket dirs: private (0700), randomly named, and
//! marked as in use by a file lock held for as long as the dir exists.
//!
//! A process that dies without cleaning up (SIGKILL) leaves its dirs
//! behind, but its locks die with it: the first launch of each later
//! process that uses the same base dir removes the dirs whose lock nobody
//! holds. A lock, unlike a pid in the name, means the same in every pid
//! namespace sharing the base dir, and is never recycled.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::TempDir;

use crate::os;

/// The lock file's name inside each dir.
const LOCK_FILE: &str = ".qemu-test-owner";

/// A dir that is removed when dropped, locked while it exists.
#[derive(Debug)]
pub(crate) struct OwnedDir {
    // Dropped first: the lock is released, then the dir removed. A sweep
    // that takes the lock in between removes a dir that is going anyway.
    // The other order costs far more on a journaling file system: the lock
    // file, unlinked while still open, becomes an orphan inode that the
    // last close must clean up (measured: 0.5 ms per dir on ext4).
    _lock: File,
    dir: TempDir,
}

impl OwnedDir {
    /// Creates `<base>/<prefix>XXXXXX` (mode 0700) with its lock held,
    /// after removing the abandoned dirs with this prefix from `base` (once
    /// per process and base).
    pub(crate) fn create(base: &Path, prefix: &str) -> io::Result<OwnedDir> {
        sweep_once(base, prefix);
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(super::private())
            .tempdir_in(base)?;
        // Locked under a staging name, then renamed: a sweep never sees the
        // lock file unlocked.
        let staging = dir.path().join(format!("{LOCK_FILE}.new"));
        let lock = File::options()
            .write(true)
            .create_new(true)
            .open(&staging)?;
        if !os::try_lock(&lock, os::LockMode::Exclusive) {
            return Err(io::Error::other("cannot lock a new dir's lock file"));
        }
        fs::rename(&staging, dir.path().join(LOCK_FILE))?;
        Ok(OwnedDir { _lock: lock, dir })
    }

    /// The dir's path.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// [`sweep`], the first time for this `base` and `prefix` in this process.
/// [`OwnedDir::create`] does it; call it directly for a kind of dir that a
/// process may never create (a machine creates its socket dir on first
/// use), so its abandoned dirs still go.
pub(crate) fn sweep_once(base: &Path, prefix: &str) {
    static SWEPT: Mutex<BTreeSet<(PathBuf, String)>> = Mutex::new(BTreeSet::new());
    let first = SWEPT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((base.to_path_buf(), prefix.to_string()));
    if first {
        sweep(base, prefix);
    }
}

/// Removes the dirs `<base>/<prefix>*` that are ours (our uid, a real dir,
/// our lock file inside) and that no live process holds the lock of.
/// Returns how many it removed. Dirs of other programs (no lock file) and
/// of other users are left alone.
fn sweep(base: &Path, prefix: &str) -> usize {
    let uid = os::uid();
    let Ok(entries) = fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let ours = entry.file_name().to_string_lossy().starts_with(prefix)
            && entry.file_type().is_ok_and(|t| t.is_dir())
            && entry.metadata().is_ok_and(|m| m.uid() == uid);
        if !ours {
            continue;
        }
        let Ok(lock) = File::open(entry.path().join(LOCK_FILE)) else {
            continue;
        };
        if os::try_lock(&lock, os::LockMode::Exclusive) && fs::remove_dir_all(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unlocked_dirs_of_ours_are_swept() {
        let base = tempfile::tempdir().unwrap();
        let live = OwnedDir::create(base.path(), "qm-").unwrap();
        // An owner that died: the dir and lock file stay, the lock does not.
        let dead = OwnedDir::create(base.path(), "qm-").unwrap();
        let dead_path = dead.path().to_path_buf();
        let (dir, lock) = (dead.dir, dead._lock);
        let _ = dir.keep();
        drop(lock);
        // Not ours: no lock file, or another prefix.
        let foreign = base.path().join("qm-python");
        fs::create_dir(&foreign).unwrap();
        let other = OwnedDir::create(base.path(), "other-").unwrap();
        let other_path = other.path().to_path_buf();
        let (dir, lock) = (other.dir, other._lock);
        let _ = dir.keep();
        drop(lock);

        assert_eq!(sweep(base.path(), "qm-"), 1);
        assert!(!dead_path.exists());
        assert!(live.path().join(LOCK_FILE).is_file());
        assert!(foreign.is_dir());
        assert!(other_path.is_dir());
        drop(live);
        assert_eq!(sweep(base.path(), "qm-"), 0, "a dropped dir removes itself");
    }
}
