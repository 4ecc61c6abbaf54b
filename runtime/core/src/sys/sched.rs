//! Scheduling queries answered in user space: `getcpu`, from the vDSO.
//! (`sched_getaffinity` is forwarded: another process may change it at any time.)

use crate::task::{Call, Ret};
use crate::umem;
use crate::trap::with_allow_on;
use crate::vdso;

use super::forward;

pub fn sys_getcpu(f: &mut Call) -> Ret {
    let (cpu, node) = (f.args[0], f.args[1]);
    let ok = |p: u64| p == 0 || umem::plausible(p, 4);
    match vdso::getcpu() {
        Some(vf) if ok(cpu) && ok(node) => {
            // SAFETY: the task's block is this thread's; the vDSO function is
            // called with the program's own pointers, checked plausible.
            let r = unsafe { with_allow_on(f.task.block(), || vf(cpu as *mut u32, node as *mut u32, core::ptr::null_mut())) };
            Ret::emulated(r as i64)
        }
        _ => forward(f),
    }
}
