//! Files and directories: private dirs, atomic writes, the per-user temp
//! dir.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// This process's user id.
pub(crate) fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Creates `dir` (and its parents) with mode 0700, or checks that an
/// existing `dir` belongs to us and is not accessible to others.
pub(crate) fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} exists and is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != uid() {
        return Err(io::Error::other(format!(
            "{} belongs to another user (uid {}); refusing to use it",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `data` to `path` through a temp file in the same dir renamed into
/// place: readers see the old file or the whole new one, never a part.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    io::Write::write_all(&mut tmp, data)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// This user's dir in the temp dir, `$TMPDIR/qemu-test-<uid>` (mode 0700),
/// created if needed. Its name is predictable, so in a shared `/tmp`
/// another user may have made it first, or left a symlink there: that is
/// an error, never a dir to use.
pub(crate) fn user_temp_dir() -> io::Result<PathBuf> {
    let uid = uid();
    let dir = std::env::temp_dir().join(format!("qemu-test-{uid}"));
    create_private_dir_all(&dir)?;
    Ok(dir)
}
