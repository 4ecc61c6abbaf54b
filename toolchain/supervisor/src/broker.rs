//! The instance's segment broker, served by its reaper.
//!
//! Each process of an instance on the shunt runtime creates its stats
//! segment, `<pid>-<seq>.seg`, in the instance directory. A process that
//! changed its user (`setpriv --reuid`, Go's `SysProcAttr.Credential`) may
//! not: the directory belongs to the instance's first user and stays
//! private to it. It asks the broker instead, over the `SOCK_SEQPACKET`
//! socket pair the supervisor makes per instance (the program inherits one
//! end, named in `SHUNT_SEGMENT_BROKER`; the reaper keeps the other, with
//! `SO_PASSCRED`, so the kernel vouches for each sender's pid and user).
//!
//! A request is 8 bytes, [`SEGMENT_BROKER_MAGIC`] and the sender's pid,
//! with one descriptor: the end of a private socket pair to answer on (the
//! instance's processes share the broker socket, so answers cannot go back
//! on it). The broker checks that the sender (by the kernel's pid, not the
//! claimed one) descends from the reaper, i.e. is a process of this
//! instance, creates `<pid>-<seq>.seg` (0600, `O_EXCL`, the segment's size)
//! owned by the sender's effective user, and answers the magic and 0 with
//! the file's descriptor, or the magic and a negative errno.
//!
//! Messages and their descriptors go through `shunt_fdpass`, the same code
//! as the runtime's side of the exchange (`shunt_core::segment`).
//!
//! Runs in the reaper (see `child.rs`): system calls on stack buffers only,
//! no allocation, and nothing a hostile sender does may block it (every
//! call on a descriptor it sent is non-blocking).

use std::os::fd::RawFd;

use shunt_abi::segment::{SEGMENT_BROKER_MAGIC, SEGMENT_SIZE};
use shunt_fdpass as fdpass;

/// Requests served per wake-up before the reaper reaps again.
const BATCH: usize = 64;
/// How deep a process may be below the reaper (ancestors walked).
const MAX_DEPTH: usize = 4096;

/// What a wake-up of the broker socket found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// The socket is still open to the instance.
    Open,
    /// No process of the instance holds its end any more.
    Closed,
}

/// Serves the requests queued on `sock` (the reaper's end), creating the
/// segments in the directory `dir` (an `O_PATH` descriptor); `reaper` is
/// the caller's pid.
///
/// # Safety
/// `sock` and `dir` are open descriptors of the caller's.
pub(crate) unsafe fn serve(sock: RawFd, dir: RawFd, reaper: i32) -> Served {
    for _ in 0..BATCH {
        let mut req = [0u8; 16];
        // Credentials and the first descriptor (more than one is a bad
        // request; `recv` closes the others).
        // SAFETY: `sock` is the caller's open descriptor (by its promise).
        let got = fdpass::recv::<1>(unsafe { fdpass::borrow(sock) }, &mut req, fdpass::RecvFlags::DONTWAIT | fdpass::RecvFlags::CMSG_CLOEXEC);
        let mut got = match got {
            Ok(g) => g,
            Err(e) if e == fdpass::Errno::AGAIN || e == fdpass::Errno::INTR => return Served::Open,
            Err(_) => return Served::Closed,
        };
        let n = got.len;
        let cred = got.cred;
        let reply: RawFd = got.take_raw(0);
        if n == 0 && reply < 0 {
            // End of file (or an empty message, which no runtime sends).
            return Served::Closed;
        }
        if reply < 0 {
            continue;
        }
        let answer = match cred {
            Some(c) if n == 8 && req[..4] == SEGMENT_BROKER_MAGIC.to_le_bytes() => {
                // SAFETY: `dir` is the caller's; the pid is the kernel's.
                if unsafe { in_instance(c.pid, reaper) } {
                    // SAFETY: as above.
                    unsafe { create_segment(dir, c.pid, c.uid, c.gid) }
                } else {
                    Err(libc::EPERM)
                }
            }
            _ => Err(libc::EPROTO),
        };
        // SAFETY: descriptors the message carried or the broker made.
        unsafe {
            let sent = answer_on(reply, &answer);
            if let Ok((fd, name, len)) = answer {
                if !sent {
                    // Nobody will map it: an empty segment is skipped by the
                    // report, but it need not stay.
                    libc::unlinkat(dir, name[..len].as_ptr().cast(), 0);
                }
                libc::close(fd);
            }
            libc::close(reply);
        }
    }
    Served::Open
}

/// The answer's bytes and descriptor, sent without blocking.
unsafe fn answer_on(reply: RawFd, answer: &Result<(RawFd, [u8; 40], usize), i32>) -> bool {
    let mut ans = [0u8; 8];
    ans[..4].copy_from_slice(&SEGMENT_BROKER_MAGIC.to_le_bytes());
    let status: i32 = match answer {
        Ok(_) => 0,
        Err(e) => -e,
    };
    ans[4..].copy_from_slice(&status.to_le_bytes());
    // SAFETY: `reply` and the answer's fd are open (the caller's promise).
    let fd = answer.as_ref().ok().map(|(fd, _, _)| unsafe { fdpass::borrow(*fd) });
    let fds = fd.as_slice();
    // SAFETY: as above.
    let reply = unsafe { fdpass::borrow(reply) };
    fdpass::send(reply, &ans, fds, fdpass::SendFlags::DONTWAIT | fdpass::SendFlags::NOSIGNAL) == Ok(ans.len())
}

/// Whether `pid` descends from the reaper: every process of the instance
/// does (the reaper is its child subreaper, so even orphans stay below it),
/// and no other process does.
unsafe fn in_instance(pid: i32, reaper: i32) -> bool {
    // SAFETY: open/close of /proc; `parent_of` reads one stat file.
    unsafe {
        let proc_dir = libc::open(c"/proc".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
        if proc_dir < 0 {
            return false;
        }
        let mut p = pid;
        let mut found = false;
        for _ in 0..MAX_DEPTH {
            if p == reaper {
                found = true;
                break;
            }
            if p <= 1 {
                break;
            }
            let mut name = [0u8; 12];
            let len = decimal(&mut name, p as u64);
            match crate::child::parent_of(proc_dir, &name[..len]) {
                Some(parent) => p = parent,
                None => break,
            }
        }
        libc::close(proc_dir);
        found && pid != reaper
    }
}

/// Writes `v` in decimal at the start of `out`; returns its length.
fn decimal(out: &mut [u8], mut v: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = digits[n - 1 - i];
    }
    n
}

/// Creates `<pid>-<seq>.seg` in `dir` for `uid`:`gid`. Returns its
/// descriptor and its NUL-terminated name.
unsafe fn create_segment(dir: RawFd, pid: i32, uid: u32, gid: u32) -> Result<(RawFd, [u8; 40], usize), i32> {
    for seq in 0..4096u64 {
        let mut name = [0u8; 40];
        let mut len = decimal(&mut name, pid as u64);
        name[len] = b'-';
        len += 1;
        len += decimal(&mut name[len..], seq);
        name[len..len + 5].copy_from_slice(b".seg\0");
        len += 5;
        // SAFETY: a NUL-terminated name relative to the caller's `dir`.
        let fd = unsafe {
            libc::openat(
                dir,
                name.as_ptr().cast(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            if e == libc::EEXIST {
                continue;
            }
            return Err(e);
        }
        // SAFETY: calls on the descriptor just made; unlinkat of its name.
        unsafe {
            // The sender's user owns it, as if it had made it. (A broker that
            // is not root cannot give it away: the file stays the instance
            // user's, still private, and the descriptor works the same.)
            libc::fchown(fd, uid, gid);
            if libc::ftruncate(fd, SEGMENT_SIZE as libc::off_t) != 0 {
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
                libc::unlinkat(dir, name.as_ptr().cast(), 0);
                libc::close(fd);
                return Err(e);
            }
        }
        return Ok((fd, name, len));
    }
    Err(libc::EEXIST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn decimal_writes_numbers() {
        for (v, text) in [(0, &b"0"[..]), (4194304, b"4194304"), (u64::MAX, b"18446744073709551615")] {
            let mut b = [0u8; 20];
            let n = decimal(&mut b, v);
            assert_eq!(&b[..n], text);
        }
    }

    fn seqpacket() -> (OwnedFd, OwnedFd) {
        use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
        socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap()
    }

    /// A request as the runtime sends it (`magic`, this pid), then the
    /// broker's answer: its status and descriptor.
    fn ask(reaper: i32, magic: u32) -> (tempfile::TempDir, i32, Option<OwnedFd>) {
        let dir = tempfile::tempdir().unwrap();
        let dirfd = rustix::fs::open(dir.path(), rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty()).unwrap();
        let (broker, client) = seqpacket();
        rustix::net::sockopt::set_socket_passcred(&broker, true).unwrap();
        let (mine, theirs) = seqpacket();
        let mut req = [0u8; 8];
        req[..4].copy_from_slice(&magic.to_le_bytes());
        req[4..].copy_from_slice(&(std::process::id() as i32).to_le_bytes());
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = rustix::net::SendAncillaryBuffer::new(&mut space);
        let fds = [rustix::fd::AsFd::as_fd(&theirs)];
        assert!(cmsg.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(&client, &[std::io::IoSlice::new(&req)], &mut cmsg, rustix::net::SendFlags::empty()).unwrap();
        drop(theirs);
        // SAFETY: descriptors this test owns.
        assert_eq!(unsafe { serve(broker.as_raw_fd(), dirfd.as_raw_fd(), reaper) }, Served::Open);
        let mut ans = [0u8; 8];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(&mine, &mut [std::io::IoSliceMut::new(&mut ans)], &mut cmsg, rustix::net::RecvFlags::CMSG_CLOEXEC).unwrap();
        assert_eq!(got.bytes, 8);
        assert_eq!(ans[..4], SEGMENT_BROKER_MAGIC.to_le_bytes());
        let mut fd = None;
        for m in cmsg.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(mut r) = m {
                fd = r.next();
            }
        }
        (dir, i32::from_le_bytes([ans[4], ans[5], ans[6], ans[7]]), fd)
    }

    /// A process below the reaper (here: the test, below its parent) gets a
    /// fresh segment file of its own, private, of the segment's size.
    #[test]
    fn a_process_of_the_instance_gets_its_segment() {
        let (dir, status, fd) = ask(rustix::process::getppid().unwrap().as_raw_nonzero().get(), SEGMENT_BROKER_MAGIC);
        assert_eq!(status, 0);
        let fd = fd.expect("a segment descriptor");
        let path = dir.path().join(format!("{}-0.seg", std::process::id()));
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.len(), SEGMENT_SIZE as u64);
        assert_eq!(m.mode() & 0o7777, 0o600);
        let same = std::fs::File::from(fd).metadata().unwrap();
        assert_eq!((same.dev(), same.ino()), (m.dev(), m.ino()), "the descriptor is that file");
    }

    /// A process that does not descend from the reaper (here: a sibling
    /// process stands in for it) is refused, and nothing is created.
    #[test]
    fn a_process_outside_the_instance_is_refused() {
        let mut other = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let (dir, status, fd) = ask(other.id() as i32, SEGMENT_BROKER_MAGIC);
        let _ = other.kill();
        let _ = other.wait();
        assert_eq!(status, -libc::EPERM);
        assert!(fd.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_bad_request_is_refused() {
        let (dir, status, fd) = ask(rustix::process::getppid().unwrap().as_raw_nonzero().get(), 0x1234);
        assert_eq!(status, -libc::EPROTO);
        assert!(fd.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
