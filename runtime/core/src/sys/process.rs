//! Process and thread life cycle: clone, clone3, fork, exit_group (execve:
//! `exec.rs`).
//!
//! A new thread (`CLONE_VM` with its own stack) gets its own slot before the
//! call. The parent's saved registers are copied into the child's block, and
//! the raw clone (`gate::shunt_clone_raw`) starts the child on its runtime
//! stack, where [`clone_child_start`] arms it; the child then resumes the
//! caller's registers on its new stack with `rax = 0`.
//!
//! `CLONE_VM` without a new stack is vfork-shaped: the gate runs it
//! register-only. A `CLONE_VM|CLONE_VFORK` child with a stack of its own
//! (glibc's `posix_spawn`) gets a block of its own and is marked a vfork
//! child all the same (`TBF_VFORK_CHILD`): it shares the parent's memory.
//! A fork (no `CLONE_VM`) returns in the child through the normal path,
//! which then reinitialises the process state
//! ([`crate::fork::after_fork_in_child`]).
//!
//! These calls count themselves before the syscall: they may return twice
//! (fork) or not at all (exit_group).

use crate::task::{Call, Ret};
use crate::gate::shunt_clone_raw;
use crate::layout::*;
use crate::mem;
use crate::umem;
use crate::raw;
use crate::layout::Answer;
use crate::slot as thread;

const CLONE_VM: u64 = libc::CLONE_VM as u64;
const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;

pub fn sys_clone(f: &mut Call) -> Ret {
    let (flags, newsp) = (f.args[0], f.args[1]);
    clone_common(f, flags, newsp)
}

pub fn sys_clone3(f: &mut Call) -> Ret {
    let (args, size) = (f.args[0], f.args[1]);
    // struct clone_args: flags @0, stack @40, stack_size @48 (64 bytes in v0).
    let ca = if size >= 64 { umem::read::<[u64; 7]>(args) } else { None };
    let Some(ca) = ca else {
        f.count_now(Answer::Passthrough);
        // SAFETY: the program's own call, unchanged (the kernel reports
        // the bad argument).
        return Ret::counted(unsafe { raw::syscall6(f.nr as usize, f.args) });
    };
    let (flags, stack, stack_size) = (ca[0], ca[5], ca[6]);
    let newsp = if stack != 0 { stack.wrapping_add(stack_size) } else { 0 };
    clone_common(f, flags, newsp)
}

fn clone_common(f: &mut Call, flags: u64, newsp: u64) -> Ret {
    let vm = flags & CLONE_VM != 0;
    if vm && newsp == 0 {
        return Ret::vfork_style();
    }
    f.count_now(Answer::Passthrough);
    if !vm && newsp == 0 {
        return fork_like(f);
    }
    // The child starts on a stack of its own: it needs a block of its own.
    let Some(slot) = thread::claim_slot() else {
        return Ret::counted(-(libc::EAGAIN as i64));
    };
    // The kernel copies the caller's mask into the child: what the program
    // believes the caller blocks of the runtime's own signals too.
    let mut child_flags = f.task.flags() & (TBF_APP_BLOCKS_SIGSYS | TBF_APP_BLOCKS_SIGTRAP);
    if flags & CLONE_VFORK != 0 {
        child_flags |= TBF_PARENT_FREES;
        // glibc's posix_spawn (so system() and popen()) starts its child
        // with CLONE_VM|CLONE_VFORK on a stack of its own: a block of its
        // own, but the parent's memory until it execs or exits, and its
        // own fd table and dispositions in the kernel. Everything the
        // runtime keeps in memory for the parent (the fd table's marks,
        // ring connections, the records of SIGSYS/SIGTRAP handlers) must
        // be left alone as for a register-only vfork child.
        if vm && flags & CLONE_THREAD == 0 {
            child_flags |= TBF_VFORK_CHILD;
        }
    }
    if vm && flags & CLONE_THREAD == 0 {
        child_flags |= TBF_NO_ID_CACHE;
    }
    // SAFETY: the slot was just claimed, so its block is ours to prepare
    // and fill; the raw clone starts the child on that block's runtime
    // stack (see `gate::shunt_clone_raw`), with the caller's registers.
    unsafe {
        let child = match thread::prepare_block(slot, child_flags) {
            Ok(c) => c,
            Err(e) => {
                thread::release_slot(slot);
                return Ret::counted(e);
            }
        };
        mem::copy_value(&mut (*child).clone_frame, &*f.frame);
        (*child).clone_frame.rsp = newsp;
        (*child).clone_flags = flags;
        let a = f.args;
        let r = shunt_clone_raw(f.nr, a[0], a[1], a[2], a[3], a[4], child);
        // The slot stays claimed while a thread-like child may use it. A
        // vfork child is gone (exec'd or exited) by now. A child with an
        // address space of its own reads its block through the shared
        // segment until it has made its own, so that slot is never given
        // back (one slot per fork-with-a-new-stack, a rare call).
        if r < 0 || (vm && flags & CLONE_VFORK != 0) {
            thread::release_slot(slot);
        }
        Ret::counted(r)
    }
}

/// First Rust code of a clone child, on its own runtime stack with `GS` set.
pub(crate) extern "C" fn clone_child_start(tb: *mut ThreadBlock) {
    // SAFETY: `tb` is the block this new thread runs on (GS was set to it by
    // `shunt_clone_raw`).
    unsafe {
        (*tb).tid = raw::gettid() as i64;
        if (*tb).clone_flags & CLONE_VM == 0 {
            let snap = crate::fork::BlockSnapshot::take(tb);
            crate::fork::after_fork_in_child(tb, &snap);
        } else if crate::trap::enabled() && crate::trap::arm_thread(tb).is_err() {
            crate::events::fatal(b"could not arm the trap fallback in a new thread");
        }
    }
}

pub fn sys_fork(f: &mut Call) -> Ret {
    f.count_now(Answer::Passthrough);
    fork_like(f)
}

/// A fork on the caller's stack: the child returns through the gate too.
fn fork_like(f: &Call) -> Ret {
    let tb = f.task.block();
    // SAFETY: `tb` is the calling thread's block.
    let snap = unsafe { crate::fork::BlockSnapshot::take(tb) };
    // SAFETY: the program's own fork.
    let r = unsafe { raw::syscall6(f.nr as usize, f.args) };
    if r == 0 {
        // SAFETY: the fork child, on its only thread, with the snapshot its
        // parent took just before.
        unsafe { crate::fork::after_fork_in_child(tb, &snap) };
    }
    Ret::counted(r)
}

pub fn sys_exit_group(f: &mut Call) -> Ret {
    f.count_now(Answer::Passthrough);
    crate::standalone::on_process_exit();
    raw::exit_group(f.args[0] as i32)
}
