//! The template tree as the tests see it: where `faasd-templates/` is,
//! scratch directories, and what `faas-cli build --shrinkwrap` makes of a
//! template and a handler.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::target_dir;

/// How long one build (make, go build, shunt faas build) may take.
pub const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// `faasd-templates/` of this repository.
pub fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../faasd-templates")
}

/// A scratch directory private to this test binary, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let stem = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("test");
    // Test binaries are named <test>-<hash>.
    let test = stem.rsplit_once('-').map_or(stem, |(t, _)| t);
    let d = target_dir().join("test-scratch").join(test).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    d
}

/// Copies the tree `src` into `dst` (created): `shunt_paths::copy_tree`
/// (the one copy), failing the test with the path that could not be copied.
pub fn copy_tree(src: &Path, dst: &Path) {
    shunt_paths::copy_tree(src, dst, &[]).unwrap_or_else(|e| panic!("{e}"));
}

/// What `faas-cli build --shrinkwrap` makes: the whole template, then the
/// handler's files over `function/` (the template's samples that the handler
/// does not replace stay).
pub fn shrinkwrap(template: &Path, handler: &Path, ctx: &Path) {
    copy_tree(template, ctx);
    copy_tree(handler, &ctx.join("function"));
}

/// A Dockerfile as (INSTRUCTION, arguments) pairs: comments and blank lines
/// dropped, continuation lines joined, runs of white space made one space.
pub fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            cur.push_str(part);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (ins, args) = cur.split_once(char::is_whitespace).unwrap_or((&cur, ""));
        out.push((ins.to_uppercase(), args.split_whitespace().collect::<Vec<_>>().join(" ")));
        cur.clear();
    }
    out
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `path` exists.
pub fn wait_file(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} did not appear within {limit:?}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}
