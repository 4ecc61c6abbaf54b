//! The planner: finds every system call instruction of an object — glibc, or
//! any other x86-64 ELF text (a static Go binary, musl, a static glibc
//! program, a dynamic program's own text, a shared library) — and decides,
//! site by site, how it can be replaced by a jump to a trampoline.
//!
//! 1. Decode every executable section linearly with iced-x86, starting over at
//!    every symbol and function start (FDEs; for Go, the function table) so
//!    that padding or data between functions cannot shift the decoding of the
//!    next function.
//! 2. Collect the addresses control can reach other than by falling through:
//!    direct branch and call targets, return addresses, RIP-relative
//!    references into code (address-taken labels), jump-table entries
//!    (`lea table(%rip)` followed by int32 offsets that land inside the same
//!    function — its FDE, sized symbol, or without either the section),
//!    relocated pointers (`R_X86_64_RELATIVE`/`IRELATIVE`, RELR), exception
//!    landing pads, symbol and function starts; in a fixed-address
//!    executable also every absolute address of code in an instruction's
//!    immediate or displacement and in an aligned word of data. A target
//!    set larger than the real one only leaves more sites to the trap
//!    fallback.
//! 3. For each `syscall` (the plain 2-byte form): trace the number back
//!    (constants, register copies, partial writes such as
//!    `xor %eax,%eax; mov $56,%al`), pick the kind (below), and choose the run
//!    of whole instructions to displace: "backward" (instructions just before
//!    the `syscall`), else "forward" (just after it), else both. A run never
//!    contains a branch or a RIP-relative instruction, no target lies inside
//!    it (on an instruction boundary or between two), it does not overlap the
//!    previous site's run, and the flags must be dead after the `syscall` (a
//!    trampoline, unlike `syscall`, may change them).
//! 4. Cross-check the decoding: a second, plain linear sweep from each
//!    section's start must see the same instructions over the whole run, or
//!    the site is left uncovered. FDEs of signal frames are not used as
//!    restart points: by convention they start one byte before the restorer,
//!    inside the previous instruction (glibc's `__restore_rt`).
//!
//! [`crate::check_plan`] checks every plan independently (tests, fuzzing).
//!
//! # Kinds
//!
//! - `rt_sigreturn` is never patched (allowlisted): the runtime installs its
//!   own restorer at `rt_sigaction` time.
//! - `exit` (of a thread) is a `tail` site when a run before it exists: the
//!   trampoline jumps to the gate and pushes nothing, because the thread's
//!   stack may be gone (Go frees an exiting M's stack once `*wait` is
//!   cleared; musl's `__unmapself` has unmapped it).
//! - `munmap` followed, on the straight line, by `exit` (musl's
//!   `__unmapself`) stays a `syscall`: a trampoline would return through the
//!   stack the call unmaps. The trap fallback resumes after it without
//!   touching the stack.
//! - In a C image (System V ABI: leaf code may keep data in the 128-byte red
//!   zone) every other site is `normal` (the call skips the red zone), except
//!   `clone`, `clone3` and `vfork`, which are `no_red_zone` (the child resumes
//!   after the call on another stack, or shares this one) and allowed only in
//!   functions that keep nothing below `rsp`. A site whose number is not a
//!   constant is `normal`: such sites are generic wrappers (`syscall()`,
//!   musl's `__syscall_cp_asm`), through which a `clone` with a new stack is
//!   broken natively too (the child returns into the wrapper on an empty
//!   stack).
//! - In a Go image every site is `no_red_zone` (below), and the Go target's
//!   rules (`shunt_gotarget::rules`, the table `shunt go build` rewrites by)
//!   are followed for the functions they name: `Keep` stays a `syscall`,
//!   `TailJump` is a `tail` site.
//!
//! # Go images: why the rewrite does not disturb the Go runtime
//!
//! The sites are in assembly functions of the runtime, `syscall`,
//! `internal/runtime/syscall` and `golang.org/x/sys/unix` (the Go compiler
//! never emits `SYSCALL`); Go's function table names and bounds them also in
//! a stripped binary. The argument, point by point (tests in
//! `glibc-patch/tests/planner_any_image.rs` for the plan shapes, and the
//! end-to-end tests of plain Go programs under `shunt run`):
//!
//! - **Stack use.** A trampoline pushes one return address (8 bytes at
//!   `rsp-8`) and nothing else; the gate switches to the runtime stack
//!   before its first store (gate.rs). Go's ABI has no red zone, so nothing
//!   live is there. These are the 8 bytes `shunt go build` adds at the same
//!   sites (`CALL shunt_syscall`), in the same functions: the Go linker's
//!   nosplit check (`StackNosplit` − one call) accepts those builds, so the
//!   chains that reach these functions have the room. A function that does
//!   keep data below `rsp` is left alone.
//! - **Stack checks.** A prologue compares `rsp` with `g.stackguard0`; no
//!   run contains a branch, so no prologue check, no `call morestack` and no
//!   `jmp` back to the function start is ever displaced or moved, and no
//!   trampoline or gate code is Go code that could grow a stack.
//! - **`runtime.rewindmorestack`** (Go ≤ 1.21; gone since) decodes the `JMP`
//!   at a morestack return PC: a branch, so never part of a run; its bytes
//!   are the original ones.
//! - **Tracebacks and stack scans** start from a goroutine's saved PC/SP
//!   (`gobuf`, `syscallpc`/`syscallsp` of `entersyscall`, a signal context)
//!   and unwind with the function table. A PC inside a trampoline or the gate
//!   is not in the table: the profiler's unwinder (`unwindSilentErrors`)
//!   records such a sample as external code, and the pushed return address
//!   lies below the goroutine's SP, where no scan looks. A goroutine's stack
//!   is moved only by the goroutine itself (`newstack`) or by the GC at a
//!   safe point, and a trampoline or the gate is neither (a goroutine in a
//!   syscall is never shrunk: `isShrinkStackSafe`).
//! - **Async preemption** (`SIGURG`): `isAsyncSafePoint` finds no function for
//!   a PC in a trampoline or the gate, and refuses assembly functions
//!   anyway, so the signal returns to the same PC and the goroutine is
//!   preempted at its next safe point. Preemption resumes only at safe
//!   points of compiled Go code, never inside a run of an assembly function.
//!   A signal can land inside a run only after the rewrite, which happens
//!   before the program's first instruction.
//! - **Registers.** The gate changes only `rax`, `rcx`, `r11` and the flags,
//!   as `SYSCALL` does (`X15 = 0` and `R14 = g` survive); the flags are dead
//!   at every patched site (checked). `clone` children resume after the call
//!   on their new stack (`no_red_zone`: nothing to undo), `vfork` is the
//!   gate's register-only path, and the thread exits are `tail` sites.

use std::collections::HashSet;

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Formatter, GasFormatter, Instruction, InstructionInfoFactory,
    OpAccess, OpKind, Register, RflagsBits,
};
use shunt_patch::{Code as Bytes, Kind, Left, LeftStatus, Plan, Site, MIN_LEN};

use shunt_gotarget::rules::Rewrite;

use crate::elf::{Flavour, Image};

/// Name and revision of the planning rules. A plan made by another revision
/// is made again by `shunt glibc plan` / `shunt cc`.
pub const PLANNER: &str = concat!("shunt-glibc-patch ", env!("CARGO_PKG_VERSION"), "/4");

const NR_MUNMAP: u32 = 11;
const NR_RT_SIGRETURN: u32 = 15;
const NR_EXIT: u32 = 60;
const NR_EXIT_GROUP: u32 = 231;
const NR_CLONE: u32 = 56;
const NR_VFORK: u32 = 58;
const NR_CLONE3: u32 = 435;
/// Longest run of displaced bytes on either side (a whole run,
/// `2 * MAX_SIDE + 2`, must fit the runtime's `MAX_LEN`).
const MAX_SIDE: usize = (shunt_patch::MAX_LEN - 2) / 2;

/// Which instruction a site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Insn {
    Syscall,
    Sysenter,
    Int80,
}

impl Insn {
    pub fn as_str(self) -> &'static str {
        match self {
            Insn::Syscall => "syscall",
            Insn::Sysenter => "sysenter",
            Insn::Int80 => "int $0x80",
        }
    }
}

/// How a patched site's run was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Backward,
    Forward,
    Both,
}

/// The planner's verdict on one site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Patch { site: Site, mode: Mode, displaced: String },
    Leave(Left),
}

/// One system call instruction.
#[derive(Clone, Debug)]
pub struct Found {
    /// Address of the instruction.
    pub addr: u64,
    pub insn: Insn,
    pub section: String,
    pub symbol: String,
    pub nr: Option<u32>,
    pub verdict: Verdict,
    /// The bytes are data, not code (see [`looks_like_data`]).
    pub not_code: bool,
}

/// All sites of an object and the plan made from them.
pub struct Analysis {
    pub found: Vec<Found>,
    pub plan: Plan,
    pub instructions: usize,
    pub targets: usize,
}

struct Decoded {
    insns: Vec<Instruction>,
    section_of: Vec<u16>,
}

impl Decoded {
    fn index_of(&self, ip: u64) -> Option<usize> {
        self.insns.binary_search_by_key(&ip, |i| i.ip()).ok()
    }
    /// Whether `insns[k-1]` falls through into `insns[k]`.
    fn contiguous(&self, k: usize) -> bool {
        k > 0 && k < self.insns.len() && self.insns[k - 1].next_ip() == self.insns[k].ip()
            && self.section_of[k - 1] == self.section_of[k]
    }
}

/// Decodes every code section, starting over at each of `starts`.
fn decode_from(img: &Image, starts: &[u64]) -> Decoded {
    let mut insns = Vec::new();
    let mut section_of = Vec::new();
    for (si, sec) in img.code.iter().enumerate() {
        let end = sec.addr + sec.bytes.len() as u64;
        let lo = starts.partition_point(|&a| a <= sec.addr);
        let hi = starts.partition_point(|&a| a < end);
        let mut bounds = vec![sec.addr];
        bounds.extend_from_slice(&starts[lo..hi]);
        bounds.push(end);
        for w in bounds.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a >= b {
                continue;
            }
            let bytes = &sec.bytes[(a - sec.addr) as usize..(b - sec.addr) as usize];
            let mut d = Decoder::with_ip(64, bytes, a, DecoderOptions::NONE);
            let mut ins = Instruction::default();
            while d.can_decode() {
                let ip = d.ip();
                d.decode_out(&mut ins);
                if ins.code() == Code::INVALID && ins.len() > 1 {
                    // Like objdump's "(bad)": skip one byte and decode again.
                    ins.set_len(1);
                    ins.set_next_ip(ip + 1);
                    let pos = (ip + 1 - a) as usize;
                    if d.set_position(pos).is_err() {
                        break;
                    }
                    d.set_ip(ip + 1);
                }
                insns.push(ins);
                section_of.push(si as u16);
            }
        }
    }
    Decoded { insns, section_of }
}

/// The decoding the planner trusts: restarted at every symbol and FDE start,
/// except FDEs of signal frames, which by convention start one byte before
/// the restorer (inside the previous instruction).
fn decode(img: &Image) -> Decoded {
    let mut starts: Vec<u64> = img
        .symbols
        .iter()
        .map(|s| s.addr)
        .chain(img.fdes.iter().filter(|f| !img.signal_fdes.contains(&f.0)).map(|f| f.0))
        .collect();
    starts.sort_unstable();
    starts.dedup();
    decode_from(img, &starts)
}


/// Every address control may reach other than by falling through.
fn branch_targets(img: &Image, dec: &Decoded) -> HashSet<u64> {
    let mut t: HashSet<u64> = HashSet::new();
    t.extend(img.symbols.iter().map(|s| s.addr));
    t.extend(img.fdes.iter().map(|f| f.0));
    // A word of a Go image's data that points into the middle of an
    // instruction is no code pointer: Go's compiler and assembler emit
    // no overlapping code, and its text decodes linearly from each
    // function's entry (the function table gives every entry, stripped or
    // not), so function values, method tables and jump tables all hold
    // instruction starts. Such words are chance matches (`0x492492` in
    // .rodata of net/http's test binary, which left `runtime.mincore` a
    // trap). C images keep every match: hand-written code may overlap.
    let go = img.flavour == Flavour::Go;
    t.extend(img.data_targets.iter().copied().filter(|&a| img.in_code(a) && (!go || dec.index_of(a).is_some())));
    t.extend(img.code.iter().map(|c| c.addr));
    for ins in &dec.insns {
        match ins.flow_control() {
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
            | FlowControl::XbeginXabortXend => {
                if matches!(ins.op0_kind(), OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16) {
                    t.insert(ins.near_branch_target());
                }
            }
            _ => {}
        }
        // Return addresses (iced also calls `syscall` and `int` a call).
        if matches!(ins.flow_control(), FlowControl::Call | FlowControl::IndirectCall) && ins.mnemonic() == iced_x86::Mnemonic::Call {
            t.insert(ins.next_ip());
        }
        // A fixed-address image names code by absolute address too: `mov
        // $func, %edi`, `push $label`, `movq $label, 8(%rsp)`.
        if img.fixed {
            for o in 0..ins.op_count() {
                if matches!(ins.op_kind(o), OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64) {
                    let v = ins.immediate(o);
                    if img.in_code(v) {
                        t.insert(v);
                    }
                }
            }
            if ins.memory_base() == Register::None && img.in_code(ins.memory_displacement64()) {
                t.insert(ins.memory_displacement64());
            }
        }
        if ins.is_ip_rel_memory_operand() {
            let a = ins.ip_rel_memory_address();
            if img.in_code(a) {
                t.insert(a);
            } else if ins.mnemonic() == iced_x86::Mnemonic::Lea {
                jump_table(img, dec, ins.ip(), a, &mut t);
            }
        }
    }
    t
}

/// `lea table(%rip)` in a function: int32 entries relative to the table that
/// land on instructions of the same function are jump-table targets.
///
/// The function is its FDE, else its sized symbol, else (no unwind tables,
/// as in musl's objects) the whole section: a wider range only finds more
/// targets, which is the safe side.
fn jump_table(img: &Image, dec: &Decoded, at: u64, table: u64, t: &mut HashSet<u64>) {
    let section = || img.code.iter().find(|c| at >= c.addr && at < c.addr + c.bytes.len() as u64).map(|c| (c.addr, c.bytes.len() as u64));
    let Some((fs, fl)) = img.fde_of(at).or_else(|| img.symbol_range(at)).or_else(section) else { return };
    for k in 0..4096u64 {
        let Some(w) = img.read(table + 4 * k, 4) else { return };
        let off = i32::from_le_bytes([w[0], w[1], w[2], w[3]]) as i64;
        let dest = table.wrapping_add(off as u64);
        if dest < fs || dest >= fs + fl || dec.index_of(dest).is_none() {
            return;
        }
        t.insert(dest);
    }
}

/// What a displaced instruction must not be.
fn undisplaceable(ins: &Instruction) -> Option<&'static str> {
    if ins.code() == Code::INVALID {
        Some("undecodable bytes")
    } else if matches!(ins.code(), Code::Syscall | Code::Sysenter | Code::Int_imm8 | Code::Int3 | Code::Int1) {
        Some("a system call or interrupt")
    } else if ins.flow_control() != FlowControl::Next {
        Some("a branch")
    } else if ins.is_ip_rel_memory_operand() {
        Some("RIP-relative")
    } else if ins.memory_base() == Register::RIP || ins.memory_base() == Register::EIP {
        Some("RIP-relative")
    } else {
        None
    }
}

const STATUS_FLAGS: u32 =
    RflagsBits::OF | RflagsBits::SF | RflagsBits::ZF | RflagsBits::AF | RflagsBits::CF | RflagsBits::PF;

/// Whether a status flag written by the `syscall` at `k` (a trampoline may
/// change them) can be read before being written again. Follows fall-through
/// and direct jumps; a return, call or indirect jump ends the flags' life
/// (the ABI does not pass flags across them).
fn flags_live_after(dec: &Decoded, k: usize) -> bool {
    let mut live = STATUS_FLAGS;
    let mut i = k + 1;
    // The path has one successor at each step (a conditional branch ends the
    // search), so coming back to an instruction means a loop in which no
    // live flag was read: they are dead (`syscall(SYS_exit); jmp back`).
    let mut seen = [usize::MAX; 64];
    for step in 0..64 {
        if seen[..step].contains(&i) {
            return false;
        }
        seen[step] = i;
        let Some(ins) = dec.insns.get(i) else { return false };
        if ins.code() == Code::INVALID {
            return true;
        }
        // A `syscall` copies the flags into r11, which nothing reads after it
        // (gcc's inline syscalls clobber r11): no real use.
        if ins.code() == Code::Syscall {
            i += 1;
            continue;
        }
        if ins.rflags_read() & live != 0 {
            return true;
        }
        live &= !ins.rflags_modified();
        if live == 0 {
            return false;
        }
        match ins.flow_control() {
            FlowControl::Next => {
                if !dec.contiguous(i + 1) {
                    return true;
                }
                i += 1;
            }
            FlowControl::UnconditionalBranch if ins.op0_kind() == OpKind::NearBranch64 => {
                match dec.index_of(ins.near_branch_target()) {
                    Some(j) => i = j,
                    None => return true,
                }
            }
            FlowControl::Return | FlowControl::Call | FlowControl::IndirectCall | FlowControl::IndirectBranch
            | FlowControl::Interrupt | FlowControl::Exception => return false,
            _ => return true,
        }
    }
    true
}

/// The syscall number at the `syscall` at `k`, if it is a constant set on the
/// straight line before it (also through register moves, and assembled from
/// partial writes such as musl's `xor %eax,%eax; mov $56,%al`).
///
/// Walks backward keeping which bits of the number are known: a write to a
/// part of the register fixes the bits it covers that a later write has not
/// fixed already (a 32-bit write zero-extends, so it fixes all 64).
fn trace_nr(dec: &Decoded, targets: &HashSet<u64>, k: usize) -> Option<u32> {
    let mut reg = Register::RAX;
    let (mut known, mut value) = (0u64, 0u64);
    let mut info = InstructionInfoFactory::new();
    let mut i = k;
    for _ in 0..48 {
        if targets.contains(&dec.insns[i].ip()) || !dec.contiguous(i) {
            return None; // another path joins here
        }
        i -= 1;
        let ins = &dec.insns[i];
        if ins.flow_control() != FlowControl::Next {
            return None;
        }
        let writes = info
            .info(ins)
            .used_registers()
            .iter()
            .any(|u| u.register().full_register() == reg && !matches!(u.access(), OpAccess::Read | OpAccess::CondRead));
        if !writes {
            continue;
        }
        let dst = ins.op0_register();
        let dst_is_reg = ins.op_count() >= 1 && ins.op0_kind() == OpKind::Register && dst.full_register() == reg;
        if !dst_is_reg || matches!(dst, Register::AH | Register::BH | Register::CH | Register::DH) {
            return None;
        }
        let mask = match dst.size() {
            1 => 0xff,
            2 => 0xffff,
            4 | 8 => u64::MAX,
            _ => return None,
        };
        let fresh = mask & !known;
        match ins.mnemonic() {
            iced_x86::Mnemonic::Mov if ins.op_count() == 2 => match ins.op1_kind() {
                OpKind::Immediate8 | OpKind::Immediate16 | OpKind::Immediate32 | OpKind::Immediate32to64
                | OpKind::Immediate64 => {
                    let imm = ins.immediate(1) & if dst.size() == 4 { 0xffff_ffff } else { u64::MAX };
                    value |= imm & fresh;
                    known |= mask;
                }
                // A copy from another register that covers every bit still
                // unknown: the rest of the number is that register's (a
                // 32-bit move zero-extends: the upper half is zero).
                OpKind::Register if matches!(dst.size(), 4 | 8) && fresh == !known => {
                    reg = ins.op1_register().full_register();
                    if dst.size() == 4 {
                        known |= !0xffff_ffff;
                    }
                }
                _ => return None,
            },
            iced_x86::Mnemonic::Xor
                if ins.op_count() == 2 && ins.op1_kind() == OpKind::Register && dst == ins.op1_register() =>
            {
                known |= mask;
            }
            _ => return None,
        }
        if known == u64::MAX {
            return u32::try_from(value).ok();
        }
    }
    None
}

/// Whether the straight line after the `syscall` at `k` makes an `exit`
/// system call before anything else that could use the stack: musl's
/// `__unmapself` unmaps the thread's stack with the first `syscall` and exits
/// with the next. The first must stay a `syscall` (a trampoline would return
/// through the stack it just unmapped); the trap fallback resumes it without
/// touching the stack, and the `exit` becomes a tail site.
fn exits_right_after(dec: &Decoded, targets: &HashSet<u64>, k: usize) -> bool {
    for j in k + 1..(k + 9).min(dec.insns.len()) {
        if !dec.contiguous(j) {
            return false;
        }
        let ins = &dec.insns[j];
        if ins.code() == Code::Syscall {
            return trace_nr(dec, targets, j) == Some(NR_EXIT);
        }
        if ins.flow_control() != FlowControl::Next || ins.stack_pointer_increment() != 0 {
            return false;
        }
        let touches_stack = (0..ins.op_count()).any(|o| ins.op_kind(o) == OpKind::Memory)
            && matches!(ins.memory_base(), Register::RSP | Register::RBP);
        if touches_stack {
            return false;
        }
    }
    false
}

/// Whether the function holding `k` keeps data below `rsp` (the red zone).
fn uses_red_zone(img: &Image, dec: &Decoded, k: usize) -> bool {
    let ip = dec.insns[k].ip();
    let (lo, hi) = match img.fde_of(ip) {
        Some((s, l)) => (s, s + l),
        None => (ip.saturating_sub(256), ip + 256),
    };
    let a = dec.insns.partition_point(|i| i.ip() < lo);
    dec.insns[a..].iter().take_while(|i| i.ip() < hi).any(|i| {
        (0..i.op_count()).any(|o| i.op_kind(o) == OpKind::Memory)
            && i.memory_base() == Register::RSP
            && (i.memory_displacement64() as i64) < 0
    })
}

fn format_insns(insns: &[Instruction]) -> String {
    let mut f = GasFormatter::new();
    let mut out = Vec::new();
    for i in insns {
        let mut s = String::new();
        f.format(i, &mut s);
        out.push(s);
    }
    out.join("; ")
}

/// The runs around the `syscall` at `k`: `(pre_count, post_count)` or why none.
///
/// `min_start` is the end of the previous site's run: runs never overlap (the
/// runtime refuses a plan whose sites do), so the instructions before it are
/// not candidates.
fn choose_run(dec: &Decoded, targets: &HashSet<u64>, k: usize, min_start: u64) -> Result<(usize, usize, Mode), String> {
    let len = |i: &Instruction| i.len();
    // Candidates before: insns[k-b..k], contiguous and displaceable.
    let mut before = Vec::new(); // (count, bytes)
    let mut why_back = None;
    let mut bytes = 0;
    for b in 1..=6 {
        if k < b || !dec.contiguous(k - b + 1) {
            why_back.get_or_insert("the code before it is not a straight line".to_string());
            break;
        }
        let ins = &dec.insns[k - b];
        if ins.ip() < min_start {
            why_back.get_or_insert("the run before it would overlap the previous site's".to_string());
            break;
        }
        if let Some(w) = undisplaceable(ins) {
            why_back.get_or_insert(format!("{w} instruction `{}` before it", format_insns(&[*ins])));
            break;
        }
        // insns[k-b+1 ..= k] become inner: none may be a target.
        if targets.contains(&dec.insns[k - b + 1].ip()) {
            why_back.get_or_insert("a branch lands inside the run before it".to_string());
            break;
        }
        bytes += len(ins);
        if bytes > MAX_SIDE {
            break;
        }
        before.push((b, bytes));
    }
    let mut after = Vec::new();
    let mut why_fwd = None;
    bytes = 0;
    for f in 1..=6 {
        let j = k + f;
        if !dec.contiguous(j) {
            why_fwd.get_or_insert("the code after it is not a straight line".to_string());
            break;
        }
        let ins = &dec.insns[j];
        if targets.contains(&ins.ip()) {
            why_fwd.get_or_insert("a branch lands inside the run after it".to_string());
            break;
        }
        if let Some(w) = undisplaceable(ins) {
            why_fwd.get_or_insert(format!("{w} instruction `{}` after it", format_insns(&[*ins])));
            break;
        }
        bytes += len(ins);
        if bytes > MAX_SIDE {
            break;
        }
        after.push((f, bytes));
    }
    let need = MIN_LEN - 2;
    if let Some(&(b, _)) = before.iter().find(|(_, n)| *n >= need) {
        return Ok((b, 0, Mode::Backward));
    }
    // Forward only: the `syscall` is the first replaced instruction, where a
    // branch may land (it finds the jump).
    if let Some(&(f, _)) = after.iter().find(|(_, n)| *n >= need) {
        return Ok((0, f, Mode::Forward));
    }
    // Both sides: the syscall itself becomes inner, so it must not be a target
    // (checked for before[0] above: insns[k] is inner once b >= 1).
    for &(b, nb) in &before {
        if let Some(&(f, _)) = after.iter().find(|(_, na)| nb + na >= need) {
            return Ok((b, f, Mode::Both));
        }
    }
    Err(format!(
        "no safe run of {MIN_LEN} bytes: before: {}; after: {}",
        why_back.unwrap_or_else(|| "too short".into()),
        why_fwd.unwrap_or_else(|| "too short".into())
    ))
}

/// The verdict for the run `insns[k-b ..= k+f]` around the `syscall` at `k`:
/// a site, unless the two decodings disagree on it.
#[allow(clippy::too_many_arguments)]
fn make_site(
    img: &Image,
    dec: &Decoded,
    linear: &Decoded,
    sorted_targets: &[u64],
    k: usize,
    b: usize,
    f: usize,
    mode: Mode,
    kind: Kind,
    nr: Option<u32>,
) -> Verdict {
    let ins = &dec.insns[k];
    let addr = ins.ip();
    let (lo, hi) = (dec.insns[k - b].ip(), dec.insns[k + f].next_ip());
    // `choose_run` checked the instruction boundaries; a target between
    // them (a jump into the middle of an instruction: overlapping code)
    // refuses the run too.
    let p = sorted_targets.partition_point(|&t| t <= lo);
    if sorted_targets.get(p).is_some_and(|&t| t < hi) {
        return Verdict::Leave(Left {
            at: addr,
            status: LeftStatus::Uncovered,
            reason: format!("a branch lands inside the run, at {:#x}, between instruction boundaries", sorted_targets[p]),
        });
    }
    if !agrees(linear, &dec.insns[k - b..=k + f]) {
        return Verdict::Leave(Left {
            at: addr,
            status: LeftStatus::Uncovered,
            reason: "ambiguous decoding: a linear sweep from the section start sees other instructions here".into(),
        });
    }
    let pre_i = &dec.insns[k - b..k];
    let post_i = &dec.insns[k + 1..k + 1 + f];
    let at = pre_i.first().map_or(addr, |i| i.ip());
    let end = post_i.last().map_or(addr + 2, |i| i.next_ip());
    let orig = read_code(img, at, end);
    let p = (addr - at) as usize;
    let bytes = |b: &[u8]| Bytes::new(b).expect("runs are at most 2 * MAX_SIDE + 2 bytes");
    let site = Site {
        at,
        len: (end - at) as usize,
        kind,
        pre: bytes(&orig[..p]),
        post: bytes(&orig[p + 2..]),
        orig: bytes(&orig),
        nr,
    };
    let mut shown: Vec<Instruction> = pre_i.to_vec();
    shown.push(*ins);
    shown.extend_from_slice(post_i);
    Verdict::Patch { site, mode, displaced: format_insns(&shown) }
}

/// For a Go image, what the Go target's rules (`shunt_gotarget::rules`, the
/// same table `shunt go build` rewrites by) say about each `syscall` of the
/// functions they name: `site address → rewrite`. A function whose number of
/// sites differs from its rule's (another Go version) gets no entry: its
/// sites are planned like any other.
fn go_rules(img: &Image, dec: &Decoded) -> std::collections::HashMap<u64, Rewrite> {
    let mut out = std::collections::HashMap::new();
    if img.flavour != Flavour::Go {
        return out;
    }
    let mut by_name: std::collections::HashMap<&str, &[Rewrite]> = std::collections::HashMap::new();
    let rules: Vec<_> = shunt_gotarget::rules::std_rules().into_iter().chain(shunt_gotarget::rules::xsys_rules()).collect();
    for r in &rules {
        for f in &r.functions {
            by_name.insert(f, &r.sites);
        }
    }
    let mut sites_of: std::collections::HashMap<String, Vec<u64>> = std::collections::HashMap::new();
    for i in dec.insns.iter().filter(|i| i.code() == Code::Syscall) {
        let name = img.name_of(i.ip());
        let func = name.rsplit_once("+0x").map_or(name.as_str(), |(f, _)| f);
        let func = func.strip_suffix(".abi0").unwrap_or(func);
        sites_of.entry(func.to_string()).or_default().push(i.ip());
    }
    for (func, addrs) in sites_of {
        if let Some(rule) = by_name.get(func.as_str()).filter(|r| r.len() == addrs.len()) {
            out.extend(addrs.into_iter().zip(rule.iter().copied()));
        }
    }
    out
}

/// Analyses `img`: every system call site and the patch plan.
pub fn analyse(img: &Image) -> Analysis {
    let dec = decode(img);
    // A second decoding, straight from each section's start: a run is only
    // patched where both agree on every instruction of it (a symbol or FDE
    // start that is not really an instruction boundary cannot mislead us).
    let linear = decode_from(img, &[]);
    let targets = branch_targets(img, &dec);
    let mut sorted_targets: Vec<u64> = targets.iter().copied().collect();
    sorted_targets.sort_unstable();
    let rules = go_rules(img, &dec);
    let go_rule = |k: usize| rules.get(&dec.insns[k].ip()).copied();
    let mut found = Vec::new();
    let mut last_end = 0u64;
    let mut plan = Plan {
        build_id: img.key.clone(),
        object: img.path.display().to_string(),
        planner: PLANNER.to_string(),
        ..Default::default()
    };
    for (k, ins) in dec.insns.iter().enumerate() {
        let insn = match ins.code() {
            Code::Syscall => Insn::Syscall,
            Code::Sysenter => Insn::Sysenter,
            Code::Int_imm8 if ins.immediate8() == 0x80 => Insn::Int80,
            _ => continue,
        };
        let addr = ins.ip();
        // The number means a 64-bit syscall only for `syscall` (int $0x80 and
        // sysenter use the 32-bit table).
        let nr = if insn == Insn::Syscall { trace_nr(&dec, &targets, k) } else { None };
        let leave = |status, reason: String| Verdict::Leave(Left { at: addr, status, reason });
        let not_code = looks_like_data(img, &dec, k);
        let verdict = if not_code {
            leave(
                LeftStatus::Allowlisted,
                "not code: outside every function (no FDE or symbol covers it) among undecodable bytes, \
                 i.e. data in an executable section"
                    .into(),
            )
        } else if insn != Insn::Syscall {
            leave(LeftStatus::Uncovered, format!("{}: the 32-bit system call ABI is not redirected", insn.as_str()))
        } else if ins.len() != 2 {
            // Plans (and the runtime's checks) take a `syscall` to be `0f 05`.
            leave(LeftStatus::Uncovered, "a syscall with prefixes: not the plain 2-byte form a plan describes".into())
        } else if nr == Some(NR_RT_SIGRETURN) {
            leave(
                LeftStatus::Allowlisted,
                "rt_sigreturn (signal restorer): the runtime installs its own restorer at rt_sigaction time".into(),
            )
        } else if let Some(Rewrite::Keep) = go_rule(k) {
            leave(LeftStatus::Allowlisted, "the Go target keeps this site a raw syscall (rt_sigreturn restorer)".into())
        } else if nr == Some(NR_MUNMAP) && exits_right_after(&dec, &targets, k) {
            leave(
                LeftStatus::Uncovered,
                "munmap right before exit (the thread unmaps its own stack): a trampoline would return through \
                 the unmapped stack; the trap fallback resumes it without touching the stack"
                    .into(),
            )
        } else {
            // What the trampoline does with the stack (see `Kind`).
            let go = img.flavour == Flavour::Go;
            let tail = nr == Some(NR_EXIT) || go_rule(k) == Some(Rewrite::TailJump);
            let kind = match nr {
                _ if go => Kind::NoRedZone,
                Some(NR_CLONE | NR_CLONE3 | NR_VFORK) => Kind::NoRedZone,
                _ => Kind::Normal,
            };
            // exit and exit_group do not come back: flags after them are dead.
            let returns = !matches!(nr, Some(NR_EXIT | NR_EXIT_GROUP));
            let tail_run = if tail { choose_run(&dec, &targets, k, last_end).ok().filter(|r| r.1 == 0) } else { None };
            if let Some((b, _, _)) = tail_run {
                make_site(img, &dec, &linear, &sorted_targets, k, b, 0, Mode::Backward, Kind::Tail, nr)
            } else if go && tail {
                leave(LeftStatus::Uncovered, "thread exit whose stack may be freed, with no run before it to displace".into())
            } else if kind == Kind::NoRedZone && uses_red_zone(img, &dec, k) {
                leave(
                    LeftStatus::Uncovered,
                    if go {
                        "the function keeps data below rsp, where the gate's return address would go (Go has no red zone to skip)"
                    } else {
                        "clone/vfork site in a function that keeps data below rsp"
                    }
                    .into(),
                )
            } else if returns && flags_live_after(&dec, k) {
                leave(LeftStatus::Uncovered, "the flags are read after the syscall".into())
            } else {
                match choose_run(&dec, &targets, k, last_end) {
                    Err(why) => leave(LeftStatus::Uncovered, why),
                    Ok((b, f, mode)) => make_site(img, &dec, &linear, &sorted_targets, k, b, f, mode, kind, nr),
                }
            }
        };
        match &verdict {
            Verdict::Patch { site, .. } => {
                last_end = site.at + site.len as u64;
                plan.sites.push(site.clone())
            }
            Verdict::Leave(l) => plan.left.push(l.clone()),
        }
        found.push(Found {
            addr,
            insn,
            section: img.code[dec.section_of[k] as usize].name.clone(),
            symbol: img.name_of(addr),
            nr,
            verdict,
            not_code,
        });
    }
    Analysis { found, plan, instructions: dec.insns.len(), targets: targets.len() }
}

/// Whether the "instruction" at `k` is really data in a code section (such as
/// OpenSSL's precomputed tables in libcrypto's `.text`): no FDE and no sized
/// symbol covers it, and undecodable bytes lie within 16 instructions of it.
/// Code compiled by gcc or assembled with CFI always has an FDE.
fn looks_like_data(img: &Image, dec: &Decoded, k: usize) -> bool {
    let ip = dec.insns[k].ip();
    if img.fde_of(ip).is_some() || img.symbols.iter().any(|s| s.size > 0 && ip >= s.addr && ip < s.addr + s.size) {
        return false;
    }
    let lo = k.saturating_sub(16);
    let hi = (k + 17).min(dec.insns.len());
    dec.insns[lo..hi].iter().any(|i| i.code() == Code::INVALID)
}

/// Whether `other` decodes `run` to the same instructions.
fn agrees(other: &Decoded, run: &[Instruction]) -> bool {
    run.iter().all(|i| other.index_of(i.ip()).is_some_and(|j| other.insns[j].len() == i.len() && other.insns[j].code() == i.code()))
}

fn read_code(img: &Image, from: u64, to: u64) -> Vec<u8> {
    for c in &img.code {
        if from >= c.addr && to <= c.addr + c.bytes.len() as u64 {
            return c.bytes[(from - c.addr) as usize..(to - c.addr) as usize].to_vec();
        }
    }
    unreachable!("a run of decoded instructions lies in one section")
}

/// Every branch target the planner sees (debugging aid), sorted.
pub fn targets_of(img: &Image) -> Vec<u64> {
    let dec = decode(img);
    let mut t: Vec<u64> = branch_targets(img, &dec).into_iter().collect();
    t.sort_unstable();
    t
}
