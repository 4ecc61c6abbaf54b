//! `libshunt.so`: the shunt runtime as a shared library.
//!
//! Loaded with `LD_PRELOAD` by `shunt run`, or linked as an ordinary
//! `DT_NEEDED` dependency by `shunt cc`/`shunt c++`. Its constructor runs
//! before `main`:
//!
//! 1. reads the instance from the environment (`SHUNT_INSTANCE`, set by
//!    `shunt run` and inherited by every process of an instance; or
//!    `SHUNT_STATS=FILE` for a stand-alone instance whose root process writes
//!    the report);
//! 2. installs the runtime and attaches the main thread;
//! 3. patches glibc's own `syscall` sites in memory from the plan for the
//!    loaded libc.so.6 and ld.so (`shunt_patch`; `SHUNT_PATCH=0`
//!    turns this off). Without a plan nothing is patched and, with
//!    `SHUNT_DEBUG=1`, one line on stderr says so. `SHUNT_DEBUG=1` also
//!    prints what was patched and what it cost;
//! 4. rewrites every other loaded object (the program, its libraries) from
//!    its plan (`SHUNT_REWRITE=0`, `shunt run --no-rewrite`, turns this
//!    off), and, through the interposed [`dlopen`], every object loaded
//!    later while the process is still single-threaded (once other threads
//!    exist, text they may be running is never rewritten: such objects stay
//!    on the trap fallback).
//!
//! # Plans are made out of process
//!
//! This library only *applies* plans (`shunt_patch`'s applier: no x86
//! decoder, no ELF parser, no serde). A plan is found in the plan
//! directories by the object's build-id; an object seen for the first time
//! is planned by a helper process, `shunt glibc plan-for FILE`, which
//! checks the file is the loaded object, plans it (or finds its cached
//! plan), caches it for the next process and prints it on a pipe. The
//! helper is started with raw system calls from the runtime's own text
//! (`clone` without `SIGCHLD`, so the program's `wait` never sees it, then
//! `execve` of the shunt binary with a small clean environment): it is no
//! process of the instance and none of its calls is counted. Why a helper
//! rather than plans made only by `shunt run` before the program starts:
//! the objects a program will load are known only as it loads them
//! (`dlopen`, programs it `exec`s), and planning in process would put the
//! planner (iced-x86, `object`, serde) into every program's address space.
//! When no helper can run (no shunt binary found, or it fails), the object
//! is not rewritten and its calls stay on the trap fallback, counted; with
//! no shunt binary at all (a copy of `libshunt.so` alone), only objects
//! that already have a plan are rewritten, silently for the others.
//!
//! The trap fallback (Syscall User Dispatch) is armed when it has something to
//! report: inside an instance (`shunt run`, or a process of a stand-alone
//! instance) unless `SHUNT_TRAP=0`, in a stand-alone instance's root
//! (`SHUNT_STATS` set), or when `SHUNT_TRAP=1`. A `shunt cc` program run
//! natively arms nothing: with glibc patched it does not need the fallback,
//! and SUD taxes every syscall it lets through (~+5–10%).
//!
//! If the runtime cannot start, the program does not run: it exits with 127
//! and one line on stderr, rather than running unobserved.

use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

mod planner;

extern "C" fn shunt_init(_argc: i32, _argv: *const *const c_char, _envp: *const *const c_char) {
    // Decides the trap fallback too (armed inside an instance, unless
    // SHUNT_TRAP=0; off for a program run natively, unless SHUNT_TRAP=1), and
    // hides the runtime's variables from the program.
    let opts = match shunt_install::options_from_env() {
        Ok(o) => o,
        Err(e) => fail(&e),
    };
    // Without a planner to run (a copy of libshunt.so with no shunt binary
    // beside it), objects with no plan yet are left to the trap fallback.
    let patch = opts.patch;
    let rewrite = opts.rewrite && planner::set_helper(opts.exe.clone(), opts.lib.clone());
    // Children of a stand-alone instance join it: execve adds the instance's
    // variables to every new image (runtime/core/src/sys/exec.rs).
    if let Err(e) = shunt_install::install(opts) {
        fail(&format!("cannot start the runtime: {e}"));
    }
    if !patch && !rewrite {
        return;
    }
    REWRITE_LATER.store(rewrite, Ordering::Relaxed);
    let debug = std::env::var_os("SHUNT_DEBUG").is_some_and(|v| !v.is_empty() && v != "0");
    // glibc is called while patching (plan files, dl_iterate_phdr): keep those
    // calls out of the trap statistics.
    shunt_core::trap::with_allow(|| {
        let make = |file: &std::path::Path, id: Option<&str>| planner::plan_out_of_process(file, id);
        let report = shunt_patch::apply_loaded(patch, rewrite.then_some(&make as shunt_patch::PlanMaker));
        if debug {
            eprintln!("shunt: {report}");
        }
    });
}

/// Whether objects `dlopen` loads are rewritten (set by the constructor).
static REWRITE_LATER: AtomicBool = AtomicBool::new(false);
/// glibc's `dlopen`, found on first use.
static REAL_DLOPEN: AtomicUsize = AtomicUsize::new(0);

type Dlopen = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;

/// `dlopen`, interposed (the preload comes first in the lookup order): glibc's
/// `dlopen`, then the rewrite of the objects it loaded, as at start-up
/// (`shunt_patch::apply_loaded` looks only at objects it has not seen, and
/// refuses a multi-threaded process).
///
/// # Safety
/// As glibc's `dlopen`: `file` is null or a NUL-terminated path.
#[no_mangle]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    let mut real = REAL_DLOPEN.load(Ordering::Acquire);
    if real == 0 {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds the next
        // definition after this library's (glibc's).
        real = unsafe { libc::dlsym(libc::RTLD_NEXT, c"dlopen".as_ptr()) } as usize;
        if real == 0 {
            return std::ptr::null_mut();
        }
        REAL_DLOPEN.store(real, Ordering::Release);
    }
    // SAFETY: `real` is glibc's dlopen, whose type this is.
    let real: Dlopen = unsafe { std::mem::transmute::<usize, Dlopen>(real) };
    // SAFETY: the caller's arguments, passed on.
    let handle = unsafe { real(file, mode) };
    if !handle.is_null() && REWRITE_LATER.load(Ordering::Relaxed) && shunt_core::installed() {
        let debug = std::env::var_os("SHUNT_DEBUG").is_some_and(|v| !v.is_empty() && v != "0");
        shunt_core::trap::with_allow(|| {
            let make = |file: &std::path::Path, id: Option<&str>| planner::plan_out_of_process(file, id);
            let report = shunt_patch::apply_loaded(false, Some(&make as shunt_patch::PlanMaker));
            if debug && (!report.objects.is_empty() || report.refused.is_some()) {
                eprintln!("shunt: after dlopen: {report}");
            }
        });
    }
    handle
}

fn fail(msg: &str) -> ! {
    eprintln!("shunt: {msg}");
    std::process::exit(127)
}

#[used]
#[link_section = ".init_array"]
static SHUNT_INIT: extern "C" fn(i32, *const *const c_char, *const *const c_char) = shunt_init;

/// The address of the call gate, for programs that call it directly.
#[no_mangle]
pub extern "C" fn shunt_gate_address() -> usize {
    shunt_core::gate::gate_address()
}
