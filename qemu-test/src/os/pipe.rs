//! Pipes: QEMU's stdin and stdout when they carry the console.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

/// A pipe: (read end, write end), both closed on exec (a child gets an end
/// only as its stdin or stdout).
pub(crate) fn pipe() -> io::Result<(File, File)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((File::from(read), File::from(write)))
}

/// Makes reads of `fd` return `WouldBlock` instead of waiting. The flag
/// belongs to the open file: set it only on an end nobody else shares.
pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}
