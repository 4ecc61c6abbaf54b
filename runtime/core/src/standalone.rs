//! Stand-alone instances (`SHUNT_STATS=FILE ./prog`, no supervisor): the
//! root process sums its instance's segments and writes the report when it
//! exits.

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use shunt_abi::segment::{Totals, SEGMENT_SIZE};

use crate::raw::{self, close, mmap, munmap, open};
use crate::text::{cstr, join, store_cstr, FixedBuf};

/// Root of a stand-alone instance (writes the report), or 0.
static REPORT_PID: AtomicI32 = AtomicI32::new(0);
/// NUL-terminated report path.
static mut REPORT_PATH: [u8; 2048] = [0; 2048];

/// Makes this process the root of a stand-alone instance that reports to
/// `out`.
///
/// # Safety
/// Installation only (single-threaded).
pub(crate) unsafe fn set_report(out: &[u8]) {
    // SAFETY: by the caller's promise, the only reference to the buffer.
    unsafe { store_cstr(&mut *core::ptr::addr_of_mut!(REPORT_PATH), out) };
    REPORT_PID.store(raw::getpid(), Ordering::Relaxed);
}

/// Called by `exit_group`: in stand-alone mode the root process writes the
/// instance's report. Uses raw syscalls and no allocation (the program may be
/// exiting from a signal handler that interrupted malloc).
pub(crate) fn on_process_exit() {
    let pid = REPORT_PID.load(Ordering::Relaxed);
    if pid == 0 || pid != raw::getpid() {
        return;
    }
    let dir = crate::segment::instance_dir();
    // SAFETY: written only at installation, read-only afterwards.
    let out = cstr(unsafe { &*core::ptr::addr_of!(REPORT_PATH) });
    // The program has finished: a report that cannot be written (a missing
    // directory, a full disk) is said, and the program's exit stays its own.
    if let Err(what) = write_report(dir, out) {
        crate::events::warning(what, out);
    }
}

/// Sums the segments in `dir` and writes the report to `out` (through a
/// temporary file and `rename`), then removes `dir`. `dir` and `out` are
/// paths without their NUL.
fn write_report(dir: &[u8], out: &[u8]) -> Result<(), &'static [u8]> {
    const SCRATCH: usize = 256 * 1024;
    const TOO_LONG: &[u8] = b"stats: path too long";
    let mut path = [0u8; 4200];
    let mut dst = [0u8; 4200];
    // SAFETY: an anonymous private mapping, zeroed by the kernel.
    let scratch = unsafe {
        mmap(0, SCRATCH, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    if scratch < 0 {
        return Err(b"stats: no memory for the report");
    }
    let scratch = scratch as usize;
    const _: () = assert!(core::mem::size_of::<Totals>() <= 32 * 1024);
    // SAFETY: the scratch mapping is SCRATCH bytes, page-aligned and ours
    // alone; its three parts do not overlap: Totals (all zero bytes are a
    // valid Totals: integers), the getdents buffer, the JSON text.
    let (totals, dents, json) = unsafe {
        (
            &mut *(scratch as *mut Totals),
            core::slice::from_raw_parts_mut((scratch + 32 * 1024) as *mut u8, 32 * 1024),
            core::slice::from_raw_parts_mut((scratch + 64 * 1024) as *mut u8, SCRATCH - 64 * 1024),
        )
    };
    let result = (|| -> Result<(), &'static [u8]> {
        let n = join(&mut path, &[dir]).ok_or(TOO_LONG)?;
        let dfd = open(&path[..n], libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0);
        if dfd < 0 {
            return Err(b"stats: cannot open the instance directory");
        }
        let dfd = dfd as i32;
        loop {
            // SAFETY: getdents64 into the live scratch buffer.
            let got = unsafe {
                raw::syscall3(shunt_abi::syscalls::nr::GETDENTS64, dfd as u64, dents.as_mut_ptr() as u64, dents.len() as u64)
            };
            if got <= 0 {
                break;
            }
            let mut off = 0usize;
            while off < got as usize {
                // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name
                let reclen = u16::from_ne_bytes([dents[off + 16], dents[off + 17]]) as usize;
                let field = &dents[off + 19..off + reclen];
                let name = cstr(field);
                off += reclen;
                if name == b"." || name == b".." {
                    continue;
                }
                let n = join(&mut path, &[dir, b"/", name]).ok_or(TOO_LONG)?;
                if name.ends_with(b".seg") {
                    add_segment_file(totals, &path[..n]);
                }
                // SAFETY: unlink of a NUL-terminated path in a live buffer.
                unsafe { raw::syscall1(shunt_abi::syscalls::nr::UNLINK, path.as_ptr() as u64) };
            }
        }
        close(dfd);
        join(&mut path, &[dir]).ok_or(TOO_LONG)?;
        // SAFETY: rmdir of a NUL-terminated path in a live buffer.
        unsafe { raw::syscall1(shunt_abi::syscalls::nr::RMDIR, path.as_ptr() as u64) };

        let mut w = FixedBuf::new(json);
        shunt_abi::report::write_json(totals, &mut w).map_err(|_| &b"stats: report too large"[..])?;
        let len = w.len;
        let n = join(&mut path, &[out, b".tmp"]).ok_or(TOO_LONG)?;
        let fd = open(&path[..n], libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC, 0o644);
        if fd < 0 {
            return Err(b"stats: no report written: cannot create");
        }
        let wrote = raw::write_all(fd as i32, &json[..len]);
        close(fd as i32);
        join(&mut dst, &[out]).ok_or(TOO_LONG)?;
        // SAFETY: rename of two NUL-terminated paths in live buffers.
        let r = unsafe { raw::syscall2(shunt_abi::syscalls::nr::RENAME, path.as_ptr() as u64, dst.as_ptr() as u64) };
        if wrote.is_err() || r < 0 {
            // SAFETY: unlink of a NUL-terminated path in a live buffer:
            // nothing half-written stays behind.
            unsafe { raw::syscall1(shunt_abi::syscalls::nr::UNLINK, path.as_ptr() as u64) };
            return Err(b"stats: no report written: could not write");
        }
        Ok(())
    })();
    // SAFETY: the scratch mapping, no longer referenced.
    unsafe { munmap(scratch, SCRATCH) };
    result
}

/// Adds the segment file at `path` (NUL-terminated) to `totals`; a segment
/// that cannot be read adds nothing.
fn add_segment_file(totals: &mut Totals, path: &[u8]) {
    let fd = open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0);
    if fd < 0 {
        return;
    }
    // SAFETY: a read-only shared mapping of the segment file.
    let m = unsafe { mmap(0, SEGMENT_SIZE, libc::PROT_READ, libc::MAP_SHARED, fd as i32, 0) };
    close(fd as i32);
    if m < 0 {
        return;
    }
    // SAFETY: the mapping is SEGMENT_SIZE bytes, page-aligned, readable, and
    // read only through atomics (other processes may still write it).
    let words = unsafe { core::slice::from_raw_parts(m as *const AtomicU64, SEGMENT_SIZE / 8) };
    let _ = totals.add_segment(words);
    // SAFETY: the mapping, no longer referenced.
    unsafe { munmap(m as usize, SEGMENT_SIZE) };
}
