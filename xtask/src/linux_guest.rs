//! `cargo xtask guests`, Linux part: builds the Linux test guests
//! (`qemu_test::guest::LINUX_X86_64`, and on request
//! `qemu_test::guest::LINUX_AARCH64`) from Debian packages into the guests
//! cache directory.
//!
//! What it does, for each architecture:
//!
//! 1. Resolves the packages with `apt-cache show`: the cloud kernel
//!    meta-package (`linux-image-cloud-amd64`, `linux-image-cloud-arm64`)
//!    names the concrete kernel package (`linux-image-<release>`);
//!    `busybox-static` gives the shell and tools. Versions and the archive's
//!    SHA-256 of each `.deb` come from the same query. If apt knows neither,
//!    `apt-get update` runs once. The host's architecture uses the host's
//!    package lists; another architecture (arm64 on an amd64 host) uses
//!    private lists under `<guests>/apt/` fetched from the host's own
//!    sources with `APT::Architectures` set to it, so the host's dpkg and apt
//!    configuration are never changed. apt's binary cache is kept there too
//!    (`pkgcache-<arch>.bin`), which makes the up-to-date check fast even on
//!    hosts (Docker images) that disable apt's own.
//! 2. If `manifest.json` in the output directory records the same package
//!    versions, the same guest sources (`qemu-test/src/guest/linux/`) and the same build
//!    format, and the output files still have the recorded SHA-256, nothing
//!    is done ("up to date"). Without apt lists (offline), a complete cache
//!    is kept as it is.
//! 3. Otherwise it fetches the exact versions with `apt-get download` into a
//!    temporary directory, checks their SHA-256, and unpacks them with
//!    `dpkg-deb -x`. Nothing is installed (`busybox-static` conflicts with
//!    the host's `busybox`).
//! 4. Writes the kernel to `kernel`. On x86_64 that is the uncompressed
//!    `vmlinux` ELF taken out of Debian's bzImage (its LZ4 or gzip payload),
//!    which QEMU boots through the PVH entry point: no firmware-driven
//!    real-mode setup and no in-guest decompression, about 0.7 s less per
//!    boot on TCG. If the payload is compressed some other way, or the ELF
//!    has no PVH note, the bzImage is used as it is (with a note). On
//!    aarch64 Debian's `vmlinuz` is already an uncompressed `Image`.
//! 5. Writes `initrd.gz`, a gzip'd cpio (newc) archive built here in Rust:
//!    `/bin/busybox` (applet links are made at boot by `busybox --install
//!    -s`), `/dev/console`, the target's kernel modules plus their
//!    dependencies (read from each module's `.modinfo` `depends=`) with
//!    `/etc/modules` listing them in load order, and `qemu-test/src/guest/linux/init`
//!    plus everything under its `rootfs/`. Entries are sorted and
//!    time-stamped 0, so the same inputs give the same bytes.
//! 6. Writes `manifest.json` last: package names, versions and `.deb`
//!    SHA-256, the kernel release and format, the modules, a hash of the
//!    guest sources, and the size and SHA-256 of `kernel` and `initrd.gz`.
//!
//! The output directory is `$QEMU_TEST_GUESTS_DIR/linux-<arch>` (a relative
//! `QEMU_TEST_GUESTS_DIR` is taken from the workspace root), else
//! `<target>/qemu-test/guests/linux-<arch>`, which is where test binaries
//! built into the same target directory look
//! (`qemu_test::guest::guests_dir`). The build needs `apt-get`, `apt-cache`,
//! `dpkg` and `dpkg-deb` (a Debian host: the package names are Debian's) and
//! the package archive; the tests later need no network.
//!
//! The aarch64 guest is built only when asked (`cargo xtask guests
//! --aarch64`): its first build fetches the arm64 package lists (about 14
//! MB) and a 21 MB kernel package, which `cargo xtask test` (CI) does not
//! spend; its test is `ignore`d for the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::util;

/// Bumped whenever the layout of the built guest changes, so older caches
/// are rebuilt. 2: the kernel file is `kernel` (an uncompressed ELF on
/// x86_64).
const FORMAT: u64 = 2;

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
    /// What the kernel package's `vmlinuz` is and what to boot instead.
    kernel: KernelImage,
}

/// The kernel image a target's package ships.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KernelImage {
    /// An x86 bzImage: its payload is unpacked to the `vmlinux` ELF, booted
    /// through the PVH entry point.
    BzImage,
    /// Booted as it is (arm64's `Image`).
    AsIs,
}

/// Kernel modules the x86_64 guest loads at boot. The cloud kernel builds
/// the serial console, PCIe hotplug, ext4 and tmpfs in, but not these:
/// `virtio_pci` + `virtio_blk` (block devices, including hot-plugged ones),
/// `button` + `evdev` (the ACPI power button, read by busybox `acpid`).
pub const MODULES: &[&str] = &["virtio_pci", "virtio_blk", "button", "evdev"];

/// Kernel modules the aarch64 guest loads at boot: block devices, and
/// `evdev` for `acpid`. (`-M virt` booted with `-kernel` has a device tree,
/// not ACPI, and its power button needs `gpio_keys`, which the cloud
/// kernel does not build: `system_powerdown` does nothing there.)
pub const MODULES_AARCH64: &[&str] = &["virtio_pci", "virtio_blk", "evdev"];

const X86_64: Target = Target {
    dir: "linux-x86_64",
    arch: "x86_64",
    deb_arch: "amd64",
    kernel_meta: "linux-image-cloud-amd64",
    busybox: "busybox-static",
    modules: MODULES,
    kernel: KernelImage::BzImage,
};

const AARCH64: Target = Target {
    dir: "linux-aarch64",
    arch: "aarch64",
    deb_arch: "arm64",
    kernel_meta: "linux-image-cloud-arm64",
    busybox: "busybox-static",
    modules: MODULES_AARCH64,
    kernel: KernelImage::AsIs,
};

/// The output files, as named in the manifest (and in
/// `qemu_test::guest::Prebuilt`).
const KERNEL_FILE: &str = "kernel";
const INITRD_FILE: &str = "initrd.gz";
const MANIFEST_FILE: &str = "manifest.json";

/// Which Linux guests `cargo xtask guests` builds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Also build the aarch64 guest (`--aarch64`).
    pub aarch64: bool,
}

/// Builds (or confirms up to date) the x86_64 Linux guest, and the aarch64
/// one when asked.
pub fn build(opts: Options) -> Result<(), String> {
    let guests = guests_dir()?;
    build_one(&X86_64, &guests)?;
    if opts.aarch64 {
        build_one(&AARCH64, &guests).map_err(|e| {
            format!(
                "{e}\nguests: the aarch64 Linux guest needs Debian's arm64 packages \
                 (linux-image-cloud-arm64, busybox-static) from the host's apt sources; \
                 a Debian mirror carries them, Ubuntu's main archive does not"
            )
        })?;
    }
    Ok(())
}

fn build_one(target: &Target, guests: &Path) -> Result<(), String> {
    let out = guests.join(target.dir);
    let started = Instant::now();
    let apt = Apt::new(target, guests)?;
    let outcome =
        build_target(target, &apt, &out).map_err(|e| format!("linux-{}: {e}", target.arch))?;
    println!(
        "guests: linux-{}: {outcome} in {} ({})",
        target.arch,
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

/// How apt is asked about one architecture's packages: `-o` options for
/// `apt-cache` and `apt-get`.
struct Apt {
    options: Vec<String>,
    /// Private package lists (for an architecture that is not the host's).
    lists: Option<PathBuf>,
}

impl Apt {
    fn new(target: &Target, guests: &Path) -> Result<Apt, String> {
        let dir = guests.join("apt");
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let pkgcache = dir.join(format!("pkgcache-{}.bin", target.deb_arch));
        let mut options = vec![
            // Our own binary cache: hosts that turn apt's off (Docker
            // images) would otherwise parse every list on each query.
            format!("Dir::Cache::pkgcache={}", pkgcache.display()),
            "Dir::Cache::srcpkgcache=".to_string(),
            // Downloads go to private dirs: no sandbox user needed.
            "APT::Sandbox::User=root".to_string(),
        ];
        let mut lists = None;
        // Without dpkg the queries below fail, and a complete cache is kept.
        if host_deb_arch().is_ok_and(|host| host != target.deb_arch) {
            let dir = dir.join(format!("lists-{}", target.deb_arch));
            options.extend([
                format!("APT::Architecture={}", target.deb_arch),
                format!("APT::Architectures={}", target.deb_arch),
                format!("Dir::State::Lists={}", dir.display()),
                // Nothing of that architecture is installed here.
                "Dir::State::status=/dev/null".to_string(),
                // Package indices only (no AppStream metadata).
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_string(),
                "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".to_string(),
                "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".to_string(),
            ]);
            lists = Some(dir);
        }
        Ok(Apt { options, lists })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for option in &self.options {
            cmd.arg("-o").arg(option);
        }
        cmd
    }

    /// `apt-get update` of the lists this uses.
    fn update(&self) -> Result<(), String> {
        if let Some(lists) = &self.lists {
            let partial = lists.join("partial");
            fs::create_dir_all(&partial)
                .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        }
        util::run(self.command("apt-get").args(["-q", "update"]))
    }
}

/// The host's Debian architecture (`dpkg --print-architecture`).
fn host_deb_arch() -> Result<String, String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dpkg (is this a Debian-like host?): {e}"))?;
    if !out.status.success() {
        return Err(format!("dpkg --print-architecture failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A resolved Debian package.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    name: String,
    version: String,
    /// SHA-256 of the `.deb`, from the archive's index.
    sha256: String,
}

fn build_target(target: &Target, apt: &Apt, out: &Path) -> Result<&'static str, String> {
    let sources = guest_sources(&util::workspace_root().join("qemu-test/src/guest/linux"))?;
    let sources_sha256 = sources_digest(&sources, target.modules);
    let cached = read_manifest(out);
    let mut packages = match resolve_packages(target, apt) {
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
    let debs = match download_all(apt, &packages, work.path()) {
        Ok(debs) => debs,
        Err(e) => {
            println!("guests: {e}; running apt-get update");
            apt.update()?;
            packages = resolve_packages_once(target, apt)?;
            let retry = work.path().join("retry");
            fs::create_dir(&retry)
                .map_err(|e| format!("cannot create {}: {e}", retry.display()))?;
            download_all(apt, &packages, &retry)?
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
    let vmlinuz = fs::read(&kernel_path)
        .map_err(|e| format!("cannot read {}: {e}", kernel_path.display()))?;
    let (kernel, kernel_format) = match target.kernel {
        KernelImage::AsIs => (vmlinuz, "Image"),
        KernelImage::BzImage => {
            match pvh_vmlinux(&vmlinuz) {
                Ok(elf) => (elf, "vmlinux (PVH)"),
                Err(e) => {
                    println!("guests: note: booting the compressed bzImage (about 0.7 s slower on TCG): {e}");
                    (vmlinuz, "bzImage")
                }
            }
        }
    };

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
    // An older format's kernel file name.
    let _ = fs::remove_file(out.join("vmlinuz"));
    write_atomic(&out.join(KERNEL_FILE), &kernel)?;
    write_atomic(&out.join(INITRD_FILE), &initrd)?;
    let manifest = json!({
        "format": FORMAT,
        "arch": target.arch,
        "kernel_release": release,
        "kernel_format": kernel_format,
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
fn resolve_packages(target: &Target, apt: &Apt) -> Result<Vec<Package>, String> {
    match resolve_packages_once(target, apt) {
        Ok(p) => Ok(p),
        Err(first) => {
            println!("guests: {first}; running apt-get update");
            apt.update()
                .map_err(|e| format!("{first}, and apt-get update failed: {e}"))?;
            resolve_packages_once(target, apt)
        }
    }
}

fn resolve_packages_once(target: &Target, apt: &Apt) -> Result<Vec<Package>, String> {
    let first = apt_show(apt, &[target.kernel_meta, target.busybox])?;
    let stanza = |stanzas: &[BTreeMap<String, String>], name: &str| {
        stanzas
            .iter()
            .find(|s| s.get("Package").map(String::as_str) == Some(name))
            .cloned()
            .ok_or_else(|| format!("apt-cache show printed nothing for {name}"))
    };
    let meta = stanza(&first, target.kernel_meta)?;
    let depends = meta
        .get("Depends")
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
    let second = apt_show(apt, &[kernel])?;
    let mut packages = Vec::new();
    for s in [stanza(&second, kernel)?, stanza(&first, target.busybox)?] {
        let name = s["Package"].clone();
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
            version: field("Version")?,
            sha256: field("SHA256")?,
            name,
        });
    }
    Ok(packages)
}

/// The stanzas `apt-cache show --no-all-versions` prints: the candidate
/// version of each package.
fn apt_show(apt: &Apt, names: &[&str]) -> Result<Vec<BTreeMap<String, String>>, String> {
    let out = apt
        .command("apt-cache")
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
fn download_all(apt: &Apt, packages: &[Package], dir: &Path) -> Result<Vec<PathBuf>, String> {
    packages.iter().map(|p| download(apt, p, dir)).collect()
}

/// `apt-get download NAME=VERSION` into `dir`; checks the SHA-256.
fn download(apt: &Apt, pkg: &Package, dir: &Path) -> Result<PathBuf, String> {
    let before: BTreeSet<PathBuf> = debs_in(dir)?;
    util::run(
        apt.command("apt-get")
            .args(["-q", "download"])
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

/// The uncompressed kernel (`vmlinux`, an ELF) inside an x86 bzImage, if
/// QEMU can boot it directly: the payload (boot protocol 2.08+
/// `payload_offset`/`payload_length`) is LZ4 (legacy frame, what Debian
/// uses) or gzip, and the ELF carries the PVH entry note.
fn pvh_vmlinux(bz: &[u8]) -> Result<Vec<u8>, String> {
    if bz.get(0x202..0x206) != Some(b"HdrS") {
        return Err("not a bzImage (no HdrS header)".into());
    }
    let version = le_u16(bz, 0x206).unwrap_or(0);
    if version < 0x208 {
        return Err(format!("boot protocol {version:#x} has no payload fields"));
    }
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let offset = le_u32(bz, 0x248).ok_or("truncated bzImage header")? as usize;
    let length = le_u32(bz, 0x24c).ok_or("truncated bzImage header")? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    let payload = bz
        .get(start..start + length)
        .ok_or("the bzImage payload lies outside the file")?;
    let elf = if payload.starts_with(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
        lz4_legacy_decompress(payload)?
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(payload)
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot gunzip the kernel payload: {e}"))?;
        out
    } else {
        return Err(format!(
            "the kernel payload is compressed in a way this build does not unpack (it starts {:02x?})",
            &payload[..payload.len().min(6)]
        ));
    };
    if !has_pvh_note(&elf) {
        return Err("the kernel has no PVH entry note (CONFIG_PVH)".into());
    }
    Ok(elf)
}

const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;

/// Decompresses an LZ4 "legacy frame" (`lz4 -l`): the magic, then blocks
/// of a little-endian `u32` compressed size and up to 8 MiB of data each.
/// The kernel build appends the uncompressed size as a final `u32`, which
/// is checked.
fn lz4_legacy_decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    const BLOCK: usize = 8 << 20;
    let mut rest = &data[4..];
    let mut out = Vec::new();
    while let Some(size) = le_u32(rest, 0) {
        if size == LZ4_LEGACY_MAGIC {
            rest = &rest[4..];
            continue;
        }
        let Some(block) = rest.get(4..4 + size as usize) else {
            break;
        };
        let at = out.len();
        out.resize(at + BLOCK, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[at..])
            .map_err(|e| format!("cannot decompress the LZ4 kernel payload: {e}"))?;
        out.truncate(at + n);
        rest = &rest[4 + size as usize..];
    }
    match le_u32(rest, 0) {
        Some(size) if rest.len() == 4 && size as usize == out.len() => Ok(out),
        None if rest.is_empty() => Ok(out),
        _ => Err(format!(
            "the LZ4 kernel payload does not end as expected ({} bytes left after {} decompressed)",
            rest.len(),
            out.len()
        )),
    }
}

/// Whether `elf` is a 64-bit little-endian ELF with a `PT_NOTE` holding
/// Xen's `XEN_ELFNOTE_PHYS32_ENTRY` (type 18): the PVH entry point QEMU
/// needs to boot an uncompressed x86 kernel.
fn has_pvh_note(elf: &[u8]) -> bool {
    const PT_NOTE: u32 = 4;
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (le_u64(elf, 0x20), le_u16(elf, 0x36), le_u16(elf, 0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let ph = phoff as usize + i * usize::from(phentsize);
        if le_u32(elf, ph) != Some(PT_NOTE) {
            return false;
        }
        let notes = le_u64(elf, ph + 8)
            .zip(le_u64(elf, ph + 32))
            .and_then(|(offset, size)| {
                elf.get(
                    usize::try_from(offset).ok()?
                        ..usize::try_from(offset.checked_add(size)?).ok()?,
                )
            });
        let Some(mut notes) = notes else {
            return false;
        };
        while let (Some(namesz), Some(descsz), Some(kind)) =
            (le_u32(notes, 0), le_u32(notes, 4), le_u32(notes, 8))
        {
            let name_end = 12 + namesz as usize;
            if notes.get(12..name_end) == Some(b"Xen\0") && kind == XEN_ELFNOTE_PHYS32_ENTRY {
                return true;
            }
            let next = name_end.next_multiple_of(4) + (descsz as usize).next_multiple_of(4);
            match notes.get(next..) {
                Some(rest) => notes = rest,
                None => break,
            }
        }
        false
    })
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
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

    /// A minimal 64-bit ELF with one `PT_NOTE` segment holding `notes`.
    fn elf_with_notes(notes: &[(&[u8], u32)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, kind) in notes {
            body.extend((name.len() as u32).to_le_bytes());
            body.extend(8u32.to_le_bytes());
            body.extend(kind.to_le_bytes());
            body.extend(*name);
            body.resize(body.len().next_multiple_of(4), 0);
            body.extend(0x0100_0000u64.to_le_bytes());
        }
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes()); // e_phoff
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes()); // e_phentsize
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        elf[0x40..0x44].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        elf[0x48..0x50].copy_from_slice(&(0x78u64).to_le_bytes()); // p_offset
        elf[0x60..0x68].copy_from_slice(&(body.len() as u64).to_le_bytes()); // p_filesz
        elf.extend(body);
        elf
    }

    #[test]
    fn pvh_note_is_found_among_others() {
        assert!(has_pvh_note(&elf_with_notes(&[
            (b"GNU\0", 3),
            (b"Xen\0", 18)
        ])));
        assert!(!has_pvh_note(&elf_with_notes(&[(b"Xen\0", 17)])));
        assert!(!has_pvh_note(&elf_with_notes(&[(b"GNU\0", 18)])));
        let mut truncated = elf_with_notes(&[(b"Xen\0", 18)]);
        truncated.truncate(0x80);
        assert!(!has_pvh_note(&truncated));
        assert!(!has_pvh_note(b"\x7fELF\x01\x01"));
    }

    /// An LZ4 legacy frame as the kernel build writes it: blocks of at most
    /// 8 MiB, then the uncompressed size.
    fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(8 << 20) {
            let block = lz4_flex::block::compress(chunk);
            out.extend((block.len() as u32).to_le_bytes());
            out.extend(block);
        }
        out.extend((data.len() as u32).to_le_bytes());
        out
    }

    #[test]
    fn lz4_legacy_frames_decompress_and_check_their_size() {
        let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
        let frame = lz4_legacy(&data);
        assert_eq!(lz4_legacy_decompress(&frame).unwrap(), data);
        let mut wrong = frame.clone();
        let n = wrong.len();
        wrong[n - 4] ^= 1;
        assert!(lz4_legacy_decompress(&wrong).is_err());
    }

    #[test]
    fn bzimage_payloads_are_unpacked_to_a_pvh_elf() {
        let elf = elf_with_notes(&[(b"Xen\0", 18)]);
        let bzimage = |payload: &[u8]| {
            // One setup sector after the boot sector, the payload right
            // after them.
            let mut bz = vec![0u8; 1024];
            bz[0x1f1] = 1;
            bz[0x202..0x206].copy_from_slice(b"HdrS");
            bz[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
            bz[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            bz.extend(payload);
            bz
        };
        assert_eq!(pvh_vmlinux(&bzimage(&lz4_legacy(&elf))).unwrap(), elf);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&elf).unwrap();
        assert_eq!(pvh_vmlinux(&bzimage(&gz.finish().unwrap())).unwrap(), elf);
        let e = pvh_vmlinux(&bzimage(b"\x28\xb5\x2f\xfd zstd")).unwrap_err();
        assert!(e.contains("compressed in a way"), "{e}");
        let no_pvh = elf_with_notes(&[(b"Xen\0", 17)]);
        let e = pvh_vmlinux(&bzimage(&lz4_legacy(&no_pvh))).unwrap_err();
        assert!(e.contains("PVH"), "{e}");
        assert!(pvh_vmlinux(b"MZ not a kernel").is_err());
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
