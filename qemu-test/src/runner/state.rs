//! The runner's host-wide, per-user state: one directory shared by every
//! test process of this user on this host, whatever its target dir (the
//! scheduler's slot files, the artifact dirs' locks, the KVM probe's and the
//! machine types' caches), and short stable names for files in it.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The runner's host-wide, per-user state dir (mode 0700, like its parent):
/// `$TMPDIR/qemu-test-<uid>/runner`. It holds the CPU and memory slots,
/// the artifact dirs' locks, and two caches: the KVM probe's verdicts
/// (`kvm-probe-*`) and the QEMU binaries' machine types
/// (`machine-types-*`); remove a cache file to have it found out again.
///
/// If that cannot be had safely (another user owns `qemu-test-<uid>`, or it
/// is a symlink), a warning says so and this process uses a private dir of
/// its own instead: nothing is shared with other test processes then (no
/// host-wide budget, no artifact locks, no caches), but nothing lands in a
/// dir someone else controls.
pub(crate) fn state_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shared = crate::os::user_temp_dir().and_then(|user| {
            let dir = user.join("runner");
            crate::os::create_private_dir_all(&dir).map(|()| dir)
        });
        let e = match shared {
            Ok(dir) => return dir,
            Err(e) => e,
        };
        let own = tempfile::Builder::new()
            .prefix("qemu-test-runner-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir();
        match own {
            Ok(dir) => {
                let dir = dir.keep();
                eprintln!(
                    "warning: qemu-test: cannot use the shared state dir ({e}); using {} for this process only",
                    dir.display()
                );
                dir
            }
            // The temp dir is unusable: so is every machine's temp dir, and
            // that failure explains itself. Nothing can be created under
            // /dev/null (nor planted there): locks in it are no-ops.
            Err(_) => PathBuf::from("/dev/null/qemu-test"),
        }
    })
    .clone()
}

/// 64-bit FNV-1a, for short stable names.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
