//! Unix sockets: reading without blocking, passing file descriptors.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// Reads what `socket` has without blocking (`WouldBlock` if nothing).
pub(crate) fn recv_now(socket: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    let (n, _) = rustix::net::recv(socket, buf, rustix::net::RecvFlags::DONTWAIT)?;
    Ok(n)
}

/// Sends `payload` and the descriptor `fd` over the Unix socket `socket`
/// (`SCM_RIGHTS`).
pub(crate) fn send_fd(socket: impl AsFd, payload: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let fds = [fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(
        socket,
        &[io::IoSlice::new(payload)],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}
