//! The kernel's vDSO, which answers time and CPU queries without a syscall.
//!
//! The installer (`shunt-install`) looks the functions up — glibc has
//! already parsed the vDSO, so `dlvsym` finds them without an ELF parser in
//! the core — and hands their addresses to [`set`]. The handlers in
//! `sys/time.rs` and `sys/sched.rs` call them on the runtime stack. Kernel
//! code in the vDSO uses no vector registers.

use core::sync::atomic::{AtomicUsize, Ordering};

static CLOCK_GETTIME: AtomicUsize = AtomicUsize::new(0);
static GETTIMEOFDAY: AtomicUsize = AtomicUsize::new(0);
static TIME: AtomicUsize = AtomicUsize::new(0);
static CLOCK_GETRES: AtomicUsize = AtomicUsize::new(0);
static GETCPU: AtomicUsize = AtomicUsize::new(0);

pub type ClockGettime = unsafe extern "C" fn(i32, *mut libc::timespec) -> i32;
pub type Gettimeofday = unsafe extern "C" fn(*mut libc::timeval, *mut libc::c_void) -> i32;
pub type Time = unsafe extern "C" fn(*mut i64) -> i64;
pub type ClockGetres = unsafe extern "C" fn(i32, *mut libc::timespec) -> i32;
pub type Getcpu = unsafe extern "C" fn(*mut u32, *mut u32, *mut libc::c_void) -> i32;

/// The vDSO functions the runtime uses (addresses; 0 when absent).
#[derive(Clone, Copy, Default, Debug)]
pub struct Functions {
    pub clock_gettime: usize,
    pub gettimeofday: usize,
    pub time: usize,
    pub clock_getres: usize,
    pub getcpu: usize,
}

impl Functions {
    /// How many were found.
    pub fn count(&self) -> usize {
        [self.clock_gettime, self.gettimeofday, self.time, self.clock_getres, self.getcpu]
            .iter()
            .filter(|&&a| a != 0)
            .count()
    }
}

/// Records the vDSO functions.
///
/// # Safety
/// Every non-zero address is the kernel vDSO's function of that name, with
/// the signature of its type alias above.
pub unsafe fn set(f: &Functions) {
    CLOCK_GETTIME.store(f.clock_gettime, Ordering::Relaxed);
    GETTIMEOFDAY.store(f.gettimeofday, Ordering::Relaxed);
    TIME.store(f.time, Ordering::Relaxed);
    CLOCK_GETRES.store(f.clock_getres, Ordering::Relaxed);
    GETCPU.store(f.getcpu, Ordering::Relaxed);
}

macro_rules! getter {
    ($fn_name:ident, $slot:ident, $ty:ty) => {
        #[inline(always)]
        pub fn $fn_name() -> Option<$ty> {
            let p = $slot.load(Ordering::Relaxed);
            if p == 0 {
                None
            } else {
                // SAFETY: `set`'s contract: a non-zero address is the vDSO
                // function of this type.
                Some(unsafe { core::mem::transmute::<usize, $ty>(p) })
            }
        }
    };
}

getter!(clock_gettime, CLOCK_GETTIME, ClockGettime);
getter!(gettimeofday, GETTIMEOFDAY, Gettimeofday);
getter!(time, TIME, Time);
getter!(clock_getres, CLOCK_GETRES, ClockGetres);
getter!(getcpu, GETCPU, Getcpu);
