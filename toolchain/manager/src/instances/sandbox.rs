//! What an instance sees of the file system.
//!
//! An instance on the host's root (a function built on this machine whose
//! image is its bundle) gets a private mount namespace in which its copy
//! of its secrets is bound read-only at `/var/openfaas/secrets`, as OpenFaaS
//! promises; nothing else changes, and no other process sees the mount.
//! That needs root (`CAP_SYS_ADMIN`); without it, an instance whose
//! function names secrets is refused with a message saying so. The mount
//! point is created on the host once (an empty directory).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context, Result};
use shunt_supervisor::PreExec;

use super::backend::LaunchSpec;

/// The pre-exec hook for `spec`, if it needs one.
pub fn hook(spec: &LaunchSpec) -> Result<Option<PreExec>> {
    if spec.binds.is_empty() {
        return Ok(None);
    }
    if spec.root.is_some() {
        bail!("instances in an image root are not supported by this backend yet");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "function {} names secrets, which appear at /var/openfaas/secrets only in a private mount namespace: run the daemon as root",
            spec.function
        );
    }
    let mut mounts = Vec::new();
    for b in &spec.binds {
        std::fs::create_dir_all(&b.target).with_context(|| format!("cannot create the mount point {}", b.target.display()))?;
        let src = CString::new(b.source.as_os_str().as_bytes()).context("a bind source contains a NUL byte")?;
        let dst = CString::new(b.target.as_os_str().as_bytes()).context("a bind target contains a NUL byte")?;
        mounts.push((src, dst, b.read_only));
    }
    let root = CString::new("/").expect("no NUL");
    Ok(Some(Box::new(move || {
        // Runs in the forked child before exec: system calls only.
        // SAFETY: every pointer is a NUL-terminated string owned by this
        // closure (made before the fork) or null where mount(2) allows it.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Mounts made here must not propagate back to the host.
            if libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for (src, dst, ro) in &mounts {
                if libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if *ro {
                    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
                    if libc::mount(std::ptr::null(), dst.as_ptr(), std::ptr::null(), flags, std::ptr::null()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
        }
        Ok(())
    })))
}
