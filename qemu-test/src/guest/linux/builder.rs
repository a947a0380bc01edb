//! Finding a Linux guest in the cache, or building it there on first use
//! ([`LinuxBuilder`]): resolve the inputs, take the build lock, download
//! what is missing, unpack, build, install, remove older builds.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::apt::{self, Apt, Package, ResolveError};
use super::build::{self, Material};
use super::kernel;
use super::modules;
use super::own_files;
use super::progress::{size, Progress};
use super::source::{self, LinuxSource};
use super::store::{BuildLock, Store};
use super::target::Target;
use super::{LinuxFiles, LinuxGuest, Problem, FORMAT};
use crate::error::GuestError;

/// Finds a Linux guest in the cache, or builds it there: what
/// [`LinuxGuest::files`] does with the defaults, and what `cargo xtask
/// guests` calls. The cache is [`cache_dir`](crate::guest::cache_dir) and
/// the source [`LinuxSource`] as the environment names it, unless set here.
///
/// A build is filed under a key made of its inputs (the architecture, the
/// build format, the guest's own files, the modules, and the packages'
/// versions and SHA-256, or the identity of the files given), so a build
/// is found again as long as its inputs are the same and made anew when
/// one changes. Processes that need the same build at once make it once:
/// the others wait for it.
///
/// ```no_run
/// use qemu_test::guest::LINUX_X86_64;
///
/// let linux = LINUX_X86_64.linux().expect("a Linux guest");
/// let built = linux.builder().progress(false).build()?;
/// println!("{:?}: {}", built.outcome, built.files.kernel.display());
/// # Ok::<(), qemu_test::GuestError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LinuxBuilder {
    guest: LinuxGuest,
    source: Option<LinuxSource>,
    cache_dir: Option<PathBuf>,
    progress: bool,
    update: bool,
    verify: bool,
}

/// What [`LinuxBuilder::build`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildOutcome {
    /// It built the guest.
    Built,
    /// It found a build of the same inputs in the cache.
    Found,
    /// The package lists could not be had (offline, or no apt), and it kept
    /// an earlier build made from the same own files.
    Kept,
}

/// A guest [`LinuxBuilder::build`] found or built.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LinuxBuild {
    /// Its files.
    pub files: LinuxFiles,
    /// Whether it was built now.
    pub outcome: BuildOutcome,
}

impl LinuxBuilder {
    pub(crate) fn new(guest: LinuxGuest) -> LinuxBuilder {
        LinuxBuilder {
            guest,
            source: None,
            cache_dir: None,
            progress: true,
            update: false,
            verify: false,
        }
    }

    /// Builds from `source` instead of what the environment names.
    pub fn source(mut self, source: LinuxSource) -> LinuxBuilder {
        self.source = Some(source);
        self
    }

    /// Uses the cache in `dir` instead of [`cache_dir`](crate::guest::cache_dir).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> LinuxBuilder {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Whether a build says what it does on stderr (default: yes).
    pub fn progress(mut self, on: bool) -> LinuxBuilder {
        self.progress = on;
        self
    }

    /// Fetches the package lists again before resolving (they are
    /// otherwise fetched only when missing, when the host's apt sources
    /// changed, or when a package they name is gone from the archive).
    pub fn update_package_lists(mut self, on: bool) -> LinuxBuilder {
        self.update = on;
        self
    }

    /// Whether a build found in the cache must still have the SHA-256 its
    /// manifest records (default: no, only the sizes; checking reads tens
    /// of MB). A damaged build is made again.
    pub fn verify(mut self, on: bool) -> LinuxBuilder {
        self.verify = on;
        self
    }

    /// Finds the guest in the cache, or builds it. The build is held in
    /// use (a shared lock) until the process exits, so no other process
    /// removes it meanwhile.
    ///
    /// [`GuestError::Unavailable`] when this host cannot build it (no apt,
    /// or an archive without the packages) and no earlier build will do;
    /// [`GuestError::Config`] when the files given are wrong;
    /// [`GuestError::Build`] when the build fails.
    pub fn build(&self) -> Result<LinuxBuild, GuestError> {
        let name = self.guest.name;
        self.run().map_err(|problem| problem.into_error(name))
    }

    fn run(&self) -> Result<LinuxBuild, Problem> {
        let source = match &self.source {
            Some(source) => source.clone(),
            None => LinuxSource::from_env(self.guest.target)?,
        };
        let root = match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => crate::guest::cache_dir()
                .map_err(|e| Problem::Build(format!("cannot create the cache dir: {e}")))?,
        };
        let store = Store::new(&root, self.guest.name);
        store.create()?;
        let run = Run {
            builder: self,
            store,
            progress: Progress::new(self.guest.name, self.progress),
            own: own_files::digest(self.guest.target),
        };
        match source {
            LinuxSource::Debian => run.debian(),
            LinuxSource::Files {
                kernel,
                modules,
                busybox,
            } => run.files(&kernel, modules.as_deref(), &busybox),
        }
    }
}

/// What [`Run::fetch_again`] came to.
enum Fetched {
    /// The packages resolved anew, their key, and the downloaded files.
    Debs((Vec<Package>, String), Vec<PathBuf>),
    /// A build of the packages resolved anew, already there.
    Found(LinuxBuild),
}

/// One build on its way.
struct Run<'a> {
    builder: &'a LinuxBuilder,
    store: Store,
    progress: Progress,
    /// The digest of the guest's own files (`sources_sha256`).
    own: String,
}

impl Run<'_> {
    fn target(&self) -> &'static Target {
        self.builder.guest.target
    }

    fn found(&self, key: &str, outcome: BuildOutcome) -> Option<LinuxBuild> {
        let files = self
            .store
            .find_verified(key, &self.builder.guest, self.builder.verify)?;
        Some(LinuxBuild { files, outcome })
    }

    /// From Debian's packages.
    fn debian(&self) -> Result<LinuxBuild, Problem> {
        let apt = Apt::new(self.target(), &self.store.apt_dir());
        if !self.builder.update {
            let remembered = apt.remembered();
            let key = remembered.map(|packages| debian_key(self.target(), &self.own, &packages));
            if let Some(found) = key.and_then(|key| self.found(&key, BuildOutcome::Found)) {
                return Ok(found);
            }
        }
        let missing = apt::missing_tools();
        if !missing.is_empty() {
            let why = format!(
                "building it from Debian's packages needs {}, which this host does not have; {}",
                missing.join(", "),
                source::how_to_point_at_files(self.target())
            );
            return self.kept_or(Problem::Unavailable(why));
        }
        let lock = self.store.build_lock(&self.progress)?;
        let _apt_cache = apt.cache_guard();
        let mut packages = match self.resolve(&apt) {
            Ok(packages) => packages,
            Err(problem) => return self.kept_or(problem),
        };
        let mut key = debian_key(self.target(), &self.own, &packages);
        if let Some(found) = self.found(&key, BuildOutcome::Found) {
            return Ok(found);
        }
        self.announce(&key);
        let debs = match self.fetch(&apt, &packages) {
            Ok(debs) => debs,
            Err(e) => match self.fetch_again(&apt, e)? {
                Fetched::Debs(again, debs) => {
                    (packages, key) = again;
                    debs
                }
                Fetched::Found(found) => return Ok(found),
            },
        };
        let work = self.store.work_dir(&lock)?;
        let (material, release) = self.unpack(&packages, &debs, work.path())?;
        let packages_json: Vec<Value> = packages.iter().map(Package::to_json).collect();
        let about = json!({"source": "debian", "packages": packages_json});
        let files = self.finish(&key, &material, &release, about, &lock, work.path())?;
        self.store.remove_other_debs(&packages, &lock);
        Ok(LinuxBuild {
            files,
            outcome: BuildOutcome::Built,
        })
    }

    /// After a failed download: lists older than the archive name versions
    /// it no longer has, so they are fetched again, the packages resolved
    /// once more (which may name a build that is there) and downloaded.
    fn fetch_again(&self, apt: &Apt, first: String) -> Result<Fetched, Problem> {
        self.progress
            .say(format!("{first}\nfetching the package lists again"));
        let warnings = apt.update().map_err(|again| {
            format!("{first}\nand fetching the package lists again failed: {again}")
        })?;
        if let Some(warnings) = &warnings {
            self.progress.say(warnings);
        }
        let packages = self.resolve_now(apt)?;
        let key = debian_key(self.target(), &self.own, &packages);
        if let Some(found) = self.found(&key, BuildOutcome::Found) {
            return Ok(Fetched::Found(found));
        }
        let debs = self.fetch(apt, &packages).map_err(|again| {
            let warnings = warnings.map_or(String::new(), |w| format!(":\n{w}"));
            format!("{again}\n(and so after fetching the package lists again{warnings})")
        })?;
        Ok(Fetched::Debs((packages, key), debs))
    }

    /// An earlier build from the same own files, when the packages cannot
    /// be resolved (offline, no apt); else `problem`.
    fn kept_or(&self, problem: Problem) -> Result<LinuxBuild, Problem> {
        match self.store.find_same_sources(&self.own, &self.builder.guest) {
            Some(files) => {
                self.progress.say(format!(
                    "{problem}; using the earlier build in {} (same own files)",
                    files.dir.display()
                ));
                Ok(LinuxBuild {
                    files,
                    outcome: BuildOutcome::Kept,
                })
            }
            None => Err(problem),
        }
    }

    /// Fetches the private package lists if needed, then resolves.
    fn resolve(&self, apt: &Apt) -> Result<Vec<Package>, Problem> {
        if self.builder.update || !apt.lists_current() {
            self.progress.say(format!(
                "fetching the {} package lists from the host's apt sources into {} \
                 (private: the host's own lists are not touched)",
                self.target().deb_arch,
                self.store.apt_dir().display()
            ));
            if let Some(warnings) = apt.update()? {
                self.progress.say(warnings);
            }
        }
        self.resolve_now(apt)
    }

    fn resolve_now(&self, apt: &Apt) -> Result<Vec<Package>, Problem> {
        self.progress.say("resolving packages");
        apt.resolve(self.target()).map_err(|e| match e {
            ResolveError::Absent(why) => Problem::Unavailable(format!(
                "the package archive in the host's apt sources has no {} or {} (Debian has them; \
                 Ubuntu has no linux-image-cloud-*): {why}; {}",
                self.target().kernel_meta,
                self.target().busybox,
                source::how_to_point_at_files(self.target())
            )),
            ResolveError::Failed(why) => Problem::Build(why),
        })
    }

    fn announce(&self, key: &str) {
        self.progress.say(format!(
            "building it (once for these inputs) into {}",
            self.store.dir().join(key).display()
        ));
    }

    /// Each package from the cache's `debs/`, or downloaded there.
    fn fetch(&self, apt: &Apt, packages: &[Package]) -> Result<Vec<PathBuf>, String> {
        let debs = self.store.debs_dir();
        std::fs::create_dir_all(&debs)
            .map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
        packages
            .iter()
            .map(|p| {
                if let Some(path) = apt::cached(p, &debs) {
                    self.progress
                        .say(format!("using the downloaded {} {}", p.name, p.version));
                    return Ok(path);
                }
                self.progress.say(format!(
                    "downloading {} {} ({})",
                    p.name,
                    p.version,
                    size(p.size)
                ));
                apt.download(p, &debs)
            })
            .collect()
    }

    /// Unpacks the kernel and busybox packages and takes what the guest
    /// needs from them; also returns the kernel release.
    fn unpack(
        &self,
        packages: &[Package],
        debs: &[PathBuf],
        work: &Path,
    ) -> Result<(Material, String), Problem> {
        let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        self.progress.say(format!("unpacking {}", names.join(", ")));
        let mut trees = Vec::new();
        for (pkg, deb) in packages.iter().zip(debs) {
            let tree = work.join(&pkg.name);
            apt::unpack(deb, &tree)?;
            trees.push(tree);
        }
        let release = packages[0]
            .name
            .strip_prefix("linux-image-")
            .ok_or_else(|| format!("unexpected kernel package name {}", packages[0].name))?
            .to_string();
        let vmlinuz = trees[0].join("boot").join(format!("vmlinuz-{release}"));
        let kernel = kernel::prepare(self.target(), read(&vmlinuz)?)
            .map_err(|e| format!("{}: {e}", vmlinuz.display()))?;
        let busybox = read(&trees[1].join("bin/busybox"))?;
        let modules = modules::resolve(
            &trees[0].join("lib/modules").join(&release),
            self.target().modules,
        )?;
        let material = Material {
            kernel,
            busybox,
            modules,
            agent: self.target().agent,
        };
        Ok((material, release))
    }

    /// From files the user names.
    fn files(
        &self,
        kernel: &Path,
        modules: Option<&Path>,
        busybox: &Path,
    ) -> Result<LinuxBuild, Problem> {
        let key = files_key(self.target(), &self.own, kernel, modules, busybox);
        if let Some(found) = self.found(&key, BuildOutcome::Found) {
            return Ok(found);
        }
        let lock = self.store.build_lock(&self.progress)?;
        if let Some(found) = self.found(&key, BuildOutcome::Found) {
            return Ok(found);
        }
        self.announce(&key);
        let work = self.store.work_dir(&lock)?;
        let (material, release) = self.user_material(kernel, modules, busybox)?;
        let about = json!({
            "source": "files",
            "inputs": {"kernel": kernel, "modules": modules, "busybox": busybox},
        });
        let files = self.finish(&key, &material, &release, about, &lock, work.path())?;
        Ok(LinuxBuild {
            files,
            outcome: BuildOutcome::Built,
        })
    }

    /// The user's kernel, modules and busybox, checked.
    fn user_material(
        &self,
        kernel: &Path,
        modules: Option<&Path>,
        busybox: &Path,
    ) -> Result<(Material, String), Problem> {
        let config = |what: &str, path: &Path| {
            let what = format!("the {what} {}", path.display());
            move |e: String| Problem::Config(format!("{what}: {e}"))
        };
        let file = source::read_user_file("kernel", kernel)?;
        let release = kernel::release(&file).unwrap_or_else(|| "unknown".into());
        let kernel_image =
            kernel::prepare(self.target(), file).map_err(config("kernel", kernel))?;
        let busybox_bytes = source::read_user_file("busybox", busybox)?;
        kernel::check_busybox(self.target(), &busybox_bytes).map_err(config("busybox", busybox))?;
        let modules = match modules {
            Some(dir) => {
                let found = modules::resolve(dir, self.target().modules)
                    .map_err(config("modules directory", dir))?;
                check_vermagic(&found, &release).map_err(config("modules directory", dir))?;
                found
            }
            None => {
                self.progress.say(format!(
                    "no modules directory given: the guest loads no modules (the kernel must \
                     build {} in)",
                    self.target().modules.join(", ")
                ));
                Vec::new()
            }
        };
        let material = Material {
            kernel: kernel_image,
            busybox: busybox_bytes,
            modules,
            agent: self.target().agent,
        };
        Ok((material, release))
    }

    /// Builds the initramfs, writes the build, moves it into place under
    /// `key` and removes the older builds.
    fn finish(
        &self,
        key: &str,
        material: &Material,
        release: &str,
        mut about: Value,
        lock: &BuildLock,
        work: &Path,
    ) -> Result<LinuxFiles, Problem> {
        let kernel = &material.kernel;
        if let Some(note) = &kernel.note {
            self.progress.say(format!(
                "note: booting the compressed bzImage (about 0.7 s slower on TCG): {note}"
            ));
        }
        self.progress.say(format!(
            "kernel {release}: {}, {}",
            kernel.format,
            size(kernel.bytes.len() as u64)
        ));
        let names: Vec<&str> = material.modules.iter().map(|m| m.name.as_str()).collect();
        let initrd = build::initramfs(material)?;
        self.progress.say(format!(
            "initramfs: busybox, modules [{}], the guest's own files: {}",
            names.join(", "),
            size(initrd.len() as u64)
        ));
        about["format"] = FORMAT.into();
        about["arch"] = self.target().arch.into();
        about["key"] = key.into();
        about["kernel_release"] = release.into();
        about["sources_sha256"] = self.own.as_str().into();
        let out = work.join("out");
        build::write(&out, material, &initrd, about)?;
        self.store.install(key, &out, lock)?;
        let in_use = self.store.remove_others(key, lock);
        if !in_use.is_empty() {
            self.progress.say(format!(
                "kept the older builds {} (in use; removed by a later build or prune)",
                in_use.join(", ")
            ));
        }
        let files = self
            .store
            .find(key, &self.builder.guest)
            .ok_or_else(|| format!("the new build {key} cannot be found"))?;
        self.progress.say(format!(
            "done in {}: {}",
            self.progress.elapsed(),
            files.dir.display()
        ));
        Ok(files)
    }
}

/// The key the guest's build would have now, if that is known without
/// running apt: for Debian's packages, what the package lists resolved to
/// when last asked; for the user's files, their identities.
pub(crate) fn current_key(guest: &LinuxGuest, root: &Path) -> Option<String> {
    let target = guest.target;
    let own = own_files::digest(target);
    match LinuxSource::from_env(target).ok()? {
        LinuxSource::Debian => {
            let store = Store::new(root, guest.name);
            let packages = Apt::new(target, &store.apt_dir()).remembered()?;
            Some(debian_key(target, &own, &packages))
        }
        LinuxSource::Files {
            kernel,
            modules,
            busybox,
        } => Some(files_key(
            target,
            &own,
            &kernel,
            modules.as_deref(),
            &busybox,
        )),
    }
}

/// Every module is built for `release` (when it is known).
fn check_vermagic(found: &[modules::Module], release: &str) -> Result<(), String> {
    for module in found {
        match modules::vermagic(&module.bytes) {
            Some(built_for) if release != "unknown" && built_for != release => {
                return Err(format!(
                    "{} is built for kernel {built_for}, but the kernel is {release}",
                    module.name
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The key of a build from Debian's packages.
fn debian_key(target: &Target, own: &str, packages: &[Package]) -> String {
    let packages: Vec<Value> = packages
        .iter()
        .map(|p| json!([p.name, p.version, p.sha256]))
        .collect();
    key_of(&json!({
        "format": FORMAT, "arch": target.arch, "sources": own,
        "packages": packages,
    }))
}

/// The key of a build from the user's files: their identities.
fn files_key(
    target: &Target,
    own: &str,
    kernel: &Path,
    modules: Option<&Path>,
    busybox: &Path,
) -> String {
    let modules =
        modules.map(|dir| json!([super::stamp(dir), super::stamp(&dir.join("modules.dep"))]));
    key_of(&json!({
        "format": FORMAT, "arch": target.arch, "sources": own,
        "kernel": super::stamp(kernel), "busybox": super::stamp(busybox),
        "modules": modules,
    }))
}

/// 16 hex digits of the SHA-256 of the inputs.
fn key_of(inputs: &Value) -> String {
    build::sha256(inputs.to_string().as_bytes())[..16].to_string()
}
