//! The build context `faas-cli build --shrinkwrap` makes: `build/<fn>/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use super::build::run_step;
use super::stack::{Function, Loaded, Template};
use shunt_paths::copy_tree;

/// `build/<fn>/` as `faas-cli build --shrinkwrap` makes it: the template,
/// then the handler over its handler folder (top-level `build` and
/// `template` entries of the handler skipped).
/// The function's handler directory, checked.
pub(crate) fn handler_dir(l: &Loaded, name: &str, f: &Function) -> Result<PathBuf> {
    let stack = l.path.display();
    let handler = f.handler.as_deref().ok_or_else(|| anyhow!("{stack}: function {name}: no `handler`"))?;
    let hdir = if l.dir == Path::new(".") { PathBuf::from(handler) } else { l.dir.join(handler) };
    if !hdir.is_dir() {
        bail!("{stack}: function {name}: handler `{handler}` is not a directory ({})", hdir.display());
    }
    Ok(hdir)
}

pub(crate) fn shrinkwrap(l: &Loaded, name: &str, f: &Function, tdir: &Path, t: &Template) -> Result<PathBuf> {
    let hdir = handler_dir(l, name, f)?;
    let out = l.dir.join("build").join(name);
    if which::which("faas-cli").is_ok() {
        let mut cmd = Command::new("faas-cli");
        cmd.current_dir(&l.dir)
            .args(["build", "--shrinkwrap", "-f"])
            .arg(l.path.file_name().unwrap_or_default())
            .args(["--filter", name]);
        run_step(&mut cmd, &format!("faas-cli build --shrinkwrap ({name})"))?;
        return Ok(out);
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    copy_tree(tdir, &out, &[])?;
    let folder = t.handler_folder.as_deref().unwrap_or("function");
    copy_tree(&hdir, &out.join(folder), &["build", "template"])?;
    Ok(out)
}

/// Shrink-wraps `handler` with the template in `tdir` into `out` (the
/// faas-cli layout, without faas-cli).
pub fn shrinkwrap_dirs(tdir: &Path, t: &Template, handler: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    copy_tree(tdir, out, &[])?;
    Ok(copy_tree(handler, &out.join(t.handler_folder.as_deref().unwrap_or("function")), &["build", "template"])?)
}

