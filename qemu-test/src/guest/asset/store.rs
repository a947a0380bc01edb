//! The assets' directory in the cache, `<cache>/assets/` (the layout is in
//! the [module docs](super)): finding a complete entry and holding it while
//! in use, the fetch lock, installing an entry whole, listing and removing
//! entries and interrupted downloads.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::progress::Progress;
use crate::os::{self, LockMode};

/// The manifest of an entry, written last.
pub(crate) const MANIFEST: &str = "asset.json";

/// An entry not used for this long is stale (pruned by `prune`).
const STALE_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// Use locks held until the process exits, by lock file.
static HELD: Mutex<Vec<(PathBuf, File)>> = Mutex::new(Vec::new());

/// Lets go of this process's use lock at `path`.
fn release(path: &Path) {
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(held, _)| held != path);
}

/// The assets' directory in a cache.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

/// A complete entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The file QEMU uses.
    pub(crate) file: PathBuf,
    /// The manifest.
    pub(crate) manifest: Value,
}

impl Entry {
    /// Whether the file still has the SHA-256 recorded when it was fetched
    /// (reads it whole).
    pub(crate) fn intact(&self) -> bool {
        let recorded = self.manifest["file_sha256"].as_str();
        recorded.is_some() && sha256_file(&self.file).ok().as_deref() == recorded
    }
}

/// An entry as the cache listing sees it.
#[derive(Debug)]
pub(crate) struct Listed {
    /// The hash (the entry's name).
    pub(crate) sha: String,
    /// The entry's dir, or the `.part` file.
    pub(crate) path: PathBuf,
    /// The file's name, from the manifest (`None`: an interrupted download).
    pub(crate) file: Option<String>,
    /// Not used for 30 days (an entry), or any interrupted download.
    pub(crate) stale: bool,
    /// A process uses it (an entry) or is fetching it (a download).
    pub(crate) in_use: bool,
}

/// The fetch lock of one asset, released (and its file removed) when
/// dropped.
#[derive(Debug)]
pub(crate) struct FetchLock {
    file: File,
    path: PathBuf,
}

impl Drop for FetchLock {
    fn drop(&mut self) {
        // Removed while still held: a waiter sees it is gone.
        let _ = fs::remove_file(&self.path);
        os::unlock(&self.file);
    }
}

impl Store {
    /// The assets' dir of the cache at `root`.
    pub(crate) fn new(root: &Path) -> Store {
        Store {
            dir: root.join("assets"),
        }
    }

    /// Where the entry of `sha` is (or would be).
    pub(crate) fn entry_dir(&self, sha: &str) -> PathBuf {
        self.dir.join(sha)
    }

    /// Where an interrupted download of `sha` is kept.
    pub(crate) fn part(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.part"))
    }

    fn use_lock(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.lock"))
    }

    fn fetch_lock_path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.fetch.lock"))
    }

    /// Whether a complete entry of `sha` is there (without holding it).
    pub(crate) fn has(&self, sha: &str) -> bool {
        self.entry_dir(sha).join(MANIFEST).is_file()
    }

    /// The complete entry of `sha`, held (shared lock) until the process
    /// exits; its file must have the size its manifest records.
    pub(crate) fn find(&self, sha: &str) -> Option<Entry> {
        if !self.has(sha) {
            return None;
        }
        let lock_path = self.use_lock(sha);
        let lock = loop {
            let file = os::open_lock(&lock_path).ok()?;
            if os::flock_current(&file, &lock_path, LockMode::Shared).ok()? {
                break file;
            }
        };
        let entry = self.read_entry(sha)?;
        // Its time is when it was last used (for pruning).
        let _ = lock.set_modified(SystemTime::now());
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((lock_path, lock));
        Some(entry)
    }

    /// The entry of `sha` as it is on disk, if complete and of the
    /// recorded size.
    fn read_entry(&self, sha: &str) -> Option<Entry> {
        let dir = self.entry_dir(sha);
        let manifest: Value = serde_json::from_slice(&fs::read(dir.join(MANIFEST)).ok()?).ok()?;
        let name = manifest["file"].as_str()?;
        if name.contains('/') || name.starts_with('.') {
            return None;
        }
        let file = dir.join(name);
        let size = fs::metadata(&file).ok()?.len();
        (Some(size) == manifest["bytes"].as_u64()).then_some(Entry { file, manifest })
    }

    /// Takes the fetch lock of `sha`, saying so if another process (or
    /// thread) holds it.
    pub(crate) fn fetch_lock(&self, sha: &str, progress: &Progress) -> Result<FetchLock, String> {
        os::create_private_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let path = self.fetch_lock_path(sha);
        let mut said = false;
        loop {
            let file =
                os::open_lock(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            if os::try_flock_current(&file, &path, LockMode::Exclusive) {
                return Ok(FetchLock { file, path });
            }
            if !said {
                progress.say(format!(
                    "waiting for another process that is fetching it (lock {})",
                    path.display()
                ));
                said = true;
            }
            let current = os::flock_current(&file, &path, LockMode::Exclusive)
                .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
            if current {
                return Ok(FetchLock { file, path });
            }
        }
    }

    /// A fresh temp dir to make the entry of `sha` in, removed when
    /// dropped. Under the fetch lock, so what an interrupted fetch of it
    /// left is removed first.
    #[cfg_attr(not(feature = "assets"), allow(dead_code))]
    pub(crate) fn work_dir(
        &self,
        sha: &str,
        _lock: &FetchLock,
    ) -> Result<tempfile::TempDir, String> {
        let prefix = format!(".fetch-{sha}-");
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&self.dir)
            .map_err(|e| format!("cannot create a temp dir in {}: {e}", self.dir.display()))
    }

    /// Moves a made entry (`made`, a dir holding the file and its
    /// manifest) into place as the entry of `sha`.
    #[cfg_attr(not(feature = "assets"), allow(dead_code))]
    pub(crate) fn install(&self, sha: &str, made: &Path, _lock: &FetchLock) -> Result<(), String> {
        let dir = self.entry_dir(sha);
        // One there but not found is incomplete or damaged: nobody uses it.
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot remove the damaged entry {}: {e}", dir.display()))?;
        }
        fs::rename(made, &dir).map_err(|e| format!("cannot move it to {}: {e}", dir.display()))
    }

    /// Removes the entry of `sha` for a fetch to replace it (it was found
    /// damaged), unless a process uses it.
    pub(crate) fn discard(&self, sha: &str) {
        // This process holds it too: let go of its own lock first.
        release(&self.use_lock(sha));
        self.remove_if_unused(sha);
    }

    /// Removes the entry of `sha` and its lock file unless a process uses
    /// it; whether it is gone.
    pub(crate) fn remove_if_unused(&self, sha: &str) -> bool {
        let lock_path = self.use_lock(sha);
        let Ok(lock) = os::open_lock(&lock_path) else {
            return false;
        };
        if !os::try_flock_current(&lock, &lock_path, LockMode::Exclusive) {
            return false;
        }
        let removed = match fs::remove_dir_all(self.entry_dir(sha)) {
            Ok(()) => true,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        // The lock file last, while still held: a process waiting on it
        // sees it is gone and starts over.
        let _ = fs::remove_file(&lock_path);
        removed
    }

    /// Removes the interrupted download of `sha` unless it is being
    /// fetched; whether it is gone.
    pub(crate) fn remove_part_if_unused(&self, sha: &str) -> bool {
        let path = self.fetch_lock_path(sha);
        let Ok(file) = os::open_lock(&path) else {
            return false;
        };
        if !os::try_flock_current(&file, &path, LockMode::Exclusive) {
            return false;
        }
        let lock = FetchLock { file, path };
        let removed = fs::remove_file(self.part(sha)).is_ok();
        drop(lock);
        removed
    }

    /// The entries and interrupted downloads, by hash.
    pub(crate) fn list(&self) -> Vec<Listed> {
        let mut listed = Vec::new();
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(sha) = name.strip_suffix(".part").filter(|s| is_sha(s)) {
                listed.push(Listed {
                    sha: sha.to_string(),
                    path: entry.path(),
                    file: None,
                    stale: true,
                    in_use: os::is_locked(&self.fetch_lock_path(sha)),
                });
            } else if is_sha(&name) && entry.path().is_dir() {
                listed.push(self.listed_entry(&name));
            }
        }
        listed.sort_by(|a, b| (&a.sha, a.file.is_none()).cmp(&(&b.sha, b.file.is_none())));
        listed
    }

    fn listed_entry(&self, sha: &str) -> Listed {
        let manifest = self.read_entry(sha).map(|e| e.manifest);
        let lock = self.use_lock(sha);
        let used = fs::metadata(&lock)
            .or_else(|_| fs::metadata(self.entry_dir(sha)))
            .and_then(|m| m.modified())
            .ok();
        let old = used
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age > STALE_AFTER);
        Listed {
            sha: sha.to_string(),
            path: self.entry_dir(sha),
            file: manifest
                .as_ref()
                .and_then(|m| m["file"].as_str().map(str::to_string)),
            // An incomplete or damaged entry is of no use.
            stale: manifest.is_none() || old,
            in_use: os::is_locked(&lock),
        }
    }
}

/// Whether `name` is a SHA-256 in hex (an entry's name).
fn is_sha(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The SHA-256 of the file at `path`, in lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Bytes in lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    /// A complete entry of `sha` holding `bytes` as `file`.
    fn fake_entry(store: &Store, sha: &str, file: &str, bytes: &[u8]) {
        let dir = store.entry_dir(sha);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(file), bytes).unwrap();
        let manifest = serde_json::json!({
            "file": file,
            "bytes": bytes.len(),
            "file_sha256": hex(&Sha256::digest(bytes)),
        });
        fs::write(dir.join(MANIFEST), manifest.to_string()).unwrap();
    }

    #[test]
    fn entries_are_found_held_listed_and_removed_only_when_unused() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path());
        fs::create_dir_all(&store.dir).unwrap();
        let (a, b) = (sha(0xaa), sha(0xbb));
        fake_entry(&store, &a, "vmlinuz", b"kernel");
        fs::write(store.part(&b), b"half").unwrap();
        let found = store.find(&a).expect("complete");
        assert_eq!(found.file, store.entry_dir(&a).join("vmlinuz"));
        assert!(found.intact());
        assert!(store.find(&b).is_none(), "a part is not an entry");
        let listed = store.list();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].file.as_deref(), Some("vmlinuz"));
        assert!(listed[0].in_use && !listed[0].stale);
        assert!(listed[1].file.is_none() && listed[1].stale && !listed[1].in_use);
        assert!(!store.remove_if_unused(&a), "in use by this process");
        release(&store.use_lock(&a));
        assert!(store.remove_if_unused(&a));
        assert!(!store.entry_dir(&a).exists());
        assert!(!store.use_lock(&a).exists(), "no lock files pile up");
        assert!(store.remove_part_if_unused(&b));
        assert!(store.list().is_empty());
    }

    #[test]
    fn damaged_entries_are_not_found() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path());
        let a = sha(0xcc);
        fake_entry(&store, &a, "disk.img", b"0123456789");
        fs::write(store.entry_dir(&a).join("disk.img"), b"cut").unwrap();
        assert!(store.find(&a).is_none(), "wrong size");
        fs::write(store.entry_dir(&a).join("disk.img"), b"9876543210").unwrap();
        let entry = store.find(&a).expect("right size");
        assert!(!entry.intact(), "wrong content");
        release(&store.use_lock(&a));
    }
}
