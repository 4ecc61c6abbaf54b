//! The planner and the audit over small fixtures built here with gcc: one
//! function per site shape (snapshots of the audit table and JSON), the same
//! shapes in an object that is not glibc (rewritten at load time where
//! glibc's would be patched), a raw `syscall` in an ordinary program
//! (rewritten), and the machine's own glibc (every site patched or
//! allowlisted).

use std::path::{Path, PathBuf};
use std::process::Command;

use shunt_glibc_patch::{analyse, audit_file, Image, Plan, Status};

const SHAPES: &str = r#"
    .text
    .macro FN name
    .globl \name
    .type \name,@function
\name:
    .cfi_startproc
    .endm
    .macro END name
    .cfi_endproc
    .size \name, .-\name
    .endm

    FN plain_mov            # mov $nr,%eax; syscall: backward, 7 bytes
    mov $39, %eax
    syscall
    ret
    END plain_mov

    FN short_pred           # the predecessor is 2 bytes: two are displaced
    mov %rdi, %rsi
    xor %eax, %eax
    syscall
    cmp $-4095, %rax
    ret
    END short_pred

    FN rip_rel_before       # RIP-relative before: forward
    mov $1, %eax
    lea msg(%rip), %rsi
    syscall
    cmp $-4096, %rax
    ret
    END rip_rel_before

    FN syscall_is_target    # a branch lands on the syscall: forward
    mov $24, %eax
1:  syscall
    cmp $-4096, %rax
    jae 1b
    ret
    END syscall_is_target

    FN nothing_safe         # a branch before, a branch target after
    test %edi, %edi
    je 2f
    mov %edx, %eax
    syscall
2:  ret
    END nothing_safe

    FN clone_site           # clone: no red zone adjustment
    mov $56, %eax
    syscall
    test %rax, %rax
    ret
    END clone_site

    FN clone_red_zone       # clone in a function that uses the red zone
    mov %rdi, -8(%rsp)
    mov $56, %eax
    syscall
    ret
    END clone_red_zone

    FN restore_rt           # rt_sigreturn: allowlisted
    mov $15, %rax
    syscall
    END restore_rt

    FN flags_live           # a flag of the syscall is read after it
    mov $39, %eax
    syscall
    jb 1f
    ret
1:  ret
    END flags_live

    FN hoisted              # the number comes through another register
    mov $60, %edx
    xor %edi, %edi
    mov %edx, %eax
    syscall
    ret
    END hoisted

    FN int80                # the 32-bit ABI
    mov $20, %eax
    int $0x80
    ret
    END int80

    FN sysenter_site
    sysenter
    ret
    END sysenter_site

    .section .rodata
msg: .ascii "hi"
"#;

fn gcc(dir: &Path, name: &str, src: &str, ext: &str, args: &[&str]) -> PathBuf {
    let s = dir.join(format!("{name}.{ext}"));
    std::fs::write(&s, src).unwrap();
    let out = dir.join(name);
    let o = Command::new("gcc").args(args).arg("-o").arg(&out).arg(&s).output().expect("gcc");
    assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// The shapes as a shared object named like glibc's libc (so the audit
/// reports the planner's verdicts, as for the real one).
fn shapes_as_libc(dir: &Path) -> PathBuf {
    gcc(dir, "libshapes.so", SHAPES, "S", &["-shared", "-nostdlib", "-Wl,-soname,libc.so.6", "-Wl,--build-id=sha1"])
}

fn redact(text: &str, path: &Path, build_id: &str) -> String {
    text.replace(&path.display().to_string(), "[fixture]").replace(build_id, "[build-id]")
}

#[test]
fn audit_of_site_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let so = shapes_as_libc(tmp.path());
    let audit = audit_file(&so).unwrap();
    let id = audit.build_id.clone().unwrap();
    insta::assert_snapshot!("shapes_table", redact(&audit.table(), &so, &id));
    insta::assert_snapshot!("shapes_json", redact(&audit.to_json(), &so, &id));
    assert_eq!(audit.mode, "glibc");
    let status = |sym: &str| audit.sites.iter().find(|s| s.symbol.starts_with(sym)).map(|s| s.status).unwrap();
    assert_eq!(status("plain_mov"), Status::Patched);
    assert_eq!(status("restore_rt"), Status::Allowlisted);
    for s in ["nothing_safe", "clone_red_zone", "flags_live", "int80", "sysenter_site"] {
        assert_eq!(status(s), Status::Uncovered, "{s}");
    }
}

#[test]
fn plan_of_site_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let so = shapes_as_libc(tmp.path());
    let img = Image::load(&so, false).unwrap();
    let a = analyse(&img);
    // The plan file round-trips, and every site's bytes are the file's.
    let text = a.plan.to_text();
    let back = Plan::parse(&text).unwrap();
    assert_eq!(back, a.plan);
    for s in &back.sites {
        assert_eq!(img.read(s.at, s.len).unwrap(), &s.orig[..], "site {:#x}", s.at);
    }
    let id = img.build_id.clone().unwrap();
    insta::assert_snapshot!("shapes_plan", redact(&text, &so, &id));
}

/// Not glibc: the same verdicts, as load-time rewriting (`shunt run`).
#[test]
fn site_shapes_outside_glibc_are_rewritten_or_uncovered() {
    let tmp = tempfile::tempdir().unwrap();
    let so = gcc(tmp.path(), "libshapes.so", SHAPES, "S", &["-shared", "-nostdlib", "-Wl,--build-id=sha1"]);
    let audit = audit_file(&so).unwrap();
    assert_eq!(audit.mode, "elf");
    let status = |sym: &str| audit.sites.iter().find(|s| s.symbol.starts_with(sym)).map(|s| s.status).unwrap();
    for s in ["plain_mov", "short_pred", "rip_rel_before", "syscall_is_target", "clone_site", "hoisted"] {
        assert_eq!(status(s), Status::Rewritten, "{s}: {}", audit.table());
    }
    assert_eq!(status("restore_rt"), Status::Allowlisted);
    for s in ["nothing_safe", "clone_red_zone", "flags_live", "int80", "sysenter_site"] {
        assert_eq!(status(s), Status::Uncovered, "{s}");
    }
    assert_eq!(audit.patched, 0);
    assert_eq!(audit.rewritten, 6, "{}", audit.table());
    assert!(audit.table().contains("rewritten at load time"), "{}", audit.table());
}

#[test]
fn raw_syscall_in_a_program_is_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = gcc(
        tmp.path(),
        "rawcall",
        "int main(void){long r; __asm__ volatile(\"syscall\" : \"=a\"(r) : \"a\"(39L) : \"rcx\", \"r11\", \"memory\"); return r < 0;}\n",
        "c",
        &["-O2"],
    );
    let audit = audit_file(&exe).unwrap();
    assert_eq!(audit.mode, "elf");
    assert!(audit.rewritten >= 1, "{}", audit.table());
    assert!(audit.sites.iter().all(|s| s.status == Status::Rewritten), "{}", audit.table());
    assert!(audit.sites.iter().any(|s| s.symbol.starts_with("main")), "{}", audit.table());
}

/// The machine's glibc: every site is patched, except the justified
/// allowlist (the two `__restore_rt` copies' `rt_sigreturn`).
#[test]
fn machine_glibc_is_covered() {
    for f in shunt_glibc_patch::machine_glibc().unwrap() {
        let audit = audit_file(&f).unwrap();
        assert_eq!(audit.mode, "glibc", "{}", f.display());
        assert!(audit.sites.len() > 10, "{}", audit.table());
        let odd: Vec<_> = audit
            .sites
            .iter()
            .filter(|s| !(s.status == Status::Patched || (s.status == Status::Allowlisted && s.syscall.as_deref() == Some("rt_sigreturn"))))
            .collect();
        assert!(odd.is_empty(), "{}: sites neither patched nor allowlisted rt_sigreturn: {odd:#?}", f.display());
        eprintln!("{}: {} sites, {} patched, {} allowlisted", f.display(), audit.sites.len(), audit.patched, audit.allowlisted);
    }
}

#[test]
fn bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("text");
    std::fs::write(&text, "hello\n").unwrap();
    assert!(matches!(Image::load(&text, false), Err(shunt_glibc_patch::ElfError::NotElf(_))));
    let full = std::fs::read("/bin/true").unwrap();
    let cut = tmp.path().join("cut");
    std::fs::write(&cut, &full[..200]).unwrap();
    assert!(matches!(Image::load(&cut, false), Err(shunt_glibc_patch::ElfError::Malformed(..))));
    let mut e32 = vec![0u8; 52];
    e32[..4].copy_from_slice(b"\x7fELF");
    e32[4] = 1;
    e32[5] = 1;
    let p = tmp.path().join("e32");
    std::fs::write(&p, &e32).unwrap();
    assert!(matches!(Image::load(&p, false), Err(shunt_glibc_patch::ElfError::Elf32(_))));
}

/// Data in `.text` (like OpenSSL's tables in libcrypto) that happens to hold
/// the bytes of `syscall` is not reported as a site; a real one next to it
/// is (and rewritten).
#[test]
fn data_in_text_is_not_code() {
    let tmp = tempfile::tempdir().unwrap();
    let src = r#"
    .text
    .globl real
    .type real,@function
real:
    .cfi_startproc
    mov $39, %eax
    syscall
    ret
    .cfi_endproc
    .size real, .-real
table:
    .byte 0x06, 0x0f, 0x05, 0x07, 0x06, 0xcd, 0x80, 0x07, 0x06, 0x06
"#;
    let so = gcc(tmp.path(), "libdata.so", src, "S", &["-shared", "-nostdlib"]);
    let audit = audit_file(&so).unwrap();
    let real: Vec<_> = audit.sites.iter().filter(|s| s.symbol.starts_with("real")).collect();
    assert_eq!(real.len(), 1, "{}", audit.table());
    assert_eq!(real[0].status, Status::Rewritten, "a raw syscall outside glibc");
    let data: Vec<_> = audit.sites.iter().filter(|s| !s.symbol.starts_with("real")).collect();
    assert!(!data.is_empty(), "{}", audit.table());
    for d in data {
        assert_eq!(d.status, Status::Allowlisted, "{}", audit.table());
        assert!(d.detail.starts_with("not code"), "{}", audit.table());
    }
}
