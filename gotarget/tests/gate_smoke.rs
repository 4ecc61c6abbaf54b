//! The Go target with a gate present, without the shunt runtime: a test
//! program carries a stand-in gate (`programs/gated/gate_amd64.s`), and this
//! harness starts it under ptrace, turns its auxv's `AT_FLAGS` entry (always
//! 0, unused by Go) into `AT_SHUNT_ENTRY` = the stand-in's address, and lets
//! it run. The rt0 hook must pick the address up before the first system
//! call (so the first call the gate sees is arch_prctl), and goroutines
//! (clone through the inline path), exiting threads (the no-push exit
//! trampoline), signals and os/exec (vfork through the inline path) must
//! all work through it.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use object::{Object, ObjectSymbol};
use shunt_gotarget::{command, GoTool, AT_SHUNT_ENTRY};

const AT_NULL: u64 = 0;
const AT_FLAGS: u64 = 8;

fn build(cache: &Path, out: &Path) {
    let tool = GoTool::locate().expect("these tests need the Go toolchain on PATH");
    let t = shunt_gotarget::prepare_in(&tool, cache).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/gated");
    let args = ["build", "-C", src.to_str().unwrap(), "-o", out.to_str().unwrap(), "."].map(Into::into);
    let mut inv = command::invocation(&t, cache, &args, "").unwrap();
    let o = inv.command.output().unwrap();
    assert!(o.status.success(), "shunt go build: {}", String::from_utf8_lossy(&o.stderr));
}

fn symbol(bin: &Path, name: &str) -> u64 {
    let data = std::fs::read(bin).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.symbols().find(|s| s.name() == Ok(name)).map(|s| s.address()).unwrap_or_else(|| panic!("no {name} in {}", bin.display()))
}

fn peek(pid: i32, addr: u64) -> u64 {
    // PEEKDATA returns the word; -1 is also a valid word, so check errno.
    unsafe { *libc::__errno_location() = 0 };
    let v = unsafe { libc::ptrace(libc::PTRACE_PEEKDATA, pid, addr as *mut libc::c_void, std::ptr::null_mut::<libc::c_void>()) };
    assert!(v != -1 || unsafe { *libc::__errno_location() } == 0, "PEEKDATA {addr:#x}: {}", io::Error::last_os_error());
    v as u64
}

fn poke(pid: i32, addr: u64, value: u64) {
    let r = unsafe { libc::ptrace(libc::PTRACE_POKEDATA, pid, addr as *mut libc::c_void, value as *mut libc::c_void) };
    assert_eq!(r, 0, "POKEDATA {addr:#x}: {}", io::Error::last_os_error());
}

/// Runs `bin` with AT_SHUNT_ENTRY = `gate` in its auxv; returns its output.
fn run_with_gate(bin: &Path, gate: u64) -> std::process::Output {
    let mut cmd = Command::new(bin);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, std::ptr::null_mut::<libc::c_void>(), std::ptr::null_mut::<libc::c_void>()) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start the gated program under ptrace");
    let pid = child.id() as i32;
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == libc::SIGTRAP, "not stopped at exec: {status:#x}");

    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, std::ptr::null_mut::<libc::c_void>(), &mut regs as *mut _ as *mut libc::c_void) };
    assert_eq!(r, 0, "GETREGS: {}", io::Error::last_os_error());
    // argc, argv…, NULL, envp…, NULL, auxv pairs.
    let sp = regs.rsp;
    let argc = peek(pid, sp);
    let mut p = sp + 8 * (argc + 2);
    while peek(pid, p) != 0 {
        p += 8;
    }
    p += 8;
    let mut replaced = false;
    loop {
        let tag = peek(pid, p);
        if tag == AT_NULL {
            break;
        }
        if tag == AT_FLAGS {
            poke(pid, p, AT_SHUNT_ENTRY);
            poke(pid, p + 8, gate);
            replaced = true;
            break;
        }
        p += 16;
    }
    assert!(replaced, "the kernel gave no AT_FLAGS entry to repurpose");
    let r = unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, std::ptr::null_mut::<libc::c_void>(), std::ptr::null_mut::<libc::c_void>()) };
    assert_eq!(r, 0, "DETACH: {}", io::Error::last_os_error());
    child.wait_with_output().unwrap()
}

#[test]
fn go_program_runs_through_a_gate_from_auxv() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("gated");
    build(cache.path(), &bin);

    // Natively: the gate variable stays 0, nothing enters the stand-in.
    let native = Command::new(&bin).output().unwrap();
    assert!(native.status.success());
    let native_out = String::from_utf8_lossy(&native.stdout);
    assert!(native_out.contains("gate entries>100: false first: -1 clones>0: false"), "{native_out}");

    let gate = symbol(&bin, "main.testGate.abi0");
    let o = run_with_gate(&bin, gate);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "gated run failed ({}):\n{out}{}", o.status, String::from_utf8_lossy(&o.stderr));
    // Everything but the last line is what the native run printed.
    let body = |s: &str| s.lines().filter(|l| !l.starts_with("gate entries")).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&out), body(&native_out));
    // 158 = arch_prctl (settls): the hook ran before the first syscall.
    assert!(out.contains("gate entries>100: true first: 158 clones>0: true"), "{out}");
}
