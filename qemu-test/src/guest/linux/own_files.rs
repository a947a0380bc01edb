//! The guest's own files, compiled into the crate so that the builder
//! works from the packaged crate alone: `/init` and everything under
//! `rootfs/` (beside this file), with their modes in the guest, and the
//! guest agent of each architecture ([`AGENT_PATH`]).
//!
//! A file added under `rootfs/` must be added to [`OWN_FILES`] too; a unit
//! test compares the list with the directory.

use sha2::{Digest, Sha256};

use super::target::Target;
use super::FORMAT;

/// Where the guest agent goes in the guest (`/etc/inittab` starts it).
pub(crate) const AGENT_PATH: &str = "bin/qemu-test-agent";

/// One file of the guest's own.
#[derive(Debug)]
pub(crate) struct OwnFile {
    /// Its path in the guest, without the leading `/`.
    pub(crate) path: &'static str,
    /// Its mode: 0755 if the source has an execute bit, else 0644.
    pub(crate) mode: u32,
    /// Its contents.
    pub(crate) bytes: &'static [u8],
}

/// The guest's own files, sorted by path.
pub(crate) const OWN_FILES: &[OwnFile] = &[
    OwnFile {
        path: "etc/acpi/power",
        mode: 0o755,
        bytes: include_bytes!("rootfs/etc/acpi/power"),
    },
    OwnFile {
        path: "etc/acpid.conf",
        mode: 0o644,
        bytes: include_bytes!("rootfs/etc/acpid.conf"),
    },
    OwnFile {
        path: "etc/group",
        mode: 0o644,
        bytes: include_bytes!("rootfs/etc/group"),
    },
    OwnFile {
        path: "etc/inittab",
        mode: 0o644,
        bytes: include_bytes!("rootfs/etc/inittab"),
    },
    OwnFile {
        path: "etc/passwd",
        mode: 0o644,
        bytes: include_bytes!("rootfs/etc/passwd"),
    },
    OwnFile {
        path: "etc/profile",
        mode: 0o644,
        bytes: include_bytes!("rootfs/etc/profile"),
    },
    OwnFile {
        path: "init",
        mode: 0o755,
        bytes: include_bytes!("init"),
    },
];

/// A hash of everything that shapes `target`'s initramfs apart from the
/// kernel and busybox: the build format, the modules asked for, the own
/// files (path, mode, contents) and the agent. Recorded in the manifest as
/// `sources_sha256`.
pub(crate) fn digest(target: &Target) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "format {FORMAT}\nmodules {}\n",
        target.modules.join(",")
    ));
    let agent = OwnFile {
        path: AGENT_PATH,
        mode: 0o755,
        bytes: target.agent,
    };
    for file in OWN_FILES.iter().chain([&agent]) {
        h.update(format!(
            "{} {:o} {}\n",
            file.path,
            file.mode,
            file.bytes.len()
        ));
        h.update(file.bytes);
    }
    super::hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// Every file under `dir`, as (path relative to `prefix`, mode).
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                walk(&entry.path(), &rel, out);
            } else {
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                out.insert(rel, (mode, std::fs::read(entry.path()).unwrap()));
            }
        }
    }

    #[test]
    fn the_list_matches_the_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/guest/linux");
        let mut on_disk = BTreeMap::new();
        walk(&dir.join("rootfs"), "", &mut on_disk);
        let init = std::fs::read(dir.join("init")).unwrap();
        on_disk.insert("init".to_string(), (0o755, init));
        let listed: BTreeMap<String, (u32, Vec<u8>)> = OWN_FILES
            .iter()
            .map(|f| (f.path.to_string(), (f.mode, f.bytes.to_vec())))
            .collect();
        assert_eq!(
            listed.keys().collect::<Vec<_>>(),
            on_disk.keys().collect::<Vec<_>>(),
            "OWN_FILES must list every file under rootfs/ (and init)"
        );
        assert_eq!(listed, on_disk, "modes or contents differ");
        let paths: Vec<_> = OWN_FILES.iter().map(|f| f.path).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted, "OWN_FILES is sorted by path");
    }
}
