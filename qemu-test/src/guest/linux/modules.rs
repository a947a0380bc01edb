//! The kernel modules the guest loads at boot: the ones asked for plus
//! their dependencies (from each module's `.modinfo` `depends=`), in load
//! order, read from a `lib/modules/<release>` directory. Modules the
//! kernel builds in (listed in its `modules.builtin`) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A module to load: its name (with `_`, as the kernel names them) and
/// its `.ko` contents.
#[derive(Debug)]
pub(crate) struct Module {
    pub(crate) name: String,
    pub(crate) bytes: Vec<u8>,
}

/// The modules to load for `wanted`, dependencies first.
pub(crate) fn resolve(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<Module>, String> {
    let mut index = BTreeMap::new();
    let kernel = modules_dir.join("kernel");
    let top = if kernel.is_dir() {
        kernel
    } else {
        modules_dir.to_path_buf()
    };
    index_modules(&top, &mut index)?;
    let builtin = builtin(modules_dir);
    let mut walk = Walk {
        index: &index,
        builtin: &builtin,
        seen: BTreeSet::new(),
        order: Vec::new(),
    };
    for name in wanted {
        walk.visit(name, 0)?;
    }
    Ok(walk.order)
}

/// The modules `modules.builtin` lists (the kernel has them built in).
fn builtin(modules_dir: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
    text.lines()
        .filter_map(|line| Path::new(line.trim()).file_name()?.to_str())
        .filter_map(|file| file.split(".ko").next())
        .map(|stem| stem.replace('-', "_"))
        .collect()
}

/// Module name (with `-` as `_`, as the kernel names them) -> module file
/// (`.ko`, or `.ko.gz`/`.ko.xz`/`.ko.zst`).
fn index_modules(dir: &Path, index: &mut BTreeMap<String, PathBuf>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            index_modules(&path, index)?;
        } else if let Some(file) = path.file_name().and_then(|n| n.to_str()) {
            if let Some((stem, rest)) = file.split_once(".ko") {
                if rest.is_empty() || rest.starts_with('.') {
                    index.insert(stem.replace('-', "_"), path.clone());
                }
            }
        }
    }
    Ok(())
}

/// A depth-first walk over the dependencies.
struct Walk<'a> {
    index: &'a BTreeMap<String, PathBuf>,
    builtin: &'a BTreeSet<String>,
    seen: BTreeSet<String>,
    order: Vec<Module>,
}

impl Walk<'_> {
    fn visit(&mut self, name: &str, depth: usize) -> Result<(), String> {
        let name = name.replace('-', "_");
        if self.seen.contains(&name) || self.builtin.contains(&name) {
            return Ok(());
        }
        if depth > 32 {
            return Err(format!("module dependency loop at {name}"));
        }
        let path = self.index.get(&name).ok_or_else(|| {
            format!("kernel module {name} not found (neither a module file nor in modules.builtin)")
        })?;
        let bytes = read_module(path)?;
        for dep in module_depends(&bytes) {
            self.visit(&dep, depth + 1)?;
        }
        self.seen.insert(name.clone());
        self.order.push(Module { name, bytes });
        Ok(())
    }
}

/// A module file's contents; a gzip'd one is unpacked.
fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path.to_string_lossy();
    if name.ends_with(".ko") {
        return Ok(bytes);
    }
    if name.ends_with(".ko.gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot gunzip {}: {e}", path.display()))?;
        return Ok(out);
    }
    Err(format!(
        "{} is compressed in a way the builder does not unpack (it reads .ko and .ko.gz): \
         decompress the modules (e.g. `unxz` or `zstd -d` on each) and point \
         QEMU_TEST_LINUX_MODULES at that directory",
        path.display()
    ))
}

/// The `depends=` entry of a module's `.modinfo` section.
fn module_depends(ko: &[u8]) -> Vec<String> {
    modinfo(ko, "depends")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The kernel release a module was built for: the first word of its
/// `vermagic=` (`6.1.0-9-cloud-amd64 SMP mod_unload modversions`).
pub(crate) fn vermagic(ko: &[u8]) -> Option<String> {
    modinfo(ko, "vermagic")?
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// An entry of a module's `.modinfo` section: NUL-separated `key=value`
/// strings, found by their `\0key=` prefix.
fn modinfo(ko: &[u8], key: &str) -> Option<String> {
    let key = format!("\0{key}=");
    let key = key.as_bytes();
    let at = ko.windows(key.len()).position(|w| w == key)?;
    let value = &ko[at + key.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    Some(String::from_utf8_lossy(&value[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn module_depends_are_read_from_modinfo() {
        let ko = b"\x7fELF junk\0license=GPL\0depends=virtio,virtio_ring\0intree=Y\0";
        assert_eq!(module_depends(ko), ["virtio", "virtio_ring"]);
        assert!(module_depends(b"\0depends=\0name=x\0").is_empty());
        assert!(module_depends(b"nothing").is_empty());
        let ko = b"\0vermagic=6.1.0-9-cloud-amd64 SMP mod_unload modversions \0name=x\0";
        assert_eq!(vermagic(ko).as_deref(), Some("6.1.0-9-cloud-amd64"));
        assert_eq!(vermagic(b"\0depends=\0"), None);
    }

    fn names(order: &[Module]) -> Vec<&str> {
        order.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn modules_come_after_their_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kernel/drivers");
        fs::create_dir_all(&k).unwrap();
        fs::write(k.join("a.ko"), b"\0depends=b,c-d\0").unwrap();
        fs::write(k.join("b.ko"), b"\0depends=c_d\0").unwrap();
        fs::write(k.join("c-d.ko"), b"\0depends=\0").unwrap();
        let order = resolve(dir.path(), &["a", "b"]).unwrap();
        assert_eq!(names(&order), ["c_d", "b", "a"]);
        assert_eq!(order[2].bytes, b"\0depends=b,c-d\0");
        assert!(resolve(dir.path(), &["missing"]).is_err());
    }

    #[test]
    fn builtin_modules_are_skipped_and_gzipped_ones_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kernel/drivers");
        fs::create_dir_all(&k).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"\0depends=virtio\0").unwrap();
        fs::write(k.join("virtio_blk.ko.gz"), gz.finish().unwrap()).unwrap();
        fs::write(k.join("evdev.ko.zst"), b"zstd").unwrap();
        fs::write(
            dir.path().join("modules.builtin"),
            "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n",
        )
        .unwrap();
        let order = resolve(dir.path(), &["virtio_pci", "virtio_blk"]).unwrap();
        assert_eq!(names(&order), ["virtio_blk"]);
        assert_eq!(order[0].bytes, b"\0depends=virtio\0");
        let e = resolve(dir.path(), &["evdev"]).unwrap_err();
        assert!(e.contains("QEMU_TEST_LINUX_MODULES"), "{e}");
    }
}
