//! The gate's register contract, checked directly.
//!
//! A hand-written harness loads every general register, every vector register
//! (zmm0–31 and k0–7 with AVX-512, else ymm0–15, else xmm0–15) with patterns,
//! switches to a canary-filled stack, calls the gate exactly as a patched
//! `syscall` site does, and stores every register back. For each path of the
//! gate (fast ids, dispatcher, kernel route, vDSO, RNG, cache, denial, invalid
//! numbers) the test then checks:
//! - rax is the right result;
//! - every register but rax, rcx and r11 is unchanged (vector state included);
//! - rsp is back where it was, and no byte of the stack was written except
//!   the return address `call` itself pushed.

mod common;

use shunt_abi::syscalls::nr;
use std::arch::global_asm;

#[repr(C, align(64))]
struct Regs {
    /// rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15
    gpr: [u64; 16],
    zmm: [[u64; 8]; 32],
    k: [u64; 8],
}

const RAX: usize = 0;
const RCX: usize = 2;
const RSP: usize = 7;
const R11: usize = 11;
const NAMES: [&str; 16] =
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

static mut IN: Regs = Regs { gpr: [0; 16], zmm: [[0; 8]; 32], k: [0; 8] };
static mut OUT: Regs = Regs { gpr: [0; 16], zmm: [[0; 8]; 32], k: [0; 8] };
static mut HOST_RSP: u64 = 0;
static mut TEST_RSP: u64 = 0;
static mut GATE: u64 = 0;

const STACK_BYTES: usize = 64 * 1024;
const CANARY: u8 = 0xa5;
#[repr(C, align(64))]
struct TestStack([u8; STACK_BYTES]);
static mut STACK: TestStack = TestStack([0; STACK_BYTES]);

macro_rules! harness {
    ($name:literal, $load_vec:literal, $store_vec:literal) => {
        global_asm!(
            concat!(".globl ", $name),
            concat!($name, ":"),
            "push rbx", "push rbp", "push r12", "push r13", "push r14", "push r15",
            "mov [rip + {host}], rsp",
            $load_vec,
            "mov rbx, [rip + {inp} + 8*1]",
            "mov rdx, [rip + {inp} + 8*3]",
            "mov rsi, [rip + {inp} + 8*4]",
            "mov rdi, [rip + {inp} + 8*5]",
            "mov rbp, [rip + {inp} + 8*6]",
            "mov r8,  [rip + {inp} + 8*8]",
            "mov r9,  [rip + {inp} + 8*9]",
            "mov r10, [rip + {inp} + 8*10]",
            "mov r12, [rip + {inp} + 8*12]",
            "mov r13, [rip + {inp} + 8*13]",
            "mov r14, [rip + {inp} + 8*14]",
            "mov r15, [rip + {inp} + 8*15]",
            "mov rcx, [rip + {inp} + 8*2]",
            "mov r11, [rip + {inp} + 8*11]",
            "mov rax, [rip + {inp} + 8*0]",
            "mov rsp, [rip + {test_rsp}]",
            "call [rip + {gate}]",
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
            $store_vec,
            "mov rsp, [rip + {host}]",
            "pop r15", "pop r14", "pop r13", "pop r12", "pop rbp", "pop rbx",
            "ret",
            host = sym HOST_RSP,
            inp = sym IN,
            out = sym OUT,
            test_rsp = sym TEST_RSP,
            gate = sym GATE,
        );
    };
}

// zmm/k offsets: gpr is 128 bytes, zmm starts at 128, k at 128 + 2048.
harness!(
    "contract_call_avx512",
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n vmovdqu64 zmm\\i, [rip + {inp} + 128 + 64*\\i]\n .endr\n .irp i,0,1,2,3,4,5,6,7\n kmovq k\\i, [rip + {inp} + 2176 + 8*\\i]\n .endr",
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n vmovdqu64 [rip + {out} + 128 + 64*\\i], zmm\\i\n .endr\n .irp i,0,1,2,3,4,5,6,7\n kmovq [rip + {out} + 2176 + 8*\\i], k\\i\n .endr\n vzeroupper"
);
harness!(
    "contract_call_avx",
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n vmovdqu ymm\\i, [rip + {inp} + 128 + 64*\\i]\n .endr",
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n vmovdqu [rip + {out} + 128 + 64*\\i], ymm\\i\n .endr\n vzeroupper"
);
harness!(
    "contract_call_sse",
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n movdqu xmm\\i, [rip + {inp} + 128 + 64*\\i]\n .endr",
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n movdqu [rip + {out} + 128 + 64*\\i], xmm\\i\n .endr"
);

extern "C" {
    fn contract_call_avx512();
    fn contract_call_avx();
    fn contract_call_sse();
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Vec {
    Avx512,
    Avx,
    Sse,
}

impl Vec {
    fn detect() -> Vec {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            Vec::Avx512
        } else if is_x86_feature_detected!("avx") {
            Vec::Avx
        } else {
            Vec::Sse
        }
    }
    /// Registers and 64-bit words per register the harness moves.
    fn shape(self) -> (usize, usize) {
        match self {
            Vec::Avx512 => (32, 8),
            Vec::Avx => (16, 4),
            Vec::Sse => (16, 2),
        }
    }
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 ^ (self.0 >> 29)
    }
}

struct Case {
    name: &'static str,
    nr: i64,
    /// rdi rsi rdx r10 r8 r9
    args: [u64; 6],
    check: Box<dyn Fn(i64) -> Result<(), String>>,
}

fn expect_eq(want: i64) -> Box<dyn Fn(i64) -> Result<(), String>> {
    Box::new(move |got| if got == want { Ok(()) } else { Err(format!("rax = {got}, want {want}")) })
}

/// Runs one case with `rsp_misalign` (0 or 8) and returns every violation.
fn run_case(v: Vec, case: &Case, rng: &mut Lcg, rsp_misalign: u64) -> std::vec::Vec<String> {
    let mut errors = std::vec::Vec::new();
    unsafe {
        let inp = &mut *std::ptr::addr_of_mut!(IN);
        for g in inp.gpr.iter_mut() {
            *g = rng.next();
        }
        inp.gpr[RAX] = case.nr as u64;
        // rdi rsi rdx r10 r8 r9
        for (slot, val) in [5usize, 4, 3, 10, 8, 9].iter().zip(case.args) {
            inp.gpr[*slot] = val;
        }
        for z in inp.zmm.iter_mut() {
            for w in z.iter_mut() {
                *w = rng.next();
            }
        }
        for k in inp.k.iter_mut() {
            *k = rng.next();
        }
        // Go's ABI keeps X15 zero; make sure zero survives as well as noise.
        inp.zmm[15] = [0; 8];
        let stack = &mut *std::ptr::addr_of_mut!(STACK);
        stack.0.fill(CANARY);
        let top = stack.0.as_ptr() as u64 + STACK_BYTES as u64 - 4096 - rsp_misalign;
        *std::ptr::addr_of_mut!(TEST_RSP) = top;
        *std::ptr::addr_of_mut!(GATE) = shunt_core::gate::gate_address() as u64;
        *std::ptr::addr_of_mut!(OUT) = Regs { gpr: [0; 16], zmm: [[0; 8]; 32], k: [0; 8] };

        match v {
            Vec::Avx512 => contract_call_avx512(),
            Vec::Avx => contract_call_avx(),
            Vec::Sse => contract_call_sse(),
        }

        let out = &*std::ptr::addr_of!(OUT);
        if let Err(e) = (case.check)(out.gpr[RAX] as i64) {
            errors.push(e);
        }
        for i in 0..16 {
            if i == RAX || i == RCX || i == R11 {
                continue;
            }
            let want = if i == RSP { top } else { inp.gpr[i] };
            if out.gpr[i] != want {
                errors.push(format!("{} changed: {:#x} -> {:#x}", NAMES[i], want, out.gpr[i]));
            }
        }
        let (nregs, words) = v.shape();
        for r in 0..nregs {
            if out.zmm[r][..words] != inp.zmm[r][..words] {
                errors.push(format!("vector register {r} changed"));
            }
        }
        if v == Vec::Avx512 && out.k != inp.k {
            errors.push("a k mask register changed".into());
        }
        // The return address `call` pushed is the only byte range written.
        let ret_slot = (top - 8 - stack.0.as_ptr() as u64) as usize;
        for (i, b) in stack.0.iter().enumerate() {
            if (ret_slot..ret_slot + 8).contains(&i) {
                continue;
            }
            if *b != CANARY {
                errors.push(format!(
                    "stack byte at rsp{:+} written",
                    i as i64 - (top - stack.0.as_ptr() as u64) as i64
                ));
                break;
            }
        }
    }
    errors
}

/// An owner that gives every call back to the kernel: calls on its fds take
/// the full path and are forwarded.
static PASS_OWNER: shunt_core::fd_owner::FdOwner = shunt_core::fd_owner::FdOwner {
    name: "contract",
    call: |_, _, _| None,
    dup: |_, _, t| t,
    closing: |_, _| {},
    close: |_, _| {},
    exec: |_, _| None,
    restore: |_, _| false,
};

fn cases() -> std::vec::Vec<Case> {
    let buf = Box::leak(Box::new([0u8; 8192])) as *mut [u8; 8192] as u64;
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) } as u64;
    let owned_null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    let owner = shunt_core::fd_owner::register_owner(&PASS_OWNER).expect("owner");
    shunt_core::process::PROCESS.fds.mark(owned_null, owner, 0).expect("mark");
    let owned_null = owned_null as u64;
    let pid = unsafe { libc::getpid() } as i64;
    let uid = unsafe { libc::getuid() } as i64;
    let ppid = unsafe { libc::getppid() } as i64;
    vec![
        Case { name: "getpid (gate fast path)", nr: nr::GETPID as i64, args: [0; 6], check: expect_eq(pid) },
        Case {
            name: "gettid (gate fast path)",
            nr: nr::GETTID as i64,
            args: [0; 6],
            check: {
                let tid = unsafe { libc::gettid() } as i64;
                expect_eq(tid)
            },
        },
        Case { name: "getuid (dispatcher, cache fill)", nr: nr::GETUID as i64, args: [0; 6], check: expect_eq(uid) },
        Case { name: "getuid (dispatcher, cached)", nr: nr::GETUID as i64, args: [0; 6], check: expect_eq(uid) },
        Case { name: "getppid (kernel route)", nr: nr::GETPPID as i64, args: [0; 6], check: expect_eq(ppid) },
        Case {
            name: "write to a kernel fd (fd-table test, kernel route)",
            nr: nr::WRITE as i64,
            args: [null, buf, 16, 0, 0, 0],
            check: expect_eq(16),
        },
        Case {
            name: "write to an owned fd (full path, forwarded)",
            nr: nr::WRITE as i64,
            args: [owned_null, buf, 16, 0, 0, 0],
            check: expect_eq(16),
        },
        Case {
            name: "read of fd -1 (fd-table test, kernel route)",
            nr: nr::READ as i64,
            args: [u64::MAX, buf, 16, 0, 0, 0],
            check: expect_eq(-(libc::EBADF as i64)),
        },
        Case {
            name: "close of an fd beyond the fd table (kernel route)",
            nr: nr::CLOSE as i64,
            args: [1 << 20, 0, 0, 0, 0, 0],
            check: expect_eq(-(libc::EBADF as i64)),
        },
        Case {
            name: "poll of nothing, an fd owned (full path, forwarded)",
            nr: nr::POLL as i64,
            args: [0, 0, 0, 0, 0, 0],
            check: expect_eq(0),
        },
        Case {
            name: "clock_gettime (vDSO)",
            nr: nr::CLOCK_GETTIME as i64,
            args: [libc::CLOCK_MONOTONIC as u64, buf, 0, 0, 0, 0],
            check: expect_eq(0),
        },
        Case { name: "gettimeofday (vDSO)", nr: nr::GETTIMEOFDAY as i64, args: [buf, 0, 0, 0, 0, 0], check: expect_eq(0) },
        Case {
            name: "time (vDSO)",
            nr: nr::TIME as i64,
            args: [0; 6],
            check: Box::new(|r| if r > 1_700_000_000 { Ok(()) } else { Err(format!("time = {r}")) }),
        },
        Case { name: "getcpu (vDSO)", nr: nr::GETCPU as i64, args: [buf, buf + 8, 0, 0, 0, 0], check: expect_eq(0) },
        Case { name: "getrandom 64 (RNG)", nr: nr::GETRANDOM as i64, args: [buf, 64, 0, 0, 0, 0], check: expect_eq(64) },
        Case { name: "getrandom 5000 (RNG refills)", nr: nr::GETRANDOM as i64, args: [buf, 5000, 0, 0, 0, 0], check: expect_eq(5000) },
        Case { name: "uname (cache fill)", nr: nr::UNAME as i64, args: [buf, 0, 0, 0, 0, 0], check: expect_eq(0) },
        Case { name: "uname (cached)", nr: nr::UNAME as i64, args: [buf, 0, 0, 0, 0, 0], check: expect_eq(0) },
        Case {
            name: "rt_sigaction query (handler)",
            nr: nr::RT_SIGACTION as i64,
            args: [libc::SIGUSR2 as u64, 0, buf, 8, 0, 0],
            check: expect_eq(0),
        },
        Case {
            name: "rt_sigprocmask query (handler)",
            nr: nr::RT_SIGPROCMASK as i64,
            args: [libc::SIG_BLOCK as u64, 0, buf, 8, 0, 0],
            check: expect_eq(0),
        },
        Case { name: "acct (denied by policy)", nr: nr::ACCT as i64, args: [0; 6], check: expect_eq(-(libc::EACCES as i64)) },
        Case { name: "number 1000 (outside the table)", nr: 1000, args: [0; 6], check: expect_eq(-(libc::ENOSYS as i64)) },
        Case { name: "number -1", nr: -1, args: [0; 6], check: expect_eq(-(libc::ENOSYS as i64)) },
        Case {
            name: "getrandom bad flags (emulated error)",
            nr: nr::GETRANDOM as i64,
            args: [buf, 8, 0x100, 0, 0, 0],
            check: expect_eq(-(libc::EINVAL as i64)),
        },
    ]
}

#[test]
fn every_gate_path_keeps_the_register_contract() {
    let v = Vec::detect();
    let report = common::on_attached_thread(move || {
        let mut rng = Lcg(0x5eed);
        let mut failures = std::vec::Vec::new();
        for case in cases() {
            for misalign in [0, 8] {
                for e in run_case(v, &case, &mut rng, misalign) {
                    failures.push(format!("{} (rsp%16={}): {e}", case.name, misalign));
                }
            }
        }
        failures
    });
    assert!(report.is_empty(), "register contract violated ({v:?} state checked):\n{}", report.join("\n"));
}

#[test]
fn results_match_the_kernel() {
    common::on_attached_thread(|| unsafe {
        let mut a: libc::utsname = std::mem::zeroed();
        let mut b: libc::utsname = std::mem::zeroed();
        assert_eq!(common::gate6(nr::UNAME as i64, [&mut a as *mut _ as u64, 0, 0, 0, 0, 0]), 0);
        assert_eq!(common::gate6(nr::UNAME as i64, [&mut a as *mut _ as u64, 0, 0, 0, 0, 0]), 0);
        libc::uname(&mut b);
        assert_eq!(std::slice::from_raw_parts(&a as *const _ as *const u8, std::mem::size_of::<libc::utsname>()),
                   std::slice::from_raw_parts(&b as *const _ as *const u8, std::mem::size_of::<libc::utsname>()));

        let mut r = [0u32; 3];
        let mut k = [0u32; 3];
        let p = r.as_mut_ptr() as u64;
        assert_eq!(common::gate6(nr::GETRESUID as i64, [p, p + 4, p + 8, 0, 0, 0]), 0);
        libc::getresuid(&mut k[0], &mut k[1], &mut k[2]);
        assert_eq!(r, k);

        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let mut kts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut kts);
        assert_eq!(common::gate6(nr::CLOCK_GETTIME as i64, [0, &mut ts as *mut _ as u64, 0, 0, 0, 0]), 0);
        assert!((ts.tv_sec - kts.tv_sec).abs() <= 1, "realtime from the gate is off: {} vs {}", ts.tv_sec, kts.tv_sec);
        // A CPU-time clock is not served by the vDSO: forwarded, and still right.
        assert_eq!(common::gate6(nr::CLOCK_GETTIME as i64, [libc::CLOCK_THREAD_CPUTIME_ID as u64, &mut ts as *mut _ as u64, 0, 0, 0, 0]), 0);

        // Bad pointers get the kernel's EFAULT, not a crash.
        assert_eq!(common::gate6(nr::UNAME as i64, [8, 0, 0, 0, 0, 0]), -(libc::EFAULT as i64));
        assert_eq!(common::gate6(nr::GETRANDOM as i64, [16, 8, 0, 0, 0, 0]), -(libc::EFAULT as i64));
        assert_eq!(common::gate6(nr::CLOCK_GETTIME as i64, [0, 24, 0, 0, 0, 0]), -(libc::EFAULT as i64));

        // Random bytes differ call to call and are not all zero.
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        assert_eq!(common::gate6(nr::GETRANDOM as i64, [x.as_mut_ptr() as u64, 32, 0, 0, 0, 0]), 32);
        assert_eq!(common::gate6(nr::GETRANDOM as i64, [y.as_mut_ptr() as u64, 32, 0, 0, 0, 0]), 32);
        assert_ne!(x, y);
        assert_ne!(x, [0; 32]);
    });
}
