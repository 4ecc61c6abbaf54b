//! What an instance sees of the file system.
//!
//! An instance on the host's root (a function built on this machine whose
//! image is its bundle) gets a private mount namespace in which its copy
//! of its secrets is bound read-only at `/var/openfaas/secrets`, as OpenFaaS
//! promises; nothing else changes, and no other process sees the mount.
//!
//! An instance of an image runs in a private mount namespace rooted at the
//! image's unpacked files (`pivot_root`):
//! - `/` is an overlay: the shared unpacked root (never written) below, a
//!   tmpfs of the instance's own above (its writes vanish with it); with
//!   `readOnlyRootFilesystem` it is remounted read-only;
//! - a fresh `/proc`, a `/dev` tmpfs with the host's `null`, `zero`, `full`,
//!   `random`, `urandom` and `tty` bound in, `/dev/shm`, the usual `/dev/fd`
//!   links, and a private `/tmp` tmpfs (writable whatever the root);
//! - the secrets at `/var/openfaas/secrets` (read-only);
//! - the runtime's own files (`libshunt.so` and `shunt`, the instance
//!   directories) at their host paths, as the supervisor expects, and, for
//!   images that do not have them, the host's dynamic loader
//!   (`/lib64/ld-linux-x86-64.so.2`) and `/lib/x86_64-linux-gnu` (which
//!   `shunt load` needs to start a static or musl program). Nothing of the
//!   image is changed or hidden: these are only added where the image has
//!   nothing.
//!
//! - a network namespace of its own that holds only `lo` (as faasd gives
//!   each container), entered before anything else: images are built to
//!   own their ports (the watchdogs' fixed metrics port 8081 among them);
//!   the supervisor enters it before this hook runs
//!   (`LaunchSpec::netns`), and the gateway reaches the instance's port
//!   through a dialer that connects inside it.
//!
//! - the image's USER (`user[:group]`, names looked up in the image's own
//!   `/etc/passwd` and `/etc/group`, numbers taken as they are; the
//!   supplementary groups those files list the user in): set last, after
//!   every mount, as runc does.
//!
//! All of it needs root (`CAP_SYS_ADMIN`); without it, an instance that
//! needs a namespace is refused with a message saying so. Every path the
//! hook uses is made before the fork: the hook itself makes only system
//! calls.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use shunt_supervisor::PreExec;

use super::backend::LaunchSpec;

/// Where the host's root is kept during the switch (removed before exec).
const OLD_ROOT: &str = "/.shunt-host";
const HOST_LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
const HOST_LIBS: &str = "/lib/x86_64-linux-gnu";
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn c(p: impl AsRef<Path>) -> Result<CString> {
    CString::new(p.as_ref().as_os_str().as_bytes()).context("a path contains a NUL byte")
}

/// Every prefix of the absolute path `p` (`/a`, `/a/b`, …), for `mkdir -p`.
fn prefixes(p: &Path) -> Result<Vec<CString>> {
    let mut out = Vec::new();
    let mut cur = PathBuf::from("/");
    for comp in p.components().skip(1) {
        cur.push(comp);
        out.push(c(&cur)?);
    }
    Ok(out)
}

/// A mount the hook makes inside the image root, after the switch.
struct Bound {
    /// The host path, seen through [`OLD_ROOT`].
    source: CString,
    /// Directories to make first (the last is the target), or the parents of
    /// a file target.
    mkdirs: Vec<CString>,
    target: CString,
    /// The target is a file (made empty first).
    file: bool,
    read_only: bool,
    /// Only when the image has nothing at `target`.
    only_if_absent: bool,
}

fn bound(source: &Path, target: &Path, read_only: bool, only_if_absent: bool) -> Result<Bound> {
    let file = source.is_file();
    let dirs = if file { target.parent().unwrap_or(Path::new("/")) } else { target };
    let old = Path::new(OLD_ROOT).join(source.strip_prefix("/").unwrap_or(source));
    Ok(Bound { source: c(old)?, mkdirs: prefixes(dirs)?, target: c(target)?, file, read_only, only_if_absent })
}

/// The pre-exec hook for `spec`, if it needs one. `runtime_dirs` are the
/// host directories an instance on the runtime must see at the same paths.
pub fn hook(spec: &LaunchSpec, runtime_dirs: &[PathBuf]) -> Result<Option<PreExec>> {
    match &spec.root {
        Some(root) => image_root_hook(spec, root, runtime_dirs).map(Some),
        None if spec.binds.is_empty() => Ok(None),
        None => host_root_hook(spec).map(Some),
    }
}

fn need_root(spec: &LaunchSpec, why: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("function {} {why}, which needs a private mount namespace: run the daemon as root", spec.function);
    }
    Ok(())
}

fn host_root_hook(spec: &LaunchSpec) -> Result<PreExec> {
    need_root(spec, "names secrets (they appear at /var/openfaas/secrets)")?;
    let mut mounts = Vec::new();
    for b in &spec.binds {
        std::fs::create_dir_all(&b.target).with_context(|| format!("cannot create the mount point {}", b.target.display()))?;
        mounts.push((c(&b.source)?, c(&b.target)?, b.read_only));
    }
    let root = c("/")?;
    Ok(Box::new(move || {
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
                bind(src, dst, *ro)?;
            }
        }
        Ok(())
    }))
}

/// `mount --rbind src dst` (then read-only).
///
/// # Safety
/// `src` and `dst` are NUL-terminated; called in the child before exec.
unsafe fn bind(src: &CString, dst: &CString, read_only: bool) -> std::io::Result<()> {
    // SAFETY: as the caller promises.
    unsafe {
        if libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if read_only {
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
            if libc::mount(std::ptr::null(), dst.as_ptr(), std::ptr::null(), flags, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Credentials an instance runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// A file of the image (`/etc/passwd`), read through its own symlinks
/// without leaving the root; none when the image has none.
fn image_file(root: &Path, path: &str) -> Result<Option<String>> {
    let Ok(host) = shunt_supervisor::in_root(root, Path::new(path)) else { return Ok(None) };
    let Ok(meta) = std::fs::metadata(&host) else { return Ok(None) };
    if !meta.is_file() || meta.len() > 1 << 20 {
        bail!("the image's {path} is not a regular file of at most 1 MiB");
    }
    Ok(Some(std::fs::read_to_string(&host).with_context(|| format!("cannot read the image's {path}"))?))
}

/// Resolves an image's USER against its `/etc/passwd` and `/etc/group`.
pub fn resolve_user(root: &Path, user: &str) -> Result<Ids> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = image_file(root, "/etc/passwd")?.unwrap_or_default();
    let group = image_file(root, "/etc/group")?.unwrap_or_default();
    let entries = |text: &str| -> Vec<Vec<String>> {
        text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(|l| l.split(':').map(str::to_string).collect()).collect()
    };
    let users = entries(&passwd);
    let groups = entries(&group);
    let num = |s: &str| s.parse::<u32>().ok();
    let found = users.iter().find(|e| e.len() >= 4 && (e[0] == u || num(u).is_some_and(|n| num(&e[2]) == Some(n))));
    let uid = match (num(u), found) {
        (Some(n), _) => n,
        (None, Some(e)) => num(&e[2]).with_context(|| format!("the image's /etc/passwd gives {u} a uid that is not a number"))?,
        (None, None) => bail!("user {u:?} (the image's USER) is not in the image's /etc/passwd"),
    };
    let name = found.map(|e| e[0].clone());
    let gid = match g {
        Some(g) => match num(g) {
            Some(n) => n,
            None => groups
                .iter()
                .find(|e| e.len() >= 3 && e[0] == g)
                .and_then(|e| num(&e[2]))
                .with_context(|| format!("group {g:?} (the image's USER) is not in the image's /etc/group"))?,
        },
        None => found.and_then(|e| num(&e[3])).unwrap_or(0),
    };
    let mut extra = vec![gid];
    if let (Some(name), None) = (&name, g) {
        for e in groups.iter().filter(|e| e.len() >= 4 && e[3].split(',').any(|m| m == name)) {
            if let Some(n) = num(&e[2]) {
                if !extra.contains(&n) {
                    extra.push(n);
                }
            }
        }
    }
    Ok(Ids { uid, gid, groups: extra })
}

fn image_root_hook(spec: &LaunchSpec, root: &Path, runtime_dirs: &[PathBuf]) -> Result<PreExec> {
    need_root(spec, "runs in its image's root")?;
    let ids = match &spec.user {
        Some(u) => Some(resolve_user(root, u).with_context(|| format!("function {}", spec.function))?),
        None => None,
    };
    let layers = spec.scratch.join("rootfs");
    std::fs::create_dir_all(&layers).with_context(|| format!("cannot create {}", layers.display()))?;
    let lower = root.canonicalize().with_context(|| format!("the image root {} is gone", root.display()))?;
    if lower.as_os_str().as_bytes().iter().any(|b| matches!(b, b',' | b':')) {
        bail!("the image store's path {} has a ',' or ':', which an overlay mount cannot name", lower.display());
    }
    let upper = layers.join("upper");
    let work = layers.join("work");
    let merged = layers.join("root");
    let overlay = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());

    let mut mounts: Vec<Bound> = Vec::new();
    for b in &spec.binds {
        mounts.push(bound(&b.source, &b.target, b.read_only, false)?);
    }
    for d in runtime_dirs {
        let d = d.canonicalize().unwrap_or_else(|_| d.clone());
        let shm = d == Path::new("/dev/shm");
        // The instance directories are written (counters, events); the
        // runtime's files are not.
        mounts.push(bound(&d, &d, !shm && !d.starts_with("/dev/shm"), false)?);
    }
    if !runtime_dirs.is_empty() {
        for p in [HOST_LOADER, HOST_LIBS] {
            let host = Path::new(p).canonicalize().with_context(|| format!("this machine has no {p}, which the runtime needs"))?;
            mounts.push(bound(&host, Path::new(p), true, true)?);
        }
    }
    let devices: Vec<(CString, CString)> =
        DEVICES.iter().map(|d| Ok((c(Path::new(OLD_ROOT).join("dev").join(d))?, c(Path::new("/dev").join(d))?))).collect::<Result<_>>()?;
    let links: Vec<(CString, CString)> = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"), ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]
        .iter()
        .map(|(t, l)| Ok((c(t)?, c(l)?)))
        .collect::<Result<_>>()?;
    let workdir = c(&spec.cwd)?;
    let workdir_dirs = prefixes(&spec.cwd)?;
    let s = [
        c("/")?,
        c(&layers)?,
        c(&upper)?,
        c(&work)?,
        c(&merged)?,
        c(overlay)?,
        c(OLD_ROOT.trim_start_matches('/'))?,
        c(OLD_ROOT)?,
        c("tmpfs")?,
        c("overlay")?,
        c("proc")?,
        c("/proc")?,
        c("/dev")?,
        c("/dev/shm")?,
        c("/tmp")?,
        c("mode=0755")?,
        c("mode=1777")?,
        c(".")?,
    ];
    let read_only = spec.read_only_root;
    Ok(Box::new(move || {
        let [slash, layers, upper, work, merged, overlay, old_rel, old, tmpfs, ovl, proc_t, proc_d, dev, shm, tmp, m755, m1777, dot] = &s;
        let err = std::io::Error::last_os_error;
        // Runs in the forked child before exec: system calls only.
        // SAFETY: every pointer is a NUL-terminated string owned by this
        // closure (made before the fork) or null where the call allows it;
        // `st` is plain data the kernel fills.
        unsafe {
            let mkdir = |p: &CString, mode: libc::mode_t| -> std::io::Result<()> {
                if libc::mkdir(p.as_ptr(), mode) != 0 && *libc::__errno_location() != libc::EEXIST {
                    return Err(err());
                }
                Ok(())
            };
            let mount = |src: &CString, dst: &CString, fs: &CString, flags: libc::c_ulong, data: Option<&CString>| -> std::io::Result<()> {
                let data = data.map_or(std::ptr::null(), |d| d.as_ptr().cast());
                if libc::mount(src.as_ptr(), dst.as_ptr(), fs.as_ptr(), flags, data) != 0 {
                    return Err(err());
                }
                Ok(())
            };
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(err());
            }
            if libc::mount(std::ptr::null(), slash.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                return Err(err());
            }
            // The instance's own layer: a tmpfs only this namespace sees.
            mount(tmpfs, layers, tmpfs, libc::MS_NOSUID | libc::MS_NODEV, Some(m755))?;
            for d in [upper, work, merged] {
                mkdir(d, 0o755)?;
            }
            mount(ovl, merged, ovl, 0, Some(overlay))?;
            if libc::chdir(merged.as_ptr()) != 0 {
                return Err(err());
            }
            mkdir(old_rel, 0o700)?;
            if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), old_rel.as_ptr()) != 0 {
                return Err(err());
            }
            if libc::chdir(slash.as_ptr()) != 0 {
                return Err(err());
            }
            let nosuid = libc::MS_NOSUID | libc::MS_NODEV;
            mkdir(proc_d, 0o555)?;
            mount(proc_t, proc_d, proc_t, nosuid | libc::MS_NOEXEC, None)?;
            mkdir(dev, 0o755)?;
            mount(tmpfs, dev, tmpfs, libc::MS_NOSUID | libc::MS_NOEXEC, Some(m755))?;
            for (host, inside) in &devices {
                let fd = libc::open(inside.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o666);
                if fd < 0 {
                    return Err(err());
                }
                libc::close(fd);
                bind(host, inside, false)?;
            }
            for (target, link) in &links {
                if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                    return Err(err());
                }
            }
            mkdir(shm, 0o1777)?;
            mount(tmpfs, shm, tmpfs, nosuid, Some(m1777))?;
            mkdir(tmp, 0o1777)?;
            mount(tmpfs, tmp, tmpfs, nosuid, Some(m1777))?;
            for b in &mounts {
                if b.only_if_absent {
                    let mut st: libc::stat = core::mem::zeroed();
                    if libc::lstat(b.target.as_ptr(), &mut st) == 0 {
                        continue; // the image has its own
                    }
                }
                for d in &b.mkdirs {
                    mkdir(d, 0o755)?;
                }
                if b.file {
                    let fd = libc::open(b.target.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                    if fd < 0 {
                        return Err(err());
                    }
                    libc::close(fd);
                }
                bind(&b.source, &b.target, b.read_only)?;
            }
            if libc::umount2(old.as_ptr(), libc::MNT_DETACH) != 0 {
                return Err(err());
            }
            if libc::rmdir(old.as_ptr()) != 0 {
                return Err(err());
            }
            if read_only {
                let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                if libc::mount(std::ptr::null(), slash.as_ptr(), std::ptr::null(), flags, std::ptr::null()) != 0 {
                    return Err(err());
                }
            }
            for d in &workdir_dirs {
                // A working directory the image does not have is made (as
                // runc does); in a read-only root it must exist.
                let _ = libc::mkdir(d.as_ptr(), 0o755);
            }
            if libc::chdir(workdir.as_ptr()) != 0 {
                return Err(err());
            }
            if let Some(ids) = &ids {
                if libc::setgroups(ids.groups.len(), ids.groups.as_ptr()) != 0 || libc::setgid(ids.gid) != 0 || libc::setuid(ids.uid) != 0 {
                    return Err(err());
                }
            }
        }
        Ok(())
    }))
}
