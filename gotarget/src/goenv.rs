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

impl GoTool {
    /// Finds the go command and asks it for GOROOT and its version.
    /// `GOTOOLCHAIN=local` always: a go.mod asking for a newer Go must not
    /// switch to a downloaded toolchain whose GOROOT the overlay does not
    /// describe (its keys would match nothing, silently).
    pub fn locate() -> Result<GoTool> {
        let go = std::env::var_os("SHUNT_GO").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| "go".into());
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
