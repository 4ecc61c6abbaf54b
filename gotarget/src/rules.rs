//! The rewrite rules: for every Go assembly function known to contain
//! `SYSCALL`, how each of its sites (in source order) is rewritten.
//!
//! Rules are keyed by the function's symbol, never by line number, so they
//! survive unrelated edits of Go's sources; any change in the *number* of
//! sites of a function, a site in a function without a rule, or a rule whose
//! function no longer exists stops generation (see `generate.rs`). Checked
//! against go1.25.14, go1.26.8 and go1.27.4 (4 files, 46 sites, 40 functions
//! in each; generation and the gotarget tests pass on all three).

use serde::Serialize;

/// What a `SYSCALL` site becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Rewrite {
    /// `CALL shunt_syscall(SB)`: the trampoline jumps to the gate, or runs
    /// `SYSCALL; RET` when there is none. Needs 8 bytes of stack for the
    /// return address, which every ordinary site has.
    Call,
    /// The gate check inline: `MOVQ shunt_gate_addr(SB), R11; TESTQ R11, R11;
    /// JEQ 3(PC); CALL R11; JMP 2(PC); SYSCALL`. For sites whose no-gate
    /// fallback cannot return through a trampoline: after `clone` the child
    /// runs on an empty new stack, after `vfork` the child has reused the
    /// parent's stack slot. The gate itself handles both without returning
    /// through the caller's stack (see runtime/src/gate.rs).
    InlineFallback,
    /// `JMP shunt_syscall_exit(SB)`: no return address is pushed, because the
    /// thread's stack may already be freed (`exitThread`).
    TailJump,
    /// Stays a raw `SYSCALL`.
    Keep,
}

impl Rewrite {
    /// The Go assembler text replacing the `SYSCALL` statement.
    pub fn replacement(self) -> Option<&'static str> {
        match self {
            Rewrite::Call => Some("CALL\tshunt_syscall(SB)"),
            Rewrite::InlineFallback => Some(
                "MOVQ\tshunt_gate_addr(SB), R11; TESTQ\tR11, R11; JEQ\t3(PC); CALL\tR11; JMP\t2(PC); SYSCALL",
            ),
            Rewrite::TailJump => Some("JMP\tshunt_syscall_exit(SB)"),
            Rewrite::Keep => None,
        }
    }

    /// Whether the rewrite assembles to more than one instruction, so that
    /// PC-relative branches across it would change meaning.
    pub fn expands(self) -> bool {
        matches!(self, Rewrite::InlineFallback)
    }

    pub fn name(self) -> &'static str {
        match self {
            Rewrite::Call => "call",
            Rewrite::InlineFallback => "inline_fallback",
            Rewrite::TailJump => "tail_jump",
            Rewrite::Keep => "keep",
        }
    }
}

/// The rule for one function.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Full symbol names. Exactly one must exist: a function that moved
    /// between packages across Go versions lists each of its names.
    pub functions: Vec<&'static str>,
    /// One entry per `SYSCALL`, in source order.
    pub sites: Vec<Rewrite>,
    /// Why the rule is what it is (recorded in the manifest for special ones).
    pub why: &'static str,
}

use Rewrite::*;

pub const PLAIN: &str = "ordinary site";

/// Functions of the standard library (linux/amd64) whose sites all become
/// plain calls, with their site counts.
const PLAIN_STD: &[(&str, usize)] = &[
    ("runtime.exit", 1),
    ("runtime.open", 1),
    ("runtime.closefd", 1),
    ("runtime.write1", 1),
    ("runtime.read", 1),
    ("runtime.pipe2", 1),
    ("runtime.usleep", 1),
    ("runtime.gettid", 1),
    ("runtime.raise", 3),
    ("runtime.raiseproc", 2),
    ("runtime.getpid", 1),
    ("runtime.tgkill", 1),
    ("runtime.setitimer", 1),
    ("runtime.timer_create", 1),
    ("runtime.timer_settime", 1),
    ("runtime.timer_delete", 1),
    ("runtime.mincore", 1),
    ("runtime.rtsigprocmask", 1),
    ("runtime.rt_sigaction", 1),
    ("runtime.sysMmap", 1),
    ("runtime.sysMunmap", 1),
    ("runtime.madvise", 1),
    ("runtime.futex", 1),
    ("runtime.sigaltstack", 1),
    ("runtime.osyield", 1),
    ("runtime.sched_getaffinity", 1),
    ("runtime.access", 1),
    ("runtime.connect", 1),
    ("runtime.socket", 1),
    ("runtime.sbrk0", 1),
    ("syscall.rawSyscallNoError", 1),
];

/// The rules for the standard library.
pub fn std_rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = PLAIN_STD
        .iter()
        .map(|&(name, n)| Rule { functions: vec![name], sites: vec![Call; n], why: PLAIN })
        .collect();
    rules.extend([
        Rule {
            functions: vec!["runtime.settls"],
            sites: vec![Call],
            why: "first syscall of the process (arch_prctl ARCH_SET_FS); the rt0 hook has read \
                  AT_SHUNT_ENTRY before it, and the gate never touches FS",
        },
        Rule {
            functions: vec!["runtime.nanotime1"],
            sites: vec![Call],
            why: "clock_gettime fallback, used only without a vDSO; runs on g0 with R12/BX live (preserved)",
        },
        Rule {
            functions: vec!["time.now"],
            sites: vec![Call, Call],
            why: "clock_gettime fallbacks, used only without a vDSO; ABIInternal (R14, X15 preserved by the gate)",
        },
        Rule {
            functions: vec!["syscall.gettimeofday"],
            sites: vec![Call],
            why: "gettimeofday fallback, used only without a vDSO",
        },
        Rule {
            functions: vec!["internal/runtime/syscall/linux.Syscall6", "internal/runtime/syscall.Syscall6"],
            sites: vec![Call],
            why: "the funnel for syscall.Syscall*, os, net and the runtime's epoll/eventfd (package moved in go1.26)",
        },
        Rule {
            functions: vec!["runtime.clone"],
            sites: vec![InlineFallback, Call, Call],
            why: "#0 is clone itself: the child resumes on a new, empty stack, so the no-gate fallback is \
                  inline (a trampoline's RET would pop garbage); the gate resumes the child at the return \
                  address on the new stack. #1 gettid and #2 exit run in the child on its new stack",
        },
        Rule {
            functions: vec!["syscall.rawVforkSyscall"],
            sites: vec![InlineFallback],
            why: "clone(CLONE_VM|CLONE_VFORK): the child shares and overwrites the parent's stack, so the \
                  no-gate fallback is inline; the gate's vfork path is register-only",
        },
        Rule {
            functions: vec!["runtime.exitThread"],
            sites: vec![TailJump],
            why: "the thread's stack may be freed once *wait is cleared: jump without pushing; the gate's \
                  exit path uses no stack",
        },
        Rule {
            functions: vec!["runtime.sigreturn__sigaction"],
            sites: vec![Keep],
            why: "rt_sigreturn restorer: the kernel reads the signal frame at RSP and unwinders match its \
                  bytes; the shunt runtime installs its own restorer at rt_sigaction time",
        },
    ]);
    rules
}

/// The rules for `golang.org/x/sys/unix` (v0.x, `asm_linux_amd64.s`).
pub fn xsys_rules() -> Vec<Rule> {
    vec![
        Rule {
            functions: vec!["golang.org/x/sys/unix.SyscallNoError"],
            sites: vec![Call],
            why: "x/sys's own SYSCALL (Exit, Sync); every other x/sys call goes through package syscall",
        },
        Rule {
            functions: vec!["golang.org/x/sys/unix.RawSyscallNoError"],
            sites: vec![Call],
            why: "x/sys's own SYSCALL (Getpid, Getuid, Umask, …)",
        },
    ]
}

/// The function that is the ELF entry point of an internally linked
/// linux/amd64 Go program, and the one statement the hook replaces.
pub const ENTRY_FUNCTION: &str = "_rt0_amd64_linux";
pub const ENTRY_JUMP: &str = "_rt0_amd64(SB)";
pub const ENTRY_REPLACEMENT: &str = "JMP\tshunt_rt0(SB)";

/// Symbols the trampoline file defines (also what the verifier looks for).
pub const TRAMPOLINE: &str = "shunt_syscall";
pub const TRAMPOLINE_EXIT: &str = "shunt_syscall_exit";
pub const GATE_VARIABLE: &str = "shunt_gate_addr";
pub const RT0_HOOK: &str = "shunt_rt0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_rules_cover_46_sites_in_40_functions() {
        let rules = std_rules();
        assert_eq!(rules.len(), 40);
        assert_eq!(rules.iter().map(|r| r.sites.len()).sum::<usize>(), 46);
        let mut names: Vec<&str> = rules.iter().flat_map(|r| r.functions.iter().copied()).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len(), "a function has two rules");
    }
}
