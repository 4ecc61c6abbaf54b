//! `golang.org/x/sys/unix`: the one common module with `SYSCALL`s of its own
//! (`SyscallNoError`, `RawSyscallNoError` in `asm_linux_amd64.s`).
//!
//! The go command refuses overlays of files under GOMODCACHE, so:
//!
//! - **Module cache** (the usual case): the module is copied once per
//!   version into shunt's cache (`<cache>/xsys/<version>-<key>/mod`), its
//!   assembly rewritten there, and the build gets a temporary `-modfile`: a
//!   copy of the module's `go.mod` (and `go.sum`) plus
//!   `replace golang.org/x/sys => <copy>`. The project's own files are
//!   never touched.
//! - **Vendored** (`vendor/golang.org/x/sys/unix`) or **replaced by a local
//!   directory**: those files may be overlaid, so the rewritten files are
//!   added to the overlay (a `replace` would break vendor consistency).
//! - A `replace` of x/sys by *another module* is refused (we would have to
//!   override the user's choice silently).
//! - In workspace mode (`go.work`), `-modfile` is not allowed: refused with
//!   the two ways out (vendor, or `GOWORK=off`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::generate::{self, SourceFile};
use crate::manifest::FileEntry;
use crate::{cache, rules, Overlay, Target};

pub const MODULE: &str = "golang.org/x/sys";
pub const PACKAGE: &str = "golang.org/x/sys/unix";

/// What a build of one module needs besides the std overlay.
#[derive(Debug, Default)]
pub struct ModuleSetup {
    /// Overlay entries to add (vendored or locally replaced x/sys).
    pub overlay: Overlay,
    /// A `-modfile` to build with (the module's go.mod plus a replace).
    pub modfile: Option<PathBuf>,
    /// Manifest entries for the x/sys sites.
    pub files: Vec<FileEntry>,
    /// One line for the user: what was done.
    pub note: Option<String>,
    /// Keeps the temporary modfile directory alive for the build.
    pub temp: Option<tempfile::TempDir>,
}

/// Facts about x/sys/unix as the build would see it.
#[derive(Debug)]
struct Found {
    dir: PathBuf,
    version: String,
    module_dir: PathBuf,
    /// `path@version` of a module replacement, if any.
    replaced_by_module: Option<String>,
    sfiles: Vec<String>,
}

/// Prepares `golang.org/x/sys/unix` for a build run in `dir` (None = the
/// current directory). `modfile`: the user's own `-modfile`, if given.
/// Does nothing when the build is not in a module that requires x/sys.
pub fn prepare_module(target: &Target, cache_root: &Path, dir: Option<&Path>, modfile: Option<&Path>) -> Result<ModuleSetup> {
    let Some(found) = find(target, dir, modfile)? else { return Ok(ModuleSetup::default()) };
    if found.sfiles.is_empty() {
        return Ok(ModuleSetup::default());
    }
    let in_modcache = !target.tool.gomodcache.as_os_str().is_empty() && found.dir.starts_with(&target.tool.gomodcache);
    let label = format!("{MODULE}@{}", found.version);
    let sources: Vec<SourceFile> = found
        .sfiles
        .iter()
        .map(|f| SourceFile { package: PACKAGE.into(), path: found.dir.join(f), rel: format!("{label}/unix/{f}") })
        .collect();
    let out = generate::rewrite(&sources, &rules::xsys_rules(), false, &|s| fs::read_to_string(&s.path))
        .map_err(|problems| generate::GenerateError { context: format!("{label} ({})", found.dir.display()), problems })?;

    let mut setup = ModuleSetup { files: out.manifest_files.clone(), ..ModuleSetup::default() };
    if !in_modcache {
        // Vendored or a local directory: overlay it. Backing files are
        // content-addressed in the cache.
        for f in &out.files {
            let key = cache::fnv1a(&[f.contents.as_bytes()]);
            let backing = cache_root.join("xsys").join("files").join(format!("{key}-{}", file_name(&f.key)));
            if !backing.is_file() {
                fs::create_dir_all(backing.parent().context("no parent")?)?;
                write_atomic(&backing, &f.contents)?;
            }
            setup.overlay.replace.insert(f.key.display().to_string(), backing.display().to_string());
        }
        setup.note = Some(format!("{label}: {} rewritten in place through the overlay ({})", PACKAGE, found.dir.display()));
        return Ok(setup);
    }
    if let Some(other) = &found.replaced_by_module {
        bail!(
            "go.mod replaces {MODULE} by {other}, which lives in the module cache where shunt cannot rewrite it; \
             vendor the module (go mod vendor) or replace it by a local directory"
        );
    }
    let copy = module_copy(target, cache_root, &found, &out.files, &out.manifest_files)?;
    let (temp, modfile) = temp_modfile(target, dir, modfile, &copy)?;
    setup.temp = Some(temp);
    setup.modfile = Some(modfile);
    setup.note = Some(format!("{label}: building against a rewritten copy ({})", copy.display()));
    Ok(setup)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn find(target: &Target, dir: Option<&Path>, modfile: Option<&Path>) -> Result<Option<Found>> {
    let mut env = target.tool.command();
    env.args(["env", "GOMOD", "GOWORK"]);
    if let Some(d) = dir {
        env.current_dir(d);
    }
    let out = env.output().context("cannot run go env GOMOD")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let gomod = lines.next().unwrap_or("").trim();
    let gowork = lines.next().unwrap_or("").trim();
    if gomod.is_empty() || gomod == "/dev/null" {
        return Ok(None);
    }

    let mut list = target.tool.command();
    list.arg("list").arg("-e");
    if let Some(m) = modfile {
        list.arg(format!("-modfile={}", m.display()));
    }
    list.args([
        "-f",
        "{{.Dir}}\t{{with .Module}}{{.Version}}\t{{.Dir}}\t{{with .Replace}}{{.Path}}@{{.Version}}{{end}}{{else}}\t\t{{end}}\t{{with .Error}}ERR{{end}}\t{{join .SFiles \",\"}}",
        PACKAGE,
    ]);
    if let Some(d) = dir {
        list.current_dir(d);
    }
    let out = list.output().context("cannot run go list")?;
    if !out.status.success() {
        // Not required by this module (or no module at all): nothing to do.
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<&str> = text.trim_end_matches('\n').split('\t').collect();
    if f.len() < 6 || f[4] == "ERR" || f[0].is_empty() {
        return Ok(None);
    }
    if !gowork.is_empty() && gowork != "off" {
        bail!(
            "this build uses {PACKAGE} in workspace mode ({gowork}), where shunt cannot point x/sys at its \
             rewritten copy; build with GOWORK=off or vendor the module"
        );
    }
    let replaced = f[3];
    Ok(Some(Found {
        dir: PathBuf::from(f[0]),
        version: if f[1].is_empty() { "local".into() } else { f[1].into() },
        module_dir: PathBuf::from(f[2]),
        // A replacement by a local directory has no version ("path@").
        replaced_by_module: (!replaced.is_empty() && !replaced.ends_with('@')).then(|| replaced.to_owned()),
        sfiles: f[5].split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    }))
}

/// The module copied once into the cache with its assembly rewritten.
fn module_copy(
    target: &Target,
    cache_root: &Path,
    found: &Found,
    rewritten: &[generate::Rewritten],
    manifest: &[FileEntry],
) -> Result<PathBuf> {
    let rules_text = format!("{:?}", rules::xsys_rules());
    let key = cache::fnv1a(&[
        crate::generator_id().as_bytes(),
        rules_text.as_bytes(),
        found.module_dir.as_os_str().as_encoded_bytes(),
        target.tool.version.as_bytes(),
    ]);
    let entry = cache_root.join("xsys").join(format!("{}-{key}", found.version));
    let module = entry.join("mod");
    if module.join("go.mod").is_file() {
        return Ok(module);
    }
    let staging = cache::staging_dir(&entry)?;
    let result = (|| -> Result<()> {
        shunt_paths::copy_tree_writable(&found.module_dir, &staging.join("mod"))?;
        for f in rewritten {
            let rel = f.key.strip_prefix(&found.module_dir).context("rewritten file outside the module")?;
            let dst = staging.join("mod").join(rel);
            // The copy is a fresh file (never a link into the module cache).
            let _ = fs::remove_file(&dst);
            fs::write(&dst, &f.contents).with_context(|| format!("cannot write {}", dst.display()))?;
        }
        // What was rewritten, next to the copy (outside the module tree).
        fs::write(staging.join("manifest.json"), serde_json::to_string_pretty(manifest)?)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = cache::remove_tree(&staging);
        return Err(e);
    }
    cache::publish(&staging, &entry)?;
    Ok(module)
}


/// A temporary copy of the module's go.mod (or the user's -modfile) and its
/// go.sum, with x/sys replaced by the rewritten copy.
fn temp_modfile(target: &Target, dir: Option<&Path>, user_modfile: Option<&Path>, copy: &Path) -> Result<(tempfile::TempDir, PathBuf)> {
    let mut env = target.tool.command();
    env.args(["env", "GOMOD"]);
    if let Some(d) = dir {
        env.current_dir(d);
    }
    let gomod = PathBuf::from(String::from_utf8_lossy(&env.output()?.stdout).trim());
    let base_dir = dir.map(Path::to_path_buf).unwrap_or(std::env::current_dir()?);
    let source_mod = match user_modfile {
        Some(m) if m.is_absolute() => m.to_path_buf(),
        Some(m) => base_dir.join(m),
        None => gomod,
    };
    let source_sum = source_mod.with_extension("sum");
    let temp = tempfile::Builder::new().prefix("shunt-go-").tempdir().context("cannot create a temporary directory")?;
    let modfile = temp.path().join("go.mod");
    fs::copy(&source_mod, &modfile).with_context(|| format!("cannot copy {}", source_mod.display()))?;
    if source_sum.is_file() {
        fs::copy(&source_sum, temp.path().join("go.sum"))?;
    }
    let mut edit = target.tool.query();
    edit.arg("mod").arg("edit").arg(format!("-modfile={}", modfile.display()));
    edit.arg(format!("-replace={MODULE}={}", copy.display()));
    if let Some(d) = dir {
        edit.current_dir(d);
    }
    let out = edit.output().context("cannot run go mod edit")?;
    if !out.status.success() {
        bail!("go mod edit -replace failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok((temp, modfile))
}

fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path)?;
    Ok(())
}
