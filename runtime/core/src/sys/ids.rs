//! Process and thread ids, and credentials.
//!
//! - `getpid`: cached per process, refreshed in every fork child. Not used by
//!   a vfork child or a `CLONE_VM` child that is not a thread (they share this
//!   memory but are other processes), which ask the kernel.
//! - `gettid`: cached in the thread block when the thread is attached.
//! - uids/gids: cached per thread (credentials are per-thread in the kernel),
//!   valid while the process-wide credential generation is unchanged; every
//!   set*id, `setgroups`, `unshare` and `setns` moves it on.
//! - `getppid` is deliberately not emulated: reparenting changes it without
//!   any call of ours.

use core::sync::atomic::{compiler_fence, AtomicI32, AtomicU64, Ordering};

use crate::dispatch::Ret;
use crate::layout::*;
use crate::mem::plausible_user_ptr;
use crate::raw;
use crate::slot::current;

use super::forward;

pub(crate) static PID: AtomicI32 = AtomicI32::new(0);
static CRED_GEN: AtomicU64 = AtomicU64::new(1);

/// Refreshes the cached pid (installation, fork child).
pub(crate) fn refresh_pid() {
    PID.store(raw::getpid(), Ordering::Relaxed);
}

/// Fork hook: the child has a pid of its own.
pub(crate) fn after_fork(_tb: *mut ThreadBlock) {
    refresh_pid();
}

/// Makes every thread's credential cache stale.
pub(crate) fn invalidate_creds() {
    CRED_GEN.fetch_add(1, Ordering::AcqRel);
}

#[inline(always)]
fn shares_parent_memory(tb: *mut ThreadBlock) -> bool {
    unsafe { (*tb).flags & (TBF_VFORK_CHILD | TBF_NO_ID_CACHE) != 0 }
}

pub fn sys_getpid(f: &mut GateFrame) -> Ret {
    let tb = current();
    if shares_parent_memory(tb) {
        crate::dispatch::count_now(f, crate::layout::Answer::Passthrough);
        return Ret::counted(raw::getpid() as i64);
    }
    Ret::emulated(PID.load(Ordering::Relaxed) as i64)
}

pub fn sys_gettid(f: &mut GateFrame) -> Ret {
    let tb = current();
    unsafe {
        if (*tb).flags & TBF_VFORK_CHILD != 0 || (*tb).tid == 0 {
            crate::dispatch::count_now(f, crate::layout::Answer::Passthrough);
            return Ret::counted(raw::gettid() as i64);
        }
        Ret::emulated((*tb).tid)
    }
}

/// The thread's credentials, from the cache or (then cached) from the kernel.
fn creds() -> (CredCache, Answer) {
    let tb = current();
    unsafe {
        let gen = CRED_GEN.load(Ordering::Acquire);
        if core::ptr::read_volatile(core::ptr::addr_of!((*tb).creds.gen)) == gen && !shares_parent_memory(tb) {
            let c = (*tb).creds;
            compiler_fence(Ordering::SeqCst);
            // Still valid after the copy: no handler rewrote it meanwhile.
            if core::ptr::read_volatile(core::ptr::addr_of!((*tb).creds.gen)) == gen {
                return (c, Answer::Emulated);
            }
        }
        let mut c = CredCache { gen, uid: [0; 3], gid: [0; 3] };
        let u = c.uid.as_mut_ptr();
        let g = c.gid.as_mut_ptr();
        let r1 = raw::syscall3(libc::SYS_getresuid as usize, u as u64, u.add(1) as u64, u.add(2) as u64);
        let r2 = raw::syscall3(libc::SYS_getresgid as usize, g as u64, g.add(1) as u64, g.add(2) as u64);
        if r1 == 0 && r2 == 0 && !shares_parent_memory(tb) {
            // A signal handler on this thread may read the cache while this
            // write is under way: invalidate, write the ids, then validate.
            let cache = core::ptr::addr_of_mut!((*tb).creds);
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*cache).gen), 0);
            compiler_fence(Ordering::SeqCst);
            (*cache).uid = c.uid;
            (*cache).gid = c.gid;
            compiler_fence(Ordering::SeqCst);
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*cache).gen), gen);
        }
        (c, Answer::Passthrough)
    }
}

fn one(pick: impl Fn(&CredCache) -> u32) -> Ret {
    let (c, how) = creds();
    Ret { value: pick(&c) as i64, answer: Some(how) }
}

pub fn sys_getuid(_f: &mut GateFrame) -> Ret {
    one(|c| c.uid[0])
}
pub fn sys_geteuid(_f: &mut GateFrame) -> Ret {
    one(|c| c.uid[1])
}
pub fn sys_getgid(_f: &mut GateFrame) -> Ret {
    one(|c| c.gid[0])
}
pub fn sys_getegid(_f: &mut GateFrame) -> Ret {
    one(|c| c.gid[1])
}

fn three(f: &GateFrame, pick: impl Fn(&CredCache) -> [u32; 3]) -> Ret {
    let p = [f.args[0], f.args[1], f.args[2]];
    if !p.iter().all(|&a| plausible_user_ptr(a, 4)) {
        return forward(f);
    }
    let (c, how) = creds();
    let v = pick(&c);
    unsafe {
        for i in 0..3 {
            core::ptr::write_unaligned(p[i] as *mut u32, v[i]);
        }
    }
    Ret { value: 0, answer: Some(how) }
}

pub fn sys_getresuid(f: &mut GateFrame) -> Ret {
    three(f, |c| c.uid)
}
pub fn sys_getresgid(f: &mut GateFrame) -> Ret {
    three(f, |c| c.gid)
}

/// Forwards a credential change and makes every cached credential stale.
fn changes_creds(f: &GateFrame) -> Ret {
    let r = forward(f);
    invalidate_creds();
    r
}

pub fn sys_setuid(f: &mut GateFrame) -> Ret {
    changes_creds(f)
}
pub fn sys_setgid(f: &mut GateFrame) -> Ret {
    changes_creds(f)
}
pub fn sys_setreuid(f: &mut GateFrame) -> Ret {
    changes_creds(f)
}
pub fn sys_setregid(f: &mut GateFrame) -> Ret {
    changes_creds(f)
}
pub fn sys_setresuid(f: &mut GateFrame) -> Ret {
    changes_creds(f)
}
pub fn sys_setresgid(f: &mut GateFrame) -> Ret {
    changes_creds(f)
}
pub fn sys_setfsuid(f: &mut GateFrame) -> Ret {
    changes_creds(f)
}
pub fn sys_setfsgid(f: &mut GateFrame) -> Ret {
    changes_creds(f)
}
pub fn sys_setgroups(f: &mut GateFrame) -> Ret {
    changes_creds(f)
}
