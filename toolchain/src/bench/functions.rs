//! The functions the benchmarks measure, built from this repository's
//! templates (shared by `bench invoke` and `bench glibc`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use crate::faas::{self, Bundle};

fn checked_templates(d: &Path, from: &str) -> Result<PathBuf> {
    if !d.join("template").is_dir() {
        bail!("{from} {}: not a faasd-templates directory (it has no template/ folder)", d.display());
    }
    Ok(d.to_path_buf())
}

/// The faasd-templates directory: `--templates`, SHUNT_TEMPLATES, or the
/// one next to the shunt build (a checkout's `target/<profile>/shunt`).
pub(crate) fn templates_dir(arg: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = arg {
        return checked_templates(d, "--templates");
    }
    if let Some(d) = std::env::var_os("SHUNT_TEMPLATES") {
        return checked_templates(Path::new(&d), "SHUNT_TEMPLATES");
    }
    let exe = std::env::current_exe()?;
    for up in exe.ancestors().skip(1).take(4) {
        let d = up.join("faasd-templates");
        if d.join("template").is_dir() {
            return Ok(d);
        }
    }
    bail!("cannot find faasd-templates next to {}; name it with --templates", exe.display())
}

pub(crate) fn template_name(lang: &str) -> Result<&'static str> {
    match lang {
        "go" => Ok("golang-shunt"),
        "cpp" => Ok("cpp-shunt"),
        other => bail!("unknown language {other:?} (use go or cpp)"),
    }
}

/// Builds one language's AES function from its template, natively and with
/// shunt: (native, shunt) bundles under `work`.
pub(crate) fn build_aes(tpl_root: &Path, lang: &str, work: &Path) -> Result<(Bundle, Bundle)> {
    let tname = template_name(lang)?;
    let tdir = tpl_root.join("template").join(tname);
    let t = faas::read_template(&tdir)?;
    let recipe = t.shunt.clone().ok_or_else(|| anyhow!("{}: not a shunt template", tdir.display()))?;
    let handler = tpl_root.join("functions").join("aes").join(lang);
    let ctx = work.join(format!("aes-{lang}"));
    faas::shrinkwrap_dirs(&tdir, &t, &handler, &ctx)?;
    let f = faas::bare_function(tname);
    let name = format!("aes-{lang}");
    eprintln!("shunt bench: building aes ({lang}) natively and with shunt");
    let native = faas::build_variant(&name, tname, &ctx, &recipe, true, &f)?;
    let shunt = faas::build_variant(&name, tname, &ctx, &recipe, false, &f)?;
    Ok((native, shunt))
}

