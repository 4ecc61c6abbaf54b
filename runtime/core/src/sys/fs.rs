//! File-system calls the runtime must answer itself.
//!
//! A program started by the loader runs inside the shunt binary's process,
//! so the kernel's `/proc/self/exe` names shunt. `readlink` of it (what Go's
//! `os.Executable` does) is answered with the program's path.

use crate::dispatch::Ret;
use crate::layout::GateFrame;
use crate::mem::{self, plausible_user_ptr};

use super::forward;

/// Whether the NUL-terminated string at `p` names this process's exe link.
fn names_own_exe(p: u64) -> bool {
    if !plausible_user_ptr(p, 1) {
        return false;
    }
    let mut buf = [0u8; 32];
    let mut n = 0;
    unsafe {
        while n < buf.len() {
            let c = *((p + n as u64) as *const u8);
            if c == 0 {
                break;
            }
            buf[n] = c;
            n += 1;
        }
    }
    if n == buf.len() {
        return false;
    }
    let s = &buf[..n];
    if s == b"/proc/self/exe" || s == b"/proc/thread-self/exe" {
        return true;
    }
    // /proc/<our pid>/exe
    let pid = super::ids::PID.load(core::sync::atomic::Ordering::Relaxed);
    let mut digits = [0u8; 12];
    let mut d = digits.len();
    let mut v = pid as u32;
    loop {
        d -= 1;
        digits[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let num = &digits[d..];
    s.len() == 6 + num.len() + 4 && s.starts_with(b"/proc/") && &s[6..6 + num.len()] == num && s.ends_with(b"/exe")
}

fn readlink_exe(buf: u64, size: u64) -> Option<Ret> {
    let path = crate::program::program_path()?;
    if size == 0 || size > i32::MAX as u64 {
        return Some(Ret::emulated(-(libc::EINVAL as i64)));
    }
    let n = (path.len() as u64).min(size);
    if !plausible_user_ptr(buf, n) {
        return Some(Ret::emulated(-(libc::EFAULT as i64)));
    }
    unsafe { mem::copy(buf as *mut u8, path.as_ptr(), n as usize) };
    Some(Ret::emulated(n as i64))
}

pub fn sys_readlink(f: &mut GateFrame) -> Ret {
    if names_own_exe(f.args[0]) {
        if let Some(r) = readlink_exe(f.args[1], f.args[2]) {
            return r;
        }
    }
    forward(f)
}

pub fn sys_readlinkat(f: &mut GateFrame) -> Ret {
    // Absolute paths ignore the directory descriptor.
    if names_own_exe(f.args[1]) {
        if let Some(r) = readlink_exe(f.args[2], f.args[3]) {
            return r;
        }
    }
    forward(f)
}
