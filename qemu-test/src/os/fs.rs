//! Files and directories: private dirs, atomic writes, the per-user temp
//! dir.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An anonymous file in memory (`memfd_create`), closed on exec unless
/// passed on: output nobody needs on disk.
pub(crate) fn memory_file(name: &str) -> io::Result<fs::File> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok(fs::File::from(fd))
}

/// This process's user id.
pub(crate) fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// How many times [`create_private_dir_all`] starts over when a parent it
/// made is removed before it could create `dir` in it.
const CREATE_ATTEMPTS: usize = 1000;

/// Creates `dir` (and its parents) with mode 0700, or checks that an
/// existing `dir` belongs to us and is not accessible to others.
///
/// Safe against a concurrent remover of *empty* parents (`rmdir`, as
/// [`ArtifactDir::finish`](crate::runner) prunes an empty per-binary dir):
/// creating the parents and then `dir` is two steps, and a parent removed
/// between them is created again. Once `dir` exists its parents are not
/// empty, so no `rmdir` can take them away.
pub(crate) fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    use io::ErrorKind::{AlreadyExists, NotFound};
    for attempt in 1.. {
        let retry = attempt < CREATE_ATTEMPTS;
        if let Some(parent) = dir.parent() {
            match fs::create_dir_all(parent) {
                Ok(()) => {}
                // A parent went away under us: while `create_dir_all`
                // made its own parent (NotFound), or between its `mkdir`
                // finding it there and checking that it is a directory
                // (AlreadyExists). Make it again.
                Err(e) if matches!(e.kind(), NotFound | AlreadyExists) && retry => continue,
                Err(e) => return Err(e),
            }
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == AlreadyExists => break,
            // The parent went away before `dir` was made in it.
            Err(e) if e.kind() == NotFound && retry => {}
            Err(e) => return Err(e),
        }
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
