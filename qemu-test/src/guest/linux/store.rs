//! One Linux guest's directory in the cache, `<cache>/linux-<arch>/`:
//!
//! | entry | what |
//! | --- | --- |
//! | `<key>/` | a build: `kernel`, `initrd.gz`, `manifest.json`; `<key>` is 16 hex digits of the SHA-256 of its inputs |
//! | `<key>.lock` | held shared by every process using that build, so it is not removed under them |
//! | `build.lock` | held exclusively while a process fetches package lists, downloads or builds |
//! | `apt/` | the private package lists and what they resolve to |
//! | `debs/` | the downloaded packages, kept so that a rebuild does not download again |
//!
//! A build is made in a temp dir beside the others and renamed into place
//! whole. After a new build the older builds are removed (unless in use),
//! and so are the packages it no longer needs: nothing grows without bound.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::apt::Package;
use super::progress::Progress;
use super::{LinuxFiles, LinuxGuest};
use crate::os::{self, LockMode};

/// Locks on builds in use, held until the process exits.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// One guest's directory in the cache.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

/// A build found in a store, for the cache listing.
#[derive(Debug)]
pub(crate) struct StoredBuild {
    pub(crate) key: String,
    pub(crate) dir: PathBuf,
    /// Its manifest, if it is complete.
    pub(crate) manifest: Option<serde_json::Value>,
}

impl Store {
    /// The store of the guest named `name` in the cache at `root`.
    pub(crate) fn new(root: &Path, name: &str) -> Store {
        Store {
            dir: root.join(name),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the store's dir (mode 0700).
    pub(crate) fn create(&self) -> Result<(), String> {
        os::create_private_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))
    }

    pub(crate) fn apt_dir(&self) -> PathBuf {
        self.dir.join("apt")
    }

    pub(crate) fn debs_dir(&self) -> PathBuf {
        self.dir.join("debs")
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.lock"))
    }

    /// The complete build filed under `key`, held (shared lock) until the
    /// process exits. With `verify`, its files must also have the SHA-256
    /// its manifest records (which reads them).
    pub(crate) fn find_verified(
        &self,
        key: &str,
        guest: &LinuxGuest,
        verify: bool,
    ) -> Option<LinuxFiles> {
        let dir = self.dir.join(key);
        if !dir.join(super::MANIFEST).is_file() {
            return None;
        }
        let lock_path = self.lock_path(key);
        let lock = loop {
            let file = os::open_lock(&lock_path).ok()?;
            if os::flock_current(&file, &lock_path, LockMode::Shared).ok()? {
                break file;
            }
        };
        let files = LinuxFiles::locate(&dir, guest).ok()?;
        if verify && !files.verify() {
            return None;
        }
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push(lock);
        Some(files)
    }

    /// [`find_verified`](Self::find_verified) without the hash check.
    pub(crate) fn find(&self, key: &str, guest: &LinuxGuest) -> Option<LinuxFiles> {
        self.find_verified(key, guest, false)
    }

    /// The newest complete build made from the guest's own files as they
    /// are now (`sources_sha256`), whatever its packages: what an offline
    /// host without package lists can use.
    pub(crate) fn find_same_sources(
        &self,
        sources: &str,
        guest: &LinuxGuest,
    ) -> Option<LinuxFiles> {
        let mut builds: Vec<_> = self
            .builds()
            .into_iter()
            .filter(|b| {
                b.manifest
                    .as_ref()
                    .is_some_and(|m| m["sources_sha256"] == sources)
            })
            .collect();
        builds.sort_by_key(|b| fs::metadata(&b.dir).and_then(|m| m.modified()).ok());
        builds.iter().rev().find_map(|b| self.find(&b.key, guest))
    }

    /// Every build in the store (complete or not).
    pub(crate) fn builds(&self) -> Vec<StoredBuild> {
        let mut builds: Vec<StoredBuild> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let key = entry
                    .file_name()
                    .to_str()
                    .filter(|k| is_key(k))?
                    .to_string();
                let dir = entry.path();
                let manifest = fs::read(dir.join(super::MANIFEST))
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok());
                Some(StoredBuild { key, dir, manifest })
            })
            .collect();
        builds.sort_by(|a, b| a.key.cmp(&b.key));
        builds
    }

    /// Takes the store's build lock, saying so if another process holds it.
    pub(crate) fn build_lock(&self, progress: &Progress) -> Result<BuildLock, String> {
        let path = self.dir.join("build.lock");
        let open =
            || os::open_lock(&path).map_err(|e| format!("cannot open {}: {e}", path.display()));
        let mut said = false;
        loop {
            let file = open()?;
            if os::try_flock_current(&file, &path, LockMode::Exclusive) {
                return Ok(BuildLock { file, path });
            }
            if !said {
                progress.say(format!(
                    "waiting for another process that is building it (lock {})",
                    path.display()
                ));
                said = true;
            }
            let current = os::flock_current(&file, &path, LockMode::Exclusive)
                .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
            if current {
                return Ok(BuildLock { file, path });
            }
        }
    }

    /// A fresh temp dir for a build, removed when dropped. Under the build
    /// lock, so whatever an interrupted build left is removed first.
    pub(crate) fn work_dir(&self, _lock: &BuildLock) -> Result<tempfile::TempDir, String> {
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(".build-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        tempfile::Builder::new()
            .prefix(".build-")
            .tempdir_in(&self.dir)
            .map_err(|e| format!("cannot create a temp dir in {}: {e}", self.dir.display()))
    }

    /// Moves a finished build (`built`, a dir holding its files) into
    /// place under `key`.
    pub(crate) fn install(&self, key: &str, built: &Path, _lock: &BuildLock) -> Result<(), String> {
        let dir = self.dir.join(key);
        // A build that is there but was not found is incomplete or damaged:
        // nobody uses it.
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot remove the damaged build {}: {e}", dir.display()))?;
        }
        fs::rename(built, &dir)
            .map_err(|e| format!("cannot move the build to {}: {e}", dir.display()))
    }

    /// Removes the builds other than `keep`, unless in use; returns the
    /// keys of those kept because they are in use.
    pub(crate) fn remove_others(&self, keep: &str, _lock: &BuildLock) -> Vec<String> {
        let keys: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = name.strip_suffix(".lock").unwrap_or(&name);
                (is_key(key) && key != keep).then(|| key.to_string())
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        keys.into_iter()
            .filter(|key| !self.remove_if_unused(key))
            .collect()
    }

    /// Removes the build `key` and its lock file unless a process uses it;
    /// whether it is gone.
    pub(crate) fn remove_if_unused(&self, key: &str) -> bool {
        let lock_path = self.lock_path(key);
        let Ok(lock) = os::open_lock(&lock_path) else {
            return false;
        };
        if !os::try_flock_current(&lock, &lock_path, LockMode::Exclusive) {
            return false;
        }
        let removed = match fs::remove_dir_all(self.dir.join(key)) {
            Ok(()) => true,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        // The lock file last, while still held: a process waiting on it sees
        // it is gone and starts over.
        let _ = fs::remove_file(&lock_path);
        removed
    }

    /// Removes the downloaded packages other than `keep`.
    pub(crate) fn remove_other_debs(&self, keep: &[Package], _lock: &BuildLock) {
        let wanted: Vec<String> = keep.iter().map(Package::file_name).collect();
        for entry in fs::read_dir(self.debs_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".deb") && !wanted.contains(&name) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Takes the build lock if nobody holds it (for pruning).
    pub(crate) fn try_build_lock(&self) -> Option<BuildLock> {
        let path = self.dir.join("build.lock");
        let file = os::open_lock(&path).ok()?;
        os::try_flock_current(&file, &path, LockMode::Exclusive).then_some(BuildLock { file, path })
    }
}

/// Whether `name` is a build's key: 16 lowercase hex digits.
fn is_key(name: &str) -> bool {
    name.len() == 16
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The store's build lock, released (and its file removed) when dropped.
#[derive(Debug)]
pub(crate) struct BuildLock {
    file: File,
    path: PathBuf,
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        // Removed while still held: a waiter sees it is gone.
        let _ = fs::remove_file(&self.path);
        os::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::LINUX_X86_64;

    /// A complete build in `store` under `key`, made of tiny files.
    fn fake_build(store: &Store, key: &str, sources: &str) {
        let dir = store.dir().join(key);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(super::super::KERNEL), b"kernel").unwrap();
        fs::write(dir.join(super::super::INITRD), b"initrd").unwrap();
        let manifest = serde_json::json!({
            "arch": "x86_64",
            "sources_sha256": sources,
            "files": {"kernel": {"size": 6}, "initrd.gz": {"size": 6}},
        });
        fs::write(dir.join(super::super::MANIFEST), manifest.to_string()).unwrap();
    }

    fn guest() -> &'static LinuxGuest {
        match &LINUX_X86_64.load {
            crate::guest::Load::Linux(linux) => linux,
            _ => unreachable!(),
        }
    }

    #[test]
    fn builds_are_found_held_and_removed_only_when_unused() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path(), "linux-x86_64");
        store.create().unwrap();
        let (old, new) = ("00000000000000aa", "00000000000000bb");
        fake_build(&store, old, "s1");
        fake_build(&store, new, "s2");
        assert!(store.find("0000000000000000", guest()).is_none());
        let held = store.find(old, guest()).expect("complete");
        assert_eq!(held.kernel, store.dir().join(old).join("kernel"));
        let lock = store.try_build_lock().expect("free");
        // In use by this process (a shared lock held until it exits).
        assert_eq!(store.remove_others(new, &lock), [old]);
        assert!(store.dir().join(old).is_dir());
        HELD.lock().unwrap().clear();
        assert!(store.remove_others(new, &lock).is_empty());
        assert!(!store.dir().join(old).exists());
        assert!(!store.lock_path(old).exists(), "no lock files pile up");
        assert_eq!(
            store.find_same_sources("s2", guest()).unwrap().dir,
            store.dir().join(new)
        );
        assert!(store.find_same_sources("s1", guest()).is_none());
        drop(lock);
        assert!(!store.dir().join("build.lock").exists());
    }

    #[test]
    fn a_damaged_build_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path(), "linux-x86_64");
        let key = "00000000000000cc";
        fake_build(&store, key, "s");
        fs::write(store.dir().join(key).join("kernel"), b"cut").unwrap();
        assert!(store.find(key, guest()).is_none());
        let builds = store.builds();
        assert_eq!(builds.len(), 1);
        assert!(builds[0].manifest.is_some());
    }
}
