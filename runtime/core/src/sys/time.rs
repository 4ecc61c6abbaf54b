//! Time, from the kernel's vDSO called on the runtime stack.
//!
//! Clocks the vDSO does not serve (CPU-time and dynamic clocks) go to the
//! kernel directly. The selector is set to ALLOW around the vDSO call: if the
//! clocksource cannot be read from user space, the vDSO falls back to a
//! `syscall` outside the runtime's exempt text, which must not trap back here.

use crate::dispatch::Ret;
use crate::layout::GateFrame;
use crate::mem::plausible_user_ptr;
use crate::slot::current;
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

pub fn sys_clock_gettime(f: &mut GateFrame) -> Ret {
    let (clk, ts) = (f.args[0] as i64, f.args[1]);
    match vdso::clock_gettime() {
        Some(vf) if vdso_clock(clk) && plausible_user_ptr(ts, TIMESPEC) => {
            // SAFETY: on an attached thread (a handler); the vDSO function is called
            // with the program's own pointers, checked plausible above.
            let r = unsafe { with_allow_on(current(), || vf(clk as i32, ts as *mut libc::timespec)) };
            Ret::emulated(r as i64)
        }
        _ => forward(f),
    }
}

pub fn sys_clock_getres(f: &mut GateFrame) -> Ret {
    let (clk, ts) = (f.args[0] as i64, f.args[1]);
    match vdso::clock_getres() {
        Some(vf) if vdso_clock(clk) && (ts == 0 || plausible_user_ptr(ts, TIMESPEC)) => {
            // SAFETY: on an attached thread (a handler); the vDSO function is called
            // with the program's own pointers, checked plausible above.
            let r = unsafe { with_allow_on(current(), || vf(clk as i32, ts as *mut libc::timespec)) };
            Ret::emulated(r as i64)
        }
        _ => forward(f),
    }
}

pub fn sys_gettimeofday(f: &mut GateFrame) -> Ret {
    let (tv, tz) = (f.args[0], f.args[1]);
    let ok = |p: u64, n: u64| p == 0 || plausible_user_ptr(p, n);
    match vdso::gettimeofday() {
        Some(vf) if ok(tv, 16) && ok(tz, 8) => {
            // SAFETY: on an attached thread (a handler); the vDSO function is called
            // with the program's own pointers, checked plausible above.
            let r = unsafe { with_allow_on(current(), || vf(tv as *mut libc::timeval, tz as *mut libc::c_void)) };
            Ret::emulated(r as i64)
        }
        _ => forward(f),
    }
}

pub fn sys_time(f: &mut GateFrame) -> Ret {
    let t = f.args[0];
    match vdso::time() {
        Some(vf) if t == 0 || plausible_user_ptr(t, 8) => {
            // SAFETY: on an attached thread (a handler); the vDSO function is called
            // with the program's own pointers, checked plausible above.
            let r = unsafe { with_allow_on(current(), || vf(t as *mut i64)) };
            Ret::emulated(r)
        }
        _ => forward(f),
    }
}
