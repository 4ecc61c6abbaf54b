//! This process's stats segment: created at installation and again in every
//! fork child (see `shunt_abi::segment` for the layout its readers share).
//!
//! Inside an instance the segment is a file, `<instance>/<pid>-<n>.seg`,
//! mapped `MAP_SHARED`, so that it outlives the process; without one it is
//! private memory whose counters nobody reports.
//!
//! A process that changed its user (`setpriv --reuid`, Go's
//! `SysProcAttr.Credential`) may not create files in the instance
//! directory, which belongs to the instance's first user. It asks the
//! instance's *segment broker* instead (the supervisor's reaper of the
//! instance, `toolchain/supervisor/src/broker.rs`), over the `SOCK_SEQPACKET`
//! socket every process of the instance inherits (its number in
//! `SHUNT_SEGMENT_BROKER`): a request carries one end of a fresh private
//! socket pair, and the answer comes back on it with the segment file's
//! descriptor (`SCM_RIGHTS`), created by the broker for the process's new
//! user. The directory is not opened to other users for it: any user of
//! the machine could then plant segments in the report.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use shunt_abi::segment::{SegmentHeader, SEGMENT_SIZE};

use shunt_fdpass as fdpass;

use crate::{events, raw};
use crate::text::{cstr, store_cstr, FixedBuf};

/// Segment files need `MAP_SHARED` replacement after fork; private memory not.
static SEGMENT_IS_FILE: AtomicBool = AtomicBool::new(false);
static SEGMENT_SEQ: AtomicU32 = AtomicU32::new(0);
/// The inherited socket of the instance's segment broker (-1: none).
/// Written once at installation.
static BROKER_FD: AtomicI32 = AtomicI32::new(-1);

/// The request and answer tag of the broker's protocol.
const BROKER_MAGIC: [u8; 4] = shunt_abi::segment::SEGMENT_BROKER_MAGIC.to_le_bytes();
/// How long a process waits for the broker's answer before it runs on
/// uncounted (the broker answers at once; it is gone or stuck otherwise).
const BROKER_WAIT_SECS: i64 = 10;

/// Records the broker's socket (see the module docs).
pub(crate) fn set_broker(fd: Option<i32>) {
    BROKER_FD.store(fd.unwrap_or(-1), Ordering::Relaxed);
}

/// The broker's socket (-1: none).
pub(crate) fn broker_fd() -> i32 {
    BROKER_FD.load(Ordering::Relaxed)
}
/// NUL-terminated instance directory (empty: no instance). Written once at
/// installation, read-only afterwards.
static mut INSTANCE_DIR: [u8; 2048] = [0; 2048];

/// Records the instance directory.
///
/// # Safety
/// Installation only (single-threaded).
pub(crate) unsafe fn set_instance_dir(dir: &[u8]) {
    // SAFETY: by the caller's promise, the only reference to the buffer.
    unsafe { store_cstr(&mut *core::ptr::addr_of_mut!(INSTANCE_DIR), dir) };
}

/// The instance directory, without its NUL; empty without an instance.
pub(crate) fn instance_dir() -> &'static [u8] {
    // SAFETY: written only at installation, read-only afterwards.
    cstr(unsafe { &*core::ptr::addr_of!(INSTANCE_DIR) })
}

/// Whether the segment is a file (inside an instance).
pub(crate) fn is_file() -> bool {
    SEGMENT_IS_FILE.load(Ordering::Relaxed)
}

/// Creates and maps a fresh segment anywhere, its header initialised and
/// published. Returns its address.
pub(crate) fn map_new() -> Result<usize, i64> {
    let dir = instance_dir();
    let pid = raw::getpid();
    let at = match if dir.is_empty() { Err(0) } else { map_file(dir, pid) } {
        Ok(at) => at,
        // A process that changed its user (see the module docs): the
        // broker makes its segment. Without a broker (a program that closed
        // its socket, a runtime outside `shunt run`'s supervisor) it runs
        // on, counted in private memory nobody reports: the instance
        // survives, this process's calls are missing from its report (told
        // once per process).
        Err(e) if e == -(libc::EACCES as i64) || e == -(libc::EPERM as i64) => match map_brokered(pid) {
            Ok(at) => {
                SEGMENT_IS_FILE.store(true, Ordering::Relaxed);
                at
            }
            Err(_) => {
                SEGMENT_IS_FILE.store(false, Ordering::Relaxed);
                events::warning(
                    b"this process changed its user and may not create its stats segment (its calls are not counted) in",
                    dir,
                );
                map_private()?
            }
        },
        Err(0) => map_private()?,
        Err(e) => return Err(e),
    };
    let mut name = [0u8; 4096];
    let program = crate::program::program_name(&mut name);
    // SAFETY: a fresh, zeroed, page-aligned mapping of SEGMENT_SIZE bytes that
    // nothing else refers to yet: its header may be written through `&mut`.
    unsafe { (*(at as *mut SegmentHeader)).init(pid, program) };
    Ok(at)
}

/// A segment in private memory (outside an instance, or when the instance
/// directory refuses this process).
fn map_private() -> Result<usize, i64> {
    // SAFETY: a fresh anonymous mapping at a kernel-chosen address.
    let r = unsafe {
        raw::mmap(
            0,
            SEGMENT_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if r < 0 {
        return Err(r);
    }
    Ok(r as usize)
}

/// Retries a raw call interrupted by a signal.
fn retry(mut f: impl FnMut() -> i64) -> i64 {
    loop {
        let r = f();
        if r != -(libc::EINTR as i64) {
            return r;
        }
    }
}

/// The broker's socket, if its number still names a `SOCK_SEQPACKET` unix
/// socket.
fn checked_broker() -> Result<i32, i64> {
    let broker = BROKER_FD.load(Ordering::Relaxed);
    if broker < 0 {
        return Err(-(libc::ENOENT as i64));
    }
    // The broker's socket is a SOCK_SEQPACKET unix socket; a number the
    // program reused for something else gets no request (it would carry a
    // socket to whatever that is).
    for (opt, want) in [(libc::SO_DOMAIN, libc::AF_UNIX), (libc::SO_TYPE, libc::SOCK_SEQPACKET)] {
        let mut v: i32 = -1;
        let mut len: u32 = 4;
        // SAFETY: getsockopt writes at most `len` (4) bytes into `v`.
        let r = unsafe {
            raw::syscall6(
                shunt_abi::syscalls::nr::GETSOCKOPT,
                [broker as u64, libc::SOL_SOCKET as u64, opt as u64, &mut v as *mut i32 as u64, &mut len as *mut u32 as u64, 0],
            )
        };
        if r < 0 || v != want {
            return Err(-(libc::ENOTSOCK as i64));
        }
    }
    Ok(broker)
}

/// A segment file made by the instance's broker, mapped shared.
fn map_brokered(pid: i32) -> Result<usize, i64> {
    let broker = checked_broker()?;
    let mut pair = [-1i32; 2];
    // SAFETY: socketpair writes two descriptors into `pair`.
    let r = unsafe {
        raw::syscall4(
            shunt_abi::syscalls::nr::SOCKETPAIR,
            libc::AF_UNIX as u64,
            (libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC) as u64,
            0,
            pair.as_mut_ptr() as u64,
        )
    };
    if r < 0 {
        return Err(r);
    }
    let (mine, theirs) = (pair[0], pair[1]);
    let r = ask_broker(broker, mine, theirs, pid);
    raw::close(theirs);
    let fd = match r {
        Ok(()) => receive_segment(mine),
        Err(e) => Err(e),
    };
    raw::close(mine);
    let fd = fd?;
    // A regular file of the segment's size, or nothing: mapping anything
    // else could fault on the first counter.
    // SAFETY: `struct stat` is plain integers; fstat fills it.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: fstat writes one `struct stat` into `st`.
    let r = unsafe { raw::syscall2(shunt_abi::syscalls::nr::FSTAT, fd as u64, &mut st as *mut libc::stat as u64) };
    if r < 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size != SEGMENT_SIZE as i64 {
        raw::close(fd);
        return Err(-(libc::EINVAL as i64));
    }
    // SAFETY: a shared mapping of that file at a kernel-chosen address.
    let r = unsafe { raw::mmap(0, SEGMENT_SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
    raw::close(fd);
    if r < 0 {
        return Err(r);
    }
    Ok(r as usize)
}

/// Bounds how long a reply from the broker is waited for on `mine` (the
/// private pair's end the answer comes back on): a broker that is gone or
/// stuck must cost an error, not a hang.
fn bound_broker_wait(mine: i32) -> Result<(), i64> {
    let tv = libc::timeval { tv_sec: BROKER_WAIT_SECS, tv_usec: 0 };
    // SAFETY: setsockopt reads one `timeval` from `tv`.
    let r = unsafe {
        raw::syscall6(
            shunt_abi::syscalls::nr::SETSOCKOPT,
            [
                mine as u64,
                libc::SOL_SOCKET as u64,
                libc::SO_RCVTIMEO as u64,
                &tv as *const libc::timeval as u64,
                core::mem::size_of::<libc::timeval>() as u64,
                0,
            ],
        )
    };
    if r < 0 {
        return Err(r);
    }
    Ok(())
}

/// Sends the broker a request: the tag, this process's pid, and `theirs`
/// (the end of the private pair the answer comes back on).
fn ask_broker(broker: i32, mine: i32, theirs: i32, pid: i32) -> Result<(), i64> {
    bound_broker_wait(mine)?;
    let mut req = [0u8; 8];
    req[..4].copy_from_slice(&BROKER_MAGIC);
    req[4..].copy_from_slice(&pid.to_le_bytes());
    // SAFETY: the caller's open descriptors, borrowed for these calls.
    let (broker, theirs) = unsafe { (fdpass::borrow(broker), fdpass::borrow(theirs)) };
    let r = retry(|| match fdpass::send(broker, &req, &[theirs], fdpass::SendFlags::NOSIGNAL) {
        Ok(n) => n as i64,
        Err(e) => -(e.raw_os_error() as i64),
    });
    if r < 0 {
        return Err(r);
    }
    Ok(())
}

/// The broker's answer on `mine`: the segment file's descriptor.
fn receive_segment(mine: i32) -> Result<i32, i64> {
    let mut ans = [0u8; 16];
    // Any descriptor beyond the first is closed (by `recv`, or when `got`
    // drops).
    let mut got = loop {
        // SAFETY: the caller's open descriptor, borrowed for this call.
        match fdpass::recv::<1>(unsafe { fdpass::borrow(mine) }, &mut ans, fdpass::RecvFlags::CMSG_CLOEXEC) {
            Err(e) if e == fdpass::Errno::INTR => continue,
            Err(e) => return Err(-(e.raw_os_error() as i64)),
            Ok(g) => break g,
        }
    };
    let status = i32::from_le_bytes([ans[4], ans[5], ans[6], ans[7]]);
    if got.len != 8 || ans[..4] != BROKER_MAGIC || status != 0 || got.count == 0 {
        return Err(if status < 0 { status as i64 } else { -(libc::EPROTO as i64) });
    }
    Ok(got.take_raw(0))
}

/// A segment file `<dir>/<pid>-<seq>.seg`, mapped shared.
fn map_file(dir: &[u8], pid: i32) -> Result<usize, i64> {
    let at = {
        // <dir>/<pid>-<seq>.seg, created exclusively (an exec'd image keeps its pid).
        let mut path = [0u8; 2100];
        let fd = loop {
            let seq = SEGMENT_SEQ.fetch_add(1, Ordering::Relaxed);
            // The directory is bytes (not necessarily UTF-8): join, don't format.
            let mut num = [0u8; 32];
            let mut nw = FixedBuf::new(&mut num);
            if core::fmt::Write::write_fmt(&mut nw, format_args!("/{pid}-{seq}.seg")).is_err() {
                return Err(-(libc::ENAMETOOLONG as i64));
            }
            let n = nw.len;
            let Some(len) = crate::text::join(&mut path, &[dir, &num[..n]]) else {
                return Err(-(libc::ENAMETOOLONG as i64));
            };
            let fd = raw::open(&path[..len], libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, 0o600);
            if fd == -(libc::EEXIST as i64) {
                continue;
            }
            if fd < 0 {
                return Err(fd);
            }
            break fd as i32;
        };
        // SAFETY: ftruncate and a shared mapping of the file just created.
        let r = unsafe {
            let r = raw::syscall2(shunt_abi::syscalls::nr::FTRUNCATE, fd as u64, SEGMENT_SIZE as u64);
            if r < 0 {
                raw::close(fd);
                return Err(r);
            }
            raw::mmap(0, SEGMENT_SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        raw::close(fd);
        if r < 0 {
            return Err(r);
        }
        SEGMENT_IS_FILE.store(true, Ordering::Relaxed);
        r as usize
    };
    Ok(at)
}

// ------------------------------------------- ring segments kept by the broker
//
// A ring connection end that may have to follow an `execve` needs a
// descriptor of its segment at the exec. Rather than keeping one in the
// program's fd table (a hidden fd at 1000 or above, `crate::hidden`, of
// which only about 23 fit under the common soft limit of 1024), the end
// hands its segment's memfd to the instance's broker, which lives in the
// supervisor's reaper (a process that raised its own soft limit to the hard
// one) and keeps it while the end's kernel socket is open anywhere; the
// exec names the segment by its id and the new image asks the broker for
// it ([`fetch_conns`]), proving with the end's socket that it holds it.
// Only connect, accept and exec talk to the broker: never a read or write.

const KEEP_MAGIC: [u8; 4] = shunt_abi::segment::CONN_KEEP_MAGIC.to_le_bytes();
const FETCH_MAGIC: [u8; 4] = shunt_abi::segment::CONN_FETCH_MAGIC.to_le_bytes();
/// Ends one fetch names at most.
pub(crate) const FETCH_MAX: usize = shunt_abi::segment::CONN_FETCH_MAX;
const _: () = assert!(FETCH_MAX < fdpass::MAX_SEND);
/// How long a keep waits, at most, for room on the broker's socket (its
/// queue is full only while the broker is behind a burst of connects).
const KEEP_WAIT_MS: i32 = 1000;

/// Whether this process has a broker to keep ring segments with (inside an
/// instance, while the program left the broker's socket alone).
pub(crate) fn keeps_conns() -> bool {
    checked_broker().is_ok()
}

/// Hands `memfd`, the segment (id `seg`) of a ring end on side `side`
/// whose kernel socket's inode is `sock`, to the broker to keep (the caller
/// still closes its `memfd`). `false`: not sent (no broker, or its socket
/// stayed full), and the caller keeps the segment itself. The broker does
/// not answer: a refusal (its table full) is its own warning, and this
/// end's exec then finds no segment to carry (`crate::net`).
pub(crate) fn keep_conn(memfd: i32, side: u8, seg: u64, sock: u64) -> bool {
    let Ok(broker) = checked_broker() else { return false };
    let mut req = [0u8; 24];
    req[..4].copy_from_slice(&KEEP_MAGIC);
    req[4..8].copy_from_slice(&(side as u32).to_le_bytes());
    req[8..16].copy_from_slice(&seg.to_le_bytes());
    req[16..24].copy_from_slice(&sock.to_le_bytes());
    // SAFETY: the caller's open descriptors, borrowed for these calls.
    let (b, m) = unsafe { (fdpass::borrow(broker), fdpass::borrow(memfd)) };
    // Bounded: a few waits for room, each bounded in time.
    for _ in 0..4 {
        match fdpass::send(b, &req, &[m], fdpass::SendFlags::NOSIGNAL | fdpass::SendFlags::DONTWAIT) {
            Ok(n) => return n == req.len(),
            Err(e) if e == fdpass::Errno::INTR => continue,
            Err(e) if e == fdpass::Errno::AGAIN => {
                let mut p = libc::pollfd { fd: broker, events: libc::POLLOUT, revents: 0 };
                // SAFETY: poll reads and writes one pollfd.
                unsafe {
                    raw::syscall3(shunt_abi::syscalls::nr::POLL, &mut p as *mut libc::pollfd as u64, 1, KEEP_WAIT_MS as u64)
                };
            }
            Err(_) => return false,
        }
    }
    false
}

/// Asks the broker for the kept segments of the ends whose kernel sockets
/// are `socks[i]`, with ids `segs[i]` and sides `sides[i]` (at most
/// [`FETCH_MAX`]); `out[i]` gets each segment's descriptor (close-on-exec),
/// or -1 when the broker has none for it. `Err`: no answer at all.
pub(crate) fn fetch_conns(socks: &[i32], segs: &[u64], sides: &[u8], out: &mut [i32]) -> Result<(), i64> {
    let n = socks.len();
    if n == 0 || n > FETCH_MAX || segs.len() != n || sides.len() != n || out.len() < n {
        return Err(-(libc::EINVAL as i64));
    }
    for o in out.iter_mut().take(n) {
        *o = -1;
    }
    let broker = checked_broker()?;
    let mut pair = [-1i32; 2];
    // SAFETY: socketpair writes two descriptors into `pair`.
    let r = unsafe {
        raw::syscall4(
            shunt_abi::syscalls::nr::SOCKETPAIR,
            libc::AF_UNIX as u64,
            (libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC) as u64,
            0,
            pair.as_mut_ptr() as u64,
        )
    };
    if r < 0 {
        return Err(r);
    }
    let (mine, theirs) = (pair[0], pair[1]);
    let r = fetch_ask(broker, mine, theirs, socks, segs, sides);
    raw::close(theirs);
    let r = match r {
        Ok(()) => fetch_answer(mine, n, out),
        Err(e) => Err(e),
    };
    raw::close(mine);
    r
}

fn fetch_ask(broker: i32, mine: i32, theirs: i32, socks: &[i32], segs: &[u64], sides: &[u8]) -> Result<(), i64> {
    bound_broker_wait(mine)?;
    let n = socks.len();
    let mut req = [0u8; 8 + 16 * FETCH_MAX];
    req[..4].copy_from_slice(&FETCH_MAGIC);
    req[4..8].copy_from_slice(&(n as u32).to_le_bytes());
    for i in 0..n {
        let o = 8 + 16 * i;
        req[o..o + 8].copy_from_slice(&segs[i].to_le_bytes());
        req[o + 8..o + 12].copy_from_slice(&(sides[i] as u32).to_le_bytes());
    }
    // SAFETY: the caller's open descriptors, borrowed for this call.
    let mut fds = [unsafe { fdpass::borrow(theirs) }; FETCH_MAX + 1];
    for (i, &s) in socks.iter().enumerate() {
        // SAFETY: as above.
        fds[i + 1] = unsafe { fdpass::borrow(s) };
    }
    // SAFETY: as above.
    let b = unsafe { fdpass::borrow(broker) };
    let len = 8 + 16 * n;
    let r = retry(|| match fdpass::send(b, &req[..len], &fds[..n + 1], fdpass::SendFlags::NOSIGNAL) {
        Ok(k) => k as i64,
        Err(e) => -(e.raw_os_error() as i64),
    });
    if r < 0 {
        return Err(r);
    }
    Ok(())
}

fn fetch_answer(mine: i32, n: usize, out: &mut [i32]) -> Result<(), i64> {
    let mut ans = [0u8; 8 + 4 * FETCH_MAX + 8];
    let mut got = loop {
        // SAFETY: the caller's open descriptor, borrowed for this call.
        match fdpass::recv::<FETCH_MAX>(unsafe { fdpass::borrow(mine) }, &mut ans, fdpass::RecvFlags::CMSG_CLOEXEC) {
            Err(e) if e == fdpass::Errno::INTR => continue,
            Err(e) => return Err(-(e.raw_os_error() as i64)),
            Ok(g) => break g,
        }
    };
    let count = u32::from_le_bytes([ans[4], ans[5], ans[6], ans[7]]) as usize;
    if got.len != 8 + 4 * n || ans[..4] != FETCH_MAGIC || count != n || got.truncated {
        return Err(-(libc::EPROTO as i64));
    }
    let mut next = 0usize;
    for (i, o) in out.iter_mut().enumerate().take(n) {
        let k = 8 + 4 * i;
        let status = i32::from_le_bytes([ans[k], ans[k + 1], ans[k + 2], ans[k + 3]]);
        if status == 0 {
            // A descriptor per status 0, in order (the rest close with `got`).
            *o = got.take_raw(next);
            next += 1;
        }
    }
    Ok(())
}

/// Tells the broker that this process closed its last fd of a kept end (a
/// hint, no answer: the broker sweeps soon and drops the segment if the
/// end's socket is closed everywhere). Never waits: a hint lost to a full
/// socket is made up by the broker's next sweep.
pub(crate) fn conn_gone() {
    let Ok(broker) = checked_broker() else { return };
    let mut req = [0u8; 8];
    req[..4].copy_from_slice(&shunt_abi::segment::CONN_GONE_MAGIC.to_le_bytes());
    // SAFETY: the broker's open descriptor, borrowed for this call.
    let b = unsafe { fdpass::borrow(broker) };
    let _ = fdpass::send(b, &req, &[], fdpass::SendFlags::NOSIGNAL | fdpass::SendFlags::DONTWAIT);
}
