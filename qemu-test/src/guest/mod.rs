//! The built-in test guests, and the per-user cache they are kept in.
//!
//! Each guest is a [`Guest`]: what QEMU needs to boot it (architecture,
//! machine type, how it is loaded) and, for the bare-metal ones, a small
//! binary embedded with `include_bytes!`, which [`Guest::path`] writes once
//! to the cache so that QEMU can be pointed at it with `-kernel` or
//! `-bios`. The Linux guests ([`LINUX_X86_64`], [`LINUX_AARCH64`]) are not
//! embedded: they are built on first use into the cache from Debian's
//! packages, or from a kernel and busybox the user names ([`LinuxSource`],
//! [`LinuxBuilder`]).
//!
//! The cache is [`cache_dir`]: `$QEMU_TEST_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/qemu-test`, else `~/.cache/qemu-test`. It holds
//! `guests/` (the embedded images), `linux-<arch>/` (the Linux guests'
//! builds, their downloaded packages and package lists); the
//! [`cache`](crate::cache) module lists and prunes it.
//!
//! ```no_run
//! use qemu_test::guest;
//!
//! let path = guest::ECHO_SHELL_AARCH64.path()?;
//! assert!(path.exists());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

mod asset;
mod embedded;
mod firmware;
mod linux;

pub(crate) use asset::{image_format, make_overlay, qemu_img_available, AssetStore};
pub use asset::{offline, Asset, Compression};
pub(crate) use embedded::EMBEDDED;
pub use embedded::{ECHO_SHELL_AARCH64, SERIAL_PORTS_X86_64};
pub(crate) use firmware::{copy_sparse, host_uefi, Uefi};
pub(crate) use linux::{current_key, own_digest, target_dir, Store as LinuxStore};
pub use linux::{
    guests_dir, linux_aarch64, linux_x86_64, BuildOutcome, LinuxBuild, LinuxBuilder, LinuxFiles,
    LinuxGuest, LinuxSource, LINUX_AARCH64, LINUX_READY, LINUX_X86_64, LINUX_X86_64_GENERIC,
};

/// How QEMU loads a guest image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Load {
    /// `-kernel FILE`: a Linux kernel or a bare-metal image QEMU's loader
    /// places in RAM.
    Kernel,
    /// `-bios FILE`: firmware that starts at the reset vector.
    Bios,
    /// `-kernel` + `-initrd` + `-append`: a Linux guest built on first use
    /// into the cache, not embedded in the crate (its [`Guest::bytes`] are
    /// empty).
    Linux(LinuxGuest),
}

/// A test guest embedded in the crate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Guest {
    /// A short unique name, used for the cache file name.
    pub name: &'static str,
    /// The QEMU target architecture (`qemu-system-<arch>`).
    pub arch: &'static str,
    /// The machine type the guest is built for (`-machine`).
    pub machine: &'static str,
    /// The CPU model to use when the test names none (`-cpu`), if the
    /// machine's default CPU cannot run the guest.
    pub cpu: Option<&'static str>,
    /// How QEMU loads it.
    pub load: Load,
    /// What the guest prints on the console once it is ready for input. A
    /// booted snapshot (`#[qemu_test(snapshot = "...")]`) without a `setup`
    /// function is saved as soon as this appears.
    pub ready: Option<&'static str>,
    /// The image itself.
    pub bytes: &'static [u8],
}

impl Guest {
    /// Writes the image to the cache directory (once per content) and
    /// returns its path.
    ///
    /// The file is `guests/<name>-<hash>.bin` in the [`cache_dir`]; the
    /// hash of the contents in its name means a changed guest never reuses
    /// a stale file.
    ///
    /// For a [`Load::Linux`] guest this is its kernel's path, found or
    /// built on first use ([`LinuxGuest::files`]; its error as `Other`).
    ///
    /// ```no_run
    /// let kernel = qemu_test::guest::ECHO_SHELL_AARCH64.path()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn path(&self) -> io::Result<PathBuf> {
        if let Load::Linux(linux) = &self.load {
            return linux
                .files()
                .map(|files| files.kernel)
                .map_err(io::Error::other);
        }
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = images_dir()?;
        let path = dir.join(self.file_name());
        if let Ok(existing) = fs::read(&path) {
            if existing == self.bytes {
                return Ok(path);
            }
        }
        crate::os::write_atomically(&path, self.bytes)?;
        Ok(path)
    }
}

impl Guest {
    /// The Linux guest this is ([`LINUX_X86_64`], [`LINUX_AARCH64`]), to
    /// find or build its files or choose how ([`LinuxGuest::builder`]).
    ///
    /// ```no_run
    /// use qemu_test::guest::LINUX_X86_64;
    ///
    /// let linux = LINUX_X86_64.linux().expect("a Linux guest");
    /// println!("{}", linux.files()?.kernel.display());
    /// # Ok::<(), qemu_test::GuestError>(())
    /// ```
    pub fn linux(&self) -> Option<&LinuxGuest> {
        match &self.load {
            Load::Linux(linux) => Some(linux),
            _ => None,
        }
    }

    /// The embedded image's file name in the cache's `guests/`:
    /// `<name>-<hash of the bytes>.bin`.
    pub(crate) fn file_name(&self) -> String {
        format!("{}-{:016x}.bin", self.name, fnv1a(self.bytes))
    }
}

/// The per-user cache of guests (and, later, other assets), created (mode
/// 0700) if needed: `$QEMU_TEST_CACHE_DIR` if set, else
/// `$XDG_CACHE_HOME/qemu-test`, else `$HOME/.cache/qemu-test` (else
/// `$TMPDIR/qemu-test-<uid>/cache` when there is no home).
///
/// ```no_run
/// let cache = qemu_test::guest::cache_dir()?;
/// println!("guests are kept in {}", cache.display());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn cache_dir() -> io::Result<PathBuf> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let dir = if let Some(dir) = std::env::var_os("QEMU_TEST_CACHE_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(dir)
    } else if let Some(dir) = absolute("XDG_CACHE_HOME") {
        dir.join("qemu-test")
    } else if let Some(home) = absolute("HOME") {
        home.join(".cache").join("qemu-test")
    } else {
        crate::os::user_temp_dir()?.join("cache")
    };
    crate::os::create_private_dir_all(&dir)?;
    Ok(DIR.get_or_init(|| dir).clone())
}

/// The embedded images' dir in the cache.
fn images_dir() -> io::Result<PathBuf> {
    let dir = cache_dir()?.join("guests");
    crate::os::create_private_dir_all(&dir)?;
    Ok(dir)
}

/// 64-bit FNV-1a: a content tag for cache file names (not a security hash;
/// the file's contents are compared before reuse).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
