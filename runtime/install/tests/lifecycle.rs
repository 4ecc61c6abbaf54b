//! The gate under stress: signal handlers nesting inside blocked gate calls
//! (on the runtime stack and on an alternate stack), threads created and ended
//! through the gate, vfork and fork through the gate.

mod common;

use shunt_abi::syscalls::nr;
use std::arch::global_asm;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{gate0, gate6};

/// Signal dispositions are process-wide and tests count slots: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

static HANDLER_RUNS: AtomicU64 = AtomicU64::new(0);
static HANDLER_ERRORS: AtomicU64 = AtomicU64::new(0);
static MAX_DEPTH_SEEN: AtomicU64 = AtomicU64::new(0);
static EXPECT_PID: AtomicI64 = AtomicI64::new(0);
static EXPECT_UID: AtomicI64 = AtomicI64::new(0);

extern "C" fn storm_handler(sig: i32) {
    let depth = unsafe { (*shunt_core::thread::current()).depth };
    MAX_DEPTH_SEEN.fetch_max(depth, Ordering::Relaxed);
    let mut ok = gate0(nr::GETPID as i64) == EXPECT_PID.load(Ordering::Relaxed);
    ok &= gate0(nr::GETUID as i64) == EXPECT_UID.load(Ordering::Relaxed);
    let mut ts = [0u64; 2];
    ok &= gate6(nr::CLOCK_GETTIME as i64, [libc::CLOCK_MONOTONIC as u64, ts.as_mut_ptr() as u64, 0, 0, 0, 0]) == 0;
    // A long call keeps the handler inside the gate, where the next signal
    // of the storm nests.
    let mut r = [0u8; 4096];
    ok &= gate6(nr::GETRANDOM as i64, [r.as_mut_ptr() as u64, 4096, 0, 0, 0, 0]) == 4096;
    ok &= ts[0] != 0 || ts[1] != 0;
    if !ok {
        HANDLER_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    HANDLER_RUNS.fetch_add(1, Ordering::Relaxed);
    // The chain: make the next signal pending while blocked, then unblock it
    // through the gate's full path, so that it is delivered inside that gate
    // entry and its handler runs one level deeper.
    let next = sig + 1;
    if CHAIN.load(Ordering::Relaxed) && next < libc::SIGRTMIN() + STORM_SIGNALS {
        let set: u64 = 1 << (next - 1);
        unsafe {
            libc::syscall(nr::RT_SIGPROCMASK as i64, libc::SIG_BLOCK, &set, 0, 8);
            libc::syscall(nr::TGKILL as i64, libc::getpid(), libc::gettid(), next);
        }
        gate6(nr::RT_SIGPROCMASK as i64, [libc::SIG_UNBLOCK as u64, &set as *const u64 as u64, 0, 8, 0, 0]);
    }
}

static CHAIN: AtomicBool = AtomicBool::new(false);

/// Signals of the storm: each may interrupt the handlers of the others, so
/// handlers nest up to this many levels deep inside the blocked gate call.
const STORM_SIGNALS: i32 = 16;

/// A thread blocks in `ppoll` through the gate. First a chain of 16 signals
/// nests deterministically, each handler one gate entry deeper than the last;
/// then another thread sends a storm of those signals, whose handlers make
/// gate calls of every kind and interrupt one another at random (bounded
/// nesting, as a real program sees it: one signal with SA_NODEFER would nest
/// without bound and overflow any stack, natively too). Then one byte arrives.
fn signal_storm(on_altstack: bool) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::install();
    HANDLER_RUNS.store(0, Ordering::Relaxed);
    HANDLER_ERRORS.store(0, Ordering::Relaxed);
    MAX_DEPTH_SEEN.store(0, Ordering::Relaxed);
    EXPECT_PID.store(unsafe { libc::getpid() } as i64, Ordering::Relaxed);
    EXPECT_UID.store(unsafe { libc::getuid() } as i64, Ordering::Relaxed);
    let sigs: Vec<i32> = (0..STORM_SIGNALS).map(|i| libc::SIGRTMIN() + i).collect();
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = storm_handler as *const () as usize;
        sa.sa_flags = libc::SA_RESTART | if on_altstack { libc::SA_ONSTACK } else { 0 };
        for &s in &sigs {
            assert_eq!(libc::sigaction(s, &sa, std::ptr::null_mut()), 0);
        }
    }
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let tid = std::sync::Arc::new(AtomicI64::new(0));
    let blocked = std::sync::Arc::new(AtomicBool::new(false));
    let (tid2, blocked2) = (tid.clone(), blocked.clone());
    let reader = std::thread::spawn(move || {
        shunt_core::thread::attach_current(false).expect("attach");
        let mut alt = vec![0u8; 256 * 1024];
        if on_altstack {
            // Through the gate, as a program running under shunt would.
            let ss = libc::stack_t { ss_sp: alt.as_mut_ptr() as *mut _, ss_flags: 0, ss_size: alt.len() };
            assert_eq!(gate6(nr::SIGALTSTACK as i64, [&ss as *const _ as u64, 0, 0, 0, 0, 0]), 0);
            let mut back: libc::stack_t = unsafe { std::mem::zeroed() };
            assert_eq!(gate6(nr::SIGALTSTACK as i64, [0, &mut back as *mut _ as u64, 0, 0, 0, 0]), 0);
            assert_eq!((back.ss_sp as usize, back.ss_size, back.ss_flags), (alt.as_ptr() as usize, alt.len(), 0),
                       "the program reads back the alternate stack it set");
        }
        tid2.store(unsafe { libc::gettid() } as i64, Ordering::SeqCst);
        blocked2.store(true, Ordering::SeqCst);
        // ppoll takes the gate's full path: it blocks on the runtime stack,
        // so handlers run inside a gate entry (depth 1) and nest from there.
        let mut pfd = libc::pollfd { fd: fds[0], events: libc::POLLIN, revents: 0 };
        let mut polled;
        loop {
            polled = gate6(nr::PPOLL as i64, [&mut pfd as *mut _ as u64, 1, 0, 0, 8, 0]);
            if polled != -(libc::EINTR as i64) {
                break;
            }
        }
        let mut b = [0u8; 1];
        let n = if polled == 1 { gate6(nr::READ as i64, [fds[0] as u64, b.as_mut_ptr() as u64, 1, 0, 0, 0]) } else { polled };
        // Signals of the storm may still be pending: block them (through the
        // gate) before the thread leaves the runtime, so that none is
        // delivered to a detached thread; the main thread's SIG_IGN below
        // then discards them.
        let storm: u64 = (0..STORM_SIGNALS).fold(0, |m, i| m | 1 << (libc::SIGRTMIN() + i - 1));
        gate6(nr::RT_SIGPROCMASK as i64, [libc::SIG_BLOCK as u64, &storm as *const u64 as u64, 0, 8, 0, 0]);
        let depth_after = unsafe { (*shunt_core::thread::current()).depth };
        if on_altstack {
            let ss = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
            gate6(nr::SIGALTSTACK as i64, [&ss as *const _ as u64, 0, 0, 0, 0, 0]);
        }
        shunt_core::thread::detach_current();
        drop(alt);
        (n, b[0], depth_after)
    });
    while !blocked.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    // The chain must start inside the blocked gate call: wait until the
    // kernel says the reader sits in ppoll (not a guessed sleep).
    wait_in_syscall(tid.load(Ordering::SeqCst), nr::PPOLL as i64);
    let pid = unsafe { libc::getpid() };
    CHAIN.store(true, Ordering::Relaxed);
    // SAFETY: tgkill takes only integers; the target is this process's own
    // blocked thread, whose handlers for `sigs` are installed above.
    unsafe { libc::syscall(nr::TGKILL as i64, pid, tid.load(Ordering::SeqCst), sigs[0]) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while HANDLER_RUNS.load(Ordering::Relaxed) < STORM_SIGNALS as u64 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let chain_depth = MAX_DEPTH_SEEN.load(Ordering::Relaxed);
    CHAIN.store(false, Ordering::Relaxed);
    let start = Instant::now();
    let mut sent = 0usize;
    while sent < 20_000 && start.elapsed() < Duration::from_secs(3) {
        let sig = sigs[sent % sigs.len()];
        // SAFETY: as above: integers only, our own thread, handlers installed.
        unsafe { libc::syscall(nr::TGKILL as i64, pid, tid.load(Ordering::SeqCst), sig) };
        sent += 1;
    }
    assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr() as *const _, 1) }, 1);
    let (n, byte, depth_after) = reader.join().expect("reader thread");
    unsafe {
        for &s in &sigs {
            libc::signal(s, libc::SIG_IGN);
        }
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let runs = HANDLER_RUNS.load(Ordering::Relaxed);
    assert_eq!((n, byte), (1, b'x'), "the blocked read must complete with the byte");
    assert_eq!(depth_after, 0, "depth must unwind to 0");
    assert!(runs > 0, "no handler ran");
    assert_eq!(HANDLER_ERRORS.load(Ordering::Relaxed), 0, "wrong results inside handlers ({runs} runs)");
    assert_eq!(
        chain_depth, STORM_SIGNALS as u64,
        "the chain of {STORM_SIGNALS} handlers must nest one gate entry deeper each"
    );
}

/// Waits until thread `tid` of this process is blocked in syscall `nr`, as
/// `/proc/self/task/<tid>/syscall` (first field: the number) and its state
/// (`S`, sleeping) say. Bounded: panics after 10 s.
fn wait_in_syscall(tid: i64, nr: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sc = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()).unwrap_or("");
        if sc.split_whitespace().next().and_then(|n| n.parse::<i64>().ok()) == Some(nr) && state == "S" {
            return;
        }
        assert!(Instant::now() < deadline, "thread {tid} never blocked in syscall {nr}: {sc:?} state {state:?}");
        std::thread::yield_now();
    }
}

#[test]
fn signals_nest_on_the_runtime_stack() {
    signal_storm(false);
}

#[test]
fn signals_nest_from_an_alternate_stack() {
    signal_storm(true);
}

// u64 clone_via_gate(gate, flags, stack_top, ctid_ptr, out_ptr): the child
// records the registers it resumed with, asks the gate for its tid and pid,
// and ends through the gate's exit path.
global_asm!(
    ".globl clone_via_gate",
    "clone_via_gate:",
    "push rbx", "push rbp", "push r12", "push r13", "push r14", "push r15",
    "mov r14, rdi",
    "mov r13, r8",
    "movabs rbx, 0x1111111111111111",
    "movabs rbp, 0x2222222222222222",
    "movabs r12, 0x6666666666666666",
    "movabs r15, 0x5555555555555555",
    "mov rdi, rsi",
    "mov rsi, rdx",
    "xor edx, edx",
    "mov r10, rcx",
    "xor r8d, r8d",
    "mov eax, 56",
    "call r14",
    "test rax, rax",
    "jz 2f",
    "pop r15", "pop r14", "pop r13", "pop r12", "pop rbp", "pop rbx",
    "ret",
    "2:",
    "mov [r13 + 0], rbx",
    "mov [r13 + 8], rbp",
    "mov [r13 + 16], r12",
    "mov [r13 + 24], r15",
    "mov [r13 + 32], rsp",
    "mov [r13 + 40], rdi",
    "mov eax, 186",
    "call r14",
    "mov [r13 + 48], rax",
    "mov eax, 39",
    "call r14",
    "mov [r13 + 56], rax",
    "mov eax, 60",
    "xor edi, edi",
    "call r14",
    "ud2",
);

// u64 vfork_via_gate(gate, out_ptr): the child asks the gate for its pid and
// tid, then exits with 7 through the gate.
global_asm!(
    ".globl vfork_via_gate",
    "vfork_via_gate:",
    "push rbx", "push r12",
    "mov rbx, rdi",
    "mov r12, rsi",
    "mov eax, 58",
    "call rbx",
    "test rax, rax",
    "jz 2f",
    "pop r12", "pop rbx",
    "ret",
    "2:",
    "mov eax, 39",
    "call rbx",
    "mov [r12], rax",
    "mov eax, 186",
    "call rbx",
    "mov [r12 + 8], rax",
    "mov eax, 231",
    "mov edi, 7",
    "call rbx",
    "ud2",
);

// u64 vfork_exit_via_gate(gate): the child leaves with `exit` (not
// exit_group), as Go's child does when its exec fails.
global_asm!(
    ".globl vfork_exit_via_gate",
    "vfork_exit_via_gate:",
    "push rbx",
    "mov rbx, rdi",
    "mov eax, 58",
    "call rbx",
    "test rax, rax",
    "jz 2f",
    "pop rbx",
    "ret",
    "2:",
    "mov eax, 60",
    "mov edi, 9",
    "call rbx",
    "ud2",
);

extern "C" {
    fn vfork_exit_via_gate(gate: usize) -> i64;
    fn clone_via_gate(gate: usize, flags: u64, stack_top: u64, ctid: *mut i32, out: *mut u64) -> i64;
    fn vfork_via_gate(gate: usize, out: *mut u64) -> i64;
}

fn wait_cleartid(ctid: &TidWord) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = ctid.0.load(Ordering::SeqCst);
        if v == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "thread did not exit");
        unsafe {
            let ts = libc::timespec { tv_sec: 0, tv_nsec: 10_000_000 };
            libc::syscall(nr::FUTEX as i64, ctid.0.as_ptr(), libc::FUTEX_WAIT, v, &ts);
        }
    }
}

struct TidWord(std::sync::atomic::AtomicI32);

#[test]
fn threads_created_and_ended_through_the_gate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (in_use_before, in_use_after, failures) = common::on_attached_thread(|| {
        let flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_CHILD_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        let before = shunt_core::thread::slots_in_use();
        let mut failures = Vec::new();
        let pid = unsafe { libc::getpid() } as u64;
        for round in 0..300 {
            let mut stack = vec![0u8; 64 * 1024];
            let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
            let ctid = TidWord(std::sync::atomic::AtomicI32::new(-1));
            let mut out = [0u64; 8];
            let r = unsafe {
                clone_via_gate(shunt_core::gate::gate_address(), flags, top, ctid.0.as_ptr(), out.as_mut_ptr())
            };
            if r <= 0 {
                failures.push(format!("round {round}: clone returned {r}"));
                break;
            }
            wait_cleartid(&ctid);
            let want = [0x1111111111111111, 0x2222222222222222, 0x6666666666666666, 0x5555555555555555, top, flags, r as u64, pid];
            if out != want {
                failures.push(format!("round {round}: child state {out:x?}, want {want:x?}"));
            }
            drop(stack);
        }
        (before, shunt_core::thread::slots_in_use(), failures)
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(in_use_before, in_use_after, "thread slots leaked by exiting threads");
}

#[test]
fn vfork_through_the_gate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::on_attached_thread(|| {
        let mut out = [0u64; 2];
        let child = unsafe { vfork_via_gate(shunt_core::gate::gate_address(), out.as_mut_ptr()) };
        assert!(child > 0, "vfork failed: {child}");
        let mut st = 0;
        assert_eq!(unsafe { libc::waitpid(child as i32, &mut st, 0) }, child as i32);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 7, "child status {st:#x}");
        assert_eq!(out, [child as u64, child as u64], "the vfork child must see its own pid and tid");
        // The parent's cached ids and depth are intact. (SAFETY of the two
        // libc calls: getpid and gettid take nothing and cannot fail.)
        assert_eq!(gate0(nr::GETPID as i64), unsafe { libc::getpid() } as i64);
        assert_eq!(gate0(nr::GETTID as i64), unsafe { libc::gettid() } as i64);
        assert_eq!(unsafe { (*shunt_core::thread::current()).depth }, 0);

        // A child that leaves with `exit` runs the gate's thread-exit path on
        // the block it shares with its parent: the parent's slot must stay
        // claimed (once it was freed, the next thread shared the block).
        let before = shunt_core::thread::slots_in_use();
        let slot = unsafe { (*shunt_core::thread::current()).slot };
        let child = unsafe { vfork_exit_via_gate(shunt_core::gate::gate_address()) };
        assert!(child > 0);
        let mut st = 0;
        assert_eq!(unsafe { libc::waitpid(child as i32, &mut st, 0) }, child as i32);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 9, "child status {st:#x}");
        assert_eq!(shunt_core::thread::slots_in_use(), before, "the vfork child freed its parent's slot");
        assert!(shunt_core::thread::slot_claimed(slot));
    });
}

#[test]
fn fork_through_the_gate_gives_the_child_fresh_ids_and_randomness() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::on_attached_thread(|| unsafe {
        let mut fds = [0i32; 2];
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let parent = libc::getpid() as i64;
        let r = gate0(nr::FORK as i64);
        if r == 0 {
            // Child: raw calls only (other threads' locks are gone).
            let mut msg = [0u64; 6];
            msg[0] = gate0(nr::GETPID as i64) as u64;
            msg[1] = libc::syscall(nr::GETPID as i64) as u64;
            msg[2] = gate0(nr::GETTID as i64) as u64;
            gate6(nr::GETRANDOM as i64, [msg.as_mut_ptr().add(3) as u64, 24, 0, 0, 0, 0]);
            libc::write(fds[1], msg.as_ptr() as *const _, 48);
            libc::_exit(0);
        }
        assert!(r > 0, "fork failed: {r}");
        let mut mine = [0u64; 3];
        gate6(nr::GETRANDOM as i64, [mine.as_mut_ptr() as u64, 24, 0, 0, 0, 0]);
        let mut msg = [0u64; 6];
        assert_eq!(libc::read(fds[0], msg.as_mut_ptr() as *mut _, 48), 48);
        let mut st = 0;
        libc::waitpid(r as i32, &mut st, 0);
        libc::close(fds[0]);
        libc::close(fds[1]);
        assert_eq!(msg[0] as i64, r, "child's getpid via the gate");
        assert_eq!(msg[1] as i64, r, "child's real pid");
        assert_eq!(msg[2] as i64, r, "child's gettid via the gate");
        assert_ne!(msg[0] as i64, parent);
        assert_ne!(&msg[3..], &mine[..], "parent and child drew the same random bytes after fork");
        assert_eq!(gate0(nr::GETPID as i64), parent);
    });
}
