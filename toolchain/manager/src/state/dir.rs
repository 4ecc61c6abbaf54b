//! Where the state lives, and the admin credentials kept there.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::secrets::make_private_dir;

/// The state directory when none is given: `$SHUNT_STATE_DIR`, else
/// `/var/lib/shunt` for root, else `$XDG_DATA_HOME/shunt` (default
/// `~/.local/share/shunt`). `shunt faas build` uses the same rule to find the
/// image store.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SHUNT_STATE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/shunt");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("shunt");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/share/shunt")
}

/// The image store inside a state directory.
pub fn images_dir(state: &Path) -> PathBuf {
    state.join("images")
}

pub const ADMIN_USER: &str = "admin";

/// The admin credentials: `<state>/auth/basic-auth-{user,password}`, the
/// password generated on first start (24 random bytes, base64, 0600).
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub password_file: PathBuf,
    /// Whether this start generated the password.
    pub generated: bool,
}

pub fn credentials(state: &Path) -> Result<Credentials> {
    let dir = state.join("auth");
    make_private_dir(&dir)?;
    let user_file = dir.join("basic-auth-user");
    let password_file = dir.join("basic-auth-password");
    let user = match std::fs::read_to_string(&user_file) {
        Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => {
            write_new(&user_file, ADMIN_USER.as_bytes())?;
            ADMIN_USER.to_string()
        }
    };
    let mut generated = false;
    let password = match std::fs::read_to_string(&password_file) {
        Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
        Ok(_) => bail!("{} is empty; delete it and a new password is generated", password_file.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 24];
            getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("cannot generate a password: {e}"))?;
            use base64::Engine;
            let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            write_new(&password_file, p.as_bytes())?;
            generated = true;
            p
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", password_file.display())),
    };
    Ok(Credentials { user, password, password_file, generated })
}

/// Writes a new 0600 file atomically (temporary name, sync, rename).
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(d) = path.parent() {
        super::secrets::sync_dir(d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn password_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = credentials(dir.path()).unwrap();
        assert!(a.generated);
        assert_eq!(a.user, "admin");
        assert!(a.password.len() >= 32);
        assert_eq!(std::fs::metadata(&a.password_file).unwrap().mode() & 0o777, 0o600);
        let b = credentials(dir.path()).unwrap();
        assert!(!b.generated);
        assert_eq!(a.password, b.password);
    }
}
