//! Finding programs: a QEMU binary, or a command a test requires, by name
//! in `QEMU_TEST_QEMU_DIR` and then each `PATH` entry, or by path.

use std::path::{Path, PathBuf};

/// Finds a program (a QEMU binary, a command): a name containing `/` is a path; otherwise
/// `QEMU_TEST_QEMU_DIR`, then each `PATH` entry.
pub(crate) fn find_binary(name: &str, qemu_dir: Option<&Path>) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    qemu_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&path_var))
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
