//! Descriptors passed over Unix sockets (`SCM_RIGHTS`): one message with a
//! few descriptors attached, sent or received. The one home of this code
//! for the runtime (the transport's rendezvous, the stats segment's broker
//! client) and the supervisor (the segment broker).
//!
//! Built on rustix's ancillary buffers (its linux_raw backend: raw
//! syscalls, no C library, which the runtime may not call), with the
//! control buffers on the stack: no allocation, callable on the gate's full
//! path and in a vfork child.
//!
//! Invariants:
//! - every descriptor a received message carries is either handed to the
//!   caller (the first `N`, as owned descriptors) or closed here: none
//!   leaks, whatever the message looked like;
//! - one call is one `sendmsg` or `recvmsg`; `EINTR` and `EAGAIN` come back
//!   to the caller, who knows whether to wait or retry.

#![no_std]

use core::mem::MaybeUninit;

pub use rustix::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
pub use rustix::io::Errno;
pub use rustix::net::{RecvFlags, SendFlags};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, SendAncillaryBuffer, SendAncillaryMessage};

/// Descriptors one sent message carries at most.
pub const MAX_SEND: usize = 16;
/// Descriptors a receive has room for (more are cut by the kernel, which
/// closes them and says so: [`Received::truncated`]).
const RECV_ROOM: usize = 16;

/// Sends `bytes` as one message on `sock`, with `fds` attached (at most
/// [`MAX_SEND`]; none: a plain message). Returns the bytes sent.
pub fn send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>], flags: SendFlags) -> Result<usize, Errno> {
    if fds.len() > MAX_SEND {
        return Err(Errno::INVAL);
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_SEND))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Errno::INVAL);
    }
    rustix::net::sendmsg(sock, &[rustix::io::IoSlice::new(bytes)], &mut control, flags)
}

/// The sender's credentials (`SCM_CREDENTIALS`, on a socket with
/// `SO_PASSCRED`), as the kernel vouches for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// One received message.
pub struct Received<const N: usize> {
    /// Bytes of the message (written at the start of the caller's buffer).
    pub len: usize,
    /// The first `N` descriptors it carried, close-on-exec when the receive
    /// asked for it (`RecvFlags::CMSG_CLOEXEC`); `fds[..count]` are `Some`.
    pub fds: [Option<OwnedFd>; N],
    pub count: usize,
    /// It carried more than `N` (those are closed).
    pub extra: bool,
    /// The kernel cut the message or its descriptors (`MSG_TRUNC`,
    /// `MSG_CTRUNC`).
    pub truncated: bool,
    /// The sender's credentials, when the socket passes them.
    pub cred: Option<Cred>,
}

impl<const N: usize> Received<N> {
    /// Descriptor `i` as a raw number, given over to the caller (who closes
    /// it); -1 when there is none.
    pub fn take_raw(&mut self, i: usize) -> RawFd {
        match self.fds.get_mut(i).and_then(Option::take) {
            Some(fd) => fd.into_raw_fd(),
            None => -1,
        }
    }
}

/// Receives one message on `sock` into `buf`, with the descriptors and
/// credentials it carries (see [`Received`]).
pub fn recv<const N: usize>(sock: BorrowedFd<'_>, buf: &mut [u8], flags: RecvFlags) -> Result<Received<N>, Errno> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(RECV_ROOM), ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(sock, &mut [rustix::io::IoSliceMut::new(buf)], &mut control, flags)?;
    let mut out = Received {
        len: got.bytes,
        fds: [const { None }; N],
        count: 0,
        extra: false,
        truncated: got.flags.intersects(rustix::net::ReturnFlags::TRUNC | rustix::net::ReturnFlags::CTRUNC),
        cred: None,
    };
    for m in control.drain() {
        match m {
            RecvAncillaryMessage::ScmRights(fds) => {
                for fd in fds {
                    if out.count < N {
                        out.fds[out.count] = Some(fd);
                        out.count += 1;
                    } else {
                        // Dropped: closed.
                        out.extra = true;
                    }
                }
            }
            RecvAncillaryMessage::ScmCredentials(c) => {
                out.cred = Some(Cred { pid: c.pid.as_raw_nonzero().get(), uid: c.uid.as_raw(), gid: c.gid.as_raw() });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `fd` borrowed for one call.
///
/// # Safety
/// `fd` is an open descriptor for the duration of the borrow.
pub unsafe fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: by the caller's promise.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use rustix::fd::AsFd;
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap()
    }

    fn ino(fd: BorrowedFd<'_>) -> u64 {
        rustix::fs::fstat(fd).unwrap().st_ino
    }

    #[test]
    fn descriptors_arrive_in_order_and_extra_ones_are_closed() {
        let (a, b) = pair();
        let (x, _xp) = pair();
        let (y, _yp) = pair();
        let sent = send(a.as_fd(), b"hello", &[x.as_fd(), y.as_fd(), x.as_fd()], SendFlags::empty()).unwrap();
        assert_eq!(sent, 5);
        let mut buf = [0u8; 16];
        let mut got = recv::<2>(b.as_fd(), &mut buf, RecvFlags::CMSG_CLOEXEC).unwrap();
        assert_eq!((got.len, got.count, got.extra, got.truncated), (5, 2, true, false));
        assert_eq!(&buf[..5], b"hello");
        let inos: std::vec::Vec<u64> = got.fds.iter().map(|f| ino(f.as_ref().unwrap().as_fd())).collect();
        assert_eq!(inos, [ino(x.as_fd()), ino(y.as_fd())]);
        let raw = got.take_raw(1);
        assert!(raw >= 0 && got.take_raw(1) == -1);
        // SAFETY: `raw` is ours, received just now.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }

    #[test]
    fn too_many_to_send_is_refused_and_none_is_a_plain_message() {
        let (a, b) = pair();
        let fds = [a.as_fd(); MAX_SEND + 1];
        assert_eq!(send(a.as_fd(), b"x", &fds, SendFlags::empty()), Err(Errno::INVAL));
        assert_eq!(send(a.as_fd(), b"plain", &[], SendFlags::empty()), Ok(5));
        let mut buf = [0u8; 2];
        let got = recv::<1>(b.as_fd(), &mut buf, RecvFlags::empty()).unwrap();
        assert_eq!((got.count, got.truncated, got.cred), (0, true, None), "5 bytes into 2");
        assert_eq!(recv::<1>(b.as_fd(), &mut buf, RecvFlags::DONTWAIT).err(), Some(Errno::AGAIN));
    }

    #[test]
    fn credentials_come_with_so_passcred() {
        let (a, b) = pair();
        rustix::net::sockopt::set_socket_passcred(&b, true).unwrap();
        send(a.as_fd(), b"x", &[], SendFlags::empty()).unwrap();
        let mut buf = [0u8; 4];
        let got = recv::<1>(b.as_fd(), &mut buf, RecvFlags::empty()).unwrap();
        let c = got.cred.expect("credentials");
        assert_eq!(c.pid, std::process::id() as i32);
        assert_eq!(c.uid, rustix::process::getuid().as_raw());
        assert_eq!(got.count, 0);
    }
}
