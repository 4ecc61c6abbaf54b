//! Raw system calls issued from the runtime's own text.
//!
//! The runtime never calls glibc's wrappers for its own work: they may be the
//! very code being redirected (recursion), and they are not async-signal-safe
//! in general. A `syscall` instruction here lies inside the runtime's text, which
//! the trap fallback exempts, so these calls go straight to the kernel.
//!
//! Results follow the kernel convention: a value in `-4095..=-1` is `-errno`.
//!
//! The `syscallN` functions are `unsafe`: a system call can do anything to
//! the process (write through its pointer arguments, unmap memory, end
//! threads). Their contract is the kernel's for that call: every pointer
//! argument is valid for what the kernel does with it, and the call leaves
//! no Rust value broken. The small wrappers below are safe where their
//! types guarantee that much.

use core::arch::asm;

/// # Safety
/// See the module docs: the kernel's contract for call `nr`.
#[inline(always)]
pub unsafe fn syscall0(nr: usize) -> i64 {
    let r: i64;
    // SAFETY: the caller's promise; only rax, rcx, r11 change.
    unsafe {
        asm!("syscall", inlateout("rax") nr as i64 => r,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// See the module docs: the kernel's contract for call `nr`.
#[inline(always)]
pub unsafe fn syscall1(nr: usize, a0: u64) -> i64 {
    let r: i64;
    // SAFETY: the caller's promise; only rax, rcx, r11 change.
    unsafe {
        asm!("syscall", inlateout("rax") nr as i64 => r, in("rdi") a0,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// See the module docs: the kernel's contract for call `nr`.
#[inline(always)]
pub unsafe fn syscall2(nr: usize, a0: u64, a1: u64) -> i64 {
    let r: i64;
    // SAFETY: the caller's promise; only rax, rcx, r11 change.
    unsafe {
        asm!("syscall", inlateout("rax") nr as i64 => r, in("rdi") a0, in("rsi") a1,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// See the module docs: the kernel's contract for call `nr`.
#[inline(always)]
pub unsafe fn syscall3(nr: usize, a0: u64, a1: u64, a2: u64) -> i64 {
    let r: i64;
    // SAFETY: the caller's promise; only rax, rcx, r11 change.
    unsafe {
        asm!("syscall", inlateout("rax") nr as i64 => r, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// See the module docs: the kernel's contract for call `nr`.
#[inline(always)]
pub unsafe fn syscall4(nr: usize, a0: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let r: i64;
    // SAFETY: the caller's promise; only rax, rcx, r11 change.
    unsafe {
        asm!("syscall", inlateout("rax") nr as i64 => r, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             in("r10") a3, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// # Safety
/// See the module docs: the kernel's contract for call `nr`.
#[inline(always)]
pub unsafe fn syscall6(nr: usize, a: [u64; 6]) -> i64 {
    let r: i64;
    // SAFETY: the caller's promise; only rax, rcx, r11 change.
    unsafe {
        asm!("syscall", inlateout("rax") nr as i64 => r,
             in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// `true` when a raw result is an error (`-4095..=-1`).
#[inline(always)]
pub fn is_err(r: i64) -> bool {
    (-4095..0).contains(&r)
}

/// Writes all of `bytes` to `fd`, retrying on EINTR and short writes.
pub fn write_all(fd: i32, mut bytes: &[u8]) -> Result<(), i64> {
    while !bytes.is_empty() {
        // SAFETY: write reads `bytes`, a live slice of that length.
        let r = unsafe { syscall3(shunt_abi::syscalls::nr::WRITE, fd as u64, bytes.as_ptr() as u64, bytes.len() as u64) };
        if r == -(libc::EINTR as i64) {
            continue;
        }
        if r <= 0 {
            return Err(r);
        }
        bytes = &bytes[r as usize..];
    }
    Ok(())
}

pub fn getpid() -> i32 {
    // SAFETY: no arguments, no effect on memory.
    unsafe { syscall0(shunt_abi::syscalls::nr::GETPID) as i32 }
}

pub fn gettid() -> i32 {
    // SAFETY: no arguments, no effect on memory.
    unsafe { syscall0(shunt_abi::syscalls::nr::GETTID) as i32 }
}

/// `openat(AT_FDCWD, path, flags, mode)`; `path` must contain a NUL byte
/// (`-EINVAL` otherwise), which ends the name.
pub fn open(path: &[u8], flags: i32, mode: u32) -> i64 {
    if !path.contains(&0) {
        return -(libc::EINVAL as i64);
    }
    // SAFETY: the kernel reads the name up to its NUL, inside `path`.
    unsafe {
        syscall4(shunt_abi::syscalls::nr::OPENAT, libc::AT_FDCWD as u64, path.as_ptr() as u64, flags as u64, mode as u64)
    }
}

pub fn close(fd: i32) {
    // SAFETY: closing a descriptor touches no memory of this process.
    unsafe { syscall1(shunt_abi::syscalls::nr::CLOSE, fd as u64) };
}

/// # Safety
/// With `MAP_FIXED`, `[addr, addr + len)` holds nothing Rust still uses.
pub unsafe fn mmap(addr: usize, len: usize, prot: i32, flags: i32, fd: i32, off: u64) -> i64 {
    // SAFETY: the caller's promise.
    unsafe { syscall6(shunt_abi::syscalls::nr::MMAP, [addr as u64, len as u64, prot as u64, flags as u64, fd as u64, off]) }
}

/// # Safety
/// Nothing uses `[addr, addr + len)` any more.
pub unsafe fn munmap(addr: usize, len: usize) -> i64 {
    // SAFETY: the caller's promise.
    unsafe { syscall2(shunt_abi::syscalls::nr::MUNMAP, addr as u64, len as u64) }
}

/// # Safety
/// No live Rust reference into `[addr, addr + len)` relies on an access the
/// new protection takes away.
pub unsafe fn mprotect(addr: usize, len: usize, prot: i32) -> i64 {
    // SAFETY: the caller's promise.
    unsafe { syscall3(shunt_abi::syscalls::nr::MPROTECT, addr as u64, len as u64, prot as u64) }
}

/// Fills `buf` from the kernel's CSPRNG.
pub fn getrandom(buf: &mut [u8]) -> Result<(), i64> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the kernel writes at most the remaining length of `buf`.
        let r = unsafe {
            syscall3(shunt_abi::syscalls::nr::GETRANDOM, buf[done..].as_mut_ptr() as u64, (buf.len() - done) as u64, 0)
        };
        if r == -(libc::EINTR as i64) {
            continue;
        }
        if r <= 0 {
            return Err(r);
        }
        done += r as usize;
    }
    Ok(())
}

/// `exit_group`; never returns.
pub fn exit_group(code: i32) -> ! {
    // SAFETY: ends the process; exit_group does not return.
    unsafe {
        syscall1(shunt_abi::syscalls::nr::EXIT_GROUP, code as u64);
        core::hint::unreachable_unchecked()
    }
}
