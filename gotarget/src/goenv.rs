//! Running the installed `go` command for facts about the toolchain.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The go command shunt drives, and facts about its toolchain.
#[derive(Debug, Clone)]
pub struct GoTool {
    /// The `go` executable (`$SHUNT_GO`, else `go` from `PATH`).
    pub go: PathBuf,
    /// `go env GOROOT`, as the go command spells it (overlay keys must match it).
    pub goroot: PathBuf,
    /// `go env GOVERSION`, e.g. `go1.26.8`.
    pub version: String,
    /// `go env GOMODCACHE`.
    pub gomodcache: PathBuf,
}

/// One package of `go list`, with its assembly files.
#[derive(Debug, Clone)]
pub struct Package {
    pub import_path: String,
    pub dir: PathBuf,
    pub sfiles: Vec<String>,
}

/// The `GOTOOLCHAIN` for a go command shunt starts to build a user's or a
/// benchmark's code: the caller's choice when set (so `GOTOOLCHAIN=go1.25.5
/// shunt faas build` builds with that Go, as [`GoTool::locate`] does for
/// `shunt go`), else `local` (never a toolchain download nobody asked for,
/// whatever a go.mod's `toolchain` line says).
pub fn child_toolchain() -> std::ffi::OsString {
    std::env::var_os("GOTOOLCHAIN").filter(|v| !v.is_empty()).unwrap_or_else(|| "local".into())
}

impl GoTool {
    /// Finds the go command and asks it for GOROOT and its version.
    /// `GOTOOLCHAIN=local` always: a go.mod asking for a newer Go must not
    /// switch to a downloaded toolchain whose GOROOT the overlay does not
    /// describe (its keys would match nothing, silently).
    ///
    /// A `GOTOOLCHAIN` the caller set (e.g. `go1.25.5`; not `local`) picks
    /// the toolchain once, here: `go env GOROOT` under it names the
    /// toolchain the go command switched to, and that toolchain's own
    /// `bin/go` (with `GOTOOLCHAIN=local`) is the go shunt drives. Ignoring
    /// it built with the installed Go while the caller asked for another.
    pub fn locate() -> Result<GoTool> {
        Self::locate_with(std::env::var_os("GOTOOLCHAIN").as_deref())
    }

    /// [`GoTool::locate`] with `toolchain` for the caller's `GOTOOLCHAIN`.
    pub fn locate_with(toolchain: Option<&std::ffi::OsStr>) -> Result<GoTool> {
        let mut go = std::env::var_os("SHUNT_GO").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| "go".into());
        if let Some(tc) = toolchain.filter(|t| !t.is_empty() && *t != "local") {
            let out = Self::base_command(&go)
                .env("GOTOOLCHAIN", tc)
                .args(["env", "GOROOT"])
                .output()
                .with_context(|| format!("cannot run {} (is Go installed and on PATH?)", go.display()))?;
            if !out.status.success() {
                bail!(
                    "GOTOOLCHAIN={}: {} env GOROOT failed: {}",
                    tc.to_string_lossy(),
                    go.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            let bin = root.join("bin/go");
            if !bin.is_file() {
                bail!("GOTOOLCHAIN={}: no go command at {}", tc.to_string_lossy(), bin.display());
            }
            go = bin;
        }
        let tool = Self::ask(go)?;
        if !tool.goroot.starts_with(&tool.gomodcache) {
            return Ok(tool);
        }
        // A toolchain the go command downloaded lives in the module cache,
        // and go refuses an overlay that replaces files beneath GOMODCACHE:
        // shunt drives a linked copy of it outside.
        let copy = goroot_outside_modcache(&tool)?;
        let moved = Self::ask(copy.join("bin/go"))?;
        if moved.version != tool.version || moved.goroot != copy {
            bail!("the copy of {} at {} reports {} at {}", tool.version, copy.display(), moved.version, moved.goroot.display());
        }
        Ok(moved)
    }

    /// `go env GOROOT GOVERSION GOMODCACHE` of the go command `go`.
    fn ask(go: PathBuf) -> Result<GoTool> {
        let out = Self::base_command(&go)
            .args(["env", "GOROOT", "GOVERSION", "GOMODCACHE"])
            .output()
            .with_context(|| format!("cannot run {} (is Go installed and on PATH?)", go.display()))?;
        if !out.status.success() {
            bail!("{} env failed: {}", go.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let (Some(goroot), Some(version), Some(modcache)) = (lines.next(), lines.next(), lines.next()) else {
            bail!("unexpected output from go env: {text:?}");
        };
        if goroot.is_empty() || !version.starts_with("go") {
            bail!("go env gave no usable GOROOT/GOVERSION ({goroot:?}, {version:?})");
        }
        Ok(GoTool {
            go,
            goroot: PathBuf::from(goroot),
            version: version.to_owned(),
            gomodcache: PathBuf::from(modcache),
        })
    }

    /// `go` with the environment every shunt-driven go command gets.
    fn base_command(go: &Path) -> Command {
        let mut c = Command::new(go);
        c.env("GOTOOLCHAIN", "local").env("CGO_ENABLED", "0").env("GOOS", "linux").env("GOARCH", "amd64");
        c
    }

    /// A go command with shunt's fixed environment (user GOFLAGS kept).
    pub fn command(&self) -> Command {
        Self::base_command(&self.go)
    }

    /// A go command for queries whose answer must not depend on the user's
    /// GOFLAGS (tags, an overlay of their own, -mod).
    pub fn query(&self) -> Command {
        let mut c = self.command();
        c.env("GOFLAGS", "");
        c
    }

    /// The standard library's packages for linux/amd64 with their `.s` files.
    pub fn list_std(&self) -> Result<Vec<Package>> {
        self.list(&["std".into()], None)
    }

    /// `go list -e` of `patterns` in `dir` (the current directory if None).
    pub fn list(&self, patterns: &[OsString], dir: Option<&Path>) -> Result<Vec<Package>> {
        let mut c = self.query();
        c.args(["list", "-e", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{join .SFiles \"\\t\"}}"]).args(patterns);
        if let Some(d) = dir {
            c.current_dir(d);
        }
        let out = c.output().context("cannot run go list")?;
        if !out.status.success() {
            bail!("go list failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(parse_list(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// A tree of hard links (copies where linking fails) to `tool`'s GOROOT in
/// shunt's cache, `go/goroot/<version>-<key>`, made once and published
/// atomically. The go command computes GOROOT from its executable's path,
/// so the copy's `bin/go` reports the copy.
fn goroot_outside_modcache(tool: &GoTool) -> Result<PathBuf> {
    let key = crate::cache::fnv1a(&[tool.goroot.as_os_str().as_encoded_bytes(), tool.version.as_bytes()]);
    let dir = crate::cache::root()?.join("go").join("goroot").join(format!("{}-{key}", tool.version));
    if dir.join("bin/go").is_file() && dir.join("VERSION").is_file() {
        return Ok(dir);
    }
    let staging = crate::cache::staging_dir(&dir)?;
    if let Err(e) = link_tree(&tool.goroot, &staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e.context(format!("cannot copy {} out of the module cache", tool.goroot.display())));
    }
    if dir.join("bin/go").is_file() {
        // Another build published it meanwhile (entries are complete once
        // published): use that one.
        let _ = std::fs::remove_dir_all(&staging);
        return Ok(dir);
    }
    if dir.exists() {
        // Not a published entry (no bin/go): ours replaces it. The files
        // are links into the module cache: remove them without changing
        // their modes.
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    match std::fs::rename(&staging, &dir) {
        Ok(()) => Ok(dir),
        Err(_) if dir.join("bin/go").is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e).with_context(|| format!("cannot publish {}", dir.display()))
        }
    }
}

fn link_tree(from: &Path, to: &Path) -> Result<()> {
    for e in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let t = e.file_type()?;
        if t.is_dir() {
            std::fs::create_dir(&dst).with_context(|| format!("cannot create {}", dst.display()))?;
            link_tree(&src, &dst)?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).with_context(|| format!("cannot copy {}", src.display()))?;
        }
    }
    Ok(())
}

fn parse_list(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let import_path = f.next()?.to_owned();
            let dir = PathBuf::from(f.next()?);
            let sfiles = f.filter(|s| !s.is_empty()).map(str::to_owned).collect();
            Some(Package { import_path, dir, sfiles })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_go_list_lines() {
        let p = super::parse_list("runtime\t/g/src/runtime\ta.s\tb.s\nerrors\t/g/src/errors\t\n");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].sfiles, vec!["a.s", "b.s"]);
        assert!(p[1].sfiles.is_empty());
    }
}
