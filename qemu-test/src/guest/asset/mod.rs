//! Declared assets: a kernel, initrd, disk image or firmware file that
//! qemu-test does not build, named by its URL and SHA-256 (QEMU's
//! `tests/functional` `Asset`), fetched once into the per-user cache.
//! [`Asset`] says what a user sees; the guide's chapter
//! (`crate::guide::assets`) how to use it. This module: the declaration
//! and the way into the cache (`store`), the download (`fetch`, the
//! `assets` feature), decompression (`decompress`), the progress lines
//! (`progress`) and a disk image's overlay (`disk`).
//!
//! The cache layout, in `<cache>/assets/` ([`cache_dir`](super::cache_dir)):
//!
//! | entry | what |
//! | --- | --- |
//! | `<sha256>/<file>` | the verified (and decompressed) file |
//! | `<sha256>/asset.json` | its URL, sizes, compression and the SHA-256 of the file as kept |
//! | `<sha256>.lock` | held shared by each process using it; its time says when it was last used |
//! | `<sha256>.fetch.lock` | held while a process fetches it |
//! | `<sha256>.part` | an interrupted download, resumed by the next fetch |

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::error::AssetError;

#[cfg(feature = "assets")]
mod decompress;
mod disk;
#[cfg(feature = "assets")]
mod fetch;
mod progress;
mod store;

pub(crate) use disk::{image_format, make_overlay, qemu_img_available};
pub(crate) use store::Store as AssetStore;

/// How an asset's download is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// Used as downloaded.
    None,
    /// `.xz` (liblzma).
    Xz,
    /// `.gz` (gzip).
    Gzip,
    /// `.zst` (Zstandard).
    Zstd,
}

impl Compression {
    /// The compression a file name says: `.xz`, `.gz`, `.zst` (or
    /// `.zstd`); anything else is `None`.
    ///
    /// ```
    /// use qemu_test::guest::Compression;
    ///
    /// assert_eq!(Compression::of_name("rootfs.ext4.zst"), Compression::Zstd);
    /// assert_eq!(Compression::of_name("Image.gz"), Compression::Gzip);
    /// assert_eq!(Compression::of_name("disk.qcow2"), Compression::None);
    /// ```
    pub fn of_name(name: &str) -> Compression {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".xz") {
            Compression::Xz
        } else if lower.ends_with(".gz") {
            Compression::Gzip
        } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Its short name: `none`, `xz`, `gz`, `zst`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Gzip => "gz",
            Compression::Zstd => "zst",
        }
    }
}

/// A file a test uses that qemu-test does not build: a kernel, an initrd, a
/// disk image, firmware. Declared by URL and SHA-256, usable as `kernel =
/// ASSET`, `initrd = ASSET`, `disk = ASSET` in `#[qemu_test]` (see the
/// [guide](crate::guide::assets)).
///
/// ```no_run
/// use qemu_test::prelude::*;
/// use qemu_test::guest::Asset;
///
/// static KERNEL: Asset = Asset::new(
///     "https://example.org/images/vmlinuz.xz",
///     "0d8b0fca2b3e37ea8e3f5d4b6ad5ea0a1b3a9e2f6b4d5c3e2f1a0b9c8d7e6f5a",
/// );
///
/// #[qemu_test(arch = "x86_64", kernel = KERNEL, console, append = "console=ttyS0")]
/// fn boots(vm: &mut Vm) -> TestResult {
///     vm.console().wait_for("Linux version")?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// - **The hash is of the bytes as downloaded**, as upstream's is (and as
///   the `SHA256SUMS` files next to published images list them): for
///   `vmlinuz.xz`, the SHA-256 of the `.xz` file.
/// - **Decompressed by its name**: a URL (or [`Asset::with_compression`])
///   ending in `.xz`, `.gz` or `.zst` is decompressed once, after the hash
///   is verified, and the cache keeps the decompressed file (QEMU is
///   pointed at it), named like the URL without the extension.
/// - **Nothing unverified lands in the cache.** The download goes to
///   `<cache>/assets/<sha256>.part`; the entry `<cache>/assets/<sha256>/`
///   appears (renamed into place whole) only once the hash matched and the
///   file was decompressed. A wrong hash is [`AssetError::Mismatch`],
///   naming both hashes, and leaves nothing. An interrupted download (a
///   dropped connection, a killed process) resumes where it stopped, with
///   an HTTP range request, or starts over if the server does not take
///   ranges (or the resumed file does not verify).
/// - **Once, for every process.** A process fetching an asset holds its
///   fetch lock; others wait for it (saying so) and use its result. A
///   process using an asset holds it (a shared lock) until it exits, so
///   that `--qemu-test-cache prune` never removes it under a running test.
/// - **Progress** on stderr: a bar on a terminal, a line per step
///   otherwise.
/// - **Offline**: with `QEMU_TEST_OFFLINE=1`, or once a download failed for
///   a reason of the network (no route, refused, a timeout, HTTP 5xx), an
///   asset not in the cache is [`AssetError::Offline`]: the runner skips
///   the test with the reason (a failure under `QEMU_TEST_REQUIRE=1`).
/// - **The `assets` cargo feature** downloads and decompresses; without it,
///   an asset already in the cache is used, and a missing one is
///   [`AssetError::FeatureOff`], which names the feature.
/// - `--qemu-test-assets list|fetch` on a test binary prints, as JSON, the
///   assets its selected tests need, fetching them first with `fetch`
///   ([`runner`](crate::runner)).
/// - The cache dir is [`cache_dir`](super::cache_dir)
///   (`QEMU_TEST_CACHE_DIR`, else `~/.cache/qemu-test`).
///
/// ```
/// use qemu_test::guest::{Asset, Compression};
///
/// const ROOTFS: Asset = Asset::new(
///     "https://example.org/rootfs.ext4.zst",
///     "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
/// );
/// assert_eq!(ROOTFS.compression(), Compression::Zstd);
/// assert_eq!(ROOTFS.file_name(), "rootfs.ext4");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Asset {
    url: Cow<'static, str>,
    sha256: Cow<'static, str>,
    compression: Option<Compression>,
}

impl Asset {
    /// The asset at `url` (`http://` or `https://`) whose download has the
    /// SHA-256 `sha256` (64 hex digits). A `const fn`: declare assets as
    /// `static` or `const` items. A malformed hash or URL is reported when
    /// the test is listed, as a failure naming the asset.
    pub const fn new(url: &'static str, sha256: &'static str) -> Asset {
        Asset {
            url: Cow::Borrowed(url),
            sha256: Cow::Borrowed(sha256),
            compression: None,
        }
    }

    /// [`Asset::new`] with strings made at run time (say, in a
    /// `LazyLock`; then write `kernel = &*MY_ASSET`).
    pub fn from_url(url: impl Into<String>, sha256: impl Into<String>) -> Asset {
        Asset {
            url: Cow::Owned(url.into()),
            sha256: Cow::Owned(sha256.into()),
            compression: None,
        }
    }

    /// Says how the download is compressed, when its URL does not (a
    /// download link without the extension), or that a `.gz` file is to be
    /// used as it is ([`Compression::None`]).
    pub const fn with_compression(mut self, compression: Compression) -> Asset {
        self.compression = Some(compression);
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The declared SHA-256, as written.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// How the download is compressed: as declared, else by the URL's
    /// file name.
    pub fn compression(&self) -> Compression {
        self.compression
            .unwrap_or_else(|| Compression::of_name(&self.download_name()))
    }

    /// The name of the file in the cache: the URL's last path segment
    /// (characters other than letters, digits, `.`, `-`, `_` as `_`)
    /// without the compression's extension.
    pub fn file_name(&self) -> String {
        let name = self.download_name();
        let stem = match self.compression() {
            Compression::None => name.as_str(),
            _ => name
                .rsplit_once('.')
                .map_or(name.as_str(), |(stem, _)| stem),
        };
        match stem {
            "" | "." | ".." => "asset".to_string(),
            stem => stem.to_string(),
        }
    }

    /// The path of the asset's file, from the cache, or fetched into it
    /// now (with progress on stderr). Each process asks the cache once per
    /// asset.
    ///
    /// ```no_run
    /// # use qemu_test::guest::Asset;
    /// static KERNEL: Asset = Asset::new("https://example.org/vmlinuz", "00");
    /// let kernel = KERNEL.path()?;
    /// # Ok::<(), qemu_test::AssetError>(())
    /// ```
    pub fn path(&self) -> Result<PathBuf, AssetError> {
        self.validate()?;
        let sha = self.sha_key();
        let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, path)) = memo.iter().find(|(key, _)| *key == sha) {
            return Ok(path.clone());
        }
        drop(memo);
        let path = self.find_or_fetch()?;
        memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
        memo.push((sha, path.clone()));
        Ok(path)
    }

    /// The asset's file if the cache holds it, without downloading
    /// anything (`None` if it does not).
    pub fn cached(&self) -> Result<Option<PathBuf>, AssetError> {
        self.validate()?;
        let store = self.store()?;
        Ok(store.find(&self.sha_key()).map(|entry| entry.file))
    }

    /// Checks, without downloading, that the asset can be had: the
    /// declaration is well formed, and the cache holds it or it can be
    /// fetched (not offline, the `assets` feature built in). What the
    /// runner asks when it lists the tests.
    pub fn check(&self) -> Result<(), AssetError> {
        if self.cached()?.is_some() {
            return Ok(());
        }
        self.fetchable()
    }

    /// Makes sure the cache holds the asset, checking a cached one against
    /// the SHA-256 recorded when it was fetched (reading it whole) and
    /// fetching it again if it was damaged; its path. What
    /// `--qemu-test-assets fetch` does for each asset.
    pub fn fetch(&self) -> Result<PathBuf, AssetError> {
        self.validate()?;
        let store = self.store()?;
        if let Some(entry) = store.find(&self.sha_key()) {
            if entry.intact() {
                return Ok(entry.file);
            }
            progress::Progress::new(&self.file_name()).say(format!(
                "{} does not match what was fetched; fetching it again",
                entry.file.display()
            ));
            store.discard(&self.sha_key());
        }
        self.find_or_fetch()
    }

    /// The lowercase hash: the asset's key in the cache.
    pub(crate) fn sha_key(&self) -> String {
        self.sha256.to_ascii_lowercase()
    }

    /// The URL's last path segment, made safe as a file name.
    fn download_name(&self) -> String {
        let path = self.url.split(['?', '#']).next().unwrap_or_default();
        let last = path.rsplit('/').next().unwrap_or_default();
        last.chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
                _ => '_',
            })
            .collect()
    }

    /// The declaration's mistakes.
    fn validate(&self) -> Result<(), AssetError> {
        let invalid = |reason: String| AssetError::Invalid {
            url: self.url.to_string(),
            reason,
        };
        let hex = self.sha256.len() == 64 && self.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex {
            return Err(invalid(format!(
                "the declared SHA-256 {:?} is not 64 hex digits (write what `sha256sum FILE` prints \
                 for the file as downloaded)",
                self.sha256
            )));
        }
        let scheme = self
            .url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            return Err(invalid(
                "the URL is not an http:// or https:// URL".to_string(),
            ));
        }
        Ok(())
    }

    fn store(&self) -> Result<AssetStore, AssetError> {
        let root = super::cache_dir().map_err(|e| AssetError::Cache {
            url: self.url.to_string(),
            cause: format!("cannot open the cache dir: {e}"),
        })?;
        Ok(AssetStore::new(&root))
    }

    /// Whether a missing asset could be fetched now.
    fn fetchable(&self) -> Result<(), AssetError> {
        if let Some(reason) = offline_reason() {
            return Err(AssetError::Offline {
                url: self.url.to_string(),
                reason,
            });
        }
        if !cfg!(feature = "assets") {
            let store = self.store()?;
            return Err(AssetError::FeatureOff {
                url: self.url.to_string(),
                cache: store.entry_dir(&self.sha_key()),
            });
        }
        Ok(())
    }

    /// The cached file, or the one fetched now (by this process, or by
    /// another one this process waited for).
    fn find_or_fetch(&self) -> Result<PathBuf, AssetError> {
        let store = self.store()?;
        let sha = self.sha_key();
        loop {
            if let Some(entry) = store.find(&sha) {
                return Ok(entry.file);
            }
            self.fetchable()?;
            let progress = progress::Progress::new(&self.file_name());
            let lock = store
                .fetch_lock(&sha, &progress)
                .map_err(|cause| AssetError::Cache {
                    url: self.url.to_string(),
                    cause,
                })?;
            if store.has(&sha) {
                // Another process fetched it while this one waited.
                continue;
            }
            self.fetch_locked(&store, &lock, progress)?;
        }
    }

    #[cfg(feature = "assets")]
    fn fetch_locked(
        &self,
        store: &AssetStore,
        lock: &store::FetchLock,
        progress: progress::Progress,
    ) -> Result<(), AssetError> {
        fetch::fetch(self, store, lock, progress).inspect_err(|e| {
            if let AssetError::Offline { reason, .. } = e {
                go_offline(reason);
            }
        })
    }

    #[cfg(not(feature = "assets"))]
    fn fetch_locked(
        &self,
        _store: &AssetStore,
        _lock: &store::FetchLock,
        _progress: progress::Progress,
    ) -> Result<(), AssetError> {
        self.fetchable()
    }
}

/// The assets this process has found or fetched, by hash.
static MEMO: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// Set once a download failed for a reason of the network.
static WENT_OFFLINE: AtomicBool = AtomicBool::new(false);
static OFFLINE_CAUSE: OnceLock<String> = OnceLock::new();

/// Whether assets not in the cache are not to be fetched: `QEMU_TEST_OFFLINE`
/// is `1` (or `true`, `yes`), or a download failed for a reason of the
/// network earlier in this process.
pub fn offline() -> bool {
    offline_reason().is_some()
}

/// Why this process is offline, if it is.
fn offline_reason() -> Option<String> {
    let set =
        std::env::var("QEMU_TEST_OFFLINE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
    if set {
        return Some(
            "offline mode (QEMU_TEST_OFFLINE=1); fetch it where there is a network, with \
             `cargo test --test <binary> -- --qemu-test-assets fetch`"
                .to_string(),
        );
    }
    if WENT_OFFLINE.load(Ordering::SeqCst) {
        let cause = OFFLINE_CAUSE.get().map_or("", String::as_str);
        return Some(format!(
            "offline: an earlier download in this process failed ({cause}), so no other is tried"
        ));
    }
    None
}

/// Turns offline mode on for the rest of the process.
#[cfg_attr(not(feature = "assets"), allow(dead_code))]
fn go_offline(reason: &str) {
    let _ = OFFLINE_CAUSE.set(reason.to_string());
    WENT_OFFLINE.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_compression_come_from_the_url() {
        let asset = |url: &'static str| Asset::new(url, "");
        assert_eq!(asset("https://h/a/vmlinuz.xz").file_name(), "vmlinuz");
        assert_eq!(
            asset("https://h/a/vmlinuz.xz").compression(),
            Compression::Xz
        );
        assert_eq!(
            asset("https://h/disk.qcow2?x=1#y").file_name(),
            "disk.qcow2"
        );
        assert_eq!(asset("https://h/a b/c d.img").file_name(), "c_d.img");
        assert_eq!(asset("https://h/").file_name(), "asset");
        assert_eq!(asset("https://h/..").file_name(), "asset");
        let kept = asset("https://h/Image.gz").with_compression(Compression::None);
        assert_eq!(kept.file_name(), "Image.gz");
        let named = asset("https://h/download?id=3").with_compression(Compression::Zstd);
        assert_eq!(named.file_name(), "download");
        assert_eq!(named.compression(), Compression::Zstd);
    }

    /// Without the `assets` feature, an asset not in the cache is a typed
    /// error that names the feature (unless offline mode says more).
    #[cfg(not(feature = "assets"))]
    #[test]
    fn without_the_feature_a_missing_asset_names_it() {
        if offline() {
            return;
        }
        let asset = Asset::from_url("https://example.org/k.xz", "ab".repeat(32));
        match asset.fetchable() {
            Err(error @ AssetError::FeatureOff { .. }) => {
                assert!(error.is_config());
                assert!(
                    error.to_string().contains("features = [\"assets\"]"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_declarations_are_invalid() {
        let good = "ab".repeat(32);
        let invalid = |asset: Asset| match asset.validate() {
            Err(AssetError::Invalid { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(invalid(Asset::from_url("https://h/k", "abc")).contains("64 hex digits"));
        assert!(invalid(Asset::from_url("https://h/k", "g".repeat(64))).contains("64 hex"));
        assert!(invalid(Asset::from_url("ftp://h/k", good.clone())).contains("http://"));
        assert!(invalid(Asset::from_url("/local/k", good.clone())).contains("http://"));
        assert!(Asset::from_url("HTTPS://h/k", good.to_uppercase())
            .validate()
            .is_ok());
        assert_eq!(
            Asset::from_url("https://h/k", good.to_uppercase()).sha_key(),
            good
        );
    }
}
