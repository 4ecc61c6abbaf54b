//! The files a user names: reading them (programs, ELF objects, policies,
//! plans, stats, stack files: regular files only, up to a size limit), and
//! replacing them with output (stats reports).
//!
//! `std::fs::read` on a path a user typed blocks forever on a FIFO (the
//! open waits for a writer), and reads `/dev/zero` or `/dev/urandom` until
//! memory runs out. Here the open never blocks (`O_NONBLOCK`, which is
//! harmless on a regular file), anything but a regular file is refused
//! before a byte is read, and a file larger than the caller's limit — or
//! one that grows past it while it is read — is refused too.
//!
//! Output is written to a temporary file and renamed over the path, which
//! replaces whatever the path was: `--stats /dev/null` as root would destroy
//! `/dev/null`. [`check_output`] allows only a new path or a regular file
//! that is writable by its mode.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Limits for the kinds of files shunt reads.
pub mod limit {
    /// An executable or shared object (Go binaries are ~100 MiB at most).
    pub const ELF: u64 = 1 << 30;
    /// A policy file.
    pub const POLICY: u64 = 1 << 20;
    /// A glibc plan file.
    pub const PLAN: u64 = 64 << 20;
    /// A stats report (JSON).
    pub const STATS: u64 = 256 << 20;
    /// A stack file or template.yml.
    pub const STACK: u64 = 4 << 20;
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}: cannot read: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: is {1}, not a regular file")]
    NotRegular(PathBuf, &'static str),
    #[error("{0}: is larger than {1} bytes, more than a file of this kind can be")]
    TooBig(PathBuf, u64),
    #[error("{0}: is not UTF-8 text")]
    NotText(PathBuf),
    #[error("{0}: {1}")]
    NotReplaceable(PathBuf, String),
}

impl InputError {
    /// The I/O error behind it, if any (to tell "not found" from the rest).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            InputError::Io(_, e) => Some(e.kind()),
            _ => None,
        }
    }
}

/// What a file that is not regular is, in words.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

/// Opens `path` for reading without blocking and checks it is a regular
/// file of at most `limit` bytes; returns it and its size.
pub fn open_regular(path: &Path, limit: u64) -> Result<(File, u64), InputError> {
    let p = || path.to_path_buf();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| InputError::Io(p(), e))?;
    let m = f.metadata().map_err(|e| InputError::Io(p(), e))?;
    if !m.file_type().is_file() {
        return Err(InputError::NotRegular(p(), kind_of(m.file_type())));
    }
    if m.len() > limit {
        return Err(InputError::TooBig(p(), limit));
    }
    Ok((f, m.len()))
}

/// The bytes of the regular file `path`, at most `limit` of them.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    let (f, size) = open_regular(path, limit)?;
    let mut data = Vec::with_capacity(size as usize);
    // One byte over the limit tells a file that grew while being read.
    f.take(limit + 1).read_to_end(&mut data).map_err(|e| InputError::Io(path.to_path_buf(), e))?;
    if data.len() as u64 > limit {
        return Err(InputError::TooBig(path.to_path_buf(), limit));
    }
    Ok(data)
}

/// The text of the regular file `path`, at most `limit` bytes.
pub fn read_to_string(path: &Path, limit: u64) -> Result<String, InputError> {
    String::from_utf8(read(path, limit)?).map_err(|_| InputError::NotText(path.to_path_buf()))
}

/// Checks that output may replace `path`: it does not exist (its directory
/// does), or it is a regular file (not a symbolic link) writable by its mode.
pub fn check_output(path: &Path) -> Result<(), InputError> {
    let p = || path.to_path_buf();
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            let t = m.file_type();
            if !t.is_file() {
                let kind = if t.is_symlink() { "a symbolic link" } else { kind_of(t) };
                let why = format!("{kind}, not a regular file; output replaces only a regular file (name a new path)");
                return Err(InputError::NotReplaceable(p(), why));
            }
            use std::os::unix::fs::PermissionsExt;
            if m.permissions().mode() & 0o222 == 0 {
                return Err(InputError::NotReplaceable(p(), "a read-only file; remove it or name another".into()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(InputError::Io(p(), std::io::Error::from(std::io::ErrorKind::NotADirectory))),
                Err(e) => Err(InputError::Io(p(), e)),
            }
        }
        Err(e) => Err(InputError::Io(p(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit() {
        let dir = std::env::temp_dir().join(format!("shunt-userfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"hello").unwrap();
        assert_eq!(read(&file, 5).unwrap(), b"hello");
        assert!(matches!(read(&file, 4), Err(InputError::TooBig(..))));
        assert_eq!(read_to_string(&file, 100).unwrap(), "hello");

        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Returns at once (no writer needed): refused as a FIFO.
        let e = read(&fifo, 100).unwrap_err();
        assert!(e.to_string().ends_with("is a FIFO, not a regular file"), "{e}");

        let e = read(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(e.to_string().contains("is a character device"), "{e}");
        let e = read(&dir, 100).unwrap_err();
        assert!(matches!(e, InputError::NotRegular(_, "a directory")), "{e}");
        let e = read(&dir.join("missing"), 100).unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));

        check_output(&file).unwrap();
        check_output(&dir.join("new")).unwrap();
        assert!(check_output(&dir.join("no/such/dir/new")).is_err());
        for (path, says) in [(&fifo, "a FIFO"), (&dir, "a directory")] {
            let e = check_output(path).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        let e = check_output(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(e.contains("a character device"), "{e}");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(check_output(&link).unwrap_err().to_string().contains("a symbolic link"));
        let ro = dir.join("ro");
        std::fs::write(&ro, b"").unwrap();
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
        assert!(check_output(&ro).unwrap_err().to_string().contains("a read-only file"));

        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_to_string(&file, 100), Err(InputError::NotText(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
