//! Leaving nothing behind: processes, cgroups, mounts, shim sockets and
//! the directory of a private containerd, also after a failure or after
//! the process that owned it was killed.
//!
//! What one daemon can leave, and how it is found again from its
//! directory alone (so a later run can sweep a killed run's leftovers):
//! - processes: containerd (`--config <dir>/config.toml`) and its shims
//!   (`-address <dir>/containerd.sock`) mention the directory in their
//!   command line; the containers' processes are in the cgroups
//!   `/<namespace>/<id>` of every cgroup hierarchy (runc names them so);
//! - mounts: the containers' root filesystems, under `<dir>/state`;
//! - shim sockets: `/run/containerd/s/<sha256(socket/namespace/id)>`
//!   (containerd 1.6's rule), for the ids found in the state and runc
//!   directories.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use shunt_paths::mountinfo::mounts;

/// The prefix of the default directories under /tmp.
pub(crate) const DIR_PREFIX: &str = "shunt-containerd-";

/// Records who owns `dir`: our pid, its start time and the namespace.
pub(crate) fn write_owner(dir: &Path, namespace: &str) -> Result<()> {
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    std::fs::write(dir.join("owner"), format!("{pid} {start} {namespace}\n"))
        .with_context(|| format!("cannot write {}", dir.join("owner").display()))
}

/// A process's start time (field 22 of /proc/PID/stat), to tell it from a
/// later process that reused its pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// The directories under `parent` of a private containerd, each with its
/// recorded owner: (directory, owner pid, owner start time, namespace).
fn owned_dirs(parent: &Path) -> Vec<(PathBuf, u32, u64, String)> {
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = e.path();
        let Ok(owner) = std::fs::read_to_string(dir.join("owner")) else { continue };
        let f: Vec<&str> = owner.split_whitespace().collect();
        let (Some(pid), Some(start), Some(ns)) =
            (f.first().and_then(|p| p.parse::<u32>().ok()), f.get(1).and_then(|s| s.parse::<u64>().ok()), f.get(2))
        else {
            continue;
        };
        out.push((dir, pid, start, ns.to_string()));
    }
    out
}

/// Sweeps every `/tmp/shunt-containerd-*` whose owner is gone.
pub(crate) fn sweep_stale(parent: &Path) {
    for (dir, pid, start, ns) in owned_dirs(parent) {
        if start_time(pid) == Some(start) {
            continue; // its owner still runs
        }
        let errors = sweep(&dir, &dir.join("containerd.sock"), &ns, &[]);
        for e in errors {
            eprintln!("shunt-containerd: sweeping {} left by a killed run: {e}", dir.display());
        }
    }
}

/// What a process that ran a private containerd left once it is gone
/// (killed before its clean-up ran): every `/tmp/shunt-containerd-*`
/// whose recorded owner is `pid` and no longer runs is swept — its
/// containerd, shims and containers killed, their mounts (root
/// filesystems, snapshots) and cgroups removed, the directory with
/// containerd's state removed. Returns the directories swept and the
/// steps that failed. Nothing is touched while the owner still runs.
pub fn sweep_left_by(pid: u32) -> (Vec<PathBuf>, Vec<String>) {
    let (mut swept, mut errors) = (Vec::new(), Vec::new());
    for (dir, owner, start, ns) in owned_dirs(Path::new("/tmp")) {
        if owner != pid || start_time(owner) == Some(start) {
            continue;
        }
        errors.extend(sweep(&dir, &dir.join("containerd.sock"), &ns, &[]).into_iter().map(|e| format!("{}: {e}", dir.display())));
        swept.push(dir);
    }
    (swept, errors)
}

/// Every mount point of the cgroup hierarchies (v1 controllers and v2).
fn cgroup_mounts() -> Vec<PathBuf> {
    mounts().into_iter().filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2").map(|m| m.mount_point).collect()
}

/// Makes `/<namespace>` in the cpuset hierarchy with `cpus`, so that every
/// container runc starts there inherits them.
pub(crate) fn prepare_cpuset(namespace: &str, cpus: &str) -> Result<()> {
    let Some(mp) = mounts().into_iter().find(|m| m.fstype == "cgroup" && m.mount_point.join("cpuset.cpus").is_file()).map(|m| m.mount_point)
    else {
        bail!("placing containers on CPUs {cpus} needs the cgroup v1 cpuset controller, which this machine does not mount");
    };
    let dir = mp.join(namespace);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mems = std::fs::read_to_string(mp.join("cpuset.mems"))?;
    std::fs::write(dir.join("cpuset.mems"), mems.trim()).with_context(|| format!("cannot set {}/cpuset.mems", dir.display()))?;
    std::fs::write(dir.join("cpuset.cpus"), cpus).with_context(|| format!("cannot set {}/cpuset.cpus to {cpus}", dir.display()))?;
    Ok(())
}

/// A pidfd for `pid`, or None when it is gone.
fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_signal(fd: &OwnedFd, sig: i32) {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0) };
}

/// Waits until every process behind `fds` has exited, up to `deadline`;
/// returns how many are still running.
fn wait_exited(fds: &[OwnedFd], deadline: Instant) -> usize {
    let mut pending: Vec<libc::pollfd> =
        fds.iter().map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // SAFETY: `pending` is a valid array of pollfds of its length.
        let n = unsafe { libc::poll(pending.as_mut_ptr(), pending.len() as libc::nfds_t, left.as_millis().max(1) as i32) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
        pending.retain(|p| p.revents == 0);
        for p in &mut pending {
            p.revents = 0;
        }
    }
    pending.len()
}

/// SIGTERM, then SIGKILL after `grace`; reaps the child.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    if let Some(fd) = pidfd(child.id() as i32) {
        pidfd_signal(&fd, libc::SIGTERM);
        if wait_exited(std::slice::from_ref(&fd), Instant::now() + grace) > 0 {
            pidfd_signal(&fd, libc::SIGKILL);
        }
    }
    child.wait()?;
    Ok(())
}

/// Processes whose command line mentions `dir` (containerd, its shims).
fn processes_mentioning(dir: &Path) -> Vec<i32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Container ids that `dir` knows of (task state and runc state).
fn known_ids(dir: &Path, namespace: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for d in [dir.join("state/io.containerd.runtime.v2.task").join(namespace), dir.join("runc")] {
        if let Ok(entries) = std::fs::read_dir(d) {
            ids.extend(entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
        }
    }
    ids
}

/// The shim socket containerd 1.6 derives for a container.
fn shim_socket(socket: &Path, namespace: &str, id: &str) -> PathBuf {
    let key = socket.join(namespace).join(id);
    let digest = Sha256::digest(key.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Path::new("/run/containerd/s").join(hex)
}

/// Removes whatever the daemon in `dir` left: kills its processes and the
/// processes in its cgroups, unmounts, removes cgroups, shim sockets and
/// the directory. Returns the steps that failed (an empty list is success).
pub(crate) fn sweep(dir: &Path, socket: &Path, namespace: &str, ids: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut ids: BTreeSet<String> = ids.iter().cloned().collect();
    ids.extend(known_ids(dir, namespace));

    // 1. Processes: the daemon and shims, then everything in the cgroups.
    let cgroup_dirs: Vec<PathBuf> = cgroup_mounts().into_iter().map(|mp| mp.join(namespace)).filter(|d| d.is_dir()).collect();
    let mut pids: BTreeSet<i32> = processes_mentioning(dir).into_iter().collect();
    for d in &cgroup_dirs {
        for f in walk_files(d, "cgroup.procs") {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    let fds: Vec<OwnedFd> = pids.iter().filter_map(|&p| pidfd(p)).collect();
    for fd in &fds {
        pidfd_signal(fd, libc::SIGKILL);
    }
    let left = wait_exited(&fds, Instant::now() + Duration::from_secs(10));
    if left > 0 {
        errors.push(format!("{left} process(es) survived SIGKILL for 10 s"));
    }

    // 2. Mounts under the directory, deepest first.
    let mut under: Vec<PathBuf> = mounts().into_iter().map(|m| m.mount_point).filter(|mp| mp.starts_with(dir)).collect();
    under.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for mp in under {
        let c = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: a NUL-terminated path; MNT_DETACH never blocks.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            errors.push(format!("cannot unmount {}: {}", mp.display(), std::io::Error::last_os_error()));
        }
    }

    // 3. Cgroups, leaves first.
    for d in &cgroup_dirs {
        let mut all = walk_dirs(d);
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for c in all {
            if let Err(e) = std::fs::remove_dir(&c) {
                errors.push(format!("cannot remove cgroup {}: {e}", c.display()));
            }
        }
    }

    // 4. Shim sockets (a shim killed above could not remove its own).
    for id in &ids {
        let s = shim_socket(socket, namespace, id);
        match std::fs::remove_file(&s) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("cannot remove {}: {e}", s.display())),
        }
    }

    // 5. The directory.
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            errors.push(format!("cannot remove {}: {e}", dir.display()));
        }
    }
    errors
}

/// `dir` and every directory below it.
fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// Every file named `name` in `dir` or below.
fn walk_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    walk_dirs(dir).into_iter().map(|d| d.join(name)).filter(|f| f.is_file()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_start_time_is_found() {
        assert!(start_time(std::process::id()).is_some_and(|t| t > 0));
        assert_eq!(start_time(u32::MAX), None);
    }
}
