//! Hostile and mistaken input found by trying shunt as a new user would:
//! FIFOs and devices where a file is expected, ELF files that
//! crashed the auditor, the loader or every program under shunt, stack
//! files that deleted the stack, a corrupt bundle manifest. Each case
//! failed (hung, crashed or destroyed files) before its fix.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

const LIMIT: Duration = Duration::from_secs(60);

fn shunt_cmd(args: &[&str]) -> Outcome {
    let mut cmd = Command::new(shunt());
    cmd.args(args);
    run(cmd, None, LIMIT)
}

/// `args` fails at once with one line on stderr that says `expect`.
fn refused(args: &[&str], expect: &str) {
    let o = shunt_cmd(args);
    let err = o.stderr_str();
    assert!(!o.status.success(), "{args:?} should fail: {err}");
    assert!(o.status.code().is_some(), "{args:?}: died of {:?}: {err}", o.status);
    assert_eq!(err.lines().count(), 1, "{args:?}: one line expected, got:\n{err}");
    assert!(err.contains(expect), "{args:?}: {err:?} should mention {expect:?}");
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Compiles `source` (name, text) in `dir` into `out` with gcc `args`.
fn gcc(dir: &Path, out: &str, args: &[&str], source: (&str, &str)) -> PathBuf {
    std::fs::write(dir.join(source.0), source.1).unwrap();
    let out = dir.join(out);
    let mut c = Command::new("gcc");
    c.current_dir(dir).args(args).arg("-o").arg(&out).arg(source.0);
    let o = run(c, None, LIMIT);
    assert!(o.status.success(), "gcc {args:?}: {}", o.stderr_str());
    out
}

/// A FIFO or `/dev/zero` where a file is read: refused at once (before: a
/// FIFO blocked forever, `/dev/zero` was read until memory ran out).
#[test]
fn fifos_and_devices_are_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    let plans = dir.path().join("plans");
    let plans = plans.to_str().unwrap();
    for (input, says) in [(fifo, "is a FIFO, not a regular file"), ("/dev/zero", "is a character device, not a regular file")] {
        refused(&["audit", input], says);
        refused(&["glibc", "plan", "--dir", plans, input], says);
        refused(&["stats", input], says);
        refused(&["run", "--policy", input, "--", "true"], says);
        refused(&["load", "--argv0", "x", "--", input], says);
    }
}

/// A file that starts like an ELF but is too short to say its class is
/// malformed, not "a 32-bit ELF".
#[test]
fn a_four_byte_elf_is_not_called_32_bit() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("four");
    std::fs::write(&f, b"\x7fELF").unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let f = f.to_str().unwrap();
    for args in [&["run", "--", f][..], &["load", "--argv0", "four", "--", f], &["audit", f]] {
        let o = shunt_cmd(args);
        let err = o.stderr_str();
        assert!(!o.status.success() && !err.contains("32-bit") && err.contains("malformed"), "{args:?}: {err}");
    }
}

/// A huge unknown syscall name in a policy is refused at once, shown short
/// (before: 17 s for 100 KB, the whole name echoed).
#[test]
fn a_huge_syscall_name_is_refused_short() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(&p, format!("[syscalls]\n{} = \"deny\"\n", "y".repeat(500_000))).unwrap();
    let o = shunt_cmd(&["run", "--policy", p.to_str().unwrap(), "--", "true"]);
    let err = o.stderr_str();
    assert!(!o.status.success() && err.contains("unknown system call") && err.len() < 400, "{err}");
}

// ------------------------------------------------------------ ELF files

fn u16_at(d: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(d[o..o + 2].try_into().unwrap())
}
fn u32_at(d: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(d[o..o + 4].try_into().unwrap())
}
fn u64_at(d: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(d[o..o + 8].try_into().unwrap())
}
fn put_u64(d: &mut [u8], o: usize, v: u64) {
    d[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// File offsets of the program headers of type `ty`.
fn phdrs_of(d: &[u8], ty: u32) -> Vec<usize> {
    let (off, size, n) = (u64_at(d, 0x20) as usize, u16_at(d, 0x36) as usize, u16_at(d, 0x38) as usize);
    (0..n).map(|i| off + i * size).filter(|&p| u32_at(d, p) == ty).collect()
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_NOTE: u32 = 4;

/// A static PIE whose only relocations are R_X86_64_RELATIVE (a pointer
/// table), exiting 0 once relocated.
const PIE_C: &str = r#"
static long sys(long n, long a) { long r; __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a) : "rcx", "r11", "memory"); return r; }
const char *volatile table[] = { "one", "two" };
void _start(void) { sys(60, table[1][0] == 't' ? 0 : 1); for (;;) {} }
"#;

const NOSTD: &[&str] = &["-Os", "-nostdlib", "-fno-asynchronous-unwind-tables", "-Wl,-z,max-page-size=4096", "-Wl,-z,noseparate-code"];

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    NOSTD.iter().copied().chain(extra.iter().copied()).collect()
}

/// The loader refuses relocations outside the image and segments that wrap
/// around the address space (before: it wrote the relocation wherever it
/// pointed and died of SIGSEGV, without a word).
#[test]
fn the_loader_refuses_wild_relocations_and_wrapping_segments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pie = gcc(d, "pie", &with(&["-static-pie", "-fPIE"]), ("pie.c", PIE_C));
    let pie_s = pie.to_str().unwrap();
    let ok = shunt_cmd(&["run", "--", pie_s]);
    assert!(ok.status.success(), "the PIE runs relocated under shunt: {}", ok.stderr_str());

    let data = std::fs::read(&pie).unwrap();
    // DT_RELA's address, then its first entry's r_offset.
    let dynamic = phdrs_of(&data, PT_DYNAMIC)[0];
    let (dyn_off, dyn_size) = (u64_at(&data, dynamic + 8) as usize, u64_at(&data, dynamic + 32) as usize);
    let rela = (0..dyn_size / 16)
        .map(|i| dyn_off + i * 16)
        .find(|&e| u64_at(&data, e) == 7 /* DT_RELA */)
        .map(|e| u64_at(&data, e + 8))
        .expect("DT_RELA");
    let rela_off = phdrs_of(&data, PT_LOAD)
        .into_iter()
        .find(|&p| rela >= u64_at(&data, p + 16) && rela < u64_at(&data, p + 16) + u64_at(&data, p + 32))
        .map(|p| (rela - u64_at(&data, p + 16) + u64_at(&data, p + 8)) as usize)
        .expect("the relocation table in a segment");
    for wild in [0x7fff_0000_0000u64, u64::MAX - 3] {
        let mut bad = data.clone();
        put_u64(&mut bad, rela_off, wild);
        let f = d.join("wild-reloc");
        std::fs::write(&f, &bad).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        refused(&["run", "--", f.to_str().unwrap()], "lies outside the image's segments");
    }

    let mut bad = data.clone();
    let first_load = phdrs_of(&data, PT_LOAD)[0];
    put_u64(&mut bad, first_load + 16, 0xffff_ffff_ffff_f000 + (u64_at(&data, first_load + 8) % 4096));
    let f = d.join("wrapping");
    std::fs::write(&f, &bad).unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    refused(&["run", "--", f.to_str().unwrap()], "lies outside user memory");
}

/// A library of three raw syscall wrappers.
const LIB_C: &str = r#"
long lib_getpid(void) { long r; __asm__ volatile("mov $39, %%eax\n\tsyscall" : "=a"(r) :: "rcx", "r11", "memory"); return r; }
"#;

/// A GNU build-id note with an empty id: `shunt audit` and `shunt glibc
/// plan` handle it as no build-id (before: `shunt audit` panicked on it).
#[test]
fn an_empty_build_id_is_no_build_id() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("note.s"),
        ".section .note.gnu.build-id,\"a\",@note\n.p2align 2\n.long 4\n.long 0\n.long 3\n.asciz \"GNU\"\n",
    )
    .unwrap();
    let mut args = with(&["-shared", "-fPIC", "-Wl,--build-id=none"]);
    args.push("note.s");
    let lib = gcc(d, "libempty.so", &args, ("lib.c", LIB_C));
    let lib = lib.to_str().unwrap();
    let o = shunt_cmd(&["audit", lib]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "shunt audit: {:?}\n{}", o.status, o.stderr_str());
    assert!(o.stdout_str().contains("uncovered"), "{}", o.stdout_str());
    let plans = d.join("plans");
    let o = shunt_cmd(&["glibc", "plan", "--dir", plans.to_str().unwrap(), lib]);
    assert!(o.status.success(), "shunt glibc plan: {}", o.stderr_str());
    let names: Vec<String> = std::fs::read_dir(&plans).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.len() == 1 && names[0].starts_with("sha256-"), "keyed by content without a build-id: {names:?}");
}

/// A shared library whose PT_NOTE points at memory no segment maps: the
/// kernel and ld.so never read it, so programs linking it run natively —
/// and under shunt too (before: libshunt.so read the note and every such
/// program died of SIGSEGV).
#[test]
fn a_library_with_a_wild_note_runs_under_shunt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lib = gcc(d, "libwild.so", &["-O2", "-shared", "-fPIC", "-Wl,--build-id"], ("wild.c", "int wild_answer(void) { return 42; }\n"));
    let mut data = std::fs::read(&lib).unwrap();
    let note = *phdrs_of(&data, PT_NOTE).first().expect("a PT_NOTE");
    put_u64(&mut data, note + 16, 0x5000_0000_0000);
    std::fs::write(&lib, &data).unwrap();
    let main = d.join("main.c");
    std::fs::write(&main, "#include <stdio.h>\nint wild_answer(void);\nint main(void) { printf(\"%d\\n\", wild_answer()); return 0; }\n").unwrap();
    let prog = d.join("prog");
    let o = run(
        {
            let mut c = Command::new("gcc");
            c.arg("-o").arg(&prog).arg(&main).arg(format!("-L{}", d.display())).arg("-lwild").arg(format!("-Wl,-rpath,{}", d.display()));
            c
        },
        None,
        LIMIT,
    );
    assert!(o.status.success(), "gcc: {}", o.stderr_str());
    let p = prog.to_str().unwrap();
    // The glibc plans exist before the compared run (the first run that
    // makes them says so on stderr).
    let (warm, _) = under_shunt(&["true"], None, &[]);
    assert!(warm.status.success(), "{}", warm.stderr_str());
    let n = native(&[p], None);
    assert!(n.status.success() && n.stdout_str() == "42\n", "natively: {n:?}");
    let (s, _) = under_shunt(&[p], None, &[]);
    assert_same("a program linking a library with a wild PT_NOTE", &n, &s);
}

// --------------------------------------------------------- stack files

const STACK_DIR_FILES: [&str; 3] = ["stack.yml", "fn1/handler.go", "template/x/template.yml"];

fn stack_with(dir: &Path, functions: &str) -> PathBuf {
    for f in STACK_DIR_FILES {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "keep\n").unwrap();
    }
    let stack = dir.join("stack.yml");
    std::fs::write(&stack, format!("version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n{functions}")).unwrap();
    std::fs::create_dir_all(dir.join("build/keep")).unwrap();
    stack
}

/// Function keys and handlers that are not names inside the stack are
/// refused before a file is touched (before: `..` deleted the stack
/// directory, `../../x` deleted `x` outside, an absolute key that
/// directory, `""` and `.` emptied `build/`; a handler of `..` copied the
/// directory into itself until the path was too long).
#[test]
fn stack_keys_and_handlers_must_be_names_inside_the_stack() {
    let outer = tempfile::tempdir().unwrap();
    let victim = outer.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), "data").unwrap();
    let dir = outer.path().join("a/b/stack");
    let cases = [
        ("  ..:\n    lang: x\n    handler: ./fn1\n", "function"),
        ("  ../../../victim:\n    lang: x\n    handler: ./fn1\n", "function"),
        (&format!("  {}:\n    lang: x\n    handler: ./fn1\n", victim.display()), "function"),
        ("  \"\":\n    lang: x\n    handler: ./fn1\n", "function"),
        ("  .:\n    lang: x\n    handler: ./fn1\n", "function"),
        ("  Fn:\n    lang: x\n    handler: ./fn1\n", "function"),
        ("  fn1:\n    lang: x\n    handler: ..\n", "leaves the stack's directory"),
        ("  fn1:\n    lang: x\n    handler: /etc\n", "is absolute"),
        ("  fn1:\n    lang: ../../x\n    handler: ./fn1\n", "is not a template name"),
    ];
    for (functions, says) in cases {
        let stack = stack_with(&dir, functions);
        let o = shunt_cmd(&["faas", "build", "-f", stack.to_str().unwrap()]);
        let err = o.stderr_str();
        assert!(!o.status.success() && err.contains(says), "{functions:?}: {err}");
        for f in STACK_DIR_FILES {
            assert!(dir.join(f).is_file(), "{functions:?}: {f} was deleted");
        }
        assert!(dir.join("build/keep").is_dir(), "{functions:?}: build/ was emptied");
        assert!(victim.join("precious").is_file(), "{functions:?}: a file outside the stack was deleted");
    }
}

/// 100,000 nested `[` are refused before the YAML parser sees them
/// (before: 24 s, quadratic in the depth).
#[test]
fn deeply_nested_stack_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack.yml");
    std::fs::write(&stack, format!("functions: {}", "[".repeat(100_000))).unwrap();
    refused(&["faas", "build", "-f", stack.to_str().unwrap()], "nest more than 64 levels");
}

/// A corrupt bundle manifest stops the build (before: it was read as empty,
/// and the build rewrote it with only the functions it built).
#[test]
fn a_corrupt_bundle_manifest_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack_with(dir.path(), "  fn1:\n    lang: x\n    handler: ./fn1\n");
    let manifest = dir.path().join("build/.shunt/bundles.json");
    std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    std::fs::write(&manifest, "[{\"name\": \"other\", trunc").unwrap();
    let o = shunt_cmd(&["faas", "build", "-f", stack.to_str().unwrap()]);
    assert!(!o.status.success() && o.stderr_str().contains("not a bundle manifest"), "{}", o.stderr_str());
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), "[{\"name\": \"other\", trunc");
}

// ------------------------------------------------- stand-alone stats

/// A program built by `shunt cc` and run with `SHUNT_STATS` naming a file
/// in a directory that does not exist: its output and exit status are its
/// own, one line says no report was written (before: every exit became
/// SIGABRT, after the program's work was done). A good path still gets
/// the report.
#[test]
fn a_bad_stats_directory_does_not_abort_a_standalone_program() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.c"), "#include <stdio.h>\nint main(void) { puts(\"done\"); return 3; }\n").unwrap();
    let prog = d.join("p");
    let o = shunt_cmd(&["cc", "-o", prog.to_str().unwrap(), d.join("p.c").to_str().unwrap()]);
    assert!(o.status.success(), "shunt cc: {}", o.stderr_str());
    let bad = d.join("missing/dir/stats.json");
    let mut c = Command::new(&prog);
    c.env("SHUNT_STATS", &bad);
    let o = run(c, None, LIMIT);
    assert_eq!(o.status.code(), Some(3), "the program's own exit status: {:?}; stderr: {}", o.status, o.stderr_str());
    assert_eq!(o.stdout_str(), "done\n");
    let err = o.stderr_str();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("no report written") && err.contains("stats.json"), "{err}");
    assert!(!d.join("missing").exists());

    let good = d.join("stats.json");
    let mut c = Command::new(&prog);
    c.env("SHUNT_STATS", &good);
    let o = run(c, None, LIMIT);
    assert_eq!(o.status.code(), Some(3), "{}", o.stderr_str());
    assert_eq!(o.stderr_str(), "");
    let stats = Stats::parse(&std::fs::read_to_string(&good).unwrap());
    assert_eq!(stats.get("write", "redirected"), 1, "puts wrote once, through patched glibc: {}", stats.0);
}
