//! Process-wide state: installing the runtime, reinitialising after `fork`,
//! and the stand-alone stats report at exit.
//!
//! Installation (once per process image, before any thread can enter the
//! gate): check FSGSBASE, find the vDSO and the runtime's text, seed the RNG,
//! map the stats segment and reserve runtime stacks, fill the action table
//! from the policy, install the SIGSYS handler, and attach the calling thread.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::path::{Path, PathBuf};

use crate::layout::*;
use crate::policy::Compiled;
use crate::stats::SegmentHeader;
use crate::{dispatch, events, raw, rng, sys, thread, trap, vdso};

/// What to install.
#[derive(Default)]
pub struct Options {
    /// Arm the trap fallback (Syscall User Dispatch) on attached threads.
    pub trap: bool,
    /// Instance directory: stats segments and the events file go here.
    /// Without one, counters live in private memory and are not reported.
    pub instance_dir: Option<PathBuf>,
    /// Policy to apply; `None` allows everything.
    pub policy: Option<Compiled>,
    /// Stand-alone mode: this process writes the instance's JSON report here
    /// when it exits (requires `instance_dir`).
    pub report_to: Option<PathBuf>,
    /// The runtime library, preloaded into exec'd dynamic programs.
    pub lib: Option<PathBuf>,
    /// The shunt binary, whose `shunt load` runs exec'd static programs.
    pub exe: Option<PathBuf>,
    /// Patch glibc's syscall sites in memory (the preload reads this; off
    /// with `SHUNT_PATCH=0`).
    pub patch: bool,
}

/// What `execve` adds so that a new image stays in the instance.
pub(crate) struct ExecInjection {
    /// NUL-terminated `NAME=value` entries added to the new environment.
    pub vars: Vec<Vec<u8>>,
    /// Which of `vars` is `LD_PRELOAD` (merged with the program's own).
    pub preload_index: Option<usize>,
    /// NUL-terminated path of the shunt binary (empty: static programs are
    /// exec'd as they are, outside the instance).
    pub loader: Vec<u8>,
}

static EXEC_INJECTION: std::sync::OnceLock<ExecInjection> = std::sync::OnceLock::new();

/// Variables of the runtime that the program does not see and that `execve`
/// replaces with the instance's own.
pub(crate) const INJECTED_PREFIXES: [&[u8]; 6] =
    [b"SHUNT_INSTANCE=", b"SHUNT_LIB=", b"SHUNT_EXE=", b"SHUNT_TRAP=", b"SHUNT_STATS=", b"SHUNT_PATCH="];

pub(crate) fn exec_injection() -> Option<&'static ExecInjection> {
    EXEC_INJECTION.get()
}

fn entry(name: &str, value: &Path) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(b'=');
    v.extend_from_slice(value.as_os_str().as_encoded_bytes());
    v.push(0);
    v
}

fn set_exec_injection(opts: &Options) {
    let Some(dir) = &opts.instance_dir else { return };
    let mut vars = vec![entry("SHUNT_INSTANCE", dir)];
    let mut preload_index = None;
    if let Some(lib) = &opts.lib {
        preload_index = Some(vars.len());
        vars.push(entry("LD_PRELOAD", lib));
        vars.push(entry("SHUNT_LIB", lib));
    }
    let mut loader = Vec::new();
    if let Some(exe) = &opts.exe {
        vars.push(entry("SHUNT_EXE", exe));
        loader = exe.as_os_str().as_encoded_bytes().to_vec();
        loader.push(0);
    }
    if !opts.trap {
        vars.push(b"SHUNT_TRAP=0\0".to_vec());
    }
    if !opts.patch {
        vars.push(b"SHUNT_PATCH=0\0".to_vec());
    }
    let _ = EXEC_INJECTION.set(ExecInjection { vars, preload_index, loader });
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the runtime is already installed in this process")]
    AlreadyInstalled,
    #[error("this CPU or kernel does not allow FSGSBASE instructions from user space (needs Linux 5.9+)")]
    NoFsgsbase,
    #[error("could not locate the runtime's own code")]
    NoText,
    #[error("could not seed the random number generator (errno {0})")]
    Seed(i64),
    #[error("instance directory {0}: {1}")]
    InstanceDir(PathBuf, std::io::Error),
    #[error("could not map {what} (errno {errno})")]
    Map { what: &'static str, errno: i64 },
    #[error("could not install the SIGSYS handler (errno {0})")]
    Sigsys(i64),
    #[error(transparent)]
    Attach(#[from] thread::AttachError),
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Segment files need `MAP_SHARED` replacement after fork; private memory not.
static SEGMENT_IS_FILE: AtomicBool = AtomicBool::new(false);
/// Root of a stand-alone instance (writes the report), or 0.
static REPORT_PID: AtomicI32 = AtomicI32::new(0);
static SEGMENT_SEQ: AtomicU32 = AtomicU32::new(0);
/// NUL-terminated instance directory and report path (raw-syscall use).
static mut INSTANCE_DIR: [u8; 2048] = [0; 2048];
static mut REPORT_PATH: [u8; 2048] = [0; 2048];
/// The program the loader runs (what `/proc/self/exe` names for it).
static mut PROGRAM_PATH: [u8; 4096] = [0; 4096];

/// Records the path of the program the loader runs in this process.
pub fn set_program_path(p: &Path) {
    unsafe { store_cstr(&mut *core::ptr::addr_of_mut!(PROGRAM_PATH), p) };
}

/// The loaded program's path, if this process runs one through the loader.
pub(crate) fn program_path() -> Option<&'static [u8]> {
    let p = cstr(unsafe { &*core::ptr::addr_of!(PROGRAM_PATH) });
    (!p.is_empty()).then_some(p)
}

fn store_cstr(dst: &mut [u8], p: &Path) {
    let b = p.as_os_str().as_encoded_bytes();
    let n = b.len().min(dst.len() - 1);
    dst[..n].copy_from_slice(&b[..n]);
    dst[n] = 0;
}

fn cstr(buf: &[u8]) -> &[u8] {
    let n = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    &buf[..n]
}

/// The runtime's executable segment: the exempt range of the trap fallback.
unsafe fn own_text() -> Option<(u64, u64)> {
    let mut info: libc::Dl_info = core::mem::zeroed();
    if libc::dladdr(own_text as *const libc::c_void, &mut info) == 0 || info.dli_fbase.is_null() {
        return None;
    }
    let base = info.dli_fbase as usize;
    let ehdr = &*(base as *const libc::Elf64_Ehdr);
    let phdrs = core::slice::from_raw_parts(
        (base + ehdr.e_phoff as usize) as *const libc::Elf64_Phdr,
        ehdr.e_phnum as usize,
    );
    let bias = if ehdr.e_type == libc::ET_EXEC { 0 } else { base as u64 };
    let me = own_text as *const () as usize as u64;
    phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0)
        .map(|p| (bias + p.p_vaddr, p.p_memsz))
        .find(|(start, len)| me >= *start && me < start + len)
}

/// Creates and maps a fresh segment at `at` (0: anywhere). Returns its address.
unsafe fn map_segment(at: usize) -> Result<usize, i64> {
    let fixed = if at != 0 { libc::MAP_FIXED } else { 0 };
    let dir = &*core::ptr::addr_of!(INSTANCE_DIR);
    if dir[0] == 0 {
        let r = raw::mmap(
            at,
            SEGMENT_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | fixed,
            -1,
            0,
        );
        if r < 0 {
            return Err(r);
        }
        (*(r as *mut SegmentHeader)).init(raw::getpid());
        set_program_name(r as usize);
        return Ok(r as usize);
    }
    // <dir>/<pid>-<seq>.seg, created exclusively (an exec'd image keeps its pid).
    let mut path = [0u8; 2100];
    let pid = raw::getpid();
    let fd = loop {
        let seq = SEGMENT_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut w = crate::stats::FixedBuf { buf: &mut path, len: 0 };
        let _ = core::fmt::Write::write_fmt(
            &mut w,
            format_args!("{}/{pid}-{seq}.seg\0", core::str::from_utf8_unchecked(cstr(dir))),
        );
        let len = w.len;
        let fd = raw::open(
            &path[..len],
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600,
        );
        if fd == -(libc::EEXIST as i64) {
            continue;
        }
        if fd < 0 {
            return Err(fd);
        }
        break fd as i32;
    };
    let r = raw::syscall2(libc::SYS_ftruncate as usize, fd as u64, SEGMENT_SIZE as u64);
    if r < 0 {
        raw::close(fd);
        return Err(r);
    }
    let r = raw::mmap(at, SEGMENT_SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | fixed, fd, 0);
    raw::close(fd);
    if r < 0 {
        return Err(r);
    }
    (*(r as *mut SegmentHeader)).init(pid);
    set_program_name(r as usize);
    SEGMENT_IS_FILE.store(true, Ordering::Relaxed);
    Ok(r as usize)
}

/// Names the segment after the program: the loaded one, else the process's
/// executable (raw readlink: this also runs in fork children).
unsafe fn set_program_name(seg: usize) {
    let hdr = &mut *(seg as *mut SegmentHeader);
    let mut buf = [0u8; 4096];
    let full: &[u8] = match program_path() {
        Some(p) => p,
        None => {
            let n = raw::syscall3(libc::SYS_readlink as usize, b"/proc/self/exe\0".as_ptr() as u64, buf.as_mut_ptr() as u64, buf.len() as u64);
            if n <= 0 {
                return;
            }
            &buf[..n as usize]
        }
    };
    let base = full.rsplit(|&c| c == b'/').next().unwrap_or(full);
    let n = base.len().min(hdr.program.len() - 1);
    hdr.program[..n].copy_from_slice(&base[..n]);
    hdr.program[n] = 0;
}

/// Installs the runtime in this process and attaches the calling thread.
pub fn install(opts: Options) -> Result<(), InstallError> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Err(InstallError::AlreadyInstalled);
    }
    unsafe {
        const HWCAP2_FSGSBASE: u64 = 1 << 1;
        if libc::getauxval(libc::AT_HWCAP2) & HWCAP2_FSGSBASE == 0 {
            return Err(InstallError::NoFsgsbase);
        }
        let (text_start, text_len) = own_text().ok_or(InstallError::NoText)?;
        vdso::init();
        rng::reseed().map_err(|e| InstallError::Seed(-e))?;
        sys::ids::refresh_pid();

        if let Some(dir) = &opts.instance_dir {
            std::fs::create_dir_all(dir).map_err(|e| InstallError::InstanceDir(dir.clone(), e))?;
            store_cstr(&mut *core::ptr::addr_of_mut!(INSTANCE_DIR), dir);
            events::set_path(dir.join("events").as_os_str().as_encoded_bytes());
        }
        if let (Some(report), Some(_)) = (&opts.report_to, &opts.instance_dir) {
            store_cstr(&mut *core::ptr::addr_of_mut!(REPORT_PATH), report);
            REPORT_PID.store(raw::getpid(), Ordering::Relaxed);
        }
        let seg = map_segment(0).map_err(|e| InstallError::Map { what: "the stats segment", errno: -e })?;
        let stacks = raw::mmap(
            0,
            MAX_SLOTS * STACK_STRIDE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if stacks < 0 {
            return Err(InstallError::Map { what: "the runtime stacks", errno: -stacks });
        }
        thread::STACKS_BASE.store(stacks as usize, Ordering::Relaxed);
        thread::SEGMENT_BASE.store(seg, Ordering::Relaxed);
        *core::ptr::addr_of_mut!(thread::SLOT_BITMAP_PTR) =
            (*(seg as *mut SegmentHeader)).slot_bitmap.as_mut_ptr() as *mut u64;

        dispatch::configure(opts.policy.as_ref());
        set_exec_injection(&opts);
        if opts.trap {
            trap::install(text_start, text_len).map_err(|e| InstallError::Sigsys(-e))?;
        }
    }
    thread::attach_current(opts.trap)?;
    Ok(())
}

pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// A copy of a thread block taken before `fork`, on the private runtime
/// stack: after `fork`, the child's view of the (shared) segment is the
/// parent's live memory, which the parent goes on changing.
pub(crate) struct BlockSnapshot(core::mem::MaybeUninit<[u8; COUNTERS_OFFSET]>);

impl BlockSnapshot {
    #[inline(always)]
    pub(crate) fn take(tb: *const ThreadBlock) -> Self {
        let mut s = BlockSnapshot(core::mem::MaybeUninit::uninit());
        unsafe { crate::mem::copy(s.0.as_mut_ptr() as *mut u8, tb as *const u8, COUNTERS_OFFSET) };
        s
    }
}

/// Reinitialises process state in a fork child, on the child's only thread
/// (`tb`, whose state before the fork is `snap`): first a stats segment of
/// its own (nothing of the shared one may be written before that), then
/// ids, RNG, the slot bitmap, and its trap fallback (the kernel does not
/// inherit SUD).
pub(crate) unsafe fn after_fork_in_child(tb: *mut ThreadBlock, snap: &BlockSnapshot) {
    let seg = thread::SEGMENT_BASE.load(Ordering::Relaxed);
    // The snapshot is bytes (unaligned for a ThreadBlock): read the field so.
    let slot = core::ptr::read_unaligned(core::ptr::addr_of!((*(snap.0.as_ptr() as *const ThreadBlock)).slot));
    if SEGMENT_IS_FILE.load(Ordering::Relaxed) {
        // Map a new segment elsewhere, put the snapshot in it, then move it
        // where the old one was (GS keeps pointing at the same address).
        let fresh = match map_segment(0) {
            Ok(a) => a,
            Err(_) => events::fatal(b"could not create a stats segment after fork"),
        };
        let block_off = tb as usize - seg;
        crate::mem::copy((fresh + block_off) as *mut u8, snap.0.as_ptr() as *const u8, COUNTERS_OFFSET);
        let r = raw::syscall6(
            libc::SYS_mremap as usize,
            [fresh as u64, SEGMENT_SIZE as u64, SEGMENT_SIZE as u64,
             (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64, seg as u64, 0],
        );
        if r < 0 {
            events::fatal(b"could not move the stats segment after fork");
        }
    } else {
        let hdr = &*(seg as *const SegmentHeader);
        for w in &hdr.slot_bitmap {
            w.store(0, Ordering::Relaxed);
        }
    }
    let hdr = &*(seg as *const SegmentHeader);
    hdr.slot_bitmap[slot as usize / 64].fetch_or(1 << (slot % 64), Ordering::Relaxed);
    hdr.slots_high.fetch_max(slot + 1, Ordering::Relaxed);

    sys::ids::refresh_pid();
    (*tb).tid = raw::gettid() as i64;
    (*tb).flags &= !(TBF_VFORK_CHILD | TBF_NO_ID_CACHE | TBF_PARENT_FREES | TBF_SUD_ARMED);
    if rng::reseed().is_err() {
        events::fatal(b"could not reseed the random number generator after fork");
    }
    if trap::enabled() && trap::arm_thread(tb).is_err() {
        events::fatal(b"could not arm the trap fallback after fork");
    }
}

/// Called by `exit_group`: in stand-alone mode the root process writes the
/// instance's report. Uses raw syscalls and no allocation (the program may be
/// exiting from a signal handler that interrupted malloc).
pub(crate) fn on_process_exit() {
    let pid = REPORT_PID.load(Ordering::Relaxed);
    if pid == 0 || pid != raw::getpid() {
        return;
    }
    unsafe {
        let dir = cstr(&*core::ptr::addr_of!(INSTANCE_DIR));
        let out = cstr(&*core::ptr::addr_of!(REPORT_PATH));
        if let Err(what) = crate::stats::write_standalone_report(dir, out) {
            events::fatal(what);
        }
    }
}

/// `Options` from the environment that `shunt run` (or a stand-alone
/// `SHUNT_STATS=FILE ./prog`) sets, for the library constructor and the
/// loader: `SHUNT_INSTANCE`, `SHUNT_STATS`, `SHUNT_TRAP`, `SHUNT_LIB`,
/// `SHUNT_EXE`; the policy is read from `<instance>/policy` if present.
///
/// The variables are then removed from the environment, and libshunt.so from
/// `LD_PRELOAD`, so that the program sees the environment it would have
/// natively; `execve` puts them back for the next image (`sys/exec.rs`).
/// Call it while the process is single-threaded (a constructor, a loader).
pub fn options_from_env() -> Result<Options, String> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let mut opts = Options {
        lib: var("SHUNT_LIB").map(PathBuf::from).or_else(own_shared_object),
        exe: var("SHUNT_EXE").map(PathBuf::from).or_else(own_executable),
        patch: var("SHUNT_PATCH").is_none_or(|v| v != "0"),
        ..Default::default()
    };
    if let Some(dir) = var("SHUNT_INSTANCE") {
        let dir = PathBuf::from(dir);
        let policy_file = dir.join("policy");
        if policy_file.exists() {
            let text = std::fs::read_to_string(&policy_file)
                .map_err(|e| format!("{}: {e}", policy_file.display()))?;
            opts.policy = Some(Compiled::from_text(&text).map_err(|e| format!("{}: {e}", policy_file.display()))?);
        }
        opts.instance_dir = Some(dir);
    } else if let Some(report) = var("SHUNT_STATS") {
        // Stand-alone: this process is the root of its own instance.
        let report = PathBuf::from(report);
        let dir = std::env::temp_dir().join(format!("shunt-{}-{}", std::process::id(), nanos()));
        opts.instance_dir = Some(dir);
        opts.report_to = Some(report);
    }
    // The trap fallback is armed when there is an instance to report to
    // (`shunt run`, or stand-alone stats), unless SHUNT_TRAP says otherwise:
    // a `shunt cc` program run natively needs no fallback once glibc is
    // patched, and SUD taxes every syscall it lets through.
    opts.trap = match var("SHUNT_TRAP").as_deref().and_then(|v| v.to_str()) {
        Some("0") => false,
        Some(_) => true,
        None => opts.instance_dir.is_some(),
    };
    for k in ["SHUNT_INSTANCE", "SHUNT_STATS", "SHUNT_TRAP", "SHUNT_LIB", "SHUNT_EXE", "SHUNT_PATCH"] {
        // (SHUNT_SIGPIPE is the loader's, read and removed by `shunt load`.)
        std::env::remove_var(k);
    }
    if let (Some(lib), Some(preload)) = (&opts.lib, std::env::var_os("LD_PRELOAD")) {
        let rest: Vec<_> = preload
            .to_string_lossy()
            .split([':', ' '])
            .filter(|e| !e.is_empty() && Path::new(e) != lib.as_path() && !e.ends_with("/libshunt.so"))
            .map(str::to_string)
            .collect();
        if rest.is_empty() {
            std::env::remove_var("LD_PRELOAD");
        } else {
            std::env::set_var("LD_PRELOAD", rest.join(":"));
        }
    }
    Ok(opts)
}

/// The path of the shared object this code is in when it is one
/// (libshunt.so); `None` in the shunt executable.
fn own_shared_object() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    let found = unsafe { libc::dladdr(own_shared_object as *const () as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_str().ok()?;
    let file = Path::new(name).file_name()?.to_string_lossy().to_string();
    if !(file.ends_with(".so") || file.contains(".so.")) {
        return None;
    }
    std::fs::canonicalize(name).ok()
}

/// The shunt executable, when this code is in it (the loader).
fn own_executable() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let name = exe.file_name()?.to_string_lossy().to_string();
    (name == "shunt").then_some(exe)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

