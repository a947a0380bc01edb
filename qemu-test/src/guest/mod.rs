//! The built-in test guests shipped inside the crate.
//!
//! Each guest is a [`Guest`]: a small binary embedded with `include_bytes!`
//! plus what QEMU needs to boot it (architecture, machine type, how it is
//! loaded). [`Guest::path`] writes the bytes once to a per-user cache file so
//! that QEMU can be pointed at it with `-kernel` or `-bios`.
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

mod embedded;
mod linux;

pub use embedded::{ECHO_SHELL_AARCH64, SERIAL_PORTS_X86_64};
pub use linux::{
    guests_dir, linux_aarch64, linux_x86_64, Prebuilt, PrebuiltFiles, LINUX_AARCH64, LINUX_READY,
    LINUX_X86_64,
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
    /// `-kernel` + `-initrd` + `-append`: a Linux guest built by `cargo
    /// xtask guests` into the [guests directory](guests_dir), not embedded
    /// in the crate (its [`Guest::bytes`] are empty).
    Prebuilt(Prebuilt),
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
    /// The cache directory is `$QEMU_TEST_CACHE_DIR` if set, else
    /// `$XDG_CACHE_HOME/qemu-test/guests`, else `$TMPDIR/qemu-test-<uid>/guests`.
    /// The file name carries a hash of the contents, so a changed guest never
    /// reuses a stale file.
    ///
    /// For a [`Load::Prebuilt`] guest nothing is written: this is its
    /// kernel's path in the guests directory (`NotFound` with the hint to
    /// run `cargo xtask guests` if it is not built).
    ///
    /// ```no_run
    /// let kernel = qemu_test::guest::ECHO_SHELL_AARCH64.path()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn path(&self) -> io::Result<PathBuf> {
        if let Load::Prebuilt(prebuilt) = &self.load {
            return prebuilt
                .locate()
                .map(|files| files.kernel)
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e));
        }
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = cache_dir()?;
        let path = dir.join(format!("{}-{:016x}.bin", self.name, fnv1a(self.bytes)));
        if let Ok(existing) = fs::read(&path) {
            if existing == self.bytes {
                return Ok(path);
            }
        }
        crate::os::write_atomically(&path, self.bytes)?;
        Ok(path)
    }
}

fn cache_dir() -> io::Result<PathBuf> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let dir = if let Some(dir) = std::env::var_os("QEMU_TEST_CACHE_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("qemu-test")
    } else {
        crate::os::user_temp_dir()?
    }
    .join("guests");
    crate::os::create_private_dir_all(&dir)?;
    Ok(DIR.get_or_init(|| dir).clone())
}

/// 64-bit FNV-1a: a content tag for cache file names (not a security hash;
/// the file's contents are compared before reuse).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
