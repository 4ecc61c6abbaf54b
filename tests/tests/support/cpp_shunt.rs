//! Helpers shared by the cpp-shunt template tests (`tpl_cpp_*.rs` and
//! `c_aes.rs` include this file with `#[path]`): shrink-wrapped contexts
//! built with the template's Makefile (`shunt c++` or g++), and the front
//! started with the settings these tests assume. The template tree, the
//! front as a process and the HTTP client come from the shunt_tests library.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

#[allow(unused_imports)]
pub use shunt_tests::front::*;
#[allow(unused_imports)]
pub use shunt_tests::http::*;
pub use shunt_tests::templates::*;
use shunt_tests::{run, shunt, Outcome};

pub fn cpp_shunt() -> PathBuf {
    templates().join("template/cpp-shunt")
}

/// A function's C++ handler directory.
pub fn function(name: &str) -> PathBuf {
    templates().join("functions").join(name).join("cpp")
}

/// `make <args>` in `ctx` the way `shunt faas build` runs the template's
/// recipe: SHUNT set, the shunt binary's directory first on PATH; natively
/// with `CXX=g++` on the command line (the recipe's `native_build`).
pub fn make(ctx: &Path, shunted: bool, args: &[&str]) -> Outcome {
    let sh = shunt();
    let path = format!("{}:{}", sh.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let mut c = Command::new("make");
    c.arg("-j2").args(args).current_dir(ctx).env("PATH", path).env("SHUNT", &sh);
    if !shunted {
        c.arg("CXX=g++");
    }
    for v in ["CXX", "CXXFLAGS", "LDFLAGS", "LDLIBS", "MAKEFLAGS", "SHUNT_STATS", "SHUNT_INSTANCE"] {
        c.env_remove(v);
    }
    run(c, None, BUILD_LIMIT)
}

/// Builds `handler` in `ctx`; returns its path.
pub fn build_handler(ctx: &Path, shunted: bool) -> PathBuf {
    let o = make(ctx, shunted, &["handler"]);
    assert!(
        o.status.success(),
        "make handler ({}) in {} failed:\n{}{}",
        if shunted { "shunt c++" } else { "g++" },
        ctx.display(),
        o.stdout_str(),
        o.stderr_str()
    );
    let bin = ctx.join("handler");
    assert!(bin.is_file(), "no handler in {}", ctx.display());
    bin
}

/// Contexts built once per test binary: (name, shunted) -> binary.
static BUILT: Mutex<Option<HashMap<(String, bool), PathBuf>>> = Mutex::new(None);

/// The handler `handler_dir` shrink-wrapped into a scratch context named
/// `name` and built (once per test binary and variant).
pub fn built(name: &str, handler_dir: &Path, shunted: bool) -> PathBuf {
    let mut guard = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(b) = map.get(&(name.to_string(), shunted)) {
        return b.clone();
    }
    let ctx = scratch(&format!("{name}-{}", if shunted { "shunt" } else { "native" }));
    shrinkwrap_cpp(handler_dir, &ctx);
    let bin = build_handler(&ctx, shunted);
    map.insert((name.to_string(), shunted), bin.clone());
    bin
}

/// A handler directory written from `(file, text)` pairs.
pub fn handler_dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = scratch(&format!("src-{name}"));
    for (f, text) in files {
        let p = d.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

/// What `faas-cli build --shrinkwrap` makes of cpp-shunt and `handler`.
pub fn shrinkwrap_cpp(handler: &Path, ctx: &Path) {
    shrinkwrap(&cpp_shunt(), handler, ctx);
}

/// Starts a C++ front: on 127.0.0.1 with a short healthcheck_interval
/// (`env` may override both); on stop, besides no traps, the socket calls
/// must have gone through the gate.
pub fn start_front(bin: &Path, mode: Mode, env: &[(&str, &str)]) -> Server {
    let mut s = spawn_front(bin, mode, env);
    s.wait_listening();
    s
}

/// `start_front` without waiting for the port.
pub fn spawn_front(bin: &Path, mode: Mode, env: &[(&str, &str)]) -> Server {
    let mut all = vec![("bind_address", "127.0.0.1"), ("healthcheck_interval", "100ms")];
    all.extend_from_slice(env);
    let mut s = Server::spawn(mode, &[bin], &all);
    s.gate_calls = &["accept4", "sendmsg"];
    s
}

