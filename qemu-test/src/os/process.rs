//! Child processes: spawning QEMU in its own process group with a
//! parent-death signal, signalling (by pid or pidfd), waiting with
//! deadlines.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Pid;

use super::poll::poll_readable;

/// The signals the crate sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// `SIGTERM`: please exit.
    Term,
    /// `SIGKILL`.
    Kill,
}

impl Signal {
    fn raw(self) -> rustix::process::Signal {
        match self {
            Signal::Term => rustix::process::Signal::TERM,
            Signal::Kill => rustix::process::Signal::KILL,
        }
    }
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
            rustix::process::set_parent_process_death_signal(Some(Signal::Kill.raw()))?;
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
    match rustix::process::kill_process_group(pid, signal.raw()) {
        Ok(()) => Ok(()),
        // The group is gone already: nothing to signal.
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sends `signal` to one process.
pub(crate) fn kill_one(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("pid 0"))?;
    match rustix::process::kill_process(pid, signal.raw()) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What became of a child process, found without reaping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildState {
    /// Still running.
    Running,
    /// Exited, not yet reaped: its pid and process group id stay reserved,
    /// so signalling them reaches nobody else.
    Exited,
    /// Reaped already: its pid may belong to another process by now.
    Reaped,
}

/// The state of our child `pid`, leaving it waitable (`WNOWAIT`): a check
/// that reaped would free the pid for reuse while the child is still
/// signalled by pid later (on a busy host with the default `pid_max` of
/// 32768, pids wrap within minutes).
pub(crate) fn child_state(pid: u32) -> ChildState {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return ChildState::Reaped;
    };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    loop {
        match waitid(WaitId::Pid(pid), options) {
            Ok(Some(_)) => return ChildState::Exited,
            Ok(None) => return ChildState::Running,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return ChildState::Reaped,
        }
    }
}

/// A handle that becomes readable when a process exits (a pidfd).
pub(crate) fn pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(pid as i32)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Sends `signal` to the process behind `pidfd` (never a recycled pid).
pub(crate) fn kill_pidfd(pidfd: impl AsFd, signal: Signal) -> io::Result<()> {
    rustix::process::pidfd_send_signal(pidfd, signal.raw()).map_err(Into::into)
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

/// The soft `RLIMIT_MEMLOCK` in bytes (`u64::MAX` when unlimited).
pub(crate) fn memlock_limit() -> Option<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock);
    Some(limit.current.unwrap_or(u64::MAX))
}

/// Python-style return code: the exit code, or minus the signal number.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| -s))
}
