//! Where generated overlays live, and how a directory is published there
//! atomically (two builds may race to generate the same entry).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The cache root (`shunt_paths::cache_root`).
pub fn root() -> Result<PathBuf> {
    match shunt_paths::cache_root() {
        Some(p) => Ok(p),
        None => bail!("no cache directory: set SHUNT_CACHE (or XDG_CACHE_HOME or HOME)"),
    }
}

/// 64-bit FNV-1a: a stable key for cache directory names (not security:
/// the cache is the user's own).
pub fn fnv1a(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Size and modification time of the files an entry was generated from: a
/// GOROOT patched in place (same version string) invalidates the entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stamp {
    pub files: Vec<(PathBuf, u64, u128)>,
}

impl Stamp {
    pub fn of(paths: &[PathBuf]) -> Result<Stamp> {
        let mut files = Vec::new();
        for p in paths {
            let m = fs::metadata(p).with_context(|| format!("cannot stat {}", p.display()))?;
            let mtime = m.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
            files.push((p.clone(), m.len(), mtime));
        }
        Ok(Stamp { files })
    }

    /// Whether every file still has the recorded size and time.
    pub fn still_valid(&self) -> bool {
        let paths: Vec<PathBuf> = self.files.iter().map(|f| f.0.clone()).collect();
        Stamp::of(&paths).map(|now| now == *self).unwrap_or(false)
    }
}

/// A fresh private directory next to `final_dir`, to fill and then publish.
pub fn staging_dir(final_dir: &Path) -> Result<PathBuf> {
    let parent = final_dir.parent().context("cache entry has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("cannot create the cache directory {}", parent.display()))?;
    let nanos = std::time::SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = parent.join(format!(".tmp-{}-{nanos}", std::process::id()));
    fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Moves `staging` to `final_dir`. If another process published first, its
/// entry is kept (it is equivalent) and ours is removed.
pub fn publish(staging: &Path, final_dir: &Path) -> Result<()> {
    match fs::rename(staging, final_dir) {
        Ok(()) => Ok(()),
        Err(_) if final_dir.is_dir() => {
            let _ = remove_tree(staging);
            Ok(())
        }
        Err(e) => {
            let _ = remove_tree(staging);
            Err(e).with_context(|| format!("cannot publish {}", final_dir.display()))
        }
    }
}

/// Removes a directory tree, making read-only entries (copied from the Go
/// module cache) writable first.
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    make_writable(dir);
    fs::remove_dir_all(dir)
}

fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::symlink_metadata(p) {
        if m.file_type().is_symlink() {
            return;
        }
        let mut perm = m.permissions();
        perm.set_mode(perm.mode() | 0o700);
        let _ = fs::set_permissions(p, perm);
        if m.is_dir() {
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv_separates_parts() {
        assert_ne!(super::fnv1a(&[b"ab", b"c"]), super::fnv1a(&[b"a", b"bc"]));
        assert_eq!(super::fnv1a(&[b"x"]), super::fnv1a(&[b"x"]));
    }
}
