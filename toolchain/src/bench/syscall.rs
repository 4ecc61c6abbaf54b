//! `shunt bench syscall`: the cost of each way a system call can go, measured
//! in one process, interleaved, reported as medians and as ratios to a plain
//! kernel syscall measured in the same run.
//!
//! The runtime is installed in this process. The measuring thread attaches to
//! it; the trapping calls execute a `syscall` instruction placed in a page
//! outside the runtime's text, so the trap fallback catches them.
//!
//! The `--isolate` rows run in a second process (this command again, with
//! the hidden `--isolated-worker`) that installed the built-in profile's
//! seccomp filter first: a filter cannot be removed, so the two sides are
//! interleaved round by round over a pipe instead of inside one process.

use std::arch::asm;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use shunt_core::{gate, thread, trap};

use super::stats::median;

#[derive(Args)]
pub struct SyscallArgs {
    /// Calls per measurement (per path and round).
    #[arg(long, default_value_t = 100_000)]
    calls: u32,
    /// Rounds; each round measures every path once, in turn.
    #[arg(long, default_value_t = 15)]
    rounds: u32,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Leave out the rows of an unmodified static Go binary (plain `go
    /// build`, which needs the go command): native, trapped, rewritten.
    #[arg(long)]
    no_go: bool,
    /// Internal: measure the `--isolate` rows, one round per line on stdin.
    #[arg(long, hide = true)]
    isolated_worker: bool,
}

/// One call through the gate, as a patched `syscall` site makes it. The
/// red zone is skipped first: `call` pushes below rsp.
#[inline(always)]
unsafe fn via_gate(gate: usize, nr: usize) -> i64 {
    let r: i64;
    asm!("sub rsp, 128", "call {g}", "add rsp, 128",
         g = in(reg) gate, inlateout("rax") nr as i64 => r,
         lateout("rcx") _, lateout("r11") _);
    r
}

/// One `syscall` instruction at `site` (a `syscall; ret` stub).
#[inline(always)]
unsafe fn via_site(site: usize, nr: usize) -> i64 {
    let r: i64;
    asm!("sub rsp, 128", "call {s}", "add rsp, 128",
         s = in(reg) site, inlateout("rax") nr as i64 => r,
         lateout("rcx") _, lateout("r11") _);
    r
}

/// [`via_gate`] with three arguments.
#[inline(always)]
unsafe fn via_gate3(gate: usize, nr: usize, a0: u64, a1: u64, a2: u64) -> i64 {
    let r: i64;
    asm!("sub rsp, 128", "call {g}", "add rsp, 128",
         g = in(reg) gate, inlateout("rax") nr as i64 => r,
         in("rdi") a0, in("rsi") a1, in("rdx") a2,
         lateout("rcx") _, lateout("r11") _);
    r
}

/// [`via_site`] with three arguments.
#[inline(always)]
unsafe fn via_site3(site: usize, nr: usize, a0: u64, a1: u64, a2: u64) -> i64 {
    let r: i64;
    asm!("sub rsp, 128", "call {s}", "add rsp, 128",
         s = in(reg) site, inlateout("rax") nr as i64 => r,
         in("rdi") a0, in("rsi") a1, in("rdx") a2,
         lateout("rcx") _, lateout("r11") _);
    r
}

/// A `syscall; ret` stub in its own executable page, outside the runtime's
/// (exempt) text: calls made through it are trapped when SUD is armed.
fn foreign_syscall_site() -> Result<usize> {
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            bail!("cannot map a code page: {}", std::io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping([0x0f, 0x05, 0xc3].as_ptr(), p as *mut u8, 3);
        if libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC) != 0 {
            bail!("cannot make the code page executable: {}", std::io::Error::last_os_error());
        }
        Ok(p as usize)
    }
}

struct Path {
    name: &'static str,
    /// Needs this thread's trap fallback armed.
    armed: bool,
    run: Box<dyn Fn(u32)>,
}


pub fn syscall(args: SyscallArgs) -> Result<()> {
    if args.calls == 0 || args.rounds == 0 {
        bail!("--calls and --rounds must be at least 1");
    }
    if args.isolated_worker {
        return isolated_worker(args.calls);
    }
    shunt_install::install(shunt_install::Options { trap: true, ..Default::default() })
        .context("cannot install the runtime in the benchmark process")?;
    // install() attached and armed the main thread, which goes on printing
    // through glibc: detach it (a thread std creates would otherwise inherit
    // its GS) and measure on a thread of our own.
    thread::detach_current();
    let calls = args.calls;
    let rounds = args.rounds;
    let mut results = std::thread::spawn(move || measure(calls, rounds))
        .join()
        .map_err(|_| anyhow::anyhow!("the benchmark thread failed"))??;
    if !args.no_go {
        results.extend(measure_go(calls, rounds)?);
    }

    let base = results[0].1;
    println!("shunt bench syscall: {calls} calls x {rounds} rounds, interleaved; median ns per call");
    println!("{:<44} {:>9} {:>12}", "path", "ns/call", "vs kernel");
    for (name, ns) in &results {
        let ratio = ns / base;
        let note = if ratio < 1.0 { format!("{:.1}x faster", 1.0 / ratio) } else { format!("{ratio:.2}x") };
        println!("{name:<44} {ns:>9.1} {note:>12}");
    }
    let get = |n: &str| results.iter().find(|(k, _)| *k == n).map(|(_, v)| *v).unwrap_or(f64::NAN);
    let filter_tax = get(ISO_KERNEL) - base;
    let gate_tax = get(ISO_PASSTHROUGH) - get(PASSTHROUGH);
    let emu = base / get(EMULATED);
    let pass = get(PASSTHROUGH) / base - 1.0;
    println!();
    println!("gate -> emulated is {emu:.1}x faster than the kernel syscall (target >= 10x): {}",
             if emu >= 10.0 { "met" } else { "missed" });
    println!("gate -> passthrough costs {:+.1}% over the kernel syscall (target within 10%): {}",
             pass * 100.0, if pass <= 0.10 { "met" } else { "missed" });
    for (what, k, g) in [("read", KERNEL_READ, GATE_READ), ("write", KERNEL_WRITE, GATE_WRITE)] {
        let tax = get(g) / get(k) - 1.0;
        println!("gate -> passthrough {what} on a kernel fd costs {:+.1}% over the kernel syscall (fd-table test included)",
                 tax * 100.0);
    }
    println!("--isolate (seccomp filter of the built-in profile) adds {filter_tax:+.1} ns to a kernel syscall, \
              {gate_tax:+.1} ns to a gate passthrough (a cacheable filter costs the kernel ~+60 ns here)");
    if !args.no_go {
        let (native, trapped, rewritten) = (get(GO_NATIVE), get(GO_TRAPPED), get(GO_REWRITTEN));
        println!("plain go build syscall.Getpid, rewritten at load time, is {:.1}x faster than native (target >= 7x): {}; \
                  {:.1}x faster than trapped (--no-rewrite)",
                 native / rewritten, if native / rewritten >= 7.0 { "met" } else { "missed" }, trapped / rewritten);
    }
    if let Some(path) = args.json {
        let obj: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!({"ns_per_call": v, "vs_kernel": v / base})))
            .collect();
        let doc = serde_json::json!({"calls": calls, "rounds": rounds, "paths": obj});
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

const KERNEL: &str = "kernel syscall getppid (no trap fallback)";
const EMULATED: &str = "gate -> emulated (getpid)";
const PASSTHROUGH: &str = "gate -> passthrough (getppid)";
const KERNEL_READ: &str = "kernel syscall read 1 B (/dev/zero)";
const GATE_READ: &str = "gate -> passthrough read 1 B (/dev/zero)";
const KERNEL_WRITE: &str = "kernel syscall write 1 B (/dev/null)";
const GATE_WRITE: &str = "gate -> passthrough write 1 B (/dev/null)";
const ISO_KERNEL: &str = "kernel syscall getppid, --isolate";
const ISO_PASSTHROUGH: &str = "gate -> passthrough (getppid), --isolate";
const ISO_EMULATED: &str = "gate -> emulated (getpid), --isolate";
/// The worker's rows, in the order it prints them.
const ISOLATED_ROWS: [&str; 3] = [ISO_KERNEL, ISO_PASSTHROUGH, ISO_EMULATED];

const GO_NATIVE: &str = "plain go build: syscall.Getpid, native";
const GO_TRAPPED: &str = "plain go build: syscall.Getpid, --no-rewrite";
const GO_REWRITTEN: &str = "plain go build: syscall.Getpid, rewritten";

/// The rows of an unmodified static Go binary (`shunt bench go`'s program,
/// built by plain `go build`): run natively, under `shunt run --no-rewrite`
/// (every call trapped) and under `shunt run` (its sites rewritten at load
/// time), interleaved round by round. Each run times its own loop, so
/// process start-up is not in the figures.
fn measure_go(calls: u32, rounds: u32) -> Result<Vec<(&'static str, f64)>> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("main.go"), super::go::MAIN_GO)?;
    std::fs::write(dir.path().join("go.mod"), super::go::GO_MOD)?;
    let bin = dir.path().join("bench-plain");
    eprintln!("shunt bench syscall: building the Go rows' program with plain go build (--no-go leaves them out)…");
    super::go::build(dir.path(), &bin, false)?;
    let configs: [(&'static str, Option<&[&str]>, u32); 3] = [
        (GO_NATIVE, None, calls),
        // Traps are ~15x slower: fewer calls, as for the in-process trap rows.
        (GO_TRAPPED, Some(&["--no-rewrite"]), (calls / 16).max(1)),
        (GO_REWRITTEN, Some(&[]), calls),
    ];
    let mut samples = vec![Vec::new(); configs.len()];
    for round in 0..=rounds {
        for (i, (name, flags, n)) in configs.iter().enumerate() {
            let out = super::go::measure(&bin, *flags, "getpid", *n)?;
            let ns = out.iter().find(|(k, _)| k == "getpid").map(|(_, v)| *v)
                .with_context(|| format!("{name}: the Go program printed no getpid figure"))?;
            if round > 0 {
                samples[i].push(ns); // round 0 warms up (and fills the plan cache)
            }
        }
    }
    Ok(configs.iter().map(|c| c.0).zip(samples.iter_mut()).map(|(n, s)| (n, median(s))).collect())
}

/// The `--isolate` side: this command again, under the filter.
struct IsolatedWorker {
    child: std::process::Child,
    to: std::process::ChildStdin,
    from: std::io::BufReader<std::process::ChildStdout>,
}

impl IsolatedWorker {
    fn start(calls: u32) -> Result<Self> {
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().context("cannot find the shunt executable")?;
        let mut child = Command::new(exe)
            .args(["bench", "syscall", "--isolated-worker", "--calls", &calls.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the --isolate side of the benchmark")?;
        let to = child.stdin.take().context("no pipe to the worker")?;
        let from = std::io::BufReader::new(child.stdout.take().context("no pipe from the worker")?);
        Ok(IsolatedWorker { child, to, from })
    }

    /// One round of the worker's rows (ns per call).
    fn round(&mut self) -> Result<Vec<f64>> {
        use std::io::{BufRead, Write};
        writeln!(self.to, "round").and_then(|_| self.to.flush()).context("the --isolate worker is gone")?;
        let mut line = String::new();
        self.from.read_line(&mut line).context("the --isolate worker is gone")?;
        let v: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        if v.len() != ISOLATED_ROWS.len() {
            bail!("the --isolate worker failed (it said {line:?})");
        }
        Ok(v)
    }
}

impl Drop for IsolatedWorker {
    fn drop(&mut self) {
        // Its stdin closes with us: it ends at EOF.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker: the built-in profile's filter first, then the runtime, then
/// one line of timings per line read.
fn isolated_worker(calls: u32) -> Result<()> {
    let filter = shunt_seccomp::Filter::new(&shunt_policy::Compiled::builtin())?;
    filter.install().map_err(|e| anyhow::anyhow!("cannot install the seccomp filter: {}", std::io::Error::from_raw_os_error(e)))?;
    shunt_install::install(shunt_install::Options { trap: true, ..Default::default() })
        .context("cannot install the runtime in the benchmark process")?;
    thread::detach_current();
    std::thread::spawn(move || -> Result<()> {
        use std::io::{BufRead, Write};
        thread::attach_current(false).context("cannot attach the benchmark thread")?;
        let gate = gate::gate_address();
        let site = foreign_syscall_site()?;
        let (getpid, getppid) = (libc::SYS_getpid as usize, libc::SYS_getppid as usize);
        let runs: [Box<dyn Fn(u32)>; 3] = [
            Box::new(move |n| for _ in 0..n { unsafe { via_site(site, getppid); } }),
            Box::new(move |n| for _ in 0..n { unsafe { via_gate(gate, getppid); } }),
            Box::new(move |n| for _ in 0..n { unsafe { via_gate(gate, getpid); } }),
        ];
        let mut out = std::io::stdout().lock();
        for line in std::io::stdin().lock().lines() {
            line?;
            let mut row = String::new();
            for run in &runs {
                let t = Instant::now();
                run(calls);
                row.push_str(&format!("{} ", t.elapsed().as_nanos() as f64 / calls as f64));
            }
            writeln!(out, "{row}")?;
            out.flush()?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the benchmark thread failed"))?
}

fn measure(calls: u32, rounds: u32) -> Result<Vec<(&'static str, f64)>> {
    let tb = thread::attach_current(false).context("cannot attach the benchmark thread")?;
    let gate = gate::gate_address();
    let site = foreign_syscall_site()?;
    let getpid = libc::SYS_getpid as usize;
    let getppid = libc::SYS_getppid as usize;
    let getuid = libc::SYS_getuid as usize;
    let (read, write) = (libc::SYS_read as usize, libc::SYS_write as usize);
    // Kernel fds for the read/write rows: 1 byte from /dev/zero, to /dev/null.
    // (Plain fds: the gate tests the fd table and stays on the kernel route.)
    let open = |p: &std::ffi::CStr, flags: i32| {
        // SAFETY: open of a NUL-terminated path.
        let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            bail!("cannot open {}: {}", p.to_string_lossy(), std::io::Error::last_os_error());
        }
        Ok(fd as u64)
    };
    let zero = open(c"/dev/zero", libc::O_RDONLY)?;
    let null = open(c"/dev/null", libc::O_WRONLY)?;
    let byte = Box::leak(Box::new(0u8)) as *mut u8 as u64;
    let paths: Vec<Path> = vec![
        Path { name: KERNEL, armed: false, run: Box::new(move |n| for _ in 0..n { unsafe { via_site(site, getppid); } }) },
        Path { name: EMULATED, armed: false, run: Box::new(move |n| for _ in 0..n { unsafe { via_gate(gate, getpid); } }) },
        Path { name: "gate -> emulated, dispatcher path (getuid)", armed: false,
               run: Box::new(move |n| for _ in 0..n { unsafe { via_gate(gate, getuid); } }) },
        Path { name: PASSTHROUGH, armed: false, run: Box::new(move |n| for _ in 0..n { unsafe { via_gate(gate, getppid); } }) },
        Path { name: KERNEL_READ, armed: false,
               run: Box::new(move |n| for _ in 0..n { unsafe { via_site3(site, read, zero, byte, 1); } }) },
        Path { name: GATE_READ, armed: false,
               run: Box::new(move |n| for _ in 0..n { unsafe { via_gate3(gate, read, zero, byte, 1); } }) },
        Path { name: KERNEL_WRITE, armed: false,
               run: Box::new(move |n| for _ in 0..n { unsafe { via_site3(site, write, null, byte, 1); } }) },
        Path { name: GATE_WRITE, armed: false,
               run: Box::new(move |n| for _ in 0..n { unsafe { via_gate3(gate, write, null, byte, 1); } }) },
        Path { name: "kernel syscall getppid, trap fallback armed", armed: true,
               run: Box::new(move |n| for _ in 0..n { unsafe { via_gate_raw(getppid); } }) },
        Path { name: "gate -> passthrough, trap fallback armed", armed: true,
               run: Box::new(move |n| for _ in 0..n { unsafe { via_gate(gate, getppid); } }) },
        Path { name: "trap -> emulated (getpid)", armed: true, run: Box::new(move |n| for _ in 0..n { unsafe { via_site(site, getpid); } }) },
        Path { name: "trap -> passthrough (getppid)", armed: true, run: Box::new(move |n| for _ in 0..n { unsafe { via_site(site, getppid); } }) },
    ];
    let mut worker = IsolatedWorker::start(calls)?;
    let mut samples = vec![Vec::new(); paths.len() + ISOLATED_ROWS.len()];
    // Traps are ~15x slower: give them fewer calls so rounds stay comparable.
    for round in 0..=rounds {
        for (i, p) in paths.iter().enumerate() {
            let n = if p.name.starts_with("trap") { (calls / 16).max(1) } else { calls };
            unsafe {
                if p.armed {
                    trap::arm_thread(tb).map_err(|e| anyhow::anyhow!("cannot arm the trap fallback (errno {})", -e))?;
                }
                let t = Instant::now();
                (p.run)(n);
                let ns = t.elapsed().as_nanos() as f64 / n as f64;
                if p.armed {
                    trap::disarm_thread(tb);
                }
                if round > 0 {
                    samples[i].push(ns); // round 0 warms up
                }
            }
        }
        for (i, ns) in worker.round()?.into_iter().enumerate() {
            if round > 0 {
                samples[paths.len() + i].push(ns);
            }
        }
    }
    thread::detach_current();
    let names = paths.iter().map(|p| p.name).chain(ISOLATED_ROWS);
    Ok(names.zip(samples.iter_mut()).map(|(n, s)| (n, median(s))).collect())
}

/// A raw `syscall` inside this binary's text (exempt from the trap fallback):
/// what the gate's passthrough itself pays while SUD is armed.
#[inline(always)]
unsafe fn via_gate_raw(nr: usize) -> i64 {
    let r: i64;
    asm!("syscall", inlateout("rax") nr as i64 => r, lateout("rcx") _, lateout("r11") _, options(nostack));
    r
}
