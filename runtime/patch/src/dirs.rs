//! Where plan files are found.

use std::path::{Path, PathBuf};

/// Where plans are looked for, in order: `$SHUNT_PLANS`, `<lib_dir>/glibc-plans`
/// (the directory of `libshunt.so`), `<cache root>/glibc-plans` (see
/// `shunt_paths::cache_root`: `$SHUNT_CACHE`, `$XDG_CACHE_HOME/shunt` or
/// `~/.cache/shunt`).
pub fn plan_dirs(lib_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("SHUNT_PLANS").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    if let Some(l) = lib_dir {
        dirs.push(l.join("glibc-plans"));
    }
    if let Some(c) = shunt_paths::cache_root() {
        dirs.push(c.join("glibc-plans"));
    }
    dirs
}

/// The file name of the plan for a build-id (or content key).
pub fn plan_file_name(build_id: &str) -> String {
    format!("{build_id}.plan")
}

/// The directory of the object holding this code (`libshunt.so`).
pub(crate) fn own_dir() -> Option<PathBuf> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr fills `info` for an address inside this object; its
    // file name is a NUL-terminated string the dynamic linker keeps while
    // the object is loaded.
    let name = unsafe {
        if libc::dladdr(own_dir as *const libc::c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(info.dli_fname)
    };
    let p = Path::new(name.to_str().ok()?);
    let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    p.parent().map(Path::to_path_buf)
}

