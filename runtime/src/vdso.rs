//! The kernel's vDSO, which answers time and CPU queries without a syscall.
//!
//! Located at installation from `AT_SYSINFO_EHDR` and parsed with `object`;
//! the handlers in `sys/time.rs` and `sys/sched.rs` call it on the runtime
//! stack. Kernel code in the vDSO uses no vector registers.

use core::sync::atomic::{AtomicUsize, Ordering};

use object::read::elf::ElfFile64;
use object::{Object, ObjectSegment, ObjectSymbol};

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

/// The mapped vDSO image as a byte slice: ELF header, program headers, then
/// the extent of its sections and segments.
unsafe fn image(base: usize) -> Option<&'static [u8]> {
    let ehdr = &*(base as *const libc::Elf64_Ehdr);
    if ehdr.e_ident[..4] != *b"\x7fELF" {
        return None;
    }
    let mut size = ehdr.e_shoff as usize + ehdr.e_shnum as usize * ehdr.e_shentsize as usize;
    let phdrs = core::slice::from_raw_parts(
        (base + ehdr.e_phoff as usize) as *const libc::Elf64_Phdr,
        ehdr.e_phnum as usize,
    );
    for ph in phdrs {
        if ph.p_type == libc::PT_LOAD {
            size = size.max((ph.p_offset + ph.p_filesz) as usize);
        }
    }
    Some(core::slice::from_raw_parts(base as *const u8, size))
}

/// Finds the vDSO functions. Returns how many were found.
pub unsafe fn init() -> usize {
    let base = libc::getauxval(libc::AT_SYSINFO_EHDR) as usize;
    if base == 0 {
        return 0;
    }
    let Some(bytes) = image(base) else { return 0 };
    let Ok(file) = ElfFile64::<object::LittleEndian>::parse(bytes) else { return 0 };
    let vaddr0 = file.segments().map(|s| s.address()).min().unwrap_or(0);
    let bias = base as u64 - vaddr0;
    let mut found = 0;
    for sym in file.dynamic_symbols() {
        let slot = match sym.name() {
            Ok("__vdso_clock_gettime") => &CLOCK_GETTIME,
            Ok("__vdso_gettimeofday") => &GETTIMEOFDAY,
            Ok("__vdso_time") => &TIME,
            Ok("__vdso_clock_getres") => &CLOCK_GETRES,
            Ok("__vdso_getcpu") => &GETCPU,
            _ => continue,
        };
        if sym.address() != 0 {
            slot.store((sym.address() + bias) as usize, Ordering::Relaxed);
            found += 1;
        }
    }
    found
}

macro_rules! getter {
    ($fn_name:ident, $slot:ident, $ty:ty) => {
        #[inline(always)]
        pub fn $fn_name() -> Option<$ty> {
            let p = $slot.load(Ordering::Relaxed);
            if p == 0 {
                None
            } else {
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
