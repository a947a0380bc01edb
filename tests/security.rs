//! Quoting and private dirs, on real QEMU (issue 4, "Reliability and
//! security"). Most tests drive `security-fixture` (`security_fixture.rs`),
//! a `qemu_test::main!()` suite whose tests report what they saw.
//!
//! - `quoting`: arguments with spaces, quotes, `$(…)`, backticks, a
//!   newline, commas and non-ASCII reach QEMU byte for byte, from a
//!   [`Machine`] and from the `cmdline.txt` and `repro.sh` the runner
//!   writes. The judges are QEMU's `/proc/<pid>/cmdline`, `query-name`, and
//!   real shells (`bash` and `sh`) running `repro.sh`; no text the runner
//!   puts in those files' comments can escape them.
//! - `dirs`: two test processes at once never share a temp, socket, log or
//!   artifact dir; each is 0700, and those under `$TMPDIR` have names
//!   nobody can guess. The runner's state dir (`$TMPDIR/qemu-test-<uid>`)
//!   is shared on purpose (host-wide scheduling, locks, the KVM probe
//!   cache): it must be private and ours, and one planted by someone else
//!   is refused. Two runs of one test at once take turns with its artifact
//!   dir (through a lock in the state dir: runs with different `$TMPDIR`s
//!   do not see each other's locks).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use qemu_test::Machine;
use qemu_test_suite::{isolated, mode, pid_alive, wait_for, weird_name, Qmp, WEIRD_NAME_ARG};
use serde_json::{json, Value};

const FIXTURE: &str = env!("CARGO_BIN_EXE_security-fixture");
const X86: &str = "qemu-system-x86_64";
/// The longest Unix socket path.
const MAX_SOCKET_PATH: usize = 107;

/// Kills and reaps a child (a fixture, or a QEMU started by `repro.sh`)
/// if the test ends before it did.
struct Reaped(Option<Child>);

impl Reaped {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("not finished yet")
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().expect("not finished yet").id()
    }

    fn exited(&mut self) -> bool {
        self.child().try_wait().unwrap().is_some()
    }

    /// Waits up to `limit` for the exit; the child's whole output.
    fn finish(mut self, limit: Duration) -> Output {
        wait_for("a child to exit", limit, || self.exited());
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(mut cmd: Command) -> Reaped {
    Reaped(Some(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// Text for failure messages.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        lossy(&out.stdout),
        lossy(&out.stderr)
    )
}

/// The argv of process `pid`, byte for byte.
fn proc_cmdline(pid: u32) -> Vec<Vec<u8>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let mut words: Vec<Vec<u8>> = raw.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    assert_eq!(words.pop(), Some(Vec::new()), "cmdline ends with a NUL");
    words
}

fn as_bytes(words: &[String]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// The words a POSIX shell makes of `text` (shell-quoted words), judged
/// by `bash` itself; run in `cwd`, where a command substitution that
/// escaped its quotes would leave a `pwned-*` file.
fn shell_words(text: &str, cwd: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("bash")
        .args([
            "-c",
            r#"eval "set -- $1" && printf '%s\0' "$@""#,
            "bash",
            text,
        ])
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let mut words: Vec<Vec<u8>> = out.stdout.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    assert_eq!(words.pop(), Some(Vec::new()));
    words
}

/// Every `pwned-*` file under `dir`: proof that a shell ran something it
/// was only meant to pass along.
fn pwned(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with("pwned") {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            }
        }
    }
    found
}

/// The lines of a `cmdline.txt` or `repro.sh` before the first one that
/// is neither a comment nor blank, and the rest.
fn split_comments(text: &str) -> (Vec<&str>, &str) {
    let mut comments = Vec::new();
    let mut rest = text;
    while let Some((line, after)) = rest.split_once('\n') {
        if !(line.starts_with('#') || line.is_empty()) {
            break;
        }
        comments.push(line);
        rest = after;
    }
    (comments, rest)
}

/// `command` without the runner's own QMP monitor (a socketpair fd), which
/// `repro.sh` replaces by `-qmp unix:…`.
fn without_fd_monitor(command: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < command.len() {
        let value = command.get(i + 1).map(String::as_str).unwrap_or("");
        let fd_monitor = (command[i] == "-chardev" && value.starts_with("socket,id=mon,fd="))
            || (command[i] == "-mon" && value == "chardev=mon,mode=control");
        if fd_monitor {
            i += 2;
        } else {
            out.push(command[i].clone());
            i += 1;
        }
    }
    out
}

/// Runs `repro.sh` with `shell` from `run_dir`, checks what QEMU received
/// against `expected` (the argv without any `-qmp`) and its cwd against
/// `cwd`, and returns QEMU's `query-name` before quitting it over the QMP
/// socket the script names.
fn run_repro(shell: &str, repro: &Path, run_dir: &Path, expected: &[String], cwd: &Path) -> Value {
    let socket = repro.with_file_name("qmp.sock");
    assert!(
        socket.as_os_str().len() <= MAX_SOCKET_PATH,
        "test set-up: the artifact dir must be short enough for the socket to live in it"
    );
    let _ = std::fs::remove_file(&socket);
    let mut cmd = Command::new(shell);
    cmd.arg(repro).current_dir(run_dir);
    // `exec`: the shell's pid becomes QEMU's.
    let mut qemu = spawn(cmd);
    wait_for("repro.sh's QMP socket", Duration::from_secs(30), || {
        socket.exists() || qemu.exited()
    });
    assert!(
        !qemu.exited(),
        "{shell} repro.sh exited: {}",
        show(&qemu.finish(Duration::from_secs(5)))
    );
    let argv = proc_cmdline(qemu.pid());
    let qmp_at = argv
        .iter()
        .position(|w| w == b"-qmp")
        .expect("repro.sh's QEMU has -qmp");
    let escaped = socket.to_str().unwrap().replace(',', ",,");
    assert_eq!(
        lossy(&argv[qmp_at + 1]),
        format!("unix:{escaped},server=on,wait=off")
    );
    let mut rest = argv.clone();
    rest.drain(qmp_at..qmp_at + 2);
    assert_eq!(
        rest,
        as_bytes(expected),
        "{shell} repro.sh gave QEMU other arguments"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", qemu.pid())).unwrap(),
        cwd.canonicalize().unwrap(),
        "repro.sh runs QEMU where the test ran"
    );
    let mut qmp = Qmp::connect(&socket);
    let name = qmp.try_execute("query-name");
    let quit = name.is_ok().then(|| qmp.try_execute("quit"));
    let out = qemu.finish(Duration::from_secs(20));
    assert!(
        matches!(quit, Some(Ok(_))) && out.status.success(),
        "query-name: {name:?}\nquit: {quit:?}\n{}",
        show(&out)
    );
    name.unwrap()["return"]["name"].clone()
}

mod quoting {
    use super::*;

    /// `Machine::args()` holds the arguments as given, and QEMU's argv is
    /// `command_line()` byte for byte, ending with them.
    #[test]
    fn machine_args_reach_qemu_byte_for_byte() {
        let fw_cfg = format!("name=opt/qemu-test/weird,string={WEIRD_NAME_ARG}");
        let args = [
            "-S",
            "-nodefaults",
            "-name",
            WEIRD_NAME_ARG,
            "-fw_cfg",
            &fw_cfg,
        ];
        let mut vm = Machine::builder(X86).args(args).build();
        assert_eq!(vm.args(), args);
        vm.launch().unwrap();
        let argv = proc_cmdline(vm.pid().unwrap());
        assert_eq!(argv, as_bytes(vm.command_line()));
        assert_eq!(argv[argv.len() - args.len()..], as_bytes(vm.args()));
        let name = vm.command("query-name", json!({})).unwrap();
        assert_eq!(name["name"], weird_name());
        vm.shutdown().unwrap();
        assert_eq!(pwned(Path::new(".")), Vec::<PathBuf>::new());
    }

    /// The runner's `cmdline.txt` and `repro.sh` for a test with weird
    /// arguments, run from a weird directory with a weird artifact root
    /// (a comma, quotes, a newline and command substitutions in both).
    #[test]
    fn cmdline_txt_and_repro_sh_keep_every_byte() {
        let base = tempfile::tempdir().unwrap();
        let cwd = base
            .path()
            .join("cwd 'q' \"dq\" $(touch pwned-cwd) `touch pwned-cwd2`\n,x");
        let root = base.path().join("r,'q'\n$(touch pwned-r)`x`");
        std::fs::create_dir(&cwd).unwrap();
        let out = isolated(
            Command::new(FIXTURE),
            &[("QEMU_TEST_KEEP", "always")],
            &root,
        )
        .args(["--exact", "quoting::weird_args"])
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));

        let dir = root.join("qemu-test-suite/security-fixture/quoting::weird_args");
        let seen: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("seen.json")).unwrap()).unwrap();
        let strings = |v: &Value| -> Vec<String> {
            serde_json::from_value(v.clone()).expect("a list of strings")
        };
        let args = strings(&seen["args"]);
        let command_line = strings(&seen["command_line"]);
        assert_eq!(seen["query_name"], weird_name());
        assert_eq!(args.last().map(String::as_str), Some(WEIRD_NAME_ARG));
        assert!(command_line.ends_with(&args));

        // cmdline.txt: comments, then the command line a shell splits back
        // into exactly the words QEMU was given.
        let scratch = base.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let cmdline = std::fs::read_to_string(dir.join("cmdline.txt")).unwrap();
        let (comments, command) = split_comments(&cmdline);
        assert!(
            comments.iter().any(|c| c.starts_with("# accelerator: tcg")),
            "{cmdline}"
        );
        assert_eq!(shell_words(command, &scratch), as_bytes(&command_line));

        // repro.sh, with bash and with sh (its #! line): the same argv
        // (the QMP monitor aside), from the same directory.
        let repro = dir.join("repro.sh");
        let expected = without_fd_monitor(&command_line);
        for shell in ["bash", "sh"] {
            let run_dir = base.path().join(format!("run-{shell}"));
            std::fs::create_dir(&run_dir).unwrap();
            let name = run_repro(shell, &repro, &run_dir, &expected, &cwd);
            assert_eq!(name, weird_name(), "{shell}");
        }
        assert_eq!(pwned(base.path()), Vec::<PathBuf>::new());
    }

    /// A note made from a test's own argument (a `-add-fd` repro.sh leaves
    /// out) holds a newline and a command: it stays a comment in both
    /// files.
    #[test]
    fn notes_stay_comments() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("artifacts");
        let cwd = base.path().join("cwd");
        std::fs::create_dir(&cwd).unwrap();
        let out = isolated(
            Command::new(FIXTURE),
            &[("QEMU_TEST_KEEP", "always")],
            &root,
        )
        .args(["--exact", "quoting::add_fd_note"])
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
        // QEMU refuses fd 1023: the launch fails, the artifacts stay.
        assert_eq!(out.status.code(), Some(101), "{}", show(&out));
        let dir = root.join("qemu-test-suite/security-fixture/quoting::add_fd_note");
        let value = "fd=1023,set=1,opaque=x\ntouch pwned-note #";

        let repro_text = std::fs::read_to_string(dir.join("repro.sh")).unwrap();
        let (comments, body) = split_comments(&repro_text);
        assert!(
            body.starts_with("set -e\n"),
            "only comments come before `set -e`:\n{repro_text}"
        );
        assert!(
            comments
                .iter()
                .any(|c| c.starts_with("# note: `-add-fd fd=1023")),
            "{repro_text}"
        );
        assert!(!body.contains("-add-fd"), "{repro_text}");

        let cmdline = std::fs::read_to_string(dir.join("cmdline.txt")).unwrap();
        let (_, command) = split_comments(&cmdline);
        let words = shell_words(command, &cwd);
        let at = words
            .iter()
            .position(|w| w == b"-add-fd")
            .expect("cmdline.txt has the whole command line");
        assert_eq!(words[at + 1], value.as_bytes(), "{cmdline}");

        // Running it: QEMU starts (without the fd), and nothing else runs.
        let run_dir = base.path().join("run");
        std::fs::create_dir(&run_dir).unwrap();
        let mut expected = words
            .iter()
            .map(|w| String::from_utf8(w.clone()).unwrap())
            .collect::<Vec<_>>();
        expected.drain(at..at + 2);
        let expected = without_fd_monitor(&expected);
        run_repro("sh", &dir.join("repro.sh"), &run_dir, &expected, &cwd);
        assert_eq!(pwned(base.path()), Vec::<PathBuf>::new());
    }
}

mod dirs {
    use super::*;

    /// What one `dirs::report` test process wrote into the rendezvous dir.
    #[derive(Debug)]
    struct Report {
        process: u32,
        qemu_pid: u32,
        tmpdir: PathBuf,
        temp_dir: PathBuf,
        sock_dir: PathBuf,
        log_dir: PathBuf,
        artifacts: PathBuf,
    }

    fn read_report(rendezvous: &Path, process: u32) -> Report {
        let path = rendezvous.join(format!("{process}.json"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let path = |key: &str| PathBuf::from(v[key].as_str().unwrap_or_else(|| panic!("{v}")));
        Report {
            process: v["process"].as_u64().unwrap() as u32,
            qemu_pid: v["qemu_pid"].as_u64().unwrap() as u32,
            tmpdir: path("tmpdir"),
            temp_dir: path("temp_dir"),
            sock_dir: path("sock_dir"),
            log_dir: path("log_dir"),
            artifacts: path("artifacts"),
        }
    }

    /// A fixture process running `dirs::report`.
    fn start(binary: &Path, tmpdir: &Path, root: &Path, rendezvous: &Path) -> Reaped {
        let mut cmd = isolated(Command::new(binary), &[("QEMU_TEST_KEEP", "always")], root);
        cmd.args(["--exact", "dirs::report"])
            .env("TMPDIR", tmpdir)
            .env("FIXTURE_RENDEZVOUS", rendezvous);
        spawn(cmd)
    }

    fn release(rendezvous: &Path, process: u32) {
        std::fs::write(rendezvous.join(format!("release-{process}")), "").unwrap();
    }

    /// A private dir of ours: a real directory (not a symlink), mode 0700,
    /// owned by this user.
    fn assert_private(dir: &Path) {
        let meta =
            std::fs::symlink_metadata(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(meta.is_dir(), "{} is a directory", dir.display());
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        assert_eq!(meta.uid(), rustix::process::getuid().as_raw());
    }

    /// The random part of a dir `tempfile` made with `prefix`.
    fn random_suffix<'a>(dir: &'a Path, prefix: &str) -> &'a str {
        let name = dir.file_name().unwrap().to_str().unwrap();
        let suffix = name
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{name} starts with {prefix}"));
        assert!(
            suffix.len() >= 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()),
            "{name}: at least 6 random characters"
        );
        suffix
    }

    fn dir_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Every directory under `dir`, `dir` included.
    fn all_dirs(dir: &Path) -> Vec<PathBuf> {
        let mut found = vec![dir.to_path_buf()];
        let mut i = 0;
        while i < found.len() {
            for entry in std::fs::read_dir(&found[i]).unwrap().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    found.push(entry.path());
                }
            }
            i += 1;
        }
        found
    }

    /// Two test binaries (the fixture and a copy under another name) run a
    /// VM each at the same time, with one `$TMPDIR` and one artifact root.
    #[test]
    fn two_test_binaries_at_once_share_no_dir() {
        let tmpdir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let rendezvous = tempfile::tempdir().unwrap();
        let bins = tempfile::tempdir().unwrap();
        let copy = bins.path().join("security-fixture-copy");
        std::fs::copy(FIXTURE, &copy).unwrap();
        let binaries = [PathBuf::from(FIXTURE), copy];
        let children: Vec<Reaped> = binaries
            .iter()
            .map(|b| start(b, tmpdir.path(), root.path(), rendezvous.path()))
            .collect();
        wait_for("both VMs to run", Duration::from_secs(60), || {
            children
                .iter()
                .all(|c| rendezvous.path().join(format!("{}.json", c.pid())).exists())
        });
        let reports: Vec<Report> = children
            .iter()
            .map(|c| read_report(rendezvous.path(), c.pid()))
            .collect();

        let uid = rustix::process::getuid().as_raw();
        let state = tmpdir.path().join(format!("qemu-test-{uid}"));
        let mut suffixes = Vec::new();
        let mut dirs = Vec::new();
        // The copy is the same test binary (its package and name are built
        // in): its run of the same test gets a dir of its own beside the
        // first's.
        let binary_dir = root.path().join("qemu-test-suite/security-fixture");
        let mut test_dirs: Vec<PathBuf> = reports.iter().map(|r| r.artifacts.clone()).collect();
        test_dirs.sort();
        assert_eq!(
            test_dirs,
            [
                binary_dir.join("dirs::report"),
                binary_dir.join("dirs::report.2")
            ]
        );
        for report in &reports {
            assert_eq!(report.tmpdir, tmpdir.path());
            assert!(pid_alive(report.qemu_pid), "{report:?}");
            for (dir, prefix) in [
                (&report.temp_dir, "qemu-machine-"),
                (&report.sock_dir, "qemu-sock-"),
            ] {
                assert_eq!(dir.parent(), Some(tmpdir.path()), "{report:?}");
                assert_private(dir);
                let suffix = random_suffix(dir, prefix);
                assert!(!suffix.contains(&report.process.to_string()));
                suffixes.push(suffix.to_string());
            }
            // The runner logs into the artifact dir: per binary and test.
            assert_eq!(report.log_dir, report.artifacts);
            assert_private(&report.artifacts);
            dirs.extend([
                report.temp_dir.clone(),
                report.sock_dir.clone(),
                report.artifacts.clone(),
            ]);
        }
        suffixes.sort();
        suffixes.dedup();
        assert_eq!(suffixes.len(), 4, "four different random names");
        for (i, a) in dirs.iter().enumerate() {
            for b in &dirs[i + 1..] {
                assert!(
                    !a.starts_with(b) && !b.starts_with(a),
                    "{} and {} overlap",
                    a.display(),
                    b.display()
                );
            }
        }
        // Nothing else in $TMPDIR but the shared state dir, private all
        // the way down.
        let mut expected: Vec<String> = reports
            .iter()
            .flat_map(|r| [&r.temp_dir, &r.sock_dir])
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .chain([format!("qemu-test-{uid}")])
            .collect();
        expected.sort();
        assert_eq!(dir_names(tmpdir.path()), expected);
        for dir in all_dirs(&state) {
            assert_private(&dir);
        }

        for child in &children {
            release(rendezvous.path(), child.pid());
        }
        for child in children {
            let out = child.finish(Duration::from_secs(30));
            assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        }
        for report in &reports {
            assert!(!pid_alive(report.qemu_pid));
            assert!(!report.temp_dir.exists() && !report.sock_dir.exists());
        }
        assert_eq!(
            dir_names(tmpdir.path()),
            [format!("qemu-test-{uid}")],
            "only the state dir stays"
        );
    }

    /// `$TMPDIR/qemu-test-<uid>` has a guessable name: another user may
    /// have made it first (or planted a symlink). The runner then uses a
    /// private dir of its own, says so, and writes nothing in theirs.
    #[test]
    fn a_planted_state_dir_is_refused() {
        let uid = rustix::process::getuid().as_raw();
        let mut plants = vec!["symlink"];
        // Only root can give a dir to another user.
        if uid == 0 {
            plants.push("owned by nobody");
        }
        for plant in plants {
            let tmpdir = tempfile::tempdir().unwrap();
            let decoy = tempfile::tempdir().unwrap();
            let planted = tmpdir.path().join(format!("qemu-test-{uid}"));
            let why = if plant == "symlink" {
                std::os::unix::fs::symlink(decoy.path(), &planted).unwrap();
                "exists and is not a directory"
            } else {
                std::fs::create_dir(&planted).unwrap();
                std::fs::set_permissions(
                    &planted,
                    std::os::unix::fs::PermissionsExt::from_mode(0o777),
                )
                .unwrap();
                let nobody = rustix::fs::Uid::from_raw(65534);
                rustix::fs::chown(&planted, Some(nobody), None).unwrap();
                "belongs to another user"
            };
            let root = tempfile::tempdir().unwrap();
            let out = isolated(Command::new(FIXTURE), &[], root.path())
                .args(["--exact", "quoting::weird_args"])
                .env("TMPDIR", tmpdir.path())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{plant}: {}", show(&out));
            let stderr = lossy(&out.stderr);
            assert!(
                stderr.contains("warning: qemu-test: cannot use the shared state dir")
                    && stderr.contains(why),
                "{plant}: {stderr}"
            );
            let inside = if plant == "symlink" {
                decoy.path()
            } else {
                planted.as_path()
            };
            assert_eq!(dir_names(inside), Vec::<String>::new(), "{plant}");
            // Its own state dir instead: private, and the only thing left.
            let names = dir_names(tmpdir.path());
            let own: Vec<&String> = names
                .iter()
                .filter(|n| n.starts_with("qemu-test-runner-"))
                .collect();
            assert_eq!(own.len(), 1, "{plant}: {names:?}");
            assert_eq!(names.len(), 2, "{plant}: {names:?}");
            assert_private(&tmpdir.path().join(own[0]));
        }
    }

    /// The same test of the same binary, started twice at once: the second
    /// run does not wait, and never removes or writes into the first's
    /// dir: it takes `<test>.2/`. Both keep their artifacts
    /// (`QEMU_TEST_KEEP=always`), each its own.
    #[test]
    fn one_test_run_twice_at_once_keeps_both_dirs() {
        let tmpdir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let rendezvous = tempfile::tempdir().unwrap();
        let fixture = Path::new(FIXTURE);
        let first = start(fixture, tmpdir.path(), root.path(), rendezvous.path());
        let first_report = rendezvous.path().join(format!("{}.json", first.pid()));
        wait_for("the first VM", Duration::from_secs(60), || {
            first_report.exists()
        });
        let first_seen = read_report(rendezvous.path(), first.pid());
        let log = first_seen.artifacts.join("qemu.log");
        assert!(log.is_file());
        let first_log = std::fs::read_to_string(&log).unwrap();
        let second = start(fixture, tmpdir.path(), root.path(), rendezvous.path());
        let second_report = rendezvous.path().join(format!("{}.json", second.pid()));
        wait_for("the second VM, alongside", Duration::from_secs(60), || {
            second_report.exists()
        });
        let second_seen = read_report(rendezvous.path(), second.pid());
        assert!(pid_alive(first_seen.qemu_pid) && pid_alive(second_seen.qemu_pid));
        assert_eq!(
            second_seen.artifacts,
            first_seen.artifacts.with_file_name("dirs::report.2")
        );
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .starts_with(&first_log),
            "the first run's files are left alone"
        );
        assert_ne!(second_seen.temp_dir, first_seen.temp_dir);
        // The second ends first; then the first.
        release(rendezvous.path(), second.pid());
        let out = second.finish(Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        release(rendezvous.path(), first.pid());
        let out = first.finish(Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        for seen in [&first_seen, &second_seen] {
            let qmp = std::fs::read_to_string(seen.artifacts.join("qmp.jsonl")).unwrap();
            assert!(qmp.contains("quit"), "{}: {qmp}", seen.artifacts.display());
        }
        // Nothing waits on a lock file any more: none is left.
        let uid = rustix::process::getuid().as_raw();
        let locks = tmpdir.path().join(format!("qemu-test-{uid}/runner/locks"));
        assert_eq!(dir_names(&locks), Vec::<String>::new());
    }
}
