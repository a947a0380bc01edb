//! The build itself, from material at hand (a kernel, its modules, a
//! busybox) to the guest's files: `kernel`, `initrd.gz` (busybox, the
//! modules and the guest's own files) and `manifest.json`, written last.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::initramfs::Archive;
use super::kernel::Kernel;
use super::modules::Module;
use super::own_files::{AGENT_PATH, OWN_FILES};
use super::{INITRD, KERNEL, MANIFEST};

/// What a guest is made of, ready to be put together.
#[derive(Debug)]
pub(crate) struct Material {
    pub(crate) kernel: Kernel,
    pub(crate) busybox: Vec<u8>,
    pub(crate) modules: Vec<Module>,
    /// The guest agent (`/bin/qemu-test-agent`).
    pub(crate) agent: &'static [u8],
}

/// The initramfs (gzip'd cpio): `/bin/busybox` (`/bin/sh` links to it;
/// `/init` adds the other applet links at boot), `/dev/console`, the
/// modules in `/lib/modules/` with `/etc/modules` listing them in load
/// order, the guest's own files, the guest agent, and the usual empty
/// dirs.
pub(crate) fn initramfs(material: &Material) -> Result<Vec<u8>, String> {
    let mut archive = Archive::default();
    archive.file("bin/busybox", 0o755, material.busybox.clone());
    archive.symlink("bin/sh", "busybox");
    archive.char_dev("dev/console", 0o600, 5, 1);
    let mut load_list = String::new();
    for module in &material.modules {
        archive.file(
            &format!("lib/modules/{}.ko", module.name),
            0o644,
            module.bytes.clone(),
        );
        load_list.push_str(&format!("{}.ko\n", module.name));
    }
    archive.file("etc/modules", 0o644, load_list.into_bytes());
    for file in OWN_FILES {
        archive.file(file.path, file.mode, file.bytes.to_vec());
    }
    archive.file(AGENT_PATH, 0o755, material.agent.to_vec());
    for dir in [
        "proc", "sys", "dev", "run", "tmp", "root", "sbin", "usr/bin", "usr/sbin",
    ] {
        archive.dir(dir);
    }
    archive
        .to_gzip_cpio()
        .map_err(|e| format!("cannot build the initramfs: {e}"))
}

/// Writes the kernel, the initramfs and, last, the manifest (`about`
/// plus the modules and each file's size and SHA-256) into `dir`.
pub(crate) fn write(
    dir: &Path,
    material: &Material,
    initrd: &[u8],
    mut about: Value,
) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_file(&dir.join(KERNEL), &material.kernel.bytes)?;
    write_file(&dir.join(INITRD), initrd)?;
    about["kernel_format"] = material.kernel.format.into();
    about["modules"] = material.modules.iter().map(|m| m.name.as_str()).collect();
    about["agent"] = json!({"size": material.agent.len(), "sha256": sha256(material.agent)});
    about["files"] = json!({
        KERNEL: {"size": material.kernel.bytes.len(), "sha256": sha256(&material.kernel.bytes)},
        INITRD: {"size": initrd.len(), "sha256": sha256(initrd)},
    });
    let text = serde_json::to_string_pretty(&about).map_err(|e| e.to_string())? + "\n";
    write_file(&dir.join(MANIFEST), text.as_bytes())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut file =
        fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.set_permissions(fs::Permissions::from_mode(0o644)))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Whether the files of the build in `dir` still have the SHA-256 its
/// manifest records.
pub(crate) fn intact(dir: &Path) -> bool {
    let Some(manifest) = fs::read(dir.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return false;
    };
    [KERNEL, INITRD].iter().all(|f| {
        let want = manifest["files"][f]["sha256"].as_str();
        fs::read(dir.join(f)).is_ok_and(|bytes| Some(sha256(&bytes).as_str()) == want)
    })
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    super::hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_is_written_with_its_manifest_and_checks_out() {
        let material = Material {
            kernel: Kernel {
                bytes: b"kernel".to_vec(),
                format: "Image",
                note: None,
            },
            busybox: b"\x7fELF busybox".to_vec(),
            modules: vec![Module {
                name: "virtio_blk".into(),
                bytes: b"ko".to_vec(),
            }],
            agent: b"\x7fELF agent",
        };
        let initrd = initramfs(&material).unwrap();
        assert_eq!(initrd, initramfs(&material).unwrap(), "reproducible");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        write(&out, &material, &initrd, json!({"arch": "x86_64"})).unwrap();
        let manifest: Value =
            serde_json::from_slice(&fs::read(out.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(manifest["arch"], "x86_64");
        assert_eq!(manifest["modules"], json!(["virtio_blk"]));
        assert_eq!(manifest["agent"]["size"], 10);
        assert_eq!(manifest["files"]["kernel"]["size"], 6);
        assert!(intact(&out));
        fs::write(out.join(KERNEL), b"kernex").unwrap();
        assert!(!intact(&out), "same size, other bytes");
    }
}
