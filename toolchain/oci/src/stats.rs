//! Where a container's stats live on the host, and what `shunt-oci`
//! remembers of a container between its commands.
//!
//! Beside runc's `--root` (not inside it: `runc list` takes every
//! directory there for a container), in `<root>-shunt/`:
//! - `<id>.json`: the container's record (bundle, root filesystem, stats
//!   directory), written at `create`, removed at `delete`;
//! - `<id>/`: the container's stats directory, unless `io.shunt.stats`
//!   chose another. It is bound into the container at `/.shunt/instance`
//!   and holds the policy, the runtime's events, and one stats segment per
//!   process while the container runs (read live by `shunt-oci stats ID`);
//!   at `delete` the segments are summed into `stats.json` (the report
//!   `shunt run --stats` writes) and removed. `stats.json` stays for the
//!   host to read; the next container with that id starts it afresh.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// What `create` leaves for `exec`, `stats` and `delete`.
#[derive(Serialize, Deserialize, Debug)]
pub struct Record {
    /// The container's root filesystem on the host.
    pub rootfs: PathBuf,
    /// Its stats directory on the host.
    pub stats_dir: PathBuf,
    pub trap: bool,
    pub patch: bool,
    /// Rewriting static programs' syscall sites at load (absent in the
    /// records of an older shunt-oci: on).
    #[serde(default = "on")]
    pub rewrite: bool,
    /// The runtime's files bound at `/.shunt`.
    pub files: PathBuf,
}

fn on() -> bool {
    true
}

/// `<root>-shunt`.
pub fn state_dir(root: &Path) -> PathBuf {
    let mut s = root.as_os_str().to_os_string();
    if s.len() > 1 && s.to_string_lossy().ends_with('/') {
        s = root.components().as_path().as_os_str().to_os_string();
    }
    s.push("-shunt");
    PathBuf::from(s)
}

fn record_path(root: &Path, id: &str) -> Result<PathBuf> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        bail!("container id {id:?} is not valid");
    }
    Ok(state_dir(root).join(format!("{id}.json")))
}

pub fn default_stats_dir(root: &Path, id: &str) -> PathBuf {
    state_dir(root).join(id)
}

pub fn save(root: &Path, id: &str, r: &Record) -> Result<()> {
    let path = record_path(root, id)?;
    let dir = state_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(r)?).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// The record of container `id`, if `create` made one (it ran on shunt).
pub fn load(root: &Path, id: &str) -> Result<Option<Record>> {
    let path = record_path(root, id)?;
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("{}: not a shunt-oci record", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Makes `dir` the fresh stats directory of a container whose processes
/// run as `owner` (host uid, gid): the policy, an empty events file, and
/// nothing left of an earlier container.
pub fn prepare_dir(dir: &Path, policy_text: &str, owner: (u32, u32)) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the stats directory {}", dir.display()))?;
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let old = p.extension().is_some_and(|x| x == "seg")
            || ["stats.json", "policy", "events"].iter().any(|n| p.file_name().is_some_and(|f| f == *n));
        if old {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    std::fs::write(dir.join("policy"), policy_text).context("cannot write the policy")?;
    std::fs::write(dir.join("events"), b"").context("cannot create the events file")?;
    // The container's processes create their segments here and append
    // events: the directory and the events file are theirs.
    for p in [dir.to_path_buf(), dir.join("events")] {
        std::os::unix::fs::chown(&p, Some(owner.0), Some(owner.1)).with_context(|| format!("cannot chown {}", p.display()))?;
    }
    Ok(())
}

/// The container's stats report now (also while it runs).
pub fn live(root: &Path, id: &str) -> Result<shunt_stats::Report> {
    let Some(r) = load(root, id)? else {
        bail!("container {id} does not run on shunt under {} (no record in {})", root.display(), state_dir(root).display())
    };
    Ok(shunt_stats::read_instance(&r.stats_dir)?)
}

/// After runc's delete: sums the segments into `stats.json`, removes them
/// and the record. A container that did not run on shunt has nothing.
pub fn finish(root: &Path, id: &str) -> Result<()> {
    let Some(r) = load(root, id)? else { return Ok(()) };
    let report = shunt_stats::read_instance(&r.stats_dir)?;
    report.write(&r.stats_dir.join("stats.json"))?;
    for e in std::fs::read_dir(&r.stats_dir)?.flatten() {
        if e.path().extension().is_some_and(|x| x == "seg") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let path = record_path(root, id)?;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beside_runcs_root() {
        assert_eq!(state_dir(Path::new("/run/containerd/runc/k8s.io")), PathBuf::from("/run/containerd/runc/k8s.io-shunt"));
        assert_eq!(state_dir(Path::new("/run/runc/")), PathBuf::from("/run/runc-shunt"));
        assert!(record_path(Path::new("/r"), "../x").is_err());
    }
}
