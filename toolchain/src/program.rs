//! What kind of program `shunt run` was given.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::read::elf::FileHeader;
use object::{elf, Endianness};

pub enum Kind {
    /// A dynamically linked ELF (the runtime is preloaded).
    Dynamic,
    /// A `#!` script (its interpreter is preloaded).
    Script,
    /// A static ELF (a Go binary): `shunt load` maps it into the runtime's
    /// own process.
    Static,
}

/// Resolves `name` like the shell: a path if it has a `/`, else a PATH search.
pub fn resolve(name: &std::ffi::OsStr) -> Result<PathBuf> {
    let p = Path::new(name);
    if p.components().count() > 1 || name.to_string_lossy().contains('/') {
        if !p.exists() {
            bail!("{}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    which::which(name).with_context(|| format!("{}: command not found in PATH", p.display()))
}

/// Checks that `path` is something `shunt run` can run, and says what it is.
pub fn classify(path: &Path) -> Result<Kind> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        bail!("{}: not executable (chmod +x it, or run its interpreter)", path.display());
    }
    let data = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if data.starts_with(b"#!") {
        return Ok(Kind::Script);
    }
    if !data.starts_with(b"\x7fELF") {
        bail!("{}: not an ELF executable or a #! script", path.display());
    }
    if data.len() < 5 || data[4] != 2 /* ELFCLASS64 */ {
        bail!("{}: a 32-bit ELF; shunt runs x86-64 programs", path.display());
    }
    let hdr = elf::FileHeader64::<Endianness>::parse(&*data)
        .map_err(|e| anyhow::anyhow!("{}: malformed ELF header ({e})", path.display()))?;
    let endian = hdr.endian().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if hdr.e_machine(endian) != elf::EM_X86_64 {
        bail!("{}: built for another architecture (ELF machine {}); shunt runs x86-64 programs",
              path.display(), hdr.e_machine(endian));
    }
    hdr.program_headers(endian, &*data)
        .map_err(|e| anyhow::anyhow!("{}: truncated or malformed ELF ({e})", path.display()))?;
    if !shunt_runtime::loader::is_self_contained(&data) {
        return Ok(Kind::Dynamic);
    }
    // Everything the loader would refuse (cgo, collisions with fixed
    // addresses aside, bad segments) is refused here, before the instance.
    shunt_runtime::loader::Image::open(path)?;
    Ok(Kind::Static)
}
