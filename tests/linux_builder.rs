//! How the Linux guest is built, as a user meets it: on first use into an
//! empty cache dir (test processes started together build it once, and
//! all boot it), by an unprivileged user through private package lists,
//! from the user's own kernel, modules and busybox, from an earlier build
//! when apt is not there or offline, a failed download failing the test
//! with its cause, a host without apt skipping it with what to set, and
//! the caches listed and pruned. Drives `linux-fixture`, each run with a cache dir of
//! its own.
//!
//! Nothing is downloaded twice: the packages (and, where a test is not
//! about fetching them, the package lists) are copied from the user's own
//! cache, which the first of these tests fills once per machine.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use qemu_test::cache::{CacheKind, Caches, Prune};
use qemu_test::guest::{self, LinuxFiles, LinuxGuest, LinuxSource};
use qemu_test::snapshot::SnapshotKey;
use qemu_test::GuestError;

const FIXTURE: &str = env!("CARGO_BIN_EXE_linux-fixture");
const TEST: &str = "boots_the_guest";
/// The unprivileged user the rootless build runs as (made if missing).
const USER: &str = "qemu-test-rootless";

fn require() -> bool {
    std::env::var("QEMU_TEST_REQUIRE").is_ok_and(|v| v == "1")
}

/// Skips the calling test with `why`, or fails it under
/// `QEMU_TEST_REQUIRE=1`.
fn skip(why: &str) {
    assert!(!require(), "{why} (QEMU_TEST_REQUIRE=1)");
    eprintln!("skipped: {why}");
}

fn linux() -> &'static LinuxGuest {
    guest::LINUX_X86_64.linux().expect("a Linux guest")
}

/// The guest in the user's own cache (built from Debian's packages once
/// per machine): what the fresh caches are seeded from. `None` (the test is
/// skipped) on a host that cannot build it.
fn seed() -> Option<&'static LinuxFiles> {
    static SEED: OnceLock<Option<LinuxFiles>> = OnceLock::new();
    SEED.get_or_init(|| {
        let built = linux().builder().source(LinuxSource::Debian).build();
        match built {
            Ok(built) => Some(built.files),
            Err(e @ GuestError::Unavailable { .. }) => {
                skip(&e.to_string());
                None
            }
            Err(e) => panic!("{e}"),
        }
    })
    .as_ref()
}

/// The seed's store: `<cache>/linux-x86_64`.
fn store_of(files: &LinuxFiles) -> &Path {
    files
        .dir
        .parent()
        .expect("a build lives in its guest's dir")
}

/// Links (or copies, keeping the modification time) the files of `from`
/// that `keep` picks into `to`. `copy` copies always (for files that will
/// change owner).
fn seed_files(from: &Path, to: &Path, copy: bool, keep: impl Fn(&str) -> bool) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().unwrap().is_file() || !keep(&name) {
            continue;
        }
        let target = to.join(&name);
        if copy || fs::hard_link(entry.path(), &target).is_err() {
            fs::copy(entry.path(), &target).unwrap();
            let modified = entry.metadata().unwrap().modified().unwrap();
            let file = fs::File::options().write(true).open(&target).unwrap();
            file.set_modified(modified).unwrap();
        }
    }
}

/// A cache dir of its own holding the seed's packages and, with `lists`,
/// its package lists (and what they resolve to), so nothing is fetched.
fn fresh_cache(seed: &LinuxFiles, lists: bool, copy: bool) -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let (from, to) = (store_of(seed), cache.path().join("linux-x86_64"));
    seed_files(&from.join("debs"), &to.join("debs"), copy, |n| {
        n.ends_with(".deb")
    });
    if lists {
        seed_files(&from.join("apt/lists"), &to.join("apt/lists"), copy, |_| {
            true
        });
        seed_files(&from.join("apt"), &to.join("apt"), copy, |n| {
            n == "state.json"
        });
    }
    cache
}

/// The fixture's test that boots the guest, with `cache` as its cache
/// dir, none of the caller's guest settings, and its artifacts in the
/// cache dir.
fn fixture(cache: &Path) -> Command {
    let mut cmd = Command::new(FIXTURE);
    cmd.args(["--exact", TEST]);
    settings(&mut cmd, cache);
    cmd
}

/// The fixture's test that only finds (or builds) the guest: no VM.
fn finder(cache: &Path) -> Command {
    let mut cmd = Command::new(FIXTURE);
    cmd.args(["--exact", "finds_the_guest"]);
    settings(&mut cmd, cache);
    cmd
}

fn settings(cmd: &mut Command, cache: &Path) {
    cmd.env("QEMU_TEST_CACHE_DIR", cache)
        .env("QEMU_TEST_ARTIFACTS", cache.join("artifacts"))
        .env_remove("QEMU_TEST_GUESTS_DIR")
        .stdin(Stdio::null());
    for var in [
        "QEMU_TEST_LINUX_KERNEL",
        "QEMU_TEST_LINUX_MODULES",
        "QEMU_TEST_BUSYBOX",
    ] {
        cmd.env_remove(var).env_remove(format!("{var}_X86_64"));
    }
}

/// What a fixture run printed, and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(cmd: &mut Command) -> Run {
        Run::from(cmd.output().expect("the fixture runs"))
    }

    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The test ran and passed (not skipped).
    fn booted(&self) -> bool {
        self.code == Some(0) && self.stdout.contains("fixture: booted ")
    }

    fn built(&self) -> bool {
        self.stderr.contains("qemu-test: linux-x86_64: building it")
    }

    fn all(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The builds in a cache dir.
fn builds(cache: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(cache.join("linux-x86_64"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn manifest(build: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(build.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn processes_started_together_on_an_empty_cache_build_it_once_and_all_boot_it() {
    let Some(seed) = seed() else { return };
    let cache = fresh_cache(seed, true, false);
    let children: Vec<_> = (0..3)
        .map(|_| {
            fixture(cache.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|child| Run::from(child.wait_with_output().unwrap()))
        .collect();
    for run in &runs {
        assert!(run.booted(), "{}", run.all());
    }
    let builders: Vec<&Run> = runs.iter().filter(|r| r.built()).collect();
    assert_eq!(builders.len(), 1, "one process builds it");
    let log = &builders[0].stderr;
    for phase in [
        "resolving packages",
        "using the downloaded linux-image-",
        "using the downloaded busybox-static",
        "unpacking linux-image-",
        ": vmlinux (PVH), ",
        "initramfs: busybox, modules [virtio_ring",
        "done in ",
    ] {
        assert!(log.contains(phase), "no {phase:?} in:\n{log}");
    }
    let build = builds(cache.path());
    assert_eq!(build.len(), 1, "{build:?}");
    assert!(
        log.contains(&format!("into {}", build[0].display())),
        "the progress says where it goes:\n{log}"
    );
    assert!(
        !log.contains("downloading "),
        "the packages were there:\n{log}"
    );
    for run in &runs {
        assert!(run.stdout.contains(&build[0].display().to_string()));
    }
    // The same build as the user's: same inputs, same key, same bytes.
    assert_eq!(build[0].file_name(), seed.dir.file_name());
    assert_eq!(manifest(&build[0])["files"], seed.manifest["files"]);
    // A later process finds it: no build, not a line.
    let again = Run::of(&mut finder(cache.path()));
    let found = format!("fixture: found {}", build[0].display());
    assert!(again.stdout.contains(&found), "{}", again.all());
    assert!(
        !again.stderr.contains("qemu-test: linux-x86_64"),
        "{}",
        again.all()
    );
}

/// The unprivileged user's ids, the user made if missing; `None` (the
/// test is skipped) where users cannot be made.
fn unprivileged_user() -> Option<(u32, u32)> {
    let ids = || {
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, USER]).output().ok()?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        };
        Some((id("-u")?, id("-g")?))
    };
    if let Some(ids) = ids() {
        return Some(ids);
    }
    let made = Command::new("useradd")
        .args(["--create-home", USER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    // Another test process may have made it meanwhile.
    match (made, ids()) {
        (_, Some(ids)) => Some(ids),
        (Ok(status), None) => {
            skip(&format!("`useradd {USER}` failed ({status})"));
            None
        }
        (Err(e), None) => {
            skip(&format!(
                "cannot run useradd to make an unprivileged user: {e}"
            ));
            None
        }
    }
}

/// Gives `path` and everything under it to `uid`:`gid`.
fn chown_all(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap().flatten() {
            chown_all(&entry.path(), uid, gid);
        }
    }
}

#[test]
fn an_unprivileged_user_builds_it_through_private_package_lists_and_boots_it() {
    let Some(seed) = seed() else { return };
    // The packages are copied; the lists are fetched by the build.
    let cache = fresh_cache(seed, false, true);
    let run = if rustix::process::geteuid().is_root() {
        let Some((uid, gid)) = unprivileged_user() else {
            return;
        };
        // All it uses is its own: a copy of the fixture, the cache dir.
        let program = cache.path().join("linux-fixture");
        fs::copy(FIXTURE, &program).unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        chown_all(cache.path(), uid, gid);
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", USER, "--"])
            .arg(&program)
            .args(["--exact", TEST])
            .current_dir(cache.path());
        settings(&mut cmd, cache.path());
        Run::of(&mut cmd)
    } else {
        // The suite itself runs unprivileged.
        Run::of(&mut fixture(cache.path()))
    };
    assert!(run.booted(), "{}", run.all());
    for phase in [
        "fetching the amd64 package lists from the host's apt sources into",
        "resolving packages",
        "building it",
        "done in ",
    ] {
        assert!(
            run.stderr.contains(phase),
            "no {phase:?} in:\n{}",
            run.all()
        );
    }
    let lists = cache.path().join("linux-x86_64/apt/lists");
    assert!(
        fs::read_dir(&lists).unwrap().count() > 2,
        "private lists in {lists:?}"
    );
}

/// `dpkg-deb -x` of the seed's package whose file name starts `prefix`;
/// the package's file name and where it was unpacked.
fn unpack(seed: &LinuxFiles, prefix: &str, into: &Path) -> (String, PathBuf) {
    let debs = store_of(seed).join("debs");
    let deb = fs::read_dir(&debs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(prefix) && n.ends_with(".deb"))
        .unwrap_or_else(|| panic!("no {prefix}*.deb in {debs:?}"));
    let dir = into.join(prefix);
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(debs.join(&deb))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    (deb, dir)
}

#[test]
fn the_users_own_kernel_modules_and_busybox_make_the_guest() {
    let Some(seed) = seed() else { return };
    // What a user of a host without Debian's packages points it at; here
    // unpacked from them.
    let material = tempfile::tempdir().unwrap();
    let (deb, kernel_dir) = unpack(seed, "linux-image-", material.path());
    let release = deb["linux-image-".len()..]
        .split('_')
        .next()
        .unwrap()
        .to_string();
    let (_, busybox_dir) = unpack(seed, "busybox-static_", material.path());
    let kernel = kernel_dir.join(format!("boot/vmlinuz-{release}"));
    let modules = kernel_dir.join(format!("lib/modules/{release}"));
    let busybox = busybox_dir.join("bin/busybox");

    let cache = tempfile::tempdir().unwrap();
    let run = Run::of(
        fixture(cache.path())
            .env("QEMU_TEST_LINUX_KERNEL", &kernel)
            .env("QEMU_TEST_LINUX_MODULES", &modules)
            .env("QEMU_TEST_BUSYBOX", &busybox),
    );
    assert!(run.booted(), "{}", run.all());
    assert!(run.built(), "{}", run.all());
    for part in [
        &format!("kernel {release}: vmlinux (PVH)"),
        "initramfs: busybox, modules [virtio_ring",
    ] {
        assert!(run.stderr.contains(part), "no {part:?} in:\n{}", run.all());
    }
    assert!(
        !run.stderr.contains("package lists"),
        "no apt:\n{}",
        run.all()
    );
    let build = builds(cache.path());
    let built = manifest(&build[0]);
    assert_eq!(built["source"], "files");
    assert_eq!(built["inputs"]["kernel"], kernel.to_str().unwrap());
    assert_eq!(built["kernel_release"], release.as_str());
    // The same initramfs as from the packages themselves.
    assert_eq!(
        built["files"]["initrd.gz"],
        seed.manifest["files"]["initrd.gz"]
    );

    // Mistakes fail the test, saying what to fix; nothing is skipped.
    let missing = Path::new("/nonexistent/vmlinuz");
    let cases: [(&[(&str, &Path)], &str); 4] = [
        (
            &[("QEMU_TEST_LINUX_KERNEL", &kernel)],
            "set QEMU_TEST_LINUX_KERNEL and QEMU_TEST_BUSYBOX",
        ),
        (
            &[
                ("QEMU_TEST_LINUX_KERNEL", missing),
                ("QEMU_TEST_BUSYBOX", &busybox),
            ],
            "/nonexistent/vmlinuz does not exist",
        ),
        (
            &[
                ("QEMU_TEST_LINUX_KERNEL", &busybox),
                ("QEMU_TEST_BUSYBOX", &busybox),
            ],
            "it is not a Linux kernel",
        ),
        (
            &[
                ("QEMU_TEST_LINUX_KERNEL", &kernel),
                ("QEMU_TEST_BUSYBOX", Path::new(FIXTURE)),
            ],
            "it is dynamically linked",
        ),
    ];
    for (vars, wanted) in cases {
        let cache = tempfile::tempdir().unwrap();
        let mut cmd = fixture(cache.path());
        cmd.envs(vars.iter().copied());
        let run = Run::of(&mut cmd);
        assert_eq!(run.code, Some(101), "{vars:?}: {}", run.all());
        assert!(
            run.all().contains(wanted),
            "{vars:?}: no {wanted:?} in {}",
            run.all()
        );
        assert!(!run.stderr.contains("note: skipping"), "{}", run.all());
    }
}

/// A directory for `PATH` holding only QEMU: a host without apt.
fn path_without_apt(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let qemu = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
        .expect("qemu-system-x86_64 on PATH");
    std::os::unix::fs::symlink(qemu, bin.join("qemu-system-x86_64")).unwrap();
    bin
}

#[test]
fn without_apt_an_earlier_build_is_used_and_else_the_test_is_skipped_saying_what_to_set() {
    let Some(seed) = seed() else { return };
    let host = tempfile::tempdir().unwrap();
    let path = path_without_apt(host.path());
    // Nothing built: skipped when listed, with what to set instead.
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = fixture(empty.path());
    cmd.env("PATH", &path).env_remove("QEMU_TEST_REQUIRE");
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, Some(0), "{}", run.all());
    for part in [
        "note: skipping boots_the_guest: the Linux guest linux-x86_64 cannot be had on this host",
        "needs apt-get, apt-cache, dpkg-deb",
        "QEMU_TEST_LINUX_KERNEL=",
        "QEMU_TEST_BUSYBOX=",
        "QEMU_TEST_LINUX_MODULES=",
    ] {
        assert!(run.stderr.contains(part), "no {part:?} in:\n{}", run.all());
    }
    let run = Run::of(cmd.env("QEMU_TEST_REQUIRE", "1"));
    assert_eq!(run.code, Some(101), "{}", run.all());
    assert!(
        run.stdout.contains("QEMU_TEST_LINUX_KERNEL="),
        "{}",
        run.all()
    );

    // An earlier build of the same own files (a copied cache) is used.
    let cache = tempfile::tempdir().unwrap();
    let key = seed.dir.file_name().unwrap();
    let earlier = cache.path().join("linux-x86_64").join(key);
    seed_files(&seed.dir, &earlier, false, |_| true);
    let run = Run::of(finder(cache.path()).env("PATH", &path));
    let found = format!("fixture: found {}", earlier.display());
    assert!(run.stdout.contains(&found), "{}", run.all());
    assert!(
        run.stderr.contains("using the earlier build in"),
        "{}",
        run.all()
    );
}

/// Whether the host's apt configuration names a proxy (which would win
/// over the one a test sets with `APT_CONFIG`, read first).
fn apt_has_a_proxy() -> bool {
    let out = Command::new("apt-config").arg("dump").output();
    out.is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .to_ascii_lowercase()
            .contains("::proxy")
    })
}

#[test]
fn a_failed_download_fails_the_test_and_offline_an_earlier_build_is_used() {
    let Some(seed) = seed() else { return };
    if apt_has_a_proxy() {
        eprintln!(
            "skipped: the host's apt configuration sets a proxy, which would override the test's"
        );
        return;
    }
    // The lists are there, the packages are not, and the archive cannot be
    // reached: apt's proxy is a closed port (and it does not retry).
    let cache = fresh_cache(seed, true, false);
    fs::remove_dir_all(cache.path().join("linux-x86_64/debs")).unwrap();
    let config = cache.path().join("apt.conf");
    fs::write(
        &config,
        "Acquire::http::Proxy \"http://127.0.0.1:9\";\n\
         Acquire::https::Proxy \"http://127.0.0.1:9\";\n\
         Acquire::Retries \"0\";\n",
    )
    .unwrap();
    let run = Run::of(fixture(cache.path()).env("APT_CONFIG", &config));
    assert_eq!(run.code, Some(101), "{}", run.all());
    for part in [
        "building the Linux guest linux-x86_64 failed:",
        "apt-get -q download linux-image-",
        "after fetching the package lists again",
    ] {
        assert!(run.stdout.contains(part), "no {part:?} in:\n{}", run.all());
    }
    assert!(!run.stderr.contains("note: skipping"), "{}", run.all());
    let debs = cache.path().join("linux-x86_64/debs");
    let left: Vec<_> = fs::read_dir(&debs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing half-downloaded is left: {left:?}");

    // Offline with no package lists at all: an earlier build of the same
    // own files (a copied cache) is used.
    let cache = tempfile::tempdir().unwrap();
    let earlier = cache
        .path()
        .join("linux-x86_64")
        .join(seed.dir.file_name().unwrap());
    seed_files(&seed.dir, &earlier, false, |_| true);
    let run = Run::of(finder(cache.path()).env("APT_CONFIG", &config));
    let found = format!("fixture: found {}", earlier.display());
    assert!(run.stdout.contains(&found), "{}", run.all());
    for part in [
        "fetching the amd64 package lists",
        "using the earlier build in",
    ] {
        assert!(run.stderr.contains(part), "no {part:?} in:\n{}", run.all());
    }
}

#[test]
fn caches_are_listed_with_their_sizes_and_pruned() {
    let Some(seed) = seed() else { return };
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("linux-x86_64");
    // The current build (linked from the user's) and an older one, which
    // a running process holds.
    let current = store.join(seed.dir.file_name().unwrap());
    seed_files(&seed.dir, &current, false, |_| true);
    let old = store.join("00000000000000aa");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("manifest.json"), r#"{"sources_sha256": "older"}"#).unwrap();
    let old_held = store.join("00000000000000bb");
    fs::create_dir_all(&old_held).unwrap();
    let lock = fs::File::create(store.join("00000000000000bb.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared).unwrap();
    // Its packages, and one no build needs.
    seed_files(
        &store_of(seed).join("debs"),
        &store.join("debs"),
        false,
        |n| n.ends_with(".deb"),
    );
    fs::write(store.join("debs/linux-image-0.1_1_amd64.deb"), b"old").unwrap();
    // An embedded guest's image of another version.
    fs::create_dir_all(root.path().join("guests")).unwrap();
    fs::write(
        root.path()
            .join("guests/echo-shell-aarch64-0000000000000000.bin"),
        b"old",
    )
    .unwrap();
    // Two snapshots: one whose kernel is still there, one whose is gone
    // (an older build's, pruned).
    let snapshots = root.path().join("snapshots");
    let kernel = current.join("kernel");
    let gone = root.path().join("old-kernel");
    fs::write(&gone, b"old kernel").unwrap();
    for (name, file) in [("fresh", kernel.as_path()), ("gone", gone.as_path())] {
        let key = SnapshotKey::new(name).unwrap().with_file("kernel", file);
        let dir = snapshots.join(key.id());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("state"), b"saved").unwrap();
        fs::write(dir.join("key.json"), key.to_json().to_string()).unwrap();
    }
    fs::remove_file(&gone).unwrap();

    let caches = Caches::at(root.path(), Some(snapshots.clone()));
    let entries = caches.list().unwrap();
    let stale: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.stale)
        .map(|e| e.name.clone())
        .collect();
    let names = |kind: CacheKind| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.name.clone())
            .collect()
    };
    assert_eq!(names(CacheKind::LinuxGuest).len(), 3, "{entries:#?}");
    assert_eq!(names(CacheKind::Snapshot).len(), 2, "{entries:#?}");
    let current_name = format!(
        "linux-x86_64/{}",
        seed.dir.file_name().unwrap().to_string_lossy()
    );
    assert!(!stale.contains(&current_name), "{entries:#?}");
    for name in [
        "linux-x86_64/00000000000000aa",
        "linux-x86_64/00000000000000bb",
        "linux-x86_64/linux-image-0.1_1_amd64.deb",
        "echo-shell-aarch64-0000000000000000.bin",
    ] {
        assert!(stale.contains(name), "{name} is not stale: {entries:#?}");
    }
    let snapshot_stale: Vec<bool> = entries
        .iter()
        .filter(|e| e.kind == CacheKind::Snapshot)
        .map(|e| e.stale)
        .collect();
    assert_eq!(snapshot_stale, [false, true], "fresh-…, gone-…");
    let held = entries
        .iter()
        .find(|e| e.name.ends_with("00000000000000bb"))
        .unwrap();
    assert!(held.in_use);
    let build = entries.iter().find(|e| e.name == current_name).unwrap();
    assert!(build.bytes > 10 << 20, "{build:?}");

    // The test binary's own command: libtest never sees it.
    let listed = Run::of(
        Command::new(FIXTURE)
            .args(["--qemu-test-cache", "list"])
            .env("QEMU_TEST_CACHE_DIR", root.path())
            .env("QEMU_TEST_ARTIFACTS", root.path()),
    );
    assert_eq!(listed.code, Some(0), "{}", listed.all());
    assert!(!listed.stdout.contains("running"), "{}", listed.all());
    for part in [current_name.as_str(), "stale, in use", "MiB", "total "] {
        assert!(
            listed.stdout.contains(part),
            "no {part:?} in:\n{}",
            listed.all()
        );
    }
    let wrong = Run::of(Command::new(FIXTURE).args(["--qemu-test-cache", "purge"]));
    assert_eq!(wrong.code, Some(1), "{}", wrong.all());
    assert!(wrong
        .stderr
        .contains("unknown command `purge` (one of: list, prune, prune-all)"));

    // Prune the stale: what is in use stays.
    let pruned = caches.prune(Prune::Stale).unwrap();
    let removed: BTreeSet<String> = pruned.removed.iter().map(|e| e.name.clone()).collect();
    assert!(
        removed.contains("linux-x86_64/00000000000000aa"),
        "{pruned:#?}"
    );
    assert!(!old.exists() && old_held.exists() && current.exists());
    assert_eq!(pruned.in_use.len(), 1, "{pruned:#?}");
    assert!(pruned.freed() > 0);
    let left = caches.list().unwrap();
    assert!(
        left.iter().filter(|e| e.stale).all(|e| e.in_use),
        "{left:#?}"
    );
    // Everything: all but what is in use.
    drop(lock);
    let pruned = caches.prune(Prune::All).unwrap();
    assert!(pruned.in_use.is_empty(), "{pruned:#?}");
    assert!(caches.list().unwrap().is_empty(), "{:#?}", caches.list());
    assert!(!current.exists());
}
