//! Per-test artifact directories and what goes in them.
//!
//! Each VM test gets `<root>/<package>/<binary>/<test>/`, where `<root>` is
//! `QEMU_TEST_ARTIFACTS`, else `<target>/qemu-test` (the cargo target dir
//! holding the test binary), `<package>` and `<binary>` name the test
//! binary (see [`run_suite`](super::run_suite)), and `<test>` is the
//! test's name (`echo::boots`). It holds:
//!
//! | file | what |
//! | --- | --- |
//! | `qemu.log` | QEMU's stdout and stderr |
//! | `console.log` | everything the guest printed on the console |
//! | `qmp.jsonl` | every QMP message both ways, time-stamped |
//! | `cmdline.txt` | the full QEMU command line, shell-quoted |
//! | `repro.sh` | relaunches the same VM by hand: console on the terminal, QMP on a Unix socket |
//! | `timeline.jsonl` | each step of the test with its time: launch, QMP commands, waits, shell commands, verdict |
//! | `screen.png` | a failed test's display, if its VM has one |
//! | `dmesg.txt` | a failed Linux guest's whole kernel log, if its shell answered |
//!
//! After the test the directory is kept or removed as `QEMU_TEST_KEEP`
//! says; a removed test's empty per-binary and per-package dirs go too.
//!
//! # Runs of one test at once
//!
//! A test's directory is held by its run (an `flock` on the directory
//! itself, which the kernel drops if the process dies) until the run
//! ends. When a run starts it removes what *finished* runs of the same
//! test left (`<test>/`, `<test>.2/`, ...: the last run's kept failure is
//! replaced by the new run's artifacts), and never a directory a live run
//! holds. It takes `<test>/`, or, while another run still holds that,
//! `<test>.2/` (`.3`, ...). So two concurrent runs of one test (two
//! terminals, two checkouts sharing `QEMU_TEST_ARTIFACTS`) each keep their
//! own failure, and each failure message names its own directory.
//!
//! # Creating and pruning at once
//!
//! Removing a test's directory prunes its parents with `rmdir`, which
//! only removes an empty directory; creating one makes the parents, then
//! the directory, and makes the parents again if a pruner removed them in
//! between (see [`os::create_private_dir_all`](crate::os)). Once the
//! directory exists its parents are not empty, so sibling tests (threads
//! of one binary, or many processes under nextest) never break each
//! other's directories.
//!
//! The runner's host-wide state (the scheduler's slot files, the KVM probe
//! cache) lives elsewhere, in [`state_dir`](super::state::state_dir), so
//! that every test process of this user on this host shares it whatever its
//! target dir.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::machine::Machine;
use crate::os::FileLock;
use crate::qemu_opts::escape_opt;
use crate::runner::state::{fnv1a, state_dir};

/// The longest Unix socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The cargo target dir this test binary lives in: the nearest ancestor
/// holding `CACHEDIR.TAG` (which cargo writes there), else the parent of
/// the profile dir (`debug`, `release`) found above the binary.
pub(crate) fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let ancestors = || exe.ancestors().skip(1);
    if let Some(dir) = ancestors().find(|dir| dir.join("CACHEDIR.TAG").is_file()) {
        return Some(dir.to_path_buf());
    }
    if let Some(dir) = ancestors().find(|dir| {
        matches!(
            dir.file_name().and_then(|n| n.to_str()),
            Some("debug" | "release")
        )
    }) {
        return dir.parent().map(Path::to_path_buf);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The artifact root: `configured` (`QEMU_TEST_ARTIFACTS`), else
/// `<target>/qemu-test`, else `qemu-test-artifacts` in the state dir.
pub(crate) fn root(configured: Option<&Path>) -> PathBuf {
    if let Some(dir) = configured {
        return dir.to_path_buf();
    }
    match target_dir() {
        Some(target) => target.join("qemu-test"),
        None => state_dir().join("artifacts"),
    }
}

/// This test binary's name: the executable's file name without the hash
/// cargo appends (`runner_vm-0123456789abcdef` → `runner_vm`).
pub(crate) fn binary_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(Path::file_stem)
        .and_then(|s| s.to_str())
        .unwrap_or("tests");
    strip_hash(stem).to_string()
}

fn strip_hash(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    }
}

/// Names the root holds besides the packages' dirs (the snapshot store,
/// the prebuilt guests): a package of that name gets `<name>.package/`.
const RESERVED: &[&str] = &["snapshots", "guests", "report"];

/// Where a test binary's artifact dirs go: `<root>/<package>/<binary>/`.
pub(crate) fn binary_dir(root: &Path, package: &str, binary: &str) -> PathBuf {
    let package = file_name(package);
    let package = if RESERVED.contains(&package.as_str()) {
        format!("{package}.package")
    } else {
        package
    };
    root.join(package).join(file_name(binary))
}

/// A file name for a test: the test name with anything but `[A-Za-z0-9_.:-]`
/// replaced by `_` (a `#[qemu_test]` name never needs it).
fn file_name(test: &str) -> String {
    let name: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match name.as_str() {
        "" | "." | ".." => format!("_{name}"),
        _ => name,
    }
}

/// One test's artifact directory, held by this run until it finishes.
#[derive(Debug)]
pub(crate) struct ArtifactDir {
    path: PathBuf,
    /// The `flock` on the directory that says a live run holds it.
    _held: File,
}

impl ArtifactDir {
    /// Creates the artifact dir of `test` in `binary_dir` (from
    /// [`binary_dir`]): `<test>/`, or `<test>.N/` while a live run holds
    /// that, after removing what finished runs of the test left (see the
    /// [module docs](self)).
    pub(crate) fn prepare(binary_dir: &Path, test: &str) -> io::Result<ArtifactDir> {
        let name = file_name(test);
        // One run of this test at a time picks its dir (briefly).
        let locks = state_dir().join("locks");
        let _ = crate::os::create_private_dir_all(&locks);
        let tag = fnv1a(binary_dir.join(&name).as_os_str().as_encoded_bytes());
        let _picking = FileLock::exclusive(&locks.join(format!("{tag:016x}.lock")));
        let live = remove_finished(binary_dir, &name)?;
        let path = (1..)
            .map(|n| match n {
                1 => binary_dir.join(&name),
                n => binary_dir.join(format!("{name}.{n}")),
            })
            .find(|p| !live.contains(p))
            .expect("an unbounded range");
        crate::os::create_private_dir_all(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
        let held = crate::os::try_lock_dir(&path)
            .and_then(|held| held.ok_or_else(|| io::Error::other("locked by another run")))
            .map_err(|e| io::Error::new(e.kind(), format!("locking {}: {e}", path.display())))?;
        Ok(ArtifactDir { path, _held: held })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A file in the directory.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A Unix socket path for `name` in the directory (see [`socket_in`]).
    pub(crate) fn socket(&self, name: &str) -> PathBuf {
        socket_in(&self.path, name)
    }
}

/// A Unix socket path for `name`: in `dir` when short enough for
/// `sun_path`, else a unique name in the private [`state_dir`] (never a
/// guessable name in the shared temp dir).
pub(crate) fn socket_in(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return path;
    }
    let tag = fnv1a(path.as_os_str().as_encoded_bytes());
    state_dir().join(format!("{tag:016x}-{name}"))
}

/// Like [`socket_in`], but never a path with a `:` (a test's name has
/// `::`), which gdb's `target remote` would take for `host:port`.
pub(crate) fn plain_socket_in(dir: &Path, name: &str) -> PathBuf {
    let path = socket_in(dir, name);
    if !path.as_os_str().as_encoded_bytes().contains(&b':') {
        return path;
    }
    let tag = fnv1a(path.as_os_str().as_encoded_bytes());
    state_dir().join(format!("{tag:016x}-{name}"))
}

/// Writes `cmdline.txt` and `repro.sh` for `machine`'s last launch into
/// `dir` (the test's artifact dir, or a sibling's).
pub(crate) fn write_launch_files(
    dir: &Path,
    test: &str,
    machine: &Machine,
    cwd: &Path,
    notes: &[String],
) -> io::Result<()> {
    let socket = socket_in(dir, "qmp.sock");
    let repro = for_humans(machine.repro_command(&socket));
    write_cmdline(dir, machine.command_line(), notes)?;
    write_repro(dir, test, &repro, &socket, cwd, notes)
}

/// Writes `cmdline.txt`: the notes as `#` comments, then the command line
/// on one shell-quoted line.
fn write_cmdline(dir: &Path, command: &[String], notes: &[String]) -> io::Result<()> {
    let mut text = String::new();
    for note in notes {
        text.push_str(&comment(note));
    }
    text.push_str(&shell_join(command)?);
    text.push('\n');
    fs::write(dir.join("cmdline.txt"), text)
}

/// Writes an executable `repro.sh` that runs `repro` (from
/// [`Machine::repro_command`](crate::Machine::repro_command) and
/// [`for_humans`], with QMP on `socket`) from `cwd`.
fn write_repro(
    dir: &Path,
    test: &str,
    repro: &Repro,
    socket: &Path,
    cwd: &Path,
    notes: &[String],
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let socket_q = quote(&socket.to_string_lossy())?;
    // Paths and notes may hold newlines: every line is a comment.
    let header = [
        format!("Relaunches the VM of test `{test}` by hand (written by qemu-test)."),
        String::new(),
        "The guest's console is on this terminal (Ctrl-C quits QEMU).".into(),
        format!("QMP listens on {}, e.g.:", socket.display()),
        format!("  socat - UNIX-CONNECT:{socket_q}"),
        "  {\"execute\": \"qmp_capabilities\"}".into(),
        "  {\"execute\": \"query-status\"}".into(),
        "Add -s -S below to debug the guest with gdb (target remote :1234).".into(),
    ];
    let mut text = "#!/bin/sh\n".to_string();
    for line in &header {
        text.push_str(&comment(line));
    }
    for note in repro.notes.iter().chain(notes) {
        text.push_str(&comment(&format!("note: {note}")));
    }
    text.push_str(&format!(
        "\nset -e\ncd {}\nrm -f {socket_q}\nexec",
        quote(&cwd.to_string_lossy())?
    ));
    // One option (and its value) per line.
    for (i, arg) in repro.args.iter().enumerate() {
        let sep = if i > 0 && arg.starts_with('-') {
            " \\\n    "
        } else {
            " "
        };
        text.push_str(sep);
        text.push_str(&quote(arg)?);
    }
    text.push('\n');
    let path = dir.join("repro.sh");
    fs::write(&path, text)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
}

impl ArtifactDir {
    /// Keeps the directory, or removes it; returns it if kept. Either way
    /// the run no longer holds it.
    pub(crate) fn finish(self, keep: bool) -> Option<PathBuf> {
        if keep {
            return Some(self.path.clone());
        }
        let _ = fs::remove_dir_all(&self.path);
        // Leave no empty per-binary or per-package dir behind either:
        // `remove_dir` removes only an empty one, never a sibling's.
        let binary = self.path.parent();
        for dir in [binary, binary.and_then(Path::parent)]
            .into_iter()
            .flatten()
        {
            if fs::remove_dir(dir).is_err() {
                break;
            }
        }
        None
    }
}

/// Removes the dirs of `name` (`name`, `name.N`) in `binary_dir` that no
/// live run holds; returns the ones that one does.
fn remove_finished(binary_dir: &Path, name: &str) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(binary_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut live = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(entry_name) = file_name.to_str() else {
            continue;
        };
        let ours = entry_name == name
            || entry_name
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !ours {
            continue;
        }
        let path = entry.path();
        // Not a directory (or not ours to open): removed below, or reported.
        let held = crate::os::try_lock_dir(&path).ok();
        if matches!(held, Some(None)) {
            live.push(path);
            continue;
        }
        let removed = if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("removing the stale {}: {e}", path.display()),
                ))
            }
        }
    }
    Ok(live)
}

/// The command line of `repro.sh`, and what it could not reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Repro {
    pub(crate) args: Vec<String>,
    pub(crate) notes: Vec<String>,
}

/// Drops from a [`Machine::repro_command`](crate::Machine::repro_command)
/// what only makes sense inside the runner: the pause-mode monitor (see
/// [`pause_monitor_args`]) and fds the test passed with `-add-fd` (noted).
pub(crate) fn for_humans(command: Vec<String>) -> Repro {
    let mut args = Vec::with_capacity(command.len());
    let mut notes = Vec::new();
    let pause_mon = format!("chardev={PAUSE_MONITOR_ID},mode=control");
    let mut iter = command.into_iter().peekable();
    while let Some(arg) = iter.next() {
        let value = match (arg.as_str(), iter.peek()) {
            ("-chardev" | "-mon" | "-add-fd", Some(value)) => value.clone(),
            _ => {
                args.push(arg);
                continue;
            }
        };
        iter.next();
        match arg.as_str() {
            "-chardev" if chardev_id(&value) == Some(PAUSE_MONITOR_ID) => {}
            "-mon" if value == pause_mon => {}
            "-add-fd" => notes.push(format!(
                "`-add-fd {value}` is left out: the fd was passed by the test"
            )),
            _ => args.extend([arg, value]),
        }
    }
    Repro { args, notes }
}

/// The `id=` of a `-chardev` value.
fn chardev_id(value: &str) -> Option<&str> {
    value.split(',').find_map(|part| part.strip_prefix("id="))
}

/// The chardev id of the extra QMP monitor added in pause mode.
pub(crate) const PAUSE_MONITOR_ID: &str = "qemu-test-pause";

/// The arguments adding the pause-mode monitor: a QMP server on `socket`.
pub(crate) fn pause_monitor_args(socket: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!(
            "socket,id={PAUSE_MONITOR_ID},path={},server=on,wait=off",
            escape_opt(&socket.to_string_lossy())
        ),
        "-mon".into(),
        format!("chardev={PAUSE_MONITOR_ID},mode=control"),
    ]
}

/// `text` as shell comment lines, `# ` before each of its lines (`#` alone
/// before an empty one), so that no newline in it can end the comment and
/// start a command.
fn comment(text: &str) -> String {
    text.split('\n')
        .map(|line| match line {
            "" => "#\n".to_string(),
            line => format!("# {line}\n"),
        })
        .collect()
}

fn quote(arg: &str) -> io::Result<String> {
    shlex::try_quote(arg).map(|q| q.into_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot quote {arg:?} for a shell: {e}"),
        )
    })
}

/// The command line, shell-quoted with `shlex`.
pub(crate) fn shell_join(command: &[String]) -> io::Result<String> {
    shlex::try_join(command.iter().map(String::as_str)).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot quote the command line: {e}"),
        )
    })
}

/// The last `n` lines of a file, lossily decoded; empty when unreadable.
pub(crate) fn tail_file(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    tail_lines(&text, n)
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let trimmed = text.trim_end_matches(['\n', '\r']);
    let start = trimmed
        .rmatch_indices('\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    if n == 0 {
        return String::new();
    }
    trimmed[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hashes_are_stripped_from_binary_names() {
        assert_eq!(strip_hash("runner_vm-0123456789abcdef"), "runner_vm");
        assert_eq!(strip_hash("quickstart"), "quickstart");
        assert_eq!(strip_hash("my-tests"), "my-tests");
    }

    #[test]
    fn binaries_have_a_dir_per_package() {
        let root = Path::new("/r");
        assert_eq!(binary_dir(root, "my-pkg", "vm"), Path::new("/r/my-pkg/vm"));
        assert_eq!(
            binary_dir(root, "snapshots", "vm"),
            Path::new("/r/snapshots.package/vm")
        );
    }

    #[test]
    fn test_names_make_file_names() {
        assert_eq!(file_name("boot::echoes"), "boot::echoes");
        assert_eq!(file_name("a b/c"), "a_b_c");
        assert_eq!(file_name(".."), "_..");
    }

    #[test]
    fn runner_only_arguments_are_dropped() {
        let mut command = strings(&[
            "qemu-system-aarch64",
            "-S",
            "-add-fd",
            "fd=9,set=1",
            "-m",
            "64M",
        ]);
        command.extend(pause_monitor_args(Path::new("/a,b/p.sock")));
        command.push("-no-reboot".into());
        let repro = for_humans(command);
        assert_eq!(
            repro.args,
            strings(&["qemu-system-aarch64", "-S", "-m", "64M", "-no-reboot"])
        );
        assert_eq!(repro.notes.len(), 1);
        assert!(repro.notes[0].contains("-add-fd fd=9,set=1"));
        assert_eq!(
            pause_monitor_args(Path::new("/a,b/p.sock"))[1],
            "socket,id=qemu-test-pause,path=/a,,b/p.sock,server=on,wait=off"
        );
    }

    #[test]
    fn repro_sh_is_quoted_by_shlex() {
        let dir = tempfile::tempdir().unwrap();
        let art = ArtifactDir::prepare(&dir.path().join("pkg/bin"), "t::x").unwrap();
        let command = strings(&["qemu-system-x86_64", "-append", "a 'b' $(c)", "-S"]);
        let repro = Repro {
            args: command.clone(),
            notes: vec!["left out".into()],
        };
        write_repro(
            art.path(),
            "t::x",
            &repro,
            &art.socket("qmp.sock"),
            Path::new("/some where"),
            &["a note".into()],
        )
        .unwrap();
        let text = fs::read_to_string(art.file("repro.sh")).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{text}");
        assert!(text.contains("cd '/some where'\n"), "{text}");
        assert!(
            text.contains("# note: a note\n# note: left out")
                || text.contains("# note: left out\n# note: a note"),
            "{text}"
        );
        let exec = text
            .lines()
            .skip_while(|l| !l.starts_with("exec"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("\\\n", "");
        let words = shlex::split(&exec).unwrap();
        assert_eq!(&words[1..], &command[..]);
        write_cmdline(art.path(), &command, &[]).unwrap();
        let line = fs::read_to_string(art.file("cmdline.txt")).unwrap();
        assert_eq!(shlex::split(&line).unwrap(), command);
    }

    #[test]
    fn stale_dirs_are_replaced_and_finish_removes() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("pkg/bin");
        let art = ArtifactDir::prepare(&bin, "t").unwrap();
        fs::write(art.file("stale"), "x").unwrap();
        // An earlier run that was killed: its directory is still there,
        // and nobody holds it any more.
        drop(art);
        fs::create_dir(bin.join("t.3")).unwrap();
        let art = ArtifactDir::prepare(&bin, "t").unwrap();
        assert_eq!(art.path(), bin.join("t"));
        assert!(!art.file("stale").exists());
        assert!(!bin.join("t.3").exists());
        let kept = art.finish(true).unwrap();
        assert!(kept.is_dir());
        let art = ArtifactDir::prepare(&bin, "t").unwrap();
        assert_eq!(art.finish(false), None);
        assert!(!dir.path().join("pkg").exists(), "no empty parents left");
        assert!(dir.path().is_dir());
    }

    #[test]
    fn concurrent_runs_of_one_test_keep_their_own_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("pkg/bin");
        let first = ArtifactDir::prepare(&bin, "t").unwrap();
        fs::write(first.file("qemu.log"), "first run").unwrap();
        // A second run while the first goes on: a dir of its own, at once.
        let second = ArtifactDir::prepare(&bin, "t").unwrap();
        assert_eq!(second.path(), bin.join("t.2"));
        fs::write(second.file("qemu.log"), "second run").unwrap();
        // Both fail and keep their dirs; neither touched the other's.
        let second = second.finish(true).unwrap();
        let first = first.finish(true).unwrap();
        assert_eq!(
            fs::read_to_string(first.join("qemu.log")).unwrap(),
            "first run"
        );
        assert_eq!(
            fs::read_to_string(second.join("qemu.log")).unwrap(),
            "second run"
        );
        // A later run replaces both: they belong to finished runs.
        let third = ArtifactDir::prepare(&bin, "t").unwrap();
        assert_eq!(third.path(), bin.join("t"));
        assert!(!third.file("qemu.log").exists());
        assert!(!second.exists());
        // A run held by another process is just as safe (the lock is the
        // kernel's, per open directory).
        let held = crate::os::try_lock_dir(third.path()).unwrap();
        assert!(held.is_none(), "a live run's dir cannot be locked again");
    }

    /// Sibling tests of one binary create and finish their dirs at once,
    /// from `threads` threads, `rounds` times each: every create works and
    /// nothing is left. (Before: a finishing test removed the empty
    /// per-binary dir between a sibling's making it and making its own dir
    /// in it, "creating ...: No such file or directory".)
    fn churn(root: &Path, tag: &str, threads: usize, rounds: usize) -> Vec<String> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let root = root.to_path_buf();
                let tag = tag.to_string();
                std::thread::spawn(move || {
                    let mut errors = Vec::new();
                    for r in 0..rounds {
                        let bin = binary_dir(&root, "pkg", "bin");
                        match ArtifactDir::prepare(&bin, &format!("m::{tag}_{t}")) {
                            Ok(art) => {
                                if let Err(e) = fs::write(art.file("qemu.log"), "x") {
                                    errors.push(format!("round {r}: writing: {e}"));
                                }
                                art.finish(false);
                            }
                            Err(e) => errors.push(format!("round {r}: {e}")),
                        }
                    }
                    errors
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    }

    #[test]
    fn siblings_create_and_finish_at_once_in_threads() {
        let dir = tempfile::tempdir().unwrap();
        let errors = churn(dir.path(), "thread", 8, 200);
        assert!(errors.is_empty(), "{} failures: {errors:?}", errors.len());
        assert!(!dir.path().join("pkg").exists());
    }

    /// The helper process of the next test: churns in `QEMU_TEST_CHURN_ROOT`.
    #[test]
    #[ignore = "run by siblings_create_and_finish_at_once_in_processes"]
    fn churn_process() {
        let root = std::env::var_os("QEMU_TEST_CHURN_ROOT").expect("QEMU_TEST_CHURN_ROOT");
        let tag = format!("p{}", std::process::id());
        let errors = churn(Path::new(&root), &tag, 4, 150);
        assert!(errors.is_empty(), "{} failures: {errors:?}", errors.len());
    }

    #[test]
    fn siblings_create_and_finish_at_once_in_processes() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let name = "runner::artifacts::tests::churn_process";
        let children: Vec<_> = (0..4)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["--ignored", "--exact", name, "--test-threads", "1"])
                    .env("QEMU_TEST_CHURN_ROOT", dir.path())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // This process churns alongside them.
        let errors = churn(dir.path(), "parent", 4, 150);
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.contains("1 passed"), "the helper ran: {stdout}");
        }
        assert!(errors.is_empty(), "{} failures: {errors:?}", errors.len());
        assert!(!dir.path().join("pkg").exists());
    }

    #[test]
    fn long_socket_paths_move_to_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(120);
        let art = ArtifactDir::prepare(&dir.path().join("pkg/bin"), &long).unwrap();
        let socket = art.socket("qmp.sock");
        assert_eq!(socket.parent(), Some(state_dir().as_path()));
        assert!(socket.to_string_lossy().ends_with("-qmp.sock"));
        let short = ArtifactDir::prepare(&dir.path().join("pkg/bin"), "t").unwrap();
        assert_eq!(short.socket("qmp.sock"), short.file("qmp.sock"));
    }

    #[test]
    fn multi_line_notes_and_paths_stay_comments() {
        assert_eq!(comment("a\n\nb"), "# a\n#\n# b\n");
        let dir = tempfile::tempdir().unwrap();
        let art = ArtifactDir::prepare(&dir.path().join("pkg/bin"), "t").unwrap();
        let repro = Repro {
            args: strings(&["qemu-system-x86_64", "-S"]),
            notes: vec!["left out\nrm -rf x #".into()],
        };
        let socket = Path::new("/a\n$(rm -rf y)/qmp.sock");
        write_repro(
            art.path(),
            "t",
            &repro,
            socket,
            Path::new("/"),
            &["n\nrm z".into()],
        )
        .unwrap();
        let text = fs::read_to_string(art.file("repro.sh")).unwrap();
        let head: Vec<&str> = text.lines().take_while(|l| !l.is_empty()).collect();
        assert!(head.iter().all(|l| l.starts_with('#')), "{text}");
        assert!(head.contains(&"# rm -rf x #"), "{text}");
        assert!(head.contains(&"# rm z"), "{text}");
        assert!(text.contains("\n\nset -e\n"), "{text}");
        write_cmdline(art.path(), &repro.args, &["one\ntwo".into()]).unwrap();
        assert_eq!(
            fs::read_to_string(art.file("cmdline.txt")).unwrap(),
            "# one\n# two\nqemu-system-x86_64 -S\n"
        );
    }

    #[test]
    fn artifact_dirs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let art = ArtifactDir::prepare(&dir.path().join("pkg/bin"), "t").unwrap();
        let mode = fs::metadata(art.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(tail_lines("", 3), "");
        assert_eq!(tail_lines("a\n", 0), "");
    }
}
