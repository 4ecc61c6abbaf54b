//! Finding the runtime library that `shunt run` preloads.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

pub const RUNTIME_LIBRARY: &str = "libshunt.so";

/// `$SHUNT_LIB`, else `libshunt.so` next to this executable (the cargo build
/// layout), else `../lib/shunt/libshunt.so` (an installed layout).
pub fn runtime_library() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SHUNT_LIB").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("SHUNT_LIB={} is not a file", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot find the shunt executable")?;
    let dir = exe.parent().context("the shunt executable has no directory")?;
    for candidate in [dir.join(RUNTIME_LIBRARY), dir.join("../lib/shunt").join(RUNTIME_LIBRARY)] {
        if candidate.is_file() {
            return Ok(candidate.canonicalize().unwrap_or(candidate));
        }
    }
    bail!(
        "the runtime library {RUNTIME_LIBRARY} is not next to {} — build the whole workspace \
         (`cargo build --release`) or set SHUNT_LIB",
        exe.display()
    )
}
