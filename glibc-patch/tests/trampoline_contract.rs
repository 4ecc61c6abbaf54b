//! The trampoline's invariants, checked by running one: a `syscall` site in a
//! page of its own is patched exactly as the runtime patches glibc
//! (`Site::jump` + `Site::trampoline` calling the real gate), then called
//! from a harness that loads every general register with a pattern and fills
//! the site's red zone with canaries. Afterwards:
//! - rax is the system call's result (getpid, emulated in the gate);
//! - every register but rax, rcx and r11 is unchanged;
//! - rsp is back, and (for `normal` sites) the 128 bytes below the site's rsp
//!   are untouched: the return address went below the red zone.
//!
//! Also checked by decoding: a trampoline is pre ++ lea ++ call ++ lea ++
//! post ++ jmp, and touches no register but rsp (restored) besides the gate's.

use std::arch::global_asm;

use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, Mnemonic, OpAccess, Register};
use shunt_patch::{Code, Kind, Site};

#[repr(C)]
struct Regs([u64; 16]);
/// rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15
const NAMES: [&str; 16] =
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

static mut IN: Regs = Regs([0; 16]);
static mut OUT: Regs = Regs([0; 16]);
static mut RED_ZONE: [u8; 128] = [0; 128];
static mut SITE_FN: u64 = 0;
static mut HOST_RSP: u64 = 0;

global_asm!(
    ".globl tramp_harness",
    "tramp_harness:",
    "push rbx", "push rbp", "push r12", "push r13", "push r14", "push r15",
    "mov [rip + {host}], rsp",
    // Canaries in what will be the site's red zone: [rsp-8-128, rsp-8).
    "lea rdi, [rsp - 136]",
    "mov ecx, 128",
    "mov al, 0xa5",
    "rep stosb",
    "mov rbx, [rip + {inp} + 8*1]",
    "mov rcx, [rip + {inp} + 8*2]",
    "mov rdx, [rip + {inp} + 8*3]",
    "mov rsi, [rip + {inp} + 8*4]",
    "mov rdi, [rip + {inp} + 8*5]",
    "mov rbp, [rip + {inp} + 8*6]",
    "mov r8,  [rip + {inp} + 8*8]",
    "mov r9,  [rip + {inp} + 8*9]",
    "mov r10, [rip + {inp} + 8*10]",
    "mov r11, [rip + {inp} + 8*11]",
    "mov r12, [rip + {inp} + 8*12]",
    "mov r13, [rip + {inp} + 8*13]",
    "mov r14, [rip + {inp} + 8*14]",
    "mov r15, [rip + {inp} + 8*15]",
    "mov rax, [rip + {inp} + 8*0]",
    "call [rip + {site}]",
    "mov [rip + {out} + 8*0], rax",
    "mov [rip + {out} + 8*1], rbx",
    "mov [rip + {out} + 8*2], rcx",
    "mov [rip + {out} + 8*3], rdx",
    "mov [rip + {out} + 8*4], rsi",
    "mov [rip + {out} + 8*5], rdi",
    "mov [rip + {out} + 8*6], rbp",
    "mov [rip + {out} + 8*7], rsp",
    "mov [rip + {out} + 8*8], r8",
    "mov [rip + {out} + 8*9], r9",
    "mov [rip + {out} + 8*10], r10",
    "mov [rip + {out} + 8*11], r11",
    "mov [rip + {out} + 8*12], r12",
    "mov [rip + {out} + 8*13], r13",
    "mov [rip + {out} + 8*14], r14",
    "mov [rip + {out} + 8*15], r15",
    "lea rsi, [rsp - 136]",
    "lea rdi, [rip + {rz}]",
    "mov ecx, 128",
    "rep movsb",
    "mov rsp, [rip + {host}]",
    "pop r15", "pop r14", "pop r13", "pop r12", "pop rbp", "pop rbx",
    "ret",
    host = sym HOST_RSP,
    inp = sym IN,
    out = sym OUT,
    site = sym SITE_FN,
    rz = sym RED_ZONE,
);

extern "C" {
    fn tramp_harness();
}

/// Maps a 2-page RWX area: the site page and the trampoline page.
fn code_pages() -> *mut u8 {
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as *mut u8
}

/// Patches `func` (a function whose body is a site at offset 0 of `site`)
/// like the runtime does, calls it through the harness, and checks.
fn run_site(func: &[u8], site: &Site, rax_in: u64, want_rax: u64) {
    let page = code_pages();
    let base = page as u64;
    unsafe {
        std::ptr::copy_nonoverlapping(func.as_ptr(), page, func.len());
        // The gate slot, then the trampoline, in the second page.
        let slot = base + 4096;
        let gate = shunt_core::gate::gate_address() as u64;
        std::ptr::copy_nonoverlapping(gate.to_le_bytes().as_ptr(), page.add(4096), 8);
        let tramp_at = base + 4096 + 16;
        let t = site.trampoline(tramp_at, slot, base + site.at + site.len as u64).unwrap();
        std::ptr::copy_nonoverlapping(t.as_ptr(), page.add(4096 + 16), t.len());
        let j = site.jump(base + site.at, tramp_at).unwrap();
        assert_eq!(&func[site.at as usize..site.at as usize + site.len], &site.orig[..], "orig bytes");
        std::ptr::copy_nonoverlapping(j.as_ptr(), page.add(site.at as usize), j.len());

        for (i, r) in (*std::ptr::addr_of_mut!(IN)).0.iter_mut().enumerate() {
            *r = 0x1111_0000_0000_0000u64.wrapping_mul(i as u64 + 1).wrapping_add(0x1234_5678);
        }
        (*std::ptr::addr_of_mut!(IN)).0[0] = rax_in;
        SITE_FN = base;
        tramp_harness();
        let inp = &(*std::ptr::addr_of!(IN)).0;
        let out = &(*std::ptr::addr_of!(OUT)).0;
        assert_eq!(out[0], want_rax, "rax");
        for i in 1..16 {
            if matches!(NAMES[i], "rcx" | "r11" | "rsp") {
                continue;
            }
            assert_eq!(out[i], inp[i], "{} changed: {:#x} -> {:#x}", NAMES[i], inp[i], out[i]);
        }
        assert_eq!(out[7], std::ptr::addr_of!(HOST_RSP).read(), "rsp is back");
        if site.kind == Kind::Normal {
            let rz = &*std::ptr::addr_of!(RED_ZONE);
            assert!(rz.iter().all(|&b| b == 0xa5), "the red zone was written: {rz:x?}");
        }
        libc::munmap(page as *mut libc::c_void, 8192);
    }
}

fn site(at: u64, kind: Kind, pre: &[u8], post: &[u8]) -> Site {
    let orig: Vec<u8> = pre.iter().chain(&[0x0f, 0x05]).chain(post).copied().collect();
    Site {
        at,
        len: orig.len(),
        kind,
        orig: Code::new(&orig).unwrap(),
        pre: Code::new(pre).unwrap(),
        post: Code::new(post).unwrap(),
        nr: None,
    }
}

#[test]
fn trampolines_keep_the_syscall_contract() {
    shunt_install::install(shunt_install::Options::default()).expect("install the runtime");
    let pid = std::process::id() as u64;

    // backward: mov $39,%eax; syscall | ret
    let f = [0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xc3];
    run_site(&f, &site(0, Kind::Normal, &f[..5], &[]), 0, pid);
    // the same through a no_red_zone trampoline
    run_site(&f, &site(0, Kind::NoRedZone, &f[..5], &[]), 0, pid);
    // forward: mov $39,%eax | syscall; cmp $-0x1000,%rax | ret  (flags are rewritten by cmp)
    let f = [0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff, 0xc3];
    run_site(&f, &site(5, Kind::Normal, &[], &f[7..13]), 0, pid);
    // both sides: mov %eax,%eax (2 B) | syscall | nop (1 B), rax = 39 on entry
    let f = [0x89, 0xc0, 0x0f, 0x05, 0x90, 0xc3];
    run_site(&f, &site(0, Kind::Normal, &[0x89, 0xc0], &[0x90]), 39, pid);
    // a passthrough call: getppid
    let f = [0xb8, 110, 0, 0, 0, 0x0f, 0x05, 0xc3];
    run_site(&f, &site(0, Kind::Normal, &f[..5], &[]), 0, unsafe { libc::getppid() } as u64);
}

#[test]
fn trampoline_shape() {
    let s = site(0x1000, Kind::Normal, &[0xb8, 1, 0, 0, 0], &[0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff]);
    let here = 0x7000_0000u64;
    let t = s.trampoline(here, here - 16, 0x1000 + s.len as u64).unwrap();
    let mut d = Decoder::with_ip(64, &t, here, DecoderOptions::NONE);
    let insns: Vec<_> = d.iter().collect();
    let m: Vec<Mnemonic> = insns.iter().map(|i| i.mnemonic()).collect();
    assert_eq!(m, [Mnemonic::Mov, Mnemonic::Lea, Mnemonic::Call, Mnemonic::Lea, Mnemonic::Cmp, Mnemonic::Jmp]);
    assert_eq!(insns[2].ip_rel_memory_address(), here - 16, "call *slot(%rip)");
    assert_eq!(insns[5].near_branch_target(), 0x1000 + s.len as u64, "jmp back");
    assert_eq!(insns[1].memory_displacement64() as i64, -128);
    assert_eq!(insns[3].memory_displacement64() as i64, 128);
    // What the added instructions write: rsp only (lea, lea), and call/jmp.
    let mut info = InstructionInfoFactory::new();
    for i in [&insns[1], &insns[3]] {
        let written: Vec<Register> = info
            .info(i)
            .used_registers()
            .iter()
            .filter(|u| !matches!(u.access(), OpAccess::Read | OpAccess::CondRead))
            .map(|u| u.register())
            .collect();
        assert_eq!(written, [Register::RSP]);
        assert_eq!(i.rflags_modified(), 0, "lea leaves the flags");
    }
    // no_red_zone: no lea at all.
    let s = site(0, Kind::NoRedZone, &[0xb8, 56, 0, 0, 0], &[]);
    let t = s.trampoline(here, here - 16, 7).unwrap();
    let m: Vec<Mnemonic> = Decoder::with_ip(64, &t, here, DecoderOptions::NONE).iter().map(|i| i.mnemonic()).collect();
    assert_eq!(m, [Mnemonic::Mov, Mnemonic::Call, Mnemonic::Jmp]);
    // The jump at the site: jmp rel32 + int3 padding.
    let j = s.jump(0x1000, 0x2000).unwrap();
    let mut d = Decoder::with_ip(64, &j, 0x1000, DecoderOptions::NONE);
    let first = d.decode();
    assert_eq!((first.mnemonic(), first.near_branch_target(), first.len()), (Mnemonic::Jmp, 0x2000, 5));
    assert!(j[5..].iter().all(|&b| b == 0xcc));
}
