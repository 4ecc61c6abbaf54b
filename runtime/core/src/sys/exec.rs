//! `execve`/`execveat`: the new image stays in the instance.
//!
//! The runtime hides its own environment variables from the program (see
//! `shunt_install::options_from_env`), so an exec'd child would start
//! without the runtime. The handler therefore rebuilds the new image's
//! environment with the instance's variables (`LD_PRELOAD` of libshunt.so
//! merged with any the program set, `SHUNT_INSTANCE`, …) and what the exec
//! hooks add, and sends a *static* ELF — which no preload can reach — to the
//! loader: `execve(shunt, ["shunt", "load", "--argv0", argv[0], "--", path,
//! argv[1..]…])`. An exec whose environment names `SHUNT_INSTANCE` is a
//! supervisor on the runtime starting an instance of its own (the daemon's
//! functions): it goes to the kernel as given.
//!
//! An exec of `/proc/self/exe` (or `/proc/<pid>/exe`) by a program the
//! loader runs is an exec of that program, not of shunt.
//!
//! Everything runs on the runtime stack with raw syscalls (the caller may be
//! a vfork child sharing its parent's memory: nothing here allocates in the
//! shared address space per exec; pointer arrays too large for the stack
//! and exec hooks' larger data go in mappings kept per thread slot, see
//! `ExecArrays` and `ExecEnv::scratch`).
//! Program memory (argv, envp and their strings) is read through
//! [`crate::umem`]; the new arrays hold the program's own string pointers.

use crate::task::{Call, Ret};
use crate::exec_env::{exec_injection, ExecArrays, ExecEnv, ExecInjection, INJECTED_PREFIXES};
use crate::kernel::{self, KernelSigaction};
use crate::layout::Answer;
use crate::raw;
use crate::umem;

/// Pointer slots kept on the stack; larger argument lists use the slot's
/// kept mapping (`ExecArrays`).
const STACK_SLOTS: usize = 768;

pub fn sys_execve(f: &mut Call) -> Ret {
    f.count_now(Answer::Passthrough);
    let (path, argv, envp) = (f.args[0], f.args[1], f.args[2]);
    let held = super::signal::before_exec(f.task);
    let r = match exec_injection() {
        Some(inj) => execve_in_instance(&inj, f.task.block(), libc::AT_FDCWD as u64, path, argv, envp, 0, true),
        // SAFETY: the program's own call, unchanged.
        None => unsafe { raw::syscall6(f.nr as usize, f.args) },
    };
    super::signal::after_failed_exec(held);
    Ret::counted(r)
}

pub fn sys_execveat(f: &mut Call) -> Ret {
    f.count_now(Answer::Passthrough);
    let (dirfd, path, argv, envp, flags) = (f.args[0], f.args[1], f.args[2], f.args[3], f.args[4]);
    // Only an absolute or cwd-relative path can be inspected for static
    // re-routing; other forms keep their target and get the environment.
    let simple = dirfd as i32 == libc::AT_FDCWD && flags == 0;
    let held = super::signal::before_exec(f.task);
    let r = match exec_injection() {
        Some(inj) => execve_in_instance(&inj, f.task.block(), dirfd, path, argv, envp, flags, simple),
        // SAFETY: the program's own call, unchanged.
        None => unsafe { raw::syscall6(f.nr as usize, f.args) },
    };
    super::signal::after_failed_exec(held);
    Ret::counted(r)
}

/// Whether the file at `path` (a program address of a NUL-terminated name)
/// is an ELF for the loader: no PT_INTERP in the program headers found in
/// its first page, or one that is not glibc's `ld-linux*` (musl's, which
/// the glibc-built preload cannot serve). (A PIE whose interpreter loads
/// nothing, which the loader also runs, is exec'd with the preload instead:
/// reading its dynamic section here is not worth it.)
fn is_static_elf(path: u64) -> bool {
    // SAFETY: the kernel reads the program's path (it answers EFAULT for a
    // bad one); the file is read into a live local buffer.
    let fd = unsafe {
        raw::syscall4(shunt_abi::syscalls::nr::OPENAT, libc::AT_FDCWD as u64, path, (libc::O_RDONLY | libc::O_CLOEXEC) as u64, 0)
    };
    if fd < 0 {
        return false;
    }
    let mut head = [0u8; 4096];
    // SAFETY: pread into `head`, at most its length.
    let n = unsafe { raw::syscall4(shunt_abi::syscalls::nr::PREAD64, fd as u64, head.as_mut_ptr() as u64, head.len() as u64, 0) };
    raw::close(fd as i32);
    if n < 64 || head[..4] != *b"\x7fELF" || head[4] != 2 {
        return false;
    }
    let rd = |o: usize, w: usize| -> u64 {
        let mut v = 0u64;
        for i in 0..w {
            v |= (head[o + i] as u64) << (8 * i);
        }
        v
    };
    let (phoff, phentsize, phnum) = (rd(32, 8) as usize, rd(54, 2) as usize, rd(56, 2) as usize);
    if phentsize < 56 || phoff + phentsize * phnum > n as usize {
        return false; // headers beyond the first page: treat as dynamic
    }
    (0..phnum).all(|i| {
        let ph = phoff + i * phentsize;
        if rd(ph, 4) != libc::PT_INTERP as u64 {
            return true;
        }
        // The interpreter's path, when it lies in the page read.
        let (off, len) = (rd(ph + 8, 8) as usize, rd(ph + 32, 8) as usize);
        match off.checked_add(len) {
            Some(end) if len > 0 && end <= n as usize => {
                let name = &head[off..end - 1];
                let file = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
                !file.starts_with(b"ld-linux")
            }
            _ => false,
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn execve_in_instance(
    inj: &ExecInjection,
    tb: *mut crate::layout::ThreadBlock,
    dirfd: u64,
    path: u64,
    argv: u64,
    envp: u64,
    flags: u64,
    may_reroute: bool,
) -> i64 {
    // A loaded program runs in the shunt binary's process, so the kernel's
    // `/proc/self/exe` is shunt: an exec of it (busybox's applets, Go's
    // re-exec of `os.Executable()` when it is not resolved first) means the
    // program, whose absolute path the loader recorded (NUL-terminated).
    let path = match crate::program::program_path() {
        Some(p) if umem::plausible(path, 1) && super::fs::names_own_exe(path) => p.as_ptr() as u64,
        _ => path,
    };
    // SAFETY: the program's own call, unchanged.
    let forward = || unsafe { raw::syscall6(shunt_abi::syscalls::nr::EXECVEAT, [dirfd, path, argv, envp, flags, 0]) };
    let (Some(nargs), Some(nenv)) = (umem::count_ptrs(argv, 1 << 20), umem::count_ptrs(envp, 1 << 20)) else {
        return forward();
    };
    // A supervisor on the runtime (`shunt daemon`'s) starting an instance
    // of its own hands the new image that instance's variables: this exec
    // leaves the caller's instance, as given. The runtime hides its
    // variables from the program, so only such a deliberate launch carries
    // `SHUNT_INSTANCE`.
    let starts_instance = (0..nenv).any(|i| {
        let s = umem::read::<u64>(envp + 8 * i as u64).unwrap_or(0);
        s != 0 && umem::plausible(s, 1) && umem::starts_with(s, b"SHUNT_INSTANCE=")
    });
    if starts_instance {
        return forward();
    }
    let reroute = may_reroute && !inj.loader().is_empty() && umem::plausible(path, 1) && is_static_elf(path);
    // `shunt load` cannot see whether SIGPIPE was ignored here (std ignores
    // it in every Rust program): say so.
    let sigpipe_ignored = reroute && {
        let mut old = KernelSigaction::default();
        kernel::sigaction(libc::SIGPIPE, None, Some(&mut old)) == 0 && old.sa_handler == libc::SIG_IGN as u64
    };
    // What exec hooks add (the fd table's inherited marks, …); a hook whose
    // variable may be larger (the ring connections carried) writes it in
    // the env's scratch mapping instead (`ExecEnv::scratch`).
    let mut hook_bytes = [0u8; 2048];
    let mut hook_ptrs = [0u64; 8];
    // Slots: new argv (loader prefix + args + NULL), new envp (injected +
    // hooks' (at most `hook_ptrs.len()`) + program's + SHUNT_SIGPIPE +
    // NULL). Had before the hooks run: an exec that cannot have them fails
    // with nothing to undo (no memfd made inheritable for an image that
    // would not take it back).
    let need = (nargs + 8) + (nenv + inj.len() + hook_ptrs.len() + 3);
    let mut stack_slots = [0u64; STACK_SLOTS];
    let mut kept;
    let slots: &mut [u64] = if need <= STACK_SLOTS {
        &mut stack_slots[..need]
    } else {
        // The slot's kept mapping, not one per exec: in a vfork child a
        // mapping made here for an exec that succeeds stays in the parent.
        match ExecArrays::get(tb, need) {
            Some(a) => {
                kept = a;
                kept.slots(need)
            }
            None => return -(libc::ENOMEM as i64),
        }
    };
    let mut hook_env = ExecEnv::new(&mut hook_bytes, &mut hook_ptrs, tb);
    crate::hooks::run_exec(&mut hook_env);
    let (new_argv, new_envp) = slots.split_at_mut(nargs + 8);

    // The environment: the instance's variables, then the program's minus
    // stale copies of ours; a program LD_PRELOAD is merged after ours.
    // The loader is the shunt binary itself: preloading the runtime library
    // into it would install a second runtime. A static program has no use
    // for LD_PRELOAD, so a re-routed exec drops every LD_PRELOAD.
    let mut e = 0;
    for i in 0..inj.len() {
        if reroute && Some(i) == inj.preload_index() {
            continue;
        }
        new_envp[e] = inj.var(i).as_ptr() as u64;
        e += 1;
    }
    for &p in hook_env.pointers() {
        new_envp[e] = p;
        e += 1;
    }
    let mut merged = [0u8; 4096];
    for i in 0..nenv {
        // count_ptrs read every entry already: they are plausible.
        let s = umem::read::<u64>(envp + 8 * i as u64).unwrap_or(0);
        if s == 0 || !umem::plausible(s, 1) {
            continue;
        }
        if INJECTED_PREFIXES.iter().any(|p| umem::starts_with(s, p)) || umem::starts_with(s, b"SHUNT_SIGPIPE=") {
            continue;
        }
        if umem::starts_with(s, b"LD_PRELOAD=") {
            if reroute {
                continue;
            }
            if let Some(ours) = inj.preload_index() {
                // One LD_PRELOAD: ours first, then the program's (cut to fit).
                let own = crate::text::cstr(inj.var(ours));
                let mut n = own.len();
                crate::mem::copy_slice(&mut merged[..n], own);
                merged[n] = b':';
                n += 1;
                let theirs = match umem::read_cstr(s + 11, &mut merged[n..]) {
                    Ok(t) => t.len(),
                    Err(umem::StrError::TooLong) => merged.len() - n - 1,
                    Err(umem::StrError::Fault) => 0,
                };
                merged[n + theirs] = 0;
                new_envp[ours] = merged.as_ptr() as u64;
                continue;
            }
        }
        new_envp[e] = s;
        e += 1;
    }
    if sigpipe_ignored {
        new_envp[e] = b"SHUNT_SIGPIPE=ign\0".as_ptr() as u64;
        e += 1;
    }
    new_envp[e] = 0;

    let r = if reroute {
        // shunt load --argv0 <argv[0]> -- <path> <argv[1..]>
        let mut a = 0;
        for fixed in [inj.loader(), b"load\0", b"--argv0\0"] {
            new_argv[a] = fixed.as_ptr() as u64;
            a += 1;
        }
        let argv0 = if nargs > 0 { umem::read::<u64>(argv).unwrap_or(path) } else { path };
        new_argv[a] = argv0;
        a += 1;
        new_argv[a] = b"--\0".as_ptr() as u64;
        a += 1;
        new_argv[a] = path;
        a += 1;
        for i in 1..nargs {
            new_argv[a] = umem::read::<u64>(argv + 8 * i as u64).unwrap_or(0);
            a += 1;
        }
        new_argv[a] = 0;
        // SAFETY: execve of NUL-terminated strings and NULL-terminated
        // arrays that live until the call returns (it returns only on error).
        unsafe {
            raw::syscall3(
                shunt_abi::syscalls::nr::EXECVE,
                inj.loader().as_ptr() as u64,
                new_argv.as_ptr() as u64,
                new_envp.as_ptr() as u64,
            )
        }
    } else {
        // SAFETY: as above; argv and path are the program's own.
        unsafe { raw::syscall6(shunt_abi::syscalls::nr::EXECVEAT, [dirfd, path, argv, new_envp.as_ptr() as u64, flags, 0]) }
    };
    // Returned: the exec failed, and this image goes on.
    hook_env.exec_failed();
    r
}
