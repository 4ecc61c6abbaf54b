//! The cgroups of an instance.
//!
//! Every instance gets a cgroup v2 of its own when the machine has a
//! writable cgroup2 hierarchy — on the project's machines a controller-less
//! one at `/sys/fs/cgroup/unified`, where `cgroup.kill` (kill everything in
//! it at once, even processes that left the process group) and
//! `cgroup.events` work. It lives under the supervisor's own cgroup, in
//! `shunt/<instance name>`. Where the v2 hierarchy offers no memory
//! controller, a memory limit is enforced with the cgroup v1 `memory`
//! controller when that one is writable (as on these machines); otherwise
//! the instance runs without the limit and says so.
//!
//! Without a writable cgroup2 hierarchy an instance is contained by its
//! process group and its reaper (see `child.rs`).

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the instance cgroups of this process go.
#[derive(Clone, Debug)]
pub(crate) struct Roots {
    /// `<cgroup2 mount><own cgroup>/shunt`, when writable; else why not.
    pub v2: Result<PathBuf, String>,
    /// `<memory v1 mount><own cgroup>/shunt`, when writable.
    pub v1_memory: Option<PathBuf>,
}

/// This process's cgroup in the hierarchy named by `pred` (from
/// `/proc/self/cgroup`: `id:controllers:path`).
fn own_path(pred: impl Fn(&str, &str) -> bool) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (id, ctrl, path) = (it.next()?, it.next()?, it.next()?);
        pred(id, ctrl).then(|| path.to_string())
    })
}

fn join_own(mount: &Path, mount_root: &str, own: &str) -> PathBuf {
    let rel = own.strip_prefix(mount_root).unwrap_or(own).trim_start_matches('/');
    mount.join(rel)
}

fn ensure_dir(p: &Path) -> Result<(), String> {
    match std::fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", p.display())),
    }
}

impl Roots {
    pub(crate) fn discover() -> Roots {
        let mounts = shunt_paths::mountinfo::mounts();
        let v2 = match mounts.iter().find(|m| m.fstype == "cgroup2") {
            None => Err("this machine has no cgroup2 hierarchy mounted".to_string()),
            Some(m) => match own_path(|id, ctrl| id == "0" && ctrl.is_empty()) {
                None => Err("this process is in no cgroup2 cgroup".to_string()),
                Some(own) => {
                    let base = join_own(&m.mount_point, &m.root, &own).join("shunt");
                    ensure_dir(&base).and_then(|()| {
                        if base.join("cgroup.procs").exists() {
                            Ok(base)
                        } else {
                            Err(format!("{} is not a cgroup", base.display()))
                        }
                    })
                }
            },
        };
        let v1_memory = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "memory"))
            .and_then(|m| {
                let own = own_path(|_, ctrl| ctrl.split(',').any(|c| c == "memory"))?;
                let base = join_own(&m.mount_point, &m.root, &own).join("shunt");
                ensure_dir(&base).ok()?;
                base.join("memory.limit_in_bytes").exists().then_some(base)
            });
        Roots { v2, v1_memory }
    }
}

/// How an instance's memory limit is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryLimit {
    /// No limit was asked for.
    Unlimited,
    /// Enforced by the kernel (`how`: which controller file).
    Enforced { bytes: u64, how: String },
    /// Asked for, but this machine cannot enforce it: the instance runs
    /// without it.
    NotEnforced { bytes: u64, reason: String },
}

/// The cgroups of one instance, removed when it is dropped (they are empty
/// by then: the instance's reaper has seen every process go).
#[derive(Debug, Default)]
pub(crate) struct InstanceCgroups {
    pub v2: Option<PathBuf>,
    pub v1_memory: Option<PathBuf>,
}

pub(crate) struct Opened {
    /// `cgroup.procs` files the program's process writes itself into.
    pub procs: Vec<OwnedFd>,
    /// `cgroup.kill` of the v2 cgroup.
    pub kill: Option<OwnedFd>,
    /// The v2 cgroup's directory (for `CLONE_INTO_CGROUP`).
    pub dir: Option<OwnedFd>,
}

fn open_w(p: &Path) -> std::io::Result<OwnedFd> {
    Ok(OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(p)?.into())
}

impl InstanceCgroups {
    /// Creates `name`'s cgroups; returns them, how the memory limit is
    /// applied, and why there is no v2 cgroup (if there is none).
    pub(crate) fn create(roots: &Roots, name: &str, memory: Option<u64>) -> (InstanceCgroups, MemoryLimit, Option<String>) {
        let mut cg = InstanceCgroups::default();
        let mut no_v2 = None;
        match &roots.v2 {
            Ok(base) => {
                let dir = base.join(name);
                match std::fs::create_dir(&dir) {
                    Ok(()) => cg.v2 = Some(dir),
                    Err(e) => no_v2 = Some(format!("cannot create the cgroup {}: {e}", dir.display())),
                }
            }
            Err(why) => no_v2 = Some(why.clone()),
        }
        let limit = match memory {
            None => MemoryLimit::Unlimited,
            Some(bytes) => cg.apply_memory_limit(roots, name, bytes),
        };
        (cg, limit, no_v2)
    }

    fn apply_memory_limit(&mut self, roots: &Roots, name: &str, bytes: u64) -> MemoryLimit {
        if let Some(v2) = &self.v2 {
            let max = v2.join("memory.max");
            if max.exists() {
                return match std::fs::write(&max, bytes.to_string()) {
                    Ok(()) => MemoryLimit::Enforced { bytes, how: format!("cgroup v2 {}", max.display()) },
                    Err(e) => MemoryLimit::NotEnforced { bytes, reason: format!("cannot write {}: {e}", max.display()) },
                };
            }
        }
        let Some(base) = &roots.v1_memory else {
            return MemoryLimit::NotEnforced {
                bytes,
                reason: "this machine offers no writable memory controller (neither cgroup v2 `memory.max` nor the v1 `memory` hierarchy)".into(),
            };
        };
        let dir = base.join(name);
        if let Err(e) = std::fs::create_dir(&dir) {
            return MemoryLimit::NotEnforced { bytes, reason: format!("cannot create the memory cgroup {}: {e}", dir.display()) };
        }
        self.v1_memory = Some(dir.clone());
        let limit = dir.join("memory.limit_in_bytes");
        if let Err(e) = std::fs::write(&limit, bytes.to_string()) {
            return MemoryLimit::NotEnforced { bytes, reason: format!("cannot write {}: {e}", limit.display()) };
        }
        // With swap accounting, also cap memory + swap, or swapping would
        // let the instance exceed its limit.
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            let _ = std::fs::write(&memsw, bytes.to_string());
        }
        MemoryLimit::Enforced { bytes, how: format!("cgroup v1 {}", limit.display()) }
    }

    pub(crate) fn open(&self) -> std::io::Result<Opened> {
        let mut procs = Vec::new();
        let mut kill = None;
        let mut dir = None;
        if let Some(v2) = &self.v2 {
            procs.push(open_w(&v2.join("cgroup.procs"))?);
            kill = Some(open_w(&v2.join("cgroup.kill"))?);
            dir = Some(
                OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC).open(v2)?.into(),
            );
        }
        if let Some(v1) = &self.v1_memory {
            procs.push(open_w(&v1.join("cgroup.procs"))?);
        }
        Ok(Opened { procs, kill, dir })
    }

    /// OOM kills in the instance's memory cgroup so far.
    pub(crate) fn oom_kills(&self) -> u64 {
        let read = |p: PathBuf| std::fs::read_to_string(p).ok();
        let field = |text: &str, key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
        };
        if let Some(t) = self.v1_memory.as_ref().and_then(|d| read(d.join("memory.oom_control"))) {
            return field(&t, "oom_kill ").unwrap_or(0);
        }
        if let Some(t) = self.v2.as_ref().and_then(|d| read(d.join("memory.events"))) {
            return field(&t, "oom_kill ").unwrap_or(0);
        }
        0
    }

    /// The paths, one a line (kept in the instance directory so that a
    /// later supervisor can clean up after one that died).
    pub(crate) fn to_text(&self) -> String {
        self.v2.iter().chain(self.v1_memory.iter()).map(|p| format!("{}\n", p.display())).collect()
    }
}

impl Drop for InstanceCgroups {
    fn drop(&mut self) {
        for d in self.v2.iter().chain(self.v1_memory.iter()) {
            remove_tree(d);
        }
    }
}

/// Removes the cgroup `p` and the cgroups below it, deepest first. A
/// program of the instance that runs shunt itself (or any cgroup-aware
/// program) leaves `p/shunt/…` behind, and `rmdir` of a cgroup with
/// children fails. Cgroups that still hold processes stay (rmdir refuses
/// them). Returns whether `p` is gone.
fn remove_tree(p: &Path) -> bool {
    remove_tree_at(p, 0)
}

fn remove_tree_at(p: &Path, depth: usize) -> bool {
    // Bounded: a hostile program could nest cgroups deeply.
    if depth < 32 {
        if let Ok(entries) = std::fs::read_dir(p) {
            for e in entries.flatten() {
                // Cgroup directories hold only control files and child cgroups.
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    remove_tree_at(&e.path(), depth + 1);
                }
            }
        }
    }
    std::fs::remove_dir(p).is_ok() || !p.exists()
}

/// Cleans up the cgroups a dead supervisor left (paths from its instance
/// directory): kills what still runs in them and removes them. Returns
/// whether all are gone (a cgroup whose killed processes have not exited
/// yet stays, and is retried by the next start).
pub(crate) fn remove_stale(paths: &str) -> bool {
    let mut all_gone = true;
    for p in paths.lines().map(Path::new).filter(|p| p.is_absolute() && p.starts_with("/sys/fs/cgroup")) {
        if !p.exists() {
            continue;
        }
        let _ = std::fs::write(p.join("cgroup.kill"), "1");
        if !remove_tree(p) {
            all_gone = false;
        }
    }
    all_gone
}
