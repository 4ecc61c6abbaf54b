//! The kernel-enforced side of a policy (`--isolate`): a seccomp filter made
//! from the instance policy's deny and kill rules.
//!
//! The runtime's own policy is cooperative: the program shares the
//! runtime's address space, so a hostile program can jump over the gate to
//! a `syscall` instruction of its own (after flipping its Syscall User
//! Dispatch selector byte, or disarming SUD), to one inside the runtime's
//! exempt text, or overwrite the runtime's action table. The filter is the
//! boundary that holds against all of these: the kernel checks every system
//! call of every thread and child of the instance, whoever issues it —
//! deny → the rule's errno (`SECCOMP_RET_ERRNO`), kill →
//! `SECCOMP_RET_KILL_PROCESS`.
//!
//! Design points (why it is built this way):
//! - **Installed by the supervisor**, in the instance's first process after
//!   its sandbox hook and before `execve`: it is in place before the first
//!   instruction of the dynamic linker, the runtime and the program, and the
//!   kernel keeps it across `execve`, `clone` and `fork`. Installing it from
//!   inside the runtime would leave preloaded libraries' constructors (the
//!   program's code) running first.
//! - **No exemption for the runtime**: the filter does not look at the
//!   instruction pointer, since a program can jump to any `syscall` in the
//!   runtime's text. The runtime never passes a denied call through (it
//!   answers it with the errno itself), so the rules cost it nothing; a
//!   policy that restricts a call the runtime itself needs is refused by
//!   [`Filter::new`] instead of breaking the runtime.
//! - **Cacheable**: the filter looks at the architecture and the number
//!   only, never at arguments, so the kernel's per-filter action cache
//!   (Linux 5.11+) answers every allowed number without running the BPF —
//!   the passthrough tax is the kernel's fixed seccomp cost. One filter per
//!   distinct action (seccompiler builds filters with one match action);
//!   the kernel runs them all and takes the strictest result.
//! - **Other ABIs**: `int 0x80` (the i386 table, whose numbers differ) and
//!   x32 numbers (bit 30) would reach calls by other numbers: both kill the
//!   process.
//! - `PR_SET_NO_NEW_PRIVS` is set first (the kernel requires it without
//!   `CAP_SYS_ADMIN`, and it keeps a setuid program from escaping its
//!   caller's restrictions): set-user-ID programs inside an isolated
//!   instance run with the caller's privileges.
//! - SUD is checked by the kernel before seccomp: a trapped call reaches
//!   the runtime's SIGSYS handler first, and only the runtime's passthrough
//!   (of an allowed call) reaches the filter.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use shunt_abi::syscalls::NAMES;
use shunt_policy::{Compiled, Rule};

/// One BPF instruction, as the kernel takes it.
pub type Insn = seccompiler::sock_filter;

/// `AUDIT_ARCH_X86_64`: EM_X86_64 | 64-bit | little-endian.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// The x32 ABI marks its numbers with this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Calls the runtime itself makes while running the program (memory, its
/// segments and files, signals, threads, the trap fallback, exec): a policy
/// that denies or kills one of them cannot be enforced in the kernel
/// without breaking the runtime. Calls the gate answers itself are already
/// protected by `shunt-policy`.
pub const RUNTIME_NEEDS: &[&str] = &[
    "read", "write", "close", "fstat", "mmap", "mprotect", "munmap", "mremap", "rt_sigaction",
    "rt_sigprocmask", "sigaltstack", "openat", "fcntl", "ftruncate", "futex", "prctl", "arch_prctl",
    "getrandom", "clone", "clone3", "execve", "execveat", "exit", "gettid", "tgkill", "readlink",
];

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(
        "the policy {rule} {name}, which the runtime itself needs: --isolate cannot enforce that in the kernel \
         (allow {name}, or run without --isolate)"
    )]
    RuntimeNeeds { name: &'static str, rule: &'static str },
    #[error("cannot build the seccomp filter: {0}")]
    Build(String),
}

/// The compiled filters of one policy, ready to install (after `fork`,
/// without allocating).
#[derive(Clone, Debug)]
pub struct Filter {
    programs: Vec<BpfProgram>,
}

impl Filter {
    /// Builds the filters for `policy`'s deny and kill rules.
    pub fn new(policy: &Compiled) -> Result<Filter, FilterError> {
        // Numbers per action: kill, and one set per errno.
        let mut by_action: BTreeMap<Option<u16>, Vec<usize>> = BTreeMap::new();
        for (nr, rule) in policy.rules.iter().enumerate() {
            let key = match rule {
                Rule::Allow => continue,
                Rule::Kill => None,
                Rule::Deny(e) => Some(*e),
            };
            if let Some(name) = RUNTIME_NEEDS.iter().find(|n| **n == NAMES[nr]) {
                let rule = if key.is_none() { "kills" } else { "denies" };
                return Err(FilterError::RuntimeNeeds { name, rule });
            }
            by_action.entry(key).or_default().push(nr);
        }
        let mut programs = vec![abi_guard(), gs_guard()?];
        for (key, nrs) in by_action {
            let action = match key {
                None => SeccompAction::KillProcess,
                Some(e) => SeccompAction::Errno(u32::from(e)),
            };
            let rules = nrs.into_iter().map(|nr| (nr as i64, Vec::new())).collect();
            let filter = SeccompFilter::new(rules, SeccompAction::Allow, action, TargetArch::x86_64)
                .map_err(|e| FilterError::Build(e.to_string()))?;
            programs.push(BpfProgram::try_from(filter).map_err(|e| FilterError::Build(e.to_string()))?);
        }
        Ok(Filter { programs })
    }

    /// The BPF programs, in the order they are installed.
    pub fn programs(&self) -> &[BpfProgram] {
        &self.programs
    }

    /// Installs the filters on the calling thread (and so on everything it
    /// starts afterwards). Makes system calls only — no allocation, no
    /// locks — so it may run in a child between `fork` and `execve`.
    /// Returns the errno of the first call that failed.
    pub fn install(&self) -> Result<(), i32> {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(errno());
        }
        for p in &self.programs {
            let prog = libc::sock_fprog { len: p.len() as u16, filter: p.as_ptr() as *mut libc::sock_filter };
            // SAFETY: `prog` points at `p.len()` instructions laid out as the
            // kernel's sock_filter (seccompiler's type is repr(C) with the
            // same fields); the kernel copies them during the call.
            let r = unsafe {
                libc::syscall(shunt_abi::syscalls::nr::SECCOMP as libc::c_long, libc::SECCOMP_SET_MODE_FILTER, 0u64, &prog as *const libc::sock_fprog)
            };
            if r != 0 {
                return Err(errno());
            }
        }
        Ok(())
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)
}

/// `arch_prctl(ARCH_SET_GS)` → EPERM: GS is the runtime's (the gate finds
/// its per-thread stack through it, and sets it with `wrgsbase`, never
/// with this call). A program that moved it would make the gate write
/// through its new base. Only `arch_prctl` is looked at by argument, so only
/// it loses the kernel's cache (it is made once per thread, for FS).
/// `wrgsbase` itself cannot be filtered: that is cooperative (README).
fn gs_guard() -> Result<BpfProgram, FilterError> {
    use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
    const ARCH_SET_GS: u64 = 0x1001;
    let build = |e: seccompiler::BackendError| FilterError::Build(e.to_string());
    let cond = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, ARCH_SET_GS).map_err(build)?;
    let rules = [(shunt_abi::syscalls::nr::ARCH_PRCTL as i64, vec![SeccompRule::new(vec![cond]).map_err(build)?])].into_iter().collect();
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), TargetArch::x86_64)
        .map_err(build)?;
    BpfProgram::try_from(filter).map_err(build)
}

/// Kills a call made through another ABI than x86-64's: `int 0x80` (the
/// i386 table) and x32 numbers. Only the architecture and the number are
/// read, so the kernel can still cache the answer per number.
fn abi_guard() -> BpfProgram {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    // struct seccomp_data { int nr; __u32 arch; … }
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let i = |code, jt, jf, k| Insn { code, jt, jf, k };
    vec![
        i(LD_W_ABS, 0, 0, ARCH),
        i(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        i(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        i(LD_W_ABS, 0, 0, NR),
        i(JGE_K, 0, 1, X32_SYSCALL_BIT),
        i(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        i(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_program_per_action_after_the_abi_guard() {
        let p = Compiled::from_toml("p", "[syscalls]\nmkdirat = \"deny:EACCES\"\nunshare = \"kill\"\n").unwrap();
        let f = Filter::new(&p).unwrap();
        // ABI guard, GS guard, kill, EPERM (the base profile), EACCES
        assert_eq!(f.programs().len(), 5);
        let none = Compiled::from_toml("p", "base = \"none\"\n").unwrap();
        assert_eq!(Filter::new(&none).unwrap().programs().len(), 2);
    }

    #[test]
    fn rules_on_what_the_runtime_needs_are_refused() {
        let p = Compiled::from_toml("p", "[syscalls]\nmmap = \"deny\"\n").unwrap();
        let e = Filter::new(&p).unwrap_err().to_string();
        assert!(e.contains("denies mmap"), "{e}");
        let p = Compiled::from_toml("p", "[syscalls]\nfutex = \"kill\"\n").unwrap();
        assert!(Filter::new(&p).unwrap_err().to_string().contains("kills futex"));
    }
}
