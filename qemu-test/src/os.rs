//! Platform code: private directories, files written atomically, lock
//! files, spawning QEMU in its own process group with a parent-death
//! signal, signalling and waiting with deadlines.
//!
//! Everything here is Linux-specific (`PR_SET_PDEATHSIG`, pidfd); the rest of
//! the crate calls these functions and never branches on the platform.

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Creates `dir` (and its parents) with mode 0700, or checks that an
/// existing `dir` belongs to us and is not accessible to others.
pub(crate) fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} exists and is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != rustix::process::getuid().as_raw() {
        return Err(io::Error::other(format!(
            "{} belongs to another user (uid {}); refusing to use it",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `data` to `path` through a temp file in the same dir renamed into
/// place: readers see the old file or the whole new one, never a part.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    io::Write::write_all(&mut tmp, data)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Opens the lock file at `path`, creating it if needed.
pub(crate) fn open_lock(path: &Path) -> io::Result<fs::File> {
    fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// `flock(op)` on `file` (retried when a signal interrupts it), then
/// whether `file` is still the file at `path`.
///
/// Lock files are removed by whoever holds them when they are done with
/// them, so that they do not pile up; whoever waited on a removed one then
/// holds a lock nobody else can find. So a caller that gets `false` drops
/// `file` and locks a freshly opened one ([`lock_current`] does).
pub(crate) fn flock_current(
    file: &fs::File,
    path: &Path,
    op: rustix::fs::FlockOperation,
) -> io::Result<bool> {
    while let Err(e) = rustix::fs::flock(file, op) {
        if e != rustix::io::Errno::INTR {
            return Err(e.into());
        }
    }
    Ok(match (file.metadata(), fs::metadata(path)) {
        (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
        _ => false,
    })
}

/// Blocks until the file at `path` (created if needed) is locked with `op`
/// (see [`flock_current`]).
pub(crate) fn lock_current(path: &Path, op: rustix::fs::FlockOperation) -> io::Result<fs::File> {
    loop {
        let file = open_lock(path)?;
        if flock_current(&file, path, op)? {
            return Ok(file);
        }
    }
}

/// This user's dir in the temp dir, `$TMPDIR/qemu-test-<uid>` (mode 0700),
/// created if needed. Its name is predictable, so in a shared `/tmp`
/// another user may have made it first, or left a symlink there: that is
/// an error, never a dir to use.
pub(crate) fn user_temp_dir() -> io::Result<std::path::PathBuf> {
    let uid = rustix::process::getuid().as_raw();
    let dir = std::env::temp_dir().join(format!("qemu-test-{uid}"));
    create_private_dir_all(&dir)?;
    Ok(dir)
}

/// A request to the spawner thread.
type SpawnRequest = (Command, Vec<RawFd>, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` in its own process group, with `SIGKILL` as its
/// parent-death signal, inheriting exactly the listed extra fds.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// not the process. Test harnesses run tests on short-lived threads, so all
/// spawns go through one long-lived thread: QEMU dies with the test
/// process, never with the test's thread.
pub(crate) fn spawn(cmd: Command, pass_fds: Vec<RawFd>) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("qemu-test-spawner".into())
            .spawn(move || {
                for (cmd, fds, reply) in rx {
                    let _ = reply.send(spawn_here(cmd, fds));
                }
            })
            .expect("failed to start the qemu-test spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, pass_fds, tx))
        .map_err(|_| io::Error::other("the qemu-test spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the qemu-test spawner thread is gone"))?
}

fn spawn_here(mut cmd: Command, pass_fds: Vec<RawFd>) -> io::Result<Child> {
    let parent = rustix::process::getpid();
    cmd.process_group(0);
    // SAFETY: the closure only makes async-signal-safe system calls
    // (prctl, getppid, fcntl) and allocates only on the error path, when
    // the parent is gone anyway.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died between fork and prctl.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other(
                    "the test process exited while QEMU was starting",
                ));
            }
            for &fd in &pass_fds {
                let fd = BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `signal` to the whole process group led by `pid`.
pub(crate) fn kill_group(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("pid 0"))?;
    match rustix::process::kill_process_group(pid, signal) {
        Ok(()) => Ok(()),
        // The group is gone already: nothing to signal.
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sends `signal` to one process.
pub(crate) fn kill_one(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("pid 0"))?;
    match rustix::process::kill_process(pid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A handle that becomes readable when a process exits (a pidfd).
pub(crate) fn pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(pid as i32)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Waits until any of `fds` is readable or the deadline passes; returns
/// the indices of the readable fds (empty on timeout). `None` waits forever.
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> io::Result<Vec<usize>> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    loop {
        let mut pollfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        match poll(&mut pollfds, timeout.as_ref()) {
            Ok(_) => {
                return Ok(pollfds
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.revents().is_empty())
                    .map(|(i, _)| i)
                    .collect())
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for `child` to exit, up to `timeout` (`None`: forever). Returns
/// `Ok(None)` on timeout.
pub(crate) fn wait_timeout(
    child: &mut Child,
    timeout: Option<Duration>,
) -> io::Result<Option<std::process::ExitStatus>> {
    if let Some(status) = child.try_wait()? {
        return Ok(Some(status));
    }
    let Some(timeout) = timeout else {
        return child.wait().map(Some);
    };
    let deadline = Instant::now() + timeout;
    match pidfd(child.id()) {
        Some(fd) => {
            poll_readable(&[fd.as_fd()], Some(deadline))?;
            child.try_wait()
        }
        // No pidfd (very old kernel): fall back to short sleeps.
        None => loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(5));
        },
    }
}

/// Python-style return code: the exit code, or minus the signal number.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| -s))
}
