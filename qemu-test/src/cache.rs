//! The caches qemu-test keeps, listed with their sizes and pruned:
//!
//! | kind | where | what |
//! | --- | --- | --- |
//! | [`GuestImage`](CacheKind::GuestImage) | `<cache>/guests/` | the embedded guests' images, written for QEMU |
//! | [`LinuxGuest`](CacheKind::LinuxGuest) | `<cache>/linux-<arch>/<key>/` | a build of a Linux guest |
//! | [`Packages`](CacheKind::Packages) | `<cache>/linux-<arch>/debs/` | a downloaded Debian package, kept for rebuilds |
//! | [`PackageLists`](CacheKind::PackageLists) | `<cache>/linux-<arch>/apt/` | the private package lists |
//! | [`Asset`](CacheKind::Asset) | `<cache>/assets/<sha256>/` | a declared asset ([`Asset`](crate::guest::Asset)), verified and decompressed |
//! | [`Download`](CacheKind::Download) | `<cache>/assets/<sha256>.part` | an interrupted download of an asset, resumed by its next fetch |
//! | [`Snapshot`](CacheKind::Snapshot) | `<target>/qemu-test/snapshots/<id>/` | a booted snapshot of the current target dir |
//!
//! `<cache>` is [`guest::cache_dir`]. An entry is
//! stale when nothing this qemu-test would use it: an image or a Linux
//! build of other inputs, a package no current build needs, a snapshot one
//! of whose files (the QEMU binary, the kernel, the test binary) changed or
//! is gone, an asset no test used for 30 days (the test binaries declare
//! them: `--qemu-test-assets list` says which ones a binary needs), an
//! interrupted download. One in use (locked by a running test process or build) is
//! never removed. A new Linux build removes that guest's older ones by
//! itself, and a new snapshot the older ones of its name; pruning is for
//! the rest, or for everything.
//!
//! From any test binary of a `qemu_test::main!()` crate, before libtest
//! sees the arguments:
//!
//! ```text
//! cargo test --test vm -- --qemu-test-cache list
//! cargo test --test vm -- --qemu-test-cache prune       # stale entries
//! cargo test --test vm -- --qemu-test-cache prune-all   # everything not in use
//! ```
//!
//! or through the API:
//!
//! ```no_run
//! use qemu_test::cache::{self, Prune};
//!
//! for entry in cache::list()? {
//!     println!("{entry}");
//! }
//! let pruned = cache::prune(Prune::Stale)?;
//! println!("freed {} bytes", pruned.freed());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::guest::{self, AssetStore, Guest, LinuxGuest, LinuxStore};
use crate::os;
use crate::snapshot::SnapshotStore;

/// What a cache entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheKind {
    /// An embedded guest's image.
    GuestImage,
    /// A build of a Linux guest.
    LinuxGuest,
    /// A downloaded Debian package.
    Packages,
    /// A Linux guest's private package lists.
    PackageLists,
    /// A booted snapshot.
    Snapshot,
    /// A declared asset, verified (and decompressed).
    Asset,
    /// An interrupted download of an asset.
    Download,
}

impl CacheKind {
    fn label(self) -> &'static str {
        match self {
            CacheKind::GuestImage => "guest image",
            CacheKind::LinuxGuest => "linux guest",
            CacheKind::Packages => "package",
            CacheKind::PackageLists => "package lists",
            CacheKind::Snapshot => "snapshot",
            CacheKind::Asset => "asset",
            CacheKind::Download => "download",
        }
    }
}

/// One entry of a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheEntry {
    /// What it is.
    pub kind: CacheKind,
    /// A short name: the guest and key, the file, the snapshot's id.
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its size on disk (the sum of its files' sizes).
    pub bytes: u64,
    /// Whether nothing current would use it.
    pub stale: bool,
    /// Whether a running process holds it.
    pub in_use: bool,
}

impl fmt::Display for CacheEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.stale, self.in_use) {
            (false, false) => "current",
            (false, true) => "current, in use",
            (true, false) => "stale",
            (true, true) => "stale, in use",
        };
        write!(
            f,
            "{:<13}  {:>9}  {:<15}  {}  {}",
            self.kind.label(),
            human(self.bytes),
            state,
            self.name,
            self.path.display()
        )
    }
}

/// What [`prune`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prune {
    /// The stale entries.
    Stale,
    /// Every entry (all is made again when next needed).
    All,
}

/// What [`prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pruned {
    /// The entries removed.
    pub removed: Vec<CacheEntry>,
    /// The entries that would have been removed but are in use.
    pub in_use: Vec<CacheEntry>,
}

impl Pruned {
    /// The bytes freed.
    pub fn freed(&self) -> u64 {
        self.removed.iter().map(|e| e.bytes).sum()
    }
}

/// The caches: the per-user cache dir and a snapshot store.
#[derive(Debug, Clone)]
pub struct Caches {
    root: PathBuf,
    snapshots: Option<PathBuf>,
}

impl Caches {
    /// The per-user cache ([`guest::cache_dir`]) and the snapshot store of
    /// the current target dir: `$QEMU_TEST_ARTIFACTS/snapshots` if set,
    /// else `<target>/qemu-test/snapshots` for the cargo target dir this
    /// executable was built in.
    pub fn new() -> io::Result<Caches> {
        let artifacts = std::env::var_os("QEMU_TEST_ARTIFACTS")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .map(|dir| {
                std::env::current_dir()
                    .map(|cwd| cwd.join(&dir))
                    .unwrap_or(dir)
            });
        let snapshots = artifacts
            .or_else(|| guest::target_dir().map(|t| t.join("qemu-test")))
            .map(|root| root.join("snapshots"));
        Ok(Caches {
            root: guest::cache_dir()?,
            snapshots,
        })
    }

    /// The caches in `root` (a cache dir) and, if given, the snapshot
    /// store `snapshots`.
    pub fn at(root: impl Into<PathBuf>, snapshots: Option<PathBuf>) -> Caches {
        Caches {
            root: root.into(),
            snapshots,
        }
    }

    /// The cache dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The snapshot store, if there is one.
    pub fn snapshots(&self) -> Option<&Path> {
        self.snapshots.as_deref()
    }

    /// Every entry, with its size and whether it is stale or in use.
    pub fn list(&self) -> io::Result<Vec<CacheEntry>> {
        let mut entries = self.images();
        for linux in linux_guests() {
            entries.extend(self.linux(linux));
        }
        entries.extend(self.assets());
        entries.extend(self.snapshot_entries());
        Ok(entries)
    }

    /// Removes what `what` says, except entries in use.
    pub fn prune(&self, what: Prune) -> io::Result<Pruned> {
        let mut pruned = Pruned::default();
        for entry in self.list()? {
            if what == Prune::Stale && !entry.stale {
                continue;
            }
            if !entry.in_use && self.remove(&entry) {
                pruned.removed.push(entry);
            } else {
                pruned.in_use.push(entry);
            }
        }
        Ok(pruned)
    }

    /// The embedded guests' images.
    fn images(&self) -> Vec<CacheEntry> {
        let current: Vec<String> = guest::EMBEDDED.iter().map(|g| g.file_name()).collect();
        let dir = self.root.join("guests");
        files_in(&dir)
            .into_iter()
            .map(|(name, path)| CacheEntry {
                kind: CacheKind::GuestImage,
                stale: !current.contains(&name),
                in_use: false,
                bytes: size_of(&path),
                name,
                path,
            })
            .collect()
    }

    /// A Linux guest's builds, packages and lists.
    fn linux(&self, linux: &LinuxGuest) -> Vec<CacheEntry> {
        let store = LinuxStore::new(&self.root, linux.name);
        if !store.dir().is_dir() {
            return Vec::new();
        }
        let building = store.try_build_lock().is_none();
        let current = guest::current_key(linux, &self.root);
        let own = guest::own_digest(linux.target);
        let mut entries = Vec::new();
        let mut wanted: Vec<String> = Vec::new();
        for build in store.builds() {
            let manifest = build.manifest.unwrap_or(Value::Null);
            let stale = match &current {
                Some(key) => *key != build.key,
                None => manifest["sources_sha256"] != own.as_str(),
            };
            if !stale {
                wanted.extend(deb_names(&manifest, linux));
            }
            entries.push(CacheEntry {
                kind: CacheKind::LinuxGuest,
                name: format!("{}/{}", linux.name, build.key),
                bytes: size_of(&build.dir),
                in_use: os::is_locked(&store.dir().join(format!("{}.lock", build.key))),
                path: build.dir,
                stale,
            });
        }
        for (name, path) in files_in(&store.debs_dir()) {
            entries.push(CacheEntry {
                kind: CacheKind::Packages,
                stale: !wanted.contains(&name),
                in_use: building,
                bytes: size_of(&path),
                name: format!("{}/{name}", linux.name),
                path,
            });
        }
        let lists = store.apt_dir();
        if lists.is_dir() {
            entries.push(CacheEntry {
                kind: CacheKind::PackageLists,
                name: format!("{}/apt", linux.name),
                bytes: size_of(&lists),
                stale: false,
                in_use: building,
                path: lists,
            });
        }
        entries
    }

    /// The declared assets and interrupted downloads.
    fn assets(&self) -> Vec<CacheEntry> {
        let store = AssetStore::new(&self.root);
        store
            .list()
            .into_iter()
            .map(|listed| CacheEntry {
                kind: match listed.file {
                    Some(_) => CacheKind::Asset,
                    None => CacheKind::Download,
                },
                name: format!(
                    "{} ({})",
                    listed.file.as_deref().unwrap_or("partial"),
                    &listed.sha[..12]
                ),
                bytes: size_of(&listed.path),
                stale: listed.stale,
                in_use: listed.in_use,
                path: listed.path,
            })
            .collect()
    }

    /// The snapshots in the store.
    fn snapshot_entries(&self) -> Vec<CacheEntry> {
        let Some(dir) = &self.snapshots else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = fs::read(path.join("key.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
            entries.push(CacheEntry {
                kind: CacheKind::Snapshot,
                stale: key.as_ref().is_none_or(|key| !files_unchanged(key)),
                in_use: os::is_locked(&dir.join(format!("{name}.lock"))),
                bytes: size_of(&path),
                name,
                path,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    /// Removes one entry (through its store's lock where it has one).
    fn remove(&self, entry: &CacheEntry) -> bool {
        match entry.kind {
            CacheKind::GuestImage => fs::remove_file(&entry.path).is_ok(),
            CacheKind::LinuxGuest => {
                let (Some(dir), Some(key)) = (entry.path.parent(), entry.path.file_name()) else {
                    return false;
                };
                let store = LinuxStore::new(dir.parent().unwrap_or(dir), &file_name(dir));
                store.remove_if_unused(&key.to_string_lossy())
            }
            CacheKind::Packages | CacheKind::PackageLists => {
                let Some(store_dir) = entry.path.parent().and_then(Path::parent) else {
                    return false;
                };
                let store = LinuxStore::new(
                    store_dir.parent().unwrap_or(store_dir),
                    &file_name(store_dir),
                );
                let Some(_lock) = store.try_build_lock() else {
                    return false;
                };
                match entry.kind {
                    CacheKind::Packages => fs::remove_file(&entry.path).is_ok(),
                    _ => fs::remove_dir_all(&entry.path).is_ok(),
                }
            }
            CacheKind::Asset | CacheKind::Download => {
                let store = AssetStore::new(&self.root);
                let name = file_name(&entry.path);
                let sha = name.strip_suffix(".part").unwrap_or(&name);
                match entry.kind {
                    CacheKind::Asset => store.remove_if_unused(sha),
                    _ => store.remove_part_if_unused(sha),
                }
            }
            CacheKind::Snapshot => match &self.snapshots {
                Some(dir) => SnapshotStore::new(dir).remove_if_unused(&entry.name),
                None => false,
            },
        }
    }
}

/// The entries of the default caches ([`Caches::new`]).
pub fn list() -> io::Result<Vec<CacheEntry>> {
    Caches::new()?.list()
}

/// Prunes the default caches ([`Caches::new`]).
pub fn prune(what: Prune) -> io::Result<Pruned> {
    Caches::new()?.prune(what)
}

/// Runs the `--qemu-test-cache` command a test binary was given: `list`,
/// `prune` (the stale entries) or `prune-all`; prints the result on
/// stdout. The error is for the user (a wrong command).
pub fn command(caches: &Caches, command: &str) -> Result<String, String> {
    let mut out = String::new();
    let what = match command {
        "list" => {
            let entries = caches.list().map_err(|e| e.to_string())?;
            out.push_str(&format!(
                "cache {}\nsnapshots {}\n",
                caches.root().display(),
                caches
                    .snapshots()
                    .map_or("(none)".into(), |d| d.display().to_string())
            ));
            for entry in &entries {
                out.push_str(&format!("{entry}\n"));
            }
            let total: u64 = entries.iter().map(|e| e.bytes).sum();
            let stale: u64 = entries.iter().filter(|e| e.stale).map(|e| e.bytes).sum();
            out.push_str(&format!(
                "total {} ({} stale)\n",
                human(total),
                human(stale)
            ));
            return Ok(out);
        }
        "prune" => Prune::Stale,
        "prune-all" => Prune::All,
        other => {
            return Err(format!(
                "--qemu-test-cache: unknown command `{other}` (one of: list, prune, prune-all)"
            ))
        }
    };
    let pruned = caches.prune(what).map_err(|e| e.to_string())?;
    for entry in &pruned.removed {
        out.push_str(&format!("removed {entry}\n"));
    }
    for entry in &pruned.in_use {
        out.push_str(&format!("kept (in use) {entry}\n"));
    }
    out.push_str(&format!("freed {}\n", human(pruned.freed())));
    Ok(out)
}

fn linux_guests() -> Vec<&'static LinuxGuest> {
    let all: [&'static Guest; 3] = [
        &guest::LINUX_X86_64,
        &guest::LINUX_X86_64_GENERIC,
        &guest::LINUX_AARCH64,
    ];
    all.into_iter().filter_map(Guest::linux).collect()
}

/// The `.deb` file names a build's manifest lists.
fn deb_names(manifest: &Value, linux: &LinuxGuest) -> Vec<String> {
    let packages = manifest["packages"].as_array().cloned().unwrap_or_default();
    packages
        .iter()
        .filter_map(|p| {
            let (name, version) = (p["name"].as_str()?, p["version"].as_str()?);
            let arch = p["arch"].as_str().unwrap_or(linux.target.deb_arch);
            Some(format!("{name}_{}_{arch}.deb", version.replace(':', "%3a")))
        })
        .collect()
}

/// Whether every file a snapshot's key names is as it was (path, size,
/// modification time, inode, or missing): the objects with a `path` and an
/// `mtime_ns` or `missing`.
fn files_unchanged(key: &Value) -> bool {
    let identity = |map: &serde_json::Map<String, Value>| {
        map.contains_key("path") && (map.contains_key("mtime_ns") || map.contains_key("missing"))
    };
    match key {
        Value::Object(map) if identity(map) => {
            let path = map["path"].as_str().unwrap_or_default();
            crate::snapshot::file_identity(Path::new(path)) == *key
        }
        Value::Object(map) => map.values().all(files_unchanged),
        Value::Array(items) => items.iter().all(files_unchanged),
        _ => true,
    }
}

/// The regular files in `dir`, by name, sorted.
fn files_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The sum of the sizes of the files under `path` (symlinks not followed).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| size_of(&e.path()))
        .sum()
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / f64::from(1 << 10)),
        b => format!("{b} B"),
    }
}
