//! Reaching a port inside another network namespace.
//!
//! A socket belongs to the network namespace of the thread that created
//! it, for its whole life. So a connection into a container's loopback is
//! made by a short-lived thread that enters the namespace (setns), creates
//! and connects the socket, and ends; the caller gets an ordinary
//! `TcpStream` whose traffic stays on that namespace's `lo`. No thread of
//! the caller ever changes namespace, so nothing needs switching back.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};

/// Opens (and holds) the network namespace of process `pid`.
pub(crate) fn open(pid: u32) -> std::io::Result<OwnedFd> {
    Ok(std::fs::File::open(format!("/proc/{pid}/ns/net"))?.into())
}

/// Connects to `addr` from inside the network namespace `ns`.
pub(crate) fn connect_in(ns: &OwnedFd, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: `fd` is an open namespace fd borrowed for this call;
            // setns changes only this thread, which ends after connecting.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            TcpStream::connect(addr)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the connecting thread panicked")))
    })
}
