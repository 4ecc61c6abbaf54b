//! What this process runs: the path of the program the loader mapped (what
//! `/proc/self/exe` names for it), and the name its stats segment carries.

use crate::raw;
use crate::text::{cstr, store_cstr};

/// The program the loader runs, NUL-terminated; empty otherwise. Written
/// once by the loader before the runtime is installed.
static mut PROGRAM_PATH: [u8; 4096] = [0; 4096];

/// Records the path of the program the loader runs in this process.
///
/// # Safety
/// Before installation, single-threaded (nothing reads the path meanwhile).
pub unsafe fn set_program_path(path: &[u8]) {
    // SAFETY: by the caller's promise, the only reference to the buffer.
    unsafe { store_cstr(&mut *core::ptr::addr_of_mut!(PROGRAM_PATH), path) };
}

/// The loaded program's path, if this process runs one through the loader.
pub(crate) fn program_path() -> Option<&'static [u8]> {
    // SAFETY: written only before installation, read-only afterwards.
    let p = cstr(unsafe { &*core::ptr::addr_of!(PROGRAM_PATH) });
    (!p.is_empty()).then_some(p)
}

/// The file name of the program: the loaded one, else the process's
/// executable (a raw readlink: this also runs in fork children). Written
/// into `buf`; returns the name's bytes.
pub(crate) fn program_name(buf: &mut [u8; 4096]) -> &[u8] {
    let full: &[u8] = match program_path() {
        Some(p) => p,
        None => {
            // SAFETY: readlink into a live 4096-byte buffer.
            let n = unsafe {
                raw::syscall3(
                    shunt_abi::syscalls::nr::READLINK,
                    c"/proc/self/exe".as_ptr() as u64,
                    buf.as_mut_ptr() as u64,
                    buf.len() as u64,
                )
            };
            if n <= 0 {
                return &[];
            }
            &buf[..n as usize]
        }
    };
    full.rsplit(|&c| c == b'/').next().unwrap_or(full)
}
