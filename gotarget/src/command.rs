//! The go command line of a shunt build: the user's arguments, our overlay
//! merged with theirs, and x/sys handled. `shunt go build` is this plus
//! error reporting; tests use it to build exactly as the CLI does.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{xsys, Overlay, Target};

/// Subcommands that compile packages and so take `-overlay`.
pub const COMPILING: &[&str] = &["build", "test", "run", "install", "list", "vet"];

/// The user's arguments with `-overlay`/`-modfile` taken out (they are
/// merged into ours), and `-C dir` remembered (it must stay first).
#[derive(Debug, Default, PartialEq)]
pub struct UserArgs {
    pub chdir: Option<PathBuf>,
    pub overlay: Option<PathBuf>,
    pub modfile: Option<PathBuf>,
    pub rest: Vec<OsString>,
}

/// Splits the arguments after the subcommand.
pub fn split_args(args: &[OsString]) -> Result<UserArgs> {
    let mut u = UserArgs::default();
    let mut i = 0;
    let mut past_flags = false; // after `-args` (go test): the test binary's own
    while i < args.len() {
        let a = &args[i];
        let s = a.to_string_lossy();
        if past_flags || !s.starts_with('-') || s == "-" {
            u.rest.push(a.clone());
            i += 1;
            continue;
        }
        if s == "-args" || s == "--args" {
            past_flags = true;
            u.rest.push(a.clone());
            i += 1;
            continue;
        }
        let name = s.trim_start_matches('-');
        let (flag, inline) = match name.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (name, None),
        };
        let slot = match flag {
            "C" if i == 0 => &mut u.chdir,
            "overlay" => &mut u.overlay,
            "modfile" => &mut u.modfile,
            _ => {
                u.rest.push(a.clone());
                i += 1;
                continue;
            }
        };
        let value = match inline {
            Some(v) => OsString::from(v),
            None => {
                i += 1;
                match args.get(i) {
                    Some(v) => v.clone(),
                    None => bail!("flag -{flag} needs a value"),
                }
            }
        };
        *slot = Some(PathBuf::from(value));
        i += 1;
    }
    Ok(u)
}

/// A ready go command and what must live as long as it runs.
pub struct Invocation {
    pub command: Command,
    /// Lines worth telling the user (x/sys handling).
    pub notes: Vec<String>,
    _temps: Vec<tempfile::TempDir>,
    _setup: xsys::ModuleSetup,
}

/// Builds the go command for `args` (`[subcommand, args…]`, subcommand one
/// of [`COMPILING`]). `goflags` is the user's GOFLAGS: an `-overlay` or
/// `-modfile` in it is merged like the flags.
pub fn invocation(target: &Target, cache_root: &Path, args: &[OsString], goflags: &str) -> Result<Invocation> {
    let Some(sub) = args.first() else { bail!("no go subcommand") };
    let user = split_args(&args[1..])?;
    let dir = user.chdir.as_deref();

    let mut goflags: Vec<String> = goflags.split_whitespace().map(str::to_owned).collect();
    let mut user_overlays: Vec<PathBuf> = user.overlay.iter().cloned().collect();
    let mut flag_modfile = None;
    goflags.retain(|f| {
        let bare = f.trim_start_matches('-');
        if let Some(p) = bare.strip_prefix("overlay=") {
            user_overlays.push(PathBuf::from(p));
            false
        } else if let Some(p) = bare.strip_prefix("modfile=") {
            flag_modfile = Some(PathBuf::from(p));
            false
        } else {
            true
        }
    });
    let modfile = user.modfile.clone().or(flag_modfile);
    let setup = xsys::prepare_module(target, cache_root, dir, modfile.as_deref())?;
    let mut notes: Vec<String> = setup.note.iter().cloned().collect();

    let mut temps = Vec::new();
    let mut overlay_path = target.overlay.clone();
    if !user_overlays.is_empty() || !setup.overlay.replace.is_empty() {
        let mut merged = Overlay::read(&target.overlay)?;
        merged.merge(&setup.overlay, "golang.org/x/sys")?;
        for p in &user_overlays {
            let p = resolve(dir, p)?;
            if p != target.overlay {
                merged.merge(&Overlay::read(&p)?, &format!("overlay {}", p.display()))?;
                notes.push(format!("merged your overlay {}", p.display()));
            }
        }
        let d = tempfile::Builder::new().prefix("shunt-overlay-").tempdir().context("cannot create a temporary directory")?;
        overlay_path = d.path().join("overlay.json");
        merged.write(&overlay_path)?;
        temps.push(d);
    }

    let mut cmd = target.tool.command();
    cmd.arg(sub);
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.arg(format!("-overlay={}", overlay_path.display()));
    if let Some(m) = setup.modfile.as_ref().or(modfile.as_ref()) {
        cmd.arg(format!("-modfile={}", m.display()));
    }
    cmd.env("GOFLAGS", goflags.join(" "));
    cmd.args(&user.rest);
    Ok(Invocation { command: cmd, notes, _temps: temps, _setup: setup })
}

/// A path as the go command will see it (relative to `-C dir` if given).
fn resolve(dir: Option<&Path>, p: &Path) -> Result<PathBuf> {
    let base = match dir {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => std::env::current_dir()?.join(d),
        None => std::env::current_dir()?,
    };
    Ok(if p.is_absolute() { p.to_path_buf() } else { base.join(p) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_we_merge_are_taken_out() {
        let u = split_args(&os(&["-C", "d", "-o", "out", "-overlay=o.json", "--modfile", "m.mod", "./cmd"])).unwrap();
        assert_eq!(u.chdir, Some("d".into()));
        assert_eq!(u.overlay, Some("o.json".into()));
        assert_eq!(u.modfile, Some("m.mod".into()));
        assert_eq!(u.rest, os(&["-o", "out", "./cmd"]));
    }

    #[test]
    fn test_binary_args_pass_through() {
        let u = split_args(&os(&["-c", "-args", "-overlay=x"])).unwrap();
        assert_eq!(u.overlay, None);
        assert_eq!(u.rest, os(&["-c", "-args", "-overlay=x"]));
        assert!(split_args(&os(&["-overlay"])).is_err());
    }
}
