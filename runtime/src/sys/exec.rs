//! `execve`/`execveat`: the new image stays in the instance.
//!
//! The runtime hides its own environment variables from the program (see
//! `instance::options_from_env`), so an exec'd child would start without the
//! runtime. The handler therefore rebuilds the new image's environment with
//! the instance's variables (`LD_PRELOAD` of libshunt.so merged with any the
//! program set, `SHUNT_INSTANCE`, …), and sends a *static* ELF — which no
//! preload can reach — to the loader: `execve(shunt, ["shunt", "load",
//! "--argv0", argv[0], "--", path, argv[1..]…])`.
//!
//! Everything runs on the runtime stack with raw syscalls (the caller may be
//! a vfork child sharing its parent's memory: nothing here allocates in the
//! shared address space unless the arrays are too large for the stack).

use crate::dispatch::{count_now, Ret};
use crate::instance::{exec_injection, ExecInjection};
use crate::layout::GateFrame;
use crate::mem::plausible_user_ptr;
use crate::raw;
use crate::syscalls::Class;

/// Pointer slots kept on the stack; larger argument lists use mmap.
const STACK_SLOTS: usize = 768;

pub fn sys_execve(f: &mut GateFrame) -> Ret {
    count_now(f, Class::Passthrough);
    let (path, argv, envp) = (f.args[0], f.args[1], f.args[2]);
    let r = match exec_injection() {
        Some(inj) => unsafe { execve_in_instance(&inj, libc::AT_FDCWD as u64, path, argv, envp, 0, true) },
        None => unsafe { raw::syscall6(f.nr as usize, f.args) },
    };
    Ret::counted(r)
}

pub fn sys_execveat(f: &mut GateFrame) -> Ret {
    count_now(f, Class::Passthrough);
    let (dirfd, path, argv, envp, flags) = (f.args[0], f.args[1], f.args[2], f.args[3], f.args[4]);
    // Only an absolute or cwd-relative path can be inspected for static
    // re-routing; other forms keep their target and get the environment.
    let simple = dirfd as i32 == libc::AT_FDCWD && flags == 0;
    let r = match exec_injection() {
        Some(inj) => unsafe { execve_in_instance(&inj, dirfd, path, argv, envp, flags, simple) },
        None => unsafe { raw::syscall6(f.nr as usize, f.args) },
    };
    Ret::counted(r)
}

/// Counts the NULL-terminated pointer array at `p` (at most `limit`).
unsafe fn count_ptrs(p: u64, limit: usize) -> Option<usize> {
    if p == 0 {
        return Some(0);
    }
    let mut n = 0;
    while n < limit {
        if !plausible_user_ptr(p + 8 * n as u64, 8) {
            return None;
        }
        if *((p + 8 * n as u64) as *const u64) == 0 {
            return Some(n);
        }
        n += 1;
    }
    None
}

/// `true` when `s` (a NUL-terminated user string) starts with `prefix`.
unsafe fn starts_with(s: u64, prefix: &[u8]) -> bool {
    for (i, &c) in prefix.iter().enumerate() {
        if *((s + i as u64) as *const u8) != c {
            return false;
        }
    }
    true
}

/// Whether the file at `path` is a static ELF (no PT_INTERP in the program
/// headers found in its first page). (A PIE whose interpreter loads nothing,
/// which the loader also runs, is exec'd with the preload instead: reading
/// its dynamic section here is not worth it.)
unsafe fn is_static_elf(path: u64) -> bool {
    let fd = raw::syscall4(libc::SYS_openat as usize, libc::AT_FDCWD as u64, path, (libc::O_RDONLY | libc::O_CLOEXEC) as u64, 0);
    if fd < 0 {
        return false;
    }
    let mut head = [0u8; 4096];
    let n = raw::syscall4(libc::SYS_pread64 as usize, fd as u64, head.as_mut_ptr() as u64, head.len() as u64, 0);
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
    (0..phnum).all(|i| rd(phoff + i * phentsize, 4) != libc::PT_INTERP as u64)
}

unsafe fn execve_in_instance(
    inj: &ExecInjection,
    dirfd: u64,
    path: u64,
    argv: u64,
    envp: u64,
    flags: u64,
    may_reroute: bool,
) -> i64 {
    let forward = || raw::syscall6(libc::SYS_execveat as usize, [dirfd, path, argv, envp, flags, 0]);
    let (Some(nargs), Some(nenv)) = (count_ptrs(argv, 1 << 20), count_ptrs(envp, 1 << 20)) else {
        return forward();
    };
    let reroute = may_reroute && !inj.loader.is_empty() && plausible_user_ptr(path, 1) && is_static_elf(path);
    // Slots: new argv (loader prefix + args + NULL), new envp (injected + program's + NULL).
    // `shunt load` cannot see whether SIGPIPE was ignored here (std ignores
    // it in every Rust program): say so.
    let sigpipe_ignored = reroute && {
        let mut old = [0u64; 4];
        raw::syscall4(libc::SYS_rt_sigaction as usize, libc::SIGPIPE as u64, 0, old.as_mut_ptr() as u64, 8) == 0
            && old[0] == libc::SIG_IGN as u64
    };
    let need = (nargs + 8) + (nenv + inj.vars.len() + 3);
    let mut stack_slots = [0u64; STACK_SLOTS];
    let mut mapped = 0usize;
    let slots: &mut [u64] = if need <= STACK_SLOTS {
        &mut stack_slots[..need]
    } else {
        let len = need * 8;
        let m = raw::mmap(0, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        if m < 0 {
            return forward();
        }
        mapped = len;
        core::slice::from_raw_parts_mut(m as *mut u64, need)
    };
    let (new_argv, new_envp) = slots.split_at_mut(nargs + 8);

    // The environment: the instance's variables, then the program's minus
    // stale copies of ours; a program LD_PRELOAD is merged after ours.
    // The loader is the shunt binary itself: preloading the runtime library
    // into it would install a second runtime. A static program has no use
    // for LD_PRELOAD, so a re-routed exec drops every LD_PRELOAD.
    let mut e = 0;
    for (i, v) in inj.vars.iter().enumerate() {
        if reroute && Some(i) == inj.preload_index {
            continue;
        }
        new_envp[e] = v.as_ptr() as u64;
        e += 1;
    }
    let mut merged = [0u8; 4096];
    for i in 0..nenv {
        let s = *((envp + 8 * i as u64) as *const u64);
        if s == 0 || !plausible_user_ptr(s, 1) {
            continue;
        }
        if crate::instance::INJECTED_PREFIXES.iter().any(|p| starts_with(s, p)) {
            continue;
        }
        if reroute && starts_with(s, b"LD_PRELOAD=") {
            continue;
        }
        if let (Some(ours), true) = (inj.preload_index, starts_with(s, b"LD_PRELOAD=")) {
            // One LD_PRELOAD: ours first, then the program's.
            let mut n = 0;
            for &c in inj.vars[ours].iter().take_while(|&&c| c != 0) {
                merged[n] = c;
                n += 1;
            }
            merged[n] = b':';
            n += 1;
            let mut k = 11; // after "LD_PRELOAD="
            loop {
                let c = *((s + k) as *const u8);
                if c == 0 || n + 1 >= merged.len() {
                    break;
                }
                merged[n] = c;
                n += 1;
                k += 1;
            }
            merged[n] = 0;
            new_envp[ours] = merged.as_ptr() as u64;
            continue;
        }
        if starts_with(s, b"SHUNT_SIGPIPE=") {
            continue;
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
        for fixed in [&inj.loader[..], b"load\0", b"--argv0\0"] {
            new_argv[a] = fixed.as_ptr() as u64;
            a += 1;
        }
        let argv0 = if nargs > 0 { *(argv as *const u64) } else { path };
        new_argv[a] = argv0;
        a += 1;
        new_argv[a] = b"--\0".as_ptr() as u64;
        a += 1;
        new_argv[a] = path;
        a += 1;
        for i in 1..nargs {
            new_argv[a] = *((argv + 8 * i as u64) as *const u64);
            a += 1;
        }
        new_argv[a] = 0;
        raw::syscall3(libc::SYS_execve as usize, inj.loader.as_ptr() as u64, new_argv.as_ptr() as u64, new_envp.as_ptr() as u64)
    } else {
        raw::syscall6(libc::SYS_execveat as usize, [dirfd, path, argv, new_envp.as_ptr() as u64, flags, 0])
    };
    if mapped != 0 {
        raw::munmap(slots.as_mut_ptr() as usize, mapped);
    }
    r
}
