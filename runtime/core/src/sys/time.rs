//! Time, from the kernel's vDSO called on the runtime stack.
//!
//! Clocks the vDSO does not serve (CPU-time and dynamic clocks) go to the
//! kernel directly. The selector is set to ALLOW around the vDSO call: if the
//! clocksource cannot be read from user space, the vDSO falls back to a
//! `syscall` outside the runtime's exempt text, which must not trap back here.

use crate::task::{Call, Ret};
use crate::umem;
use crate::trap::with_allow_on;
use crate::vdso;

use super::forward;

/// Clocks the x86-64 vDSO answers.
fn vdso_clock(clk: i64) -> bool {
    matches!(
        clk as i32,
        libc::CLOCK_REALTIME
            | libc::CLOCK_MONOTONIC
            | libc::CLOCK_MONOTONIC_RAW
            | libc::CLOCK_REALTIME_COARSE
            | libc::CLOCK_MONOTONIC_COARSE
            | libc::CLOCK_BOOTTIME
            | libc::CLOCK_TAI
    ) && clk >= 0
}

const TIMESPEC: u64 = core::mem::size_of::<libc::timespec>() as u64;

pub fn sys_clock_gettime(f: &mut Call) -> Ret {
    let (clk, ts) = (f.args[0] as i64, f.args[1]);
    match vdso::clock_gettime() {
        Some(vf) if vdso_clock(clk) && umem::plausible(ts, TIMESPEC) => {
            // SAFETY: the task's block is this thread's; the vDSO function is
            // called with the program's own pointers, checked plausible.
            let r = unsafe { with_allow_on(f.task.block(), || vf(clk as i32, ts as *mut libc::timespec)) };
            Ret::emulated(r as i64)
        }
        _ => forward(f),
    }
}

pub fn sys_clock_getres(f: &mut Call) -> Ret {
    let (clk, ts) = (f.args[0] as i64, f.args[1]);
    match vdso::clock_getres() {
        Some(vf) if vdso_clock(clk) && (ts == 0 || umem::plausible(ts, TIMESPEC)) => {
            // SAFETY: the task's block is this thread's; the vDSO function is
            // called with the program's own pointers, checked plausible.
            let r = unsafe { with_allow_on(f.task.block(), || vf(clk as i32, ts as *mut libc::timespec)) };
            Ret::emulated(r as i64)
        }
        _ => forward(f),
    }
}

pub fn sys_gettimeofday(f: &mut Call) -> Ret {
    let (tv, tz) = (f.args[0], f.args[1]);
    let ok = |p: u64, n: u64| p == 0 || umem::plausible(p, n);
    match vdso::gettimeofday() {
        Some(vf) if ok(tv, 16) && ok(tz, 8) => {
            // SAFETY: the task's block is this thread's; the vDSO function is
            // called with the program's own pointers, checked plausible.
            let r = unsafe { with_allow_on(f.task.block(), || vf(tv as *mut libc::timeval, tz as *mut libc::c_void)) };
            Ret::emulated(r as i64)
        }
        _ => forward(f),
    }
}

pub fn sys_time(f: &mut Call) -> Ret {
    let t = f.args[0];
    match vdso::time() {
        Some(vf) if t == 0 || umem::plausible(t, 8) => {
            // SAFETY: the task's block is this thread's; the vDSO function is
            // called with the program's own pointers, checked plausible.
            let r = unsafe { with_allow_on(f.task.block(), || vf(t as *mut i64)) };
            Ret::emulated(r)
        }
        _ => forward(f),
    }
}
