//! Secrets: one file per secret, `<state>/secrets/<namespace>/<name>`, mode
//! 0600 in 0700 directories.
//!
//! The files are the only record of a secret (no second copy in the
//! database to disagree with). Each write goes to a temporary file in the
//! same directory, is synced, and is renamed over the old one, then the
//! directory is synced: a crash leaves the old value or the new one, never
//! half of either. Temporary names start with `.`, which no valid secret
//! name does, so a listing never shows them.
//!
//! An instance gets a copy of the secrets its function names when it starts
//! (see `instances`), so an updated secret reaches a function at its next
//! deploy or restart, as with faasd.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::names::Key;

pub struct Secrets {
    root: PathBuf,
}

impl Secrets {
    pub fn open(root: PathBuf) -> Result<Secrets> {
        make_private_dir(&root)?;
        Ok(Secrets { root })
    }

    pub fn path(&self, key: &Key) -> PathBuf {
        self.root.join(&key.namespace).join(&key.name)
    }

    pub fn exists(&self, key: &Key) -> bool {
        self.path(key).is_file()
    }

    pub fn read(&self, key: &Key) -> Result<Vec<u8>> {
        let p = self.path(key);
        std::fs::read(&p).with_context(|| format!("cannot read secret {}", p.display()))
    }

    /// Names of the secrets in `namespace`, sorted.
    pub fn list(&self, namespace: &str) -> Result<Vec<String>> {
        let dir = self.root.join(namespace);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Namespaces that hold at least one secret.
    pub fn namespaces(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|ns| self.list(ns).map(|l| !l.is_empty()).unwrap_or(false))
            .collect()
    }

    /// Writes (creates or replaces) a secret atomically.
    pub fn write(&self, key: &Key, value: &[u8]) -> Result<()> {
        let dir = self.root.join(&key.namespace);
        make_private_dir(&dir)?;
        let tmp = dir.join(format!(".{}.tmp-{}", key.name, std::process::id()));
        let result = (|| -> Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(value)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.path(key)).with_context(|| format!("cannot replace secret {key}"))?;
            sync_dir(&dir)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    pub fn remove(&self, key: &Key) -> Result<bool> {
        match std::fs::remove_file(self.path(key)) {
            Ok(()) => {
                sync_dir(&self.root.join(&key.namespace))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot remove secret {key}")),
        }
    }

    /// Copies the named secrets of `namespace` into `dir` (0400 files in a
    /// 0700 directory): what an instance sees at `/var/openfaas/secrets`.
    pub fn materialise(&self, namespace: &str, names: &[String], dir: &Path) -> Result<()> {
        make_private_dir(dir)?;
        for name in names {
            let key = Key::new("secret", name, namespace)?;
            let value = self.read(&key).with_context(|| format!("secret {name} (namespace {namespace}) is missing"))?;
            let out = dir.join(name);
            std::fs::write(&out, value).with_context(|| format!("cannot write {}", out.display()))?;
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o400))?;
        }
        Ok(())
    }
}

pub fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let s = Secrets::open(dir.path().join("secrets")).unwrap();
        let k = Key::new("secret", "api-key", "").unwrap();
        assert!(!s.exists(&k));
        s.write(&k, b"one").unwrap();
        s.write(&k, b"two").unwrap();
        assert_eq!(s.read(&k).unwrap(), b"two");
        assert_eq!(std::fs::metadata(s.path(&k)).unwrap().mode() & 0o777, 0o600);
        assert_eq!(s.list("openfaas-fn").unwrap(), vec!["api-key"]);
        assert_eq!(s.namespaces(), vec!["openfaas-fn"]);
        let inst = dir.path().join("inst");
        s.materialise("openfaas-fn", &["api-key".into()], &inst).unwrap();
        assert_eq!(std::fs::read(inst.join("api-key")).unwrap(), b"two");
        assert!(s.remove(&k).unwrap());
        assert!(!s.remove(&k).unwrap());
        assert!(s.list("openfaas-fn").unwrap().is_empty());
        assert!(s.list("nothing-here").unwrap().is_empty());
    }
}
