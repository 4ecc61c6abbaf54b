//! Applying a layer (a tar stream, plain or gzip) to a root filesystem
//! without ever touching anything outside it.
//!
//! Containment does not rest on checking names against a path prefix
//! (symlinks defeat that) but on the kernel: every directory an entry goes
//! into is opened with `openat2(root, path, RESOLVE_IN_ROOT)`, which
//! resolves `..` and symlinks — absolute or relative — as if `root` were
//! `/`. The entry's own last component is then created, replaced or linked
//! relative to that directory fd by name, never followed (`O_NOFOLLOW`,
//! `AT_SYMLINK_NOFOLLOW`, `O_EXCL`). So a layer can make `etc -> /` and
//! write `etc/passwd`: the file lands in the root's own `/passwd`.
//!
//! Refused outright (the layer is bad, the unpack fails): entry and link
//! names with a `..` component. Contained: absolute names (taken relative
//! to the root), symlinks anywhere. Not created: character and block
//! devices (an instance gets its own `/dev`; they are listed in the
//! report). Setuid/setgid bits are cleared unless the options keep them.
//! Owners are applied only when running as root. Extended attributes
//! (file capabilities included) are not applied.
//!
//! OCI whiteouts: `.wh.NAME` deletes NAME of the lower layers; the opaque
//! marker `.wh..wh..opq` empties its directory of everything the lower
//! layers put there (entries of the same layer stay, whatever their order
//! in the tar).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::Serialize;
use tar::EntryType;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep setuid/setgid bits (cleared by default).
    pub keep_setid: bool,
}

/// What an unpack did that an operator may want to know.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub entries: u64,
    /// Device nodes the layers asked for, not created.
    pub skipped_devices: Vec<String>,
    /// Files whose setuid/setgid bits were cleared.
    pub cleared_setid: Vec<String>,
}

const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT: &[u8] = b".wh.";

/// Applies one layer to `root`; returns the `sha256:` digest and length of
/// the uncompressed tar (the layer's diff ID).
pub fn apply_layer(root: &OwnedFd, layer: impl Read, options: &Options, report: &mut Report) -> Result<(String, u64)> {
    let mut buffered = BufReader::with_capacity(1 << 16, layer);
    let magic = buffered.fill_buf().context("cannot read the layer")?.to_vec();
    let plain: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        bail!("the layer is zstd-compressed, which shunt does not unpack yet (rebuild the image with gzip layers)");
    } else {
        Box::new(buffered)
    };
    let mut archive = tar::Archive::new(crate::digest::Hashing::new(plain));
    let mut this_layer: HashSet<Vec<u8>> = HashSet::new();
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    for entry in archive.entries().context("the layer is not a tar archive")? {
        let mut entry = entry.context("the layer's tar archive is damaged")?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = components(&raw).with_context(|| format!("layer entry {shown:?}"))?;
        report.entries += 1;
        let Some((name, parent)) = comps.split_last() else {
            continue; // the root itself: its mode and owner stay the store's
        };
        let parent_path = join(parent);
        if *name == OPAQUE {
            clear_opaque(root, parent, &parent_path, &this_layer).with_context(|| format!("layer entry {shown:?}"))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if let Some(dir) = open_dir(root, parent, false)? {
                remove_all(&dir, hidden).with_context(|| format!("cannot apply the whiteout {shown:?}"))?;
            }
            continue;
        }
        this_layer.insert(join(&comps));
        let dir = open_dir(root, parent, true)?.expect("created");
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mut mode = header.mode().unwrap_or(0o644) & 0o7777;
        if mode & 0o6000 != 0 && !options.keep_setid && !kind.is_dir() {
            mode &= !0o6000;
            report.cleared_setid.push(shown.clone());
        }
        let existing = rustix::fs::statat(&dir, os(name), AtFlags::SYMLINK_NOFOLLOW).ok().map(|s| FileType::from_raw_mode(s.st_mode));
        let ctx = || format!("cannot unpack layer entry {shown:?}");
        match kind {
            EntryType::Directory => {
                if existing.is_some_and(|t| t != FileType::Directory) {
                    remove_all(&dir, name).with_context(ctx)?;
                }
                if existing != Some(FileType::Directory) {
                    rustix::fs::mkdirat(&dir, os(name), Mode::from_raw_mode(0o700)).with_context(ctx)?;
                }
            }
            EntryType::Char | EntryType::Block => {
                report.skipped_devices.push(shown);
                continue;
            }
            _ => {
                if existing.is_some() {
                    remove_all(&dir, name).with_context(ctx)?;
                }
                match kind {
                    EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                        let fd = rustix::fs::openat(
                            &dir,
                            os(name),
                            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o600),
                        )
                        .with_context(ctx)?;
                        let mut file = std::fs::File::from(fd);
                        io::copy(&mut entry, &mut file).with_context(ctx)?;
                    }
                    EntryType::Symlink => {
                        let target = entry.link_name_bytes().with_context(|| format!("symlink {shown:?} has no target"))?;
                        rustix::fs::symlinkat(OsStr::from_bytes(&target), &dir, os(name)).with_context(ctx)?;
                    }
                    EntryType::Link => {
                        let target = entry.link_name_bytes().with_context(|| format!("hard link {shown:?} has no target"))?;
                        let tcomps = components(&target).with_context(|| format!("hard link {shown:?}'s target"))?;
                        let Some((tname, tparent)) = tcomps.split_last() else {
                            bail!("hard link {shown:?} points at the root");
                        };
                        let Some(tdir) = open_dir(root, tparent, false)? else {
                            bail!("hard link {shown:?} points at {:?}, which the layers do not have", String::from_utf8_lossy(&target));
                        };
                        rustix::fs::linkat(&tdir, os(tname), &dir, os(name), AtFlags::empty()).with_context(ctx)?;
                        continue; // a link shares its target's metadata
                    }
                    EntryType::Fifo => {
                        rustix::fs::mknodat(&dir, os(name), FileType::Fifo, Mode::from_raw_mode(0o600), 0).with_context(ctx)?;
                    }
                    EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => continue,
                    other => bail!("layer entry {shown:?} has a tar entry type ({other:?}) that images do not use"),
                }
            }
        }
        if as_root {
            let uid = header.uid().ok().and_then(|u| u32::try_from(u).ok()).unwrap_or(0);
            let gid = header.gid().ok().and_then(|g| u32::try_from(g).ok()).unwrap_or(0);
            rustix::fs::chownat(
                &dir,
                os(name),
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .with_context(ctx)?;
        }
        if kind != EntryType::Symlink {
            // chmodat cannot refuse to follow, but the name was just made
            // (or kept as a directory) by this function: it is no symlink.
            rustix::fs::chmodat(&dir, os(name), Mode::from_raw_mode(mode), AtFlags::empty()).with_context(ctx)?;
        }
        if let Ok(mtime) = header.mtime() {
            let t = rustix::fs::Timespec { tv_sec: mtime.min(i64::MAX as u64) as i64, tv_nsec: 0 };
            let times = rustix::fs::Timestamps { last_access: t, last_modification: t };
            // Best effort: a time the file system cannot store is no reason to fail.
            let _ = rustix::fs::utimensat(&dir, os(name), &times, AtFlags::SYMLINK_NOFOLLOW);
        }
    }
    archive.into_inner().finish().context("cannot read the layer to its end")
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

/// The components of an entry name, `.` and empty ones dropped (so a
/// leading `/` means the root); `..` is refused.
fn components(raw: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => bail!("the name {:?} climbs with .., which layers may not do; the layer is refused", String::from_utf8_lossy(raw)),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn in_root(root: &OwnedFd, path: &[u8]) -> io::Result<OwnedFd> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    rustix::fs::openat2(
        root,
        os(path),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(io::Error::from)
}

/// The directory `comps` inside `root`, resolved as if `root` were `/`;
/// with `create`, missing directories are made (mode 0755), else a missing
/// one gives `None`.
fn open_dir(root: &OwnedFd, comps: &[&[u8]], create: bool) -> Result<Option<OwnedFd>> {
    let shown = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    let path = join(comps);
    let err = match in_root(root, &path) {
        Ok(fd) => return Ok(Some(fd)),
        Err(e) => e,
    };
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) if !create => return Ok(None),
        Some(libc::ENOENT) => {}
        _ => return Err(err).with_context(|| format!("cannot enter the directory {:?} of the image", shown(&path))),
    }
    let mut cur = in_root(root, b"")?;
    for i in 1..=comps.len() {
        let prefix = join(&comps[..i]);
        let enter = || format!("cannot enter the directory {:?} of the image", shown(&prefix));
        cur = match in_root(root, &prefix) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                rustix::fs::mkdirat(&cur, os(comps[i - 1]), Mode::from_raw_mode(0o755))
                    .with_context(|| format!("cannot create the directory {:?} of the image", shown(&prefix)))?;
                in_root(root, &prefix).with_context(enter)?
            }
            Err(e) => return Err(e).with_context(enter),
        };
    }
    Ok(Some(cur))
}

/// Removes `name` in `dir` and, if it is a directory, everything under it,
/// following no symlink.
fn remove_all(dir: &impl AsFd, name: &[u8]) -> io::Result<()> {
    let st = match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(dir, os(name), AtFlags::empty()).map_err(Into::into);
    }
    let sub = rustix::fs::openat(dir, os(name), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    clear_dir(&sub, |_| true)?;
    rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR).map_err(Into::into)
}

/// Removes the entries of `dir` for which `doomed` says so.
fn clear_dir(dir: &OwnedFd, doomed: impl Fn(&[u8]) -> bool) -> io::Result<()> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." && doomed(n) {
            names.push(n.to_vec());
        }
    }
    for n in names {
        remove_all(dir, &n)?;
    }
    Ok(())
}

fn clear_opaque(root: &OwnedFd, dir: &[&[u8]], dir_path: &[u8], this_layer: &HashSet<Vec<u8>>) -> Result<()> {
    let Some(fd) = open_dir(root, dir, false)? else { return Ok(()) };
    clear_dir(&fd, |n| {
        let mut p = dir_path.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(n);
        !this_layer.contains(&p)
    })
    .context("cannot empty the opaque directory")
}

/// Opens the file `path` inside `root` for reading, resolved as if `root`
/// were `/` (an archive's symlinks cannot make a reader leave it).
pub fn open_in_root(root: &OwnedFd, path: &str) -> io::Result<std::fs::File> {
    let fd = rustix::fs::openat2(
        root,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    Ok(std::fs::File::from(fd))
}
