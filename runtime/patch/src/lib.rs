//! In-memory rewrite of glibc's own `syscall` sites into calls of the gate.
//!
//! # Why in memory, and why from a plan
//!
//! glibc inlines its `syscall` instructions (526 in libc.so.6 and 46 in ld.so
//! of glibc 2.36), so interposing exported functions misses most of them. The
//! sites are rewritten when the runtime library loads, from a *patch plan*
//! computed once per glibc build (keyed by the GNU build-id) by the planner in
//! `glibc-patch/`, instead of shipping patched copies of libc.so.6 and ld.so:
//!
//! - `shunt run` of any existing dynamically linked binary gets the patch for
//!   free through the preload; no program has to be relinked or given another
//!   interpreter;
//! - `shunt cc` programs only need `libshunt.so` as an ordinary `DT_NEEDED`
//!   dependency with an rpath, and keep the system's ld.so as interpreter;
//! - a plan is applied only when every original byte of every site matches
//!   the loaded object; another glibc build gets its own plan (or is left to
//!   the trap fallback), and is never patched unsafely;
//! - the cost is paid per process: parsing the plan, one small executable
//!   mapping of trampolines per object, and copy-on-write copies of the text
//!   pages that hold a site (measured in `glibc-patch`'s crate docs: a few
//!   hundred µs and well under 1 MiB).
//!
//! # What a site becomes
//!
//! A site is a run of whole instructions containing one `syscall`: `pre`
//! (instructions before it, "backward" mode) and `post` (instructions after
//! it, "forward" mode), `len >= 5` bytes in all. The planner only displaces
//! position-independent instructions that are no branch, and only when no
//! branch lands strictly inside the run. The run is replaced by
//! `jmp rel32 trampoline` and `int3` padding; the trampoline is
//!
//! ```text
//! pre                               ; at the original rsp, as before
//! lea  -128(%rsp),%rsp              ; skip the red zone      (normal only)
//! call *gate_slot(%rip)             ; the gate: SYSCALL convention
//! lea  128(%rsp),%rsp               ; (lea leaves the flags)  (normal only)
//! post
//! jmp  site+len
//! ```
//!
//! Invariant (what a trampoline may clobber): exactly what the original
//! `syscall` clobbers, `rcx`, `r11` and the flags. `pre`/`post` are the
//! original instructions with the same effects; `lea` changes only `rsp`,
//! which is restored; `call`/`ret` balance; and the gate preserves every
//! register but `rax`, `rcx`, `r11` and the flags (see `gate.rs`). The flags
//! differ from a real `syscall` (which restores them from `r11`): the planner
//! refuses a site whose flags are read after the `syscall` before being
//! written. Memory below the caller's `rsp` is untouched for `normal` sites:
//! the return address goes 136 bytes down, past the 128-byte red zone, and the
//! gate switches stacks at once.
//!
//! `no_red_zone` sites (clone, clone3, vfork) have no `rsp` adjustment: a clone
//! child resumes after the `call` on its new stack, where adding 128 would be
//! wrong, and a vfork child shares the stack. The planner allows them only in
//! functions that keep nothing below `rsp` (the pushed return address lands
//! at `-8(%rsp)`). `rt_sigreturn` (`__restore_rt`) is never patched: the
//! runtime replaces signal restorers at `rt_sigaction` time anyway.
//!
//! The trampolines call the gate directly: every thread that runs patched
//! code has `GS` set (the main thread is attached at install, every clone
//! goes through the gate, which attaches the child). Patching therefore
//! happens only while the process is single-threaded (checked).
//!
//! # Plan files
//!
//! One text file per object, `<build-id>.plan`, found in [`plan_dirs`]
//! (format and parser: [`plan`]):
//!
//! ```text
//! shunt-glibc-plan 1
//! build-id 93ac61ec5a8eb1396f9fbd350e3169a558528a40
//! object /lib/x86_64-linux-gnu/libc.so.6
//! planner shunt-glibc-patch 0.1.0/1
//! # patch <at> <len> <kind> <orig> <pre> <post> [nr]     (hex; - = empty)
//! patch 3c118 7 normal b80d0000000f05 b80d000000 - 13
//! leave 3c057 allowlisted rt_sigreturn: …
//! ```
//!
//! `at` is the offset from the object's load base (its link-time address for
//! a shared object) of the first replaced byte. `leave` lines name the sites
//! the plan leaves to the trap fallback, with the reason.

//!
//! # Modules
//!
//! - [`plan`]: sites, trampolines and the plan file format (no I/O);
//! - [`dirs`]: where plan files are found;
//! - [`report`]: what patching did, for `SHUNT_DEBUG=1`;
//! - [`apply`]: finding the loaded objects and rewriting their text.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod apply;
pub mod dirs;
pub mod plan;
pub mod report;

pub use apply::{apply_loaded, apply_plan, gnu_build_id, Mapped, PlanMaker};
pub use dirs::{plan_dirs, plan_file_name};
pub use plan::*;
pub use report::{ObjectReport, Report};
