//! `cargo xtask guests`, Linux part: builds the Linux test guest
//! (`qemu_test::guest::LINUX_X86_64`) from Debian packages into the guests
//! cache directory.
//!
//! What it does, for x86_64:
//!
//! 1. Resolves the packages with `apt-cache show`: the cloud kernel
//!    meta-package `linux-image-cloud-amd64` names the concrete kernel
//!    package (`linux-image-<release>`); `busybox-static` gives the shell and
//!    tools. Versions and the archive's SHA-256 of each `.deb` come from the
//!    same query. If apt knows neither, `apt-get update` runs once.
//! 2. If `manifest.json` in the output directory records the same package
//!    versions, the same guest sources (`guests/linux/`) and the same build
//!    format, and the output files still have the recorded SHA-256, nothing
//!    is done ("up to date"). Without apt lists (offline), a complete cache
//!    is kept as it is.
//! 3. Otherwise it fetches the exact versions with `apt-get download` into a
//!    temporary directory, checks their SHA-256, and unpacks them with
//!    `dpkg-deb -x`. Nothing is installed (`busybox-static` conflicts with
//!    the host's `busybox`).
//! 4. Copies the kernel to `vmlinuz` and writes `initrd.gz`, a gzip'd cpio
//!    (newc) archive built here in Rust: `/bin/busybox` (applet links are
//!    made at boot by `busybox --install -s`), `/dev/console`, the kernel
//!    modules of [`MODULES`] plus their dependencies (read from each
//!    module's `.modinfo` `depends=`) with `/etc/modules` listing them in
//!    load order, and `guests/linux/init` plus everything under
//!    `guests/linux/rootfs/`. Entries are sorted and time-stamped 0, so the
//!    same inputs give the same bytes.
//! 5. Writes `manifest.json` last: package names, versions and `.deb`
//!    SHA-256, the kernel release, the modules, a hash of the guest sources,
//!    and the size and SHA-256 of `vmlinuz` and `initrd.gz`.
//!
//! The output directory is `$QEMU_TEST_GUESTS_DIR/linux-x86_64` (a relative
//! `QEMU_TEST_GUESTS_DIR` is taken from the workspace root), else
//! `<target>/qemu-test/guests/linux-x86_64`, which is where test binaries
//! built into the same target directory look
//! (`qemu_test::guest::guests_dir`). The build needs `apt-get`, `apt-cache`
//! and `dpkg-deb` (any Debian or Ubuntu host) and the package archive; the
//! tests later need no network.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::util;

/// Bumped whenever the layout of the built guest changes, so older caches
/// are rebuilt.
const FORMAT: u64 = 1;

/// One guest architecture.
struct Target {
    /// The subdirectory of the guests directory.
    dir: &'static str,
    /// The QEMU architecture.
    arch: &'static str,
    /// Debian's architecture name.
    deb_arch: &'static str,
    /// The kernel meta-package whose `Depends` names the real one.
    kernel_meta: &'static str,
    /// The busybox package.
    busybox: &'static str,
    /// Modules loaded at boot, by name; their dependencies are added.
    modules: &'static [&'static str],
}

/// Kernel modules the guest loads at boot. The cloud kernel builds the
/// serial console, PCIe hotplug, ext4 and tmpfs in, but not these:
/// `virtio_pci` + `virtio_blk` (block devices, including hot-plugged ones),
/// `button` + `evdev` (the ACPI power button, read by busybox `acpid`).
pub const MODULES: &[&str] = &["virtio_pci", "virtio_blk", "button", "evdev"];

const X86_64: Target = Target {
    dir: "linux-x86_64",
    arch: "x86_64",
    deb_arch: "amd64",
    kernel_meta: "linux-image-cloud-amd64",
    busybox: "busybox-static",
    modules: MODULES,
};

/// The output files, as named in the manifest.
const KERNEL_FILE: &str = "vmlinuz";
const INITRD_FILE: &str = "initrd.gz";
const MANIFEST_FILE: &str = "manifest.json";

/// Builds (or confirms up to date) the Linux guest.
pub fn build() -> Result<(), String> {
    let out = guests_dir()?.join(X86_64.dir);
    let started = Instant::now();
    let outcome = build_target(&X86_64, &out)?;
    println!(
        "guests: linux-{}: {outcome} in {} ({})",
        X86_64.arch,
        util::human(started.elapsed()),
        out.display()
    );
    Ok(())
}

/// `$QEMU_TEST_GUESTS_DIR`, else `<target>/qemu-test/guests`.
fn guests_dir() -> Result<PathBuf, String> {
    Ok(
        match std::env::var_os("QEMU_TEST_GUESTS_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => util::workspace_root().join(dir),
            None => util::target_dir().join("qemu-test").join("guests"),
        },
    )
}

/// A resolved Debian package.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    name: String,
    version: String,
    /// SHA-256 of the `.deb`, from the archive's index.
    sha256: String,
}

fn build_target(target: &Target, out: &Path) -> Result<&'static str, String> {
    let sources = guest_sources(&util::workspace_root().join("guests/linux"))?;
    let sources_sha256 = sources_digest(&sources, target.modules);
    let cached = read_manifest(out);
    let mut packages = match resolve_packages(target) {
        Ok(p) => p,
        Err(e) => {
            if let Some(m) = &cached {
                if m["sources_sha256"] == sources_sha256.as_str() && outputs_intact(out, m) {
                    println!("guests: warning: {e}; keeping the cached guest");
                    return Ok("kept (package lists unavailable)");
                }
            }
            return Err(e);
        }
    };
    if let Some(m) = &cached {
        if manifest_matches(m, &packages, &sources_sha256) && outputs_intact(out, m) {
            return Ok("up to date");
        }
    }

    let work = tempfile::Builder::new()
        .prefix("qemu-test-linux-guest-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    // Stale package lists name versions the archive no longer has: refresh
    // them once and resolve again.
    let debs = match download_all(&packages, work.path()) {
        Ok(debs) => debs,
        Err(e) => {
            println!("guests: {e}; running apt-get update");
            util::run(Command::new("apt-get").args(["update", "-q"]))?;
            packages = resolve_packages_once(target)?;
            let retry = work.path().join("retry");
            fs::create_dir(&retry)
                .map_err(|e| format!("cannot create {}: {e}", retry.display()))?;
            download_all(&packages, &retry)?
        }
    };
    let mut trees = Vec::new();
    for (pkg, deb) in packages.iter().zip(&debs) {
        let tree = work.path().join(&pkg.name);
        util::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tree))?;
        trees.push(tree);
    }
    let (kernel_tree, busybox_tree) = (&trees[0], &trees[1]);
    let release = packages[0]
        .name
        .strip_prefix("linux-image-")
        .ok_or("unexpected kernel package name")?
        .to_string();
    let kernel_path = kernel_tree.join("boot").join(format!("vmlinuz-{release}"));
    let kernel = fs::read(&kernel_path)
        .map_err(|e| format!("cannot read {}: {e}", kernel_path.display()))?;

    let mut archive = Archive::default();
    let busybox_path = busybox_tree.join("bin/busybox");
    let busybox = fs::read(&busybox_path)
        .map_err(|e| format!("cannot read {}: {e}", busybox_path.display()))?;
    archive.file("bin/busybox", 0o755, busybox);
    archive.symlink("bin/sh", "busybox");
    archive.char_dev("dev/console", 0o600, 5, 1);
    let modules_dir = kernel_tree.join("lib/modules").join(&release);
    let modules = resolve_modules(&modules_dir, target.modules)?;
    let mut load_list = String::new();
    for (name, path) in &modules {
        let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        archive.file(&format!("lib/modules/{name}.ko"), 0o644, bytes);
        load_list.push_str(&format!("{name}.ko\n"));
    }
    archive.file("etc/modules", 0o644, load_list.into_bytes());
    for (path, (mode, bytes)) in &sources {
        archive.file(path, *mode, bytes.clone());
    }
    for dir in [
        "proc", "sys", "dev", "run", "tmp", "root", "sbin", "usr/bin", "usr/sbin",
    ] {
        archive.dir(dir);
    }
    let initrd = archive
        .to_gzip_cpio()
        .map_err(|e| format!("cannot build the initramfs: {e}"))?;

    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    write_atomic(&out.join(KERNEL_FILE), &kernel)?;
    write_atomic(&out.join(INITRD_FILE), &initrd)?;
    let manifest = json!({
        "format": FORMAT,
        "arch": target.arch,
        "kernel_release": release,
        "packages": packages.iter().map(|p| json!({"name": p.name, "version": p.version, "sha256": p.sha256})).collect::<Vec<_>>(),
        "modules": modules.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        "sources_sha256": sources_sha256,
        "files": {
            KERNEL_FILE: {"size": kernel.len(), "sha256": sha256_hex(&kernel)},
            INITRD_FILE: {"size": initrd.len(), "sha256": sha256_hex(&initrd)},
        },
    });
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())? + "\n";
    write_atomic(&out.join(MANIFEST_FILE), text.as_bytes())?;
    Ok("built")
}

/// `apt-cache show`, retried once after `apt-get update` when apt knows
/// nothing about the packages.
fn resolve_packages(target: &Target) -> Result<Vec<Package>, String> {
    match resolve_packages_once(target) {
        Ok(p) => Ok(p),
        Err(first) => {
            println!("guests: {first}; running apt-get update");
            util::run(Command::new("apt-get").args(["update", "-q"]))
                .map_err(|e| format!("{first}, and apt-get update failed: {e}"))?;
            resolve_packages_once(target)
        }
    }
}

fn resolve_packages_once(target: &Target) -> Result<Vec<Package>, String> {
    let meta = apt_show(&[target.kernel_meta])?;
    let depends = meta
        .first()
        .and_then(|s| s.get("Depends"))
        .ok_or_else(|| format!("apt-cache: {} has no Depends", target.kernel_meta))?;
    let kernel = depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-"))
        .ok_or_else(|| {
            format!(
                "apt-cache: {} depends on no linux-image package: {depends}",
                target.kernel_meta
            )
        })?;
    let stanzas = apt_show(&[kernel, target.busybox])?;
    let mut packages = Vec::new();
    for name in [kernel, target.busybox] {
        let s = stanzas
            .iter()
            .find(|s| s.get("Package").map(String::as_str) == Some(name))
            .ok_or_else(|| format!("apt-cache show printed nothing for {name}"))?;
        if let Some(arch) = s.get("Architecture") {
            if arch != target.deb_arch && arch != "all" {
                return Err(format!("{name} is for {arch}, not {}", target.deb_arch));
            }
        }
        let field = |f: &str| {
            s.get(f)
                .cloned()
                .ok_or_else(|| format!("apt-cache: {name} has no {f}"))
        };
        packages.push(Package {
            name: name.to_string(),
            version: field("Version")?,
            sha256: field("SHA256")?,
        });
    }
    Ok(packages)
}

/// The stanzas `apt-cache show --no-all-versions` prints: the candidate
/// version of each package.
fn apt_show(names: &[&str]) -> Result<Vec<BTreeMap<String, String>>, String> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions"])
        .args(names)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-cache (is this a Debian-like host?): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.trim().is_empty() {
        return Err(format!(
            "apt-cache knows no package {} ({})",
            names.join(", "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(parse_stanzas(&text))
}

/// Parses deb822 stanzas (continuation lines are folded into the field).
fn parse_stanzas(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut stanzas = Vec::new();
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
            last = None;
        } else if line.starts_with([' ', '\t']) {
            if let Some(v) = last.as_ref().and_then(|k| current.get_mut(k)) {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            current.insert(k.to_string(), v.trim().to_string());
            last = Some(k.to_string());
        }
    }
    if !current.is_empty() {
        stanzas.push(current);
    }
    stanzas
}

/// Downloads every package into `dir`.
fn download_all(packages: &[Package], dir: &Path) -> Result<Vec<PathBuf>, String> {
    packages.iter().map(|p| download(p, dir)).collect()
}

/// `apt-get download NAME=VERSION` into `dir`; checks the SHA-256.
fn download(pkg: &Package, dir: &Path) -> Result<PathBuf, String> {
    let before: BTreeSet<PathBuf> = debs_in(dir)?;
    util::run(
        Command::new("apt-get")
            // Downloads into a private temp dir: no sandbox user needed.
            .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{}={}", pkg.name, pkg.version))
            .current_dir(dir),
    )?;
    let new: Vec<PathBuf> = debs_in(dir)?.difference(&before).cloned().collect();
    let [deb] = new.as_slice() else {
        return Err(format!(
            "apt-get download {} left {} new .deb files",
            pkg.name,
            new.len()
        ));
    };
    let bytes = fs::read(deb).map_err(|e| format!("cannot read {}: {e}", deb.display()))?;
    let got = sha256_hex(&bytes);
    if got != pkg.sha256 {
        return Err(format!(
            "{} has SHA-256 {got}, the archive says {}",
            deb.display(),
            pkg.sha256
        ));
    }
    Ok(deb.clone())
}

fn debs_in(dir: &Path) -> Result<BTreeSet<PathBuf>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect())
}

/// The guest's own files: `init` and `rootfs/**`, as (path in the guest,
/// (mode, bytes)). Files with any execute bit become 0755, others 0644.
fn guest_sources(dir: &Path) -> Result<BTreeMap<String, (u32, Vec<u8>)>, String> {
    let mut files = BTreeMap::new();
    let init = dir.join("init");
    files.insert(
        "init".to_string(),
        (
            0o755,
            fs::read(&init).map_err(|e| format!("cannot read {}: {e}", init.display()))?,
        ),
    );
    collect_tree(&dir.join("rootfs"), "", &mut files)?;
    Ok(files)
}

fn collect_tree(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, (u32, Vec<u8>)>,
) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| format!("non-UTF-8 file name {n:?} in {}", dir.display()))?;
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = entry
            .metadata()
            .map_err(|e| format!("cannot stat {}: {e}", entry.path().display()))?;
        if meta.is_dir() {
            collect_tree(&entry.path(), &rel, files)?;
        } else if meta.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let bytes = fs::read(entry.path())
                .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
            files.insert(rel, (mode, bytes));
        } else {
            return Err(format!(
                "{} is neither a file nor a directory",
                entry.path().display()
            ));
        }
    }
    Ok(())
}

/// A hash of everything that shapes the initramfs apart from the packages.
fn sources_digest(sources: &BTreeMap<String, (u32, Vec<u8>)>, modules: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(format!("format {FORMAT}\nmodules {}\n", modules.join(",")));
    for (path, (mode, bytes)) in sources {
        h.update(format!("{path} {mode:o} {}\n", bytes.len()));
        h.update(bytes);
    }
    hex(&h.finalize())
}

/// The modules to load, dependencies first, as (name, path of the `.ko`).
fn resolve_modules(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>, String> {
    let mut index = BTreeMap::new();
    index_modules(&modules_dir.join("kernel"), &mut index)?;
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for name in wanted {
        visit_module(name, &index, &mut seen, &mut order, 0)?;
    }
    Ok(order)
}

/// Module name (with `-` as `_`, as the kernel names them) -> `.ko` path.
fn index_modules(dir: &Path, index: &mut BTreeMap<String, PathBuf>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            index_modules(&path, index)?;
        } else if let Some(file) = path.file_name().and_then(|n| n.to_str()) {
            if let Some(stem) = file.strip_suffix(".ko") {
                index.insert(stem.replace('-', "_"), path.clone());
            } else if file.contains(".ko.") {
                return Err(format!(
                    "{}: compressed kernel modules are not supported",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

fn visit_module(
    name: &str,
    index: &BTreeMap<String, PathBuf>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<(String, PathBuf)>,
    depth: usize,
) -> Result<(), String> {
    let name = name.replace('-', "_");
    if seen.contains(&name) {
        return Ok(());
    }
    if depth > 32 {
        return Err(format!("module dependency loop at {name}"));
    }
    let path = index.get(&name).ok_or_else(|| {
        format!("kernel module {name} not found (built in? then drop it from MODULES)")
    })?;
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for dep in module_depends(&bytes) {
        visit_module(&dep, index, seen, order, depth + 1)?;
    }
    seen.insert(name.clone());
    order.push((name, path.clone()));
    Ok(())
}

/// The `depends=` entry of a module's `.modinfo` section: NUL-separated
/// `key=value` strings, found by their `\0depends=` prefix.
fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let value = &ko[at + key.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn read_manifest(out: &Path) -> Option<Value> {
    serde_json::from_slice(&fs::read(out.join(MANIFEST_FILE)).ok()?).ok()
}

fn manifest_matches(m: &Value, packages: &[Package], sources_sha256: &str) -> bool {
    let recorded: Vec<(String, String, String)> = m["packages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
                    (s("name"), s("version"), s("sha256"))
                })
                .collect()
        })
        .unwrap_or_default();
    let wanted: Vec<(String, String, String)> = packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.sha256.clone()))
        .collect();
    m["format"] == FORMAT && m["sources_sha256"] == sources_sha256 && recorded == wanted
}

/// Whether the files the manifest lists exist with their recorded SHA-256.
fn outputs_intact(out: &Path, m: &Value) -> bool {
    [KERNEL_FILE, INITRD_FILE].iter().all(|f| {
        let want = m["files"][f]["sha256"].as_str();
        fs::read(out.join(f)).is_ok_and(|bytes| Some(sha256_hex(&bytes).as_str()) == want)
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot create a temp file in {}: {e}", dir.display()))?;
    tmp.write_all(bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| format!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An initramfs under construction: path (no leading `/`) -> entry.
/// Parent directories are added implicitly.
#[derive(Default)]
struct Archive {
    entries: BTreeMap<String, Entry>,
}

enum Entry {
    Dir,
    File { mode: u32, bytes: Vec<u8> },
    Symlink(String),
    CharDev { mode: u32, major: u32, minor: u32 },
}

impl Archive {
    fn add(&mut self, path: &str, entry: Entry) {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.entries
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Entry::Dir);
            parent = p.parent();
        }
        self.entries.insert(path.to_string(), entry);
    }
    fn dir(&mut self, path: &str) {
        self.add(path, Entry::Dir);
    }
    fn file(&mut self, path: &str, mode: u32, bytes: Vec<u8>) {
        self.add(path, Entry::File { mode, bytes });
    }
    fn symlink(&mut self, path: &str, target: &str) {
        self.add(path, Entry::Symlink(target.to_string()));
    }
    fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.add(path, Entry::CharDev { mode, major, minor });
    }

    /// The archive as cpio newc (sorted, so parents come first; mtime 0),
    /// gzip'd.
    fn to_gzip_cpio(&self) -> std::io::Result<Vec<u8>> {
        use cpio::newc::{Builder, ModeFileType};
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut w = gz;
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let b = Builder::new(path).ino(ino).uid(0).gid(0).mtime(0);
            let (b, data): (Builder, &[u8]) = match entry {
                Entry::Dir => (
                    b.mode(0o755)
                        .set_mode_file_type(ModeFileType::Directory)
                        .nlink(2),
                    &[],
                ),
                Entry::File { mode, bytes } => (
                    b.mode(*mode).set_mode_file_type(ModeFileType::Regular),
                    bytes,
                ),
                Entry::Symlink(target) => (
                    b.mode(0o777).set_mode_file_type(ModeFileType::Symlink),
                    target.as_bytes(),
                ),
                Entry::CharDev { mode, major, minor } => (
                    b.mode(*mode)
                        .set_mode_file_type(ModeFileType::Char)
                        .rdev_major(*major)
                        .rdev_minor(*minor),
                    &[],
                ),
            };
            let size = u32::try_from(data.len())
                .map_err(|_| std::io::Error::other(format!("{path} is too large for cpio")))?;
            let mut fw = b.write(w, size);
            fw.write_all(data)?;
            w = fw.finish()?;
        }
        cpio::newc::trailer(w)?.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stanzas_parse_with_continuations() {
        let text =
            "Package: a\nVersion: 1\nDescription: x\n more\n\nPackage: b\nDepends: c (= 2), d\n";
        let s = parse_stanzas(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["Description"], "x\nmore");
        assert_eq!(s[1]["Depends"], "c (= 2), d");
    }

    #[test]
    fn module_depends_are_read_from_modinfo() {
        let ko = b"\x7fELF junk\0license=GPL\0depends=virtio,virtio_ring\0intree=Y\0";
        assert_eq!(module_depends(ko), ["virtio", "virtio_ring"]);
        assert!(module_depends(b"\0depends=\0name=x\0").is_empty());
        assert!(module_depends(b"nothing").is_empty());
    }

    #[test]
    fn modules_come_after_their_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kernel/drivers");
        fs::create_dir_all(&k).unwrap();
        fs::write(k.join("a.ko"), b"\0depends=b,c-d\0").unwrap();
        fs::write(k.join("b.ko"), b"\0depends=c_d\0").unwrap();
        fs::write(k.join("c-d.ko"), b"\0depends=\0").unwrap();
        let order = resolve_modules(dir.path(), &["a", "b"]).unwrap();
        let names: Vec<_> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["c_d", "b", "a"]);
        assert!(resolve_modules(dir.path(), &["missing"]).is_err());
    }

    #[test]
    fn archive_round_trips_through_a_cpio_reader() {
        let mut a = Archive::default();
        a.file("bin/busybox", 0o755, b"ELF".to_vec());
        a.symlink("bin/sh", "busybox");
        a.char_dev("dev/console", 0o600, 5, 1);
        a.file("init", 0o755, b"#!/bin/sh\n".to_vec());
        let gz = a.to_gzip_cpio().unwrap();
        assert_eq!(gz, a.to_gzip_cpio().unwrap(), "reproducible");
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut cpio)
            .unwrap();
        let mut seen = Vec::new();
        let mut rest: &[u8] = &cpio;
        loop {
            let mut reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let e = reader.entry();
            let (name, mode, rdev) = (
                e.name().to_string(),
                e.mode(),
                (e.rdev_major(), e.rdev_minor()),
            );
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            seen.push((name, mode, rdev, data));
            rest = reader.finish().unwrap();
        }
        let names: Vec<_> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init"]
        );
        assert_eq!(seen[0].1, 0o040755);
        assert_eq!((seen[1].1, seen[1].3.as_slice()), (0o100755, &b"ELF"[..]));
        assert_eq!(
            (seen[2].1, seen[2].3.as_slice()),
            (0o120777, &b"busybox"[..])
        );
        assert_eq!((seen[4].1, seen[4].2), (0o020600, (5, 1)));
    }
}
