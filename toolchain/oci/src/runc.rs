//! The host's runc: found, then run with the arguments `shunt-oci` got.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

/// `$SHUNT_OCI_RUNC` (a path), else `runc` on PATH or in the sbin
/// directories (Debian puts it in /usr/sbin, which a shim's PATH may lack).
/// Never this program itself, should it be installed as `runc`.
pub fn find() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SHUNT_OCI_RUNC").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("SHUNT_OCI_RUNC={}: no such file (name the host's runc, or unset it)", p.display());
        }
        return Ok(p);
    }
    let me = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok());
    let not_me = |p: &Path| me.as_deref() != p.canonicalize().ok().as_deref();
    let on_path = which::which_all("runc").ok().into_iter().flatten();
    let fixed = ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc", "/sbin/runc"].map(PathBuf::from);
    on_path
        .chain(fixed.into_iter().filter(|p| p.is_file()))
        .find(|p| not_me(p))
        .context("runc not found (not on PATH nor in /usr/sbin): install it (apt-get install runc) or set SHUNT_OCI_RUNC to its path")
}

/// Replaces this process with `runc ARGS…`: runc then owns the pid, the
/// file descriptors (console socket, preserved fds) and the exit status,
/// exactly as if it had been started in our place.
pub fn exec_replacing(runc: &Path, args: &[OsString]) -> Result<ExitCode> {
    let err = std::process::Command::new(runc).arg0("runc").args(args).exec();
    Err(anyhow::Error::new(err).context(format!("cannot run {}", runc.display())))
}

/// Runs `runc ARGS…` to completion (same stdio); its exit code.
pub fn status(runc: &Path, args: &[OsString]) -> Result<u8> {
    let st = std::process::Command::new(runc)
        .arg0("runc")
        .args(args)
        .status()
        .with_context(|| format!("cannot run {}", runc.display()))?;
    Ok(match (st.code(), std::os::unix::process::ExitStatusExt::signal(&st)) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.wrapping_add(s as u8),
        _ => 1,
    })
}

/// Whether runc (with state root `root`) has a container `id`.
pub fn knows(runc: &Path, root: &Path, id: &str) -> bool {
    std::process::Command::new(runc)
        .arg0("runc")
        .arg("--root")
        .arg(root)
        .args(["state", id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
