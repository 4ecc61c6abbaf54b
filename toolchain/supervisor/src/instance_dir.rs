//! Instance directories: `<root>/shunt-XXXXXX`, one per instance.
//!
//! The root is `$SHUNT_INSTANCE_ROOT`, else `/dev/shm` when writable, else
//! the temporary directory. A directory holds `owner.lock` (locked by the
//! supervisor for the instance's life), `cgroups` (the instance's cgroup
//! paths) and, on the shunt runtime, `policy`, `events` and one stats
//! segment (32 MiB, sparse) per process.
//!
//! The supervisor removes the directory when the instance has ended. If the
//! supervisor itself dies (SIGKILL), its instances are killed by their
//! reapers, and the next supervisor to start removes what is left: every
//! directory whose `owner.lock` it can lock has no live owner (the kernel
//! drops a `flock` with its last holder). Directories without an
//! `owner.lock` (older shunt versions) are left alone.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub(crate) const PREFIX: &str = "shunt-";
const LOCK: &str = "owner.lock";
pub(crate) const CGROUPS: &str = "cgroups";

/// Where instance directories go.
pub(crate) fn root() -> PathBuf {
    if let Some(r) = std::env::var_os("SHUNT_INSTANCE_ROOT").filter(|v| !v.is_empty()) {
        return PathBuf::from(r);
    }
    let shm = Path::new("/dev/shm");
    let writable = shm.is_dir() && std::fs::metadata(shm).map(|m| !m.permissions().readonly()).unwrap_or(false);
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A live instance's directory; removed on drop unless kept.
#[derive(Debug)]
pub(crate) struct InstanceDir {
    pub path: PathBuf,
    pub name: String,
    /// Holds the `flock` that marks the directory as owned.
    _lock: File,
    pub keep: bool,
}

fn try_lock(f: &File) -> bool {
    // SAFETY: flock on a descriptor this `File` owns.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl InstanceDir {
    pub(crate) fn create(root: &Path) -> Result<InstanceDir> {
        std::fs::create_dir_all(root).with_context(|| format!("cannot create the instance root {}", root.display()))?;
        let path = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(root)
            .with_context(|| format!("cannot create an instance directory in {}", root.display()))?
            .keep();
        // Locked under another name, then renamed: a supervisor cleaning up
        // never sees an `owner.lock` that is not locked yet.
        let tmp = path.join(".owner.lock");
        let lock = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        if !try_lock(&lock) {
            anyhow::bail!("cannot lock {}", tmp.display());
        }
        std::fs::rename(&tmp, path.join(LOCK)).with_context(|| format!("cannot create {}", path.join(LOCK).display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(InstanceDir { path, name, _lock: lock, keep: false })
    }
}

impl Drop for InstanceDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn free_all_but_retry(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let n = e.file_name();
        if n == LOCK || n == CGROUPS {
            continue;
        }
        let p = e.path();
        let _ = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

/// Removes the directories (and cgroups) of instances whose supervisor
/// died. Returns how many were removed.
pub(crate) fn remove_stale(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let dir = e.path();
        let Ok(lock) = File::options().read(true).write(true).open(dir.join(LOCK)) else { continue };
        if !try_lock(&lock) {
            continue; // its supervisor is alive
        }
        let cgroups = std::fs::read_to_string(dir.join(CGROUPS)).unwrap_or_default();
        if crate::cgroup::remove_stale(&cgroups) {
            if std::fs::remove_dir_all(&dir).is_ok() {
                removed += 1;
            }
        } else {
            // A cgroup whose killed processes have not exited yet: keep
            // what the next start needs to retry (`owner.lock`, `cgroups`)
            // and free the rest now (each stats segment is 32 MiB).
            free_all_but_retry(&dir);
        }
    }
    removed
}
