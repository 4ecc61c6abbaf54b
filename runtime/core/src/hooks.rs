//! Hooks that subsystems register for the moments a process changes under
//! them: a fork child's first instructions, and an `execve` about to replace
//! the image.
//!
//! Registration order is run order. The installer registers the built-in
//! subsystems (ids, random numbers, trap fallback, fd table); a subsystem
//! added later (the transport) registers its own instead of editing the
//! fork path. Hooks run on the runtime stack, in the middle of a syscall:
//! the gate's rules apply (no allocation, no locks, raw syscalls only).
//!
//! Storage is a fixed array of function pointers, appended lock-free: a
//! slot is claimed with `fetch_add`, then its pointer is stored; a runner
//! skips a claimed slot whose pointer is not stored yet.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::layout::ThreadBlock;

/// Runs in a fork child on its only thread, after the process has a stats
/// segment of its own and before the child returns to the program.
/// `thread` is that thread's block.
pub type ForkChildHook = fn(thread: *mut ThreadBlock);

/// Runs just before an `execve` replaces the image (on success nothing of
/// this process's memory survives; on failure the process goes on). It may
/// add variables to the new image's environment.
pub type ExecHook = fn(env: &mut crate::exec_env::ExecEnv<'_>);

const MAX_HOOKS: usize = 16;

struct Hooks {
    used: AtomicUsize,
    fns: [AtomicUsize; MAX_HOOKS],
}

static FORK_CHILD: Hooks = Hooks::new();
static EXEC: Hooks = Hooks::new();

/// All hook slots are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyHooks;

impl Hooks {
    const fn new() -> Self {
        Hooks { used: AtomicUsize::new(0), fns: [const { AtomicUsize::new(0) }; MAX_HOOKS] }
    }

    fn add(&self, f: usize) -> Result<(), TooManyHooks> {
        let i = self.used.fetch_add(1, Ordering::AcqRel);
        if i >= MAX_HOOKS {
            self.used.fetch_sub(1, Ordering::AcqRel);
            return Err(TooManyHooks);
        }
        self.fns[i].store(f, Ordering::Release);
        Ok(())
    }

    fn each(&self, mut run: impl FnMut(usize)) {
        let n = self.used.load(Ordering::Acquire).min(MAX_HOOKS);
        for slot in &self.fns[..n] {
            let f = slot.load(Ordering::Acquire);
            if f != 0 {
                run(f);
            }
        }
    }
}

/// Registers a fork-child hook.
pub fn on_fork_child(hook: ForkChildHook) -> Result<(), TooManyHooks> {
    FORK_CHILD.add(hook as usize)
}

/// Registers an exec hook.
pub fn on_exec(hook: ExecHook) -> Result<(), TooManyHooks> {
    EXEC.add(hook as usize)
}

pub(crate) fn run_fork_child(thread: *mut ThreadBlock) {
    FORK_CHILD.each(|f| {
        // SAFETY: only `on_fork_child` stores into FORK_CHILD, and only
        // `ForkChildHook` values.
        let hook: ForkChildHook = unsafe { core::mem::transmute::<usize, ForkChildHook>(f) };
        hook(thread)
    });
}

pub(crate) fn run_exec(env: &mut crate::exec_env::ExecEnv<'_>) {
    EXEC.each(|f| {
        // SAFETY: only `on_exec` stores into EXEC, and only `ExecHook` values.
        let hook: ExecHook = unsafe { core::mem::transmute::<usize, ExecHook>(f) };
        hook(env)
    });
}
