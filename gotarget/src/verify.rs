//! The verifier: which system-call sites of a built Go binary reach the gate.
//!
//! Decodes the executable sections (iced-x86), restarting at every function
//! symbol so that padding between functions cannot desynchronise the
//! decoder, and classifies:
//!
//! - **covered**: `call shunt_syscall`, `jmp shunt_syscall_exit`, and the
//!   inline `call r11` after `mov r11, [shunt_gate_addr]; test; je`;
//! - **allowlisted**: raw `syscall`s that are deliberate — the trampolines'
//!   own no-gate fallbacks, the inline no-gate fallbacks of clone/vfork
//!   (right after their `call r11; jmp`), and Go's `rt_sigreturn` restorer;
//! - **uncovered**: every other `syscall`, `sysenter` or `int 0x80`.
//!
//! Function names come from the ELF symbol table or, in a stripped binary
//! (`-ldflags="-s -w"`, as OpenFaaS's Go templates build), from Go's own
//! function table (`.gopclntab`, which the runtime needs and so is never
//! stripped). A binary with neither is refused rather than guessed at.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};
use serde::Serialize;

use crate::rules::{GATE_VARIABLE, TRAMPOLINE, TRAMPOLINE_EXIT};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteStatus {
    /// Enters the gate when there is one.
    Covered,
    /// A raw system call that is there on purpose.
    Allowlisted,
    /// A raw system call that bypasses the gate.
    Uncovered,
}

#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub address: u64,
    /// The containing function's symbol (Go's `.abi0` suffix dropped).
    pub function: String,
    /// The instruction, in GNU syntax.
    pub instruction: String,
    pub status: SiteStatus,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The binary contains the shunt trampoline (was built with `shunt go build`).
    pub shunt_target: bool,
    pub sites: Vec<Site>,
}

impl Report {
    pub fn uncovered(&self) -> impl Iterator<Item = &Site> {
        self.sites.iter().filter(|s| s.status == SiteStatus::Uncovered)
    }
    pub fn count(&self, status: SiteStatus) -> usize {
        self.sites.iter().filter(|s| s.status == status).count()
    }
}

/// Functions whose raw `syscall` is allowlisted, and why. The trampolines'
/// own fallbacks run only when no gate was handed over (native run).
const ALLOWED_FUNCTIONS: &[(&str, &str)] = &[
    (TRAMPOLINE, "trampoline: the no-gate fallback (native run)"),
    (TRAMPOLINE_EXIT, "exit trampoline: the no-gate fallback (native run)"),
];

/// Go's signal restorer: must stay `mov $15, %rax; syscall` (the kernel
/// reads the signal frame at rsp; unwinders match the bytes). Under shunt
/// the runtime installs its own restorer when Go calls rt_sigaction.
const RESTORER: &str = "runtime.sigreturn__sigaction";

/// Verifies the ELF file at `path`.
pub fn verify_elf(path: &Path) -> Result<Report> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    verify_bytes(&data).with_context(|| format!("{}", path.display()))
}

/// Verifies an ELF image.
pub fn verify_bytes(data: &[u8]) -> Result<Report> {
    let file = object::File::parse(data).context("not an ELF file object can read")?;
    if file.architecture() != object::Architecture::X86_64 {
        bail!("not an x86-64 ELF ({:?})", file.architecture());
    }
    let mut funcs: Vec<(u64, u64, String)> = Vec::new();
    let mut by_name: HashMap<String, u64> = HashMap::new();
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        if name.is_empty() || sym.address() == 0 {
            continue;
        }
        let name = name.strip_suffix(".abi0").unwrap_or(name).to_owned();
        by_name.entry(name.clone()).or_insert(sym.address());
        if sym.kind() == SymbolKind::Text {
            funcs.push((sym.address(), sym.size(), name));
        }
    }
    if funcs.is_empty() {
        funcs = go_functions(&file).context(
            "no symbol table and no readable Go function table (.gopclntab): cannot tell which function holds each syscall",
        )?;
        for f in &funcs {
            by_name.entry(f.2.clone()).or_insert(f.0);
        }
    }
    funcs.sort_by_key(|f| f.0);
    funcs.dedup_by_key(|f| f.0);
    let tramp = by_name.get(TRAMPOLINE).copied();
    let tramp_exit = by_name.get(TRAMPOLINE_EXIT).copied();
    // A data symbol: gone when stripped, but the trampoline's first
    // instruction loads it.
    let gate_var = by_name.get(GATE_VARIABLE).copied().or_else(|| tramp.and_then(|t| first_load_r11(&file, t)));
    let ctx = Ctx { tramp, tramp_exit, gate_var };

    let mut sites = Vec::new();
    for section in file.sections() {
        // Text sections: SHF_EXECINSTR (.text, .plt, .init, …).
        if section.kind() != SectionKind::Text {
            continue;
        }
        let Ok(bytes) = section.data() else { continue };
        let (start, end) = (section.address(), section.address() + bytes.len() as u64);
        // Chunk boundaries: the section start and every function start in it.
        let mut bounds: Vec<u64> = std::iter::once(start)
            .chain(funcs.iter().map(|f| f.0).filter(|&a| a > start && a < end))
            .collect();
        bounds.push(end);
        for w in bounds.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let function = function_at(&funcs, lo);
            let chunk = &bytes[(lo - start) as usize..(hi - start) as usize];
            scan_chunk(chunk, lo, &function, &ctx, &mut sites);
        }
    }
    Ok(Report { shunt_target: tramp.is_some(), sites })
}

struct Ctx {
    tramp: Option<u64>,
    tramp_exit: Option<u64>,
    gate_var: Option<u64>,
}

fn function_at(funcs: &[(u64, u64, String)], addr: u64) -> String {
    let i = funcs.partition_point(|f| f.0 <= addr);
    match i.checked_sub(1).map(|j| &funcs[j]) {
        Some((a, size, name)) if *size == 0 || addr < a + size => name.clone(),
        _ => "?".into(),
    }
}

fn scan_chunk(code: &[u8], ip: u64, function: &str, ctx: &Ctx, out: &mut Vec<Site>) {
    let mut dec = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    // The last few instructions, for the inline-fallback pattern.
    let mut recent: Vec<Instruction> = Vec::with_capacity(8);
    let mut fmt = iced_x86::GasFormatter::new();
    let mut text = |i: &Instruction| {
        use iced_x86::Formatter;
        let mut s = String::new();
        fmt.format(i, &mut s);
        s
    };
    while dec.can_decode() {
        let ins = dec.decode();
        if ins.is_invalid() {
            recent.clear();
            continue;
        }
        let mut push = |status: SiteStatus, reason: String, ins: &Instruction| {
            out.push(Site { address: ins.ip(), function: function.to_owned(), instruction: text(ins), status, reason });
        };
        match ins.mnemonic() {
            Mnemonic::Syscall | Mnemonic::Sysenter => {
                let (status, reason) = classify_raw(&ins, function, &recent, ctx);
                push(status, reason, &ins);
            }
            Mnemonic::Int if ins.immediate8() == 0x80 => {
                push(SiteStatus::Uncovered, "int 0x80: 32-bit system call entry".into(), &ins);
            }
            Mnemonic::Call | Mnemonic::Jmp => {
                let target = matches!(ins.op0_kind(), OpKind::NearBranch64).then(|| ins.near_branch_target());
                if target.is_some() && target == ctx.tramp && ins.mnemonic() == Mnemonic::Call {
                    push(SiteStatus::Covered, "call shunt_syscall: the gate when present".into(), &ins);
                } else if target.is_some() && target == ctx.tramp_exit {
                    push(SiteStatus::Covered, "jmp shunt_syscall_exit: the gate's exit path, no stack".into(), &ins);
                } else if ins.code() == Code::Call_rm64 && ins.op0_register() == Register::R11 && gate_check_before(&recent, ctx) {
                    push(SiteStatus::Covered, "inline gate call (call r11 after loading shunt_gate_addr)".into(), &ins);
                }
            }
            _ => {}
        }
        if recent.len() == 8 {
            recent.remove(0);
        }
        recent.push(ins);
    }
}

fn classify_raw(ins: &Instruction, function: &str, recent: &[Instruction], ctx: &Ctx) -> (SiteStatus, String) {
    if ins.mnemonic() == Mnemonic::Sysenter {
        return (SiteStatus::Uncovered, "sysenter: 32-bit system call entry".into());
    }
    if let Some((_, why)) = ALLOWED_FUNCTIONS.iter().find(|(f, _)| *f == function) {
        return (SiteStatus::Allowlisted, (*why).into());
    }
    if function == RESTORER && recent.last().is_some_and(loads_rax_15) {
        return (
            SiteStatus::Allowlisted,
            "rt_sigreturn restorer: stays raw; the shunt runtime installs its own restorer at rt_sigaction".into(),
        );
    }
    // ... call r11; jmp over; syscall  — the inline no-gate fallback.
    let n = recent.len();
    if n >= 2 && recent[n - 1].mnemonic() == Mnemonic::Jmp && recent[n - 2].code() == Code::Call_rm64 && recent[n - 2].op0_register() == Register::R11
        && gate_check_before(&recent[..n - 2], ctx)
    {
        return (SiteStatus::Allowlisted, "inline no-gate fallback of clone/vfork (the gate path is the call r11 before it)".into());
    }
    if ctx.tramp.is_none() {
        return (SiteStatus::Uncovered, "raw syscall: binary not built with `shunt go build` (no shunt_syscall trampoline)".into());
    }
    (SiteStatus::Uncovered, format!("raw syscall in {function}: not rewritten by the shunt overlay"))
}

/// `mov r11, [rip+shunt_gate_addr]; test r11, r11; je …` just before.
fn gate_check_before(recent: &[Instruction], ctx: &Ctx) -> bool {
    let Some(var) = ctx.gate_var else { return false };
    let n = recent.len();
    if n < 3 {
        return false;
    }
    let (mov, test, je) = (&recent[n - 3], &recent[n - 2], &recent[n - 1]);
    mov.mnemonic() == Mnemonic::Mov
        && mov.op0_register() == Register::R11
        && mov.op1_kind() == OpKind::Memory
        && mov.memory_base() == Register::RIP
        && mov.memory_displacement64() == var
        && test.mnemonic() == Mnemonic::Test
        && test.op0_register() == Register::R11
        && je.mnemonic() == Mnemonic::Je
}

fn loads_rax_15(i: &Instruction) -> bool {
    i.mnemonic() == Mnemonic::Mov
        && matches!(i.op0_register(), Register::RAX | Register::EAX)
        && matches!(i.op1_kind(), OpKind::Immediate32to64 | OpKind::Immediate32)
        && i.immediate(1) == 15
}

/// The address `mov r11, [rip+X]` at `addr` loads from.
fn first_load_r11(file: &object::File, addr: u64) -> Option<u64> {
    let section = file.sections().find(|s| s.address() <= addr && addr < s.address() + s.size())?;
    let data = section.data().ok()?;
    let off = (addr - section.address()) as usize;
    let ins = Decoder::with_ip(64, data.get(off..)?, addr, DecoderOptions::NONE).decode();
    (ins.mnemonic() == Mnemonic::Mov && ins.op0_register() == Register::R11 && ins.memory_base() == Register::RIP)
        .then(|| ins.memory_displacement64())
}

/// Functions `(entry, size, name)` from Go's `.gopclntab` (see
/// [`pclntab_functions`]).
fn go_functions(file: &object::File) -> Option<Vec<(u64, u64, String)>> {
    // Go 1.25 and older put a PIE's table in relro data under this name.
    let pcln = file.section_by_name(".gopclntab").or_else(|| file.section_by_name(".data.rel.ro.gopclntab"))?;
    let tab = pcln.data().ok()?;
    let data: Vec<(u64, &[u8])> = file
        .sections()
        .filter(|s| s.kind() == SectionKind::Data)
        .filter_map(|s| Some((s.address(), s.data().ok()?)))
        .collect();
    let text = moduledata_text(pcln.address(), tab, &data).or_else(|| Some(file.section_by_name(".text")?.address()))?;
    pclntab_functions(tab, text)
}

/// The address Go's function table counts entry offsets from
/// (`runtime.text`), read from the module's `moduledata` (`.go.module`, or
/// wherever it lies among `data`, writable sections as `(address, bytes)`):
/// the record whose first two words are the table's address (`pcHeader`)
/// and its function-name table's (`funcnametab`), with `text` its 23rd word
/// and `minpc` (its 21st) no lower. Since go1.26 the table's own
/// `textStart` is always 0, and `runtime.text` is not where `.text` starts
/// when an external linker (cgo) put C code first: offsets counted from
/// `.text` then name and bound every function wrongly. `None` when no such
/// record is found. For a PIE the words are the link-time addresses (the
/// linker writes them in place as well as in the relocations).
pub fn moduledata_text(pclntab_addr: u64, tab: &[u8], data: &[(u64, &[u8])]) -> Option<u64> {
    let u64_at = |b: &[u8], o: usize| b.get(o..o.checked_add(8)?).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let funcname = pclntab_addr.checked_add(u64_at(tab, 32)?)?;
    for (addr, bytes) in data {
        // moduledata is pointer-aligned.
        let skew = (8 - (addr % 8) as usize) % 8;
        let mut o = skew;
        while o + 24 * 8 <= bytes.len() {
            if u64_at(bytes, o) == Some(pclntab_addr) && u64_at(bytes, o + 8) == Some(funcname) {
                let minpc = u64_at(bytes, o + 20 * 8)?;
                let text = u64_at(bytes, o + 22 * 8)?;
                if text != 0 && text <= minpc {
                    return Some(text);
                }
            }
            o += 8;
        }
    }
    None
}

/// Functions `(entry, size, name)` of a Go function table (`.gopclntab`, the
/// layout of go1.18 and later, `runtime/symtab.go`'s pcHeader): `nfunc`
/// entries of `(entryoff u32, funcoff u32)` at `pclnOffset`, each `_func`
/// starting with `entryOff u32, nameOff i32` into `funcnametab`. `text` is
/// `runtime.text` ([`moduledata_text`]), used when the table's `textStart`
/// is 0 (always since go1.26; a PIE's before). `None` when the bytes are
/// not such a table; never panics on malformed input.
pub fn pclntab_functions(tab: &[u8], text: u64) -> Option<Vec<(u64, u64, String)>> {
    let u32_at = |o: usize| tab.get(o..o.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| tab.get(o..o.checked_add(8)?).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let magic = u32_at(0)?;
    if !(magic == 0xffff_fff0 || magic == 0xffff_fff1) || tab.get(7) != Some(&8) {
        return None;
    }
    let nfunc = usize::try_from(u64_at(8)?).ok()?;
    let text_start = match u64_at(24)? {
        0 => text,
        t => t,
    };
    let funcname = usize::try_from(u64_at(32)?).ok()?;
    let pcln = usize::try_from(u64_at(64)?).ok()?;
    // Each entry is 8 bytes: a count the table cannot hold is malformed.
    if nfunc > tab.len() / 8 {
        return None;
    }
    let mut out = Vec::with_capacity(nfunc);
    for i in 0..nfunc {
        let at = pcln.checked_add(8 * i)?;
        let entry = u32_at(at)?;
        let funcoff = u32_at(at + 4)? as usize;
        let next = u32_at(at + 8)?;
        let name_off = u32_at(pcln.checked_add(funcoff)?.checked_add(4)?)? as i32;
        let start = funcname.checked_add(usize::try_from(name_off).ok()?)?;
        let bytes = tab.get(start..)?;
        let name = String::from_utf8_lossy(&bytes[..bytes.iter().position(|&b| b == 0)?]);
        let name = name.strip_suffix(".abi0").unwrap_or(&name).to_owned();
        out.push((text_start.checked_add(u64::from(entry))?, u64::from(next.saturating_sub(entry)), name));
    }
    Some(out)
}
