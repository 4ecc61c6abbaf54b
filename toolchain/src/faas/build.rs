//! Building shrink-wrapped contexts with the template's `shunt:` recipe into
//! bundles (`build/.shunt/<fn>/{shunt,native}/`) and the manifest
//! (`build/.shunt/bundles.json`) that `shunt faas up` reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use super::shrinkwrap::{handler_dir, shrinkwrap};
use super::stack::{load_stack, selected, template_of, Bundle, Function, Loaded, Recipe, Template};
use super::BuildArgs;
use shunt_paths::copy_tree;

pub fn run_step(cmd: &mut Command, what: &str) -> Result<()> {
    let o = cmd.output().with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let out = String::from_utf8_lossy(&o.stdout);
        let tail: Vec<&str> = err.lines().chain(out.lines()).filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(12)..].join("\n  ");
        bail!("{what} failed ({}):\n  {tail}", o.status);
    }
    Ok(())
}

/// Debian packages of the function's build options that are not installed.
fn missing_packages(name: &str, f: &Function, lang: &str, t: &Template) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for opt in &f.build_options {
        let o = t.build_options.iter().find(|o| &o.name == opt).ok_or_else(|| {
            anyhow!("function {name}: build option `{opt}` is not offered by template `{lang}` (see its template.yml)")
        })?;
        for p in &o.packages {
            let ok = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false);
            if !ok {
                missing.push(p.clone());
            }
        }
    }
    Ok(missing)
}

/// Builds one variant of a shrink-wrapped context into its bundle dir.
pub fn build_variant(name: &str, lang: &str, ctx: &Path, recipe: &Recipe, native: bool, f: &Function) -> Result<Bundle> {
    let variant = if native { "native" } else { "shunt" };
    let root = ctx.parent().unwrap_or(Path::new(".")).join(".shunt").join(name);
    let dir = root.join(variant);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    copy_tree(ctx, &dir, &[])?;
    // Absolute: `shunt faas up` runs each bundle from its own directory.
    let dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    let argv = if native { &recipe.native_build } else { &recipe.build };
    let (prog, args) = argv.split_first().ok_or_else(|| anyhow!("template `{lang}`: empty build recipe"))?;
    let exe = std::env::current_exe()?;
    let exe_dir = exe.parent().unwrap_or(Path::new("/"));
    let path = std::env::join_paths(
        std::iter::once(exe_dir.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let prog = if prog == "shunt" { exe.clone() } else { PathBuf::from(prog) };
    let mut cmd = Command::new(&prog);
    cmd.current_dir(&dir)
        .args(args)
        .env("SHUNT", &exe)
        .env("PATH", path)
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", shunt_gotarget::goenv::child_toolchain());
    run_step(&mut cmd, &format!("building {name} ({lang}, {variant})"))?;
    let binary = dir.join(&recipe.binary);
    if !binary.is_file() {
        bail!("building {name}: the recipe did not produce {}", binary.display());
    }
    let environment = f.environment.iter().map(|(k, v)| (k.clone(), yaml_to_env(v))).collect();
    Ok(Bundle { name: name.into(), lang: lang.into(), variant: variant.into(), dir, binary, environment })
}

fn yaml_to_env(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

pub(crate) fn manifest_path(l: &Loaded) -> PathBuf {
    l.dir.join("build").join(".shunt").join("bundles.json")
}

/// The bundles recorded in the manifest (none when it does not exist yet).
/// A manifest that cannot be read is an error, never an empty list: the
/// next write would drop every function it recorded.
pub(crate) fn read_manifest(manifest: &Path) -> Result<Vec<Bundle>> {
    let text = match shunt_userfile::read_to_string(manifest, shunt_userfile::limit::STACK) {
        Ok(t) => t,
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: not a bundle manifest ({e}); fix it, or remove it and rebuild every function of the stack",
            manifest.display()
        )
    })
}

/// `shunt faas build`: returns the bundles made.
pub fn build(a: &BuildArgs) -> Result<Vec<Bundle>> {
    let l = load_stack(a.stack.file.as_deref())?;
    let fns = selected(&l, &a.stack.filter)?;
    // Check everything before building anything.
    let manifest = manifest_path(&l);
    let mut all = read_manifest(&manifest)?;
    let mut plan = Vec::new();
    for (name, f) in &fns {
        let (lang, tdir, t) = template_of(&l, name, f)?;
        handler_dir(&l, name, f)?;
        let missing = missing_packages(name, f, &lang, &t)?;
        if !missing.is_empty() {
            bail!(
                "function {name}: build options need Debian packages that are not installed: {} (apt-get install {})",
                missing.join(", "),
                missing.join(" ")
            );
        }
        plan.push((*name, *f, lang, tdir, t));
    }
    let mut bundles = Vec::new();
    for (name, f, lang, tdir, t) in plan {
        eprintln!("shunt faas: {name}: shrink-wrapping ({lang})");
        let ctx = shrinkwrap(&l, name, f, &tdir, &t)?;
        let recipe = t.shunt.clone().expect("checked in template_of");
        eprintln!("shunt faas: {name}: building with shunt");
        bundles.push(build_variant(name, &lang, &ctx, &recipe, false, f)?);
        if a.native {
            eprintln!("shunt faas: {name}: building natively");
            bundles.push(build_variant(name, &lang, &ctx, &recipe, true, f)?);
        }
    }
    all.retain(|b| !bundles.iter().any(|n| n.name == b.name && n.variant == b.variant));
    all.extend(bundles.iter().cloned());
    all.sort_by(|x, y| (&x.name, &x.variant).cmp(&(&y.name, &y.variant)));
    std::fs::create_dir_all(manifest.parent().unwrap())?;
    // Through a temporary file and rename: a build stopped half-way
    // leaves the old manifest whole.
    let tmp = manifest.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string_pretty(&all)? + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &manifest).with_context(|| format!("cannot write {}", manifest.display()))?;
    // The daemon's image store (found by the daemon's own rule) gets one
    // OCI image per function, named by its stack `image:`.
    let state = a.state_dir.clone().unwrap_or_else(shunt_manager::state::dir::default_state_dir);
    let mut store = None;
    for (name, f) in &fns {
        let Some(image) = f.image.as_deref() else { continue };
        let built: Vec<&Bundle> = bundles.iter().filter(|b| b.name == **name).collect();
        if built.is_empty() {
            continue;
        }
        if store.is_none() {
            store = Some(shunt_image::Store::open(&state)?);
        }
        let store = store.as_ref().expect("opened");
        let img = function_image(store, image, &built).with_context(|| format!("function {name}: cannot store image {image} in {}", store.dir().display()))?;
        eprintln!("shunt faas: {name}: image {} ({}) in {}", img.reference, img.digest, store.dir().display());
    }
    for b in &bundles {
        println!("{:<20} {:<14} {:<7} {}", b.name, b.lang, b.variant, b.binary.display());
    }
    Ok(bundles)
}


/// Where a function image keeps each variant it was built in.
pub const IMAGE_APP_DIR: &str = "/home/app";
/// The config label saying an image runs on the host's root (its binaries
/// need the host's patched glibc and the shunt runtime).
pub const LABEL_ROOT: &str = "dev.shunt.root";
/// `dev.shunt.binary.<variant>`: the variant's program, relative to its
/// directory `IMAGE_APP_DIR/<variant>`.
pub const LABEL_BINARY: &str = "dev.shunt.binary.";

/// The image of one function: its layer holds the variants built
/// (`/home/app/shunt/`, `/home/app/native/`), its config the stack's
/// environment and which binary each variant runs. The shunt variant (else
/// the first built) is also the config's entrypoint.
fn function_image(store: &shunt_image::Store, reference: &str, built: &[&Bundle]) -> Result<shunt_image::Image> {
    let mut labels = std::collections::HashMap::from([(LABEL_ROOT.to_string(), "host".to_string())]);
    let mut dirs = Vec::new();
    for b in built {
        let rel = b.binary.strip_prefix(&b.dir).with_context(|| format!("{} is not inside {}", b.binary.display(), b.dir.display()))?;
        labels.insert(format!("{LABEL_BINARY}{}", b.variant), rel.display().to_string());
        dirs.push((b.dir.as_path(), format!("{IMAGE_APP_DIR}/{}", b.variant)));
    }
    let first = built.iter().find(|b| b.variant == "shunt").unwrap_or(&built[0]);
    let workdir = format!("{IMAGE_APP_DIR}/{}", first.variant);
    let rel = first.binary.strip_prefix(&first.dir).unwrap_or(&first.binary);
    let config = shunt_image::build::Config {
        entrypoint: vec![format!("{workdir}/{}", rel.display())],
        cmd: Vec::new(),
        env: first.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        workdir,
        labels,
    };
    let dirs: Vec<(&Path, &str)> = dirs.iter().map(|(d, i)| (*d, i.as_str())).collect();
    shunt_image::build::image_from_dirs(store, reference, &dirs, &config)
}
