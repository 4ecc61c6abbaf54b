//! Raw system calls, issued by `syscall` instructions in this crate's text.
//!
//! The transport runs inside the runtime's gate, where glibc's wrappers may be
//! the very code being redirected (recursion) and are not async-signal-safe.
//! Every call here is one `syscall` instruction; results follow the kernel
//! convention: a value in `-4095..=-1` is `-errno`.
//!
//! Only constants and struct layouts come from the `libc` crate; no function
//! of it is called.

use shunt_abi::syscalls::nr;
use core::arch::asm;

/// A kernel result: the value, or `-errno` when negative.
pub type Sysret = i64;

/// # Safety
/// The call must be valid for its number: every pointer argument readable
/// or writable as the kernel will use it, and no memory in use replaced.
#[inline(always)]
pub unsafe fn syscall0(nr: usize) -> Sysret {
    let r: i64;
    // SAFETY: the caller vouches for the call's arguments; the instruction
    // clobbers only rax, rcx and r11, which are declared.
    unsafe {
        asm!("syscall", inlateout("rax") nr => r,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// The call must be valid for its number: every pointer argument readable
/// or writable as the kernel will use it, and no memory in use replaced.
#[inline(always)]
pub unsafe fn syscall1(nr: usize, a0: u64) -> Sysret {
    let r: i64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => r, in("rdi") a0,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// The call must be valid for its number: every pointer argument readable
/// or writable as the kernel will use it, and no memory in use replaced.
#[inline(always)]
pub unsafe fn syscall2(nr: usize, a0: u64, a1: u64) -> Sysret {
    let r: i64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => r, in("rdi") a0, in("rsi") a1,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// The call must be valid for its number: every pointer argument readable
/// or writable as the kernel will use it, and no memory in use replaced.
#[inline(always)]
pub unsafe fn syscall3(nr: usize, a0: u64, a1: u64, a2: u64) -> Sysret {
    let r: i64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => r, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// The call must be valid for its number: every pointer argument readable
/// or writable as the kernel will use it, and no memory in use replaced.
#[inline(always)]
pub unsafe fn syscall4(nr: usize, a0: u64, a1: u64, a2: u64, a3: u64) -> Sysret {
    let r: i64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => r, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             in("r10") a3, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// The call must be valid for its number: every pointer argument readable
/// or writable as the kernel will use it, and no memory in use replaced.
#[inline(always)]
pub unsafe fn syscall5(nr: usize, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> Sysret {
    let r: i64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => r, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             in("r10") a3, in("r8") a4, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// The call must be valid for its number: every pointer argument readable
/// or writable as the kernel will use it, and no memory in use replaced.
#[inline(always)]
pub unsafe fn syscall6(nr: usize, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> Sysret {
    let r: i64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!("syscall", inlateout("rax") nr => r, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             in("r10") a3, in("r8") a4, in("r9") a5, lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    r
}

/// `-errno` as a kernel result.
#[inline(always)]
pub const fn err(errno: i32) -> Sysret {
    -(errno as i64)
}

/// `true` when `r` is an error result.
#[inline(always)]
pub const fn is_err(r: Sysret) -> bool {
    r < 0 && r >= -4095
}

pub fn getpid() -> i32 {
    // SAFETY: getpid has no arguments and no memory effects.
    unsafe { syscall0(nr::GETPID) as i32 }
}

pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and no memory effects.
    unsafe { syscall0(nr::GETTID) as i32 }
}

pub fn close(fd: i32) -> Sysret {
    // SAFETY: closing a descriptor touches no memory of ours.
    unsafe { syscall1(nr::CLOSE, fd as u64) }
}

pub fn sched_yield() {
    // SAFETY: no arguments, no memory effects.
    unsafe { syscall0(nr::SCHED_YIELD) };
}

/// `kill(pid, 0)`: whether a process (or, on Linux, a thread id) exists.
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let r = unsafe { syscall2(nr::KILL, pid as u64, 0) };
    r != err(libc::ESRCH)
}

/// `CLOCK_MONOTONIC` in nanoseconds, by a real system call (see
/// [`crate::clock`] for the fast, pluggable clock).
pub fn monotonic_ns_syscall() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec on our stack.
    unsafe {
        syscall2(nr::CLOCK_GETTIME, libc::CLOCK_MONOTONIC as u64, &mut ts as *mut _ as u64)
    };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// # Safety
/// The mapping must not replace memory in use (no `MAP_FIXED` over live data).
pub unsafe fn mmap(addr: usize, len: usize, prot: i32, flags: i32, fd: i32, off: u64) -> Sysret {
    // SAFETY: the caller vouches that the mapping does not replace memory in
    // use (no MAP_FIXED over live data).
    unsafe {
        syscall6(nr::MMAP, addr as u64, len as u64, prot as u64, flags as u64, fd as u64, off)
    }
}

/// # Safety
/// Nothing may use the range afterwards.
pub unsafe fn munmap(addr: usize, len: usize) -> Sysret {
    // SAFETY: the caller vouches that nothing uses the range any more.
    unsafe { syscall2(nr::MUNMAP, addr as u64, len as u64) }
}

/// `memfd_create(name, flags)`; `name` must end with NUL.
pub fn memfd_create(name: &[u8], flags: u32) -> Sysret {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    unsafe { syscall2(nr::MEMFD_CREATE, name.as_ptr() as u64, flags as u64) }
}

pub fn ftruncate(fd: i32, len: u64) -> Sysret {
    // SAFETY: no user memory is involved.
    unsafe { syscall2(nr::FTRUNCATE, fd as u64, len) }
}

pub fn fcntl(fd: i32, cmd: i32, arg: u64) -> Sysret {
    // SAFETY: only integer commands are used through this wrapper.
    unsafe { syscall3(nr::FCNTL, fd as u64, cmd as u64, arg) }
}

/// The size of the file behind `fd` (`fstat`).
pub fn file_size(fd: i32) -> Result<u64, Sysret> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable and as large as the kernel's struct stat.
    let r = unsafe { syscall2(nr::FSTAT, fd as u64, &mut st as *mut _ as u64) };
    if r < 0 {
        return Err(r);
    }
    Ok(st.st_size as u64)
}

/// `openat(AT_FDCWD, path, flags, mode)`; `path` must end with NUL.
pub fn open(path: &[u8], flags: i32, mode: u32) -> Sysret {
    debug_assert_eq!(path.last(), Some(&0));
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unsafe {
        syscall4(nr::OPENAT, libc::AT_FDCWD as u64, path.as_ptr() as u64, flags as u64, mode as u64)
    }
}

/// `linkat(AT_FDCWD, from, AT_FDCWD, to, 0)`; both NUL-terminated.
pub fn link(from: &[u8], to: &[u8]) -> Sysret {
    // SAFETY: both paths are NUL-terminated and outlive the call.
    unsafe {
        syscall5(
            nr::LINKAT,
            libc::AT_FDCWD as u64,
            from.as_ptr() as u64,
            libc::AT_FDCWD as u64,
            to.as_ptr() as u64,
            0,
        )
    }
}

/// `unlinkat(AT_FDCWD, path, 0)`; NUL-terminated.
pub fn unlink(path: &[u8]) -> Sysret {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unsafe { syscall3(nr::UNLINKAT, libc::AT_FDCWD as u64, path.as_ptr() as u64, 0) }
}

pub fn read(fd: i32, buf: &mut [u8]) -> Sysret {
    // SAFETY: `buf` is writable for its length.
    unsafe { syscall3(nr::READ, fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64) }
}

pub fn write(fd: i32, buf: &[u8]) -> Sysret {
    // SAFETY: `buf` is readable for its length.
    unsafe { syscall3(nr::WRITE, fd as u64, buf.as_ptr() as u64, buf.len() as u64) }
}

/// `futex(uaddr, FUTEX_WAIT, val, timeout)` on a word that may be shared
/// between processes (not `FUTEX_PRIVATE_FLAG`). `timeout_ns` is relative;
/// `None` waits without a limit. Returns 0, `-EAGAIN` (the word differed),
/// `-ETIMEDOUT` or `-EINTR`.
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, val: u32, timeout_ns: Option<u64>) -> Sysret {
    let ts;
    let tsp = match timeout_ns {
        Some(ns) => {
            ts = libc::timespec { tv_sec: (ns / 1_000_000_000) as i64, tv_nsec: (ns % 1_000_000_000) as i64 };
            &ts as *const libc::timespec as u64
        }
        None => 0,
    };
    // SAFETY: `word` is a live, aligned u32; `tsp` is null or points at `ts`,
    // which lives until the call returns.
    unsafe { syscall4(nr::FUTEX, word.as_ptr() as u64, libc::FUTEX_WAIT as u64, val as u64, tsp) }
}

/// `futex(uaddr, FUTEX_WAKE, n)` (shared). Returns how many were woken.
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: u32) -> Sysret {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE reads nothing else.
    unsafe { syscall3(nr::FUTEX, word.as_ptr() as u64, libc::FUTEX_WAKE as u64, n as u64) }
}

pub fn socket(domain: i32, ty: i32, proto: i32) -> Sysret {
    // SAFETY: integer arguments only.
    unsafe { syscall3(nr::SOCKET, domain as u64, ty as u64, proto as u64) }
}

/// # Safety
/// `addr` must be readable for `len` bytes.
pub unsafe fn bind(fd: i32, addr: *const u8, len: u32) -> Sysret {
    // SAFETY: the caller passes a readable sockaddr of `len` bytes.
    unsafe { syscall3(nr::BIND, fd as u64, addr as u64, len as u64) }
}

/// # Safety
/// `addr` must be readable for `len` bytes.
pub unsafe fn connect(fd: i32, addr: *const u8, len: u32) -> Sysret {
    // SAFETY: the caller passes a readable sockaddr of `len` bytes.
    unsafe { syscall3(nr::CONNECT, fd as u64, addr as u64, len as u64) }
}

pub fn listen(fd: i32, backlog: i32) -> Sysret {
    // SAFETY: integer arguments only.
    unsafe { syscall2(nr::LISTEN, fd as u64, backlog as u64) }
}

pub fn shutdown(fd: i32, how: i32) -> Sysret {
    // SAFETY: integer arguments only.
    unsafe { syscall2(nr::SHUTDOWN, fd as u64, how as u64) }
}

/// `accept4(fd, NULL, NULL, flags)`.
pub fn accept4(fd: i32, flags: i32) -> Sysret {
    // SAFETY: null address pointers ask for no peer address.
    unsafe { syscall4(nr::ACCEPT4, fd as u64, 0, 0, flags as u64) }
}

/// # Safety
/// `msg` and every buffer it names must be readable.
pub unsafe fn sendmsg(fd: i32, msg: *const libc::msghdr, flags: i32) -> Sysret {
    // SAFETY: the caller passes a valid msghdr whose buffers are readable.
    unsafe { syscall3(nr::SENDMSG, fd as u64, msg as u64, flags as u64) }
}

/// # Safety
/// `msg` must be valid and every buffer it names writable.
pub unsafe fn recvmsg(fd: i32, msg: *mut libc::msghdr, flags: i32) -> Sysret {
    // SAFETY: the caller passes a valid msghdr whose buffers are writable.
    unsafe { syscall3(nr::RECVMSG, fd as u64, msg as u64, flags as u64) }
}

/// `recvfrom(fd, buf, len, flags, NULL, NULL)`.
pub fn recv(fd: i32, buf: &mut [u8], flags: i32) -> Sysret {
    // SAFETY: `buf` is writable for its length; no address is requested.
    unsafe { syscall6(nr::RECVFROM, fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, flags as u64, 0, 0) }
}

/// `sendto(fd, buf, len, flags, NULL, 0)`.
pub fn send(fd: i32, buf: &[u8], flags: i32) -> Sysret {
    // SAFETY: `buf` is readable for its length; no address is passed.
    unsafe { syscall6(nr::SENDTO, fd as u64, buf.as_ptr() as u64, buf.len() as u64, flags as u64, 0, 0) }
}

/// `getsockname`/`getpeername` into a `sockaddr_storage`.
pub fn sockname(fd: i32, peer: bool, out: &mut libc::sockaddr_storage) -> Result<u32, Sysret> {
    let mut len = core::mem::size_of::<libc::sockaddr_storage>() as u32;
    let nr = if peer { nr::GETPEERNAME } else { nr::GETSOCKNAME };
    // SAFETY: `out` and `len` are writable and describe the storage's size.
    let r = unsafe { syscall3(nr, fd as u64, out as *mut _ as u64, &mut len as *mut u32 as u64) };
    if r < 0 {
        return Err(r);
    }
    Ok(len)
}

/// An integer socket option.
pub fn getsockopt_int(fd: i32, level: i32, name: i32) -> Result<i32, Sysret> {
    let mut v: i32 = 0;
    let mut len = 4u32;
    // SAFETY: `v` and `len` are writable; the kernel writes at most `len` bytes.
    let r = unsafe {
        syscall5(nr::GETSOCKOPT, fd as u64, level as u64, name as u64, &mut v as *mut i32 as u64, &mut len as *mut u32 as u64)
    };
    if r < 0 {
        return Err(r);
    }
    Ok(v)
}

/// `preadv2`/`pwritev2` of up to two pieces at `pos` (`None`: the file
/// position, used and advanced) with `RWF_*` flags (`RWF_NOWAIT` makes a
/// pipe's read or write answer `EAGAIN` instead of blocking, whatever the
/// pipe's own `O_NONBLOCK`).
///
/// # Safety
/// Each piece must be valid for its length in the direction of the copy
/// (writable for a read).
pub unsafe fn rw2(write: bool, fd: i32, pieces: &[(*mut u8, usize); 2], pos: Option<u64>, flags: i32) -> Sysret {
    let iov = [
        libc::iovec { iov_base: pieces[0].0 as *mut libc::c_void, iov_len: pieces[0].1 },
        libc::iovec { iov_base: pieces[1].0 as *mut libc::c_void, iov_len: pieces[1].1 },
    ];
    let cnt = if pieces[1].1 == 0 { 1 } else { 2 };
    let nr = if write { nr::PWRITEV2 } else { nr::PREADV2 };
    let pos = pos.unwrap_or(u64::MAX);
    // SAFETY: `iov` describes the caller's pieces (its contract); the
    // position's high half is 0 on x86-64 (the kernel ignores it).
    unsafe { syscall6(nr, fd as u64, iov.as_ptr() as u64, cnt, pos, 0, flags as u32 as u64) }
}

/// The type bits (`S_IFMT`) and open flags (`F_GETFL`) of an fd.
pub fn fd_kind(fd: i32) -> Result<(u32, i32), Sysret> {
    // SAFETY: an all-zero stat is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a writable struct stat.
    let r = unsafe { syscall2(nr::FSTAT, fd as u64, &mut st as *mut libc::stat as u64) };
    if r < 0 {
        return Err(r);
    }
    let fl = fcntl(fd, libc::F_GETFL, 0);
    if fl < 0 {
        return Err(fl);
    }
    Ok((st.st_mode & libc::S_IFMT, fl as i32))
}

/// `SO_LINGER` of a socket: `Some(seconds)` when lingering is on.
pub fn linger(fd: i32) -> Result<Option<i32>, Sysret> {
    let mut v = [0i32; 2];
    let mut len = 8u32;
    // SAFETY: `v` (a struct linger) and `len` are writable; the kernel
    // writes at most `len` bytes.
    let r = unsafe {
        syscall5(
            nr::GETSOCKOPT,
            fd as u64,
            libc::SOL_SOCKET as u64,
            libc::SO_LINGER as u64,
            v.as_mut_ptr() as u64,
            &mut len as *mut u32 as u64,
        )
    };
    if r < 0 {
        return Err(r);
    }
    Ok((v[0] != 0).then_some(v[1]))
}

/// `poll` on up to a few descriptors; `timeout_ms < 0` waits without limit.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Sysret {
    // SAFETY: `fds` is a writable array of `fds.len()` pollfd entries.
    unsafe { syscall3(nr::POLL, fds.as_mut_ptr() as u64, fds.len() as u64, timeout_ms as i64 as u64) }
}

/// The number of CPUs this process may run on (`sched_getaffinity`).
pub fn affinity_cpus() -> u32 {
    let mut mask = [0u64; 16];
    // SAFETY: `mask` is writable for its 128 bytes, which the call is told.
    let r = unsafe { syscall3(nr::SCHED_GETAFFINITY, 0, 128, mask.as_mut_ptr() as u64) };
    if r <= 0 {
        return 1;
    }
    mask.iter().map(|w| w.count_ones()).sum::<u32>().max(1)
}

/// Copies `n` bytes with `rep movsb`, touching no vector register (the
/// gate promises its callers that registers above xmm15 survive, and
/// `core::ptr::copy_nonoverlapping` may become a call of glibc's AVX `memcpy`).
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` bytes; the ranges must
/// not overlap.
#[inline(always)]
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller guarantees both ranges; `rep movsb` moves exactly
    // `rcx` bytes forward (the ABI guarantees DF = 0 at function boundaries).
    unsafe {
        asm!("rep movsb",
             inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
}

pub fn epoll_create(flags: i32) -> Sysret {
    // SAFETY: integer arguments only.
    unsafe { syscall1(nr::EPOLL_CREATE1, flags as u64) }
}

/// A user `struct epoll_event`: the kernel's (packed on x86-64), from its
/// uapi headers.
pub use shunt_abi::uapi::epoll_event as EpollEvent;

/// `epoll_ctl` with an event (or none, for `EPOLL_CTL_DEL`).
pub fn epoll_ctl(epfd: i32, op: i32, fd: i32, ev: Option<&mut EpollEvent>) -> Sysret {
    let p = ev.map_or(0, |e| e as *mut EpollEvent as u64);
    // SAFETY: `p` is null or a live, writable epoll_event.
    unsafe { syscall4(nr::EPOLL_CTL, epfd as u64, op as u64, fd as u64, p) }
}
