//! Declared assets on real QEMU, fetched from an HTTP server on the
//! loopback that each test starts (there is no network here): a good hash
//! boots, a wrong one is an error that caches nothing, an interrupted
//! download resumes (or starts over), processes started together download
//! once, offline mode skips (and fails under `QEMU_TEST_REQUIRE=1`), the
//! Linux guest boots from assets, a disk asset is used through an overlay,
//! the binary lists and fetches its assets ahead; and UEFI guests boot
//! with variable stores of their own. Drives `assets-fixture`, each run
//! with a cache dir of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use qemu_test_suite::http::{Faults, Server};
use sha2::{Digest, Sha256};

const FIXTURE: &str = env!("CARGO_BIN_EXE_assets-fixture");

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn xz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    liblzma::read::XzEncoder::new(bytes, 6)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The echo-shell guest, xz-compressed: what the server sends.
fn echo_xz() -> Vec<u8> {
    xz(qemu_test::guest::ECHO_SHELL_AARCH64.bytes)
}

/// A run of the fixture: its own cache and artifact dirs, the assets'
/// environment.
struct Run {
    cache: tempfile::TempDir,
    artifacts: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Run {
    fn new() -> Run {
        Run {
            cache: tempfile::tempdir().unwrap(),
            artifacts: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    /// Declares the asset `name` as `url` with `sha`.
    fn asset(mut self, name: &str, url: String, sha: &str) -> Run {
        self.env.push((format!("ASSET_{name}_URL"), url));
        self.env
            .push((format!("ASSET_{name}_SHA"), sha.to_string()));
        self
    }

    fn env(mut self, name: &str, value: &str) -> Run {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(FIXTURE);
        cmd.args(args)
            .env("QEMU_TEST_CACHE_DIR", self.cache.path())
            .env("QEMU_TEST_ARTIFACTS", self.artifacts.path())
            .env_remove("QEMU_TEST_REQUIRE")
            .env_remove("QEMU_TEST_OFFLINE")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs one test by name.
    fn test(&self, name: &str) -> Output {
        self.run(&["--exact", name])
    }

    fn assets_dir(&self) -> PathBuf {
        self.cache.path().join("assets")
    }

    /// The names in the cache's assets dir.
    fn cached_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.assets_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn artifact(&self, test: &str) -> PathBuf {
        self.artifacts
            .path()
            .join("qemu-test-suite/assets-fixture")
            .join(test)
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn passed(out: &Output) {
    assert!(out.status.success(), "{}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 passed"), "{}", text(out));
}

#[test]
fn a_good_hash_boots_and_is_fetched_once() {
    let body = echo_xz();
    let server = Server::start(&[("/echo-shell.bin.xz", body.clone())], Faults::default());
    let run = Run::new().asset("ECHO", server.url("/echo-shell.bin.xz"), &sha256(&body));
    let out = run.test("echo_boots");
    passed(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "downloading http://",
        "SHA-256 verified",
        "decompressing (xz)",
        "cached as",
    ] {
        assert!(stderr.contains(line), "{line:?}: {}", text(&out));
    }
    // The entry holds the decompressed guest, under the download's hash.
    let entry = run.assets_dir().join(sha256(&body));
    let kept = std::fs::read(entry.join("echo-shell.bin")).unwrap();
    assert_eq!(kept, qemu_test::guest::ECHO_SHELL_AARCH64.bytes);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entry.join("asset.json")).unwrap()).unwrap();
    assert_eq!(manifest["compression"], "xz");
    assert_eq!(manifest["file_sha256"], sha256(&kept));
    // Again: from the cache, no request.
    passed(&run.test("echo_boots"));
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
    // The cache listing shows it; pruning everything removes it.
    let listing = run.run(&["--qemu-test-cache", "list"]);
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing.contains("asset") && listing.contains("echo-shell.bin ("),
        "{listing}"
    );
    let pruned = run.run(&["--qemu-test-cache", "prune-all"]);
    assert!(pruned.status.success(), "{}", text(&pruned));
    assert!(!entry.exists());
}

#[test]
fn a_wrong_hash_is_an_error_and_caches_nothing() {
    let body = echo_xz();
    let server = Server::start(&[("/echo-shell.bin.xz", body.clone())], Faults::default());
    let declared = sha256(b"something else");
    let run = Run::new().asset("ECHO", server.url("/echo-shell.bin.xz"), &declared);
    let out = run.test("echo_boots");
    assert_eq!(out.status.code(), Some(101), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for part in [
        "does not have the declared SHA-256 (nothing was cached)",
        &format!("expected {declared}"),
        &format!("got {}", sha256(&body)),
    ] {
        assert!(stdout.contains(part), "{part:?}: {}", text(&out));
    }
    let left: Vec<String> = run
        .cached_names()
        .into_iter()
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let body = echo_xz();
    let half = body.len() as u64 / 2;
    let faults = Faults {
        drop_after: Some((1, half)),
        ..Faults::default()
    };
    let server = Server::start(&[("/echo.xz", body.clone())], faults);
    let run = Run::new().asset("ECHO", server.url("/echo.xz"), &sha256(&body));
    let out = run.test("echo_boots");
    passed(&out);
    let ranges: Vec<Option<String>> = server.requests().into_iter().map(|r| r.range).collect();
    assert_eq!(
        ranges,
        [None, Some(format!("bytes={half}-"))],
        "{}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming"));
    assert!(!run
        .assets_dir()
        .join(format!("{}.part", sha256(&body)))
        .exists());
}

#[test]
fn a_server_without_ranges_starts_over() {
    let body = echo_xz();
    let faults = Faults {
        drop_after: Some((1, body.len() as u64 / 3)),
        no_ranges: true,
        ..Faults::default()
    };
    let server = Server::start(&[("/echo.xz", body.clone())], faults);
    let run = Run::new().asset("ECHO", server.url("/echo.xz"), &sha256(&body));
    passed(&run.test("echo_boots"));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_killed_download_resumes_in_the_next_process() {
    let body = echo_xz();
    let sha = sha256(&body);
    let half = body.len() / 2;
    let server = Server::start(&[("/echo.xz", body.clone())], Faults::default());
    let run = Run::new().asset("ECHO", server.url("/echo.xz"), &sha);
    // What a process killed halfway leaves.
    std::fs::create_dir_all(run.assets_dir()).unwrap();
    std::fs::write(run.assets_dir().join(format!("{sha}.part")), &body[..half]).unwrap();
    passed(&run.test("echo_boots"));
    let ranges: Vec<Option<String>> = server.requests().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, [Some(format!("bytes={half}-"))]);

    // Left bytes that are not the file's: the resumed file does not
    // verify, and is downloaded again whole.
    let run = Run::new().asset("ECHO", server.url("/echo.xz"), &sha);
    std::fs::create_dir_all(run.assets_dir()).unwrap();
    std::fs::write(
        run.assets_dir().join(format!("{sha}.part")),
        vec![0u8; half],
    )
    .unwrap();
    let out = run.test("echo_boots");
    passed(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("downloading it again from the start"));
}

#[test]
fn processes_started_together_download_once() {
    let body = echo_xz();
    // The download (one chunk of the small body) takes 3 s, so that the
    // other processes, however slowly a loaded host starts them, arrive
    // while the first holds the fetch lock.
    let faults = Faults {
        slow: Some(Duration::from_secs(3)),
        ..Faults::default()
    };
    let server = Server::start(&[("/echo.xz", body.clone())], faults);
    let run = Run::new().asset("ECHO", server.url("/echo.xz"), &sha256(&body));
    let children: Vec<_> = (0..4)
        .map(|_| {
            run.command(&["--exact", "echo_boots"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        passed(out);
    }
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
    let waited = outs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("waiting for another process"))
        .count();
    assert!(waited >= 1, "nobody said it waited");
}

#[test]
fn offline_mode_skips_and_require_fails() {
    let body = echo_xz();
    let server = Server::start(&[("/echo.xz", body.clone())], Faults::default());
    let run = Run::new()
        .asset("ECHO", server.url("/echo.xz"), &sha256(&body))
        .env("QEMU_TEST_OFFLINE", "1");
    let out = run.test("echo_boots");
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("note: skipping echo_boots: the asset http://")
            && stderr.contains("offline mode (QEMU_TEST_OFFLINE=1)"),
        "{}",
        text(&out)
    );
    let required = run
        .command(&["--exact", "echo_boots"])
        .env("QEMU_TEST_REQUIRE", "1")
        .output()
        .unwrap();
    assert_eq!(required.status.code(), Some(101), "{}", text(&required));
    assert!(String::from_utf8_lossy(&required.stdout).contains("QEMU_TEST_REQUIRE=1"));
    assert!(server.requests().is_empty());
    // Once fetched, an offline run uses the cache.
    let online = Run {
        env: run.env[..2].to_vec(),
        ..run
    };
    passed(&online.test("echo_boots"));
    let offline = online.env("QEMU_TEST_OFFLINE", "1");
    passed(&offline.test("echo_boots"));
}

#[test]
fn a_failed_download_skips_as_offline() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = Run::new().asset(
        "ECHO",
        format!("http://127.0.0.1:{port}/echo.xz"),
        &"a".repeat(64),
    );
    let out = run.test("echo_boots");
    assert!(out.status.success(), "{}", text(&out));
    // Skipped when it ran (the listing could not know).
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("echo_boots ... ignored (the asset http://")
            && stdout.contains("the download failed (io: Connection refused"),
        "{}",
        text(&out)
    );
    let required = run
        .command(&["--exact", "echo_boots"])
        .env("QEMU_TEST_REQUIRE", "1")
        .output()
        .unwrap();
    assert_eq!(required.status.code(), Some(101), "{}", text(&required));
}

#[test]
fn a_missing_file_is_an_http_error() {
    let server = Server::start(&[], Faults::default());
    let run = Run::new().asset("ECHO", server.url("/gone.xz"), &"b".repeat(64));
    let out = run.test("echo_boots");
    assert_eq!(out.status.code(), Some(101), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the server answered HTTP 404"));
}

#[test]
fn assets_are_listed_and_fetched_ahead() {
    let body = echo_xz();
    let disk = disk_image();
    let server = Server::start(
        &[("/echo.xz", body.clone()), ("/disk.img", disk.clone())],
        Faults::default(),
    );
    let run = Run::new()
        .asset("ECHO", server.url("/echo.xz"), &sha256(&body))
        .asset("DISK", server.url("/disk.img"), &sha256(&disk));
    let list = |args: &[&str]| -> serde_json::Value {
        let out = run.run(&[&["--qemu-test-assets", "list"], args].concat());
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let all = list(&[]);
    let assets = all["assets"].as_array().unwrap();
    let echo = assets.iter().find(|a| a["file"] == "echo").unwrap();
    assert_eq!(echo["tests"], serde_json::json!(["echo_boots"]));
    assert_eq!(echo["cached"], false);
    assert_eq!(echo["compression"], "xz");
    let disk_entry = assets.iter().find(|a| a["file"] == "disk.img").unwrap();
    assert_eq!(disk_entry["tests"], serde_json::json!(["disk_overlay"]));
    // The filters select: one test, one asset.
    assert_eq!(
        list(&["--exact", "echo_boots"])["assets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let fetched = run.run(&["--qemu-test-assets", "fetch", "--exact", "echo_boots"]);
    assert!(fetched.status.success(), "{}", text(&fetched));
    let fetched: serde_json::Value = serde_json::from_slice(&fetched.stdout).unwrap();
    assert_eq!(fetched["assets"][0]["cached"], true);
    assert_eq!(server.requests().len(), 1);
    let again = list(&[]);
    let echo = again["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["file"] == "echo")
        .unwrap();
    assert_eq!(echo["cached"], true);
    // Offline, the runs use what was fetched.
    passed(
        &run.command(&["--exact", "echo_boots"])
            .env("QEMU_TEST_OFFLINE", "1")
            .output()
            .unwrap(),
    );
}

/// A raw disk image of 1 MiB that starts with the fixture's line.
fn disk_image() -> Vec<u8> {
    let mut disk = b"qemu-test disk asset v1\n".to_vec();
    disk.resize(1 << 20, 0);
    disk
}

/// A directory of prebuilt Linux guests for the fixture (whose cache dir
/// is empty): the x86_64 guest from the per-user cache (built there on
/// first use), copied once.
fn linux_guests() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let files = match qemu_test::guest::linux_x86_64() {
            Ok(files) => files,
            Err(e) if !std::env::var("QEMU_TEST_REQUIRE").is_ok_and(|v| v == "1") => {
                eprintln!("note: no Linux guest here, nothing to check: {e}");
                return None;
            }
            Err(e) => panic!("{e}"),
        };
        let dir = qemu_test_suite::target_dir().join("qemu-test/assets-guests");
        files.copy_to(&dir).unwrap();
        Some(dir)
    })
    .as_deref()
}

#[test]
fn the_linux_guest_boots_from_assets() {
    let Some(guests) = linux_guests() else { return };
    let linux = qemu_test::guest::linux_x86_64().unwrap();
    let kernel = std::fs::read(&linux.kernel).unwrap();
    let kernel_zst =
        ruzstd::encoding::compress_to_vec(&kernel[..], ruzstd::encoding::CompressionLevel::Fastest);
    let initrd = std::fs::read(&linux.initrd).unwrap();
    let server = Server::start(
        &[
            ("/vmlinuz.zst", kernel_zst.clone()),
            ("/initrd.gz", initrd.clone()),
        ],
        Faults::default(),
    );
    let run = Run::new()
        .asset("KERNEL", server.url("/vmlinuz.zst"), &sha256(&kernel_zst))
        .asset("INITRD", server.url("/initrd.gz"), &sha256(&initrd))
        .env(
            "ASSET_KERNEL_RELEASE",
            linux.kernel_release().unwrap_or_default(),
        )
        .env("QEMU_TEST_GUESTS_DIR", guests.to_str().unwrap());
    passed(&run.test("linux_boots"));
}

#[test]
fn a_disk_asset_is_used_through_an_overlay() {
    let Some(guests) = linux_guests() else { return };
    let disk = disk_image();
    let server = Server::start(&[("/disk.img", disk.clone())], Faults::default());
    let run = Run::new()
        .asset("DISK", server.url("/disk.img"), &sha256(&disk))
        .env("QEMU_TEST_GUESTS_DIR", guests.to_str().unwrap())
        .env("QEMU_TEST_KEEP", "always");
    passed(&run.test("disk_overlay"));
    // The guest wrote to its overlay, not to the cached image: a second
    // run reads the image's first line again.
    let cached = run.assets_dir().join(sha256(&disk)).join("disk.img");
    assert_eq!(std::fs::read(&cached).unwrap(), disk);
    let overlay = run.artifact("disk_overlay").join("disk0.qcow2");
    let head = std::fs::read(&overlay).unwrap();
    assert!(head.starts_with(b"QFI\xfb"), "{}", overlay.display());
    let cmdline =
        std::fs::read_to_string(run.artifact("disk_overlay").join("cmdline.txt")).unwrap();
    assert!(
        cmdline.contains("disk0.qcow2,format=qcow2,if=virtio,id=disk0"),
        "{cmdline}"
    );
    passed(&run.test("disk_overlay"));
}

/// Runs a UEFI test of the fixture, keeping its artifacts; `None` when
/// this host has no such firmware (skipped; a failure under
/// `QEMU_TEST_REQUIRE=1`, as CI runs, where `cargo xtask setup` installs
/// it).
fn uefi(test: &str, template: &Path) -> Option<Run> {
    let run = Run::new().env("QEMU_TEST_KEEP", "always");
    let before = std::fs::read(template).ok();
    let out = run.test(test);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains(&format!("note: skipping {test}:")) {
        let required = std::env::var("QEMU_TEST_REQUIRE").is_ok_and(|v| v == "1");
        assert!(!required, "skipped under QEMU_TEST_REQUIRE=1: {stderr}");
        eprintln!("{stderr}");
        return None;
    }
    passed(&out);
    // The host's template is as it was.
    assert_eq!(std::fs::read(template).ok(), before);
    Some(run)
}

/// The variable the fixture set is in the machine's own store.
fn has_the_variable(run: &Run, test: &str) {
    let vars = std::fs::read(run.artifact(test).join("efivars.fd")).unwrap();
    let name: Vec<u8> = "QemuTestVar"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert!(
        vars.windows(name.len()).any(|w| w == name),
        "the variable is not in efivars.fd"
    );
}

#[test]
fn uefi_guests_boot_with_their_own_variable_store() {
    if let Some(run) = uefi(
        "uefi_shell_x86_64",
        Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ) {
        has_the_variable(&run, "uefi_shell_x86_64");
        let cmdline =
            std::fs::read_to_string(run.artifact("uefi_shell_x86_64").join("cmdline.txt")).unwrap();
        assert!(
            cmdline.contains("if=pflash,unit=0,format=raw,readonly=on"),
            "{cmdline}"
        );
    }
    if let Some(run) = uefi(
        "uefi_shell_aarch64",
        Path::new("/usr/share/AAVMF/AAVMF_VARS.fd"),
    ) {
        has_the_variable(&run, "uefi_shell_aarch64");
    }
}
