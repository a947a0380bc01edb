//! Debian packages through apt, without root: private package lists for
//! the guest's architecture, `apt-cache show` to resolve the packages,
//! `apt-get download` into the cache (kept, checked against the archive's
//! SHA-256) and `dpkg-deb -x` to unpack them. Nothing is installed and
//! the host's own lists, dpkg status and configuration are not changed.
//!
//! The private lists live in the guest's `apt/` dir in the cache. They are
//! fetched from the host's own apt sources (`/etc/apt/sources.list{,.d}`)
//! with `APT::Architectures` set to the guest's, when there are none yet or
//! when those sources changed, when asked, or when a package they name is
//! no longer in the archive; otherwise resolving needs no network. What
//! they resolve to is remembered in `apt/state.json` beside them, so a test
//! process finds the guest without running apt.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::target::Target;

/// The programs a build from Debian packages runs.
pub(crate) const TOOLS: [&str; 3] = ["apt-get", "apt-cache", "dpkg-deb"];

/// A resolved Debian package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) version: String,
    /// Debian's architecture (`amd64`, `all`).
    pub(crate) arch: String,
    /// SHA-256 of the `.deb`, from the archive's index.
    pub(crate) sha256: String,
    /// Size of the `.deb` in bytes (0 if the index does not say).
    pub(crate) size: u64,
}

impl Package {
    /// The `.deb`'s file name, as apt names it.
    pub(crate) fn file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({"name": self.name, "version": self.version, "arch": self.arch,
               "sha256": self.sha256, "size": self.size})
    }

    pub(crate) fn from_json(v: &Value) -> Option<Package> {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        Some(Package {
            name: s("name")?,
            version: s("version")?,
            arch: s("arch")?,
            sha256: s("sha256")?,
            size: v["size"].as_u64().unwrap_or(0),
        })
    }
}

/// Why packages could not be resolved.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// The archive the host's sources name does not have them (or apt is
    /// not there): this host cannot build the guest from packages.
    Absent(String),
    /// Something failed on the way (apt-cache crashed, ...).
    Failed(String),
}

/// apt, configured for one architecture's private lists.
#[derive(Debug)]
pub(crate) struct Apt {
    dir: PathBuf,
    lists: PathBuf,
    options: Vec<String>,
}

impl Apt {
    /// apt for `target`'s packages, with its lists and caches in `dir`.
    pub(crate) fn new(target: &Target, dir: &Path) -> Apt {
        let lists = dir.join("lists");
        let options = vec![
            format!("APT::Architecture={}", target.deb_arch),
            format!("APT::Architectures={}", target.deb_arch),
            format!("Dir::State::Lists={}", lists.display()),
            // Nothing installed on the host counts.
            "Dir::State::status=/dev/null".to_string(),
            // Our own binary cache for the apt runs of one build (see
            // `CacheGuard`): hosts that turn apt's off (Docker images) would
            // otherwise parse every list on each run.
            format!(
                "Dir::Cache::pkgcache={}",
                dir.join("pkgcache.bin").display()
            ),
            "Dir::Cache::srcpkgcache=".to_string(),
            format!("Dir::Cache::archives={}", dir.join("archives").display()),
            // Downloads go to private dirs: no sandbox user needed.
            "APT::Sandbox::User=root".to_string(),
            // Package indices only: no translations, no AppStream metadata.
            "Acquire::Languages=none".to_string(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_string(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".to_string(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".to_string(),
            "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false".to_string(),
        ];
        Apt {
            dir: dir.to_path_buf(),
            lists,
            options,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for option in &self.options {
            cmd.arg("-o").arg(option);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Whether the lists are there and were fetched from the sources the
    /// host has now.
    pub(crate) fn lists_current(&self) -> bool {
        self.has_lists() && self.state()["sources"] == sources_identity()
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(&self.lists).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    /// `apt-get update` of the private lists; its warnings (a source it
    /// could not reach: apt keeps the old list then), if any.
    pub(crate) fn update(&self) -> Result<Option<String>, String> {
        for dir in [
            self.lists.join("partial"),
            self.dir.join("archives/partial"),
        ] {
            fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let out = run(self.command("apt-get").args(["-q", "update"]))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let warnings: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("Err:") || l.starts_with("W:") || l.starts_with("E:"))
            .collect();
        // apt-get update succeeds even when a source failed: without a
        // package list nothing resolves.
        if !self.has_lists() {
            return Err(format!(
                "apt-get update fetched no package list into {} (check the host's apt sources \
                 and the network)",
                self.lists.display()
            ));
        }
        self.write_state(&json!({ "sources": sources_identity() }));
        Ok((!warnings.is_empty()).then(|| warnings.join("\n")))
    }

    /// The packages resolved from the lists as they are now, if known.
    pub(crate) fn remembered(&self) -> Option<Vec<Package>> {
        let state = self.state();
        if state["sources"] != sources_identity() || state["lists"] != self.lists_identity() {
            return None;
        }
        state["packages"]
            .as_array()?
            .iter()
            .map(Package::from_json)
            .collect()
    }

    /// Resolves `target`'s packages with `apt-cache show` (the kernel
    /// meta-package names the concrete kernel package) and remembers them.
    pub(crate) fn resolve(&self, target: &Target) -> Result<Vec<Package>, ResolveError> {
        let first = self.show(&[target.kernel_meta, target.busybox])?;
        let meta = stanza(&first, target.kernel_meta)?;
        let depends = meta.get("Depends").map(String::as_str).unwrap_or("");
        let kernel = depends
            .split([',', '|'])
            .map(|d| d.split_whitespace().next().unwrap_or(""))
            .find(|d| d.starts_with("linux-image-"))
            .ok_or_else(|| {
                ResolveError::Failed(format!(
                    "{} depends on no linux-image package: {depends:?}",
                    target.kernel_meta
                ))
            })?;
        let second = self.show(&[kernel])?;
        let mut packages = Vec::new();
        for s in [stanza(&second, kernel)?, stanza(&first, target.busybox)?] {
            packages.push(package(&s, target).map_err(ResolveError::Failed)?);
        }
        let mut state = self.state();
        state["lists"] = self.lists_identity();
        state["packages"] = packages.iter().map(Package::to_json).collect();
        self.write_state(&state);
        Ok(packages)
    }

    /// The stanzas `apt-cache show --no-all-versions` prints: the
    /// candidate version of each package.
    fn show(&self, names: &[&str]) -> Result<Vec<Stanza>, ResolveError> {
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(names)
            .output()
            .map_err(|e| ResolveError::Absent(format!("cannot run apt-cache: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || text.trim().is_empty() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let unknown = stderr.contains("No packages found") || text.trim().is_empty();
            let why = format!("apt-cache show {}: {}", names.join(" "), stderr.trim());
            return Err(if unknown {
                ResolveError::Absent(why)
            } else {
                ResolveError::Failed(why)
            });
        }
        Ok(parse_stanzas(&text))
    }

    /// Downloads `pkg` into `debs` (`apt-get download NAME=VERSION`),
    /// checks its SHA-256 and returns its path.
    pub(crate) fn download(&self, pkg: &Package, debs: &Path) -> Result<PathBuf, String> {
        let work = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(debs)
            .map_err(|e| format!("cannot create a temp dir in {}: {e}", debs.display()))?;
        run(self
            .command("apt-get")
            .args(["-q", "download"])
            .arg(format!("{}={}", pkg.name, pkg.version))
            .current_dir(work.path()))?;
        let got = work.path().join(pkg.file_name());
        let bytes = fs::read(&got).map_err(|e| {
            format!(
                "apt-get download {} left no {}: {e}",
                pkg.name,
                got.display()
            )
        })?;
        let sha256 = super::hex(&Sha256::digest(&bytes));
        if sha256 != pkg.sha256 {
            return Err(format!(
                "the downloaded {} has SHA-256 {sha256}, the archive's index says {}",
                pkg.file_name(),
                pkg.sha256
            ));
        }
        let path = debs.join(pkg.file_name());
        fs::rename(&got, &path)
            .map_err(|e| format!("cannot move {} to {}: {e}", got.display(), path.display()))?;
        Ok(path)
    }

    /// Removes apt's binary cache (about 37 MB for Debian's lists) when
    /// dropped: it serves the apt runs of one build, and a test process
    /// finds the build without apt.
    pub(crate) fn cache_guard(&self) -> CacheGuard {
        CacheGuard(self.dir.join("pkgcache.bin"))
    }

    fn state(&self) -> Value {
        fs::read(self.dir.join("state.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null)
    }

    /// Best effort: without it the packages are resolved again.
    fn write_state(&self, state: &Value) {
        let text = serde_json::to_string_pretty(state).unwrap_or_default() + "\n";
        let _ = crate::os::write_atomically(&self.dir.join("state.json"), text.as_bytes());
    }

    /// The lists' file names, sizes and modification times.
    fn lists_identity(&self) -> Value {
        dir_identity(&self.lists, |name| name.contains('_'))
    }
}

/// Removes apt's binary cache when dropped ([`Apt::cache_guard`]).
#[derive(Debug)]
pub(crate) struct CacheGuard(PathBuf);

impl Drop for CacheGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A `.deb` in `debs` from an earlier build, if its SHA-256 is right.
pub(crate) fn cached(pkg: &Package, debs: &Path) -> Option<PathBuf> {
    let path = debs.join(pkg.file_name());
    let bytes = fs::read(&path).ok()?;
    (super::hex(&Sha256::digest(&bytes)) == pkg.sha256).then_some(path)
}

/// Unpacks a `.deb`'s files into `into` (`dpkg-deb -x`).
pub(crate) fn unpack(deb: &Path, into: &Path) -> Result<(), String> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(deb).arg(into).stdin(Stdio::null());
    run(&mut cmd).map(drop)
}

/// The programs of [`TOOLS`] that are not on `PATH`.
pub(crate) fn missing_tools() -> Vec<&'static str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    TOOLS
        .into_iter()
        .filter(|tool| {
            !std::env::split_paths(&path)
                .filter(|dir| !dir.as_os_str().is_empty())
                .any(|dir| dir.join(tool).is_file())
        })
        .collect()
}

/// Runs `cmd`; on failure the error carries the end of its output.
fn run(cmd: &mut Command) -> Result<Output, String> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .filter(|a| !a.contains("::") && a != "-o")
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        return Ok(out);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = text.lines().rev().take(12).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "`{shown}` failed ({}):\n{}",
        out.status,
        tail.join("\n")
    ))
}

/// The host's apt sources, by file name, size and modification time: when
/// they change, the private lists are fetched again.
fn sources_identity() -> Value {
    let mut all = dir_identity(Path::new("/etc/apt/sources.list.d"), |name| {
        name.ends_with(".list") || name.ends_with(".sources")
    });
    if let Ok(meta) = fs::metadata("/etc/apt/sources.list") {
        all["sources.list"] = file_stamp(&meta);
    }
    all
}

/// The files in `dir` whose names pass `keep`, as name -> [size, mtime].
fn dir_identity(dir: &Path, keep: impl Fn(&str) -> bool) -> Value {
    let mut files = serde_json::Map::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let (true, Ok(meta)) = (keep(&name), entry.metadata()) {
            files.insert(name, file_stamp(&meta));
        }
    }
    Value::Object(files)
}

fn file_stamp(meta: &fs::Metadata) -> Value {
    use std::os::unix::fs::MetadataExt;
    json!([meta.len(), meta.mtime(), meta.mtime_nsec()])
}

/// One deb822 stanza: field -> value.
type Stanza = std::collections::BTreeMap<String, String>;

fn stanza(stanzas: &[Stanza], name: &str) -> Result<Stanza, ResolveError> {
    stanzas
        .iter()
        .find(|s| s.get("Package").map(String::as_str) == Some(name))
        .cloned()
        .ok_or_else(|| ResolveError::Absent(format!("apt-cache show printed nothing for {name}")))
}

/// The package a stanza describes, checked to be for `target`.
fn package(s: &Stanza, target: &Target) -> Result<Package, String> {
    let name = s.get("Package").cloned().unwrap_or_default();
    let field = |f: &str| {
        s.get(f)
            .cloned()
            .ok_or_else(|| format!("apt-cache: {name} has no {f}"))
    };
    let arch = field("Architecture")?;
    if arch != target.deb_arch && arch != "all" {
        return Err(format!("{name} is for {arch}, not {}", target.deb_arch));
    }
    Ok(Package {
        version: field("Version")?,
        sha256: field("SHA256")?,
        size: s.get("Size").and_then(|v| v.parse().ok()).unwrap_or(0),
        arch,
        name,
    })
}

/// Parses deb822 stanzas (continuation lines are folded into the field).
fn parse_stanzas(text: &str) -> Vec<Stanza> {
    let mut stanzas = Vec::new();
    let mut current = Stanza::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::linux::target::X86_64;

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
    fn packages_are_read_checked_and_named_as_apt_names_them() {
        let text = "Package: busybox-static\nVersion: 1:1.35.0-4+b1\nArchitecture: amd64\n\
                    Size: 928188\nSHA256: abc\n";
        let p = package(&parse_stanzas(text)[0], &X86_64).unwrap();
        assert_eq!(p.file_name(), "busybox-static_1%3a1.35.0-4+b1_amd64.deb");
        assert_eq!((p.size, p.sha256.as_str()), (928188, "abc"));
        assert_eq!(Package::from_json(&p.to_json()), Some(p));
        let arm = text.replace("amd64", "arm64");
        let e = package(&parse_stanzas(&arm)[0], &X86_64).unwrap_err();
        assert!(e.contains("is for arm64"), "{e}");
        let e = package(
            &parse_stanzas("Package: x\nArchitecture: all\n")[0],
            &X86_64,
        );
        assert!(e.unwrap_err().contains("has no Version"));
    }

    #[test]
    fn resolutions_are_remembered_until_the_lists_change() {
        let dir = tempfile::tempdir().unwrap();
        let apt = Apt::new(&X86_64, dir.path());
        fs::create_dir_all(&apt.lists).unwrap();
        let list = apt
            .lists
            .join("deb.debian.org_debian_dists_x_main_binary-amd64_Packages");
        fs::write(&list, "one").unwrap();
        assert!(apt.has_lists());
        assert_eq!(apt.remembered(), None);
        let p = Package {
            name: "p".into(),
            version: "1".into(),
            arch: "amd64".into(),
            sha256: "00".into(),
            size: 1,
        };
        let state = json!({"sources": sources_identity(), "lists": apt.lists_identity(),
                           "packages": [p.to_json()]});
        apt.write_state(&state);
        assert!(apt.lists_current());
        assert_eq!(apt.remembered(), Some(vec![p]));
        fs::write(&list, "two, longer").unwrap();
        assert_eq!(apt.remembered(), None, "the lists changed");
    }
}
