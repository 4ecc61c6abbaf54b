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
    SEGMENT_IS_FILE.store(true, Ordering::Relaxed);
    Ok(r as usize)
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
    let slot = (*(snap.0.as_ptr() as *const ThreadBlock)).slot;
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

/// Helper for front ends: `Options` from the environment variables that
/// `shunt run` and stand-alone use set (`SHUNT_INSTANCE`, `SHUNT_STATS`,
/// `SHUNT_TRAP`). The policy is read from `<instance>/policy` if present.
pub fn options_from_env() -> Result<Options, String> {
    let mut opts = Options { trap: std::env::var_os("SHUNT_TRAP").is_none_or(|v| v != "0"), ..Default::default() };
    if let Some(dir) = std::env::var_os("SHUNT_INSTANCE").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        let policy_file = dir.join("policy");
        if policy_file.exists() {
            let text = std::fs::read_to_string(&policy_file)
                .map_err(|e| format!("{}: {e}", policy_file.display()))?;
            opts.policy = Some(Compiled::from_text(&text).map_err(|e| format!("{}: {e}", policy_file.display()))?);
        }
        opts.instance_dir = Some(dir);
    } else if let Some(report) = std::env::var_os("SHUNT_STATS").filter(|d| !d.is_empty()) {
        // Stand-alone: this process is the root of its own instance.
        let report = PathBuf::from(report);
        let dir = std::env::temp_dir().join(format!("shunt-{}-{}", std::process::id(), nanos()));
        opts.instance_dir = Some(dir);
        opts.report_to = Some(report);
    }
    Ok(opts)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

