//! File-system calls the runtime must answer itself.
//!
//! A program started by the loader runs inside the shunt binary's process,
//! so the kernel's `/proc/self/exe` names shunt. `readlink` of it (what Go's
//! `os.Executable` does) is answered with the program's path.

use crate::task::{Call, Ret};
use crate::umem;

use super::forward;

/// Whether the NUL-terminated string at `p` names this process's exe link.
pub(crate) fn names_own_exe(p: u64) -> bool {
    let mut buf = [0u8; 32];
    let Ok(s) = umem::read_cstr(p, &mut buf) else { return false };
    if s == b"/proc/self/exe" || s == b"/proc/thread-self/exe" {
        return true;
    }
    // /proc/<our pid>/exe
    let pid = crate::process::PROCESS.pid();
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
    if !umem::write_bytes(buf, &path[..n as usize]) {
        return Some(Ret::emulated(-(libc::EFAULT as i64)));
    }
    Some(Ret::emulated(n as i64))
}

pub fn sys_readlink(f: &mut Call) -> Ret {
    if names_own_exe(f.args[0]) {
        if let Some(r) = readlink_exe(f.args[1], f.args[2]) {
            return r;
        }
    }
    forward(f)
}

pub fn sys_readlinkat(f: &mut Call) -> Ret {
    // Absolute paths ignore the directory descriptor.
    if names_own_exe(f.args[1]) {
        if let Some(r) = readlink_exe(f.args[2], f.args[3]) {
            return r;
        }
    }
    forward(f)
}
