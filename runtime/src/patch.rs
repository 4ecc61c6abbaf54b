//! In-memory rewrite of glibc's own `syscall` sites into calls of the gate,
//! from a precomputed patch plan (see `glibc-patch/`). Not built yet.

/// What patching did in this process.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub objects: usize,
    pub patched: usize,
    pub skipped: usize,
}

/// Patches every loaded object for which a plan exists.
pub fn apply_loaded() -> Report {
    Report::default()
}
