//! `flock` locks on files: blocking, non-blocking, and the
//! flock-and-unlink protocol for lock files that are removed by their
//! holder ([`lock_current`], [`FileLock`]).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

/// A shared or an exclusive lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}

impl LockMode {
    fn blocking(self) -> FlockOperation {
        match self {
            LockMode::Shared => FlockOperation::LockShared,
            LockMode::Exclusive => FlockOperation::LockExclusive,
        }
    }

    fn non_blocking(self) -> FlockOperation {
        match self {
            LockMode::Shared => FlockOperation::NonBlockingLockShared,
            LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        }
    }
}

/// Blocks until `file` is locked with `mode` (retried when a signal
/// interrupts the wait).
pub(crate) fn wait_lock(file: &File, mode: LockMode) -> io::Result<()> {
    flock_retrying(file, mode.blocking())
}

/// Locks `file` with `mode` if nobody holds a conflicting lock; whether it
/// did.
pub(crate) fn try_lock(file: &File, mode: LockMode) -> bool {
    rustix::fs::flock(file, mode.non_blocking()).is_ok()
}

/// Releases a lock taken on `file`.
pub(crate) fn unlock(file: &File) {
    let _ = rustix::fs::flock(file, FlockOperation::Unlock);
}

/// Whether someone holds a lock on the lock file at `path` (a missing file
/// is nobody's).
pub(crate) fn is_locked(path: &Path) -> bool {
    let Ok(file) = fs::OpenOptions::new().write(true).open(path) else {
        return false;
    };
    if try_lock(&file, LockMode::Exclusive) {
        unlock(&file);
        false
    } else {
        true
    }
}

fn flock_retrying(file: &File, op: FlockOperation) -> io::Result<()> {
    while let Err(e) = rustix::fs::flock(file, op) {
        if e != rustix::io::Errno::INTR {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Locks the directory `dir` itself (an `flock` on the directory, no
/// file in it), exclusively, if nobody else holds it: the lock, held until
/// the returned file is dropped, or `None` when someone holds it. For
/// telling a directory in use by a live process (the kernel releases a
/// dead process's locks) from one left behind.
pub(crate) fn try_lock_dir(dir: &Path) -> io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::DIRECTORY.bits() as i32)
        .open(dir)?;
    Ok(try_lock(&file, LockMode::Exclusive).then_some(file))
}

/// Opens the lock file at `path`, creating it if needed.
pub(crate) fn open_lock(path: &Path) -> io::Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// [`wait_lock`]s `file` with `mode`, then returns
/// whether `file` is still the file at `path`.
///
/// Lock files are removed by whoever holds them when they are done with
/// them, so that they do not pile up; whoever waited on a removed one then
/// holds a lock nobody else can find. So a caller that gets `false` drops
/// `file` and locks a freshly opened one ([`lock_current`] does).
pub(crate) fn flock_current(file: &File, path: &Path, mode: LockMode) -> io::Result<bool> {
    wait_lock(file, mode)?;
    Ok(is_current(file, path))
}

/// Like [`flock_current`] without waiting: `false` when someone else
/// holds a conflicting lock, or `file` is no longer the one at `path`.
pub(crate) fn try_flock_current(file: &File, path: &Path, mode: LockMode) -> bool {
    try_lock(file, mode) && is_current(file, path)
}

/// Whether `file` is still the file at `path`.
fn is_current(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
        _ => false,
    }
}

/// Blocks until the file at `path` (created if needed) is locked with `mode`
/// (see [`flock_current`]).
fn lock_current(path: &Path, mode: LockMode) -> io::Result<File> {
    loop {
        let file = open_lock(path)?;
        if flock_current(&file, path, mode)? {
            return Ok(file);
        }
    }
}

/// An exclusive lock on a lock file, held until dropped (for one-at-a-time
/// work across processes, such as the KVM probe); the file is removed when
/// dropped (see [`flock_current`]), so lock files do not pile up.
#[derive(Debug)]
pub(crate) struct FileLock {
    held: Option<(File, PathBuf)>,
}

impl FileLock {
    /// Blocks until the lock on `path` (created if needed) is ours. If the
    /// file cannot be opened the lock is a no-op: callers must tolerate
    /// doing the work twice.
    pub(crate) fn exclusive(path: &Path) -> FileLock {
        let held = lock_current(path, LockMode::Exclusive)
            .ok()
            .map(|file| (file, path.to_path_buf()));
        FileLock { held }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if let Some((file, path)) = &self.held {
            // Removed while still held: a waiter sees it is gone.
            let _ = fs::remove_file(path);
            unlock(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn file_locks_exclude_though_each_holder_removes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("l"));
        let busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (path, busy, overlaps) = (path.clone(), busy.clone(), overlaps.clone());
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let lock = FileLock::exclusive(&path);
                        if busy.swap(true, Ordering::SeqCst) {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        std::thread::sleep(Duration::from_micros(200));
                        busy.store(false, Ordering::SeqCst);
                        drop(lock);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
        assert!(!path.exists());
    }

    #[test]
    fn file_locks_exclude() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let lock = FileLock::exclusive(&path);
        let p = path.clone();
        let (ready, go) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let started = Instant::now();
            ready.send(()).unwrap();
            drop(FileLock::exclusive(&p));
            started.elapsed()
        });
        // Held for 100 ms after the thread started trying, however late
        // a loaded host lets it start.
        go.recv().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(lock);
        // The waiter locked the file its holder removed, then a new one.
        assert!(t.join().unwrap() >= Duration::from_millis(100));
        assert!(!path.exists(), "lock files do not pile up");
    }
}
