//! The planner on images shunt did not build: small shapes assembled here
//! (fed as bare code), and real binaries of each kind — plain `go build`
//! (fixed address, stripped, PIE), musl (`musl-gcc -static`), static glibc
//! (busybox) — each plan checked by the independent checker
//! (`shunt_glibc_patch::check_plan`).

use std::path::{Path, PathBuf};
use std::process::Command;

use shunt_glibc_patch::planner::Verdict;
use shunt_glibc_patch::{analyse, check_plan, Analysis, Flavour, Image};
use shunt_patch::{Kind, LeftStatus};

/// Assembles `body` (GNU syntax) and returns its `.text` bytes.
fn assemble(body: &str) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let (s, o, b) = (tmp.path().join("x.s"), tmp.path().join("x.o"), tmp.path().join("x.bin"));
    std::fs::write(&s, format!(".text\n{body}\n")).unwrap();
    let ok = Command::new("gcc").arg("-c").arg("-o").arg(&o).arg(&s).status().unwrap().success();
    assert!(ok, "gcc -c failed on:\n{body}");
    let ok = Command::new("objcopy").args(["-O", "binary", "--only-section=.text"]).arg(&o).arg(&b).status().unwrap().success();
    assert!(ok);
    std::fs::read(&b).unwrap()
}

fn plan_code(body: &str, flavour: Flavour) -> (Image, Analysis) {
    let img = Image::from_code(0x1000, assemble(body), flavour);
    let a = analyse(&img);
    check_plan(&img, &a.plan).unwrap_or_else(|e| panic!("{e}\n{body}"));
    (img, a)
}

/// `(nr, kind)` of each patched site, `None` kind for a site left alone.
fn verdicts(a: &Analysis) -> Vec<(Option<u32>, Option<Kind>)> {
    a.found
        .iter()
        .map(|f| match &f.verdict {
            Verdict::Patch { site, .. } => (f.nr, Some(site.kind)),
            Verdict::Leave(_) => (f.nr, None),
        })
        .collect()
}

#[test]
fn number_built_from_partial_writes_is_traced() {
    // musl's __clone: the number is `xor %eax,%eax; mov $56,%al`, and the
    // child continues on the new stack: no red-zone skip may follow.
    let (_, a) = plan_code(
        "xor %eax,%eax\n mov $56,%al\n mov %rdi,%r11\n mov %rdx,%rdi\n and $-16,%rsi\n sub $8,%rsi\n\
         mov %rcx,(%rsi)\n syscall\n test %eax,%eax\n jnz 1f\n xor %ebp,%ebp\n call *%r9\n\
         mov %eax,%edi\n xor %eax,%eax\n mov $60,%al\n syscall\n hlt\n1: ret",
        Flavour::C,
    );
    assert_eq!(verdicts(&a), [(Some(56), Some(Kind::NoRedZone)), (Some(60), Some(Kind::Tail))]);
}

#[test]
fn number_through_a_32_bit_copy_is_traced() {
    let (_, a) = plan_code("mov $0x100000027,%rdx\n mov %edx,%eax\n syscall\n ret", Flavour::C);
    assert_eq!(verdicts(&a), [(Some(39), Some(Kind::Normal))]);
    // A partial write over an unknown upper part is not a number.
    let (_, a) = plan_code("mov $39,%al\n syscall\n ret", Flavour::C);
    assert_eq!(a.found[0].nr, None);
}

#[test]
fn unmapping_the_own_stack_stays_a_syscall() {
    // musl's __unmapself: munmap(stack), then exit without touching it.
    let (_, a) = plan_code("mov $11,%eax\n syscall\n xor %rdi,%rdi\n mov $60,%eax\n syscall", Flavour::C);
    assert_eq!(verdicts(&a), [(Some(11), None), (Some(60), Some(Kind::Tail))]);
    let Verdict::Leave(l) = &a.found[0].verdict else { unreachable!() };
    assert_eq!(l.status, LeftStatus::Uncovered);
    assert!(l.reason.contains("unmaps its own stack"), "{}", l.reason);
    // An ordinary munmap is an ordinary site.
    let (_, a) = plan_code("mov $11,%eax\n syscall\n ret", Flavour::C);
    assert_eq!(verdicts(&a), [(Some(11), Some(Kind::Normal))]);
}

#[test]
fn exit_loop_is_a_tail_site() {
    // Go's `runtime.clone` child: `exit(111)` in a loop; the loop reads no
    // flags, and the site never returns anyway.
    let (_, a) = plan_code("1: mov $111,%edi\n mov $60,%eax\n syscall\n jmp 1b", Flavour::Go);
    assert_eq!(verdicts(&a), [(Some(60), Some(Kind::Tail))]);
}

#[test]
fn go_sites_push_only_a_return_address() {
    let (_, a) = plan_code(
        "mov 8(%rsp),%edi\n mov $3,%eax\n syscall\n mov %eax,16(%rsp)\n ret\n\
         mov $56,%eax\n syscall\n ret\n\
         mov $15,%eax\n syscall\n int3",
        Flavour::Go,
    );
    assert_eq!(
        verdicts(&a),
        [(Some(3), Some(Kind::NoRedZone)), (Some(56), Some(Kind::NoRedZone)), (Some(15), None)]
    );
    // Data kept below rsp would be overwritten by the return address: such a
    // Go function is left alone (bare code: the whole text is one function).
    let (_, a) = plan_code("mov %rdi,-8(%rsp)\n mov $39,%eax\n syscall\n ret", Flavour::Go);
    assert_eq!(verdicts(&a), [(Some(39), None)]);
}

#[test]
fn flags_read_after_the_syscall_are_refused() {
    let (_, a) = plan_code("mov $39,%eax\n syscall\n jc 1f\n ret\n1: ud2", Flavour::C);
    assert_eq!(verdicts(&a), [(Some(39), None)]);
}

/// A small deterministic generator (xorshift): arbitrary text in which
/// `syscall` bytes are frequent. The fuzz target (`glibc-patch/fuzz`) does
/// the same without bounds; this keeps a bounded share in every test run.
#[test]
fn arbitrary_text_gives_checked_plans() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Pieces real code is made of, so that runs are found often.
    let pieces: [&[u8]; 8] = [
        &[0x0f, 0x05],
        &[0xb8, 0x27, 0, 0, 0],
        &[0x48, 0x89, 0xdf],
        &[0xc3],
        &[0x74, 0x02],
        &[0xe8, 0, 0, 0, 0],
        &[0x48, 0x8d, 0x05, 0x10, 0, 0, 0],
        &[0x31, 0xc0],
    ];
    let mut patched = 0;
    for round in 0..3000 {
        let mut code = Vec::new();
        while code.len() < 96 {
            let r = next();
            if r % 3 == 0 {
                code.push((r >> 8) as u8);
            } else {
                code.extend_from_slice(pieces[(r >> 8) as usize % pieces.len()]);
            }
        }
        let flavour = if round % 2 == 0 { Flavour::C } else { Flavour::Go };
        let img = Image::from_code(0x40_0000, code.clone(), flavour);
        let a = analyse(&img);
        check_plan(&img, &a.plan).unwrap_or_else(|e| panic!("{e}: {code:02x?}"));
        patched += a.plan.sites.len();
    }
    assert!(patched > 500, "the generator should exercise the patch path ({patched} sites)");
}

// ---------------------------------------------------------------- real binaries

fn go_build(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("go.mod"), "module hello\ngo 1.25\n").unwrap();
    std::fs::write(
        src.join("main.go"),
        "package main\nimport (\"fmt\"; \"os/exec\")\nfunc main() { go fmt.Println(\"x\"); _ = exec.Command(\"true\").Run() }\n",
    )
    .unwrap();
    let out = dir.join(name);
    let o = Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=mod")
        .output()
        .expect("go is installed (scripts/setup.sh)");
    assert!(o.status.success(), "go build: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn plan_file(path: &Path) -> (Image, Analysis) {
    let img = Image::load(path, false).unwrap();
    let a = analyse(&img);
    check_plan(&img, &a.plan).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img, a)
}

fn site_of<'a>(a: &'a Analysis, function: &str) -> Vec<&'a shunt_glibc_patch::planner::Found> {
    a.found.iter().filter(|f| f.symbol.split("+0x").next().map(|s| s.trim_end_matches(".abi0")) == Some(function)).collect()
}

#[test]
fn plain_go_binaries_are_planned_whole() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, flags) in [("fixed", &[][..]), ("stripped", &["-ldflags=-s -w"][..]), ("pie", &["-buildmode=pie"][..])] {
        let exe = go_build(tmp.path(), name, flags);
        let (img, a) = plan_file(&exe);
        assert_eq!(img.flavour, Flavour::Go, "{name}");
        assert!(img.build_id.is_some(), "{name}: Go writes a GNU build-id");
        // Every site but the signal restorer.
        let left: Vec<String> = a.found.iter().filter(|f| matches!(f.verdict, Verdict::Leave(_))).map(|f| f.symbol.clone()).collect();
        assert_eq!(left.len(), 1, "{name}: left {left:?}");
        assert!(left[0].starts_with("runtime.sigreturn__sigaction"), "{name}: {left:?}");
        assert!(a.plan.sites.len() >= 35, "{name}: {} sites", a.plan.sites.len());
        // No site skips a red zone; the thread exits push nothing.
        assert!(a.plan.sites.iter().all(|s| s.kind != Kind::Normal), "{name}");
        for f in site_of(&a, "runtime.exitThread") {
            assert!(matches!(&f.verdict, Verdict::Patch { site, .. } if site.kind == Kind::Tail), "{name}");
        }
        let clone = site_of(&a, "runtime.clone");
        assert_eq!(clone.len(), 3, "{name}: names come from the symbol table or pclntab");
    }
}

#[test]
fn musl_static_binary_is_planned() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("t.c");
    std::fs::write(
        &src,
        "#include <pthread.h>\n#include <stdio.h>\nstatic void *f(void *p){return p;}\n\
         int main(void){pthread_t t; pthread_create(&t,0,f,0); pthread_detach(t); puts(\"ok\"); return 0;}\n",
    )
    .unwrap();
    let exe = tmp.path().join("t");
    let o = Command::new("musl-gcc").args(["-O2", "-static", "-o"]).arg(&exe).arg(&src).output().expect("musl-gcc (musl-tools, scripts/setup.sh)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (img, a) = plan_file(&exe);
    assert_eq!(img.flavour, Flavour::C);
    assert!(img.fixed);
    let clone = site_of(&a, "__clone");
    assert_eq!(clone.len(), 2);
    assert!(matches!(&clone[0].verdict, Verdict::Patch { site, .. } if site.kind == Kind::NoRedZone && site.nr == Some(56)));
    let unmap = site_of(&a, "__unmapself");
    assert!(matches!(unmap[0].verdict, Verdict::Leave(_)));
    assert!(matches!(&unmap[1].verdict, Verdict::Patch { site, .. } if site.kind == Kind::Tail));
    // Everything else is rewritten.
    let left = a.found.iter().filter(|f| matches!(f.verdict, Verdict::Leave(_))).count();
    assert_eq!(left, 1, "only __unmapself's munmap is left");
}

#[test]
fn static_glibc_and_shared_objects_are_planned() {
    for (file, min) in [
        ("/usr/bin/busybox", 280),
        ("/lib/x86_64-linux-gnu/libc.so.6", 525),
        ("/usr/lib/x86_64-linux-musl/libc.so", 490),
    ] {
        if !Path::new(file).exists() {
            panic!("{file} is missing: scripts/setup.sh installs busybox-static and musl-tools");
        }
        let (_, a) = plan_file(Path::new(file));
        assert!(a.plan.sites.len() >= min, "{file}: {} sites planned", a.plan.sites.len());
    }
}

#[test]
fn object_without_build_id_is_keyed_by_content() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("t.c");
    std::fs::write(&src, "int main(void){return 0;}\n").unwrap();
    let exe = tmp.path().join("t");
    let o = Command::new("gcc").args(["-static", "-Wl,--build-id=none", "-o"]).arg(&exe).arg(&src).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (img, a) = plan_file(&exe);
    assert_eq!(img.build_id, None);
    assert!(img.key.starts_with("sha256-") && img.key.len() == 7 + 64, "{}", img.key);
    assert_eq!(a.plan.build_id, img.key);
    let text = a.plan.to_text();
    assert_eq!(shunt_patch::Plan::parse(&text).unwrap().build_id, img.key);
}
