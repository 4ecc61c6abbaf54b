//! `shunt audit` on the command line: exit status 0 when every site is
//! covered, 1 when one is not, 2 with one `shunt: …` line on bad input.

use std::process::Command;

use shunt_tests::*;

fn audit(args: &[&str]) -> Outcome {
    let mut cmd = Command::new(shunt());
    cmd.arg("audit").args(args);
    run(cmd, None, std::time::Duration::from_secs(120))
}

#[test]
fn machine_libc_is_covered() {
    let libc = "/lib/x86_64-linux-gnu/libc.so.6";
    let out = audit(&[libc]);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout_str(), out.stderr_str());
    let text = out.stdout_str();
    assert!(text.contains(" 0 uncovered"), "{text}");
    assert!(text.contains("__restore_rt") && text.contains("allowlisted"), "{text}");
    let json = audit(&[libc, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("audit --json is JSON");
    assert_eq!(v["uncovered"], 0);
    assert_eq!(v["mode"], "glibc");
    assert!(v["patched"].as_u64().unwrap() > 500, "{}", v["patched"]);
    assert_eq!(v["sites"].as_array().unwrap().len() as u64, v["patched"].as_u64().unwrap() + v["allowlisted"].as_u64().unwrap());
}

#[test]
fn raw_syscall_is_rewritten_or_uncovered() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("raw.c");
    std::fs::write(&src, "int main(void){long r; __asm__ volatile(\"syscall\" : \"=a\"(r) : \"a\"(39L) : \"rcx\", \"r11\", \"memory\"); return r < 0;}\n").unwrap();
    let exe = tmp.path().join("raw");
    assert!(Command::new("gcc").arg("-O2").arg("-o").arg(&exe).arg(&src).status().unwrap().success());
    let out = audit(&[exe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "rewritten at load time: {}", out.stdout_str());
    assert!(out.stdout_str().contains(" rewritten "), "{}", out.stdout_str());
    assert!(out.stdout_str().contains("main+"), "{}", out.stdout_str());
    // A site no run of instructions can be moved from (a branch target
    // right before, a branch right after): uncovered, exit 1.
    let src = tmp.path().join("stuck.c");
    std::fs::write(&src, "int main(int c, char **v){long r = 39; __asm__ volatile(\"test %%edi,%%edi\\n jz 1f\\n 1: syscall\\n jz 2f\\n 2:\" : \"+a\"(r) : \"D\"(c) : \"rcx\", \"r11\", \"memory\", \"cc\"); (void)v; return r < 0;}\n").unwrap();
    let exe = tmp.path().join("stuck");
    assert!(Command::new("gcc").arg("-O2").arg("-o").arg(&exe).arg(&src).status().unwrap().success());
    let out = audit(&[exe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout_str());
    assert!(out.stdout_str().contains("uncovered"), "{}", out.stdout_str());
    // No syscall at all: covered.
    let out = audit(&["/bin/true"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stdout_str());
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "not an ELF\n").unwrap();
    let full = std::fs::read("/bin/true").unwrap();
    let cut = tmp.path().join("truncated");
    std::fs::write(&cut, &full[..300]).unwrap();
    let mut e32 = vec![0u8; 52];
    e32[..6].copy_from_slice(b"\x7fELF\x01\x01");
    let elf32 = tmp.path().join("elf32");
    std::fs::write(&elf32, &e32).unwrap();
    let missing = tmp.path().join("missing");
    for (file, says) in [(&text, "not an ELF"), (&cut, "truncated"), (&elf32, "32-bit"), (&missing, "cannot read")] {
        let out = audit(&[file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}: {}", file.display(), out.stderr_str());
        let err = out.stderr_str();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("shunt: ") && err.contains(says), "{err}");
        assert!(out.stdout.is_empty());
    }
}
