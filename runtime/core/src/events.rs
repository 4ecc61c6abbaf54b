//! Events the runtime reports: policy denials (once per number), policy kills
//! and fatal runtime errors.
//!
//! Under `shunt run`, whose supervisor creates `<instance>/events`, they are
//! appended there, one line each (`<pid> deny <name> <errno>`,
//! `<pid> kill <name>`, `<pid> fatal <message>`), and the supervisor reports
//! them; otherwise they go to stderr. The file is opened per event: the
//! program may close any descriptor at any time, so the runtime keeps none.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use shunt_abi::syscalls::{name_of, TABLE_LEN};

use crate::kernel::{self, KernelSigaction};
use crate::raw;
use crate::text::FixedBuf;

static LOGGED: [AtomicU64; TABLE_LEN / 64] = [const { AtomicU64::new(0) }; TABLE_LEN / 64];

/// NUL-terminated path of the events file; empty means stderr.
static mut EVENTS_PATH: [u8; 4096] = [0; 4096];

/// Sets the events file (`parts` joined).
///
/// # Safety
/// Installation only (single-threaded: nothing reads the path meanwhile).
pub(crate) unsafe fn set_path(parts: &[&[u8]]) {
    // SAFETY: by the caller's promise, the only reference to the buffer.
    let dst = unsafe { &mut *core::ptr::addr_of_mut!(EVENTS_PATH) };
    if crate::text::join(dst, parts).is_none() {
        dst[0] = 0; // too long: events go to stderr
    }
}

/// Exit status of an instance killed by policy, as for a seccomp kill.
pub const KILL_SIGNAL: i32 = libc::SIGSYS;

fn emit(kind: &str, args: core::fmt::Arguments<'_>, human: core::fmt::Arguments<'_>) {
    // Initialised with `rep stosb`: a plain `[0; 512]` may become a call of
    // glibc's memset, which uses vector registers the gate does not save.
    let mut buf = core::mem::MaybeUninit::<[u8; 512]>::uninit();
    // SAFETY: 512 writable bytes, zeroed before they are read as an array.
    let buf = unsafe {
        crate::mem::fill(buf.as_mut_ptr() as *mut u8, 0, 512);
        buf.assume_init_mut()
    };
    // SAFETY: written once at installation, read-only afterwards.
    let path = unsafe { &*core::ptr::addr_of!(EVENTS_PATH) };
    let pid = raw::getpid();
    let mut w = FixedBuf { buf, len: 0 };
    if path[0] != 0 {
        let _ = write!(w, "{pid} {kind} {args}\n");
        let fd = raw::open(
            &path[..],
            libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC,
            0o600,
        );
        if fd >= 0 {
            let _ = raw::write_all(fd as i32, &w.buf[..w.len]);
            raw::close(fd as i32);
            return;
        }
        w.len = 0; // no events file (gone): the line for stderr alone
    }
    let _ = write!(w, "shunt: pid {pid}: {human}\n");
    let _ = raw::write_all(2, &w.buf[..w.len]);
}

/// A call refused by policy; logged the first time per number.
pub fn denied(nr: usize, errno: u16) {
    let bit = 1u64 << (nr % 64);
    if LOGGED[nr / 64].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
        return;
    }
    let name = name_of(nr as u64);
    let ename = shunt_abi::errno::name_of(errno);
    emit(
        "deny",
        format_args!("{name} {errno}"),
        format_args!("policy denied {name} ({})", ename.unwrap_or("errno")),
    );
}

/// A call the policy kills the instance for. Terminates the process with
/// SIGSYS, like a seccomp kill, without a core dump.
pub fn killed(nr: usize) -> ! {
    let name = name_of(nr as u64);
    emit("kill", format_args!("{name}"), format_args!("killed: {name} is forbidden by the policy"));
    die_by_signal(KILL_SIGNAL)
}

/// A runtime error the program should not die of (its own work is done or
/// unaffected), told once on stderr or in the events file.
pub fn warning(msg: &[u8], path: &[u8]) {
    let msg = core::str::from_utf8(msg).unwrap_or("runtime error");
    let path = core::str::from_utf8(path).unwrap_or("(a path that is not UTF-8)");
    emit("warn", format_args!("{msg} {path}"), format_args!("warning: {msg} {path}"));
}

/// An unrecoverable runtime error.
pub fn fatal(msg: &[u8]) -> ! {
    let msg = core::str::from_utf8(msg).unwrap_or("fatal runtime error");
    emit("fatal", format_args!("{msg}"), format_args!("fatal: {msg}"));
    die_by_signal(libc::SIGABRT)
}

fn die_by_signal(sig: i32) -> ! {
    kernel::sigaction(sig, Some(&KernelSigaction::DEFAULT), None);
    // SAFETY: raw syscalls with pointers to live locals of the kernel's
    // layouts (struct rlimit64: two u64; sigset_t: one u64).
    unsafe {
        // No core file: this is a policy decision, not a crash to debug.
        let zero = [0u64; 2];
        raw::syscall4(shunt_abi::syscalls::nr::PRLIMIT64, 0, libc::RLIMIT_CORE as u64, zero.as_ptr() as u64, 0);
        let set: u64 = 1 << (sig - 1);
        raw::syscall4(shunt_abi::syscalls::nr::RT_SIGPROCMASK, libc::SIG_UNBLOCK as u64, &set as *const u64 as u64, 0, 8);
        raw::syscall2(shunt_abi::syscalls::nr::KILL, raw::getpid() as u64, sig as u64);
    }
    raw::exit_group(128 + sig)
}
