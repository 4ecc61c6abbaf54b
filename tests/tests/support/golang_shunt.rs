//! Helpers shared by the golang-shunt template tests (`tpl_go_*.rs` and
//! `go_aes.rs` include this file with `#[path]`): Go builds the way
//! `shunt faas build` runs them, the template's `shunt:` recipe, and
//! `go vet`/`go test` of a handler. The template tree, the front as a
//! process and the HTTP client come from the shunt_tests library.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub use shunt_tests::front::*;
pub use shunt_tests::http::*;
pub use shunt_tests::templates::*;
use shunt_tests::{go_toolchain, run, shunt, Outcome};

pub fn golang_shunt() -> PathBuf {
    templates().join("template/golang-shunt")
}

/// `go` with the settings `shunt faas build` uses.
pub fn go() -> Command {
    let mut c = Command::new("go");
    c.env("GOTOOLCHAIN", go_toolchain()).env("CGO_ENABLED", "0").env_remove("GOFLAGS").env_remove("GOWORK");
    c
}

/// One `shunt go build` at a time in a test binary: they share an overlay cache.
static SHUNT_BUILD: Mutex<()> = Mutex::new(());

/// Runs a template's build argv (`[shunt, go, build, …]` or `[go, build, …]`)
/// in `ctx` the way `shunt faas build` does: SHUNT set, the shunt binary's
/// directory first on PATH.
pub fn build_argv(argv: &[String], ctx: &Path) {
    let _one = SHUNT_BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let sh = shunt();
    let bindir = sh.parent().unwrap();
    let path = format!("{}:{}", bindir.display(), std::env::var("PATH").unwrap_or_default());
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .current_dir(ctx)
        .env("PATH", path)
        .env("SHUNT", &sh)
        .env("SHUNT_CACHE", Path::new(env!("CARGO_TARGET_TMPDIR")).join("tpl_go_shunt_cache"))
        .env("GOTOOLCHAIN", go_toolchain())
        .env("CGO_ENABLED", "0")
        .env_remove("GOFLAGS")
        .env_remove("GOWORK");
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "{argv:?} in {} failed:\n{}{}", ctx.display(), o.stdout_str(), o.stderr_str());
}

/// `shunt go build -o out .` in `ctx`.
pub fn shunt_go_build(ctx: &Path, out: &Path) {
    let argv: Vec<String> =
        ["shunt", "go", "build", "-o", out.to_str().unwrap(), "."].iter().map(|s| s.to_string()).collect();
    build_argv(&argv, ctx);
}

/// `go build -o out .` in `dir`.
pub fn go_build(dir: &Path, out: &Path) {
    let mut c = go();
    c.arg("build").arg("-o").arg(out).arg(".").current_dir(dir);
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "go build in {} failed:\n{}", dir.display(), o.stderr_str());
}

/// The `shunt:` section of a template.yml: key → argv (build, native_build)
/// or a one-element list (binary). Only the flow-list form is understood.
pub fn shunt_recipe(template_yml: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut inside = false;
    for line in template_yml.lines() {
        if line.starts_with("shunt:") {
            inside = true;
            continue;
        }
        if inside && !line.starts_with(' ') && !line.trim().is_empty() {
            inside = false;
        }
        if !inside || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.trim().split_once(':') {
            let v = v.trim();
            let items = match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
                None => vec![v.to_string()],
            };
            out.insert(k.trim().to_string(), items);
        }
    }
    out
}

/// Runs `go test` (and `go vet`) in `dir`.
pub fn go_test(dir: &Path, extra_env: &[(&str, &str)]) -> Outcome {
    let mut c = go();
    c.args(["vet", "./..."]).current_dir(dir).envs(extra_env.iter().copied());
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "go vet in {} failed:\n{}{}", dir.display(), o.stdout_str(), o.stderr_str());
    let mut c = go();
    c.args(["test", "-count=1", "./..."]).current_dir(dir).envs(extra_env.iter().copied());
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "go test in {} failed:\n{}{}", dir.display(), o.stdout_str(), o.stderr_str());
    o
}
