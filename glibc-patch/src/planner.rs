//! The planner: finds every system call instruction of an object and decides,
//! site by site, how it can be replaced by a jump to a trampoline.
//!
//! 1. Decode every executable section linearly with iced-x86, starting over at
//!    every symbol and FDE start (so that padding or data between functions
//!    cannot shift the decoding of the next function).
//! 2. Collect the addresses control can reach other than by falling through:
//!    direct branch and call targets, return addresses, RIP-relative
//!    references into code (address-taken labels), jump-table entries
//!    (`lea table(%rip)` followed by int32 offsets that land inside the same
//!    function), relocated pointers (`R_X86_64_RELATIVE`/`IRELATIVE`, RELR),
//!    exception landing pads, symbol and FDE starts.
//! 3. For each `syscall`: trace the number back (constants, also hoisted into
//!    another register), pick the kind (`no_red_zone` for clone, clone3 and
//!    vfork; `rt_sigreturn` is allowlisted), and choose the run of whole
//!    instructions to displace: "backward" (instructions just before the
//!    `syscall`), else "forward" (just after it), else both. A run never
//!    contains a branch or a RIP-relative instruction and no target lies
//!    strictly inside it; the flags must be dead after the `syscall` (a
//!    trampoline, unlike `syscall`, may change them).
//! 4. Cross-check the decoding: a second, plain linear sweep from each
//!    section's start must see the same instructions over the whole run, or
//!    the site is left uncovered. FDEs of signal frames are not used as
//!    restart points: by convention they start one byte before the restorer,
//!    inside the previous instruction (glibc's `__restore_rt`).
//!
//! A site whose number is not a constant is `normal`. The only such site that
//! could see `clone` is glibc's `syscall()` function, where a `clone` with a
//! new stack is broken natively too (the child returns into `syscall()` on an
//! empty stack).

use std::collections::HashSet;

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Formatter, GasFormatter, Instruction, InstructionInfoFactory,
    OpAccess, OpKind, Register, RflagsBits,
};
use shunt_runtime::patch::{Code as Bytes, Kind, Left, LeftStatus, Plan, Site, MIN_LEN};

use crate::elf::Image;

/// Name and revision of the planning rules. A plan made by another revision
/// is made again by `shunt glibc plan` / `shunt cc`.
pub const PLANNER: &str = concat!("shunt-glibc-patch ", env!("CARGO_PKG_VERSION"), "/1");

const NR_RT_SIGRETURN: u32 = 15;
const NR_CLONE: u32 = 56;
const NR_VFORK: u32 = 58;
const NR_CLONE3: u32 = 435;
/// Longest run of displaced bytes on either side (a whole run,
/// `2 * MAX_SIDE + 2`, must fit the runtime's `MAX_LEN`).
const MAX_SIDE: usize = (shunt_runtime::patch::MAX_LEN - 2) / 2;

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
    t.extend(img.data_targets.iter().copied().filter(|&a| img.in_code(a)));
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
fn jump_table(img: &Image, dec: &Decoded, at: u64, table: u64, t: &mut HashSet<u64>) {
    let Some((fs, fl)) = img.fde_of(at) else { return };
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
    for _ in 0..64 {
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
/// straight line before it (also through register moves).
fn trace_nr(dec: &Decoded, targets: &HashSet<u64>, k: usize) -> Option<u32> {
    let mut reg = Register::RAX;
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
        let dst_is_reg = ins.op_count() >= 1 && ins.op0_kind() == OpKind::Register && ins.op0_register().full_register() == reg;
        if !dst_is_reg {
            return None;
        }
        match ins.mnemonic() {
            iced_x86::Mnemonic::Mov if ins.op_count() == 2 => match ins.op1_kind() {
                OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64 => {
                    return u32::try_from(ins.immediate(1) & 0xffff_ffff).ok();
                }
                OpKind::Register if matches!(ins.op0_register().size(), 4 | 8) => {
                    reg = ins.op1_register().full_register();
                }
                _ => return None,
            },
            iced_x86::Mnemonic::Xor
                if ins.op_count() == 2 && ins.op1_kind() == OpKind::Register && ins.op0_register() == ins.op1_register() =>
            {
                return Some(0);
            }
            _ => return None,
        }
    }
    None
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
fn choose_run(dec: &Decoded, targets: &HashSet<u64>, k: usize) -> Result<(usize, usize, Mode), String> {
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

/// Analyses `img`: every system call site and the patch plan.
pub fn analyse(img: &Image) -> Analysis {
    let dec = decode(img);
    // A second decoding, straight from each section's start: a run is only
    // patched where both agree on every instruction of it (a symbol or FDE
    // start that is not really an instruction boundary cannot mislead us).
    let linear = decode_from(img, &[]);
    let targets = branch_targets(img, &dec);
    let mut found = Vec::new();
    let mut plan = Plan {
        build_id: img.build_id.clone().unwrap_or_default(),
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
        } else if nr == Some(NR_RT_SIGRETURN) {
            leave(
                LeftStatus::Allowlisted,
                "rt_sigreturn (signal restorer): the runtime installs its own restorer at rt_sigaction time".into(),
            )
        } else {
            let kind = match nr {
                Some(NR_CLONE | NR_CLONE3 | NR_VFORK) => Kind::NoRedZone,
                _ => Kind::Normal,
            };
            if kind == Kind::NoRedZone && uses_red_zone(img, &dec, k) {
                leave(LeftStatus::Uncovered, "clone/vfork site in a function that keeps data below rsp".into())
            } else if flags_live_after(&dec, k) {
                leave(LeftStatus::Uncovered, "the flags are read after the syscall".into())
            } else {
                match choose_run(&dec, &targets, k) {
                    Err(why) => leave(LeftStatus::Uncovered, why),
                    Ok((b, f, _)) if !agrees(&linear, &dec.insns[k - b..=k + f]) => leave(
                        LeftStatus::Uncovered,
                        "ambiguous decoding: a linear sweep from the section start sees other instructions here".into(),
                    ),
                    Ok((b, f, mode)) => {
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
                }
            }
        };
        match &verdict {
            Verdict::Patch { site, .. } => plan.sites.push(site.clone()),
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
