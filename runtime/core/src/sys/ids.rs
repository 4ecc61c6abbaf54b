//! Process and thread ids, and credentials.
//!
//! - `getpid`: cached per process (the task's [`Process`]), refreshed in
//!   every fork child. Not used by a vfork child or a `CLONE_VM` child that
//!   is not a thread (they share this memory but are other processes), which
//!   ask the kernel.
//! - `gettid`: cached in the thread block when the thread is attached.
//! - uids/gids: cached per thread (credentials are per-thread in the kernel),
//!   valid while the process-wide credential generation is unchanged; every
//!   set*id, `setgroups`, `unshare` and `setns` moves it on.
//! - `getppid` is deliberately not emulated: reparenting changes it without
//!   any call of ours.

use core::sync::atomic::{compiler_fence, Ordering};

use crate::layout::*;
use crate::process::{Process, PROCESS};
use crate::raw;
use crate::task::{Call, Ret, Task};
use crate::umem;

use super::forward;

/// Refreshes the cached pid (installation, fork child).
pub(crate) fn refresh_pid() {
    PROCESS.pid.store(raw::getpid(), Ordering::Relaxed);
}

/// Fork hook: the child has a pid of its own.
pub(crate) fn after_fork(_tb: *mut ThreadBlock) {
    refresh_pid();
}

/// Makes every thread's credential cache stale.
pub(crate) fn invalidate_creds(p: &Process) {
    p.cred_gen.fetch_add(1, Ordering::AcqRel);
}

#[inline(always)]
fn shares_parent_memory(t: &Task) -> bool {
    t.flags() & (TBF_VFORK_CHILD | TBF_NO_ID_CACHE) != 0
}

pub fn sys_getpid(c: &mut Call) -> Ret {
    if shares_parent_memory(&c.task) {
        c.count_now(Answer::Passthrough);
        return Ret::counted(raw::getpid() as i64);
    }
    Ret::emulated(c.task.process().pid() as i64)
}

pub fn sys_gettid(c: &mut Call) -> Ret {
    if c.task.flags() & TBF_VFORK_CHILD != 0 || c.task.tid() == 0 {
        c.count_now(Answer::Passthrough);
        return Ret::counted(raw::gettid() as i64);
    }
    Ret::emulated(c.task.tid())
}

/// The thread's credentials, from the cache or (then cached) from the kernel.
fn creds(t: &Task) -> (CredCache, Answer) {
    let tb = t.block();
    let gen = t.process().cred_gen.load(Ordering::Acquire);
    // SAFETY: `tb` is the calling thread's block (a handler's task). A
    // signal handler on this thread may read or refill the cache while this
    // runs: the generation is read before and after the copy (volatile), and
    // invalidated around a refill.
    unsafe {
        if core::ptr::read_volatile(core::ptr::addr_of!((*tb).creds.gen)) == gen && !shares_parent_memory(t) {
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
        let r1 = raw::syscall3(shunt_abi::syscalls::nr::GETRESUID, u as u64, u.add(1) as u64, u.add(2) as u64);
        let r2 = raw::syscall3(shunt_abi::syscalls::nr::GETRESGID, g as u64, g.add(1) as u64, g.add(2) as u64);
        if r1 == 0 && r2 == 0 && !shares_parent_memory(t) {
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

fn one(c: &Call, pick: impl Fn(&CredCache) -> u32) -> Ret {
    let (creds, how) = creds(&c.task);
    Ret { value: pick(&creds) as i64, answer: Some(how) }
}

pub fn sys_getuid(c: &mut Call) -> Ret {
    one(c, |c| c.uid[0])
}
pub fn sys_geteuid(c: &mut Call) -> Ret {
    one(c, |c| c.uid[1])
}
pub fn sys_getgid(c: &mut Call) -> Ret {
    one(c, |c| c.gid[0])
}
pub fn sys_getegid(c: &mut Call) -> Ret {
    one(c, |c| c.gid[1])
}

fn three(c: &Call, pick: impl Fn(&CredCache) -> [u32; 3]) -> Ret {
    let p = [c.args[0], c.args[1], c.args[2]];
    if !p.iter().all(|&a| umem::plausible(a, 4)) {
        return forward(c);
    }
    let (creds, how) = creds(&c.task);
    let v = pick(&creds);
    for i in 0..3 {
        umem::write(p[i], &v[i]);
    }
    Ret { value: 0, answer: Some(how) }
}

pub fn sys_getresuid(c: &mut Call) -> Ret {
    three(c, |c| c.uid)
}
pub fn sys_getresgid(c: &mut Call) -> Ret {
    three(c, |c| c.gid)
}

/// Forwards a credential change and makes every cached credential stale.
fn changes_creds(c: &Call) -> Ret {
    let r = forward(c);
    invalidate_creds(c.task.process());
    r
}

pub fn sys_setuid(c: &mut Call) -> Ret {
    changes_creds(c)
}
pub fn sys_setgid(c: &mut Call) -> Ret {
    changes_creds(c)
}
pub fn sys_setreuid(c: &mut Call) -> Ret {
    changes_creds(c)
}
pub fn sys_setregid(c: &mut Call) -> Ret {
    changes_creds(c)
}
pub fn sys_setresuid(c: &mut Call) -> Ret {
    changes_creds(c)
}
pub fn sys_setresgid(c: &mut Call) -> Ret {
    changes_creds(c)
}
pub fn sys_setfsuid(c: &mut Call) -> Ret {
    changes_creds(c)
}
pub fn sys_setfsgid(c: &mut Call) -> Ret {
    changes_creds(c)
}
pub fn sys_setgroups(c: &mut Call) -> Ret {
    changes_creds(c)
}
