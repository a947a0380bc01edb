//! Platform code, and the crate's only user of `rustix` (system calls):
//! private directories, atomic writes, lock files, child processes in their
//! own process group with a parent-death signal, signals, waits with
//! deadlines, Unix-socket details.
//!
//! Everything here is Linux-specific (`PR_SET_PDEATHSIG`, pidfd); the rest
//! of the crate calls these functions and never branches on the platform.
//!
//! | module | concern |
//! | --- | --- |
//! | `fs` | private dirs (0700, owned by us), atomic writes, the per-user temp dir, files in memory |
//! | `lock` | `flock`, and lock files removed by their holder ([`FileLock`]) |
//! | `process` | spawning QEMU, signals, pidfds, waiting with a timeout |
//! | `pipe` | pipes (the console on QEMU's stdio), non-blocking reads |
//! | `poll` | waiting for file descriptors (readable, writable) with deadlines |
//! | `socket` | non-blocking reads, `SCM_RIGHTS` |

mod fs;
mod lock;
mod pipe;
mod poll;
mod process;
mod socket;

pub(crate) use fs::{create_private_dir_all, memory_file, uid, user_temp_dir, write_atomically};
pub(crate) use lock::{
    flock_current, is_locked, open_lock, try_flock_current, try_lock, try_lock_dir, unlock,
    wait_lock, FileLock, LockMode,
};
pub(crate) use pipe::{pipe, set_nonblocking};
pub(crate) use poll::{poll_readable, poll_ready, wait_io, wait_readable, Interest};
pub(crate) use process::{
    child_state, exit_code, kill_group, kill_one, kill_pidfd, memlock_limit, pidfd, spawn,
    wait_timeout, ChildState, Signal,
};
pub(crate) use socket::{recv_now, send_fd};
