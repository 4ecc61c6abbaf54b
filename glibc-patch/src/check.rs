//! An independent check of a plan against the image it was made from: what
//! the tests and the fuzz target assert about every plan the planner makes.
//!
//! It shares no code with the planner's run selection. For every site:
//!
//! 1. the plan's bytes are the image's bytes (`orig`), and the site is
//!    structurally sound ([`Site::check`]);
//! 2. a fresh linear decoding of the site's section, from the section start,
//!    has an instruction boundary at the site's first and last byte + 1, and
//!    the run is exactly `pre` instructions, one `syscall`, `post`
//!    instructions: none of them a branch, a system call, an interrupt or a
//!    RIP-relative access (such an instruction would mean something else
//!    once moved to the trampoline);
//! 3. no direct branch or call of that decoding lands strictly inside the
//!    run, and no call returns into it;
//! 4. sites do not overlap, and applying every jump to a copy of the text
//!    changes bytes inside runs only;
//! 5. each trampoline, written for a sample address, decodes back to the
//!    displaced instructions followed by the gate call (or tail jump).
//!
//! So a plan never changes a byte that is not part of a whole instruction
//! the planner decoded, and never a run a branch can enter in the middle.

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction};
use shunt_patch::{Kind, Plan, Site};

use crate::elf::Image;

/// Checks `plan` against `img` (see the module docs). The error names the
/// first site that fails and why.
pub fn check_plan(img: &Image, plan: &Plan) -> Result<(), String> {
    let mut sites: Vec<&Site> = plan.sites.iter().collect();
    sites.sort_by_key(|s| s.at);
    for w in sites.windows(2) {
        if w[0].at + w[0].len as u64 > w[1].at {
            return Err(format!("sites {:#x} and {:#x} overlap", w[0].at, w[1].at));
        }
    }
    for (si, sec) in img.code.iter().enumerate() {
        let end = sec.addr + sec.bytes.len() as u64;
        let in_sec: Vec<&Site> = sites.iter().copied().filter(|s| s.at >= sec.addr && s.at < end).collect();
        if in_sec.is_empty() {
            continue;
        }
        let insns = linear(&sec.bytes, sec.addr);
        let starts: Vec<u64> = insns.iter().map(Instruction::ip).collect();
        let mut entries: Vec<u64> = Vec::new();
        for i in &insns {
            if matches!(
                i.flow_control(),
                FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
            ) && i.is_jmp_short_or_near() | i.is_jcc_short_or_near() | i.is_call_near()
            {
                entries.push(i.near_branch_target());
            }
            if i.is_call_near() || i.is_call_near_indirect() {
                entries.push(i.next_ip());
            }
        }
        entries.sort_unstable();
        let mut text = sec.bytes.clone();
        for s in in_sec {
            check_site(s, sec.addr, &sec.bytes, &insns, &starts, &entries).map_err(|e| format!("site {:#x}: {e}", s.at))?;
            let j = s.jump(s.at, near(s.at, 0x1000)).ok_or_else(|| format!("site {:#x}: no jump", s.at))?;
            let off = (s.at - sec.addr) as usize;
            text[off..off + j.len()].copy_from_slice(&j);
            check_trampoline(s).map_err(|e| format!("site {:#x}: {e}", s.at))?;
        }
        // Every changed byte lies in a run.
        for (k, (a, b)) in sec.bytes.iter().zip(&text).enumerate() {
            let at = sec.addr + k as u64;
            if a != b && !sites.iter().any(|s| at >= s.at && at < s.at + s.len as u64) {
                return Err(format!("byte {at:#x} of section {si} changes outside every run"));
            }
        }
    }
    for s in &sites {
        if !img.code.iter().any(|c| s.at >= c.addr && s.at + s.len as u64 <= c.addr + c.bytes.len() as u64) {
            return Err(format!("site {:#x} is not inside one executable section", s.at));
        }
    }
    Ok(())
}

/// The section decoded from its start, an undecodable byte skipped alone
/// (objdump's "(bad)"), as the planner's own linear decoding does: with
/// iced's longer invalid instructions the two decodings could fall out of
/// step after one, and a run the planner checked against its decoding
/// would look misaligned here (found by the `planner_code` fuzz target).
fn linear(bytes: &[u8], addr: u64) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let ip = d.ip();
        let mut ins = d.decode();
        if ins.code() == Code::INVALID && ins.len() > 1 {
            ins.set_len(1);
            ins.set_next_ip(ip + 1);
            if d.set_position((ip + 1 - addr) as usize).is_err() {
                break;
            }
            d.set_ip(ip + 1);
        }
        out.push(ins);
    }
    out
}

fn check_site(
    s: &Site,
    base: u64,
    bytes: &[u8],
    insns: &[Instruction],
    starts: &[u64],
    entries: &[u64],
) -> Result<(), String> {
    s.check()?;
    let off = (s.at - base) as usize;
    let here = bytes.get(off..off + s.len).ok_or("outside its section")?;
    if here != &s.orig[..] {
        return Err("the plan's original bytes are not the image's".into());
    }
    let end = s.at + s.len as u64;
    let first = starts.binary_search(&s.at).map_err(|_| "does not start on an instruction boundary")?;
    if starts.binary_search(&end).is_err() && end != base + bytes.len() as u64 {
        return Err("does not end on an instruction boundary".into());
    }
    let run: Vec<&Instruction> = insns[first..].iter().take_while(|i| i.ip() < end).collect();
    let syscall_at = s.syscall_at();
    let mut syscalls = 0;
    for i in &run {
        if i.ip() == syscall_at {
            if i.code() != Code::Syscall {
                return Err("no syscall where the plan says".into());
            }
            syscalls += 1;
            continue;
        }
        if i.code() == Code::INVALID || i.flow_control() != FlowControl::Next || i.is_ip_rel_memory_operand() {
            return Err(format!("displaces {:?} at {:#x}", i.code(), i.ip()));
        }
    }
    if syscalls != 1 {
        return Err("the run's instructions do not line up with its syscall".into());
    }
    let lo = entries.partition_point(|&e| e <= s.at);
    if entries.get(lo).is_some_and(|&e| e < end) {
        return Err(format!("a branch lands inside the run at {:#x}", entries[lo]));
    }
    Ok(())
}

/// A sample address `dist` bytes above `at`, or below it when a section
/// ends at the top of the address space (the ELF parser only refuses a
/// section that wraps; found by the `glibc_plan` fuzz target). Either way
/// the distance, which is what the rel32 encodings depend on, is `dist`.
fn near(at: u64, dist: u64) -> u64 {
    // 64 KiB of headroom covers a trampoline's own length above `here`.
    match at.checked_add(dist + 0x1_0000) {
        Some(_) => at + dist,
        None => at - dist,
    }
}

fn check_trampoline(s: &Site) -> Result<(), String> {
    // Sample addresses: the trampoline 1 MiB from the site, the gate slot
    // just before it.
    let here = near(s.at, 1 << 20);
    let slot = here - 16;
    let t = s.trampoline(here, slot, s.at + s.len as u64).ok_or("trampoline out of reach")?;
    let insns = linear(&t, here);
    let mut k = 0;
    let mut next = |what: &str| -> Result<Instruction, String> {
        let i = *insns.get(k).ok_or_else(|| format!("trampoline ends before {what}"))?;
        k += 1;
        Ok(i)
    };
    let mut off = 0;
    while off < s.pre.len() {
        off += next("the displaced instructions")?.len();
    }
    if off != s.pre.len() {
        return Err("the trampoline's copy of pre decodes differently".into());
    }
    match s.kind {
        Kind::Tail => {
            let j = next("the tail jump")?;
            if j.code() != Code::Jmp_rm64 || !j.is_ip_rel_memory_operand() || j.ip_rel_memory_address() != slot {
                return Err("a tail trampoline does not end with jmp *slot(%rip)".into());
            }
            if k != insns.len() {
                return Err("bytes after the tail jump".into());
            }
        }
        Kind::Normal | Kind::NoRedZone => {
            if s.kind == Kind::Normal {
                next("lea -128(%rsp)")?;
            }
            let c = next("the gate call")?;
            if c.code() != Code::Call_rm64 || c.ip_rel_memory_address() != slot {
                return Err("no call *slot(%rip)".into());
            }
            if s.kind == Kind::Normal {
                next("lea 128(%rsp)")?;
            }
            let mut off = 0;
            while off < s.post.len() {
                off += next("post")?.len();
            }
            let j = next("the jump back")?;
            if j.code() != Code::Jmp_rel32_64 || j.near_branch_target() != s.at + s.len as u64 {
                return Err("the trampoline does not jump back to the end of the run".into());
            }
        }
    }
    Ok(())
}
