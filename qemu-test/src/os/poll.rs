//! Waiting for file descriptors with deadlines.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

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

/// Waits until `fd` is readable (or closed), or `deadline` passes
/// (`Ok(false)` then); `None` waits forever.
pub(crate) fn wait_readable(fd: impl AsFd, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                // Far deadlines are waited for in steps.
                let left = left.min(Duration::from_secs(3600));
                Some(Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: 3600,
                    tv_nsec: 0,
                }))
            }
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What to wait for on one fd in [`poll_ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interest {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

/// Waits until any of `fds` is ready for what its [`Interest`] asks, or
/// `timeout` passes (`None`: forever); returns `(readable, writable)` per
/// fd, in order. An error or hang-up counts as both (the next read or
/// write tells which).
pub(crate) fn poll_ready(
    fds: &[(BorrowedFd<'_>, Interest)],
    timeout: Option<Duration>,
) -> io::Result<Vec<(bool, bool)>> {
    let mut pollfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, interest)| {
            let mut flags = PollFlags::empty();
            if interest.read {
                flags |= PollFlags::IN;
            }
            if interest.write {
                flags |= PollFlags::OUT;
            }
            PollFd::new(fd, flags)
        })
        .collect();
    let timeout = timeout.map(|t| Timespec {
        tv_sec: t.as_secs().min(3600) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match poll(&mut pollfds, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(vec![(false, false); fds.len()]),
        Err(e) => return Err(e.into()),
    }
    let broken = PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL;
    Ok(pollfds
        .iter()
        .map(|p| {
            let r = p.revents();
            let bad = r.intersects(broken);
            (
                r.contains(PollFlags::IN) || bad,
                r.contains(PollFlags::OUT) || bad,
            )
        })
        .collect())
}

/// What [`wait_io`] found a socket ready for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// Something to read, or the peer closed its end (a read says which).
    pub(crate) readable: bool,
    /// Room to write (or the peer closed its end: a write says so).
    pub(crate) writable: bool,
}

/// Waits until `fd` is readable (or closed) or, with `write`, writable, or
/// until `deadline` passes (nothing ready then).
pub(crate) fn wait_io(fd: impl AsFd, write: bool, deadline: Instant) -> io::Result<Ready> {
    let interest = Interest { read: true, write };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ready = poll_ready(&[(fd.as_fd(), interest)], Some(left))?;
        let (readable, writable) = ready[0];
        if readable || writable || left.is_zero() {
            return Ok(Ready { readable, writable });
        }
    }
}
