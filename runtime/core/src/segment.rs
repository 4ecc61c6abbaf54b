//! This process's stats segment: created at installation and again in every
//! fork child (see `shunt_abi::segment` for the layout its readers share).
//!
//! Inside an instance the segment is a file, `<instance>/<pid>-<n>.seg`,
//! mapped `MAP_SHARED`, so that it outlives the process; without one it is
//! private memory whose counters nobody reports.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use shunt_abi::segment::{SegmentHeader, SEGMENT_SIZE};

use crate::{events, raw};
use crate::text::{cstr, store_cstr, FixedBuf};

/// Segment files need `MAP_SHARED` replacement after fork; private memory not.
static SEGMENT_IS_FILE: AtomicBool = AtomicBool::new(false);
static SEGMENT_SEQ: AtomicU32 = AtomicU32::new(0);
/// NUL-terminated instance directory (empty: no instance). Written once at
/// installation, read-only afterwards.
static mut INSTANCE_DIR: [u8; 2048] = [0; 2048];

/// Records the instance directory.
///
/// # Safety
/// Installation only (single-threaded).
pub(crate) unsafe fn set_instance_dir(dir: &[u8]) {
    // SAFETY: by the caller's promise, the only reference to the buffer.
    unsafe { store_cstr(&mut *core::ptr::addr_of_mut!(INSTANCE_DIR), dir) };
}

/// The instance directory, without its NUL; empty without an instance.
pub(crate) fn instance_dir() -> &'static [u8] {
    // SAFETY: written only at installation, read-only afterwards.
    cstr(unsafe { &*core::ptr::addr_of!(INSTANCE_DIR) })
}

/// Whether the segment is a file (inside an instance).
pub(crate) fn is_file() -> bool {
    SEGMENT_IS_FILE.load(Ordering::Relaxed)
}

/// Creates and maps a fresh segment anywhere, its header initialised and
/// published. Returns its address.
pub(crate) fn map_new() -> Result<usize, i64> {
    let dir = instance_dir();
    let pid = raw::getpid();
    let at = match if dir.is_empty() { Err(0) } else { map_file(dir, pid) } {
        Ok(at) => at,
        // A process that changed its user (setpriv --reuid, Go's
        // SysProcAttr.Credential) may no longer create files in the instance
        // directory, which belongs to the instance's first user. It runs on,
        // counted in private memory nobody reports: the instance survives,
        // this process's calls are missing from its report (told once per
        // process). The directory is not opened to other users for it: any
        // user of the machine could then plant segments in the report.
        Err(e) if e == -(libc::EACCES as i64) || e == -(libc::EPERM as i64) => {
            SEGMENT_IS_FILE.store(false, Ordering::Relaxed);
            events::warning(
                b"this process changed its user and may not create its stats segment (its calls are not counted) in",
                dir,
            );
            map_private()?
        }
        Err(0) => map_private()?,
        Err(e) => return Err(e),
    };
    let mut name = [0u8; 4096];
    let program = crate::program::program_name(&mut name);
    // SAFETY: a fresh, zeroed, page-aligned mapping of SEGMENT_SIZE bytes that
    // nothing else refers to yet: its header may be written through `&mut`.
    unsafe { (*(at as *mut SegmentHeader)).init(pid, program) };
    Ok(at)
}

/// A segment in private memory (outside an instance, or when the instance
/// directory refuses this process).
fn map_private() -> Result<usize, i64> {
    // SAFETY: a fresh anonymous mapping at a kernel-chosen address.
    let r = unsafe {
        raw::mmap(
            0,
            SEGMENT_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if r < 0 {
        return Err(r);
    }
    Ok(r as usize)
}

/// A segment file `<dir>/<pid>-<seq>.seg`, mapped shared.
fn map_file(dir: &[u8], pid: i32) -> Result<usize, i64> {
    let at = {
        // <dir>/<pid>-<seq>.seg, created exclusively (an exec'd image keeps its pid).
        let mut path = [0u8; 2100];
        let fd = loop {
            let seq = SEGMENT_SEQ.fetch_add(1, Ordering::Relaxed);
            // The directory is bytes (not necessarily UTF-8): join, don't format.
            let mut num = [0u8; 32];
            let mut nw = FixedBuf::new(&mut num);
            if core::fmt::Write::write_fmt(&mut nw, format_args!("/{pid}-{seq}.seg")).is_err() {
                return Err(-(libc::ENAMETOOLONG as i64));
            }
            let n = nw.len;
            let Some(len) = crate::text::join(&mut path, &[dir, &num[..n]]) else {
                return Err(-(libc::ENAMETOOLONG as i64));
            };
            let fd = raw::open(&path[..len], libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, 0o600);
            if fd == -(libc::EEXIST as i64) {
                continue;
            }
            if fd < 0 {
                return Err(fd);
            }
            break fd as i32;
        };
        // SAFETY: ftruncate and a shared mapping of the file just created.
        let r = unsafe {
            let r = raw::syscall2(shunt_abi::syscalls::nr::FTRUNCATE, fd as u64, SEGMENT_SIZE as u64);
            if r < 0 {
                raw::close(fd);
                return Err(r);
            }
            raw::mmap(0, SEGMENT_SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        raw::close(fd);
        if r < 0 {
            return Err(r);
        }
        SEGMENT_IS_FILE.store(true, Ordering::Relaxed);
        r as usize
    };
    Ok(at)
}
