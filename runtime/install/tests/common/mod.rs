//! Shared by the runtime's integration tests: installing the runtime in the
//! test process and calling the gate the way patched code does.
#![allow(dead_code)]

use std::sync::Once;

use shunt_policy::Compiled;

static INSTALL: Once = Once::new();

/// Installs the runtime once per test process, without the trap fallback,
/// with a policy that denies `acct` with EACCES (so denial is testable), then
/// detaches the installing thread: each test attaches its own thread.
pub fn install() {
    INSTALL.call_once(|| {
        let policy = Compiled::from_toml("test", "base = \"none\"\n[syscalls]\nacct = \"deny:EACCES\"\n")
            .expect("test policy");
        shunt_install::install(shunt_install::Options { trap: false, policy: Some(policy.to_rules()), ..Default::default() })
            .expect("install the runtime");
        shunt_core::thread::detach_current();
    });
}

/// Runs `f` on a fresh thread attached to the runtime (test threads are not
/// created through the gate, so they attach explicitly).
pub fn on_attached_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    install();
    std::thread::spawn(move || {
        shunt_core::thread::attach_current(false).expect("attach");
        let r = f();
        shunt_core::thread::detach_current();
        r
    })
    .join()
    .expect("test thread panicked")
}

/// One system call through the gate, as a patched site makes it.
#[inline(never)]
pub fn gate6(nr: i64, a: [u64; 6]) -> i64 {
    let r: i64;
    let gate = shunt_core::gate::gate_address();
    unsafe {
        std::arch::asm!(
            "sub rsp, 128", "call {g}", "add rsp, 128",
            g = in(reg) gate,
            inlateout("rax") nr => r,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
        );
    }
    r
}

pub fn gate0(nr: i64) -> i64 {
    gate6(nr, [0; 6])
}
