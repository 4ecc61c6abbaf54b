//! The `stock` configuration's image: the function packaged the ordinary
//! OpenFaaS way, from real upstream parts.
//!
//! - Go: the golang-middleware template (`../shared/third_party/
//!   golang-http-template/golang-middleware`) with the AES handler
//!   overlaid as `function/` (what `faas-cli build` does), built with plain
//!   `go build` and the template Dockerfile's flags, behind the real
//!   of-watchdog (`../shared/tools/fwatchdog`, `mode=http`), in the
//!   template Dockerfile's layout (`/home/app`, `fprocess=./handler`,
//!   `upstream_url=http://127.0.0.1:8082`, a non-root user).
//! - C++: of-watchdog in front of the same C++ function built natively
//!   with g++ (the cpp-shunt template's plain build, its own HTTP server on
//!   the upstream port), with the shared libraries it links.
//!
//! The image (one layer, made with umoci) is imported into the stock
//! daemon's image store, under the name every configuration deploys.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use shunt_containerd::{build_oci_archive, ImageConfig};
use shunt_manager::images::Images;

use crate::faas;
use shunt_paths::copy_tree;

/// Where the upstream parts live: `SHUNT_SHARED`, else `../shared` from
/// the checkout the templates are in.
fn shared_dir(templates: &Path) -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("SHUNT_SHARED") {
        return Ok(PathBuf::from(d));
    }
    let templates = templates.canonicalize().with_context(|| format!("cannot find {}", templates.display()))?;
    for up in templates.ancestors().skip(1).take(4) {
        let d = up.join("shared");
        if d.join("tools/fwatchdog").is_file() {
            return Ok(d);
        }
    }
    bail!("cannot find the shared upstream parts (tools/fwatchdog) above {}; name their directory with SHUNT_SHARED", templates.display())
}

/// The runtime's dynamic libraries of `binary` (ldd), for a root without them.
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let o = Command::new("ldd").arg(binary).output().context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&o.stdout);
    let mut libs = Vec::new();
    for l in text.lines() {
        // "libx.so => /lib/x86_64-linux-gnu/libx.so (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = l.split("=>").nth(1).unwrap_or(l).split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Copies `from` to `root` + `at`, executable by everyone.
fn install(from: &Path, root: &Path, at: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let to = root.join(at.trim_start_matches('/'));
    std::fs::create_dir_all(to.parent().expect("absolute path"))?;
    std::fs::copy(from, &to).with_context(|| format!("cannot copy {} into the stock image", from.display()))?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Builds the Go upstream from the golang-middleware template: its files,
/// the handler as `function/`, `go work use` (the template's go.work names
/// an older Go than the handler's go.mod, which `go build` refuses), then
/// the template's own `go build`.
fn build_go_upstream(shared: &Path, handler: &Path, dir: &Path) -> Result<PathBuf> {
    let tpl = shared.join("third_party/golang-http-template/golang-middleware");
    if !tpl.join("main.go").is_file() {
        bail!("{}: not the golang-middleware template", tpl.display());
    }
    let up = dir.join("upstream");
    if up.exists() {
        std::fs::remove_dir_all(&up)?;
    }
    copy_tree(&tpl, &up, &["function", "Dockerfile", "template.yml"])?;
    copy_tree(handler, &up.join("function"), &[])?;
    // The template's files are read-only in ../shared; go work use rewrites go.work.
    let work = up.join("go.work");
    let text = std::fs::read(&work)?;
    std::fs::remove_file(&work)?;
    std::fs::write(&work, text)?;
    let go = |args: &[&str], what: &str| {
        let mut c = Command::new("go");
        c.current_dir(&up).args(args).env("CGO_ENABLED", "0").env("GOTOOLCHAIN", shunt_gotarget::goenv::child_toolchain());
        faas::run_step(&mut c, what)
    };
    go(&["work", "use"], "go work use in the golang-middleware build")?;
    go(&["build", "--ldflags", "-s -w", "-o", "handler", "."], "building the golang-middleware upstream")?;
    Ok(up.join("handler"))
}

/// Builds the stock image of `lang`'s AES function and imports it into the
/// image store of state directory `state` as `reference`. `built` is the
/// state directory whose store holds the natively built functions (the
/// C++ upstream).
pub fn build_image(lang: &str, templates: &Path, built: &Path, work: &Path, state: &Path, reference: &str) -> Result<()> {
    let shared = shared_dir(templates)?;
    let dir = work.join(format!("stock-{lang}"));
    let root = dir.join("rootfs");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    install(&shared.join("tools/fwatchdog"), &root, "/home/app/fwatchdog")?;
    let upstream = match lang {
        "go" => build_go_upstream(&shared, &templates.join("functions/aes/go"), &dir)?,
        _ => {
            let images = faas::daemon::StoreImages { store: shunt_image::Store::open(built)?, native: true };
            let r = images.resolve(&super::platform::image(lang)).map_err(|e| anyhow!("{e}"))?;
            let bin = PathBuf::from(r.entrypoint.first().ok_or_else(|| anyhow!("the native {lang} build has no entrypoint"))?);
            for lib in libraries(&bin)? {
                install(&lib, &root, &lib.display().to_string())?;
            }
            bin
        }
    };
    install(&upstream, &root, "/home/app/handler")?;
    std::fs::create_dir_all(root.join("tmp"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    }
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("fprocess".into(), "./handler".into()),
        ("mode".into(), "http".into()),
        ("upstream_url".into(), "http://127.0.0.1:8082".into()),
        ("prefix_logs".into(), "false".into()),
    ];
    if lang != "go" {
        // The C++ function's server listens on $port, which of-watchdog
        // passes on as its own: moved to the upstream port.
        env[1].1 = "env port=8082 ./handler".into();
        install(Path::new("/usr/bin/env"), &root, "/usr/bin/env")?;
        for lib in libraries(Path::new("/usr/bin/env"))? {
            install(&lib, &root, &lib.display().to_string())?;
        }
    }
    // Debian's umoci 0.4.7 ends the layer's tar right after the last
    // entry's data (no padding, no end-of-archive blocks), which tar
    // readers refuse when that entry is a file (/usr/bin/env, for C++). An
    // empty /var, the last path in the walk, makes the last entry a
    // directory: nothing is cut.
    std::fs::create_dir_all(root.join("var"))?;
    let config = ImageConfig {
        entrypoint: vec!["/home/app/fwatchdog".into()],
        cmd: Vec::new(),
        env,
        workdir: Some("/home/app".into()),
        user: Some("1000:1000".into()),
    };
    let archive = dir.join("image.tar");
    build_oci_archive(&root, &config, "latest", &archive)?;
    let store = shunt_image::Store::open(state)?;
    shunt_image::import::import(&store, &archive, Some(reference)).with_context(|| format!("cannot import the stock image into {}", state.display()))?;
    Ok(())
}
